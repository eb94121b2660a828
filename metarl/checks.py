"""The checks a typed config section runs in its ``__post_init__``: one place each option is validated.

OmegaConf already enforces a field's type when a config is composed (``trainer.max_steps=abc`` fails naming
the key); these add what a type cannot say: ranges, choices, and the fix to write. Every message names the
full key (``trainer.max_steps``) and a valid value.

>>> at_least("trainer.max_steps", 0, 1, example=60)
Traceback (most recent call last):
...
metarl.registry.ConfigError: trainer.max_steps=0 must be a whole number >= 1; set it like trainer.max_steps=60
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from metarl.registry import ConfigError


def _number(key: str, value: Any, integer: bool, example: Any, nullable: bool = False) -> float | None:
    if value is None and nullable:
        return None
    what = ("a whole number" if integer else "a number") + (" or null" if nullable else "")
    if isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be {what}; set it like {key}={example}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} must be {what}; set it like {key}={example}") from None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        raise ConfigError(f"{key}={value!r} must be {what}; set it like {key}={example}")
    return number


def at_least(key: str, value: Any, low: float, *, example: Any, integer: bool = True,
             nullable: bool = False) -> Any:
    """``value`` (a whole number unless ``integer=False``) is >= ``low``; returns it as int / float."""
    number = _number(key, value, integer, example, nullable)
    if number is None:
        return None
    if number < low:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(f"{key}={value!r} must be {kind} >= {low:g}; set it like {key}={example}")
    return int(number) if integer else number


def within(key: str, value: Any, low: float, high: float, *, example: Any, low_open: bool = False,
           high_open: bool = False) -> float:
    """A number in the interval ``[low, high]`` (``low_open`` / ``high_open``: that end excluded)."""
    number = _number(key, value, False, example)
    assert number is not None
    if number < low or number > high or (low_open and number == low) or (high_open and number == high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{key}={value!r} must be a number in {interval}; set it like {key}={example}")
    return number


def one_of(key: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` is one of ``allowed`` (``null`` for None)."""
    if value not in allowed or isinstance(value, bool) != any(isinstance(a, bool) and a == value for a in allowed):
        names = ", ".join("null" if a is None else str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
        example = next((a for a in allowed if a is not None), allowed[0])
        raise ConfigError(f"{key}={value!r} is not one of {names}; e.g. {key}={example}")
    return value


def token_counts(key: str, value: Any, *, nullable: bool, example: str) -> list[int] | int | None:
    """A whole number of tokens >= 1, or a list of them (``nullable``: also null)."""
    if value is None and nullable:
        return None
    values = list(value) if isinstance(value, list | tuple) else [value]
    ok = bool(values) and all(_is_whole(v) and float(v) >= 1 for v in values)
    if not ok:
        kind = "null, " if nullable else ""
        raise ConfigError(f"{key}={value!r} must be {kind}a whole number of tokens >= 1 or a non-empty list of "
                          f"them, e.g. {key}={example}")
    return [int(v) for v in values] if isinstance(value, list | tuple) else int(values[0])


def _is_whole(v: Any) -> bool:
    """Whether ``v`` is a finite whole number (not a bool), as :func:`at_least` requires one."""
    try:
        return _number("", v, True, "") is not None
    except ConfigError:
        return False
