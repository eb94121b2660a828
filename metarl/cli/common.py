"""What only the console scripts need (the config handling they share lives in :mod:`metarl.config`)."""
from __future__ import annotations

import os
import sys


def prepare_command_line(app: str | None = None) -> None:
    """Before a Hydra app starts: plug-ins importable from the current directory, ``run_dir=`` as an alias of
    Hydra's output directory (:func:`run_dir_alias`), and the overrides composed once against the app's typed
    schema (:func:`check_overrides`), so that a wrong type or an unknown key is reported as metarl reports it."""
    allow_working_directory_imports()
    sys.argv[1:] = run_dir_alias(sys.argv[1:])
    if app is not None:
        check_overrides(app, sys.argv[1:])


def apply_verbosity(cfg) -> None:
    """The app's ``verbose`` key (:func:`metarl.utils.set_verbose`): false (the default) keeps library chatter off
    the console (Hugging Face's bars, TRL's log dicts, deprecation warnings, INFO records; the app's log file keeps
    every record), true lets it through."""
    from metarl.utils import set_verbose

    v = cfg.get("verbose", False)
    set_verbose(v if isinstance(v, bool) else False)


def check_overrides(app: str, argv: list[str]) -> None:
    """Compose ``app`` with the command line's overrides; a composition error (wrong type, unknown key: the
    message lists the valid keys) exits with status 2 before Hydra starts. Sweeps (``-m``) and Hydra's own
    flags are left to Hydra."""
    from metarl.config import compose
    from metarl.registry import ConfigError

    if any(a.startswith("-") for a in argv):
        return
    try:
        compose(app, [a for a in argv if not a.startswith(("hydra.", "hydra/"))])
    except ConfigError as e:
        print(f"metarl-{app}: configuration error: {e}", file=sys.stderr)
        sys.exit(2)


def allow_working_directory_imports() -> None:
    """Let ``_target_`` dotted paths name modules in the current directory, as ``python -m metarl.cli.X`` does
    (a console script's ``sys.path`` starts with its own bin directory instead)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def run_dir_alias(argv: list[str]) -> list[str]:
    """``run_dir=X`` on the command line names Hydra's output directory: ``hydra.run.dir=X`` is added (with
    ``-m``/``--multirun``: ``hydra.sweep.dir=X``, one subdirectory per job) unless it is already given, so that
    ``run_dir=`` and ``hydra.run.dir=`` mean the same in every app (``run_dir`` defaults to Hydra's directory).

    >>> run_dir_alias(["recipe=a", "run_dir=runs/x"])
    ['recipe=a', 'run_dir=runs/x', 'hydra.run.dir=runs/x']
    >>> run_dir_alias(["-m", "run_dir=runs/x", "seed=0,1"])
    ['-m', 'seed=0,1', 'hydra.sweep.dir=runs/x']
    """
    values = [a.split("=", 1)[1] for a in argv if a.startswith("run_dir=")]
    if not values:
        return list(argv)
    multirun = any(a in ("-m", "--multirun") for a in argv)
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    if any(a.startswith(key + "=") for a in argv):
        return list(argv)
    # with -m, run_dir itself must not pin every job to one directory: it becomes the sweep's directory
    out = [a for a in argv if not (multirun and a.startswith("run_dir="))]
    return [*out, f"{key}={values[-1]}"]
