"""The contract between metarl's generation engine and a backend (transformers or vLLM).

A backend turns token ids into token ids; everything a stream means (the compute cap, episode
boundaries, feedback, continuations, the meta-prover's suffix and forced answer) lives in
:mod:`metarl.engine.streams`, written once for every backend.

Output contract of :meth:`Backend.generate` and :meth:`Backend.branch`: every continuation is a list
of at most ``max_tokens`` token ids that ends right after the first end-of-sequence id (kept) or
right after the first token whose decoded text completes one of the ``stop`` strings (kept), with
nothing after it (no padding). Sampling is exactly ``softmax(logits / temperature)`` restricted to
the nucleus ``top_p`` (no top-k, no repetition penalty); ``temperature=0`` decodes greedily.
With a ``seed`` the draw is reproducible and the caller's random state is left untouched.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn: ``temperature`` (0 = greedy) and nucleus ``top_p``."""

    temperature: float = 1.0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0:
            raise ValueError(f"temperature={self.temperature} must be >= 0 (0 = greedy)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must lie in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


GREEDY = Sampling(temperature=0.0)


@dataclass(frozen=True)
class Request:
    """``n`` continuations of the context ``ids``, each of at most ``max_tokens`` tokens, stopping at
    an end-of-sequence id or after a ``stop`` string."""

    ids: tuple[int, ...]
    max_tokens: int
    n: int = 1
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prefix:
    """A branch point of a sequence: its first ``length`` ids, then ``suffix`` ids (e.g. the
    meta-prover's termination suffix), then the sampled continuation."""

    length: int
    suffix: tuple[int, ...] = ()


class Backend(Protocol):
    """What a generation backend provides (see the module docstring for the output contract)."""

    name: str
    tokenizer: Any
    eos_ids: tuple[int, ...]

    def generate(self, requests: Sequence[Request], sampling: Sampling,
                 seed: int | None = None) -> list[list[list[int]]]:
        """``out[r]`` = the ``requests[r].n`` continuations of request ``r``."""
        ...

    def branch(self, sequences: Sequence[Sequence[int]], prefixes: Sequence[Sequence[Prefix]], n: int,
               max_tokens: int, stop: Sequence[str], sampling: Sampling,
               seed: int | None = None) -> list[list[list[list[int]]]]:
        """``out[t][i]`` = ``n`` continuations of ``sequences[t][:p.length] + p.suffix`` for
        ``p = prefixes[t][i]``. Same distribution as :meth:`generate` on those contexts; a backend
        shares the work of common prefixes (one prefill per sequence, or a prefix cache)."""
        ...
