"""Per-call time limits that work in any thread, and failure counters for graders.

``math_verify`` bounds its own work with ``signal.alarm``: whole seconds only, and only in the
main thread (elsewhere it raises ``ValueError``). metarl instead runs a single watchdog thread
that, when a call's deadline passes, raises an exception *inside the calling thread* with
CPython's ``PyThreadState_SetAsyncExc`` (and repeats every ``RETRY_S`` until the call is over, so
a library that swallows the exception cannot run on). This interrupts any Python-level work
(sympy, the ANTLR LaTeX parser, user verifiers) in any thread, with sub-second resolution.

It cannot interrupt a single long C call (a giant ``int.__pow__``, a regex on a huge string):
the exception is delivered when that call returns. Graders therefore screen their inputs for
such work (:mod:`metarl.grading.screening`) or run it in a worker process that can be killed
(:mod:`metarl.grading.math_grader`).

:func:`note` lets a grader report events (timeouts, screened inputs, errors it absorbed) to the
:class:`~metarl.grading.grader.Grader` wrapper that is calling it, via a context variable.
"""
from __future__ import annotations

import contextvars
import ctypes
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

RETRY_S = 0.05  # re-raise period after a deadline, for code that swallows the first interrupt


class GradingTimeout(Exception):
    """A grading call ran past its time limit (the grader then answers "incorrect")."""


class _Interrupt(BaseException):
    """Injected into a thread whose deadline passed; BaseException so ``except Exception`` misses it."""


_CAN_INTERRUPT = platform.python_implementation() == "CPython" and hasattr(ctypes, "pythonapi")
if _CAN_INTERRUPT:
    _set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    _set_async_exc.argtypes = [ctypes.c_ulong, ctypes.py_object]
    _set_async_exc.restype = ctypes.c_int


def can_interrupt() -> bool:
    """Whether in-process time limits are enforced here (CPython: yes)."""
    return _CAN_INTERRUPT


class _Entry:
    __slots__ = ("tid", "deadline", "fired", "done", "next_try")

    def __init__(self, tid: int, deadline: float) -> None:
        self.tid = tid
        self.deadline = deadline
        self.fired = False
        self.done = False
        self.next_try = deadline


class _Watchdog:
    """One daemon thread that interrupts threads whose deadline has passed."""

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.active: dict[int, _Entry] = {}
        self.thread: threading.Thread | None = None
        self.wake_at = float("inf")

    def register(self, entry: _Entry) -> None:
        with self.cond:
            self.active[id(entry)] = entry
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="metarl-grading-watchdog", daemon=True)
                self.thread.start()
            if entry.deadline < self.wake_at:
                self.cond.notify()

    def finish(self, entry: _Entry) -> None:
        """Stop watching ``entry``; after this returns it is never interrupted again."""
        with self.cond:
            entry.done = True
            self.active.pop(id(entry), None)
            if entry.fired:
                _set_async_exc(entry.tid, ctypes.py_object())  # drop an interrupt not yet delivered

    def _loop(self) -> None:
        with self.cond:
            while True:
                now = time.monotonic()
                wake = float("inf")
                for key, e in list(self.active.items()):
                    if e.done:
                        self.active.pop(key, None)
                        continue
                    if now >= e.next_try:
                        e.fired = True
                        _set_async_exc(e.tid, _Interrupt)
                        e.next_try = now + RETRY_S
                    wake = min(wake, e.next_try)
                self.wake_at = wake
                self.cond.wait(None if wake == float("inf") else max(wake - now, 0.001))


_WATCHDOG = _Watchdog()


def _reset_after_fork() -> None:  # the watchdog thread does not survive fork
    global _WATCHDOG
    _WATCHDOG = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def run_with_time_limit(fn: Callable[[], T], seconds: float | None) -> T:
    """Call ``fn()``; raise :class:`GradingTimeout` if it runs longer than ``seconds``.

    Works in any thread. ``None`` or a non-CPython interpreter means no limit. Exceptions from
    ``fn`` propagate unchanged. Limits nest: an outer limit that expires first interrupts the
    inner call too.

    >>> run_with_time_limit(lambda: 6 * 7, 1.0)
    42
    >>> def spin():
    ...     while True:
    ...         pass
    >>> run_with_time_limit(spin, 0.05)
    Traceback (most recent call last):
    ...
    metarl.grading.deadline.GradingTimeout: grading call exceeded its time limit of 0.05 s
    """
    if seconds is None or not _CAN_INTERRUPT:
        return fn()
    watchdog = _WATCHDOG
    entry = _Entry(threading.get_ident(), time.monotonic() + max(float(seconds), 0.0))
    outcome: tuple[str, Any] | None = None
    try:
        watchdog.register(entry)
        outcome = ("ok", fn())
        watchdog.finish(entry)
    except _Interrupt:
        if outcome is None:
            outcome = ("interrupt", None)
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after cleanup
        if outcome is None:
            outcome = ("error", exc)
    # ``finish`` must run to completion before we return, with no interrupt left pending. CPython
    # delivers a pending interrupt at calls and at *backward* jumps, so a retry loop here would leak one
    # at its back edge (outside any handler) when the watchdog re-fired while the interrupted call was
    # still unwinding. Retries are therefore nested, forward jumps only: each catches one interrupt that
    # was pending when ``finish`` was entered (the watchdog re-fires at most every RETRY_S, and
    # ``finish`` takes microseconds), and the final loop is only a backstop.
    if not entry.done:
        try:
            watchdog.finish(entry)
        except _Interrupt:
            try:
                watchdog.finish(entry)
            except _Interrupt:
                try:
                    watchdog.finish(entry)
                except _Interrupt:
                    while not entry.done:
                        try:
                            watchdog.finish(entry)
                        except _Interrupt:
                            pass
    kind, value = outcome if outcome is not None else ("interrupt", None)
    if kind == "ok":
        return value
    if kind == "error":
        raise value
    if entry.fired:
        raise GradingTimeout(f"grading call exceeded its time limit of {seconds:g} s")
    raise _Interrupt()  # an enclosing limit expired: let it through to its owner


# ---- event counters -------------------------------------------------------------------------

_EVENTS: contextvars.ContextVar[Callable[[str], None] | None] = contextvars.ContextVar(
    "metarl_grading_events", default=None
)


def note(event: str) -> None:
    """Report a grading event (``"timeouts"``, ``"screened"``, ``"errors"``, ``"isolated"``, or
    ``"undetermined: <why>"``: the grader cannot tell whether the answer is right) to the calling
    :class:`~metarl.grading.grader.Grader`, if any; a no-op otherwise."""
    sink = _EVENTS.get()
    if sink is not None:
        sink(event)


def events_to(sink: Callable[[str], None] | None) -> contextvars.Token:
    """Route :func:`note` events in this context to ``sink``; undo with ``_EVENTS.reset(token)``."""
    return _EVENTS.set(sink)


def reset_events(token: contextvars.Token) -> None:
    _EVENTS.reset(token)
