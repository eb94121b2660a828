"""Shared plumbing of the report: figures (Agg backend), CSV files, report sections, CI summaries."""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metarl.metrics import Interval, bootstrap_ci, mean_ci  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


@dataclass
class Section:
    """One part of ``report.md``: figures (PNG + the CSV behind it), notes and optional markdown."""

    title: str
    figures: list[tuple[str, str, str]] = field(default_factory=list)  # (caption, png, csv)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""


def color(i: int) -> tuple[float, float, float]:
    return COLORS[i % len(COLORS)]


def panels(n: int, ncols: int = 3, size: tuple[float, float] = (5.2, 3.8)) -> tuple[Any, list[Any]]:
    """A figure with ``n`` axes in rows of ``ncols``; unused axes are hidden."""
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


PROBABILITY = (0.0, 1.0)
"""Bounds of a probability or fraction: its intervals are clipped to them."""


def clip_interval(iv: Interval, bounds: tuple[float, float] | None) -> Interval:
    """``iv`` with its bounds clipped to ``bounds`` (a t-interval of a proportion can leave [0, 1]); NaN stays NaN."""
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


def line_with_band(
    ax: Any, x: Sequence[float], ivs: Sequence[Interval], label: str, c: Any, marker: str | None = None, lw: float = 2,
    bounds: tuple[float, float] | None = None, ls: str = "-",
) -> None:
    """Plot the means and shade the 95% interval where it is defined (n >= 2), clipped to ``bounds``
    (:data:`PROBABILITY` for a probability or fraction)."""
    xs = np.asarray(x, dtype=float)
    ivs = [clip_interval(iv, bounds) for iv in ivs]
    m = np.array([iv.mean for iv in ivs])
    lo = np.array([iv.low for iv in ivs])
    hi = np.array([iv.high for iv in ivs])
    ax.plot(xs, m, color=c, label=label, marker=marker, lw=lw, ls=ls)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.fill_between(xs, np.where(ok, lo, m), np.where(ok, hi, m), color=c, alpha=0.2, lw=0)


def finish(ax: Any, title: str, xlabel: str, ylabel: str, legend: bool = True, below: bool = False) -> None:
    """Title, axis labels, grid and legend (``below``: under the axes, where it hides no data)."""
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        if below:
            ax.legend(fontsize=8, framealpha=0.8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
        else:
            ax.legend(fontsize=8, framealpha=0.8)


def save_figure(fig: Any, out_dir: Path, name: str, suptitle: str | None = None) -> str:
    """Write ``name.png`` under ``out_dir``, close the figure, return the file name."""
    if suptitle:
        fig.suptitle(suptitle, fontsize=13 if fig.get_figwidth() > 8 else 11, wrap=True)
    fig.tight_layout()
    fig.savefig(out_dir / f"{name}.png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f"{name}.png"


def write_csv(out_dir: Path, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Write ``name.csv`` (floats with full precision, NaN as empty) and return the file name."""
    with (out_dir / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in r])
    return f"{name}.csv"


def summarise(per_run: Sequence[Sequence[float]], seed: int = 0,
              bounds: tuple[float, float] | None = None) -> tuple[Interval, int]:
    """Mean and 95% CI of a quantity measured on units (questions, traces) of one or more seeds.

    One run: percentile bootstrap over its units. Several runs (seeds): each run's mean, then a
    t-interval over seeds, clipped to ``bounds``. Returns the interval and the number of runs that had data.
    """
    runs = [np.asarray(v, dtype=float) for v in per_run if len(v)]
    if not runs:
        return Interval(math.nan, math.nan, math.nan, 0), 0
    if len(runs) == 1:
        return clip_interval(bootstrap_ci(runs[0], seed=seed), bounds), 1
    return clip_interval(mean_ci([r.mean() for r in runs]), bounds), len(runs)


def unit_label(unit: str) -> str:
    """Axis label saying which axis a plot uses: metarl's (the stream's thinking tokens, or characters, the
    curve from (0, J_init)) or MRT's regret-notebook axis."""
    if unit == "mrt":
        return "MRT axis: prompt+prefix+suffix tokens + forced-answer tokens/16 (curve from (0, 0))"
    if unit == "tokens":
        return "thinking tokens (metarl axis, curve from (0, J_init))"
    return "characters (metarl axis; no token spans in the data)"
