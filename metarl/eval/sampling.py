"""Drawing the samples a test-time strategy needs, within a token budget.

A strategy states *how* its samples are drawn with a :class:`Generation`:

* parallel sampling (``max_rounds=0``): ``n`` independent streams per question, each with at most
  ``budget`` thinking tokens; a stream that reaches the budget gets the termination suffix and a
  forced answer (:func:`metarl.generation.complete`);
* sequential continuation (``max_rounds > 0``): when a stream stops (end-of-sequence) before the budget,
  its end token is replaced by ``continuation`` text and generation goes on, at most ``max_rounds``
  times. With the task's revision cue (``"<revise>"``) these are Snell et al.'s *sequential revisions*;
  with ``"Wait"`` and no round limit it is s1 *budget forcing*. At the budget an answer is forced.

Token accounting (what the budget bounds): ``thinking_tokens`` counts every completion token before the
forced-answer suffix, **including inserted continuation text** (s1 counts its "Wait"s as thinking), so
every strategy is compared at equal stream length. ``tokens`` also counts the suffix and forced answer.
The budget bounds each sample; multi-sample strategies report the total over their samples separately.

A *sampler* is any callable ``sampler(prompts, budget, n, generation, seed) -> list[list[Sample]]``
(``n`` samples per prompt); :class:`PolicySampler` runs a Hugging Face causal LM, tests inject stubs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from metarl.generation import complete, generate_batch, prompt_ids_for

UNLIMITED_ROUNDS = 1 << 30
"""``max_rounds`` meaning "continue while the budget lasts" (each round costs at least one token)."""


@dataclass(frozen=True)
class Generation:
    """How a strategy's samples are drawn; strategies with equal ``Generation`` share samples.

    ``name`` labels the samples in ``samples.jsonl``; ``continuation`` is the text that replaces the
    end-of-sequence token of a stream that stops early, at most ``max_rounds`` times (0: never).
    """

    name: str = "parallel"
    continuation: str | None = None
    max_rounds: int = 0

    def __post_init__(self) -> None:
        if self.max_rounds < 0:
            raise ValueError(f"Generation {self.name!r}: max_rounds must be >= 0, got {self.max_rounds}")
        if self.max_rounds > 0 and not self.continuation:
            raise ValueError(f"Generation {self.name!r}: max_rounds={self.max_rounds} needs a non-empty "
                             "continuation text (e.g. 'Wait' or '<revise>')")

    @property
    def sequential(self) -> bool:
        return self.max_rounds > 0


PARALLEL = Generation()
"""Independent samples with a forced answer at the budget (pass@k, majority vote, Best-of-N)."""


@dataclass
class Sample:
    """One sampled completion: its text, thinking tokens (before the forced answer, continuation text
    included), all completion tokens, whether an answer was forced at the budget, continuation rounds."""

    completion: str
    thinking_tokens: int
    tokens: int
    forced: bool = False
    rounds: int = 0


class Sampler(Protocol):
    """``n`` samples for each prompt at a token budget, drawn as ``generation`` says."""

    def __call__(self, prompts: Sequence[Any], budget: int, n: int, generation: Generation,
                 seed: int) -> list[list[Sample]]: ...


class PolicySampler:
    """Samples from a Hugging Face causal LM (any ``generate``-capable model) with a budget per sample.

    ``suffix`` is the termination suffix appended when a stream reaches its budget (the meta-prover's,
    e.g. ``"<answer>"``), followed by a forced answer of at most ``answer_tokens`` tokens that stops at
    one of ``answer_stop``. ``temperature=0`` decodes greedily (then all ``n`` samples are equal).
    """

    def __init__(self, model, tokenizer, *, suffix: str | None, answer_stop: Sequence[str] | None = None,
                 answer_tokens: int = 16, temperature: float = 0.7, top_p: float = 1.0,
                 batch_size: int = 64) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
        if batch_size < 1 or answer_tokens < 1:
            raise ValueError(f"batch_size and answer_tokens must be >= 1, got {batch_size}, {answer_tokens}")
        self.model, self.tokenizer = model, tokenizer
        self.suffix, self.answer_stop = suffix, list(answer_stop or [])
        self.answer_tokens, self.temperature, self.top_p = answer_tokens, temperature, top_p
        self.batch_size = batch_size

    def _encode(self, text: str | None) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _eos_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if isinstance(eos, list | tuple):
            return list(eos)
        return [eos if eos is not None else self.tokenizer.eos_token_id]

    def _generation_config(self):
        from transformers import GenerationConfig

        sample = self.temperature > 0
        return GenerationConfig(do_sample=sample, temperature=self.temperature if sample else None,
                                top_p=self.top_p if sample else None, top_k=None,
                                pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self._eos_ids())

    def __call__(self, prompts: Sequence[Any], budget: int, n: int, generation: Generation = PARALLEL,
                 seed: int = 0) -> list[list[Sample]]:
        if budget < 0 or n < 1:
            raise ValueError(f"need budget >= 0 and n >= 1, got budget={budget}, n={n}")
        flat = [p for p in prompts for _ in range(n)]
        torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                samples = self._sequential(flat, budget, generation) if generation.sequential \
                    else self._parallel(flat, budget)
        finally:
            self.model.train(was_training)
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]

    def _parallel(self, prompts: list[Any], budget: int) -> list[Sample]:
        sample = self.temperature > 0
        comps = complete(self.model, self.tokenizer, prompts, budget, suffix=self.suffix,
                         answer_stop=self.answer_stop, answer_tokens=self.answer_tokens, do_sample=sample,
                         temperature=self.temperature if sample else 1.0, top_p=self.top_p,
                         batch_size=self.batch_size)
        return [Sample(c.text, c.thinking_tokens, len(c.completion_ids), c.forced) for c in comps]

    def _sequential(self, prompts: list[Any], budget: int, generation: Generation) -> list[Sample]:
        """Continue every stream that stops early with the continuation text (its tokens count against the
        budget), at most ``generation.max_rounds`` times; force an answer at the budget."""
        cue = self._encode(generation.continuation)
        if not cue:
            raise ValueError(f"continuation {generation.continuation!r} encodes to no tokens; use visible text")
        suffix = self._encode(self.suffix)
        eos = self._eos_ids()
        cfg = self._generation_config()
        out: list[Sample] = []
        for b in range(0, len(prompts), self.batch_size):
            pids = [prompt_ids_for(self.tokenizer, p) for p in prompts[b:b + self.batch_size]]
            ids: list[list[int]] = [[] for _ in pids]
            rounds = [0] * len(pids)
            ended = [False] * len(pids)
            active = list(range(len(pids)))
            while active:
                room = max(budget - len(ids[i]) for i in active)
                new = generate_batch(self.model, self.tokenizer, [pids[i] + ids[i] for i in active], cfg, room, eos)
                nxt = []
                for i, toks in zip(active, new):
                    toks = toks[: budget - len(ids[i])]
                    ids[i] += toks
                    stop = bool(toks) and toks[-1] in eos
                    # continue only if the cue fits and leaves room for at least one generated token
                    if stop and rounds[i] < generation.max_rounds and len(ids[i]) - 1 + len(cue) < budget:
                        ids[i][-1:] = cue
                        rounds[i] += 1
                        nxt.append(i)
                    else:
                        ended[i] = stop
                active = nxt
            thinking = [len(x) for x in ids]
            forced = [i for i in range(len(pids)) if suffix and not ended[i]]
            if forced:
                answers = generate_batch(self.model, self.tokenizer, [pids[i] + ids[i] + suffix for i in forced],
                                         cfg, self.answer_tokens, eos, self.answer_stop or None)
                for i, toks in zip(forced, answers):
                    ids[i] += suffix + toks
            for i in range(len(pids)):
                out.append(Sample(self.tokenizer.decode(ids[i], skip_special_tokens=True), thinking[i], len(ids[i]),
                                  i in forced, rounds[i]))
        return out
