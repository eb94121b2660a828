"""The meta-prover's calibration on a run's logged traces: does Ĵ after the last episode track the outcome?

For every run label (seeds pooled) whose traces carry Monte Carlo progress's Ĵ (``meta.J_init``,
``episodes[*].info.J``: ``rollouts.jsonl`` of an ``mc_progress`` run, a ``metarl-score`` or ``metarl-calibrate``
input), :func:`metarl.calibration.calibrate` gives the correlation and AUROC of Ĵ_last with the outcome, ΔĴ of
verify episodes after a correct attempt, noise against spread, and the verdict. The table has one row over all
logged traces and, for training runs, one for the first and one for the last logged step (how μ moved during
training). One reliability diagram per label (all traces; Ĵ_last bins against the observed success rate) with its
CSV. An attempt's correctness is the recorded ``generation_correctness`` or, failing that, graded with the task of
the run's ``config.yaml``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from analysis.plots import Section
from metarl.analysis.io import RunData, group_runs, is_number
from metarl.analysis.plots import write_csv
from metarl.calibration import (Calibration, EpisodeCorrect, bins_rows, calibrate, j_values, plot_calibration,
                                recorded_correctness)


def episode_grader(config: dict[str, Any]) -> EpisodeCorrect:
    """``episode_correct`` for a run: the recorded correctness, else its task's grader on the episode text (when the
    run's config builds one), else unknown."""
    graded = None
    if isinstance(config, dict) and config.get("task"):
        try:
            from omegaconf import OmegaConf

            from metarl.calibration import grader_correctness
            from metarl.config import answer_tools, build_task_of

            cfg = OmegaConf.create(config)
            grader, extract, _ = answer_tools(build_task_of(cfg), cfg.get("grader"), cfg.get("answer", "auto"),
                                              cfg.get("verdict"))
            graded = grader_correctness(grader, extract)
        except Exception:  # a config this version cannot build: recorded correctness only
            graded = None

    def correct(trace: Any, episode: Any) -> bool | None:
        c = recorded_correctness(trace, episode)
        return graded(trace, episode) if c is None and graded is not None else c
    return correct


def _fmt(v: float, spec: str = ".3f") -> str:
    return "" if v is None or v != v else format(v, spec)


def _row(label: str, which: str, cal: Calibration) -> str:
    va = cal.verify_after_correct
    return (f"| {label} | {which} | {cal.n_traces} | {_fmt(cal.accuracy, '.2f')} | {_fmt(cal.correlation)} | "
            f"{_fmt(cal.auroc)} | {_fmt(cal.J_last_correct)} / {_fmt(cal.J_last_wrong)} | "
            f"{_fmt(va.mean, '+.3f')} (n={va.n}) | {_fmt(cal.snr, '.2f')} | **{cal.verdict}** |")


def calibration_section(runs: list[RunData], out_dir: Path) -> Section:
    """The report section (empty with a note when no run's traces carry Ĵ)."""
    sec = Section("Meta-prover calibration")
    table = ["| run | traces from | n | accuracy | corr(Ĵ_last, outcome) | AUROC | Ĵ_last correct / wrong | "
             "verify-after-correct ΔĴ | ΔĴ signal/noise | verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    any_j = False
    for label, rs in group_runs(runs).items():
        traces = [t for r in rs for t in r.traces if j_values(t) is not None]
        if not traces:
            continue
        any_j = True
        graders = {id(r): episode_grader(r.config) for r in rs}
        owner = {id(t): id(r) for r in rs for t in r.traces}

        def correct(trace: Any, episode: Any, graders=graders, owner=owner) -> bool | None:
            return graders[owner[id(trace)]](trace, episode)

        cal = calibrate(traces, episode_correct=correct)
        table.append(_row(label, "all logged traces", cal))
        steps = sorted({t["step"] for t in traces if is_number(t.get("step"))})
        if len(steps) > 1:
            for which, s in (("first step", steps[0]), ("last step", steps[-1])):
                part = calibrate([t for t in traces if t.get("step") == s], episode_correct=correct)
                table.append(_row(label, f"{which} ({s:g})", part))
        name = "calibration_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run")
        png = out_dir / f"{name}.png"
        plot_calibration(cal, png, f"μ calibration: {label}")
        csv = write_csv(out_dir, name, ["lo", "hi", "n", "mean_J", "success_rate"],
                        [[b["lo"], b["hi"], b["n"], b["mean_J"], b["success_rate"]] for b in bins_rows(cal)])
        sec.figures.append((f"{label}: Ĵ_last bins against the observed success rate ({cal.n_traces} traces, "
                            f"{cal.verdict})", png.name, csv))
        for reason in cal.reasons:
            sec.notes.append(f"{label}: {reason}")
    if not any_j:
        sec.notes.append("no traces carry the meta-prover's Ĵ (episodes[*].info.J, meta.J_init: rewards=[mc_progress]); "
                         "calibration skipped (metarl-calibrate samples and estimates it for a policy)")
        return sec
    sec.markdown = ("Thresholds: informative when corr(Ĵ_last, outcome) >= 0.8 and the mean ΔĴ of verify episodes "
                    "after a correct attempt >= -0.05 (metarl.calibration).\n\n" + "\n".join(table))
    return sec
