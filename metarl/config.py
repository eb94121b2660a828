"""From a composed Hydra config to metarl's components: where the configs are, plain containers, the scorer
(segmenter, rewards, objective, answer tools, meta-prover). Used by the apps in ``metarl.cli`` and by the
library's own runners (``metarl.trainer.run``, ``metarl.eval.run``); nothing here knows about a command line."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metarl.registry import ConfigError


def conf_dir() -> str:
    """The Hydra config directory: ``$METARL_CONF``; else the configs an installed wheel ships
    (``metarl/_conf``, copied from the checkout's ``conf/`` by ``setup.py``); else ``conf/`` at the root of
    the checkout (an editable install). Recipes are its ``recipe`` group (``conf/recipe`` links to ``recipes/``)."""
    env = os.environ.get("METARL_CONF")
    if env:
        return str(Path(env).resolve())
    here = Path(__file__).resolve().parent
    for candidate in (here / "_conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"metarl's configs are missing: neither {here / '_conf'} (an installed wheel) nor "
                            f"{here.parent / 'conf'} (a checkout) holds train.yaml; set METARL_CONF to a config dir")


def plain(cfg: Any) -> Any:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig | type(OmegaConf.create([]))) \
        else cfg


def reward_specs(rewards: Any) -> list[Any]:
    """Config ``rewards`` (a mapping name -> spec from the multi-select group, or a list) -> list of specs."""
    rewards = plain(rewards)
    if rewards is None:
        return []
    if isinstance(rewards, dict):
        specs = []
        for name, spec in rewards.items():
            if spec is None:
                continue
            if isinstance(spec, str):
                spec = {"_target_": spec}
            if not isinstance(spec, dict):
                raise ConfigError(f"rewards.{name} must be a mapping with _target_ (or a dotted path), got {spec!r}")
            specs.append({"name": name, **spec})
        return specs
    if isinstance(rewards, list | tuple):
        return list(rewards)
    raise ConfigError(f"`rewards` must be a list or a mapping of name -> spec, got {type(rewards).__name__}")


def answer_tools(task: Any, grader_spec: Any, answer_style: str, verdict: Any):
    """(grader, extract_answer, parse_verdict): the task's own verifier/extractor when there is a task.

    Otherwise ``answer_style`` is an :func:`~metarl.grading.extract_answer` style; ``auto`` means the
    grader's own (:attr:`~metarl.grading.Grader.answer_style`): ``math`` for the math grader (math-verify's
    reading: anchored answers, then a text's last formula or number), ``auto`` for the others.
    """
    from metarl.grading import ANSWER_STYLES, build_grader, extract_answer, parse_verdict

    verdict_kwargs = plain(verdict) or {}
    if not isinstance(verdict_kwargs, dict):
        raise ConfigError(f"verdict={verdict_kwargs!r} must be a mapping of parse_verdict options, "
                          f"e.g. verdict.negative=[wrong,incorrect]")
    parse = functools.partial(parse_verdict, **verdict_kwargs) if verdict_kwargs else parse_verdict
    try:
        parse("correct")  # bad options fail here, once, not on every verify episode
    except (TypeError, ValueError) as e:
        raise ConfigError(f"verdict={verdict_kwargs}: {e}; options are positive=[...] and negative=[...]") from None
    if task is not None:
        return build_grader(task.verify), task.extract_answer, parse
    if answer_style not in ANSWER_STYLES:
        raise ConfigError(f"answer={answer_style!r} is not an answer style; use one of {', '.join(ANSWER_STYLES)}")
    if grader_spec is None:
        from metarl.grading import MathGrader

        grader_spec = MathGrader()
    grader = build_grader(plain(grader_spec))
    if answer_style == "auto":  # the grader's own reading: for grader=math, math-verify's ("math")
        answer_style = grader.answer_style
    return grader, functools.partial(extract_answer, style=answer_style), parse


def build_prover(cfg: DictConfig):
    """The run's one meta-prover (``metarl.prover.ProverConfig``) from the ``prover`` key (conf/prover/)."""
    from metarl.prover import as_prover

    spec = plain(cfg.get("prover"))
    try:
        return as_prover(spec)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"prover: {e} (conf/prover/tags.yaml documents every field)") from None


def build_scorer(cfg: DictConfig, task: Any = None, model: Any = None, tokenizer: Any = None):
    """A ``Scorer`` from the ``segmenter``, ``rewards``, ``objective``, ``grader``, ``answer``, ``verdict`` keys."""
    from metarl.rewards import build_rewards
    from metarl.scoring import Objective, Scorer
    from metarl.segmenters import build_segmenter

    seg_spec = plain(cfg.segmenter)
    try:
        segmenter = build_segmenter(seg_spec)
    except (ConfigError, ValueError, TypeError) as e:
        key = "segmenter._target_" if isinstance(seg_spec, dict) else "segmenter"
        target = seg_spec.get("_target_") if isinstance(seg_spec, dict) else seg_spec
        raise ConfigError(f"{key}={target!r}: {e}") from None
    rewards = build_rewards(reward_specs(cfg.get("rewards")))
    obj_cfg = plain(cfg.get("objective")) or {}
    if not isinstance(obj_cfg, dict):
        raise ConfigError(f"objective must be a mapping of options, got {obj_cfg!r}; e.g. objective.alpha=1.0")
    try:
        objective = Objective(**obj_cfg)
    except TypeError as e:
        raise ConfigError(f"objective: {e}; known keys: {list(Objective.__dataclass_fields__)}") from None
    grader, extract, parse = answer_tools(task, cfg.get("grader"), cfg.get("answer", "auto"),
                                          cfg.get("verdict"))
    limits = {k: plain(cfg.get(k)) for k in ("max_episodes_per_trace", "segment_timeout") if k in cfg}
    return Scorer(segmenter=segmenter, rewards=rewards, grader=grader, extract_answer=extract,
                  parse_verdict=parse, objective=objective, model=model, tokenizer=tokenizer, prover=build_prover(cfg),
                  on_error=cfg.get("on_reward_error", "zero"), **limits)
