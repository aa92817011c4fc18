"""`make run` and `make test` on a machine that cannot reach a package index.

The Makefile first installs byol-ref with an extra (`plot`, `test`) into its virtual environment.
When that fails (no network, no index), it runs this script with the Python that made the
environment:

1. if the environment already has what the extra needs (an earlier install), nothing changes;
2. else, if this Python has it, the environment is given this Python's packages (a ``.pth`` file
   naming its site-packages folders, after the environment's own), checked again from inside,
   and ``make`` goes on; byol-ref itself runs from the repository (``python -m byol_ref`` in
   its root);
3. else it says what is missing, and how to get it, and ``make`` stops.

What is needed is read from pyproject.toml: the dependencies and the extra's, less matplotlib,
which only adds the plots (without it they are skipped, and said so).

    python3 scripts/use_installed.py VENV EXTRA
    python3 scripts/use_installed.py --check EXTRA    (exit 1, naming what this Python lacks)
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check_python() -> None:
    """Refuse a Python older than pyproject.toml's requires-python, before anything needs a newer one (pip
    refused to install byol-ref there, and this script then offered that Python's packages, and the tests broke)."""
    found = re.search(r'^requires-python\s*=\s*">=\s*(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if found is not None and sys.version_info[:2] < (int(found.group(1)), int(found.group(2))):
        raise SystemExit(f"byol-ref: cannot go on: it needs Python {found.group(1)}.{found.group(2)} or newer, and "
                         f"{sys.executable} is {sys.version.split()[0]}: make clean, then make again with "
                         f"PYTHON=python3.X (3.{found.group(2)} or newer)")


_check_python()

import json  # noqa: E402  (after the check: importlib.metadata is Python 3.8+)
import subprocess  # noqa: E402
import sysconfig  # noqa: E402
from importlib import metadata  # noqa: E402
OPTIONAL = {"matplotlib": "the plots are skipped"}  # distributions whose absence only skips something
PTH = "byol-ref-installed.pth"  # the file in the environment that names this Python's packages


def requirements(extra: str) -> list:
    """``[(distribution, minimum version or None), ...]`` of the dependencies and the extra's."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: read the two lists by hand (quoted strings and commas only)
        def one_list(key):
            found = re.search(rf'^{re.escape(key)}\s*=\s*\[((?:\s*"[^"]*"\s*,?)*)\s*\]', text, re.M)
            if found is None:
                raise SystemExit(f"use_installed.py: cannot read the list {key!r} of pyproject.toml on Python "
                                 f"{sys.version.split()[0]} (no tomllib): keep it to quoted strings and commas (no "
                                 "comments), or use Python 3.11+")
            return re.findall(r'"([^"]*)"', found.group(1))
        if not re.search(rf"^{re.escape(extra)}\s*=", text, re.M):
            raise SystemExit(f"use_installed.py: pyproject.toml has no extra {extra!r}")
        deps, extras = one_list("dependencies"), one_list(extra)
    else:
        project = tomllib.loads(text)["project"]
        deps, extras = project["dependencies"], project.get("optional-dependencies", {}).get(extra)
        if extras is None:
            raise SystemExit(f"use_installed.py: pyproject.toml has no extra {extra!r}")
    out = []
    for spec in [*deps, *extras]:
        name, _, _, least = re.match(r"([A-Za-z0-9_.-]+)\s*(\[[^]]*\])?\s*(>=\s*([0-9.]+))?", spec).groups()
        out.append((name, least))
    return out


def _version_tuple(version: str) -> tuple:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def check(name: str, least: str | None) -> str | None:
    """None if this Python has ``name`` (at least ``least``), else what is wrong."""
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        return f"{name} is not installed"
    if least is not None and _version_tuple(have) < _version_tuple(least):
        return f"{name} {have} is older than the {least} byol-ref needs"
    return None


def problems(extra: str) -> tuple:
    """(what this Python lacks that the extra needs, what it lacks that only skips something):
    lists of (name, least, problem)."""
    needed, optional = [], []
    for name, least in requirements(extra):
        problem = check(name, least)
        if problem is not None:
            (optional if name in OPTIONAL else needed).append((name, least, problem))
    return needed, optional


def _package_folders() -> list:
    """The folders this Python finds packages in, as it starts afresh: its site-packages, the user's,
    and those their .pth files add (which a .pth file elsewhere would not follow), less the
    standard library's."""
    found = json.loads(subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
                                      capture_output=True, text=True, check=True).stdout)
    paths = sysconfig.get_paths()
    std = {os.path.normpath(paths["stdlib"]), os.path.normpath(paths["platstdlib"])}
    return [f for f in found if f and os.path.isdir(f) and os.path.normpath(f) not in std
            and os.path.basename(os.path.normpath(f)) != "lib-dynload"]


def _env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _env_lacks(env_dir: Path, extra: str) -> str | None:
    """None if the environment's Python has what ``extra`` needs, else what it says it lacks."""
    done = subprocess.run([str(_env_python(env_dir)), __file__, "--check", extra], capture_output=True, text=True)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit status {done.returncode}")


def main(argv) -> int:
    if argv in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(argv) == 2 and argv[0] == "--check":
        needed = problems(argv[1])[0]
        if needed:
            print("; ".join(p for _, _, p in needed), file=sys.stderr)
        return 1 if needed else 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    env_dir, extra = Path(argv[0]), argv[1]
    if not _env_python(env_dir).exists():
        print(f"byol-ref: cannot go on: {env_dir} has no {_env_python(env_dir).relative_to(env_dir)}; remove it "
              "(make clean) and run make again", file=sys.stderr)
        return 1
    if _env_lacks(env_dir, extra) is None:
        print(f"byol-ref: pip could not install the '{extra}' extra, but {env_dir} already has what it needs; "
              "going on with it", file=sys.stderr)
        return 0
    print(f"byol-ref: pip could not install the '{extra}' extra (no package index reachable?); trying the "
          f"packages {sys.executable} already has", file=sys.stderr)
    needed, optional = problems(extra)
    if needed:
        wanted = " ".join(f"'{n}>={v}'" if v else n for n, v, _ in needed)
        print("byol-ref: cannot go on: " + "; ".join(p for _, _, p in needed) + f". Install what is missing "
              f"into {env_dir} ({_env_python(env_dir)} -m pip install {wanted}, with --no-index --find-links DIR "
              "for wheel files in DIR), or run make again where a package index can be reached", file=sys.stderr)
        return 1
    # Where the environment looks for packages, after its own: this Python's folders (a venv's own
    # too, which --system-site-packages would miss: it gives the base interpreter's).
    purelib = subprocess.run([str(_env_python(env_dir)), "-c", "import sysconfig; print(sysconfig.get_paths()"
                              "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / PTH).write_text("".join(f + "\n" for f in _package_folders()))
    lacks = _env_lacks(env_dir, extra)
    if lacks is not None:
        print(f"byol-ref: cannot go on: {env_dir} still lacks what {sys.executable} has ({lacks}); an older copy "
              f"in {env_dir} may come first: remove it (make clean) and run make again", file=sys.stderr)
        return 1
    have = ", ".join(f"{n} {metadata.version(n)}" for n, _ in requirements(extra) if check(n, None) is None)
    print(f"byol-ref: {env_dir} now uses the installed {have} (once a package index can be reached, make clean, "
          f"then make again, installs them into {env_dir} instead)", file=sys.stderr)
    for name, least, problem in optional:
        print(f"byol-ref: {problem}: {OPTIONAL[name]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
