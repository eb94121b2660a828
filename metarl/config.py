"""From a composed Hydra config to metarl's components: where the configs are, plain containers, the scorer
(segmenter, rewards, objective, answer tools, meta-prover). Used by the apps in ``metarl.cli`` and by the
library's own runners (``metarl.trainer.run``, ``metarl.eval.run``); nothing here knows about a command line."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metarl.registry import ConfigError, plain

SCHEMAS = {"train": "metarl.trainer.config.TrainConfig", "score": "metarl.scoring_config.ScoreConfig",
           "eval": "metarl.eval.config.EvalConfig"}
"""App config name -> its typed schema, registered in Hydra's ConfigStore as ``<app>_schema``; each root config
(``conf/train.yaml``, ``conf/eval.yaml``, ``conf/score.yaml``) lists ``<app>_schema`` first in its defaults."""


def register_schemas() -> None:
    """Store every app's schema in Hydra's ConfigStore (idempotent; done on import of this module)."""
    from hydra.core.config_store import ConfigStore
    from hydra.utils import get_object

    store = ConfigStore.instance()
    for app, path in SCHEMAS.items():
        store.store(name=f"{app}_schema", node=get_object(path))


def schema_of(app: str) -> type:
    from hydra.utils import get_object

    return get_object(SCHEMAS[app])


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


def compose(app: str, overrides: list[str] | None = None) -> DictConfig:
    """The composed config of ``app`` (``train``, ``eval``, ``score``) with ``overrides``, as the console script
    composes it (Hydra's compose API, so ``${hydra:...}`` values are left to the runner). A composition error
    (a wrong type, an unknown key) is a :class:`ConfigError` naming the key and, for an unknown one, the valid
    keys there."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        try:
            return hydra_compose(app, overrides=list(overrides or []))
        except HydraException as e:
            error = e
    raise composition_error(error, app) from None


def composition_error(error: BaseException, app: str) -> ConfigError:
    """A Hydra composition error as a :class:`ConfigError`: the message names the key; for an unknown key it
    lists the valid keys of that section (read from the app's schema)."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    missing = missing_option(str(error))
    if missing is not None:
        return missing
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    text = " ".join(line.strip() for line in str(error).split("Config search path")[0].splitlines() if line.strip())
    if isinstance(cause, ConfigKeyError | ConfigAttributeError) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        parent, _, name = key.rpartition(".")
        valid = valid_keys(app, parent)
        open_section = valid is None
        if open_section:  # an open section (a component mapping): the keys the composed config has there
            valid = composed_keys(app, parent)
        if valid is not None and name not in valid:
            where = f"the section {parent}" if parent else f"the {app} config"
            has = f"has {', '.join(valid)}" if valid else "has no keys by default"
            plus = (f"; {parent} is open to new keys, given with a leading +: +{key}=..." if open_section
                    and parent else "")
            return ConfigError(f"{key}: unknown key; {where} {has}{plus}")
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = str(cause.full_key)
        detail = str(cause).split("\n")[0]
        example = default_of(app, key)
        fix = f"; set it like {key}={example}" if example is not None else ""
        return ConfigError(f"{key}: {detail}{fix}")
    return ConfigError(text)


def group_options(group: str) -> list[str]:
    """The options of a config group: the names of its ``.yaml`` files under :func:`conf_dir` (``rewards`` ->
    ``exact_progress``, ``generation_correctness``, ...)."""
    root = Path(conf_dir()) / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")) if root.is_dir() else []


def missing_option(message: str) -> ConfigError | None:
    """A ConfigError listing a group's options for Hydra's "Could not load 'group/name'" / "Could not find
    'group/name'" (a typo in a group choice, ``rewards=[mc_progres]``, ``segmenter=mrtt``), else None.

    >>> print(missing_option("In 'score': Could not load 'rewards/mc_progres'."))  # doctest: +ELLIPSIS
    rewards=mc_progres: no such option in the group rewards (conf/rewards/); its options are exact_progress, ...
    """
    import re

    m = re.search(r"Could not (?:load|find) '([^']+)/([^'/]+)'", message)
    if m is None:
        return None
    group, name = m.group(1), m.group(2)
    options = group_options(group)
    if not options:
        return None
    return ConfigError(f"{group.replace('/', '.')}={name}: no such option in the group {group} (conf/{group}/); "
                       f"its options are {', '.join(options)}")


def schema_section(app: str, section: str) -> type | None:
    """The dataclass of a dotted ``section`` ("" for the root) in the app's schema; None when the app has no
    schema or the section is open (a component mapping such as ``segmenter`` or ``search.scorer``)."""
    import dataclasses
    import typing

    if app not in SCHEMAS:
        return None
    node: Any = schema_of(app)
    for part in [p for p in section.split(".") if p]:
        if not dataclasses.is_dataclass(node):
            return None
        node = typing.get_type_hints(node).get(part)
    return node if dataclasses.is_dataclass(node) else None


def default_of(app: str, key: str) -> str | None:
    """The schema's default of a dotted ``key`` as it is written on the command line (None: no plain default)."""
    import dataclasses

    parent, _, name = key.rpartition(".")
    node = schema_section(app, parent)
    f = {f.name: f for f in dataclasses.fields(node)}.get(name) if node is not None else None
    if f is None or f.default is dataclasses.MISSING or isinstance(f.default, str) and f.default == "???":
        return None
    value = f.default
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def valid_keys(app: str, section: str) -> list[str] | None:
    """The field names of ``section`` (dotted, "" for the root) in the app's schema; None when it is open."""
    import dataclasses

    node = schema_section(app, section)
    return None if node is None else [f.name for f in dataclasses.fields(node)]


def composed_keys(app: str, section: str) -> list[str] | None:
    """The keys of ``section`` in the app's config composed without overrides (None: not a mapping there)."""
    try:
        node = compose(app)
    except ConfigError:
        return None
    for part in [p for p in section.split(".") if p]:
        node = node.get(part) if isinstance(node, DictConfig) else None
    return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else None


def validated(cfg: DictConfig, app: str) -> Any:
    """The composed config as the app's schema objects, every section's ``__post_init__`` run: the one check
    of ranges and choices (types were checked when the config was composed). Raises :class:`ConfigError`."""
    from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

    if app not in SCHEMAS:
        raise KeyError(app)
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    for key in ("run_dir", "name"):  # ${hydra:...} resolves only inside a Hydra app
        if key in cfg:
            try:
                copy[key] = cfg[key]
            except InterpolationResolutionError:
                copy[key] = f"<{key}>"
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema_of(app)), copy)
        return OmegaConf.to_object(typed)
    except ConfigError:
        raise
    except MissingMandatoryValue as e:
        key = e.full_key or "a key"
        hint = (" (a .jsonl/.json/.parquet/.csv file or directory, or a hub dataset name)"
                if key == "task.source" else "")
        raise ConfigError(f"{key} is required but has no value (???): set it, e.g. {key}=...{hint}") from None
    except OmegaConfBaseException as e:
        inner = e.__cause__ or e.__context__
        while inner is not None and not isinstance(inner, ConfigError):
            inner = inner.__cause__ or inner.__context__
        if inner is not None:
            raise inner from None
        raise composition_error(e, app) from None


def reward_specs(rewards: Any) -> list[Any]:
    """Config ``rewards`` (a mapping name -> spec from the multi-select group, or a list) -> list of specs."""
    rewards = plain(rewards)
    if rewards is None:
        return []
    if isinstance(rewards, dict):  # a mapping, or a reward function's dotted path (metarl.rewards.reward_spec)
        from metarl.rewards import reward_spec

        return [reward_spec(name, spec) for name, spec in rewards.items() if spec is not None]
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


def build_task_of(cfg: DictConfig):
    """The built-in task of ``task.task`` (a ``_target_`` mapping), or None for a dataset source without one;
    checked against a built-in warm start's held-out split (:func:`check_held_out`) for every app that builds it."""
    spec = plain(cfg.task.get("task"))
    if not spec:
        return None
    from metarl.tasks import build_task

    task = build_task(spec)
    check_held_out(cfg.get("model"), task)
    return task


def check_held_out(model: Any, task: Any) -> None:
    """Refuse an evaluation on problems a built-in warm start was fine-tuned on.

    The built-in policies (``tiny``, ``smollm2-reasoner``) are fine-tuned on the training split of the built-in
    task at their recipe's ``test_fraction``; a problem is held out when its stable hash falls below the fraction
    (``metarl.tasks.base.split_of``), so a task with a *larger* ``test_fraction`` than the warm start's holds out
    problems the policy was trained on. A smaller one is safe (its held-out problems are a subset)."""
    from metarl.models.loading import warm_start_recipe

    name = model.get("name_or_path") if hasattr(model, "get") else None
    task_fraction = getattr(task, "test_fraction", None)
    if name is None or task_fraction is None:
        return
    try:
        recipe = warm_start_recipe(str(name), plain(model.get("tiny")) or {})
    except TypeError:  # an unknown recipe field: loading the model names it
        return
    if recipe is None:
        return
    from metarl.tasks.base import split_threshold

    try:
        warm = split_threshold(float(recipe.test_fraction))
    except ValueError as e:
        raise ConfigError(f"model.tiny.test_fraction={recipe.test_fraction}: {e}") from None
    if split_threshold(float(task_fraction)) > warm:
        raise ConfigError(f"task.task.test_fraction={task_fraction} is larger than the warm start's "
                          f"model.tiny.test_fraction={recipe.test_fraction}: some held-out problems would be problems "
                          f"the {name} policy was fine-tuned on; set both to the same value (e.g. "
                          f"+model.tiny.test_fraction={task_fraction})")


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

    segmenter = build_segmenter(plain(cfg.segmenter))
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


register_schemas()
