"""The PNG plots of a run (skipped where matplotlib is not installed) and the PCA they use."""
import importlib.util
import math
import os

import numpy as np
import pytest

from byol_ref.plots import FEATURE_PANELS, pca_2d, plot_features, plot_run


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plots make, in order, to look at (matplotlib Figures of their own: pyplot
    does not hold them)."""
    pytest.importorskip("matplotlib")
    import byol_ref.plots as plots

    made, real = [], plots.new_figure

    def new_figure(**kwargs):
        made.append(real(**kwargs))
        return made[-1]

    monkeypatch.setattr(plots, "new_figure", new_figure)
    return made


def test_pca_2d_finds_the_principal_plane():
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((6, 6)))  # orthonormal columns
    scores = rng.standard_normal((400, 6)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1, 0.1])
    x = scores @ basis.T + 5.0  # the plane of basis[:, :2], shifted away from the origin
    xy, share = pca_2d(x)
    assert xy.shape == (400, 2)
    # Independently: the eigen-decomposition of the scatter matrix of the centred data.
    xc = x - x.mean(0)
    evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending
    assert share == pytest.approx(evals[-2:].sum() / evals.sum(), rel=1e-12)
    for j, col in enumerate((-1, -2)):  # coordinates on the top two eigenvectors, up to sign
        np.testing.assert_allclose(np.abs(xy[:, j]), np.abs(xc @ evecs[:, col]), rtol=1e-9, atol=1e-9)
    assert share > 0.99  # and that plane is (nearly) the one the data were drawn in
    assert pca_2d(np.ones((5, 3)))[1] == 0.0  # no variance at all: share 0, no division by zero


def test_one_feature_or_one_row_has_a_second_coordinate_of_zero(tmp_path):
    """pca_2d of one feature gave (N, 1) coordinates, and the features panel of a one-feature data set
    failed on its second column (IndexError), which the report then blamed on matplotlib."""
    x = np.array([[1.0], [3.0], [2.0], [6.0]])
    xy, share = pca_2d(x)
    assert xy.shape == (4, 2) and share == pytest.approx(1.0)
    np.testing.assert_allclose(np.abs(xy[:, 0]), np.abs(x[:, 0] - 3.0), rtol=1e-12)
    np.testing.assert_array_equal(xy[:, 1], 0.0)
    assert pca_2d(np.array([[1.0, 2.0, 3.0]]))[0].shape == (1, 2)
    pytest.importorskip("matplotlib")
    labels = np.array([0, 1, 0, 1])
    assert plot_features({n: x for n in FEATURE_PANELS}, labels, tmp_path).name == "features.png"


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(1)
    history = [{"step": 0, "epoch": 0.0, "knn": 0.5}] + [
        {"step": k, "loss": 4.0 / k, "lr": 1e-3, "tau": 0.996, "z_std": 0.1, "z_std_healthy": 0.125,
         "z_rank": 10.0, "y_rank": 20.0, **({"knn": 0.9} if k % 5 == 0 else {})} for k in range(1, 11)]
    rows = [{"name": n, "knn": 0.9, "low_label": 0.8, "linear": 0.95} for n in FEATURE_PANELS]
    report = {"rows": rows, "probe": {"k": 7, "labels_per_class": 3}}
    paths = plot_run(history, report, tmp_path)
    assert [p.name for p in paths] == ["training.png", "probes.png"]
    labels = np.repeat(np.arange(4), 10)
    feats = {n: rng.standard_normal((40, 5)) + labels[:, None] for n in FEATURE_PANELS}
    path = plot_features(feats, labels, tmp_path)
    assert path.name == "features.png"
    for p in [*paths, path]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_features({"other": feats["raw inputs"]}, labels, tmp_path / "none") is None
    assert [p.name for p in plot_run([], report, tmp_path / "eval")] == ["probes.png"]  # no curves, no training.png
    # a run stopped at step 0 has only its initial kNN: that point is still drawn
    assert [p.name for p in plot_run([{"step": 0, "knn": 0.5}], None, tmp_path / "k0")] == ["training.png"]


def test_similarity_panel_is_the_cosine_of_the_rows():
    plt = pytest.importorskip("matplotlib.pyplot")
    from byol_ref.plots import draw_similarity

    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 3)) * np.array([10.0, 1.0, 0.1])  # columns of very different scales
    labels = np.array([2, 0, 1, 0, 2, 1])
    fig, ax = plt.subplots()
    draw_similarity(ax, x, labels, centre=False)
    shown = np.asarray(ax.images[0].get_array())
    plt.close(fig)
    xs = x[np.argsort(labels, kind="stable")]
    xn = xs / np.linalg.norm(xs, axis=1, keepdims=True)
    np.testing.assert_allclose(shown, xn @ xn.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.diag(shown), 1.0, rtol=1e-12)


def test_the_similarity_panel_names_each_class_at_its_block_s_middle_on_9_colour_steps():
    """Labels [2, 0, 1, 1], sorted [0, 1, 1, 2]: blocks [0], [1, 2], [3], named at 0, 1.5 and 3, by their
    first row's class (a class of one row included); the colour map's 9 steps are the colour bar's; a row
    normalised as ``F.normalize`` does, its norm clamped at 1e-12 (a row of norm 1.5e-12 is a unit row)."""
    plt = pytest.importorskip("matplotlib.pyplot")
    from byol_ref.plots import draw_similarity

    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.5e-12, 0.0], [0.6, 0.8]])
    fig, ax = plt.subplots()
    try:
        image = draw_similarity(ax, x, np.array([2, 0, 1, 1]), centre=False)
        assert image.cmap.N == 9 and image.get_clim() == (-1, 1)
        assert list(ax.get_xticks()) == list(ax.get_yticks()) == [0.0, 1.5, 3.0]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]
        shown = np.asarray(image.get_array())  # rows in class order: x[1], x[2], x[3], x[0]
        np.testing.assert_allclose(np.diag(shown), 1.0, rtol=1e-12)
        assert shown[1, 3] == pytest.approx(1.0, rel=1e-12)  # the tiny row is (1, 0), as x[0]
    finally:
        plt.close(fig)


def test_pca_2d_gives_the_share_of_a_small_variance_and_holds_no_n_by_n_matrix():
    """The share of the variance is a ratio, whatever the data's scale (scripts/mutation_sweep.py: a share of
    0 wherever the total variance is below 1 passed every test); and the SVD is the thin one: a full one
    would make U (N, N), 200 MB for the 5000 rows below."""
    from memory import peak_bytes

    xy, share = pca_2d(np.array([[0.0, 0.0], [0.1, 0.0], [0.0, 0.0], [0.1, 0.0]]))
    assert share == pytest.approx(1.0, rel=1e-12) and np.allclose(np.abs(xy[:, 0]), 0.05, rtol=1e-12)
    x = np.random.default_rng(0).standard_normal((5000, 3))
    _, peak = peak_bytes(lambda: pca_2d(x))
    assert peak < 20 * x.nbytes, peak  # (x is 120 kB; an (N, N) U is 200 MB)


def test_the_loss_panel_smooths_over_an_odd_window_near_2_percent_of_the_records():
    """Up to 50 records, none (a window of 1); then 2 round(n / 100) + 1 (Python's round, half to even):
    3 from 51, 5 at 150, 61 for 3000."""
    from byol_ref.plots import _smoothing_window

    assert [_smoothing_window(n) for n in (1, 50, 51, 149, 150, 151, 3000)] == [1, 1, 3, 3, 5, 5, 61]


def test_without_matplotlib_nothing_is_drawn(tmp_path, monkeypatch):
    import byol_ref.plots as plots

    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert plots.plot_run([], {"rows": []}, tmp_path) == []
    assert plots.plot_features({"raw inputs": np.zeros((4, 2))}, np.arange(4), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_class_colours_are_discrete_and_the_loss_title_names_the_runs_loss(drawn, tmp_path):
    """features.png: one colour and one tick per class present (labels 3, 5, 9 are not a scale
    from 3 to 9); training.png: the title says which loss the run logs and its range."""

    from byol_ref.model import Config, loss_range

    rng = np.random.default_rng(0)
    labels = np.repeat([3, 5, 9], 10)
    plot_features({n: rng.standard_normal((30, 4)) for n in FEATURE_PANELS}, labels, tmp_path)
    fig = drawn[-1]
    bars = {a.get_ylabel(): a for a in fig.axes if a.get_label() == "<colorbar>"}
    assert [t.get_text() for t in bars["class"].get_yticklabels()] == ["3", "5", "9"]
    # the similarity panels have their scale (they had none: red +1, blue -1, in 9 steps)
    assert [float(t.get_text().replace("\u2212", "-")) for t in bars["cosine similarity"].get_yticklabels()] == \
        [-1.0, -0.5, 0.0, 0.5, 1.0]
    colours = {tuple(c) for c in fig.axes[0].collections[0].get_facecolors()}
    assert len(colours) == 3
    how, low, high = loss_range(Config(encoder_dim=4, loss_form="neg_cos", sym_reduce="mean"))
    history = [{"step": 1, "loss": -0.5, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0}]
    plot_run(history, None, tmp_path, loss_label=f"{how}, in [{low:g}, {high:g}]")
    fig = drawn[-1]
    assert fig.axes[0].get_title() == "BYOL loss (-cos, mean of both directions, in [-1, 1])"


def test_probes_are_dots_with_the_low_label_spread_and_the_monitors_start_at_zero(drawn, tmp_path):
    """probes.png drew bars from an axis that started near the lowest accuracy (their lengths exaggerated the gaps),
    without the low-label probe's spread, under a legend that could hide the last bars; training.png's collapse
    panel drew the healthy line on the frame and the ranks from an axis that did not start at 0."""
    from matplotlib.container import ErrorbarContainer

    rows = [{"name": n, "knn": a, "low_label": a - 0.05, "low_label_std": 0.01, "linear": a + 0.01}
            for n, a in (("BYOL encoder (y)", 0.97), ("raw inputs", 0.95))]
    history = [{"step": s, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.121, "z_std_healthy": 0.125,
                "z_rank": 30.0, "y_rank": 130.0} for s in (10, 20)]
    plot_run(history, {"rows": rows, "probe": {}}, tmp_path)
    training, probes = drawn[-2:]
    ax = probes.axes[0]
    assert not ax.patches  # no bars
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == 2 and ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1
    spread, rank = _monitor_axes(training)
    assert spread.get_ylim()[0] == 0 and rank.get_ylim()[0] == 0
    assert 1.0 < spread.get_ylim()[1] and [line.get_ydata()[0] for line in spread.get_lines()] == \
        [pytest.approx(0.121 / 0.125), 1.0]
    # Each axis reaches 15 % above its highest curve, the healthy line of 1 counted on the spread's, and 1 on
    # the rank's: no curve is cut off at the top, nor squeezed under an empty band.
    assert spread.get_ylim()[1] == pytest.approx(1.15) and rank.get_ylim()[1] == pytest.approx(1.15 * 130)
    history[1].update(z_std=0.15, z_rank=140.0, y_rank=0.0)
    plot_run(history, None, tmp_path / "above")
    spread, rank = _monitor_axes(drawn[-1])
    assert spread.get_ylim()[1] == pytest.approx(1.15 * 0.15 / 0.125)
    assert rank.get_ylim()[1] == pytest.approx(1.15 * 140)
    collapsed = [{**h, "z_std": 0.0, "z_rank": 0.0, "y_rank": 0.0} for h in history]
    plot_run(collapsed, None, tmp_path / "collapsed")
    spread, rank = _monitor_axes(drawn[-1])
    assert spread.get_ylim() == pytest.approx((0, 1.15)) and rank.get_ylim() == pytest.approx((0, 1.15))


def test_the_panels_say_what_their_axes_are(drawn, tmp_path):
    """A walk-through found: the PCA axes unnamed, the similarity blocks without their classes, the schedules'
    legend on the curves, and the zoomed kNN axis with nothing to say one test sample moves it 0.28 points."""

    history = [{"step": s, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125, "z_rank": 2.0,
                "y_rank": 3.0} for s in (1, 2)] + [{"step": 2, "knn": 0.9}]
    plot_run(history, None, tmp_path, n_test=359)
    training = drawn[-1]
    knn = next(a for a in training.axes if a.get_title().startswith("kNN"))
    assert knn.get_title() == "kNN test accuracy of the online encoder\n(step 0: at init; one test sample is 0.28 points)"
    schedules = next(a for a in training.axes if a.get_title() == "schedules")
    legend = schedules.get_legend()
    assert legend.get_bbox_to_anchor().y1 < schedules.get_window_extent().y0 + 1  # below the axes
    labels = np.repeat([3, 5, 9], 10)
    plot_features({n: np.random.default_rng(0).standard_normal((30, 4)) for n in FEATURE_PANELS}, labels, tmp_path)
    fig = drawn[-1]
    pca, similarity = fig.axes[0], fig.axes[len(FEATURE_PANELS)]
    assert (pca.get_xlabel(), pca.get_ylabel()) == ("principal axis 1", "principal axis 2")
    assert [t.get_text() for t in similarity.get_xticklabels()] == ["3", "5", "9"]
    np.testing.assert_allclose(similarity.get_xticks(), [4.5, 14.5, 24.5])  # the middle of each class's block


def test_every_panel_s_title_is_drawn_at_one_size(drawn, tmp_path):
    """The panel titles of training.png, probes.png and features.png share one font size, 10 points:
    training.png drew its "schedules" title at matplotlib's default of 12, beside 10 for every other panel."""
    history = [{"step": s, "loss": 1.0 / s, "lr": 1e-3 * s, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0} for s in range(1, 6)] + [{"step": 5, "knn": 0.9}]
    rows = [{"name": n, "knn": a, "low_label": a - 0.05, "low_label_std": 0.01, "linear": a + 0.01}
            for n, a in (("BYOL encoder (y)", 0.97), ("raw inputs", 0.95))]
    figures = _figures_of(drawn, lambda: plot_run(history, {"rows": rows, "probe": {}}, tmp_path, n_test=359))
    figures += _figures_of(drawn, lambda: plot_features(
        {n: np.random.default_rng(0).standard_normal((30, 4)) for n in FEATURE_PANELS}, np.repeat([3, 5, 9], 10),
        tmp_path))
    titled = [[(a.get_title(), a.title.get_fontsize()) for a in fig.axes if a.get_title()] for fig in figures]
    assert [len(t) for t in titled] == [5, 1, 2 * len(FEATURE_PANELS)]  # (a twin axis has no title of its own)
    assert {size for t in titled for _, size in t} == {10.0}, titled


def _figures_of(drawn, draw):
    """Run ``draw`` and return the figures it made, in order (``drawn``: the fixture's record)."""
    before = len(drawn)
    draw()
    return drawn[before:]


def _monitor_axes(fig):
    """training.png's two collapse-monitor axes: the spread's and the effective rank's."""
    return tuple(next(a for a in fig.axes if a.get_title().startswith(f"collapse monitor: {what}"))
                 for what in ("spread", "effective rank"))


def _twin_of(fig, ax):
    return next((a for a in fig.axes if a is not ax and a.bbox.bounds == ax.bbox.bounds), None)


def test_training_curves_draw_each_series_against_the_steps(drawn, tmp_path):
    """training.png: every panel plots its own series of the step records (not another one, not against the
    record index), names its axes, puts both axes' curves in its legend, and fits every curve on its axis."""

    steps = [10, 20, 40]
    loss, lr, tau = [3.0, 2.0, 1.5], [0.1, 0.2, 0.3], [0.9, 0.95, 0.99]
    z_std, healthy, z_rank, y_rank = [0.05, 0.1, 0.2], 0.25, [4.0, 5.0, 6.0], [30.0, 60.0, 90.0]
    history = [{"step": 0, "knn": 0.5}] + [
        {"step": s, "loss": a, "lr": b, "tau": c, "z_std": d, "z_std_healthy": healthy, "z_rank": e, "y_rank": f}
        for s, a, b, c, d, e, f in zip(steps, loss, lr, tau, z_std, z_rank, y_rank)]
    history[-1]["knn"] = 0.75  # the kNN monitor at step 0 and at the last step
    (fig,) = _figures_of(drawn, lambda: plot_run(history, None, tmp_path))

    def panel(prefix):
        return next(a for a in fig.axes if a.get_title().startswith(prefix))

    def xy(line):
        return list(map(float, line.get_xdata())), list(map(float, line.get_ydata()))

    ax = panel("BYOL loss")
    assert [xy(line) for line in ax.get_lines()] == [(steps, loss)]
    # without a loss_label: the official loss (a mutation audit: a default that lost its range survived)
    assert ax.get_title() == "BYOL loss (||n(p) - n(z)||^2, both directions summed, in [0, 8])"
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_yscale()) == ("step", "loss (log scale)", "log")

    ax = panel("schedules")
    twin = _twin_of(fig, ax)
    assert [xy(line) for line in ax.get_lines()] == [(steps, lr)]
    assert [xy(line) for line in twin.get_lines()] == [(steps, tau)]
    assert (ax.get_xlabel(), ax.get_ylabel(), twin.get_ylabel()) == ("step", "learning rate", "tau")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["learning rate", "tau (target EMA)"]

    ax = panel("collapse monitor: spread")
    assert [xy(line) for line in ax.get_lines()] == [(steps, [d / healthy for d in z_std]), ([0.0, 1.0], [1.0, 1.0])]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "normalised std x sqrt(P)")
    assert ax.get_ylim()[1] >= 1.0 and [t.get_text() for t in ax.get_legend().get_texts()] == [
        "std of l2-normalised z x sqrt(P)", "healthy (isotropic): 1"]
    ax = panel("collapse monitor: effective rank")
    assert [xy(line) for line in ax.get_lines()] == [(steps, z_rank), (steps, y_rank)]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "effective rank")
    assert ax.get_ylim()[1] >= max(y_rank)  # every curve within its axis
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["effective rank of z", "effective rank of y"]
    assert [_twin_of(fig, a) for a in fig.axes if a.get_title().startswith("collapse")] == [None, None]

    ax = panel("kNN")
    assert [xy(line) for line in ax.get_lines()] == [([0.0, 40.0], [50.0, 75.0])]  # in percent, at its steps
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("step", "accuracy (%)")


def test_the_schedules_and_monitors_legends_sit_below_their_axes(drawn, tmp_path):
    """training.png: the legends of the schedules and the two collapse monitors lie wholly below their
    axes (inside, they sat on the curves; a mutation audit found that no test looked: anchored at +0.18
    of the axes rather than -0.18, each passed)."""
    history = [{"step": s, "loss": 1.0 / s, "lr": 1e-3 * s, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0} for s in range(1, 6)]
    (fig,) = _figures_of(drawn, lambda: plot_run(history, None, tmp_path))
    for title in ("schedules", "collapse monitor: spread", "collapse monitor: effective rank"):
        ax = next(a for a in fig.axes if a.get_title().startswith(title))
        legend = ax.get_legend()
        assert legend is not None, title
        assert legend.get_window_extent().y1 < ax.get_window_extent().y0, title


def _span_rule(self, locs=None):
    """LogFormatter.set_locs as matplotlib 3.8 to 3.10 decide (linear axes aside): by the decades the view spans."""
    lo, hi = sorted(self.axis.get_view_interval())
    span = math.log10(hi / lo)
    self._sublabels = ({1} if span > self.minor_thresholds[0] else {1, 2, 3, 4, 6, 10}
                       if span > self.minor_thresholds[1] else set(range(1, 11)))


@pytest.mark.parametrize("rule", ["installed", "span"])
@pytest.mark.parametrize("view, named", [
    ((0.266, 3.76), ["0.3", "0.4", "0.6", "1", "2", "3"]),  # one decade tick in view: some minor ones named too
    ((0.04, 5.0), ["0.1", "1"]),                             # two: the decades alone
    ((0.3, 0.8), ["0.3", "0.4", "0.6"]),                     # none
    ((0.5, 0.9), ["0.5", "0.6", "0.7", "0.8", "0.9"]),       # none, and under 0.4 of a decade: every one
])
def test_a_log_axis_names_its_ticks_by_the_decade_ticks_in_view_on_every_matplotlib(rule, view, named,
                                                                                    monkeypatch):
    """Before 3.11 matplotlib named only the decades of a log axis that spanned more than one decade, even with
    one decade tick in view: under matplotlib 3.10 (what Python 3.10 installs) a loss from 0.27 to 3.8 had "1" as
    its only label, and the long-run test failed there. log_axis_if_positive now names them by 3.11's rule on
    every version; "span" stands in for the older matplotlib's own rule."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter

    from byol_ref.plots import log_axis_if_positive

    if rule == "span":
        monkeypatch.setattr(LogFormatter, "set_locs", _span_rule)
    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1], list(view))
    assert log_axis_if_positive(ax, list(view))
    ax.set_ylim(*view)
    fig.canvas.draw()
    ticks = ax.get_yticklabels() + ax.get_yticklabels(minor=True)
    shown = sorted((t.get_position()[1], t.get_text()) for t in ticks
                   if t.get_text() and view[0] <= t.get_position()[1] <= view[1])
    assert [text for _, text in shown] == named


def test_a_long_run_s_loss_is_drawn_on_a_log_axis_with_its_moving_mean(drawn, tmp_path):
    """A 30,000-step run's training.png: its first steps, at ten times the rest, set the loss axis and flattened
    the 29,000 steps after them into a band of noise at its foot. The loss is now on a log axis where it cannot be
    negative, with a centred moving mean of about 2% of the records over the records themselves."""
    from byol_ref.plots import _moving_mean as moving_mean

    np.testing.assert_allclose(moving_mean([1.0, 2.0, 4.0, 8.0, 16.0], 3), [7 / 3, 14 / 3, 28 / 3])
    np.testing.assert_allclose(moving_mean([5.0, 1.0], 1), [5.0, 1.0])
    rng = np.random.default_rng(0)
    steps = list(range(10, 3010, 10))  # 300 records: a window of 7
    loss = list(0.3 + 3.0 * np.exp(-np.arange(300) / 20.0) + 0.05 * rng.random(300))
    ok = {"lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125, "z_rank": 2.0, "y_rank": 3.0}
    (fig,) = _figures_of(drawn, lambda: plot_run([{"step": s, "loss": a, **ok} for s, a in zip(steps, loss)],
                                                 None, tmp_path))
    ax = next(a for a in fig.axes if a.get_title().startswith("BYOL loss"))
    raw, mean = ax.get_lines()
    assert (list(raw.get_xdata()), list(raw.get_ydata())) == (steps, loss)
    assert list(mean.get_xdata()) == steps[3:-3]
    np.testing.assert_allclose(mean.get_ydata(), [np.mean(loss[i - 3:i + 4]) for i in range(3, 297)], rtol=1e-12)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "each logged step", "moving mean of 7 records, over 60 steps"]
    assert (ax.get_yscale(), ax.get_ylabel()) == ("log", "loss (log scale)")
    fig.canvas.draw()  # (the tick labels are made as the figure is drawn)
    labels = [t.get_text() for t in ax.get_yticklabels() + ax.get_yticklabels(minor=True) if t.get_text()]
    assert "1" in labels and all("e" not in t and "10^" not in t for t in labels), labels
    minor = [t.get_text() for t in ax.get_yticklabels(minor=True) if t.get_text()]
    assert "0.3" in minor and "2" in minor, minor  # (within a decade or two the minor ticks are named too)

    # The -cos form's loss is negative: a linear axis; and so is a run with a loss of exactly 0 (collapsed). A few
    # records are not averaged.
    for loss in ([-0.9, -0.95, -0.99], [0.5, 0.0, 0.0]):
        (fig,) = _figures_of(drawn, lambda: plot_run([{"step": s, "loss": a, **ok} for s, a in zip(steps, loss)],
                                                     None, tmp_path / "neg"))
        ax = next(a for a in fig.axes if a.get_title().startswith("BYOL loss"))
        assert (ax.get_yscale(), ax.get_ylabel(), len(ax.get_lines())) == ("linear", "loss", 1)


def test_the_collapse_lab_draws_its_arms_losses_on_a_log_axis(tmp_path, monkeypatch):
    """docs/img/collapse-lab.png drew the arms' losses on a linear axis, where the collapsed arms' (from 0.016 down
    to 0.0004 at the end, told apart by the page's table) lay together on its 0; and its three titles at two sizes
    (the spread's at 10 points, the loss's and the accuracies' at matplotlib's 12)."""
    from repo_modules import repo_module

    pytest.importorskip("matplotlib")
    lab = repo_module("scripts", "collapse_lab")
    made, real = [], lab.new_figure
    monkeypatch.setattr(lab, "new_figure", lambda **kwargs: made.append(real(**kwargs)) or made[-1])
    rng = np.random.default_rng(0)
    y_test = np.repeat([0, 1], 6)
    results = [{"arm": arm, "history": [{"step": 0, "knn": 0.5}] + [
                    {"step": s, "loss": loss * (1 + 1 / s), "z_std": spread / 8, "z_std_healthy": 1 / 8}
                    for s in (10, 20, 30)],
                "knn_y": 0.9, "low_y": 0.8, "knn_random": 0.85, "low_random": 0.7, "z_std_ratio": spread,
                "z_rank": 3.0, "z_test": rng.standard_normal((12, 4))}
               for arm, loss, spread in (("BYOL (default)", 0.49, 0.97), ("no stop-gradient (tau = 0)", 4e-4, 0.01))]
    (tmp_path / "img").mkdir()
    lab.plot_lab(results, y_test, tmp_path, 150, 0)
    ax = next(a for a in made[0].axes if a.get_title().startswith("BYOL loss"))
    assert (ax.get_title(), ax.get_yscale()) == ("BYOL loss (log scale)", "log")
    np.testing.assert_allclose([line.get_ydata() for line in ax.get_lines()],
                               [[0.49 * (1 + 1 / s) for s in (10, 20, 30)], [4e-4 * (1 + 1 / s) for s in (10, 20, 30)]])
    assert [a.title.get_fontsize() for a in made[0].axes] == [10.0, 10.0, 10.0]
    assert (tmp_path / "img" / "collapse-lab.png").exists()


def test_probe_dots_are_the_rows_accuracies_in_percent_side_by_side(drawn, tmp_path):
    """probes.png: one series per row, in the rows' order and named by them; its dots are the kNN, low-label and
    linear accuracies in percent, placed side by side around each metric's tick; only the low-label dot has an
    error bar (its sd); the y axis starts 3 points below the lowest mean - sd, or at 0 if that is lower. A
    report without rows draws no probes.png."""
    from matplotlib.container import ErrorbarContainer

    rows = [{"name": "BYOL encoder (y)", "knn": 0.96, "low_label": 0.90, "low_label_std": 0.02, "linear": 0.97},
            {"name": "raw inputs", "knn": 0.93, "low_label": 0.91, "low_label_std": 0.005, "linear": 0.95}]
    report = {"rows": rows, "probe": {"k": 7, "labels_per_class": 3}}
    (fig,) = _figures_of(drawn, lambda: plot_run([], report, tmp_path))
    ax = fig.axes[0]
    series = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in series] == ["BYOL encoder (y)", "raw inputs"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["BYOL encoder (y)", "raw inputs"]
    for i, (c, row) in enumerate(zip(series, rows)):
        line = c.lines[0]
        # two rows share each metric's slot of width 0.8: the first at tick - 0.2, the second at tick + 0.2
        np.testing.assert_allclose(np.asarray(line.get_xdata(), float), np.arange(3) + (-0.2 if i == 0 else 0.2), atol=1e-12)
        np.testing.assert_allclose(np.asarray(line.get_ydata(), float), [100 * row["knn"], 100 * row["low_label"],
                                                      100 * row["linear"]], rtol=1e-12)
        (bars,) = c.lines[2]
        half = [(seg[1][1] - seg[0][1]) / 2 for seg in bars.get_segments()]
        np.testing.assert_allclose(half, [0.0, 100 * row["low_label_std"], 0.0], atol=1e-9)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["kNN (k=7)", "3 labels/class", "full linear probe"]
    assert ax.get_ylabel() == "test accuracy (%)"
    assert ax.get_ylim() == pytest.approx((88.0 - 3.0, 102.0))  # lowest: 90 - 2 (BYOL's low-label)
    assert ax.get_xlim() == pytest.approx((-0.5, 2.5))  # the three slots, each 1 wide
    # each dot's value is written above it (above its error bar's top)
    assert [t.get_text() for t in ax.texts] == ["96.0", "90.0", "97.0", "93.0", "91.0", "95.0"]
    np.testing.assert_allclose([t.xy[1] for t in ax.texts], [96.0, 92.0, 97.0, 93.0, 91.5, 95.0], atol=1e-9)
    (fig,) = _figures_of(drawn, lambda: plot_run([], {"rows": rows[:1], "probe": {}}, tmp_path / "d"))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["kNN (k=20)", "10 labels/class",
                                                                     "full linear probe"]
    # a dot below 3 % (a collapsed encoder's kNN, 1 %) puts the axis's foot at 0, not at 1 or below 0
    (fig,) = _figures_of(drawn, lambda: plot_run([], {"rows": [{**rows[0], "knn": 0.01}], "probe": {}},
                                                 tmp_path / "f"))
    assert fig.axes[0].get_ylim() == pytest.approx((0.0, 102.0), abs=1e-9)
    history = [{"step": 1, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0}]
    assert [p.name for p in plot_run(history, {"rows": []}, tmp_path / "e")] == ["training.png"]


def test_feature_panels_show_each_named_set_in_order(drawn, tmp_path):
    """features.png: the panels follow ``names`` (not the dict's order), each PCA panel scatters its own set's
    first two principal coordinates (x: axis 1, y: axis 2) and says its share of the variance in percent, and
    each similarity panel is the cosine of that set's centred rows on a -1..1 scale, with a line at every
    class boundary both ways."""

    rng = np.random.default_rng(5)
    labels = np.array([1, 0, 2, 1, 0, 2, 2, 0, 1, 0, 1, 2])
    plane = rng.standard_normal((12, 2)) * [3.0, 1.0] @ rng.standard_normal((2, 4))  # rank 2: all the variance
    feats = {"BYOL encoder (y)": plane + 1.0, "random-init encoder": rng.standard_normal((12, 3)),
             "raw inputs": rng.standard_normal((12, 5)) + 4.0}  # (not in FEATURE_PANELS' order)
    (fig,) = _figures_of(drawn, lambda: plot_features(feats, labels, tmp_path))
    n = len(FEATURE_PANELS)
    order = np.argsort(labels, kind="stable")
    for col, name in enumerate(FEATURE_PANELS):
        pca, sim = fig.axes[col], fig.axes[n + col]
        assert pca.get_title().split("\n")[0] == name
        x = feats[name]
        xc = x - x.mean(0)
        evals, evecs = np.linalg.eigh(xc.T @ xc)  # ascending
        shown = pca.collections[0].get_offsets()
        for j, k in enumerate((-1, -2)):  # coordinates on the top two eigenvectors, up to sign
            np.testing.assert_allclose(np.abs(shown[:, j]), np.abs(xc @ evecs[:, k]), rtol=1e-7, atol=1e-7)
        assert f"({100 * evals[-2:].sum() / evals.sum():.0f}% of the variance)" in pca.get_title()
        xs = xc[order] / np.linalg.norm(xc[order], axis=1, keepdims=True)
        np.testing.assert_allclose(np.asarray(sim.images[0].get_array()), xs @ xs.T, rtol=1e-9, atol=1e-9)
        assert sim.images[0].get_clim() == (-1, 1)
        vertical = sorted(float(line.get_xdata()[0]) for line in sim.get_lines()
                          if line.get_xdata()[0] == line.get_xdata()[1])
        assert vertical == [3.5, 7.5]  # classes 0, 1, 2 hold 4 rows each
    assert "(100% of the variance)" in fig.axes[FEATURE_PANELS.index("BYOL encoder (y)")].get_title()  # a plane


def test_many_classes_get_distinct_colours_and_thinned_names(drawn, tmp_path):
    """12 classes: 12 distinct colours (tab10 has 10). 21 classes: the class colour bar names 11 of them, and the
    similarity blocks are not named (beyond 20 classes the names would crowd); 20 classes are all named. 30
    classes: 11 names too, the first class's and the last's among them."""

    rng = np.random.default_rng(6)
    for k in (12, 20, 21, 30):
        labels = np.repeat(np.arange(k), 2)
        (fig,) = _figures_of(drawn, lambda: plot_features(
            {"raw inputs": rng.standard_normal((2 * k, 3))}, labels, tmp_path, names=("raw inputs",)))
        pca, sim = fig.axes[0], fig.axes[1]
        assert len({tuple(c) for c in pca.collections[0].get_facecolors()}) == k
        bar = next(a for a in fig.axes if a.get_label() == "<colorbar>" and a.get_ylabel() == "class")
        named = [t.get_text() for t in bar.get_yticklabels()]
        sim_named = [t.get_text() for t in sim.get_xticklabels()]
        if k <= 20:
            assert named == [str(c) for c in range(k)] and sim_named == named
            assert [t.get_text() for t in sim.get_yticklabels()] == named  # rows named as the columns
        elif k == 21:
            assert named == [str(c) for c in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20)] and sim_named == []
        else:  # 11 names from the first class to the last, whatever k (a mutation audit: every other one survived)
            assert len(named) == 11 and (named[0], named[-1]) == ("0", str(k - 1)) and sim_named == []


def test_a_matplotlib_too_old_for_numpy_2_is_named_and_not_imported(tmp_path, monkeypatch, capsys):
    """A matplotlib older than 3.8.4 (the plot extra once asked for >= 3.6) fails to import beside
    NumPy 2, after NumPy prints a traceback, and eval said "matplotlib is not installed". It is now
    not imported at all, and the report's footer names the version and says to upgrade."""
    import shlex
    import sys
    from importlib import metadata

    import byol_ref.plots as plots
    from byol_ref.cli import main

    versions = {}
    monkeypatch.setattr(metadata, "version", lambda name: versions[name] if name in versions else
                        (_ for _ in ()).throw(metadata.PackageNotFoundError(name)))
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_Refuse("matplotlib"), *sys.meta_path])  # (an import of it fails)
    for version, says in (("3.6.3", "matplotlib 3.6.3 is older than 3.8.4, the first that runs with NumPy 2"),
                          ("3.8.3", "matplotlib 3.8.3 is older than 3.8.4"),
                          ("3.8.4", "matplotlib 3.8.4 does not import (refused here)"),
                          ("3.10.0rc1", "matplotlib 3.10.0rc1 does not import (refused here)"),
                          (None, "matplotlib is not installed")):
        versions = {} if version is None else {"matplotlib": version}
        sys.meta_path[0].tried = 0
        assert plots.matplotlib_problem().startswith(says) and plots.have_matplotlib() is False
        # (a version too old is not even tried: that import is what prints NumPy's traceback)
        assert sys.meta_path[0].tried == (0 if version in ("3.6.3", "3.8.3") else 2), version
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--hidden-size", "8",
                 "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots",
                 "--out", str(tmp_path / "r")]) == 0
    # One command mends both (it installs or upgrades), so the footer does not
    # tell them apart by the problem's wording.
    for version, says in (("3.6.3", "matplotlib 3.6.3 is older than 3.8.4, the first that runs with NumPy 2"),
                          (None, "matplotlib is not installed")):
        versions = {} if version is None else {"matplotlib": version}
        capsys.readouterr()
        assert main(["eval", str(tmp_path / "r"), "--out", str(tmp_path / f"e{version}")]) == 0
        assert (f"(no plots: {says}; {shlex.quote(sys.executable)} -m pip install --upgrade "
                f"'matplotlib>=3.8.4')") in capsys.readouterr().out


class _Refuse:
    """A finder that refuses to import one module (and counts the tries)."""

    def __init__(self, name):
        self.name, self.tried = name, 0

    def find_spec(self, name, path=None, target=None):
        if name == self.name:
            self.tried += 1
            raise ImportError("refused here")
        return None


def test_without_matplotlib_installed_the_plots_are_skipped_not_an_import_error(tmp_path, monkeypatch):
    """Found by a mutation audit: the test above replaces have_matplotlib itself, so have_matplotlib
    saying True where matplotlib cannot be imported passed every test (plot_run would then fail on
    ``import matplotlib``, and a run's report with it). An import that fails is no matplotlib."""
    import sys

    import byol_ref.plots as plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # (``import matplotlib`` raises ImportError)
    assert plots.have_matplotlib() is False
    history = [{"step": 1, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0}]
    rows = [{"name": "raw inputs", "knn": 0.9, "low_label": 0.8, "linear": 0.95}]
    assert plots.plot_run(history, {"rows": rows}, tmp_path / "run") == []
    assert plots.plot_features({"raw inputs": np.zeros((4, 2))}, np.arange(4), tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert plots.have_matplotlib() is (importlib.util.find_spec("matplotlib") is not None)


def test_the_plots_leave_no_figure_with_pyplot(tmp_path):
    """pyplot holds every figure it made until it is closed: a process that reports many runs (a
    sweep calling the CLI's report, a notebook) would grow by a figure per plot and warn past 20.
    (A mutation audit found that dropping any of the plt.close calls of the pyplot drawing passed
    every test; the figures are now pyplot's in no case, which this checks.)"""
    plt = pytest.importorskip("matplotlib.pyplot")

    history = [{"step": 1, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0}]
    rows = [{"name": n, "knn": 0.9, "low_label": 0.8, "linear": 0.95} for n in FEATURE_PANELS]
    labels = np.repeat(np.arange(3), 4)
    before = plt.get_fignums()
    assert len(plot_run(history, {"rows": rows}, tmp_path)) == 2
    assert plt.get_fignums() == before
    assert plot_features({n: np.random.default_rng(0).standard_normal((12, 3)) for n in FEATURE_PANELS}, labels,
                         tmp_path) is not None
    assert plt.get_fignums() == before


def test_a_plot_that_fails_to_draw_leaves_no_figure_with_pyplot(tmp_path, monkeypatch):
    """A drawing that failed (the report stands without it) left its figure open: pyplot kept it for
    the life of the process, and a notebook or sweep warned past 20 of them."""
    plt = pytest.importorskip("matplotlib.pyplot")
    import matplotlib.figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("font cache is broken")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    history = [{"step": 1, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125,
                "z_rank": 2.0, "y_rank": 3.0}]
    before = plt.get_fignums()
    for draw in (lambda: plot_run(history, None, tmp_path),
                 lambda: plot_features({n: np.ones((12, 3)) for n in FEATURE_PANELS}, np.repeat(np.arange(3), 4),
                                       tmp_path)):
        with pytest.raises(RuntimeError, match="font cache"):
            draw()
        assert plt.get_fignums() == before


def test_the_plots_leave_the_user_s_backend_and_figures_as_they_were(tmp_path):
    """Drawing through pyplot meant switching the process to Agg for good (``matplotlib.use``): a
    notebook that called plot_run or plot_features (or a script, before its own ``plt.show()``)
    then showed no figure again. The plots now draw on figures of their own, and the backend in use
    and the figures open stay as they were. (In a process of its own: the backend is the process's.)"""
    pytest.importorskip("matplotlib")
    import subprocess
    import sys
    from pathlib import Path

    code = f"""
import matplotlib, matplotlib.pyplot as plt, numpy as np
from byol_ref.plots import FEATURE_PANELS, plot_features, plot_run
mine = plt.figure(); plt.plot([1, 2])
rows = [{{"name": n, "knn": 0.9, "low_label": 0.8, "linear": 0.95}} for n in FEATURE_PANELS]
history = [{{"step": 1, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125, "z_rank": 2.0,
            "y_rank": 3.0}}]
assert len(plot_run(history, {{"rows": rows}}, {str(tmp_path)!r})) == 2
plot_features({{n: np.ones((12, 3)) + np.arange(12)[:, None] for n in FEATURE_PANELS}}, np.repeat(np.arange(3), 4),
              {str(tmp_path)!r})
print(matplotlib.get_backend(), plt.get_fignums(), plt.gcf() is mine)
"""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "MPLBACKEND": "svg", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["svg", "[1]", "True"], proc.stdout


def test_beyond_20_classes_the_colours_span_the_whole_colour_map(drawn, tmp_path):
    """Found by a mutation audit: the class colours taken as base(i) (the i-th of viridis's 256
    entries, nearly one colour for 21 classes) rather than base(i / (k - 1)) passed every test
    (they are still distinct). The first class is viridis's one end, the last its other."""

    k = 21
    labels = np.repeat(np.arange(k), 2)
    (fig,) = _figures_of(drawn, lambda: plot_features(
        {"raw inputs": np.random.default_rng(7).standard_normal((2 * k, 3))}, labels, tmp_path, names=("raw inputs",)))
    shown = fig.axes[0].collections[0].get_facecolors()
    import matplotlib

    viridis = matplotlib.colormaps["viridis"]
    want = [viridis(i / (k - 1)) for i in labels]
    np.testing.assert_allclose(shown, want, atol=1e-12)


@pytest.mark.parametrize("k, palette", [(2, "tab10"), (10, "tab10"), (11, "tab20"), (20, "tab20")])
def test_up_to_10_classes_take_tab10_s_colours_and_up_to_20_tab20_s(k, palette, drawn, tmp_path):
    """The class colours are the palette's first k, in class order: tab10's for the digits' 10 classes
    (a mutation audit: ``k < 10`` drew them in tab20's paired light and dark shades, and no test looked),
    tab20's from 11 classes to 20."""
    import matplotlib

    labels = np.repeat(np.arange(k), 2)
    (fig,) = _figures_of(drawn, lambda: plot_features(
        {"raw inputs": np.random.default_rng(8).standard_normal((2 * k, 3))}, labels, tmp_path, names=("raw inputs",)))
    base = matplotlib.colormaps[palette]
    np.testing.assert_allclose(fig.axes[0].collections[0].get_facecolors(), [base(i) for i in labels], atol=1e-12)


def test_a_non_finite_step_record_is_left_out_of_the_curves_and_dpi_sets_the_features_size(drawn, tmp_path):
    """Found by a mutation audit: telling step records by "loss" instead of "z_std" passed every test, but the
    record of a step whose features were not finite has a loss and no monitors (train._step_record), and
    drawing it failed; and plot_features ignoring its dpi (scripts/seed_table.py passes 90) passed too."""
    import struct

    ok = {"loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125, "z_rank": 2.0, "y_rank": 3.0}
    history = [{"step": 1, **ok}, {"step": 2, "loss": float("nan"), "lr": 1e-3, "tau": 0.99}]
    (fig,) = _figures_of(drawn, lambda: plot_run(history, None, tmp_path))
    loss = next(a for a in fig.axes if a.get_title().startswith("BYOL loss"))
    assert [list(line.get_xdata()) for line in loss.get_lines()] == [[1]]
    for dpi in (50, 90):
        path = plot_features({"raw inputs": np.random.default_rng(0).standard_normal((8, 3))}, np.repeat([0, 1], 4),
                             tmp_path, names=("raw inputs",), dpi=dpi, filename=f"f{dpi}.png")
        width, height = struct.unpack(">II", path.read_bytes()[16:24])  # (the PNG's IHDR)
        # (matplotlib 3.11 rounds the figure's size in pixels, 3.10 truncates it: 4.6 x 50 is 229.99999999999997)
        assert abs(width - 4.6 * dpi) < 1 and abs(height - 8.6 * dpi) < 1, (width, height)
    # two panels side by side, at the default dpi of 100: 4.6 inches a panel, 8.6 high
    two = {n: np.random.default_rng(1).standard_normal((8, 3)) for n in FEATURE_PANELS[:2]}
    width, height = struct.unpack(">II", plot_features(two, np.repeat([0, 1], 4), tmp_path).read_bytes()[16:24])
    assert abs(width - 2 * 4.6 * 100) < 1 and abs(height - 8.6 * 100) < 1, (width, height)


def test_the_features_figure_is_two_rows_of_panels_each_row_with_its_colour_bar(drawn, tmp_path):
    """features.png: PCAs on the top row, similarity images below, one column per feature set and no
    other axes but two colour bars: the classes' beside the PCAs it colours, the cosine's beside the
    images. (A mutation audit: a third, empty row of axes, or each colour bar beside the other row, passed
    every test.)"""
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 5)
    (fig,) = _figures_of(drawn, lambda: plot_features({n: rng.standard_normal((15, 4)) for n in FEATURE_PANELS},
                                                      labels, tmp_path))
    bars = {a.get_ylabel(): a for a in fig.axes if a.get_label() == "<colorbar>"}
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert sorted(bars) == ["class", "cosine similarity"] and len(panels) == 2 * len(FEATURE_PANELS)
    top = [a for a in panels if a.get_title().endswith("% of the variance)")]
    bottom = [a for a in panels if a.get_title() == "cosine similarity (centred), sorted by class"]
    assert [a.get_title().split("\n")[0] for a in top] == list(FEATURE_PANELS) and len(bottom) == len(FEATURE_PANELS)
    # (positions as the saved figure's constrained layout placed them, in figure fractions)
    top_y = (min(a.get_position().y0 for a in top), max(a.get_position().y1 for a in top))
    bottom_y = (min(a.get_position().y0 for a in bottom), max(a.get_position().y1 for a in bottom))
    assert bottom_y[1] < top_y[0]  # (the images below the PCAs)
    for name, (lo, hi) in (("class", top_y), ("cosine similarity", bottom_y)):
        box = bars[name].get_position()
        assert lo <= (box.y0 + box.y1) / 2 <= hi, (name, box, lo, hi)
        assert box.x0 > max(a.get_position().x1 for a in panels)  # (to the right of every panel)


_SMALL_TRAIN = ["train", "--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--hidden-size", "8",
                "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots"]


def test_the_plots_are_drawn_in_matplotlib_s_defaults_not_the_user_s_rc(tmp_path, monkeypatch):
    """A matplotlibrc with ``text.usetex: True`` (common among those who write papers) made every
    label need LaTeX: without one, eval probed for a minute, then stopped on "latex could not be found"
    with no report; a style there changed what the figures show. The plots are now drawn in
    matplotlib's own defaults, whatever the user's rc says, and it is theirs again afterwards."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.figure

    from byol_ref.cli import main

    assert main([*_SMALL_TRAIN, "--out", str(tmp_path / "r")]) == 0
    seen, savefig = [], matplotlib.figure.Figure.savefig

    def recording(self, *args, **kwargs):
        seen.append((matplotlib.rcParams["text.usetex"], matplotlib.rcParams["lines.linewidth"]))
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)
    monkeypatch.setitem(matplotlib.rcParams, "lines.linewidth", 9.0)
    assert main(["eval", str(tmp_path / "r"), "--out", str(tmp_path / "e")]) == 0
    assert len(seen) == 3 and set(seen) == {(False, matplotlib.rcParamsDefault["lines.linewidth"])}
    assert {p.name for p in (tmp_path / "e").glob("*.png")} == {"training.png", "probes.png", "features.png"}
    assert matplotlib.rcParams["text.usetex"] is True and matplotlib.rcParams["lines.linewidth"] == 9.0


def test_plots_that_fail_to_draw_leave_the_report_and_say_why(tmp_path, monkeypatch, capsys):
    """Where matplotlib fails to draw (a broken font cache, say), eval and train lost the report too:
    the error stopped the command after the probes. The report is now written without plots, and the
    footer and a warning say why; no plot of the failed drawing is left half made."""
    matplotlib = pytest.importorskip("matplotlib")
    import matplotlib.figure

    from byol_ref.cli import main

    assert main([*_SMALL_TRAIN, "--out", str(tmp_path / "r")]) == 0
    calls = []

    def broken(self, *args, **kwargs):  # (the first plot is drawn, the second fails)
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("font cache is broken\nand more")
        return savefig(self, *args, **kwargs)

    savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", broken)
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--out", str(tmp_path / "e")]) == 0
    out, err = capsys.readouterr()
    says = ("no plots: drawing them failed (RuntimeError: font cache is broken); the run and its report "
            "stand without them")
    assert f"({says})" in out and f"byol-ref: warning: {says}" in err
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["report.json", "report.txt"]
    calls.append(1)  # (from here every drawing fails: train's curves alone, with --no-eval)
    assert main([*_SMALL_TRAIN[:-1], "--no-eval", "--out", str(tmp_path / "r2")]) == 0
    assert f"byol-ref: warning: {says}" in capsys.readouterr().err
    assert (tmp_path / "r2" / "checkpoint.npz").is_file() and not (tmp_path / "r2" / "training.png").exists()
