"""Training curves from ``metrics.jsonl``: every numeric key against step, runs overlaid, seeds pooled."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from analysis.io import RunData, group_runs, is_number
from analysis.plots import Section, color, finish, line_with_band, panels, save_figure, write_csv
from metarl.metrics import Interval, mean_ci

IMPORTANT = (
    "outcome_accuracy", "reward", "episodes_per_trace", "tokens/mean", "tokens/cap_fraction",
    "verification_accuracy", "loss", "kl", "entropy",
)
PANELS_PER_PAGE = 9
SKIP_KEYS = {"step", "epoch", "_source"}


def metric_order(keys: Sequence[str]) -> list[str]:
    """Important metrics first (outcome accuracy, rewards, episodes, tokens, verification), then A–Z."""

    def rank(k: str) -> tuple[int, str]:
        bare = k.removeprefix("metarl/")  # the trainer logs its own metrics under metarl/
        for i, name in enumerate(IMPORTANT):
            if bare == name or (name == "reward" and (bare.startswith("reward/") or bare.startswith("rewards/"))):
                return i, k
        return len(IMPORTANT), k

    return sorted(set(keys), key=rank)


def metric_unit(key: str) -> str:
    """A unit for the y axis guessed from the metric name ("" when unknown)."""
    k = key.lower()
    if "accuracy" in k or "fraction" in k or "rate" in k:
        return "fraction"
    if "tokens" in k or "length" in k:
        return "tokens"
    if "episodes" in k:
        return "episodes"
    return ""


def _series(run: RunData) -> dict[str, dict[float, float]]:
    """metric -> {step: value}; a step logged twice keeps its last value."""
    out: dict[str, dict[float, float]] = {}
    for row in run.metrics:
        step = row.get("step")
        if not is_number(step):
            continue
        for k, v in row.items():
            if k not in SKIP_KEYS and is_number(v):
                out.setdefault(k, {})[float(step)] = float(v)
    return out


def training_curves(runs: list[RunData], out_dir: Path) -> Section:
    """One panel per metric, one line per run label (mean over seeds with a 95% t-band)."""
    sec = Section("Training curves")
    groups = {label: [_series(r) for r in rs if r.metrics] for label, rs in group_runs(runs).items()}
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        sec.notes.append("no metrics.jsonl rows with a numeric `step` in any run; training curves skipped")
        return sec
    keys = metric_order([k for series in groups.values() for s in series for k in s])
    if not keys:
        sec.notes.append("metrics.jsonl rows have no numeric metrics; training curves skipped")
        return sec
    multi = [label for label, s in groups.items() if len(s) > 1]
    if multi:
        sec.notes.append(f"runs pooled over seeds (mean, 95% t-interval band): {', '.join(multi)}")
    for page in range(0, len(keys), PANELS_PER_PAGE):
        page_keys = keys[page : page + PANELS_PER_PAGE]
        fig, axes = panels(len(page_keys))
        rows = []
        for ax, key in zip(axes, page_keys):
            for gi, (label, series) in enumerate(groups.items()):
                by_step: dict[float, list[float]] = {}
                for s in series:
                    for step, v in s.get(key, {}).items():
                        by_step.setdefault(step, []).append(v)
                if not by_step:
                    continue
                steps = sorted(by_step)
                ivs = [mean_ci(by_step[st]) if len(by_step[st]) > 1 else Interval(by_step[st][0], float("nan"), float("nan"), 1) for st in steps]
                name = f"{label} (n={len(series)} seeds)" if len(series) > 1 else label
                line_with_band(ax, steps, ivs, name, color(gi), marker="." if len(steps) < 30 else None, lw=1.6)
                rows += [[key, label, int(st) if st == int(st) else st, iv.mean, iv.low, iv.high, iv.n] for st, iv in zip(steps, ivs)]
            finish(ax, key, "training step", f"{key} ({metric_unit(key)})" if metric_unit(key) else key)
            ax.xaxis.get_major_locator().set_params(integer=True)
        n = page // PANELS_PER_PAGE + 1
        name = "training_curves" if page == 0 else f"training_curves_{n}"
        png = save_figure(fig, out_dir, name, "Training curves" + (f" ({n})" if page else ""))
        csv = write_csv(out_dir, name, ["metric", "run", "step", "mean", "ci_low", "ci_high", "n_runs"], rows)
        sec.figures.append((f"Training metrics: {', '.join(page_keys)}", png, csv))
    return sec
