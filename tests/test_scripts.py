"""The repository's scripts (scripts/, benchmarks/, examples/) answer ``--help`` and say what they lack.

Several of them write a file the repository tracks (the embedded digits, the CuPy namespace snapshot,
the goldens) or need a package byol-ref never installs (torch, scikit-learn, CuPy, JAX). ``--help``
must print the usage and change nothing, whatever is installed; run without its optional package, a
script must say which one it needs, in a line, not a traceback.
"""
import ast
import json
import os
import pathlib
import random
import re
import shutil
import subprocess
import sys

import pytest
from repo_modules import repo_module
from user_standin import as_a_user

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for d in ("scripts", "benchmarks", "examples") for p in (ROOT / d).glob("*.py")
                 if not p.name.startswith("_") and p.name != "torch_step.py")  # (torch_step: a module)
SKIP_DIRS = {".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache", "runs", "results"}

# What each optional package's absence looks like to a script: a module that cannot be imported.
BLOCKED = ("torch", "sklearn", "cupy", "jax", "haiku", "optax", "tree", "lightly", "byol_pytorch", "matplotlib",
           "safetensors", "mypy", "pyright", "coverage")


def _files():
    """(path, size, mtime) of every file of the checkout, caches and scratch folders aside."""
    out = set()
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")
                   and not os.path.isfile(os.path.join(base, d, "pyvenv.cfg"))]  # (a venv of any name: make VENV=)
        for f in files:
            st = os.stat(os.path.join(base, f))
            out.add((os.path.relpath(os.path.join(base, f), ROOT), st.st_size, st.st_mtime_ns))
    return out


def _run(script, *args, blocked=None, tmp_path=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    if blocked is not None:
        for name in BLOCKED:
            (blocked / f"{name}.py").write_text(f"raise ImportError({f'No module named {name!r} (blocked)'!r})\n")
        env["PYTHONPATH"] = os.pathsep.join([str(blocked), str(ROOT)])
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120,
                          env=env, cwd=tmp_path or ROOT)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("installed", ["as here", "no optional package"])
def test_help_prints_the_usage_and_changes_nothing(script, installed, tmp_path):
    blocked = None
    if installed != "as here":
        blocked = tmp_path / "blocked"
        blocked.mkdir()
    before = _files()
    proc = _run(script, "--help", blocked=blocked, tmp_path=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout.strip(), (proc.stdout + proc.stderr)[-2000:]
    assert _files() == before, f"{script.name} --help changed files of the checkout"


@pytest.mark.parametrize("script, needs", [("scripts/make_golden.py", "PyTorch"),
                                           ("scripts/make_digits_npz.py", "scikit-learn"),
                                           ("scripts/snapshot_cupy_namespace.py", "CuPy")])
def test_a_development_script_without_its_package_says_which_it_needs(script, needs, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    out = tmp_path / "out"
    proc = _run(ROOT / script, *([] if "golden" in script else ["--out", str(out)]), blocked=blocked,
                tmp_path=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert needs in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("script, argv, says", [
    ("seed_table.py", ["--seeds", "-1"], "argument --seeds: wants integers >= 0, got [-1]"),
    ("seed_table.py", ["--seeds", "0", "0"], "argument --seeds: a seed is given twice in [0, 0]"),
    ("seed_table.py", ["--runs", "{file}/runs"], "argument --runs: cannot make the folder"),
    ("seed_table.py", ["--out", "{file}/table.md"], "argument --out: cannot make the folder"),
    ("seed_table.py", ["--figure", "{file}/f.png"], "argument --figure: cannot make the folder"),
    ("seed_table.py", ["--set", "nonsense"], "the seed 0 run stopped with status 2; no table was written"),
    ("collapse_lab.py", ["--epochs", "0"], "argument --epochs: wants an integer >= 1, got 0"),
    ("collapse_lab.py", ["--seed", "-1"], "argument --seed: wants an integer >= 0, got -1"),
    ("collapse_lab.py", ["--out", "{file}/lab"], "argument --out: cannot make the folder"),
])
def test_a_long_script_refuses_bad_arguments_before_it_trains(script, argv, says, tmp_path):
    """seed_table.py and collapse_lab.py train for minutes: a bad argument is named at once (status 2),
    not found after the training (an --out in no folder), nor as a traceback (a failed run, a seed < 0),
    nor taken (a seed given twice, counted twice in the spread)."""
    (tmp_path / "a-file").write_text("")
    argv = [a.format(tmp=tmp_path, file=tmp_path / "a-file") for a in argv]
    defaults = {"seed_table.py": ["--out", str(tmp_path / "t.md"), "--runs", str(tmp_path / "runs"), "--figure", ""],
                "collapse_lab.py": ["--out", str(tmp_path / "lab")]}[script]
    before = _files()
    proc = _run(ROOT / "scripts" / script, *defaults, *argv, tmp_path=tmp_path)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "t.md").exists()
    assert _files() == before


@pytest.mark.parametrize("script, flag", [("seed_table.py", "--runs"), ("seed_table.py", "--out"),
                                          ("seed_table.py", "--figure"), ("collapse_lab.py", "--out")])
def test_a_long_script_reads_a_tilde_as_the_home_folder(script, flag, tmp_path, monkeypatch):
    """--out=~/x (no shell reads ~ after =) made a folder named ~ in the current folder; it is now the home
    folder's x, as the refusal of a file there in the way shows."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "a-file").write_text("")
    monkeypatch.setenv("HOME", str(home))
    defaults = {"seed_table.py": ["--out", str(tmp_path / "t.md"), "--runs", str(tmp_path / "runs"), "--figure", ""],
                "collapse_lab.py": ["--out", str(tmp_path / "lab")]}[script]
    proc = _run(ROOT / "scripts" / script, *defaults, f"{flag}=~/a-file/x.png", tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"argument {flag}: cannot make the folder {home / 'a-file'}" in proc.stderr, proc.stderr[-2000:]
    assert f"{home / 'a-file'} is a file, not a folder" in proc.stderr and not (tmp_path / "~").exists()


def _examples_args():
    return repo_module("examples", "_args")


@pytest.mark.parametrize("kind, bounds, text, expect", [
    (int, dict(lo=1), "3", 3),
    (int, dict(lo=1), "0", "wants an integer >= 1, got '0'"),
    (int, dict(lo=2), "x", "wants an integer >= 2, got 'x'"),
    (float, dict(lo=0), "-1", "wants a number >= 0, got '-1'"),
    (float, dict(lo=0), "nan", "wants a number >= 0, got 'nan'"),
    (float, dict(lo=0), "inf", "wants a number >= 0, got 'inf'"),
    (float, dict(lo=0, lo_open=True), "0", "wants a number > 0, got '0'"),
    (float, dict(lo=0, hi=1, hi_open=True), "1", "wants a number in [0, 1), got '1'"),
    (float, dict(lo=0, hi=1), "1", 1.0),
    (float, dict(lo=0, hi=1), "1.5", "wants a number in [0, 1], got '1.5'"),
])
def test_the_cross_checks_settings_are_checked_by_the_parser(kind, bounds, text, expect):
    """examples/_args.number, the type of every numeric flag of the cross-checks: --batch 1 was an
    AssertionError from byol-pytorch, --lr -1 a ValueError from torch.optim, --rtol -1 a diff that
    found every tensor different, each after the check had begun."""
    import argparse

    parse = _examples_args().number(kind, **bounds)
    if isinstance(expect, str):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(expect)):
            parse(text)
    else:
        assert parse(text) == expect and type(parse(text)) is kind


def test_the_cross_checks_make_their_workdir_first_or_name_it(tmp_path, capsys):
    import argparse

    _args = _examples_args()
    ap = argparse.ArgumentParser(prog="check")
    _args.make_workdir(ap, str(tmp_path / "a" / "b"))
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exc:
        _args.make_workdir(ap, str(tmp_path / "file" / "w"))
    assert exc.value.code == 2 and "--workdir" in capsys.readouterr().err


def test_every_cross_check_reads_a_workdir_beginning_with_a_tilde_as_the_home_folder(tmp_path, monkeypatch):
    """The shell does not expand ~ after "=": --workdir=~/x made a folder named ~ in the current folder."""
    import argparse

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ap = argparse.ArgumentParser(prog="check")
    _examples_args().add_workdir(ap)
    assert ap.parse_args(["--workdir=~/x"]).workdir == str(tmp_path / "home" / "x")
    assert ap.parse_args(["--workdir=./~"]).workdir == "./~" and ap.parse_args([]).workdir is None
    examples = pathlib.Path(__file__).resolve().parents[1] / "examples"
    for script in sorted(examples.glob("*.py")):  # (each one's own --workdir: none is parsed without the type)
        text = script.read_text()
        if "--workdir" in text and script.name != "_args.py":
            assert "add_workdir(ap" in text or "type=os.path.expanduser" in text, script.name


def test_the_cross_check_sweep_counts_a_check_that_cannot_run_as_skipped(tmp_path):
    """scripts/crosscheck_sweep.py: where the other packages are missing every run skips (77), and the
    sweep says so and exits 77 itself; it never reports a skipped run as agreeing."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    proc = _run(ROOT / "scripts" / "crosscheck_sweep.py", "--runs", "3", "--seed", "1", "--only", "lightly,ddp",
                blocked=blocked, tmp_path=tmp_path)
    assert proc.returncode == 77, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[1] for line in lines[:3]] == ["skipped"] * 3 and "examples/crosscheck_" in lines[0]
    assert lines[-1].startswith("crosscheck_sweep: 0 agree, 0 differ, 3 skipped")


def test_the_cross_check_sweep_widens_atol_only_for_ddp_shards_of_2_rows_at_lr_0_5():
    """crosscheck_sweep.py's ddp draws take ``--atol 1e-9`` where a shard holds 2 rows at lr 0.5 (a batch
    norm's variance below its eps amplifies rounding there), 1e-10 elsewhere; and the draws are those the
    sweep made before the flag, so that a logged command reruns: run 28 of ``--seed 47 --only
    lightly,byol-pytorch,ddp`` is the one docs/verifying.md section 7 tells of."""
    sweep = repo_module("scripts", "crosscheck_sweep")
    kinds = set()
    for seed in range(300):
        cmd = sweep.draw(random.Random(seed), "ddp", None)
        opt = dict(zip(cmd[1::2], cmd[2::2]))
        hard = opt["--rows"] == "2" and opt["--lr"] == "0.5"
        assert opt["--atol"] == ("1e-9" if hard else "1e-10"), cmd
        kinds.add(hard)
    assert kinds == {True, False}
    rng, only = random.Random(47), ["lightly", "byol-pytorch", "ddp"]
    runs = [sweep.draw(rng, rng.choice(only), None) for _ in range(28)]
    assert " ".join(runs[-1]) == ("crosscheck_ddp.py --steps 5 --seed 415 --shards 3 --rows 2 --views separate "
                                  "--lr 0.5 --momentum 0.0 --tau-base 0.99 --dims 7,9,3,3,9 --atol 1e-9")


@pytest.mark.parametrize("script, argv, flag, denied", [
    ("seed_table", ["--out", "{tmp}/locked/t.md"], "--out", "locked"),
    ("seed_table", ["--out", "{tmp}/kept.md"], "--out", "kept.md"),
    ("seed_table", ["--figure", "{tmp}/locked/f.png"], "--figure", "locked"),
    ("seed_table", ["--runs", "{tmp}/locked"], "--runs", "locked"),
    ("collapse_lab", ["--out", "{tmp}/locked"], "--out", "locked"),
    ("collapse_lab", ["--out", "{tmp}"], "--out", "collapse-lab-results.md"),
])
def test_a_long_script_refuses_a_place_it_may_not_write_before_it_trains(script, argv, flag, denied, tmp_path,
                                                                          monkeypatch, capsys):
    """seed_table.py and collapse_lab.py made their output folders before training, but a folder this
    user may not write in (or a file there it may not replace) was found only when the table was
    written, after the minutes of training: as a user, `seed_table.py --out /root/x.md` trained three
    seeds, then stopped on "Permission denied". Each is now refused at once, by the flag that gave it."""
    module = repo_module("scripts", script)
    (tmp_path / "locked").mkdir()
    (tmp_path / "kept.md").write_text("mine\n")
    (tmp_path / "collapse-lab-results.md").write_text("mine\n")
    as_a_user(monkeypatch, unwritable=[tmp_path / denied])
    monkeypatch.setattr(subprocess, "run", lambda *a, **kw: pytest.fail("trained"))
    if script == "collapse_lab":
        monkeypatch.setattr(module, "fit", lambda *a, **kw: pytest.fail("trained"))
    defaults = ["--out", str(tmp_path / "t.md"), "--runs", str(tmp_path / "runs"), "--figure", ""]
    with pytest.raises(SystemExit) as exc:
        module.main((defaults if script == "seed_table" else []) + [a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"error: argument {flag}: " in err and f"choose another {flag}" in err, err
    assert "this user may not write" in err and str(tmp_path / denied) in err, err
    assert (tmp_path / "kept.md").read_text() == "mine\n"


def test_make_folder_makes_it_or_says_why_not(tmp_path, monkeypatch):
    """byol_ref.checks.make_folder, what the scripts and the cross-checks' --workdir use."""
    from byol_ref.checks import make_folder

    make_folder(tmp_path / "a" / "b", "--out")
    assert (tmp_path / "a" / "b").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match=r"^cannot make the folder .*/file/w: .*/file is a file, not a folder; choose "
                                      r"another --out$"):  # (the OS said "Not a directory", naming neither)
        make_folder(tmp_path / "file" / "w", "--out")
    as_a_user(monkeypatch, unwritable=[tmp_path / "a", tmp_path / "file"])
    with pytest.raises(PermissionError, match=r"^the folder .*/a cannot be written: this user may not write in it; "
                                              r"choose another --x$"):
        make_folder(tmp_path / "a", "--x")
    make_folder(tmp_path, "--x", replaces=[tmp_path / "absent.md"])
    with pytest.raises(PermissionError, match=r"/file cannot be replaced: this user may not write it; choose "):
        make_folder(tmp_path, "--x", replaces=[tmp_path / "file"])


def test_byol_ref_says_it_is_typed():
    """A user's mypy reads byol-ref's annotations only where the package holds the PEP 561 marker and the
    wheel ships it (without it, every `import byol_ref` is "missing library stubs or py.typed marker")."""
    assert (ROOT / "byol_ref" / "py.typed").is_file()
    data = re.search(r"^\[tool\.setuptools\.package-data\]\n((?:.+\n)+)", (ROOT / "pyproject.toml").read_text(), re.M)
    assert data is not None and re.search(r'^"byol_ref" = \[[^]]*"py\.typed"', data.group(1), re.M), data


TYPECHECK = repo_module("scripts", "typecheck")


@pytest.mark.skipif((TYPECHECK.mypy_version() or (0, 0)) < TYPECHECK.MYPY_LEAST,
                    reason="needs mypy 1.10 or newer (make typecheck installs it; the test extra does not)")
def test_the_docs_examples_type_check_against_the_annotations(tmp_path):
    """The docs' Python examples, as a user's mypy reads them: an annotation that flags correct code (a
    Dataset field typed `object` that holds an array: "object" has no attribute "mean") fails here. And as
    pyright (VS Code's Pylance) reads them, where it is installed: batch_norm_forward's cache was inferred
    `NormCache | None` ('"x_hat" is not a known attribute of "None"') and Config.loss_form `str | None`."""
    before = _files()
    proc = _run(ROOT / "scripts" / "typecheck.py", tmp_path=tmp_path)
    assert proc.returncode == 0 and "Success: no issues found" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    if TYPECHECK.pyright_command() is None:
        assert "== pyright: not installed here, not run" in proc.stdout, proc.stdout[-3000:]
    else:
        assert "\n0 errors, 0 warnings" in proc.stdout, proc.stdout[-3000:]
        assert re.search(r"^typecheck.py: ran mypy \S+ and pyright \S+: no errors$", proc.stdout, re.M), proc.stdout
    assert _files() == before


# Stand-ins for mypy and pyright (python -m mypy, python -m pyright): the script's own work, which checkers it
# runs, on what, and how it reports them, checked where neither is installed. The pyright stand-in checks that
# it is pointed at this checkout's byol_ref and at the doc modules, and reports the errors it is told to.
FAKE_MYPY = """import sys
if sys.argv[1:] == ["--version"]:
    print("mypy 1.10.0 (fake)")
else:
    print(f"Success: no issues found in {sum(a.endswith('.py') for a in sys.argv)} source files")
"""
FAKE_PYRIGHT = """import json, os, sys
if sys.argv[1:] == ["--version"]:
    print("pyright 1.1.400")
    sys.exit(0)
project = sys.argv[sys.argv.index("--project") + 1]
config = json.load(open(os.path.join(project, "pyrightconfig.json")))
python = sys.argv[sys.argv.index("--pythonpath") + 1]
if config["extraPaths"] != [{root!r}] or python != sys.executable or "doc_readme.py" not in config["include"]:
    print("fake pyright: not pointed at this checkout", config, python)
    sys.exit(3)
for name in os.environ.get("FAKE_PYRIGHT_ERRORS", "").split():
    print(f"  {{os.path.join(project, name)}}:1:1 - error: an error")
errors = len(os.environ.get("FAKE_PYRIGHT_ERRORS", "").split())
print(f"{{errors}} errors, 0 warnings, 0 informations")
sys.exit(1 if errors else 0)
"""


@pytest.mark.parametrize("pyright", ["absent", "finds nothing", "finds an error"])
def test_the_type_check_says_which_checkers_ran(pyright, tmp_path):
    """A user who runs make typecheck reads which checkers ran: mypy, and pyright where it is installed (it
    is optional); without it, a line says it was not run. An error pyright finds fails the check, as mypy's."""
    fakes = tmp_path / "fakes"
    for name, source in (("mypy", FAKE_MYPY), ("pyright", FAKE_PYRIGHT.format(root=str(ROOT)))):
        (fakes / name).mkdir(parents=True)
        (fakes / name / "__init__.py").write_text("")
        (fakes / name / "__main__.py").write_text(source)
    if pyright == "absent":
        shutil.rmtree(fakes / "pyright")
        (fakes / "pyright.py").write_text("raise ImportError('No module named pyright (blocked)')\n")
    (tmp_path / "bin").mkdir()  # PATH: no pyright there either
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fakes), str(ROOT)]), "PYTHONDONTWRITEBYTECODE": "1",
           "PATH": str(tmp_path / "bin"), "FAKE_PYRIGHT_ERRORS": "doc_readme.py" if pyright == "finds an error" else ""}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "typecheck.py")], capture_output=True, text=True,
                          timeout=120, env=env, cwd=tmp_path)
    out = proc.stdout
    assert "Traceback" not in proc.stderr and out.startswith("== mypy 1.10.0 (fake)\nSuccess: no issues found in "), \
        (out + proc.stderr)[-3000:]
    if pyright == "absent":
        assert proc.returncode == 0, (out + proc.stderr)[-3000:]
        assert "\n== pyright: not installed here, not run (optional: `pip install pyright` adds" in out, out
        assert out.splitlines()[-1] == "typecheck.py: ran mypy 1.10.0 (pyright is not installed): no errors", out
    elif pyright == "finds nothing":
        assert proc.returncode == 0, (out + proc.stderr)[-3000:]
        assert "\n== pyright 1.1.400\n0 errors, 0 warnings, 0 informations\n" in out, out
        assert out.splitlines()[-1] == "typecheck.py: ran mypy 1.10.0 and pyright 1.1.400: no errors", out
    else:
        assert proc.returncode == 1, (out + proc.stderr)[-3000:]
        assert "\n== pyright 1.1.400\n  doc_readme.py:1:1 - error: an error\n1 errors" in out, out
        assert out.splitlines()[-1] == "typecheck.py: ran mypy 1.10.0 and pyright 1.1.400: errors from pyright", out


def test_the_type_check_without_mypy_says_how_to_get_it(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    proc = _run(ROOT / "scripts" / "typecheck.py", blocked=blocked, tmp_path=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "needs mypy 1.10 or newer" in proc.stderr and "-m pip install 'mypy>=1.10'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _mutation_sweep():
    return repo_module("scripts", "mutation_sweep")


def test_the_mutation_sweep_changes_one_token_and_leaves_the_input_checks_alone(tmp_path, monkeypatch):
    """scripts/mutation_sweep.py's mutants: each changes one operator, name or number; a raise, an assert,
    the condition of an if that only raises, strings, comments and the stars of *args, **kw and a bare *
    are never touched, and a change that does not compile is no mutant."""
    sweep = _mutation_sweep()
    monkeypatch.setattr(sweep, "ROOT", tmp_path)
    module = tmp_path / "m.py"
    module.write_text(
        'def f(x, *args, y=2, **kw):\n'                    # 1
        '    """a + b * 2"""  # 3 - 4\n'                     # 2
        '    if x < 0:\n'                                    # 3: only raises: its condition is left alone
        '        raise ValueError(f"x {x + 1} < 0")\n'      # 4
        '    assert x == x\n'                                # 5
        '    return x * y - 1.5 if True else g(*args)\n'     # 6
        'def g(*, a):\n'                                     # 7
        '    return a ** 2\n')                               # 8
    got = [(m.line, m.old, m.new) for m in sweep.mutants(module)]
    assert got == [(1, "2", "3"),
                   (6, "*", "/"), (6, "-", "+"), (6, "1.5", "3.0"), (6, "True", "False"),
                   (8, "**", "*"), (8, "2", "3")], got
    for m in sweep.mutants(module):
        assert m.path == "m.py" and len(m.source.splitlines()) == 8
        compile(m.source, "m.py", "exec")
    assert [(m.line, m.new) for m in sweep.mutants(module, functions=["g"])] == [(8, "*"), (8, "3")]
    assert [m.line for m in sweep.mutants(module, ranges=[(1, 2)])] == [1]


def test_the_mutation_sweep_says_which_test_kills_a_mutant_and_lists_the_survivors(tmp_path):
    """End to end on one line of schedules.py (float32's largest value, doubled): the test that looks at
    it kills the mutant and is named; a test that does not look lets it survive, and the survivor is
    printed with its line. Neither run changes the checkout."""
    line = next(i for i, text in enumerate((ROOT / "byol_ref/schedules.py").read_text().splitlines(), 1)
                if text.startswith("_FLOAT32_MAX = "))
    script = ROOT / "scripts" / "mutation_sweep.py"
    before = _files()
    verdicts = {}
    for name, test in (("looks", "test_the_overflow_checks_refuse_exactly_what_overflows"),
                       ("does not look", "test_tau_official_values")):
        out = tmp_path / f"{name}.jsonl"
        proc = _run(script, str(ROOT / "byol_ref/schedules.py"), "--lines", str(line), "--jobs", "1",
                    "--tests", f"tests/test_schedules.py::{test}", "--out", str(out), tmp_path=tmp_path)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
        rows = [json.loads(r) for r in out.read_text().splitlines()]
        assert len(rows) == 1 and rows[0]["old"] == "3.4028234663852886e38", rows
        verdicts[name] = rows[0]["verdict"], rows[0]["failed"], proc.stdout
    assert verdicts["looks"][:2] == ("killed", "tests/test_schedules.py::test_the_overflow_checks_refuse_exactly_"
                                               "what_overflows")
    assert verdicts["does not look"][:2] == ("survived", "")
    assert f"survived byol_ref/schedules.py:{line}  3.4028234663852886e38 -> 6.805646932770577e+38" \
        in verdicts["does not look"][2]
    assert _files() == before


@pytest.mark.parametrize("summary, first", [
    ("FAILED tests/t.py::test_a - AssertionError: 1 - 2\nFAILED tests/t.py::test_b", "tests/t.py::test_a"),
    ("..\nFAILED tests/t.py::test_x[a b-c] - ValueError: no", "tests/t.py::test_x[a b-c]"),
    ("ERROR tests/t.py::test_y[2 views]\n", "tests/t.py::test_y[2 views]"),
    ("= 1 failed in 0.1s =\n", None),
])
def test_the_mutation_sweep_names_the_first_failed_test_whole(summary, first):
    """A failed test's id is read up to the " - " before its message or to the line's end: a parametrized
    id with spaces is not cut at the first (it was "tests/t.py::test_x[a"), and one message's " - " is not
    taken for the end of an id."""
    assert _mutation_sweep()._first_failed(summary) == first


@pytest.mark.parametrize("argv, says", [
    (["--jobs", "0"], "argument --jobs: wants an integer >= 1, got 0"),
    (["--limit", "0"], "argument --limit: wants an integer >= 1, got 0"),
    (["--timeout", "-1"], "argument --timeout: wants seconds > 0, got -1.0"),
    (["--lines", "x"], "argument --lines: wants A-B or A, got 'x'"),
    (["--survivors", "{tmp}/none.jsonl"], "argument --survivors: wants the JSON lines of an earlier --out"),
])
def test_the_mutation_sweep_refuses_bad_arguments(argv, says, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = _run(ROOT / "scripts" / "mutation_sweep.py", "byol_ref/tree.py", "--tests", "tests/test_defaults.py",
                *argv, tmp_path=ROOT)
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    outside = tmp_path / "m.py"
    outside.write_text("x = 1\n")
    proc = _run(ROOT / "scripts" / "mutation_sweep.py", str(outside), "--tests", "tests/test_defaults.py")
    assert proc.returncode == 2 and f"argument MODULE: wants a .py file of this checkout, got {str(outside)!r}" \
        in proc.stderr, proc.stderr[-2000:]


def test_the_mutation_sweep_covering_without_coverage_says_how_to_get_it(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    proc = _run(ROOT / "scripts" / "mutation_sweep.py", "byol_ref/tree.py", "--tests", "tests/test_defaults.py",
                "--covering", blocked=blocked, tmp_path=ROOT)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip() == "mutation_sweep.py --covering needs coverage.py: python -m pip install coverage"


def test_the_mutation_sweep_says_when_the_unchanged_checkout_fails_under_coverage(tmp_path):
    """A clean run that fails (here: a --keyword that selects no test, pytest's exit 5) stops the sweep
    with the reason, under --covering as without it; no traceback from choosing tests by lines that a
    failed coverage run never measured."""
    pytest.importorskip("coverage", reason="--covering needs coverage.py, which byol-ref's test extra does not install")
    before = _files()
    for covering, says in (([], "the unchanged checkout fails the tests (pytest exit 5): fix that first"),
                           (["--covering"], "the unchanged checkout fails the tests under coverage (pytest exit 5): "
                                            "fix that first")):
        proc = _run(ROOT / "scripts" / "mutation_sweep.py", str(ROOT / "byol_ref/tree.py"),
                    "--tests", "tests/test_defaults.py", "--keyword", "no_test_is_called_this", "--limit", "1", *covering, tmp_path=tmp_path)
        assert proc.returncode == 1 and proc.stderr.strip() == says, proc.stderr[-2000:]
    assert _files() == before


def test_the_mutation_sweep_covering_measures_around_a_child_that_hides_coverage(tmp_path):
    """The coverage run starts coverage.py in every child Python (a sitecustomize.py); a test whose child
    hides coverage.py, to test what a script says without it, got Python's "Error in sitecustomize" on
    its stderr and failed, so the sweep stopped: "the unchanged checkout fails the tests under coverage".
    Such a child now goes unmeasured, and the test passes as it does without the sweep."""
    pytest.importorskip("coverage", reason="--covering needs coverage.py, which byol-ref's test extra does not install")
    before = _files()
    proc = _run(ROOT / "scripts" / "mutation_sweep.py", str(ROOT / "byol_ref/tree.py"), "--covering", "--limit", "1",
                "--jobs", "1", "--tests", "tests/test_scripts.py::test_the_type_check_without_mypy_says_how_to_get_it",
                tmp_path=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    assert "1 mutants; the clean run took" in proc.stdout, proc.stdout[-2000:]
    assert _files() == before


def test_the_mutation_sweep_narrows_to_the_statement_a_mutant_is_in():
    """--covering picks tests by the lines of the mutated statement: every line of a simple statement
    written over several lines (a test may be recorded at another of them than the mutant's), only the
    header of a compound one (the tests that ran its body ran the header too: a body's tests are not
    more), and a def's decorators with its signature. A line run at import (a module statement, a
    decorator, a default value), while pytest collected, or by no test gets every test; the others the
    tests that ran it, fastest first."""
    sweep = _mutation_sweep()
    source = ("import functools\n"             # 1
              "@functools.lru_cache(\n"        # 2
              "    maxsize=2)\n"               # 3
              "def f(x,\n"                     # 4
              "      y=1):\n"                  # 5
              "    if (x > 0 and\n"            # 6
              "            y > 0):\n"          # 7
              "        z = (x +\n"             # 8
              "             y)\n"              # 9
              "        return z\n"             # 10
              "    return 0\n")                # 11
    tree = ast.parse(source)
    assert sweep._statement_lines(tree, 9) == {8, 9}
    assert sweep._statement_lines(tree, 7) == {6, 7}
    assert sweep._statement_lines(tree, 3) == {2, 3, 4, 5}
    assert sweep._statement_lines(tree, 5) == {2, 3, 4, 5}
    assert sweep._statement_lines(tree, 11) == {11}
    assert sweep._statement_lines(tree, 1) == {1}
    # (the module's first importer is the only test recorded at its module-level lines and defaults)
    by_line = {8: {"t::slow"}, 9: {"t::fast"}, 10: {"t::slow", ""}, 11: {"t::other"}, 1: {"t::first"},
               2: {"t::first"}, 4: {"t::first"}}
    timed = {"t::slow": 2.0, "t::fast": 0.5, "t::other": 1.0, "t::first": 0.1}
    assert sweep._chosen_tests(by_line, timed, tree, 9) == ["t::fast", "t::slow"]  # (fastest first)
    assert sweep._chosen_tests(by_line, timed, tree, 11) == ["t::other"]
    for at_import in (1, 3, 5):
        assert sweep._chosen_tests(by_line, timed, tree, at_import) is None
    assert sweep._chosen_tests(by_line, timed, tree, 10) is None  # (run while pytest collected)
    assert sweep._chosen_tests(by_line, timed, tree, 7) is None  # (run by no test)
    lam = ast.parse("key = (lambda v:\n       v + 1)\n")
    assert sweep._runs_at_import(lam, 1) and not sweep._runs_at_import(lam, 2)


def test_the_mutation_sweep_covering_tries_a_mutant_on_the_tests_that_ran_its_line(tmp_path):
    """End to end: console_main runs only in a ``python -m byol_ref`` child, so a mutant of it is tried on
    the one test that starts such a child (its lines were recorded in the child, under the test's name),
    not on a test that never reaches it; a module-level line, run at import, is tried on every test. The
    checkout is as it was (the coverage run's sitecustomize.py and plugin are the copy's, and removed)."""
    pytest.importorskip("coverage", reason="--covering needs coverage.py, which byol-ref's test extra does not install")
    cli = (ROOT / "byol_ref/cli.py").read_text().splitlines()
    start = next(i for i, text in enumerate(cli, 1) if text.startswith("def console_main("))
    line = next(i for i, text in enumerate(cli[start:], start + 1) if "sys.stdout is not None and" in text)
    schedules = (ROOT / "byol_ref/schedules.py").read_text().splitlines()
    top = next(i for i, text in enumerate(schedules, 1) if text.startswith("_FLOAT32_MAX = "))
    script = ROOT / "scripts" / "mutation_sweep.py"
    before = _files()
    out = tmp_path / "rows.jsonl"
    proc = _run(script, str(ROOT / "byol_ref/cli.py"), str(ROOT / "byol_ref/schedules.py"), "--covering",
                "--lines", str(line), str(top), "--jobs", "1", "--out", str(out),
                "--tests", "tests/test_cli.py::test_help_explains_every_option",
                "tests/test_schedules.py::test_the_overflow_checks_refuse_exactly_what_overflows", tmp_path=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    rows = {(r["path"], r["line"]): r for r in map(json.loads, out.read_text().splitlines())}
    assert rows[("byol_ref/cli.py", line)]["tests"] == 1, rows
    assert rows[("byol_ref/schedules.py", top)]["tests"] == "all", rows
    assert rows[("byol_ref/schedules.py", top)]["verdict"] == "killed", rows
    assert "--covering: 1 of the 2 mutants tried on the tests that ran their lines" in proc.stdout, proc.stdout
    assert _files() == before
