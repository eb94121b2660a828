"""``metarl-eval``: test-time strategies at a list of token budgets, with difficulty bins.

    metarl-eval model=tiny budgets=[32,64,96] n=8
    metarl-eval model=hf model.name_or_path=runs/obj1/final run_dir=runs/obj1 strategies=[pass_at_k,majority]
    metarl-eval model=random-tiny budgets=[8,16] n=4 n_questions=8 difficulty.model=tiny
    metarl-eval data=heldout.jsonl task.task=null task.source=null grader=math   # questions from a JSONL file

Writes ``eval/results.jsonl``, ``eval/samples.jsonl``, ``eval/summary.csv`` and ``eval/difficulty.json``
under ``run_dir``; ``python -m analysis.report RUN_DIR`` plots the compute–accuracy curves.
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from metarl.cli.common import apply_verbosity, prepare_command_line
from metarl.config import conf_dir
from metarl.registry import ConfigError


@hydra.main(version_base=None, config_path=conf_dir(), config_name="eval")
def _main(cfg: DictConfig) -> None:
    apply_verbosity(cfg)  # verbose=false: one bar per phase, no library chatter
    from metarl.eval.run import run

    try:
        run(cfg)
    except ConfigError as e:
        print(f"metarl-eval: configuration error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    prepare_command_line("eval")  # plug-ins in the current directory; run_dir= is Hydra's output directory
    _main()


if __name__ == "__main__":
    main()
