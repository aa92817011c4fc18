"""`make run` and `make test` on a machine that cannot reach a package index.

The Makefile first installs byol-ref with an extra (`plot`, `test`) into its virtual environment.
When that fails (no network, no index), it runs this script with the Python that made the
environment: if that Python already has what the extra needs, the environment is made again on
top of it (``--system-site-packages``) and ``make`` goes on; byol-ref itself runs from the
repository (``python -m byol_ref`` in its root). If something is missing, it says what, and how to
get it. What is needed is read from pyproject.toml: the dependencies and the extra's, less
matplotlib, which only adds the plots (without it they are skipped, and said so).

    python3 scripts/use_installed.py VENV EXTRA
"""
from __future__ import annotations

import re
import sys
import venv
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {"matplotlib": "the plots are skipped"}  # distributions whose absence only skips something


def requirements(extra: str) -> list:
    """``[(distribution, minimum version or None), ...]`` of the dependencies and the extra's."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib
    except ImportError:  # Python 3.10: the two one-line lists this file has
        def one_list(key):
            found = re.search(rf"^{re.escape(key)}\s*=\s*\[(.*?)\]", text, re.M)
            return re.findall(r'"([^"]+)"', found.group(1)) if found else None
        deps, extras = one_list("dependencies"), one_list(extra)
    else:
        project = tomllib.loads(text)["project"]
        deps, extras = project["dependencies"], project.get("optional-dependencies", {}).get(extra)
    if extras is None:
        raise SystemExit(f"use_installed.py: pyproject.toml has no extra {extra!r}")
    out = []
    for spec in [*deps, *extras]:
        name, _, least = re.match(r"([A-Za-z0-9_.-]+)\s*(>=\s*([0-9.]+))?", spec).groups()
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


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    env_dir, extra = Path(argv[0]), argv[1]
    print(f"byol-ref: pip could not install the '{extra}' extra (no package index reachable?); trying the "
          f"packages {sys.executable} already has", file=sys.stderr)
    missing, skipped = [], []
    for name, least in requirements(extra):
        problem = check(name, least)
        if problem is not None:
            (skipped if name in OPTIONAL else missing).append((name, least, problem))
    if missing:
        wanted = " ".join(f"'{n}>={v}'" if v else n for n, v, _ in missing)
        print("byol-ref: cannot go on: " + "; ".join(p for _, _, p in missing) + f". Install what is missing "
              f"({sys.executable} -m pip install {wanted}, from wheel files or a local index), or run make again "
              "where a package index can be reached", file=sys.stderr)
        return 1
    venv.EnvBuilder(system_site_packages=True, clear=True, with_pip=True).create(env_dir)
    have = ", ".join(f"{n} {metadata.version(n)}" for n, _ in requirements(extra) if check(n, None) is None)
    print(f"byol-ref: {env_dir} now uses the installed {have}", file=sys.stderr)
    for name, least, problem in skipped:
        print(f"byol-ref: {problem}: {OPTIONAL[name]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
