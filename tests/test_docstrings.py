"""The ``Examples:`` sections of the docstrings run and print what they say.

Every module of byol_ref is handed to the standard library's doctest (NORMALIZE_WHITESPACE only, so
an expected output is compared as written), and the public functions listed below must keep at least
one ``>>>`` example, so that an example cannot silently disappear from ``help()``.
"""
import doctest
import importlib
import inspect
import pkgutil

import pytest

import byol_ref

MODULES = ["byol_ref"] + sorted(m.name for m in pkgutil.walk_packages(byol_ref.__path__, "byol_ref.")
                               if m.name.rsplit(".", 1)[-1] != "__main__")  # (importing __main__ runs the CLI)

# The public entry points whose docstrings must show a call (module, function).
MUST_HAVE_EXAMPLE = [
    ("byol_ref", name) for name in byol_ref.__all__ if inspect.isfunction(getattr(byol_ref, name))
] + [
    ("byol_ref.train", "fit"),
    ("byol_ref.evaluate", "linear_probe"),
    ("byol_ref.evaluate", "low_label_probe"),
    ("byol_ref.evaluate", "knn_predict"),
    ("byol_ref.evaluate", "knn_accuracy"),
    ("byol_ref.optim", "lars_init"),
    ("byol_ref.optim", "lars_update"),
    ("byol_ref.schedules", "warmup_cosine_lr"),
    ("byol_ref.schedules", "target_tau"),
    ("byol_ref.augment", "two_views"),
]


def test_the_walk_finds_the_modules():
    assert {"byol_ref", "byol_ref.model", "byol_ref.train", "byol_ref.evaluate", "byol_ref.augment"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_doctests_pass(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test)
    failed, attempted = runner.summarize(verbose=False)
    assert failed == 0, f"{failed} of {attempted} doctest examples of {name} failed (their report is above)"


@pytest.mark.parametrize("module, name", MUST_HAVE_EXAMPLE, ids=[f"{m}.{n}" for m, n in MUST_HAVE_EXAMPLE])
def test_public_function_has_an_example(module, name):
    func = getattr(importlib.import_module(module), name)
    examples = doctest.DocTestParser().get_examples(inspect.getdoc(func) or "")
    assert examples, f"{module}.{name} has no >>> example in its docstring"
    assert "Examples:" in inspect.getdoc(func), f"{module}.{name}: its >>> lines belong in an Examples: section"
