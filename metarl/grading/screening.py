"""Screen untrusted math text before sympy sees it.

Most slow grading work is pure Python (sympy, the ANTLR LaTeX parser) and is stopped by the
in-process time limit of :mod:`metarl.grading.deadline`. What no in-process limit can stop is
a single giant C-level integer operation: ``9**9**9**9``, ``2^{-10^{10}}``, ``(10^6)!`` make
sympy call ``int.__pow__`` or a factorial on numbers with millions of digits, and the thread
is stuck inside C until it finishes (minutes, or memory exhaustion).

:func:`screen_math` therefore bounds, without building anything, the number of decimal digits
of every integer that powers, factorials and binomials in the text could produce (a small
recursive scan; powers are right-associative, so towers are caught), plus the text length and
bracket nesting depth (the LaTeX parser is exponential in nesting), and answers:

- ``"inline"``: safe to grade in-process under a time limit;
- ``"isolate"``: may build big integers: grade in a worker process that can be killed;
- ``"reject"``: hopeless (a tower, a million-digit result, absurd nesting): incorrect at once.

>>> screen_math("\\\\frac{\\\\sqrt{2}}{2} + x^{2}")
'inline'
>>> screen_math("99999!")
'isolate'
>>> screen_math("9**9**9**9"), screen_math("\\\\boxed{2^{2^{2^{2^{100}}}}}")
('reject', 'reject')
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

INLINE, ISOLATE, REJECT = "inline", "isolate", "reject"
_LEVELS = {INLINE: 0, ISOLATE: 1, REJECT: 2}

_LOG2 = math.log10(2.0)
_BIG = 1e300
_NOISE_RE = re.compile(r"\s+|\\left|\\right|\\[,;:! ]|\\quad|\\qquad|\\displaystyle")
_COMMAND_RE = re.compile(r"\\([A-Za-z]+|.)")
_BINOMS = ("binom", "dbinom", "tbinom")
_OPEN_TO_CLOSE = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class ScreenLimits:
    """Thresholds of :func:`screen_math` (digits are decimal digits of a built integer)."""

    max_chars: int = 4000
    max_depth: int = 20
    inline_digits: float = 2e5  # 10^{99999} builds in ~0.1 s
    reject_digits: float = 2e6  # (10^6)! (5.5e6 digits) takes ~4 s: not worth a worker
    max_powers_inline: int = 64


def nesting_depth(text: str) -> int:
    """Maximum nesting of ``( [ {`` brackets (unmatched closers are ignored).

    >>> nesting_depth("f((x)) + {[1]}")
    2
    """
    depth = best = 0
    for c in text:
        if c in "([{":
            depth += 1
            if depth > best:
                best = depth
        elif c in ")]}" and depth:
            depth -= 1
    return best


def _match_brackets(t: str) -> dict[int, int]:
    pairs: dict[int, int] = {}
    stacks: dict[str, list[int]] = {"(": [], "[": [], "{": []}
    closers = {")": "(", "]": "[", "}": "{"}
    for i, c in enumerate(t):
        if c in stacks:
            stacks[c].append(i)
        elif c in closers and stacks[closers[c]]:
            pairs[stacks[closers[c]].pop()] = i
    return pairs


def _pow10(x: float) -> float:
    return _BIG if x > 300 else 10.0**x


def _literal_log10(digits: str) -> float:
    """log10 bound of the integers a decimal literal can become (``0.125`` -> 125/1000). Digits of any script
    count (``int`` reads them), so a zero that is not ASCII ``"0"`` (e.g. U+1090) is zero too.

    >>> _literal_log10("0.125") == math.log10(125), _literal_log10("\u1090") == _LOG2
    (True, True)
    """
    mantissa = digits.replace(".", "").lstrip("0")
    if len(mantissa) > 15:
        return float(len(mantissa))
    value = int(mantissa) if mantissa else 0
    return max(math.log10(value) if value > 0 else 0.0, _LOG2)


class _Scan:
    """Recursive upper bounds: ``log10`` of a value, and the largest integer (digits) built."""

    def __init__(self, t: str) -> None:
        self.t = t
        self.pairs = _match_brackets(t)
        self.work = 0.0
        self.powers = 0

    def built(self, digits: float) -> float:
        self.work = max(self.work, digits)
        return digits

    def atom(self, i: int, end: int) -> tuple[float, int]:
        """One operand starting at ``i``: (log10 bound, index after it)."""
        t = self.t
        if i >= end:
            return 0.0, i
        while i + 1 < end and t[i] in "+-":
            i += 1
        c = t[i]
        if c.isdecimal() or (c == "." and i + 1 < end and t[i + 1].isdecimal()):
            j = i
            while j < end and (t[j].isdecimal() or t[j] == "."):
                j += 1
            return _literal_log10(t[i:j]), j
        if c in _OPEN_TO_CLOSE:
            close = self.pairs.get(i)
            if close is not None and close < end:
                return self.expr(i + 1, close), close + 1
            return 0.0, i + 1
        if c == "\\":
            m = _COMMAND_RE.match(t, i)
            name = m.group(1) if m else ""
            j = m.end() if m else i + 1
            if name in _BINOMS:  # \binom{n}{k} <= 2^n
                n, j = self.atom(j, end)
                _, j = self.atom(j, end)
                return self.built(_pow10(n) * _LOG2), j
            if name in ("frac", "dfrac", "tfrac", "sqrt"):
                a, j = self.atom(j, end)
                b, j = self.atom(j, end)
                return a + b, j
            return 0.0, j
        return 0.0, i + 1

    def exponent(self, i: int, end: int) -> tuple[float, int]:
        """An exponent operand; following ``^``s make it a right-associative tower."""
        values: list[float] = []
        value, j = self.atom(i, end)
        values.append(value)
        while j < end and self.t[j] == "^":
            self.powers += 1
            value, j = self.atom(j + 1, end)
            values.append(value)
        e = values.pop()
        while values:  # a^(b^(c^...)), evaluated from the top of the tower down
            base = values.pop()
            e = self.built(base * _pow10(e)) if base > 0 else 0.0
        return e, j

    def expr(self, i: int, end: int) -> float:
        """log10 bound of the value of ``t[i:end]``: the sum of its atoms' bounds.

        Numeric atoms are bounded below by 2, and ``a + b <= a * b`` for ``a, b >= 2``, so the sum
        of logs bounds any mix of sums, products and quotients of the atoms.
        """
        t = self.t
        total, last = 0.0, 0.0
        while i < end:
            c = t[i]
            if c == "^":
                self.powers += 1
                e, i = self.exponent(i + 1, end)
                powered = self.built(last * _pow10(e)) if last > 0 else 0.0
                total += powered - last
                last = powered
                continue
            if c == "!" and not (i + 1 < end and t[i + 1] == "="):
                n = _pow10(last) if last > 0 else 0.0
                fact = self.built(n * max(last, _LOG2)) if last > 0 else 0.0
                total += fact - last
                last = fact
                i += 2 if i + 1 < end and t[i + 1] == "!" else 1
                continue
            if t.startswith("\\choose", i):
                n = last
                k, i = self.atom(i + len("\\choose"), end)
                binom = self.built(_pow10(max(n, k)) * _LOG2)
                total += binom - last
                last = binom
                continue
            value, i = self.atom(i, end)
            total += value
            last = value
        return min(total, _BIG)


def screen_math(text: str, limits: ScreenLimits = ScreenLimits()) -> str:
    """``"inline"``, ``"isolate"`` or ``"reject"`` for untrusted math text (see module doc)."""
    if not isinstance(text, str) or len(text) > limits.max_chars:
        return REJECT
    if nesting_depth(text) > limits.max_depth:
        return REJECT
    t = _NOISE_RE.sub("", text).replace("**", "^")
    scan = _Scan(t)
    scan.expr(0, len(t))
    if scan.work > limits.reject_digits:
        return REJECT
    if scan.work > limits.inline_digits or scan.powers > limits.max_powers_inline:
        return ISOLATE
    return INLINE


def worst(*levels: str) -> str:
    """The most cautious of several screen levels."""
    return max(levels, key=_LEVELS.__getitem__)
