"""Components from dotted paths: the one plug-in mechanism of metarl.

A component spec is either a short name registered by metarl (``"mrt"``), a dotted path
(``"my_pkg.rewards.brevity"``), or a mapping with ``_target_`` (a short name or dotted path)
plus keyword arguments, as in Hydra configs::

    segmenter:
      _target_: metarl.segmenters.MRTSegmenter
      group_size: 2

Classes are instantiated with the keyword arguments; functions are returned as they are (or
as a ``functools.partial`` when keyword arguments are given). ``call_matching`` calls a plain
function with the subset of named values its signature asks for, so a user-written reward
only names what it needs (``episode``, ``trace``, ``answer``, ...).
"""
from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any


class ConfigError(ValueError):
    """A configuration names a component or value that cannot be used; the message says the fix."""


def import_object(path: str) -> Any:
    """Import ``pkg.module.attr`` (also ``pkg.module:attr``)."""
    if ":" in path:
        module_name, _, attr = path.partition(":")
        parts = [module_name, *attr.split(".")]
        module = importlib.import_module(module_name)
        obj: Any = module
        for a in attr.split("."):
            obj = getattr(obj, a)
        return obj
    parts = path.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            module = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as e:
            if e.name and not ".".join(parts[:i]).startswith(e.name):
                raise  # a module that exists failed on one of its own imports
            continue
        obj = module
        try:
            for a in parts[i:]:
                obj = getattr(obj, a)
        except AttributeError:
            break
        return obj
    raise ImportError(f"cannot import {path!r}: no such module or attribute")


def build(spec: Any, names: Mapping[str, str] | None = None, kind: str = "component", **extra: Any) -> Any:
    """Build a component from a spec (short name, dotted path, mapping with ``_target_``, or object).

    ``names`` maps short names to dotted paths. Keyword arguments in the mapping and ``extra``
    go to the class constructor (or are bound with ``functools.partial`` for a function).

    >>> build("math.sqrt")(9.0)
    3.0
    >>> build({"_target_": "fractions.Fraction", "numerator": 1, "denominator": 3})
    Fraction(1, 3)
    """
    names = names or {}
    if isinstance(spec, Mapping) or hasattr(spec, "items") and not callable(spec):
        kwargs = {str(k): _plain(v) for k, v in spec.items()}
        target = kwargs.pop("_target_", None)
        if target is None:
            raise ConfigError(f"{kind} spec {dict(kwargs)} has no `_target_`; name a registered {kind} "
                              f"({', '.join(sorted(names)) or 'none'}) or a dotted path")
    elif isinstance(spec, str):
        target, kwargs = spec, {}
    elif callable(spec):
        return spec
    else:
        raise ConfigError(f"cannot build a {kind} from {spec!r}")
    kwargs.update(extra)
    path = names.get(target, target)
    try:
        obj = import_object(path)
    except (ImportError, ValueError) as e:
        known = ", ".join(sorted(names))
        raise ConfigError(
            f"unknown {kind} {target!r}: {e}. Use one of [{known}] or a dotted path to your own "
            f"{kind}, e.g. my_pkg.module.name"
        ) from None
    if inspect.isclass(obj):
        try:
            return obj(**kwargs)
        except TypeError as e:
            raise ConfigError(f"{kind} {target!r}: {e}") from None
    if callable(obj):
        if kwargs:
            _check_kwargs(obj, kwargs, kind, target)
            return functools.wraps(obj)(functools.partial(obj, **kwargs))
        return obj
    raise ConfigError(f"{kind} {target!r} resolves to {type(obj).__name__}, which is not callable")


def _plain(v: Any) -> Any:
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(v, (DictConfig, ListConfig)):
            return OmegaConf.to_container(v, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return v


def _check_kwargs(fn: Callable, kwargs: Mapping[str, Any], kind: str, target: str) -> None:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    bad = [k for k in kwargs if k not in params]
    if bad:
        raise ConfigError(f"{kind} {target!r} takes no argument(s) {bad}; it accepts {list(params)}")


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
