"""Information-gain curves (μ success J vs tokens and vs episode index) and per-episode progress.

Traces are the JSON records of ``rollouts.jsonl`` / ``metarl-score`` outputs. When traces carry a
training ``step``, only the last step's traces are used (the trained policy), which the report
notes. Seeds of one configuration are pooled.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.io import RunData, group_runs, is_number, question_key
from analysis.plots import Section, color, finish, line_with_band, panels, save_figure, unit_label, write_csv
from metarl.metrics import InfoGainCurve, J_at, curve_from_trace, episode_progress, mean_ci
from metarl.types import EPISODE_KINDS as EPISODE_KINDS_ORDER

MAX_TRACE_LINES = 50
GRID_POINTS = 101


@dataclass
class CurveSet:
    """The information-gain curves of one run label (pooled seeds), with their question and seed."""

    label: str
    curves: list[InfoGainCurve] = field(default_factory=list)
    questions: list[Hashable] = field(default_factory=list)
    seed_index: list[int] = field(default_factory=list)
    unit: str = "tokens"

    @property
    def max_end(self) -> float:
        return max(c.end for c in self.curves)


def latest_step(traces: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool]) -> tuple[list[dict[str, Any]], str | None]:
    """Traces passing ``keep``; of those logged with a ``step``, only the last step's are kept."""
    kept = [t for t in traces if keep(t)]
    steps = [t["step"] for t in kept if is_number(t.get("step"))]
    if not steps or len(set(steps)) == 1:
        return kept, None
    last = max(steps)
    out = [t for t in kept if not is_number(t.get("step")) or t["step"] == last]
    return out, f"traces from the last logged training step ({last:g}) only ({len(out)} of {len(kept)})"


def _has_j(t: dict[str, Any]) -> bool:
    return any(is_number(((e or {}).get("info") or {}).get("J")) for e in t.get("episodes") or [] if isinstance(e, dict))


AXES = ("metarl", "mrt")
"""Regret / information-gain axes: metarl's (thinking tokens, curve from (0, J_init)) or MRT's notebook's."""


def collect_curves(runs: list[RunData], axis: str = "metarl") -> tuple[dict[str, CurveSet], list[str]]:
    """Curves of every run label that has traces with ``episodes[*].info.J``, plus notes; ``axis="mrt"``
    places them on MRT's regret axis (:func:`metarl.metrics.mrt_curve`)."""
    if axis not in AXES:
        raise ValueError(f"axis={axis!r}: use one of {AXES}")
    notes: list[str] = []
    sets: dict[str, CurveSet] = {}
    for label, rs in group_runs(runs).items():
        pairs: list[tuple[dict[str, Any], int]] = []
        for si, r in enumerate(rs):
            traces, note = latest_step(r.traces, _has_j)
            if note:
                notes.append(f"{label} ({r.path}): {note}")
            pairs += [(t, si) for t in traces]
        if not pairs:
            if any(r.traces for r in rs):
                notes.append(f"{label}: traces have no `episodes[*].info.J`; information-gain curves and regret skipped")
            else:
                notes.append(f"{label}: no traces (rollouts.jsonl or a metarl-score output); information-gain curves skipped")
            continue
        cs = CurveSet(label)
        built: list[tuple[InfoGainCurve, dict[str, Any], int]] = []
        for t, si in pairs:
            try:
                c = curve_from_trace(t, unit="mrt" if axis == "mrt" else "auto")
            except ValueError as e:
                notes.append(f"{t.get('_source', label)}: {e}; trace skipped")
                continue
            if c is not None:
                built.append((c, t, si))
        if not built:
            if axis == "mrt":
                notes.append(f"{label}: traces lack the Monte Carlo context/forced-answer token counts of MRT's axis "
                             f"(info.context_tokens, info.forced_tokens); rescore them with mc_progress")
            continue
        if len({c.unit for c, _, _ in built}) > 1:
            notes.append(f"{label}: some traces lack token spans; all curves of this run use characters")
            built = [(curve_from_trace(t, unit="chars"), t, si) for _, t, si in built]
        if axis != "mrt" and not all(c.has_init for c, _, _ in built):
            n = sum(not c.has_init for c, _, _ in built)
            notes.append(f"{label}: {n} traces have no meta.J_init; their curves start at (0, 0) as in MRT's notebook")
        cs.unit = built[0][0].unit
        for c, t, si in built:
            cs.curves.append(c)
            cs.questions.append(question_key(t))
            cs.seed_index.append(si)
        sets[label] = cs
    return sets, notes


def _grid_band(cs: CurveSet, grid: np.ndarray) -> tuple[np.ndarray, list]:
    vals = np.stack([J_at(c, grid) for c in cs.curves])  # (traces, grid)
    ivs = [mean_ci(vals[:, i]) for i in range(grid.size)]
    return vals, ivs


def info_gain_vs_tokens(sets: dict[str, CurveSet], out_dir: Path, max_lines: int = MAX_TRACE_LINES) -> tuple[str, str]:
    """Per-run panels: thin per-trace lines + mean J with 95% band; an overlay panel for several runs."""
    n = len(sets) + (1 if len(sets) > 1 else 0)
    fig, axes = panels(n)
    rows = []
    means = {}
    for gi, (label, cs) in enumerate(sets.items()):
        grid = np.linspace(0.0, cs.max_end, GRID_POINTS)
        vals, ivs = _grid_band(cs, grid)
        ax = axes[gi]
        for c in cs.curves[:max_lines]:
            ax.plot(c.tokens, c.J, color="0.55", lw=0.6, alpha=0.45)
            ax.plot([c.end, cs.max_end], [c.J[-1], c.J[-1]], color="0.55", lw=0.6, alpha=0.25, ls=":")
        line_with_band(ax, grid, ivs, f"mean of {len(cs.curves)} traces (95% CI)", color(gi))
        shown = min(max_lines, len(cs.curves))
        ax.plot([], [], color="0.55", lw=0.6, label=f"single traces ({shown} shown)")
        ax.set_ylim(-0.03, 1.03)
        finish(ax, label, unit_label(cs.unit), "J = P(forced answer correct)")
        means[label] = (grid, ivs, gi)
        rows += [[label, cs.unit, float(x), iv.mean, iv.low, iv.high, iv.n] for x, iv in zip(grid, ivs)]
    if len(sets) > 1:
        ax = axes[-1]
        for label, (grid, ivs, gi) in means.items():
            line_with_band(ax, grid, ivs, label, color(gi))
        ax.set_ylim(-0.03, 1.03)
        units = {cs.unit for cs in sets.values()}
        finish(ax, "all runs: mean J", unit_label(units.pop()) if len(units) == 1 else "tokens or characters (see CSV)", "J = P(forced answer correct)")
    png = save_figure(fig, out_dir, "info_gain_tokens", "Information gain: μ success J vs compute (held after a trace ends)")
    csv = write_csv(out_dir, "info_gain_tokens", ["run", "unit", "offset", "mean_J", "ci_low", "ci_high", "n_traces"], rows)
    return png, csv


def info_gain_vs_episodes(sets: dict[str, CurveSet], out_dir: Path) -> tuple[str, str]:
    """Mean J after k episodes (k = 0 is J_init), over traces with at least k episodes."""
    fig, (ax,) = panels(1, size=(7.5, 4.5))
    rows = []
    for gi, (label, cs) in enumerate(sets.items()):
        kmax = max(c.num_episodes for c in cs.curves)
        ks, ivs = [], []
        for k in range(kmax + 1):
            v = [c.levels[k] for c in cs.curves if c.num_episodes >= k and (k > 0 or c.has_init or c.unit == "mrt")]
            if v:
                ks.append(k)
                ivs.append(mean_ci(v))
        line_with_band(ax, ks, ivs, label, color(gi), marker="o")
        rows += [[label, k, iv.mean, iv.low, iv.high, iv.n] for k, iv in zip(ks, ivs)]
    ax.set_ylim(-0.03, 1.03)
    ax.xaxis.get_major_locator().set_params(integer=True)
    finish(ax, "μ success vs episodes (0 = J_init; traces with >= k episodes)", "episodes completed k", "mean J_k (95% CI)")
    png = save_figure(fig, out_dir, "info_gain_episodes")
    csv = write_csv(out_dir, "info_gain_episodes", ["run", "episodes_completed", "mean_J", "ci_low", "ci_high", "n_traces"], rows)
    return png, csv


def _describe(v: list[float]) -> list[float]:
    iv = mean_ci(v)
    q25, med, q75 = np.quantile(v, [0.25, 0.5, 0.75])
    return [len(v), iv.mean, iv.low, iv.high, float(med), float(q25), float(q75)]


def _kind_order(kinds: set[str]) -> list[str]:
    return [k for k in EPISODE_KINDS_ORDER if k in kinds] + sorted(kinds - set(EPISODE_KINDS_ORDER))


def progress_by_kind(sets: dict[str, CurveSet], out_dir: Path) -> tuple[str, str]:
    """Box plots of per-episode progress ΔJ_j = J_j − J_{j−1} by episode kind, one box per run."""
    data: dict[str, dict[str, list[float]]] = {}
    for label, cs in sets.items():
        d = data.setdefault(label, {})
        for c in cs.curves:
            prog = episode_progress(c)
            for j, (kind, p) in enumerate(zip(c.episode_kinds, prog)):
                if j == 0 and not c.has_init:
                    continue  # no J_init: the first episode's progress is unknown
                d.setdefault(kind, []).append(float(p))
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
    finish(ax, "Per-episode progress by episode kind (line = median, triangle = mean)", "episode kind", r"progress $\Delta J_j = J_j - J_{j-1}$")
    png = save_figure(fig, out_dir, "progress_by_kind")
    header = ["run", "kind", "n_episodes", "mean", "ci_low", "ci_high", "median", "q25", "q75"]
    return png, write_csv(out_dir, "progress_by_kind", header, rows)


def episode_rewards_by_kind(runs: list[RunData], out_dir: Path) -> tuple[str, str] | None:
    """Mean dense reward of each name by episode kind (bars with 95% CI), from ``episodes[*].rewards``."""
    data: dict[str, dict[str, dict[str, list[float]]]] = {}  # reward -> run -> kind -> values
    labels: list[str] = []
    for label, rs in group_runs(runs).items():
        for r in rs:
            traces, _ = latest_step(r.traces, lambda t: bool(t.get("episodes")))
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
                             axis: str = "metarl") -> tuple[Section, dict[str, CurveSet]]:
    """The report section on information gain; also returns the curves for the regret section."""
    sec = Section("Information gain and per-episode progress")
    sets, notes = collect_curves(runs, axis)
    if axis == "mrt":
        notes.insert(0, "x axis: MRT's regret notebook (prompt + prefix + suffix tokens + forced-answer tokens / 16, "
                        "curves from (0, 0)); numbers are comparable with MRT's plots, not with metarl's default axis")
    sec.notes += notes
    if sets:
        png, csv = info_gain_vs_tokens(sets, out_dir, max_lines)
        sec.figures.append(("μ success J vs compute: single traces and mean with 95% CI", png, csv))
        png, csv = info_gain_vs_episodes(sets, out_dir)
        sec.figures.append(("μ success J vs number of episodes", png, csv))
        png, csv = progress_by_kind(sets, out_dir)
        sec.figures.append(("Per-episode progress ΔJ by episode kind", png, csv))
    elif not notes:
        sec.notes.append("no traces with `episodes[*].info.J` in any run; information-gain curves skipped")
    rew = episode_rewards_by_kind(runs, out_dir)
    if rew:
        sec.figures.append(("Dense episode rewards by episode kind", *rew))
    return sec, sets
