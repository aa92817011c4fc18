"""scripts/use_installed.py: what `make run` and `make test` fall back on where pip cannot reach a
package index (the issue's "fresh machine with no network"). End to end it was run as `.ci/run`
and `make run` with pip offline; here its decisions, and the environment it gives the packages
of the Python running the tests (a venv's, under `make test`)."""
import importlib.util
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.fixture
def use_installed():
    spec = importlib.util.spec_from_file_location("use_installed", ROOT / "scripts" / "use_installed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_requirements_are_pyprojects_with_or_without_tomllib(use_installed, monkeypatch, tmp_path):
    plot, test = use_installed.requirements("plot"), use_installed.requirements("test")
    assert plot == [("numpy", "2.0"), ("matplotlib", "3.8.4")]
    from byol_ref.plots import MATPLOTLIB_LEAST  # (the floor the report names, which is pyproject's)
    assert ("matplotlib", MATPLOTLIB_LEAST) in plot and ("matplotlib", MATPLOTLIB_LEAST) in test
    assert ("pytest", "7") in test and ("hypothesis", "6.80") in test and test[0] == ("numpy", "2.0")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # Python 3.10: no tomllib, the file's one-line lists
    assert use_installed.requirements("plot") == plot and use_installed.requirements("test") == test
    with pytest.raises(SystemExit, match="no extra 'nope'"):
        use_installed.requirements("nope")
    (tmp_path / "pyproject.toml").write_text('dependencies = [\n  "numpy>=2.0",\n]\nplot = ["a[b]>=1", "c>=2.1"]\n')
    monkeypatch.setattr(use_installed, "ROOT", tmp_path)  # lines apart, brackets inside a string: still read
    assert use_installed.requirements("plot") == [("numpy", "2.0"), ("a", "1"), ("c", "2.1")]
    (tmp_path / "pyproject.toml").write_text('dependencies = [  # what it runs on\n  "numpy>=2.0",\n]\nplot = []\n')
    with pytest.raises(SystemExit, match="cannot read the list 'dependencies'.*no comments"):
        use_installed.requirements("plot")  # (said, not misread)


def test_missing_or_old_packages_are_named_and_nothing_is_changed(use_installed, monkeypatch, capsys, tmp_path):
    versions = {"numpy": "1.26.4", "matplotlib": "3.9.0"}

    def version(name):
        if name not in versions:
            raise use_installed.metadata.PackageNotFoundError(name)
        return versions[name]

    monkeypatch.setattr(use_installed.metadata, "version", version)
    assert use_installed.check("numpy", "2.0") == "numpy 1.26.4 is older than the 2.0 byol-ref needs"
    assert use_installed.check("numpy", "1.26") is None and use_installed.check("pytest", None) == \
        "pytest is not installed"
    versions["hypothesis"] = "6.100.1"
    assert use_installed.check("hypothesis", "6.80") is None  # (6.100 is newer than 6.80)
    assert use_installed._version_tuple("2.1.0rc1+local") == (2, 1, 0)
    env = tmp_path / "env"
    venv.create(env, with_pip=False)  # an environment without numpy
    assert use_installed.main([str(env), "test"]) == 1
    err = capsys.readouterr().err
    assert "pip could not install the 'test' extra" in err
    assert "cannot go on: numpy 1.26.4 is older than the 2.0 byol-ref needs; pytest is not installed. Install" in err
    assert "-m pip install 'numpy>=2.0' 'pytest>=7'" in err and "matplotlib" not in err
    assert not list(env.rglob(use_installed.PTH))
    assert use_installed.main([str(tmp_path / "none"), "test"]) == 1
    assert "none has no bin/python; remove it (make clean)" in capsys.readouterr().err
    assert use_installed.main([]) == 2


def test_an_environment_without_the_packages_gets_this_pythons_and_one_with_them_is_kept(use_installed, capsys,
                                                                                         tmp_path):
    env = tmp_path / "env"
    venv.create(env, with_pip=False)  # as `python3 -m venv` made it, before pip could install anything
    python = str(use_installed._env_python(env))
    assert subprocess.run([python, "-c", "import numpy"], capture_output=True).returncode == 1
    assert use_installed.main([str(env), "test"]) == 0  # this Python runs the tests: it has what they need
    err = capsys.readouterr().err
    assert f"{env} now uses the installed numpy " in err
    # From inside, the environment finds this Python's packages, a venv's own included (make test's).
    import numpy
    import pytest as this_pytest

    done = subprocess.run([python, "-c", "import numpy, pytest; print(numpy.__file__); print(pytest.__file__)"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [numpy.__file__, this_pytest.__file__]  # (lines: a path may hold spaces)
    pth = list(env.rglob(use_installed.PTH))
    before = pth[0].read_text()
    assert use_installed.main([str(env), "test"]) == 0  # the next time, it is kept as it is
    assert "already has what it needs; going on with it" in capsys.readouterr().err
    assert pth[0].read_text() == before


def test_a_python_older_than_requires_python_is_refused_with_what_to_do(use_installed, monkeypatch):
    """pip refused to install byol-ref on Python 3.9, and the fallback then gave the environment 3.9's packages:
    the tests broke on `int | None`, and the stamp kept every later make on that environment."""
    monkeypatch.setattr(sys, "version_info", (3, 9, 18, "final", 0))
    with pytest.raises(SystemExit, match=r"it needs Python 3\.10 or newer, and .* is .*: make clean, then make again"):
        use_installed._check_python()
    monkeypatch.setattr(sys, "version_info", (3, 10, 0, "final", 0))
    use_installed._check_python()


def test_plain_make_says_what_each_target_does():
    import shutil

    if shutil.which("make") is None or shutil.which("awk") is None:
        pytest.skip("make or awk is not installed")
    done = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=60)  # (it made a venv)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[1] for line in lines][:3] == ["help", "run", "test"] and "Main job" in lines[1]


def test_the_venv_steps_of_two_makes_run_one_at_a_time(tmp_path):
    """scripts/one_at_a_time.py, around the Makefile's venv steps: `make run` and `make test` started
    together in a fresh clone made one .venv at once, and the second filled it from the system's packages
    on finding no pip in it yet. The second waits, saying so, and its command's status is the script's."""
    pytest.importorskip("fcntl")
    lock, log = tmp_path / ".venv.lock", tmp_path / "log"
    script = [sys.executable, str(ROOT / "scripts" / "one_at_a_time.py"), str(lock)]
    first = subprocess.Popen([*script, sys.executable, "-c", "import sys; print('held', flush=True); sys.stdin.read(); "
                              f"open({str(log)!r}, 'a').write('first\\n')"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline() == "held\n"
        second = subprocess.Popen([*script, sys.executable, "-c", f"open({str(log)!r}, 'a').write('second\\n'); "
                                   "raise SystemExit(3)"], stderr=subprocess.PIPE, text=True)
        assert "byol-ref: waiting for another make" in second.stderr.readline()
        assert not log.exists()  # (it waits: nothing of the second's has run)
        first.stdin.close()
        assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 3
        assert log.read_text() == "first\nsecond\n"
        second.stderr.close()
    finally:
        first.kill()
        first.wait(timeout=60)
        first.stdout.close()
    # Ctrl-C while it waits: make's own "Interrupt" stands, with no traceback of the script's.
    with open(lock, "a") as held:
        import fcntl
        import signal

        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = subprocess.Popen([*script, sys.executable, "-c", "pass"], stderr=subprocess.PIPE, text=True)
        assert "waiting for another make" in waiting.stderr.readline()
        waiting.send_signal(signal.SIGINT)
        assert waiting.wait(timeout=60) == 130 and waiting.stderr.read() == ""
        waiting.stderr.close()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("$(VENV)/bin/python:", "$(VENV)/.stamp-test:", "$(VENV)/.stamp-run:"):
        recipe = makefile.split(target, 1)[1].split("\n\n", 1)[0]
        assert "\t$(ONE_AT_A_TIME) sh -c '" in recipe, target
    assert "[ -x $(PY) ] && exit 0;" in makefile  # (a venv the other make made is not made again)
