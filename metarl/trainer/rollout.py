"""Multi-episode rollouts for the trainer (a TRL ``rollout_func``).

Modes (``Rollout(mode=...)``):

- ``single``: one generation of at most ``cap`` tokens (TRL's own generation does this when no answer has
  to be forced, and then this rollout is not used at all);
- ``episodes``: generate episode by episode, stopping at an episode boundary (``episode_stop`` strings such
  as ``</attempt>``); between episodes an optional ``feedback`` function may insert text (e.g. a verifier's
  message), which is masked out of the loss;
- ``budget_forcing`` (s1): when the model stops before the cap, its end-of-sequence token is replaced by a
  continuation word (``"Wait"``, masked out of the loss) and generation goes on, up to ``max_continuations``.

In every mode the **compute cap C** bounds the tokens the policy generates before the answer ("thinking
tokens"; inserted text is not counted): generation never goes past it. With ``force_answer=True`` a stream
that hits the cap gets the meta-prover's termination suffix (masked) and a short forced answer of at most
``answer_tokens`` tokens (trained like any policy token).

The returned dict follows TRL's ``rollout_func`` contract: ``prompt_ids``, ``completion_ids``, ``logprobs``
(None: recomputed by TRL), ``env_mask`` (1 = policy token, 0 = inserted text) and per-sample extras
``thinking_tokens`` and ``forced`` that reach the reward computation.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from metarl.generation import generate_batch
from metarl.registry import build, call_matching


@dataclass
class _Stream:
    index: int
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    thinking: int = 0
    episodes: int = 0
    continuations: int = 0
    done: bool = False
    forced: bool = False

    def add(self, toks: Sequence[int], policy: bool, thinking: bool = True) -> None:
        """Append tokens; ``policy`` ones are trained on, and count as thinking unless ``thinking=False``."""
        self.ids.extend(toks)
        self.mask.extend([1 if policy else 0] * len(toks))
        if policy and thinking:
            self.thinking += len(toks)


def verifier_feedback(episode_text: str, answer: str | None, grader: Callable, extract_answer: Callable,
                      prompt: str = "") -> str | None:
    """Feedback after an attempt/revise episode: the verifier's verdict on the answer it states.

    >>> verifier_feedback("<attempt>3+4</attempt>", "3+4", lambda p, a, q="": p == a,
    ...                   lambda t: t[9:-10])
    '\\n[verifier: correct]\\n'
    """
    if answer is None:
        return None
    pred = extract_answer(episode_text)
    if pred is None:
        return None
    ok = bool(grader(pred, answer, prompt))
    return f"\n[verifier: {'correct' if ok else 'incorrect'}]\n"


class Rollout:
    """A TRL ``rollout_func``: see the module docstring for the modes and the cap."""

    def __init__(self, mode: str = "single", cap: int = 256, force_answer: bool = True,
                 suffix: str = "<answer>", answer_tokens: int = 16, answer_stop: Sequence[str] | None = None,
                 episode_stop: Sequence[str] = ("</attempt>", "</verify>", "</revise>"), max_episodes: int = 8,
                 episode_tokens: int | None = None, feedback: Any = None, continuation: str = "Wait",
                 max_continuations: int = 2, grader: Callable | None = None,
                 extract_answer: Callable | None = None):
        if mode not in ("single", "episodes", "budget_forcing"):
            raise ValueError(f"rollout.mode={mode!r}: use single, episodes or budget_forcing")
        if cap <= 0:
            raise ValueError(f"rollout cap must be positive, got {cap}")
        self.mode, self.cap, self.force_answer = mode, int(cap), force_answer
        self.suffix, self.answer_tokens, self.answer_stop = suffix, answer_tokens, list(answer_stop or [])
        self.episode_stop, self.max_episodes = list(episode_stop), max_episodes
        self.episode_tokens = episode_tokens
        self.feedback = build(feedback, kind="feedback") if feedback else None
        self.continuation, self.max_continuations = continuation, max_continuations
        self.grader, self.extract_answer = grader, extract_answer

    def __call__(self, prompts: list[Any], trainer) -> dict[str, Any]:
        prompt_ids, _, _ = trainer._tokenize_prompts(prompts)
        tok = trainer.processing_class
        tok = getattr(tok, "tokenizer", tok)
        streams = [_Stream(i, list(p)) for i, p in enumerate(prompt_ids)]
        answers = getattr(trainer, "batch_answers", None) or [None] * len(streams)
        eos = set(trainer.eos_token_ids)
        with trainer_generation_model(trainer) as model:
            self._think(model, tok, trainer, streams, prompts, answers)
            if self.force_answer:
                capped = [s for s in streams if s.thinking >= self.cap and not (s.ids and s.ids[-1] in eos)]
                self._force(model, tok, trainer, capped)
        return {
            "prompt_ids": [s.prompt_ids for s in streams],
            "completion_ids": [s.ids for s in streams],
            "logprobs": None,
            "env_mask": [s.mask for s in streams],
            "thinking_tokens": [s.thinking for s in streams],
            "forced": [s.forced for s in streams],
        }

    def _think(self, model, tok, trainer, streams: list[_Stream], prompts, answers) -> None:
        eos = list(trainer.eos_token_ids)
        while True:
            active = [s for s in streams if not s.done]
            if not active:
                return
            room = [self.cap - s.thinking for s in active]
            step = max(room)
            if self.mode == "episodes" and self.episode_tokens:
                step = min(step, self.episode_tokens)
            stops = self.episode_stop if self.mode == "episodes" else None
            new = generate_batch(model, tok, [s.prompt_ids + s.ids for s in active], trainer.generation_config,
                                 step, eos, stops)
            for s, toks, r in zip(active, new, room):
                toks = toks[:r]  # never past the cap
                s.add(toks, policy=True)
                ended = bool(toks) and toks[-1] in eos
                if s.thinking >= self.cap or not toks:
                    s.done = True
                elif self.mode == "episodes":
                    s.episodes += 1
                    if ended or s.episodes >= self.max_episodes:
                        s.done = True
                    elif self.feedback is not None:
                        self._feedback(s, tok, prompts[s.index], answers[s.index])
                elif self.mode == "budget_forcing" and ended and s.continuations < self.max_continuations:
                    s.ids.pop(), s.mask.pop()
                    s.thinking -= 1
                    s.add(tok.encode(self.continuation, add_special_tokens=False), policy=False)
                    s.continuations += 1
                else:
                    s.done = True

    def _feedback(self, s: _Stream, tok, prompt, answer) -> None:
        text = tok.decode(s.ids, skip_special_tokens=True)
        msg = call_matching(self.feedback, {
            "episode_text": _last_episode_text(text, self.episode_stop), "completion": text,
            "prompt": prompt if isinstance(prompt, str) else str(prompt), "answer": answer,
            "grader": self.grader, "extract_answer": self.extract_answer,
        })
        if msg:
            s.add(tok.encode(msg, add_special_tokens=False), policy=False)

    def _force(self, model, tok, trainer, streams: list[_Stream]) -> None:
        if not streams:
            return
        suffix_ids = tok.encode(self.suffix, add_special_tokens=False)
        for s in streams:
            s.add(suffix_ids, policy=False)
        new = generate_batch(model, tok, [s.prompt_ids + s.ids for s in streams], trainer.generation_config,
                             self.answer_tokens, list(trainer.eos_token_ids), self.answer_stop or None)
        for s, toks in zip(streams, new):
            s.add(toks, policy=True, thinking=False)
            s.forced = True


def _last_episode_text(text: str, stops: Sequence[str]) -> str:
    """The episode that just ended: the text after the previous episode boundary.

    >>> _last_episode_text("<attempt>1</attempt><verify>ok</verify>", ["</attempt>", "</verify>"])
    '<verify>ok</verify>'
    """
    body = text
    for st in stops:
        if body.endswith(st):
            body = body[: -len(st)]
            break
    ends = [body.rfind(st) + len(st) for st in stops if st in body]
    return text[max(ends) if ends else 0:]


class trainer_generation_model:
    """Context manager yielding the trainer's model ready for ``generate`` (unwrapped, eval, no grad)."""

    def __init__(self, trainer):
        self.trainer = trainer

    def __enter__(self):
        from trl.models import unwrap_model_for_generation

        t = self.trainer
        self._ctx = unwrap_model_for_generation(t.model_wrapped, t.accelerator,
                                                gather_deepspeed3_params=t.args.ds3_gather_for_generation,
                                                generation_kwargs=t.generation_kwargs)
        return self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)
