"""Regret (MRT): normalised regret vs token budget C0, and cumulative regret Δ_k vs episodes.

Normalised regret of a trace at C0 is ``1 − (1/C0) ∫_0^{C0} J(t) dt`` (``metarl.metrics``). Per run,
traces of one question are averaged first and the 95% CI is a bootstrap over questions (MRT
averages 16 samples per question, then questions); seeds of one configuration give a t-interval
over seed means instead.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path

import numpy as np

from analysis.info_gain import CurveSet
from analysis.plots import PROBABILITY, Section, clip_interval, color, finish, line_with_band, panels, save_figure, summarise, unit_label, write_csv
from metarl.metrics import cumulative_regret, mean_ci, normalized_regret

MRT_BUDGETS = (4096, 8192, 12288, 16384)


def default_budgets(sets: dict[str, CurveSet], n: int = 4) -> list[float]:
    """``n`` evenly spaced budgets up to the longest trace (MRT used 4096..16384 for 16K-token runs)."""
    top = max(cs.max_end for cs in sets.values())
    if top <= 0:
        return [1.0]
    return sorted({float(max(1, round(top * (i + 1) / n))) for i in range(n)})


def _per_question(values: np.ndarray, questions: Sequence[Hashable]) -> np.ndarray:
    """Average the rows of ``values`` (traces × budgets) within each question."""
    by: dict[Hashable, list[int]] = {}
    for i, q in enumerate(questions):
        by.setdefault(q, []).append(i)
    return np.stack([values[idx].mean(axis=0) for idx in by.values()])


def regret_vs_budget(sets: dict[str, CurveSet], out_dir: Path, budgets: Sequence[float]) -> tuple[str, str, str]:
    """Plot and tabulate normalised regret at each C0; returns (png, csv, markdown table)."""
    fig, (ax,) = panels(1, size=(7.5, 4.5))
    rows, table = [], []
    for gi, (label, cs) in enumerate(sets.items()):
        per_trace = np.array([[normalized_regret(c, b) for b in budgets] for c in cs.curves])
        seeds = sorted(set(cs.seed_index))
        per_seed = []
        for s in seeds:
            idx = [i for i, si in enumerate(cs.seed_index) if si == s]
            per_seed.append(_per_question(per_trace[idx], [cs.questions[i] for i in idx]))
        ivs = []
        for bi, b in enumerate(budgets):
            iv, n_runs = summarise([q[:, bi] for q in per_seed], seed=bi, bounds=PROBABILITY)
            ivs.append(iv)
            n_q = sum(len(q) for q in per_seed)
            rows.append([label, cs.unit, b, iv.mean, iv.low, iv.high, len(cs.curves), n_q, n_runs])
        line_with_band(ax, budgets, ivs, label + (f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""), color(gi), marker="o", bounds=PROBABILITY)
        table.append(f"| {label} | " + " | ".join(f"{iv.mean:.3f} [{iv.low:.3f}, {iv.high:.3f}]" for iv in ivs) + " |")
    units = {cs.unit for cs in sets.values()}
    xl = f"budget C0 ({unit_label(units.pop())})" if len(units) == 1 else "budget C0 (tokens or characters, see CSV)"
    ax.set_ylim(-0.02, 1.02)  # J in [0, 1]: so is the normalised regret
    finish(ax, r"Normalised regret $1 - \frac{1}{C_0}\int_0^{C_0} J(t)\,dt$ (lower is better)", xl, "normalised regret (95% CI)")
    png = save_figure(fig, out_dir, "regret_vs_budget")
    header = ["run", "unit", "budget", "normalized_regret", "ci_low", "ci_high", "n_traces", "n_questions", "n_runs"]
    csv = write_csv(out_dir, "regret_vs_budget", header, rows)
    md = "| run | " + " | ".join(f"C0={b:g}" for b in budgets) + " |\n|---|" + "---|" * len(budgets) + "\n" + "\n".join(table)
    return png, csv, md


def cumulative_regret_vs_episodes(sets: dict[str, CurveSet], out_dir: Path) -> tuple[str, str]:
    """Mean Δ_k = Σ_{j<k} (1 − J_j) over traces with at least k episodes."""
    fig, (ax,) = panels(1, size=(7.5, 4.5))
    rows = []
    for gi, (label, cs) in enumerate(sets.items()):
        deltas = [cumulative_regret(c.levels[1:]) for c in cs.curves]
        kmax = max(len(d) for d in deltas) - 1
        ks, ivs = [], []
        for k in range(kmax + 1):
            iv = clip_interval(mean_ci([d[k] for d in deltas if len(d) > k]), (0.0, float(k)))  # 0 <= Δ_k <= k
            ks.append(k)
            ivs.append(iv)
            rows.append([label, k, iv.mean, iv.low, iv.high, iv.n])
        line_with_band(ax, ks, ivs, label, color(gi), marker="o")
    ax.xaxis.get_major_locator().set_params(integer=True)
    finish(ax, r"Cumulative regret $\Delta_k = \sum_{j<k}\,(1 - J_j)$ (traces with >= k episodes)", "episodes k", r"mean $\Delta_k$ (95% CI)")
    png = save_figure(fig, out_dir, "cumulative_regret")
    csv = write_csv(out_dir, "cumulative_regret", ["run", "episodes", "mean_delta", "ci_low", "ci_high", "n_traces"], rows)
    return png, csv


def regret_section(sets: dict[str, CurveSet], out_dir: Path, budgets: Sequence[float] | None = None) -> Section:
    """Regret plots for every run with J curves (μ's probability of success; likelihood progress is skipped)."""
    sec = Section("Regret (MRT)")
    likelihood = [label for label, cs in sets.items() if cs.value != "J"]
    if likelihood:
        sec.notes.append(f"{', '.join(likelihood)}: likelihood progress (log p(a* | prefix)) is not a probability of "
                         "success J, so regret is not defined for it; regret skipped for these runs")
    sets = {label: cs for label, cs in sets.items() if cs.value == "J"}
    if not sets:
        sec.notes.append("no J curves (traces with `episodes[*].info.J`: Monte Carlo or exact progress); regret skipped")
        return sec
    if budgets:
        chosen = [float(b) for b in budgets]
    else:
        chosen = default_budgets(sets)
        sec.notes.append(f"budgets C0 chosen from the data (quarters of the longest trace): {', '.join(f'{b:g}' for b in chosen)}; set them with --budgets")
    beyond = [label for label, cs in sets.items() if max(chosen) > cs.max_end]
    if beyond:
        sec.notes.append(f"C0 beyond the end of some traces ({', '.join(beyond)}): J is held at its last value there")
    png, csv, md = regret_vs_budget(sets, out_dir, chosen)
    sec.figures.append(("Normalised regret vs budget C0", png, csv))
    sec.markdown = "Normalised regret, mean [95% CI]:\n\n" + md
    one_q = [label for label, cs in sets.items() if len(set(cs.questions)) < 2 and len(set(cs.seed_index)) < 2]
    if one_q:
        sec.notes.append(f"{', '.join(one_q)}: every trace answers one question: no interval over questions (nan)")
    png, csv = cumulative_regret_vs_episodes(sets, out_dir)
    sec.figures.append(("Cumulative regret vs episodes", png, csv))
    return sec
