"""The PNG plots of a run (skipped where matplotlib is not installed) and the PCA they use."""
import numpy as np
import pytest

from byol_ref.plots import FEATURE_PANELS, pca_2d, plot_features, plot_run


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


def test_without_matplotlib_nothing_is_drawn(tmp_path, monkeypatch):
    import byol_ref.plots as plots

    monkeypatch.setattr(plots, "have_matplotlib", lambda: False)
    assert plots.plot_run([], {"rows": []}, tmp_path) == []
    assert plots.plot_features({"raw inputs": np.zeros((4, 2))}, np.arange(4), tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_class_colours_are_discrete_and_the_loss_title_names_the_runs_loss(tmp_path, monkeypatch):
    """features.png: one colour and one tick per class present (labels 3, 5, 9 are not a scale
    from 3 to 9); training.png: the title says which loss the run logs and its range."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from byol_ref.model import Config, loss_range

    monkeypatch.setattr(plt, "close", lambda *a, **k: None)  # keep the figures to look at them
    plt.close("all")
    rng = np.random.default_rng(0)
    labels = np.repeat([3, 5, 9], 10)
    plot_features({n: rng.standard_normal((30, 4)) for n in FEATURE_PANELS}, labels, tmp_path)
    fig = plt.figure(plt.get_fignums()[-1])
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
    fig = plt.figure(plt.get_fignums()[-1])
    assert fig.axes[0].get_title() == "BYOL loss (-cos, mean of both directions, in [-1, 1])"
    plt.close("all")


def test_probes_are_dots_with_the_low_label_spread_and_the_monitors_start_at_zero(tmp_path, monkeypatch):
    """probes.png drew bars from an axis that started near the lowest accuracy (their lengths exaggerated the gaps),
    without the low-label probe's spread, under a legend that could hide the last bars; training.png's collapse
    panel drew the healthy line on the frame and the ranks from an axis that did not start at 0."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    plt.close("all")
    rows = [{"name": n, "knn": a, "low_label": a - 0.05, "low_label_std": 0.01, "linear": a + 0.01}
            for n, a in (("BYOL encoder (y)", 0.97), ("raw inputs", 0.95))]
    history = [{"step": s, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.121, "z_std_healthy": 0.125,
                "z_rank": 30.0, "y_rank": 130.0} for s in (10, 20)]
    plot_run(history, {"rows": rows, "probe": {}}, tmp_path)
    training, probes = (plt.figure(n) for n in plt.get_fignums()[-2:])
    ax = probes.axes[0]
    assert not ax.patches  # no bars
    errorbars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(errorbars) == 2 and ax.get_legend().get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1
    monitors = training.axes[2]
    twin = next(a for a in training.axes if a is not monitors and a.bbox.bounds == monitors.bbox.bounds)
    assert monitors.get_ylim()[0] == 0 and twin.get_ylim()[0] == 0
    assert 1.0 < monitors.get_ylim()[1] and [line.get_ydata()[0] for line in monitors.get_lines()] == \
        [pytest.approx(0.121 / 0.125), 1.0]
    plt.close("all")


def test_the_panels_say_what_their_axes_are(tmp_path, monkeypatch):
    """A walk-through found: the PCA axes unnamed, the similarity blocks without their classes, the schedules'
    legend on the curves, and the zoomed kNN axis with nothing to say one test sample moves it 0.28 points."""
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    plt.close("all")
    history = [{"step": s, "loss": 1.0, "lr": 1e-3, "tau": 0.99, "z_std": 0.1, "z_std_healthy": 0.125, "z_rank": 2.0,
                "y_rank": 3.0} for s in (1, 2)] + [{"step": 2, "knn": 0.9}]
    plot_run(history, None, tmp_path, n_test=359)
    training = plt.figure(plt.get_fignums()[-1])
    knn = next(a for a in training.axes if a.get_title().startswith("kNN"))
    assert knn.get_title() == "kNN test accuracy of the online encoder\n(step 0: at init; one test sample is 0.28 points)"
    schedules = next(a for a in training.axes if a.get_title() == "schedules")
    legend = schedules.get_legend()
    assert legend.get_bbox_to_anchor().y1 < schedules.get_window_extent().y0 + 1  # below the axes
    labels = np.repeat([3, 5, 9], 10)
    plot_features({n: np.random.default_rng(0).standard_normal((30, 4)) for n in FEATURE_PANELS}, labels, tmp_path)
    fig = plt.figure(plt.get_fignums()[-1])
    pca, similarity = fig.axes[0], fig.axes[len(FEATURE_PANELS)]
    assert (pca.get_xlabel(), pca.get_ylabel()) == ("principal axis 1", "principal axis 2")
    assert [t.get_text() for t in similarity.get_xticklabels()] == ["3", "5", "9"]
    np.testing.assert_allclose(similarity.get_xticks(), [4.5, 14.5, 24.5])  # the middle of each class's block
    plt.close("all")
