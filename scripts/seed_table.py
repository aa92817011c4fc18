"""Run the `make run` recipe for several seeds and write the mean and spread of every probe.

    OPENBLAS_NUM_THREADS=1 python scripts/seed_table.py [--seeds 0 1 2] [--out docs/results-digits.md]
    OPENBLAS_NUM_THREADS=1 python scripts/seed_table.py --set bn_shards=64 --out /tmp/shards64.md --figure ""

The recipe (the flags below) must match the Makefile's `run` target; ``--set KEY=VALUE`` (repeatable)
passes a variant to ``byol-ref train --set``. With matplotlib installed it also draws the first
seed's features (docs/img/make-run-features.png, as `make run` draws them into its run directory,
at a lower resolution; ``--figure ""`` draws none). The runs go to runs/seeds/seed<N> (``--runs``),
replacing what is there. Each training uses one BLAS thread unless OPENBLAS_NUM_THREADS is set.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from byol_ref.checks import make_folder  # noqa: E402

RECIPE = ["--data", "digits", "--projection-dim", "64", "--projector-hidden-dim", "256", "--predictor-dim", "256",
          "--lr", "6e-3"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    p.add_argument("--out", type=os.path.expanduser, default=str(ROOT / "docs" / "results-digits.md"),
                   help="the Markdown table to write (default: docs/results-digits.md)")
    p.add_argument("--runs", type=os.path.expanduser, default=str(ROOT / "runs" / "seeds"),
                   help="where the run directories go, one seed<N> per seed; runs already there are replaced "
                        "(default: runs/seeds)")
    p.add_argument("--figure", type=os.path.expanduser, default=str(ROOT / "docs" / "img" / "make-run-features.png"),
                   help='the first seed\'s feature figure, "" for none (default: docs/img/make-run-features.png)')
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a variant of the recipe")
    args = p.parse_args(argv)
    # What would otherwise fail only after minutes of training (or silently double a seed's weight):
    if min(args.seeds) < 0:
        p.error(f"argument --seeds: wants integers >= 0, got {args.seeds}")
    if len(set(args.seeds)) < len(args.seeds):
        p.error(f"argument --seeds: a seed is given twice in {args.seeds}; the spread is over distinct seeds")
    # Now: the runs, then the table and the figure, are written after minutes of training.
    for flag, folder, replaces in (("--out", Path(args.out).parent, [args.out]),
                                   ("--figure", args.figure and Path(args.figure).parent, [args.figure]),
                                   ("--runs", Path(args.runs), [])):
        try:
            if folder:
                make_folder(folder, flag, replaces=replaces)
        except OSError as exc:
            p.error(f"argument {flag}: {exc}")
    variant = [a for pair in args.set for a in ("--set", pair)]
    reports = []
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # the training time in the table is measured with one BLAS thread
    for seed in args.seeds:
        out = Path(args.runs) / f"seed{seed}"
        cmd = [sys.executable, "-m", "byol_ref", "train", *RECIPE, *variant, "--seed", str(seed), "--out", str(out),
               "--overwrite", "--no-progress", "--no-plots"]
        print(" ".join(cmd[1:]), flush=True)
        status = subprocess.run(cmd, env=env, cwd=ROOT).returncode
        if status != 0:  # (byol-ref has said why, above)
            print(f"seed_table.py: the seed {seed} run stopped with status {status}; no table was written",
                  file=sys.stderr)
            return status
        reports.append(json.loads((out / "report.json").read_text()))
    names = [r["name"] for r in reports[0]["rows"]]
    lines = [f"Test accuracy (%) on the embedded digits (359 test images; one image is 0.28 points), "
             f"mean +- sd over seeds {args.seeds}; `make run` recipe: `byol-ref train {' '.join(RECIPE)}`"
             + (f", with `{' '.join(variant)}`." if variant else "."), "",
             "| features | kNN (cosine, k=20) | 10 labels/class probe | full linear probe |", "|---|---|---|---|"]
    for name in names:
        cells = []
        for key in ("knn", "low_label", "linear"):
            vals = [100 * next(r for r in rep["rows"] if r["name"] == name)[key] for rep in reports]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.1f} +- {sd:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    def spread(vals, fmt):
        return f"{statistics.mean(vals):{fmt}} +- {statistics.stdev(vals) if len(vals) > 1 else 0:{fmt}}"

    zs = [rep["collapse"]["projection_z"]["std_ratio"] for rep in reports]
    ranks = [rep["collapse"]["projection_z"]["effective_rank"] for rep in reports]
    secs = [rep.get("train_seconds", float("nan")) for rep in reports]
    lines += ["", f"Collapse monitors at the end, on the test split: std of l2-normalised z times sqrt(P) (1 healthy, "
              f"0 collapsed) {spread(zs, '.2f')}; effective rank of z {spread(ranks, '.1f')} (of at most "
              f"{reports[0]['collapse']['projection_z']['max_rank']}). Training time per run: "
              f"{statistics.mean(secs):.0f} s."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.figure:
        features_figure(Path(args.runs) / f"seed{args.seeds[0]}", Path(args.figure))
    return 0


def features_figure(run_dir: Path, path: Path) -> None:
    """Redraw a digits run's features.png (PCA and similarity of raw, random-init and BYOL features)."""
    sys.path.insert(0, str(ROOT))
    from byol_ref.backend import get_backend
    from byol_ref.data import load_digits
    from byol_ref.plots import plot_features
    from byol_ref.report import evaluate_features
    from byol_ref.train import apply_preprocessing, load_checkpoint

    state, _, tcfg, meta = load_checkpoint(run_dir / "checkpoint.npz")
    data, norm = apply_preprocessing(load_digits(), meta["preprocessing"])
    rep = evaluate_features(state.online, data, norm, get_backend("numpy", tcfg.dtype, tcfg.seed), seed=tcfg.seed,
                            return_features=True)
    written = plot_features(rep["features"], data.y_test, path.parent, dpi=90, filename=path.name)
    print(f"features figure: {written}" if written else "matplotlib missing: no features figure")


if __name__ == "__main__":
    sys.exit(main())
