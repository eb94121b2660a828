"""Drawing the samples a test-time strategy needs, within a token budget.

A strategy states *how* its samples are drawn with a :class:`Generation`:

* parallel sampling (``max_rounds=0``): ``n`` independent streams per question, each with at most
  ``budget`` thinking tokens; a stream that reaches the budget gets the termination suffix and a
  forced answer;
* sequential continuation (``max_rounds > 0``): when a stream stops (end-of-sequence) before the budget,
  its end token is replaced by ``continuation`` text and generation goes on, at most ``max_rounds``
  times. With the task's revision cue (``"<revise>"``) these are Snell et al.'s *sequential revisions*;
  with ``"Wait"`` and no round limit it is s1 *budget forcing*. At the budget an answer is forced.

Token accounting (what the budget bounds) is the engine's one rule (:mod:`metarl.engine.streams`), the same
in training and held-out evaluation: ``thinking_tokens`` counts every completion token before the
forced-answer suffix, **including inserted continuation text** (s1 counts its "Wait"s as thinking), so
every strategy is compared at equal stream length. ``tokens`` also counts the suffix and forced answer.
The budget bounds each sample; multi-sample strategies report the total over their samples separately.

A *sampler* is any callable ``sampler(prompts, budget, n, generation, seed) -> list[list[Sample]]``
(``n`` samples per prompt); :class:`PolicySampler` samples the policy through the generation engine,
tests inject stubs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from metarl.engine import Engine, Sampling, StreamSpec, as_chat, prompt_ids_for
from metarl.prover import ProverConfig

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
    """Samples from the policy through the generation engine (any backend), with a budget per sample.

    A stream that does not end within its budget gets the meta-prover's termination suffix and a forced
    answer (``prover``: the run's one μ configuration). ``temperature=0`` decodes greedily (then all ``n``
    samples are equal). ``chat``: plain-text prompts go through the tokenizer's chat template.
    """

    def __init__(self, backend, prover: ProverConfig | None = None, *, temperature: float = 0.7,
                 top_p: float = 1.0, chat: bool = False) -> None:
        self.engine = Engine(backend, prover)
        self.sampling = Sampling(temperature, top_p)
        self.chat = chat

    def prompt_ids(self, prompts: Sequence[Any]) -> list[list[int]]:
        """Token ids of each prompt as the policy sees it (through the chat template when ``chat``)."""
        return [prompt_ids_for(self.engine.tokenizer, as_chat(p) if self.chat else p) for p in prompts]

    def __call__(self, prompts: Sequence[Any], budget: int, n: int, generation: Generation = PARALLEL,
                 seed: int = 0) -> list[list[Sample]]:
        if budget < 1 or n < 1:
            raise ValueError(f"need budget >= 1 and n >= 1, got budget={budget}, n={n}")
        ids = [p for p in self.prompt_ids(prompts) for _ in range(n)]
        spec = StreamSpec(cap=budget, continuation=generation.continuation if generation.sequential else None,
                          max_continuations=generation.max_rounds)
        streams = self.engine.run(ids, spec, self.sampling, seed=seed)
        samples = [Sample(s.text, s.thinking, len(s.ids), s.forced, s.continuations) for s in streams]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompts))]
