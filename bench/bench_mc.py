"""Benchmark: Monte Carlo progress (MRT's μ sampling) against likelihood progress and a forward pass.

Same traces as ``bench_likelihood.py`` (random tiny Llama, character tokenizer, B traces with
``--episodes`` episodes). Times, in one run (warm-up, then the median of interleaved repeats):

* ``forward``: one plain forward pass over the B traces;
* ``likelihood one_pass`` / ``cached``: all n+1 prefixes teacher-forced (no sampling);
* ``mc``: `MCProgress` with ``m`` forced answers of ``--answer-tokens`` tokens per prefix
  (B·(n+1)·m generations, batched ``--gen-batch`` sequences per ``generate`` call) through the engine's
  branches (`HFBackend.branch`): every trace is prefilled once and its KV cache serves all its prefixes;
* ``mc, no prefix reuse`` (``--no-reuse``): the same with ``HFBackend(prefix_sharing=False)``, which sends
  every prefix as an explicit context (no cache shared between prefixes; each of the m sample rows of a
  prefix is prefilled on its own).

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

from metarl.engine import GREEDY, Engine, Prefix
from metarl.engine.hf import HFBackend
from metarl.prover import TAG_TERMINATION_SUFFIX, ProverConfig
from metarl.rewards.progress import LikelihoodProgress, MCProgress, trace_tokens
from metarl.types import Trace

ANSWER_STOP = ["</answer>"]
TEMPERATURE = 0.7
"""Sampling temperature of the forced answers in `mc_grid` (MCProgress's default)."""
PATHS = {True: "reuse", False: "no reuse"}
"""Name of each sampling path, keyed by whether the shared prefix is reused."""


def exact_match(prediction: str, answer: str, prompt: str) -> bool:
    return prediction.strip() == answer.strip()


def engine(model: torch.nn.Module, tok: Any, reuse: bool, answer_tokens: int, gen_batch: int = 64,
           suffix: str = TAG_TERMINATION_SUFFIX) -> Engine:
    """The engine whose branches share each trace's prefill (``reuse``) or send every prefix as its own
    context (``HFBackend(prefix_sharing=False)``: every sample row prefilled on its own)."""
    return Engine(HFBackend(model, tok, gen_batch, prefix_sharing=reuse),
                  ProverConfig(suffix=suffix, answer_tokens=answer_tokens, answer_stop=ANSWER_STOP,
                               temperature=TEMPERATURE))


def prefix_inputs(traces: Sequence[Trace], tok: Any) -> tuple[list[list[int]], list[list[int]]]:
    """``(sequences, prefix_lengths)`` as `MCProgress` passes them to the prover.

    One sequence per trace (prompt + completion ids) and the lengths of its prefixes j = -1 .. n-1
    (prompt alone, then each episode end). The benchmark traces have distinct prompts, so there are no
    prefixes shared between traces for `MCProgress` to deduplicate.
    """
    tokens = [trace_tokens(t, tok) for t in traces]
    return ([tt.context(len(tt.completion_ids)) for tt in tokens],
            [[(len(tt.prompt_ids) + k, False) for k in tt.prefix_lengths()] for tt in tokens])


def check_counts(out: list[list[list[str]]], prefix_lengths: Sequence[Sequence[int]], m: int) -> None:
    """Raise unless ``out`` holds exactly ``m`` answers for every prefix (per trace, in order)."""
    got = [[len(answers) for answers in per_trace] for per_trace in out]
    want = [[m] * len(ks) for ks in prefix_lengths]
    if got != want:
        raise RuntimeError(f"sampler returned {got} answers per prefix, expected {want}")


def greedy_agreement(model: torch.nn.Module, tok: Any, sequences: Sequence[Sequence[int]],
                     prefixes: Sequence[Sequence[tuple[int, bool]]], answer_tokens: int,
                     suffix: str = TAG_TERMINATION_SUFFIX) -> tuple[int, int]:
    """(prefixes whose greedy forced answers are identical on both paths, prefixes compared).

    Greedy decoding makes the two paths comparable token for token: with the shared KV cache and with one
    explicit context per prefix. Equal answers mean equal argmax at every answer step, i.e. both paths
    condition on the same prefix.
    """
    answers = []
    for reuse in (True, False):
        eng = engine(model, tok, reuse, answer_tokens, suffix=suffix)
        plans = [[Prefix(k, tuple(eng.encode(suffix))) for k, _ in ps] for ps in prefixes]
        ids = eng.backend.branch(sequences, plans, 1, answer_tokens, ANSWER_STOP, GREEDY)
        answers.append([a for per_trace in ids for (a,) in per_trace])
    pairs = list(zip(*answers))
    return sum(a == b for a, b in pairs), len(pairs)


def sampler(eng: Engine, m: int, sequences: list[list[int]], prefixes: list[list[tuple[int, bool]]],
            seed: int) -> Callable[[], None]:
    """A timed call: ``m`` branches after every prefix of the traces, checked for m answers per prefix."""
    def run() -> None:
        check_counts(eng.branch(sequences, prefixes, m, seed=seed), prefixes, m)

    return run


def mc_grid(model: torch.nn.Module, tok: Any, ms: Sequence[int], episodes: Sequence[int], batch: int,
            completion_tokens: int, prompt_tokens: int, answer_tokens: int = 16, gen_batch: int = 64,
            repeats: int = 3, baseline_repeats: int = 5, seed: int = 0,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Seconds of Monte Carlo sampling for every (m, episodes), with and without prefix reuse.

    For each episodes-per-trace value: B random traces (`make_traces`), the median seconds of one
    forward pass and of likelihood ``one_pass`` on them (``baseline_repeats``), the greedy agreement
    of the two paths, then for each m the median of ``repeats`` interleaved timings of
    the engine's branches with the shared prefill (reuse) and with one explicit context per prefix (no
    reuse), each output checked to hold m answers per prefix. One warm-up call of each path runs first.
    Returns ``{"rows": [...], "per_episodes": [...]}`` (seconds and ratios as in ``costs.json``).
    """
    device = next(model.parameters()).device

    engines = {reuse: engine(model, tok, reuse, answer_tokens, gen_batch) for reuse in (True, False)}
    warm = make_traces(tok, 1, min(episodes), min(completion_tokens, 32), prompt_tokens, seed)
    for eng in engines.values():
        sampler(eng, min(ms), *prefix_inputs(warm, tok), seed)()
    rows, per_episodes = [], []
    for n_ep in episodes:
        traces = make_traces(tok, batch, n_ep, completion_tokens, prompt_tokens, seed)
        seqs, lengths = prefix_inputs(traces, tok)
        one = LikelihoodProgress(mode="one_pass", batch_size=batch)
        base = median_times({"forward": forward_fn(model, traces),
                             "one_pass": lambda: one.log_likelihoods(traces, model, tok, engines[True].prover)},
                            baseline_repeats, device)
        agree, total = greedy_agreement(model, tok, seqs, lengths, answer_tokens)
        per_episodes.append({"episodes": n_ep, "forward_s": base["forward"], "one_pass_s": base["one_pass"],
                             "prefixes": total, "greedy_agree": agree})
        log(f"  episodes={n_ep}: forward {base['forward']:.4f} s, likelihood one_pass {base['one_pass']:.4f} s, "
            f"greedy answers identical on {agree}/{total} prefixes")
        for m in ms:
            fns = {PATHS[reuse]: sampler(eng, m, seqs, lengths, seed) for reuse, eng in engines.items()}
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
    reuse, explicit = (engine(model, tok, r, args.answer_tokens, args.gen_batch) for r in (True, False))
    one = LikelihoodProgress(mode="one_pass", batch_size=args.batch)
    cached = LikelihoodProgress(mode="cached", batch_size=args.batch)
    mc = MCProgress(m=args.m, extract="auto", seed=args.seed)
    fns = {"forward": forward_fn(model, traces),
           "likelihood one_pass": lambda: one.score_batch(traces, model, tok, reuse.prover),
           "likelihood cached": lambda: cached.score_batch(traces, model, tok, reuse.prover),
           "mc": lambda: mc.score_batch(traces, reuse, exact_match)}
    if args.no_reuse:
        fns["mc, no prefix reuse"] = lambda: mc.score_batch(traces, explicit, exact_match)
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
