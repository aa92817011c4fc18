"""Evaluation of learned features: linear probes, cosine kNN and collapse monitors.

Everything here runs on the host. Inputs may be NumPy or CuPy arrays (or lists); each
public function first moves them to NumPy with :func:`byol_ref.backend.to_numpy` and
works in float64, so a probe gives the same answer whichever backend trained the
encoder.

Contents:

* Multinomial logistic regression, written by hand: the softmax cross-entropy as a
  forward/backward pair, the L2-regularised objective with its gradient, and a
  deterministic full-batch L-BFGS fit with a backtracking (Armijo) line search.
* Probes built on it: :func:`linear_probe` (l2 chosen on a stratified validation
  split) and :func:`low_label_probe` (k labels per class, l2 chosen by stratified
  cross-validation on the labelled subset, averaged over repeats).
* Cosine-similarity kNN with a majority or a temperature-weighted vote.
* Collapse monitors: :func:`normalized_std`, :func:`effective_rank`,
  :func:`collapse_report`.
* :func:`probe_report` and :func:`format_table` for a side-by-side table (BYOL vs a
  random-init encoder vs raw pixels).

Shapes: ``N`` samples, ``D`` features, ``C`` classes.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from .backend import host as np
from .backend import to_numpy
from .checks import check_plain, column_mean_std, shown

__all__ = [
    "SoftmaxXentCache",
    "softmax_xent_forward",
    "softmax_xent_backward",
    "logreg_loss_and_grad",
    "LogReg",
    "fit_logreg",
    "predict",
    "accuracy",
    "stratified_split",
    "linear_probe",
    "low_label_probe",
    "knn_predict",
    "knn_accuracy",
    "normalized_std",
    "effective_rank",
    "collapse_report",
    "probe_report",
    "format_table",
]

DEFAULT_L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
# The rest of the probes' protocol, as the report uses it and records it in report.json's "probe":
# the full probe's validation share of each class, the low-label probe's draws and cross-validation folds.
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_REPEATS = 5
DEFAULT_N_FOLDS = 5

# fit_logreg starts from its optimum to first order in 1 / l2 above this l2, from w = 0, b = 0 below it.
FIRST_ORDER_L2 = 1e8


# ---------------------------------------------------------------------------------------
# Input checks (every public function validates at its boundary, then works in float64)
# ---------------------------------------------------------------------------------------

def _features(x: Any, name: str, *, min_rows: int = 1, axes: str = "(N, D)", ndim: int = 2) -> Any:
    """Return ``x`` as a finite float64 host array of shape (N, D), or raise (``axes``: how the
    message names its axes; ``ndim=1``: a vector, such as a bias (C,), with no row count)."""
    # (the host copy below would drop a mask without a word, and use the values it hides)
    check_plain({name: x}, host_copy=True)
    a = to_numpy(x)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {axes}, got shape {a.shape}")
    if ndim == 2 and (a.shape[0] < min_rows or a.shape[1] < 1):
        raise ValueError(
            f"{name} must have at least {min_rows} row(s) and 1 column, got shape {a.shape}"
        )
    a = a.astype(np.float64, copy=False)
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} must be finite, got {bad} NaN/inf value(s) in shape {a.shape}")
    return a


def _labels(y: Any, name: str, n: int | None = None, n_name: str = "features") -> Any:
    """Return ``y`` as a 1-D integer host array (of length ``n`` when given), or raise."""
    check_plain({name: y}, host_copy=True)
    a = to_numpy(y)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    if n is not None and a.shape[0] != n:
        raise ValueError(
            f"{name} has {a.shape[0]} labels but {n_name} has {n} rows; expected one label per row"
        )
    return a


def _same_width(a: Any, a_name: str, b: Any, b_name: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{a_name} has {a.shape[1]} features but {b_name} has {b.shape[1]}; expected the same D"
        )


def _nonneg_float(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__} {v!r}")
    v = float(v)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    return v


def _int_at_least(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _fraction(v: Any, name: str) -> float:
    v = _nonneg_float(v, name)
    if not 0.0 < v < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {v!r}")
    return v


def _l2_grid(grid: Any) -> tuple[float, ...]:
    if isinstance(grid, (str, bytes)):  # (a str is a sequence, of characters: "0.1" was refused as "got str '0'")
        raise TypeError(f"l2_grid must be a sequence of numbers, got {type(grid).__name__} {grid!r:.80}")
    try:
        values = tuple(grid)
    except TypeError:
        raise TypeError(f"l2_grid must be a sequence of numbers, got {type(grid).__name__}") from None
    if not values:
        raise ValueError("l2_grid must hold at least one value, got an empty sequence")
    return tuple(_nonneg_float(v, "l2_grid entry") for v in values)


def _encode(y: Any, name: str) -> tuple[Any, Any]:
    """Map labels to 0..C-1. Returns (classes (C,), y_idx (N,))."""
    classes, y_idx = np.unique(y, return_inverse=True)
    if classes.shape[0] < 2:
        raise ValueError(
            f"{name} must contain at least 2 classes, got {classes.shape[0]} ({classes.tolist()})"
        )
    return classes, y_idx.reshape(-1)


# ---------------------------------------------------------------------------------------
# Softmax cross-entropy as a layer pair
# ---------------------------------------------------------------------------------------

class SoftmaxXentCache(NamedTuple):
    """What :func:`softmax_xent_backward` needs.

    Only the probabilities (N, C) and the integer labels (N,) are kept; the one-hot
    target is never built, since the backward only subtracts 1 at each label entry.
    """

    probs: Any
    y: Any


def softmax_xent_forward(logits: Any, y: Any) -> tuple[float, SoftmaxXentCache]:
    """Mean softmax cross-entropy of integer labels under logits.

    loss = mean_i [ logsumexp(logits_i) - logits_i[y_i] ]

    Args:
        logits: class scores, shape (N, C), finite.
        y: integer labels in [0, C), shape (N,).

    Returns:
        (loss, cache): the scalar mean loss (float) and a :class:`SoftmaxXentCache`.

    Raises:
        ValueError / TypeError: bad shapes, non-finite logits, non-integer or
        out-of-range labels.

    References:
        CS231n ``softmax_loss``; Bishop, *Pattern Recognition and Machine Learning*
        (2006), section 4.3.4 (multiclass logistic regression).
    """
    logits = _features(logits, "logits")
    n, c = logits.shape
    y = _labels(y, "y", n, "logits")
    if y.size and (y.min() < 0 or y.max() >= c):
        raise ValueError(
            f"y must hold labels in [0, {c}) for logits with C={c}, got range "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    # log-sum-exp stabilisation: subtracting the row max leaves the softmax unchanged and
    # makes the largest exponent exp(0) = 1, so nothing overflows and the sum is >= 1
    # (its log never sees 0).
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, C)
    lse = np.log(np.exp(shifted).sum(axis=1))  # (N,)
    log_probs = shifted - lse[:, None]  # (N, C)
    rows = np.arange(n)
    loss = float(-log_probs[rows, y].mean())
    probs = np.exp(log_probs)  # (N, C), rows sum to 1
    return loss, SoftmaxXentCache(probs, y)


def softmax_xent_backward(dloss: Any, cache: SoftmaxXentCache) -> Any:
    """Gradient of :func:`softmax_xent_forward` with respect to the logits.

    d loss / d logits_ij = (probs_ij - [j == y_i]) / N, times the upstream ``dloss``.

    Args:
        dloss: upstream gradient of the scalar loss (a float).
        cache: from :func:`softmax_xent_forward`.

    Returns:
        dlogits: shape (N, C); a new array (never aliases the cache).

    References:
        CS231n ``softmax_loss``.
    """
    if not isinstance(cache, SoftmaxXentCache):
        raise TypeError(f"cache must be the SoftmaxXentCache of softmax_xent_forward, got {type(cache).__name__}")
    if isinstance(dloss, np.ndarray) and dloss.ndim == 0 and dloss.dtype.kind in "iuf":
        dloss = dloss.item()  # a 0-d array is its number
    if isinstance(dloss, (bool, np.bool_)) or not isinstance(dloss, (int, float, np.integer, np.floating)):
        raise TypeError(f"dloss must be a real number (the loss is a scalar), got {type(dloss).__name__} {dloss!r}")
    if not math.isfinite(dloss):
        raise ValueError(f"dloss must be finite, got {dloss!r}")
    probs, y = cache
    n = probs.shape[0]
    dlogits = probs.copy()  # (N, C)
    dlogits[np.arange(n), y] -= 1.0
    dlogits *= float(dloss) / n  # the 1/N of the mean
    return dlogits


def logreg_loss_and_grad(w: Any, b: Any, x: Any, y: Any, l2: float) -> tuple[float, Any, Any]:
    """L2-regularised multinomial logistic regression objective and its gradient.

    loss = mean_i CE(softmax(x_i w + b), y_i) + 0.5 * l2 * ||w||_F^2

    The penalty covers the weights only; the bias is not regularised (shrinking it
    would pull the class priors towards uniform for no reason).

    Args:
        w: weights, shape (D, C).
        b: biases, shape (C,).
        x: features, shape (N, D).
        y: integer labels in [0, C), shape (N,).
        l2: regularisation strength, >= 0.

    Returns:
        (loss, dw, db): scalar loss, dw of shape (D, C), db of shape (C,).

    References:
        Bishop (2006), section 4.3.4; Nocedal & Wright, *Numerical Optimization*
        (2nd ed., 2006), chapter 7 (the objective L-BFGS minimises in :func:`fit_logreg`).
    """
    x = _features(x, "x")
    w = _features(w, "w", axes="(D, C)")  # (a str, complex or NaN w or b would fail later, named as the logits)
    b = _features(b, "b", ndim=1, axes="(C,)")
    if w.ndim != 2 or w.shape[0] != x.shape[1]:
        raise ValueError(f"w must have shape (D, C) with D={x.shape[1]}, got {w.shape}")
    if b.shape != (w.shape[1],):
        raise ValueError(f"b must have shape (C,) = ({w.shape[1]},), got {b.shape}")
    return _logreg_objective(w, b, x, y, _nonneg_float(l2, "l2"))


def _logreg_objective(w, b, x, y, l2: float) -> tuple[float, Any, Any]:
    """:func:`logreg_loss_and_grad` of checked arguments: :func:`fit_logreg` checks its x and l2
    once, where each of its hundreds of evaluations would scan all of x again (a tenth of a
    report's time on 56,000 x 784 inputs). The logits and labels are still checked each time."""
    logits = x @ w + b  # (N, C)
    xent, cache = softmax_xent_forward(logits, y)
    dlogits = softmax_xent_backward(1.0, cache)  # (N, C)
    loss = xent + 0.5 * l2 * float(np.sum(w * w))
    dw = x.T @ dlogits + l2 * w  # (D, C): the penalty's gradient goes on w only
    db = dlogits.sum(axis=0)  # (C,)
    return loss, dw, db


# ---------------------------------------------------------------------------------------
# Fitting: standardise, then full-batch L-BFGS with an Armijo backtracking line search
# ---------------------------------------------------------------------------------------

class LogReg(NamedTuple):
    """A fitted multinomial logistic regression.

    Predictions are ``argmax(((x - mean) / std) @ w + b)``, mapped through ``classes``.

    Attributes:
        w: weights in standardised feature space, shape (D, C).
        b: biases, shape (C,).
        mean: train feature means, shape (D,).
        std: train feature stds (constant features get 1), shape (D,).
        classes: the sorted distinct train labels, shape (C,).
        n_iter: L-BFGS iterations taken.
        converged: True when the max-abs gradient reached ``tol``.
    """

    w: Any
    b: Any
    mean: Any
    std: Any
    classes: Any
    n_iter: int = 0
    converged: bool = False


def _standardise_stats(x: Any, name: str = "x") -> tuple[Any, Any]:
    """Per-feature mean and (biased, ddof=0) std of x (N, D), with constant features safe.

    A feature whose spread is at rounding level relative to its magnitude (for example a
    pixel that is always 0, or a column of identical values whose computed std is 1e-17)
    gets std 1, so it maps to (nearly) 0 instead of to amplified rounding noise. Values so
    large that the std overflows (1e300 squared) are refused, naming ``name``: an inf std
    would zero the feature in the fit and in every prediction without a word.
    """
    mean, std = column_mean_std(x, name, "features")  # (D,) each
    scale = np.abs(x).max(axis=0)  # (D,)
    std = np.where(std <= 1e-12 * scale, 1.0, std)  # `<=` also catches the all-zero column
    return mean, std


def _two_loop(g, pairs):
    """The L-BFGS direction -H g, by the two-loop recursion.

    Args:
        g: the gradient, shape (P,).
        pairs: the (s, y, rho = 1 / s'y) curvature pairs, oldest first; none means the
            first step (or one after a reset): steepest descent, at most unit length, so
            the trial point stays in a region where the quadratic model is sensible.

    Returns:
        d of shape (P,), a new array.

    References:
        Nocedal & Wright (2006), Algorithm 7.4, with H0 = gamma I, gamma = s'y / y'y
        (eq. 7.20) from the newest pair.
    """
    if not pairs:
        return -g / max(1.0, float(np.linalg.norm(g)))
    q = g.copy()
    alphas = []
    for s, yv, rho in reversed(pairs):
        a = rho * float(s @ q)
        q -= a * yv
        alphas.append(a)
    s, yv, _ = pairs[-1]
    q *= float(s @ yv) / float(yv @ yv)  # H0 = gamma I, eq. (7.20)
    for (s, yv, rho), a in zip(pairs, reversed(alphas)):
        beta = rho * float(yv @ q)
        q += (a - beta) * s
    return -q


def _lbfgs(fun, theta0, *, max_iter: int, tol: float, memory: int = 10):
    """Minimise a smooth function with L-BFGS and a backtracking (Armijo) line search.

    Args:
        fun: theta (P,) -> (f, g) with g of shape (P,).
        theta0: starting point, shape (P,).
        max_iter: maximum number of iterations (each takes one line search).
        tol: stop when max |g| <= tol.
        memory: number of (s, y) curvature pairs kept.

    Returns:
        (theta, n_iter, converged).

    References:
        Nocedal & Wright (2006), Algorithm 7.4 (two-loop recursion, :func:`_two_loop`)
        and Algorithm 3.1 (backtracking line search).
    """
    c1 = 1e-4  # Armijo sufficient-decrease constant (Nocedal & Wright's usual choice)
    theta = theta0.copy()
    f, g = fun(theta)
    pairs: list[tuple[Any, Any, float]] = []  # (s, y, rho = 1 / s'y), oldest first
    for it in range(max_iter):
        if np.max(np.abs(g)) <= tol:
            return theta, it, True
        d = _two_loop(g, pairs)
        slope = float(g @ d)
        if not slope < 0:  # not a descent direction (rounding): restart from steepest descent
            pairs.clear()
            d = _two_loop(g, pairs)
            slope = float(g @ d)
        # Backtracking: halve the step until f drops by at least c1 * t * |slope|.
        t = 1.0
        for _ in range(60):
            f_new, g_new = fun(theta + t * d)
            if f_new <= f + c1 * t * slope:
                break
            t *= 0.5
        else:
            if pairs:  # the quasi-Newton model misled us: forget it and try steepest descent
                pairs.clear()
                continue
            return theta, it, False  # no decrease at rounding level along -g: stop here
        s = t * d
        yv = g_new - g
        sy = float(s @ yv)
        # Keep the pair only if it carries positive curvature (always true in exact
        # arithmetic for this convex objective; guards against rounding when l2 = 0).
        if sy > 1e-10 * float(np.linalg.norm(s)) * float(np.linalg.norm(yv)):
            pairs.append((s, yv, 1.0 / sy))
            if len(pairs) > memory:
                pairs.pop(0)
        theta = theta + s
        f, g = f_new, g_new
    return theta, max_iter, bool(np.max(np.abs(g)) <= tol)


def fit_logreg(x: Any, y: Any, *, l2: float, max_iter: int = 500, tol: float = 1e-6) -> LogReg:
    """Fit L2-regularised multinomial logistic regression by full-batch L-BFGS.

    Features are first standardised with the train mean and (biased) std, so ``l2``
    is measured in standardised units and one grid of ``l2`` values suits features
    of any scale (raw pixels, encoder outputs, projections). The objective is
    :func:`logreg_loss_and_grad` on the standardised features, started from w = 0,
    b = 0 (above ``FIRST_ORDER_L2``, from the optimum to first order in 1 / l2: see ``l2``). It
    is convex, and strictly so in w when l2 > 0: the optimal w is one, whatever the start. The
    optimal b is one only up to a constant added to every class (which changes no prediction);
    as db sums to 0, every step from a b that sums to 0 keeps b.sum() = 0, and so picks one.
    Deterministic: no randomness anywhere. In scikit-learn terms this is
    ``StandardScaler`` then ``LogisticRegression(C=1 / (l2 * N))`` (multinomial, intercept
    unpenalised), the same optimum; sklearn's default, C=1 on unscaled features, is another probe.

    Args:
        x: train features, shape (N, D).
        y: integer train labels, shape (N,), at least 2 distinct values.
        l2: regularisation strength on w, >= 0 (with 0 and separable data the optimum
            is at infinity: the fit stops once the gradient falls below ``tol``, or, for a
            ``tol`` below what float64 resolves, once the loss has rounded to 0, ``converged``
            False). Above ``FIRST_ORDER_L2`` (1e8) the fit starts from that l2's optimum to first
            order in 1 / l2: b at the centred log class frequencies (the intercept-only optimum,
            which predicts the majority class) and w = -dw / l2, whose gradient is already of order
            1 / l2; ``converged`` still says whether the gradient reached ``tol``.
        max_iter: maximum L-BFGS iterations.
        tol: stop when the max-abs gradient of the objective is <= tol.

    Returns:
        A :class:`LogReg`.

    References:
        Nocedal & Wright (2006), chapter 7 (L-BFGS) and section 3.1 (backtracking);
        Kornblith et al., "Do Better ImageNet Models Transfer Better?", CVPR 2019
        (L-BFGS logistic-regression probe with l2 chosen on a validation split).
    """
    x = _features(x, "x")
    y = _labels(y, "y", x.shape[0], "x")
    l2 = _nonneg_float(l2, "l2")
    max_iter = _int_at_least(max_iter, "max_iter", 1)
    tol = _nonneg_float(tol, "tol")
    classes, y_idx = _encode(y, "y")
    mean, std = _standardise_stats(x, "x")
    xs = (x - mean) / std  # (N, D)
    d, c = xs.shape[1], classes.shape[0]

    def fun(theta):
        w, b = theta[: d * c].reshape(d, c), theta[d * c:]
        loss, dw, db = _logreg_objective(w, b, xs, y_idx, l2)
        return loss, np.concatenate([dw.ravel(), db])

    theta0 = np.zeros(d * c + c)
    if l2 > FIRST_ORDER_L2:
        # From w = 0, b = 0, L-BFGS cannot reach this optimum: w's curvature (l2) outweighs b's (O(1)) by
        # more than float64 resolves, so the inverse-Hessian model it learns holds no trace of b's: from
        # ~3e14 up some runs stalled short of the optimal b (a fifth to a third of the fits at 1e18 to 1e20
        # ended at max_iter, b off by up to 0.2), and from ~1e21 not one step is accepted. So it starts at the
        # optimum to first order in 1 / l2: the intercept-only one, softmax(b) = the class frequencies
        # (b = centred log counts, so b.sum() = 0 as on every other path), with w = -dw(0, b) / l2, a
        # Newton step in w on the Hessian's l2 I (the data's part is O(1) in standardised units; b's
        # first-order shift is 0, as the standardised features have mean 0). The gradient there is of
        # order 1 / l2, so the default tol holds at once; L-BFGS goes on where it does not.
        log_counts = np.log(np.bincount(y_idx, minlength=c).astype(float))  # (C,): every class is present
        b0 = log_counts - log_counts.mean()  # (C,)
        dw0 = _logreg_objective(np.zeros((d, c)), b0, xs, y_idx, l2)[1]  # (D, C)
        theta0 = np.concatenate([(-dw0 / l2).ravel(), b0])
    theta, n_iter, converged = _lbfgs(fun, theta0, max_iter=max_iter, tol=tol)
    w = theta[: d * c].reshape(d, c).copy()
    b = theta[d * c:].copy()
    return LogReg(w, b, mean, std, classes, n_iter, converged)


def predict(model: LogReg, x: Any) -> Any:
    """Predicted labels of a fitted :class:`LogReg`.

    Args:
        model: from :func:`fit_logreg`.
        x: features, shape (N, D) with the D the model was fitted on.

    Returns:
        labels, shape (N,), drawn from ``model.classes``.
    """
    if not isinstance(model, LogReg):
        raise TypeError(f"model must be a LogReg from fit_logreg, got {type(model).__name__}")
    x = _features(x, "x")
    if x.shape[1] != model.w.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but the model expects D={model.w.shape[0]}")
    logits = ((x - model.mean) / model.std) @ model.w + model.b  # (N, C)
    return model.classes[np.argmax(logits, axis=1)]


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of equal entries.

    Args:
        y_true: labels, shape (N,), N >= 1.
        y_pred: labels, shape (N,).

    Returns:
        accuracy in [0, 1].
    """
    y_true = _labels(y_true, "y_true")
    y_pred = _labels(y_pred, "y_pred", y_true.shape[0], "y_true")
    if y_true.size == 0:
        raise ValueError("y_true must hold at least one label, got 0")
    return float(np.mean(y_true == y_pred))


# ---------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------

def stratified_split(y: Any, val_fraction: float, seed: int = 0) -> tuple[Any, Any]:
    """Split indices into train and validation parts class by class.

    Each class with n_c examples sends round(val_fraction * n_c) of them to validation,
    clipped to [1, n_c - 1] so that both parts see every class that has >= 2 examples
    (a class with 1 example stays in train).

    Args:
        y: integer labels, shape (N,).
        val_fraction: in (0, 1).
        seed: seed of the permutation (NumPy PCG64), an int >= 0.

    Returns:
        (train_idx, val_idx): sorted int arrays that partition range(N).
    """
    y = _labels(y, "y")
    if y.size == 0:  # (there is nothing to split; it was 'need at least one array to concatenate')
        raise ValueError("y must hold at least one label, got 0")
    val_fraction = _fraction(val_fraction, "val_fraction")
    rng = np.random.default_rng(_int_at_least(seed, "seed", 0))
    train, val = [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_val = min(max(int(round(val_fraction * idx.size)), 1), idx.size - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _select_l2(folds, x: Any, y: Any, grid: tuple[float, ...], max_iter: int) -> tuple[float, float]:
    """Pick the l2 of ``grid`` with the most correct held-out predictions over ``folds``.

    Ties go to the larger l2 (the simpler model). Returns (l2, held-out accuracy).
    """
    def correct(l2: float) -> int:  # held-out predictions that are right, over every fold
        return sum(int(np.sum(predict(fit_logreg(x[tr], y[tr], l2=l2, max_iter=max_iter), x[va]) == y[va]))
                   for tr, va in folds)

    most, best = max((correct(l2), l2) for l2 in grid)  # (compared as pairs: a tie goes to the larger l2)
    return best, most / sum(va.size for _, va in folds)


def _probe_inputs(x_train, y_train, x_test, y_test):
    x_train = _features(x_train, "x_train")
    y_train = _labels(y_train, "y_train", x_train.shape[0], "x_train")
    x_test = _features(x_test, "x_test")
    y_test = _labels(y_test, "y_test", x_test.shape[0], "x_test")
    _same_width(x_train, "x_train", x_test, "x_test")
    _standardise_stats(x_train, "x_train")  # (the fits standardise it: an overflow there named "x")
    return x_train, y_train, x_test, y_test


def linear_probe(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = 0,
    max_iter: int = 500,
) -> dict:
    """Linear-probe accuracy with l2 chosen on a stratified validation split.

    1. Split the train set into fit/validation parts (:func:`stratified_split`).
    2. For each l2 in ``l2_grid``, fit on the fit part and score on the validation part;
       keep the best (ties to the larger l2).
    3. Refit on the whole train set with that l2 and report test accuracy.

    Args:
        x_train: train features, shape (N, D).
        y_train: integer train labels, shape (N,).
        x_test: test features, shape (M, D).
        y_test: integer test labels, shape (M,).
        l2_grid: candidate l2 values (standardised-feature units, see :func:`fit_logreg`).
        val_fraction: share of each class held out for validation, in (0, 1).
        seed: seed of the split, an int >= 0.
        max_iter: L-BFGS iteration cap per fit.

    Returns:
        dict with ``accuracy`` (test, in [0, 1]), ``l2`` (chosen), ``val_accuracy`` and
        ``converged`` (the final fit reached the gradient tolerance within max_iter).

    Raises:
        ValueError: bad inputs, or no class of y_train with the 2 examples a validation split needs.

    Examples:
        >>> from byol_ref.data import synthetic
        >>> from byol_ref.evaluate import linear_probe
        >>> d = synthetic(n=200, dim=8, n_classes=4, seed=0)
        >>> res = linear_probe(d.x_train, d.y_train, d.x_test, d.y_test, seed=0)
        >>> sorted(res), round(res["accuracy"], 3), res["l2"]
        (['accuracy', 'converged', 'l2', 'val_accuracy'], 0.9, 1.0)

    References:
        Kornblith et al., CVPR 2019, section 3 (linear evaluation protocol);
        BYOL (Grill et al., NeurIPS 2020), appendix C.1 (linear evaluation).
    """
    x_train, y_train, x_test, y_test = _probe_inputs(x_train, y_train, x_test, y_test)
    grid = _l2_grid(l2_grid)
    max_iter = _int_at_least(max_iter, "max_iter", 1)
    seed = _int_at_least(seed, "seed", 0)
    _encode(y_train, "y_train")
    tr, va = stratified_split(y_train, val_fraction, seed)
    if va.size == 0:  # only when every class has 1 example (stratified_split keeps it in train)
        raise ValueError(
            "linear_probe's validation split is empty: every class of y_train has only 1 example, and the "
            "split needs at least 2 examples per class (one to fit, one to validate the l2 choice)"
        )
    if np.unique(y_train[tr]).size < 2:
        raise ValueError("y_train leaves fewer than 2 classes in the fit part of the split")
    l2, val_acc = _select_l2([(tr, va)], x_train, y_train, grid, max_iter)
    model = fit_logreg(x_train, y_train, l2=l2, max_iter=max_iter)
    return {
        "accuracy": accuracy(y_test, predict(model, x_test)),
        "l2": l2,
        "val_accuracy": val_acc,
        "converged": bool(model.converged),  # (False: stopped above the gradient tolerance)
    }


def _sample_per_class(y: Any, k: int, rng) -> Any:
    """k distinct indices of each class of y, in a seeded random order. Shape (C * k,)."""
    out = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        if idx.size < k:
            raise ValueError(
                f"labels_per_class={k} but class {shown(cls)} of y_train has only {idx.size} examples"
            )
        out.append(rng.choice(idx, size=k, replace=False))
    return np.concatenate(out)


def low_label_probe(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    labels_per_class: int = 10,
    seed: int = 0,
    repeats: int = DEFAULT_REPEATS,
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID,
    n_folds: int = DEFAULT_N_FOLDS,
    max_iter: int = 500,
) -> dict:
    """Linear probe trained on only ``labels_per_class`` labelled examples per class.

    For each repeat r, draw ``labels_per_class`` examples of every class without
    replacement (generator seeded with ``[seed, r]``, so repeat r is the same subset
    whatever ``repeats`` is). Choose l2 from ``l2_grid`` by stratified cross-validation
    *on that labelled subset only* (no extra labels are peeked at): the subset is cut
    into min(n_folds, labels_per_class) folds, each holding out about the same number
    of examples of every class, and the l2 with the most correct held-out predictions
    wins (ties to the larger l2). Refit on the whole subset, score on the test set.

    Args:
        x_train: train features, shape (N, D).
        y_train: integer train labels, shape (N,); every class needs at least
            ``labels_per_class`` examples.
        x_test: test features, shape (M, D).
        y_test: integer test labels, shape (M,).
        labels_per_class: labelled examples per class, >= 2 (cross-validation needs 2).
        seed: base seed of the subset draws and folds, an int >= 0.
        repeats: number of independent subsets, >= 1.
        l2_grid: candidate l2 values.
        n_folds: maximum number of cross-validation folds, >= 2.
        max_iter: L-BFGS iteration cap per fit.

    Returns:
        dict with ``accuracy`` (mean test accuracy over repeats), ``accuracy_std``
        (sample std, ddof=1; 0.0 when repeats == 1), ``accuracies`` (per repeat),
        ``l2`` (chosen per repeat), ``labels_per_class`` and ``converged`` (every final fit reached
        the gradient tolerance within max_iter).

    Examples:
        >>> from byol_ref.data import synthetic
        >>> from byol_ref.evaluate import low_label_probe
        >>> d = synthetic(n=200, dim=8, n_classes=4, seed=0)
        >>> res = low_label_probe(d.x_train, d.y_train, d.x_test, d.y_test, labels_per_class=5, repeats=2)
        >>> res["accuracies"], round(res["accuracy"], 4), res["l2"]
        ([0.85, 0.875], 0.8625, [0.1, 0.1])

    References:
        Semi-supervised evaluation of BYOL (Grill et al., NeurIPS 2020), section 4.2,
        here with a fixed number of labels per class as in small-data probes.
    """
    x_train, y_train, x_test, y_test = _probe_inputs(x_train, y_train, x_test, y_test)
    k = _int_at_least(labels_per_class, "labels_per_class", 2)
    repeats = _int_at_least(repeats, "repeats", 1)
    n_folds = _int_at_least(n_folds, "n_folds", 2)
    max_iter = _int_at_least(max_iter, "max_iter", 1)
    seed = _int_at_least(seed, "seed", 0)
    grid = _l2_grid(l2_grid)
    _encode(y_train, "y_train")
    n_folds = min(n_folds, k)
    accs, l2s, converged = [], [], []
    for r in range(repeats):
        rng = np.random.default_rng([seed, r])
        sub = _sample_per_class(y_train, k, rng)  # (C * k,), grouped by class, shuffled within
        xs, ys = x_train[sub], y_train[sub]
        # Fold f holds out positions i of each class block with i % n_folds == f; since
        # the draw is already random within a class, this is a stratified random k-fold.
        pos = np.tile(np.arange(k), sub.size // k)
        folds = [(np.flatnonzero(pos % n_folds != f), np.flatnonzero(pos % n_folds == f))
                 for f in range(n_folds)]
        l2, _ = _select_l2(folds, xs, ys, grid, max_iter)
        model = fit_logreg(xs, ys, l2=l2, max_iter=max_iter)
        accs.append(accuracy(y_test, predict(model, x_test)))
        l2s.append(l2)
        converged.append(bool(model.converged))
    acc = np.asarray(accs)
    return {
        "accuracy": float(acc.mean()),
        "accuracy_std": float(acc.std(ddof=1)) if repeats > 1 else 0.0,
        "accuracies": accs,
        "l2": l2s,
        "converged": all(converged),
        "labels_per_class": k,
    }


# ---------------------------------------------------------------------------------------
# Cosine kNN
# ---------------------------------------------------------------------------------------

def _l2_normalize_rows(x: Any) -> Any:
    """Rows of x (N, D) divided by max(||row||, 1e-12); an all-zero row stays zero.

    A row whose sum of squares overflows (entries near 1e300: finite, but not their squares)
    is first divided by its largest magnitude m, then by its norm, so that it is still a unit
    row (dividing by an inf norm would make it zero, a row like no other); every other row is
    divided by its plain norm, bit for bit as before."""
    with np.errstate(over="ignore"):
        norm = np.sqrt(np.sum(x * x, axis=1, keepdims=True))  # (N, 1)
    out = x / np.maximum(norm, 1e-12)
    big = ~np.isfinite(norm[:, 0])
    if big.any():
        scaled = x[big] / np.abs(x[big]).max(axis=1, keepdims=True)  # (B, D), largest magnitude 1
        out[big] = scaled / np.sqrt(np.sum(scaled * scaled, axis=1, keepdims=True))
    return out


# Similarities per block of knn_predict's queries (its default batch_size): 32 MiB of float64.
KNN_BLOCK = 2**22


def knn_predict(
    x_train: Any,
    y_train: Any,
    x_query: Any,
    *,
    k: int = 20,
    temperature: float | None = None,
    batch_size: int | None = None,
) -> Any:
    """k-nearest-neighbour labels under cosine similarity.

    Each query's k most similar train rows vote. With ``temperature=None`` every
    neighbour has one vote (ties between classes go to the class with the larger summed
    similarity, then the smaller label: scikit-learn's ``KNeighborsClassifier(metric="cosine")``
    gives such a tie to the smaller label instead); train rows tied for the k-th place are taken in
    their order (as a stable sort does). With a temperature T each neighbour votes
    with weight exp(sim / T), as in the InstDisc kNN monitor that lightly and
    solo-learn reuse (T = 0.1 or 0.07). Queries are processed ``batch_size`` at a time,
    so memory is O(batch_size * N) rather than O(M * N). The block changes only how the BLAS
    rounds the similarities (one query row is a matrix-vector product), which can tip a tie
    that is exact in real arithmetic (repeated or coarse features) the other way. Rows are
    divided by max(||row||, 1e-12), as torch's ``F.normalize``, so an all-zero row stays zero;
    rows shorter than 1e-12 are then not of unit length, and their similarities shrink with them
    (rescale features that small).

    Args:
        x_train: train features, shape (N, D).
        y_train: integer train labels, shape (N,).
        x_query: query features, shape (M, D).
        k: neighbours per query, 1 <= k <= N.
        temperature: None (majority vote) or T > 0 (weighted vote).
        batch_size: queries per similarity block, >= 1; None: as many as keep a block near
            ``KNN_BLOCK`` similarities (32 MiB of float64), from 1 to 1024. (Blocks of 1024 x 56,000
            took twice as long to select from, for the memory traffic.)

    Returns:
        labels, shape (M,), drawn from the values of ``y_train``.

    Examples:
        >>> import numpy as np
        >>> from byol_ref.evaluate import knn_predict
        >>> x_train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> y_train = np.array([3, 3, 7, 7])
        >>> knn_predict(x_train, y_train, np.array([[2.0, 0.1], [0.2, 3.0]]), k=2).tolist()
        [3, 7]

    References:
        Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
        Discrimination", CVPR 2018, section 3.4 (weighted kNN, eq. 8);
        lightly ``lightly/utils/benchmarking/knn.py``; solo-learn ``solo/utils/knn.py``.
    """
    x_train = _features(x_train, "x_train")
    y_train = _labels(y_train, "y_train", x_train.shape[0], "x_train")
    x_query = _features(x_query, "x_query", min_rows=0)
    _same_width(x_train, "x_train", x_query, "x_query")
    k = _int_at_least(k, "k", 1)
    if k > x_train.shape[0]:
        raise ValueError(f"k must be <= the number of train rows ({x_train.shape[0]}), got {k}")
    if temperature is not None:
        temperature = _nonneg_float(temperature, "temperature")
        if temperature == 0:
            raise ValueError("temperature must be > 0 (or None for a majority vote), got 0.0")
    batch_size = min(max(KNN_BLOCK // x_train.shape[0], 1), 1024) if batch_size is None else \
        _int_at_least(batch_size, "batch_size", 1)

    classes, y_idx = np.unique(y_train, return_inverse=True)
    y_idx = y_idx.reshape(-1)
    c = classes.shape[0]
    train_n = _l2_normalize_rows(x_train)  # (N, D)
    query_n = _l2_normalize_rows(x_query)  # (M, D)
    out = np.empty(x_query.shape[0], dtype=np.intp)
    for start in range(0, x_query.shape[0], batch_size):
        q = query_n[start:start + batch_size]  # (B, D)
        sim = q @ train_n.T  # (B, N), cosine similarities in [-1, 1]
        rows = np.arange(q.shape[0])[:, None]
        # argpartition finds the k largest in O(N), the k-th largest first (no negated copy of sim);
        # which of the rows tied for the k-th place it keeps is its own affair: those go to the
        # train rows that come first, as a stable sort would have it. Each row's k neighbours are
        # then taken in train order, so that the sums below add in one order: the same votes
        # whatever the NumPy version's selection (the BLAS's rounding of sim is another matter).
        n = sim.shape[1]
        nn = np.argpartition(sim, n - k, axis=1)[:, n - k:]  # (B, k)
        kth = sim[rows, nn[:, :1]]  # (B, 1), the k-th largest similarity
        shared = np.flatnonzero((sim >= kth).sum(axis=1) > k)  # rows whose k-th place is tied
        for i in shared:
            above, at = np.flatnonzero(sim[i] > kth[i]), np.flatnonzero(sim[i] == kth[i])
            nn[i] = np.concatenate([above, at[:k - above.size]])
        nn.sort(axis=1)
        nn_sim = sim[rows, nn]  # (B, k)
        nn_cls = y_idx[nn]  # (B, k)
        if temperature is None:
            votes = np.zeros((q.shape[0], c))  # (B, C)
            np.add.at(votes, (rows, nn_cls), 1.0)
            sim_sum = np.zeros((q.shape[0], c))
            np.add.at(sim_sum, (rows, nn_cls), nn_sim)
            # Tie-break by summed similarity: (sim_sum + k) / (2k + 1) lies in [0, 1), so
            # adding it never changes the order of different integer vote counts.
            votes += (sim_sum + k) / (2 * k + 1)
        else:
            # exp(sim / T) can overflow for small T; subtracting the row max rescales all
            # of a query's weights by one positive factor, which leaves the argmax unchanged.
            # The max is subtracted *before* dividing by T: sim - max is in [-2, 0], so the
            # logits are finite or -inf (weight 0) for any T > 0, where sim / T itself
            # overflows to inf, and inf - inf = NaN, below T ~ 1e-308. As T -> 0 the vote
            # becomes the nearest neighbour's (ties shared), its limit.
            with np.errstate(over="ignore"):  # an overflow here is to -inf: weight exactly 0
                logits = (nn_sim - nn_sim.max(axis=1, keepdims=True)) / temperature  # (B, k), <= 0
            weights = np.exp(logits)  # (B, k), in [0, 1], 1 at each row's max
            votes = np.zeros((q.shape[0], c))  # (B, C)
            np.add.at(votes, (rows, nn_cls), weights)
        out[start:start + q.shape[0]] = np.argmax(votes, axis=1)
    return classes[out]


def knn_accuracy(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    k: int = 20,
    temperature: float | None = None,
    batch_size: int | None = None,
) -> float:
    """Test accuracy of :func:`knn_predict`.

    Args:
        x_train: train features, shape (N, D).
        y_train: integer train labels, shape (N,).
        x_test: test features, shape (M, D), M >= 1.
        y_test: integer test labels, shape (M,).
        k: neighbours per query.
        temperature: None (majority vote) or T > 0 (weighted vote).
        batch_size: queries per similarity block (None: :func:`knn_predict`'s own choice).

    Returns:
        accuracy in [0, 1].

    Examples:
        >>> from byol_ref.data import synthetic
        >>> from byol_ref.evaluate import knn_accuracy
        >>> d = synthetic(n=200, dim=8, n_classes=4, seed=0)
        >>> round(knn_accuracy(d.x_train, d.y_train, d.x_test, d.y_test, k=20, temperature=0.1), 3)
        0.875

    References:
        Wu et al., CVPR 2018, section 3.4.
    """
    x_test = _features(x_test, "x_test")
    y_test = _labels(y_test, "y_test", x_test.shape[0], "x_test")
    x_train = _features(x_train, "x_train")  # (knn_predict would compare the widths and name x_test x_query)
    _same_width(x_train, "x_train", x_test, "x_test")
    pred = knn_predict(x_train, y_train, x_test, k=k, temperature=temperature, batch_size=batch_size)
    return accuracy(y_test, pred)


# ---------------------------------------------------------------------------------------
# Collapse monitors
# ---------------------------------------------------------------------------------------

def normalized_std(z: Any) -> float:
    """Mean over dimensions of the std (over samples) of the l2-normalised rows of z.

    For rows spread isotropically on the sphere each coordinate of a unit vector has
    variance 1/D, so a healthy value is about 1/sqrt(D); complete collapse (all rows
    pointing the same way) gives 0. The std is the unbiased one (ddof=1), as in
    lightly's ``std_of_l2_normalized`` (``torch.std``). Rows are divided by
    max(||z_i||, 1e-12), so an all-zero row stays zero instead of becoming NaN.

    Args:
        z: embeddings, shape (N, D), N >= 2.

    Returns:
        the mean per-dimension std, in [0, 1].

    References:
        Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021,
        section 4.1 and figure 2 (middle); lightly ``lightly/utils/debug.py``.
    """
    z = _features(z, "z", min_rows=2)
    zn = _l2_normalize_rows(z)  # (N, D)
    return float(zn.std(axis=0, ddof=1).mean())


def effective_rank(x: Any) -> float:
    """Effective rank of the column-centred x: exp of the entropy of its spectrum.

    With singular values s_i of x - mean(x, axis=0) and p_i = s_i / sum(s), the effective
    rank is exp(-sum p_i log p_i). It is r for r equal non-zero singular values and lies
    in [1, min(N - 1, D)] (N centred rows span N - 1 dimensions at most). Singular values at rounding level,
    below max(N, D) * eps * ||x||_F, are dropped (they would come from centring rows that
    are equal in exact arithmetic). If none remain, x has no spread at all (complete
    collapse), where the definition has no value; this function then returns 0.0.

    Args:
        x: data, shape (N, D), N >= 2.

    Returns:
        the effective rank, a float in [1, min(N - 1, D)], or 0.0 for no spread.

    References:
        Roy & Vetterli, "The effective rank: a measure of effective dimensionality",
        EUSIPCO 2007, definition 1.
    """
    x = _features(x, "x", min_rows=2)
    scale = _exponent_scale(x)  # (the rank is the same; beyond 1e150 tol's norm was inf, below 1e-150 0)
    x = x / scale if scale != 1 else x
    xc = x - x.mean(axis=0)  # (N, D)
    s = np.linalg.svd(xc, compute_uv=False)  # (min(N, D),)
    tol = max(x.shape) * np.finfo(np.float64).eps * float(np.linalg.norm(x))
    s = s[s > tol]
    if s.size == 0:
        return 0.0
    p = s / s.sum()  # all > 0 here, so log p is finite (0 log 0 never arises)
    return float(np.exp(-np.sum(p * np.log(p))))


def _exponent_scale(x: Any) -> float:
    """1, or for values whose squares leave float64's range, the power of two at their largest
    magnitude: beyond 1e150 the squares overflow; where every value is below 1e-150 (and one is not
    0) they underflow, to 0 or to subnormals that keep few digits. x (non-empty, as ``_features``
    returns it) divided by it holds the same numbers, exactly, at another exponent."""
    big = float(np.abs(x).max())
    return 1.0 if big == 0 or 1e-150 <= big <= 1e150 else 2.0 ** math.floor(math.log2(big))


def collapse_report(z: Any, y: Any | None = None) -> dict:
    """Collapse statistics of a batch of embeddings.

    Args:
        z: embeddings, shape (N, D), N >= 2.
        y: optional integer labels, shape (N,).

    Returns:
        dict with
          ``normalized_std``: :func:`normalized_std`;
          ``healthy_std``: 1/sqrt(D), its value for isotropic rows;
          ``std_ratio``: normalized_std * sqrt(D) (about 1 healthy, 0 collapsed);
          ``effective_rank``: :func:`effective_rank`, and ``max_rank`` = min(N - 1, D), its
          largest value (the rows are centred);
          ``mean_norm``: mean row norm ||z_i||;
          ``mean_cos``: mean cosine similarity over pairs i != j (1 when collapsed);
          with ``y``: ``cos_within`` and ``cos_between``, the mean pairwise cosine
          between rows of the same class and of different classes (nan if no such pair).

    References:
        Chen & He, CVPR 2021, section 4.1; Roy & Vetterli, EUSIPCO 2007; Li et al.,
        "Understanding Collapse in Non-Contrastive Siamese Representation Learning",
        ECCV 2022 (partial dimensional collapse; why the rank is logged too).
    """
    z = _features(z, "z", min_rows=2)
    n, d = z.shape
    zn = _l2_normalize_rows(z)  # (N, D)
    # Sum of cos(z_i, z_j) over ordered pairs i != j is ||sum_i zn_i||^2 - sum_i ||zn_i||^2,
    # which costs O(N D) instead of the O(N^2 D) of the full Gram matrix.
    sq = np.sum(zn * zn, axis=1)  # (N,), 1 (or 0 for a zero row)
    total = float(np.sum(zn.sum(axis=0) ** 2) - sq.sum())
    std = normalized_std(z)
    scale = _exponent_scale(z)
    zs = z / scale if scale != 1 else z  # (beyond 1e150 mean_norm read inf; below 1e-150 0, its squares underflowed)
    report = {
        "normalized_std": std,
        "healthy_std": 1.0 / math.sqrt(d),
        "std_ratio": std * math.sqrt(d),
        "effective_rank": effective_rank(z),
        "max_rank": min(n - 1, d),  # (N centred rows span N - 1 dimensions at most)
        "mean_norm": scale * float(np.sqrt(np.sum(zs * zs, axis=1)).mean()),
        "mean_cos": total / (n * (n - 1)),
    }
    if y is not None:
        y = _labels(y, "y", n, "z")
        within, n_within = 0.0, 0
        for cls in np.unique(y):
            m = y == cls
            nc = int(m.sum())
            within += float(np.sum(zn[m].sum(axis=0) ** 2) - sq[m].sum())
            n_within += nc * (nc - 1)
        n_between = n * (n - 1) - n_within
        report["cos_within"] = within / n_within if n_within else float("nan")
        report["cos_between"] = (total - within) / n_between if n_between else float("nan")
    return report


# ---------------------------------------------------------------------------------------
# Side-by-side report
# ---------------------------------------------------------------------------------------

def probe_report(
    feats_by_name: dict,
    y_train: Any,
    y_test: Any,
    *,
    labels_per_class: int = 10,
    k: int = 20,
    seed: int = 0,
    temperature: float | None = None,
    repeats: int = DEFAULT_REPEATS,
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID,
    progress: Callable[[int, int, str], None] | None = None,
) -> list[dict]:
    """kNN, low-label and full linear probes for several feature sets, one row each.

    Typical use: BYOL encoder vs BYOL projector vs random-init encoder vs raw pixels,
    all evaluated with the same labels, split seeds and protocol.

    Args:
        feats_by_name: name -> (train_feats (N, D_name), test_feats (M, D_name)).
        y_train: integer train labels, shape (N,).
        y_test: integer test labels, shape (M,).
        labels_per_class: labels per class of the low-label probe.
        k: kNN neighbours.
        seed: seed of the probes' splits and subsets.
        temperature: kNN vote temperature (None: majority vote).
        repeats: subsets averaged by the low-label probe.
        l2_grid: candidate l2 values of both linear probes.
        progress: called as ``progress(done, total, what)`` before each of the ``total`` probes
            (``what``: the feature set and the probe), and once more with ``done == total``.

    Returns:
        list of dicts (in the order of ``feats_by_name``) with ``name``, ``knn``,
        ``low_label``, ``low_label_std``, ``linear`` (accuracies in [0, 1]), ``linear_l2``
        (the chosen l2), ``low_label_draws`` and ``low_label_l2`` (each draw's accuracy and chosen
        l2, in draw order) and ``converged`` (every final fit of both probes reached its tolerance).
    """
    if not isinstance(feats_by_name, dict) or not feats_by_name:
        raise TypeError(
            "feats_by_name must be a non-empty dict name -> (train_feats, test_feats), "
            f"got {type(feats_by_name).__name__}"
        )
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable, got {type(progress).__name__}")
    rows = []
    done, total = 0, 3 * len(feats_by_name)

    def started(what: str) -> None:  # (the probes of the feature set `name`, three in turn)
        nonlocal done
        if progress is not None:
            progress(done, total, f"{name}: {what}")
        done += 1

    for name, pair in feats_by_name.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise TypeError(
                f"feats_by_name[{name!r}] must be a (train_feats, test_feats) pair, "
                f"got {type(pair).__name__}"
            )
        x_tr, x_te = pair
        started("low-label probe")
        low = low_label_probe(
            x_tr, y_train, x_te, y_test, labels_per_class=labels_per_class, seed=seed,
            repeats=repeats, l2_grid=l2_grid,
        )
        started("linear probe")
        lin = linear_probe(x_tr, y_train, x_te, y_test, l2_grid=l2_grid, seed=seed)
        started("kNN")
        rows.append({
            "name": str(name),
            "knn": knn_accuracy(x_tr, y_train, x_te, y_test, k=k, temperature=temperature),
            "low_label": low["accuracy"],
            "low_label_std": low["accuracy_std"],
            "low_label_draws": low["accuracies"],
            "low_label_l2": low["l2"],
            "linear": lin["accuracy"],
            "linear_l2": lin["l2"],
            "converged": low["converged"] and lin["converged"],
        })
    if progress is not None:
        progress(total, total, "done")
    return rows


_COLUMNS = (("knn", "kNN"), ("low_label", "low-label"), ("linear", "linear"))


def format_table(rows: list[dict], columns: tuple[tuple[str, str], ...] = _COLUMNS) -> str:
    """Fixed-width text table of accuracies in percent (one decimal).

    A value ``v`` in column ``key`` prints as ``100 v``; if the row also has
    ``key + "_std"``, it prints as ``mean +- std``. Missing values print as ``-``.

    Args:
        rows: dicts with a ``name`` and accuracies in [0, 1] (e.g. :func:`probe_report`).
        columns: (key, header) pairs to show after the name.

    Returns:
        the table, lines joined by newlines (no trailing newline).
    """
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}")

    def cell(row: dict, key: str) -> str:
        v = row.get(key)
        if v is None:
            return "-"
        s = f"{100.0 * float(v):.1f}"
        sd = row.get(key + "_std")
        return s if sd is None else f"{s} +- {100.0 * float(sd):.1f}"

    header = ["features"] + [h + " (%)" for _, h in columns]
    body = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or "name" not in row:
            raise TypeError(f"rows[{i}] must be a dict with a 'name', got {row!r}")
        body.append([str(row["name"])] + [cell(row, key) for key, _ in columns])
    widths = [max(len(r[j]) for r in [header] + body) for j in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first] + rest)

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body])
