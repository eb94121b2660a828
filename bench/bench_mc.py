"""Benchmark: Monte Carlo progress (MRT's μ sampling) against likelihood progress and a forward pass.

Same traces as ``bench_likelihood.py`` (random tiny Llama, character tokenizer, B traces with
``--episodes`` episodes). Times, in one run (warm-up, then the median of interleaved repeats):

* ``forward``: one plain forward pass over the B traces;
* ``likelihood one_pass`` / ``cached``: all n+1 prefixes teacher-forced (no sampling);
* ``mc``: `MCProgress` with ``m`` forced answers of ``--answer-tokens`` tokens per prefix
  (B·(n+1)·m generations, batched ``--gen-batch`` sequences per ``generate`` call); every trace is
  prefilled once and its KV cache serves all its prefixes (`MetaProver.sample_prefixes`);
* ``mc, no prefix reuse`` (``--no-reuse``): the same with `PerPrefixProver`, which sends every prefix
  through `MetaProver.sample` as an explicit context (no cache shared between prefixes; ``sample``
  repeats each context m times, so every sample row is prefilled on its own).

The random model never writes ``</answer>``, so every forced answer runs to ``--answer-tokens``.
`mc_grid` (used by ``bench/costs.py``) sweeps m and episodes per trace for both sampling paths.

    python bench/bench_mc.py
    python bench/bench_mc.py --no-reuse
    python bench/bench_mc.py --m 8 --answer-tokens 32 --device cuda
"""
from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import torch
from bench_likelihood import build_model, forward_fn, make_traces, median_times

from metarl.prover import TAG_TERMINATION_SUFFIX, MetaProver
from metarl.rewards.progress import LikelihoodProgress, MCProgress, trace_tokens
from metarl.types import Trace

ANSWER_STOP = ["</answer>"]
TEMPERATURE = 0.7
"""Sampling temperature of the forced answers in `mc_grid` (MCProgress's default)."""
PATHS = {True: "reuse", False: "no reuse"}
"""Name of each sampling path, keyed by whether the shared prefix is reused."""


def exact_match(prediction: str, answer: str, prompt: str) -> bool:
    return prediction.strip() == answer.strip()


def explicit_contexts(sequences: Sequence[Sequence[int]], prefix_lengths: Sequence[Sequence[int]]) -> list[list[int]]:
    """Every prefix ``sequences[t][:k]`` as its own context, in (trace, prefix) order."""
    return [list(seq[:k]) for seq, ks in zip(sequences, prefix_lengths) for k in ks]


def _regroup(flat: list[Any], prefix_lengths: Sequence[Sequence[int]]) -> list[list[Any]]:
    it = iter(flat)
    return [[next(it) for _ in ks] for ks in prefix_lengths]


class PerPrefixProver(MetaProver):
    """`MetaProver` without prefix reuse: every prefix goes through `sample` / `force` as an explicit context.

    Same arguments, same outputs (``out[t][i]`` = the answers after ``sequences[t][:prefix_lengths[t][i]]``)
    as `MetaProver.sample_prefixes` / `force_prefixes`, but no KV cache is shared between prefixes:
    `MetaProver.sample` repeats each context m times in its ``generate`` batches, so every sample row
    is prefilled on its own.
    """

    def sample_prefixes(self, model: torch.nn.Module, tokenizer: Any, sequences: Sequence[Sequence[int]],
                        prefix_lengths: Sequence[Sequence[int]], seed: int | None = None) -> list[list[list[str]]]:
        """``m`` sampled answers after every prefix, one explicit context per prefix."""
        return _regroup(self.sample(model, tokenizer, explicit_contexts(sequences, prefix_lengths), seed=seed),
                        prefix_lengths)

    def force_prefixes(self, model: torch.nn.Module, tokenizer: Any, sequences: Sequence[Sequence[int]],
                       prefix_lengths: Sequence[Sequence[int]]) -> list[list[str]]:
        """One greedy answer after every prefix, one explicit context per prefix."""
        return _regroup(self.force(model, tokenizer, explicit_contexts(sequences, prefix_lengths)), prefix_lengths)


def prefix_inputs(traces: Sequence[Trace], tok: Any) -> tuple[list[list[int]], list[list[int]]]:
    """``(sequences, prefix_lengths)`` as `MCProgress` passes them to the prover.

    One sequence per trace (prompt + completion ids) and the lengths of its prefixes j = -1 .. n-1
    (prompt alone, then each episode end). The benchmark traces have distinct prompts, so there are no
    prefixes shared between traces for `MCProgress` to deduplicate.
    """
    tokens = [trace_tokens(t, tok) for t in traces]
    return ([tt.context(len(tt.completion_ids)) for tt in tokens],
            [[len(tt.prompt_ids) + k for k in tt.prefix_lengths()] for tt in tokens])


def check_counts(out: list[list[list[str]]], prefix_lengths: Sequence[Sequence[int]], m: int) -> None:
    """Raise unless ``out`` holds exactly ``m`` answers for every prefix (per trace, in order)."""
    got = [[len(answers) for answers in per_trace] for per_trace in out]
    want = [[m] * len(ks) for ks in prefix_lengths]
    if got != want:
        raise RuntimeError(f"sampler returned {got} answers per prefix, expected {want}")


def greedy_agreement(model: torch.nn.Module, tok: Any, sequences: Sequence[Sequence[int]],
                     prefix_lengths: Sequence[Sequence[int]], answer_tokens: int,
                     suffix: str = TAG_TERMINATION_SUFFIX) -> tuple[int, int]:
    """(prefixes whose greedy forced answers are identical on both paths, prefixes compared).

    Greedy decoding makes the two paths comparable token for token: with the shared KV cache
    (`MetaProver.force_prefixes`) and with one explicit context per prefix (`PerPrefixProver`). Equal
    answers mean equal argmax at every answer step, i.e. both paths condition on the same prefix.
    """
    kwargs = dict(m=1, max_answer_tokens=answer_tokens, stop_strings=ANSWER_STOP)
    reuse = MetaProver(suffix, **kwargs).force_prefixes(model, tok, sequences, prefix_lengths)
    explicit = PerPrefixProver(suffix, **kwargs).force_prefixes(model, tok, sequences, prefix_lengths)
    pairs = [(a, b) for ra, rb in zip(reuse, explicit) for a, b in zip(ra, rb)]
    return sum(a == b for a, b in pairs), len(pairs)


def sampler(prover: MetaProver, model: torch.nn.Module, tok: Any, sequences: list[list[int]],
            prefix_lengths: list[list[int]], seed: int) -> Callable[[], None]:
    """A timed call: ``prover.sample_prefixes`` on the traces, checked for m answers per prefix."""
    def run() -> None:
        check_counts(prover.sample_prefixes(model, tok, sequences, prefix_lengths, seed=seed), prefix_lengths,
                     prover.m)

    return run


def mc_grid(model: torch.nn.Module, tok: Any, ms: Sequence[int], episodes: Sequence[int], batch: int,
            completion_tokens: int, prompt_tokens: int, answer_tokens: int = 16, gen_batch: int = 64,
            repeats: int = 3, baseline_repeats: int = 5, seed: int = 0,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Seconds of Monte Carlo sampling for every (m, episodes), with and without prefix reuse.

    For each episodes-per-trace value: B random traces (`make_traces`), the median seconds of one
    forward pass and of likelihood ``one_pass`` on them (``baseline_repeats``), the greedy agreement
    of the two paths, then for each m the median of ``repeats`` interleaved timings of
    `MetaProver.sample_prefixes` (reuse) and `PerPrefixProver.sample_prefixes` (no reuse), each
    output checked to hold m answers per prefix. One warm-up call of each path runs first.
    Returns ``{"rows": [...], "per_episodes": [...]}`` (seconds and ratios as in ``costs.json``).
    """
    device = next(model.parameters()).device

    def provers(m: int) -> dict[bool, MetaProver]:
        kwargs = dict(m=m, temperature=TEMPERATURE, max_answer_tokens=answer_tokens, batch_size=gen_batch,
                      stop_strings=ANSWER_STOP)
        return {True: MetaProver(TAG_TERMINATION_SUFFIX, **kwargs),
                False: PerPrefixProver(TAG_TERMINATION_SUFFIX, **kwargs)}

    warm = make_traces(tok, 1, min(episodes), min(completion_tokens, 32), prompt_tokens, seed)
    for p in provers(min(ms)).values():
        sampler(p, model, tok, *prefix_inputs(warm, tok), seed)()
    rows, per_episodes = [], []
    for n_ep in episodes:
        traces = make_traces(tok, batch, n_ep, completion_tokens, prompt_tokens, seed)
        seqs, lengths = prefix_inputs(traces, tok)
        one = LikelihoodProgress(suffix=TAG_TERMINATION_SUFFIX, mode="one_pass", batch_size=batch)
        base = median_times({"forward": forward_fn(model, traces),
                             "one_pass": lambda: one.log_likelihoods(traces, model, tok)}, baseline_repeats, device)
        agree, total = greedy_agreement(model, tok, seqs, lengths, answer_tokens)
        per_episodes.append({"episodes": n_ep, "forward_s": base["forward"], "one_pass_s": base["one_pass"],
                             "prefixes": total, "greedy_agree": agree})
        log(f"  episodes={n_ep}: forward {base['forward']:.4f} s, likelihood one_pass {base['one_pass']:.4f} s, "
            f"greedy answers identical on {agree}/{total} prefixes")
        for m in ms:
            fns = {PATHS[reuse]: sampler(p, model, tok, seqs, lengths, seed) for reuse, p in provers(m).items()}
            times = median_times(fns, repeats, device, warmup=False)
            for reuse in (True, False):
                t = times[PATHS[reuse]]
                rows.append({"m": m, "episodes": n_ep, "reuse": reuse, "seconds": t,
                             "over_forward": t / base["forward"], "over_likelihood": t / base["one_pass"]})
            t_reuse, t_explicit = times[PATHS[True]], times[PATHS[False]]
            log(f"  m={m} episodes={n_ep}: reuse {t_reuse:.3f} s, no reuse {t_explicit:.3f} s "
                f"(no reuse / reuse = {t_explicit / t_reuse:.2f})")
    return {"rows": rows, "per_episodes": per_episodes}


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
    parser.add_argument("--no-reuse", action="store_true", help="also time MCProgress without prefix reuse")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, tok = build_model(args.hidden, args.layers, device=args.device, seed=args.seed)
    traces = make_traces(tok, args.batch, args.episodes, args.completion_tokens, args.prompt_tokens, args.seed)
    one = LikelihoodProgress(suffix=TAG_TERMINATION_SUFFIX, mode="one_pass", batch_size=args.batch)
    cached = LikelihoodProgress(suffix=TAG_TERMINATION_SUFFIX, mode="cached", batch_size=args.batch)
    mc = MCProgress(suffix=TAG_TERMINATION_SUFFIX, m=args.m, max_answer_tokens=args.answer_tokens,
                    batch_size=args.gen_batch, extract="auto", stop_strings=ANSWER_STOP, seed=args.seed)
    fns = {"forward": forward_fn(model, traces), "likelihood one_pass": lambda: one.score_batch(traces, model, tok),
           "likelihood cached": lambda: cached.score_batch(traces, model, tok),
           "mc": lambda: mc.score_batch(traces, model, tok, exact_match)}
    if args.no_reuse:
        explicit = MCProgress(suffix=TAG_TERMINATION_SUFFIX, m=args.m, max_answer_tokens=args.answer_tokens,
                              batch_size=args.gen_batch, extract="auto", stop_strings=ANSWER_STOP, seed=args.seed)
        explicit.prover = PerPrefixProver(TAG_TERMINATION_SUFFIX, m=args.m, max_answer_tokens=args.answer_tokens,
                                          batch_size=args.gen_batch, stop_strings=ANSWER_STOP)
        fns["mc, no prefix reuse"] = lambda: explicit.score_batch(traces, model, tok, exact_match)
    times = median_times(fns, args.repeats, device)

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
