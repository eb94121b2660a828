"""Load prompts and gold answers from any ``datasets`` source into the columns metarl uses.

``load_dataset_source`` returns a ``datasets.Dataset`` with a ``prompt`` (str) and an ``answer`` (str)
column, and a ``target_tokens`` (int) column when the source has length targets (L1-style budgets).
Sources:

- ``"task:<dotted path>"`` — a built-in task (``task:metarl.tasks.SubsetSumTask``), problems generated for
  ``split``;
- a local file (``.json``, ``.jsonl``, ``.parquet``, ``.csv``) or a directory of such files
  (files named ``train*`` / ``test*`` become those splits; a single file is the split asked for);
- a ``datasets`` builder name with ``data_files`` (``"json"``, ``data_files="x.jsonl"``);
- a Hugging Face Hub dataset name (needs network; ``HF_DATASETS_OFFLINE=1`` turns it off).

``columns`` maps metarl's names to the source's, e.g. ``{"prompt": "question", "answer": "solution"}``.

Math datasets as researchers have them (MATH: ``problem``, ``solution``, ``level``, ``type``; NuminaMath:
``problem``, ``solution``, ``messages``; DeepScaleR: ``problem``, ``answer``, ``solution``) also map
``"solution"``: where the source has no answer column (or a row's answer is empty), the gold answer is the
content of the last ``\\boxed{}`` of the row's solution (balanced braces, so ``\\boxed{\\frac{1}{2}}``
gives ``\\frac{1}{2}``), the convention of MATH's and DeepScaleR's own answer extraction::

    load_dataset_source("math_train.jsonl", columns={"prompt": "problem", "answer": "answer",
                                                      "solution": "solution"})

A solution without a ``\\boxed{}`` answer is an error naming the row and the column
(``on_missing_answer="error"``, the default), or, with ``on_missing_answer="skip"``, the row is dropped and
the number of rows dropped is logged as a warning (never silently).
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
COLUMN_KEYS = ("prompt", "answer", "target_tokens", "solution")
MISSING_ANSWER = ("error", "skip")


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
            f"(HF_DATASETS_OFFLINE must not be set); a built-in task is 'task:<dotted path>' (task:metarl.tasks.SubsetSumTask)"
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


def boxed_answer(solution: Any) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``, ``\\boxed 5``) of a worked solution, or None.

    >>> boxed_answer("so $x = \\\\boxed{\\\\frac{1}{2}}$, and then \\\\boxed{\\\\{1, 2\\\\}}.")
    '\\\\{1, 2\\\\}'
    >>> boxed_answer("The answer is 5.") is None
    True
    """
    from metarl.grading.extraction import extract_answer

    if not isinstance(solution, str):
        return None
    return extract_answer(solution, "boxed", max_chars=max(len(solution), 1))


def load_dataset_source(source: str, split: str = "train", columns: Mapping[str, str | None] | None = None,
                        data_files: Any = None, limit: int | None = None, seed: int = 0,
                        keep_columns: bool = False, task_options: Mapping[str, Any] | None = None,
                        on_missing_answer: str = "error", **load_kwargs: Any):
    """A ``datasets.Dataset`` with ``prompt`` (str), ``answer`` (str) and, when available, ``target_tokens`` (int).

    ``columns`` maps ``"prompt"``, ``"answer"``, ``"target_tokens"`` and ``"solution"`` to source column
    names (defaults: the same names for the first two; ``target_tokens`` is optional unless mapped
    explicitly; ``solution``, when mapped, supplies the answer as its last ``\\boxed{}`` where the source
    has no answer column or a row's answer is empty, see the module doc). ``on_missing_answer``: ``"error"``
    (a solution without ``\\boxed{}`` raises, naming the row and column) or ``"skip"`` (such rows are
    dropped; the count is logged). ``limit`` keeps the first ``limit`` rows (for a task: generates that
    many problems). ``keep_columns`` keeps the source's other columns (e.g. ``id``); otherwise only ``id``
    is kept when present. ``task_options`` go to the task's constructor (``{"difficulty": 3}``). Raises
    :class:`DataError` naming the problem and the fix.
    """
    if not isinstance(source, str) or not source:
        raise DataError(f"dataset source must be a non-empty string, got {source!r}")
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of rows, got {limit}")
    mapping = {"prompt": "prompt", "answer": "answer", "target_tokens": None, "solution": None, **dict(columns or {})}
    unknown = set(mapping) - set(COLUMN_KEYS)
    if unknown:
        raise DataError(f"columns has unknown key(s) {sorted(unknown)}; map 'prompt', 'answer' and optionally "
                        "'target_tokens' and 'solution' to your dataset's column names")
    if on_missing_answer not in MISSING_ANSWER:
        raise DataError(f"on_missing_answer={on_missing_answer!r}: use one of {MISSING_ANSWER}")
    if source.startswith(TASK_PREFIX):
        ds = _load_task(source[len(TASK_PREFIX):], split, limit, seed, task_options)
    else:
        ds = _load_raw(source, split, data_files, **load_kwargs)
    if limit is not None and len(ds) > limit:
        ds = ds.select(range(limit))
    if len(ds) == 0:
        raise DataError(f"dataset {source!r} (split {split!r}) is empty; check the file, the split name or limit")

    names = set(ds.column_names)
    if mapping["prompt"] not in names:
        raise DataError(f"dataset {source!r} has no column {mapping['prompt']!r} for 'prompt'; its columns are "
                        f"{sorted(names)}. Set columns={{'prompt': '<column name>'}}")
    sol_col = mapping["solution"]
    if sol_col is not None and sol_col not in names:
        raise DataError(f"dataset {source!r} has no column {sol_col!r} for 'solution'; its columns are "
                        f"{sorted(names)}. Fix columns['solution'] or leave it out")
    ans_col = mapping["answer"] if mapping["answer"] in names else None
    if ans_col is None and sol_col is None:
        raise DataError(f"dataset {source!r} has no column {mapping['answer']!r} for 'answer'; its columns are "
                        f"{sorted(names)}. Set columns={{'answer': '<column name>'}}, or map a worked-solution "
                        f"column (columns={{'solution': '<column name>'}}) to take the answer from its last \\boxed{{}}")
    if ans_col is None:
        logger.info("dataset %r has no %r column: answers are the last \\boxed{} of column %r",
                    source, mapping["answer"], sol_col)
    tt_col = mapping["target_tokens"]
    if tt_col is not None and tt_col not in names:
        raise DataError(f"dataset {source!r} has no column {tt_col!r} for 'target_tokens'; its columns are "
                        f"{sorted(names)}. Fix columns['target_tokens'] or leave it out")
    if tt_col is None and "target_tokens" in names:
        tt_col = "target_tokens"

    skipped: list[int] = []

    def convert(row: dict[str, Any], idx: int) -> dict[str, Any] | None:
        prompt = row[mapping["prompt"]]
        answer = row[ans_col] if ans_col is not None else None
        if not isinstance(prompt, str):
            raise DataError(f"row {idx}: prompt (column {mapping['prompt']!r}) must be a string, got "
                            f"{type(prompt).__name__}")
        if (answer is None or answer == "") and sol_col is not None:
            answer = boxed_answer(row[sol_col])
            if answer is None:
                if on_missing_answer == "skip":
                    skipped.append(idx)
                    return None
                where = f"answer (column {ans_col!r}) is empty and " if ans_col is not None else ""
                raise DataError(f"row {idx}: {where}the solution (column {sol_col!r}) has no \\boxed{{}} answer: "
                                f"{str(row[sol_col])[-120:]!r}. Fix the row, or pass on_missing_answer='skip' to "
                                f"drop such rows (they are counted)")
        if answer is None:
            raise DataError(f"row {idx}: answer (column {mapping['answer']!r}) is missing")
        out = {"prompt": prompt, "answer": answer if isinstance(answer, str) else _to_str(answer)}
        if tt_col is not None:
            out["target_tokens"] = _to_int(row[tt_col], idx, tt_col)
        return out

    converted = [c for c in (convert(row, i) for i, row in enumerate(ds)) if c is not None]
    if skipped:
        logger.warning("dataset %r (split %r): skipped %d of %d rows whose solution (column %r) has no \\boxed{} "
                       "answer (rows %s%s)", source, split, len(skipped), len(ds), sol_col,
                       ", ".join(map(str, skipped[:10])), ", ..." if len(skipped) > 10 else "")
    if not converted:
        raise DataError(f"dataset {source!r} (split {split!r}): none of its {len(ds)} rows has a \\boxed{{}} answer "
                        f"in column {sol_col!r}; check columns['solution']")
    dropped = set(skipped)
    kept = [i for i in range(len(ds)) if i not in dropped] if skipped else None
    extra = [c for c in ds.column_names if c not in {mapping["prompt"], ans_col, tt_col,
                                                     "prompt", "answer", "target_tokens"}]
    if not keep_columns:
        extra = [c for c in extra if c == "id"]
    import datasets

    data = {k: [r[k] for r in converted] for k in converted[0]}
    for c in extra:
        values = ds[c]
        data[c] = values if kept is None else [values[i] for i in kept]
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
