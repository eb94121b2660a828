"""Report section on regret (MRT): normalised regret vs token budget C0, cumulative regret Δ_k vs episodes.

The numbers come from :func:`metarl.analysis.regret` (per-question averages, bootstrap over questions or a
t-interval over seeds) and :func:`metarl.analysis.cumulative_regret_by_episode`; this module draws the report's
figures and writes the CSV and markdown table behind them.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis.plots import Section
from metarl.analysis.curves import CurveSet
from metarl.analysis.intervals import PROBABILITY
from metarl.analysis.plots import color, finish, line_with_band, panels, save_figure, unit_label, write_csv
from metarl.analysis.regret import MRT_BUDGETS, cumulative_regret_by_episode, default_budgets, n_questions, regret

__all__ = ["MRT_BUDGETS", "regret_section"]


def regret_vs_budget(sets: dict[str, CurveSet], out_dir: Path, budgets: Sequence[float]) -> tuple[str, str, str]:
    """Plot and tabulate normalised regret at each C0; returns (png, csv, markdown table)."""
    fig, (ax,) = panels(1, size=(7.5, 4.5))
    rows, table = [], []
    for gi, (label, cs) in enumerate(sets.items()):
        band = regret(cs, budgets)
        ivs, seeds, n_q = band.intervals, sorted(set(cs.seed_index)), n_questions(cs)
        rows += [[label, cs.unit, b, iv.mean, iv.low, iv.high, len(cs.curves), n_q, band.n_runs]
                 for b, iv in zip(budgets, ivs)]
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
        band = cumulative_regret_by_episode(cs)
        ks, ivs = [int(k) for k in band.x], band.intervals
        rows += [[label, k, iv.mean, iv.low, iv.high, iv.n] for k, iv in zip(ks, ivs)]
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
        chosen = default_budgets(sets.values())
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
