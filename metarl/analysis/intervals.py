"""Intervals of averaged quantities: bounded where the quantity is a probability.

The t-interval and the bootstrap come from :mod:`metarl.metrics`; this module clips them to a quantity's
bounds (a t-interval of a proportion can leave [0, 1]), gives the Wilson interval of one observed
proportion, and summarises units (questions, traces) measured in one or several seeds.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from metarl.metrics import Interval, bootstrap_ci, mean_ci

__all__ = ["PROBABILITY", "clip_interval", "wilson", "summarise"]

PROBABILITY = (0.0, 1.0)
"""Bounds of a probability or fraction: its intervals are clipped to them."""


def clip_interval(iv: Interval, bounds: tuple[float, float] | None) -> Interval:
    """``iv`` with its bounds clipped to ``bounds`` (None: unchanged); NaN stays NaN.

    >>> clip_interval(Interval(0.05, -0.2, 0.3, 2), PROBABILITY)
    Interval(mean=0.05, low=0.0, high=0.3, n=2)
    >>> clip_interval(Interval(-3.0, -5.0, -1.0, 2), None).low
    -5.0
    """
    if bounds is None:
        return iv
    lo_b, hi_b = bounds

    def clip(v: float) -> float:
        return v if math.isnan(v) else min(hi_b, max(lo_b, v))

    return Interval(iv.mean, clip(iv.low), clip(iv.high), iv.n)


def wilson(p: float, n: float, z: float = 1.959963984540054) -> Interval:
    """Wilson score interval (95%) of a proportion ``p`` observed on ``n`` trials; always inside [0, 1].

    >>> iv = wilson(0.0, 10); (iv.low, round(iv.high, 4))
    (0.0, 0.2775)
    """
    if not (n > 0) or math.isnan(p):
        return Interval(p, math.nan, math.nan, 0)
    p = min(1.0, max(0.0, float(p)))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), int(round(n)))


def summarise(per_run: Sequence[Sequence[float]], seed: int = 0,
              bounds: tuple[float, float] | None = None) -> tuple[Interval, int]:
    """Mean and 95% CI of a quantity measured on units (questions, traces) of one or more seeds.

    One run: percentile bootstrap over its units (deterministic given ``seed``). Several runs (seeds): each
    run's mean, then a t-interval over seeds. Clipped to ``bounds``. Returns the interval and the number of
    runs that had data.

    >>> iv, n_runs = summarise([[0.0, 1.0], [0.5]], bounds=PROBABILITY)  # seed means 0.5 and 0.5
    >>> (iv.mean, iv.low, iv.high, n_runs)
    (0.5, 0.5, 0.5, 2)
    >>> summarise([[0.25, 0.25, 0.25]])[0]
    Interval(mean=0.25, low=0.25, high=0.25, n=3)
    """
    runs = [np.asarray(v, dtype=float) for v in per_run if len(v)]
    if not runs:
        return Interval(math.nan, math.nan, math.nan, 0), 0
    if len(runs) == 1:
        return clip_interval(bootstrap_ci(runs[0], seed=seed), bounds), 1
    return clip_interval(mean_ci([r.mean() for r in runs]), bounds), len(runs)
