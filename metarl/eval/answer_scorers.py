"""Verifier scores for Best-of-N and weighted Best-of-N: ``score(prompt, completion, answer_text) -> float``.

A verifier is a ``_target_`` mapping built with :func:`metarl.registry.instantiate_callable` (a class is
instantiated with the keyword arguments; a function verifier says ``_partial_: true``), e.g.
``best_of_n.verifier='{_target_: metarl.eval.answer_scorers.MeanLogProb}'``. Built-ins:

* :class:`SelfVerification` (default, reported as ``self_verify``): the policy's own last verification
  verdict — 1.0 if the last ``<verify>…</verify>`` block of the completion says the answer is correct, else
  0.0 (no verify block, a negative or no verdict). No extra model call.
* :class:`MeanLogProb` (``mean_logprob``): the policy's mean token log-probability of the completion given
  the prompt (one teacher-forced forward pass), by default as ``exp(mean log-prob)`` — the per-token geometric
  mean probability, in (0, 1] — so that weighted Best-of-N sums positive weights; ``exp=False``
  returns the raw mean log-prob (fine for Best-of-N, wrong for summing votes).

A verifier that needs the policy either takes ``model``/``tokenizer`` arguments (:func:`build_verifier`
passes them when given) or defines ``bind(model, tokenizer)``, which ``metarl-eval`` calls once the
model is loaded (strategies are built, and checked, before the model).
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from metarl.grading.extraction import DEFAULT_NEGATIVE, DEFAULT_POSITIVE, parse_verdict
from metarl.registry import ConfigError, instantiate_callable, plain, target_of
from metarl.tasks.base import tagged_blocks

SELF_VERIFICATION = "metarl.eval.answer_scorers.SelfVerification"
"""The default verifier's ``_target_`` (a null verifier spec means ``{_target_: SELF_VERIFICATION}``)."""


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


def is_self_verification(spec: Any) -> bool:
    """Whether a verifier spec builds :class:`SelfVerification` (null: the default, which does).

    >>> is_self_verification(None), is_self_verification({"_target_": "metarl.eval.answer_scorers.MeanLogProb"})
    (True, False)
    """
    if spec is None:
        return True
    obj = target_of(spec)
    return isinstance(obj, type) and issubclass(obj, SelfVerification)


def with_verdict(spec: Any, verdict: Mapping[str, Any] | None) -> Any:
    """The verifier spec with the run's verdict words (config ``verdict``: ``positive`` / ``negative``) for
    self-verification, unless the spec sets them itself; any other spec is returned as it is.

    >>> with_verdict(None, {"negative": ["wrong"]})
    {'_target_': 'metarl.eval.answer_scorers.SelfVerification', 'negative': ['wrong']}
    """
    if not verdict or not is_self_verification(spec):
        return spec
    spec = dict(plain(spec) or {"_target_": SELF_VERIFICATION})
    return {**spec, **{k: v for k, v in dict(verdict).items() if k not in spec}}


def build_verifier(spec: Any = None, *, model=None, tokenizer=None, key: str = "best_of_n.verifier"
                   ) -> Callable[..., float]:
    """A verifier from a ``_target_`` mapping (``None``: :class:`SelfVerification`) or a callable, returned as it is.

    ``model``/``tokenizer`` are passed to verifiers whose constructor (or function) accepts them and whose
    spec does not set them. Errors are :class:`~metarl.registry.ConfigError` naming ``key``.

    >>> build_verifier({"_target_": "metarl.eval.answer_scorers.SelfVerification", "tag": "check"}).tag
    'check'
    >>> build_verifier("self_verify")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: best_of_n.verifier='self_verify': a verifier is a mapping with `_target_` ...
    """
    spec = plain(spec)
    if spec is None:
        spec = {"_target_": SELF_VERIFICATION}
    if callable(spec) and not isinstance(spec, str | Mapping):
        return spec
    extra: dict[str, Any] = {}
    obj = target_of(spec)
    if obj is not None:
        try:
            params = inspect.signature(obj).parameters
        except (ValueError, TypeError):
            params = {}
        given = set(dict(spec))
        extra = {k: v for k, v in (("model", model), ("tokenizer", tokenizer))
                 if k in params and k not in given and v is not None}
    verifier = instantiate_callable(spec, "verifier", key, **extra)
    if not callable(verifier):
        raise ConfigError(f"{key}: {verifier!r} is not callable; a verifier is score(prompt, completion, "
                          f"answer_text) -> float (a function verifier's config says `_partial_: true`)")
    return verifier
