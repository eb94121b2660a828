"""bench/bench_engine.py: the training overrides it composes, and its quick mode on SmolLM2-135M-Instruct.

The quick run is slow-marked (it loads SmolLM2; `make test-slow`) and runs the transformers backend only: its
rollout and Monte Carlo parts in this process (the training part, a process per run, is left out to stay
well under 30 s). Without vLLM the vLLM parts are asked for and must be skipped with the reason in the JSON.
Timings are not asserted.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_engine  # noqa: E402
import bench_train_step  # noqa: E402

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.parametrize("recipe", bench_engine.TRAIN_RECIPES)
def test_train_overrides_compose_the_same_run_but_for_the_reward(recipe, tmp_path):
    s = bench_engine.Settings()
    cfg = bench_train_step.train_config(recipe, bench_engine.train_overrides(s, "vllm", recipe), s.train_steps,
                                        "smollm2", tmp_path)
    assert cfg.task.system_prompt == bench_engine.system_prompt()  # quoted through Hydra intact
    assert "<attempt>a+b</attempt>" in cfg.task.system_prompt
    assert cfg.generation.backend == "vllm" and cfg.rollout.mode == "single" and not cfg.rollout.force_answer
    assert cfg.segmenter._target_.endswith("ParagraphSegmenter") and cfg.max_episodes_per_trace == s.max_episodes
    assert (cfg.budget.cap, cfg.trainer.per_device_train_batch_size, cfg.trainer.num_generations, cfg.seed) == \
        (s.train_cap, s.train_batch, s.train_group, 0)
    assert cfg.model.name_or_path == "smollm2"
    assert list(cfg.rewards) == (["mc_progress"] if recipe == "obj2_mc_progress" else ["outcome"])
    if recipe == "obj2_mc_progress":
        assert cfg.rewards.mc_progress.m == s.m == 4


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_engine")
    page = out / "results_engine.md"
    backends = "transformers" if HAS_VLLM else "transformers,vllm"  # without vLLM: ask for it, see it skipped
    result = bench_engine.main(["--out", str(out), "--quick", "--parts", "rollout,mc", "--backends", backends,
                                "--page", str(page)])
    return result, out, page


@pytest.mark.slow
def test_quick_json_csv_and_rollout(quick):
    result, out, _ = quick
    assert json.loads((out / "bench_engine.json").read_text())["quick"] is True
    rows = list(csv.DictReader(open(out / "bench_engine.csv")))
    assert {r["part"] for r in rows} == {"rollout", "mc"}
    s = bench_engine.QUICK
    ro = result["rollout"]["summary"]["transformers"]
    assert ro["tokens"] > 0 and ro["seconds"] > 0 and ro["tok_s"] == pytest.approx(ro["tokens"] / ro["seconds"])
    assert 1 <= ro["calls"] <= s.max_episodes + 1  # one call per episode step for the batch (+ forced answers)
    # episodes a stream ended at a boundary (a stream the cap cuts inside its first one has none)
    assert ro["thinking_max"] <= s.cap and 0 <= ro["episodes_mean"] <= s.max_episodes
    if not HAS_VLLM:
        assert "not installed" in result["skipped"]["vllm"]
        assert "vllm" not in result["rollout"]["summary"]


@pytest.mark.slow
def test_quick_mc_both_paths_same_work(quick):
    result, _, _ = quick
    mc = result["mc"]
    reuse, plain = mc["summary"]["transformers reuse"], mc["summary"]["transformers no reuse"]
    assert reuse["prefixes"] == plain["prefixes"] == mc["settings"]["prefixes"]
    assert reuse["samples"] == plain["samples"] == reuse["contexts"] * 4
    assert max(mc["settings"]["episodes"]) <= bench_engine.QUICK.max_episodes
    (ratio,) = mc["ratios"]
    assert ratio["speedup"] == pytest.approx(plain["seconds"] / reuse["seconds"])
    assert ratio["met"] == (ratio["speedup"] >= 4.0)


@pytest.mark.slow
def test_quick_page(quick):
    result, _, page = quick
    text = page.read_text()
    assert "No GPU run was made" in text and "load caveat" in text and "quick run" in text
    assert "## 1. `episodes` rollout" in text and "## 2. Monte Carlo progress" in text
    assert "## 3." not in text  # the training part was not run
    if not HAS_VLLM:
        assert "skipped: vllm" in text
    assert bench_engine.page(result) == text
