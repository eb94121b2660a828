"""Streams: what a policy writes for a prompt under the compute cap C, on any backend.

A stream is the completion of one prompt: policy tokens, optional inserted text (feedback between
episodes, s1 continuations), and — when the stream was cut before it ended on its own — the
meta-prover's termination suffix and a forced answer. :meth:`Engine.run` generates a batch of
streams step by step with **one backend call per step for the whole batch**:

* ``single``: one call of at most C tokens;
* episode by episode (``StreamSpec.episode_stop``): each call stops at an episode boundary (a stop
  string such as ``</attempt>``); between episodes ``feedback(i, text)`` may insert text;
* continuation (``StreamSpec.continuation``; s1 budget forcing, Snell et al.'s sequential
  revisions): a stream that ends before the cap has its end replaced by the continuation text and goes
  on, at most ``max_continuations`` times. The end is the end-of-sequence token, or — for R1-style
  streams (``prover.think_end``) — the tokens that close the thought, as s1 suppresses the
  end-of-thinking delimiter.

**R1-style streams** (``prover.think_end`` set, e.g. ``</think>``): a stream that closes its thought
before the cap then writes its answer (at most ``prover.answer_tokens`` tokens, not counted against C;
``Stream.closed``); one that is cut first gets the forced answer below.

**What counts against C** (one rule, the same in training, held-out evaluation and metarl-eval):
``thinking`` = every completion token before the termination suffix (or before the answer that follows
a closed thought), policy tokens and inserted text alike (s1 counts its "Wait"s as thinking). Generation never goes past C; inserted text is added only
when it leaves room for at least one more policy token, else the stream is cut there. The suffix and
the forced answer (at most ``prover.answer_tokens`` tokens) come on top of C.

**Forced answer**: a stream that did not end on its own nor close its thought (cut by the cap, by
``max_episodes``, or by inserted text that did not fit) gets ``prover.suffix`` (masked out of the loss) and a forced answer
sampled like the stream, stopping at ``prover.answer_stop``.

:meth:`Engine.branch` draws ``m`` forced answers from each of a list of prefixes of a sequence: the
Monte Carlo meta-prover (MRT's J), pass@k from a prefix.

**Step-level search** (beam search, lookahead, DVTS in ``metarl-eval``) grows a tree of partial streams:
:meth:`Engine.expand` gives every one of many partial streams ``n`` children of one more step each — one
backend call for all of them, every step stopping at the step's stop strings, the cap C or
``step_tokens`` — under the same flags and cap rule as :meth:`Engine.run`; :meth:`Engine.finish` ends
the chosen streams as ``run`` ends its own (the answer after a closed thought, the suffix and a forced
answer after a cut, the text decoded).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.engine.base import Backend, Prefix, Request, Sampling
from metarl.prover import ProverConfig
from metarl.types import Branch

Feedback = Callable[[int, str], "str | None"]
"""``feedback(stream_index, completion_text_so_far) -> text to insert (None: nothing)``."""


@dataclass(frozen=True)
class StreamSpec:
    """How streams are generated (see the module docstring).

    cap: C, the bound on ``thinking`` tokens. episode_stop: stop strings of an episode (episode by episode
    when set). max_episodes / episode_tokens: at most this many episodes / tokens per episode (None: no
    bound). feedback: text inserted after each episode. continuation / max_continuations: s1
    continuation text and how often. force_answer: force an answer on a stream that did not end.
    """

    cap: int
    episode_stop: tuple[str, ...] = ()
    max_episodes: int | None = None
    episode_tokens: int | None = None
    feedback: Feedback | None = None
    continuation: str | None = None
    max_continuations: int = 0
    force_answer: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.cap, bool) or int(self.cap) < 1:
            raise ValueError(f"the compute cap must be a whole number >= 1, got {self.cap!r}")
        for key in ("max_episodes", "episode_tokens"):
            value = getattr(self, key)
            if value is not None and int(value) < 1:
                raise ValueError(f"{key}={value!r} must be >= 1 or None")
        if self.max_continuations < 0:
            raise ValueError(f"max_continuations={self.max_continuations} must be >= 0")
        if self.max_continuations > 0 and not self.continuation:
            raise ValueError(f"max_continuations={self.max_continuations} needs a non-empty continuation text "
                             "(e.g. 'Wait')")
        object.__setattr__(self, "episode_stop", tuple(self.episode_stop or ()))


@dataclass
class Stream:
    """One generated stream: ``ids`` (completion token ids), ``mask`` (1 = policy token, trained on; 0 =
    inserted text or the termination suffix), ``thinking`` (tokens before the suffix: what C bounds),
    ``ended`` (finished on its own with an end-of-sequence id), ``forced`` (suffix + forced answer
    appended), ``closed`` (an R1-style stream that closed its thought with ``prover.think_end``, then answered),
    episode and continuation counts, and ``text`` (decoded once, special tokens skipped)."""

    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    thinking: int = 0
    episodes: int = 0
    continuations: int = 0
    ended: bool = False
    closed: bool = False
    forced: bool = False
    text: str = ""
    done: bool = field(default=False, repr=False)
    branch: Branch | None = None
    """Where a stream of a prefix-branching rollout starts (its ``prompt_ids`` end with the prefix)."""

    def add(self, toks: Sequence[int], policy: bool, thinking: bool = True) -> None:
        self.ids.extend(toks)
        self.mask.extend([1 if policy else 0] * len(toks))
        if thinking:
            self.thinking += len(toks)

    def fork(self) -> Stream:
        """An independent copy (its own id and mask lists): a child to grow in a search tree."""
        return Stream(list(self.prompt_ids), list(self.ids), list(self.mask), self.thinking, self.episodes,
                      self.continuations, self.ended, self.closed, self.forced, self.text, self.done, self.branch)

    def truncate(self, length: int, eos_ids: Sequence[int] = ()) -> int:
        """Keep the first ``length`` completion ids of a stream that has no suffix or answer yet (all of it
        thinking); ``ended`` / ``done`` are recomputed from what is left. Returns how many ids were dropped."""
        if self.forced or self.closed or self.thinking != len(self.ids):
            raise ValueError("truncate() is for streams of thinking tokens only (no answer, suffix or forced answer)")
        if not 0 <= length <= len(self.ids):
            raise ValueError(f"truncate({length}) of a stream with {len(self.ids)} completion ids")
        dropped = len(self.ids) - length
        if dropped:
            del self.ids[length:], self.mask[length:]
            self.thinking = length
            self.ended = bool(self.ids) and self.ids[-1] in set(eos_ids)
            self.done = self.ended
        return dropped


CHAT_MODES = ("auto", True, False)


def uses_chat(tokenizer: Any, mode: Any = "auto") -> bool:
    """Whether plain-text prompts go through the chat template: ``mode`` true, or ``"auto"`` and the
    tokenizer has one (instruct and reasoning models); false keeps plain text as is (base models, the
    tag-format tiny policy)."""
    if mode not in CHAT_MODES:
        raise ValueError(f"chat_template={mode!r}: use auto (the tokenizer's template when it has one), true or false")
    has = getattr(tokenizer, "chat_template", None) is not None
    if mode is True and not has:
        raise ValueError("chat_template=true but the tokenizer has no chat template; use auto or false")
    return has if mode == "auto" else bool(mode)


def as_chat(prompt: Any) -> Any:
    """A plain-text prompt as one user message (chat messages unchanged).

    >>> as_chat("2+2?")
    [{'role': 'user', 'content': '2+2?'}]
    """
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def prompt_ids_for(tokenizer: Any, prompt: Any) -> list[int]:
    """Token ids of a prompt: plain text as is (no special tokens added), chat messages through the
    tokenizer's chat template with the generation prompt."""
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    return list(tokenizer.apply_chat_template(list(prompt), tokenize=True, add_generation_prompt=True,
                                              return_dict=False))


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    """A prompt as the text the policy reads (a trace's ``prompt``): plain text as is, chat messages through the
    tokenizer's chat template with the generation prompt (:func:`prompt_ids_for`'s tokens, as text)."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


class Engine:
    """Streams and branches on one backend, with one meta-prover configuration."""

    def __init__(self, backend: Backend, prover: ProverConfig | None = None):
        self.backend = backend
        self.prover = prover or ProverConfig()

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    def encode(self, text: str | None) -> list[int]:
        """Ids of a piece of text on its own (no special tokens); empty for None or ""."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ------------------------------------------------------------------ streams
    def run(self, prompt_ids: Sequence[Sequence[int]], spec: StreamSpec, sampling: Sampling,
            seed: int | None = None) -> list[Stream]:
        """Generate one stream per prompt (see the module docstring for the steps and the cap rule)."""
        streams = [Stream(list(p)) for p in prompt_ids]
        eos = set(self.backend.eos_ids)
        cue = self.encode(spec.continuation)
        if spec.max_continuations and not cue:
            raise ValueError(f"continuation {spec.continuation!r} encodes to no tokens; use visible text")
        think_end = self.prover.think_end
        stops = spec.episode_stop + ((think_end,) if think_end else ())
        step = 0
        while active := [s for s in streams if not s.done]:
            index = {id(s): i for i, s in enumerate(streams)}
            limits = [spec.cap - s.thinking for s in active]
            if spec.episode_tokens:
                limits = [min(r, int(spec.episode_tokens)) for r in limits]
            new = self.backend.generate([Request(tuple(s.prompt_ids + s.ids), r, 1, stops)
                                         for s, r in zip(active, limits)], sampling, _step_seed(seed, step))
            step += 1
            for s, (toks,) in zip(active, new):
                s.add(toks, policy=True)
                s.ended = bool(toks) and toks[-1] in eos
                if think_end and self._closes(s, think_end):  # the thought ends here (R1 style)
                    if cue and s.continuations < spec.max_continuations and self._continue(s, cue, spec.cap,
                                                                                           think_end):
                        continue
                    s.closed = s.done = True
                elif s.thinking >= spec.cap or not toks:
                    s.done = True
                elif spec.episode_stop:
                    s.episodes += 1
                    if s.ended or (spec.max_episodes is not None and s.episodes >= spec.max_episodes):
                        s.done = True
                    elif spec.feedback is not None:
                        text = spec.feedback(index[id(s)], self.decode(s.ids))
                        if text:
                            self._insert(s, self.encode(text), spec.cap)
                elif s.ended and cue and not think_end and s.continuations < spec.max_continuations:
                    if not self._continue(s, cue, spec.cap, None):
                        s.done = True
                else:
                    s.done = True
        self._finish(streams, sampling, seed, step, spec.force_answer)
        return streams

    def _finish(self, streams: list[Stream], sampling: Sampling, seed: int | None, step: int, force: bool) -> None:
        self._answer([s for s in streams if s.closed and not s.ended], sampling, _step_seed(seed, step))
        if force:
            self._force([s for s in streams if not s.ended and not s.closed], sampling, _step_seed(seed, step + 1))
        for s in streams:
            s.text = self.decode(s.ids)

    # ------------------------------------------------------------------ search steps
    def expand(self, streams: Sequence[Stream], n: int, cap: int, sampling: Sampling, *,
               stop: Sequence[str] = (), step_tokens: int | None = None, seed: int | None = None
               ) -> list[list[Stream]]:
        """``out[i]`` = ``n`` children of ``streams[i]``, each the parent plus one sampled step.

        All ``len(streams) × n`` steps are **one** backend call (a request with ``n`` continuations per
        parent). A step ends after a ``stop`` string, an end-of-sequence id (the child ``ended``), R1's
        ``prover.think_end`` (the child ``closed``), ``step_tokens`` tokens, or when the child's thinking
        reaches ``cap``. Step tokens are policy tokens and count against C (the rule of :meth:`run`); a
        child that ended, closed, reached the cap or got no token is ``done``. ``text`` is the decoded
        completion. Parents are left unchanged; a parent that is ``done`` cannot be expanded.
        """
        if isinstance(n, bool) or int(n) < 1:
            raise ValueError(f"expand: n={n!r} children per stream must be >= 1")
        if isinstance(cap, bool) or int(cap) < 1:
            raise ValueError(f"expand: the compute cap must be a whole number >= 1, got {cap!r}")
        if step_tokens is not None and int(step_tokens) < 1:
            raise ValueError(f"expand: step_tokens={step_tokens!r} must be >= 1 or None")
        if any(s.done or s.thinking >= cap for s in streams):
            raise ValueError("expand: a stream that is done (ended, closed or at the cap) has no next step")
        if not streams:
            return []
        think_end = self.prover.think_end
        stops = tuple(stop) + ((think_end,) if think_end and think_end not in stop else ())
        limits = [cap - s.thinking if step_tokens is None else min(cap - s.thinking, int(step_tokens)) for s in streams]
        new = self.backend.generate([Request(tuple(s.prompt_ids + s.ids), r, int(n), stops)
                                     for s, r in zip(streams, limits)], sampling, seed)
        eos = set(self.backend.eos_ids)
        out: list[list[Stream]] = []
        for parent, conts in zip(streams, new):
            children = []
            for toks in conts:
                c = parent.fork()
                c.add(toks, policy=True)
                c.episodes += 1
                c.ended = bool(toks) and toks[-1] in eos
                c.closed = bool(think_end) and not c.ended and self._closes(c, think_end)
                c.done = c.ended or c.closed or c.thinking >= cap or not toks
                c.text = self.decode(c.ids)
                children.append(c)
            out.append(children)
        return out

    def finish(self, streams: Sequence[Stream], sampling: Sampling, seed: int | None = None,
               force_answer: bool = True) -> list[Stream]:
        """End streams grown by :meth:`expand` as :meth:`run` ends its own: a stream that closed its thought
        writes its answer, one that neither ended nor closed gets the suffix and a forced answer (with
        ``force_answer``), and every ``text`` is decoded. Returns ``streams``."""
        streams = list(streams)
        if any(s.forced for s in streams):
            raise ValueError("finish: a stream already has its forced answer")
        self._finish(streams, sampling, seed, 0, force_answer)
        for s in streams:
            s.done = True
        return streams

    def _closes(self, s: Stream, think_end: str) -> bool:
        """Whether the stream's last tokens complete ``think_end``."""
        tail = s.ids[-(len(think_end) + 8):]
        return think_end in self.decode(tail)

    def _continue(self, s: Stream, cue: list[int], cap: int, think_end: str | None) -> bool:
        """s1: replace the stream's end (its end-of-sequence token, or the tokens that close its thought)
        by the continuation ``cue`` (masked, counted against C) if one policy token still fits after it."""
        drop = 1
        if think_end is not None:  # the tokens from the one holding the start of think_end on
            start = self.decode(s.ids).rfind(think_end)
            while drop < len(s.ids) and len(self.decode(s.ids[:-drop])) > start:
                drop += 1
        if s.thinking - drop + len(cue) >= cap:
            return False
        del s.ids[-drop:], s.mask[-drop:]
        s.thinking -= drop
        s.add(cue, policy=False)
        s.continuations += 1
        s.ended = False
        return True

    @staticmethod
    def _insert(s: Stream, ids: list[int], cap: int) -> None:
        """Inserted text (masked, counted against C) if at least one policy token fits after it; else the
        stream is cut here."""
        if s.thinking + len(ids) < cap:
            s.add(ids, policy=False)
        else:
            s.done = True

    def _answer(self, streams: list[Stream], sampling: Sampling, seed: int | None) -> None:
        """A stream that closed its thought writes its answer: at most ``prover.answer_tokens`` policy tokens
        (not counted against C), stopping at ``prover.answer_stop``."""
        if not streams:
            return
        new = self.backend.generate([Request(tuple(s.prompt_ids + s.ids), self.prover.answer_tokens, 1,
                                             self.prover.answer_stop) for s in streams], sampling, seed)
        eos = set(self.backend.eos_ids)
        for s, (toks,) in zip(streams, new):
            s.add(toks, policy=True, thinking=False)
            s.ended = bool(toks) and toks[-1] in eos

    def _force(self, streams: list[Stream], sampling: Sampling, seed: int | None) -> None:
        if not streams:
            return
        suffix = self.encode(self.prover.suffix)
        new = self.backend.generate([Request(tuple(s.prompt_ids + s.ids + suffix), self.prover.answer_tokens, 1,
                                             self.prover.answer_stop) for s in streams], sampling, seed)
        for s, (toks,) in zip(streams, new):
            s.add(suffix, policy=False, thinking=False)
            s.add(toks, policy=True, thinking=False)
            s.forced = True

    # ------------------------------------------------------------------ branches
    def branch(self, sequences: Sequence[Sequence[int]], prefixes: Sequence[Sequence[tuple[int, bool]]], m: int,
               seed: int | None = None) -> list[list[list[str]]]:
        """``m`` forced answers after every prefix: ``out[t][i]`` are the answer texts (cut before the
        first answer stop string) after ``sequences[t][:k] + suffix`` for ``(k, final) = prefixes[t][i]``,
        the suffix being ``prover.suffix_for(final)`` (``final``: the full thought of a trace that closed
        it); sampled as ``prover.temperature`` / ``top_p`` say."""
        return [[[text for text, _ in answers] for answers in per_seq]
                for per_seq in self.branch_answers(sequences, prefixes, m, seed)]

    def branch_answers(self, sequences: Sequence[Sequence[int]], prefixes: Sequence[Sequence[tuple[int, bool]]],
                       m: int, seed: int | None = None) -> list[list[list[tuple[str, int]]]]:
        """As :meth:`branch`, each answer as ``(text, tokens generated)``."""
        suffixes = {final: tuple(self.encode(self.prover.suffix_for(final))) for final in (False, True)}
        plans = [[Prefix(int(k), suffixes[bool(final)]) for k, final in ps] for ps in prefixes]
        for seq, ps in zip(sequences, plans):
            if any(p.length == 0 and not p.suffix for p in ps) and not seq:
                raise ValueError("a context is empty and the suffix is empty: μ has nothing to condition on")
        ids = self.backend.branch(sequences, plans, m, self.prover.answer_tokens, self.prover.answer_stop,
                                  self.prover.sampling, seed)
        return [[[(self.prover.cut(self.decode(a)), len(a)) for a in answers] for answers in per_seq]
                for per_seq in ids]


def _step_seed(seed: int | None, step: int) -> int | None:
    """A distinct, reproducible seed for each backend call of one run."""
    return None if seed is None else (int(seed) * 1_000_003 + step) & 0x7FFFFFFF
