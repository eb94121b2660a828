"""The report reads runs with :mod:`metarl.analysis.io` (``load_run`` and friends, re-exported here)."""
from metarl.analysis.io import RunData, group_runs, is_number, load_run, question_key, read_jsonl, run_label

__all__ = ["RunData", "group_runs", "is_number", "load_run", "question_key", "read_jsonl", "run_label"]
