"""Type-check the code a user of byol-ref writes against byol-ref's annotations (it ships ``py.typed``).

    python scripts/typecheck.py          (= make typecheck; needs mypy 1.10 or newer; pyright where installed)

What a user writes is stood in for by the ```python blocks of README.md and docs/*.md: each page's blocks
make one module, in order, as a reader runs them. mypy checks those modules, the bodies of functions
without annotations included (``--check-untyped-defs``), with byol_ref imported from this checkout. It
reads byol_ref's own code for its signatures, NamedTuples and dataclasses but does not report that code's
own errors (``--follow-imports=silent``): the check is of what a caller is told, where a wrong annotation
(a field typed ``object`` that holds an array, a ``bool`` that also takes a number) flags correct code.

Then pyright (what VS Code's Pylance runs) checks the same modules, in its standard mode, where it is
installed: this Python's (``pip install pyright``) or else one on PATH (``npm install -g pyright``). It
is optional, never installed here (the pip package fetches Node.js at its first run); where it is absent,
a line says so and mypy's verdict stands alone. pyright reads byol_ref from this checkout too (its
``extraPaths``), and infers what a function without annotations returns from its body, which mypy takes
as ``Any``: a cache that is None under a flag, a field that may hold None, are errors to it. It reports
no error in byol_ref's own code either (a library outside the checked project). The output names each
checker that ran, with its version, and each one's report. Nothing is written in the checkout (the
modules, pyright's configuration and mypy's cache go to a temporary folder).

Exit status: 0 when every checker that ran finds nothing, 1 when one reports an error (its report is
printed) or mypy is not installed (a line says how to install it).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MYPY_LEAST = (1, 10)
MYPY = (sys.executable, "-m", "mypy")
# (pyright's pip package would tell of each newer release, a line in the report; the check is the same)
PYRIGHT_ENV = {"PYRIGHT_PYTHON_IGNORE_WARNINGS": "1"}


def doc_modules() -> dict:
    """``{module name: source}``: the ```python blocks of README.md and docs/*.md, one module per page."""
    out = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
        if blocks:
            name = "doc_" + re.sub(r"\W", "_", path.stem.lower())
            out[name] = f"# The ```python blocks of {path.relative_to(ROOT)}, in order.\n" + "\n".join(blocks)
    return out


@functools.lru_cache(maxsize=None)
def checker_version(*command: str) -> str | None:
    """The first line ``command --version`` prints ("mypy 1.10.1 (compiled: yes)", "pyright 1.1.414"), or
    None where the command does not run or fails; asked once per command (the check asks each checker
    before it runs it, and the report names it)."""
    try:
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=600,
                              env={**os.environ, **PYRIGHT_ENV})
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else None


def mypy_version() -> tuple | None:
    """mypy's (major, minor) where this Python has it, else None."""
    found = re.match(r"mypy (\d+)\.(\d+)", checker_version(*MYPY) or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def pyright_command() -> list | None:
    """The command that runs pyright here: this Python's pyright package, else a pyright on PATH; None
    where neither answers ``--version`` as pyright."""
    on_path = shutil.which("pyright")
    for command in ([sys.executable, "-m", "pyright"], *([[on_path]] if on_path else [])):
        if (checker_version(*command) or "").startswith("pyright "):
            return command
    return None


def _report(proc, tmp: str, checker: str) -> bool:
    """Print a checker's report, the temporary folder taken out of its paths; whether it found nothing."""
    report = proc.stdout
    for folder in {os.path.realpath(tmp), tmp}:
        report = report.replace(folder + os.sep, "")
    print(report.rstrip() or f"({checker} printed nothing)")
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    return proc.returncode == 0


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    found = mypy_version()
    if found is None or found < MYPY_LEAST:
        least = ".".join(map(str, MYPY_LEAST))
        had = "is not installed" if found is None else f"is {found[0]}.{found[1]}"
        print(f"typecheck.py: needs mypy {least} or newer, and {sys.executable}'s mypy {had}: "
              f"{sys.executable} -m pip install 'mypy>={least}' (make typecheck installs it)", file=sys.stderr)
        return 1
    pyright = pyright_command()
    ran, failed = [], []
    with tempfile.TemporaryDirectory(prefix="byol-ref-typecheck-") as tmp:
        modules = doc_modules()
        files = []
        for name, source in modules.items():
            (Path(tmp) / f"{name}.py").write_text(source, encoding="utf-8")
            files.append(str(Path(tmp) / f"{name}.py"))
        version = checker_version(*MYPY)
        print(f"== {version}")
        env = {**os.environ, "MYPYPATH": str(ROOT)}  # (byol_ref from this checkout, whatever is installed)
        proc = subprocess.run([*MYPY, "--check-untyped-defs", "--follow-imports=silent",
                               "--pretty", "--cache-dir", str(Path(tmp) / "cache"), *files],
                              env=env, cwd=tmp, capture_output=True, text=True)
        ran.append(version)
        if not _report(proc, tmp, "mypy"):
            failed.append("mypy")
        if pyright is None:
            print("== pyright: not installed here, not run (optional: `pip install pyright` adds the checker "
                  "of VS Code's Pylance)")
        else:
            version = checker_version(*pyright)
            print(f"== {version}")
            # byol_ref from this checkout (extraPaths come before site-packages); numpy from this Python
            config = {"include": [f"{name}.py" for name in modules], "extraPaths": [str(ROOT)],
                      "typeCheckingMode": "standard"}
            (Path(tmp) / "pyrightconfig.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
            proc = subprocess.run([*pyright, "--project", tmp, "--pythonpath", sys.executable],
                                  env={**os.environ, **PYRIGHT_ENV}, cwd=tmp, capture_output=True, text=True)
            ran.append(version)
            if not _report(proc, tmp, "pyright"):
                failed.append("pyright")
    checkers = " and ".join(v.split(" (")[0] for v in ran)
    verdict = f"errors from {' and '.join(failed)}" if failed else "no errors"
    print(f"typecheck.py: ran {checkers}{'' if pyright else ' (pyright is not installed)'}: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
