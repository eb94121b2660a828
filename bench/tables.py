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
"""BRIEF: reach the baseline's accuracy with <= 2/3 of its training tokens."""
CONTINUATION = "<revise>"
"""Budget-forcing continuation for the tag format of the built-in task."""


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
              f"Δ vs {BASELINE} @ {cap}", f"test tokens @ {cap}", f"verification acc. @ {cap}"]
    rows = []
    for name, r in agg["per_recipe"].items():
        rows.append([name, len(r["seeds"]), *[fmt_iv(r["accuracy"].get(b, {})) for b in budgets],
                     fmt_iv(r["vs_initial"]) if "vs_initial" in r else "-",
                     fmt_iv(r["vs_baseline"]) if "vs_baseline" in r else "-",
                     fmt_iv(r["test_tokens"].get(cap, {}), 1), fmt_iv(r["verification_accuracy"])])
    return markdown_table(header, rows)


def efficiency_table(agg: dict[str, Any]) -> str:
    """Training tokens to reach the baseline's final accuracy, per seed and as a ratio with its CI."""
    te = agg.get("token_efficiency") or {}
    rows = []
    for name, e in te.items():
        per = ", ".join(("" if x["reached"] else ">") + f"{x['tokens']:.0f}" for x in e["seeds"])
        rows.append([name, per, fmt_iv(e["ratio"], 2), f"{e['n_reached']}/{len(e['seeds'])}", e["verdict"]])
    return markdown_table(["recipe", "tokens to reach target (per seed)", "ratio to baseline tokens [95% CI]",
                           "seeds reaching", f"≤ {TARGET_RATIO:.2f}?"], rows)


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
