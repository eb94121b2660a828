"""What only the console scripts need (the config handling they share lives in :mod:`metarl.config`)."""
from __future__ import annotations

import os
import sys


def allow_working_directory_imports() -> None:
    """Let ``_target_`` dotted paths name modules in the current directory, as ``python -m metarl.cli.X`` does
    (a console script's ``sys.path`` starts with its own bin directory instead)."""
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
