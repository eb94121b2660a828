"""Report section on information gain: J (or likelihood progress) vs tokens and vs episodes, per-episode progress
by kind, dense episode rewards by kind.

The curves come from :func:`metarl.analysis.collect_curves` (which traces count and why: its notes), their
averages from :func:`metarl.analysis.mean_curve` / :func:`metarl.analysis.mean_by_episode`; this module draws the
report's figures and writes the CSV behind each.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from analysis.plots import Section
from metarl.analysis.curves import (AXES, LIKELIHOOD_SCALES, VALUE_AXIS, VALUE_BOUNDS, VALUE_NAME, CurveSet,
                                    collect_curves, mean_by_episode, mean_curve, progress_by_kind as progress_values)
from metarl.analysis.intervals import PROBABILITY
from metarl.analysis.io import RunData, group_runs, is_number, select_traces
from metarl.analysis.plots import color, finish, line_with_band, panels, save_figure, unit_label, write_csv
from metarl.metrics import mean_ci
from metarl.types import EPISODE_KINDS as EPISODE_KINDS_ORDER

__all__ = ["AXES", "LIKELIHOOD_SCALES", "MAX_TRACE_LINES", "CurveSet", "collect_curves", "information_gain_section"]

MAX_TRACE_LINES = 50


def _suffix(value: str) -> str:
    return {"J": "", "logp": "_logp", "p": "_prob"}[value]


def _xlabel(unit: str, value: str) -> str:
    xl = unit_label(unit)
    return xl if value == "J" else xl.replace("J_init", "its value after the prompt alone")


def _ylim(ax: Any, value: str) -> None:
    if VALUE_BOUNDS[value] == PROBABILITY:
        ax.set_ylim(-0.03, 1.03)


def info_gain_vs_tokens(sets: dict[str, CurveSet], out_dir: Path, max_lines: int = MAX_TRACE_LINES) -> tuple[str, str]:
    """Per-run panels: thin per-trace lines + mean with 95% band; an overlay panel for several runs. All
    sets hold one kind of value (J, logp or p)."""
    value = next(iter(sets.values())).value
    n = len(sets) + (1 if len(sets) > 1 else 0)
    fig, axes = panels(n)
    rows = []
    means = {}
    for gi, (label, cs) in enumerate(sets.items()):
        band = mean_curve(cs)
        grid, ivs = band.x, band.intervals
        ax = axes[gi]
        for c in cs.curves[:max_lines]:
            ax.plot(c.tokens, c.J, color="0.55", lw=0.6, alpha=0.45)
            ax.plot([c.end, cs.max_end], [c.J[-1], c.J[-1]], color="0.55", lw=0.6, alpha=0.25, ls=":")
        line_with_band(ax, grid, ivs, f"mean of {len(cs.curves)} traces (95% CI)", color(gi))
        shown = min(max_lines, len(cs.curves))
        ax.plot([], [], color="0.55", lw=0.6, label=f"single traces ({shown} shown)")
        _ylim(ax, value)
        finish(ax, label, _xlabel(cs.unit, value), VALUE_AXIS[value])
        means[label] = (grid, ivs, gi)
        rows += [[label, cs.unit, value, float(x), iv.mean, iv.low, iv.high, iv.n] for x, iv in zip(grid, ivs)]
    if len(sets) > 1:
        ax = axes[-1]
        for label, (grid, ivs, gi) in means.items():
            line_with_band(ax, grid, ivs, label, color(gi))
        _ylim(ax, value)
        units = {cs.unit for cs in sets.values()}
        finish(ax, f"all runs: mean {VALUE_NAME[value]}",
               _xlabel(units.pop(), value) if len(units) == 1 else "tokens or characters (see CSV)", VALUE_AXIS[value])
    name = "info_gain_tokens" + _suffix(value)
    title = ("Information gain: μ success J vs compute" if value == "J" else
             f"Likelihood progress: {VALUE_NAME[value]}, the teacher-forced {'probability' if value == 'p' else 'log-probability'} "
             "of the gold answer (not J), vs compute") + " (held after a trace ends)"
    png = save_figure(fig, out_dir, name, title)
    csv = write_csv(out_dir, name, ["run", "unit", "value", "offset", "mean_J", "ci_low", "ci_high", "n_traces"], rows)
    return png, csv


def info_gain_vs_episodes(sets: dict[str, CurveSet], out_dir: Path) -> tuple[str, str]:
    """Mean value after k episodes (k = 0: before the first episode), over traces with at least k episodes."""
    value = next(iter(sets.values())).value
    fig, (ax,) = panels(1, size=(7.5, 4.5))
    rows = []
    for gi, (label, cs) in enumerate(sets.items()):
        band = mean_by_episode(cs)
        ks, ivs = [int(k) for k in band.x], band.intervals
        line_with_band(ax, ks, ivs, label, color(gi), marker="o")
        rows += [[label, value, k, iv.mean, iv.low, iv.high, iv.n] for k, iv in zip(ks, ivs)]
    _ylim(ax, value)
    ax.xaxis.get_major_locator().set_params(integer=True)
    start = "J_init" if value == "J" else "the prompt alone"
    finish(ax, f"{VALUE_NAME[value]} vs episodes (0 = {start}; traces with >= k episodes)", "episodes completed k",
           f"mean {VALUE_AXIS[value]} (95% CI)" if value != "p" else "mean p(a* | prefix) (95% CI)")
    name = "info_gain_episodes" + _suffix(value)
    png = save_figure(fig, out_dir, name)
    csv = write_csv(out_dir, name, ["run", "value", "episodes_completed", "mean_J", "ci_low", "ci_high", "n_traces"], rows)
    return png, csv


def _describe(v: list[float]) -> list[float]:
    iv = mean_ci(v)
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return [len(v), iv.mean, iv.low, iv.high, float(med), float(q25), float(q75)]


def _kind_order(kinds: set[str]) -> list[str]:
    return [k for k in EPISODE_KINDS_ORDER if k in kinds] + sorted(kinds - set(EPISODE_KINDS_ORDER))


DELTA_AXIS = {"J": r"progress $\Delta J_j = J_j - J_{j-1}$",
              "logp": r"progress $\Delta L_j = \log p_j - \log p_{j-1}$ (nats)",
              "p": r"progress $p_j - p_{j-1}$, $p$ = p(a* | prefix)"}


def progress_by_kind(sets: dict[str, CurveSet], out_dir: Path) -> tuple[str, str]:
    """Box plots of per-episode progress ΔJ_j = J_j − J_{j−1} (or of log p / p) by episode kind, one box per run."""
    value = next(iter(sets.values())).value
    data = {label: progress_values(cs) for label, cs in sets.items()}
    kinds = _kind_order({k for d in data.values() for k in d})
    fig, (ax,) = panels(1, size=(max(6.5, 1.6 * len(kinds) * max(1, len(data))), 4.5))
    width = 0.8 / max(1, len(data))
    rows = []
    for gi, (label, d) in enumerate(data.items()):
        pos = [ki + (gi - (len(data) - 1) / 2) * width for ki, k in enumerate(kinds) if d.get(k)]
        vals = [d[k] for k in kinds if d.get(k)]
        if vals:
            bp = ax.boxplot(vals, positions=pos, widths=width * 0.85, patch_artist=True, showmeans=True, manage_ticks=False,
                            medianprops={"color": "black"}, meanprops={"markerfacecolor": "black", "markeredgecolor": "black"})
            for b in bp["boxes"]:
                b.set(facecolor=color(gi), alpha=0.45)
            ax.plot([], [], color=color(gi), lw=6, alpha=0.45, label=label)
        rows += [[label, k, *_describe(d[k])] for k in kinds if d.get(k)]
    ax.axhline(0.0, color="0.3", lw=0.8)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_xlim(-0.6, len(kinds) - 0.4)
    what = "" if value == "J" else f" of {VALUE_NAME[value]}"
    finish(ax, f"Per-episode progress{what} by episode kind (line = median, triangle = mean)", "episode kind",
           DELTA_AXIS[value])
    name = "progress_by_kind" + _suffix(value)
    png = save_figure(fig, out_dir, name)
    header = ["run", "kind", "n_episodes", "mean", "ci_low", "ci_high", "median", "q25", "q75"]
    return png, write_csv(out_dir, name, header, rows)


def episode_rewards_by_kind(runs: list[RunData], out_dir: Path, all_steps: bool = False) -> tuple[str, str] | None:
    """Mean dense reward of each name by episode kind (bars with 95% CI), from ``episodes[*].rewards``."""
    data: dict[str, dict[str, dict[str, list[float]]]] = {}  # reward -> run -> kind -> values
    labels: list[str] = []
    for label, rs in group_runs(runs).items():
        for r in rs:
            traces, _ = select_traces(r.traces, lambda t: bool(t.get("episodes")), all_steps)
            for t in traces:
                for e in t.get("episodes") or []:
                    if not isinstance(e, dict):
                        continue
                    for name, v in (e.get("rewards") or {}).items():
                        if is_number(v):
                            data.setdefault(name, {}).setdefault(label, {}).setdefault(str(e.get("kind", "other")), []).append(float(v))
                            if label not in labels:
                                labels.append(label)
    if not data:
        return None
    fig, axes = panels(len(data))
    rows = []
    width = 0.8 / len(labels)
    for ax, (name, by_run) in zip(axes, sorted(data.items())):
        kinds = _kind_order({k for d in by_run.values() for k in d})
        for gi, label in enumerate(labels):
            d = by_run.get(label, {})
            xs, ms, err = [], [], [[], []]
            for ki, k in enumerate(kinds):
                if d.get(k):
                    desc = _describe(d[k])
                    rows.append([name, label, k, *desc[:4]])
                    xs.append(ki + (gi - (len(labels) - 1) / 2) * width)
                    ms.append(desc[1])
                    err[0].append(0.0 if math.isnan(desc[2]) else desc[1] - desc[2])
                    err[1].append(0.0 if math.isnan(desc[3]) else desc[3] - desc[1])
            if xs:
                ax.bar(xs, ms, width=width * 0.9, yerr=err, capsize=3, color=color(gi), alpha=0.75, label=label)
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_xticks(range(len(kinds)), kinds)
        finish(ax, f"episode reward '{name}'", "episode kind", "mean reward per episode (95% CI)")
    png = save_figure(fig, out_dir, "episode_rewards_by_kind", "Dense episode rewards by kind")
    csv = write_csv(out_dir, "episode_rewards_by_kind", ["reward", "run", "kind", "n_episodes", "mean", "ci_low", "ci_high"], rows)
    return png, csv


def information_gain_section(runs: list[RunData], out_dir: Path, max_lines: int = MAX_TRACE_LINES,
                             axis: str = "metarl", all_steps: bool = False,
                             likelihood_scale: str = "auto") -> tuple[Section, dict[str, CurveSet]]:
    """The report section on information gain; also returns the curves for the regret section."""
    sec = Section("Information gain and per-episode progress")
    sets, notes = collect_curves(runs, axis, all_steps, likelihood_scale)
    if axis == "mrt":
        notes.insert(0, "x axis: MRT's regret notebook (prompt + prefix + suffix tokens + forced-answer tokens / 16, "
                        "curves from (0, 0)); numbers are comparable with MRT's plots, not with metarl's default axis")
    sec.notes += notes
    for value in ("J", "p", "logp"):
        part = {k: cs for k, cs in sets.items() if cs.value == value}
        if not part:
            continue
        name = VALUE_NAME[value]
        if value != "J":
            sec.notes.append(f"{', '.join(part)}: likelihood progress, {name}: the teacher-forced "
                             f"{'probability' if value == 'p' else 'log-probability'} of the gold answer after each "
                             "prefix, not μ's probability of success J (set --likelihood-scale log|prob)")
        png, csv = info_gain_vs_tokens(part, out_dir, max_lines)
        sec.figures.append((f"{name} vs compute: single traces and mean with 95% CI", png, csv))
        png, csv = info_gain_vs_episodes(part, out_dir)
        sec.figures.append((f"{name} vs number of episodes", png, csv))
        png, csv = progress_by_kind(part, out_dir)
        sec.figures.append((f"Per-episode progress of {name} by episode kind", png, csv))
    if not sets and not notes:
        sec.notes.append("no traces with `episodes[*].info.J` or `episodes[*].info.logp` in any run; "
                         "information-gain curves skipped")
    rew = episode_rewards_by_kind(runs, out_dir, all_steps)
    if rew:
        sec.figures.append(("Dense episode rewards by episode kind", *rew))
    return sec, sets
