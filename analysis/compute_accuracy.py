"""Compute–accuracy curves (Snell et al.): accuracy vs token budget per strategy, overall and per bin.

Reads eval result rows ``{"question_id", "strategy", "budget", "correct", "tokens", "n", "c",
"difficulty_bin"?}``. ``correct`` may be 0/1, true/false or a fraction; when it is missing, ``c / n`` is used.
Repeated rows for one (question, strategy, budget) are averaged. 95% CIs: bootstrap over
questions for one run, t-interval over seed means for several seeds of one configuration.
"""
from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np

from analysis.plots import Section
from metarl.analysis.intervals import PROBABILITY, summarise
from metarl.analysis.io import RunData, group_runs, is_number, question_key
from metarl.analysis.plots import color, finish, line_with_band, panels, save_figure, write_csv

ALL = "all"


def _accuracy(row: dict[str, Any]) -> float | None:
    if isinstance(row.get("correct"), bool) or is_number(row.get("correct")):
        return float(row["correct"])
    if is_number(row.get("n")) and is_number(row.get("c")) and row["n"] > 0:
        return float(row["c"]) / float(row["n"])
    return None


Cell = dict[Hashable, list[float]]  # question -> values


def collect(runs: list[RunData]) -> tuple[dict[str, list[dict[tuple[str, float, Any], tuple[Cell, list[float]]]]], list[str]]:
    """label -> per seed -> {(strategy, budget, bin): (question -> accuracies, tokens)}; plus notes."""
    notes: list[str] = []
    out: dict[str, list[dict[tuple[str, float, Any], tuple[Cell, list[float]]]]] = {}
    missing: list[str] = []
    for label, rs in group_runs(runs).items():
        seeds = []
        for r in rs:
            cells: dict[tuple[str, float, Any], tuple[Cell, list[float]]] = {}
            bad = 0
            for row in r.eval_results:
                acc = _accuracy(row)
                if acc is None or not is_number(row.get("budget")):
                    bad += 1
                    continue
                bins = [ALL] + ([int(row["difficulty_bin"])] if is_number(row.get("difficulty_bin")) else [])
                for b in bins:
                    q, toks = cells.setdefault((str(row["strategy"]), float(row["budget"]), b), ({}, []))
                    q.setdefault(question_key(row), []).append(acc)
                    if is_number(row.get("tokens")):
                        toks.append(float(row["tokens"]))
            if bad:
                notes.append(f"{r.path}: {bad} eval rows without a numeric budget and correct (or n, c); skipped")
            if cells:
                seeds.append(cells)
        if seeds:
            out[label] = seeds
        else:
            missing.append(label)
    if out and missing:
        notes.append(f"no eval results for {', '.join(missing)}")
    return out, notes


def _curves(seeds: list[dict], bin_: Any) -> dict[str, list[tuple[float, Any, int, int, float]]]:
    """strategy -> [(budget, interval, n_questions, n_runs, mean_tokens)] sorted by budget."""
    keys = sorted({(s, b) for cells in seeds for (s, b, bb) in cells if bb == bin_})
    curves: dict[str, list] = {}
    for strat, budget in keys:
        per_seed, toks, nq = [], [], 0
        for cells in seeds:
            cell = cells.get((strat, budget, bin_))
            if cell:
                per_seed.append([float(np.mean(v)) for v in cell[0].values()])
                toks += cell[1]
                nq += len(cell[0])
        iv, n_runs = summarise(per_seed, seed=int(budget) % 2**31, bounds=PROBABILITY)
        curves.setdefault(strat, []).append((budget, iv, nq, n_runs, float(np.mean(toks)) if toks else float("nan")))
    return curves


def _draw(ax: Any, curves: dict[str, list], title: str, strategies: list[str], legend: bool = True) -> None:
    budgets = [p[0] for pts in curves.values() for p in pts]
    for strat, pts in curves.items():
        line_with_band(ax, [p[0] for p in pts], [p[1] for p in pts], strat, color(strategies.index(strat)), marker="o",
                       bounds=PROBABILITY)
    if budgets and min(budgets) > 0 and max(budgets) / min(budgets) >= 4:
        ax.set_xscale("log", base=2)
    ax.set_ylim(-0.03, 1.03)
    finish(ax, title, "token budget (tokens)", "accuracy (95% CI)", legend=legend)


def compute_accuracy_section(runs: list[RunData], out_dir: Path) -> Section:
    """Accuracy vs budget per strategy for every run label; per difficulty bin when bins exist."""
    sec = Section("Compute–accuracy")
    data, notes = collect(runs)
    sec.notes += notes
    if not data:
        sec.notes.append("no eval results (rows with `strategy` and `budget`, e.g. eval/results.jsonl); compute–accuracy skipped")
        return sec
    strategies = sorted({k[0] for seeds in data.values() for cells in seeds for k in cells})
    header = ["run", "strategy", "difficulty_bin", "budget", "accuracy", "ci_low", "ci_high", "mean_tokens", "n_questions", "n_runs"]
    all_curves = {label: _curves(seeds, ALL) for label, seeds in data.items()}
    rows = [[label, s, ALL, b, iv.mean, iv.low, iv.high, t, nq, nr] for label, curves in all_curves.items()
            for s, pts in curves.items() for b, iv, nq, nr, t in pts]
    csv = write_csv(out_dir, "compute_accuracy", header, rows)
    if max(len(pts) for curves in all_curves.values() for pts in curves.values()) < 2:
        sec.notes.append(f"every strategy was evaluated at one budget only: a compute–accuracy curve needs >= 2 "
                         f"budgets; plot skipped, the points are in the table and [{csv}]({csv})")
        sec.markdown = ("Accuracy at the one budget evaluated (95% CI: bootstrap over questions, or t over seeds):\n\n"
                        "| run | strategy | budget (tokens) | accuracy | mean thinking tokens | questions |\n"
                        "|---|---|---|---|---|---|\n" + "\n".join(
                            f"| {r[0]} | {r[1]} | {r[3]:g} | {r[4]:.3f} [{r[5]:.3f}, {r[6]:.3f}] | "
                            f"{'' if r[7] != r[7] else f'{r[7]:.1f}'} | {r[8]} |" for r in rows))
        return sec
    fig, axes = panels(len(data))
    for ax, (label, seeds) in zip(axes, data.items()):
        _draw(ax, all_curves[label], label + (f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""), strategies)
    png = save_figure(fig, out_dir, "compute_accuracy", "Accuracy vs token budget per strategy")
    sec.figures.append(("Compute–accuracy curves per strategy", png, csv))
    bins = sorted({k[2] for seeds in data.values() for cells in seeds for k in cells if k[2] != ALL})
    if not bins:
        sec.notes.append("no `difficulty_bin` in eval results; per-bin curves skipped")
        return sec
    fig, axes = panels(len(data) * len(bins), ncols=len(bins), size=(4.2, 3.4))
    rows = []
    for li, (label, seeds) in enumerate(data.items()):
        for bi, b in enumerate(bins):
            curves = _curves(seeds, b)
            _draw(axes[li * len(bins) + bi], curves, f"{label}: bin {b}" + (" (easiest)" if b == 1 else ""), strategies, legend=li == 0 and bi == 0)
            rows += [[label, s, b, bb, iv.mean, iv.low, iv.high, t, nq, nr] for s, pts in curves.items() for bb, iv, nq, nr, t in pts]
    png = save_figure(fig, out_dir, "compute_accuracy_bins", "Accuracy vs budget per difficulty bin (1 = easiest)")
    sec.figures.append(("Compute–accuracy per difficulty bin", png, write_csv(out_dir, "compute_accuracy_bins", header, rows)))
    return sec
