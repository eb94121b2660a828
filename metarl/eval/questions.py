"""Held-out questions for ``metarl-eval``: a built-in task's test split, a dataset split, or a JSONL file.

* built-in task (``task.source=task:<dotted path>``): ``task.generate("test", n=task.n_test, seed=data_seed + 1)``
  — the held-out rows ``metarl-train`` evaluates on when its ``seed`` equals ``data_seed``;
* a local JSONL file (``data=path.jsonl``): one JSON object per line with the ``task.columns`` fields
  (``prompt``, ``answer``, optional ``id``). Malformed lines are reported as ``file:line: problem`` and
  skipped; a file without one usable line is an error;
* any other ``datasets`` source (``task=dataset task.source=... task.test_split=test``) through
  ``metarl.data.load_dataset_source``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from metarl.eval.strategies import Question
from metarl.registry import ConfigError
from metarl.runlog import jsonl_objects

DEFAULT_COLUMNS = {"prompt": "prompt", "answer": "answer"}
ID_FIELDS = ("id", "question_id")


def _row_question(row: Mapping[str, Any], columns: Mapping[str, str], default_id: str) -> Question | str:
    """A Question from a row, or a string naming what is wrong with it."""
    pcol, acol = columns.get("prompt", "prompt"), columns.get("answer", "answer")
    missing = [c for c in (pcol, acol) if c not in row]
    if missing:
        return f"no field {missing} (has {sorted(row)[:8]}); map columns with task.columns.prompt / .answer"
    prompt, answer = row[pcol], row[acol]
    if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
        return f"field {pcol!r} must be a non-empty string or a list of chat messages, got {type(prompt).__name__}"
    if answer is None or isinstance(answer, dict | list):
        return f"field {acol!r} must be a string or a number, got {type(answer).__name__}"
    qid = next((str(row[k]) for k in (columns.get("id", "id"), *ID_FIELDS) if row.get(k) is not None), default_id)
    meta = {k: v for k, v in row.items() if k not in (pcol, acol)}
    return Question(qid, prompt, str(answer), meta)


def read_questions_jsonl(path: str | Path,
                         columns: Mapping[str, str] | None = None) -> tuple[list[Question], list[str]]:
    """Questions of a JSONL file and ``"file:line: problem"`` for each unusable line (skipped).

    Lines without an id get ``"<file stem>:<line>"``; a repeated id is a problem (the later line is skipped).
    """
    path = Path(path)
    columns = {**DEFAULT_COLUMNS, **(columns or {})}
    try:
        fh = path.open(encoding="utf-8", errors="replace")
    except OSError as e:
        raise ConfigError(f"data={str(path)!r}: cannot read it ({e.strerror or e}); give a JSONL file with one "
                          "question per line") from None
    questions: list[Question] = []
    problems: list[str] = []
    seen: set[str] = set()
    with fh:
        for lineno, row in jsonl_objects(fh, path, problems):
            q = _row_question(row, columns, f"{path.stem}:{lineno}")
            if isinstance(q, str):
                problems.append(f"{path}:{lineno}: {q}; line skipped")
            elif q.id in seen:
                problems.append(f"{path}:{lineno}: repeated question id {q.id!r}; line skipped")
            else:
                seen.add(q.id)
                questions.append(q)
    if not questions:
        shown = "; ".join(problems[:3])
        raise ConfigError(f"data={str(path)!r} has no usable question" + (f" ({shown})" if shown else " (empty file)"))
    return questions, problems


def questions_from_rows(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str] | None = None,
                        source: str = "rows") -> tuple[list[Question], list[str]]:
    """Questions from dict rows (a task's ``generate`` or a dataset); ``"source[i]: problem"`` for bad rows."""
    columns = {**DEFAULT_COLUMNS, **(columns or {})}
    out, problems, seen = [], [], set()
    for i, r in enumerate(rows):
        q = _row_question(r, columns, f"q{i}")
        if isinstance(q, str):
            problems.append(f"{source}[{i}]: {q}; row skipped")
        elif q.id in seen:
            problems.append(f"{source}[{i}]: repeated question id {q.id!r}; row skipped")
        else:
            seen.add(q.id)
            out.append(q)
    return out, problems


def load_questions(task_cfg: Mapping[str, Any], task: Any, *, data: str | None = None, data_seed: int = 0,
                   limit: int | None = None) -> tuple[list[Question], list[str]]:
    """The held-out questions the config names (see module doc) and the problems found reading them."""
    columns = {k: v for k, v in dict(task_cfg.get("columns") or {}).items() if v}
    source = str(task_cfg.get("source") or "")
    if data:
        path = Path(data)
        if path.suffix in (".jsonl", ".ndjson") or path.suffix == "" and path.is_file():
            questions, problems = read_questions_jsonl(path, columns)
        else:
            questions, problems = _dataset_questions(str(path), task_cfg, columns, split=None)
    elif source.startswith("task:"):
        if task is None:
            raise ConfigError(f"task.source={source!r} needs task.task (the built-in task and its options)")
        n = int(task_cfg.get("n_test") or 0) if limit is None else int(limit)
        if n <= 0:
            raise ConfigError("no held-out questions: set task.n_test (or n_questions) to a positive number")
        rows = task.generate("test", n=n, seed=int(data_seed) + 1)
        questions, problems = questions_from_rows(rows, columns, source=f"{source} test split")
    elif source:
        split = task_cfg.get("test_split")
        if not split:
            raise ConfigError(f"task.source={source!r}: set task.test_split to the held-out split to evaluate "
                              "(or give a JSONL file with data=...)")
        questions, problems = _dataset_questions(source, task_cfg, columns, split=str(split))
    else:
        raise ConfigError("no questions: set task.source (task:<dotted path> or a dataset) or data=<file.jsonl>")
    if limit is not None:
        questions = questions[: int(limit)]
    if not questions:
        raise ConfigError("no held-out questions to evaluate; check task.n_test / n_questions / the data")
    if task_cfg.get("system_prompt"):
        sys_msg = {"role": "system", "content": task_cfg["system_prompt"]}
        questions = [Question(q.id, [sys_msg, {"role": "user", "content": q.prompt}] if isinstance(q.prompt, str)
                              else q.prompt, q.answer, q.meta) for q in questions]
    return questions, problems


def _dataset_questions(source: str, task_cfg: Mapping[str, Any], columns: Mapping[str, str],
                       split: str | None) -> tuple[list[Question], list[str]]:
    from metarl.data import DataError, load_dataset_source

    mapping = {k: columns[k] for k in ("prompt", "answer", "solution") if k in columns}
    try:
        rows = list(load_dataset_source(source, split=split or task_cfg.get("test_split") or "test", columns=mapping,
                                        data_files=task_cfg.get("data_files"), limit=task_cfg.get("limit")))
    except DataError as e:
        raise ConfigError(str(e)) from None
    return questions_from_rows(rows, {"prompt": "prompt", "answer": "answer"}, source=source)
