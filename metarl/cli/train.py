"""``metarl-train``: train a policy with a recipe.

    metarl-train recipe=obj1_verify                       # a recipe from recipes/
    metarl-train recipe=obj2_likelihood_progress model=tiny trainer.max_steps=2
    metarl-train -m recipe=obj1_verify objective.alpha=0.1,1.0      # a sweep
    metarl-train recipe=obj1_verify run_dir=runs/a trainer.resume=true   # continue a killed run
"""
from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from metarl.cli.common import apply_verbosity, prepare_command_line
from metarl.config import conf_dir
from metarl.registry import ConfigError


@hydra.main(version_base=None, config_path=conf_dir(), config_name="train")
def _main(cfg: DictConfig) -> None:
    apply_verbosity(cfg)  # verbose=false: one bar per phase, no library chatter
    from metarl.runlog import discard_unused_run_dir
    from metarl.trainer.run import run

    try:
        run(cfg)
    except ConfigError as e:
        discard_unused_run_dir()  # found before the run wrote anything: no empty run directory is left
        print(f"metarl-train: configuration error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    prepare_command_line("train")  # plug-ins in the current directory; run_dir= is Hydra's output directory
    _main()


if __name__ == "__main__":
    main()
