"""Information-gain curves (the meta-prover's J, or likelihood progress's log p(a* | prefix), vs tokens and
vs episode index) and per-episode progress.

Traces are the JSON records of ``rollouts.jsonl`` / ``metarl-score`` outputs. Two estimators are read:

* Monte Carlo (or exact) progress: ``episodes[*].info.J`` and ``meta.J_init``, μ's probability of success;
* likelihood progress: ``episodes[*].info.logp`` and ``meta.logp_init``, the teacher-forced log-probability
  of the gold answer after the prefix. Plotted on its own scale ("log p(a* | prefix)", nats) or as the
  probability exp(logp) ("p(a* | prefix)", the teacher-forced probability of the gold answer: not J).
  ``likelihood_scale="auto"`` follows the scale the run's ``likelihood_progress`` reward used
  (``config.yaml``; ``log`` when unknown). Regret is only computed from J (see :mod:`analysis.regret`).

Which traces: every trace of a scored file (a ``metarl-score`` output, any file not named
``rollouts.jsonl``); of a training run's ``rollouts.jsonl``, the traces of its last logged step (the
trained policy), unless ``all_steps``. Every filter is stated in the notes. Seeds of one configuration
are pooled.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.io import RunData, group_runs, is_number, question_key
from analysis.plots import PROBABILITY, Section, clip_interval, color, finish, line_with_band, panels, save_figure, \
    unit_label, write_csv
from metarl.metrics import InfoGainCurve, J_at, curve_from_trace, episode_progress, mean_ci, trace_estimator
from metarl.types import EPISODE_KINDS as EPISODE_KINDS_ORDER

MAX_TRACE_LINES = 50
GRID_POINTS = 101
ROLLOUTS = "rollouts.jsonl"
"""The trainer's log of sampled traces: one block per logged step (the others are scored files)."""
LIKELIHOOD_SCALES = ("auto", "log", "prob")

VALUE_AXIS = {
    "J": "J = P(forced answer correct)",
    "logp": "log p(a* | prefix) (nats, teacher-forced)",
    "p": "p(a* | prefix), teacher-forced",
}
VALUE_NAME = {"J": "μ success J", "logp": "log p(a* | prefix)", "p": "p(a* | prefix) = exp(log p)"}
VALUE_BOUNDS = {"J": PROBABILITY, "logp": (-math.inf, 0.0), "p": PROBABILITY}
VALUE_SOURCE = {"J": "`episodes[*].info.J` (Monte Carlo or exact progress)",
                "logp": "`episodes[*].info.logp` (likelihood progress), on its log scale",
                "p": "`episodes[*].info.logp` (likelihood progress) as the probability exp(logp)"}


@dataclass
class CurveSet:
    """The information-gain curves of one run label (pooled seeds), with their question and seed."""

    label: str
    curves: list[InfoGainCurve] = field(default_factory=list)
    questions: list[Hashable] = field(default_factory=list)
    seed_index: list[int] = field(default_factory=list)
    unit: str = "tokens"
    value: str = "J"
    """``"J"`` (μ's probability of success), ``"logp"`` or ``"p"`` (likelihood progress; not J)."""

    @property
    def max_end(self) -> float:
        return max(c.end for c in self.curves)


def _source_file(t: dict[str, Any]) -> str:
    src = str(t.get("_source", ""))
    return src.rsplit(":", 1)[0] if ":" in src else src


def select_traces(traces: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool],
                  all_steps: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Traces passing ``keep``, and a note for every file about what was kept and why.

    A scored file (any trace file not named ``rollouts.jsonl``) gives every trace. A training run's
    ``rollouts.jsonl`` logs a few traces every N steps: only its last logged step's traces (the trained
    policy) are kept, unless ``all_steps``.
    """
    by_file: dict[str, list[dict[str, Any]]] = {}
    for t in traces:
        by_file.setdefault(_source_file(t), []).append(t)
    out: list[dict[str, Any]] = []
    notes: list[str] = []
    for path, ts in by_file.items():
        kept = [t for t in ts if keep(t)]
        steps = sorted({float(t["step"]) for t in kept if is_number(t.get("step"))})
        if Path(path).name == ROLLOUTS and len(steps) > 1 and not all_steps:
            last = steps[-1]
            sel = [t for t in kept if is_number(t.get("step")) and float(t["step"]) == last]
            notes.append(f"`{path}`: kept the {len(sel)} traces of the last logged step {last:g} of {len(steps)} "
                         f"logged steps ({len(kept)} traces with values); --all-steps for every step")
            kept = sel
        elif Path(path).name == ROLLOUTS and len(steps) > 1:
            notes.append(f"`{path}`: kept all {len(kept)} traces of {len(steps)} logged steps "
                         f"({steps[0]:g}..{steps[-1]:g}, --all-steps)")
        elif kept and len(kept) < len(ts):
            notes.append(f"`{path}`: kept {len(kept)} of {len(ts)} traces (the others have no values to plot)")
        out += kept
    return out, notes


def _has_j(t: dict[str, Any]) -> bool:
    return trace_estimator(t) == "J"


def _has_logp(t: dict[str, Any]) -> bool:
    return trace_estimator(t) == "logp"


def likelihood_value(runs: list[RunData], scale: str = "auto") -> str:
    """``"logp"`` or ``"p"``: ``scale`` ("log"/"prob"), or with ``"auto"`` the scale of the runs'
    ``likelihood_progress`` reward (its ``scale`` in config.yaml), ``"logp"`` when unknown or mixed."""
    if scale not in LIKELIHOOD_SCALES:
        raise ValueError(f"likelihood_scale={scale!r}: use one of {LIKELIHOOD_SCALES}")
    if scale != "auto":
        return "p" if scale == "prob" else "logp"
    found = set()
    for r in runs:
        rewards = r.config.get("rewards") if isinstance(r.config, dict) else None
        for name, block in (rewards or {}).items() if isinstance(rewards, dict) else []:
            if isinstance(block, dict) and (name == "likelihood_progress"
                                            or str(block.get("_target_", "")).endswith("LikelihoodProgress")):
                found.add(str(block.get("scale", "log")))
    return "p" if found == {"prob"} else "logp"


AXES = ("metarl", "mrt")
"""Regret / information-gain axes: metarl's (thinking tokens, curve from (0, J_init)) or MRT's notebook's."""


def collect_curves(runs: list[RunData], axis: str = "metarl", all_steps: bool = False,
                   likelihood_scale: str = "auto") -> tuple[dict[str, CurveSet], list[str]]:
    """Curves of every run label whose traces carry ``episodes[*].info.J`` (Monte Carlo / exact progress)
    or, failing that, ``episodes[*].info.logp`` (likelihood progress, on the scale ``likelihood_scale``
    picks: :func:`likelihood_value`), plus notes saying which traces were kept and why
    (:func:`select_traces`); ``axis="mrt"`` places J curves on MRT's regret axis (:func:`metarl.metrics.mrt_curve`)."""
    if axis not in AXES:
        raise ValueError(f"axis={axis!r}: use one of {AXES}")
    notes: list[str] = []
    sets: dict[str, CurveSet] = {}
    for label, rs in group_runs(runs).items():
        estimator = "J" if any(_has_j(t) for r in rs for t in r.traces) else \
            "logp" if any(_has_logp(t) for r in rs for t in r.traces) else None
        if estimator is None:
            if any(r.traces for r in rs):
                notes.append(f"{label}: traces have neither `episodes[*].info.J` (Monte Carlo progress) nor "
                             "`episodes[*].info.logp` (likelihood progress); information-gain curves and regret skipped")
            else:
                notes.append(f"{label}: no traces (rollouts.jsonl or a metarl-score output); information-gain curves skipped")
            continue
        value = "J" if estimator == "J" else likelihood_value(rs, likelihood_scale)
        if value != "J" and axis == "mrt":
            notes.append(f"{label}: likelihood progress has no Monte Carlo token counts for MRT's axis; "
                         "information-gain curves skipped (use --axis metarl)")
            continue
        keep = _has_j if estimator == "J" else _has_logp
        pairs: list[tuple[dict[str, Any], int]] = []
        for si, r in enumerate(rs):
            traces, file_notes = select_traces(r.traces, keep, all_steps)
            notes += [f"{label}: {n}" for n in file_notes]
            pairs += [(t, si) for t in traces]
        cs = CurveSet(label, value=value)
        built: list[tuple[InfoGainCurve, dict[str, Any], int]] = []
        failures: dict[str, int] = {}
        for t, si in pairs:
            try:
                c = curve_from_trace(t, unit="mrt" if axis == "mrt" else "auto", value=value)
            except ValueError as e:
                failures[str(e)] = failures.get(str(e), 0) + 1
                continue
            if c is not None:
                built.append((c, t, si))
        for why, n in failures.items():
            notes.append(f"{label}: {n} trace{'s' if n > 1 else ''} skipped: {why}")
        if not built:
            if axis == "mrt":
                notes.append(f"{label}: traces lack the Monte Carlo context/forced-answer token counts of MRT's axis "
                             f"(info.context_tokens, info.forced_tokens); rescore them with mc_progress")
            continue
        if len({c.unit for c, _, _ in built}) > 1:
            notes.append(f"{label}: some traces lack token spans; all curves of this run use characters")
            built = [(curve_from_trace(t, unit="chars", value=value), t, si) for _, t, si in built]
        if axis != "mrt" and not all(c.has_init for c, _, _ in built):
            n = sum(not c.has_init for c, _, _ in built)
            notes.append(f"{label}: {n} traces have no meta.J_init; their curves start at (0, 0) as in MRT's notebook")
        notes.append(f"{label}: {len(built)} curves from {VALUE_SOURCE[value]}")
        cs.unit = built[0][0].unit
        for c, t, si in built:
            cs.curves.append(c)
            cs.questions.append(question_key(t))
            cs.seed_index.append(si)
        sets[label] = cs
    return sets, notes


def _grid_band(cs: CurveSet, grid: np.ndarray) -> tuple[np.ndarray, list]:
    vals = np.stack([J_at(c, grid) for c in cs.curves])  # (traces, grid)
    ivs = [clip_interval(mean_ci(vals[:, i]), VALUE_BOUNDS[cs.value]) for i in range(grid.size)]
    return vals, ivs


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
        grid = np.linspace(0.0, cs.max_end, GRID_POINTS)
        vals, ivs = _grid_band(cs, grid)
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
        kmax = max(c.num_episodes for c in cs.curves)
        ks, ivs = [], []
        for k in range(kmax + 1):
            v = [c.levels[k] for c in cs.curves if c.num_episodes >= k and (k > 0 or c.has_init or c.unit == "mrt")]
            if v:
                ks.append(k)
                ivs.append(clip_interval(mean_ci(v), VALUE_BOUNDS[value]))
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
