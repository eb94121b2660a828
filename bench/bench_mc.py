"""Benchmark: Monte Carlo progress (MRT's μ sampling) against likelihood progress and a forward pass.

Same traces as ``bench_likelihood.py`` (random tiny Llama, character tokenizer, B traces with
``--episodes`` episodes). Times, in one run (warm-up, then the median of interleaved repeats):

* ``forward``: one plain forward pass over the B traces;
* ``likelihood one_pass`` / ``cached``: all n+1 prefixes teacher-forced (no sampling);
* ``mc``: `MCProgress` with ``m`` forced answers of ``--answer-tokens`` tokens per prefix
  (B·(n+1)·m generations, batched ``--gen-batch`` sequences per ``generate`` call).

    python bench/bench_mc.py
    python bench/bench_mc.py --m 8 --answer-tokens 32 --device cuda
"""
from __future__ import annotations

import argparse

import torch
from bench_likelihood import make_traces, median_times

from metarl.models.tiny import build_char_tokenizer, build_tiny_model
from metarl.prover import TAG_TERMINATION_SUFFIX
from metarl.rewards.progress import LikelihoodProgress, MCProgress


def exact_match(prediction: str, answer: str, prompt: str) -> bool:
    return prediction.strip() == answer.strip()


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--completion-tokens", type=int, default=512)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--m", type=int, default=8, help="forced answers per prefix (MRT: 8)")
    parser.add_argument("--answer-tokens", type=int, default=16)
    parser.add_argument("--gen-batch", type=int, default=64, help="sequences per generate call")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    tok = build_char_tokenizer()
    model = build_tiny_model(len(tok), hidden_size=args.hidden, num_layers=args.layers, max_position_embeddings=4096,
                             seed=args.seed, tokenizer=tok).to(device).eval()
    traces = make_traces(tok, args.batch, args.episodes, args.completion_tokens, args.prompt_tokens, args.seed)
    ids = torch.tensor([t.prompt_ids + t.completion_ids for t in traces], device=device)

    def forward() -> None:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False)

    one = LikelihoodProgress(suffix=TAG_TERMINATION_SUFFIX, mode="one_pass", batch_size=args.batch)
    cached = LikelihoodProgress(suffix=TAG_TERMINATION_SUFFIX, mode="cached", batch_size=args.batch)
    mc = MCProgress(suffix=TAG_TERMINATION_SUFFIX, m=args.m, max_answer_tokens=args.answer_tokens,
                    batch_size=args.gen_batch, extract="auto", stop_strings=["</answer>"], seed=args.seed)
    times = median_times({
        "forward": forward,
        "likelihood one_pass": lambda: one.score_batch(traces, model, tok),
        "likelihood cached": lambda: cached.score_batch(traces, model, tok),
        "mc": lambda: mc.score_batch(traces, model, tok, exact_match),
    }, args.repeats, device)

    prefixes = args.batch * (args.episodes + 1)
    print(f"model: Llama hidden={args.hidden} layers={args.layers} device={device} threads={torch.get_num_threads()}")
    print(f"traces: B={args.batch}, {args.episodes} episodes, prompt {args.prompt_tokens} + completion "
          f"{args.completion_tokens} tokens; {prefixes} prefixes; MC: m={args.m}, {args.answer_tokens} answer tokens, "
          f"{prefixes * args.m} generations")
    print()
    print(f"| {'what':<22} | {'median s':>9} | {'x forward':>9} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 11}|")
    for name, t in times.items():
        print(f"| {name:<22} | {t:>9.3f} | {t / times['forward']:>9.2f} |")
    return times


if __name__ == "__main__":
    main()
