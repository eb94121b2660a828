"""Training curves from ``metrics.jsonl``: a few curated plots, and every logged key in ``metrics_all.csv``.

Figures (runs overlaid, seeds of one configuration pooled):

* ``training_accuracy_objective``: outcome accuracy (and verification accuracy) of the step's traces, and
  the objective per trace (``metarl/reward/total`` = dense + α·outcome) with its two terms, the dense term
  (``metarl/reward/dense``) and the outcome term α·outcome (total − dense);
* ``training_tokens_episodes``: thinking tokens per trace (with the cap C), episodes per trace and the
  fraction of traces cut by the cap.

Series are drawn per step (thin) and as a centred moving average over a few steps when a run has many steps
(thick; the window is in the legend). Bands are 95% intervals: over seeds, a t-interval of the seed means;
for one run, a Wilson interval of a proportion pooled over the window's traces (traces per step from the
run's config.yaml: ``trainer.per_device_train_batch_size`` × ``gradient_accumulation_steps``). Intervals of
a proportion never leave [0, 1]. ``held-out`` curves (``eval/curve.jsonl``) against the cap C and the
training step are :func:`heldout_section`'s.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from analysis.plots import Section
from metarl.analysis.intervals import PROBABILITY, clip_interval, wilson
from metarl.analysis.io import RunData, group_runs, is_number
from metarl.analysis.plots import color, finish, line_with_band, panels, save_figure, write_csv
from metarl.metrics import Interval, mean_ci

IMPORTANT = (
    "outcome_accuracy", "reward", "episodes_per_trace", "tokens/mean", "tokens/cap_fraction",
    "verification_accuracy", "loss", "kl", "entropy",
)
SKIP_KEYS = {"_source"}
MAX_POINTS = 30
"""Runs with more logged steps than this are smoothed (a centred moving average of ~steps/25 steps)."""


def metric_order(keys: Sequence[str]) -> list[str]:
    """Important metrics first (outcome accuracy, rewards, episodes, tokens, verification), then A–Z."""

    def rank(k: str) -> tuple[int, str]:
        bare = k.removeprefix("metarl/")  # the trainer logs its own metrics under metarl/
        for i, name in enumerate(IMPORTANT):
            if bare == name or (name == "reward" and (bare.startswith("reward/") or bare.startswith("rewards/"))):
                return i, k
        return len(IMPORTANT), k

    return sorted(set(keys), key=rank)


def _series(run: RunData) -> dict[str, dict[float, float]]:
    """metric -> {step: value} with the ``metarl/`` prefix removed; a step logged twice keeps its last value."""
    out: dict[str, dict[float, float]] = {}
    for row in run.metrics:
        step = row.get("step")
        if not is_number(step):
            continue
        for k, v in row.items():
            if k not in SKIP_KEYS and k != "step" and is_number(v):
                bare = k.removeprefix("metarl/")
                if bare != k or f"metarl/{k}" not in row:  # the trainer's metarl/ key wins over a bare one
                    out.setdefault(bare, {})[float(step)] = float(v)
    series = out
    total, dense = series.get("reward/total"), series.get("reward/dense")
    if total and dense:  # the outcome term α·outcome = total − dense (metarl.scoring: total = dense + α·outcome)
        series["outcome_term"] = {s: total[s] - dense[s] for s in total if s in dense}
    return series


def traces_per_step(run: RunData) -> int | None:
    """Traces behind one logged step's metrics, from config.yaml's trainer block (None when unknown)."""
    tr = run.config.get("trainer") if isinstance(run.config, dict) else None
    if not isinstance(tr, dict) or not is_number(tr.get("per_device_train_batch_size")):
        return None
    ga = tr.get("gradient_accumulation_steps")
    return int(tr["per_device_train_batch_size"]) * (int(ga) if is_number(ga) and ga >= 1 else 1)


def window_for(n_steps: int) -> int:
    """Steps per moving-average window: 1 (no smoothing) up to :data:`MAX_POINTS` steps, else ~steps/25."""
    return 1 if n_steps <= MAX_POINTS else max(2, round(n_steps / 25))


def _smooth(steps: list[float], values: list[float], w: int) -> tuple[list[float], list[int]]:
    """Centred moving average over ``w`` consecutive logged steps (shorter at the ends) and each window's size."""
    out, sizes = [], []
    for i in range(len(steps)):
        lo, hi = max(0, i - (w - 1) // 2), min(len(steps), i + w // 2 + 1)
        out.append(float(np.mean(values[lo:hi])))
        sizes.append(hi - lo)
    return out, sizes


LINE_STYLES = ("-", "--", ":")
SeriesPlot = tuple[str, str, bool]  # (metric, legend name, is a proportion of the step's traces)
BOUNDED = {"verification_accuracy"}
"""Fractions of something other than traces (verify verdicts): clipped to [0, 1], no Wilson interval."""


def _draw(ax: Any, groups: dict[str, list[tuple[dict[str, dict[float, float]], int | None]]], metrics: Sequence[SeriesPlot],
          rows: list[list[Any]], many_runs: bool) -> bool:
    """Draw ``metrics`` of every run label on ``ax``; append CSV rows; False when nothing was drawn."""
    drawn = False
    for mi, (key, name, proportion) in enumerate(metrics):
        for gi, (label, seeds) in enumerate(groups.items()):
            per_seed = [(s[key], n) for s, n in seeds if s.get(key)]
            if not per_seed:
                continue
            drawn = True
            c = color(gi if many_runs else mi)  # several runs: a colour per run, a line style per metric
            ls = LINE_STYLES[mi % len(LINE_STYLES)] if many_runs else "-"
            steps = sorted({st for s, _ in per_seed for st in s})
            w = window_for(len(steps))
            smoothed = []
            for s, n in per_seed:
                st = sorted(s)
                sm, sizes = _smooth(st, [s[x] for x in st], w)
                smoothed.append(({x: v for x, v in zip(st, sm)}, {x: z for x, z in zip(st, sizes)}, n))
            ivs, raws = [], []
            for st in steps:
                vals = [sm[st] for sm, _, _ in smoothed if st in sm]
                raw = [s[st] for s, _ in per_seed if st in s]
                raws.append(float(np.mean(raw)))
                if len(vals) > 1:
                    iv = mean_ci(vals)
                else:
                    sm, sizes, n = next((sm, sz, n) for sm, sz, n in smoothed if st in sm)
                    iv = wilson(vals[0], n * sizes[st]) if proportion and n and key not in BOUNDED \
                        else Interval(vals[0], math.nan, math.nan, 1)
                ivs.append(clip_interval(iv, PROBABILITY if proportion else None))
            legend = name if not many_runs else f"{label}: {name}"
            if len(per_seed) > 1:
                legend += f" (mean of {len(per_seed)} seeds)"
            if w > 1:
                ax.plot(steps, raws, color=c, lw=0.6, alpha=0.35, ls=ls)
                legend += f", {w}-step moving average"
            line_with_band(ax, steps, ivs, legend, c, marker="." if len(steps) < MAX_POINTS else None, lw=1.8,
                           bounds=PROBABILITY if proportion else None, ls=ls)
            rows += [[key, label, _int(st), r, iv.mean, iv.low, iv.high, len(per_seed), w]
                     for st, r, iv in zip(steps, raws, ivs)]
    return drawn


CSV_HEADER = ["metric", "run", "step", "value", "mean", "ci_low", "ci_high", "n_runs", "window_steps"]


def _cap(runs: list[RunData]) -> float | None:
    caps = {float(r.config["budget"]["cap"]) for r in runs if isinstance(r.config.get("budget"), dict)
            and is_number(r.config["budget"].get("cap"))}
    return caps.pop() if len(caps) == 1 else None


def write_all_metrics(runs: list[RunData], out_dir: Path) -> str | None:
    """``metrics_all.csv``: one row per run and logged step, one column per logged key (the raw numbers)."""
    rows = [(r, row) for r in runs for row in r.metrics if is_number(row.get("step"))]
    if not rows:
        return None
    keys = metric_order([k for _, row in rows for k in row if k not in SKIP_KEYS and k != "step"])
    out = [[r.label, "" if r.seed is None else r.seed, str(r.path), _int(float(row["step"])),
            *(row.get(k, "") for k in keys)] for r, row in rows]
    return write_csv(out_dir, "metrics_all", ["run", "seed", "path", "step", *keys], out)


def training_section(runs: list[RunData], out_dir: Path) -> Section:
    """The curated training plots and ``metrics_all.csv``."""
    sec = Section("Training curves")
    have = [r for r in runs if any(is_number(row.get("step")) for row in r.metrics)]
    if not have:
        sec.notes.append("no metrics.jsonl rows with a numeric `step` in any run; training curves skipped")
        return sec
    groups = {label: [(_series(r), traces_per_step(r)) for r in rs] for label, rs in group_runs(have).items()}
    many = len(groups) > 1
    all_csv = write_all_metrics(have, out_dir)
    if all_csv:
        sec.notes.append(f"every logged metric of every step: [{all_csv}]({all_csv}) (one row per run and step)")
    multi = [label for label, s in groups.items() if len(s) > 1]
    if multi:
        sec.notes.append(f"seeds pooled (mean, 95% t-interval over seeds, clipped to [0, 1] for fractions): "
                         f"{', '.join(multi)}")
    unknown = [label for label, s in groups.items() if len(s) == 1 and s[0][1] is None]
    if unknown:
        sec.notes.append(f"{', '.join(unknown)}: traces per step unknown (no trainer.per_device_train_batch_size in "
                         "config.yaml): no interval for a single run's fractions")

    # 1. accuracy and the objective with its terms
    rows: list[list[Any]] = []
    fig, (ax_acc, ax_obj) = panels(2, ncols=2, size=(6.4, 4.3))
    acc = _draw(ax_acc, groups, [("outcome_accuracy", "outcome accuracy", True),
                                 ("verification_accuracy", "verification accuracy (share of verdicts right)", True)],
                rows, many)
    ax_acc.set_ylim(-0.02, 1.02)
    finish(ax_acc, "Accuracy of each step's sampled traces", "training step", "fraction (95% CI)", below=True)
    obj = _draw(ax_obj, groups, [("reward/total", "objective = dense + α·outcome", False),
                                 ("reward/dense", "dense term (episode rewards)", False),
                                 ("outcome_term", "outcome term α·outcome", False)], rows, many)
    if not obj:
        obj = _draw(ax_obj, groups, [("reward", "reward (TRL's mean of the reward functions)", False)], rows, many)
    finish(ax_obj, "Objective per trace and its terms", "training step", "reward per trace (objective units)", below=True)
    for ax in (ax_acc, ax_obj):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    if acc or obj:
        png = save_figure(fig, out_dir, "training_accuracy_objective")
        csv = write_csv(out_dir, "training_accuracy_objective", CSV_HEADER, rows)
        sec.figures.append(("Outcome accuracy and the objective with its terms, per training step", png, csv))
    else:
        import matplotlib.pyplot as plt

        plt.close(fig)
        sec.notes.append("no accuracy or reward series logged; accuracy/objective plot skipped")

    # 2. tokens, episodes and the cap
    rows = []
    fig, axes = panels(3, ncols=3, size=(5.0, 4.0))
    tok = _draw(axes[0], groups, [("tokens/mean", "thinking tokens per trace", False)], rows, many)
    cap = _cap(have)
    if tok and cap:
        axes[0].axhline(cap, color="0.3", ls="--", lw=1, label=f"cap C = {cap:g} tokens")
    finish(axes[0], "Thinking tokens per trace", "training step", "tokens per trace", below=True)
    ep = _draw(axes[1], groups, [("episodes_per_trace", "episodes per trace", False)], rows, many)
    finish(axes[1], "Episodes per trace", "training step", "episodes per trace", below=True)
    capf = _draw(axes[2], groups, [("tokens/cap_fraction", "traces cut by the cap", True)], rows, many)
    axes[2].set_ylim(-0.02, 1.02)
    finish(axes[2], "Traces that reached the cap", "training step", "fraction of traces (95% CI)", below=True)
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
    if tok or ep or capf:
        png = save_figure(fig, out_dir, "training_tokens_episodes")
        csv = write_csv(out_dir, "training_tokens_episodes", CSV_HEADER, rows)
        sec.figures.append(("Thinking tokens and episodes per trace, and traces cut by the cap, per training step",
                            png, csv))
    else:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return sec


# ------------------------------------------------------------------ held-out evaluation during training


def heldout_section(runs: list[RunData], out_dir: Path) -> Section:
    """Held-out accuracy, thinking tokens and episodes per trace from ``eval/curve.jsonl``: against the cap C
    (first and last evaluated step) when the run evaluated at >= 2 caps, and against the training step when
    it evaluated at >= 2 steps."""
    sec = Section("Held-out evaluation during training")
    have = [r for r in runs if r.heldout]
    if not have:
        sec.notes.append("no eval/curve.jsonl (metarl-train evaluate.every > 0); held-out curves skipped")
        return sec
    series = (("accuracy", "held-out accuracy", "fraction of questions (95% CI)", True),
              ("tokens", "thinking tokens per trace", "tokens per trace", False),
              ("episodes_per_trace", "episodes per trace", "episodes per trace", False))
    for x_key, x_label in (("budget", "cap C (thinking tokens)"), ("step", "training step")):
        other = "step" if x_key == "budget" else "budget"
        lines: dict[tuple[str, Any, float], dict[float, dict[str, Any]]] = {}
        for r in have:
            rows = [row for row in r.heldout if is_number(row.get("budget")) and is_number(row.get("step"))]
            values = sorted({float(row[other]) for row in rows})
            if x_key == "budget":
                values = sorted({values[0], values[-1]}) if values else []
            for v in values:
                pts = {float(row[x_key]): row for row in rows if float(row[other]) == v}
                if len(pts) >= 2:
                    lines[(r.label, r.seed, v)] = pts
        if not lines:
            sec.notes.append(f"held-out curves against the {x_label}: fewer than 2 "
                             f"{'caps' if x_key == 'budget' else 'evaluated steps'} per run; skipped")
            continue
        fig, axes = panels(3, ncols=3, size=(5.0, 4.0))
        csv_rows = []
        for li, ((label, seed, v), pts) in enumerate(lines.items()):
            name = (f"{label}" + (f" seed {seed}" if seed is not None and len(have) > 1 else "") +
                    (f", step {v:g}" if x_key == "budget" else f", cap C = {v:g}"))
            xs = sorted(pts)
            for ax, (key, _title, _y, proportion) in zip(axes, series):
                ys = [pts[x].get(key) for x in xs]
                if not all(is_number(y) for y in ys):
                    continue
                ivs = [wilson(y, pts[x]["n"]) if proportion and is_number(pts[x].get("n"))
                       else Interval(y, math.nan, math.nan, 1) for x, y in zip(xs, ys)]
                line_with_band(ax, xs, ivs, name, color(li), marker="o", lw=1.6,
                               bounds=PROBABILITY if proportion else None)
                csv_rows += [[label, "" if seed is None else seed, x_key, _int(x), other, _int(v), key, iv.mean, iv.low,
                              iv.high, pts[x].get("n", "")] for x, iv in zip(xs, ivs)]
        for ax, (_key, title, ylabel, proportion) in zip(axes, series):
            if proportion:
                ax.set_ylim(-0.02, 1.02)
            finish(ax, title, x_label, ylabel)
            if not ax.lines:
                ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="0.4")
        name = "heldout_vs_cap" if x_key == "budget" else "heldout_vs_step"
        png = save_figure(fig, out_dir, name, f"Held-out evaluation against the {x_label}")
        csv = write_csv(out_dir, name, ["run", "seed", "x", "x_value", "line", "line_value", "metric", "mean", "ci_low",
                                        "ci_high", "n_questions"], csv_rows)
        sec.figures.append((f"Held-out accuracy, tokens and episodes per trace against the {x_label}", png, csv))
    return sec


def _int(step: float) -> Any:
    return int(step) if math.isfinite(step) and step == int(step) else step
