"""The meta-prover μ: stop the stream after a prefix z_{0:j}, append a termination suffix, answer.

MRT measures progress with μ: after each episode the policy is interrupted, a fixed *termination
suffix* is appended ("Time is up. ... formulate a final answer ...") and the same model writes a
short final answer. J_j is the probability that this forced answer is correct; J_{-1} is μ with an
empty completion prefix (the prompt alone).

`MetaProver` is model-agnostic (any Hugging Face causal LM with ``generate``): every context is a
list of token ids (prompt ids + the first k completion ids); the suffix is tokenized once on its own
(``add_special_tokens=False``) and appended as ids, so the split "prefix ids + suffix ids" is exactly
what is scored, even for BPE tokenizers that would merge across the boundary of joined text.

* `MetaProver.sample` draws ``m`` answers per context at the sampling temperature, all contexts x m
  samples batched into as few ``generate`` calls as ``batch_size`` allows (left padding);
* `MetaProver.force` gives one greedy answer per context (the compute cap, evaluation);
* `MetaProver.sample_prefixes` / `force_prefixes` do the same for many prefixes of one sequence
  (the episode ends of a trace) with one prefill per sequence: its KV cache, masked after each
  prefix, serves every prefix and sample;
* `MetaProver.answer_distribution` enumerates the *exact* distribution of sampled answers for small
  vocabularies (tests, ground truth for the Monte Carlo estimate of J).

Answer texts are decoded without special tokens and cut before the first stop string. The
extractors (`extract_raw`, `extract_boxed`, `extract_auto`) turn a forced answer text into the
prediction a grader sees.
"""
from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers import DynamicCache, StoppingCriteria, StoppingCriteriaList
from transformers.cache_utils import DynamicLayer

R1_TERMINATION_SUFFIX = (
    "Time is up.\n\nGiven the time I've spent and the approaches I've tried, I should stop thinking and "
    "formulate a final answer based on what I already have.\n</think>\n\n"
    "**Step-by-Step Explanation and Answer:**\n\n1. **"
)
"""MRT's termination suffix for DeepSeek-R1-style ``<think>`` models (BRIEF section 2)."""

TAG_TERMINATION_SUFFIX = "<answer>"
"""Termination suffix for the ``<attempt>/<verify>/<revise>`` tag format: open the answer tag."""


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


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


def eos_token_ids(tokenizer: Any, model: torch.nn.Module) -> list[int]:
    """The ids that end an answer: the model's generation-config EOS, else the tokenizer's."""
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if value is None:
        value = getattr(tokenizer, "eos_token_id", None)
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def cut_at_stop(text: str, stop_strings: Sequence[str] | None) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    end = len(text)
    for s in stop_strings or ():
        i = text.find(s)
        if 0 <= i < end:
            end = i
    return text[:end]


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


def warp_logits(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next-token probabilities after temperature and nucleus (top-p) filtering, as HF ``generate`` does.

    Mirrors ``TemperatureLogitsWarper`` then ``TopPLogitsWarper``: sort ascending, drop tokens whose
    cumulative probability is ``<= 1 - top_p``, always keep the most likely token.
    """
    scores = logits.double() / temperature
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return scores.softmax(dim=-1)


Extractor = Callable[[str], "str | None"]
"""``extract(forced_answer_text) -> prediction`` (None: no answer found, graded incorrect)."""


def extract_raw(text: str) -> str | None:
    """The first line of the forced answer, stripped (None when empty)."""
    line = text.split("\n", 1)[0].strip()
    return line or None


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (balanced braces), or None."""
    found = None
    for match in re.finditer(r"\\boxed\s*\{", text):
        depth, i = 1, match.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            found = text[match.end():i - 1].strip()
    return found


def extract_auto(text: str) -> str | None:
    """``\\boxed{}`` content if any, else the text before ``</answer>`` if closed, else the first line."""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if "</answer>" in text:
        return text.split("</answer>", 1)[0].strip() or None
    return extract_raw(text)


EXTRACTORS: dict[str, Extractor] = {"raw": extract_raw, "boxed": extract_boxed, "auto": extract_auto}


def resolve_extractor(extract: str | Extractor) -> Extractor:
    """An extractor from a name in `EXTRACTORS` or a callable ``text -> str | None``."""
    if callable(extract):
        return extract
    if extract in EXTRACTORS:
        return EXTRACTORS[extract]
    raise ValueError(f"unknown answer extractor {extract!r}: use one of {sorted(EXTRACTORS)} "
                     "or a callable text -> str | None")


class StopOnStrings(StoppingCriteria):
    """Per-sequence stop once the generated text (after ``prompt_len`` ids) contains a stop string.

    Decodes the generated ids (special tokens skipped), so it works with any tokenizer, unlike
    ``generate(stop_strings=...)``, which needs to re-tokenize fixed probe strings.
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str], prompt_len: int):
        self.tokenizer, self.stop_strings, self.prompt_len = tokenizer, list(stop_strings), prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len:].tolist(), skip_special_tokens=True)
        done = [any(s in t for s in self.stop_strings) for t in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class MetaProver:
    """μ: append ``suffix`` to each context and let the model answer (sampled or greedy).

    Args:
        suffix: termination suffix appended (as ids) to every context, e.g. `R1_TERMINATION_SUFFIX`
            or `TAG_TERMINATION_SUFFIX`. May be empty.
        m: answers sampled per context by `sample`.
        temperature, top_p: sampling distribution (no top-k, no repetition penalty: the model's own
            generation-config defaults are overridden so the distribution is exactly this one).
        max_answer_tokens: answer length cap (new tokens).
        batch_size: sequences per ``generate`` call.
        stop_strings: generation stops at these strings; answers are cut before the first one.
    """

    def __init__(self, suffix: str = R1_TERMINATION_SUFFIX, m: int = 8, temperature: float = 0.7, top_p: float = 1.0,
                 max_answer_tokens: int = 32, batch_size: int = 64, stop_strings: Sequence[str] | None = None):
        if not isinstance(suffix, str):
            raise TypeError(f"suffix must be a string, got {type(suffix).__name__}")
        if m < 1:
            raise ValueError(f"m={m}: the meta-prover needs at least one sample per prefix (MRT used m=8)")
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}: sampling needs temperature > 0; "
                             "use force() for greedy answers")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p={top_p}: must be in (0, 1]")
        if max_answer_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_answer_tokens={max_answer_tokens} and batch_size={batch_size} must be >= 1")
        self.suffix = suffix
        self.m = int(m)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_answer_tokens = int(max_answer_tokens)
        self.batch_size = int(batch_size)
        self.stop_strings = list(stop_strings) if stop_strings else None

    def __repr__(self) -> str:
        return (f"MetaProver(suffix={self.suffix!r}, m={self.m}, temperature={self.temperature}, top_p={self.top_p}, "
                f"max_answer_tokens={self.max_answer_tokens}, batch_size={self.batch_size})")

    def suffix_ids(self, tokenizer: Any) -> list[int]:
        """The suffix tokenized on its own, without special tokens."""
        return list(tokenizer(self.suffix, add_special_tokens=False)["input_ids"]) if self.suffix else []

    def _queries(self, tokenizer: Any, contexts: Sequence[Sequence[int]]) -> list[list[int]]:
        suffix = self.suffix_ids(tokenizer)
        queries = [list(c) + suffix for c in contexts]
        if any(not q for q in queries):
            raise ValueError("a context is empty and the suffix is empty: μ has nothing to condition on; "
                             "give prompt ids or a non-empty termination suffix")
        return queries

    def sample(self, model: torch.nn.Module, tokenizer: Any, contexts: Sequence[Sequence[int]],
               seed: int | None = None) -> list[list[str]]:
        """``m`` sampled answer texts for each context (contexts x m samples in few ``generate`` calls).

        With ``seed`` the draw is reproducible (torch's RNG is forked, the global state is untouched);
        without it, torch's global RNG is used.
        """
        if not contexts:
            return []
        queries = self._queries(tokenizer, contexts)
        flat = [i for i in range(len(queries)) for _ in range(self.m)]
        device = model_device(model)
        fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
        with fork:
            if seed is not None:
                torch.manual_seed(seed)
            texts = self._generate(model, tokenizer, [queries[i] for i in flat], do_sample=True)
        out: list[list[str]] = [[] for _ in queries]
        for i, t in zip(flat, texts):
            out[i].append(t)
        return out

    def force(self, model: torch.nn.Module, tokenizer: Any, contexts: Sequence[Sequence[int]]) -> list[str]:
        """One greedy forced answer per context."""
        if not contexts:
            return []
        return self._generate(model, tokenizer, self._queries(tokenizer, contexts), do_sample=False)

    def _generation_kwargs(self, tokenizer: Any, model: torch.nn.Module, do_sample: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_answer_tokens,
            "do_sample": do_sample,
            "pad_token_id": pad_token_id(tokenizer, model),
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "use_cache": True,
        }
        eos = eos_token_ids(tokenizer, model)
        if eos:
            kwargs["eos_token_id"] = eos
        if do_sample:  # exactly softmax(logits / T) with nucleus top_p: switch off the model's other warpers
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0, typical_p=1.0,
                          epsilon_cutoff=0.0, eta_cutoff=0.0)
            if getattr(getattr(model, "generation_config", None), "min_p", None) is not None:
                kwargs["min_p"] = 0.0
        return kwargs

    def _generate(self, model: torch.nn.Module, tokenizer: Any, queries: list[list[int]], do_sample: bool) -> list[str]:
        """Generate one answer per query, longest queries batched together (less padding)."""
        kwargs = self._generation_kwargs(tokenizer, model, do_sample)
        device = model_device(model)
        order = sorted(range(len(queries)), key=lambda i: -len(queries[i]))
        texts: list[str] = [""] * len(queries)
        model = unwrap_ddp(model)
        with inference_mode(model):
            for start in range(0, len(order), self.batch_size):
                chunk = order[start:start + self.batch_size]
                ids, mask = left_pad([queries[i] for i in chunk], kwargs["pad_token_id"], device)
                for i, row in zip(chunk, self._generate_batch(model, tokenizer, ids, mask, kwargs)):
                    texts[i] = row
        return texts

    def _generate_batch(self, model: torch.nn.Module, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor,
                        kwargs: dict[str, Any], cache: Any = None) -> list[str]:
        if self.stop_strings:
            kwargs = {**kwargs, "stopping_criteria": StoppingCriteriaList(
                [StopOnStrings(tokenizer, self.stop_strings, ids.shape[1])])}
        if cache is not None:
            kwargs = {**kwargs, "past_key_values": cache}
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        return [self.decode(tokenizer, row) for row in out[:, ids.shape[1]:].tolist()]

    def sample_prefixes(self, model: torch.nn.Module, tokenizer: Any, sequences: Sequence[Sequence[int]],
                        prefix_lengths: Sequence[Sequence[int]], seed: int | None = None) -> list[list[list[str]]]:
        """``m`` sampled answers after every prefix ``sequences[t][:k]``, ``k`` in ``prefix_lengths[t]``.

        Same distribution as `sample` on the prefixes, but each sequence is run through the model
        once and its KV cache serves all its prefixes and samples (a prefix of a causal sequence
        has exactly the cached keys/values of its first k tokens; the rest is masked out). Models
        whose cache is not a plain `DynamicCache` fall back to one prefill per prefix.
        Returns ``out[t][i]`` = the ``m`` answers after ``sequences[t][:prefix_lengths[t][i]]``.
        """
        device = model_device(model)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(seed)
            return self._generate_prefixes(model, tokenizer, sequences, prefix_lengths, self.m, do_sample=True)

    def force_prefixes(self, model: torch.nn.Module, tokenizer: Any, sequences: Sequence[Sequence[int]],
                       prefix_lengths: Sequence[Sequence[int]]) -> list[list[str]]:
        """One greedy forced answer after every prefix (shared KV cache as in `sample_prefixes`)."""
        out = self._generate_prefixes(model, tokenizer, sequences, prefix_lengths, 1, do_sample=False)
        return [[answers[0] for answers in per_trace] for per_trace in out]

    def _generate_prefixes(self, model: torch.nn.Module, tokenizer: Any, sequences: Sequence[Sequence[int]],
                           prefix_lengths: Sequence[Sequence[int]], copies: int,
                           do_sample: bool) -> list[list[list[str]]]:
        if len(sequences) != len(prefix_lengths):
            raise ValueError(f"{len(sequences)} sequences but {len(prefix_lengths)} lists of prefix lengths")
        for seq, ks in zip(sequences, prefix_lengths):
            if any(not 0 <= k <= len(seq) for k in ks):
                raise ValueError(f"prefix lengths {list(ks)} must lie in [0, {len(seq)}] (the sequence length)")
        suffix = self.suffix_ids(tokenizer)
        out: list[list[list[str]]] = [[[] for _ in ks] for ks in prefix_lengths]
        kwargs = self._generation_kwargs(tokenizer, model, do_sample)
        pad_id, device = kwargs["pad_token_id"], model_device(model)
        model = unwrap_ddp(model)
        order = sorted((t for t in range(len(sequences)) if prefix_lengths[t]), key=lambda t: -len(sequences[t]))
        groups: list[list[int]] = []  # traces whose rows fill about one generate batch
        for t in order:
            rows = len(prefix_lengths[t]) * copies
            if groups and sum(len(prefix_lengths[u]) * copies for u in groups[-1]) + rows <= self.batch_size:
                groups[-1].append(t)
            else:
                groups.append([t])
        fallback: list[tuple[int, int]] = []
        with inference_mode(model):
            for group in groups:
                seqs = [list(sequences[t]) for t in group]
                cache = self._prefill(model, seqs, pad_id, device) if suffix else None
                if cache is None:
                    fallback.extend((t, i) for t in group for i in range(len(prefix_lengths[t])))
                    continue
                ids, mask, layers = cache
                # (row end in the padded prefill = left padding + prefix length, trace in group, prefix index)
                rows = sorted((ids.shape[1] - len(seqs[g]) + prefix_lengths[t][i], g, i) for g, t in enumerate(group)
                              for i in range(len(prefix_lengths[t])) for _ in range(copies))
                tail = torch.tensor([suffix], dtype=torch.long, device=device)
                for start in range(0, len(rows), self.batch_size):
                    chunk = rows[start:start + self.batch_size]
                    width = max(end for end, _, _ in chunk)  # cache columns this chunk needs
                    idx = torch.tensor([g for _, g, _ in chunk], device=device)
                    row_ids = torch.cat([ids[idx, :width], tail.expand(len(chunk), -1)], dim=1)
                    row_mask = torch.cat([mask[idx, :width], torch.ones_like(tail).expand(len(chunk), -1)], dim=1)
                    for r, (end, _, _) in enumerate(chunk):  # hide the sequence after the prefix
                        row_mask[r, end:width] = 0
                    sub = DynamicCache([(k[idx, :, :width], v[idx, :, :width]) for k, v in layers])
                    for (_, g, i), text in zip(chunk, self._generate_batch(model, tokenizer, row_ids, row_mask, kwargs,
                                                                             sub)):
                        out[group[g]][i].append(text)
        if fallback:
            contexts = [list(sequences[t][:prefix_lengths[t][i]]) for t, i in fallback]
            texts = self._generate(model, tokenizer, [q for q in self._queries(tokenizer, contexts)
                                                      for _ in range(copies)], do_sample)
            for n, (t, i) in enumerate(fallback):
                out[t][i].extend(texts[n * copies:(n + 1) * copies])
        return out

    @staticmethod
    def _prefill(model: torch.nn.Module, seqs: list[list[int]], pad_id: int, device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]] | None:
        """Left-padded ids, mask and per-layer (keys, values) of ``seqs``; None if the cache is not plain."""
        if max(len(s) for s in seqs) == 0:
            return None
        ids, mask = left_pad(seqs, pad_id, device)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        extra = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
        cache = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True,
                      **extra).past_key_values
        if not isinstance(cache, DynamicCache) or any(type(layer) is not DynamicLayer for layer in cache.layers):
            return None
        return ids, mask, [(layer.keys, layer.values) for layer in cache.layers]

    def decode(self, tokenizer: Any, answer_ids: Sequence[int]) -> str:
        """Answer text: special tokens dropped, cut before the first stop string."""
        return cut_at_stop(tokenizer.decode(list(answer_ids), skip_special_tokens=True), self.stop_strings)

    def answer_distribution(self, model: torch.nn.Module, tokenizer: Any, context: Sequence[int],
                            max_sequences: int = 100_000) -> dict[str, float]:
        """The exact distribution of `sample`'s answer text after ``context`` (answer text -> probability).

        Enumerates every answer token sequence of at most ``max_answer_tokens`` tokens, weighting each
        by the product of its next-token probabilities under `warp_logits` (temperature, top_p). A
        sequence ends at an EOS id, at the token cap, or once its text contains a stop string. Only
        feasible for tiny vocabularies and short answers: raises ``ValueError`` beyond ``max_sequences``
        live sequences.
        """
        query = self._queries(tokenizer, [context])[0]
        eos = set(eos_token_ids(tokenizer, model))
        device = model_device(model)
        live: list[tuple[list[int], float]] = [([], 1.0)]
        done: dict[str, float] = {}
        with inference_mode(model):
            for step in range(self.max_answer_tokens):
                grown: list[tuple[list[int], float]] = []
                for start in range(0, len(live), self.batch_size):
                    chunk = live[start:start + self.batch_size]
                    ids = torch.tensor([query + g for g, _ in chunk], dtype=torch.long, device=device)
                    logits = model(input_ids=ids, use_cache=False).logits[:, -1, :]
                    probs = warp_logits(logits.float(), self.temperature, self.top_p).cpu()
                    for (gen, p), row in zip(chunk, probs):
                        for tok in torch.nonzero(row > 0).flatten().tolist():
                            grown.append((gen + [tok], p * float(row[tok])))
                live = []
                for gen, p in grown:
                    text = tokenizer.decode(gen, skip_special_tokens=True)
                    stopped = any(s in text for s in self.stop_strings or ())
                    if gen[-1] in eos or stopped or step == self.max_answer_tokens - 1:
                        key = cut_at_stop(text, self.stop_strings)
                        done[key] = done.get(key, 0.0) + p
                    else:
                        live.append((gen, p))
                if len(live) > max_sequences:
                    raise ValueError(f"{len(live)} live answer sequences after {step + 1} tokens exceed "
                                     f"max_sequences={max_sequences}: exact enumeration needs a tiny vocabulary "
                                     "and a small max_answer_tokens")
        return done

    def success_probability(self, model: torch.nn.Module, tokenizer: Any, context: Sequence[int],
                            is_correct: Callable[[str], bool], max_sequences: int = 100_000) -> float:
        """Exact J for ``context``: the total probability of answer texts for which ``is_correct`` holds."""
        dist = self.answer_distribution(model, tokenizer, context, max_sequences=max_sequences)
        return float(sum(p for text, p in dist.items() if is_correct(text)))
