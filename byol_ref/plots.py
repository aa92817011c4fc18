"""PNG plots of a run (matplotlib is optional: ``pip install "matplotlib>=3.8.4"``, or the ``plot`` extra)."""
from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path

from .backend import host as np
from .checkpoint import atomic_write
from .checks import make_folder
from .version import release


# The first matplotlib built for NumPy 2 (byol-ref's floor): an older one fails to import beside it, after NumPy
# prints a traceback. pyproject.toml's plot and test extras ask for it too.
MATPLOTLIB_LEAST = "3.8.4"


def matplotlib_problem() -> str | None:
    """Why no plot can be drawn here, or None where matplotlib (the optional ``plot`` extra) is
    there to draw them: it is not installed, it is older than ``MATPLOTLIB_LEAST`` (not imported,
    so NumPy prints nothing), or it fails to import."""
    from importlib import metadata

    try:
        version = metadata.version("matplotlib")
    except metadata.PackageNotFoundError:
        version = None  # (not installed; or a source tree on the path, which imports without it)
    if version is not None and release(version) < release(MATPLOTLIB_LEAST):
        return f"matplotlib {version} is older than {MATPLOTLIB_LEAST}, the first that runs with NumPy 2"
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return "matplotlib is not installed" if version is None else f"matplotlib {version} does not import ({exc})"
    return None


def have_matplotlib() -> bool:
    """Whether matplotlib can draw here (:func:`matplotlib_problem` says why not): without it no
    plot is drawn."""
    return matplotlib_problem() is None


@contextlib.contextmanager
def default_style():
    """Draw with matplotlib's own defaults, not the user's matplotlibrc: a ``text.usetex: True``
    there, common among those who write papers, made every plot need LaTeX and the report fail
    without one; a style there changed what the figures show. (The style leaves the backend alone.)
    One change to them: panel titles at 10 points, not 12, which the longer ones need to fit."""
    import matplotlib.style

    with matplotlib.style.context(["default", {"axes.titlesize": 10}]):
        yield


def _in_default_style(draw):
    """``draw`` run within :func:`default_style`, where matplotlib is there to draw."""
    @functools.wraps(draw)
    def wrapped(*args, **kwargs):
        if not have_matplotlib():
            return draw(*args, **kwargs)  # (which draws nothing, and says so in its return value)
        with default_style():
            return draw(*args, **kwargs)
    return wrapped


def new_figure(**kwargs):
    """A matplotlib Figure of its own, outside pyplot (``Figure(**kwargs)``), which ``savefig`` writes
    as PNG with Agg whatever backend is in use. Drawing through pyplot had to switch the process to
    Agg for good (a notebook's inline plots, a script's ``plt.show()``, then showed nothing) and to
    close each figure (pyplot keeps every one it made, and warns past 20)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def colour_map(name: str, steps: int | None = None):
    """The registered colour map ``name`` (``steps`` colours of it), as ``pyplot.get_cmap`` gives it."""
    import matplotlib

    cmap = matplotlib.colormaps[name]
    return cmap if steps is None else cmap.resampled(steps)


@_in_default_style
def plot_run(history: list, report: dict | None, out_dir, *, loss_label: str | None = None,
             n_test: int | None = None) -> list:
    """Draw the training curves (training.png, when there are any) and the probe comparison
    (probes.png, when ``report`` has rows) into ``out_dir``.

    Args:
        history: metric records (dicts with step, loss, lr, tau, z_std, z_std_healthy,
            z_rank, y_rank and sometimes knn), as in metrics.jsonl.
        report: the evaluation dict (``rows``) or None.
        out_dir: folder for the PNGs.
        loss_label: what the logged loss is, for the title (``model.loss_range``); default: the
            official symmetrised loss, in [0, 8].
        n_test: the test samples the kNN monitor is scored on, to say what one of them is worth.

    Returns:
        The paths written (empty if matplotlib is missing).
    """
    if not have_matplotlib():
        return []
    out = Path(out_dir)
    make_folder(out, "out_dir")
    written = []
    knn = [(h["step"], h["knn"]) for h in history if "knn" in h]
    history = [h for h in history if "z_std" in h]  # step records (a step-0 record has only kNN)
    steps = [h["step"] for h in history]

    if history or knn:  # a checkpoint evaluated alone has no training curves: no training.png
        written.append(_plot_training(steps, history, knn, out / "training.png",
                                      loss_label or "||n(p) - n(z)||^2, both directions summed, in [0, 8]", n_test))

    if report and report.get("rows"):
        rows = report["rows"]
        probe = report.get("probe", {})
        metrics = [("knn", f"kNN (k={probe.get('k', 20)})"),
                   ("low_label", f"{probe.get('labels_per_class', 10)} labels/class"), ("linear", "full linear probe")]
        # Dots, not bars: the axis is zoomed onto the accuracies, where bar lengths would exaggerate the gaps.
        # The low-label probe's spread over its draws is an error bar; the legend sits outside the axes.
        fig = new_figure(figsize=(10, 4.5), layout="constrained")
        ax = fig.subplots()
        width = 0.8 / len(rows)
        for i, row in enumerate(rows):
            xs = [j - 0.4 + (i + 0.5) * width for j in range(len(metrics))]
            vals = [100 * row[m] for m, _ in metrics]
            errs = [100 * row.get(m + "_std", 0.0) for m, _ in metrics]
            ax.errorbar(xs, vals, yerr=errs, fmt="o", ms=7, capsize=3, label=row["name"], color=f"C{i}")
            for x, v, e in zip(xs, vals, errs):
                ax.annotate(f"{v:.1f}", (x, v + e), xytext=(0, 4), textcoords="offset points", ha="center",
                            fontsize=7)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels([label for _, label in metrics])
        ax.set_xlim(-0.5, len(metrics) - 0.5)
        lo = min(100 * (row[m] - row.get(m + "_std", 0.0)) for row in rows for m, _ in metrics)
        ax.set_ylim(max(0, lo - 3), 102)
        ax.set(ylabel="test accuracy (%)", title="what BYOL learned vs baselines (test split; low-label: mean +- sd "
                                                 "over its draws)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(axis="y", alpha=0.3)
        path = out / "probes.png"
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
        written.append(path)
    return written


def _moving_mean(values, window: int):
    """The mean of each run of ``window`` consecutive ``values``: entry i is the mean of
    values[i : i + window], ``len(values) - window + 1`` entries (drawn at the middle of each run, a
    centred moving average)."""
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=float)]))
    return (sums[window:] - sums[:-window]) / window


def _smoothing_window(records: int) -> int:
    """Records averaged by the loss panel's moving mean: an odd count near 2% of them (1, no
    smoothing, up to 50 records; 61 for the 3,000 records of a 30,000-step run)."""
    return 2 * round(records / 100) + 1


def log_axis_if_positive(ax, values) -> bool:
    """Put ``ax``'s y-axis on a log scale where every one of ``values`` is positive, its ticks labelled
    as matplotlib's own would be but in plain numbers (0.3 and 2, not 3 x 10^-1 and 2 x 10^0); say
    whether it did (a negative value, a 0 or no value at all leaves the axis linear)."""
    from matplotlib.ticker import LogFormatter

    class Plain(LogFormatter):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""

        def set_locs(self, locs=None):
            # Which minor ticks are named: matplotlib 3.11 names some (2, 3, 4, 6) while at most one decade tick
            # is in view, and only the decades once two are. Before 3.11 it named only the decades once the view
            # spanned more than one decade, however few were in it: a loss from 0.27 to 3.8 read "1" alone.
            # Here the rule of 3.11 on every version: the subset's threshold is raised past the view's span
            # while at most one decade tick is in it.
            self.minor_thresholds = (1, 0.4)
            lo, hi = sorted(self.axis.get_view_interval()) if self.axis is not None else (0, 0)
            if lo > 0 and math.isfinite(hi):
                decade_ticks = math.floor(math.log10(hi)) - math.floor(math.nextafter(math.log10(lo), -math.inf))
                if decade_ticks <= 1:
                    self.minor_thresholds = (math.log10(hi / lo) + 1, 0.4)
            super().set_locs(locs)

    if not len(values) or min(values) <= 0:
        return False
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(Plain())
    ax.yaxis.set_minor_formatter(Plain(labelOnlyBase=False))
    return True


def _plot_training(steps, history, knn, path, loss_label, n_test=None):
    """training.png: the loss, the schedules and the kNN monitor above, the two collapse monitors
    (the spread and the effective rank of the features) below, over the steps."""
    fig = new_figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplot_mosaic([["loss"] * 2 + ["schedules"] * 2 + ["knn"] * 2, ["spread"] * 3 + ["rank"] * 3])

    # The loss of each logged step, and where there are many (a long run's curve is a band of noise), their
    # moving mean over it. On a log axis where the loss cannot be negative: on a linear one the first steps,
    # at several times the rest, set the scale and flatten everything after them.
    ax = axes["loss"]
    loss = [h["loss"] for h in history]
    window = _smoothing_window(len(loss))
    smoothed = window > 1
    ax.plot(steps, loss, color="C0", lw=0.8 if smoothed else 1.5, alpha=0.35 if smoothed else 1.0,
            label="each logged step")
    if smoothed:
        ax.plot(steps[window // 2: len(steps) - window // 2], _moving_mean(loss, window), color="C0",
                label=f"moving mean of {window} records, over {steps[window - 1] - steps[0]} steps")
        ax.legend(fontsize=8, loc="upper right")
    log = log_axis_if_positive(ax, loss)
    ax.set(title=f"BYOL loss ({loss_label})", xlabel="step", ylabel="loss (log scale)" if log else "loss")
    ax.grid(alpha=0.3, which="both" if log else "major")

    ax = axes["schedules"]
    ax.plot(steps, [h["lr"] for h in history], color="C1", label="learning rate")
    ax.set(title="schedules", xlabel="step", ylabel="learning rate")
    ax2 = ax.twinx()
    ax2.plot(steps, [h["tau"] for h in history], color="C2", label="tau (target EMA)")
    ax2.set_ylabel("tau")
    ax.legend(handles=ax.get_lines() + ax2.get_lines(), loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2,
              fontsize=8, frameon=False)  # (below the axes: inside, it sat on the curves)
    ax.grid(alpha=0.3)

    # The collapse monitors, each on an axis of its own from 0, so that a curve near the bottom means collapse.
    # (On one axis and its twin, the spread of z and the rank of y crossed and ran together in a long run.)
    # The spread as a ratio to its healthy value: 1 isotropic, 0 collapsed. Legends below the axes hide no curve.
    ax = axes["spread"]
    ratio = [h["z_std"] / h["z_std_healthy"] for h in history]
    ax.plot(steps, ratio, color="C3", label="std of l2-normalised z x sqrt(P)")
    ax.axhline(1.0, color="C3", ls="--", alpha=0.6, label="healthy (isotropic): 1")
    ax.set(title="collapse monitor: spread of the online z (training batch, view 1)", xlabel="step",
           ylabel="normalised std x sqrt(P)", ylim=(0, 1.15 * max([1.0] + ratio)))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)

    ax = axes["rank"]
    ax.plot(steps, [h["z_rank"] for h in history], color="C4", label="effective rank of z")
    ax.plot(steps, [h["y_rank"] for h in history], color="C5", label="effective rank of y")
    ax.set(title="collapse monitor: effective rank of the online z and y (training batch, view 1)", xlabel="step",
           ylabel="effective rank", ylim=(0, 1.15 * max([1.0] + [max(h["z_rank"], h["y_rank"]) for h in history])))
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)

    ax = axes["knn"]
    if knn:
        ax.plot([s for s, _ in knn], [100 * a for _, a in knn], marker="o", color="C0")
    # (the axis is zoomed onto the curve: the title says what one test sample is worth on it)
    worth = f"; one test sample is {100 / n_test:.2g} points" if n_test else ""
    ax.set(title=f"kNN test accuracy of the online encoder\n(step 0: at init{worth})", xlabel="step",
           ylabel="accuracy (%)")
    ax.grid(alpha=0.3)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    return path


# The feature sets drawn by plot_features, left to right (names as in the report's rows).
FEATURE_PANELS = ("raw inputs", "random-init encoder", "BYOL encoder (y)")


def pca_2d(x):
    """Coordinates (N, 2) of the rows of x (N, D) on its first two principal axes, and the share of
    the variance they hold. (Centre, then SVD: x_c = U S V^T; the coordinates are x_c V[:, :2].)
    Where there is one axis only (one feature, or one row), the second coordinate is 0: the features
    panel of a one-feature data set failed on it, and the report blamed matplotlib."""
    xc = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    total = float((s ** 2).sum())
    coords = xc @ vt[:2].T  # (N, min(2, N, D))
    coords = np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    return coords, (float((s[:2] ** 2).sum()) / total if total > 0 else 0.0)


def draw_similarity(ax, x, labels, *, centre: bool):
    """Draw the cosine similarity of the rows of x (N, D) on ``ax``, rows and columns sorted by
    class, with thin lines between classes. ``centre`` subtracts the mean row first (shows how
    classes differ); without it a collapsed representation is one uniform red square.

    Returns:
        the image, for a colour bar (:func:`similarity_colorbar`).
    """
    x = np.asarray(x, dtype=np.float64)
    labels = np.asarray(labels)
    if centre:
        x = x - x.mean(axis=0)
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    order = np.argsort(labels, kind="stable")
    # (antialiased: at a figure's resolution a panel has fewer pixels than rows, and "nearest" drops rows)
    image = ax.imshow(xn[order] @ xn[order].T, cmap=colour_map("RdBu_r", 9), vmin=-1, vmax=1,
                      interpolation="antialiased")
    ax.set(xticks=[], yticks=[])
    edges = np.flatnonzero(np.diff(labels[order])) + 0.5
    for b in edges:
        ax.axhline(b, color="k", lw=0.3, alpha=0.5)
        ax.axvline(b, color="k", lw=0.3, alpha=0.5)
    if len(edges) < 20:  # each class's block named at its middle (beyond 20 classes the names would crowd)
        bounds = np.concatenate([[-0.5], edges, [len(labels) - 0.5]])
        mids, names = (bounds[:-1] + bounds[1:]) / 2, [str(c) for c in labels[order][np.r_[0, edges + 0.5].astype(int)]]
        ax.set_xticks(mids, names, fontsize=7)
        ax.set_yticks(mids, names, fontsize=7)
        ax.tick_params(length=0)
    return image


def similarity_colorbar(fig, image, axes):
    """The colour bar of :func:`draw_similarity`'s panels: 9 steps from -1 (blue) to +1 (red)."""
    return fig.colorbar(image, ax=axes, label="cosine similarity", shrink=0.8, ticks=[-1, -0.5, 0, 0.5, 1])


@_in_default_style
def plot_features(features: dict, labels, out_dir, names=FEATURE_PANELS, *, dpi: int = 100, filename="features.png"):
    """Draw what the features look like: for each feature set, a 2-D PCA of the test split
    coloured by class (top) and the cosine similarity of the centred features, rows and
    columns sorted by class (bottom: a sharp block diagonal means same-class samples point
    the same way and other classes elsewhere).

    Args:
        features: name -> host array (N, width) of test features (``evaluate_features(...,
            return_features=True)["features"]``).
        labels: int class ids, shape (N,).
        out_dir: folder for the PNG.
        names: which entries of ``features`` to draw, left to right (missing ones are skipped).
        dpi, filename: resolution and name of the PNG.

    Returns:
        The path written, or None if matplotlib is missing or no named set is present.
    """
    if not have_matplotlib():
        return None
    names = [n for n in names if n in features]
    if not names:
        return None
    from matplotlib.colors import BoundaryNorm, ListedColormap

    labels = np.asarray(labels)
    # One colour per class (a discrete colour bar): the class's index among the classes present.
    classes = np.unique(labels)
    k = len(classes)
    base = colour_map("tab10" if k <= 10 else "tab20" if k <= 20 else "viridis")
    colours = [base(i) if k <= 20 else base(i / max(k - 1, 1)) for i in range(k)]
    cmap, norm = ListedColormap(colours), BoundaryNorm(np.arange(k + 1) - 0.5, k)
    index = np.searchsorted(classes, labels)
    fig = new_figure(figsize=(4.6 * len(names), 8.6), layout="constrained")
    axes = fig.subplots(2, len(names), squeeze=False)
    for col, name in enumerate(names):
        x = np.asarray(features[name], dtype=np.float64)
        xy, share = pca_2d(x)
        ax = axes[0, col]
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=index, cmap=cmap, norm=norm, s=7)
        ax.set(title=f"{name}\nPCA of the test split ({100 * share:.0f}% of the variance)", xticks=[], yticks=[],
               xlabel="principal axis 1", ylabel="principal axis 2")
        image = draw_similarity(axes[1, col], x, labels, centre=True)
        axes[1, col].set_title("cosine similarity (centred), sorted by class")
    similarity_colorbar(fig, image, axes[1, :].tolist())
    ticks = np.arange(k) if k <= 20 else np.linspace(0, k - 1, 11).round().astype(int)
    bar = fig.colorbar(sc, ax=axes[0, :].tolist(), label="class", shrink=0.8, ticks=ticks)
    bar.set_ticklabels([str(c) for c in classes[ticks]])
    path = Path(out_dir) / filename
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    return path
