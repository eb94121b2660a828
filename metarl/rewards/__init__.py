"""Episode and trace rewards: plain functions or small classes, their level declared, arguments matched by name.

A reward is one of
- a plain function declared ``@reward("episode")``: an **episode reward**, called once per episode, its
  values times its weight summed into the dense term r~_i;
- a plain function declared ``@reward("trace")``: a **trace reward**, called once per trace and recorded;
  the one ``objective.outcome_reward`` names is the outcome term (scaled by ``objective.alpha``);
- an object with ``score_batch(...)``: a batched estimator (its ``level`` attribute), called once for a
  whole batch of traces (model-based estimators such as Monte Carlo progress);
- a TRL reward function (``def r(completions, **kwargs) -> list[float]``, not declared with ``@reward``): a
  trace reward called once per batch exactly as TRL's ``GRPOTrainer`` calls it
  (:mod:`metarl.rewards.trl_functions`).

A config can declare the level instead (``rewards.<name>.level``); a reward without one is refused, as is a
weight on a trace reward and a needed argument metarl does not pass (:func:`build_reward`). Each function names
only the arguments it needs: episode rewards can ask for ``episode, index, previous`` and, like trace rewards,
``trace, prompt, completion, answer, target_tokens, num_tokens, episodes, outcome`` and the scorer's
``grader, extract_answer, parse_verdict, model, tokenizer, prover, engine, state``. Batched estimators can
ask for ``traces, model, tokenizer, engine, grader, extract_answer, state`` (``engine``: the policy's
generation engine, :class:`metarl.engine.Engine`). A reward that asks for ``model``, ``tokenizer`` or
``engine`` without a default needs it (:attr:`Reward.needs`): the apps provide it or stop with a message; one
that gives such an argument a default gets the default where the app has none (never a None in its place).

Rewards are chosen with the ``rewards`` config group (``conf/rewards/*.yaml``: a mapping name -> spec with
``_target_``, ``weight`` and constructor/keyword arguments); your own is one more entry, from the command line
(docs/plugins.md; a module in the current directory is found by the console scripts too): a reward function by
its dotted path alone, anything with options as a ``_target_`` mapping (:func:`reward_spec`)::

    metarl-train rewards=[outcome,verification_correctness] +rewards.brevity=my_pkg.rewards.brevity
"""
from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.grading.deadline import GradingTimeout, run_with_time_limit
from metarl.registry import (ConfigError, call_matching, free_parameters, instantiate_callable, matcher,
                             target_of)
from metarl.types import Trace

LEVELS = ("episode", "trace")
#: Arguments a reward may ask for, by name. Per episode (episode-level rewards only):
EPISODE_ARGS = ("episode", "index", "previous")
#: Per trace (both levels):
TRACE_ARGS = ("trace", "prompt", "completion", "answer", "target_tokens", "num_tokens", "episodes", "outcome")
#: From the scorer (both levels; a reward that asks for ``model`` / ``tokenizer`` / ``engine`` without a default
#: needs it, see :attr:`Reward.needs`):
CONTEXT_ARGS = ("grader", "extract_answer", "parse_verdict", "model", "tokenizer", "prover", "engine", "state")
#: What an app may lack: a reward asking for one of these (no default) needs it, and gets it or a clear error.
RESOURCES = ("model", "tokenizer", "engine")


def reward(level: str, weight: float | None = None) -> Callable[[Callable], Callable]:
    """Declare a plain function a reward of ``level`` (a reward's level is declared, never guessed).

    ``"episode"``: called once per episode; its values, times ``weight``, are summed into the dense term
    r~_i. ``"trace"``: called once per trace and recorded; the trace reward ``objective.outcome_reward``
    names is the outcome term, scaled by ``objective.alpha`` (so a trace reward takes no weight). ``weight``
    is the default that ``rewards.<name>.weight`` overrides. A config can declare the level instead
    (``+rewards.<name>.level=episode``).

    >>> @reward("episode", weight=0.5)
    ... def short(episode):
    ...     return 1.0 / max(len(episode.text), 1)
    >>> r = build_reward(short)
    >>> r.level, r.weight
    ('episode', 0.5)
    """
    if level not in LEVELS:
        raise ValueError(f"reward level {level!r}: use one of {LEVELS}")

    def declare(fn: Callable) -> Callable:
        fn.level = level  # type: ignore[attr-defined]
        if weight is not None:
            fn.weight = float(weight)  # type: ignore[attr-defined]
        return fn

    return declare


class RewardError(RuntimeError):
    """A reward failed for a whole batch; the message names the reward."""


@dataclass
class Reward:
    """A built reward: its name, level (``episode`` or ``trace``), weight and callable."""

    name: str
    fn: Callable[..., Any]
    level: str
    weight: float = 1.0
    batched: bool = False
    timeout: float | None = None
    stats: dict[str, int] = field(default_factory=lambda: {"calls": 0, "errors": 0, "nonfinite": 0, "timeouts": 0})

    @property
    def needs(self) -> tuple[str, ...]:
        """The app's objects (``model``, ``tokenizer``, ``engine``) this reward cannot do without: those its
        function (a batched estimator's ``score_batch``) asks for without a default."""
        fn = self.fn.score_batch if self.batched else self.fn
        try:
            params, _ = free_parameters(fn)
        except (TypeError, ValueError):
            params = {}
        asked = {n for n, p in params.items() if n in RESOURCES and p.default is p.empty}
        if getattr(self.fn, "needs_model", False):  # the older declaration, still honoured
            asked |= {"model", "tokenizer"}
        if getattr(self.fn, "needs_engine", False):
            asked.add("engine")
        return tuple(n for n in RESOURCES if n in asked)

    @property
    def needs_model(self) -> bool:
        return "model" in self.needs

    @property
    def needs_engine(self) -> bool:
        return "engine" in self.needs

    @property
    def records_J(self) -> bool:
        """Whether it writes J (``episode.info["J"]``, ``trace.meta["J_init"]``), as the termination baseline needs."""
        return bool(getattr(self.fn, "records_J", False))


def reward_spec(name: str | None, spec: Any) -> Any:
    """One entry of the ``rewards`` config (``rewards.<name>``) as a spec for :func:`build_reward`: a mapping
    as it is (with its name); a string is the dotted path of a reward function (``my_pkg.module.fn``: a TRL
    reward function or one declared with ``@reward``), used as it is. The one place a reward's config is resolved.

    >>> reward_spec("r", "metarl.rewards.obj1.outcome")
    {'name': 'r', '_target_': 'metarl.rewards.obj1.outcome', '_partial_': True}
    >>> reward_spec("r", "outcome")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: rewards.r='outcome': a reward is a mapping with `_target_` ... or a reward function's dotted path...
    """
    key = f"rewards.{name}" if name else "reward"
    named = {"name": name} if name else {}
    if isinstance(spec, Mapping):
        return {**named, **spec}
    if not isinstance(spec, str):
        raise ConfigError(f"{key}={spec!r}: a reward is a reward function's dotted path (my_pkg.module.fn) or a "
                          f"mapping with `_target_` and options")
    obj = target_of({"_target_": spec}) if "." in spec else None
    if inspect.isroutine(obj):
        return {**named, "_target_": spec, "_partial_": True}
    if inspect.isclass(obj):
        why = f"{spec} is a class, built with its options: {key}='{{_target_: {spec}}}' (options: {key}.<arg>=...)"
    elif obj is not None:
        why = f"{spec} is a {type(obj).__name__}, not a function"
    elif "." in spec:
        why = f"{spec} cannot be imported (is its module on the Python path, or in the current directory?)"
    else:
        why = f"the built-ins are the files of conf/rewards/ (rewards=[{spec}])"
    raise ConfigError(f"{key}={spec!r}: a reward is a mapping with `_target_` (a dotted path) and options, or a "
                      f"reward function's dotted path alone (my_pkg.module.fn); {why}")


def build_reward(spec: Any) -> Reward:
    """Build one reward from a config node (``_target_`` plus ``name``, ``weight``, ``level``, ``timeout``
    (seconds per call of a plain reward function; None: unbounded) and the target's keyword arguments; a
    reward function says ``_partial_: true``, as every ``conf/rewards`` file does), from a reward function's
    dotted path (:func:`reward_spec`), or from a callable.

    Checked here, once, before any sample is scored: the level is declared (:func:`reward`, a batched
    estimator's ``level`` attribute, or the config's ``level``), or the function is a TRL reward function
    (trace-level, :mod:`metarl.rewards.trl_functions`); every argument the function needs without a default is
    one metarl passes at that level; a weight applies (episode rewards) or is rejected.
    """
    from metarl.rewards.trl_functions import TRLReward, is_trl_function

    name = weight = timeout = level = None
    if isinstance(spec, str):
        spec = reward_spec(None, spec)
    if isinstance(spec, Mapping) or (hasattr(spec, "items") and not callable(spec)):
        spec = dict(spec.items())
        name = spec.pop("name", None)
        weight = spec.pop("weight", None)
        timeout = spec.pop("timeout", None)
        level = spec.pop("level", None)
    fn = instantiate_callable(spec, "reward", f"rewards.{name}" if name else "reward")
    if name is None:
        name = getattr(fn, "name", None) or getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None) \
            or type(fn).__name__
    name = str(name)
    declared = _attr(fn, "level")
    if declared is None and not hasattr(fn, "score_batch") and is_trl_function(fn):
        if level not in (None, "trace"):
            raise ConfigError(f"rewards.{name}.level={level!r}: {name!r} is a TRL reward function (it takes "
                              f"`completions`), one value per completion: trace-level")
        fn, declared = TRLReward(fn), "trace"
    level = level if level is not None else declared
    if level is None:
        raise ConfigError(f"reward {name!r} does not declare its level: decorate it with "
                          f"@metarl.rewards.reward('episode') (called per episode, summed into the dense term) or "
                          f"@metarl.rewards.reward('trace'), or set rewards.{name}.level=episode|trace; a TRL reward "
                          f"function takes `completions` (and **kwargs) and returns one float per completion")
    if level not in LEVELS:
        raise ConfigError(f"reward {name!r} has level {level!r}; use 'episode' or 'trace'")
    if weight is None:
        weight = _attr(fn, "weight")
    weight = 1.0 if weight is None else weight
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise ConfigError(f"rewards.{name}.weight={weight!r} must be a number") from None
    if level == "trace" and weight != 1.0:
        raise ConfigError(f"rewards.{name}.weight={weight:g}: {name!r} is a trace-level reward, which is recorded, "
                          f"not summed; the one objective.outcome_reward names is the outcome term, scaled by "
                          f"objective.alpha (set objective.alpha instead)")
    if hasattr(fn, "score_batch"):
        return Reward(name, fn, level, weight, batched=True)
    _check_arguments(fn, name, level)
    return Reward(name, fn, level, weight, timeout=None if timeout is None else float(timeout))


def _attr(fn: Any, key: str) -> Any:
    """``fn.key``, also through ``functools.partial`` (a reward built with config arguments)."""
    while fn is not None:
        if hasattr(fn, key):
            return getattr(fn, key)
        fn = getattr(fn, "func", None)
    return None


def _check_arguments(fn: Callable, name: str, level: str) -> None:
    """Every argument ``fn`` needs (no default, not bound by the config) is one metarl passes at ``level``."""
    params, _ = free_parameters(fn)
    per_episode = [n for n in params if n in EPISODE_ARGS]
    if level == "trace" and per_episode:
        raise ConfigError(f"reward {name!r} is trace-level but asks for {per_episode}, which exist per episode; "
                          f"declare it episode-level or take `episodes` (all of a trace's episodes)")
    available = set(TRACE_ARGS) | set(CONTEXT_ARGS) | (set(EPISODE_ARGS) if level == "episode" else set())
    unknown = [n for n, p in params.items() if n not in available and p.default is p.empty]
    if unknown:
        raise ConfigError(f"reward {name!r} asks for {unknown}, which metarl does not pass to a {level}-level "
                          f"reward; arguments are matched by name from {sorted(available)} (configuration "
                          f"arguments: rewards.{name}.<arg>=...)")


def build_rewards(specs: Sequence[Any] | None) -> list[Reward]:
    """Build a list of rewards; names must be unique. Errors name the config key (``rewards.<name>``)."""
    rewards = []
    for spec in specs or []:
        try:
            rewards.append(build_reward(spec))
        except ConfigError as e:
            name = spec.get("name") if isinstance(spec, Mapping) else None
            prefixed = not name or str(e).startswith(f"rewards.{name}")
            raise ConfigError(str(e) if prefixed else f"rewards.{name}: {e}") from None
    names = [r.name for r in rewards]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"reward names must be unique, got {sorted(dup)} twice; give one a `name:`")
    return rewards


def note_fault(trace: Trace, source: str, kind: str, message: str) -> None:
    """Record one fault on ``trace``: the message in ``meta["reward_errors"]`` (``"<source>: <message>"``) and
    a count per kind (``errors``, ``timeouts``, ``nonfinite``, ``segment``) in ``meta["reward_faults"]``."""
    trace.meta.setdefault("reward_errors", []).append(f"{source}: {message}"[:300])
    faults = trace.meta.setdefault("reward_faults", {})
    faults[kind] = faults.get(kind, 0) + 1


def _clean(value: Any, reward: Reward, on_error: str, trace: Trace | None = None) -> float:
    """``value`` as a finite float, or the fallback (counted in ``reward.stats`` and on ``trace``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        kind, message = "errors", f"returned {type(value).__name__} {str(value)[:60]!r}, not a number"
    else:
        if math.isfinite(v):
            return v
        kind, message = "nonfinite", f"returned a non-finite value {v!r}"
    reward.stats[kind] += 1
    if trace is not None:
        note_fault(trace, reward.name, kind, message)
    return _fallback(on_error)


def _fallback(on_error: str) -> float:
    return 0.0 if on_error == "zero" else math.nan


_WHAT = {"model": "a model", "tokenizer": "a tokenizer", "engine": "the policy's generation engine"}


def check_needs(rewards: Sequence[Reward], context: Mapping[str, Any]) -> None:
    """Every object a reward asks for without a default (:attr:`Reward.needs`: ``model``, ``tokenizer``,
    ``engine``) is in ``context``, or a :class:`ConfigError` naming the rewards and the fix (never a silent None).

    >>> from metarl.rewards import build_reward
    >>> class Sampler:
    ...     level = "trace"
    ...     def score_batch(self, traces, engine): return [0.0 for _ in traces]
    >>> check_needs([build_reward(Sampler())], {"model": None, "tokenizer": None, "engine": None})
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: rewards ['Sampler'] ask for the policy's generation engine, which this app has none of: set `model` (e.g. model=tiny or model.name_or_path=...)
    """
    for what in RESOURCES:
        bad = [r.name for r in rewards if what in r.needs and context.get(what) is None]
        if bad:
            raise ConfigError(f"rewards {bad} ask for {_WHAT[what]}, which this app has none of: set `model` "
                              f"(e.g. model=tiny or model.name_or_path=...)")


def apply_reward(reward: Reward, traces: list[Trace], context: Mapping[str, Any], on_error: str = "zero") -> None:
    """Score ``traces`` with ``reward``, writing ``episode.rewards[name]`` or ``trace.rewards[name]``.

    One failing sample (an exception, NaN or inf) gets 0 (``on_error="zero"``) or NaN (``"nan"``: excluded
    downstream) and is counted in ``reward.stats``; if every sample of the batch fails, ``RewardError``.
    """
    check_needs([reward], context)
    context = {k: v for k, v in context.items() if v is not None or k not in RESOURCES}  # absent: the default
    if reward.batched:
        _apply_batched(reward, traces, context, on_error)
        return
    attempted = failed = 0
    call = matcher(reward.fn)  # the signature is read once, not once per episode
    for trace in traces:
        base = dict(context)
        base.update(trace=trace, prompt=trace.prompt, completion=trace.completion, answer=trace.answer,
                    target_tokens=trace.target_tokens, num_tokens=trace_num_tokens(trace),
                    episodes=trace.episodes, outcome=trace.outcome)
        targets = list(enumerate(trace.episodes)) if reward.level == "episode" else [(None, None)]
        for i, ep in targets:
            kwargs = base if ep is None else {**base, "episode": ep, "index": i, "previous": trace.episodes[:i]}
            attempted += 1
            reward.stats["calls"] += 1
            try:
                if reward.timeout:
                    value = run_with_time_limit(functools.partial(call, kwargs), reward.timeout)
                else:
                    value = call(kwargs)
            except ConfigError:
                raise
            except Exception as e:  # untrusted output or a user estimator's bug: isolate to this sample
                kind = "timeouts" if isinstance(e, GradingTimeout) else "errors"
                reward.stats[kind] += 1
                failed += 1
                note_fault(trace, reward.name, kind, f"{type(e).__name__}: {e}")
                value = _fallback(on_error)
            else:
                if value is None:  # the reward does not apply to this sample
                    continue
                before = reward.stats["errors"] + reward.stats["nonfinite"]
                value = _clean(value, reward, on_error, trace)
                failed += (reward.stats["errors"] + reward.stats["nonfinite"]) > before
            (trace.rewards if ep is None else ep.rewards)[reward.name] = value
    if attempted and failed == attempted and attempted > 1:
        raise RewardError(f"reward {reward.name!r} failed on every one of {attempted} samples in this batch; "
                          f"see trace.meta['reward_errors'] for the first errors: "
                          f"{traces[0].meta.get('reward_errors', ['(non-finite values)'])[:1]}")


def _apply_batched(reward: Reward, traces: list[Trace], context: Mapping[str, Any], on_error: str) -> None:
    kwargs = {**context, "traces": traces}
    try:
        values = call_matching(reward.fn.score_batch, kwargs)
    except (ConfigError, RewardError):
        raise
    except Exception as e:
        raise RewardError(f"reward {reward.name!r} failed on the whole batch: {type(e).__name__}: {e}") from e
    if len(values) != len(traces):
        raise RewardError(f"reward {reward.name!r} returned {len(values)} results for {len(traces)} traces")
    for trace, v in zip(traces, values):  # None: the reward does not apply to this trace / episode
        if reward.level == "trace":
            reward.stats["calls"] += 1
            if v is not None:
                trace.rewards[reward.name] = _clean(v, reward, on_error, trace)
            continue
        if len(v) != len(trace.episodes):
            raise RewardError(f"reward {reward.name!r} returned {len(v)} values for a trace with "
                              f"{len(trace.episodes)} episodes")
        for ep, x in zip(trace.episodes, v):
            reward.stats["calls"] += 1
            if x is not None:
                ep.rewards[reward.name] = _clean(x, reward, on_error, trace)


def trace_num_tokens(trace: Trace) -> int | None:
    """n_y: completion length in the policy's tokenizer when known."""
    if trace.completion_ids is not None:
        return len(trace.completion_ids)
    if trace.episodes and trace.episodes[-1].token_end is not None:
        return trace.episodes[-1].token_end
    return trace.meta.get("num_tokens")
