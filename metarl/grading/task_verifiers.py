"""Task verifiers: answers whose correctness depends on the problem, not on one gold string.

A :class:`Verifier` is any callable ``verifier(prediction, answer, prompt) -> bool``; wrap it
with :func:`metarl.grading.build_grader` to get the never-raise and time-bound guarantees and
failure counters. :class:`CountdownVerifier` is the built-in example: an arithmetic puzzle
("using the numbers [3, 5, 7], make 22") where *any* valid expression is correct. Expressions
are parsed by a small recursive-descent evaluator over exact fractions (no ``eval``; no
powers; bounded length, depth and literal count), so model output cannot run code or build
huge numbers.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol, runtime_checkable

from metarl.grading.basic import parse_number
from metarl.grading.extraction import extract_answer


@runtime_checkable
class Verifier(Protocol):
    """``verifier(prediction, answer, prompt) -> bool``: is ``prediction`` a correct answer to
    the problem in ``prompt`` whose reference answer is ``answer``?"""

    def __call__(self, prediction: str | None, answer: str, prompt: str) -> bool: ...


_LATEX_OPS = (("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("×", "*"), ("·", "*"), ("÷", "/"), ("−", "-"))
_TOKEN_RE = re.compile(r"\s*(?:(\d+)|([-+*/()]))")


class ExpressionError(ValueError):
    """The text is not a well-formed arithmetic expression over integers with + - * / ( )."""


def tokenize_arithmetic(expr: str, max_tokens: int = 200) -> list[str]:
    """Tokens of an integer expression with ``+ - * / ( )`` (LaTeX ``\\times``, ``\\div`` too).

    >>> tokenize_arithmetic("(3 + 5) \\\\times 7")
    ['(', '3', '+', '5', ')', '*', '7']
    """
    for src, dst in _LATEX_OPS:
        expr = expr.replace(src, dst)
    expr = expr.replace("\\left", "").replace("\\right", "").replace("{", "(").replace("}", ")").strip()
    tokens: list[str] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            if expr[pos:].strip() == "":
                break
            raise ExpressionError(f"unexpected {expr[pos:pos + 10]!r} at position {pos}")
        tokens.append(m.group(1) or m.group(2))
        if len(tokens) > max_tokens:
            raise ExpressionError(f"expression longer than {max_tokens} tokens")
        pos = m.end()
    return tokens


def eval_arithmetic(
    expr: str, *, max_tokens: int = 200, max_depth: int = 32, max_digits: int = 12
) -> tuple[Fraction, list[int]]:
    """Exact value of an integer expression and the literals it uses, in order.

    Binary ``+ - * /`` and parentheses only (no unary minus, no powers). Raises
    ``ExpressionError`` (a ``ValueError``) on anything else or on division by zero.

    >>> eval_arithmetic("(3 + 5) * 7 / 2")
    (Fraction(28, 1), [3, 5, 7, 2])
    """
    tokens = tokenize_arithmetic(expr, max_tokens)
    if not tokens:
        raise ExpressionError("empty expression")
    used: list[int] = []
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        return tok

    def factor(depth: int) -> Fraction:
        if depth > max_depth:
            raise ExpressionError(f"parentheses nested deeper than {max_depth}")
        tok = peek()
        if tok is None:
            raise ExpressionError("expression ends early")
        if tok == "(":
            take()
            value = expression(depth + 1)
            if peek() != ")":
                raise ExpressionError("unbalanced parentheses")
            take()
            return value
        if tok.isdecimal():
            if len(tok) > max_digits:
                raise ExpressionError(f"number longer than {max_digits} digits")
            take()
            used.append(int(tok))
            return Fraction(int(tok))
        raise ExpressionError(f"unexpected {tok!r}")

    def term(depth: int) -> Fraction:
        value = factor(depth)
        while peek() in ("*", "/"):
            op = take()
            rhs = factor(depth)
            if op == "/" and rhs == 0:
                raise ExpressionError("division by zero")
            value = value * rhs if op == "*" else value / rhs
        return value

    def expression(depth: int) -> Fraction:
        value = term(depth)
        while peek() in ("+", "-"):
            op = take()
            rhs = term(depth)
            value = value + rhs if op == "+" else value - rhs
        return value

    value = expression(0)
    if pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[pos]!r} after a complete expression")
    return value, used


@dataclass
class CountdownVerifier:
    """Arithmetic puzzle: the prediction is an expression over the prompt's numbers (each at
    most once; all of them if ``use_all``) that evaluates exactly to ``answer``.

    The numbers are the first match of ``numbers_pattern`` in the prompt (default: a bracketed
    list such as ``[3, 5, 7]``). The prediction's stated answer is used (``\\boxed{}``,
    ``<answer>``, "answer is"), and an ``= target`` tail is ignored.

    >>> v = CountdownVerifier()
    >>> prompt = "Using the numbers [3, 5, 7], write an expression equal to 56."
    >>> v("<answer>(3 + 5) * 7</answer>", "56", prompt), v("<answer>7 * (5 + 3) = 56</answer>", "56", prompt)
    (True, True)
    >>> v("<answer>7 * 8</answer>", "56", prompt), v("<answer>3*3*5</answer>", "45", prompt)
    (False, False)
    """

    use_all: bool = False
    numbers_pattern: str = r"\[\s*(\d+(?:\s*,\s*\d+)*)\s*\]"
    max_chars: int = 500

    def numbers(self, prompt: str) -> list[int]:
        """The numbers a prompt makes available."""
        m = re.search(self.numbers_pattern, prompt or "")
        if m is None:
            raise ValueError(
                f"CountdownVerifier found no numbers in the prompt (pattern {self.numbers_pattern!r}); "
                "write them as a bracketed list like [3, 5, 7] or pass numbers_pattern"
            )
        return [int(x) for x in re.findall(r"\d+", m.group(1))]

    def __call__(self, prediction: str | None, answer: str, prompt: str) -> bool:
        if not isinstance(prediction, str):
            return False
        available = Counter(self.numbers(prompt))
        target = parse_number(str(answer))
        if target is None:
            raise ValueError(f"CountdownVerifier: the answer {str(answer)[:40]!r} is not a number")
        expr = extract_answer(prediction) or prediction.strip()
        if "=" in expr:
            expr = expr.split("=")[0]
        if len(expr) > self.max_chars:
            return False
        try:
            value, used = eval_arithmetic(expr, max_tokens=4 * sum(available.values()) + 8)
        except ExpressionError:
            return False
        counts = Counter(used)
        if any(counts[n] > available[n] for n in counts):
            return False
        if self.use_all and counts != available:
            return False
        return value == target
