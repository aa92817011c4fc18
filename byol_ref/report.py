"""What a run learned: probes on BYOL features next to honest baselines, and collapse monitors.

Every report puts the BYOL encoder (y) and projector (z) next to the same probes on a
random-init encoder of the same architecture (its batch-norm statistics calibrated on the
training set, so it is not handicapped by running stats of 0 and 1) and on the raw inputs,
all on the test split: a kNN classifier (cosine, k = 20), a low-label linear probe (10 labels
per class, mean over 5 draws) and a full linear probe (l2 chosen on a validation split).
"""
from __future__ import annotations

from .backend import Backend
from .evaluate import (DEFAULT_L2_GRID, DEFAULT_N_FOLDS, DEFAULT_REPEATS, DEFAULT_VAL_FRACTION, collapse_report,
                       format_table, probe_report)
from .model import Network, build_from_config, data_dependent_init


def evaluate_features(online: Network, dataset, input_norm, backend: Backend, *, seed: int = 0,
                      labels_per_class: int = 10, k: int = 20, temperature: float | None = None,
                      return_features: bool = False, progress=None) -> dict:
    """Probe table and collapse statistics for a trained online network.

    Args:
        online: the trained online Network (evaluated with running statistics).
        dataset: the data as the network saw them before augmentation (labels needed):
            ``FitResult.dataset``, or :func:`byol_ref.train.apply_preprocessing` of the raw
            data with the run's preprocessing. Its features are the "raw inputs" row (pixels
            for images, the standardised features for feature vectors).
        input_norm: the run's InputNorm (or None).
        backend: where to run the networks.
        seed: seed of the random-init baseline (a draw of its own, ``seed + 1_000_003``: not the
            run's starting weights, whose kNN is already the step-0 entry of the training
            history) and of the probes' draws.
        labels_per_class: labels per class of the low-label probe.
        k, temperature: kNN neighbours and vote temperature (None: majority vote).
        return_features: also return the test-split features of every row under
            ``features`` (name -> host array (N_test, width); not JSON).
        progress: None, or ``progress(done, total, what)``, called before each probe as
            :func:`~byol_ref.evaluate.probe_report` calls it.

    Returns:
        dict with ``rows`` (one per feature set: name, knn, low_label, low_label_std, linear),
        ``collapse`` (statistics of the test-set projections and encodings), ``table`` (text)
        and ``probe`` (the probe settings: ``k``, ``labels_per_class``, ``temperature``, and the
        protocol: ``seed``, the low-label ``repeats`` and ``cv_folds``, the full probe's
        ``val_fraction``, the ``l2_grid`` both choose from).
    """
    from .train import encode

    if dataset.y_train is None or dataset.y_test is None or len(dataset.y_test) == 0:
        raise ValueError("evaluation needs labels for the train and test splits; this data set has none")
    x_tr, x_te = dataset.x_train, dataset.x_test
    feats = {
        "BYOL encoder (y)": (encode(online, x_tr, input_norm, backend), encode(online, x_te, input_norm, backend)),
        "BYOL projector (z)": (encode(online, x_tr, input_norm, backend, which="z"),
                               encode(online, x_te, input_norm, backend, which="z")),
    }
    random_online = random_init_baseline(online, x_tr, input_norm, backend, seed=seed)
    feats["random-init encoder"] = (encode(random_online, x_tr, input_norm, backend),
                                    encode(random_online, x_te, input_norm, backend))
    feats["raw inputs"] = (x_tr, x_te)
    rows = probe_report(feats, dataset.y_train, dataset.y_test, labels_per_class=labels_per_class, k=k, seed=seed,
                        temperature=temperature, progress=progress)
    collapse = {
        "projection_z": collapse_report(feats["BYOL projector (z)"][1], dataset.y_test),
        "encoder_y": collapse_report(feats["BYOL encoder (y)"][1], dataset.y_test),
        "random_encoder_y": collapse_report(feats["random-init encoder"][1], dataset.y_test),
    }
    # The whole protocol, so that an outside probe of `embed`'s features can redo every draw: the seed of the
    # low-label subsets (rng [seed, r] for draw r) and of the full probe's validation split, both l2 choices' grid.
    protocol = {"seed": seed, "repeats": DEFAULT_REPEATS, "cv_folds": min(DEFAULT_N_FOLDS, labels_per_class),
                "val_fraction": DEFAULT_VAL_FRACTION, "l2_grid": list(DEFAULT_L2_GRID)}
    out = {"rows": rows, "collapse": collapse, "table": format_table(rows),
           "probe": {"k": k, "labels_per_class": labels_per_class, "temperature": temperature, **protocol}}
    if return_features:
        out["features"] = {name: test for name, (_, test) in feats.items()}
    return out


def random_init_baseline(online: Network, x_train, input_norm, backend: Backend, *, seed: int = 0) -> Network:
    """The report's random-init encoder: ``online``'s architecture drawn afresh with seed
    ``seed + 1_000_003`` (not the run's own starting weights), its batch-norm running statistics
    calibrated on ``x_train`` (a norm="affine" network: initialised from the data), so that it sees
    the data's statistics as the trained network does. ``embed --baselines`` writes its features."""
    from .train import calibrate_batch_norm, init_sample

    random_online, _ = build_from_config(online.config, seed=seed + 1_000_003, dtype=backend.dtype,
                                         backend=backend.name)
    random_online = calibrate_batch_norm(random_online, x_train, input_norm, backend)
    if online.config.norm == "affine":
        random_online = data_dependent_init(random_online, init_sample(x_train.astype(backend.dtype), input_norm,
                                                                       backend))
    return random_online


def format_collapse(collapse: dict) -> str:
    """Lines describing the collapse monitors (healthy std is 1/sqrt(d), collapse is 0)."""
    lines = []
    for name, c in collapse.items():
        lines.append(f"  {name:<18} std of l2-normalised rows {c['normalized_std']:.4f} "
                     f"(healthy 1/sqrt(d) = {c['healthy_std']:.4f}, ratio {c['std_ratio']:.2f}); "
                     f"effective rank {c['effective_rank']:.1f} of {c['max_rank']}")
    return "\n".join(lines)


def format_convergence(rows: list) -> str:
    """A note naming the feature sets whose probe fits stopped at their iteration cap ("" if none did)."""
    slow = [r["name"] for r in rows if not r.get("converged", True)]
    if not slow:
        return ""
    return (f"Note: a logistic-regression fit of the probes of {', '.join(slow)} stopped at its iteration cap "
            "above its gradient tolerance: those accuracies may be off by a test sample or so.")
