"""Aggregation of the learning comparison (bench/compare_learning.py, bench/results_page.py) on fabricated runs.

Token efficiency (interpolated first crossing of the baseline's final accuracy), confidence intervals over
seeds and over questions, the verdict on the 2/3 target, the markdown tables and the results page.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import compare_learning as cl  # noqa: E402

CAP = 96


def job(recipe: str, seed: int, curve: list[tuple[float, float]], correct: list[float], *, half: list[float] | None = None,
        regret: list[float] | None = None, verif: float | None = 0.5, forcing: dict | None = None) -> dict:
    """A fabricated job.json: learning curve at C as (train_tokens, accuracy); the last point is the final."""
    pts = [{"step": 10 * i, "train_tokens": float(t), "accuracy": a, "tokens": 80.0, "verification_accuracy": verif}
           for i, (t, a) in enumerate(curve)]
    after = {str(CAP): {"accuracy": sum(correct) / len(correct), "correct": correct, "tokens": 70.0 + seed,
                        "verification_accuracy": verif}}
    if half is not None:
        after[str(CAP // 2)] = {"accuracy": sum(half) / len(half), "correct": half, "tokens": 40.0,
                                "verification_accuracy": verif}
    return {"recipe": recipe, "seed": seed, "cap": CAP, "steps": 10 * (len(curve) - 1), "train_tokens": curve[-1][0],
            "curve": {str(CAP): pts}, "after": after, "forcing": forcing or {},
            "regret": {"per_question": {str(CAP): regret or [0.5, 0.5]}}}


# ----------------------------------------------------------------------------------------- tokens_to_reach


def test_tokens_to_reach_interpolates_the_first_crossing():
    pts = [(0, 0.10), (100, 0.30), (200, 0.50), (300, 0.20), (400, 0.60)]
    assert cl.tokens_to_reach(pts, 0.40) == pytest.approx(150.0)  # between (100, .3) and (200, .5)
    assert cl.tokens_to_reach(pts, 0.55) == pytest.approx(387.5)  # (300, .2) -> (400, .6): 300 + .35/.4*100
    assert cl.tokens_to_reach(pts, 0.30) == 100.0  # exactly on a point
    assert cl.tokens_to_reach(pts, 0.05) == 0.0  # the start already meets it
    assert cl.tokens_to_reach(pts, 0.70) is None  # never reached
    assert cl.tokens_to_reach(list(reversed(pts)), 0.40) == pytest.approx(150.0)  # order of the input is irrelevant


# ----------------------------------------------------------------------------------------- intervals


def test_interval_over_seeds_is_a_t_interval_of_seed_means():
    iv = cl.interval([[1, 0, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]])  # seed means 0.5, 0.75, 1.0
    # mean 0.75, sd 0.25, t_{0.975, 2} = 4.302653: half width 4.302653 * 0.25 / sqrt(3) = 0.621034
    assert iv.mean == pytest.approx(0.75)
    assert iv.low == pytest.approx(0.75 - 0.621034, abs=1e-5)
    assert iv.high == pytest.approx(0.75 + 0.621034, abs=1e-5)
    assert iv.n == 3


def test_interval_of_one_seed_bootstraps_questions_and_ignores_missing():
    iv = cl.interval([[1, 0, 1, 1, 0, 1, 1, 1]])
    assert iv.mean == pytest.approx(0.75) and iv.n == 8
    assert 0.0 <= iv.low < 0.75 < iv.high <= 1.0
    assert cl.interval([[None], [0.4], [0.6]]).mean == pytest.approx(0.5)  # a seed without a value is skipped
    assert math.isnan(cl.interval([[None]]).mean)


# ----------------------------------------------------------------------------------------- token efficiency


def fabricated_jobs() -> list[dict]:
    """Baseline ends at 0.50 (seed 0), 0.40 (seed 1), 0.60 (seed 2) after 1000 tokens; obj1 gets there early."""
    jobs = []
    finals = {0: 0.50, 1: 0.40, 2: 0.60}
    for seed, f in finals.items():
        base_correct = [1.0] * int(f * 10) + [0.0] * (10 - int(f * 10))
        jobs.append(job("outcome_grpo", seed, [(0, 0.2), (500, 0.3), (1000, f)], base_correct, half=base_correct,
                        regret=[0.6, 0.7]))
    # obj1: crosses 0.5 at 250 (seed 0), 0.4 at 200 (seed 1: (0,.2)->(400,.6)), 0.6 at 400 (seed 1 curve)
    jobs.append(job("obj1_verify", 0, [(0, 0.2), (200, 0.44), (400, 0.68), (1000, 0.7)], [1.0] * 7 + [0.0] * 3,
                    regret=[0.3, 0.4]))
    jobs.append(job("obj1_verify", 1, [(0, 0.2), (400, 0.6), (1000, 0.6)], [1.0] * 6 + [0.0] * 4, regret=[0.3, 0.5]))
    jobs.append(job("obj1_verify", 2, [(0, 0.2), (200, 0.4), (400, 0.6), (1100, 0.7)], [1.0] * 7 + [0.0] * 3,
                    regret=[0.4, 0.4]))
    # obj2: never reaches seed 0's 0.5 (censored at its 1200 tokens), reaches the others late
    jobs.append(job("obj2_mc_progress", 0, [(0, 0.2), (600, 0.3), (1200, 0.45)], [1.0] * 4 + [0.0] * 6))
    jobs.append(job("obj2_mc_progress", 1, [(0, 0.2), (1000, 0.4)], [1.0] * 4 + [0.0] * 6))
    jobs.append(job("obj2_mc_progress", 2, [(0, 0.2), (1000, 0.6)], [1.0] * 6 + [0.0] * 4))
    jobs.append(job(cl.INITIAL, 0, [(0, 0.2)], [1.0] * 2 + [0.0] * 8))
    return jobs


def test_token_efficiency_per_seed_and_verdicts():
    te = cl.token_efficiency(fabricated_jobs(), CAP)
    obj1 = {x["seed"]: x for x in te["obj1_verify"]["seeds"]}
    assert obj1[0]["target_accuracy"] == pytest.approx(0.5)
    assert obj1[0]["tokens"] == pytest.approx(250.0)  # 200 + (0.5-0.44)/(0.68-0.44)*200
    assert obj1[1]["tokens"] == pytest.approx(200.0)  # 0 + (0.4-0.2)/(0.6-0.2)*400
    assert obj1[2]["tokens"] == pytest.approx(400.0)
    ratios = [0.25, 0.20, 0.40]
    assert [obj1[s]["ratio"] for s in (0, 1, 2)] == pytest.approx(ratios)
    r = te["obj1_verify"]["ratio"]
    half = 4.302653 * math.sqrt(0.065 / 6) / math.sqrt(3)  # sd of (.25, .2, .4): sqrt(0.065/6), mean 0.2833
    assert r["mean"] == pytest.approx(sum(ratios) / 3) and r["high"] == pytest.approx(sum(ratios) / 3 + half, abs=1e-5)
    assert te["obj1_verify"]["n_reached"] == 3 and te["obj1_verify"]["verdict"] == "meets"

    obj2 = {x["seed"]: x for x in te["obj2_mc_progress"]["seeds"]}
    assert not obj2[0]["reached"] and obj2[0]["tokens"] == 1200.0 and obj2[0]["ratio"] == pytest.approx(1.2)
    assert obj2[1]["ratio"] == pytest.approx(1.0) and obj2[2]["ratio"] == pytest.approx(1.0)
    assert te["obj2_mc_progress"]["n_reached"] == 2
    assert te["obj2_mc_progress"]["verdict"] == "misses"  # CI of (1.2, 1, 1) lies above 2/3

    base = {x["seed"]: x for x in te["outcome_grpo"]["seeds"]}
    assert base[0]["tokens"] == pytest.approx(1000.0) and base[1]["tokens"] == pytest.approx(1000.0)
    assert cl.INITIAL not in te


def test_verdict_needs_a_ci_and_every_seed():
    iv = cl.Interval(0.3, 0.1, 0.5, 3)
    assert cl.verdict([0.3, 0.2, 0.4], [True, True, True], iv) == "meets"
    assert cl.verdict([0.3, 0.2, 0.4], [True, False, True], iv) == "inconclusive"  # a seed never got there
    assert cl.verdict([0.5], [True], cl.Interval(0.5, math.nan, math.nan, 1)) == "inconclusive"  # one seed: no CI
    assert cl.verdict([0.5, 0.9], [True, True], cl.Interval(0.7, 0.2, 1.2, 2)) == "inconclusive"  # CI holds 2/3
    assert cl.verdict([], [], cl.Interval(math.nan, math.nan, math.nan, 0)) == "inconclusive"


def test_verdict_from_the_median_interval_with_censored_seeds():
    # 9 seeds, 7 never reached the target (lower bounds): the mean's CI of the bounds holds 2/3, the median's lies
    # above it (its lower end is x_(2) = 0.68), so the recipe misses; the numbers are a likelihood row of a run
    ratios = [0.81, 0.16, 0.68, 0.80, 0.80, 0.81, 0.75, 0.85, 0.79]
    reached = [False, True, True, False, False, False, False, False, False]
    ci, med = cl.mean_ci(ratios), cl.median_ci(ratios, reached)
    assert ci.low < cl.TARGET_RATIO < ci.high and med.low == pytest.approx(0.68)
    assert cl.verdict(ratios, reached, ci) == "inconclusive"
    assert cl.verdict(ratios, reached, ci, median=med) == "misses"
    # every seed censored below 2/3 (short runs that never got there): nothing decides it
    short = [0.64, 0.64, 0.63, 0.66, 0.62, 0.67, 0.66, 0.59, 0.63]
    m = cl.median_ci(short, [False] * 9)
    assert math.isinf(m.high) and cl.verdict(short, [False] * 9, cl.mean_ci(short), median=m) == "inconclusive"
    # 9 seeds that all reached early: the median's upper end x_(8) is below 2/3
    fast = [0.1, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5, 0.9]
    m = cl.median_ci(fast, [True] * 9)
    assert m.high == 0.5 and cl.verdict(fast, [True] * 9, cl.mean_ci(fast), median=m) == "meets"
    # fewer than 6 seeds: no median interval, the mean's rule decides
    three = cl.median_ci([0.3, 0.2, 0.4])
    assert cl.verdict([0.3, 0.2, 0.4], [True] * 3, cl.Interval(0.3, 0.1, 0.5, 3), median=three) == "meets"


# ----------------------------------------------------------------------------------------- aggregate and tables


def test_aggregate_paired_difference_and_tables():
    agg = cl.aggregate(fabricated_jobs(), CAP)
    assert agg["recipes"][0] == cl.INITIAL
    pr = agg["per_recipe"]
    base = pr["outcome_grpo"]["accuracy"][str(CAP)]
    assert base["mean"] == pytest.approx(0.5) and base["n"] == 3
    # obj1 - baseline per seed: .7-.5, .6-.4, .7-.6 = .2, .2, .1 -> mean .1667, sd .0577
    d = pr["obj1_verify"]["vs_baseline"]
    assert d["mean"] == pytest.approx(0.5 / 3)
    assert d["high"] - d["mean"] == pytest.approx(4.302653 * 0.0577350 / math.sqrt(3), abs=1e-5)
    assert pr["obj1_verify"]["regret"][str(CAP)]["mean"] == pytest.approx((0.35 + 0.4 + 0.4) / 3)
    assert pr["outcome_grpo"]["test_tokens"][str(CAP)]["mean"] == pytest.approx(71.0)  # 70 + seed, seeds 0..2
    assert "vs_baseline" not in pr["outcome_grpo"] and "vs_baseline" not in pr[cl.INITIAL]
    # against the untrained policy (only seed 0 has an initial job: bootstrap over its 10 paired questions)
    v = pr["obj1_verify"]["vs_initial"]
    assert v["mean"] == pytest.approx(0.7 - 0.2) and v["low"] > 0  # 5 of 10 questions gained, none lost
    assert "vs_initial" not in pr[cl.INITIAL]

    table = cl.accuracy_table(agg)
    lines = table.splitlines()
    assert lines[0].startswith("| recipe | seeds | accuracy @ 48 | accuracy @ 96 |")
    row = next(line for line in lines if line.startswith("| outcome_grpo |"))
    ci = pr["outcome_grpo"]["accuracy"][str(CAP)]
    assert f"0.500 [{ci['low']:.3f}, {ci['high']:.3f}]" in row
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    eff = cl.efficiency_table(agg)
    assert "| obj2_mc_progress | >1200, 1000, 1000 |" in eff and "| 2/3 | misses |" in eff
    assert "| obj1_verify | 250, 200, 400 |" in eff and "meets" in eff


def test_fmt_iv():
    assert cl.fmt_iv({"mean": 0.25, "low": 0.1, "high": 0.4}) == "0.250 [0.100, 0.400]"
    assert cl.fmt_iv({"mean": 0.25, "low": math.nan, "high": math.nan}) == "0.250"
    assert cl.fmt_iv({}) == "-"


def tables_fmt_median_of(agg, recipe):
    med = agg["token_efficiency"][recipe]["median"]
    assert math.isnan(med["low"])
    return tables_fmt(med)


def test_median_cell_formats():
    import tables

    assert tables.fmt_median({"mean": 0.8, "low": 0.68, "high": math.inf}) == "0.80 [0.68, ∞)"
    assert tables.fmt_median({"mean": 0.4, "low": 0.3, "high": 0.5}) == "0.40 [0.30, 0.50]"
    assert tables.fmt_median({"mean": 0.4, "low": math.nan, "high": math.nan}) == "0.40"
    assert tables.fmt_median({}) == "-"


def test_results_page_from_a_fabricated_output_dir(tmp_path):
    import results_page

    jobs = fabricated_jobs()
    jobs[0]["machine"], jobs[0]["commit"] = "Some CPU x2", "abc123"
    forcing = {"greedy": {"96": {"correct": [1, 0], "tokens": [80, 70]}, "192": {"correct": [1, 0], "tokens": [90, 80]}},
               "budget_forcing": {"96": {"correct": [0, 0], "tokens": [96, 96]},
                                  "192": {"correct": [1, 1], "tokens": [190, 192]}}}
    for j in jobs:
        j["forcing"] = forcing
    agg = cl.aggregate(jobs, CAP)
    settings = cl.resolve(cl.Settings(seeds=[0, 1, 2], overrides=["trainer.max_steps=20"]))
    summary = {"settings": cl.asdict(settings),
               "command": f"python bench/compare_learning.py --out X --record {results_page.REPO}/docs/r.json",
               "machine": {"platform": "Linux-test", "processor": "x86_64", "cpu_count": 2, "python": "3.11",
                           "torch": "2.13", "transformers": "5", "trl": "1.16"},
               "wall_seconds": 120.0, "jobs": jobs, "aggregate": json.loads(json.dumps(agg))}
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(summary))
    page = results_page.main([str(out), "--docs", str(tmp_path / "docs")])
    text = page.read_text()
    assert "Linux-test" in text and "seeds: 0, 1, 2" in text
    assert "python bench/compare_learning.py --out X --record docs/r.json\n" in text  # repository paths relative
    # 3 seeds: no order-statistic interval of the median, the efficiency table says so with a bare median
    assert "| mean ratio to baseline tokens [95% CI] | median ratio [95% CI, order statistics] |" in text
    assert f"| {tables_fmt_median_of(agg, 'obj1_verify')} |" in text
    assert "- jobs by CPU: Some CPU x2 (1)\n- jobs by commit: abc123 (1)" in text
    assert "**obj1_verify** reaches the baseline's accuracy with ≤ 2/3" in text
    assert "**obj2_mc_progress** does not reach" in text
    assert "## Dense recipes against outcome GRPO" in text and f"| obj1_verify | accuracy @ {CAP} | 3 | 0.167 [" in text
    # obj2 − baseline at C: -.1, 0, 0: a CI of ±.143, wider than ±0.03, with the seeds that spread would need
    assert "so a difference of that size is not ruled out (about" in text
    assert "setting `conf/setting/compare.yaml`: policy `model=tiny` (task level 2; the default warm start)" in text
    # every seed: greedy 1/2 at C, forced 2/2 at 2C: +0.5 in each of 3 paired seeds
    assert ("Budget forcing to 2C=192 (outcome_grpo) against greedy decoding at C: 1.000 vs 0.500 using 191 vs 75 "
            "thinking tokens; paired by seed +0.500, 95% CI +0.500 to +0.500, better.") in text
    figs = tmp_path / "docs" / "results"
    for name in ("learning_curves", "accuracy_vs_budget", "token_efficiency"):
        assert (figs / f"{name}.png").stat().st_size > 0 and f"({'results'}/{name}.png)" in text
    rows = (figs / "token_efficiency.csv").read_text().splitlines()
    assert rows[0] == "recipe,seed,target_accuracy,tokens,baseline_tokens,ratio,reached"
    assert "obj1_verify,0,0.5,250,1000,0.25,True" in rows
    curve = (figs / "learning_curves.csv").read_text().splitlines()
    assert any(line.startswith("obj1_verify,0,0,0.2,") for line in curve)  # step 0 of every seed at 0 tokens, 0.2


def test_results_page_renders_costs_and_estimators(tmp_path):
    import results_page

    costs = {"command": "python bench/costs.py --out C", "quick": False,
             "train_step": {"settings": {"batch": 16}, "baseline_rss_mb": 500.0,
                            "rows": [{"recipe": "outcome_grpo", "step_seconds": 0.5, "ratio": 1.0, "peak_rss_mb": 600.0},
                                     {"recipe": "obj2_likelihood_progress", "step_seconds": 0.56, "ratio": 1.12,
                                      "peak_rss_mb": 640.0}]},
             "likelihood": {"settings": {}, "forward_s": 0.1, "one_pass_s": 0.126, "cached_s": 0.117, "naive_s": 0.5,
                            "one_pass_over_forward": 1.26, "cached_over_forward": 1.17, "naive_over_one_pass": 3.97},
             "mc": {"settings": {}, "rows": [{"m": 4, "episodes": 8, "reuse": True, "seconds": 1.0, "over_forward": 10.0,
                                              "over_likelihood": 7.9},
                                             {"m": 4, "episodes": 8, "reuse": False, "seconds": 3.0, "over_forward": 30.0,
                                              "over_likelihood": 23.8}]}}
    est_dir = tmp_path / "est"
    est_dir.mkdir()
    (est_dir / "scatter.png").write_bytes(b"png")
    (est_dir / "scatter.csv").write_text("a,b\n")
    est = {"command": "python bench/estimators.py --out E", "quick": False,
           "mc_vs_exact": {"settings": {}, "rows": [{"m": 32, "mean_abs_error": 0.05, "mean_se": 0.07,
                                                     "coverage_2se": 0.95, "n_prefixes": 12, "repeats": 20}]},
           "likelihood_vs_mc": {"settings": {}, "n_traces": 100, "n_episodes": 420, "spearman_delta": 0.41,
                                "spearman_delta_p": 1e-9, "spearman_level": 0.6,
                                "per_kind": {"attempt": {"n": 150, "spearman": 0.5}}},
           "figures": [["Likelihood vs MC progress", "scatter.png", "scatter.csv"]]}
    (tmp_path / "costs.json").write_text(json.dumps(costs))
    (est_dir / "estimators.json").write_text(json.dumps(est))
    text = "\n".join(results_page.costs_section(costs) + results_page.estimators_section(est, "results"))
    assert "| obj2_likelihood_progress | 0.560 | 1.12 | - | - | 640 | 140 |" in text
    assert "| one_pass / forward | 1.26× | ≤ 1.5× |" in text and "| naive / one_pass | 3.97× | ≥ 3× |" in text
    assert "| 4 | 8 | yes | 1.000 | 10.0 | 7.9 |" in text and "| 4 | 8 | no | 3.000 | 30.0 | 23.8 |" in text
    assert "| 32 | 0.0500 | 0.0700 | 0.950 | - | 12 | 20 |" in text
    assert "ΔI 0.410 (p = 1e-09)" in text and "attempt 0.500 (n=150)" in text
    # main(): the sections are picked up from the given files and the estimator figures copied next to the page
    out = tmp_path / "cmp"
    out.mkdir()
    jobs = fabricated_jobs()
    summary = {"settings": cl.asdict(cl.resolve(cl.Settings(seeds=[0, 1, 2], overrides=["trainer.max_steps=20"]))), "command": "x",
               "machine": {"platform": "p", "processor": "x", "cpu_count": 2, "python": "3", "torch": "2",
                           "transformers": "5", "trl": "1"}, "wall_seconds": 1.0, "jobs": jobs,
               "aggregate": json.loads(json.dumps(cl.aggregate(jobs, CAP)))}
    (out / "summary.json").write_text(json.dumps(summary))
    page = results_page.main([str(out), "--docs", str(tmp_path / "docs"), "--costs", str(tmp_path / "costs.json"),
                              "--estimators", str(est_dir / "estimators.json")])
    body = page.read_text()
    assert "## Cost of dense rewards" in body and "## Estimator quality" in body
    assert (tmp_path / "docs" / "results" / "scatter.png").read_bytes() == b"png"


def test_every_job_is_a_recipe_with_the_setting_file(tmp_path):
    """The comparison's sizes live in conf/setting/compare.yaml, not in Python: a job composes the recipe, the
    setting and its identity (name, run directory, seed), and the recorded sizes are what that composes to."""
    from metarl.config import compose

    s = cl.resolve(cl.Settings(overrides=["trainer.max_steps=20"]))
    assert (s.steps, s.cap, s.eval_n, s.eval_every, s.eval_samples, s.batch, s.model) == (20, 192, 100, 15, 4, 64,
                                                                                          "tiny")
    overrides = cl.train_overrides(s, "obj1_verify", 3, tmp_path / "run")
    assert overrides == ["recipe=obj1_verify", "+setting=compare", "name=obj1_verify", f"run_dir={tmp_path / 'run'}",
                         "seed=3", "trainer.max_steps=20"]
    cfg = compose("train", overrides)
    assert (cfg.trainer.max_steps, cfg.budget.cap, cfg.evaluate.budgets, cfg.objective.normalize) == (
        20, 192, [96], "per_kind")  # the setting's sizes over the recipe's own objective
    quick = cl.resolve(cl.Settings(**cl.QUICK))
    assert (quick.steps, quick.eval_n, quick.eval_every, quick.cap) == (6, 24, 3, 192)


# ----------------------------------------------------------------------------------------- power and verdicts


def test_paired_differences_per_budget_and_regret_with_the_seeds_they_need():
    """obj1 − baseline at C: .2, .2, .1 (sd .0577, t_2 CI ±.1434); regret at C: obj1 (.35, .4, .4) − (.65, .65, .65)."""
    agg = cl.aggregate(fabricated_jobs(), CAP)
    r = agg["per_recipe"]["obj1_verify"]
    d = r["vs_baseline_by_budget"][str(CAP)]
    assert d["per_seed"] == pytest.approx({0: 0.2, 1: 0.2, 2: 0.1})
    assert d["high"] - d["mean"] == pytest.approx(4.302653 * 0.0577350 / math.sqrt(3), abs=1e-5)
    # sd .0577: n=9 gives 2.306 * .0577 / 3 = .0444, n=16: 2.131 * .0577 / 4 = .0308, n=17: 2.120 * .0577 / 4.123 = .0297
    assert d["seeds_for_margin"] == 17 == cl.seeds_for_margin([0.2, 0.2, 0.1])
    g = r["regret_vs_baseline"][str(CAP)]
    assert g["per_seed"] == pytest.approx({0: 0.35 - 0.65, 1: 0.4 - 0.65, 2: 0.4 - 0.65})
    assert g["high"] < 0
    assert cl.seeds_for_margin([0.05]) is None and cl.seeds_for_margin([0.0, 1.0], most=10) is None
    # C/2: only obj1's seed-1 run was evaluated there, so the difference is that one pair (bootstrap over questions)
    jobs = fabricated_jobs()
    one = next(j for j in jobs if j["recipe"] == "obj1_verify" and j["seed"] == 1)
    one["after"][str(CAP // 2)] = {"accuracy": 0.6, "correct": [1.0] * 6 + [0.0] * 4, "tokens": 40.0}
    half = cl.aggregate(jobs, CAP)["per_recipe"]["obj1_verify"]["vs_baseline_by_budget"][str(CAP // 2)]
    assert half["per_seed"] == pytest.approx({1: 0.6 - 0.4}) and half["n"] == 10

    table = cl.verdict_table(agg)
    assert f"| obj1_verify | accuracy @ {CAP} | 3 | 0.167 [" in table and "| no | better |" in table  # CI ±.143
    assert f"| obj1_verify | regret @ C0={CAP} (lower is better) | 3 | -0.267 [" in table
    rows = [line for line in table.splitlines() if line.startswith("| obj1_verify | regret")]
    assert rows and rows[0].endswith("| better |")  # lower regret than the baseline is better


def test_decide_words_each_case():
    import tables

    assert tables.decide({"mean": -0.05, "low": -0.08, "high": -0.01}) == "worse"
    assert tables.decide({"mean": -0.05, "low": -0.08, "high": -0.01}, lower_is_better=True) == "better"
    assert tables.decide({"mean": 0.0, "low": -0.03, "high": 0.03}) == "equivalent within ±0.03"
    assert tables.decide({"mean": 0.0, "low": -0.031, "high": 0.02}) == "undecided (CI ±0.026)"
    assert tables.decide({"mean": 0.0, "low": math.nan, "high": math.nan}) == "undecided (no CI)"
    # two seeds decide nothing, however narrow their interval; the CI's half-width within the margin asks no seeds
    assert tables.decide({"mean": 0.001, "low": 0.0009, "high": 0.0011, "per_seed": {0: 0.001, 1: 0.001}}) == \
        "undecided (2 seeds; at least 3 needed)"
    assert tables.decide({"mean": -0.016, "low": -0.044, "high": 0.011, "per_seed": {0: 0, 1: 0, 2: 0},
                          "seeds_for_margin": 3}) == "undecided (CI ±0.027)"


def test_the_long_setting_reaches_the_test_time_evaluation():
    """compare_long trains on level 3 with its own warm start; metarl-eval (which composes its own config) gets the
    same task and warm-start recipe, so the initial policy and the held-out problems are the training run's."""
    from metarl.config import compose
    from metarl.tasks import LEVELS, build_task

    s = cl.resolve(cl.Settings(setting="compare_long"))
    assert (s.steps, s.cap, s.eval_n, s.eval_every) == (100, 192, 180, 25)
    assert s.regret_budgets == [48, 96, 192]
    train = compose("train", cl.train_overrides(s, cl.INITIAL, 0, Path("/tmp/x")))
    assert build_task(train.task.task).level() == LEVELS[3]
    assert dict(train.model.tiny) == {"difficulty": 3, "max_attempts": 10, "p_continue": 0.65}
    ev = compose("eval", [*cl.setting_of(train), "model=tiny"])
    assert ev.task.task == train.task.task and ev.model.tiny == train.model.tiny
    assert build_task(ev.task.task).generate("test", 5, seed=1) == build_task(train.task.task).generate("test", 5, seed=1)
    weird = {"_target_": "a.B", "s": "it's", "n": None, "f": 0.5, "l": [1, True], "b": "a\\b", "e": "a\\",
             "q": "x\\'y", "d": "C:\\dir\\", "i": "${oc.env:HOME}", "sp": "a, b: {c}"}
    from omegaconf import OmegaConf

    back = compose("eval", [f"++model.tiny={cl.hydra_literal(weird)}"]).model.tiny
    assert OmegaConf.to_container(back, resolve=True) == weird  # ${...} stays text, not an interpolation


def test_a_comparison_resumes_with_more_seeds_or_recipes_not_other_sizes(tmp_path):
    s = cl.Settings(seeds=[0, 1], recipes=["outcome_grpo", "obj2_mc_progress", "obj1_verify"])
    assert cl.same_comparison(cl.asdict(s), cl.asdict(cl.Settings(seeds=[0, 1, 2, 3], jobs=1)))
    assert not cl.same_comparison(cl.asdict(s), cl.asdict(cl.Settings(steps=20)))
    assert not cl.same_comparison(cl.asdict(s), cl.asdict(cl.Settings(setting="compare_long")))
    done = cl.job_dir(tmp_path, "outcome_grpo", 0)
    done.mkdir(parents=True)
    (done / "job.json").write_text(json.dumps({"recipe": "outcome_grpo", "seed": 0}))
    todo, finished = cl.plan_jobs(s, tmp_path)
    assert finished == [{"recipe": "outcome_grpo", "seed": 0}]
    # seed by seed, the slow recipe of each seed first: an early stop leaves whole seeds
    assert todo == [("obj2_mc_progress", 0), ("obj1_verify", 0), (cl.INITIAL, 0),
                    ("obj2_mc_progress", 1), ("outcome_grpo", 1), ("obj1_verify", 1), (cl.INITIAL, 1)]


def test_doctests_of_the_comparison_and_its_tables():
    import doctest

    import tables

    for module in (cl, tables):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_one_paired_seed_bootstraps_that_seed_and_old_jobs_with_other_regret_budgets_mix():
    """The only initial job is seed 2's: the one-seed bootstrap pairs it with the recipe's seed-2 run, not with
    the recipe's first job. A job recorded with regret at other budgets (an older comparison extended by a new
    recipe) leaves those budgets out of its own numbers instead of breaking the aggregate."""
    jobs = [job("outcome_grpo", sd, [(0, 0.2), (1000, 0.5)], [1.0] * 5 + [0.0] * 5) for sd in (0, 1, 2)]
    jobs += [job("obj1_verify", 0, [(0, 0.2), (1000, 0.9)], [1.0] * 9 + [0.0]),
             job("obj1_verify", 1, [(0, 0.2), (1000, 0.9)], [1.0] * 9 + [0.0]),
             job("obj1_verify", 2, [(0, 0.2), (1000, 0.3)], [1.0] * 3 + [0.0] * 7),
             job(cl.INITIAL, 2, [(0, 0.2)], [1.0] * 3 + [0.0] * 7)]
    jobs[0]["regret"]["per_question"]["48"] = [0.9, 0.8]  # only this baseline job has regret at C0=48
    agg = cl.aggregate(jobs, CAP)
    v = agg["per_recipe"]["obj1_verify"]["vs_initial"]
    assert v["per_seed"] == {2: 0.0} and v["mean"] == pytest.approx(0.0)  # seed 2: 0.3 - 0.3 (seed 0 would be +0.6)
    base = agg["per_recipe"]["outcome_grpo"]["regret"]
    assert base["48"]["n"] == 2 and base[str(CAP)]["n"] == 3  # one seed's two questions: a bootstrap
    assert "48" not in agg["per_recipe"]["obj1_verify"]["regret"]
    assert agg["per_recipe"]["obj1_verify"]["regret_vs_baseline"][str(CAP)]["per_seed"] == {0: 0.0, 1: 0.0, 2: 0.0}


def test_a_record_file_keeps_finished_jobs_and_gives_back_whole_seeds(tmp_path):
    """--record: every finished job lands in the record (kept outside --out, e.g. committed), and jobs the new run
    does not ask for stay in it. A new output dir reuses a seed from the record only whole (every job it asks for,
    one warm start, none of that seed from another warm start in --out); a record of other sizes is refused."""
    recipes = ["outcome_grpo", "obj1_verify"]
    s = cl.Settings(seeds=[0, 1, 2, 3], recipes=recipes)
    record = tmp_path / "docs" / "record.json"
    jobs = [j for j in fabricated_jobs() if j["recipe"] in recipes]
    jobs += [dict(j, recipe=cl.INITIAL) for j in jobs if j["recipe"] == "outcome_grpo"]
    for j in jobs:
        j["machine"], j["warm_start"] = "Some CPU x2", "aaaa"
    jobs = [j for j in jobs if not (j["seed"] == 1 and j["recipe"] == "obj1_verify")]  # seed 1 is not whole
    next(j for j in jobs if j["seed"] == 2 and j["recipe"] == cl.INITIAL)["warm_start"] = "bbbb"  # two warm starts
    cl.write_record(record, s, jobs)
    assert record.read_text().count("\n") == len(jobs) + 3  # a job a line
    # a later run with fewer seeds replaces its job and keeps the others
    new = dict(next(j for j in jobs if j["seed"] == 0 and j["recipe"] == "outcome_grpo"), seconds=1.0)
    cl.write_record(record, cl.Settings(seeds=[0], recipes=recipes, jobs=1), [new])
    held = json.loads(record.read_text())["jobs"]
    assert len(held) == len(jobs) and new in held and {(j["recipe"], j["seed"]) for j in held} == {
        (j["recipe"], j["seed"]) for j in jobs}
    # only seed 0 is whole and from one warm start: it alone is reused, and the rest runs here
    out = tmp_path / "runs"
    more = cl.Settings(seeds=[0, 1, 2, 3], recipes=recipes)
    assert cl.import_jobs(record, more, out) == 3 and cl.import_jobs(record, more, out) == 0
    todo, done = cl.plan_jobs(more, out)
    assert {j["seed"] for j in done} == {0} and {sd for _, sd in todo} == {1, 2, 3}
    assert all(j["machine"] == "Some CPU x2" for j in done)
    # a seed begun here from another warm start is not completed from the record
    other = tmp_path / "runs2"
    mine = cl.job_dir(other, "outcome_grpo", 0)
    mine.mkdir(parents=True)
    (mine / "job.json").write_text(json.dumps({"recipe": "outcome_grpo", "seed": 0, "warm_start": "cccc"}))
    assert cl.import_jobs(record, more, other) == 0
    with pytest.raises(SystemExit, match="other settings"):
        cl.import_jobs(record, cl.Settings(seeds=[0], steps=7), out)
    # the summary is rewritten whole after every job: what a stopped comparison finished is never lost
    summary = cl.write_summary(more, out, done, "python x", 0.0)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["jobs"] == json.loads(json.dumps(done)) and set(summary["aggregate"]) == set(on_disk["aggregate"])
    assert not (out / "summary.json.tmp").exists()


def test_one_comparison_at_a_time_per_output_dir(tmp_path):
    """A second comparison on a locked output directory is refused (it would train the same jobs into the same
    run directories); the lock goes with the process that holds it."""
    import subprocess

    held = cl.lock_output(tmp_path)
    code = ("import sys; sys.path.insert(0, 'bench'); import compare_learning as cl; from pathlib import Path; "
            f"cl.lock_output(Path({str(tmp_path)!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                       capture_output=True, text=True)
    assert r.returncode != 0 and "is in use by another comparison" in r.stderr
    held.close()
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_sigterm_ends_the_job_processes_too(tmp_path):
    """``kill PID`` of a comparison must not leave its workers training: the handler terminates them."""
    import subprocess
    import time

    code = ("import sys, time, multiprocessing as mp; sys.path.insert(0, 'bench'); import compare_learning as cl\n"
            "if __name__ == '__main__':\n"
            "    cl.stop_workers_on_sigterm()\n"
            "    p = mp.get_context('spawn').Process(target=time.sleep, args=(60,)); p.start()\n"
            f"    open({str(tmp_path / 'child')!r}, 'w').write(str(p.pid)); p.join()\n")
    script = tmp_path / "main.py"
    script.write_text(code)
    proc = subprocess.Popen([sys.executable, str(script)], cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(200):
        if (tmp_path / "child").exists() and (tmp_path / "child").read_text():
            break
        time.sleep(0.05)
    child = int((tmp_path / "child").read_text())
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert "stopped by signal" in err
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError(f"the worker {child} outlived its comparison")


def test_claims_table_renders_and_matches_the_page(tmp_path):
    """docs/results.md carries the claims table exactly as results_page renders docs/results/claims.csv, one row
    per paper (MRT, L1, Snell) with a command and a page that exists; a CSV without a column is refused."""
    import results_page
    lines = results_page.claims_section()
    page = (results_page.REPO / "docs" / "results.md").read_text()
    assert "\n".join(lines) in page
    rows = [ln for ln in lines if ln.startswith("| ") and not ln.startswith("| paper")]
    assert [r.split(" | ")[0][2:].split(" ")[0] for r in rows] == ["MRT", "L1", "Snell"]
    import csv
    for r in csv.DictReader(open(results_page.CLAIMS, newline="")):
        assert (results_page.REPO / "docs" / r["page"]).exists(), r["page"]
        assert r["command"].startswith(("python bench/", "make ")), r["command"]
    bad = tmp_path / "claims.csv"
    bad.write_text("paper,claim\nX,Y\n")
    with pytest.raises(ValueError, match="missing column"):
        results_page.claims_section(bad)


# ----------------------------------------------------------------------------------------- MRT's measures


def _cell(acc: float, tokens: float) -> dict:
    ones = round(acc * 100)
    return {"accuracy": ones / 100, "correct": [1.0] * ones + [0.0] * (100 - ones), "tokens": tokens}


def mrt_jobs() -> list[dict]:
    """Baseline: 0.30 at 50 test tokens (budget C) in every seed; mrt_prefix reaches 0.35+0.01·seed at 32 tokens.
    Learning curves as in :func:`fabricated_jobs`; exact regret and calibration per job."""
    jobs = []
    for seed, f in {0: 0.5, 1: 0.4, 2: 0.6}.items():
        b = job("outcome_grpo", seed, [(0, 0.2), (500, 0.3), (1000, f)], [1.0, 0.0])
        b["test_time"] = {"24": _cell(0.10, 20), "48": _cell(0.20, 35), "72": _cell(0.25, 45), "96": _cell(0.30, 50)}
        b["regret_exact"] = {"per_question": {"96": [0.5, 0.7]}}
        b["calibration"] = {"correlation": 0.9, "verify_after_correct": -0.01, "verdict": "informative"}
        d = 0.01 * seed
        m = job("mrt_prefix", seed, [(0, 0.2), (500, 0.4), (1000, 0.4)], [1.0, 1.0])
        m["test_time"] = {"24": _cell(0.20 + d, 15), "48": _cell(0.30 + d, 25), "72": _cell(0.35 + d, 30),
                          "96": _cell(0.35 + d, 32)}
        m["regret_exact"] = {"per_question": {"96": [0.4, 0.6 - d]}}
        m["calibration"] = {"correlation": 0.7 + d, "verify_after_correct": -0.1, "verdict": "uninformative"}
        jobs += [b, m]
    return jobs


def test_test_time_efficiency_against_hand_computed_values():
    eff = cl.efficiency_at_test_time(mrt_jobs(), CAP)
    e = eff["mrt_prefix"]
    # accuracy at the baseline's 50 tokens: flat beyond 32 tokens, 0.35 + 0.01·seed; minus 0.30
    assert [x["accuracy_at_baseline_tokens"] for x in e["seeds"]] == pytest.approx([0.35, 0.36, 0.37])
    d = e["at_matched_tokens"]
    assert d["per_seed"] == pytest.approx({0: 0.05, 1: 0.06, 2: 0.07})
    half = 4.302653 * 0.01 / math.sqrt(3)  # t_{0.975, 2} · sd / √3
    assert (d["mean"], d["low"], d["high"]) == pytest.approx((0.06, 0.06 - half, 0.06 + half), abs=1e-5)
    # first crossing of 0.30: seed 0 at (25, .30); seed 1 15 + .09/.10·10 = 24; seed 2 15 + .08/.10·10 = 23
    assert [x["ratio"] for x in e["seeds"]] == pytest.approx([0.50, 0.48, 0.46])
    assert e["n_reached"] == 3 and eff["outcome_grpo"]["at_matched_tokens"] is None
    # the baseline against its own target: reached at its own C point (50 tokens) in every seed: ratio 1
    assert [x["ratio"] for x in eff["outcome_grpo"]["seeds"]] == pytest.approx([1.0, 1.0, 1.0])
    # a recipe that never gets there is censored at its largest tokens
    low = [dict(j, test_time={"96": _cell(0.1, 40)}) if j["recipe"] == "mrt_prefix" else j for j in mrt_jobs()]
    e = cl.efficiency_at_test_time(low, CAP)["mrt_prefix"]
    assert [x["reached"] for x in e["seeds"]] == [False] * 3 and e["seeds"][0]["ratio"] == pytest.approx(0.8)
    # ... so its median ratio only bounds the true one from below, and the page says so
    assert e["median"]["lower_bound"] and tables_fmt(e["median"]) == "≥0.80"
    assert not eff["mrt_prefix"]["median"]["lower_bound"] and tables_fmt(eff["mrt_prefix"]["median"]) == "0.48"


def tables_fmt(iv):
    import tables

    return tables.fmt_median(iv)


def test_censored_median_is_a_lower_bound_only_when_a_censored_value_reaches_it():
    iv = cl.median_ci([0.4, 0.5, 0.9], [True, True, False])
    assert iv.mean == 0.5 and not cl.censored_median(iv, [0.4, 0.5, 0.9], [True, True, False])["lower_bound"]
    iv = cl.median_ci([0.4, 0.5, 0.9], [True, False, True])  # the median seed itself never reached the target
    assert cl.censored_median(iv, [0.4, 0.5, 0.9], [True, False, True])["lower_bound"]


def test_accuracy_at_and_learning_auc():
    pts = [(40, 0.1), (80, 0.3), (20, 0.0)]
    assert [cl.accuracy_at(pts, t) for t in (10, 30, 60, 200)] == pytest.approx([0.0, 0.05, 0.2, 0.3])
    with pytest.raises(ValueError):
        cl.accuracy_at([], 1)
    j = job("x", 0, [(0, 0.2), (500, 0.3), (1000, 0.5)], [1.0])  # steps 0, 10, 20
    assert cl.learning_auc(j, CAP) == pytest.approx((0.25 * 10 + 0.4 * 10) / 20)
    assert cl.learning_auc(j, 7) is None  # no curve at that budget


def test_aggregate_has_auc_exact_regret_and_calibration_per_arm():
    agg = cl.aggregate(mrt_jobs(), CAP)
    r = agg["per_recipe"]["mrt_prefix"]
    # AUCs: baseline (0.25 + (0.3 + f)/2)/2 = .325, .300, .350; mrt_prefix (.3 + .4)/2 = .35: diffs .025, .05, 0
    assert r["learning_auc_vs_baseline"]["per_seed"] == pytest.approx({0: 0.025, 1: 0.05, 2: 0.0})
    assert r["learning_auc"]["mean"] == pytest.approx(0.35)
    # exact regret: mrt (0.5 − d/2) − baseline 0.6 = −0.1, −0.105, −0.11
    assert r["regret_exact_vs_baseline"]["96"]["per_seed"] == pytest.approx({0: -0.1, 1: -0.105, 2: -0.11})
    c = r["calibration"]
    assert (c["n"], c["informative"]) == (3, 0) and c["correlation"]["mean"] == pytest.approx(0.71)
    assert agg["per_recipe"]["outcome_grpo"]["calibration"]["informative"] == 3
    assert r["test_time"]["96"]["tokens"]["mean"] == pytest.approx(32.0)
    import tables
    text = tables.verdict_table(agg)
    assert "| mrt_prefix | accuracy at the baseline's test-time tokens | 3 | 0.060 [0.035, 0.085] | yes | better |" in text
    assert "| mrt_prefix | regret, exact J @ C0=96 (lower is better) | 3 |" in text
    assert "| mrt_prefix | 3 | 0.710 [" in tables.calibration_table(agg)


def test_named_results_page_has_the_mrt_sections_and_own_files(tmp_path):
    import results_page

    jobs = mrt_jobs()
    agg = cl.aggregate(jobs, CAP)
    settings = cl.resolve(cl.Settings(seeds=[0, 1, 2], recipes=["outcome_grpo", "mrt_prefix"],
                                      overrides=["trainer.max_steps=20"]))
    summary = {"settings": cl.asdict(settings), "command": "python bench/compare_learning.py --out X",
               "machine": {"platform": "Linux-test", "processor": "x86_64", "cpu_count": 2, "python": "3.11",
                           "torch": "2.13", "transformers": "5", "trl": "1.16"},
               "jobs": jobs, "aggregate": json.loads(json.dumps(agg))}
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(summary))
    page = results_page.main([str(out), "--docs", str(tmp_path / "docs"), "--name", "results_mrt"])
    text = page.read_text()
    assert page.name == "results_mrt.md"
    for head in ("## Test-time token efficiency (as MRT measures it)", "## Training efficiency: area under the "
                 "learning curve", "## μ's calibration on every final policy"):
        assert head in text
    assert "## Token efficiency\n" not in text and "headline claims" not in text
    assert ("- **mrt_prefix** at outcome_grpo's test-time tokens: accuracy difference +0.060, 95% CI +0.035 to "
            "+0.085 — better." in text)
    assert "Arms above outcome GRPO at equal test-time tokens (CI above 0): mrt_prefix." in text
    assert "μ informative on the final policy (seeds): outcome_grpo 3/3, mrt_prefix 0/3." in text
    assert f"python bench/results_page.py {out} --name results_mrt\n" in text
    figs = tmp_path / "docs" / "results"
    assert (figs / "results_mrt_accuracy_vs_test_tokens.png").stat().st_size > 0
    assert "mrt_prefix,96,32,0.36,0.335159,0.384841,3" in (figs / "results_mrt_accuracy_vs_test_tokens.csv").read_text()
    assert not (figs / "summary.csv").exists() and (figs / "results_mrt_summary.csv").exists()
    with pytest.raises(SystemExit):
        results_page.main([str(out), "--docs", str(tmp_path / "docs"), "--name", "../x"])


def test_forcing_budgets_option_replaces_c_and_2c(tmp_path):
    """--forcing-budgets sets the metarl-eval budgets where 2C does not fit the model (mrt_long: C=320, 512
    positions); the default stays C and 2C, and bad values are refused."""
    _, s = cl.parse_args(["--out", str(tmp_path), "--setting", "mrt_long", "--forcing-budgets", "320,440"])
    assert s.forcing_budgets == [320, 440] and s.forcing == [320, 440]
    _, s = cl.parse_args(["--out", str(tmp_path)])
    assert s.forcing_budgets == [s.cap, 2 * s.cap]
    for bad in ("a,b", "0,440", ","):
        with pytest.raises(SystemExit):
            cl.parse_args(["--out", str(tmp_path), "--forcing-budgets", bad])


def test_a_page_of_a_comparison_stopped_inside_a_seed_reports_whole_seeds_only(tmp_path):
    import results_page

    jobs = [j for j in mrt_jobs() if not (j["seed"] == 2 and j["recipe"] == "mrt_prefix")]  # seed 2 unfinished
    settings = cl.resolve(cl.Settings(seeds=[0, 1, 2], recipes=["outcome_grpo", "mrt_prefix"],
                                      overrides=["trainer.max_steps=20"]))
    summary = {"settings": cl.asdict(settings), "command": "python bench/compare_learning.py --out X",
               "machine": {"platform": "Linux-test", "processor": "x86_64", "cpu_count": 2, "python": "3.11",
                           "torch": "2.13", "transformers": "5", "trl": "1.16"},
               "jobs": jobs, "aggregate": json.loads(json.dumps(cl.aggregate(jobs, CAP)))}
    reduced = results_page.whole_seeds(summary)
    assert reduced["settings"]["seeds"] == [0, 1] and reduced["partial"] == {"asked": [0, 1, 2], "left_out": 1}
    assert reduced["aggregate"]["per_recipe"]["outcome_grpo"]["seeds"] == [0, 1]
    full = results_page.whole_seeds(reduced | {"jobs": mrt_jobs(), "settings": cl.asdict(settings)})
    assert full["jobs"] == mrt_jobs()  # nothing to drop
    # ... but the aggregate is this checkout's, even from a summary an older comparison wrote
    assert full["aggregate"] == json.loads(json.dumps(cl.aggregate(mrt_jobs(), CAP)))
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "summary.json").write_text(json.dumps(summary))
    text = results_page.main([str(out), "--docs", str(tmp_path / "docs"), "--name", "results_mrt"]).read_text()
    assert "- **partial: 2 of the 3 seeds asked (0, 1, 2) are finished for every recipe**; 1 finished job(s)" in text
    assert "- seeds: 0, 1;" in text
