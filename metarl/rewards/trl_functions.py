"""TRL reward functions as metarl trace rewards, unchanged.

A TRL reward function (``def r(completions, **kwargs) -> list[float]``, as in ``trl.rewards`` and the
``reward_funcs`` of TRL's ``GRPOTrainer``) is called once per batch with ``prompts``, ``completions``,
``completion_ids`` and every other column of the input rows as keyword arguments, each a list with one entry per
completion, and returns one number per completion, ``None`` where it does not apply. metarl calls it the same way
(:class:`TRLReward`), on the traces of a scoring batch:

- ``prompts``: each row's prompt as the dataset gives it: chat messages for a conversational dataset (the trainer
  keeps them in ``trace.meta["input"]["prompt"]``), else the prompt text;
- ``completions``: the completion text, or ``[{"role": "assistant", "content": text}]`` when the prompts are
  chat messages, as TRL does;
- ``completion_ids``: the completion's token ids (the policy's in training; ``metarl-score`` uses a line's
  ``completion_ids``, else tokenizes the completion when it has a tokenizer, else None);
- every other column of the row (``trace.meta["input"]``: the trainer's dataset row, ``metarl-score``'s other
  JSONL fields) and the columns the trace itself carries, ``answer`` and (when set) ``target_tokens``.

A ``None`` entry means "does not apply": no value is recorded for that trace, as TRL's trainer skips it (NaN in
its nan-sum). The function is recognised by its signature: one not declared with ``@reward`` that takes TRL's
``completions`` (or ``prompts`` / ``completion_ids``). It is trace-level, so the one ``objective.outcome_reward``
names is the outcome term, exactly what TRL's trainer would use as its reward.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from metarl.registry import free_parameters
from metarl.types import Trace

#: The arguments TRL's trainer passes every reward function besides the dataset columns.
TRL_ARGS = ("prompts", "completions", "completion_ids")
_NOT_COLUMNS = ("prompt", "completion", "completion_ids")


def is_trl_function(fn: Callable) -> bool:
    """Whether ``fn`` follows TRL's reward-function protocol: it asks for TRL's ``completions`` (or ``prompts`` /
    ``completion_ids``) by name.

    >>> is_trl_function(lambda completions, **kwargs: [1.0]), is_trl_function(lambda completion: 1.0)
    (True, False)
    """
    try:
        params, _ = free_parameters(fn)
    except (TypeError, ValueError):
        return False
    return any(n in params for n in TRL_ARGS)


def dotted_name(fn: Callable) -> str:
    """``module.qualname`` of a function (through ``functools.partial``), for messages."""
    target = getattr(fn, "func", fn)
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__
    return f"{module}.{name}" if module else str(name)


def is_conversational(prompt: Any) -> bool:
    """TRL's test: a prompt is conversational when it is a list of ``{"role": ..., "content": ...}`` messages."""
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], Mapping) and "role" in prompt[0]


def trl_arguments(traces: Sequence[Trace], tokenizer: Any = None) -> dict[str, list[Any]]:
    """The keyword arguments TRL's ``GRPOTrainer`` would pass a reward function for these traces."""
    rows = [t.meta.get("input") or {} for t in traces]
    prompts = [row.get("prompt", t.prompt) for row, t in zip(rows, traces)]
    chat = bool(prompts) and is_conversational(prompts[0])
    completions = [[{"role": "assistant", "content": t.completion}] if chat else t.completion for t in traces]
    ids = [t.completion_ids if t.completion_ids is not None or tokenizer is None
           else list(tokenizer(t.completion, add_special_tokens=False)["input_ids"]) for t in traces]
    columns: list[dict[str, Any]] = []
    for row, t in zip(rows, traces):
        own = {"answer": t.answer} | ({} if t.target_tokens is None else {"target_tokens": t.target_tokens})
        columns.append(own | {k: v for k, v in row.items() if k not in _NOT_COLUMNS})
    keys = list(dict.fromkeys(k for c in columns for k in c))
    return {"prompts": prompts, "completions": completions, "completion_ids": ids,
            **{k: [c.get(k) for c in columns] for k in keys}}


class TRLReward:
    """A TRL reward function as a batched metarl trace reward (``score_batch``); see the module docstring."""

    level = "trace"

    def __init__(self, fn: Callable[..., Any]):
        self.fn = fn
        self.label = dotted_name(fn)
        self.__name__ = getattr(getattr(fn, "func", fn), "__name__", self.label)
        params, self._var_kw = free_parameters(fn)
        self._names = set(params)
        self._required = [n for n, p in params.items() if p.default is p.empty]

    def __repr__(self) -> str:
        return f"TRLReward({self.label})"

    def score_batch(self, traces: Sequence[Trace], tokenizer: Any = None) -> list[float | None]:
        """One value per trace (None: not recorded), from one call of the function on the whole batch."""
        from metarl.rewards import RewardError

        available = trl_arguments(traces, tokenizer)
        missing = [n for n in self._required if n not in available]
        if missing:
            raise RewardError(f"TRL reward function {self.label} asks for {missing}, which this batch does not "
                              f"carry; it receives {sorted(available)} (the traces' columns), so give those "
                              f"arguments a default or take **kwargs")
        kwargs = available if self._var_kw else {k: v for k, v in available.items() if k in self._names}
        values = self.fn(**kwargs)
        return self.check(values, len(traces))

    def check(self, values: Any, n: int) -> list[float | None]:
        """``values`` as ``n`` floats or Nones, or a :class:`RewardError` naming the function."""
        from metarl.rewards import RewardError

        if hasattr(values, "tolist") and not isinstance(values, list):  # a numpy array or a tensor
            values = values.tolist()
        if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence):
            raise RewardError(f"TRL reward function {self.label} returned {type(values).__name__} "
                              f"{str(values)[:60]!r}; it must return a list with one float (or None: skip) per "
                              f"completion, {n} here")
        if len(values) != n:
            raise RewardError(f"TRL reward function {self.label} returned {len(values)} values for {n} completions; "
                              f"it must return exactly one float (or None: skip) per completion")
        out: list[float | None] = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
            elif isinstance(v, numbers.Real):
                out.append(float(v))
            else:
                raise RewardError(f"TRL reward function {self.label} returned {type(v).__name__} {str(v)[:60]!r} "
                                  f"for completion {i}; each entry must be a number, or None to skip the completion")
        return out

