"""One output-directory convention for every app: Hydra's output directory, with ``run_dir=`` as its alias;
``hydra.run.dir=`` and ``run_dir=`` put the outputs in the same place, and a multirun gives one directory per job."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "metarl" / "data" / "sample_traces.jsonl"


def app(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", f"metarl.cli.{name}", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.mark.parametrize("key", ["run_dir", "hydra.run.dir"])
def test_score_writes_into_the_directory_either_key_names(key, tmp_path):
    app("score", f"input={SAMPLE}", f"{key}={tmp_path / 'out'}", cwd=tmp_path)
    assert (tmp_path / "out" / "scored.jsonl").is_file()
    assert (tmp_path / "out" / ".hydra" / "config.yaml").is_file()  # Hydra's own record of the job, same place
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("key", ["run_dir", "hydra.run.dir"])
def test_train_writes_into_the_directory_either_key_names(key, tmp_path):
    app("train", "recipe=outcome_grpo", "model=random-tiny", "trainer.max_steps=1", "evaluate.enabled=false",
        "task.n_train=16", "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "budget.cap=8",
        f"{key}={tmp_path / 'out'}", cwd=tmp_path)
    assert (tmp_path / "out" / "metrics.jsonl").is_file() and (tmp_path / "out" / ".hydra").is_dir()
    assert not (tmp_path / "runs").exists()


def test_eval_multirun_gives_one_directory_per_job(tmp_path):
    app("eval", "-m", "model=random-tiny", "strategies=[pass_at_k]", "pass_at_k.k=[1]", "budgets=[8]", "n=1",
        "n_questions=2", "seed=0,1", f"run_dir={tmp_path / 'sweep'}", cwd=tmp_path)
    from omegaconf import OmegaConf

    for job in (0, 1):
        out = tmp_path / "sweep" / str(job) / "eval"
        assert (out / "results.jsonl").is_file()
        assert OmegaConf.load(out / "config.yaml").seed == job  # each job its own directory
    assert not (tmp_path / "runs").exists()
