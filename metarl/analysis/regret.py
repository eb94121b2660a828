"""Regret (MRT) of a set of J curves: normalised regret per token budget C0, cumulative regret per episode.

Normalised regret of a trace at C0 is ``1 − (1/C0) ∫_0^{C0} J(t) dt`` (:func:`metarl.metrics.normalized_regret`).
Traces of one question are averaged first and the 95% interval is a bootstrap over questions (MRT averages 16
samples per question, then questions); several seeds of one configuration give a t-interval over seed means.
Only curves of J (μ's probability of success) have a regret: likelihood progress's curves are refused.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from metarl.analysis.curves import Band, CurveSet
from metarl.analysis.intervals import PROBABILITY, clip_interval, summarise
from metarl.metrics import cumulative_regret, mean_ci, normalized_regret

__all__ = ["regret", "cumulative_regret_by_episode", "default_budgets", "n_questions", "MRT_BUDGETS"]

MRT_BUDGETS = (4096, 8192, 12288, 16384)
"""The budgets C0 of MRT's plots (16K-token runs)."""


def _require_j(cs: CurveSet) -> None:
    if cs.value != "J":
        raise ValueError(f"{cs.label}: regret needs J, μ's probability of success; these curves hold {cs.value!r} "
                         "(likelihood progress)")
    if not cs.curves:
        raise ValueError(f"{cs.label}: no curves")


def default_budgets(curve_sets: CurveSet | Iterable[CurveSet], n: int = 4) -> list[float]:
    """``n`` evenly spaced budgets up to the longest trace of ``curve_sets`` (MRT used 4096..16384).

    >>> from metarl.metrics import information_gain_curve as igc
    >>> default_budgets(CurveSet("run", [igc([30], [1.0], J_init=0.0), igc([100], [1.0], J_init=0.0)]))
    [25.0, 50.0, 75.0, 100.0]
    """
    sets = [curve_sets] if isinstance(curve_sets, CurveSet) else list(curve_sets)
    top = max(cs.max_end for cs in sets)
    if top <= 0:
        return [1.0]
    return sorted({float(max(1, round(top * (i + 1) / n))) for i in range(n)})


def _per_question(values: np.ndarray, questions: Sequence[Hashable]) -> np.ndarray:
    """Average the rows of ``values`` (traces × budgets) within each question."""
    by: dict[Hashable, list[int]] = {}
    for i, q in enumerate(questions):
        by.setdefault(q, []).append(i)
    return np.stack([values[idx].mean(axis=0) for idx in by.values()])


def _by_seed(cs: CurveSet) -> list[list[int]]:
    seeds = sorted(set(cs.seed_index)) if cs.seed_index else [0]
    return [[i for i in range(len(cs.curves)) if (cs.seed_index[i] if cs.seed_index else 0) == s] for s in seeds]


def n_questions(cs: CurveSet) -> int:
    """Questions behind the regret of ``cs``: distinct questions per seed, summed over seeds.

    >>> from metarl.metrics import information_gain_curve as igc
    >>> c = igc([10], [1.0], J_init=0.0)
    >>> n_questions(CurveSet("run", [c, c, c], questions=["a", "a", "b"], seed_index=[0, 0, 1]))
    2
    """
    qs = cs.questions or list(range(len(cs.curves)))
    return sum(len({qs[i] for i in idx}) for idx in _by_seed(cs))


def regret(cs: CurveSet, budgets: Sequence[float] | None = None) -> Band:
    """Normalised regret at each budget C0 (default :func:`default_budgets`) with its 95% interval (bootstrap
    over questions for one seed, t over seed means for several; clipped to [0, 1]).

    A curve rising linearly from (0, 0) to (10, 1), then held: ∫_0^10 J = 5, regret 1 − 5/10 = 0.5 at C0 = 10;
    ∫_0^20 J = 5 + 10 = 15, regret 1 − 15/20 = 0.25 at C0 = 20.

    >>> from metarl.metrics import information_gain_curve as igc
    >>> cs = CurveSet("run", [igc([10], [1.0], J_init=0.0)] * 2, questions=["a", "b"])
    >>> band = regret(cs, [10, 20])
    >>> band.x, band.mean.tolist(), band.y_name
    ((10.0, 20.0), [0.5, 0.25], 'normalized_regret')
    """
    _require_j(cs)
    chosen = [float(b) for b in (budgets if budgets else default_budgets(cs))]
    per_trace = np.array([[normalized_regret(c, b) for b in chosen] for c in cs.curves])
    qs = cs.questions or list(range(len(cs.curves)))
    per_seed = [_per_question(per_trace[idx], [qs[i] for i in idx]) for idx in _by_seed(cs)]
    ivs, n_runs = [], 0
    for bi in range(len(chosen)):
        iv, n_runs = summarise([q[:, bi] for q in per_seed], seed=bi, bounds=PROBABILITY)
        ivs.append(iv)
    return Band(tuple(chosen), tuple(ivs), "budget", "normalized_regret", cs.label, n_runs)


def cumulative_regret_by_episode(cs: CurveSet) -> Band:
    """Mean cumulative regret ``Δ_k = Σ_{j<k} (1 − J_j)`` over the traces with at least k episodes, with a 95%
    t-interval clipped to [0, k] (J_init is not a term: Δ_0 = 0).

    >>> from metarl.metrics import information_gain_curve as igc
    >>> cs = CurveSet("run", [igc([5, 9], [0.5, 1.0], J_init=0.0), igc([4], [0.25], J_init=0.5)])
    >>> band = cumulative_regret_by_episode(cs)
    >>> band.x, band.mean.tolist(), [iv.n for iv in band.intervals]
    ((0.0, 1.0, 2.0), [0.0, 0.625, 0.5], [2, 2, 1])
    """
    _require_j(cs)
    deltas = [cumulative_regret(c.levels[1:]) for c in cs.curves]
    ks, ivs = [], []
    for k in range(max(len(d) for d in deltas)):
        ks.append(float(k))
        ivs.append(clip_interval(mean_ci([d[k] for d in deltas if len(d) > k]), (0.0, float(k))))  # 0 <= Δ_k <= k
    return Band(tuple(ks), tuple(ivs), "episodes", "cumulative_regret", cs.label, len(set(cs.seed_index)) or 1)
