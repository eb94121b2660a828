"""Two CPU processes (gloo, accelerate launch) make the same update as one process on the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_step.py"
ROOT = Path(__file__).resolve().parents[1]


def _run(cmd, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def test_two_processes_match_one(tmp_path):
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    _run([sys.executable, str(SCRIPT), str(one)], tmp_path)
    accelerate = Path(sys.executable).with_name("accelerate")
    _run([str(accelerate), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
          "no", "--dynamo_backend", "no", "--main_process_port", "29517", str(SCRIPT), str(two)], tmp_path)
    a, b = torch.load(one), torch.load(two)
    from metarl.models.tiny import tiny_model_and_tokenizer

    init = dict(tiny_model_and_tokenizer(seed=1)[0].named_parameters())
    assert any(not torch.allclose(a[k], init[k].detach()) for k in a), "training must move the parameters"
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=f"{k}: 2-process update differs")
