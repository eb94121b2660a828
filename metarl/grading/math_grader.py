"""Math answers graded with math-verify, bounded in time in any thread.

math-verify's own timeouts use ``signal.alarm``: whole seconds, main thread only (in other
threads ``parse``/``verify`` raise), and they cannot stop a C-level big-integer operation
(``9**9**9**9`` hangs straight through them). :class:`MathGrader` instead:

1. reads the answer the prediction states as math-verify's ``parse`` would find it
   (:func:`~metarl.grading.extraction.math_answer`: an ``<answer>`` tag, the last ``\\boxed{}`` with the
   boxes listed before it, "final answer is", an answer phrase, a bare answer, else the last formula or
   number) and accepts identical answer strings at once;
2. screens both sides (:func:`screen_math`): hopeless inputs are incorrect at once;
3. grades ordinary answers in-process, math-verify's timeouts off, under
   :func:`run_with_time_limit` (works in any thread; costs no process spawn);
4. sends inputs that could build huge integers to a long-lived worker process
   (:class:`MathWorker`, one per Python process, shared), which is killed and restarted when it
   overruns the deadline.

Measured on a 2-core CPU (250 non-identical ordinary pairs): ~4 ms a call in-process and
~4 ms a call through the worker (the pipe round trip is well under 1 ms; math-verify's own
parsing dominates, and cold ANTLR parsing of nested parentheses costs ~0.1 s per level);
identical answer strings cost ~0.05 ms; the time limit adds ~2 us; a worker starts in
~0.4-0.6 s (call :meth:`MathGrader.warm_up` to start it ahead of time).
"""
from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction
from typing import Any

from metarl.grading.deadline import GradingTimeout, note, run_with_time_limit
from metarl.grading.extraction import _strip_boxed, extract_answer, math_answer, reads_as_latex, stated_answer
from metarl.grading.mathworker import mv_equal
from metarl.grading.screening import INLINE, ISOLATE, REJECT, ScreenLimits, screen_math, worst
from metarl.grading.task_verifiers import ExpressionError, eval_arithmetic

WORKER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mathworker.py")
ISOLATION_MODES = ("auto", "process", "inline")
_CANON_RE = re.compile(r"\s+|\$|\\left|\\right|\\[,;:! ]|\\displaystyle")
_PERCENT_RE = re.compile(r"\s*(?:\\%|%|\\percent)\s*$")
# math-verify's plain number formats: 1,234.5 / 1 234 / 1000,99 / .5 / 42 (with a sign)
_PLAIN_NUMBER_RE = re.compile(r"[-+]?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+[.,]\d+|\.\d+|\d+)")
_DECIMAL_COMMA_RE = re.compile(r"[-+]?\d+,\d+")
_THOUSANDS_RE = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+")


_FRACTION_RE = re.compile(r"\s*\d+\s*/\s*\d+\s*")


def expression_value(answer: str) -> Fraction | None:
    """The value of a gold answer that is an arithmetic expression over integers (``7+6``, ``(3+5)*7``: two
    or more literals joined by ``+ - * /``; a plain fraction ``1/2`` is a value, not an expression), else None.

    Such an answer names one correct expression of a task (subset sum, countdown) whose other correct
    expressions only the task's verifier knows: the math grader accepts the same expression, rejects an
    answer of another value, and cannot tell for another expression of the same value.

    >>> expression_value("7+6"), expression_value("1/2"), expression_value("13"), expression_value("x+1")
    (Fraction(13, 1), None, None, None)
    """
    if _FRACTION_RE.fullmatch(answer):
        return None
    try:
        value, used = eval_arithmetic(answer, max_tokens=64)
    except ExpressionError:
        return None
    return value if len(used) >= 2 else None


def _drop_percent(answer: str) -> str:
    """``50\\%`` -> ``50``: MATH-style answers grade percentages by their number (math-verify
    cannot parse a gold answer ending in ``\\%``)."""
    return _PERCENT_RE.sub("", answer)


def _as_gold(answer: str) -> str:
    """A bare gold answer as math-verify reads it best: a plain number as it is (its number reader knows
    ``1 000``, ``1,234``), anything else in ``\\boxed{}`` (its LaTeX reader needs delimiters: a bare
    ``\\frac12`` or ``(1, 2]`` is not read as LaTeX). A decimal comma is not read in a gold answer: a
    dataset's ``1,3`` ("enter all solutions, separated by commas") is the list, in ``\\boxed{}``, as metarl
    always read it (math-verify's number reader, used on its own bare gold ``1,22``, reads 1.22: the one
    vendored case where the two differ on purpose)."""
    a = answer.strip()
    if _PLAIN_NUMBER_RE.fullmatch(a) and not (_DECIMAL_COMMA_RE.fullmatch(a) and not _THOUSANDS_RE.fullmatch(a)):
        return answer
    return "\\boxed{" + answer + "}"


class MathWorker:
    """A math-verify worker process that is killed when a request overruns its deadline.

    Thread-safe: one request at a time; a caller waits for the worker only until its own
    deadline. After a kill (or a crash) a fresh worker starts at once in the background.
    """

    def __init__(self, memory_limit: int = 4 << 30) -> None:
        self.memory_limit = int(memory_limit)
        self._guard = threading.Lock()
        self._busy = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()
        self._ready = False
        self._outstanding = False  # a request was sent and its reply not yet read
        self._buf = b""
        self.restarts = 0

    # -- process management (called with the worker claimed) --
    def _spawn(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONIOENCODING="ascii")
        self._proc = subprocess.Popen(
            [sys.executable, "-u", WORKER_SCRIPT, str(self.memory_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
            start_new_session=True,  # a Ctrl-C to the trainer does not reach it; we stop it ourselves
        )
        self._owner_pid = os.getpid()
        self._ready = False
        self._outstanding = False
        self._buf = b""

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or self._owner_pid != os.getpid():
            return
        try:
            proc.kill()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    def _readline(self, deadline: float) -> bytes | None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the worker died
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def _ensure(self, deadline: float) -> bool:
        if self._proc is not None and self._owner_pid != os.getpid():
            self._proc = None  # inherited across a fork: not ours to use or to kill
        if self._proc is not None and self._proc.poll() is not None:
            self._kill()  # it died (e.g. out of memory)
        if self._proc is None:
            self._spawn()
        if not self._ready:
            line = self._readline(deadline)
            if line is None:
                return False
            self._ready = b"ready" in line
        return self._ready

    def _request(self, gold: str, pred: str, opts: dict[str, Any], deadline: float) -> bool | None:
        if not self._ensure(deadline):
            return None
        assert self._proc is not None and self._proc.stdin is not None
        rid = time.monotonic_ns()
        request = json.dumps({"id": rid, "gold": gold, "pred": pred, "opts": opts}) + "\n"  # pure ASCII
        self._outstanding = True
        self._proc.stdin.write(request.encode("ascii"))
        self._proc.stdin.flush()
        while True:
            line = self._readline(deadline)
            if line is None:
                return None
            reply = json.loads(line)
            if reply.get("id") == rid:
                self._outstanding = False
                return bool(reply.get("ok"))

    # -- public --
    def equal(self, gold: str, pred: str, opts: dict[str, Any] | None, deadline: float) -> bool | None:
        """math-verify equality computed in the worker; None when no answer came by ``deadline``
        (the worker is then killed and a new one started)."""
        claimed = False
        try:
            while not claimed:
                with self._guard:
                    if not self._busy:
                        self._busy = claimed = True  # no call in between: an interrupt cannot split them
                if not claimed:
                    if time.monotonic() >= deadline:
                        return None
                    time.sleep(0.002)
            try:
                return self._request(gold, pred, dict(opts or {}), deadline)
            except (OSError, ValueError):  # broken pipe, garbled reply: no answer
                self._outstanding = True  # force a restart below
                return None
            finally:
                # A request left unanswered (overrun, crash, interrupt) means a busy or broken
                # worker: kill it and start afresh. A worker merely still starting is left alone.
                dead = self._proc is not None and self._proc.poll() is not None
                if self._outstanding or dead:
                    self._kill()
                    self.restarts += 1
                    try:
                        self._spawn()
                    except OSError:
                        self._proc = None
        finally:
            if claimed:
                self._busy = False

    def warm_up(self, timeout: float = 30.0) -> bool:
        """Start the worker (if needed) and wait until it is ready; True when it is."""
        return self.equal("1", "1", None, time.monotonic() + timeout) is True

    def close(self) -> None:
        with self._guard:
            self._kill()


_WORKERS: dict[int, MathWorker] = {}
_WORKERS_LOCK = threading.Lock()


def shared_worker(memory_limit: int = 4 << 30) -> MathWorker:
    """The process-wide worker for a memory limit (created on first use)."""
    with _WORKERS_LOCK:
        worker = _WORKERS.get(memory_limit)
        if worker is None:
            worker = _WORKERS[memory_limit] = MathWorker(memory_limit)
        return worker


@atexit.register
def _close_workers() -> None:
    for worker in list(_WORKERS.values()):
        worker.close()


def _canonical(s: str) -> str:
    return _CANON_RE.sub("", s).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").rstrip(".")


class MathGrader:
    """``grader(prediction, answer) -> bool``: math equivalence via math-verify, never raising,
    returning within about ``timeout`` seconds in any thread.

    ``prediction`` may be a whole completion or an answer extracted from one (``extract_answer(text,
    "math")``: the verdict is the same, as the grader reads its input with that same extraction);
    ``answer`` is the gold answer, bare (``"\\\\frac{1}{2}"``) or in ``$...$``/``\\\\boxed{}`` (then
    math-verify reads it as it reads any text; a bare one as :func:`_as_gold` writes it). On math-verify's
    own 269 parametrized test cases (``tests/data/math_verify_cases.jsonl``) it agrees with their expected
    verdict on 262, as math-verify's ``verify(parse(gold), parse(pred))`` with default options does
    (``bench/math_verify_parity.py`` lists the cases).
    ``isolation``: ``"auto"`` (screen; worker process only for inputs that may build huge
    integers), ``"process"`` (every call in the worker), ``"inline"`` (never a worker; such
    inputs grade as incorrect).

    >>> grade = MathGrader()
    >>> grade("so the answer is $\\\\boxed{0.5}$", "\\\\frac{1}{2}")
    True
    >>> grade("\\\\boxed{\\\\{1,2\\\\}}", "\\\\{2, 1\\\\}")
    True
    >>> grade("\\\\boxed{9**9**9**9}", "1"), grade(None, "1")
    (False, False)
    """

    answer_style = "math"
    """The :func:`extract_answer` style that ``answer=auto`` means with this grader (see
    :attr:`metarl.grading.Grader.answer_style`): the answer as math-verify reads it, so the scorer's
    ``grader(extract_answer(completion), answer)`` grades as ``grader(completion, answer)`` does."""

    def __init__(
        self,
        timeout: float = 1.0,
        isolation: str = "auto",
        *,
        float_rounding: int = 6,
        numeric_precision: int = 15,
        strict: bool = True,
        max_scan_chars: int = 20_000,
        limits: ScreenLimits | None = None,
        memory_limit: int = 4 << 30,
    ) -> None:
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation={isolation!r}: use one of {ISOLATION_MODES}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout={timeout!r}: a grader needs a positive time limit in seconds")
        self.timeout = float(timeout)
        self.isolation = isolation
        self.opts = {"float_rounding": float_rounding, "numeric_precision": numeric_precision, "strict": strict}
        self.max_scan_chars = int(max_scan_chars)
        self.limits = limits or ScreenLimits()
        self.memory_limit = memory_limit
        _warm_in_process()

    @property
    def worker(self) -> MathWorker:
        return shared_worker(self.memory_limit)

    def warm_up(self, timeout: float = 30.0) -> bool:
        """Start the worker process now (otherwise it starts on the first input that needs it)."""
        return self.worker.warm_up(timeout)

    def _reading(self, prediction: str) -> tuple[str | None, str | None]:
        """(prediction text for math-verify's ``parse``, the answer it states), both None when the
        prediction states nothing math-verify could read.

        The answer is :func:`math_answer`'s (the ``"math"`` style: box, tag, "final answer is", phrase,
        bare text, else the last formula or number), percent sign dropped; it goes to math-verify in
        ``\\boxed{}`` when boxed or LaTeX-like (:func:`reads_as_latex`), as it is when a plain number
        (math-verify's number reader knows ``1 000``, ``1000,99``; its LaTeX reader does not), a formula
        in ``$...$`` or prose (``5 apples``: math-verify finds the number).
        """
        answer = math_answer(prediction[-self.max_scan_chars :])
        if answer is None:
            return None, None
        inner = _strip_boxed(answer)
        stated = _drop_percent(inner)
        if inner != answer or (reads_as_latex(stated) and not _PLAIN_NUMBER_RE.fullmatch(stated.strip())):
            return "\\boxed{" + stated + "}", stated
        return stated, stated

    def _texts(self, prediction: str, answer: str) -> tuple[str, str | None, str | None]:
        """(gold text, prediction text) for math-verify's ``parse``, and the answer the prediction states."""
        pred, stated = self._reading(prediction)
        delimited = any(k in answer for k in ("$", "\\boxed", "\\(", "\\["))
        gold = answer if delimited else _as_gold(answer)
        return gold, pred, stated

    def __call__(self, prediction: str | None, answer: str) -> bool:
        if not isinstance(prediction, str) or not isinstance(answer, str) or not answer.strip():
            return False
        deadline = time.monotonic() + self.timeout
        if len(answer) > self.limits.max_chars:
            note("screened")
            return False
        answer = _drop_percent(answer)
        gold, pred, stated = self._texts(prediction, answer)
        if pred is None or stated is None:
            return False
        gold_bare = extract_answer(answer) or answer
        if _canonical(stated) and _canonical(stated) == _canonical(gold_bare):
            return True  # the same answer string: correct without parsing (even 2^{2^{100}})
        expression = expression_value(gold_bare)
        if expression is not None:  # never a value match of an expression answer against some number
            if stated_answer(prediction[-self.max_scan_chars :]) is None:
                note(f"undetermined: the text states no answer and the gold answer {gold_bare!r} is an expression; "
                     f"its last number is no answer to it (grade with the task's verifier: verifier=NAME or a "
                     f"`task` field)")
                return False
            try:
                value = eval_arithmetic(stated, max_tokens=64)[0]
            except ExpressionError:
                value = None
            if value is not None:
                if value != expression:
                    return False  # another value: no expression of it is the answer
                note(f"undetermined: {stated!r} has the value of the gold expression {gold_bare!r} but is another "
                     f"expression; only the task's verifier knows whether it is allowed (verifier=NAME or a "
                     f"`task` field)")
                return False
        level = worst(screen_math(gold, self.limits), screen_math(pred, self.limits))
        if self.isolation == "process" and level == INLINE:
            level = ISOLATE
        if level == REJECT or (level == ISOLATE and self.isolation == "inline"):
            note("screened")
            return False
        if level == ISOLATE:
            note("isolated")
            result = self.worker.equal(gold, pred, self.opts, deadline)
            if result is None:
                note("timeouts")
                return False
            if result and expression is not None:
                note(f"undetermined: {stated!r} equals the gold expression {gold_bare!r} in value only; only the "
                     f"task's verifier knows whether it is allowed (verifier=NAME or a `task` field)")
                return False
            return result
        try:
            equal = run_with_time_limit(lambda: mv_equal(gold, pred, self.opts), deadline - time.monotonic())
            if equal and expression is not None:
                note(f"undetermined: {stated!r} equals the gold expression {gold_bare!r} in value only; only the "
                     f"task's verifier knows whether it is allowed (verifier=NAME or a `task` field)")
                return False
            return equal
        except GradingTimeout:
            note("timeouts")
        except Exception:  # noqa: BLE001 - a grader never raises: RecursionError, sympy errors, ...
            note("errors")
        return False


_DEFAULT: MathGrader | None = None
_WARM = False


def _warm_in_process() -> None:
    """Import math-verify and build its parser once, outside any time limit (~0.4 s)."""
    global _WARM
    if not _WARM:
        mv_equal("$1$", "$1$")
        _WARM = True


def grade_math(prediction: str | None, answer: str) -> bool:
    """:class:`MathGrader` with default settings, as a plain function.

    >>> grade_math("The answer is $\\\\frac{\\\\sqrt{2}}{2}$.", "\\\\frac{1}{\\\\sqrt{2}}")
    True
    """
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = MathGrader()
    return _DEFAULT(prediction, answer)
