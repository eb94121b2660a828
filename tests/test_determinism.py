"""Determinism: the same seed on CPU gives the same metrics and the same trained weights.

Two in-process 3-step runs of a recipe (random tiny model, 1 torch thread) with the same seed must write
identical ``metrics.jsonl`` records (every numeric value equal, timing keys aside) and identical final
parameters; a different seed must change the metrics. Done for an Obj-1 recipe and an Obj-2 recipe.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from safetensors.torch import load_file

from metarl.config import conf_dir
from metarl.rewards import reward

# wall-clock measurements differ between identical runs; every other logged value must not
TIMING_KEYS = {"step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second",
               "samples_per_second", "steps_per_second"}
SMALL = ["model=random-tiny", "trainer.max_steps=3", "evaluate.enabled=false", "task.n_train=16",
         "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "budget.cap=24",
         "rollouts_every=1", "threads=1"]


@reward("episode")
def digit_share(episode) -> float:
    """A dense episode reward with spread on random text (share of digits), so that every step updates."""
    return sum(c.isdigit() for c in episode.text) / max(1, len(episode.text))


def recipe_overrides(recipe: str) -> list[str]:
    if recipe == "obj1_verify":  # Obj-1 rewards are all 0 on a random model: add a dense term with variance
        return [f"recipe={recipe}", "+rewards.digits._target_=test_determinism.digit_share", "+rewards.digits._partial_=true"]
    if recipe == "obj2_likelihood_progress":  # on a random model p(a*) underflows on the probability scale
        return [f"recipe={recipe}", "rewards.likelihood_progress.scale=log"]
    return [f"recipe={recipe}"]


def train(tmp_path: Path, recipe: str, seed: int, tag: str, *extra: str) -> Path:
    from metarl.trainer.run import run

    run_dir = tmp_path / f"{recipe}-{tag}"
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        cfg = compose("train", overrides=[*recipe_overrides(recipe), f"name={recipe}", f"run_dir={run_dir}",
                                          f"seed={seed}", *SMALL, *extra])
    run(cfg)
    return run_dir


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


def same_numbers(a: dict, b: dict) -> list[str]:
    """Keys whose values differ (NaN equals NaN; logs are floats written by the same code)."""
    diff = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if x != y:
            diff.append(k)
    return diff


def recipes() -> list[str]:
    ok = ["obj1_verify"]
    if (Path(conf_dir()).parent / "metarl" / "rewards" / "progress.py").exists():
        ok.append("obj2_likelihood_progress")
    return ok


@pytest.mark.parametrize("recipe", recipes())
def test_same_seed_same_metrics_and_weights_other_seed_differs(recipe, tmp_path):
    torch.set_num_threads(1)
    a, b, c = (train(tmp_path, recipe, 3, "a"), train(tmp_path, recipe, 3, "b"),
               train(tmp_path, recipe, 4, "c"))
    ma, mb, mc = metrics(a), metrics(b), metrics(c)
    assert [m["step"] for m in ma] == [1, 2, 3]
    for step, (x, y) in enumerate(zip(ma, mb, strict=True), start=1):
        assert not same_numbers(x, y), f"step {step}: {same_numbers(x, y)} differ between two runs with seed 3"
    assert any(same_numbers(x, z) for x, z in zip(ma, mc)), "seed 4 logged exactly what seed 3 did"

    wa, wb, wc = weights(a), weights(b), weights(c)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"parameter {k} differs between two runs with seed 3"
    from metarl.models.tiny import tiny_model_and_tokenizer

    init = tiny_model_and_tokenizer()[0].state_dict()
    moved = [k for k in wa if k in init and not torch.equal(wa[k], init[k])]
    assert moved, "training changed no parameter: the comparison would be vacuous"
    assert any(not torch.equal(wa[k], wc[k]) for k in wa), "seed 4 trained the same weights as seed 3"
    assert sum(m["grad_norm"] > 0 for m in ma) >= 1


@pytest.mark.parametrize("tag, extra", [("checkpointing", ["trainer.gradient_checkpointing=true"]),
                                        ("two-threads", ["threads=2"]),
                                        ("threads-changing", ["threads=2"])])
def test_speed_options_change_no_number(tmp_path, monkeypatch, tag, extra):
    """Gradient checkpointing (off by default on the CPU), a second intra-op thread (the demo's) and a thread count
    that changes between steps (``LoadAwareThreads`` on a machine whose load comes and goes) are speed only: the
    same seed logs the same numbers and trains the same weights with any of them."""
    from metarl.utils import available_cpus

    if tag != "checkpointing" and available_cpus() < 2:
        pytest.skip("one CPU: threads=2 is capped to 1, nothing to compare")
    from metarl import utils

    # two threads throughout, however busy this machine is (a loaded one would get fewer: metarl.utils.set_threads);
    # "threads-changing": other processes seen busy before every other step, so the count goes 2, 1, 2, 1, ...
    monkeypatch.setattr(utils, "free_cpus", lambda sample=0.1: float(available_cpus()))
    monkeypatch.setattr(utils.CpuMeter, "others", lambda self: 0.0)
    seen: list[int] = []
    try:
        base = train(tmp_path, "obj1_verify", 3, "base")
        if tag == "threads-changing":
            from metarl.trainer.callbacks import LoadAwareThreads

            busy = iter([float(available_cpus() - 1), 0.0] * 10)
            monkeypatch.setattr(utils.CpuMeter, "others", lambda self: next(busy))
            step = LoadAwareThreads.on_step_begin

            def recording(self, *a, **k):
                step(self, *a, **k)
                seen.append(torch.get_num_threads())

            monkeypatch.setattr(LoadAwareThreads, "on_step_begin", recording)
        other = train(tmp_path, "obj1_verify", 3, tag, *extra)
        if tag == "two-threads":
            assert torch.get_num_threads() == 2
        if tag == "threads-changing":
            assert seen == [1, 2, 1], seen
    finally:
        torch.set_num_threads(1)
    for step, (x, y) in enumerate(zip(metrics(base), metrics(other), strict=True), start=1):
        assert not same_numbers(x, y), f"{tag}, step {step}: {same_numbers(x, y)} differ"
    wa, wb = weights(base), weights(other)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{tag}: other weights"
