"""A scripted generation backend for tests: continuations written by a rule on the decoded context.

It follows the backend contract of :mod:`metarl.engine.base` exactly (at most ``max_tokens`` ids, cut
right after an end-of-sequence id or after the token that completes a stop string), so the engine's
stream logic can be checked against hand-computed streams, independently of any model.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from metarl.engine.base import Prefix, Request, Sampling


class ScriptedBackend:
    """``rule(context_text) -> continuation text``; the continuation ends with EOS unless ``eos=False``.

    With ``indexed=True`` the rule is ``rule(context_text, i)``, ``i`` the index of the continuation within
    its request (so the ``n`` continuations of one context can differ). ``generated`` counts every id
    returned (what a search's accounting is checked against)."""

    name = "scripted"

    def __init__(self, tokenizer, rule: Callable[..., str], eos: bool = True, indexed: bool = False):
        self.tokenizer, self.rule, self.eos, self.indexed = tokenizer, rule, eos, indexed
        self.eos_ids = (tokenizer.eos_token_id,)
        self.calls: list[int] = []  # requests per generate call
        self.generated = 0

    def _continue(self, ids: Sequence[int], max_tokens: int, stop: Sequence[str], i: int = 0) -> list[int]:
        ctx = self.tokenizer.decode(list(ids), skip_special_tokens=True)
        text = self.rule(ctx, i) if self.indexed else self.rule(ctx)
        toks = self.tokenizer(text, add_special_tokens=False)["input_ids"] + ([self.eos_ids[0]] if self.eos else [])
        out: list[int] = []
        for t in toks:
            if len(out) >= max_tokens:
                break
            out.append(t)
            if t in self.eos_ids or any(s in self.tokenizer.decode(out, skip_special_tokens=True) for s in stop):
                break
        self.generated += len(out)
        return out

    def generate(self, requests: Sequence[Request], sampling: Sampling, seed: int | None = None) -> list[list[list[int]]]:
        self.calls.append(len(requests))
        return [[self._continue(r.ids, r.max_tokens, r.stop, i) for i in range(r.n)] for r in requests]

    def branch(self, sequences, prefixes: Sequence[Sequence[Prefix]], n: int, max_tokens: int, stop: Sequence[str],
               sampling: Sampling, seed: int | None = None) -> list[list[list[list[int]]]]:
        return [[[self._continue(list(seq[:p.length]) + list(p.suffix), max_tokens, stop, i) for i in range(n)]
                 for p in ps] for seq, ps in zip(sequences, prefixes)]
