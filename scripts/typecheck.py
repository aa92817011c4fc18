"""Type-check the code a user of byol-ref writes against byol-ref's annotations (it ships ``py.typed``).

    python scripts/typecheck.py          (= make typecheck; needs mypy 1.10 or newer)

What a user writes is stood in for by the ```python blocks of README.md and docs/*.md: each page's blocks
make one module, in order, as a reader runs them. mypy checks those modules, the bodies of functions
without annotations included (``--check-untyped-defs``), with byol_ref imported from this checkout. It
reads byol_ref's own code for its signatures, NamedTuples and dataclasses but does not report that code's
own errors (``--follow-imports=silent``): the check is of what a caller is told, where a wrong annotation
(a field typed ``object`` that holds an array, a ``bool`` that also takes a number) flags correct code.
Nothing is written in the checkout (the modules and mypy's cache go to a temporary folder).

Exit status: 0 when mypy finds nothing, 1 when it reports an error (its report is printed) or mypy is not
installed (a line says how to install it).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MYPY_LEAST = (1, 10)


def doc_modules() -> dict:
    """``{module name: source}``: the ```python blocks of README.md and docs/*.md, one module per page."""
    out = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
        if blocks:
            name = "doc_" + re.sub(r"\W", "_", path.stem.lower())
            out[name] = f"# The ```python blocks of {path.relative_to(ROOT)}, in order.\n" + "\n".join(blocks)
    return out


def mypy_version() -> tuple | None:
    """mypy's (major, minor) where this Python has it, else None."""
    proc = subprocess.run([sys.executable, "-m", "mypy", "--version"], capture_output=True, text=True)
    found = re.search(r"mypy (\d+)\.(\d+)", proc.stdout)
    return (int(found.group(1)), int(found.group(2))) if proc.returncode == 0 and found else None


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    found = mypy_version()
    if found is None or found < MYPY_LEAST:
        least = ".".join(map(str, MYPY_LEAST))
        had = "is not installed" if found is None else f"is {found[0]}.{found[1]}"
        print(f"typecheck.py: needs mypy {least} or newer, and {sys.executable}'s mypy {had}: "
              f"{sys.executable} -m pip install 'mypy>={least}' (make typecheck installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="byol-ref-typecheck-") as tmp:
        files = []
        for name, source in doc_modules().items():
            (Path(tmp) / f"{name}.py").write_text(source, encoding="utf-8")
            files.append(str(Path(tmp) / f"{name}.py"))
        env = {**os.environ, "MYPYPATH": str(ROOT)}  # (byol_ref from this checkout, whatever is installed)
        proc = subprocess.run([sys.executable, "-m", "mypy", "--check-untyped-defs", "--follow-imports=silent",
                               "--pretty", "--cache-dir", str(Path(tmp) / "cache"), *files],
                              env=env, cwd=tmp, capture_output=True, text=True)
    report = proc.stdout.replace(tmp + os.sep, "")
    print(report.rstrip() or "(mypy printed nothing)")
    if proc.returncode not in (0, 1) or proc.stderr.strip():
        print(proc.stderr.rstrip(), file=sys.stderr)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
