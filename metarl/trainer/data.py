"""The data of a training run: the task, the training and held-out rows, length targets, chat prompts.

``load_rows`` reads a built-in task's generated problems or any ``datasets`` source (``metarl.data``), applies
the system prompt and the L1 length targets (``budget.prompt_mode``); everything here runs before a model loads.
"""
from __future__ import annotations

import functools
import inspect
import random
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from metarl.config import plain
from metarl.registry import ConfigError


def requires(fn: Any, name: str) -> bool:
    """Whether ``fn`` has a parameter ``name`` without a default (e.g. LCPO's ``target_tokens``)."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    if isinstance(fn, functools.partial) and name in fn.keywords:
        return False
    try:
        param = inspect.signature(target).parameters.get(name)
    except (TypeError, ValueError):
        return False
    return param is not None and param.default is inspect.Parameter.empty


def _with_budget(rows: list[dict[str, Any]], budget: DictConfig, seed: int) -> list[dict[str, Any]]:
    from metarl.rewards.budget import budget_prompt

    mode = budget.get("prompt_mode")
    target = plain(budget.get("target_tokens"))
    if mode is None:
        return rows
    rng = random.Random(seed)
    out = []
    for i, r in enumerate(rows):
        n = r.get("target_tokens")
        if n is None:
            if target is None:
                raise ConfigError(f"budget.prompt_mode={mode!r} needs a length target N: set budget.target_tokens "
                                  f"(an int or a list) or give the dataset a `target_tokens` column "
                                  f"(row {i} has none)")
            n = rng.choice(target) if isinstance(target, list) else int(target)
        if n > budget.cap:
            raise ConfigError(f"target_tokens={n} exceeds the compute cap budget.cap={budget.cap}; raise the cap "
                              f"or lower budget.target_tokens")
        out.append({**r, "target_tokens": int(n), "prompt": budget_prompt(r["prompt"], int(n), mode)})
    return out


def _blank_file(path: Path) -> bool:
    """Whether a file holds only whitespace (read until the first other byte)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 16):
            if chunk.strip():
                return False
    return True


def load_rows(cfg: DictConfig, task: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and held-out rows (``prompt``, ``answer``, optional ``target_tokens``)."""
    t = cfg.task
    if task is not None and str(t.source).startswith("task:"):
        train = task.generate("train", n=int(t.n_train), seed=int(cfg.seed))
        test = task.generate("test", n=int(t.n_test or 0), seed=int(cfg.seed) + 1) if t.n_test else []
    else:
        from metarl.data import DataError, load_dataset_source

        limit = t.get("limit")
        columns = dict(plain(t.columns) or {})
        if columns.get("target_tokens") == "target_tokens":  # the default name: optional (used when present)
            columns["target_tokens"] = None
        kwargs = dict(columns=columns, data_files=plain(t.get("data_files")),
                      limit=None if limit is None else int(limit))
        source = Path(str(t.source)).expanduser()
        if source.is_file() and source.stat().st_size and _blank_file(source):
            raise ConfigError(f"task.source={t.source!r} has no records (only blank lines); write one JSON object "
                              f"per line with the prompt and answer columns")
        try:
            train = list(load_dataset_source(t.source, split=t.split, **kwargs))
            test = list(load_dataset_source(t.source, split=t.test_split, **kwargs)) if t.get("test_split") else []
        except DataError as e:
            raise ConfigError(f"task.source={t.source!r}: {e}. In the config, task.columns.prompt / "
                              f"task.columns.answer name the columns (e.g. task.columns.answer=solution) and "
                              f"task.source / task.split / task.limit choose the rows") from None
    if not train:
        raise ConfigError(f"task.source={t.source!r} gave an empty training set; check task.split / task.limit")
    if t.get("system_prompt"):
        for rows in (train, test):
            for r in rows:
                r["prompt"] = [{"role": "system", "content": t.system_prompt}, {"role": "user", "content": r["prompt"]}]
    budget = cfg.budget
    return _with_budget(train, budget, int(cfg.seed)), _with_budget(test, budget, int(cfg.seed) + 1)


def flatten_chat(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat-message prompts as plain text (message contents joined by blank lines), for tokenizers
    without a chat template.

    >>> flatten_chat([{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]}])
    [{'prompt': 'Be brief.\\n\\n2+2?\\n'}]
    """
    out = []
    for r in rows:
        p = r["prompt"]
        if not isinstance(p, str):
            p = "\n\n".join(str(m.get("content", "")) for m in p) + "\n"
        out.append({**r, "prompt": p})
    return out
