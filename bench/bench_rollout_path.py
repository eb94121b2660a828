"""Generation in training: TRL's own ``generate`` against metarl's engine (``rollout=single``), measured in one run.

    python bench/bench_rollout_path.py                     # the demo's warm start, 8 problems x 8 samples, C=192
    python bench/bench_rollout_path.py --steps 6 --reps 3 --threads 2

Since every recipe generates through the engine, ``rollout=single`` no longer uses TRL's generation. This bench
trains the same policy on the same data with plain TRL ``GRPOTrainer`` (TRL generates) and with ``MetaRLTrainer``
(the engine generates; outcome reward, no dense credit), alternately, ``--reps`` times each, and prints the
median seconds per step (TRL's ``step_time``: generation, scoring, loss, backward) of steps 2..N and their ratio.
The completions differ (different random draws), so the ratio also carries their lengths: mean completion tokens
are printed beside it.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="tiny", help="a built-in policy or a model directory")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--cap", type=int, default=192)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from metarl.models.loading import load_model_and_tokenizer
    from metarl.rewards import build_rewards
    from metarl.rewards.obj1 import outcome
    from metarl.scoring import Objective, Scorer
    from metarl.segmenters import TagSegmenter
    from metarl.tasks import SubsetSumTask
    from metarl.trainer.grpo import MetaRLTrainer
    from metarl.types import Trace

    torch.set_num_threads(args.threads)
    model, tok = load_model_and_tokenizer(args.model)
    task = SubsetSumTask()
    rows = [{"prompt": r["prompt"], "answer": r["answer"]} for r in task.generate("train", n=64, seed=0)]
    scorer = Scorer(TagSegmenter(), build_rewards([outcome]), task.verify, task.extract_answer, lambda t: None,
                    Objective(), tokenizer=tok)

    def reward(prompts, completions, answer, **kw):
        return [scorer.grade(Trace(prompt=p, completion=c, answer=a)) for p, c, a in zip(prompts, completions, answer)]

    def run(kind: str, out: str) -> tuple[float, float]:
        cfg = GRPOConfig(output_dir=out, per_device_train_batch_size=64, num_generations=8,
                         max_completion_length=args.cap, max_steps=args.steps, learning_rate=5e-5, logging_steps=1,
                         report_to=[], use_cpu=True, save_strategy="no", seed=0, bf16=False, beta=0.0,
                         disable_tqdm=False, loss_type="dapo")
        common = dict(model=copy.deepcopy(model).train(), args=cfg, train_dataset=Dataset.from_list(rows),
                      processing_class=tok)
        t = (GRPOTrainer(reward_funcs=[reward], **common) if kind == "trl"
             else MetaRLTrainer(scorer=scorer, **common))
        t.train()
        logs = [h for h in t.state.log_history if "step_time" in h]
        times = [h["step_time"] for h in logs][1:]
        lengths = [h["completions/mean_length"] for h in logs]
        return statistics.median(times), statistics.mean(lengths)

    res: dict[str, list[tuple[float, float]]] = {"trl": [], "engine": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.reps):
            for kind in ("trl", "engine"):
                t0 = time.time()
                res[kind].append(run(kind, f"{d}/{kind}{r}"))
                print(f"[bench_rollout_path] rep {r} {kind}: {res[kind][-1][0]:.3f} s/step, "
                      f"{res[kind][-1][1]:.1f} completion tokens ({time.time() - t0:.0f} s)", flush=True)
    trl = statistics.median(x[0] for x in res["trl"])
    eng = statistics.median(x[0] for x in res["engine"])
    print(f"TRL generate: {trl:.3f} s/step ({statistics.mean(x[1] for x in res['trl']):.1f} tokens); engine: "
          f"{eng:.3f} s/step ({statistics.mean(x[1] for x in res['engine']):.1f} tokens); engine / TRL = {eng / trl:.2f}")


if __name__ == "__main__":
    main()
