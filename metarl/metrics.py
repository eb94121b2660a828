"""Evaluation metrics of test-time compute: pass@k, voting, information-gain curves, regret, bins, CIs.

Pure functions on numbers and records (``Trace`` objects or their JSON dicts): no torch, no model.

Information-gain curve and regret (MRT; docs/method.md §6)
------------------------------------------------------------
A trace's output stream is cut into episodes ``z_0, ..., z_{K-1}``. ``J_j`` is the success
probability of the meta-prover μ forced to answer after the prefix ``z_{0:j}`` (episodes 0..j,
0-based), and ``J_init = J_{-1}`` is μ with an empty prefix. The curve of one trace is the list of
points ``(0, J_init), (e_0, J_0), ..., (e_{K-1}, J_{K-1})`` where ``e_j`` is the token offset at which
episode ``j`` ends (``token_end``; character offsets when a trace has no token spans). ``J(t)`` is
piecewise linear between these points and held at ``J_{K-1}`` for ``t > e_{K-1}`` (the stream has
ended; the final answer does not change).

* cumulative regret after k episodes: ``Δ_k = Σ_{j=0}^{k-1} (J* − J_j)`` with ``J* = 1``, so
  ``Δ_0 = 0`` and ``J_init`` is *not* a term (it is the value before any episode was spent);
* normalised regret at budget ``C0``: ``1 − (1/C0) ∫_0^{C0} J(t) dt`` (more generally
  ``J* − (1/C0) ∫ J``), integrated exactly over the piecewise-linear curve.

Relation to the MRT notebook (CMU-AIRe/MRT ``analysis/code/regret.ipynb``): it integrates the same
piecewise-linear, held-last-value curve with the trapezoid rule and interpolates at the cutoff, so
the integral is identical; its x axis is a FLOPs proxy (prefix prompt tokens + mean μ answer
length, with the empty-prefix point not at 0) and it prepends ``(0, 0)``. metarl's x axis is
thinking tokens of the completion, so ``J_init`` sits at ``t = 0``. When ``J_init`` is unknown the
curve starts at ``(0, 0)`` as MRT's does (``InfoGainCurve.has_init`` is then False). MRT averages
over the samples of a question first, then over questions: pass ``groups`` to
``mean_normalized_regret`` for that.
"""
from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "pass_at_k", "pass_at_k_array", "normalise_answer", "majority_vote", "weighted_best_of_n",
    "best_of_n", "vote_accuracy", "InfoGainCurve", "information_gain_curve", "curve_from_trace",
    "J_at", "area_under_curve", "normalized_regret", "mean_normalized_regret", "cumulative_regret",
    "episode_progress", "difficulty_bins", "Interval", "mean_ci", "median_ci", "bootstrap_ci",
]

# --------------------------------------------------------------------------------------------
# pass@k
# --------------------------------------------------------------------------------------------


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 − C(n−c, k) / C(n, k)``.

    Computed in the numerically stable product form ``1 − Π_{i=n−c+1}^{n} (1 − k/i)`` (Chen et al.
    2021), which never forms a binomial coefficient.

    >>> pass_at_k(4, 2, 1), pass_at_k(4, 2, 3)
    (0.5, 1.0)
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or int(v) != v:
            raise ValueError(f"pass_at_k: {name}={v!r} must be an integer")
    n, c, k = int(n), int(c), int(k)
    if n < 1 or not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need n >= 1 and 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k} with n={n} samples; draw more samples or lower k")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_array(n: Any, c: Any, k: Any) -> np.ndarray:
    """``pass_at_k`` broadcast over arrays (e.g. one ``(n, c)`` pair per question, a list of k)."""
    n_a, c_a, k_a = np.broadcast_arrays(np.asarray(n), np.asarray(c), np.asarray(k))
    out = np.empty(n_a.shape, dtype=float)
    for idx in np.ndindex(n_a.shape):
        out[idx] = pass_at_k(n_a[idx].item(), c_a[idx].item(), k_a[idx].item())
    return out


# --------------------------------------------------------------------------------------------
# Voting and Best-of-N
# --------------------------------------------------------------------------------------------

_BOXED = re.compile(r"^\\(?:boxed|fbox)\{(.*)\}$", re.S)
_TEXT = re.compile(r"\\(?:text|textbf|mathrm)\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(,\d{3})+(\.\d+)?$")


def normalise_answer(answer: Any) -> str | None:
    """Canonical string used to group equal answers for voting; None for "no answer".

    Strips whitespace, ``$...$``, ``\\boxed{...}``, ``\\text{...}``, ``\\left``/``\\right``, a
    trailing period; lower-cases; maps ``\\dfrac``/``\\tfrac`` to ``\\frac``; removes thousands
    separators; writes numbers canonically (``"2.50" -> "2.5"``, ``"3.0" -> "3"``). It is a
    grouping key, not a grader (math equivalence is math-verify's job).

    >>> normalise_answer(" $\\\\boxed{1,000.0}$. "), normalise_answer(""), normalise_answer(None)
    ('1000', None, None)
    """
    if answer is None:
        return None
    s = str(answer).strip()
    for _ in range(3):  # peel nested wrappers
        s = s.strip().rstrip(".").strip()
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s.strip("$")
        m = _BOXED.match(s)
        if m:
            s = m.group(1)
    s = _TEXT.sub(r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = "".join(s.split()).lower()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    try:
        x = float(s)
    except ValueError:
        return s or None
    if math.isfinite(x):
        s = str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)
    return s or None


def _check_scores(answers: Sequence[Any], scores: Sequence[float]) -> list[float]:
    if len(answers) != len(scores):
        raise ValueError(f"got {len(answers)} answers but {len(scores)} scores; pass one score per answer")
    out = [float(s) for s in scores]
    if not all(math.isfinite(s) for s in out):
        raise ValueError(f"scores must be finite numbers, got {scores!r}")
    return out


def _tally(answers: Sequence[Any], weights: Sequence[float], key: Callable[[Any], Hashable | None]):
    """Sum weights per key in order of first occurrence: {key: [total, first_index]}."""
    totals: dict[Hashable, list[float]] = {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        kk = key(a)
        if kk is None:
            continue
        if kk not in totals:
            totals[kk] = [0.0, i]
        totals[kk][0] += w
    return totals


def _argmax_first(totals: dict[Hashable, list[float]]) -> int | None:
    """Index of the first answer of the heaviest key; ties go to the key that appeared first."""
    best: list[float] | None = None
    for v in totals.values():  # dict order = first occurrence, so strict > keeps the earliest
        if best is None or v[0] > best[0]:
            best = v
    return None if best is None else int(best[1])


def majority_vote(answers: Sequence[Any], key: Callable[[Any], Hashable | None] = normalise_answer) -> Any:
    """The most frequent answer (grouped by ``key``); None if no sample has an answer.

    Answers whose key is None (no answer extracted) do not vote. Ties go to the answer whose
    first occurrence comes first in ``answers``. Returns the first original answer of the winner.

    >>> majority_vote(["1", "2", "2.0", "1"])  # tie 2-2: "1" appeared first
    '1'
    """
    i = _argmax_first(_tally(answers, [1.0] * len(answers), key))
    return None if i is None else answers[i]


def weighted_best_of_n(
    answers: Sequence[Any], scores: Sequence[float], key: Callable[[Any], Hashable | None] = normalise_answer
) -> Any:
    """Weighted Best-of-N: sum the verifier scores of each distinct answer, return the argmax.

    Distinct answers are grouped by ``key``; unanswered samples are skipped; ties go to the answer
    that first appears in ``answers``.

    >>> weighted_best_of_n(["a", "b", "b"], [0.9, 0.5, 0.5])  # b: 1.0 > a: 0.9
    'b'
    """
    i = _argmax_first(_tally(answers, _check_scores(answers, scores), key))
    return None if i is None else answers[i]


def best_of_n(answers: Sequence[Any], scores: Sequence[float]) -> Any:
    """Best-of-N: the answer of the highest-scoring sample (first one on ties); None if empty."""
    s = _check_scores(answers, scores)
    if not s:
        return None
    return answers[int(np.argmax(s))]  # argmax returns the first maximum


def vote_accuracy(
    answers: Sequence[Any],
    correct: Sequence[float],
    scores: Sequence[float] | None = None,
    key: Callable[[Any], Hashable | None] = normalise_answer,
) -> float:
    """Expected correctness of (weighted) majority voting when ties are broken uniformly at random.

    Each distinct answer gets the number of votes (or the sum of ``scores``); among the top-weight
    answers, the fraction that are correct is returned (MRT's maj@k counts a two-way tie as 0.5).
    A distinct answer is correct when its first occurrence is marked correct. 0.0 if no answers.

    >>> vote_accuracy(["1", "2", "2", "1"], [1, 0, 0, 1])
    0.5
    """
    if len(correct) != len(answers):
        raise ValueError(f"got {len(answers)} answers but {len(correct)} correctness flags")
    weights = [1.0] * len(answers) if scores is None else _check_scores(answers, scores)
    totals = _tally(answers, weights, key)
    if not totals:
        return 0.0
    top = max(v[0] for v in totals.values())
    winners = [int(v[1]) for v in totals.values() if math.isclose(v[0], top, rel_tol=1e-12, abs_tol=1e-12)]
    return float(np.mean([float(correct[i]) for i in winners]))


# --------------------------------------------------------------------------------------------
# Information-gain curves and regret
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfoGainCurve:
    """Points ``(tokens[i], J[i])`` of one trace; point 0 is ``(0, J_init)``, point j+1 ends episode j.

    ``kinds[j]`` is the kind of episode j; ``unit`` is "tokens" or "chars" (metarl's axis: the stream's
    offset), or "mrt" (MRT's regret-notebook axis, :func:`mrt_curve`: point 0 is ``(0, 0)``, point 1 is
    J_init, and the kind of that first segment is ``"prompt"``); ``has_init`` is False when the curve
    starts at ``(0, 0)``.
    """

    tokens: tuple[float, ...]
    J: tuple[float, ...]
    kinds: tuple[str, ...] = ()
    unit: str = "tokens"
    has_init: bool = True
    value: str = "J"
    """What the y values are (:data:`CURVE_VALUES`): ``"J"`` (μ's probability of success, Monte Carlo or
    exact progress), ``"logp"`` (likelihood progress's log p(a* | prefix)) or ``"p"`` (its exp, the
    teacher-forced probability of the gold answer: a probability, but not of success)."""

    @property
    def end(self) -> float:
        """Offset at which the stream ends (the last episode's end)."""
        return self.tokens[-1]

    @property
    def levels(self) -> tuple[float, ...]:
        """``(J_init, J_0, …, J_{n−1})`` whatever the axis (MRT's puts a ``(0, 0)`` point before J_init)."""
        return self.J[1:] if self.unit == "mrt" else self.J

    @property
    def episode_kinds(self) -> tuple[str, ...]:
        return self.kinds[1:] if self.unit == "mrt" else self.kinds

    @property
    def num_episodes(self) -> int:
        return len(self.levels) - 1


def information_gain_curve(
    episode_ends: Sequence[float],
    episode_J: Sequence[float],
    J_init: float | None = None,
    kinds: Sequence[str] | None = None,
    unit: str = "tokens",
) -> InfoGainCurve:
    """Build a curve from the end offsets and μ success ``J_j`` of each episode (see module doc).

    ``J_init=None`` starts the curve at ``(0, 0)`` (MRT's convention for "no compute").
    """
    ends = [float(e) for e in episode_ends]
    js = [float(j) for j in episode_J]
    if len(ends) != len(js):
        raise ValueError(f"got {len(ends)} episode ends but {len(js)} J values; pass one J per episode")
    if kinds is not None and len(kinds) != len(ends):
        raise ValueError(f"got {len(kinds)} kinds for {len(ends)} episodes")
    j0 = 0.0 if J_init is None else float(J_init)
    xs, ys = [0.0, *ends], [j0, *js]
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError(f"curve values must be finite: ends={ends}, J={ys}")
    if any(b < a for a, b in zip(xs, xs[1:])):
        raise ValueError(f"episode ends must be >= 0 and non-decreasing, got {ends}; are they cumulative offsets?")
    return InfoGainCurve(tuple(xs), tuple(ys), tuple(kinds or ("other",) * len(ends)), unit, J_init is not None)


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def mrt_curve(trace: Any) -> InfoGainCurve | None:
    """The curve on MRT's regret axis (``CMU-AIRe/MRT`` ``analysis/code/regret.ipynb``).

    MRT places the forced answer after prefix j at ``x_j = n_ctx_j + (Σ_r n_r) / 16``: the tokens of
    the whole context sent to μ (prompt + prefix + suffix) plus the tokens of its forced answers summed
    over the samples and divided by 16, and starts the curve at ``(0, 0)``:
    ``x = [0, x_init, x_0, ...]``, ``y = [0, J_init, J_0, ...]``. It needs the Monte Carlo estimator's
    ``info["context_tokens"]`` / ``info["forced_tokens"]`` (``meta["J_init_info"]`` for the prompt alone);
    returns None without them. Numbers on this axis are comparable with MRT's plots, not with metarl's
    own axis (thinking tokens, from ``(0, J_init)``). The x values need not increase (MRT's don't either).
    """
    meta = _get(trace, "meta", None) or {}
    init, j_init = meta.get("J_init_info") or {}, _number(meta.get("J_init"))
    xs, ys, kinds = [0.0], [0.0], []
    for info, j, kind in [(init, j_init, "prompt")] + [
            ((_get(e, "info", None) or {}), _number((_get(e, "info", None) or {}).get("J")), str(_get(e, "kind", "other")))
            for e in _get(trace, "episodes", None) or []]:
        ctx, forced = _number(info.get("context_tokens")), _number(info.get("forced_tokens"))
        if j is None or ctx is None or forced is None:
            continue
        xs.append(ctx + forced / 16)
        ys.append(j)
        kinds.append(kind)
    if len(xs) < 2:
        return None
    return InfoGainCurve(tuple(xs), tuple(ys), tuple(kinds), "mrt", has_init=False)


CURVE_VALUES = {"J": ("J", "J_init"), "logp": ("logp", "logp_init"), "p": ("logp", "logp_init")}
"""Curve value -> (episode ``info`` key, trace ``meta`` key of the value before the first episode)."""


def trace_estimator(trace: Any) -> str | None:
    """Which information-gain values a trace carries: ``"J"`` (Monte Carlo / exact progress,
    ``episodes[*].info.J``), else ``"logp"`` (likelihood progress, ``episodes[*].info.logp``), else None."""
    for value in ("J", "logp"):
        for e in _get(trace, "episodes", None) or []:
            if _number((_get(e, "info", None) or {}).get(value)) is not None:
                return value
    return None


def curve_from_trace(trace: Any, unit: str = "auto", value: str = "J") -> InfoGainCurve | None:
    """The curve of a ``Trace`` or its JSON dict, from ``meta.J_init`` and each ``episode.info.J``.

    Episodes without a numeric ``info["J"]`` are skipped; returns None when no episode has one.
    ``unit="auto"`` uses ``token_end`` when every such episode has it, else the character ``end``;
    ``"tokens"`` requires token spans; ``"chars"`` always uses characters; ``"mrt"`` is MRT's regret
    axis (:func:`mrt_curve`, J only).

    ``value="logp"`` reads likelihood progress's ``info.logp`` / ``meta.logp_init`` (log p(a* | prefix))
    instead; ``value="p"`` the same as a probability, ``exp(logp)``. Neither is μ's probability of
    success: regret (:func:`normalized_regret`) refuses such curves.
    """
    if value not in CURVE_VALUES:
        raise ValueError(f"value must be one of {sorted(CURVE_VALUES)}, got {value!r}")
    if unit == "mrt":
        if value != "J":
            raise ValueError("MRT's axis needs Monte Carlo progress's token counts (value='J')")
        return mrt_curve(trace)
    if unit not in ("auto", "tokens", "chars"):
        raise ValueError(f"unit must be 'auto', 'tokens', 'chars' or 'mrt', got {unit!r}")
    key, init_key = CURVE_VALUES[value]
    convert = math.exp if value == "p" else float
    pts = []
    for e in _get(trace, "episodes", None) or []:
        j = (_get(e, "info", None) or {}).get(key)
        if isinstance(j, (int, float)) and not isinstance(j, bool) and math.isfinite(j):
            pts.append((_get(e, "token_end"), _get(e, "end"), convert(j), str(_get(e, "kind", "other"))))
    if not pts:
        return None
    have_tokens = all(p[0] is not None for p in pts)
    if unit == "tokens" and not have_tokens:
        raise ValueError("unit='tokens' but some episodes have no token_end; use unit='auto' or 'chars'")
    use_tokens = have_tokens and unit != "chars"
    col = 0 if use_tokens else 1
    if any(p[col] is None for p in pts):
        raise ValueError("an episode has neither token_end nor end; cannot place it on the curve")
    j_init = _number((_get(trace, "meta", None) or {}).get(init_key))
    if value != "J" and j_init is None:
        raise ValueError("likelihood progress records meta.logp_init (log p(a* | prompt)); this trace has none, and "
                         "a curve of log-probabilities has no (0, 0) start")
    curve = information_gain_curve(
        [p[col] for p in pts], [p[2] for p in pts], None if j_init is None else convert(j_init), [p[3] for p in pts],
        "tokens" if use_tokens else "chars"
    )
    return curve if value == "J" else replace(curve, value=value)


def J_at(curve: InfoGainCurve, t: float | Sequence[float] | np.ndarray) -> float | np.ndarray:
    """``J(t)``: linear between consecutive points, held at the last value for ``t >= end``.

    At a zero-width episode (two points at the same offset) the curve jumps; ``J_at`` there returns
    the later value (right-continuous). ``t`` must be >= 0.
    """
    ts = np.asarray(t, dtype=float)
    if np.any(ts < 0) or np.any(~np.isfinite(ts)):
        raise ValueError(f"J_at: t must be finite and >= 0, got {t!r}")
    xs, ys = curve.tokens, curve.J
    out = np.empty(ts.shape)
    for idx in np.ndindex(ts.shape):
        x = ts[idx]
        i = bisect_right(xs, x)  # xs[i-1] <= x < xs[i], and then xs[i-1] < xs[i]
        if i >= len(xs):
            out[idx] = ys[-1]
        else:
            x0, x1 = xs[i - 1], xs[i]
            out[idx] = ys[i - 1] + (x - x0) / (x1 - x0) * (ys[i] - ys[i - 1])
    return float(out) if out.ndim == 0 else out


def area_under_curve(curve: InfoGainCurve, c0: float) -> float:
    """Exact ``∫_0^{C0} J(t) dt`` of the piecewise-linear curve held at its last value."""
    if not (c0 > 0 and math.isfinite(c0)):
        raise ValueError(f"budget C0 must be a positive number, got {c0!r}")
    xs, ys = curve.tokens, curve.J
    area = 0.0
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
        if x0 >= c0:
            break
        if x1 == x0:
            continue
        hi = min(x1, c0)
        y_hi = y0 + (hi - x0) / (x1 - x0) * (y1 - y0)
        area += 0.5 * (y0 + y_hi) * (hi - x0)
    if c0 > xs[-1]:
        area += ys[-1] * (c0 - xs[-1])
    return area


def mrt_area(curve: InfoGainCurve, c0: float) -> float:
    """``(1/C0) ∫_0^{C0} J`` computed as MRT's regret notebook does on its own points (trapezoids over the
    points below C0, then to C0: linearly interpolated when a point lies beyond it, else held at the last
    value). Equal to ``area_under_curve(curve, c0) / c0`` when the x values increase; MRT's rule on
    points that do not."""
    if not (c0 > 0 and math.isfinite(c0)):
        raise ValueError(f"budget C0 must be a positive number, got {c0!r}")
    x, y = np.asarray(curve.tokens, dtype=float), list(curve.J)
    below = list(x[x < c0])

    def trapz(ys: list[float], xs: list[float]) -> float:
        return float(sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1)))

    if len(below) == len(x):
        return trapz(y + [y[-1]], list(x) + [c0]) / c0
    i = len(below) - 1
    y_c = y[i] + (c0 - x[i]) / (x[i + 1] - x[i]) * (y[i + 1] - y[i])
    return trapz(y[: i + 1] + [y_c], below + [c0]) / c0


def normalized_regret(curve: InfoGainCurve, c0: float, J_star: float = 1.0) -> float:
    """Normalised regret at budget C0: ``J* − (1/C0) ∫_0^{C0} J(t) dt`` (= ``1 − mean J`` for J* = 1); on
    MRT's axis (``unit="mrt"``) the area is :func:`mrt_area` (MRT's notebook reports that area). Only for
    curves of J, a probability of success (not of likelihood progress's log p(a* | prefix) or its exp)."""
    if curve.value != "J":
        raise ValueError(f"regret needs J, μ's probability of success; this curve holds {curve.value!r} "
                         "(likelihood progress: the teacher-forced likelihood of the gold answer)")
    if curve.unit == "mrt":
        return J_star - mrt_area(curve, c0)
    return J_star - area_under_curve(curve, c0) / c0


def mean_normalized_regret(
    curves: Sequence[InfoGainCurve],
    budgets: Sequence[float],
    groups: Sequence[Hashable] | None = None,
    J_star: float = 1.0,
) -> np.ndarray:
    """Normalised regret averaged over traces, one value per budget C0.

    With ``groups`` (e.g. question ids) traces are averaged within each group first, then groups
    are averaged with equal weight, as MRT's notebook does (16 samples per question).
    """
    if not curves:
        raise ValueError("mean_normalized_regret: no curves (no trace had J values)")
    if groups is not None and len(groups) != len(curves):
        raise ValueError(f"got {len(groups)} group ids for {len(curves)} curves")
    per = np.array([[normalized_regret(c, b, J_star) for b in budgets] for c in curves]).reshape(len(curves), -1)
    if groups is None:
        return per.mean(axis=0)
    by: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        by.setdefault(g, []).append(i)
    return np.mean([per[idx].mean(axis=0) for idx in by.values()], axis=0)


def cumulative_regret(episode_J: Sequence[float], J_star: float = 1.0) -> np.ndarray:
    """``[Δ_0, Δ_1, ..., Δ_K]`` with ``Δ_k = Σ_{j=0}^{k-1} (J* − J_j)`` over episodes (J_init excluded).

    >>> cumulative_regret([0.5, 1.0, 0.75]).tolist()
    [0.0, 0.5, 0.5, 0.75]
    """
    gaps = J_star - np.asarray(episode_J, dtype=float)
    return np.concatenate([[0.0], np.cumsum(gaps)])


def episode_progress(curve: InfoGainCurve) -> np.ndarray:
    """Per-episode progress ``ΔJ_j = J_j − J_{j−1}`` (``J_{−1} = J_init``), one value per episode."""
    return np.diff(np.asarray(curve.levels, dtype=float))


# --------------------------------------------------------------------------------------------
# Difficulty bins (Snell et al. 2024)
# --------------------------------------------------------------------------------------------


def difficulty_bins(
    pass_at_1: Sequence[float] | Mapping[Hashable, float], n_bins: int = 5, ties: str = "together"
) -> list[int] | dict[Hashable, int]:
    """Quantile difficulty bins of questions from the base model's pass@1; bin 1 = easiest.

    Questions are ranked by pass@1, highest first (rank r = 0..N−1) and question r goes to bin
    ``floor(r · n_bins / N) + 1`` (equal-size bins, sizes differ by at most one). Ties:

    * ``"together"`` (default): questions with equal pass@1 are equally hard and share a bin, the
      one of their mid-rank ``(first + last) / 2``; bins may then be unequal or empty;
    * ``"split"``: ties are ranked in input order, so bins are exactly equal-size.

    A mapping ``{question_id: pass@1}`` gives ``{question_id: bin}``; a sequence gives a list.

    >>> difficulty_bins([0.0, 1.0, 0.5, 0.25, 0.75])
    [5, 1, 3, 4, 2]
    """
    if ties not in ("together", "split"):
        raise ValueError(f"ties must be 'together' or 'split', got {ties!r}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    keys = list(pass_at_1) if isinstance(pass_at_1, Mapping) else None
    vals = [float(pass_at_1[k]) for k in keys] if keys is not None else [float(v) for v in pass_at_1]
    bad = [v for v in vals if not (math.isfinite(v) and 0.0 <= v <= 1.0)]
    if bad:
        raise ValueError(f"pass@1 values must lie in [0, 1], got {bad[:5]}")
    n = len(vals)
    order = sorted(range(n), key=lambda i: (-vals[i], i))
    bins = [0] * n
    r = 0
    while r < n:
        last = r
        if ties == "together":
            while last + 1 < n and vals[order[last + 1]] == vals[order[r]]:
                last += 1
        for rr in range(r, last + 1):
            rank = (r + last) / 2 if ties == "together" else rr
            bins[order[rr]] = min(int(math.floor(rank * n_bins / n)), n_bins - 1) + 1
        r = last + 1
    return dict(zip(keys, bins)) if keys is not None else bins


# --------------------------------------------------------------------------------------------
# Means and confidence intervals
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean with a confidence interval ``[low, high]`` from ``n`` values (NaN bounds when n < 2); from
    :func:`median_ci`, ``mean`` holds the median."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def _values(values: Sequence[float] | np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("no values to average")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"values must be finite, got {v[~np.isfinite(v)][:5].tolist()}")
    return v


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (Bessel-corrected std / √n; 0 for one value).

    >>> mean_se([1.0, 2.0, 3.0])
    (2.0, 0.5773502691896257)
    """
    n = len(values)
    if n == 0:
        raise ValueError("mean_se of no values")
    mean = sum(values) / n
    var = sum((x - mean) ** 2 for x in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> Interval:
    """Student-t interval of the mean (e.g. over seeds): ``mean ± t_{(1+conf)/2, n−1} · s/√n``.

    >>> iv = mean_ci([1.0, 2.0, 3.0]); round(iv.low, 4), round(iv.high, 4)
    (-0.4841, 4.4841)
    """
    from scipy.stats import t as student_t

    _check_confidence(confidence)
    v = _values(values)
    m = float(v.mean())
    if v.size < 2:
        return Interval(m, math.nan, math.nan, int(v.size))
    half = float(student_t.ppf((1 + confidence) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Interval(m, m - half, m + half, int(v.size))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> Interval:
    """Percentile bootstrap interval of the mean (e.g. over questions); deterministic given ``seed``."""
    _check_confidence(confidence)
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    v = _values(values)
    m = float(v.mean())
    if v.size < 2:
        return Interval(m, math.nan, math.nan, int(v.size))
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // v.size)
    for s in range(0, n_resamples, chunk):
        e = min(n_resamples, s + chunk)
        means[s:e] = v[rng.integers(0, v.size, size=(e - s, v.size))].mean(axis=1)
    alpha = 1 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(m, float(lo), float(hi), int(v.size))


def median_ci(values: Sequence[float] | np.ndarray, exact: Sequence[bool] | None = None,
              confidence: float = 0.95) -> Interval:
    """Distribution-free interval of the median from order statistics, valid when some values are lower bounds.

    With ``n`` values sorted ``x_(1) ≤ … ≤ x_(n)``, ``[x_(k), x_(n+1−k)]`` covers the median with
    probability ``1 − 2·P(Bin(n, ½) ≤ k−1)``; ``k`` is the largest with ``P(Bin(n, ½) ≤ k−1) ≤ (1 − conf)/2``
    (n = 9 at 95%: k = 2, coverage 1 − 2·10/512 = 0.961). Below n = 6 no k exists at 95%: both bounds NaN.

    A value whose ``exact`` flag is False is censored: only a lower bound of the true value (e.g. the tokens
    of a run that never reached a target). The k-th smallest bound is a lower bound of the k-th smallest true
    value, so ``low`` stays valid; ``high`` is the (n+1−k)-th smallest *exact* value (any n+1−k true values
    bound that order statistic from above), ``inf`` when fewer values are exact. ``mean`` holds the median of
    the values as given (a lower bound of the median when censored values reach it).

    >>> iv = median_ci([0.16, 0.68, 0.75, 0.8, 0.8, 0.81, 0.81, 0.85, 0.79],
    ...                [True, True] + [False] * 7); iv.low, iv.high, iv.mean
    (0.68, inf, 0.8)
    """
    from scipy.stats import binom

    _check_confidence(confidence)
    v = _values(values)
    ok = np.ones(v.size, bool) if exact is None else np.asarray(exact, dtype=bool).ravel()
    if ok.size != v.size:
        raise ValueError(f"{v.size} values but {ok.size} exact flags")
    n, alpha = int(v.size), (1 - confidence) / 2
    k = 0
    while k + 1 <= n // 2 and binom.cdf(k, n, 0.5) <= alpha:
        k += 1
    med = float(np.median(v))
    if k == 0:
        return Interval(med, math.nan, math.nan, n)
    low = float(np.sort(v)[k - 1])
    known = np.sort(v[ok])
    high = float(known[n - k]) if known.size >= n + 1 - k else math.inf
    return Interval(med, low, high, n)
