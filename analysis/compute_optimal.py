"""Compute-optimal test-time scaling (Snell et al.): per difficulty bin, accuracy vs generated tokens.

Reads the ``eval/compute_optimal.jsonl`` records that ``metarl-eval`` writes (:mod:`metarl.eval.selection`;
analysis reads run outputs only):

* ``curve`` records: one per difficulty source, bin, strategy and budget — accuracy on the evaluation split
  with its 95% bootstrap interval over questions, and the mean compute per question (generated tokens, plus
  the step scorer's own tokens with ``compute_optimal.scorer_tokens``);
* ``choice`` records: one per source, bin and compute T — the configuration chosen on the selection split
  (best accuracy with at most T tokens there), its evaluation-split accuracy, best-of-N at matched
  generated tokens, and their paired difference.

One figure per difficulty source with a panel per bin (``all`` first): a line per strategy (its budgets
as points, x = compute per question), the compute-optimal envelope (black) and the matched
best-of-N (dashed); the CSV behind each figure; a markdown table of the choices.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from analysis.plots import Section
from metarl.analysis.io import RunData
from metarl.analysis.plots import finish, panels, save_figure, write_csv
from metarl.metrics import Interval


def color(i: int) -> tuple[float, float, float]:
    """A colour per strategy: tab20 (a report often has more than ten strategies and Best-of-k rows)."""
    import matplotlib.pyplot as plt

    cols = plt.get_cmap("tab20").colors
    return cols[(2 * i) % 20 + (i // 10) % 2]

ALL = "all"
HEADER = ["run", "difficulty", "bin", "kind", "strategy", "budget", "compute", "accuracy", "ci_low", "ci_high",
          "tokens", "n_evaluation", "selection_accuracy", "selection_tokens", "baseline_strategy", "baseline_budget",
          "baseline_accuracy", "baseline_ci_low", "baseline_ci_high", "baseline_tokens", "difference",
          "difference_ci_low", "difference_ci_high", "oracle"]


def _bin_key(b: Any) -> tuple[int, int]:
    return (0, 0) if b == ALL else (1, int(b))


def _fmt(m: Any, lo: Any, hi: Any) -> str:
    if not isinstance(m, (int, float)):
        return "-"
    m, lo, hi = (0.0 if isinstance(v, (int, float)) and abs(v) < 5e-7 else v for v in (m, lo, hi))
    if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and math.isfinite(lo) and math.isfinite(hi):
        return f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
    return f"{m:.3f}"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else math.nan


def _panel(ax: Any, recs: list[dict[str, Any]], title: str, strategies: list[str], legend: bool) -> None:
    from metarl.analysis.plots import line_with_band

    curves: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        if r["kind"] == "curve":
            curves.setdefault(str(r["strategy"]), []).append(r)
    xs_all = []
    for s, pts in curves.items():
        pts = sorted(pts, key=lambda r: r["tokens"])
        xs = [r["tokens"] for r in pts]
        xs_all += xs
        ivs = [Interval(r["accuracy"], _num(r.get("ci_low")), _num(r.get("ci_high")), r["n_evaluation"]) for r in pts]
        label = s + (" (oracle)" if pts[0].get("oracle") else "")
        line_with_band(ax, xs, ivs, label, color(strategies.index(s)), marker="o", lw=1.2, bounds=(0.0, 1.0))
    choice = sorted((r for r in recs if r["kind"] == "choice"), key=lambda r: r["compute"])
    if choice:
        ax.step([r["compute"] for r in choice], [r["accuracy"] for r in choice], where="post", color="black", lw=2.2,
                label="compute-optimal (selected on the other split)")
        base = [r for r in choice if r.get("baseline_accuracy") is not None]
        if base:
            ax.plot([r["compute"] for r in base], [r["baseline_accuracy"] for r in base], "k--", marker="x", lw=1.2,
                    label="best-of-N, matched tokens")
        xs_all += [r["compute"] for r in choice]
    if xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_ylim(-0.03, 1.03)
    finish(ax, title, "compute: generated tokens per question", "accuracy, evaluation split (95% CI)", legend=legend)


def compute_optimal_section(runs: list[RunData], out_dir: Path) -> Section:
    """Per run and difficulty source: the per-bin plot + CSV, and a table of compute-optimal choices."""
    sec = Section("Compute-optimal strategy selection")
    have = [r for r in runs if r.compute_optimal]
    if not have:
        sec.notes.append("no eval/compute_optimal.jsonl (metarl-eval with compute_optimal.enabled and a best-of-N "
                         "strategy); compute-optimal selection skipped")
        return sec
    lines = []
    for run in have:
        tag = run.label + (f" seed {run.seed}" if run.seed is not None else "")
        strategies = sorted({str(r["strategy"]) for r in run.compute_optimal if r["kind"] == "curve"})
        for source in sorted({str(r["difficulty"]) for r in run.compute_optimal}):
            recs = [r for r in run.compute_optimal if r["difficulty"] == source]
            bins = sorted({r["bin"] for r in recs}, key=_bin_key)
            fig, axes = panels(len(bins) + 1, ncols=4, size=(5.0, 3.9))
            for ax, b in zip(axes, bins):
                title = f"{source} difficulty: " + ("all questions" if b == ALL else f"bin {b}" +
                                                      (" (easiest)" if b == 1 else ""))
                _panel(ax, [r for r in recs if r["bin"] == b], title, strategies, legend=False)
            handles, labels = axes[0].get_legend_handles_labels()
            axes[-1].axis("off")  # the legend gets a panel of its own
            axes[-1].legend(handles, labels, loc="center", fontsize=8, frameon=False)
            name = f"compute_optimal_{''.join(c if c.isalnum() else '_' for c in run.label)}_{source}"
            png = save_figure(fig, out_dir, name, f"{tag}: accuracy vs generated tokens per {source} difficulty bin")
            rows = [[tag, source, r["bin"], r["kind"], r.get("strategy"), r.get("budget"), r.get("compute"),
                     *(r.get(k) for k in HEADER[7:])] for r in sorted(recs, key=lambda r: (_bin_key(r["bin"]),
                                                                                         r["kind"]))]
            csv = write_csv(out_dir, name, HEADER, rows)
            sec.figures.append((f"{tag}: compute-optimal selection by {source} difficulty", png, csv))
            lines += [f"**{tag}, {source} difficulty** — chosen on the selection split, reported on the evaluation "
                      "split (95% bootstrap CIs over its questions):", "",
                      "| bin | compute (tokens) | chosen | accuracy | tokens | best-of-N matched | its tokens | "
                      "difference |", "|---|---|---|---|---|---|---|---|"]
            for r in sorted((r for r in recs if r["kind"] == "choice"), key=lambda r: (_bin_key(r["bin"]),
                                                                                        r["compute"])):
                lines.append(f"| {r['bin']} | {r['compute']:.0f} | {r['strategy']} @ {r['budget']} | "
                             f"{_fmt(r['accuracy'], r.get('ci_low'), r.get('ci_high'))} | {r['tokens']:.0f} | "
                             + (f"{r['baseline_strategy']} @ {r['baseline_budget']}: "
                                f"{_fmt(r['baseline_accuracy'], r.get('baseline_ci_low'), r.get('baseline_ci_high'))}"
                                f" | {r['baseline_tokens']:.0f} | "
                                f"{_fmt(r['difference'], r.get('difference_ci_low'), r.get('difference_ci_high'))} |"
                                if r.get("baseline_strategy") else "- | - | - |"))
            lines.append("")
    sec.markdown = "\n".join(lines)
    return sec
