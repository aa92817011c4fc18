"""The command-line settings the cross-checks share."""
from __future__ import annotations

import argparse
import math
import os
import warnings


def number(kind=float, lo=None, hi=None, *, lo_open=False, hi_open=False):
    """An argparse ``type``: a finite ``kind`` (int or float) within [lo, hi] (an end ``*_open``: excluded;
    None: unbounded), so that a bad value is named by the parser, not by a traceback from torch or the
    library under test once the check has begun."""
    if hi is not None:  # "in [0, 1)"
        bounds = f"in {'(' if lo_open else '['}{'-inf' if lo is None else lo}, {hi}{')' if hi_open else ']'}"
    elif lo is not None:  # ">= 0", "> 0"
        bounds = f"{'>' if lo_open else '>='} {lo}"
    else:
        bounds = "(finite)"
    want = f"{'an integer' if kind is int else 'a number'} {bounds}"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"wants {want}, got {text!r}") from None
        if (not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo))
                or (hi is not None and (value >= hi if hi_open else value > hi))):
            raise argparse.ArgumentTypeError(f"wants {want}, got {text!r}")
        return value
    return parse


def add_workdir(ap, what: str = "where to write the files") -> None:
    """``--workdir DIR``, with a leading ``~`` read as the shell reads it (it does not after ``=``, so
    ``--workdir=~/x`` made a folder named ``~``); :func:`make_workdir` makes it."""
    ap.add_argument("--workdir", type=os.path.expanduser, default=None,
                    help=f"{what} (default: a temporary folder)")


def make_workdir(ap, path):
    """``--workdir``: made now (with its parents), or the parser's error naming it, before any check runs:
    one that cannot be made or written in."""
    from byol_ref.checks import make_folder  # (the caller has put the checkout on the path)

    if path is not None:
        try:
            make_folder(path, "--workdir")
        except OSError as exc:
            ap.error(f"argument --workdir: {exc}")


def parse_dims(ap, text: str, names: str) -> tuple:
    """``--dims`` as positive ints, one for each of ``names`` ("D,H,PH,P", in the order the
    script's --help gives), or the parser's error naming the flag, what it got and what it wants."""
    want = names.split(",")
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        dims = ()
    if len(dims) != len(want) or min(dims) < 1:
        ap.error(f"--dims wants {len(want)} positive integers {names}, got {text!r}")
    return dims


def add_start_step(ap) -> None:
    """``--start-step S``: the global step of the first compared step, from a fresh optimiser state
    (the schedules read ``S + k``; the trace names stay ``step<k>``)."""
    ap.add_argument("--start-step", type=number(int, 0), default=0,
                    help="global step of the first compared step (default 0)")


def schedule_steps(ap, args) -> tuple:
    """(S, K): ``--start-step`` and ``--total-steps``, K defaulting to S + ``--steps`` where the script
    leaves it None, or the parser's error naming the flag, what it got and what it wants (an S below 0
    is refused by the flag's type, :func:`add_start_step`)."""
    start = args.start_step
    total = start + args.steps if args.total_steps is None else args.total_steps
    if total < start + args.steps:
        ap.error(f"--total-steps wants an integer >= --start-step + --steps = {start + args.steps}, got {total}")
    return start, total


def advance(scheduler, start: int) -> None:
    """Step a torch lr ``scheduler`` ``start`` times before the first compared step (``--start-step``);
    torch's warning that it steps before the optimiser is silenced, as that is on purpose."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(start):
            scheduler.step()
