"""The tables and shared constants of the learning comparison, imported by ``compare_learning.py`` (which prints
them) and ``results_page.py`` (which writes them into docs/results.md), and by ``costs.py``.

Run either script as ``python bench/<script>.py``: the bench directory is then on ``sys.path`` and this module
imports as ``tables``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

BASELINE = "outcome_grpo"
"""The recipe every other is compared against (token efficiency, accuracy differences)."""
INITIAL = "initial"
"""Pseudo-recipe: the untrained policy, evaluated like a trained one."""
TARGET_RATIO = 2 / 3
"""Target (docs/method.md §7): reach the baseline's accuracy with <= 2/3 of its training tokens."""
CONTINUATION = "<revise>"
"""Budget-forcing continuation for the tag format of the built-in task."""
MARGIN = 0.03
"""The precision asked of the comparison: the 95% CI of a paired difference dense − outcome within ±MARGIN (the
issue asks it of accuracy at C; the verdict table applies it to every budget and to regret at every C0)."""


def fmt_iv(iv: dict[str, float], digits: int = 3, pct: bool = False) -> str:
    """``0.250 [0.180, 0.320]`` (no bracket when the CI is undefined; ``-`` when there is no value)."""
    k = 100.0 if pct else 1.0
    m = iv.get("mean", math.nan)
    if m is None or not math.isfinite(m):
        return "-"
    s = f"{m * k:.{digits}f}"
    lo, hi = iv.get("low", math.nan), iv.get("high", math.nan)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        s += f" [{lo * k:.{digits}f}, {hi * k:.{digits}f}]"
    return s


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def accuracy_table(agg: dict[str, Any]) -> str:
    """Held-out pass@1 at C/2 and C after training (as evaluated during training: sampled with the default
    settings), with the test-time tokens and Δ vs baseline."""
    cap = str(agg["cap"])
    budgets = sorted({b for r in agg["per_recipe"].values() for b in r["accuracy"]}, key=int)
    header = ["recipe", "seeds", *[f"accuracy @ {b}" for b in budgets], f"Δ vs {INITIAL} @ {cap}",
              f"Δ vs {BASELINE} @ {cap}", f"test tokens @ {cap}", f"episodes / trace @ {cap}",
              f"cut by the cap @ {cap}", f"verification acc. @ {cap}"]
    rows = []
    for name, r in agg["per_recipe"].items():
        rows.append([name, len(r["seeds"]), *[fmt_iv(r["accuracy"].get(b, {})) for b in budgets],
                     fmt_iv(r["vs_initial"]) if "vs_initial" in r else "-",
                     fmt_iv(r["vs_baseline"]) if "vs_baseline" in r else "-",
                     fmt_iv(r["test_tokens"].get(cap, {}), 1), fmt_iv(r.get("episodes_per_trace", {}), 2),
                     fmt_iv(r.get("cap_fraction", {}), 2), fmt_iv(r["verification_accuracy"])])
    return markdown_table(header, rows)


def decide(d: dict[str, Any], margin: float = MARGIN, lower_is_better: bool = False, min_seeds: int = 3) -> str:
    """The verdict a paired difference (recipe − baseline, 95% CI over seeds) allows: ``better`` / ``worse`` (the CI
    excludes 0), ``equivalent within ±margin`` (the CI lies inside it), else ``undecided`` (with, when the CI is
    wider than ±margin, the seeds the spread so far would need for ±margin). With fewer than ``min_seeds`` seeds
    (``per_seed``) nothing is decided: an interval from two seeds rests on one degree of freedom.

    >>> decide({"mean": 0.05, "low": 0.02, "high": 0.08})
    'better'
    >>> decide({"mean": 0.0, "low": -0.02, "high": 0.025})
    'equivalent within ±0.03'
    >>> decide({"mean": 0.01, "low": -0.04, "high": 0.06, "seeds_for_margin": 14})
    'undecided (CI ±0.050; ~14 seeds for ±0.03)'
    >>> decide({"mean": 0.05, "low": 0.02, "high": 0.08, "per_seed": {0: 0.04, 1: 0.06}})
    'undecided (2 seeds; at least 3 needed)'
    """
    seeds = len(d.get("per_seed") or {}) if "per_seed" in d else None
    if seeds == 0:
        return "undecided (no paired seeds)"
    if seeds is not None and seeds < min_seeds:
        return f"undecided ({seeds} seed{'s' * (seeds != 1)}; at least {min_seeds} needed)"
    lo, hi = d.get("low", math.nan), d.get("high", math.nan)
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "undecided (no CI)"
    if lo > 0 or hi < 0:
        return ("worse" if lo > 0 else "better") if lower_is_better else ("better" if lo > 0 else "worse")
    if -margin <= lo and hi <= margin:
        return f"equivalent within ±{margin:g}"
    half = (hi - lo) / 2
    need = d.get("seeds_for_margin")
    more = f"; ~{need} seeds for ±{margin:g}" if need and half > margin else ""
    return f"undecided (CI ±{half:.3f}{more})"


def verdict_table(agg: dict[str, Any], margin: float = MARGIN) -> str:
    """Each dense recipe against the baseline, paired by seed: accuracy at every budget and regret at every C0,
    each difference with its 95% CI and the verdict it allows (:func:`decide`)."""
    rows = []
    for name, r in agg["per_recipe"].items():
        if "vs_baseline" not in r:
            continue
        for b, d in sorted(accuracy_differences(agg, r).items(), key=lambda x: int(x[0])):
            rows.append([name, f"accuracy @ {b}", *_powered(d, margin), decide(d, margin)])
        for b, d in sorted(r.get("regret_vs_baseline", {}).items(), key=lambda x: int(x[0])):
            rows.append([name, f"regret @ C0={b} (lower is better)", *_powered(d, margin),
                         decide(d, margin, lower_is_better=True)])
        for b, d in sorted(r.get("regret_exact_vs_baseline", {}).items(), key=lambda x: int(x[0])):
            rows.append([name, f"regret, exact J @ C0={b} (lower is better)", *_powered(d, margin),
                         decide(d, margin, lower_is_better=True)])
        if "learning_auc_vs_baseline" in r:
            d = r["learning_auc_vs_baseline"]
            rows.append([name, "area under the learning curve @ C", *_powered(d, margin), decide(d, margin)])
        tt = (agg.get("test_time_efficiency") or {}).get(name, {}).get("at_matched_tokens")
        if tt:
            rows.append([name, "accuracy at the baseline's test-time tokens", *_powered(tt, margin), decide(tt, margin)])
    return markdown_table(["recipe", f"vs {BASELINE}", "seeds", "paired difference [95% CI]",
                           f"CI ±{margin:g} or narrower?", "verdict"], rows)


def accuracy_differences(agg: dict[str, Any], r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A recipe's paired accuracy differences against the baseline per budget; an aggregate recorded before they
    were kept per budget has only the one at C (``vs_baseline``). Empty for the baseline and ``initial``."""
    if "vs_baseline" not in r:
        return {}
    return r.get("vs_baseline_by_budget") or {str(agg["cap"]): r["vs_baseline"]}


def _powered(d: dict[str, Any], margin: float) -> list[str]:
    """The seeds, the difference with its CI and whether the CI's half-width meets the asked precision."""
    lo, hi = d.get("low"), d.get("high")
    known = lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi)
    ok = "-" if not known else "yes" if (hi - lo) / 2 <= margin else "no"
    return [str(len(d.get("per_seed") or {})) if "per_seed" in d else "-", fmt_iv(d), ok]


def efficiency_table(agg: dict[str, Any]) -> str:
    """Training tokens to reach the baseline's final accuracy, per seed and as a ratio with its CI."""
    te = agg.get("token_efficiency") or {}
    rows = []
    for name, e in te.items():
        per = ", ".join(("" if x["reached"] else ">") + f"{x['tokens']:.0f}" for x in e["seeds"])
        rows.append([name, per, fmt_iv(e["ratio"], 2), fmt_median(e.get("median") or {}),
                     f"{e['n_reached']}/{len(e['seeds'])}", e["verdict"]])
    return markdown_table(["recipe", "tokens to reach target (per seed)", "mean ratio to baseline tokens [95% CI]",
                           "median ratio [95% CI, order statistics]", "seeds reaching", f"≤ {TARGET_RATIO:.2f}?"],
                          rows)


def verdict_interval(e: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """The interval a token-efficiency verdict was decided by (``compare_learning.verdict``): ``("median", …)``
    when the row has an order-statistic interval of the median (6 seeds or more), else ``("mean", …)``.

    >>> verdict_interval({"median": {"mean": 0.8, "low": 0.68, "high": math.inf}, "ratio": {}})[0]
    'median'
    """
    med = e.get("median") or {}
    return ("median", med) if math.isfinite(med.get("low", math.nan)) else ("mean", e["ratio"])


def fmt_median(iv: dict[str, Any]) -> str:
    """``0.80 [0.68, 0.85]``; ``[0.68, ∞)`` when too few seeds reached the target to bound it; ``≥0.80`` when the
    median is only a lower bound (``lower_bound``: a seed that never reached the target lies at or below it);
    ``-`` without one.

    >>> fmt_median({"mean": 0.8, "low": 0.68, "high": math.inf})
    '0.80 [0.68, ∞)'
    >>> fmt_median({"mean": 0.61, "low": math.nan, "high": math.nan, "lower_bound": True})
    '≥0.61'
    """
    m, lo, hi = (iv.get(k, math.nan) for k in ("mean", "low", "high"))
    if m is None or not math.isfinite(m):
        return "-"
    mid = ("≥" if iv.get("lower_bound") else "") + f"{m:.2f}"
    if lo is None or not math.isfinite(lo):
        return mid
    return f"{mid} [{lo:.2f}, " + ("∞)" if math.isinf(hi) else f"{hi:.2f}]")


def forcing_table(agg: dict[str, Any]) -> str:
    """Greedy vs budget-forced accuracy (and thinking tokens) at C and 2C, plus normalised regret."""
    header, rows = ["recipe"], []
    cols: list[tuple[str, str]] = []
    for r in agg["per_recipe"].values():
        for strat, cells in r["forcing"].items():
            for b in cells:
                if (strat, b) not in cols:
                    cols.append((strat, b))
    cols.sort(key=lambda c: (int(c[1]), c[0] != "greedy"))
    regret_b = sorted({b for r in agg["per_recipe"].values() for b in r["regret"]}, key=int)
    header += [f"{s} @ {b}: acc. (tokens)" for s, b in cols] + [f"regret @ {b}" for b in regret_b]
    for name, r in agg["per_recipe"].items():
        row = [name]
        for s, b in cols:
            c = r["forcing"].get(s, {}).get(b)
            row.append("-" if c is None else f"{fmt_iv(c['accuracy'])} ({c['tokens']['mean']:.1f})")
        row += [fmt_iv(r["regret"].get(b, {})) for b in regret_b]
        rows.append(row)
    return markdown_table(header, rows)


def tokens_curve_table(agg: dict[str, Any]) -> str:
    """Accuracy against test-time tokens: sampled held-out accuracy [95% CI] (mean thinking tokens) at each test
    budget, per recipe."""
    budgets = sorted({b for r in agg["per_recipe"].values() for b in r.get("test_time", {})}, key=int)
    rows = []
    for name, r in agg["per_recipe"].items():
        tt = r.get("test_time", {})
        rows.append([name, len(r["seeds"]), *[f"{fmt_iv(tt[b]['accuracy'])} ({tt[b]['tokens']['mean']:.1f})"
                                              if b in tt else "-" for b in budgets]])
    return markdown_table(["recipe", "seeds", *[f"budget {b}: accuracy (tokens)" for b in budgets]], rows)


def tokens_efficiency_table(agg: dict[str, Any], margin: float = MARGIN) -> str:
    """Per recipe against the baseline at C: the accuracy at the baseline's test-time tokens minus the baseline's
    (paired, the verdict) and the test-time tokens needed to reach the baseline's accuracy, as a ratio to its
    tokens (``>`` marks a seed that never reached it: censored at its largest tokens)."""
    rows = []
    for name, e in (agg.get("test_time_efficiency") or {}).items():
        d = e.get("at_matched_tokens")
        per = ", ".join(("" if x["reached"] else ">") + f"{x['ratio']:.2f}" for x in e["seeds"])
        rows.append([name, len(e["seeds"]), fmt_iv(d) if d else "-", decide(d, margin) if d else "(baseline)", per,
                     fmt_median(e.get("median") or {}), f"{e['n_reached']}/{len(e['seeds'])}"])
    return markdown_table(["recipe", "seeds", f"Δ accuracy at {BASELINE}'s tokens [95% CI]", "verdict",
                           "tokens to reach its accuracy / its tokens (per seed)", "median ratio [95% CI]",
                           "seeds reaching"], rows)


def calibration_table(agg: dict[str, Any]) -> str:
    """μ's calibration on each recipe's final policy (greedy held-out traces, Monte Carlo Ĵ), over seeds."""
    rows = []
    for name, r in agg["per_recipe"].items():
        c = r.get("calibration")
        if c:
            rows.append([name, c["n"], fmt_iv(c["correlation"]), fmt_iv(c["verify_after_correct"]),
                         f"{c['informative']}/{c['n']}"])
    return markdown_table(["recipe", "seeds", "corr(Ĵ_last, outcome) [95% CI]",
                           "verify after a correct attempt: mean ΔĴ [95% CI]", "informative"], rows)


def learning_auc_table(agg: dict[str, Any], margin: float = MARGIN) -> str:
    """The area under each recipe's held-out learning curve at C (mean accuracy over training) and its paired
    difference from the baseline's."""
    rows = []
    for name, r in agg["per_recipe"].items():
        if "learning_auc" in r:
            d = r.get("learning_auc_vs_baseline")
            rows.append([name, fmt_iv(r["learning_auc"]), fmt_iv(d) if d else "-",
                         decide(d, margin) if d else "-"])
    return markdown_table(["recipe", "area under the curve @ C [95% CI]", f"Δ vs {BASELINE} [95% CI]", "verdict"],
                          rows)
