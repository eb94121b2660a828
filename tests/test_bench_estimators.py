"""Estimator-quality benchmark (bench/estimators.py) at toy size.

MC Ĵ against exact enumeration: the statistics pass for the real estimator and fail for biased ones
(a sampler at the wrong temperature, a shifted Ĵ). Likelihood against MC: finite rank correlations on
hand-built traces scored by a random tiny model, NaN with a reason when MC progress has no spread.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import estimators as est  # noqa: E402

ROW_KEYS = {"m", "mean_abs_error", "mean_se", "coverage_2se", "n_prefixes", "repeats"}


@pytest.fixture(scope="module")
def toy():
    model, tok = est.toy_model()
    return model, tok, est.toy_traces(tok, n_traces=4, n_episodes=3, seed=0)


def run_exact(toy, ms=(8, 32), repeats=10):
    model, tok, traces = toy
    s = est.ExactSettings(ms=list(ms), repeats=repeats)
    return est.mc_vs_exact(model, tok, traces, est.low_digit_grader, s)


def consistent(row: dict) -> bool:
    """What an unbiased Ĵ with the right spread passes (thresholds far from the expected values)."""
    return row["coverage_2se"] >= 0.8 and row["bias_chi2_p"] > 1e-3 and 0.75 <= row["error_ratio"] <= 1.25


def test_mc_matches_exact_enumeration(toy):
    res = run_exact(toy)
    rows = {r["m"]: r for r in res["rows"]}
    assert set(rows) == {8, 32}
    for r in rows.values():
        assert ROW_KEYS <= set(r)
        assert r["n_prefixes"] == 16 and r["repeats"] == 10
        assert r["mean_se"] == pytest.approx(sum(math.sqrt(j * (1 - j) / r["m"]) for j in res["exact_J"]) / 16)
    assert sum(0.1 < j < 0.9 for j in res["exact_J"]) >= 12  # non-degenerate J: the check has power
    assert consistent(rows[32]), rows[32]
    assert rows[8]["mean_abs_error"] > rows[32]["mean_abs_error"] * 1.4  # error shrinks ~ 1/sqrt(m)


def test_biased_estimators_fail_the_check(toy, monkeypatch):
    class WrongTemperature(est.MCProgress):
        """A sampler that ignores the prover's temperature 0.7 and samples at 1.0."""

        def success_rates(self, traces, engine, *args, **kwargs):
            wrong = est.Engine(engine.backend, dataclasses.replace(engine.prover, temperature=1.0))
            return super().success_rates(traces, wrong, *args, **kwargs)

    class Shifted(est.MCProgress):
        """Ĵ + 0.15, clipped to [0, 1]."""

        def success_rates(self, *args, **kwargs):
            return [[min(1.0, j + 0.15) for j in js] for js in super().success_rates(*args, **kwargs)]

    monkeypatch.setattr(est, "MCProgress", WrongTemperature)
    row = run_exact(toy, ms=(32,))["rows"][0]
    assert row["bias_chi2_p"] < 1e-3 and not consistent(row), row
    monkeypatch.setattr(est, "MCProgress", Shifted)
    row = run_exact(toy, ms=(32,))["rows"][0]
    assert row["coverage_2se"] < 0.8 and not consistent(row), row


def test_error_row_by_hand():
    import numpy as np

    row = est.error_row(np.array([0.5, 0.25]), np.array([[0.5, 0.0], [1.0, 0.25]]), m=4)
    assert row["mean_abs_error"] == pytest.approx((0 + 0.25 + 0.5 + 0) / 4)
    # the estimator's own SE is 0 at Ĵ = 0 and Ĵ = 1: those two draws miss; the true SE covers all four
    assert row["coverage_2se"] == pytest.approx(0.5) and row["coverage_2se_true"] == pytest.approx(1.0)
    assert row["bias"] == pytest.approx(0.0625)
    assert row["mean_se"] == pytest.approx((0.25 + math.sqrt(0.25 * 0.75 / 4)) / 2)
    assert est.binomial_mean_abs_deviation(0.5, 1) == pytest.approx(0.5)
    assert est.binomial_mean_abs_deviation(0.0, 8) == 0.0


def policy_like_traces(tok):
    """Tag-format traces with attempt / verify / revise episodes (the tiny task's shape)."""
    prompt = "Numbers: 5 8 6 7. Target: 15.\n"
    return [est.char_trace(tok, prompt, ["<attempt>5+6</attempt>", "<verify>5+6=11!=15 incorrect</verify>",
                                         "<revise>8+7</revise>", "<verify>8+7=15 correct</verify>"], "8+7",
                           ["attempt", "verify", "revise", "verify"]),
            est.char_trace(tok, prompt, ["<attempt>8+7</attempt>", "<verify>8+7=15 correct</verify>"], "8+7",
                           ["attempt", "verify"]),
            est.char_trace(tok, prompt, ["<attempt>6+7</attempt>", "<revise>7+8</revise>"], "7+8",
                           ["attempt", "revise"])]


def test_likelihood_vs_mc_on_a_random_model(tiny):
    model, tok = tiny
    traces = policy_like_traces(tok)
    s = est.LikelihoodSettings(mc_m=8, mc_max_answer_tokens=2, seed=0)

    def extract(text):  # the scorer's extractor sees suffix + forced text
        return text[len("<answer>"):] or None

    def coin(prediction, answer, prompt):  # ~half of the random model's characters
        return ord(prediction[0]) % 2 == 0

    res = est.likelihood_vs_mc(traces, model, tok, coin, extract, "<answer>", s, stop_strings=["</answer>"])
    assert res["n_traces"] == 3 and res["n_episodes"] == 8 and res["n_levels"] == 11
    for key in ("spearman_delta", "spearman_level"):
        assert -1.0 <= res[key] <= 1.0, (key, res)
    assert 0.0 <= res["spearman_delta_p"] <= 1.0 and res["spearman_delta_reason"] is None
    assert list(res["per_kind"]) == ["attempt", "verify", "revise"]
    assert [v["n"] for v in res["per_kind"].values()] == [3, 3, 2]
    e = res["episodes"][0]
    assert e["delta_L"] == pytest.approx(e["L"] - e["L_prev"]) and e["delta_J"] == e["J"] - e["J_prev"]
    assert e["L"] == traces[0].episodes[0].info["logp"] and e["J"] == traces[0].episodes[0].info["J"]

    never = est.likelihood_vs_mc(traces, model, tok, lambda p, a, q: False, extract, "<answer>", s)
    assert math.isnan(never["spearman_delta"]) and "MC side has no spread" in never["spearman_delta_reason"]
    assert all(math.isnan(v["spearman"]) and v["reason"] for v in never["per_kind"].values())


def test_spearman_edge_cases():
    assert est.spearman([1, 2, 3, 4], [10, 20, 30, 45])["spearman"] == pytest.approx(1.0)
    assert est.spearman([1, 2, 3, 4], [4, 3, 2, 1])["spearman"] == pytest.approx(-1.0)
    few = est.spearman([1, 2], [1, 2])
    assert math.isnan(few["spearman"]) and "only 2 pairs" in few["reason"]
    flat = est.spearman([1, 1, 1], [1, 2, 3])
    assert math.isnan(flat["spearman"]) and "likelihood side" in flat["reason"]


def test_cli_writes_json_csv_and_plot(tmp_path):
    res = est.main(["--out", str(tmp_path), "--quick", "--parts", "exact", "--repeats", "2"])
    data = json.loads((tmp_path / "estimators.json").read_text())
    assert data["quick"] is True and data["command"].startswith("python bench/estimators.py --out")
    assert [r["m"] for r in data["mc_vs_exact"]["rows"]] == [4, 8, 32]
    assert all(ROW_KEYS <= set(r) and r["repeats"] == 2 for r in data["mc_vs_exact"]["rows"])
    assert "likelihood_vs_mc" not in data and res["mc_vs_exact"]["rows"] == data["mc_vs_exact"]["rows"]
    for caption, png, csv in data["figures"]:
        assert caption and (tmp_path / png).stat().st_size > 1000 and (tmp_path / csv).exists()
    with pytest.raises(SystemExit):
        est.main(["--out", str(tmp_path), "--parts", "nothing"])
