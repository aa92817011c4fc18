"""What an example does when it cannot run here: it says why and exits as skipped, never as passed."""
from __future__ import annotations

import sys
from typing import NoReturn

SKIPPED = 77  # the exit status that test harnesses (automake, meson, CTest's SKIP_RETURN_CODE) read as a skip


def skip(why: str, usage: str) -> NoReturn:
    """Leave a check that cannot run here (a package or a checkout is missing).

    With ``-h``/``--help`` print ``usage`` (the example's docstring) and exit 0. Otherwise print
    ``why`` to stderr and exit 77, so that a CI step never takes a check that did not run for one
    that passed (exit 0) or one that found a difference (exit 1).
    """
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(usage)
        sys.exit(0)
    print(f"skipped: {why}", file=sys.stderr)
    sys.exit(SKIPPED)
