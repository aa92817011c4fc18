"""The command-line settings the cross-checks share."""
from __future__ import annotations

import warnings


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
    ap.add_argument("--start-step", type=int, default=0, help="global step of the first compared step (default 0)")


def schedule_steps(ap, args) -> tuple:
    """(S, K): ``--start-step`` and ``--total-steps``, K defaulting to S + ``--steps`` where the script
    leaves it None, or the parser's error naming the flag, what it got and what it wants."""
    start = args.start_step
    if start < 0:
        ap.error(f"--start-step wants an integer >= 0, got {start}")
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
