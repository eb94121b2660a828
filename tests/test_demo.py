"""`make demo` (metarl.demo): the paired noise band, and the whole path on a random tiny model."""
from __future__ import annotations

import math

import pytest

from metarl.demo import main, paired_delta


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
        assert f"cap {cap}: accuracy change" in out and "noise band" in out
    run_dir = next((tmp_path / "runs" / "demo").iterdir())
    assert (run_dir / "summary.json").exists() and (run_dir / "report" / "report.md").exists()
