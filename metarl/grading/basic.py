"""Exact-string and numeric graders: ``grade(prediction, answer) -> bool``, never raising.

Numbers are parsed by hand (no ``eval``, no ``float()`` on unbounded exponents, no
``Fraction()`` of a string that could build a giant integer): mantissa digits and exponents
are bounded *before* any value is built, so ``1e999999999`` or a million-digit string is
refused in microseconds.
"""
from __future__ import annotations

import re
from fractions import Fraction

from metarl.grading.deadline import note
from metarl.grading.extraction import _NUMBER_RE, _strip_boxed

MAX_DIGITS = 1000
"""Mantissa digits above which a number is refused (treated as unparseable)."""
MAX_EXPONENT = 1000
"""Decimal exponents (``1e1000``, ``\\times 10^{1000}``) above which a number is refused."""
MAX_CHARS = 10_000
"""Inputs longer than this are graded on their last this-many characters."""

_WS_RE = re.compile(r"\s+")
_DECIMAL_RE = re.compile(
    r"(?P<sign>[-+]?)(?:(?P<int>\d{1,3}(?:,\d{3})+|\d*)(?:\.(?P<frac>\d*))?)"
    r"(?:[eE](?P<exp>[-+]?\d+)|(?:\\times|\\cdot|×|\*|x)10\^\{?(?P<exp10>[-+]?\d+)\}?)?"
)
_FRACTION_RE = re.compile(r"(?P<num>[-+]?[\d.,]+)/(?P<den>[-+]?[\d.,]+)")
_LATEX_FRAC_RE = re.compile(
    r"(?P<sign>[-+]?)\\[dt]?frac(?:\{(?P<a>[^{}]*)\}|(?P<a1>\d))(?:\{(?P<b>[^{}]*)\}|(?P<b1>\d))"
)
_MIXED_RE = re.compile(r"(?P<whole>\d+)\s+(?P<num>\d+)/(?P<den>\d+)")
_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_SPACING_RE = re.compile(r"\\[,;:! ]|\\quad|\\qquad|\{,\}|~")


def _canonical_text(s: str, case_sensitive: bool, normalize_whitespace: bool) -> str:
    s = s.strip()
    if normalize_whitespace:
        s = _WS_RE.sub(" ", s)
    if not case_sensitive:
        s = s.casefold()
    return s


def grade_exact(
    prediction: str | None,
    answer: str,
    *,
    case_sensitive: bool = False,
    normalize_whitespace: bool = True,
    strip_period: bool = True,
) -> bool:
    """String equality after normalising whitespace (runs -> one space, ends stripped) and case.

    >>> grade_exact("  Paris ", "paris")
    True
    >>> grade_exact("New   York.", "new york")
    True
    >>> grade_exact("Paris", "paris", case_sensitive=True)
    False
    """
    if not isinstance(prediction, str) or not isinstance(answer, str):
        return False
    if len(prediction) > MAX_CHARS + len(answer):
        return False
    a = _canonical_text(prediction, case_sensitive, normalize_whitespace)
    b = _canonical_text(answer, case_sensitive, normalize_whitespace)
    if strip_period:
        a, b = a.rstrip(".").rstrip(), b.rstrip(".").rstrip()
    return a == b


def _clean_number_text(s: str) -> tuple[str, bool]:
    """Drop LaTeX/markdown decoration around a number; return (text, had a percent sign)."""
    s = s.strip()
    for _ in range(3):
        before = s
        s = _strip_boxed(s)
        s = _TEXT_RE.sub(r"\1", s)
        s = s.strip().strip("$").strip()
        if s.startswith("\\(") and s.endswith("\\)"):
            s = s[2:-2].strip()
        if s == before:
            break
    s = _SPACING_RE.sub("", s)
    s = s.replace("\\$", "").replace("$", "").replace("\u2212", "-").replace("\\left", "").replace("\\right", "")
    s = s.replace(" ", "").rstrip(".")
    percent = False
    for p in ("\\%", "%", "\\percent"):
        if s.endswith(p):
            s, percent = s[: -len(p)], True
            break
    if s.startswith("(") and s.endswith(")") and s.count("(") == 1:
        s = s[1:-1]
    return s, percent


def _decimal(s: str, max_digits: int, max_exponent: int) -> Fraction | None:
    m = _DECIMAL_RE.fullmatch(s)
    if not m:
        return None
    int_part = (m.group("int") or "").replace(",", "")
    frac_part = m.group("frac") or ""
    if not int_part and not frac_part:
        return None
    if len(int_part) + len(frac_part) > max_digits:
        return None
    exp_text = m.group("exp") or m.group("exp10") or "0"
    if len(exp_text.lstrip("+-").lstrip("0")) > 6:
        return None
    exp = int(exp_text) - len(frac_part)
    if abs(int(exp_text)) > max_exponent:
        return None
    mantissa = int(int_part + frac_part or "0")
    value = Fraction(mantissa * 10**exp) if exp >= 0 else Fraction(mantissa, 10**-exp)
    return -value if m.group("sign") == "-" else value


def parse_number(
    text: str | None, *, max_digits: int = MAX_DIGITS, max_exponent: int = MAX_EXPONENT
) -> Fraction | None:
    """The exact value of a number written as an int, decimal, ``1,234``, ``3.5e-2``,
    ``2.1 \\times 10^{3}``, ``a/b``, ``\\frac{a}{b}``, ``1 1/2``, with ``$``, ``\\boxed``,
    ``\\text`` and a trailing ``%`` (ignored: ``50%`` parses as 50) stripped; None otherwise.

    >>> parse_number("1,234.5")
    Fraction(2469, 2)
    >>> parse_number("\\\\frac{3}{4}"), parse_number("-2/6"), parse_number("$5\\\\%$")
    (Fraction(3, 4), Fraction(-1, 3), Fraction(5, 1))
    >>> parse_number("1e999999") is None  # exponent above max_exponent: refused, never built
    True
    """
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        return None
    return _parse(text, max_digits, max_exponent)[0]


def _parse(text: str, max_digits: int, max_exponent: int) -> tuple[Fraction | None, bool]:
    m = _MIXED_RE.fullmatch(text.strip()) if len(text) < 64 else None
    if m:  # "1 1/2" (before spaces are dropped, which would read it as 11/2)
        den = int(m.group("den"))
        return (None if den == 0 else int(m.group("whole")) + Fraction(int(m.group("num")), den)), False
    s, percent = _clean_number_text(text)
    if not s or len(s) > 2 * max_digits + 64:
        return None, percent
    value = _decimal(s, max_digits, max_exponent)
    if value is not None:
        return value, percent
    m = _LATEX_FRAC_RE.fullmatch(s)
    if m:
        a = _decimal(m.group("a") if m.group("a") is not None else m.group("a1"), max_digits, max_exponent)
        b = _decimal(m.group("b") if m.group("b") is not None else m.group("b1"), max_digits, max_exponent)
        if a is None or b is None or b == 0:
            return None, percent
        return (-(a / b) if m.group("sign") == "-" else a / b), percent
    m = _FRACTION_RE.fullmatch(s) or None
    if m:
        a = _decimal(m.group("num"), max_digits, max_exponent)
        b = _decimal(m.group("den"), max_digits, max_exponent)
        if a is None or b is None or b == 0:
            return None, percent
        return a / b, percent
    return None, percent


def _close(a: Fraction, b: Fraction, rel_tol: float, abs_tol: float) -> bool:
    if a == b:
        return True
    if a.denominator == 1 and b.denominator == 1:
        return False  # two integers: exact
    diff = abs(a - b)
    return diff <= abs_tol or diff <= Fraction(rel_tol) * max(abs(a), abs(b))


def grade_number(
    prediction: str | None,
    answer: str,
    *,
    rel_tol: float = 1e-6,
    abs_tol: float = 0.0,
    percent: str = "either",
    last_number: bool = True,
    max_digits: int = MAX_DIGITS,
    max_exponent: int = MAX_EXPONENT,
) -> bool:
    """Numeric equality: exact for two integers, else within ``rel_tol`` (relative) or ``abs_tol``.

    A prediction that is not a number as a whole is graded by the last number in it when
    ``last_number`` ("x = 5" -> 5). ``percent``: ``"either"`` (default) accepts ``50%`` for
    both 50 and 0.5, ``"drop"`` reads ``50%`` as 50, ``"scale"`` reads it as 0.5. Numbers
    longer than ``max_digits`` or with exponents above ``max_exponent`` are never built: they
    grade as incorrect unless the two strings are identical.

    >>> grade_number("1,000", "1000"), grade_number("0.5", "\\\\frac12"), grade_number("-3", "3")
    (True, True, False)
    >>> grade_number("50%", "0.5"), grade_number("The total is $18.", "18")
    (True, True)
    """
    if not isinstance(prediction, str) or not isinstance(answer, str):
        return False
    if percent not in ("either", "drop", "scale"):
        raise ValueError(f"percent={percent!r}: use 'either', 'drop' or 'scale'")
    if len(prediction) > MAX_CHARS:
        prediction = prediction[-MAX_CHARS:]
    if len(answer) > MAX_CHARS:
        return False
    if prediction.strip() and prediction.strip() == answer.strip():
        return True
    gold, gold_pct = _parse(answer, max_digits, max_exponent)
    if gold is None:
        note("screened")
        return False
    pred, pred_pct = _parse(prediction, max_digits, max_exponent)
    if pred is None and last_number:
        last = None
        for m in _NUMBER_RE.finditer(prediction):
            last = m
        if last is not None:
            pred, pred_pct = _parse(last.group(0), max_digits, max_exponent)
    if pred is None:
        return False
    golds = _readings(gold, gold_pct, percent)
    return any(_close(p, g, rel_tol, abs_tol) for p in _readings(pred, pred_pct, percent) for g in golds)


def _readings(value: Fraction, had_percent: bool, mode: str) -> tuple[Fraction, ...]:
    if not had_percent or mode == "drop":
        return (value,)
    if mode == "scale":
        return (value / 100,)
    return (value, value / 100)
