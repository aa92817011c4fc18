"""The collapse lab: BYOL's classic ablations on the embedded digits, with plots and numbers.

Runs the default recipe and one change at a time, then writes
``docs/img/collapse-lab.png`` (collapse monitors over training, probe accuracies),
``docs/img/collapse-lab-similarity.png`` (each arm's projection similarities) and
``docs/collapse-lab-results.md`` (the table quoted in docs/collapse-lab.md) with its numbers in
``docs/collapse-lab-results.json``. ``--out DIR`` writes the same files under DIR instead of docs/.

    OPENBLAS_NUM_THREADS=1 python scripts/collapse_lab.py [--epochs 150] [--seed 0] [--out docs]

Each arm trains from the same seed, data order and augmentations; only the named switch
differs. Half a minute to a minute per arm on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import byol_ref as byol  # noqa: E402
from byol_ref.backend import get_backend  # noqa: E402
from byol_ref.checks import make_folder  # noqa: E402
from byol_ref.data import load_digits  # noqa: E402
from byol_ref.plots import (default_style, draw_similarity, have_matplotlib, log_axis_if_positive,  # noqa: E402
                            new_figure, similarity_colorbar)
from byol_ref.report import evaluate_features  # noqa: E402
from byol_ref.train import TrainConfig, fit  # noqa: E402

# The `make run` recipe (Makefile; tests/test_cli.py checks they agree), one switch changed per arm.
RECIPE_MODEL = dict(encoder_dim=64, projection_dim=64, projector_hidden_dim=256, predictor_dim=256)
RECIPE_TRAIN = dict(lr=6e-3)

ARMS = [
    # name, model Config changes, TrainConfig changes, what the literature reports
    ("BYOL (default)", {}, {}, "healthy: std near 1/sqrt(P)"),
    ("no predictor", {"use_predictor": False}, {},
     "BYOL Table 5b / SimSiam Table 1: collapse or partial collapse"),
    ("fixed random target (tau = 1)", {}, {"tau_base": 1.0, "tau_schedule": "constant"},
     "BYOL section 3: predicting a fixed random network lifts a linear probe from 1.4% to 18.8%"),
    ("tau = 0 (target = online)", {}, {"tau_base": 0.0, "tau_schedule": "constant"},
     "BYOL Table 5a: 0.3% top-1 without EMA; SimSiam: works with stop-gradient"),
    ("tau = 0, predictor lr x10", {}, {"tau_base": 0.0, "tau_schedule": "constant", "predictor_lr_mult": 10.0},
     "BYOL Table 21: a faster predictor recovers accuracy without EMA"),
    ("no stop-gradient (tau = 0)", {"stop_gradient": False}, {"tau_base": 0.0, "tau_schedule": "constant"},
     "SimSiam Fig. 2: immediate complete collapse"),
    ("no batch norm", {"norm": "none"}, {},
     "Richemond et al. 2020: collapse without any normalisation"),
    ("group norm, no batch statistics", {"norm": "group"}, {},
     "control for the next arm: per-sample statistics only"),
    ("group norm + weight std.", {"norm": "group", "weight_std": True}, {},
     "Richemond et al. 2020: GN + WS recovers BYOL without batch statistics (73.9% vs 74.3% with BN)"),
    ("no statistics, plain init", {"norm": "affine"}, {},
     "control for the next arm: the same network, its scales and shifts left at 1 and 0"),
    ("no statistics, data-dependent init", {"norm": "affine"}, {"data_init": True},
     "Richemond et al. 2020: BN-free with an init from the data's statistics, 65.7% (vs 0.1% with no BN)"),
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=150, help="epochs per arm (default: 150)")
    p.add_argument("--seed", type=int, default=0, help="the seed every arm trains from (default: 0)")
    p.add_argument("--out", type=os.path.expanduser, default=str(ROOT / "docs"),
                   help="where collapse-lab-results.md/.json and img/*.png go; existing files are replaced "
                        "(default: docs)")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"argument --epochs: wants an integer >= 1, got {args.epochs}")
    if args.seed < 0:
        p.error(f"argument --seed: wants an integer >= 0, got {args.seed}")
    out = Path(args.out)
    try:  # now, not after the arms have trained for minutes
        make_folder(out, "--out", replaces=[out / f"collapse-lab-results.{ext}" for ext in ("md", "json")])
        make_folder(out / "img", "--out", replaces=[out / "img" / f"{name}.png" for name in
                                                    ("collapse-lab", "collapse-lab-similarity")])
    except OSError as exc:
        p.error(f"argument --out: {exc}")
    ds = load_digits()
    results = []
    for name, model_kw, train_kw, lit in ARMS:
        t0 = time.perf_counter()
        cfg = byol.Config(**{**RECIPE_MODEL, **model_kw})
        tcfg = TrainConfig(epochs=args.epochs, seed=args.seed, **{**RECIPE_TRAIN, **train_kw})
        be = get_backend("numpy", tcfg.dtype, tcfg.seed)
        res = fit(ds, cfg, tcfg, backend=be, progress=False)
        rep = evaluate_features(res.state.online, res.dataset, res.input_norm, be, seed=args.seed,
                                return_features=True)
        rows = {r["name"]: r for r in rep["rows"]}
        results.append({
            "arm": name, "literature": lit, "history": res.history,
            "final_loss": res.history[-1]["loss"],
            "z_std_ratio": rep["collapse"]["projection_z"]["std_ratio"],
            "z_rank": rep["collapse"]["projection_z"]["effective_rank"],
            "y_rank": rep["collapse"]["encoder_y"]["effective_rank"],
            "knn_y": rows["BYOL encoder (y)"]["knn"], "low_y": rows["BYOL encoder (y)"]["low_label"],
            "linear_y": rows["BYOL encoder (y)"]["linear"],
            "knn_random": rows["random-init encoder"]["knn"], "low_random": rows["random-init encoder"]["low_label"],
            "seconds": time.perf_counter() - t0,
            "z_test": rep["features"]["BYOL projector (z)"],
        })
        print(f"{name:<30} loss {results[-1]['final_loss']:.3f}  z std ratio {results[-1]['z_std_ratio']:.2f}  "
              f"kNN {100 * results[-1]['knn_y']:.1f}  low-label {100 * results[-1]['low_y']:.1f}  "
              f"({results[-1]['seconds']:.0f} s)", flush=True)
    (out / "collapse-lab-results.json").write_text(json.dumps(
        [{k: v for k, v in r.items() if k not in ("history", "z_test")} for r in results], indent=2))
    (out / "collapse-lab-results.md").write_text(results_markdown(results, args.epochs, args.seed))
    plot_lab(results, ds.y_test, out, args.epochs, args.seed)
    return 0


def results_markdown(results: list, epochs: int, seed: int) -> str:
    """The table of docs/collapse-lab-results.md (from the runs, or the .json's records of them)."""
    lines = ["| arm | final loss | z std x sqrt(P) | eff. rank z | eff. rank y | kNN y | 10-label y | linear y |"
             " literature |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['arm']} | {r['final_loss']:.3f} | {r['z_std_ratio']:.2f} | {r['z_rank']:.1f} | "
                     f"{r['y_rank']:.1f} | {100 * r['knn_y']:.1f} | {100 * r['low_y']:.1f} | "
                     f"{100 * r['linear_y']:.1f} | {r['literature']} |")
    # Each arm's random-init encoder has the arm's architecture: those of another norm differ from the default's.
    r0 = results[0]
    base = (round(100 * r0["knn_random"], 1), round(100 * r0["low_random"], 1))
    other = [f"{r['arm']} {100 * r['knn_random']:.1f} and {100 * r['low_random']:.1f}" for r in results[1:]
             if (round(100 * r["knn_random"], 1), round(100 * r["low_random"], 1)) != base]
    lines.append(f"\nRandom-init encoder (each arm's architecture; batch norm calibrated on the data, an affine "
                 f"norm initialised from it): kNN {base[0]:.1f}, 10-label {base[1]:.1f}"
                 + (f"; of the arms whose differs: {'; '.join(other)}" if other else "")
                 + f". {epochs} epochs, seed {seed}, test split of the embedded digits.")
    return "\n".join(lines) + "\n"


def plot_lab(results: list, y_test, out: Path, epochs: int, seed: int) -> None:
    """docs/img/collapse-lab.png (the monitors over training, the probes) and
    collapse-lab-similarity.png (each arm's projection similarities) of the arms' ``results``."""
    if not have_matplotlib():
        print("matplotlib missing: no plot")
        return
    with default_style():
        _plot_lab(results, y_test, out, epochs, seed)


def _plot_lab(results: list, y_test, out: Path, epochs: int, seed: int) -> None:
    fig = new_figure(figsize=(15, 5.6), layout="constrained")
    axes = fig.subplots(1, 3)
    losses = []  # every arm's, for the loss axis's scale
    for i, r in enumerate(results):
        h = [x for x in r["history"] if "z_std" in x]
        loss = [x["loss"] for x in h]
        losses += loss
        # ten colours, then the same ones dashed: no two arms look alike; the default drawn thicker
        style = dict(color=f"C{i % 10}", ls="-" if i < 10 else "--", lw=2.2 if i == 0 else 1.3, label=r["arm"])
        axes[0].plot([x["step"] for x in h], [x["z_std"] / x["z_std_healthy"] for x in h], **style)
        axes[1].plot([x["step"] for x in h], loss, **style)
    axes[0].set(title="spread of l2-normalised z (x sqrt(P): 1 healthy, 0 collapsed)", xlabel="step")
    # On a log axis: on a linear one the collapsed arms' losses (from 0.016 down to 0.0004) lay together on its 0.
    log = log_axis_if_positive(axes[1], losses)
    axes[1].set(title="BYOL loss" + (" (log scale)" if log else ""), xlabel="step")
    # Dots on a zoomed axis (bars from an axis that starts at 85 would exaggerate the gaps), in black and grey
    # (the arms' colours belong to the curves), each arm next to its own random-init encoder's (|): the arms
    # of another norm have another random baseline.
    names = [r["arm"] for r in results]
    xs = list(range(len(results)))
    ax = axes[2]
    ax.plot([100 * r["knn_y"] for r in results], [x + 0.15 for x in xs], "o", color="k", label="kNN (encoder y)")
    ax.plot([100 * r["low_y"] for r in results], [x - 0.15 for x in xs], "s", mfc="none", color="0.45",
            label="10 labels/class")
    ax.plot([100 * r["knn_random"] for r in results], [x + 0.15 for x in xs], "|", ms=11, mew=1.5, color="k",
            label="kNN, the arm's random-init encoder")
    ax.plot([100 * r["low_random"] for r in results], [x - 0.15 for x in xs], "|", ms=11, mew=1.5, color="0.45",
            label="10 labels/class, its random-init encoder")
    ax.set_yticks(xs)
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()  # the default arm on top, as in the table
    lo = min(100 * min(r["knn_y"], r["low_y"], r["knn_random"], r["low_random"]) for r in results)
    ax.set(title=f"test accuracy (%), {epochs} epochs, seed {seed}", xlim=(lo - 1, 100))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=2)
    axes[0].grid(alpha=0.3)
    axes[1].grid(alpha=0.3, which="both" if log else "major")
    # the arms' legend, for both curve panels, below the figure: clear of the curves
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=6, fontsize=7)
    fig.savefig(out / "img" / "collapse-lab.png", dpi=110)
    print("wrote", out / "img" / "collapse-lab.png")

    # What each arm's projections look like: cosine similarity of the test z (not centred), sorted
    # by class. Healthy: same-class blocks on a cooler background; collapsed: one red square.
    fig = new_figure(figsize=(3.3 * ((len(results) + 1) // 2), 7.0), layout="constrained")
    axes = fig.subplots(2, (len(results) + 1) // 2, squeeze=False)
    for ax, r in zip(axes.ravel(), results):
        image = draw_similarity(ax, r["z_test"], y_test, centre=False)
        ax.set_title(f"{r['arm']}\nspread {r['z_std_ratio']:.2f}, eff. rank {r['z_rank']:.1f}", fontsize=9)
    for ax in axes.ravel()[len(results):]:
        ax.axis("off")
    similarity_colorbar(fig, image, axes.ravel().tolist())
    fig.savefig(out / "img" / "collapse-lab-similarity.png", dpi=90)
    print("wrote", out / "img" / "collapse-lab-similarity.png")


if __name__ == "__main__":
    sys.exit(main())
