"""Every recipe in recipes/ trains for 2 steps on CPU and writes a readable run directory."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from metarl.config import conf_dir

RECIPES = sorted(p.stem for p in (Path(conf_dir()) / "recipe").glob("*.yaml") if not p.stem.endswith("_gpu"))
"""Recipes that train on the built-in task with a tiny model here; ``*_gpu`` recipes name a real model and data
and are checked with a tiny stand-in in ``tests/test_reasoning.py``."""
SMALL = ["model=random-tiny", "trainer.max_steps=2", "evaluate.n=4", "task.n_train=32", "task.n_test=4",
         "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "budget.cap=40", "budget.target_tokens=[16,32]", "rollouts_every=1"]


def compose_train(overrides):
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose("train", overrides=overrides)


def test_expected_recipes_exist():
    assert {"outcome_grpo", "obj1_verify", "obj2_mc_progress", "obj2_likelihood_progress",
            "mrt_termination_baseline", "l1_exact", "l1_max"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_two_steps(recipe, tmp_path):
    from metarl.trainer.run import run

    first = (Path(conf_dir()) / "recipe" / f"{recipe}.yaml").read_text().splitlines()[:2]
    assert f"# metarl-train recipe={recipe}" in first, "a recipe opens with the command that runs it"
    cfg = compose_train([f"recipe={recipe}", f"name={recipe}", f"run_dir={tmp_path / 'run'}", *SMALL])
    summary = run(cfg)
    run_dir = Path(summary["run_dir"])
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert all("metarl/outcome_accuracy" in m and "metarl/tokens/mean" in m for m in metrics)
    assert all(m["metarl/tokens/max"] <= 40 for m in metrics), "the compute cap is never exceeded"
    rollouts = [json.loads(line) for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(r["episodes"] and "rewards" in r["episodes"][0] for r in rollouts)
    for r in rollouts:  # episodes partition the thinking; with prover=r1 the answer region follows
        assert "".join(e["text"] for e in r["episodes"]) == r["completion"][:r.get("answer_start")]
    assert (run_dir / "final" / "config.json").exists()
    assert summary["steps"] == 2 and "before" in summary and "after" in summary


def test_multirun_sweep_writes_one_run_per_job(tmp_path):
    import os
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("metarl-train")
    r = subprocess.run([str(exe), "-m", "recipe=obj1_verify", "model=random-tiny", "trainer.max_steps=1",
                        "evaluate.enabled=false", "task.n_train=32", "objective.alpha=0.1,1.0",
                        f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-2000:]
    alphas = sorted((tmp_path / str(j) / "config.yaml").read_text().split("alpha: ")[1].split()[0] for j in (0, 1))
    assert alphas == ["0.1", "1.0"]
    assert all((tmp_path / str(j) / "metrics.jsonl").exists() for j in (0, 1))


def test_lora_through_peft(tmp_path):
    from metarl.trainer.run import run

    cfg = compose_train(["recipe=outcome_grpo", "name=lora", f"run_dir={tmp_path / 'run'}",
                         "model.lora={r: 4, lora_alpha: 8, target_modules: all-linear}", *SMALL])
    summary = run(cfg)
    final = Path(summary["run_dir"]) / "final"
    assert (final / "adapter_config.json").exists() and (final / "adapter_model.safetensors").exists()
    assert '"r": 4' in (final / "adapter_config.json").read_text()
