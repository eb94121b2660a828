"""The transformers backend: any Hugging Face causal LM with ``generate`` (the default; CPU and GPU).

Contexts are left-padded and sampled in batches of ``batch_size`` rows, longest first (less padding).
One stopping criterion (:class:`RowFinish`) ends every row on its own: at an end-of-sequence id, at
the token that completes a stop string, or at the row's own ``max_tokens``; it records where each row
finished, so the padding ``generate`` appends afterwards is never mistaken for a sampled token (even
when the pad id is the EOS id).

:meth:`HFBackend.branch` samples the continuations of many prefixes of one sequence with one prefill
per sequence: a prefix of a causal sequence has exactly the cached keys/values of its first k tokens,
so each branch row reuses the sequence's KV cache with the columns after its prefix masked out, then
appends its suffix. Models whose cache is not a plain ``DynamicCache`` (sliding windows, hybrids) are
sampled with one explicit context per prefix.
"""
from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList
from transformers.cache_utils import DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from metarl.engine.base import Prefix, Request, Sampling


CACHE_KEY = "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"
"""The name of the KV cache in model inputs and outputs (``cache`` from transformers 5.2x on, which
deprecates ``past_key_values``)."""


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def unwrap_ddp(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def base_model(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside DDP and peft wrappers."""
    base = unwrap_ddp(model)
    get_base = getattr(base, "get_base_model", None)  # peft
    return get_base() if callable(get_base) else base


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (compute logits for the last positions only)."""
    try:
        return "logits_to_keep" in inspect.signature(base_model(model).forward).parameters
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def inference_mode(model: torch.nn.Module) -> Iterator[None]:
    """``torch.no_grad()`` with the model in eval mode; the previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        if was_training:
            model.train()


@contextlib.contextmanager
def seeded(model: torch.nn.Module, seed: int | None) -> Iterator[None]:
    """With a ``seed``: torch's RNG (CPU and the model's accelerator devices) forked and seeded, the
    caller's state restored afterwards. Without one: the global RNG as it is."""
    if seed is None:
        yield
        return
    kinds = {p.device.type for p in model.parameters()} - {"cpu"}
    kind = sorted(kinds)[0] if kinds else "cuda"
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == kind}) if kinds else []
    with torch.random.fork_rng(devices=devices, device_type=kind):
        torch.manual_seed(seed)
        yield


def pad_token_id(tokenizer: Any, model: torch.nn.Module | None = None) -> int:
    """The id used to pad batches: the tokenizer's pad token, else its EOS, else the model's."""
    for source in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        for attr in ("pad_token_id", "eos_token_id"):
            value = getattr(source, attr, None)
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            if value is not None:
                return int(value)
    raise ValueError("cannot pad a batch: the tokenizer has neither a pad nor an EOS token; set tokenizer.pad_token")


def eos_token_ids(tokenizer: Any, model: torch.nn.Module | None) -> tuple[int, ...]:
    """The ids that end a stream: the model's generation-config EOS, else the tokenizer's."""
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if value is None:
        value = getattr(tokenizer, "eos_token_id", None)
    if value is None:
        return ()
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def left_pad(seqs: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists into ``(input_ids, attention_mask)`` of shape ``(len(seqs), max_len)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids.to(device), mask.to(device)


class RowFinish(StoppingCriteria):
    """Ends each row of a ``generate`` batch on its own and records where it ended.

    Row ``r`` is finished after ``finished[r]`` generated tokens: the first end-of-sequence id, the
    first token after which the generated text contains one of ``stops[r]``, or ``limits[r]`` tokens.
    Stop strings are looked for in the decoded last ``window`` tokens only (the longest stop string
    plus slack: every token decodes to at least one character), so checking stays O(1) per step.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, limits: Sequence[int], stops: Sequence[Sequence[str]],
                 eos_ids: Sequence[int]):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len
        self.limits, self.stops = list(limits), [tuple(s) for s in stops]
        self.eos = set(eos_ids)
        self.window = max((len(s) for ss in self.stops for s in ss), default=0) + 8
        self.finished: list[int | None] = [None] * len(self.limits)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        n = input_ids.shape[1] - self.prompt_len
        last = input_ids[:, -1].tolist()
        for r, done in enumerate(self.finished):
            if done is not None:
                continue
            if last[r] in self.eos or n >= self.limits[r]:
                self.finished[r] = n
            elif self.stops[r]:
                tail = input_ids[r, max(self.prompt_len, input_ids.shape[1] - self.window):].tolist()
                text = self.tokenizer.decode(tail, skip_special_tokens=True)
                if any(s in text for s in self.stops[r]):
                    self.finished[r] = n
        return torch.tensor([f is not None for f in self.finished], dtype=torch.bool, device=input_ids.device)

    def cut(self, generated: list[list[int]]) -> list[list[int]]:
        """Each row's generated ids up to where it finished."""
        return [row[: (f if f is not None else min(len(row), lim))]
                for row, f, lim in zip(generated, self.finished, self.limits)]


class HFBackend:
    """Generation on a Hugging Face causal LM (see the module docstring). ``prefix_sharing=False`` samples
    every branch from an explicit context (one prefill per row: the baseline of ``bench/bench_mc.py``)."""

    name = "transformers"

    def __init__(self, model: torch.nn.Module, tokenizer: Any, batch_size: int = 64, prefix_sharing: bool = True):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        self.model, self.tokenizer, self.batch_size = unwrap_ddp(model), tokenizer, int(batch_size)
        self.prefix_sharing = prefix_sharing
        self.eos_ids = eos_token_ids(tokenizer, self.model)
        self.pad_id = pad_token_id(tokenizer, self.model)

    # ------------------------------------------------------------------ generate
    def _kwargs(self, sampling: Sampling, max_new_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": not sampling.greedy,
                                  "pad_token_id": self.pad_id, "num_beams": 1, "repetition_penalty": 1.0,
                                  "no_repeat_ngram_size": 0, "use_cache": True}
        if self.eos_ids:
            kwargs["eos_token_id"] = list(self.eos_ids)
        if not sampling.greedy:  # exactly softmax(logits / T) with nucleus top_p: the model's other warpers off
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0, typical_p=1.0,
                          epsilon_cutoff=0.0, eta_cutoff=0.0)
            if getattr(getattr(self.model, "generation_config", None), "min_p", None) is not None:
                kwargs["min_p"] = 0.0
        return kwargs

    def _run(self, ids: torch.Tensor, mask: torch.Tensor, limits: Sequence[int], stops: Sequence[Sequence[str]],
             sampling: Sampling, cache: Any = None) -> list[list[int]]:
        """One ``generate`` call; every row cut where it finished."""
        finish = RowFinish(self.tokenizer, ids.shape[1], limits, stops, self.eos_ids)
        kwargs = self._kwargs(sampling, max(limits))
        if cache is not None:
            kwargs[CACHE_KEY] = cache
        out = self.model.generate(input_ids=ids, attention_mask=mask,
                                  stopping_criteria=StoppingCriteriaList([finish]), **kwargs)
        return finish.cut(out[:, ids.shape[1]:].tolist())

    def generate(self, requests: Sequence[Request], sampling: Sampling,
                 seed: int | None = None) -> list[list[list[int]]]:
        out: list[list[list[int]]] = [[[] for _ in range(r.n)] for r in requests]
        rows = [(i, c) for i, r in enumerate(requests) if r.max_tokens > 0 for c in range(r.n)]
        if not rows:
            return out
        if any(not requests[i].ids for i, _ in rows):
            raise ValueError("a generation request has an empty context: give prompt ids (or a BOS token)")
        rows.sort(key=lambda row: -len(requests[row[0]].ids))
        device = model_device(self.model)
        with inference_mode(self.model), seeded(self.model, seed):
            for b in range(0, len(rows), self.batch_size):
                chunk = rows[b:b + self.batch_size]
                reqs = [requests[i] for i, _ in chunk]
                ids, mask = left_pad([r.ids for r in reqs], self.pad_id, device)
                for (i, c), toks in zip(chunk, self._run(ids, mask, [r.max_tokens for r in reqs],
                                                         [r.stop for r in reqs], sampling)):
                    out[i][c] = toks
        return out

    # ------------------------------------------------------------------ branches
    def branch(self, sequences: Sequence[Sequence[int]], prefixes: Sequence[Sequence[Prefix]], n: int,
               max_tokens: int, stop: Sequence[str], sampling: Sampling,
               seed: int | None = None) -> list[list[list[list[int]]]]:
        if len(sequences) != len(prefixes):
            raise ValueError(f"{len(sequences)} sequences but {len(prefixes)} lists of prefixes")
        for seq, ps in zip(sequences, prefixes):
            if any(not 0 <= p.length <= len(seq) for p in ps):
                raise ValueError(f"prefix lengths {[p.length for p in ps]} must lie in [0, {len(seq)}]")
        out: list[list[list[list[int]]]] = [[[] for _ in ps] for ps in prefixes]
        if n < 1 or max_tokens <= 0:
            return [[[[] for _ in range(max(n, 0))] for _ in ps] for ps in prefixes]
        stop = tuple(stop)
        device = model_device(self.model)
        order = sorted((t for t in range(len(sequences)) if prefixes[t]), key=lambda t: -len(sequences[t]))
        groups: list[list[int]] = []  # sequences whose branch rows fill about one generate batch
        for t in order:
            rows = len(prefixes[t]) * n
            if groups and sum(len(prefixes[u]) * n for u in groups[-1]) + rows <= self.batch_size:
                groups[-1].append(t)
            else:
                groups.append([t])
        fallback: list[tuple[int, int]] = []
        with inference_mode(self.model), seeded(self.model, seed):
            for group in groups:
                seqs = [list(sequences[t]) for t in group]
                cache = self._prefill(seqs, device) if self.prefix_sharing else None
                if cache is None:
                    fallback.extend((t, i) for t in group for i in range(len(prefixes[t])))
                    continue
                ids, mask, layers = cache
                # rows with an empty suffix would have to re-feed their last context token: sampled on their own
                fallback.extend((t, i) for t in group for i in range(len(prefixes[t])) if not prefixes[t][i].suffix)
                # (suffix, row end in the padded prefill = left padding + prefix length, sequence in group, index)
                rows = sorted((prefixes[t][i].suffix, ids.shape[1] - len(seqs[g]) + prefixes[t][i].length, g, i)
                              for g, t in enumerate(group) for i in range(len(prefixes[t])) if prefixes[t][i].suffix
                              for _ in range(n))
                start = 0
                while start < len(rows):  # chunks of one suffix each (the suffix is appended to every row)
                    suffix = rows[start][0]
                    stop_at = start
                    while stop_at < len(rows) and stop_at - start < self.batch_size and rows[stop_at][0] == suffix:
                        stop_at += 1
                    chunk, start = rows[start:stop_at], stop_at
                    width = max(end for _, end, _, _ in chunk)  # cache columns this chunk needs
                    idx = torch.tensor([g for _, _, g, _ in chunk], device=device)
                    tail = torch.tensor([list(suffix)], dtype=torch.long, device=device)
                    row_ids = torch.cat([ids[idx, :width], tail.expand(len(chunk), -1)], dim=1)
                    row_mask = torch.cat([mask[idx, :width], torch.ones_like(tail).expand(len(chunk), -1)], dim=1)
                    for r, (_, end, _, _) in enumerate(chunk):  # hide the sequence after the prefix
                        row_mask[r, end:width] = 0
                    sub = DynamicCache([(k[idx, :, :width], v[idx, :, :width]) for k, v in layers])
                    texts = self._run(row_ids, row_mask, [max_tokens] * len(chunk), [stop] * len(chunk), sampling,
                                      cache=sub)
                    for (_, _, g, i), toks in zip(chunk, texts):
                        out[group[g]][i].append(toks)
            if fallback:  # inside the seeded block: the same draw every time
                reqs = [Request(tuple(sequences[t][:prefixes[t][i].length]) + tuple(prefixes[t][i].suffix),
                                max_tokens, n, stop) for t, i in fallback]
                for (t, i), conts in zip(fallback, self.generate(reqs, sampling, seed=None)):
                    out[t][i].extend(conts)
        return out

    def _prefill(self, seqs: list[list[int]], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]] | None:
        """Left-padded ids, mask and per-layer (keys, values) of ``seqs``; None if the cache is not plain."""
        if max(len(s) for s in seqs) == 0:
            return None
        ids, mask = left_pad(seqs, self.pad_id, device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": 1} if accepts_logits_to_keep(self.model) else {}
        cache = getattr(self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                                   **extra), CACHE_KEY)
        if not isinstance(cache, DynamicCache) or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return None
        return ids, mask, [(layer.keys, layer.values) for layer in cache.layers]
