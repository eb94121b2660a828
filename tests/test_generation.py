"""Batched generation (metarl.generation): stop strings and padding, including models whose pad is EOS."""
from __future__ import annotations

import copy

import torch
from transformers import GenerationConfig

from metarl.generation import generate_batch


def _sample(model, tok, contexts, stops):
    eos = tok.eos_token_id
    cfg = GenerationConfig(do_sample=True, temperature=1.0, top_k=None, eos_token_id=[eos],
                           pad_token_id=tok.pad_token_id)
    torch.manual_seed(5)
    return generate_batch(model, tok, contexts, cfg, 16, [eos], stops)


def test_stop_string_padding_is_not_kept_when_pad_is_eos(tiny):
    model, tok = tiny
    contexts = [tok("Q1: 1+1=", add_special_tokens=False)["input_ids"], tok("Q7: 3+4=", add_special_tokens=False)["input_ids"]]
    free = [tok.decode(ids) for ids in _sample(model, tok, contexts, None)]
    # a two-character stop string that ends stream 0 early and never occurs in stream 1 (which keeps going)
    stop = next(free[0][i:i + 2] for i in range(1, 10)
                if free[0].find(free[0][i:i + 2]) == i and free[0][i:i + 2] not in free[1])
    own_pad = _sample(model, tok, contexts, [stop])
    assert tok.decode(own_pad[0]).endswith(stop) and tok.eos_token_id not in own_pad[0]
    pad_is_eos = copy.deepcopy(tok)
    pad_is_eos.pad_token = pad_is_eos.eos_token
    same = _sample(model, pad_is_eos, contexts, [stop])
    assert same[0] == own_pad[0]  # no stray EOS: the stream was finished by its stop string
    assert same[1] == own_pad[1]
