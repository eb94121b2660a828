"""Components from config nodes, built with Hydra's own ``instantiate``: the one plug-in mechanism of metarl.

A component is a mapping with ``_target_`` (a dotted path) plus keyword arguments, as in every config-group
file (``conf/segmenter/mrt.yaml``, ``conf/rewards/*.yaml``, ...); the group files are the registry of the
built-ins, and your own component is the same mapping with your dotted path::

    segmenter:
      _target_: metarl.segmenters.MRTSegmenter
      group_size: 2

A class is instantiated with the keyword arguments. A function that *is* the component (a reward, a grader,
a verifier) is marked ``_partial_: true`` and comes back as ``functools.partial(fn, **kwargs)``, exactly as
Hydra defines it; a function without ``_partial_`` is called (a factory). ``call_matching`` calls a plain
function with the subset of named values its signature asks for, so a user-written reward only names what it
needs (``episode``, ``trace``, ``answer``, ...).
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A configuration names a component or value that cannot be used; the message says the fix."""


def plain(v: Any) -> Any:
    """An OmegaConf node as plain (resolved) Python containers; anything else as it is."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(v, DictConfig | ListConfig):
        return OmegaConf.to_container(v, resolve=True)
    return v


def _unwrap_partial(obj: Any) -> Any:
    """Hydra's ``_partial_`` result as a plain ``functools.partial`` keeping the function's attributes (a
    reward's declared ``level`` and ``weight``, ``__name__``); Hydra's own wrapper re-checks its target policy
    on every call, and a reward is called once per episode."""
    if isinstance(obj, functools.partial) and type(obj) is not functools.partial:
        return functools.wraps(obj.func)(functools.partial(obj.func, *obj.args, **(obj.keywords or {})))
    if type(obj) is functools.partial:
        return functools.wraps(obj.func)(obj)
    return obj


def instantiate(spec: Any, kind: str = "component", key: str | None = None, **extra: Any) -> Any:
    """Build a component from a ``_target_`` mapping with ``hydra.utils.instantiate`` (``_partial_`` honoured);
    an object that is already built (not a mapping) is returned as it is.

    ``extra`` keyword arguments go to the target too (objects such as a tokenizer). Errors become a
    :class:`ConfigError` naming ``key`` (the config key, e.g. ``segmenter``) and the fix.

    >>> instantiate({"_target_": "fractions.Fraction", "numerator": 1, "denominator": 3})
    Fraction(1, 3)
    >>> instantiate({"_target_": "textwrap.shorten", "_partial_": True, "width": 15})("cut into episodes")
    'cut into [...]'
    >>> instantiate({"_target_": "metarl.segmenters.TagSegmenter", "tagz": 1}, "segmenter")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: segmenter: metarl.segmenters.TagSegmenter: TypeError: ...unexpected keyword argument 'tagz'
    """
    from hydra.errors import HydraException
    from hydra.utils import instantiate as hydra_instantiate

    key = key or kind
    spec = plain(spec)
    if spec is None:
        raise ConfigError(f"{key} is not set: give a mapping with _target_ (a dotted path), e.g. "
                          f"{key}._target_=my_pkg.module.name")
    if isinstance(spec, str):
        raise ConfigError(f"{key}={spec!r}: a {kind} is a mapping with `_target_` (a dotted path) and its keyword "
                          f"arguments, e.g. {key}='{{_target_: {spec if '.' in spec else 'my_pkg.module.name'}}}'; "
                          f"the built-ins are the files of its config group (conf/)")
    if not isinstance(spec, Mapping):
        return spec  # an object built in Python
    target = spec.get("_target_")
    if not isinstance(target, str) or not target or target == "???":
        raise ConfigError(f"{key} {dict(spec)} has no `_target_`; set {key}._target_ to a dotted path "
                          f"(my_pkg.module.name) or choose a built-in from its config group (conf/)")
    if spec.get("_partial_"):
        _check_bound(target, {k: v for k, v in spec.items() if not k.startswith("_")} | extra, kind, key)
    try:
        obj = hydra_instantiate(dict(spec), _convert_="all", **extra)
    except HydraException as e:
        message = str(e).replace(", set env var HYDRA_FULL_ERROR=1 to see chained exception.", "")
        cause = e.__cause__
        if cause is not None and not isinstance(cause, ImportError | AttributeError):
            message = f"{target}: {type(cause).__name__}: {cause}"
        raise ConfigError(f"{key}: {message}") from None
    return _unwrap_partial(obj)


def _quiet_get_object(target: str) -> Any:
    """``hydra.utils.get_object`` without its error log line (instantiate reports an unknown target itself)."""
    import logging

    from hydra.utils import get_object

    logger = logging.getLogger("hydra.utils")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return get_object(target)
    finally:
        logger.setLevel(level)


def target_of(spec: Any) -> Any:
    """The object a ``_target_`` mapping names, or None when it names none that can be imported (building the
    spec then reports the error, with the key).

    >>> target_of({"_target_": "fractions.Fraction"}), target_of({"_target_": "no.such.thing"}), target_of("x")
    (<class 'fractions.Fraction'>, None, None)
    """
    spec = plain(spec)
    target = spec.get("_target_") if isinstance(spec, Mapping) else None
    if not isinstance(target, str) or not target:
        return None
    try:
        return _quiet_get_object(target)
    except Exception:  # noqa: BLE001 - instantiate reports an unknown target, with the key
        return None


def _check_bound(target: str, kwargs: Mapping[str, Any], kind: str, key: str) -> None:
    """A ``_partial_`` function's configured arguments are ones it takes (a partial would accept any until
    called, and a typo would fail on the first sample instead of now)."""
    fn = target_of({"_target_": target})
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # None (unknown target: instantiate reports it) or no signature
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    bad = sorted(k for k in kwargs if k not in params)
    if bad:
        raise ConfigError(f"{key}: {kind} {target} takes no argument(s) {bad}; it accepts {list(params)}")


def is_plain_function(spec: Any) -> bool:
    """Whether a ``_target_`` mapping names a plain function without ``_partial_`` (which Hydra would call)."""
    spec = plain(spec)
    if not isinstance(spec, Mapping) or spec.get("_partial_"):
        return False
    return inspect.isfunction(target_of(spec))


def instantiate_callable(spec: Any, kind: str, key: str | None = None, **extra: Any) -> Any:
    """:func:`instantiate` for components that are called later (rewards, graders, verifiers, strategies):
    a plain function must say ``_partial_: true``, so that it is the component rather than called now."""
    key = key or kind
    if is_plain_function(spec):
        raise ConfigError(f"{key}: {plain(spec)['_target_']} is a function; a {kind} function is used as it is, "
                          f"so its config says `_partial_: true` (on the command line +{key}._partial_=true)")
    node = plain(spec)
    if isinstance(node, Mapping) and node.get("_partial_") and inspect.isclass(target_of(node)):
        raise ConfigError(f"{key}: {node['_target_']} is a class, which is instantiated: set "
                          f"{key}._partial_=false (`_partial_: true` is for a function that is the {kind})")
    return instantiate(spec, kind, key, **extra)


def free_parameters(fn: Callable) -> tuple[dict[str, inspect.Parameter], bool]:
    """The parameters a caller passes ``fn`` by name (not ``*args`` / ``**kwargs``, not ``self``, not the
    keywords a ``functools.partial`` already binds), and whether ``fn`` takes ``**kwargs``."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    if not inspect.isfunction(target) and not inspect.ismethod(target) and callable(target):
        target = target.__call__  # type: ignore[assignment]
    params = inspect.signature(target).parameters
    bound = set(fn.keywords) if isinstance(fn, functools.partial) else set()
    free = {n: p for n, p in params.items()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self" and n not in bound}
    return free, any(p.kind is p.VAR_KEYWORD for p in params.values())


def wanted_args(fn: Callable) -> tuple[set[str], bool]:
    """The argument names ``fn`` accepts, and whether it takes ``**kwargs``."""
    free, var_kw = free_parameters(fn)
    return set(free), var_kw


def call_matching(fn: Callable, available: Mapping[str, Any]) -> Any:
    """Call ``fn`` with the values from ``available`` whose names its signature asks for.

    >>> def reward(episode, answer): return float(episode == answer)
    >>> call_matching(reward, {"episode": "4", "answer": "4", "trace": None})
    1.0
    """
    return matcher(fn)(available)


def matcher(fn: Callable) -> Callable[[Mapping[str, Any]], Any]:
    """``call_matching`` for one ``fn`` with its signature read once: ``matcher(fn)(available)``.

    For calling the same function on many samples (a reward on every episode of a batch).

    >>> call = matcher(lambda episode, answer=None: episode)
    >>> call({"episode": 3, "trace": None}), call({"episode": 4, "answer": 1})
    (3, 4)
    """
    names, var_kw = wanted_args(fn)
    if var_kw:
        return lambda available: fn(**available)
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        params = {}
    required = [n for n in names if n in params and params[n].default is inspect.Parameter.empty]

    def call(available: Mapping[str, Any]) -> Any:
        missing = [n for n in required if n not in available]
        if missing:
            raise ConfigError(
                f"{getattr(fn, '__name__', fn)!r} asks for {missing}, which metarl does not provide here; "
                f"available: {sorted(available)}"
            )
        return fn(**{n: available[n] for n in names if n in available})

    return call
