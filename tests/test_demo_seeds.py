"""bench/demo_seeds.py: seeds, the demo's verdicts read back from a constructed run directory, resuming."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("demo_seeds", ROOT / "bench" / "demo_seeds.py")
demo_seeds = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo_seeds)


def cell(correct: list[float], revise: list[float | None] | None = None, samples: int = 8) -> dict:
    revise = revise if revise is not None else [0.5] * len(correct)
    return {"accuracy": sum(correct) / len(correct), "accuracy_se": 0.0, "n": len(correct), "samples": samples,
            "correct": correct, "behaviour": {"episodes": [3.0] * len(correct), "verify_acc": [0.75] * len(correct),
                                              "revise_after_refuted": revise}}


def write_run(run_dir: Path, seed: int, before: dict, after: dict | None) -> None:
    run_dir.mkdir(parents=True)
    summary = {"name": "demo", "run_dir": str(run_dir), "seed": seed, "before": before, "train_seconds": 1.0}
    if after is not None:
        summary["after"] = after
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_parse_seeds():
    assert demo_seeds.parse_seeds("0-3") == [0, 1, 2, 3]
    assert demo_seeds.parse_seeds("5,0-1,1") == [0, 1, 5]
    with pytest.raises(ValueError):
        demo_seeds.parse_seeds("3-1")
    with pytest.raises(ValueError):
        demo_seeds.parse_seeds(",")


def test_seed_result_is_the_demos_verdict(tmp_path):
    # cap 192 accuracy: differences 0.5, 0.25, 0.25, 0: mean 0.25, se = sqrt(((.25^2 + 0 + 0 + .25^2) / 3) / 4)
    # cap 96 accuracy: differences 0.125, -0.125, 0, 0: mean 0, not above
    # cap 192 revisions: the question with no "incorrect" verdict before (None) is left out of the pairs
    before = {"192": cell([0.0, 0.25, 0.5, 0.5], [None, 0.5, 0.5, 0.0]), "96": cell([0.0, 0.25, 0.0, 0.5])}
    after = {"192": cell([0.5, 0.5, 0.75, 0.5], [1.0, 1.0, 1.0, 0.5]), "96": cell([0.125, 0.125, 0.0, 0.5])}
    write_run(tmp_path / "s3", 3, before, after)
    res = demo_seeds.seed_result(tmp_path / "s3")
    assert list(res["caps"]) == ["96", "192"]  # by cap, numerically
    assert list(res["caps"]["192"])[0] == demo_seeds.HEADLINE == "revise_after_refuted"
    c = res["caps"]["192"]["accuracy"]
    se = math.sqrt((0.25**2 * 2) / 3 / 4)
    assert c["change"] == pytest.approx(0.25) and c["band"] == pytest.approx(2 * se)
    assert c["above"] is True and c["far"] is False and c["n"] == 4 and c["samples"] == 8
    assert c["before"] == pytest.approx(0.3125) and c["after"] == pytest.approx(0.5625)
    h = res["caps"]["192"]["revise_after_refuted"]
    assert h["n"] == 3 and h["change"] == pytest.approx(0.5) and h["band"] == pytest.approx(0.0)
    assert h["far"] is True  # a change with no spread is infinitely many bands
    assert res["caps"]["96"]["accuracy"]["change"] == pytest.approx(0.0)
    assert res["caps"]["96"]["accuracy"]["above"] is False


def test_unfinished_run_dir_reads_as_none(tmp_path):
    assert demo_seeds.seed_result(tmp_path / "missing") is None
    write_run(tmp_path / "s0", 0, {"192": cell([0.0, 1.0])}, None)  # killed before the evaluation after
    assert demo_seeds.seed_result(tmp_path / "s0") is None


def test_summary_over_seeds_and_resuming_without_training(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    for seed, gain in ((0, 0.5), (1, 0.0), (2, 0.25)):
        write_run(out / f"s{seed}", seed, {"192": cell([0.0, 0.25, 0.5], [0.5, 0.25, 0.0])},
                  {"192": cell([gain, 0.25 + gain, 0.5 + gain], [0.5 + gain, 0.25 + gain, gain])})
    recorded = {"before": 0.2, "after": 0.3, "change": 0.1, "band": 0.05, "ratio": 2.0, "above": True,
                "far": False, "n": 3, "samples": 8}
    (out / "results.jsonl").write_text(json.dumps({"config": "x", "seed": 2, "wall_s": 200.0, "cpu": "cpu A",
                                                   "commit": "abc", "caps": {"192": {
                                                       "revise_after_refuted": recorded, "accuracy": recorded}}})
                                       + "\n")

    def no_training(*a, **k):
        raise AssertionError("a finished or recorded seed must not run again")

    monkeypatch.setattr(demo_seeds, "run_demo", no_training)
    assert demo_seeds.main(["--out", str(out), "--seeds", "0-2", "--name", "x"]) == 0
    recs = demo_seeds.load_results(out / "results.jsonl")
    assert sorted(recs) == [0, 1, 2]
    assert recs[2]["caps"]["192"]["accuracy"]["change"] == 0.1  # the recorded line, not recomputed
    assert recs[0]["caps"]["192"]["accuracy"]["above"] is True  # change 0.5 with zero spread
    assert recs[1]["caps"]["192"]["accuracy"]["above"] is False  # change 0 is never above
    assert recs[0]["cpu"] and recs[0]["commit"]  # every new row names the machine and the commit
    summary = json.loads((out / "summary.json").read_text())
    acc = summary["caps"]["192"]["accuracy"]
    assert (acc["seeds"], acc["above"], acc["far"]) == (3, 2, 1)
    assert acc["change_median"] == pytest.approx(0.1) and acc["change_max"] == pytest.approx(0.5)
    assert summary["headline"] == "revise_after_refuted" and "cpu A @ abc" in summary["machines"]
    rows = (out / "results.csv").read_text().splitlines()
    assert rows[0].startswith("config,seed,cap,metric") and rows[0].endswith("cpu,commit")
    assert len(rows) == 1 + 4 + 4 + 2  # seeds 0 and 1: four metrics each; the recorded seed 2: two


def test_stop_after_failures_runs_no_further_seed(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    for seed in (0, 1):  # two seeds with no change: the headline is not 3x its band
        write_run(out / f"s{seed}", seed, {"192": cell([0.0, 0.5])}, {"192": cell([0.0, 0.5])})

    def no_training(*a, **k):
        raise AssertionError("the sweep should have stopped")

    monkeypatch.setattr(demo_seeds, "run_demo", no_training)
    assert demo_seeds.main(["--out", str(out), "--seeds", "0-9", "--stop-after-failures", "2"]) == 0
    assert sorted(demo_seeds.load_results(out / "results.jsonl")) == [0, 1]
    assert json.loads((out / "summary.json").read_text())["caps"]["192"]["revise_after_refuted"]["far"] == 0
