"""Information-gain curves of traces and their averages: J against tokens and against episodes.

A trace's curve comes from :func:`metarl.metrics.curve_from_trace`. Two estimators are read:

* Monte Carlo (or exact) progress: ``episodes[*].info.J`` and ``meta.J_init``, μ's probability of success
  (value ``"J"``, a probability: its intervals are clipped to [0, 1]);
* likelihood progress: ``episodes[*].info.logp`` and ``meta.logp_init``, the teacher-forced log-probability
  of the gold answer after the prefix: on its own scale (``"logp"``, nats, intervals clipped to <= 0) or as
  the probability exp(logp) (``"p"``: the teacher-forced probability of the gold answer, not J). Regret is
  only defined for J (:mod:`metarl.analysis.regret`).

:func:`j_curves` builds the curves of a list of traces (one configuration, seeds pooled) into a
:class:`CurveSet`; :func:`mean_curve` and :func:`mean_by_episode` average them into a :class:`Band` (means
with 95% t-intervals over traces); :func:`collect_curves` does it for every run label of loaded runs.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metarl.analysis.intervals import PROBABILITY, clip_interval
from metarl.analysis.io import RunData, group_runs, question_key, select_traces
from metarl.metrics import InfoGainCurve, Interval, J_at, curve_from_trace, episode_progress, mean_ci, trace_estimator
from metarl.types import EPISODE_KINDS

__all__ = ["Band", "CurveSet", "j_curves", "mean_curve", "mean_by_episode", "progress_by_kind", "likelihood_value",
           "collect_curves", "VALUE_BOUNDS"]

GRID_POINTS = 101
LIKELIHOOD_SCALES = ("auto", "log", "prob")
AXES = ("metarl", "mrt")
"""Curve axes: metarl's (thinking tokens, curve from (0, J_init)) or MRT's regret notebook's."""

VALUE_AXIS = {
    "J": "J = P(forced answer correct)",
    "logp": "log p(a* | prefix) (nats, teacher-forced)",
    "p": "p(a* | prefix), teacher-forced",
}
VALUE_NAME = {"J": "μ success J", "logp": "log p(a* | prefix)", "p": "p(a* | prefix) = exp(log p)"}
VALUE_BOUNDS = {"J": PROBABILITY, "logp": (-math.inf, 0.0), "p": PROBABILITY}
"""Bounds of each curve value: the averaged curves' intervals are clipped to them."""
VALUE_SOURCE = {"J": "`episodes[*].info.J` (Monte Carlo or exact progress)",
                "logp": "`episodes[*].info.logp` (likelihood progress), on its log scale",
                "p": "`episodes[*].info.logp` (likelihood progress) as the probability exp(logp)"}


@dataclass(frozen=True)
class Band:
    """Means with 95% intervals along an x axis (an averaged curve, or regret per budget).

    ``x_name`` says what x is (``"tokens"``, ``"chars"``, ``"mrt"``, ``"episodes"``, ``"budget"``), ``y_name``
    what the means are (``"J"``, ``"logp"``, ``"p"``, ``"normalized_regret"``, ``"cumulative_regret"``);
    ``n_runs`` is the number of seeds pooled.

    >>> b = Band((0.0, 1.0), (Interval(0.5, 0.25, 0.75, 4), Interval(1.0, math.nan, math.nan, 1)), "episodes", "J")
    >>> b.mean.tolist(), b.low.tolist()[0], b.rows()[1]
    ([0.5, 1.0], 0.25, ['', 1.0, 1.0, nan, nan, 1])
    """

    x: tuple[float, ...]
    intervals: tuple[Interval, ...]
    x_name: str
    y_name: str
    label: str = ""
    n_runs: int = 1

    @property
    def mean(self) -> np.ndarray:
        return np.array([iv.mean for iv in self.intervals])

    @property
    def low(self) -> np.ndarray:
        return np.array([iv.low for iv in self.intervals])

    @property
    def high(self) -> np.ndarray:
        return np.array([iv.high for iv in self.intervals])

    def rows(self) -> list[list[Any]]:
        """``[label, x, mean, ci_low, ci_high, n]`` per point (the CSV rows of :func:`metarl.analysis.plot_bands`)."""
        return [[self.label, float(x), iv.mean, iv.low, iv.high, iv.n] for x, iv in zip(self.x, self.intervals)]


@dataclass
class CurveSet:
    """The information-gain curves of one configuration (seeds pooled), with each curve's question and seed.

    ``value`` is ``"J"`` (μ's probability of success), ``"logp"`` or ``"p"`` (likelihood progress; not J);
    ``unit`` the x axis of every curve; ``notes`` say which traces were skipped and why.
    """

    label: str
    curves: list[InfoGainCurve] = field(default_factory=list)
    questions: list[Hashable] = field(default_factory=list)
    seed_index: list[int] = field(default_factory=list)
    unit: str = "tokens"
    value: str = "J"
    notes: list[str] = field(default_factory=list)

    @property
    def max_end(self) -> float:
        """The longest curve's end offset."""
        return max(c.end for c in self.curves)


def j_curves(traces: Sequence[Any], label: str = "run", value: str = "auto", axis: str = "metarl",
             seeds: Sequence[int] | None = None) -> CurveSet:
    """The curves of ``traces`` (:class:`metarl.types.Trace` objects, :class:`~metarl.analysis.io.LoggedTrace`
    or JSON records): ``value="auto"`` reads J when any trace has ``info.J``, else ``"logp"``; traces without
    that value, or whose curve cannot be built, are skipped with a note. When some traces lack token spans,
    every curve uses characters. ``axis="mrt"`` places J on MRT's regret axis. ``seeds[i]`` is trace i's seed.

    >>> def rec(j_init, end, j):
    ...     return {"prompt": f"q{end}", "completion": "x" * end, "meta": {"J_init": j_init}, "episodes": [
    ...         {"kind": "attempt", "start": 0, "end": end, "token_start": 0, "token_end": end, "info": {"J": j}}]}
    >>> cs = j_curves([rec(0.0, 10, 1.0), rec(0.5, 20, 0.5), {"prompt": "no J", "completion": "y"}])
    >>> cs.value, cs.unit, [c.J for c in cs.curves], cs.max_end, cs.notes
    ('J', 'tokens', [(0.0, 1.0), (0.5, 0.5)], 20.0, ['1 trace skipped: no episodes[*].info.J'])
    """
    if axis not in AXES:
        raise ValueError(f"axis={axis!r}: use one of {AXES}")
    if value == "auto":
        found = {trace_estimator(t) for t in traces}
        value = "J" if "J" in found else "logp" if "logp" in found else "J"
    if value not in VALUE_NAME:
        raise ValueError(f"value={value!r}: use 'auto', 'J', 'logp' or 'p'")
    if seeds is not None and len(seeds) != len(traces):
        raise ValueError(f"got {len(seeds)} seeds for {len(traces)} traces")
    estimator = "J" if value == "J" else "logp"
    built: list[tuple[InfoGainCurve, Any, int]] = []
    failures: dict[str, int] = {}
    for i, t in enumerate(traces):
        if trace_estimator(t) != estimator:
            why = f"no episodes[*].info.{estimator}"
            failures[why] = failures.get(why, 0) + 1
            continue
        try:
            c = curve_from_trace(t, unit="mrt" if axis == "mrt" else "auto", value=value)
        except ValueError as e:
            failures[str(e)] = failures.get(str(e), 0) + 1
            continue
        if c is None:  # MRT's axis without the Monte Carlo token counts
            why = "no Monte Carlo context/forced-answer token counts for MRT's axis"
            failures[why] = failures.get(why, 0) + 1
            continue
        built.append((c, t, 0 if seeds is None else int(seeds[i])))
    cs = CurveSet(label, value=value)
    cs.notes += [f"{n} trace{'s' if n > 1 else ''} skipped: {why}" for why, n in failures.items()]
    if len({c.unit for c, _, _ in built}) > 1:
        cs.notes.append("some traces lack token spans; all curves use characters")
        built = [(curve_from_trace(t, unit="chars", value=value), t, si) for _, t, si in built]
    if built:
        cs.unit = built[0][0].unit
    for c, t, si in built:
        cs.curves.append(c)
        cs.questions.append(question_key(t))
        cs.seed_index.append(si)
    return cs


def _curves(curves: CurveSet | Sequence[InfoGainCurve]) -> tuple[list[InfoGainCurve], str, str, str]:
    if isinstance(curves, CurveSet):
        cs = curves
        return cs.curves, cs.value, cs.unit, cs.label
    cl = list(curves)
    return cl, (cl[0].value if cl else "J"), (cl[0].unit if cl else "tokens"), ""


def mean_curve(curves: CurveSet | Sequence[InfoGainCurve], grid: Sequence[float] | None = None,
               points: int = GRID_POINTS) -> Band:
    """The mean curve against tokens (or the curves' unit) with a 95% t-interval over traces at each grid point,
    clipped to the value's bounds (J in [0, 1]). A trace's value is held after it ends. ``grid`` defaults to
    ``points`` evenly spaced offsets from 0 to the longest curve's end.

    >>> from metarl.metrics import information_gain_curve as igc
    >>> band = mean_curve([igc([10], [1.0], J_init=0.0), igc([20], [0.5], J_init=0.5)], grid=[0, 5, 10, 20])
    >>> band.mean.tolist(), band.x_name, float(band.high[0]), float(band.low[0])
    ([0.25, 0.5, 0.75, 0.75], 'tokens', 1.0, 0.0)
    """
    cl, value, unit, label = _curves(curves)
    if not cl:
        raise ValueError("mean_curve: no curves")
    xs = np.linspace(0.0, max(c.end for c in cl), points) if grid is None else np.asarray(grid, dtype=float)
    vals = np.stack([np.atleast_1d(J_at(c, xs)) for c in cl])  # (traces, grid)
    ivs = tuple(clip_interval(mean_ci(vals[:, i]), VALUE_BOUNDS[value]) for i in range(xs.size))
    return Band(tuple(float(x) for x in xs), ivs, unit, value, label, _n_runs(curves))


def mean_by_episode(curves: CurveSet | Sequence[InfoGainCurve]) -> Band:
    """The mean value after k episodes (k = 0: before the first, J_init) over the traces with at least k
    episodes, with a 95% t-interval clipped to the value's bounds. Curves without J_init do not count at k = 0.

    >>> from metarl.metrics import information_gain_curve as igc
    >>> band = mean_by_episode([igc([5, 9], [0.5, 1.0], J_init=0.0), igc([4], [0.25], J_init=0.5)])
    >>> band.x, band.mean.tolist(), [iv.n for iv in band.intervals]
    ((0.0, 1.0, 2.0), [0.25, 0.375, 1.0], [2, 2, 1])
    """
    cl, value, _, label = _curves(curves)
    ks, ivs = [], []
    for k in range(max((c.num_episodes for c in cl), default=-1) + 1):
        v = [c.levels[k] for c in cl if c.num_episodes >= k and (k > 0 or c.has_init or c.unit == "mrt")]
        if v:
            ks.append(float(k))
            ivs.append(clip_interval(mean_ci(v), VALUE_BOUNDS[value]))
    return Band(tuple(ks), tuple(ivs), "episodes", value, label, _n_runs(curves))


def _n_runs(curves: Any) -> int:
    return len(set(curves.seed_index)) if isinstance(curves, CurveSet) and curves.seed_index else 1


def progress_by_kind(curves: CurveSet | Sequence[InfoGainCurve]) -> dict[str, list[float]]:
    """Per-episode progress ``ΔJ_j = J_j − J_{j−1}`` (or of log p / p) grouped by episode kind, kinds in
    :data:`metarl.types.EPISODE_KINDS` order; the first episode of a curve without J_init is left out.

    >>> from metarl.metrics import information_gain_curve as igc
    >>> progress_by_kind([igc([5, 9], [0.5, 0.25], J_init=0.0, kinds=["attempt", "verify"])])
    {'attempt': [0.5], 'verify': [-0.25]}
    """
    cl, _, _, _ = _curves(curves)
    out: dict[str, list[float]] = {}
    for c in cl:
        for j, (kind, p) in enumerate(zip(c.episode_kinds, episode_progress(c))):
            if j == 0 and not c.has_init:
                continue  # no J_init: the first episode's progress is unknown
            out.setdefault(kind, []).append(float(p))
    order = [k for k in EPISODE_KINDS if k in out] + sorted(set(out) - set(EPISODE_KINDS))
    return {k: out[k] for k in order}


def likelihood_value(configs: Iterable[Mapping[str, Any]], scale: str = "auto") -> str:
    """``"logp"`` or ``"p"`` for likelihood-progress curves: ``scale`` ("log"/"prob"), or with ``"auto"`` the
    scale of the runs' ``likelihood_progress`` reward (its ``scale`` in config.yaml), ``"logp"`` when unknown
    or mixed.

    >>> likelihood_value([{"rewards": {"likelihood_progress": {"scale": "prob"}}}]), likelihood_value([{}])
    ('p', 'logp')
    """
    if scale not in LIKELIHOOD_SCALES:
        raise ValueError(f"likelihood_scale={scale!r}: use one of {LIKELIHOOD_SCALES}")
    if scale != "auto":
        return "p" if scale == "prob" else "logp"
    found = set()
    for config in configs:
        rewards = config.get("rewards") if isinstance(config, Mapping) else None
        for name, block in rewards.items() if isinstance(rewards, Mapping) else []:
            if isinstance(block, Mapping) and (name == "likelihood_progress"
                                               or str(block.get("_target_", "")).endswith("LikelihoodProgress")):
                found.add(str(block.get("scale", "log")))
    return "p" if found == {"prob"} else "logp"


def collect_curves(runs: list[RunData], axis: str = "metarl", all_steps: bool = False,
                   likelihood_scale: str = "auto") -> tuple[dict[str, CurveSet], list[str]]:
    """A :class:`CurveSet` per run label (seeds pooled) of :func:`~metarl.analysis.io.load_run` results whose
    traces carry ``info.J`` or, failing that, ``info.logp`` (on the scale :func:`likelihood_value` picks), plus
    notes saying which traces were kept and why (:func:`~metarl.analysis.io.select_traces`: the last logged step
    of a ``rollouts.jsonl`` unless ``all_steps``).

    >>> import json, tempfile
    >>> from pathlib import Path
    >>> from metarl.analysis.io import load_run
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "scored.jsonl").write_text(json.dumps({"prompt": "q", "completion": "ab", "meta": {"J_init": 0.5},
    ...     "episodes": [{"kind": "attempt", "start": 0, "end": 2, "text": "ab", "info": {"J": 1.0}}]}) + "\\n")
    >>> sets, notes = collect_curves([load_run(d / "scored.jsonl")])
    >>> sets["scored"].curves[0].J, sets["scored"].unit, notes[-1]
    ((0.5, 1.0), 'chars', 'scored: 1 curves from `episodes[*].info.J` (Monte Carlo or exact progress)')
    """
    if axis not in AXES:
        raise ValueError(f"axis={axis!r}: use one of {AXES}")
    notes: list[str] = []
    sets: dict[str, CurveSet] = {}
    for label, rs in group_runs(runs).items():
        found = {trace_estimator(t) for r in rs for t in r.traces}
        estimator = "J" if "J" in found else "logp" if "logp" in found else None
        if estimator is None:
            if any(r.traces for r in rs):
                notes.append(f"{label}: traces have neither `episodes[*].info.J` (Monte Carlo progress) nor "
                             "`episodes[*].info.logp` (likelihood progress); information-gain curves and regret skipped")
            else:
                notes.append(f"{label}: no traces (rollouts.jsonl or a metarl-score output); information-gain curves skipped")
            continue
        value = "J" if estimator == "J" else likelihood_value([r.config for r in rs], likelihood_scale)
        if value != "J" and axis == "mrt":
            notes.append(f"{label}: likelihood progress has no Monte Carlo token counts for MRT's axis; "
                         "information-gain curves skipped (use --axis metarl)")
            continue
        traces: list[dict[str, Any]] = []
        seeds: list[int] = []
        for si, r in enumerate(rs):
            kept, file_notes = select_traces(r.traces, lambda t: trace_estimator(t) == estimator, all_steps)
            notes += [f"{label}: {n}" for n in file_notes]
            traces += kept
            seeds += [si] * len(kept)
        cs = j_curves(traces, label, value, axis, seeds)
        notes += [f"{label}: {n}" for n in cs.notes]
        if not cs.curves:
            if axis == "mrt":
                notes.append(f"{label}: traces lack the Monte Carlo context/forced-answer token counts of MRT's axis "
                             f"(info.context_tokens, info.forced_tokens); rescore them with mc_progress")
            continue
        if axis != "mrt" and not all(c.has_init for c in cs.curves):
            n = sum(not c.has_init for c in cs.curves)
            notes.append(f"{label}: {n} traces have no meta.J_init; their curves start at (0, 0) as in MRT's notebook")
        notes.append(f"{label}: {len(cs.curves)} curves from {VALUE_SOURCE[value]}")
        sets[label] = cs
    return sets, notes
