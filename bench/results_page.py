"""``docs/results.md`` from a learning comparison's output directory (``bench/compare_learning.py``).

    python bench/results_page.py runs/compare                 # -> docs/results.md, docs/results/*.png|csv
    python bench/results_page.py runs/compare --docs /tmp/docs

The page holds the tables (95% CIs over seeds; one seed: bootstrap over held-out questions), the plots
(PNG with the CSV behind each), the exact commands and seeds, the machine, and a reading generated from
the numbers: a claim is only made where the confidence interval supports it.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tables

from metarl.metrics import Interval, mean_ci

REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------------------------------
# Data behind the plots
# --------------------------------------------------------------------------------------------------


FURTHER_PAGES = (
    "Further result pages: step-level search and compute-optimal selection on the tiny policy,",
    "[results_search.md](results_search.md) (`bench/search_results.py`); the generation engine on SmolLM2, transformers",
    "against vLLM (rollout tokens/s, Monte Carlo prefix reuse, train-step ratios),",
    "[results_engine.md](results_engine.md) (`bench/bench_engine.py`); the SmolLM2 reasoner end to end (R1 format,",
    "MRT's meta-prover, J curves, Obj-1 / Obj-2 training steps), [results_reasoner.md](results_reasoner.md)",
    "(`bench/reasoner_results.py`); the meta-prover's calibration on the built-in policies (Ĵ and exact J against the",
    "outcome) and the credit options side by side on the same traces, [results_calibration.md](results_calibration.md)",
    "(`bench/calibration.py`); L1's length control on the tiny policies, [results_length.md](results_length.md)",
    "(`bench/length_control.py`, `bench/length_results.py`); a setting where MRT predicts a difference (level 3, C=320),",
    "[results_mrt_setting.md](results_mrt_setting.md).",
)
"""Links to the result pages other benchmarks write next to this one."""

CLAIMS = REPO / "docs" / "results" / "claims.csv"
"""Each paper's headline claim and what metarl measured (written by hand from the pages it links)."""


def claims_section(path: Path = CLAIMS) -> list[str]:
    """The table of the papers' headline claims against metarl's measurements, from ``path`` (a CSV with
    columns paper, claim, measured, policy, reproduced, command, page); a missing column is an error."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = ("paper", "claim", "measured", "policy", "reproduced", "command", "page")
    missing = [c for c in need if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; columns are {', '.join(need)}")
    out = ["## The papers' headline claims, measured", "",
           f"What each paper reports, what metarl measured and on which policy (data: [claims.csv](results/{path.name})).",
           "", "| paper | claim | measured | policy | reproduced | command |", "|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["paper"], r["claim"], f"{r['measured']} ([{r['page']}]({r['page']}))", r["policy"],
                 r["reproduced"], f"`{r['command']}`"]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return out + [""]


def curve_by_step(jobs: Sequence[dict[str, Any]], recipe: str, budget: int) -> list[dict[str, Any]]:
    """The learning curve of ``recipe`` at ``budget`` averaged over seeds, step by step (all runs evaluate at the
    same steps): mean training tokens, accuracy mean and 95% CI (t over seeds; one seed: ±1.96 binomial SE)."""
    b = str(budget)
    by: dict[int, list[tuple[float, float]]] = {}
    n_q: dict[int, int] = {}
    for j in jobs:
        if j["recipe"] != recipe:
            continue
        for p in j.get("curve", {}).get(b, []):
            by.setdefault(int(p["step"]), []).append((float(p["train_tokens"]), float(p["accuracy"])))
        n_q[j["seed"]] = len(j.get("after", {}).get(b, {}).get("correct") or []) or 1
    rows = []
    for step in sorted(by):
        toks, accs = zip(*by[step])
        if len(accs) >= 2:
            iv = mean_ci(accs)
        else:
            se = math.sqrt(accs[0] * (1 - accs[0]) / max(next(iter(n_q.values()), 1), 1))
            iv = Interval(accs[0], accs[0] - 1.96 * se, accs[0] + 1.96 * se, 1)
        rows.append({"step": step, "train_tokens": float(np.mean(toks)), "accuracy": iv.mean, "low": iv.low,
                     "high": iv.high, "seeds": len(accs)})
    return rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import csv

    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if isinstance(v, float) and not math.isfinite(v) else
                        (f"{v:.6g}" if isinstance(v, float) else v) for v in r])


def plot_learning_curves(jobs: Sequence[dict[str, Any]], agg: dict[str, Any], out: Path,
                         prefix: str = "") -> tuple[str, str]:
    """Held-out accuracy at C against training tokens, mean over seeds with a 95% band; the baseline's final
    accuracy as a dashed line."""
    plt = _plt()
    cap = agg["cap"]
    recipes = [r for r in agg["recipes"] if r != tables.INITIAL]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    rows = []
    for i, recipe in enumerate(recipes):
        pts = curve_by_step(jobs, recipe, cap)
        if not pts:
            continue
        x = [p["train_tokens"] for p in pts]
        c = plt.get_cmap("tab10").colors[i % 10]
        ax.plot(x, [p["accuracy"] for p in pts], marker="o", ms=3, color=c, label=recipe)
        lo, hi = np.array([p["low"] for p in pts]), np.array([p["high"] for p in pts])
        if np.isfinite(lo).all() and np.isfinite(hi).all():
            ax.fill_between(x, lo, hi, color=c, alpha=0.15, lw=0)
        rows += [[recipe, p["step"], p["train_tokens"], p["accuracy"], p["low"], p["high"], p["seeds"]] for p in pts]
    base = agg["per_recipe"].get(tables.BASELINE, {}).get("accuracy", {}).get(str(cap))
    if base:
        ax.axhline(base["mean"], ls="--", color="gray", lw=1, label=f"{tables.BASELINE} final")
    ax.set(xlabel="training tokens (prompt + completion)", ylabel=f"held-out pass@1 @ C={cap}",
           title="Learning curves (mean over seeds, 95% CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}learning_curves.png", dpi=110)
    plt.close(fig)
    _write_csv(out / f"{prefix}learning_curves.csv", ["recipe", "step", "train_tokens", "accuracy", "ci_low", "ci_high",
                                             "seeds"], rows)
    return f"{prefix}learning_curves.png", f"{prefix}learning_curves.csv"


def plot_budgets(agg: dict[str, Any], out: Path, prefix: str = "") -> tuple[str, str]:
    """Accuracy against the test-time budget: pass@1 as evaluated during training (C/2, C), greedy decoding and
    budget forcing (C, 2C) with metarl-eval; three series per recipe, never mixed in one line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10.5, 4.6))
    rows = []
    for i, (recipe, r) in enumerate(agg["per_recipe"].items()):
        c = plt.get_cmap("tab10").colors[i % 10]
        trained = {int(b): v for b, v in r["accuracy"].items()}
        greedy = {int(b): cell["accuracy"] for b, cell in r["forcing"].get("greedy", {}).items()}
        forced = {int(b): cell["accuracy"] for b, cell in r["forcing"].get("budget_forcing", {}).items()}
        for style, series, name in (("-", trained, "pass@1"), ("--", greedy, "greedy"),
                                    (":", forced, "budget forcing")):
            if not series:
                continue
            bs = sorted(series)
            ax.errorbar(bs, [series[b]["mean"] for b in bs],
                        yerr=_yerr([series[b] for b in bs]), ls=style, marker="o", ms=4, capsize=3, color=c,
                        label=f"{recipe} ({name})")
            rows += [[recipe, name, b, series[b]["mean"], series[b]["low"], series[b]["high"]] for b in bs]
    ax.axvline(agg["cap"], color="gray", lw=1, ls="--")
    ax.set(xlabel="test-time budget (thinking tokens)", ylabel="held-out accuracy",
           title=f"Accuracy vs budget (training cap C={agg['cap']}, dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / f"{prefix}accuracy_vs_budget.png", dpi=110)
    plt.close(fig)
    _write_csv(out / f"{prefix}accuracy_vs_budget.csv", ["recipe", "decoding", "budget", "accuracy", "ci_low", "ci_high"], rows)
    return f"{prefix}accuracy_vs_budget.png", f"{prefix}accuracy_vs_budget.csv"


def _yerr(ivs: Sequence[dict[str, float]]) -> np.ndarray:
    lo = [iv["mean"] - iv["low"] if math.isfinite(iv["low"]) else 0.0 for iv in ivs]
    hi = [iv["high"] - iv["mean"] if math.isfinite(iv["high"]) else 0.0 for iv in ivs]
    return np.array([lo, hi])


def plot_efficiency(agg: dict[str, Any], out: Path, prefix: str = "") -> tuple[str, str] | None:
    """Token-efficiency ratio per recipe with the interval its verdict uses (the median's from 6 seeds on, else
    the mean's), per-seed ratios as dots, against the 2/3 target; an arrow marks an interval open upwards."""
    te = agg.get("token_efficiency")
    if not te:
        return None
    plt = _plt()
    names = list(te)
    ivs = [tables.verdict_interval(te[n])[1] for n in names]
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    xs = np.arange(len(names))
    ax.bar(xs, [iv["mean"] for iv in ivs], yerr=_yerr(ivs), capsize=4,
           color=[plt.get_cmap("tab10").colors[i % 10] for i in range(len(names))], alpha=0.8)
    for i, n in enumerate(names):
        ax.scatter([i] * len(te[n]["seeds"]), [x["ratio"] for x in te[n]["seeds"]], color="k", s=10, zorder=3)
        if math.isinf(ivs[i]["high"]):
            ax.annotate("", xy=(i, ivs[i]["mean"] + 0.3), xytext=(i, ivs[i]["mean"]),
                        arrowprops={"arrowstyle": "->", "color": "k"})
    ax.axhline(tables.TARGET_RATIO, color="red", ls="--", lw=1, label="target 2/3")
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xticks(xs, names, rotation=15, fontsize=8)
    ax.set(ylabel="training tokens / baseline's", title="Tokens to reach the baseline's final accuracy\n"
           "(bar: median or mean, with the verdict's 95% interval)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}token_efficiency.png", dpi=110)
    plt.close(fig)
    rows = [[n, x["seed"], x["target_accuracy"], x["tokens"], x["baseline_tokens"], x["ratio"], x["reached"]]
            for n in names for x in te[n]["seeds"]]
    _write_csv(out / f"{prefix}token_efficiency.csv", ["recipe", "seed", "target_accuracy", "tokens", "baseline_tokens",
                                              "ratio", "reached"], rows)
    return f"{prefix}token_efficiency.png", f"{prefix}token_efficiency.csv"


def plot_test_time(agg: dict[str, Any], out: Path, prefix: str = "") -> tuple[str, str] | None:
    """Held-out accuracy against the test-time thinking tokens spent (sampled, at the test budgets C/4 … C), mean
    over seeds with 95% CIs: MRT's token-efficiency plot."""
    if not any(r.get("test_time") for r in agg["per_recipe"].values()):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    rows = []
    for i, (recipe, r) in enumerate(agg["per_recipe"].items()):
        tt = r.get("test_time") or {}
        bs = sorted(tt, key=int)
        if not bs:
            continue
        x, acc = [tt[b]["tokens"]["mean"] for b in bs], [tt[b]["accuracy"] for b in bs]
        ax.errorbar(x, [a["mean"] for a in acc], yerr=_yerr(acc), marker="o", ms=4, capsize=3,
                    color=plt.get_cmap("tab10").colors[i % 10], label=recipe)
        rows += [[recipe, b, tt[b]["tokens"]["mean"], a["mean"], a["low"], a["high"], a["n"]] for b, a in zip(bs, acc)]
    ax.set(xlabel="test-time thinking tokens spent (mean per sample)", ylabel="held-out accuracy (sampled pass@1)",
           title=f"Accuracy against test-time tokens (budgets C/4 to C={agg['cap']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}accuracy_vs_test_tokens.png", dpi=110)
    plt.close(fig)
    _write_csv(out / f"{prefix}accuracy_vs_test_tokens.csv",
               ["recipe", "budget", "tokens", "accuracy", "ci_low", "ci_high", "seeds"], rows)
    return f"{prefix}accuracy_vs_test_tokens.png", f"{prefix}accuracy_vs_test_tokens.csv"


def write_summary_csv(agg: dict[str, Any], out: Path, prefix: str = "") -> str:
    """Every aggregate number in one long CSV (recipe, metric, budget, mean, CI)."""
    rows = []
    for recipe, r in agg["per_recipe"].items():
        for metric in ("accuracy", "test_tokens", "regret"):
            for b, iv in r[metric].items():
                rows.append([recipe, metric, b, iv["mean"], iv["low"], iv["high"], iv["n"]])
        for strat, cells in r["forcing"].items():
            for b, c in cells.items():
                rows.append([recipe, f"{strat}_accuracy", b, c["accuracy"]["mean"], c["accuracy"]["low"],
                             c["accuracy"]["high"], c["accuracy"]["n"]])
                rows.append([recipe, f"{strat}_tokens", b, c["tokens"]["mean"], c["tokens"]["low"],
                             c["tokens"]["high"], c["tokens"]["n"]])
        v = r["verification_accuracy"]
        rows.append([recipe, "verification_accuracy", agg["cap"], v["mean"], v["low"], v["high"], v["n"]])
        for metric, diffs in (("accuracy_minus_baseline", tables.accuracy_differences(agg, r)),
                              ("regret_minus_baseline", r.get("regret_vs_baseline", {})),
                              ("regret_exact", r.get("regret_exact", {})),
                              ("regret_exact_minus_baseline", r.get("regret_exact_vs_baseline", {}))):
            for b, d in diffs.items():
                rows.append([recipe, metric, b, d["mean"], d["low"], d["high"], d["n"]])
        for b, c in r.get("test_time", {}).items():
            for key in ("accuracy", "tokens"):
                rows.append([recipe, f"test_time_{key}", b, c[key]["mean"], c[key]["low"], c[key]["high"],
                             c[key]["n"]])
        for metric, d in (("learning_auc", r.get("learning_auc")),
                          ("learning_auc_minus_baseline", r.get("learning_auc_vs_baseline")),
                          ("calibration_correlation", (r.get("calibration") or {}).get("correlation")),
                          ("calibration_verify_after_correct",
                           (r.get("calibration") or {}).get("verify_after_correct")),
                          ("accuracy_at_baseline_tokens_minus_baseline",
                           ((agg.get("test_time_efficiency") or {}).get(recipe) or {}).get("at_matched_tokens"))):
            if d:
                rows.append([recipe, metric, agg["cap"], d["mean"], d["low"], d["high"], d["n"]])
    _write_csv(out / f"{prefix}summary.csv", ["recipe", "metric", "budget", "mean", "ci_low", "ci_high", "n"], rows)
    return f"{prefix}summary.csv"


# --------------------------------------------------------------------------------------------------
# The reading
# --------------------------------------------------------------------------------------------------


def reading(agg: dict[str, Any], n_seeds: int) -> list[str]:
    """Sentences generated from the numbers; each claim is worded by what its 95% CI allows."""
    cap = str(agg["cap"])
    pr = agg["per_recipe"]
    lines = []
    if n_seeds < 3:
        lines.append(f"Only {n_seeds} seed(s): docs/method.md §7 asks for at least 3, so no claim below is settled; "
                     "intervals of one seed are bootstraps over held-out questions and ignore training noise.")
    init = pr.get(tables.INITIAL, {}).get("accuracy", {}).get(cap)
    for name, r in pr.items():  # training against the untrained policy, paired by seed
        d = r.get("vs_initial")
        if not init or not d or not math.isfinite(d.get("low", math.nan)):
            continue
        v = tables.decide(d)
        word = {"better": "improves on", "worse": "is below"}.get(v, "is not distinguishable from")
        lines.append(f"{'The outcome-reward baseline' if name == tables.BASELINE else f'**{name}**'} {word} the initial "
                     f"policy at C={cap}: {r['accuracy'][cap]['mean']:.3f} vs {init['mean']:.3f} (paired difference "
                     f"{d['mean']:+.3f}, 95% CI {d['low']:+.3f} to {d['high']:+.3f}).")
    tte = agg.get("test_time_efficiency")
    te = {} if tte else agg.get("token_efficiency") or {}  # a comparison with test-time curves reads those instead
    if tte:
        lines += _test_time_lines(agg)
    bt = te.get(tables.BASELINE)
    if bt and bt["n_trivial"]:
        lines.append(f"In {bt['n_trivial']} of {len(bt['seeds'])} seed(s) the baseline's final accuracy was already "
                     "met by the initial policy (step 0), so 'tokens to reach it' is 0 for every method there: token "
                     "efficiency measures nothing in those seeds.")
    for name, e in te.items():
        if name == tables.BASELINE:
            continue
        kind, iv = tables.verdict_interval(e)
        if kind == "median":
            span = f"median {tables.fmt_median(iv)} (95%, order statistics)"
        else:
            span = (f"{iv['mean']:.2f} (95% CI {iv['low']:.2f}–{iv['high']:.2f})" if math.isfinite(iv["low"])
                    else f"{iv['mean']:.2f} (no CI)")
        reach = f"reached the baseline's final accuracy in {e['n_reached']} of {len(e['seeds'])} seed(s)"
        if e["verdict"] == "meets":
            lines.append(f"**{name}** reaches the baseline's accuracy with ≤ 2/3 of its training tokens within the "
                         f"interval: ratio {span}; it {reach}.")
        elif e["verdict"] == "misses":
            lines.append(f"**{name}** does not reach the baseline's accuracy with ≤ 2/3 of its training tokens: the "
                         f"whole interval of the ratio lies above 2/3 ({span}); it {reach}.")
        else:
            lines.append(f"**{name}**: inconclusive on the 2/3 target — ratio {span}, the interval (or its absence) "
                         f"does not decide it; it {reach}.")
        diff = pr.get(name, {}).get("vs_baseline")
        if diff and math.isfinite(diff.get("low", math.nan)):
            v = tables.decide(diff)
            w = {"better": "higher than", "worse": "lower than"}.get(v, "not distinguishable from")
            half, m = (diff["high"] - diff["low"]) / 2, tables.MARGIN
            if v in ("better", "worse"):
                power = ""
            elif v.startswith("equivalent"):
                power = f" — and the CI rules out a difference larger than ±{m:g}"
            elif "needed" in v:  # too few seeds for any verdict
                power = f" — {v.removeprefix('undecided (').rstrip(')')}, so no verdict"
            elif half <= m:
                power = f" — the CI is ±{half:.3f} wide but reaches beyond ±{m:g} on one side"
            else:
                power = (f" — the CI is wider than ±{m:g}, so a difference of that size is not ruled out"
                         + (f" (about {diff['seeds_for_margin']} seeds at this spread would be needed)"
                            if diff.get("seeds_for_margin") else ""))
            lines.append(f"  Its final held-out accuracy at C={cap} is {w} the baseline's (paired difference "
                         f"{diff['mean']:+.3f}, 95% CI {diff['low']:+.3f} to {diff['high']:+.3f}){power}.")
    for name, r in pr.items():
        f, d = r["forcing"], r.get("forcing_vs_greedy")
        if not d or d["budget"] == cap:  # (aggregate sets it only with greedy decoding at C)
            continue
        two, g, bf = d["budget"], f["greedy"][cap], f["budget_forcing"][d["budget"]]
        label = f"2C={two}" if two == str(2 * agg["cap"]) else f"a budget of {two}"
        span = (f"{d['mean']:+.3f}, 95% CI {d['low']:+.3f} to {d['high']:+.3f}" if math.isfinite(d.get("low", math.nan))
                else f"{d['mean']:+.3f}")
        lines.append(f"Budget forcing to {label} ({name}) against greedy decoding at C: {bf['accuracy']['mean']:.3f} "
                     f"vs {g['accuracy']['mean']:.3f} using {bf['tokens']['mean']:.0f} vs {g['tokens']['mean']:.0f} "
                     f"thinking tokens; paired by seed {span}, {tables.decide(d)}.")
    regs = {n: r["regret"][cap] for n, r in pr.items() if cap in r["regret"]}
    if regs:
        best = min(regs, key=lambda n: regs[n]["mean"])
        lines.append(f"Lowest normalised regret at C={cap}: {best} ({regs[best]['mean']:.3f}); MRT's claim is that dense "
                     "progress rewards lower it. Regret uses μ estimated from few forced answers per prefix, so "
                     "per-question values are noisy.")
    va = {n: r["verification_accuracy"] for n, r in pr.items() if math.isfinite(r["verification_accuracy"]["mean"])}
    if tables.BASELINE in va and len(va) > 1:
        parts = ", ".join(f"{n} {v['mean']:.3f}" for n, v in va.items())
        lines.append(f"Verification accuracy of the verify episodes at C={cap} (does the stated verdict match the "
                     f"attempt's true correctness): {parts}. Obj-1 rewards exactly this, so it is where Obj-1 should "
                     "differ first.")
    helped = [n for n, e in te.items() if n != tables.BASELINE and e["verdict"] == "meets"]
    if helped:
        lines.append(f"Dense rewards help on this task for: {', '.join(helped)} (token-efficiency target met within "
                     "the CI).")
    elif not tte:  # (with test-time curves, _test_time_lines gave the verdicts)
        who = tables.INITIAL if tables.INITIAL in pr else tables.BASELINE
        ep = pr.get(who, {}).get("episodes_per_trace", {})
        cut = pr.get(who, {}).get("cap_fraction", {})
        label = "The untrained policy's" if who == tables.INITIAL else f"{tables.BASELINE}'s"
        stream = (f" {label} traces at C={cap} have {ep['mean']:.1f} episodes on average and "
                  f"{cut['mean']:.0%} of them are cut by the cap." if ep.get("mean") is not None and
                  cut.get("mean") is not None and math.isfinite(ep["mean"]) and math.isfinite(cut["mean"]) else "")
        lines.append("No dense-reward recipe meets the token-efficiency target here." + stream + " Possible reasons "
                     "(hypotheses, not tested by this run): GRPO's group-normalised outcome reward already assigns "
                     "credit almost as well as per-episode rewards when a trace has a handful of episodes; per-episode "
                     "rewards mainly change *which* tokens get credit, which MRT expects to matter on longer streams "
                     "than these; and the warm-started policy already follows the attempt/verify/revise format.")
    return lines


def _test_time_lines(agg: dict[str, Any]) -> list[str]:
    """The reading of a comparison with test-time curves: per arm, accuracy at the baseline's test-time tokens
    (the verdict), the tokens it needs for the baseline's accuracy, its accuracy at C, and its μ's calibration."""
    cap, pr, m = str(agg["cap"]), agg["per_recipe"], tables.MARGIN
    lines, better = [], []
    for name, e in agg["test_time_efficiency"].items():
        d = e.get("at_matched_tokens")
        if not d:
            continue
        v = tables.decide(d)
        if v == "better":
            better.append(name)
        span = (f"{d['mean']:+.3f}, 95% CI {d['low']:+.3f} to {d['high']:+.3f}" if math.isfinite(d.get("low", math.nan))
                else f"{d['mean']:+.3f}, no CI")
        med = tables.fmt_median(e.get("median") or {})
        lines.append(f"**{name}** at {tables.BASELINE}'s test-time tokens: accuracy difference {span} — {v}. "
                     f"Test-time tokens to reach {tables.BASELINE}'s accuracy at C: median ratio {med} "
                     f"({e['n_reached']} of {len(e['seeds'])} seeds reach it; MRT reports about 0.67).")
        acc = pr.get(name, {}).get("vs_baseline")
        if acc and math.isfinite(acc.get("low", math.nan)):
            lines.append(f"  Accuracy at C={cap}: {acc['mean']:+.3f} (95% CI {acc['low']:+.3f} to {acc['high']:+.3f}), "
                         f"{tables.decide(acc)}.")
    cal = {n: r["calibration"] for n, r in pr.items() if r.get("calibration")}
    if cal:
        lines.append("μ informative on the final policy (seeds): " + ", ".join(
            f"{n} {c['informative']}/{c['n']}" for n, c in cal.items()) + ".")
    lines.append(("Arms above outcome GRPO at equal test-time tokens (CI above 0): " + ", ".join(better) + ".")
                 if better else f"No arm is above outcome GRPO at equal test-time tokens with its CI above 0 (±{m:g} "
                 "rule above for equivalence).")
    return lines


# --------------------------------------------------------------------------------------------------
# Cost benchmarks and estimator quality (bench/costs.py, bench/estimators.py)
# --------------------------------------------------------------------------------------------------


def _rel(command: str) -> str:
    """A command as a reader runs it from a checkout: paths inside this repository made relative to its root.

    >>> _rel(f"python bench/costs.py --out {REPO}/runs/x")
    'python bench/costs.py --out runs/x'
    """
    return command.replace(f"{REPO}/", "")


def _x(v: Any, digits: int = 2) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def _step_target(rows: Sequence[dict[str, Any]], recipe: str = "obj2_likelihood_progress",
                 target: float = 1.15) -> str:
    r = next((r for r in rows if r["recipe"] == recipe), None)
    if r is None or not math.isfinite(r.get("ratio", math.nan)):
        return f"Target: {recipe} ≤ {target}× (not measured here)."
    word = "meets" if r["ratio"] <= target else "misses"
    return f"Target: {recipe} ≤ {target}× an outcome-only step; measured {r['ratio']:.2f}×, which {word} it."


def costs_section(costs: dict[str, Any]) -> list[str]:
    """Markdown for ``costs.json``: train-step ratios and peak memory, all-prefix likelihood scoring, MC cost."""
    out = ["## Cost of dense rewards", "", "```", _rel(costs["command"]), "```", ""]
    if costs.get("quick"):
        out += ["**Quick smoke run: sizes too small for the numbers to mean anything.**", ""]
    ts = costs.get("train_step")
    if ts:
        base = ts.get("baseline_rss_mb")
        out += ["Training step of each recipe against `outcome_grpo`: same model, data, batch and seed; median step "
                "time over steps 2..N (TRL's `step_time`: generation, scoring, credit, backward). Peak memory: the "
                "peak resident set of a process that runs only that recipe"
                + (f" (a process that only loads the model and data: {base:.0f} MB)." if base else "."),
                f"Settings: `{json.dumps(ts.get('settings', {}), sort_keys=True)}`. {_step_target(ts['rows'])}",
                "",
                tables.markdown_table(["recipe", "step (s)", "× outcome_grpo", "completion tokens", "episodes per trace",
                                   "peak RSS (MB)", "over baseline (MB)"],
                                  [[r["recipe"], _x(r["step_seconds"], 3), _x(r["ratio"]), _x(r.get("tokens"), 1),
                                    _x(r.get("episodes_per_trace"), 2), _x(r["peak_rss_mb"], 0),
                                    _x(r["peak_rss_mb"] - base, 0) if base else "-"] for r in ts["rows"]]),
                "",
                "A step's cost follows the tokens generated: the L1 recipes put a length target in the prompt, which "
                "the tiny policy was never trained on, so it writes much shorter completions there.", ""]
    lk = costs.get("likelihood")
    if lk:
        out += ["All-prefix likelihood scoring (every prefix of every trace teacher-forced) against one plain forward "
                f"pass over the traces and against one pass per prefix. Settings: "
                f"`{json.dumps(lk.get('settings', {}), sort_keys=True)}`.", "",
                tables.markdown_table(["quantity", "measured", "target"], [
                    ["one_pass / forward", f"{_x(lk['one_pass_over_forward'])}×", "≤ 1.5×"],
                    ["cached / forward", f"{_x(lk['cached_over_forward'])}×", "≤ 1.5×"],
                    ["naive / one_pass", f"{_x(lk['naive_over_one_pass'])}×", "≥ 3×"]]), ""]
    mc = costs.get("mc")
    if mc:
        out += ["Monte Carlo progress (m forced answers per prefix) by m and episodes per trace, with the shared prefix "
                "reused (one prefill per trace, its KV cache serving every prefix and sample) and without (every "
                f"sample of every prefix prefilled on its own, `HFBackend(prefix_sharing=False)`); the sampler call is timed, "
                f"grading is not. Settings: `{json.dumps(mc.get('settings', {}), sort_keys=True)}`.", "",
                tables.markdown_table(["m", "episodes", "prefix reuse", "seconds", "× forward", "× likelihood one_pass"],
                                  [[r["m"], r["episodes"], "yes" if r["reuse"] else "no", _x(r["seconds"], 3),
                                    _x(r["over_forward"], 1), _x(r["over_likelihood"], 1)]
                                   for r in sorted(mc["rows"], key=lambda r: (r["m"], r["episodes"], not r["reuse"]))]),
                ""]
    return out


def estimators_section(est: dict[str, Any], fig_dir_rel: str) -> list[str]:
    """Markdown for ``estimators.json``: MC against exact enumeration, likelihood against MC progress."""
    out = ["## Estimator quality", "", "```", _rel(est["command"]), "```", ""]
    if est.get("quick"):
        out += ["**Quick smoke run: sizes too small for the numbers to mean anything.**", ""]
    mx = est.get("mc_vs_exact")
    if mx:
        out += ["Monte Carlo Ĵ against the exact success probability J, enumerated on a model whose forced-answer "
                "distribution can be computed exactly; coverage is the share of (prefix, seed) pairs with "
                f"abs(Ĵ − J) ≤ 2·SE, SE = sqrt(Ĵ(1−Ĵ)/m). Settings: `{json.dumps(mx.get('settings', {}), sort_keys=True)}`.",
                "",
                tables.markdown_table(["m", "mean abs. error Ĵ − J", "mean SE", "coverage of ±2 SE",
                                   "coverage of ±2 true SE", "prefixes", "repeats"],
                                  [[r["m"], _x(r["mean_abs_error"], 4), _x(r["mean_se"], 4), _x(r["coverage_2se"], 3),
                                    _x(r.get("coverage_2se_true"), 3), r["n_prefixes"], r["repeats"]]
                                   for r in mx["rows"]]),
                "",
                "The estimator's own SE is 0 when Ĵ is 0 or 1, so at small m its ±2 SE interval covers less often "
                "than the true one (sqrt(J(1−J)/m) with the exact J).", ""]
    lm = est.get("likelihood_vs_mc")
    if lm:
        kinds = lm.get("per_kind") or {}
        out += [f"Likelihood progress against Monte Carlo progress on {lm['n_traces']} traces ({lm['n_episodes']} "
                "episodes) of the warm-started tiny policy: Spearman rank correlation of the per-episode progress "
                f"ΔI {_x(lm['spearman_delta'], 3)} (p = {lm['spearman_delta_p']:.2g}), of the levels (L_j vs Ĵ_j) "
                f"{_x(lm['spearman_level'], 3)}; per episode kind: "
                + (", ".join(f"{k} {_x(v['spearman'], 3)} (n={v['n']})" for k, v in kinds.items()) or "-") + ".",
                f"Settings: `{json.dumps(lm.get('settings', {}), sort_keys=True)}`.", ""]
    for caption, png, csv in est.get("figures", []):
        out += [f"**{caption}** (data: [{csv}]({fig_dir_rel}/{csv}))", "", f"![{caption}]({fig_dir_rel}/{png})", ""]
    return out


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def _job_minutes(summary: dict[str, Any]) -> str:
    """Total time of the jobs (train + evaluation), which survives resumed runs (wall time does not)."""
    total = sum(float(j.get("seconds", 0.0)) for j in summary.get("jobs", []))
    return f"{total / 60:.0f}" if total else f"{summary.get('wall_seconds', 0.0) / 60:.1f} (wall)"


def file_prefix(name: str) -> str:
    """What the plots and CSVs of page ``docs/<name>.md`` are named with: nothing for results.md, ``<name>_`` else."""
    return "" if name == "results" else f"{name}_"


def whole_seeds(summary: dict[str, Any]) -> dict[str, Any]:
    """``summary`` reduced to the seeds every recipe with a finished job finished, its aggregate recomputed from the
    jobs by this checkout's :func:`compare_learning.aggregate` (a summary written by a running or older comparison
    gets the current measures): a paired comparison stopped inside a seed would otherwise average some rows over
    more seeds than others. The seeds asked for, and the finished jobs left out, are kept under ``partial``."""
    import compare_learning as cl

    s = summary["settings"]
    names = {j["recipe"] for j in summary["jobs"]} - {tables.INITIAL}  # the recipes with any finished job
    done: dict[int, set[str]] = {}
    for j in summary["jobs"]:
        done.setdefault(int(j["seed"]), set()).add(j["recipe"])
    whole = [sd for sd in s["seeds"] if names <= done.get(sd, set())]
    cap = summary["aggregate"].get("cap", s["cap"])  # the cap the comparison aggregated at
    partial = whole != list(s["seeds"])
    jobs = [j for j in summary["jobs"] if int(j["seed"]) in whole] if partial else summary["jobs"]
    out = {**summary, "aggregate": json.loads(json.dumps(cl.aggregate(jobs, cap))) if jobs else summary["aggregate"]}
    if partial:
        out.update(settings={**s, "seeds": whole}, jobs=jobs,
                   partial={"asked": list(s["seeds"]), "left_out": len(summary["jobs"]) - len(jobs)})
    return out


def _provenance(summary: dict[str, Any]) -> list[str]:
    """A line naming the CPUs and commits the jobs ran on and from, when the jobs record them (jobs reused from a
    ``--record`` file may come from other machines than the summary's)."""
    from collections import Counter

    out = []
    if summary.get("partial"):
        pa, n = summary["partial"], len(summary["settings"]["seeds"])
        out.append(f"- **partial: {n} of the {len(pa['asked'])} seeds asked ({', '.join(map(str, pa['asked']))}) are "
                   f"finished for every recipe**; {pa['left_out']} finished job(s) of unfinished seeds are kept in the "
                   "record (the comparison resumes from it) and left out here, so every row is paired over the same "
                   "seeds")
    for key, what in (("machine", "CPU"), ("commit", "commit")):
        seen = Counter(str(j[key]) for j in summary.get("jobs", []) if j.get(key))
        if seen:
            out.append(f"- jobs by {what}: " + ", ".join(f"{v} ({n})" for v, n in seen.most_common()))
    return out


def _tiny(summary: dict[str, Any]) -> str:
    """The task level and the tiny policy's warm-start overrides the comparison recorded (``Settings.task`` and
    ``Settings.warm_start``; empty for a comparison recorded before they were)."""
    s = summary["settings"]
    level = (s.get("task") or {}).get("difficulty")
    tiny = s.get("warm_start") or {}
    parts = [f"task level {level}"] if level is not None else []
    if tiny:
        parts.append("warm start " + ", ".join(f"{k}={v}" for k, v in tiny.items()))
    elif s.get("warm_start") is not None:
        parts.append("the default warm start")
    return "; ".join(parts)


def _pass1(s: dict[str, Any]) -> str:
    k = s.get("eval_samples")
    return f"sampled pass@1: mean of {k} samples per problem at temperature 1" if k else "greedy pass@1"


def render(summary: dict[str, Any], figures: Sequence[tuple[str, str, str]], fig_dir_rel: str,
           costs: dict[str, Any] | None = None, estimators: dict[str, Any] | None = None,
           name: str = "results") -> str:
    """The markdown of the page ``docs/<name>.md`` (the claims table and the links to other pages only on
    ``results``, the main page)."""
    s, agg, m = summary["settings"], summary["aggregate"], summary["machine"]
    n_seeds = len(s["seeds"])
    tiny = _tiny(summary)
    quick = " (QUICK SMOKE RUN — not the comparison)" if s.get("quick") else ""
    out_dir = summary.get("out_dir", "DIR")
    parts = [
        f"# Learning comparison: outcome reward vs dense rewards{quick}",
        "",
        "Generated by `bench/results_page.py` from the output of `bench/compare_learning.py`; do not edit by hand.",
        "",
        *((*FURTHER_PAGES, "", *claims_section()) if name == "results" else ()),
        "## How it was produced",
        "",
        "```",
        _rel(summary["command"]),
        _rel(f"python bench/results_page.py {out_dir}" + (f" --name {name}" if name != "results" else "")),
        "```",
        "",
        f"- recipes: {', '.join(s['recipes'])} (plus `{tables.INITIAL}`: the untrained policy, evaluated the same way)",
        f"- seeds: {', '.join(map(str, s['seeds']))}; each seed fixes the training-data order, the sampling and the "
        "held-out problems, the same for every recipe (a paired comparison)",
        f"- setting `conf/setting/{s.get('setting', 'compare')}.yaml`: policy `model={s['model']}`"
        + (f" ({tiny})" if tiny else "")
        + f", compute cap C={s['cap']}, {s['steps']} GRPO steps per run, held-out "
        f"problems: {s['eval_n']} ({_pass1(s)}), learning curve every {s['eval_every']} steps, regret with "
        f"m={s['mc_m']} forced answers per prefix"
        + (f", extra overrides: `{' '.join(s['overrides'])}`" if s.get("overrides") else ""),
        f"- machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPUs; Python {m['python']}, torch "
        f"{m['torch']}, transformers {m['transformers']}, TRL {m['trl']}; {s['jobs']} jobs in parallel, 1 torch "
        f"thread each; {_job_minutes(summary)} min of job time, finished {summary.get('finished', '?')}",
        *_provenance(summary),
        "",
        "Intervals are 95%: with ≥ 2 seeds a Student-t interval over seed means; with one seed a bootstrap over "
        "held-out questions.",
        "",
        f"## Held-out accuracy after training ({_pass1(s)})",
        "",
        tables.accuracy_table(agg),
        "",
        "## Dense recipes against outcome GRPO",
        "",
        f"Each dense recipe minus `{tables.BASELINE}`, paired by seed (the same training-data order, sampling seeds "
        "and held-out problems): final held-out accuracy at every budget and the normalised regret of the greedy "
        f"traces at every C0. `better` / `worse`: the 95% CI excludes 0; `equivalent within ±{tables.MARGIN:g}`: the "
        f"CI lies inside ±{tables.MARGIN:g}; `undecided`: neither, with the number of seeds the spread measured so "
        f"far would need for a CI of ±{tables.MARGIN:g}. Fewer than 3 seeds decide nothing. The rows are not corrected "
        "for multiple comparisons: among this many 95% intervals about one in twenty excludes 0 by chance, so a "
        "single `better` or `worse` among many `undecided` rows is weak evidence.",
        "",
        tables.verdict_table(agg),
        "",
        *(efficiency_sections(agg) if agg.get("test_time_efficiency") else [
            "## Token efficiency",
            "",
            "Per seed, the target is the baseline's final held-out accuracy at C; a method's cost is the training tokens "
            "(prompt + completion, TRL's count) at which its learning curve first reaches it, interpolated linearly "
            "between evaluations; the ratio divides by the baseline's total training tokens. `>` marks a seed that "
            "never reached the target (censored at its own total: a lower bound). Target: ratio ≤ 2/3. The mean's "
            "t-interval treats a censored ratio as its bound, so it is not an interval of anything when seeds are "
            "censored; the median's interval from order statistics (from 6 seeds on) stays valid, its upper end "
            "open (∞) when too few seeds reached the target. The verdict uses the median's interval when there is one, "
            "else the mean's.",
            "",
            tables.efficiency_table(agg),
            "",
        ]),
        "## Test-time budgets, budget forcing beyond C, regret",
        "",
        f"Greedy decoding and s1 budget forcing (continuation `{tables.CONTINUATION}`, answer forced at the budget) at "
        + (" and ".join(map(str, s["forcing"])) if s.get("forcing") else "C and 2C")
        + " with `metarl-eval`; accuracy [95% CI] (mean thinking tokens). Normalised regret (MRT) of the "
        "greedy traces at cap C: 1 − (1/C0)∫J(t)dt, lower is better.",
        "",
        tables.forcing_table(agg),
        "",
        "## Plots",
        "",
    ]
    for caption, png, csv in figures:
        parts += [f"**{caption}** (data: [{csv}]({fig_dir_rel}/{csv}))", "", f"![{caption}]({fig_dir_rel}/{png})", ""]
    prefix = file_prefix(name)
    parts += ["All aggregate numbers: " + f"[{prefix}summary.csv]({fig_dir_rel}/{prefix}summary.csv).", "",
              "## Reading", ""]
    parts += [f"- {line}" if not line.startswith("  ") else f"  {line.strip()}" for line in reading(agg, n_seeds)]
    parts.append("")
    if costs:
        parts += costs_section(costs)
    if estimators:
        parts += estimators_section(estimators, fig_dir_rel)
    return "\n".join(parts)


def efficiency_sections(agg: dict[str, Any]) -> list[str]:
    """Test-time token efficiency (MRT's measure), training efficiency by the area under the learning curve, and
    μ's calibration on every final policy: the sections of a comparison whose jobs recorded them."""
    m = tables.MARGIN
    return [
        "## Test-time token efficiency (as MRT measures it)",
        "",
        "Each final policy is evaluated at the test budgets C/4, C/2, 3C/4 and C (sampled pass@1, as above), which "
        "gives its accuracy against the thinking tokens it spends. Per seed, the baseline's point at C sets the "
        f"target: its accuracy a_b and its tokens n_b. *Δ accuracy at {tables.BASELINE}'s tokens*: the recipe's "
        "accuracy at n_b tokens (linear between its points, flat beyond them) minus a_b, paired by seed (Student-t "
        f"95% CI; verdict by the ±{m:g} rule). *Tokens to reach its accuracy*: where the recipe's curve first "
        "reaches a_b, divided by n_b (`>`: never reached, censored at its largest tokens; the median's interval "
        "from order statistics stays valid, from 6 seeds on). MRT reports about 1.5× fewer test-time tokens at "
        "equal accuracy (a ratio near 0.67).",
        "",
        tables.tokens_curve_table(agg),
        "",
        tables.tokens_efficiency_table(agg),
        "",
        "## Training efficiency: area under the learning curve",
        "",
        "The area under each run's held-out learning curve at C over its training steps, divided by the steps (its "
        "mean accuracy over training, trapezoid rule over the evaluations), paired with the baseline by seed. A copy "
        "of the baseline differs from it by 0 in expectation, so the interval has a valid null; the \"first reaches "
        "the baseline's final accuracy\" ratio of earlier pages did not (the baseline itself reaches it early about "
        "half the time).",
        "",
        tables.learning_auc_table(agg),
        "",
        "## μ's calibration on every final policy",
        "",
        "`metarl.calibration.calibrate` on each final policy's greedy held-out traces at C, Ĵ from the regret's "
        "forced answers (m per prefix): the correlation of Ĵ after the last episode with the outcome, and the mean "
        "ΔĴ of a verify episode after a correct attempt (informative: ≥ 0.8 and ≥ −0.05). Monte Carlo progress and "
        "the termination baseline score each arm with its own policy's μ, so an arm whose μ drifts out of "
        "calibration is rewarded by a broken estimator.",
        "",
        tables.calibration_table(agg),
        "",
    ]


def _optional_json(given: str | None, default: Path) -> dict[str, Any] | None:
    """The JSON at ``given`` (must exist) or at ``default`` (if it exists), with its folder under ``_dir``."""
    path = Path(given) if given else default
    if not path.exists():
        if given:
            raise SystemExit(f"{path} not found")
        print(f"[results_page] {path} not found: that section is left out", flush=True)
        return None
    data = json.loads(path.read_text())
    data["_dir"] = str(path.parent)
    return data


def main(argv: Sequence[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output directory of bench/compare_learning.py (holds summary.json)")
    p.add_argument("--docs", default=str(REPO / "docs"), help="where results.md and results/ go (default docs/)")
    p.add_argument("--costs", help="costs.json of bench/costs.py (default OUT/costs/costs.json if it exists)")
    p.add_argument("--estimators", help="estimators.json of bench/estimators.py (default "
                                        "OUT/estimators/estimators.json if it exists)")
    p.add_argument("--name", default="results",
                   help="the page, docs/NAME.md (default results); its plots and CSVs are named NAME_*, except on "
                        "results.md")
    a = p.parse_args(argv)
    if not re.fullmatch(r"[A-Za-z0-9_]+", a.name):
        p.error(f"--name {a.name!r}: letters, digits and _ only (it names docs/NAME.md)")
    prefix = file_prefix(a.name)
    src = Path(a.out) / "summary.json"
    if not src.exists():
        raise SystemExit(f"{src} not found: run `python bench/compare_learning.py --out {a.out}` first")
    summary = whole_seeds(json.loads(src.read_text()))
    summary.setdefault("out_dir", a.out)
    docs = Path(a.docs)
    figs = docs / "results"
    figs.mkdir(parents=True, exist_ok=True)
    jobs, agg = summary["jobs"], summary["aggregate"]
    figures = [("Learning curves", *plot_learning_curves(jobs, agg, figs, prefix)),
               ("Accuracy vs test-time budget", *plot_budgets(agg, figs, prefix))]
    tt = plot_test_time(agg, figs, prefix)
    if tt:
        figures.append(("Accuracy against test-time tokens", *tt))
    eff = None if tt else plot_efficiency(agg, figs, prefix)
    if eff:
        figures.append(("Token efficiency", *eff))
    write_summary_csv(agg, figs, prefix)
    costs = _optional_json(a.costs, Path(a.out) / "costs" / "costs.json")
    if costs:
        for f in sorted(Path(costs["_dir"]).glob("costs*.csv")):
            shutil.copy(f, figs / f.name)
    estimators = _optional_json(a.estimators, Path(a.out) / "estimators" / "estimators.json")
    if estimators:
        for _, png, csv in estimators.get("figures", []):
            for name in (png, csv):
                shutil.copy(Path(estimators["_dir"]) / name, figs / name)
    page = docs / f"{a.name}.md"
    page.write_text(render(summary, figures, "results", costs, estimators, name=a.name))
    print(f"[results_page] wrote {page} and {figs}/", flush=True)
    return page


if __name__ == "__main__":
    main()
