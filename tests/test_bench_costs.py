"""bench/costs.py: one quick run (random tiny policy) into a temporary directory, and its checks.

The run trains every recipe for 2 steps, each in its own process, and times likelihood scoring and
Monte Carlo sampling at toy sizes; the tests read what it wrote. Timings are not asserted.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import bench_mc  # noqa: E402
import bench_train_step  # noqa: E402
import costs  # noqa: E402
from bench_likelihood import make_traces  # noqa: E402

MACHINE_KEYS = {"platform", "processor", "cpu_count", "python", "torch", "transformers", "trl", "threads"}
LIKELIHOOD_KEYS = {"settings", "forward_s", "one_pass_s", "cached_s", "naive_s", "one_pass_over_forward",
                   "cached_over_forward", "naive_over_one_pass"}
MC_ROW_KEYS = {"m", "episodes", "reuse", "seconds", "over_forward", "over_likelihood"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """costs.json of ``--quick --model random-tiny`` and the output directory."""
    out = tmp_path_factory.mktemp("costs")
    costs.main(["--out", str(out), "--quick", "--model", "random-tiny"])
    return json.loads((out / "costs.json").read_text()), out


def test_top_level_and_machine_keys(quick):
    result, _ = quick
    assert {"command", "quick", "machine", "train_step", "likelihood", "mc"} <= set(result)
    assert result["quick"] is True
    assert result["command"] == f"python bench/costs.py --out {quick[1]} --quick --model random-tiny"
    assert MACHINE_KEYS <= set(result["machine"])
    assert result["machine"]["threads"] == 1


def test_train_step_rows_ratios_and_memory(quick):
    ts = quick[0]["train_step"]
    assert {"settings", "rows", "baseline_rss_mb"} <= set(ts)
    assert ts["settings"]["model"] == "random-tiny" and ts["settings"]["steps"] == 2
    assert [r["recipe"] for r in ts["rows"]] == list(bench_train_step.RECIPES)
    base = ts["rows"][0]["step_seconds"]
    assert ts["rows"][0]["recipe"] == "outcome_grpo"
    for r in ts["rows"]:
        assert {"recipe", "step_seconds", "ratio", "peak_rss_mb"} <= set(r)
        assert r["step_seconds"] > 0
        assert r["ratio"] == pytest.approx(r["step_seconds"] / base, rel=1e-12)
        # a recipe's process loads what the baseline process loads, then trains; torch alone is > 50 MB
        assert r["peak_rss_mb"] > 50 and r["peak_gpu_mb"] is None
    assert ts["baseline_rss_mb"] > 50


def test_likelihood_ratios_match_seconds(quick):
    lk = quick[0]["likelihood"]
    assert LIKELIHOOD_KEYS <= set(lk)
    assert all(lk[k] > 0 for k in ("forward_s", "one_pass_s", "cached_s", "naive_s"))
    assert lk["one_pass_over_forward"] == pytest.approx(lk["one_pass_s"] / lk["forward_s"], rel=1e-12)
    assert lk["cached_over_forward"] == pytest.approx(lk["cached_s"] / lk["forward_s"], rel=1e-12)
    assert lk["naive_over_one_pass"] == pytest.approx(lk["naive_s"] / lk["one_pass_s"], rel=1e-12)
    assert lk["max_abs_logp_diff_vs_naive"] < 1e-3  # one_pass / cached score what naive scores


def test_mc_has_both_paths_for_every_cell_and_consistent_ratios(quick):
    mc = quick[0]["mc"]
    assert {"settings", "rows"} <= set(mc)
    grid = {(m, e) for m in mc["settings"]["m"] for e in mc["settings"]["episodes"]}
    assert grid == {(m, e) for m in (2, 4, 8) for e in (2, 4, 8)}
    cells = [(r["m"], r["episodes"], r["reuse"]) for r in mc["rows"]]
    assert sorted(cells) == sorted((m, e, reuse) for m, e in grid for reuse in (True, False))
    base = {p["episodes"]: p for p in mc["per_episodes"]}
    for r in mc["rows"]:
        assert MC_ROW_KEYS <= set(r) and r["seconds"] > 0
        assert r["over_forward"] == pytest.approx(r["seconds"] / base[r["episodes"]]["forward_s"], rel=1e-12)
        assert r["over_likelihood"] == pytest.approx(r["seconds"] / base[r["episodes"]]["one_pass_s"], rel=1e-12)
    # greedy forced answers of the two sampling paths agree on every prefix (B=2 traces, n+1 prefixes each)
    assert mc["checks"]["greedy_compared_prefixes"] == sum(2 * (e + 1) for e in (2, 4, 8))
    assert mc["checks"]["greedy_identical_prefixes"] == mc["checks"]["greedy_compared_prefixes"]


def test_csv_files_hold_every_row(quick):
    result, out = quick
    read = lambda name: list(csv.DictReader(open(out / name)))  # noqa: E731
    assert [r["recipe"] for r in read("costs_train_step.csv")] == list(bench_train_step.RECIPES)
    assert [r["what"] for r in read("costs_likelihood.csv")] == ["forward", "one_pass", "cached", "naive"]
    assert len(read("costs_mc.csv")) == len(result["mc"]["rows"]) == 18


def test_both_sampling_paths_give_m_answers_per_prefix(tiny):
    model, tok = tiny
    seqs, lengths = bench_mc.prefix_inputs(make_traces(tok, 2, 3, 24, 8, seed=0), tok)
    assert [len(ks) for ks in lengths] == [4, 4]
    for reuse in (True, False):
        eng = bench_mc.engine(model, tok, reuse, answer_tokens=4)
        bench_mc.check_counts(eng.branch(seqs, lengths, 3, seed=0), lengths, 3)
    agree, total = bench_mc.greedy_agreement(model, tok, seqs, lengths, answer_tokens=4)
    assert (agree, total) == (8, 8)


def test_check_counts_rejects_a_missing_sample():
    with pytest.raises(RuntimeError, match="answers per prefix"):
        bench_mc.check_counts([[["a", "b"], ["c"]]], [[5, 9]], m=2)


def test_l1_targets_and_peak_rss():
    assert costs.l1_targets(192) == "[32,48,64,96]"
    assert costs.peak_rss_mb() > 0
    with pytest.raises(ValueError, match="steps=1"):
        costs.measure_train_step(costs.TrainStepSettings(model="random-tiny", steps=1), "cpu")
