"""Make ``byol_ref/datasets/digits.npz`` from scikit-learn's copy of the UCI digits.

A development tool, run once; scikit-learn is *not* a runtime dependency of byol_ref.
Install it somewhere throw-away and point ``PYTHONPATH`` at it, e.g.::

    pip install --target /tmp/skl scikit-learn
    PYTHONPATH=/tmp/skl python3 scripts/make_digits_npz.py

What it writes (``numpy.savez_compressed``, loadable with ``allow_pickle=False``):

    x_train (1438, 8, 8) uint8   pixel counts 0..16
    y_train (1438,)      int64   classes 0..9
    x_test  (359, 8, 8)  uint8
    y_test  (359,)       int64

Split rule (``byol_ref.data.train_test_indices`` with ``test_fraction=0.2`` and
``numpy.random.default_rng(0)``): for each class c = 0..9 in turn, permute that class's
indices (ascending, in sklearn's order) with the generator and send the first
``floor(0.2 * n_c + 0.5)`` to test; the rest go to train; both index lists are then
sorted, so each split keeps sklearn's sample order.

Source: UCI Machine Learning Repository, "Optical Recognition of Handwritten Digits"
(Alpaydin & Kaynak, 1998), CC BY 4.0; scikit-learn ships the 1797-image test part
(``optdigits.tes``) as ``sklearn.datasets.load_digits``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from byol_ref.backend import host as np  # noqa: E402  (after the path tweak)
from byol_ref.data import DIGITS_PATH, train_test_indices  # noqa: E402


def main(out: Path = DIGITS_PATH) -> None:
    """Load sklearn's digits, split them, write ``out`` and print a summary."""
    try:
        from sklearn.datasets import load_digits  # dev-only dependency
    except ImportError:
        raise SystemExit("make_digits_npz.py: scikit-learn is not installed here; it is a development tool's "
                         "dependency only: pip install --target /tmp/skl scikit-learn, then "
                         "PYTHONPATH=/tmp/skl python3 scripts/make_digits_npz.py") from None

    d = load_digits()
    images = np.asarray(d.images)  # (1797, 8, 8) float64 holding integers 0..16
    if images.shape != (1797, 8, 8) or not np.array_equal(images, np.round(images)):
        raise ValueError(f"unexpected sklearn digits: shape {images.shape}")
    if images.min() < 0 or images.max() > 16:
        raise ValueError(f"unexpected pixel range {images.min()}..{images.max()}")
    x = images.astype(np.uint8)
    y = np.asarray(d.target).astype(np.int64)  # (1797,)
    train, test = train_test_indices(len(y), 0.2, np.random.default_rng(0), labels=y)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, x_train=x[train], y_train=y[train], x_test=x[test], y_test=y[test])
    print(f"wrote {out}: train {len(train)}, test {len(test)}")
    print("train per class:", np.bincount(y[train]).tolist())
    print("test per class: ", np.bincount(y[test]).tolist())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="It rewrites the data file the package ships unless --out says otherwise.")
    ap.add_argument("--out", type=Path, default=DIGITS_PATH, help=f"where to write (default {DIGITS_PATH})")
    main(ap.parse_args().out)
