"""Batched sampling from any causal LM with a token cap and a forced answer at the cap.

Shared by the trainer's rollouts, the held-out evaluation and ``metarl-eval``. Streams are left-padded
and sampled in one ``generate`` call per batch; each continuation is cut after its first end-of-sequence
token.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


def generate_batch(model, tokenizer, contexts: list[list[int]], generation_config, max_new_tokens: int,
                   eos_ids: Sequence[int], stop_strings: Sequence[str] | None = None) -> list[list[int]]:
    """Sample a continuation for every context in one ``generate`` call (left padding); each is cut after
    its first end-of-sequence token (kept)."""
    if max_new_tokens <= 0 or not contexts:
        return [[] for _ in contexts]
    device = next(model.parameters()).device
    width = max(len(c) for c in contexts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    input_ids = torch.full((len(contexts), width), pad, dtype=torch.long)
    attn = torch.zeros((len(contexts), width), dtype=torch.long)
    for i, c in enumerate(contexts):
        input_ids[i, width - len(c):] = torch.tensor(c, dtype=torch.long)
        attn[i, width - len(c):] = 1
    cfg = copy.deepcopy(generation_config)
    cfg.max_new_tokens = max_new_tokens
    cfg.max_length = None
    kwargs: dict[str, Any] = {}
    if stop_strings:
        cfg.stop_strings = list(stop_strings)
        kwargs["tokenizer"] = tokenizer
    with torch.no_grad():
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attn.to(device),
                             generation_config=cfg, **kwargs)
    new = out[:, width:].tolist()
    eos = set(eos_ids)
    result = []
    for toks in new:
        cut = []
        for t in toks:
            cut.append(t)
            if t in eos:
                break
        # strip padding generate adds after a sequence finished by a stop string
        while cut and cut[-1] == pad and pad not in eos:
            cut.pop()
        # with pad == EOS (models without a pad token) that padding reads as a sampled EOS: a stream whose
        # text already ended with a stop string was finished by it, so what follows is padding
        if stop_strings and len(cut) > 1 and cut[-1] == pad and _stopped_before_last(tokenizer, cut, stop_strings):
            cut.pop()
        result.append(cut)
    return result


def _stopped_before_last(tokenizer, ids: list[int], stop_strings: Sequence[str]) -> bool:
    """Whether a stop string is completed by ``ids[-2]``, i.e. generation had finished before ``ids[-1]``."""
    before = tokenizer.decode(ids[:-2])
    upto = tokenizer.decode(ids[:-1])
    return any(s and (i := upto.rfind(s)) >= 0 and i + len(s) > len(before) for s in stop_strings)


@dataclass
class Completion:
    """A sampled completion: ids and text, thinking tokens used, whether an answer was forced at the cap."""

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    thinking_tokens: int
    forced: bool


def prompt_ids_for(tokenizer, prompt: Any) -> list[int]:
    """Token ids of a prompt: plain text as is, chat messages through the chat template."""
    if isinstance(prompt, str):
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)


def complete(model, tokenizer, prompts: Sequence[Any], cap: int, *, suffix: str | None = None,
             answer_stop: Sequence[str] | None = None, answer_tokens: int = 16, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 64) -> list[Completion]:
    """Complete every prompt with at most ``cap`` thinking tokens; with a ``suffix``, a stream that hits the
    cap gets the suffix and a forced answer of at most ``answer_tokens`` tokens. (Budget forcing and
    sequential revisions live in ``metarl.eval.sampling`` and ``metarl.trainer.rollout``.)"""
    from transformers import GenerationConfig

    eos = model.generation_config.eos_token_id
    eos_ids = list(eos) if isinstance(eos, list | tuple) else [eos if eos is not None else tokenizer.eos_token_id]
    cfg = GenerationConfig(do_sample=do_sample, temperature=temperature if do_sample else None,
                           top_p=top_p if do_sample else None, top_k=None if do_sample else None,
                           pad_token_id=tokenizer.pad_token_id, eos_token_id=eos_ids)
    out: list[Completion] = []
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    for b in range(0, len(prompts), batch_size):
        pids = [prompt_ids_for(tokenizer, p) for p in prompts[b:b + batch_size]]
        new = generate_batch(model, tokenizer, pids, cfg, cap, eos_ids)
        ids = [toks[:cap] for toks in new]
        thinking = [len(toks) for toks in ids]
        forced = [i for i in range(len(pids)) if suffix_ids and thinking[i] >= cap
                  and not (ids[i] and ids[i][-1] in eos_ids)]
        if forced:
            new = generate_batch(model, tokenizer, [pids[i] + ids[i] + suffix_ids for i in forced], cfg,
                                 answer_tokens, eos_ids, list(answer_stop or []) or None)
            for i, toks in zip(forced, new):
                ids[i] += suffix_ids + toks
        for i, p in enumerate(pids):
            out.append(Completion(p, ids[i], tokenizer.decode(ids[i], skip_special_tokens=True), thinking[i],
                                  i in forced))
    return out
