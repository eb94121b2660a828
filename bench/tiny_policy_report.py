"""Held-out report of the tiny warm-started policy (``model=tiny``).

Samples ``--samples`` completions per held-out subset-sum question with the model's ``generate`` and
prints: pass@k for k = 1, 2, 4, 8 (unbiased estimator 1 - C(n-c, k)/C(n, k) over n samples), the
accuracy of the first attempt alone, the format-following rate, the policy's verification accuracy
(fraction of its verify verdicts that match the truth of the attempt they check, also split by that
truth), the share of attempts that use only the problem's numbers, mean attempts and tokens per
completion, the forced-answer accuracy with an empty prefix (J_-1 of the meta-prover), the warm-start
wall time and the generation speed.

    python bench/tiny_policy_report.py                 # default recipe (built and cached if missing)
    python bench/tiny_policy_report.py --set p_slip=0.05 --samples 16
"""
from __future__ import annotations

import argparse
import json
import os
import time
from math import comb
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from metarl.prover import TAG_PROVER  # noqa: E402


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``c`` correct among ``n`` samples: 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    return 1.0 - comb(n - c, k) / comb(n, k)


def sample(model, tok, prompts: list[str], n: int, temperature: float, max_new_tokens: int,
           batch_size: int, seed: int) -> list[list[tuple[str, int]]]:
    """``n`` sampled completions per prompt through the generation engine: (text, number of completion
    tokens incl. EOS if emitted)."""
    from metarl.engine import Engine, Sampling, StreamSpec, prompt_ids_for
    from metarl.engine.hf import HFBackend

    engine = Engine(HFBackend(model, tok, batch_size))
    ids = [prompt_ids_for(tok, p) for p in prompts for _ in range(n)]
    streams = engine.run(ids, StreamSpec(cap=max_new_tokens, force_answer=False), Sampling(temperature), seed=seed)
    outs = [(s.text, len(s.ids)) for s in streams]
    return [outs[j * n : (j + 1) * n] for j in range(len(prompts))]


def forced_answer_accuracy(model, tok, task, problems, temperature: float, seed: int) -> float:
    """J_-1: accuracy of the answer forced right after the prompt (``prompt + "<answer>"``), one sample each."""
    prompts = [p["prompt"] + TAG_PROVER.suffix for p in problems]
    res = sample(model, tok, prompts, 1, temperature, 16, 64, seed)
    ok = [task.verify(task.extract_answer(TAG_PROVER.suffix + r[0][0]), p["answer"], p["prompt"])
          for p, r in zip(problems, res)]
    return sum(ok) / len(ok)


def main(argv: list[str] | None = None) -> dict:
    from metarl.models.warmstart import load_tiny_policy, make_recipe, tiny_policy_path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path", help="a saved policy directory (default: the cached tiny policy)")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="tiny-policy recipe overrides")
    ap.add_argument("--questions", type=int, default=100, help="held-out questions (at most the split's size)")
    ap.add_argument("--samples", type=int, default=8, help="samples per question (n of pass@k)")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    overrides = {}
    for kv in args.set:
        k, _, v = kv.partition("=")
        overrides[k] = json.loads(v) if v[:1] in "-0123456789.tf[{" else v
    recipe = make_recipe(**overrides)
    path = Path(args.path) if args.path else tiny_policy_path(recipe=recipe)
    model, tok = load_tiny_policy(path)
    metrics_file = path / "metrics.json"
    warm_start_s = json.loads(metrics_file.read_text())["wall_time_s"] if metrics_file.is_file() else float("nan")

    task = recipe.task()
    problems = _held_out(task, args.questions)
    t0 = time.perf_counter()
    results = sample(model, tok, [p["prompt"] for p in problems], args.samples, args.temperature,
                     args.max_new_tokens, args.batch_size, args.seed)
    gen_s = time.perf_counter() - t0

    v_by_truth = {True: [0, 0], False: [0, 0]}  # truth -> [verdicts that match, verify episodes]
    correct_counts, n_fmt, n_tok, n_att, n_legal, v_right, v_total, n_all = [], 0, 0, 0, 0, 0, 0, 0
    n_first_ok = 0
    for p, samples in zip(problems, results):
        c = 0
        for text, ntok in samples:
            n_all += 1
            c += int(task.score(text, p["answer"], p["prompt"]))
            n_fmt += int(task.follows_format(text))
            n_tok += ntok
            checks = task.verification_checks(text, p["prompt"])
            exprs = [c for tag, c in task_blocks(text) if tag in ("attempt", "revise")]
            n_first_ok += bool(exprs) and task.verify(task.extract_answer(exprs[0]), p["answer"], p["prompt"])
            n_att += len(exprs)
            n_legal += sum(_uses_prompt_numbers(c, p["numbers"]) for c in exprs)
            v_right += sum(verdict == truth for verdict, truth in checks)
            v_total += len(checks)
            for verdict, truth in checks:
                v_by_truth[truth][0] += verdict == truth
                v_by_truth[truth][1] += 1
        correct_counts.append(c)
    n = args.samples
    report = {
        "policy": str(path),
        "questions": len(problems),
        "samples_per_question": n,
        "temperature": args.temperature,
        **{f"pass@{k}": sum(pass_at_k(n, c, k) for c in correct_counts) / len(problems)
           for k in (1, 2, 4, 8) if k <= n},
        # the first attempt alone vs. the final answer (pass@1): the gain is what revising after a
        # failed self-verification buys within one sample
        "first_attempt_accuracy": n_first_ok / n_all,
        "format_rate": n_fmt / n_all,
        "verification_accuracy": v_right / v_total if v_total else float("nan"),
        # the verdict's hit rate on correct attempts (says "correct") and on wrong ones (says "incorrect"):
        # a verifier that always says "incorrect" scores 0 on the first, however high its accuracy
        "verify_true_positive_rate": _rate(*v_by_truth[True]),
        "verify_true_negative_rate": _rate(*v_by_truth[False]),
        "verify_episodes": v_total,
        "mean_attempts": n_att / n_all,
        "legal_attempt_rate": n_legal / n_att if n_att else float("nan"),
        "mean_completion_tokens": n_tok / n_all,
        "forced_answer_accuracy_empty_prefix": forced_answer_accuracy(model, tok, task, problems,
                                                                      args.temperature, args.seed),
        "warm_start_wall_s": warm_start_s,
        "generation_s": gen_s,
        "ms_per_token_batched": 1000 * gen_s / max(1, n_tok),
        "ms_per_token_single_sequence": _single_sequence_latency(model, tok, problems[0]["prompt"]),
    }
    for k, v in report.items():
        print(f"{k:38s} {v:.4f}" if isinstance(v, float) else f"{k:38s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def _single_sequence_latency(model, tok, prompt: str, new_tokens: int = 128) -> float:
    """Milliseconds per generated token for one sequence (greedy, KV cache, ``new_tokens`` tokens)."""
    enc = tok([prompt], return_tensors="pt")
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(**enc, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       pad_token_id=tok.pad_token_id)
    return 1000 * (time.perf_counter() - t0) / new_tokens


def _rate(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def _uses_prompt_numbers(content: str, numbers: list[int]) -> bool:
    """True iff the attempt's expression uses only the problem's numbers, each at most once."""
    from collections import Counter

    from metarl.tasks.subset_sum import parse_expression

    terms = parse_expression(content)
    return terms is not None and not Counter(abs(t) for t in terms) - Counter(numbers)


def task_blocks(text: str):
    from metarl.tasks.base import tagged_blocks

    return tagged_blocks(text)


def _held_out(task, n: int):
    """The first ``n`` held-out problems (all of them if the split is smaller)."""
    return task.generate("test", n, seed=0, allow_fewer=True)


if __name__ == "__main__":
    main()
