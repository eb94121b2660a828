"""`make demo` (metarl.demo): the paired noise band, and the whole path on a random tiny model."""
from __future__ import annotations

import json
import math

import pytest

from metarl.demo import HEADLINE, changes, main, paired_delta


def test_paired_delta_by_hand():
    mean, se = paired_delta([0.0, 0.5, 1.0, 0.0], [1.0, 0.5, 1.0, 0.5])
    # differences 1, 0, 0, 0.5: mean 0.375, sample variance 0.229167, se = sqrt(var / 4)
    assert mean == pytest.approx(0.375)
    assert se == pytest.approx(math.sqrt((0.625**2 + 0.375**2 * 2 + 0.125**2) / 3 / 4))


def test_demo_end_to_end_on_a_random_tiny_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["model=random-tiny", "trainer.max_steps=1", "trainer.per_device_train_batch_size=8",
               "budget.cap=16", "task.n_test=4", "evaluate.n=4", "evaluate.samples=2", "evaluate.budgets=[8]"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "no warm start" in out and "report failed" not in out
    assert "pass@1 = mean correctness of 2 samples per problem at temperature 1.0" in out
    for cap in (8, 16):
        assert f"cap {cap}: what training changed" in out
    assert "accuracy (pass@1)" in out and "episodes per trace" in out and "x the band" in out
    run_dir = next((tmp_path / "runs" / "demo").iterdir())
    assert (run_dir / "summary.json").exists() and (run_dir / "report" / "report.md").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    for phase in ("before", "after"):  # per question, what the paired changes are computed from
        b = summary[phase]["16"]["behaviour"]
        assert set(b) == {"episodes", "verify_acc", "revise_after_refuted"}
        assert all(len(v) == 4 for v in b.values())


def test_changes_pair_only_questions_defined_in_both_phases():
    before = {"correct": [0.0, 0.5, 0.5], "behaviour": {"episodes": [2.0, 2.0, 4.0], "verify_acc": [0.5, 0.5, None],
                                                       "revise_after_refuted": [0.0, None, 0.5]}}
    after = {"correct": [0.5, 0.5, 1.0], "behaviour": {"episodes": [4.0, 3.0, 5.0], "verify_acc": [1.0, 0.5, 1.0],
                                                      "revise_after_refuted": [1.0, 1.0, None]}}
    c = changes(before, after)
    assert list(c)[0] == HEADLINE  # the headline first
    assert c["revise_after_refuted"]["n"] == 1 and c["revise_after_refuted"]["change"] == 1.0
    assert c["revise_after_refuted"]["ratio"] == math.inf  # one question: no spread
    assert c["verify_acc"]["n"] == 2 and c["verify_acc"]["change"] == pytest.approx(0.25)
    e = c["episodes"]  # differences 2, 1, 1: mean 4/3, sd 1/sqrt(3), se 1/3
    assert e["change"] == pytest.approx(4 / 3) and e["band"] == pytest.approx(2 / 3) and e["ratio"] == pytest.approx(2)
    assert c["accuracy"]["before"] == pytest.approx(1 / 3) and c["accuracy"]["after"] == pytest.approx(2 / 3)
