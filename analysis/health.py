"""Training health from ``metrics.jsonl``: which monitors tripped, when, and the numbers that tripped them.

The monitors are :mod:`metarl.monitors` (reward hacking: dense reward up while outcome accuracy is flat or
down; length inflation; cap saturation; episode collapse; the meta-prover's calibration, ``mu_calibration``, on
the logged traces that carry Ĵ; formulas there). Per run:

* if its metrics rows carry the trainer's ``health/<monitor>/...`` keys (``metarl.trainer.callbacks.HealthCallback``), a monitor's trip is
  the first step whose ``health/<monitor>/tripped`` is 1, with the statistics logged at that step;
* otherwise (a run logged without the monitors, e.g. ``health.enabled=false`` or an older run) the monitors
  are replayed over the logged series (``metarl.monitors.replay``) with the thresholds of the run's
  ``config.yaml`` ``health:`` block, or the defaults; the report says which.

Figures: one per run where a monitor tripped, with a panel per series that a tripped monitor reads
(e.g. dense reward and outcome accuracy for reward hacking), the steps where it alarmed shaded and a dashed
line at its trip step; monitors that stayed quiet get a table row, not a plot. The CSV of every run (written
whether or not anything tripped) lists every series and every monitor statistic per step (long form).
Metric names without the trainer's ``metarl/`` prefix are accepted too.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from analysis.plots import Section
from metarl.analysis.io import RunData, is_number
from metarl.analysis.plots import color, finish, panels, save_figure, write_csv
from metarl.monitors import (ACCURACY_KEY, CAP_KEY, DENSE_KEY, EPISODES_KEY, PREFIX, TOKENS_KEY, HealthConfig,
                             Monitor, MuCalibration, build_calibration_monitor, build_monitors, replay, replay_traces)

TITLES = {ACCURACY_KEY: "outcome accuracy", DENSE_KEY: "dense reward (per-trace sum)", TOKENS_KEY: "mean thinking tokens",
          CAP_KEY: "fraction of traces cut by the cap", EPISODES_KEY: "episodes per trace"}
UNITS = {ACCURACY_KEY: "fraction of traces", DENSE_KEY: "dense reward per trace", TOKENS_KEY: "tokens per trace",
         CAP_KEY: "fraction of traces", EPISODES_KEY: "episodes per trace"}
FLAGS = ("alarm", "tripped")


def _rows(run: RunData, keys: set[str]) -> list[dict[str, Any]]:
    """The run's training-metric rows that hold a monitored series or a health key, ``metarl/`` prefix restored."""
    out = []
    for row in run.metrics:
        if not is_number(row.get("step")):
            continue
        r = dict(row)
        for k in keys:
            bare = k.removeprefix("metarl/")
            if k not in r and bare != k and bare in r:
                r[k] = r[bare]
        if any(k in r for k in keys) or any(k.startswith(PREFIX) for k in r):
            out.append(r)
    return sorted(out, key=lambda r: float(r["step"]))


def _config(run: RunData) -> tuple[HealthConfig, str]:
    block = run.config.get("health") if isinstance(run.config, dict) else None
    if isinstance(block, dict):
        try:
            return HealthConfig.from_mapping(block), "the thresholds of its config.yaml `health:` block"
        except ValueError as e:
            return HealthConfig(), f"the default thresholds (its config.yaml `health:` block is invalid: {e})"
    return HealthConfig(), "the default thresholds"


def _stats(row: dict[str, Any], name: str) -> dict[str, float]:
    head = f"{PREFIX}{name}/"
    return {k[len(head):]: float(v) for k, v in row.items()
            if k.startswith(head) and k[len(head):] not in FLAGS and is_number(v)}


def _describe(monitor: Monitor, stats: dict[str, float]) -> str:
    try:
        return monitor.describe(stats)
    except (KeyError, ValueError):  # statistics logged by another version of the monitor
        return ", ".join(f"{k}={v:.3g}" for k, v in sorted(stats.items()))


def _assess(run: RunData) -> tuple[list[Monitor], list[dict[str, Any]], list[dict[str, Any]], str]:
    """Monitors, the metric rows, per-step health records and where the health numbers come from."""
    config, thresholds = _config(run)
    monitors = build_monitors(config)
    keys = {k for m in monitors for k in m.keys}
    rows = _rows(run, keys)
    if any(k.startswith(PREFIX) for r in rows for k in r):
        records = [{"step": r["step"], **{k: v for k, v in r.items() if k.startswith(PREFIX)}} for r in rows]
        return monitors, rows, records, "read from the health/ keys the trainer logged"
    return monitors, rows, replay(rows, monitors), f"replayed over metrics.jsonl with {thresholds}"


def _verdicts(monitors: list[Monitor], records: list[dict[str, Any]]) -> list[tuple[str, str, Any, str]]:
    """(monitor, status, step, numbers) per monitor: tripped (first step, its numbers), quiet (last numbers), no data."""
    out = []
    for m in monitors:
        seen = [r for r in records if f"{PREFIX}{m.name}/tripped" in r]
        hit = next((r for r in seen if r[f"{PREFIX}{m.name}/tripped"] == 1), None)
        if hit is not None:
            out.append((m.name, "tripped", hit["step"], _describe(m, _stats(hit, m.name))))
        elif seen:
            last = _stats(seen[-1], m.name)
            out.append((m.name, "quiet", "", "last window: " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(last.items()))))
        else:
            out.append((m.name, "no data", "", f"no step logged {', '.join(m.keys)}"))
    return out


def _calibration_verdict(run: RunData, config: HealthConfig) -> tuple[str, str, Any, str] | None:
    """``mu_calibration``'s (monitor, status, step, numbers): from the trainer's ``health/mu_calibration/`` keys when
    logged, else replayed over the run's traces that carry Ĵ (``rollouts.jsonl``, step by step); None without either."""
    from analysis.calibration import episode_grader

    monitor = build_calibration_monitor(config, episode_grader(run.config))
    name = monitor.name
    logged = sorted((r for r in run.metrics if is_number(r.get("step")) and f"{PREFIX}{name}/tripped" in r),
                    key=lambda r: float(r["step"]))
    source = "logged by the trainer"
    records = [{k: v for k, v in r.items() if k == "step" or k.startswith(PREFIX)} for r in logged]
    if not records:
        records = replay_traces(run.traces, monitor)
        source = "replayed over the logged traces"
    if not records:
        return None
    return _monitor_status(monitor, records, source)


def _monitor_status(monitor: MuCalibration, records: list[dict[str, Any]], source: str) -> tuple[str, str, Any, str]:
    hit = next((r for r in records if r.get(f"{PREFIX}{monitor.name}/tripped") == 1), None)
    if hit is not None:
        stats = {**{"correlation": float("nan"), "verify_after_correct": float("nan"), "n_verify": 0.0, "n": 0.0,
                    "accuracy": float("nan"), "auroc": float("nan")}, **_stats(hit, monitor.name)}
        try:
            text = monitor.describe(stats)
        except (KeyError, ValueError):
            text = ", ".join(f"{k}={v:.3g}" for k, v in sorted(stats.items()))
        return monitor.name, "tripped", hit["step"], f"{text} ({source})"
    last = _stats(records[-1], monitor.name)
    return monitor.name, "quiet", "", ("last window: " + ", ".join(f"{k}={v:.3g}" for k, v in sorted(last.items()))
                                       + f" ({source})")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def health_section(runs: list[RunData], out_dir: Path) -> Section:
    """The report section: a table of trips per run and monitor, and one figure + CSV per run."""
    sec = Section("Training health")
    table = ["| run | seed | folder | monitor | status | step | numbers |", "|---|---|---|---|---|---|---|"]
    names: set[str] = set()
    any_rows = False
    for run in runs:
        monitors, rows, records, source = _assess(run)
        if not rows:
            continue
        any_rows = True
        seed = "" if run.seed is None else run.seed
        verdicts = _verdicts(monitors, records)
        calibration = _calibration_verdict(run, _config(run)[0])
        for name, status, step, numbers in verdicts + ([calibration] if calibration else []):
            shown = f"**{status}**" if status == "tripped" else status
            table.append(f"| {run.label} | {seed} | `{run.path.name}` | {name} | {shown} | {step} | "
                         f"{numbers.replace('|', '/')} |")
        sec.notes.append(f"{run.label}{f' (seed {seed})' if seed != '' else ''}, `{run.path}`: health {source}")
        base = _slug(run.label + (f"_seed{seed}" if seed != "" else ""))
        name, k = f"health_{base}", 2
        while name in names:
            name, k = f"health_{base}_{k}", k + 1
        names.add(name)
        fig = _figure(run, monitors, rows, records, verdicts, out_dir, name)
        if fig[0]:
            sec.figures.append(fig)
        else:
            sec.notes.append(f"{run.label}{f' (seed {seed})' if seed != '' else ''}: no monitor tripped, nothing "
                             f"plotted; its monitored series and statistics per step: [{fig[2]}]({fig[2]})")
    if not any_rows:
        sec.notes.append("no metrics.jsonl rows with monitored series (metarl/outcome_accuracy, metarl/reward/dense, "
                         "metarl/tokens/..., metarl/episodes_per_trace) in any run; training health skipped")
        return sec
    sec.markdown = "\n".join(table)
    return sec


def _figure(run: RunData, monitors: list[Monitor], rows: list[dict[str, Any]], records: list[dict[str, Any]],
            verdicts: list[tuple[str, str, Any, str]], out_dir: Path, name: str) -> tuple[str, str, str]:
    """The run's CSV (always) and, when a monitor tripped, a figure of the series the tripped monitors read:
    (caption, png, csv), with caption and png empty when nothing tripped."""
    import matplotlib.pyplot as plt

    trips = {v[0]: float(v[2]) for v in verdicts if v[1] == "tripped"}
    csv_rows: list[list[Any]] = []
    seed = "" if run.seed is None else run.seed
    series = [k for k in dict.fromkeys(k for m in monitors for k in m.keys) if any(is_number(r.get(k)) for r in rows)]
    for key in series:
        csv_rows += [[run.label, seed, _int(float(r["step"])), key, float(r[key])] for r in rows if is_number(r.get(key))]
    for rec in records:
        for k, v in rec.items():
            if k.startswith(PREFIX) and is_number(v):
                csv_rows.append([run.label, seed, _int(float(rec["step"])), k, float(v)])
    csv = write_csv(out_dir, name, ["run", "seed", "step", "series", "value"], csv_rows)
    tripped = [(i, m) for i, m in enumerate(monitors) if m.name in trips]
    plots = [(i, m, k) for i, m in tripped for k in m.keys if k in series]
    if not plots:
        return "", "", csv
    fig, axes = panels(len(plots), ncols=min(3, len(plots)), size=(5.4, 3.9))
    for ax, (i, m, key) in zip(axes, plots):
        pts = [(float(r["step"]), float(r[key])) for r in rows if is_number(r.get(key))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color(0), marker="." if len(pts) < 30 else None, lw=1.4,
                label=TITLES.get(key, key))
        alarm = [float(r["step"]) for r in records if r.get(f"{PREFIX}{m.name}/alarm") == 1]
        for k, st in enumerate(alarm):
            ax.axvspan(st - 0.5, st + 0.5, color=color(i + 1), alpha=0.12, lw=0,
                       label=f"{m.name} alarm (window condition met)" if k == 0 else None)
        ax.axvline(trips[m.name], color=color(i + 1), ls="--", lw=1.4, label=f"{m.name} tripped (step {trips[m.name]:g})")
        if key in (ACCURACY_KEY, CAP_KEY):
            ax.set_ylim(-0.02, 1.02)
        finish(ax, f"{m.name}: {TITLES.get(key, key)}", "training step", UNITS.get(key, key), below=True)
        ax.xaxis.get_major_locator().set_params(integer=True)
    title = f"Tripped health monitors: {run.label}" + (f" (seed {run.seed})" if run.seed is not None else "")
    png = save_figure(fig, out_dir, name, title)
    plt.close("all")
    return f"{title}: {', '.join(m.name for _, m in tripped)}, the series each reads", png, csv


def _int(step: float) -> Any:
    return int(step) if math.isfinite(step) and step == int(step) else step
