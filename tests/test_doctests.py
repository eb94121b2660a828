"""Every example in the library's and the analysis package's docstrings runs and gives what it shows."""
from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import analysis
import metarl

MODULES = sorted(m.name for pkg in (metarl, analysis)
                 for m in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"
