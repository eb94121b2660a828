r"""Is the meta-prover μ calibrated? Statistics of Ĵ on scored traces, and a verdict.

Progress rewards (Obj-2, docs/method.md §3) credit episode j with ΔĴ_j = Ĵ_j − Ĵ_{j−1}, where Ĵ_j is the share of
``m`` forced answers after the prefix that the grader accepts (:class:`metarl.rewards.progress.MCProgress`). That
only means progress if μ tracks correctness: Ĵ after the last episode should predict the outcome, and verifying
a correct attempt must not lower Ĵ (a policy that, forced to answer after ``</verify>``, does not restate what it
has just verified makes progress rewards punish verification). This module measures both on traces that carry
Monte Carlo progress's by-products: ``trace.meta["J_init"]`` (Ĵ_{−1}, the prompt alone), ``episode.info["J"]``
(Ĵ_j after episode j), optionally ``episode.info["J_se"]``, and ``trace.outcome``. Traces may be
:class:`metarl.types.Trace` objects or their JSON records (``rollouts.jsonl``, ``metarl-score`` output).

Statistics (:func:`calibrate`, all over the traces that carry J and an outcome):

* ``correlation``: Pearson's r of Ĵ_last (Ĵ after the last episode) with the 0/1 outcome (the point-biserial
  correlation); ``auroc``: the probability that a correct trace has a higher Ĵ_last than a wrong one, ties counting
  one half (Mann–Whitney U / (n₊·n₋)). Both are NaN, with the reason in ``*_reason``, when a class is absent or
  Ĵ_last has no spread.
* ``delta_by_kind``: n, mean and standard deviation of ΔĴ per episode kind.
* ``verify_after_correct`` / ``verify_after_wrong``: ΔĴ of verify episodes whose checked attempt (the most recent
  attempt / revise episode before it, as :func:`metarl.rewards.obj1.verification_correctness` reads it) was correct
  / wrong. Correctness comes from ``episode_correct(trace, episode)``: by default the recorded
  ``generation_correctness`` reward or ``info["correct"]``; :func:`grader_correctness` grades the episode text.
* Noise: ``mc_se`` = mean of sqrt(Ĵ(1−Ĵ)/m) over every Ĵ (``info["J_se"]`` when recorded), ``delta_se`` = mean over
  episodes of sqrt(SE_j² + SE_{j−1}²) (the Monte Carlo noise of one ΔĴ), ``delta_std`` = std of ΔĴ, and
  ``snr`` = delta_std / delta_se. (The plug-in SE is 0 at Ĵ ∈ {0, 1}, so it understates the noise there.)
* ``bins``: Ĵ_last in ``bins`` equal-width bins of [0, 1] against the observed success rate, with counts (a
  reliability diagram: calibrated points lie on the diagonal).

Verdict (:class:`Thresholds`): ``informative`` when correlation ≥ ``correlation`` (0.8) and the mean ΔĴ of verify
after a correct attempt ≥ ``verify_after_correct`` (−0.05; not checked when there is no such episode); otherwise
``uninformative`` with the reasons. Ĵ constant over every prefix (e.g. 0 everywhere: forced answers are never
graded correct) is reported as a degenerate prover.

:func:`preflight` runs the same check on the first scored batch of a training run (``metarl-train`` calls it through
:class:`metarl.trainer.callbacks.CalibrationWatch`) and :class:`metarl.monitors.MuCalibration` repeats it as a
training-health monitor. ``metarl-calibrate`` (:mod:`metarl.cli.calibrate`) samples traces and writes the report.
No torch here: the analysis of a finished run imports this module cheaply.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from metarl.metrics import _get, _number  # a Trace or its JSON record; a finite number or None

GENERATION_KINDS = ("attempt", "revise")
INFORMATIVE, UNINFORMATIVE = "informative", "uninformative"

EpisodeCorrect = Callable[[Any, Any], "bool | None"]
"""``episode_correct(trace, episode) -> bool | None``: whether the answer an attempt / revise episode states is
correct (None: unknown)."""


# --------------------------------------------------------------------------- reading traces and records

def j_values(trace: Any) -> list[float] | None:
    """[Ĵ_{−1}, Ĵ_0, …, Ĵ_{n−1}] of a trace (a ``Trace`` or its JSON record), or None unless every value is there.

    >>> j_values({"meta": {"J_init": 0.25}, "episodes": [{"info": {"J": 0.5}}, {"info": {"J": 1.0}}]})
    [0.25, 0.5, 1.0]
    >>> j_values({"meta": {}, "episodes": [{"info": {"J": 0.5}}]}) is None
    True
    """
    meta = _get(trace, "meta") or {}
    episodes = _get(trace, "episodes") or []
    first = _number(meta.get("J_init")) if isinstance(meta, Mapping) else None
    if first is None or not episodes:
        return None
    out = [first]
    for ep in episodes:
        info = _get(ep, "info") or {}
        j = _number(info.get("J")) if isinstance(info, Mapping) else None
        if j is None:
            return None
        out.append(j)
    return out


def j_ses(trace: Any, m: int | None = None) -> list[float]:
    """The Monte Carlo standard error of every Ĵ (``J_init_se`` / ``info["J_se"]`` when recorded, else
    sqrt(Ĵ(1−Ĵ)/m), NaN without either).

    >>> j_ses({"meta": {"J_init": 0.5}, "episodes": [{"info": {"J": 0.5, "J_se": 0.1}}]}, m=4)
    [0.25, 0.1]
    """
    js = j_values(trace) or []
    meta = _get(trace, "meta") or {}
    recorded = [_number(meta.get("J_init_se"))]
    recorded += [_number((_get(ep, "info") or {}).get("J_se")) for ep in _get(trace, "episodes") or []]
    out = []
    for j, se in zip(js, recorded):
        if se is not None:
            out.append(se)
        elif m:
            out.append(math.sqrt(j * (1 - j) / m))
        else:
            out.append(math.nan)
    return out


def recorded_correctness(trace: Any, episode: Any) -> bool | None:
    """An attempt / revise episode's correctness as the scorer recorded it: the ``generation_correctness``
    reward, else ``info["correct"]``; None when neither is there.

    >>> recorded_correctness(None, {"kind": "attempt", "rewards": {"generation_correctness": 1.0}})
    True
    >>> recorded_correctness(None, {"kind": "attempt", "rewards": {}}) is None
    True
    """
    rewards = _get(episode, "rewards") or {}
    v = _number(rewards.get("generation_correctness")) if isinstance(rewards, Mapping) else None
    if v is not None:
        return v > 0
    info = _get(episode, "info") or {}
    c = info.get("correct") if isinstance(info, Mapping) else None
    return bool(c) if isinstance(c, (bool, int, float)) else None


def grader_correctness(grader: Callable[[Any, str, str], bool], extract_answer: Callable[[str], Any]) -> EpisodeCorrect:
    """``episode_correct`` that grades the answer an episode states, as the ``generation_correctness`` reward does
    (``grader(extract_answer(episode.text), trace.answer, trace.prompt)``); None without a gold answer.

    >>> f = grader_correctness(lambda p, a, prompt="": p == a, lambda t: t.strip())
    >>> f({"answer": "7", "prompt": ""}, {"text": " 7"}), f({"answer": None}, {"text": "7"})
    (True, None)
    """
    def correct(trace: Any, episode: Any) -> bool | None:
        answer = _get(trace, "answer")
        if answer is None:
            return None
        try:
            return bool(grader(extract_answer(_get(episode, "text") or ""), str(answer), _get(trace, "prompt") or ""))
        except Exception:  # graders are guarded; a custom one may still raise: unknown, not wrong
            return None
    return correct


# --------------------------------------------------------------------------- plain statistics

def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, str | None]:
    """Pearson's r and None, or NaN and the reason it is undefined.

    >>> pearson([0.0, 0.5, 1.0], [0.0, 0.0, 1.0])[0]  # doctest: +ELLIPSIS
    0.866...
    >>> pearson([0.2, 0.4], [1.0, 1.0])
    (nan, 'the outcome has no spread (every trace correct)')
    """
    n = len(x)
    if n < 2:
        return math.nan, f"{n} trace(s): a correlation needs at least 2"
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if syy == 0:
        return math.nan, f"the outcome has no spread (every trace {'correct' if my > 0.5 else 'wrong'})"
    if sxx == 0:
        return math.nan, f"Ĵ_last has no spread (every trace has Ĵ_last = {mx:g})"
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    return sxy / math.sqrt(sxx * syy), None


def auroc(scores: Sequence[float], labels: Sequence[bool | float]) -> tuple[float, str | None]:
    """Area under the ROC curve of ``scores`` for the positive ``labels``: P(score₊ > score₋) + ½·P(tie)
    over all (positive, negative) pairs; NaN and the reason when a class is absent.

    >>> auroc([0.1, 0.4, 0.4, 0.9], [0, 0, 1, 1])   # one tied pair counts one half: (1 + 1 + 0.5 + 1) / 4
    (0.875, None)
    >>> auroc([0.3, 0.5], [1, 1])
    (nan, 'no wrong trace: AUROC needs both classes')
    """
    pos = [s for s, lab in zip(scores, labels) if lab]
    neg = [s for s, lab in zip(scores, labels) if not lab]
    if not pos:
        return math.nan, "no correct trace: AUROC needs both classes"
    if not neg:
        return math.nan, "no wrong trace: AUROC needs both classes"
    # midranks over the pooled scores (ties share their mean rank): U = R₊ − n₊(n₊+1)/2
    order = sorted(range(len(pos) + len(neg)), key=lambda i: (pos + neg)[i])
    pooled = pos + neg
    ranks = [0.0] * len(pooled)
    i = 0
    while i < len(order):
        k = i
        while k + 1 < len(order) and pooled[order[k + 1]] == pooled[order[i]]:
            k += 1
        for t in range(i, k + 1):
            ranks[order[t]] = (i + k) / 2 + 1
        i = k + 1
    u = sum(ranks[: len(pos)]) - len(pos) * (len(pos) + 1) / 2
    return u / (len(pos) * len(neg)), None


def _mean(v: Sequence[float]) -> float:
    return sum(v) / len(v) if v else math.nan


def _std(v: Sequence[float]) -> float:
    """Sample standard deviation (n − 1); NaN below 2 values."""
    if len(v) < 2:
        return math.nan
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1))


@dataclass
class Stat:
    """n, mean and sample standard deviation of a set of values (NaN where undefined)."""

    n: int
    mean: float
    std: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        """The statistics of ``values``.

        >>> Stat.of([1.0, 3.0])
        Stat(n=2, mean=2.0, std=1.4142135623730951)
        """
        return cls(len(values), _mean(values), _std(values))


@dataclass
class CalibrationBin:
    """Traces whose Ĵ_last lies in [lo, hi) (the last bin includes 1): their count, mean Ĵ_last and success rate."""

    lo: float
    hi: float
    n: int
    mean_J: float
    success_rate: float


def calibration_bins(j_last: Sequence[float], outcomes: Sequence[float], bins: int = 5) -> list[CalibrationBin]:
    """Ĵ_last in ``bins`` equal-width bins of [0, 1] against the observed success rate (empty bins: n = 0, NaN).

    >>> [(b.n, b.mean_J, b.success_rate) for b in calibration_bins([0.0, 0.25, 0.5, 1.0], [0, 0, 1, 1], bins=2)]
    [(2, 0.125, 0.0), (2, 0.75, 1.0)]
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins={bins!r} must be a whole number >= 1")
    groups: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for j, y in zip(j_last, outcomes):
        groups[min(bins - 1, max(0, int(math.floor(j * bins))))].append((j, float(y)))
    return [CalibrationBin(k / bins, (k + 1) / bins, len(g), _mean([j for j, _ in g]), _mean([y for _, y in g]))
            for k, g in enumerate(groups)]


# --------------------------------------------------------------------------- the report

@dataclass
class Thresholds:
    """When μ counts as informative: correlation of Ĵ_last with the outcome ≥ ``correlation`` and mean ΔĴ of
    verify episodes after a correct attempt ≥ ``verify_after_correct`` (docs/method.md §2)."""

    correlation: float = 0.8
    verify_after_correct: float = -0.05

    def __post_init__(self) -> None:
        for key in ("correlation", "verify_after_correct"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1 <= v <= 1:
                raise ValueError(f"thresholds.{key}={v!r} must be a number in [-1, 1]")
            setattr(self, key, float(v))


@dataclass
class Calibration:
    """The calibration statistics of a set of scored traces (see the module docstring) and the verdict."""

    n_traces: int
    n_episodes: int
    accuracy: float
    correlation: float
    correlation_reason: str | None
    auroc: float
    auroc_reason: str | None
    J_last_correct: float
    J_last_wrong: float
    J_init: float
    delta_by_kind: dict[str, Stat]
    verify_after_correct: Stat
    verify_after_wrong: Stat
    verify_unknown: int
    mc_se: float
    delta_se: float
    delta_std: float
    snr: float
    bins: list[CalibrationBin]
    thresholds: Thresholds
    verdict: str
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    m: int | None = None
    skipped: int = 0

    @property
    def informative(self) -> bool:
        return self.verdict == INFORMATIVE

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON (NaN stays NaN: ``json.dumps`` writes it as ``NaN``; see :func:`json_safe`)."""
        return asdict(self)

    def summary(self) -> str:
        """A few lines for a console: the headline numbers and the verdict with its reasons."""
        va, vw = self.verify_after_correct, self.verify_after_wrong
        kinds = ", ".join(f"{k} {s.mean:+.3f} (n={s.n})" for k, s in self.delta_by_kind.items())
        lines = [
            f"traces {self.n_traces} (episodes {self.n_episodes}, accuracy {self.accuracy:.3f}"
            + (f", m={self.m}" if self.m else "") + ")",
            f"Ĵ_last vs outcome: correlation {_fmt(self.correlation)}, AUROC {_fmt(self.auroc)}; mean Ĵ_last "
            f"{_fmt(self.J_last_correct)} on correct, {_fmt(self.J_last_wrong)} on wrong traces (Ĵ_init "
            f"{_fmt(self.J_init)})",
            f"mean ΔĴ per kind: {kinds or 'none'}",
            f"verify after a correct attempt: mean ΔĴ {_fmt(va.mean, '+.3f')} (n={va.n}); after a wrong one: "
            f"{_fmt(vw.mean, '+.3f')} (n={vw.n})",
            f"noise: Monte Carlo SE of Ĵ {_fmt(self.mc_se)}, of ΔĴ {_fmt(self.delta_se)}; spread of ΔĴ (std) "
            f"{_fmt(self.delta_std)}; signal to noise {_fmt(self.snr, '.2f')}",
            f"verdict: μ is {self.verdict.upper()} (thresholds: correlation >= {self.thresholds.correlation:g}, "
            f"verify-after-correct ΔĴ >= {self.thresholds.verify_after_correct:+g})",
        ]
        lines += [f"  - {r}" for r in self.reasons]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt(v: float, spec: str = ".3f") -> str:
    return "nan" if v is None or not math.isfinite(v) else format(v, spec)


def json_safe(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON).

    >>> json_safe({"a": [1.0, float("nan")]})
    {'a': [1.0, None]}
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _checked_attempt(episodes: Sequence[Any], i: int) -> Any:
    return next((e for e in reversed(episodes[:i]) if _get(e, "kind") in GENERATION_KINDS), None)


def episode_rows(traces: Sequence[Any], episode_correct: EpisodeCorrect | None = None,
                 m: int | None = None) -> list[dict[str, Any]]:
    """One row per episode of every trace with J: ``trace, episode, kind, J_prev, J, delta_J, se_delta, outcome,
    attempt_correct`` (for verify episodes: the checked attempt's correctness, None when unknown or absent).

    >>> t = {"outcome": 1.0, "meta": {"J_init": 0.0}, "episodes": [
    ...     {"kind": "attempt", "rewards": {"generation_correctness": 1.0}, "info": {"J": 1.0}},
    ...     {"kind": "verify", "info": {"J": 0.25}}]}
    >>> [(r["kind"], r["delta_J"], r["attempt_correct"]) for r in episode_rows([t])]
    [('attempt', 1.0, None), ('verify', -0.75, True)]
    """
    correct = episode_correct or recorded_correctness
    rows = []
    for ti, t in enumerate(traces):
        js = j_values(t)
        if js is None:
            continue
        ses = j_ses(t, m)
        episodes = list(_get(t, "episodes") or [])
        outcome = _number(_get(t, "outcome"))
        for i, ep in enumerate(episodes):
            kind = _get(ep, "kind")
            checked = None
            if kind == "verify":
                att = _checked_attempt(episodes, i)
                checked = None if att is None else correct(t, att)
            rows.append({"trace": ti, "episode": i, "kind": kind, "J_prev": js[i], "J": js[i + 1],
                         "delta_J": js[i + 1] - js[i], "se_delta": math.sqrt(ses[i] ** 2 + ses[i + 1] ** 2),
                         "outcome": outcome, "attempt_correct": checked})
    return rows


def calibrate(traces: Sequence[Any], thresholds: Thresholds | None = None, episode_correct: EpisodeCorrect | None = None,
              bins: int = 5, m: int | None = None) -> Calibration:
    """The calibration statistics and verdict of ``traces`` (``Trace`` objects or JSON records); traces without J
    on every prefix or without an outcome are skipped (counted in ``skipped``).

    >>> def tr(outcome, js, kinds, correct=()):
    ...     eps = [{"kind": k, "info": {"J": j}, "rewards": {"generation_correctness": c} if k == "attempt" else {}}
    ...            for k, j, c in zip(kinds, js[1:], list(correct) + [None] * len(kinds))]
    ...     return {"outcome": outcome, "meta": {"J_init": js[0]}, "episodes": eps}
    >>> traces = [tr(1.0, [0.0, 1.0, 1.0], ["attempt", "verify"], [1.0]),
    ...           tr(0.0, [0.0, 0.0, 0.0], ["attempt", "verify"], [0.0])]
    >>> c = calibrate(traces, m=8)
    >>> c.correlation, c.auroc, c.verdict, c.verify_after_correct.mean
    (1.0, 1.0, 'informative', 0.0)
    >>> traces[0]["episodes"][1]["info"]["J"] = 0.25   # forced after </verify>, μ forgets the verified answer
    >>> c = calibrate(traces, m=8)
    >>> c.verdict, round(c.verify_after_correct.mean, 2), c.reasons[0][:39]
    ('uninformative', -0.75, 'verify after a correct attempt lowers Ĵ')
    """
    th = thresholds or Thresholds()
    kept = [t for t in traces if j_values(t) is not None and _number(_get(t, "outcome")) is not None]
    rows = episode_rows(kept, episode_correct, m)
    js = [j_values(t) for t in kept]
    j_last = [v[-1] for v in js]  # type: ignore[index]
    outcomes = [float(_number(_get(t, "outcome")) > 0) for t in kept]  # type: ignore[operator]
    corr, corr_reason = pearson(j_last, outcomes)
    auc, auc_reason = auroc(j_last, [y > 0 for y in outcomes])
    kinds: dict[str, list[float]] = {}
    for r in rows:
        kinds.setdefault(str(r["kind"]), []).append(r["delta_J"])
    order = [k for k in ("attempt", "verify", "revise", "other") if k in kinds] + sorted(set(kinds) - set(GENERATION_KINDS)
                                                                                          - {"verify", "other"})
    verify = [r for r in rows if r["kind"] == "verify"]
    after_correct = Stat.of([r["delta_J"] for r in verify if r["attempt_correct"] is True])
    after_wrong = Stat.of([r["delta_J"] for r in verify if r["attempt_correct"] is False])
    all_se = [s for t in kept for s in j_ses(t, m)]
    delta_se = _mean([r["se_delta"] for r in rows])
    delta_std = _std([r["delta_J"] for r in rows])
    snr = delta_std / delta_se if delta_se and math.isfinite(delta_se) and delta_se > 0 else math.nan
    reasons, notes = [], []
    if not kept:
        reasons.append("no trace carries Ĵ on every prefix and an outcome (score with mc_progress)")
    elif len({v for j in js for v in j}) == 1:  # type: ignore[union-attr]
        reasons.append(f"Ĵ = {js[0][0]:g} on every prefix of every trace: the forced answers carry no information; "  # type: ignore[index]
                       "check the prover (suffix, answer_tokens, answer_stop) and the answer extraction (extract)")
    if math.isnan(corr):
        if kept:
            reasons.append(f"correlation of Ĵ_last with the outcome is undefined: {corr_reason}")
    elif corr < th.correlation:
        reasons.append(f"correlation of Ĵ_last with the outcome is {corr:.3f} < {th.correlation:g}: Ĵ after the last "
                       f"episode does not track whether the trace is right")
    if after_correct.n == 0:
        notes.append("no verify episode after a correct attempt: the verify criterion was not checked")
    elif after_correct.mean < th.verify_after_correct:
        reasons.append(f"verify after a correct attempt lowers Ĵ by {-after_correct.mean:.3f} on average (mean ΔĴ "
                       f"{after_correct.mean:+.3f} over {after_correct.n} episodes < {th.verify_after_correct:+g}): "
                       f"progress rewards would punish verifying a right answer")
    unknown = sum(r["attempt_correct"] is None for r in verify)
    if unknown:
        notes.append(f"{unknown} verify episode(s) with no graded attempt before them (none, or its correctness "
                     f"unknown: pass a grader)")
    if kept and math.isfinite(snr) and snr < 2:
        notes.append(f"ΔĴ spread is {snr:.2f}x its Monte Carlo noise: with this m, most of the progress signal is noise")
    return Calibration(
        n_traces=len(kept), n_episodes=len(rows), accuracy=_mean(outcomes), correlation=corr,
        correlation_reason=corr_reason, auroc=auc, auroc_reason=auc_reason,
        J_last_correct=_mean([j for j, y in zip(j_last, outcomes) if y > 0]),
        J_last_wrong=_mean([j for j, y in zip(j_last, outcomes) if y == 0]),
        J_init=_mean([v[0] for v in js]),  # type: ignore[index]
        delta_by_kind={k: Stat.of(kinds[k]) for k in order}, verify_after_correct=after_correct,
        verify_after_wrong=after_wrong, verify_unknown=unknown, mc_se=_mean(all_se), delta_se=delta_se,
        delta_std=delta_std, snr=snr, bins=calibration_bins(j_last, outcomes, bins), thresholds=th,
        verdict=UNINFORMATIVE if reasons else INFORMATIVE, reasons=reasons, notes=notes, m=m,
        skipped=len(traces) - len(kept))


def bins_rows(cal: Calibration) -> list[dict[str, Any]]:
    """The calibration table as CSV rows: ``lo, hi, n, mean_J, success_rate``."""
    return [asdict(b) for b in cal.bins]


def plot_calibration(cal: Calibration, path: Any, title: str = "Meta-prover calibration") -> None:
    """A reliability diagram: per Ĵ_last bin, the observed success rate against the bin's mean Ĵ_last (marker
    size and label: the count), the diagonal of a calibrated μ, and the headline numbers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="calibrated (diagonal)")
    full = [b for b in cal.bins if b.n]
    total = max(1, sum(b.n for b in full))
    for b in cal.bins:
        ax.axvspan(b.lo, b.hi, color="0.93" if cal.bins.index(b) % 2 else "0.97", zorder=0)
    if full:
        ax.plot([b.mean_J for b in full], [b.success_rate for b in full], "-", color="C0", lw=1.2)
        ax.scatter([b.mean_J for b in full], [b.success_rate for b in full], s=[30 + 400 * b.n / total for b in full],
                   color="C0", zorder=3, label="observed success rate (size: count)")
        for b in full:
            ax.annotate(f"n={b.n}", (b.mean_J, b.success_rate), textcoords="offset points", xytext=(6, -12),
                        fontsize=8)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("Ĵ after the last episode (bin mean)")
    ax.set_ylabel("observed success rate (outcome)")
    ax.set_title(f"{title}\n{cal.verdict}: r = {_fmt(cal.correlation, '.2f')}, AUROC = {_fmt(cal.auroc, '.2f')}, "
                 f"verify-after-correct ΔĴ = {_fmt(cal.verify_after_correct.mean, '+.2f')}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- before training

def preflight(traces: Sequence[Any], thresholds: Thresholds | None = None,
              episode_correct: EpisodeCorrect | None = None, m: int | None = None,
              min_traces: int = 8) -> tuple[Calibration, str] | None:
    """The calibration of a first scored batch and a one-paragraph message, or None when fewer than
    ``min_traces`` traces carry J (nothing to judge: not a progress recipe, or a tiny batch).

    >>> t = lambda y, j: {"outcome": y, "meta": {"J_init": 0.0}, "episodes": [{"kind": "attempt", "info": {"J": j}}]}
    >>> cal, msg = preflight([t(1.0, 0.0), t(0.0, 0.5)] * 4)
    >>> cal.verdict, msg.split(":")[0]
    ('uninformative', 'meta-prover calibration on the first scored batch (8 traces)')
    >>> preflight([t(1.0, 1.0)]) is None
    True
    """
    n = sum(j_values(t) is not None for t in traces)
    if n < max(1, min_traces):
        return None
    cal = calibrate(traces, thresholds, episode_correct, m=m)
    head = f"meta-prover calibration on the first scored batch ({cal.n_traces} traces): μ is {cal.verdict}"
    numbers = (f"correlation of Ĵ_last with the outcome {_fmt(cal.correlation)}, AUROC {_fmt(cal.auroc)}, "
               f"mean ΔĴ of verify after a correct attempt {_fmt(cal.verify_after_correct.mean, '+.3f')} "
               f"(n={cal.verify_after_correct.n})")
    if cal.informative:
        return cal, f"{head} ({numbers})"
    return cal, (f"{head}: {'; '.join(cal.reasons)} ({numbers}). Progress rewards (mc_progress, the termination "
                 f"baseline) built on this μ may not measure progress; run `metarl-calibrate` on this policy before "
                 f"training for hours (README, Obj-2)")
