"""Train 2 steps of MetaRLTrainer with fixed rollouts and save the parameters (run by tests/test_distributed.py).

    python tests/scripts/ddp_step.py OUT.pt                      # one process, global batch 8
    accelerate launch --cpu --num_processes 2 tests/scripts/ddp_step.py OUT.pt   # two processes, 4 each

Completions come from a table indexed by (prompt, position in the global batch), so both layouts see the
same data; a group of 8 samples is split across the two processes, so the dense advantages need the
gathered group statistics to match.
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch  # noqa: E402

torch.set_num_threads(1)

from datasets import Dataset  # noqa: E402
from trl import GRPOConfig  # noqa: E402

from metarl.models.tiny import tiny_model_and_tokenizer  # noqa: E402
from metarl.rewards import build_rewards, reward  # noqa: E402
from metarl.rewards.obj1 import outcome
from metarl.scoring import Objective, Scorer  # noqa: E402
from metarl.segmenters import ParagraphSegmenter  # noqa: E402
from metarl.engine import Stream  # noqa: E402
from metarl.trainer.grpo import MetaRLTrainer  # noqa: E402
from metarl.trainer.rollout import Rollout  # noqa: E402

G = 8
TABLE = ["12 is it", "7\n\nno 7", "12", "a\n\nb\n\n12", "11 or\n\n12", "x", "1 2", "12\n\nyes\n\n12 12",
         "9", "12\n\n", "4 4 4", "y y\n\n12", "0", "12 12", "q\n\nr", "12\n\nz"]


@reward("episode")
def letter_reward(episode):
    return float(episode.text[:1].isalpha())


class TableRollout(Rollout):
    """Scripted streams: the completion of global batch position g at step s is TABLE[(len(prompt) + 3 (g mod G)
    + 5 s) mod len(TABLE)], ended by EOS."""

    trainer = None

    def generate(self, backend, prompt_ids, sampling, prompts=(), answers=()):
        tok, t = self.trainer.processing_class, self.trainer
        start, step = t.accelerator.process_index * len(prompts), t.state.global_step
        streams = []
        for i, (p, ids) in enumerate(zip(prompts, prompt_ids)):
            text = TABLE[(len(p) + 3 * ((start + i) % G) + 5 * step) % len(TABLE)]
            cids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            streams.append(Stream(list(ids), cids, [1] * len(cids), thinking=len(cids), ended=True, text=text))
        return streams


def main(out):
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model, tok = tiny_model_and_tokenizer(seed=1)
    scorer = Scorer(segmenter=ParagraphSegmenter(), rewards=build_rewards([outcome, letter_reward]),
                    grader=lambda p, a, q="": p is not None and a in p, extract_answer=lambda t: t,
                    parse_verdict=lambda t: None, objective=Objective(gamma=0.5), tokenizer=tok)
    data = Dataset.from_list([{"prompt": f"Q{i}: 5+7=", "answer": "12"} for i in range(4)])
    args = GRPOConfig(output_dir=os.path.dirname(out) or ".", per_device_train_batch_size=8 // world,
                      num_generations=G, max_completion_length=16, max_steps=2, learning_rate=1e-2, logging_steps=1,
                      report_to=[], use_cpu=True, save_strategy="no", seed=0, bf16=False, beta=0.0, loss_type="dapo",
                      disable_tqdm=True, ddp_backend="gloo" if world > 1 else None)
    rollout = TableRollout(cap=16, force_answer=False)
    trainer = MetaRLTrainer(model=model, args=args, train_dataset=data, processing_class=tok, scorer=scorer,
                            rollout=rollout)
    rollout.trainer = trainer
    trainer.train()
    if trainer.accelerator.is_main_process:
        state = {k: v.detach().cpu() for k, v in trainer.accelerator.unwrap_model(trainer.model).named_parameters()}
        torch.save(state, out)


if __name__ == "__main__":
    main(sys.argv[1])
