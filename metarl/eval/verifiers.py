"""Verifier scores for Best-of-N and weighted Best-of-N: ``score(prompt, completion, answer_text) -> float``.

Built-in scores (select with ``best_of_n.verifier=<name>``; any dotted path to such a callable works too):

* ``self_verify`` (default): the policy's own last verification verdict — 1.0 if the last
  ``<verify>…</verify>`` block of the completion says the answer is correct, else 0.0 (no verify
  block, a negative or no verdict). No extra model call.
* ``mean_logprob``: the policy's mean token log-probability of the completion given the prompt
  (one teacher-forced forward pass), by default as ``exp(mean log-prob)`` — the per-token geometric
  mean probability, in (0, 1] — so that weighted Best-of-N sums positive weights; ``exp=False``
  returns the raw mean log-prob (fine for Best-of-N, wrong for summing votes).

A verifier that needs the policy either takes ``model``/``tokenizer`` arguments (:func:`build_verifier`
passes them when given) or defines ``bind(model, tokenizer)``, which ``metarl-eval`` calls once the
model is loaded (strategies are built, and checked, before the model).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

from metarl.grading.extraction import DEFAULT_NEGATIVE, DEFAULT_POSITIVE, parse_verdict
from metarl.registry import ConfigError, build, import_object
from metarl.tasks.base import tagged_blocks

VERIFIERS: dict[str, str] = {
    "self_verify": "metarl.eval.verifiers.SelfVerification",
    "mean_logprob": "metarl.eval.verifiers.MeanLogProb",
}
"""Short verifier names -> dotted paths."""


class SelfVerification:
    """1.0 if the completion's last ``<tag>`` block (default ``verify``) states a positive verdict, else 0.0.

    ``fallback="whole"`` reads the verdict from the whole completion when it has no such block (for
    formats without verify tags; the last verdict word wins); ``"none"`` (default) scores it 0.0.

    >>> SelfVerification()("", "<attempt>3+9</attempt><verify>incorrect</verify><revise>8+12</revise>"
    ...                    "<verify>8+12=20 correct</verify>", "8+12")
    1.0
    """

    name = "self_verify"

    def __init__(self, tag: str = "verify", positive: Iterable[str] = DEFAULT_POSITIVE,
                 negative: Iterable[str] = DEFAULT_NEGATIVE, fallback: str = "none") -> None:
        if fallback not in ("none", "whole"):
            raise ConfigError(f"self_verify fallback={fallback!r}: use 'none' or 'whole'")
        self.tag, self.fallback = tag, fallback
        self.positive, self.negative = tuple(positive), tuple(negative)

    def __call__(self, prompt: Any, completion: str, answer_text: str | None) -> float:
        blocks = [content for tag, content in tagged_blocks(completion, (self.tag,)) if tag == self.tag]
        if blocks:
            text = blocks[-1]
        elif self.fallback == "whole":
            text = completion
        else:
            return 0.0
        return 1.0 if parse_verdict(text, self.positive, self.negative) is True else 0.0


class MeanLogProb:
    """The policy's mean token log-probability of ``completion`` after ``prompt`` (``exp`` of it by default)."""

    name = "mean_logprob"

    def __init__(self, model=None, tokenizer=None, exp: bool = True) -> None:
        self.model, self.tokenizer, self.exp = model, tokenizer, exp

    def bind(self, model, tokenizer) -> None:
        """Score with this policy (called by ``metarl-eval`` after loading the model)."""
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, prompt: Any, completion: str, answer_text: str | None) -> float:
        from metarl.engine import prompt_ids_for

        if self.model is None or self.tokenizer is None:
            raise RuntimeError("mean_logprob has no model: pass model= and tokenizer= or call bind(model, tokenizer)")
        p = prompt_ids_for(self.tokenizer, prompt)
        c = self.tokenizer(completion, add_special_tokens=False)["input_ids"]
        if not c:
            return 0.0 if self.exp else -math.inf
        device = next(self.model.parameters()).device
        ids = torch.tensor([p + c], dtype=torch.long, device=device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(input_ids=ids).logits[0, len(p) - 1:-1].float()
        finally:
            self.model.train(was_training)
        lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, len(p):, None]).mean().item()
        return math.exp(lp) if self.exp else lp


def verifier_name(verifier: Callable[..., Any]) -> str:
    """A verifier's name: its ``name`` attribute, else its function / class name."""
    name = getattr(verifier, "name", None)
    if isinstance(name, str) and name:
        return name
    fn = getattr(verifier, "func", verifier)  # functools.partial
    return getattr(fn, "__name__", None) or type(fn).__name__


def build_verifier(spec: Any = "self_verify", *, model=None, tokenizer=None) -> Callable[..., float]:
    """A verifier from a short name (:data:`VERIFIERS`), dotted path, ``_target_`` mapping or callable.

    ``model``/``tokenizer`` are passed to verifiers whose constructor (or function) accepts them.
    """
    if spec is None:
        spec = "self_verify"
    if callable(spec) and not isinstance(spec, str):
        return spec
    target = spec if isinstance(spec, str) else dict(spec).get("_target_")
    extra: dict[str, Any] = {}
    if isinstance(target, str):
        try:
            obj = import_object(VERIFIERS.get(target, target))
            params = inspect.signature(obj).parameters
        except (ImportError, ValueError, TypeError):
            params = {}  # build() reports the unknown name
        given = set(dict(spec)) if not isinstance(spec, str) else set()
        extra = {k: v for k, v in (("model", model), ("tokenizer", tokenizer))
                 if k in params and k not in given and v is not None}
    verifier = build(spec, VERIFIERS, kind="verifier", **extra)
    if not callable(verifier):
        raise ConfigError(f"verifier {spec!r} is not callable; it must be score(prompt, completion, answer_text)")
    return verifier
