"""Analysis of finished runs in a script: load traces, information-gain (J) curves, regret, plots.

Reads what ``metarl-train`` / ``metarl-score`` / ``metarl-eval`` write (``rollouts.jsonl``, scored JSONL,
``eval/*.jsonl``, ``metrics.jsonl``, ``config.yaml``); imports neither torch nor transformers, and matplotlib
only when a figure is drawn. docs/analysis.md is the guide; ``python -m analysis.report`` (a checkout's report
script) is built on this package.

* :func:`load_traces` — the typed traces of a run directory or scored JSONL (:class:`LoggedTrace`);
  :func:`load_run` — every record of a run (metrics, traces, eval rows), plain;
* :func:`j_curves` — a :class:`CurveSet`: one curve per trace, J (or likelihood progress) against tokens;
* :func:`mean_curve`, :func:`mean_by_episode` — averaged curves with 95% intervals (a :class:`Band`);
* :func:`progress_by_kind` — per-episode progress ΔJ by episode kind;
* :func:`regret`, :func:`cumulative_regret_by_episode` — normalised regret per budget, Δ_k per episode;
* :func:`plot_bands` — a PNG of bands and the CSV behind it.

>>> import json, tempfile
>>> from pathlib import Path
>>> run = Path(tempfile.mkdtemp())
>>> ep = {"kind": "attempt", "start": 0, "end": 4, "text": "abcd", "token_start": 0, "token_end": 4}
>>> _ = (run / "rollouts.jsonl").write_text(json.dumps({"step": 1, "prompt": "q", "completion": "abcd",
...     "meta": {"J_init": 0.0}, "episodes": [{**ep, "info": {"J": 1.0}}]}) + "\\n")
>>> cs = j_curves(load_traces(run))
>>> mean_curve(cs, grid=[0, 2, 4]).mean.tolist(), regret(cs, [4, 8]).mean.tolist()
([0.0, 0.5, 1.0], [0.5, 0.25])
"""
from metarl.analysis.curves import Band, CurveSet, collect_curves, j_curves, likelihood_value, mean_by_episode, \
    mean_curve, progress_by_kind
from metarl.analysis.intervals import PROBABILITY, clip_interval, summarise, wilson
from metarl.analysis.io import LoggedTrace, RunData, group_runs, load_run, load_traces, read_jsonl, select_traces, \
    trace_from_record
from metarl.analysis.plots import plot_bands
from metarl.analysis.regret import MRT_BUDGETS, cumulative_regret_by_episode, default_budgets, n_questions, regret

__all__ = [
    "load_traces", "load_run", "read_jsonl", "select_traces", "trace_from_record", "group_runs", "LoggedTrace",
    "RunData", "j_curves", "CurveSet", "collect_curves", "likelihood_value", "mean_curve", "mean_by_episode",
    "progress_by_kind", "Band", "regret", "cumulative_regret_by_episode", "default_budgets", "n_questions",
    "MRT_BUDGETS", "plot_bands", "PROBABILITY", "clip_interval", "summarise", "wilson",
]
