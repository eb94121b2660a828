"""Benchmark: likelihood progress for all prefixes in one pass vs. one pass per prefix.

docs/method.md §7 asks that scoring every prefix of a trace costs at most 1.5x one plain forward pass
over the traces, and is at least 3x faster than one forward pass per prefix. This script builds a
random tiny Llama (character tokenizer, no download), B traces with ``--episodes`` episodes each
(completion ~``--completion-tokens`` tokens), and times, in one run (warm-up, then the median of
``--repeats``):

* ``forward``: one plain forward pass over the B traces (prompt + completion, full logits);
* ``one_pass``: `LikelihoodProgress(mode="one_pass")` over the B traces (all n+1 prefixes);
* ``cached``: `LikelihoodProgress(mode="cached")` (context with a KV cache, then all blocks);
* ``naive``: `LikelihoodProgress(mode="naive")` (one sequence per prefix, B per forward).

    python bench/bench_likelihood.py                      # CPU, hidden 256, 4 layers, B=8
    python bench/bench_likelihood.py --threads 2 --suffix r1
    python bench/bench_likelihood.py --device cuda --hidden 1024 --layers 8 --batch 16
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from metarl.models.tiny import build_char_tokenizer, build_tiny_model
from metarl.prover import R1_TERMINATION_SUFFIX, TAG_TERMINATION_SUFFIX, ProverConfig
from metarl.rewards.progress import LikelihoodProgress
from metarl.types import Episode, Trace

SUFFIXES = {"tag": TAG_TERMINATION_SUFFIX, "r1": R1_TERMINATION_SUFFIX}
ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,+=\n"


def make_traces(tok, batch: int, episodes: int, completion_tokens: int, prompt_tokens: int, seed: int) -> list[Trace]:
    """Random traces whose episodes split the completion at random points (character tokens)."""
    gen = torch.Generator().manual_seed(seed)

    def text(n: int) -> str:
        return "".join(ALPHABET[int(i)] for i in torch.randint(len(ALPHABET), (n,), generator=gen))

    traces = []
    for _ in range(batch):
        prompt, completion = text(prompt_tokens), text(completion_tokens)
        cuts = sorted(torch.randperm(completion_tokens - 1, generator=gen)[: episodes - 1].add(1).tolist())
        bounds = [0, *cuts, completion_tokens]
        eps = [Episode("other", a, b, completion[a:b], token_start=a, token_end=b) for a, b in zip(bounds, bounds[1:])]
        trace = Trace(prompt, completion, answer=str(int(torch.randint(10, 10_000, (1,), generator=gen))), episodes=eps)
        trace.prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        trace.completion_ids = tok(completion, add_special_tokens=False)["input_ids"]
        traces.append(trace)
    return traces


def build_model(hidden: int = 256, layers: int = 4, heads: int = 4, attn: str = "sdpa", device: str = "cpu",
                dtype: str = "float32", seed: int = 0):
    """The benchmark's random tiny Llama (eval mode, on ``device``) and the character tokenizer."""
    tok = build_char_tokenizer()
    model = build_tiny_model(len(tok), hidden_size=hidden, num_layers=layers, num_heads=heads,
                             max_position_embeddings=4096, seed=seed, tokenizer=tok)
    model.set_attn_implementation(attn)
    return model.to(device=torch.device(device), dtype=getattr(torch, dtype)).eval(), tok


def forward_fn(model, traces: list[Trace]) -> Callable[[], None]:
    """One plain forward pass over the traces (prompt + completion, full logits, no cache)."""
    device = next(model.parameters()).device
    ids = torch.tensor([t.prompt_ids + t.completion_ids for t in traces], device=device)
    mask = torch.ones_like(ids)

    def forward() -> None:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    return forward


def median_times(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device,
                 warmup: bool = True) -> dict[str, float]:
    """Median wall time of each function after one warm-up call each (``warmup=False``: none).

    The repeats are interleaved (all functions once per round), so a change in machine load hits
    every measurement alike; CUDA is synchronised around each call.
    """
    def timed(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    if warmup:
        for fn in fns.values():
            timed(fn)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in samples.items()}


def measure(model, tok, traces: list[Trace], suffix: str = TAG_TERMINATION_SUFFIX, answer_template: str = "{answer}",
            repeats: int = 5) -> dict[str, float]:
    """Median seconds of forward / one_pass / cached / naive over ``traces``, token counts and max |ΔL|.

    ``max_diff`` is the largest |L_j| difference of one_pass and cached against naive (the reference).
    """
    device = next(model.parameters()).device
    batch = len(traces)
    prover = ProverConfig(suffix=suffix)
    est = {mode: LikelihoodProgress(answer_template=answer_template, mode=mode, batch_size=batch)
           for mode in ("one_pass", "cached", "naive")}
    ref = est["naive"].log_likelihoods(traces, model, tok, prover)
    max_diff = max(abs(x - y) for mode in ("one_pass", "cached")
                   for la, lb in zip(est[mode].log_likelihoods(traces, model, tok, prover), ref) for x, y in zip(la, lb))
    times = median_times({"forward": forward_fn(model, traces),
                          **{mode: (lambda e=e: e.log_likelihoods(traces, model, tok, prover)) for mode, e in est.items()}},
                         repeats, device)
    block = len(tok(suffix, add_special_tokens=False)["input_ids"]) + max(
        len(tok(answer_template.format(answer=t.answer), add_special_tokens=False)["input_ids"]) for t in traces)
    tokens_forward = sum(len(t.prompt_ids) + len(t.completion_ids) for t in traces)
    return {**times, "max_diff": max_diff, "block_tokens": block, "tokens_forward": tokens_forward,
            "tokens_one_pass": tokens_forward + sum(len(t.episodes) + 1 for t in traces) * block,
            "tokens_naive": sum(len(t.prompt_ids) + k + block for t in traces
                                for k in [0] + [e.token_end for e in t.episodes])}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="traces B")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--completion-tokens", type=int, default=512)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--suffix", choices=sorted(SUFFIXES), default="tag",
                        help="termination suffix: tag = '<answer>', r1 = MRT's R1 suffix (~170 characters)")
    parser.add_argument("--answer-template", default="{answer}")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, tok = build_model(args.hidden, args.layers, args.heads, args.attn, args.device, args.dtype, args.seed)
    traces = make_traces(tok, args.batch, args.episodes, args.completion_tokens, args.prompt_tokens, args.seed)
    r = measure(model, tok, traces, SUFFIXES[args.suffix], args.answer_template, args.repeats)
    print_table(r, args, vocab=len(tok))
    return r


def print_table(r: dict[str, float], args: argparse.Namespace, vocab: int) -> None:
    """The command line's markdown table of `measure`'s result."""
    t_forward, t_one, t_cached, t_naive = r["forward"], r["one_pass"], r["cached"], r["naive"]
    block, max_diff, device = r["block_tokens"], r["max_diff"], args.device
    tokens_forward, tokens_one, tokens_naive = r["tokens_forward"], r["tokens_one_pass"], r["tokens_naive"]

    print(f"model: Llama hidden={args.hidden} layers={args.layers} vocab={vocab} attn={args.attn} "
          f"dtype={args.dtype} device={device} threads={torch.get_num_threads()}")
    print(f"traces: B={args.batch}, {args.episodes} episodes, prompt {args.prompt_tokens} + completion "
          f"{args.completion_tokens} tokens; suffix={args.suffix!r} ({block} suffix+answer tokens per prefix)")
    print(f"one_pass / cached vs naive: max |ΔL| = {max_diff:.2e}")
    print()
    print(f"| {'what':<34} | {'tokens':>7} | {'median s':>9} | {'ratio':>7} | {'target':>7} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 11}|{'-' * 9}|{'-' * 9}|")
    print(f"| {'forward (prompt + completion)':<34} | {tokens_forward:>7} | {t_forward:>9.4f} | "
          f"{'1.00':>7} | {'':>7} |")
    print(f"| {'one_pass (all prefixes)':<34} | {tokens_one:>7} | {t_one:>9.4f} | "
          f"{t_one / t_forward:>7.2f} | {'<= 1.5':>7} |")
    print(f"| {'cached (KV cache, then blocks)':<34} | {tokens_one:>7} | {t_cached:>9.4f} | "
          f"{t_cached / t_forward:>7.2f} | {'<= 1.5':>7} |")
    print(f"| {'naive (one pass per prefix)':<34} | {tokens_naive:>7} | {t_naive:>9.4f} | "
          f"{t_naive / t_forward:>7.2f} | {'':>7} |")
    print(f"| {'naive / one_pass':<34} | {'':>7} | {'':>9} | {t_naive / t_one:>7.2f} | {'>= 3':>7} |")
    print(f"| {'naive / cached':<34} | {'':>7} | {'':>9} | {t_naive / t_cached:>7.2f} | {'>= 3':>7} |")


if __name__ == "__main__":
    main()
