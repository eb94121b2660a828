"""Tiny causal LMs built locally: a character-level tokenizer and a small Llama.

Used by the tests, the benchmarks and the CPU demo: no download, seconds to build. Every
printable ASCII character, newline and tab is one token, so any text the built-in tasks use
tokenizes and decodes exactly (``decode(encode(s)) == s``).
"""
from __future__ import annotations

import string

import torch

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = list(string.printable[:95]) + ["\n", "\t"]  # printable[:95] = digits, letters, punctuation, space


def build_char_tokenizer(chars: list[str] | None = None):
    """A ``PreTrainedTokenizerFast`` with one token per character (plus pad/bos/eos/unk)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + list(chars or CHARS))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    hf.padding_side = "left"
    return hf


def build_tiny_model(vocab_size: int, hidden_size: int = 32, num_layers: int = 2, num_heads: int = 4,
                     max_position_embeddings: int = 1024, seed: int = 0, tokenizer=None):
    """A randomly initialised ``LlamaForCausalLM`` of a few thousand to a few million parameters."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
    )
    if tokenizer is not None:
        cfg.pad_token_id = tokenizer.pad_token_id
        cfg.bos_token_id = tokenizer.bos_token_id
        cfg.eos_token_id = tokenizer.eos_token_id
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    if tokenizer is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model


def tiny_model_and_tokenizer(hidden_size: int = 32, num_layers: int = 2, seed: int = 0):
    """A fresh random tiny model with the character tokenizer (for tests and benchmarks)."""
    tok = build_char_tokenizer()
    return build_tiny_model(len(tok), hidden_size=hidden_size, num_layers=num_layers, seed=seed, tokenizer=tok), tok


def sharpen(model, scale: float = 10.0):
    """Scale a tiny Llama's embeddings by ``scale`` and its projections by ``scale / 2`` so that next-token
    distributions are far from uniform (random models whose answers tell prefixes apart: estimator checks,
    tests, benchmarks). In place; returns the model in eval mode."""
    import torch

    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(scale)
        for name, p in model.named_parameters():
            if "proj" in name:
                p.mul_(scale / 2)
    return model.eval()
