"""The command-line settings the cross-checks share."""
from __future__ import annotations


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
