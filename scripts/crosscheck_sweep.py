"""Run the cross-checks of examples/ at random settings: every run must agree with the other code.

    python scripts/crosscheck_sweep.py [--runs 20] [--seed 0] [--only lightly,official]
        [--byol-src DIR] [--solo-src DIR]

Each run draws one cross-check and its settings (steps, schedule length, warm-up, start step, learning
rate, weight decay, momentum, LARS eta, tau, widths, batch, seed) from ``--seed``, runs it with this
Python and prints ``agree`` or ``DIFFER`` with the command line, so any run can be repeated by hand;
a run that differs also prints the end of its report. A cross-check whose package or checkout is
missing here exits 77 and is counted as skipped, never as agreeing. Exit status: 0 when every run
that ran agreed, 1 when one differed, 77 when none could run.

The examples' defaults are what the test suite runs; the sweep reaches what they do not. What it
found when it was written (2026-12-01): no difference in byol-ref's arithmetic over some 230 runs, and
that the rounding noise Adam turns into steps of a bias in front of batch norm
(``crosscheck_byol_pytorch.py``) reaches 1e-5 x lr a step, where the docs had said 3e-8 x lr: that
check's ``--atol`` is drawn with room to spare, 1e-4 x lr x steps (docs/verifying.md section 5), which
still leaves a 1% change of the learning rate 100 times above it. Rerun on 2026-12-03 (torch 2.14.1,
byol-pytorch 0.9.1, lightly 1.6.0, 64 runs of the three): one ``crosscheck_ddp.py`` run, with shards
of 2 rows at lr 0.5, differed by 1.8e-10 in a running mean at step 4, where byol-ref itself moves
2e-10 when its initial weights move by 1 part in 1e15 (a batch norm's variance had fallen below its
eps); such runs take ``--atol 1e-9``, and a DIFFER prints that rounding measure.

A development tool: it needs what the examples need (torch; lightly, byol-pytorch; the official BYOL
and solo-learn checkouts through ``--byol-src`` and ``--solo-src``, or BYOL_OFFICIAL_SRC and
SOLO_LEARN_SRC); byol-ref does not.
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from _args import number  # noqa: E402  (examples/_args.py: the cross-checks' own flag types)
CHECKS = ("official", "lightly", "solo-learn", "byol-pytorch", "ddp")
SKIPPED = 77  # examples/_skip.py


def _dims(rng: random.Random, n: int) -> str:
    return ",".join(str(rng.randint(2, 9)) for _ in range(n))


def draw(rng: random.Random, check: str, args) -> list:
    """The command line of one run of ``check`` at settings drawn from ``rng``."""
    steps = rng.randint(1, 6)
    start = rng.randint(0, 3)
    total = start + steps + rng.randint(0, 6)
    warmup = rng.randint(0, min(total - start, 4))
    common = ["--steps", str(steps), "--seed", str(rng.randint(0, 1000))]
    schedule = ["--total-steps", str(total), "--start-step", str(start), "--warmup", str(warmup),
                "--momentum", str(rng.choice([0.0, 0.5, 0.9])), "--batch", str(rng.randint(2, 9))]
    if check == "official":
        return ["crosscheck_official.py", "--byol-src", args.byol_src or "", *common, *schedule,
                "--lr", str(rng.choice([0.2, 5.0])), "--weight-decay", str(rng.choice([0.0, 1.5e-6, 1e-2])),
                "--eta", str(rng.choice([1e-3, 0.02])), "--tau-base", str(rng.choice([0.9, 0.996, 1.0])),
                "--dims", _dims(rng, 5)]
    if check == "lightly":
        return ["crosscheck_lightly.py", *common, *schedule, "--lr", str(rng.choice([0.01, 0.45, 3.0])),
                "--weight-decay", str(rng.choice([0.0, 1e-6, 1e-2])), "--eta", str(rng.choice([1e-3, 0.02])),
                "--tau-base", str(rng.choice([0.9, 0.99, 1.0])), "--dims", _dims(rng, 4)]
    if check == "solo-learn":
        return ["crosscheck_solo_learn.py", "--solo-src", args.solo_src or "", *common, *schedule,
                "--lr", str(rng.choice([0.01, 1.0, 5.0])), "--weight-decay", str(rng.choice([0.0, 1e-5, 1e-2])),
                "--eta", str(rng.choice([1e-3, 0.02])), "--tau-base", str(rng.choice([0.9, 0.99, 1.0])),
                "--dims", _dims(rng, 4)]
    if check == "byol-pytorch":  # Adam: a bias in front of batch norm steps on rounding noise (module docstring)
        lr = rng.choice([3e-4, 1e-2])
        return ["crosscheck_byol_pytorch.py", *common, "--lr", str(lr), "--batch", str(rng.randint(2, 9)),
                "--tau-base", str(rng.choice([0.9, 0.99, 1.0])), "--dims", f"{rng.randint(2, 5)},{_dims(rng, 3)}",
                "--atol", f"{max(1e-10, 1e-4 * lr * steps):g}"]
    run = ["crosscheck_ddp.py", *common, "--shards", str(rng.randint(2, 3)), "--rows", str(rng.randint(2, 4)),
           "--views", rng.choice(["concat", "separate", "both"]), "--lr", str(rng.choice([0.01, 0.5])),
           "--momentum", str(rng.choice([0.0, 0.9])), "--tau-base", str(rng.choice([0.9, 0.99])),
           "--dims", _dims(rng, 5)]
    # (2 rows a shard at lr 0.5: a batch norm's variance can fall below its eps, amplifying rounding; docstring)
    hard = run[run.index("--rows") + 1] == "2" and run[run.index("--lr") + 1] == "0.5"
    return [*run, "--atol", "1e-9" if hard else "1e-10"]


def _checks(text: str) -> list:
    names = text.split(",")
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown check(s) {unknown}; choose from {list(CHECKS)}, comma-separated")
    return names


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=number(int, 1), default=20, help="how many runs (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    ap.add_argument("--only", type=_checks, default=list(CHECKS), help=f"some of {','.join(CHECKS)} (default: all)")
    ap.add_argument("--byol-src", default=os.environ.get("BYOL_OFFICIAL_SRC"),
                    help="checkout of google-deepmind/deepmind-research (default: $BYOL_OFFICIAL_SRC)")
    ap.add_argument("--solo-src", default=os.environ.get("SOLO_LEARN_SRC"),
                    help="checkout of vturrisi/solo-learn (default: $SOLO_LEARN_SRC)")
    args = ap.parse_args(argv)
    rng = random.Random(args.seed)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    counts = {"agree": 0, "DIFFER": 0, "skipped": 0}
    for i in range(args.runs):
        cmd = draw(rng, rng.choice(args.only), args)
        proc = subprocess.run([sys.executable, str(ROOT / "examples" / cmd[0]), *cmd[1:]], capture_output=True,
                              text=True, env=env, cwd=ROOT)
        verdict = {0: "agree", SKIPPED: "skipped"}.get(proc.returncode, "DIFFER")
        counts[verdict] += 1
        print(f"[{i + 1}/{args.runs}] {verdict:<7} python examples/{' '.join(cmd)}", flush=True)
        if verdict == "DIFFER":
            print("    " + (proc.stdout + proc.stderr)[-3000:].replace("\n", "\n    "), flush=True)
    print(f"crosscheck_sweep: {counts['agree']} agree, {counts['DIFFER']} differ, {counts['skipped']} skipped "
          f"(package or checkout missing) of {args.runs} runs")
    if counts["DIFFER"]:
        return 1
    return SKIPPED if counts["skipped"] == args.runs else 0


if __name__ == "__main__":
    sys.exit(main())
