"""One wrapper for every grader: never raises, bounded in time, counts its failures.

:func:`build_grader` turns a config node (``conf/grader/*.yaml``: a ``_target_`` mapping, built by Hydra's
``instantiate``; a function grader says ``_partial_: true``) or a callable into a :class:`Grader`::

    grader = build_grader({"_target_": "metarl.grading.basic.grade_number", "_partial_": True, "rel_tol": 1e-4})
    grader(prediction, answer, prompt="")   # -> bool
    grader.stats                             # {"calls": ..., "errors": ..., "timeouts": ...}

Plain graders ``grade(prediction, answer)`` and task verifiers
``verify(prediction, answer, prompt)`` are both accepted (the prompt is passed when the
callable takes a third positional argument or one named ``prompt``).
"""
from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from metarl.grading.deadline import GradingTimeout, events_to, reset_events, run_with_time_limit
from metarl.grading.extraction import ANSWER_STYLES, extract_answer
from metarl.registry import ConfigError, instantiate_callable

DEFAULT_TIMEOUT = 1.0
"""Seconds per call for graders that do not bound themselves."""
SELF_BOUNDED_MARGIN = 1.0
"""Extra seconds given to graders with their own ``timeout`` (they clean up on their own)."""

STAT_KEYS = ("calls", "correct", "errors", "timeouts", "screened", "isolated", "undetermined")


def _takes_prompt(fn: Callable[..., Any]) -> tuple[bool, bool]:
    """(passes a prompt, as a keyword) for a grader callable."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False, False
    params = sig.parameters
    if "prompt" in params:
        return True, params["prompt"].kind is inspect.Parameter.KEYWORD_ONLY
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values()):
        return True, False
    positional = [
        p for p in params.values()
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 3, False


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float, Fraction)):
        return str(value)
    return None


class Grader:
    """``grader(prediction, answer, prompt="") -> bool`` around any grading callable.

    Guarantees: never raises (an exception counts in ``stats["errors"]`` and grades as
    incorrect); returns within ``timeout`` seconds for Python-level work in any thread (a
    timeout counts in ``stats["timeouts"]``; see :mod:`metarl.grading.deadline`). Counters:
    ``calls``, ``correct``, ``errors``, ``timeouts``, and, reported by the built-in graders,
    ``screened`` (refused by an input screen), ``isolated`` (graded in a worker process) and
    ``undetermined`` (the grader could not tell: see :meth:`judge`). ``extract`` (an
    :func:`extract_answer` style) narrows the prediction first.

    >>> g = Grader(lambda p, a: int(p) == int(a))
    >>> g("3", "3"), g("three", "3"), g.stats["errors"]
    (True, False, 1)
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        timeout: float | None = None,
        extract: str | None = None,
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise ConfigError(f"a grader must be callable, got {type(fn).__name__}")
        if extract is not None and extract not in ANSWER_STYLES:
            raise ConfigError(f"extract={extract!r}: use one of {ANSWER_STYLES} or None")
        own = getattr(fn, "timeout", None)
        if timeout is None:
            timeout = float(own) + SELF_BOUNDED_MARGIN if isinstance(own, (int, float)) and own > 0 else DEFAULT_TIMEOUT
        if timeout <= 0:
            raise ConfigError(f"timeout={timeout!r}: a grader needs a positive time limit in seconds")
        self.fn = fn
        self.timeout = float(timeout)
        self.extract = extract
        self.name = name or getattr(fn, "__name__", None) or type(fn).__name__
        self.takes_prompt, self._prompt_kw = _takes_prompt(fn)
        self._lock = threading.Lock()
        self.stats: dict[str, int] = dict.fromkeys(STAT_KEYS, 0)
        self.last_error: str | None = None

    @property
    def answer_style(self) -> str:
        """The :func:`extract_answer` style that ``answer=auto`` means for this grader: the wrapped
        callable's ``answer_style`` attribute if it has one (the math grader: ``"math"``), else ``"auto"``."""
        style = getattr(self.fn, "answer_style", None)
        return style if style in ANSWER_STYLES else "auto"

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + 1

    def reset_stats(self) -> dict[str, int]:
        """Zero the counters; return the old ones (e.g. to log per training step)."""
        with self._lock:
            old, self.stats = self.stats, dict.fromkeys(STAT_KEYS, 0)
        return old

    def _invoke(self, prediction: str, answer: str, prompt: str) -> Any:
        if not self.takes_prompt:
            return self.fn(prediction, answer)
        if self._prompt_kw:
            return self.fn(prediction, answer, prompt=prompt)
        return self.fn(prediction, answer, prompt)

    def __call__(self, prediction: str | None, answer: Any, prompt: str = "") -> bool:
        """True when the prediction is correct; False when it is not or the grader cannot tell."""
        return self.judge(prediction, answer, prompt)[0] is True

    def judge(self, prediction: str | None, answer: Any, prompt: str = "") -> tuple[bool | None, str | None]:
        """``(verdict, why)``: verdict True / False, or None when the grader cannot tell whether the answer is
        right: the callable raised or ran out of time (it could not grade this input; a training signal
        treats this as incorrect, ``__call__`` returns False), or it reported ``undetermined`` (the math
        grader on an expression answer such as ``7+6``: only the task's verifier knows which other
        expressions are correct). ``why`` says which. No prediction at all is incorrect, not undetermined.

        >>> def verify(p, a, prompt): raise ValueError("no numbers in the prompt")
        >>> Grader(verify).judge("3+4", "7", "What is 3+4?")
        (None, 'verify raised ValueError: no numbers in the prompt')
        """
        self._count("calls")
        pred, gold = _as_text(prediction), _as_text(answer)
        if pred is None or gold is None:
            return False, None
        prompt = prompt if isinstance(prompt, str) else ""
        ok = False
        why: list[str] = []

        def sink(event: str) -> None:
            if event.startswith("undetermined"):
                why.append(event.partition(":")[2].strip() or "the grader cannot tell")
                event = "undetermined"
            self._count(event)

        token = events_to(sink)
        try:
            if self.extract is not None:
                pred = extract_answer(pred, self.extract)
            if pred is not None:
                result = run_with_time_limit(lambda: self._invoke(pred, gold, prompt), self.timeout)
                ok = result is True or (result is not False and bool(result))
        except GradingTimeout:
            self._count("timeouts")
            return None, f"{self.name} ran past its time limit of {self.timeout:g} s"
        except Exception as e:  # noqa: BLE001 - the guarantee: a grader never raises
            self._count("errors")
            self.last_error = f"{type(e).__name__}: {str(e)[:200]}"
            return None, f"{self.name} raised {self.last_error}"
        finally:
            reset_events(token)
        if why:
            return None, why[-1]
        if ok:
            self._count("correct")
        return ok, None

    def __getstate__(self) -> dict[str, Any]:  # picklable / deep-copyable (the lock is not)
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Grader({self.name}, timeout={self.timeout:g}s, extract={self.extract!r})"


def build_grader(spec: Any, *, timeout: float | None = None, extract: str | None = None) -> Grader:
    """A :class:`Grader` from a config node (``_target_`` mapping; ``conf/grader/``), a plain callable, or an
    existing Grader.

    >>> g = build_grader({"_target_": "metarl.grading.basic.grade_number", "_partial_": True, "rel_tol": 0.01})
    >>> g("3.14", "3.1416"), g("The answer is 7", "7"), g.stats["calls"], g.name
    (True, True, 2, 'grade_number')
    >>> build_grader({"_target_": "metarl.grading.nope"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: grader: Error locating target 'metarl.grading.nope'...
    """
    if isinstance(spec, Grader):
        if timeout is None and extract is None:
            return spec
        return Grader(spec.fn, timeout=timeout or spec.timeout, extract=extract or spec.extract, name=spec.name)
    fn = instantiate_callable(spec, "grader")
    if not callable(fn):
        raise ConfigError(f"grader {spec!r} built {fn!r}, which is not callable")
    return Grader(fn, timeout=timeout, extract=extract)  # named by its function / class (Grader's own default)
