"""A scripted generation backend for tests: continuations written by a rule on the decoded context.

It follows the backend contract of :mod:`metarl.engine.base` exactly (at most ``max_tokens`` ids, cut
right after an end-of-sequence id or after the token that completes a stop string), so the engine's
stream logic can be checked against hand-computed streams, independently of any model.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from metarl.engine.base import Prefix, Request, Sampling


class ScriptedBackend:
    """``rule(context_text) -> continuation text``; the continuation ends with EOS unless ``eos=False``."""

    name = "scripted"

    def __init__(self, tokenizer, rule: Callable[[str], str], eos: bool = True):
        self.tokenizer, self.rule, self.eos = tokenizer, rule, eos
        self.eos_ids = (tokenizer.eos_token_id,)
        self.calls: list[int] = []  # requests per generate call

    def _continue(self, ids: Sequence[int], max_tokens: int, stop: Sequence[str]) -> list[int]:
        text = self.rule(self.tokenizer.decode(list(ids), skip_special_tokens=True))
        toks = self.tokenizer(text, add_special_tokens=False)["input_ids"] + ([self.eos_ids[0]] if self.eos else [])
        out: list[int] = []
        for t in toks:
            if len(out) >= max_tokens:
                break
            out.append(t)
            if t in self.eos_ids or any(s in self.tokenizer.decode(out, skip_special_tokens=True) for s in stop):
                break
        return out

    def generate(self, requests: Sequence[Request], sampling: Sampling, seed: int | None = None) -> list[list[list[int]]]:
        self.calls.append(len(requests))
        return [[self._continue(r.ids, r.max_tokens, r.stop) for _ in range(r.n)] for r in requests]

    def branch(self, sequences, prefixes: Sequence[Sequence[Prefix]], n: int, max_tokens: int, stop: Sequence[str],
               sampling: Sampling, seed: int | None = None) -> list[list[list[list[int]]]]:
        return [[[self._continue(list(seq[:p.length]) + list(p.suffix), max_tokens, stop) for _ in range(n)]
                 for p in ps] for seq, ps in zip(sequences, prefixes)]
