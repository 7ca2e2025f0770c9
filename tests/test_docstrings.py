"""Every example in a docstring runs and prints what it shows (doctest over the whole package)."""

import doctest
import importlib
import pkgutil

import pytest

import steepest

MODULES = sorted(m.name for m in pkgutil.walk_packages(steepest.__path__, "steepest.") if not m.name.endswith("__main__"))


def test_the_package_has_examples():
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for name in MODULES for t in finder.find(importlib.import_module(name)))
    assert examples >= 30, examples


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
