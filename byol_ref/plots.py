"""PNG plots of a run (matplotlib is optional: ``pip install 'byol-ref[plot]'``)."""
from __future__ import annotations

from pathlib import Path


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_run(history: list, report: dict | None, out_dir) -> list:
    """Draw the training curves and the probe comparison into ``out_dir``.

    Args:
        history: metric records (dicts with step, loss, lr, tau, z_std, z_std_healthy,
            z_rank, y_rank and sometimes knn), as in metrics.jsonl.
        report: the evaluation dict (``rows``) or None.
        out_dir: folder for the PNGs.

    Returns:
        The paths written (empty if matplotlib is missing).
    """
    if not have_matplotlib():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    knn = [(h["step"], h["knn"]) for h in history if "knn" in h]
    history = [h for h in history if "z_std" in h]  # step records (a step-0 record has only kNN)
    steps = [h["step"] for h in history]

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    ax = axes[0, 0]
    ax.plot(steps, [h["loss"] for h in history], color="C0")
    ax.set(title="BYOL loss (symmetrised, in [0, 8])", xlabel="step", ylabel="loss")
    ax.grid(alpha=0.3)

    ax = axes[0, 1]
    ax.plot(steps, [h["lr"] for h in history], color="C1", label="learning rate")
    ax.set(title="schedules", xlabel="step", ylabel="learning rate")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["tau"] for h in history], color="C2", label="tau (target EMA)")
    ax2.set_ylabel("tau")
    ax.legend(handles=ax.get_lines() + ax2.get_lines(), loc="center right")
    ax.grid(alpha=0.3)

    ax = axes[1, 0]
    ax.plot(steps, [h["z_std"] for h in history], color="C3", label="std of l2-normalised z")
    if history:
        ax.axhline(history[0]["z_std_healthy"], color="C3", ls="--", alpha=0.6, label="healthy 1/sqrt(P)")
    ax.set(title="collapse monitors (online projection, view 1)", xlabel="step", ylabel="normalised std")
    ax.set_ylim(bottom=0)
    ax2 = ax.twinx()
    ax2.plot(steps, [h["z_rank"] for h in history], color="C4", label="effective rank of z")
    ax2.plot(steps, [h["y_rank"] for h in history], color="C5", label="effective rank of y")
    ax2.set_ylabel("effective rank")
    ax.legend(handles=ax.get_lines() + ax2.get_lines(), loc="center right", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.3)

    ax = axes[1, 1]
    if knn:
        ax.plot([s for s, _ in knn], [100 * a for _, a in knn], marker="o", color="C0")
    ax.set(title="kNN test accuracy of the online encoder (step 0: at init)", xlabel="step",
           ylabel="accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "training.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    if report and report.get("rows"):
        rows = report["rows"]
        metrics = [("knn", "kNN (k=20)"), ("low_label", "10 labels/class"), ("linear", "full linear probe")]
        fig, ax = plt.subplots(figsize=(9, 4.5))
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            xs = [j + i * width for j in range(len(metrics))]
            vals = [100 * row[m] for m, _ in metrics]
            bars = ax.bar(xs, vals, width, label=row["name"])
            for b, v in zip(bars, vals):
                ax.text(b.get_x() + b.get_width() / 2, v + 0.3, f"{v:.1f}", ha="center", fontsize=7)
        ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(metrics))])
        ax.set_xticklabels([label for _, label in metrics])
        lo = min(100 * row[m] for row in rows for m, _ in metrics)
        ax.set_ylim(max(0, lo - 10), 100.5)
        ax.set(ylabel="test accuracy (%)", title="what BYOL learned vs baselines (test split)")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / "probes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
