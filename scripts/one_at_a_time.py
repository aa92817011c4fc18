"""Run a command while holding a lock file, one process at a time: the Makefile's steps that make
and fill the virtual environment.

    python scripts/one_at_a_time.py LOCKFILE COMMAND [ARG ...]

`make run` and `make test` started together in a fresh clone (two terminals, or a script that
runs both) made one .venv at once: the second found .venv/bin/python before the first had pip in
it, took that for "no package index reachable" and filled the venv from the system's packages,
without matplotlib. Each step now waits for the other make's, and then finds its work done.

The lock is the kernel's (``flock``), so a make killed outright leaves none behind; where there is
no flock (Windows), the command runs at once, as it did before. Exits with the command's status.
"""
from __future__ import annotations

import os
import subprocess
import sys


def main(argv: list) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if len(argv) < 2:
        print("usage: one_at_a_time.py LOCKFILE COMMAND [ARG ...]", file=sys.stderr)
        return 2
    lock, command = argv[0], argv[1:]
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)  # (VENV=/new/folder/.venv: venv makes it)
    with open(lock, "a") as held:  # (kept, not removed: a make waiting on it holds this very file)
        try:
            import fcntl
        except ImportError:  # (Windows)
            return subprocess.call(command)
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"byol-ref: waiting for another make, which is setting up the environment ({lock})",
                  file=sys.stderr, flush=True)
            fcntl.flock(held, fcntl.LOCK_EX)
        except OSError:  # (a file system without locks: as before there was one)
            pass
        return subprocess.call(command)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # (Ctrl-C while it waits, or in the command: make says it stopped; no traceback)
        sys.exit(130)
