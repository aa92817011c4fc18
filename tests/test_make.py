"""scripts/use_installed.py: what `make run` and `make test` fall back on where pip cannot reach a
package index (the issue's "fresh machine with no network"). The fallback itself was run end to
end as `.ci/run` with pip offline; these tests check its decisions without making environments."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def use_installed(monkeypatch):
    spec = importlib.util.spec_from_file_location("use_installed", ROOT / "scripts" / "use_installed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = []

    class EnvBuilder:  # records the environment it would make
        def __init__(self, **kw):
            self.kw = kw

        def create(self, env_dir):
            made.append((Path(env_dir), self.kw))

    monkeypatch.setattr(module.venv, "EnvBuilder", EnvBuilder)
    module.made = made
    return module


def test_the_requirements_are_pyprojects_with_or_without_tomllib(use_installed, monkeypatch):
    plot, test = use_installed.requirements("plot"), use_installed.requirements("test")
    assert plot == [("numpy", "2.0"), ("matplotlib", "3.6")]
    assert ("pytest", "7") in test and ("hypothesis", "6.80") in test and test[0] == ("numpy", "2.0")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10: no tomllib, the file's one-line lists
    assert use_installed.requirements("plot") == plot and use_installed.requirements("test") == test
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        use_installed.requirements("nope")


def test_missing_or_old_packages_are_named_and_nothing_is_made(use_installed, monkeypatch, capsys, tmp_path):
    versions = {"numpy": "1.26.4", "matplotlib": "3.9.0"}

    def version(name):
        if name not in versions:
            raise use_installed.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(use_installed.metadata, "version", version)
    assert use_installed.check("numpy", "2.0") == "numpy 1.26.4 is older than the 2.0 byol-ref needs"
    assert use_installed.check("numpy", "1.26") is None and use_installed.check("pytest", None) == \
        "pytest is not installed"
    assert use_installed.main([str(tmp_path / "venv"), "test"]) == 1
    err = capsys.readouterr().err
    assert "pip could not install the 'test' extra" in err
    assert "cannot go on: numpy 1.26.4 is older than the 2.0 byol-ref needs; pytest is not installed; " in err
    assert "-m pip install 'numpy>=2.0' 'pytest>=7' 'hypothesis>=6.80'" in err and "matplotlib" not in err
    assert use_installed.made == []
    versions["numpy"] = "2.1.0rc1+local"  # a pre-release or local build of 2.1 is 2.1
    del versions["matplotlib"]  # only the plots need it: said, not refused
    assert use_installed.main([str(tmp_path / "venv"), "plot"]) == 0
    err = capsys.readouterr().err
    assert "venv now uses the installed numpy 2.1.0rc1+local" in err
    assert "matplotlib is not installed: the plots are skipped" in err
    assert use_installed.made == [(tmp_path / "venv", {"system_site_packages": True, "clear": True,
                                                       "with_pip": True})]
    assert use_installed.main([]) == 2
