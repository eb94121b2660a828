"""Load prompts and gold answers from any ``datasets`` source into the columns metarl uses.

``load_dataset_source`` returns a ``datasets.Dataset`` with a ``prompt`` (str) and an ``answer`` (str)
column, and a ``target_tokens`` (int) column when the source has length targets (L1-style budgets).
Sources:

- ``"task:<name>"`` — a built-in task (``task:subset_sum``), problems generated for ``split``;
- a local file (``.json``, ``.jsonl``, ``.parquet``, ``.csv``) or a directory of such files
  (files named ``train*`` / ``test*`` become those splits; a single file is the split asked for);
- a ``datasets`` builder name with ``data_files`` (``"json"``, ``data_files="x.jsonl"``);
- a Hugging Face Hub dataset name (needs network; ``HF_DATASETS_OFFLINE=1`` turns it off).

``columns`` maps metarl's names to the source's, e.g. ``{"prompt": "question", "answer": "solution"}``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: File suffix -> ``datasets`` builder.
FORMATS: dict[str, str] = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
TASK_PREFIX = "task:"
DEFAULT_TASK_SIZE = 1000


class DataError(ValueError):
    """A dataset source cannot be used as it is; the message names the problem and the fix."""


def _format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot read {path}: unsupported file type {path.suffix!r}; "
                        f"use one of {sorted(FORMATS)} or a datasets builder name with data_files=")
    return fmt


def _load_raw(source: str, split: str, data_files: Any, **kwargs: Any):
    """The raw ``datasets.Dataset`` for ``split`` of a local path, builder name or hub dataset."""
    import datasets

    path = Path(os.path.expanduser(source))
    if path.is_file():
        fmt = _format_of(path)
        if path.stat().st_size == 0:
            raise DataError(f"dataset file {path} is empty")
        return _load_local(path, fmt, {split: str(path)}, split, **kwargs)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS)
        if not files:
            raise DataError(f"directory {path} holds no {sorted(FORMATS)} files")
        fmts = {_format_of(p) for p in files}
        if len(fmts) > 1:
            raise DataError(f"directory {path} mixes file types {sorted(fmts)}; keep one type per directory "
                            "or point at one file")
        by_split: dict[str, list[str]] = {}
        for p in files:
            name = p.stem.lower()
            s = next((s for s in ("train", "test", "validation") if name.startswith(s)), None)
            by_split.setdefault(s or "_", []).append(str(p))
        if set(by_split) == {"_"}:  # no split names: the files are the split asked for
            by_split = {split: by_split["_"]}
        elif "_" in by_split:
            raise DataError(f"directory {path} mixes split-named files (train*/test*) with others "
                            f"({by_split['_'][:3]}); name every file by its split")
        if split not in by_split:
            raise DataError(f"directory {path} has no {split!r} files; it has splits {sorted(by_split)}")
        return _load_local(path, fmts.pop(), {split: by_split[split]}, split, **kwargs)
    if path.suffix.lower() in FORMATS:
        raise DataError(f"no such file: {path}")
    try:
        return datasets.load_dataset(source, data_files=data_files, split=split, **kwargs)
    except (FileNotFoundError, ConnectionError, ValueError, OSError) as e:
        raise DataError(
            f"could not load dataset {source!r} (split {split!r}): {e}. A local source must be an existing "
            f".json/.jsonl/.parquet/.csv file or directory; a hub dataset needs network access "
            f"(HF_DATASETS_OFFLINE must not be set); a built-in task is 'task:<name>'"
        ) from e


def _load_local(path: Path, fmt: str, data_files: dict[str, Any], split: str, **kwargs: Any):
    import datasets

    try:
        return datasets.load_dataset(fmt, data_files=data_files, split=split, **kwargs)
    except Exception as e:  # datasets raises many types (StopIteration on an empty file, ArrowInvalid, ...)
        raise DataError(f"could not read {path} as {fmt}: {type(e).__name__}: {e}. Check that the file is "
                        f"valid {fmt} with one record per row and the same columns in every row") from e


def _load_task(name: str, split: str, limit: int | None, seed: int, task_options: Mapping[str, Any] | None):
    import datasets

    from metarl.tasks import build_task

    task = build_task({"_target_": name, **dict(task_options or {})})
    n = limit if limit is not None else DEFAULT_TASK_SIZE
    rows = task.generate(split, n, seed=seed, allow_fewer=True) if _accepts(task.generate, "allow_fewer") \
        else task.generate(split, n, seed=seed)
    return datasets.Dataset.from_list(rows)


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def load_dataset_source(source: str, split: str = "train", columns: Mapping[str, str | None] | None = None,
                        data_files: Any = None, limit: int | None = None, seed: int = 0,
                        keep_columns: bool = False, task_options: Mapping[str, Any] | None = None,
                        **load_kwargs: Any):
    """A ``datasets.Dataset`` with ``prompt`` (str), ``answer`` (str) and, when available, ``target_tokens`` (int).

    ``columns`` maps ``"prompt"``, ``"answer"`` and ``"target_tokens"`` to source column names (defaults:
    the same names; ``target_tokens`` is optional unless mapped explicitly). ``limit`` keeps the first
    ``limit`` rows (for a task: generates that many problems). ``keep_columns`` keeps the source's other
    columns (e.g. ``id``); otherwise only ``id`` is kept when present. ``task_options`` go to the task's
    constructor (``{"difficulty": 3}``). Raises :class:`DataError` naming the problem and the fix.
    """
    if not isinstance(source, str) or not source:
        raise DataError(f"dataset source must be a non-empty string, got {source!r}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of rows, got {limit}")
    mapping = {"prompt": "prompt", "answer": "answer", "target_tokens": None, **dict(columns or {})}
    unknown = set(mapping) - {"prompt", "answer", "target_tokens"}
    if unknown:
        raise DataError(f"columns has unknown key(s) {sorted(unknown)}; map 'prompt', 'answer' and optionally "
                        "'target_tokens' to your dataset's column names")
    if source.startswith(TASK_PREFIX):
        ds = _load_task(source[len(TASK_PREFIX):], split, limit, seed, task_options)
    else:
        ds = _load_raw(source, split, data_files, **load_kwargs)
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    if len(ds) == 0:
        raise DataError(f"dataset {source!r} (split {split!r}) is empty; check the file, the split name or limit")

    names = set(ds.column_names)
    for key in ("prompt", "answer"):
        col = mapping[key]
        if col not in names:
            raise DataError(f"dataset {source!r} has no column {col!r} for {key!r}; its columns are "
                            f"{sorted(names)}. Set columns={{'{key}': '<column name>'}}")
    tt_col = mapping["target_tokens"]
    if tt_col is not None and tt_col not in names:
        raise DataError(f"dataset {source!r} has no column {tt_col!r} for 'target_tokens'; its columns are "
                        f"{sorted(names)}. Fix columns['target_tokens'] or leave it out")
    if tt_col is None and "target_tokens" in names:
        tt_col = "target_tokens"

    def convert(row: dict[str, Any], idx: int) -> dict[str, Any]:
        prompt, answer = row[mapping["prompt"]], row[mapping["answer"]]
        if not isinstance(prompt, str):
            raise DataError(f"row {idx}: prompt (column {mapping['prompt']!r}) must be a string, got "
                            f"{type(prompt).__name__}")
        if answer is None:
            raise DataError(f"row {idx}: answer (column {mapping['answer']!r}) is missing")
        out = {"prompt": prompt, "answer": answer if isinstance(answer, str) else _to_str(answer)}
        if tt_col is not None:
            out["target_tokens"] = _to_int(row[tt_col], idx, tt_col)
        return out

    converted = [convert(row, i) for i, row in enumerate(ds)]
    extra = [c for c in ds.column_names if c not in {mapping["prompt"], mapping["answer"], tt_col,
                                                     "prompt", "answer", "target_tokens"}]
    if not keep_columns:
        extra = [c for c in extra if c == "id"]
    import datasets

    data = {k: [r[k] for r in converted] for k in converted[0]}
    for c in extra:
        data[c] = ds[c]
    features = None
    if tt_col is not None:
        features = datasets.Features({
            **{k: datasets.Value("string") for k in ("prompt", "answer")},
            "target_tokens": datasets.Value("int64"),
            **{c: ds.features[c] for c in extra},
        })
    return datasets.Dataset.from_dict(data, features=features)


def _to_str(value: Any) -> str:
    """A gold answer as a string: integral floats lose their ``.0`` (``3.0`` -> ``"3"``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _to_int(value: Any, idx: int, col: str) -> int | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DataError(f"row {idx}: target_tokens (column {col!r}) must be a whole number, got {value!r}") from None
    if not f.is_integer() or f < 0:
        raise DataError(f"row {idx}: target_tokens (column {col!r}) must be a non-negative whole number, got {value!r}")
    return int(f)
