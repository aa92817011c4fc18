"""Mutation sweep: change one token of a module at a time and ask whether some test then fails.

    python scripts/mutation_sweep.py MODULE [MODULE ...] --tests TEST [TEST ...]
        [--functions NAME ...] [--covering] [--jobs N] [--timeout S] [--limit N] [--out FILE] [--list]

A test that cannot fail is a defect; this finds such tests, and the code no test looks at.
A *mutant* is the module with one token changed:

    + and - swapped        * and / swapped, ** made *      < <= > >= made loose or strict
    == and != swapped      += -= *= /= swapped in pairs    True and False, and and or swapped
    a number changed: 0 and 1 swapped, other integers + 1, floats doubled (0.0 made 1.0)

Left alone: the lines of a ``raise`` or an ``assert``, the condition of an ``if`` whose body only
raises (the input checks: tests/test_errors.py holds them by their messages), strings and comments,
and the star of ``*args``, ``**kw`` and a bare ``*``. A mutant that does not compile is not counted.

For each mutant the sweep writes it into a private copy of the checkout, runs ``pytest -x`` over the
given tests (``HYPOTHESIS_PROFILE=ci``: derandomized, so a verdict is repeatable) and says:

    killed    a test failed (the first one is named)
    survived  every test passed: either the change cannot alter a result (an *equivalent* mutant,
              such as doubling an eps that only guards a division by exactly zero), or no test
              looks at what it changes; each survivor needs a reason or a test
    timeout   the tests ran past --timeout: counted as found (the change made them loop or crawl),
              but worth a look

With --covering, a mutant is tried only on the tests that ran its line, fastest first: the sweep
first runs the tests once under coverage.py (5 or newer), each test's lines recorded under its name,
those of the Python processes it starts included (they find a ``sitecustomize.py`` the sweep puts in
its copy for that run only). A line run at import (module level, a class body, a default value) is
tried on every test, and so is one run while pytest collected or by no test. A
survivor of the narrowed run is only *probably* untested: a child process killed by a signal saves no
lines, and a fixture shared by several tests is recorded under the first, so try the survivors again
on every test (``--survivors FILE`` without ``--covering``) before writing a test for them.

The unchanged module must pass the tests first, or the sweep stops. Results go to --out as JSON
lines, one per mutant, and the survivors are printed at the end with their lines.

Options:
    --tests TEST ...       what pytest runs for each mutant (files, or file::test ids)
    --keyword EXPR         pytest's -k: only the tests whose names match (to leave slow ones for a second pass)
    --functions NAME ...   mutate only inside these functions (top-level or methods, by name)
    --lines A-B ...        mutate only these line ranges
    --covering             each mutant on the tests that ran its line only (needs coverage.py)
    --jobs N               mutants run at once, each in its own copy (default 2)
    --timeout S            seconds per mutant before it counts as timeout (default: 5x the clean run + 20)
    --limit N              stop after N mutants (a quick look)
    --survivors FILE       only the mutants that survived in an earlier --out FILE (to try more tests on them)
    --out FILE             JSON lines of every verdict (default: print only)
    --list                 list the mutants and run nothing

Example (the layers' forwards and backwards against their own tests; about 10 minutes on 2 cores):

    python scripts/mutation_sweep.py byol_ref/layers.py --tests tests/test_layers.py tests/test_gradcheck.py
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tokenize
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import NamedTuple

ROOT = pathlib.Path(__file__).resolve().parents[1]
COPIED = ("byol_ref", "tests", "docs", "scripts", "benchmarks", "examples", "pyproject.toml", "README.md",
          "Makefile", "LICENSE")

OPS = {"+": "-", "-": "+", "*": "/", "/": "*", "**": "*", "//": "/", "<": "<=", "<=": "<", ">": ">=",
       ">=": ">", "==": "!=", "!=": "==", "+=": "-=", "-=": "+=", "*=": "/=", "/=": "*="}
NAMES = {"True": "False", "False": "True", "and": "or", "or": "and"}
STAR_CONTEXT = {"(", ",", "lambda", "[", "{"}  # (a star after these is *args, **kw, a bare * or an unpacking)


class Mutant(NamedTuple):
    path: str    # relative to the checkout
    line: int
    col: int
    old: str
    new: str
    source: str  # the whole mutated module


def _parse_ranges(specs):
    out = []
    for spec in specs or ():
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", spec)
        if not m:
            raise argparse.ArgumentTypeError(f"argument --lines: wants A-B or A, got {spec!r}")
        a = int(m.group(1))
        out.append((a, int(m.group(2) or a)))
    return out


def _left_alone(tree: ast.AST) -> set:
    """Lines of raise and assert statements, and of the conditions of ifs that only raise."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Raise, ast.Assert)):
            lines.update(range(node.lineno, node.end_lineno + 1))
        elif isinstance(node, ast.If) and all(isinstance(s, ast.Raise) for s in node.body) and not node.orelse:
            lines.update(range(node.test.lineno, node.test.end_lineno + 1))
    return lines


def _function_lines(tree: ast.AST, names) -> set:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names:
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def _number(text: str):
    """The mutated literal, or None for one left alone (complex, or one it cannot read)."""
    plain = text.replace("_", "")
    if plain[-1:] in "jJ":
        return None
    try:
        value = int(plain, 0)
    except ValueError:
        try:
            value = float(plain)
        except ValueError:
            return None
        return "1.0" if value == 0 else repr(value * 2)
    return {0: "1", 1: "0"}.get(value, str(value + 1))


def mutants(path: pathlib.Path, functions=None, ranges=None):
    """Every mutant of the module at ``path``, in the order of its tokens."""
    source = path.read_text()
    tree = ast.parse(source)
    skip = _left_alone(tree)
    only = _function_lines(tree, set(functions)) if functions else None
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for ln in lines:
        offsets.append(offsets[-1] + len(ln))
    rel = os.path.relpath(path.resolve(), ROOT.resolve())
    previous = None
    fstring_depth = 0
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        name = tokenize.tok_name[tok.type]
        if name == "FSTRING_START":  # (Python 3.12 splits f-strings into tokens: leave their insides alone)
            fstring_depth += 1
        elif name == "FSTRING_END":
            fstring_depth -= 1
        if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            continue
        prev, previous = previous, tok.string
        line, col = tok.start
        if fstring_depth or line in skip or (only is not None and line not in only):
            continue
        if ranges and not any(a <= line <= b for a, b in ranges):
            continue
        new = None
        if tok.type == tokenize.OP and tok.string in OPS:
            if tok.string in ("*", "**") and (prev in STAR_CONTEXT or prev is None):
                continue
            new = OPS[tok.string]
        elif tok.type == tokenize.NAME and tok.string in NAMES:
            new = NAMES[tok.string]
        elif tok.type == tokenize.NUMBER:
            new = _number(tok.string)
        if new is None:
            continue
        at = offsets[line - 1] + col
        mutated = source[:at] + new + source[at + len(tok.string):]
        try:
            compile(mutated, rel, "exec")
        except SyntaxError:
            continue
        yield Mutant(rel, line, col, tok.string, new, mutated)


def _statement_lines(tree: ast.AST, line: int) -> set:
    """The lines of the innermost statement holding ``line``, its inner statements' lines left out: a whole
    simple statement, or the header of an if, for, while, with, def (decorators included) or class."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            if start <= line <= node.end_lineno and (best is None or start >= best[0]):
                best = (start, node)
    if best is None:
        return {line}
    start, node = best
    lines = set(range(start, node.end_lineno + 1))
    for inner in ast.walk(node):
        if inner is not node and isinstance(inner, ast.stmt):
            lines -= set(range(inner.lineno, inner.end_lineno + 1))
    return lines | {line}


_SITECUSTOMIZE = '''"""Put here by scripts/mutation_sweep.py --covering for its coverage run, and removed after it."""
import os

if os.environ.get("COVERAGE_PROCESS_START"):
    try:
        import coverage
    except ImportError:  # (a test's child that hides coverage.py, to test its absence: it goes unmeasured)
        coverage = None
    if coverage is not None:
        coverage.process_startup()  # (a child process: its lines go under the name of the test that started it)
'''

_PLUGIN = '''"""Put here by scripts/mutation_sweep.py --covering: each test's lines go under its name; each is timed."""
import json
import os
import time

import coverage
import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cov = coverage.Coverage.current()
    os.environ["BYOL_SWEEP_TEST"] = item.nodeid  # (the child processes' coverage configuration reads it)
    if cov is not None:
        cov.switch_context(item.nodeid)
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    os.environ["BYOL_SWEEP_TEST"] = ""
    if cov is not None:
        cov.switch_context("")
    with open(os.environ["BYOL_SWEEP_TIMES"], "a") as f:
        f.write(json.dumps([item.nodeid, seconds]) + "\\n")
'''

_RCFILE = """[run]
parallel = true
data_file = {data}/.coverage
include =
    {include}
context = ${{BYOL_SWEEP_TEST}}
disable_warnings = no-data-collected, module-not-imported, module-not-measured, no-ctracer
"""


def _map_tests(copy: pathlib.Path, paths, tests, keyword, scratch: pathlib.Path):
    """Run the tests once under coverage: (verdict, failed, seconds, {path: {line: tests}}, {test: seconds})."""
    data = scratch / "coverage-data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)  # (a test may start a child as another user: its lines are written here too)
    rcfile = scratch / "coveragerc"
    rcfile.write_text(_RCFILE.format(data=data, include="\n    ".join(str(copy / p) for p in paths)))
    times = scratch / "times.jsonl"
    added = [copy / "sitecustomize.py", copy / "_sweep_contexts.py"]
    added[0].write_text(_SITECUSTOMIZE)
    added[1].write_text(_PLUGIN)
    try:
        verdict, failed, seconds = _run_tests(copy, tests, None, keyword, plugin="_sweep_contexts",
                                              env={"COVERAGE_PROCESS_START": str(rcfile), "BYOL_SWEEP_TEST": "",
                                                   "BYOL_SWEEP_TIMES": str(times)})
    finally:
        for f in added:
            f.unlink()
    if verdict != "survived":
        return verdict, failed, seconds, {}, {}
    import coverage  # (only here: the sweep without --covering does not need it)

    cov = coverage.Coverage(config_file=str(rcfile))
    cov.combine([str(data)])
    measured = cov.get_data()
    by_line = {p: {line: set(names) for line, names in measured.contexts_by_lineno(str((copy / p).resolve())).items()}
               for p in paths}
    timed = {}
    for row in times.read_text().splitlines():
        name, s = json.loads(row)
        timed[name] = timed.get(name, 0.0) + s
    return verdict, failed, seconds, by_line, timed


def _runs_at_import(tree: ast.AST, line: int) -> bool:
    """Whether the line runs when the module is imported: one outside every function's body (a module
    or class statement, a def's decorators and default values)."""
    return not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                   and _body_start(node) <= line <= node.end_lineno for node in ast.walk(tree))


def _body_start(node) -> int:
    return node.body.lineno if isinstance(node, ast.Lambda) else node.body[0].lineno


def _chosen_tests(by_line: dict, timed: dict, tree: ast.AST, line: int):
    """The tests that ran the mutant's statement, fastest first; None for every test (a line run at
    import, or by no test). (The first test to import a module is the only one recorded for its
    module-level lines: the others ran them too, before they began.)"""
    if _runs_at_import(tree, line):
        return None
    names = set()
    for ln in _statement_lines(tree, line):
        names |= by_line.get(ln, set())
    if not names or "" in names or not names <= timed.keys():
        return None
    return sorted(names, key=lambda n: (timed[n], n))


def _copy_checkout(dest: pathlib.Path) -> None:
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
        elif src.exists():
            shutil.copy2(src, dest / name)


def _run_tests(copy: pathlib.Path, tests, timeout, keyword=None, plugin=None, env=None):
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1",
           "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci"),
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **(env or {})}
    shutil.rmtree(copy / ".hypothesis", ignore_errors=True)  # (no example saved by one mutant replays for the next)
    start = time.perf_counter()
    try:
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not gpu",
                   *(["-p", plugin] if plugin else []), *(["-k", keyword] if keyword else []), *tests]
        proc = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", "", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode == 0:
        return "survived", "", seconds
    return "killed", _first_failed(proc.stdout) or f"pytest exit {proc.returncode}", seconds


def _first_failed(stdout: str) -> str | None:
    """The id of the first test pytest's summary names as failed or in error: up to the " - " before its
    message, as a parametrized id may hold spaces ("test_x[a b]"), or the line's end where none follows."""
    failed = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", stdout, re.M)
    return failed.group(1) if failed else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     usage="%(prog)s MODULE [MODULE ...] --tests TEST [TEST ...] [options]")
    parser.add_argument("modules", nargs="+", type=pathlib.Path)
    parser.add_argument("--tests", nargs="+", required=True)
    parser.add_argument("--keyword")
    parser.add_argument("--functions", nargs="+")
    parser.add_argument("--lines", nargs="+")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out", type=pathlib.Path)
    parser.add_argument("--survivors", type=pathlib.Path)
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--covering", action="store_true")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"argument --jobs: wants an integer >= 1, got {args.jobs}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"argument --limit: wants an integer >= 1, got {args.limit}")
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"argument --timeout: wants seconds > 0, got {args.timeout}")
    try:
        ranges = _parse_ranges(args.lines)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    for module in args.modules:
        if module.suffix != ".py" or not module.is_file() or ROOT not in module.resolve().parents:
            parser.error(f"argument MODULE: wants a .py file of this checkout, got {str(module)!r}")

    todo = [m for module in args.modules for m in mutants(module, args.functions, ranges)]
    if args.survivors:
        try:
            rows = [json.loads(line) for line in args.survivors.read_text().splitlines() if line.strip()]
            keep = {(r["path"], r["line"], r["col"], r["new"]) for r in rows if r["verdict"] == "survived"}
        except (OSError, ValueError, KeyError, TypeError) as e:
            parser.error(f"argument --survivors: wants the JSON lines of an earlier --out, got {str(args.survivors)!r} "
                         f"({type(e).__name__}: {e})")
        todo = [m for m in todo if (m.path, m.line, m.col, m.new) in keep]
    todo = todo[:args.limit] if args.limit else todo
    if args.list:
        for m in todo:
            print(f"{m.path}:{m.line}:{m.col}  {m.old} -> {m.new}")
        print(f"{len(todo)} mutants")
        return 0
    if not todo:
        print("no mutants: nothing to mutate in the lines chosen", file=sys.stderr)
        return 1

    if args.covering:
        try:
            import coverage  # noqa: F401
        except ImportError:
            print("mutation_sweep.py --covering needs coverage.py: python -m pip install coverage", file=sys.stderr)
            return 1

    with tempfile.TemporaryDirectory(prefix="byol-mutants-") as scratch:
        copies = queue.Queue()
        for j in range(args.jobs):
            copy = pathlib.Path(scratch) / f"copy{j}"
            copy.mkdir()
            _copy_checkout(copy)
            copies.put(copy)
        first = copies.get()
        if args.covering:
            paths = sorted({m.path for m in todo})
            verdict, failed, clean_s, by_line, timed = _map_tests(first, paths, args.tests, args.keyword,
                                                                   pathlib.Path(scratch))
        else:
            verdict, failed, clean_s = _run_tests(first, args.tests, None, args.keyword)
        copies.put(first)
        if verdict != "survived":  # (before the tests are chosen: a failed coverage run measured no lines)
            print(f"the unchanged checkout fails the tests{' under coverage' if args.covering else ''} ({failed}): "
                  f"fix that first", file=sys.stderr)
            return 1
        if args.covering:
            trees = {p: ast.parse((ROOT / p).read_text()) for p in paths}
            chosen = {m: _chosen_tests(by_line[m.path], timed, trees[m.path], m.line) for m in todo}
        else:
            chosen = dict.fromkeys(todo)
        timeout = args.timeout or 5 * clean_s + 20
        print(f"{len(todo)} mutants; the clean run took {clean_s:.1f} s; timeout {timeout:.0f} s", flush=True)
        if args.covering:
            narrowed = [len(c) for c in chosen.values() if c is not None]
            print(f"--covering: {len(narrowed)} of the {len(todo)} mutants tried on the tests that ran their lines "
                  f"(median {sorted(narrowed)[len(narrowed) // 2] if narrowed else 0} of {len(timed)} tests), "
                  f"the others on every test", flush=True)

        def one(m: Mutant) -> dict:
            copy = copies.get()  # (a copy no other job is using)
            target = copy / m.path
            original = target.read_text()
            try:
                target.write_text(m.source)
                tests = chosen[m]
                verdict, failed, seconds = _run_tests(copy, tests or args.tests, timeout,
                                                      None if tests else args.keyword)
            finally:
                target.write_text(original)
                copies.put(copy)
            return {"path": m.path, "line": m.line, "col": m.col, "old": m.old, "new": m.new, "verdict": verdict,
                    "failed": failed, "seconds": round(seconds, 2), "tests": len(chosen[m]) if chosen[m] else "all",
                    "text": m.source.splitlines()[m.line - 1].strip()}

        results = []
        with (open(args.out, "w") if args.out else contextlib.nullcontext()) as out, \
                ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for done, future in enumerate(as_completed([pool.submit(one, m) for m in todo]), 1):
                row = future.result()  # (a job's exception surfaces here, not in a thread nobody reads)
                results.append(row)
                print(f"[{done}/{len(todo)}] {row['path']}:{row['line']} {row['old']!r} -> {row['new']!r}: "
                      f"{row['verdict']}{' (' + row['failed'] + ')' if row['failed'] else ''} {row['seconds']:.1f} s",
                      flush=True)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()

    results.sort(key=lambda r: (r["path"], r["line"], r["col"]))
    counts = {v: sum(r["verdict"] == v for r in results) for v in ("killed", "survived", "timeout")}
    print(f"\n{counts['killed']} killed, {counts['survived']} survived, {counts['timeout']} timeout "
          f"of {len(results)}")
    for r in results:
        if r["verdict"] == "survived":
            print(f"  survived {r['path']}:{r['line']}  {r['old']} -> {r['new']}   {r['text']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
