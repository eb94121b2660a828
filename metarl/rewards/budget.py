"""L1's length-controlled rewards (LCPO) and budget prompts.

L1 (Aggarwal & Welleck, 2025; cmu-l3/l1) writes a token target N into the prompt and rewards
both correctness and keeping to N. With n_y the completion length in the policy's tokenizer
and 1[correct] the graded outcome:

- **LCPO-Exact**: r = 1[correct] − α_L·|N − n_y|  (L1 used α_L = 0.0003);
- **LCPO-Max**:   s = clip(α_L·(N − n_y), −1, 1),  δ = (s + 1)/2,
  multiplicative form r = max(0, δ)·1[correct]; L1's additive form r = δ + 1[correct].

These are trace rewards (declared with :func:`metarl.rewards.reward`): plain functions whose arguments metarl passes by name
(``outcome``, ``num_tokens``, ``target_tokens``). N comes from the dataset column
``target_tokens`` (``Trace.target_tokens``); :func:`budget_prompt` writes it into the prompt
with L1's wording, appended after the instruction as L1's data scripts do.

An ungraded trace (``outcome`` None) gets no LCPO reward (``None``: the reward does not apply);
an unscorable one (``outcome`` NaN) gets NaN. A missing target or length is a configuration
problem and raises :class:`metarl.registry.ConfigError`.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from metarl.registry import ConfigError
from metarl.rewards import reward

BUDGET_MODES = ("exact", "max")
LCPO_MAX_FORMS = ("multiplicative", "additive")


@reward("trace")
def lcpo_exact(outcome: float | None, num_tokens: int | None, target_tokens: int | None,
               alpha_l: float = 0.0003) -> float | None:
    """LCPO-Exact: 1[correct] − α_L·|N − n_y|.

    >>> round(lcpo_exact(1.0, 1200, 1000), 6)           # 1 − 0.0003·200
    0.94
    >>> lcpo_exact(0.0, 500, 1000, alpha_l=0.001)       # 0 − 0.001·500
    -0.5
    """
    correct = _outcome(outcome)
    if correct is None:
        return None
    n_y, target = _num_tokens(num_tokens), _target(target_tokens)
    return correct - alpha_l * abs(target - n_y)


@reward("trace")
def lcpo_max(outcome: float | None, num_tokens: int | None, target_tokens: int | None,
             alpha_l: float = 0.01, form: str = "multiplicative") -> float | None:
    """LCPO-Max: δ = (clip(α_L·(N − n_y), −1, 1) + 1)/2; max(0, δ)·1[correct] or δ + 1[correct].

    The default α_L = 0.01 is L1's for its Max runs (0.0003 is its Exact value).

    >>> round(lcpo_max(1.0, 1030, 1000), 6)                   # s = −0.3, δ = 0.35
    0.35
    >>> lcpo_max(1.0, 0, 10000)                               # s = 100 → clipped to 1, δ = 1
    1.0
    >>> round(lcpo_max(0.0, 2000, 1000, alpha_l=0.0003, form="additive"), 6)  # δ + 0
    0.35
    """
    if form not in LCPO_MAX_FORMS:
        raise ConfigError(f"lcpo_max form={form!r} is not supported; use one of {LCPO_MAX_FORMS}")
    correct = _outcome(outcome)
    if correct is None:
        return None
    n_y, target = _num_tokens(num_tokens), _target(target_tokens)
    s = min(1.0, max(-1.0, alpha_l * (target - n_y)))
    delta = (s + 1.0) / 2.0
    reward = max(0.0, delta) * correct if form == "multiplicative" else delta + correct
    return reward


def budget_sentence(target_tokens: int | None, mode: str = "exact") -> str:
    """L1's budget instruction: "Think for N tokens." or "Think for maximum N tokens.".

    >>> budget_sentence(512), budget_sentence(512, "max")
    ('Think for 512 tokens.', 'Think for maximum 512 tokens.')
    """
    if mode not in BUDGET_MODES:
        raise ConfigError(f"budget mode={mode!r} is not supported; use one of {BUDGET_MODES}")
    n = _target(target_tokens)
    return f"Think for {n} tokens." if mode == "exact" else f"Think for maximum {n} tokens."


def budget_prompt(prompt: str | Sequence[Mapping[str, Any]], target_tokens: int | None,
                  mode: str = "exact") -> str | list[dict[str, Any]]:
    """Append L1's budget sentence to a prompt, after one space (L1: ``f"{question} {instruction}"``).

    A conversational prompt (a list of ``{"role", "content"}`` messages) gets the sentence
    appended to its last user message; the input is not modified.

    >>> budget_prompt("What is 2+2? Put the answer in \\\\boxed{}.", 300)
    'What is 2+2? Put the answer in \\\\boxed{}. Think for 300 tokens.'
    >>> budget_prompt([{"role": "user", "content": "Solve x+1=3."}], 64, mode="max")
    [{'role': 'user', 'content': 'Solve x+1=3. Think for maximum 64 tokens.'}]
    """
    sentence = budget_sentence(target_tokens, mode)
    if isinstance(prompt, str):
        return _append(prompt, sentence)
    messages = [dict(m) for m in prompt]
    for m in reversed(messages):
        if m.get("role") == "user":
            if not isinstance(m.get("content"), str):
                raise ValueError("budget_prompt can only extend a user message whose content is a string; "
                                 f"got {type(m.get('content')).__name__}")
            m["content"] = _append(m["content"], sentence)
            return messages
    raise ValueError("budget_prompt got a conversation with no user message; add one to carry the budget sentence")


def _append(text: str, sentence: str) -> str:
    """``text`` + one space + ``sentence``, the whitespace that ended ``text`` kept after the sentence (a prompt
    format that ends with a newline still hands the policy that newline as its cue).

    >>> _append("Numbers: 5 8. Target: 13.\\n", "Think for 64 tokens.")
    'Numbers: 5 8. Target: 13. Think for 64 tokens.\\n'
    """
    body = text.rstrip()
    return f"{body} {sentence}{text[len(body):]}" if body else sentence


def _outcome(outcome: float | None) -> float | None:
    """1[correct] as a float (None: ungraded; NaN: unscorable)."""
    if outcome is None:
        return None
    try:
        value = float(outcome)
    except (TypeError, ValueError):
        raise ValueError(f"outcome={outcome!r} is not a graded correctness (1.0 correct, 0.0 not)") from None
    return value


def _target(target_tokens: int | None) -> int:
    if target_tokens is None:
        raise ConfigError(
            "LCPO needs a token target N but target_tokens is missing: add a `target_tokens` column to the "
            "dataset (one int per prompt, e.g. sampled in [100, 4000] as L1 does) or set the task's "
            "`target_tokens` config key"
        )
    if isinstance(target_tokens, bool) or not isinstance(target_tokens, numbers.Real) \
            or not math.isfinite(target_tokens) or target_tokens < 0 or int(target_tokens) != target_tokens:
        raise ConfigError(f"target_tokens={target_tokens!r} must be a non-negative whole number of tokens "
                          "(L1's negative-N convention for the max budget is expressed here by using lcpo_max)")
    return int(target_tokens)


def _num_tokens(num_tokens: int | None) -> int:
    if num_tokens is None:
        raise ConfigError("LCPO needs n_y, the completion length in the policy's tokenizer, but num_tokens is "
                          "missing: score traces that carry completion_ids (or token spans)")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, numbers.Integral) or num_tokens < 0:
        raise ConfigError(f"num_tokens={num_tokens!r} must be a non-negative int (completion tokens)")
    return int(num_tokens)
