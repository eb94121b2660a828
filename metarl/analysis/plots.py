"""Figures and the CSV behind each: matplotlib helpers that leave no global state behind.

Figures are ``matplotlib.figure.Figure`` objects rendered with the Agg canvas: no pyplot, no backend switch,
nothing left open; matplotlib is imported when a figure is first drawn, not when this module is imported.
:func:`plot_bands` is the one-call helper (averaged curves or regret with their intervals: PNG plus CSV); the
others are the pieces it and ``analysis.report`` are built from.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from metarl.analysis.curves import Band
from metarl.analysis.intervals import clip_interval
from metarl.metrics import Interval

__all__ = ["plot_bands", "panels", "line_with_band", "finish", "save_figure", "write_csv", "color", "unit_label"]

BAND_HEADER = ["label", "x", "mean", "ci_low", "ci_high", "n"]


def color(i: int) -> tuple[float, float, float]:
    """The ``i``-th colour of matplotlib's tab10 cycle (wrapping).

    >>> color(0) == color(10), [round(v, 3) for v in color(1)]
    (True, [1.0, 0.498, 0.055])
    """
    from matplotlib import colormaps

    cols = colormaps["tab10"].colors
    return cols[i % len(cols)]


def panels(n: int, ncols: int = 3, size: tuple[float, float] = (5.2, 3.8)) -> tuple[Any, list[Any]]:
    """A figure with ``n`` axes in rows of ``ncols`` (each ``size`` inches); unused axes are hidden.

    >>> fig, axes = panels(4)
    >>> len(axes), fig.get_size_inches().round(1).tolist()
    (4, [15.6, 7.6])
    """
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows))
    flat = list(fig.subplots(nrows, ncols, squeeze=False).ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def line_with_band(
    ax: Any, x: Sequence[float], ivs: Sequence[Interval], label: str, c: Any, marker: str | None = None, lw: float = 2,
    bounds: tuple[float, float] | None = None, ls: str = "-",
) -> None:
    """Plot the means and shade the 95% interval where it is defined (n >= 2), clipped to ``bounds``
    (:data:`~metarl.analysis.intervals.PROBABILITY` for a probability or fraction).

    >>> fig, (ax,) = panels(1)
    >>> line_with_band(ax, [0, 1], [Interval(0.2, 0.1, 0.3, 5), Interval(0.4, math.nan, math.nan, 1)], "J", color(0))
    >>> ax.lines[0].get_ydata().tolist(), len(ax.collections)
    ([0.2, 0.4], 1)
    """
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
    """Title, axis labels, grid and legend (``below``: under the axes, where it hides no data).

    >>> fig, (ax,) = panels(1)
    >>> finish(ax, "J vs tokens", "tokens", "J"); ax.get_title(), ax.get_xlabel()
    ('J vs tokens', 'tokens')
    """
    ax.set_title(title, fontsize=11)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        if below:
            ax.legend(fontsize=8, framealpha=0.8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1)
        else:
            ax.legend(fontsize=8, framealpha=0.8)


def save_figure(fig: Any, out_dir: Path | str, name: str, suptitle: str | None = None) -> str:
    """Write ``name.png`` under ``out_dir`` and return the file name.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> save_figure(panels(1)[0], d, "empty"), (d / "empty.png").read_bytes()[:4]
    ('empty.png', b'\\x89PNG')
    """
    if suptitle:
        fig.suptitle(suptitle, fontsize=13 if fig.get_figwidth() > 8 else 11, wrap=True)
    fig.tight_layout()
    fig.savefig(Path(out_dir) / f"{name}.png", dpi=110, bbox_inches="tight")
    return f"{name}.png"


def write_csv(out_dir: Path | str, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Write ``name.csv`` under ``out_dir`` (floats with full precision, NaN as empty) and return the file name.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> write_csv(d, "t", ["x", "y"], [[1, 0.1], [2, math.nan]]), (d / "t.csv").read_text().splitlines()
    ('t.csv', ['x,y', '1,0.1', '2,'])
    """
    with (Path(out_dir) / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow(["" if isinstance(v, float) and math.isnan(v) else v for v in r])
    return f"{name}.csv"


def unit_label(unit: str) -> str:
    """Axis label saying which axis a curve uses: metarl's (the stream's thinking tokens, or characters, the
    curve from (0, J_init)) or MRT's regret-notebook axis.

    >>> unit_label("tokens")
    'thinking tokens (metarl axis, curve from (0, J_init))'
    """
    if unit == "mrt":
        return "MRT axis: prompt+prefix+suffix tokens + forced-answer tokens/16 (curve from (0, 0))"
    if unit == "tokens":
        return "thinking tokens (metarl axis, curve from (0, J_init))"
    return "characters (metarl axis; no token spans in the data)"


_Y_LABEL = {"J": "mean J = P(forced answer correct) (95% CI)", "logp": "mean log p(a* | prefix) (95% CI)",
            "p": "mean p(a* | prefix) (95% CI)", "normalized_regret": "normalised regret (95% CI)",
            "cumulative_regret": "mean cumulative regret Δ_k (95% CI)"}
_X_LABEL = {"episodes": "episodes completed k", "budget": "budget C0"}
_BOUNDED = {"J": (0.0, 1.0), "p": (0.0, 1.0), "normalized_regret": (0.0, 1.0)}


def plot_bands(bands: Band | Sequence[Band] | Mapping[str, Band], path: Path | str, title: str = "",
               xlabel: str | None = None, ylabel: str | None = None) -> tuple[Path, Path]:
    """One panel with a line and its shaded 95% interval per band (a mapping's keys label them); writes
    ``path`` as a PNG (``.png`` added when missing) and the numbers behind it next to it as CSV
    (``label, x, mean, ci_low, ci_high, n``: one row per point). Returns both paths. A probability (J, p,
    normalised regret) gets the y range [0, 1].

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> band = Band((0.0, 10.0), (Interval(0.25, 0.0, 0.5, 2), Interval(0.75, 0.5, 1.0, 2)), "tokens", "J")
    >>> png, csv_path = plot_bands({"obj2": band}, d / "j_curve")
    >>> png.name, png.read_bytes()[:4], csv_path.read_text().splitlines()
    ('j_curve.png', b'\\x89PNG', ['label,x,mean,ci_low,ci_high,n', 'obj2,0.0,0.25,0.0,0.5,2', 'obj2,10.0,0.75,0.5,1.0,2'])
    """
    if isinstance(bands, Band):
        bands = [bands]
    items = list(bands.items()) if isinstance(bands, Mapping) else [(b.label or f"run {i}", b) for i, b in enumerate(bands)]
    if not items:
        raise ValueError("plot_bands: no bands")
    png = Path(path) if Path(path).suffix == ".png" else Path(f"{path}.png")
    png.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax,) = panels(1, size=(7.5, 4.5))
    rows = []
    for i, (label, band) in enumerate(items):
        bounds = _BOUNDED.get(band.y_name)
        line_with_band(ax, band.x, band.intervals, label, color(i), marker="o" if len(band.x) <= 25 else None,
                       bounds=bounds)
        rows += [[label, *r[1:]] for r in band.rows()]
    first = items[0][1]
    if first.y_name in _BOUNDED:
        ax.set_ylim(-0.03, 1.03)
    finish(ax, title, xlabel or _X_LABEL.get(first.x_name) or unit_label(first.x_name),
           ylabel or _Y_LABEL.get(first.y_name, first.y_name))
    save_figure(fig, png.parent, png.stem)
    return png, png.parent / write_csv(png.parent, png.stem, BAND_HEADER, rows)
