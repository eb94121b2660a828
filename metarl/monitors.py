r"""Training-health monitors over the per-step metrics the trainer logs (``metrics.jsonl``).

Dense process rewards can be gamed: the policy learns what the estimator pays for instead of what
the task asks (PURE, arXiv 2504.15275, saw sum-form credit collapse training this way). Each monitor
reads a stream of per-step metric dicts, the keys :class:`metarl.trainer.grpo.MetaRLTrainer` logs
(``metarl/outcome_accuracy``, ``metarl/reward/dense``, ``metarl/tokens/mean``,
``metarl/tokens/cap_fraction``, ``metarl/episodes_per_trace``), keeps the last ``window``
observations, and reports statistics every step. A monitor *alarms* on a step where its condition
holds over a full window and *trips* (once, latched) after ``patience`` consecutive alarms; its
:class:`Status` then keeps the step and the numbers that tripped it. A step that lacks a monitor's
keys (or has a non-finite value there) is not an observation of that monitor; windows count
observations, and slopes use the logged step numbers.

Notation: over the window's observations (x_k = step, y_k = value, k = 1..n), the least-squares
slope is b = Σ (x_k − x̄)(y_k − ȳ) / Σ (x_k − x̄)², and the fitted change across the window is
Δy = b · (x_n − x_1) (NaN with fewer than two distinct steps). Defaults in parentheses.

``reward_hacking``: dense reward up while outcome accuracy is flat or down::

    alarm  ⇔  n = W  ∧  Δ dense ≥ reward_rise (0.1)  ∧  Δ accuracy ≤ accuracy_tolerance (0.02)

(dense = ``reward_key``, the per-trace dense return Σ_j r̃_j averaged over the batch, in reward units.)

``length_inflation``: tokens up, accuracy flat or down; the token change is relative to the window mean::

    alarm  ⇔  n = W  ∧  Δ tokens / mean(tokens) ≥ token_rise (0.2)  ∧  Δ accuracy ≤ accuracy_tolerance

``cap_saturation``: most traces cut by the compute cap, sustained::

    alarm  ⇔  n = W  ∧  mean(cap_fraction) ≥ cap_fraction (0.9)

``episode_collapse``: episodes per trace fall back towards one. With m_k the mean of the window ending
at observation k, the reference is the best earlier window that does not overlap the current one,
ref = max_{k ≤ n_obs − W} m_k, and the share of the extra episodes (beyond the first) still there is
retained = (m_now − 1) / (ref − 1)::

    alarm  ⇔  ref − 1 ≥ min_extra_episodes (0.5)  ∧  retained ≤ 1 − episode_drop (0.5)

(so the reference needs 2W observations; a policy that always wrote one episode cannot collapse.)

``mu_calibration`` (:class:`MuCalibration`) reads scored *traces*, not the metric stream: the traces that carry the
meta-prover's Ĵ (Monte Carlo progress: ``meta.J_init``, ``episodes[*].info.J``) and an outcome, the last
``calibration_window`` (128) of them. With r = Pearson correlation of Ĵ_last with the outcome and v = mean ΔĴ of
verify episodes after a correct attempt (:mod:`metarl.calibration`)::

    alarm  ⇔  n ≥ calibration_min_traces (32)  ∧  ( r < calibration_correlation (0.8)
                ∨ (n_v ≥ calibration_min_verify (8) ∧ v < calibration_verify_after_correct (−0.05)) )

(r undefined, e.g. every trace in the window wrong, is no alarm.) μ that stops tracking the outcome makes progress
rewards noise, or worse, a penalty on verifying a right answer. In training,
:class:`metarl.trainer.callbacks.CalibrationWatch` feeds it every scored batch; ``analysis.health`` replays it over
``rollouts.jsonl`` (:func:`replay_traces`) for runs logged without it.

:class:`metarl.trainer.callbacks.HealthCallback` runs the monitors inside the trainer: on each training log it adds
``health/<monitor>/<statistic>`` (and ``.../alarm``, ``.../tripped`` as 0/1) to the logs, so they land in
``metrics.jsonl``, and warns once (``logging.warning``) when a monitor trips, with the numbers.
:func:`replay` runs monitors over a recorded stream (``analysis.health`` uses it for runs logged
without them). The monitors' state starts empty when training resumes from a checkpoint. This module needs
neither torch nor transformers, so the analysis of a finished run imports it cheaply.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.calibration import EpisodeCorrect, auroc, episode_rows, j_values, pearson
from metarl.registry import ConfigError

PREFIX = "health/"
ACCURACY_KEY = "metarl/outcome_accuracy"
DENSE_KEY = "metarl/reward/dense"
TOKENS_KEY = "metarl/tokens/mean"
CAP_KEY = "metarl/tokens/cap_fraction"
EPISODES_KEY = "metarl/episodes_per_trace"

__all__ = ["HealthConfig", "Monitor", "MuCalibration", "Status", "build_calibration_monitor", "build_monitors",
           "fitted_change", "replay", "replay_traces"]


def fitted_change(steps: Sequence[float], values: Sequence[float]) -> float:
    """Δy = b · (x_n − x_1) of the least-squares line through (steps, values); NaN if it is undefined.

    >>> fitted_change([1, 2, 3, 4], [0.0, 1.0, 2.0, 3.0])
    3.0
    >>> fitted_change([1, 2, 3], [1.0, 0.0, 1.0]), math.isnan(fitted_change([5], [1.0]))
    (0.0, True)
    """
    n = len(steps)
    if n < 2:
        return math.nan
    mx, my = sum(steps) / n, sum(values) / n
    sxx = sum((x - mx) ** 2 for x in steps)
    if sxx == 0:
        return math.nan
    b = sum((x - mx) * (y - my) for x, y in zip(steps, values)) / sxx
    return b * (steps[-1] - steps[0])


def _value(metrics: Mapping[str, Any], key: str) -> float | None:
    """The finite number logged under ``key``, else None (absent, a bool, a string, NaN, inf)."""
    v = metrics.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


@dataclass
class Status:
    """Whether a monitor has tripped; if so the first step it did, the statistics there and a message."""

    name: str
    tripped: bool = False
    step: int | None = None
    stats: dict[str, float] = field(default_factory=dict)
    message: str = ""


def _observe(monitor: Any, step: int) -> dict[str, float]:
    """The end of every monitor's ``update``: its statistics, the alarm, the patience streak, the trip (once, with
    its description) and the step's record (the defined statistics, ``alarm`` and ``tripped`` as 0/1)."""
    stats = monitor.statistics()
    alarm = monitor.alarm(stats)
    monitor.streak = monitor.streak + 1 if alarm else 0
    if monitor.streak >= monitor.patience and not monitor.status.tripped:
        monitor.status = Status(monitor.name, True, int(step), dict(stats), monitor.describe(stats))
    out = {k: v for k, v in stats.items() if math.isfinite(v)}
    return {**out, "alarm": float(alarm), "tripped": float(monitor.status.tripped)}


class Monitor:
    """A windowed statistic over the metric stream with a threshold; subclasses define what it reads
    (``keys``), its statistics and its alarm condition (see the module docstring for the formulas)."""

    name = "monitor"
    keys: tuple[str, ...] = ()

    def __init__(self, window: int, patience: int = 1) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 2:
            raise ValueError(f"window={window!r} must be a whole number of steps >= 2")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience={patience!r} must be a whole number of steps >= 1")
        self.window, self.patience = window, patience
        self.steps: deque[float] = deque(maxlen=window)
        self.values: dict[str, deque[float]] = {k: deque(maxlen=window) for k in self.keys}
        self.status = Status(self.name)
        self.streak = 0

    def update(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Observe one step; return its statistics with ``alarm`` and ``tripped`` (0/1), or {} if the step has
        no observation for this monitor. Statistics that are not yet defined are left out."""
        vals = {k: _value(metrics, k) for k in self.keys}
        if any(v is None for v in vals.values()):
            return {}
        self.steps.append(float(step))
        for k, v in vals.items():
            self.values[k].append(v)  # type: ignore[arg-type]
        return _observe(self, step)

    @property
    def full(self) -> bool:
        return len(self.steps) == self.window

    def change(self, key: str) -> float:
        return fitted_change(list(self.steps), list(self.values[key]))

    def mean(self, key: str) -> float:
        vals = self.values[key]
        return sum(vals) / len(vals) if vals else math.nan

    def statistics(self) -> dict[str, float]:
        """The statistics after the newest observation (called once per observation, by :meth:`update`)."""
        raise NotImplementedError

    def alarm(self, stats: Mapping[str, float]) -> bool:
        raise NotImplementedError

    def describe(self, stats: Mapping[str, float]) -> str:
        raise NotImplementedError


class RewardHacking(Monitor):
    """Dense reward up while outcome accuracy is flat or down (fitted changes over the window)."""

    name = "reward_hacking"

    def __init__(self, window: int, patience: int = 1, reward_rise: float = 0.1, accuracy_tolerance: float = 0.02,
                 reward_key: str = DENSE_KEY) -> None:
        self.reward_key = reward_key
        self.keys = (reward_key, ACCURACY_KEY)
        super().__init__(window, patience)
        self.reward_rise, self.accuracy_tolerance = reward_rise, accuracy_tolerance

    def statistics(self) -> dict[str, float]:
        return {"reward_change": self.change(self.reward_key), "accuracy_change": self.change(ACCURACY_KEY),
                "n": float(len(self.steps))}

    def alarm(self, stats: Mapping[str, float]) -> bool:
        return self.full and stats["reward_change"] >= self.reward_rise \
            and stats["accuracy_change"] <= self.accuracy_tolerance

    def describe(self, stats: Mapping[str, float]) -> str:
        return (f"dense reward ({self.reward_key}) changed {stats['reward_change']:+.3g} over the last "
                f"{int(stats['n'])} steps (least-squares fit) while outcome accuracy changed "
                f"{stats['accuracy_change']:+.3g} (trips at reward change >= {self.reward_rise:+g} with accuracy "
                f"change <= {self.accuracy_tolerance:+g}): the policy may be gaming the dense reward")


class LengthInflation(Monitor):
    """Mean thinking tokens up (relative to the window mean) while outcome accuracy is flat or down."""

    name = "length_inflation"
    keys = (TOKENS_KEY, ACCURACY_KEY)

    def __init__(self, window: int, patience: int = 1, token_rise: float = 0.2,
                 accuracy_tolerance: float = 0.02) -> None:
        super().__init__(window, patience)
        self.token_rise, self.accuracy_tolerance = token_rise, accuracy_tolerance

    def statistics(self) -> dict[str, float]:
        mean = self.mean(TOKENS_KEY)
        change = self.change(TOKENS_KEY)
        return {"tokens_change": change / mean if mean > 0 else math.nan, "tokens_mean": mean,
                "accuracy_change": self.change(ACCURACY_KEY), "n": float(len(self.steps))}

    def alarm(self, stats: Mapping[str, float]) -> bool:
        return self.full and stats["tokens_change"] >= self.token_rise \
            and stats["accuracy_change"] <= self.accuracy_tolerance

    def describe(self, stats: Mapping[str, float]) -> str:
        return (f"mean thinking tokens changed {stats['tokens_change']:+.1%} of their window mean "
                f"{stats['tokens_mean']:.1f} over the last {int(stats['n'])} steps (least-squares fit) while outcome "
                f"accuracy changed {stats['accuracy_change']:+.3g} (trips at >= {self.token_rise:+.0%} with accuracy "
                f"change <= {self.accuracy_tolerance:+g}): longer traces are not buying accuracy")


class CapSaturation(Monitor):
    """Most traces cut by the compute cap, over a whole window."""

    name = "cap_saturation"
    keys = (CAP_KEY,)

    def __init__(self, window: int, patience: int = 1, cap_fraction: float = 0.9) -> None:
        super().__init__(window, patience)
        self.threshold = cap_fraction

    def statistics(self) -> dict[str, float]:
        return {"cap_fraction": self.mean(CAP_KEY), "n": float(len(self.steps))}

    def alarm(self, stats: Mapping[str, float]) -> bool:
        return self.full and stats["cap_fraction"] >= self.threshold

    def describe(self, stats: Mapping[str, float]) -> str:
        return (f"{stats['cap_fraction']:.0%} of traces reached the compute cap on average over the last "
                f"{int(stats['n'])} steps (trips at >= {self.threshold:.0%}): the cap, not the policy, ends most "
                f"traces")


class EpisodeCollapse(Monitor):
    """Episodes per trace fall back towards one, against the best earlier non-overlapping window."""

    name = "episode_collapse"
    keys = (EPISODES_KEY,)

    def __init__(self, window: int, patience: int = 1, episode_drop: float = 0.5,
                 min_extra_episodes: float = 0.5) -> None:
        super().__init__(window, patience)
        self.episode_drop, self.min_extra = episode_drop, min_extra_episodes
        self.means: deque[float] = deque(maxlen=window + 1)  # m_k of the last W + 1 full windows
        self.reference = -math.inf

    def statistics(self) -> dict[str, float]:
        current = self.mean(EPISODES_KEY) if self.full else math.nan
        if self.full:
            self.means.append(current)
            if len(self.means) == self.window + 1:  # m_{k-W} no longer overlaps the current window
                self.reference = max(self.reference, self.means[0])
        ref = self.reference if math.isfinite(self.reference) else math.nan
        retained = (current - 1) / (ref - 1) if ref - 1 > 0 else math.nan
        return {"episodes": current, "reference": ref, "retained": retained, "n": float(len(self.steps))}

    def alarm(self, stats: Mapping[str, float]) -> bool:
        return stats["reference"] - 1 >= self.min_extra and stats["retained"] <= 1 - self.episode_drop

    def describe(self, stats: Mapping[str, float]) -> str:
        return (f"episodes per trace fell to {stats['episodes']:.2f} (mean of the last {int(stats['n'])} steps) from "
                f"an earlier window mean of {stats['reference']:.2f}: {stats['retained']:.0%} of the episodes beyond "
                f"the first remain (trips at <= {1 - self.episode_drop:.0%}): the policy stopped revising or "
                f"verifying")


class MuCalibration:
    """Ĵ_last stops tracking the outcome, or verifying a correct attempt lowers Ĵ, over the last ``window`` scored
    traces that carry Ĵ (see the module docstring). Fed with traces (``Trace`` objects or JSON records), not
    metrics: :meth:`update` takes a step's scored traces. ``episode_correct`` grades the attempt a verify episode
    checks (default: the recorded ``generation_correctness``; :func:`metarl.calibration.grader_correctness`)."""

    name = "mu_calibration"

    def __init__(self, window: int = 128, min_traces: int = 32, correlation: float = 0.8,
                 verify_after_correct: float = -0.05, min_verify: int = 8, patience: int = 1,
                 episode_correct: EpisodeCorrect | None = None) -> None:
        for key, v, low in (("window", window, 2), ("min_traces", min_traces, 2), ("min_verify", min_verify, 1),
                            ("patience", patience, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{key}={v!r} must be a whole number >= {low}")
        self.window, self.min_traces, self.min_verify, self.patience = window, min_traces, min_verify, patience
        self.correlation, self.verify_after_correct = float(correlation), float(verify_after_correct)
        self.episode_correct = episode_correct
        # per trace: (Ĵ_last, outcome, ΔĴ of its verify episodes after a correct attempt)
        self.traces: deque[tuple[float, float, list[float]]] = deque(maxlen=window)
        self.status = Status(self.name)
        self.streak = 0

    def _summary(self, trace: Any) -> tuple[float, float, list[float]] | None:
        js = j_values(trace)
        outcome = _value({"o": trace.get("outcome") if isinstance(trace, Mapping) else getattr(trace, "outcome", None)},
                         "o")
        if js is None or outcome is None:
            return None
        rows = episode_rows([trace], self.episode_correct)
        return js[-1], float(outcome > 0), [r["delta_J"] for r in rows
                                            if r["kind"] == "verify" and r["attempt_correct"] is True]

    def update(self, step: int, traces: Sequence[Any]) -> dict[str, float]:
        """Observe one step's scored traces; return the statistics with ``alarm`` and ``tripped`` (0/1), or {} when
        none of them carries Ĵ and an outcome (not an observation)."""
        new = [s for s in (self._summary(t) for t in traces) if s is not None]
        if not new:
            return {}
        self.traces.extend(new)
        return _observe(self, step)

    def statistics(self) -> dict[str, float]:
        j_last = [t[0] for t in self.traces]
        outcomes = [t[1] for t in self.traces]
        verify = [d for t in self.traces for d in t[2]]
        r, _ = pearson(j_last, outcomes)
        auc, _ = auroc(j_last, [y > 0 for y in outcomes])
        return {"correlation": r, "auroc": auc, "n": float(len(self.traces)), "accuracy": sum(outcomes) / len(outcomes),
                "verify_after_correct": sum(verify) / len(verify) if verify else math.nan,
                "n_verify": float(len(verify))}

    def alarm(self, stats: Mapping[str, float]) -> bool:
        if stats["n"] < self.min_traces:
            return False
        low_r = math.isfinite(stats["correlation"]) and stats["correlation"] < self.correlation
        drop = stats["n_verify"] >= self.min_verify and stats["verify_after_correct"] < self.verify_after_correct
        return bool(low_r or drop)

    def describe(self, stats: Mapping[str, float]) -> str:
        parts = []
        if math.isfinite(stats["correlation"]) and stats["correlation"] < self.correlation:
            parts.append(f"the correlation of Ĵ_last with the outcome is {stats['correlation']:.3f} (trips below "
                         f"{self.correlation:g})")
        if stats["n_verify"] >= self.min_verify and stats["verify_after_correct"] < self.verify_after_correct:
            parts.append(f"verifying a correct attempt changes Ĵ by {stats['verify_after_correct']:+.3f} on average over "
                         f"{int(stats['n_verify'])} episodes (trips below {self.verify_after_correct:+g})")
        return (f"over the last {int(stats['n'])} scored traces (accuracy {stats['accuracy']:.2f}, AUROC "
                f"{stats['auroc']:.3f}) {' and '.join(parts)}: the meta-prover μ no longer tracks correctness, so "
                f"progress rewards measure noise (run metarl-calibrate on the policy)")


@dataclass
class HealthConfig:
    """The ``health:`` block of ``conf/train.yaml`` (see the module docstring for what each threshold means)."""

    enabled: bool = True
    window: int = 20
    patience: int = 3
    reward_key: str = DENSE_KEY
    reward_rise: float = 0.1
    accuracy_tolerance: float = 0.02
    token_rise: float = 0.2
    cap_fraction: float = 0.9
    episode_drop: float = 0.5
    min_extra_episodes: float = 0.5
    calibration: bool = True
    """Run ``mu_calibration`` on the scored traces that carry Ĵ (Monte Carlo progress), and the pre-flight check of
    μ on the first scored batch (:func:`metarl.calibration.preflight`)."""
    calibration_window: int = 128
    calibration_min_traces: int = 32
    calibration_min_verify: int = 8
    calibration_correlation: float = 0.8
    calibration_verify_after_correct: float = -0.05

    def __post_init__(self) -> None:
        """Every threshold in range; errors name the key as ``health.<key>`` (the one check of this section)."""
        cls = type(self)
        for key, low in {"window": 2, "patience": 1, "calibration_window": 2, "calibration_min_traces": 2,
                         "calibration_min_verify": 1}.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"health.{key}={v!r} must be a whole number >= {low}; set it like "
                                  f"health.{key}={getattr(cls, key)}")
        for key in ("enabled", "calibration"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"health.{key}={getattr(self, key)!r} must be true or false")
        if not isinstance(self.reward_key, str) or not self.reward_key:
            raise ConfigError(f"health.reward_key={self.reward_key!r} must be a metric name, e.g. {DENSE_KEY}")
        ranges = {"reward_rise": (lambda v: v > 0, "> 0"), "accuracy_tolerance": (lambda v: -1 <= v <= 1, "in [-1, 1]"),
                  "token_rise": (lambda v: v > 0, "> 0"), "cap_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
                  "episode_drop": (lambda v: 0 < v < 1, "in (0, 1)"),
                  "min_extra_episodes": (lambda v: v > 0, "> 0"),
                  "calibration_correlation": (lambda v: -1 <= v <= 1, "in [-1, 1]"),
                  "calibration_verify_after_correct": (lambda v: -1 <= v <= 1, "in [-1, 1]")}
        for key, (ok, bounds) in ranges.items():
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise ConfigError(f"health.{key}={v!r} must be a number {bounds}; set it like "
                                  f"health.{key}={getattr(cls, key)}")
            setattr(self, key, float(v))

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> HealthConfig:
        """A config mapping (None: the defaults) as a checked HealthConfig; unknown keys are named."""
        cfg = dict(cfg or {})
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ConfigError(f"health: unknown option(s) {unknown}; known: {known}")
        return cls(**cfg)


def build_monitors(config: HealthConfig | Mapping[str, Any] | None = None) -> list[Monitor]:
    """The four monitors with the thresholds of ``config`` (a :class:`HealthConfig`, a mapping, or None)."""
    c = config if isinstance(config, HealthConfig) else HealthConfig.from_mapping(config)
    w, p = c.window, c.patience
    return [RewardHacking(w, p, c.reward_rise, c.accuracy_tolerance, c.reward_key),
            LengthInflation(w, p, c.token_rise, c.accuracy_tolerance),
            CapSaturation(w, p, c.cap_fraction),
            EpisodeCollapse(w, p, c.episode_drop, c.min_extra_episodes)]


def build_calibration_monitor(config: HealthConfig | Mapping[str, Any] | None = None,
                              episode_correct: EpisodeCorrect | None = None) -> MuCalibration:
    """``mu_calibration`` with the ``calibration_*`` thresholds of ``config``; it trips on its first alarm (each
    observation is a whole batch of traces, judged over the last ``calibration_window`` of them)."""
    c = config if isinstance(config, HealthConfig) else HealthConfig.from_mapping(config)
    return MuCalibration(c.calibration_window, c.calibration_min_traces, c.calibration_correlation,
                         c.calibration_verify_after_correct, c.calibration_min_verify, 1, episode_correct)


def replay_traces(traces: Iterable[Any], monitor: MuCalibration) -> list[dict[str, Any]]:
    """Feed logged trace records (each with a numeric ``step``, e.g. ``rollouts.jsonl``) through ``monitor`` one
    step at a time, in step order; one record per step with traces, ``{"step": s, "health/mu_calibration/<stat>":
    v, ...}``.

    >>> t = lambda y, j: {"outcome": y, "meta": {"J_init": 0.0}, "episodes": [{"kind": "attempt", "info": {"J": j}}]}
    >>> recs = replay_traces([{"step": 1, **t(1.0, 0.0)}, {"step": 1, **t(0.0, 1.0)}], MuCalibration(min_traces=2))
    >>> recs[0]["health/mu_calibration/correlation"], recs[0]["health/mu_calibration/tripped"]
    (-1.0, 1.0)
    """
    by_step: dict[float, list[Any]] = {}
    for t in traces:
        s = _value(t if isinstance(t, Mapping) else {}, "step")
        if s is not None:
            by_step.setdefault(s, []).append(t)
    out = []
    for s in sorted(by_step):
        stats = monitor.update(int(s), by_step[s])
        if stats:
            out.append({"step": int(s) if s == int(s) else s,
                        **{f"{PREFIX}{monitor.name}/{k}": v for k, v in stats.items()}})
    return out


def replay(rows: Iterable[Mapping[str, Any]], monitors: Sequence[Monitor]) -> list[dict[str, Any]]:
    """Feed metric rows (each with a numeric ``step``) through ``monitors`` in step order; return one record per
    row, ``{"step": s, "health/<monitor>/<stat>": v, ...}`` (the keys :class:`metarl.trainer.callbacks.HealthCallback` would log)."""
    ordered = sorted((r for r in rows if _value(r, "step") is not None), key=lambda r: float(r["step"]))
    out = []
    for r in ordered:
        rec: dict[str, Any] = {"step": r["step"]}
        for m in monitors:
            rec.update({f"{PREFIX}{m.name}/{k}": v for k, v in m.update(int(r["step"]), r).items()})
        out.append(rec)
    return out
