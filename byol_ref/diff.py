"""Compare two traces tensor by tensor and name the first divergence in execution order.

``diff_traces(a, b)`` returns a :class:`DiffReport`: for every name, the shapes, dtypes,
max absolute and max relative error and a status; the names present on one side only; and
the first tensor, in execution order, that is outside tolerance. Element ``i`` agrees when

    |a_i - b_i| <= atol + rtol * max(|a_i|, |b_i|)

(symmetric in a and b; NaN agrees only with NaN at the same place; infinities must match
exactly). The relative error reported is ``max_i |a_i - b_i| / max(|a_i|, |b_i|)`` over the
elements where the denominator is not 0.

Execution order is A's (its ``__order__``, else its file order), except when only B is a
byol-ref trace (has ``__meta__``): then B's order is used, so ``byol-ref diff mine.npz
ref.npz`` and ``byol-ref diff ref.npz mine.npz`` name the same first divergence. Names only
in B come last. A value mismatch or a shape mismatch is a divergence; a dtype mismatch is
reported and is a divergence unless ``ignore_dtype`` (values are then compared in float64), but
integers of two widths that hold the same values agree (Haiku's int32 batch-norm counter against
byol-ref's int64 ``count``);
names present on one side only are listed and make the comparison fail unless
``only_common`` (either side) or ``subset`` (names only in B: A, a step recorded from another
implementation, need not hold all of byol-ref's intermediates, but every tensor it holds must be
compared), but they are never the "first divergence".

Command line: ``byol-ref diff A.npz B.npz [--rtol R] [--atol A] [--only-common] [--subset]
[--ignore-dtype] [--transpose-weights a|b] [--all] [--json]``; exit status 0 when everything
agrees, 1 otherwise, 2 on a usage error.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import asdict, dataclass, field

from .backend import host as np
from .checks import check_bool, check_path, same_dtype
from .trace import Trace, load_trace

__all__ = ["TensorDiff", "DiffReport", "diff_traces", "diff_files", "format_report", "divergence_hint",
           "DEFAULT_RTOL", "DEFAULT_ATOL"]

DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 1e-12
_STEP_RE = re.compile(r"^(step(\d+)|init)\.(.*)$")


@dataclass
class TensorDiff:
    """One name's comparison.

    Attributes:
        name: the trace name.
        status: ``"ok"``, ``"mismatch"`` (values outside tolerance), ``"shape"``, ``"dtype"``
            (dtypes differ; values may still agree, see ``values_ok``), ``"only_a"`` or ``"only_b"``.
        shape_a, shape_b, dtype_a, dtype_b: as stored (None on the missing side).
        max_abs, max_rel: errors over all elements (None when not comparable).
        n_bad: number of elements outside tolerance.
        worst_index: index of the largest tolerance violation (or of max_abs when all agree).
        a_value, b_value: the two values at worst_index.
        values_ok: whether the values agree within tolerance (None when not comparable).
        scale: the tensor's largest finite magnitude, over both sides (None when not comparable).
    """

    name: str
    status: str
    shape_a: list | None = None
    shape_b: list | None = None
    dtype_a: str | None = None
    dtype_b: str | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    n_bad: int = 0
    worst_index: list | None = None
    a_value: float | None = None
    b_value: float | None = None
    values_ok: bool | None = None
    scale: float | None = None


@dataclass
class DiffReport:
    """Result of diff_traces.

    Attributes:
        rtol, atol: the tolerances used.
        tensors: TensorDiff for every name, in execution order.
        only_a, only_b: names present on one side only.
        first_divergence: the first name in execution order that diverges (None if none).
        first_step: its step (``"init"`` or an int), and ``first_tensor`` the name without the step.
        ok: True when everything agrees (under only_common / ignore_dtype).
        only_common, subset, ignore_dtype: the options it was made with.
    """

    rtol: float
    atol: float
    tensors: list = field(default_factory=list)
    only_a: list = field(default_factory=list)
    only_b: list = field(default_factory=list)
    first_divergence: str | None = None
    first_step: int | str | None = None
    first_tensor: str | None = None
    ok: bool = True
    a_label: str = "A"
    b_label: str = "B"
    only_common: bool = False
    subset: bool = False
    ignore_dtype: bool = False

    def hint(self) -> str | None:
        """Where to look for the first divergence: :func:`divergence_hint`, or, when only its
        dtype differs, that (the values agree within tolerance); when one side is float32 and the
        difference is no more than its rounding (:data:`ROUNDING_UNITS`), that comes first; when the
        input views differ in shape, that comes before all: the two traces are not of the same work."""
        first = next((d for d in self.tensors if d.name == self.first_divergence), None)
        if first is not None and first.status == "dtype":
            return (f"the dtypes only ({first.dtype_a} vs {first.dtype_b}), the values agree within tolerance: "
                    "--ignore-dtype compares the values alone")
        hint = divergence_hint(self.first_divergence)
        inputs = _input_shape_note(self.tensors)
        if inputs is not None:
            alone = f"; on its own, the first divergence ({self.first_tensor}) points to: {hint}"
            return inputs + (alone if hint else "")
        rounding = _rounding_note(first)
        if rounding is not None:
            return rounding + (f"; if it is more than rounding: {hint}" if hint else "")
        return hint

    def to_dict(self) -> dict:
        """Every field, and ``hint``: where to look for the first divergence (:meth:`hint`)."""
        return {**asdict(self), "hint": self.hint()}


#: A first divergence no larger than this many units of the coarser side's eps times the tensor's largest
#: value is reported as that dtype's rounding, where one side is float32 (or float16): two correct float32
#: steps differ from float64 by a few units to a few tens (docs/verifying.md section 5, float32), a wrong
#: convention by far more.
ROUNDING_UNITS = 1000


def _rounding_note(d: TensorDiff | None) -> str | None:
    """What to say when a first divergence is no larger than the rounding of its coarser float dtype, a
    float32 trace compared with a float64 one at float64's tolerances, say: None otherwise (and always
    where both sides are float64)."""
    if d is None or d.status != "mismatch":  # (a mismatch has both dtypes, its scale and errors; a 0 scale: below)
        return None
    floats = [np.dtype(t) for t in (d.dtype_a, d.dtype_b) if np.dtype(t).kind == "f"]  # (integers have no eps)
    if not floats:
        return None
    coarse = max(floats, key=lambda t: float(np.finfo(t).eps))
    eps = float(np.finfo(coarse).eps)
    unit = eps * d.scale  # (0 where the scale is subnormal: a float64 5e-324 against a float32 NaN)
    units = d.max_abs / unit if unit else float("inf")
    if coarse.itemsize >= 8 or units > ROUNDING_UNITS:
        return None
    return (f"{coarse.name} rounding, by the look of it: the largest difference, {d.max_abs:.2g}, is {units:.2g} "
            f"units of {coarse.name}'s eps ({eps:.2g}) times the tensor's largest value ({d.scale:.2g}), and "
            "element-wise tolerances fail on rounding where values cancel toward 0. Compare each side in "
            f"{coarse.name} with a float64 trace of the same inputs instead (docs/verifying.md section 5, "
            "float32)")


def _input_shape_note(tensors) -> str | None:
    """What to say when an input view has one shape in A and another in B (None otherwise): then the
    traces are of different batch sizes or input widths, and every later difference, the learning rate's
    batch scaling first, may follow from that alone."""
    for d in tensors:
        m = _STEP_RE.match(d.name)
        if d.status == "shape" and (m.group(3) if m else d.name).startswith("input."):
            return (f"the input views differ in shape ({d.name}: {_shape(d.shape_a)} in A, {_shape(d.shape_b)} in "
                    "B): the two traces are of different batch sizes or input widths, so every difference may "
                    "follow from that (the learning rate first, where it scales with the batch); trace both from "
                    "the same views (--inputs, or the same --dims and --batch)")
    return None


def _shape(shape) -> str:
    """A stored shape as the report writes it: ``4x6``; ``()`` for a scalar, ``-`` where it is missing."""
    return "-" if shape is None else "x".join(map(str, shape)) or "()"


def _as_trace(x, label) -> Trace:
    if isinstance(x, Trace):
        return x
    if isinstance(x, dict):
        odd = [k for k in x if not isinstance(k, str)]
        if odd:  # (it was "'int' object has no attribute 'startswith'")
            raise TypeError(f"{label} must be a Trace or a dict name -> array, got a dict with the key {odd[0]!r} "
                            f"({type(odd[0]).__name__}); names are strings")
        return Trace({k: v for k, v in x.items() if not k.startswith("__")}, {})
    raise TypeError(f"{label} must be a Trace or a dict name -> array, got {type(x).__name__}")


def _compare(name, a, b, rtol, atol, labels=("A", "B")) -> TensorDiff:
    a, b = np.asarray(a), np.asarray(b)
    d = TensorDiff(name, "ok", list(a.shape), list(b.shape), a.dtype.name, b.dtype.name)
    if a.shape != b.shape:
        d.status = "shape"
        return d
    for arr, side in zip((a, b), labels):  # (the files' paths, from diff_files and the command line)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name!r} in {side} has dtype {arr.dtype}; traces hold numbers only")
    x, y = a.astype("float64"), b.astype("float64")
    both_nan = np.isnan(x) & np.isnan(y)
    same_inf = np.isinf(x) & (x == y)
    # (silent: inf - inf is NaN here, and masked, as equal infinities agree; 1e308 - -1e308 is inf, as is an
    # error over a scale of 0, NaN against 0, or over a subnormal one)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        err = np.where(both_nan | same_inf, 0.0, np.abs(x - y))
        err = np.where(np.isnan(err), np.inf, err)  # NaN on one side only: infinitely wrong
        scale = np.maximum(np.abs(np.nan_to_num(x)), np.abs(np.nan_to_num(y)))
        # a NaN or an infinity agrees only exactly, whatever the tolerances (nan_to_num makes inf 1.8e308: under
        # an rtol of 2, inf against 1 agreed)
        tol = np.where(np.isfinite(x) & np.isfinite(y), atol + rtol * scale, 0.0)
        bad = err > tol
        rel = np.where(err > 0, err / scale, 0.0)
    d.scale = float(scale.max()) if scale.size else 0.0
    d.max_abs = float(err.max()) if err.size else 0.0
    d.max_rel = float(rel.max()) if rel.size else 0.0
    d.n_bad = int(bad.sum())
    d.values_ok = d.n_bad == 0
    if err.size:
        with np.errstate(invalid="ignore"):  # (inf - inf where an rtol over 1 overflows the tolerance: masked)
            excess = np.where(bad, err - tol, -np.inf)
        flat = int(np.argmax(excess)) if d.n_bad else int(np.argmax(err))
        idx = np.unravel_index(flat, err.shape)
        d.worst_index = [int(i) for i in idx]
        d.a_value, d.b_value = float(x[idx]), float(y[idx])
    if not d.values_ok:
        d.status = "mismatch"
    elif not same_dtype(a.dtype, b.dtype) and not (a.dtype.kind in "iu" and b.dtype.kind in "iu"):
        d.status = "dtype"  # (integers of two widths holding the same values, a count, agree)
    return d


def diff_traces(a, b, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL, only_common: bool = False,
                subset: bool = False, ignore_dtype: bool = False, a_label: str = "A",
                b_label: str = "B") -> DiffReport:
    """Compare two traces (Trace objects or dicts name -> array).

    Args:
        a, b: the traces (see the module docstring for whose order is used).
        rtol, atol: tolerances (>= 0).
        only_common: names on one side only do not make the comparison fail.
        subset: names only in B do not make it fail; names only in A still do (A's every tensor
            must be compared: a name A misspells is a failure, not a silent skip).
        ignore_dtype: dtype differences do not make it fail (values still must agree).

    Returns:
        DiffReport.
    """
    for v, nm in ((rtol, "rtol"), (atol, "atol")):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < float("inf"):
            raise ValueError(f"{nm} must be a finite number >= 0, got {v!r}")
    _check_flags(only_common=only_common, subset=subset, ignore_dtype=ignore_dtype)
    ta, tb = _as_trace(a, "a"), _as_trace(b, "b")
    order = list(ta.arrays)
    if not ta.meta and tb.meta:
        # A has no recorded order (a user-written file) but B is a byol-ref trace: use B's order.
        order = [n for n in tb.arrays if n in ta.arrays] + [n for n in ta.arrays if n not in tb.arrays]
    names = order + [n for n in tb.arrays if n not in ta.arrays]
    rep = DiffReport(float(rtol), float(atol), a_label=a_label, b_label=b_label, only_common=only_common,
                     subset=subset, ignore_dtype=ignore_dtype)
    for name in names:
        if name not in tb.arrays:
            rep.tensors.append(TensorDiff(name, "only_a", list(np.shape(ta.arrays[name])), None,
                                          np.asarray(ta.arrays[name]).dtype.name))
            rep.only_a.append(name)
            continue
        if name not in ta.arrays:
            rep.tensors.append(TensorDiff(name, "only_b", None, list(np.shape(tb.arrays[name])), None,
                                          np.asarray(tb.arrays[name]).dtype.name))
            rep.only_b.append(name)
            continue
        d = _compare(name, ta.arrays[name], tb.arrays[name], rtol, atol, (a_label, b_label))
        rep.tensors.append(d)
        diverged = d.status in ("mismatch", "shape") or (d.status == "dtype" and not ignore_dtype)
        if diverged and rep.first_divergence is None:
            rep.first_divergence = name
            m = _STEP_RE.match(name)
            if m:
                rep.first_step = "init" if m.group(1) == "init" else int(m.group(2))
                rep.first_tensor = m.group(3)
            else:
                rep.first_tensor = name
    common = len(rep.tensors) - len(rep.only_a) - len(rep.only_b)
    # Nothing compared is no agreement, even with only_common (two unrelated files, say).
    rep.ok = (common > 0 and rep.first_divergence is None and (only_common or not rep.only_a)
              and (only_common or subset or not rep.only_b))
    return rep


def _check_flags(**flags) -> None:
    for name, value in flags.items():
        check_bool(value, name)


def diff_files(path_a, path_b, **kwargs) -> DiffReport:
    """diff_traces on two ``.npz`` files (read without pickle)."""
    path_a, path_b = check_path(path_a, "path_a"), check_path(path_b, "path_b")
    return diff_traces(load_trace(path_a), load_trace(path_b), a_label=str(path_a), b_label=str(path_b), **kwargs)


# Where a first divergence usually comes from: (pattern on the name after ``stepI.``/``init.``,
# the options and causes to look at). First match wins; docs/verifying.md section 5 says more.
_UPDATE = ("the optimiser's update: the learning rate (step lr), predictor_lr_mult, or the optimiser state just "
           "before it")
_HINTS = (
    (r"^(online|target)\.buffer\.", "init", "the starting running statistics: not read as written (the "
     "mapping), or another convention (bn_running: Haiku's debiased average, not its hidden EMA). With "
     "bn_running='haiku' nothing reads them at count 0, so tracing from your own starting state (--inputs) "
     "makes them agree; with 'torch' the first update reads them"),
    (r"^(online|target)\.param\.", "init", "the starting state: the weights were not read as written (the "
     "mapping, --layout, transposed Linear weights), or another init"),
    (r"^lr$", None, "the learning-rate schedule: lr x N / lr_batch_scale, K (--total-steps) and W "
     "(--warmup-steps), warmup_offset, warmup_denominator, cosine_denominator; off by ~1e-7 relative in a "
     "warm-up: float32 schedule arithmetic (lr_rounding)"),
    (r"^tau$", None, "the tau schedule: tau_base, tau_schedule, tau_denominator, tau_interval"),
    (r"^target\.param\.", None, "the target EMA: tau, ema_when (after the optimiser step, or before the "
     "forward); an ulp or so apart: its rounding (ema_form); every step 0 tensor agreeing and a warm-up from "
     "lr 0 hide a wrong ema_when until step 1"),
    (r"^input\.", None, "the views themselves: the two files were not made from the same inputs"),
    (r"\.batch_(mean|var)$", None, "batch statistics: per view or over both views (views), the biased "
     "variance and its formula (bn_var), shards (bn_shards)"),
    (r"\.norm\d+\.out$|\.sem_norm\.out$", None, "the norm layer: bn_eps / ln_eps, views, bn_var / ln_var, "
     "target_bn (batch or running statistics), or the norm itself (norm)"),
    (r"\.(fc\d+|sem_fc)\.out$", None, "a Linear layer: its weights (the mapping, transposes), a missing or "
     "extra bias (hidden_bias, head_bias, encoder_bias), weight_std"),
    (r"\.(relu\d+|sem)\.out$", None, "an activation: the layer order (layout) or the simplicial embedding "
     "(sem_simplices, sem_temperature)"),
    (r"\.normed$", None, "l2 normalisation: norm_eps_mode, norm_eps"),
    (r"\.normed\.grad$", None, "the loss form's gradient: loss_form, symmetric, the loss scale (sym_reduce)"),
    (r"\.p\.grad$", None, "the loss's backward, through the l2 normalisation: norm_eps_mode and norm_eps (their "
     "gradients part only near a zero row) if p.normed.grad agrees, else loss_form and the loss scale (sym_reduce)"),
    (r"^loss\.per_sample$", None, "the loss form (loss_form), symmetric"),
    (r"^loss\.total$", None, "the reduction: sym_reduce (sum or mean of the two directions), the batch mean"),
    (r"\.(grad|dout)$|^online\.grad\.", None, "the backward: stop_gradient, the loss scale (sym_reduce), "
     "or a layer's gradient (the first diverging dout names the layer)"),
    (r"\.buffer(_ema)?\.", None, "running statistics: bn_running (haiku debiased or torch unbiased), "
     "bn_decay, which views update them; Haiku's hidden EMA is stored debiased, h / (1 - decay^t)"),
    (r"^opt\.", None, "the optimiser: optimizer, weight_decay, momentum, lars_* (trust ratio, eps, clip), "
     "exclude (which tensors skip decay and the trust ratio)"),
    (r"^online\.param\..*\.(fc\d+|sem_fc)\.bias$", None, "a bias's update: if a batch norm follows its layer, the "
     "bias's true gradient is 0 and both sides step on rounding noise, which Adam scales up to as much as lr a "
     "step; a small difference there is that noise (docs/verifying.md section 5, tolerances; --set "
     "hidden_bias=false, SGD or LARS leave no such steps); else " + _UPDATE),
    (r"^online\.param\.", None, _UPDATE),
)


def divergence_hint(name: str | None) -> str | None:
    """Where to look for the cause of a first divergence at trace name ``name`` (None: no hint):
    the options and usual mistakes of the operation that produced it (docs/verifying.md section 5)."""
    if name is None:
        return None
    m = _STEP_RE.match(name)
    step, rest = (m.group(1), m.group(3)) if m else (None, name)
    for pattern, only, hint in _HINTS:
        if (only is None or step == only) and re.search(pattern, rest):
            return hint
    return None


def _fmt(x):
    return "-" if x is None else f"{x:.3g}"


def format_report(rep: DiffReport, *, show_all: bool = False, max_rows: int | None = 40) -> str:
    """A human-readable report: a table of diverging tensors (every tensor with show_all), the
    one-sided names, a summary and the first divergence. The table stops after ``max_rows``
    rows (None: no limit); with show_all the diverging tensors come first."""
    if not isinstance(rep, DiffReport):
        raise TypeError(f"rep must be a DiffReport (from diff_traces), got {type(rep).__name__}")
    _check_flags(show_all=show_all)
    if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(max_rows, numbers.Integral)
                                 or max_rows < 1):
        raise ValueError(f"max_rows must be an int >= 1 or None (no limit), got {max_rows!r}")
    lines = [f"byol-ref diff: A = {rep.a_label}, B = {rep.b_label} (rtol {rep.rtol:g}, atol {rep.atol:g})"]
    # (under ignore_dtype, a dtype-only row agrees: it is listed with the others that do)
    agree = ("ok", "only_a", "only_b", "dtype") if rep.ignore_dtype else ("ok", "only_a", "only_b")
    bad = [d for d in rep.tensors if d.status not in agree]
    rows = bad + [d for d in rep.tensors if d.status in agree] if show_all else bad
    max_rows = len(rows) if max_rows is None else max_rows
    if rows:
        w = max(len(d.name) for d in rows[:max_rows])
        lines.append(f"  {'name':<{w}}  {'status':<8} {'shape A':<12} {'shape B':<12} {'max abs':>9} {'max rel':>9}")
        for d in rows[:max_rows]:
            extra = ""
            if d.status == "dtype":
                extra = f"  ({d.dtype_a} vs {d.dtype_b})"
            elif d.status == "mismatch":
                extra = f"  ({d.n_bad} bad; worst at {tuple(d.worst_index)}: {d.a_value:.17g} vs {d.b_value:.17g}"
                extra += f"; {d.dtype_a} vs {d.dtype_b})" if d.dtype_a != d.dtype_b else ")"
            lines.append(f"  {d.name:<{w}}  {d.status:<8} {_shape(d.shape_a):<12} {_shape(d.shape_b):<12} "
                         f"{_fmt(d.max_abs):>9} {_fmt(d.max_rel):>9}{extra}")
        if len(rows) > max_rows:
            lines.append(f"  ... and {len(rows) - max_rows} more (--all lists them all, --json too)")
    for side, names in (("A", rep.only_a), ("B", rep.only_b)):
        passing = rep.only_common or (side == "B" and rep.subset)  # names on this side make no failure
        if names and passing and not show_all:
            lines.append(f"only in {side}: {len(names)} name(s), not compared "
                         f"({'--only-common' if rep.only_common else '--subset'}; --all lists them)")
        elif names:
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
            lines.append(f"only in {side}: {shown}")
    n = len(rep.tensors)
    n_common = n - len(rep.only_a) - len(rep.only_b)
    n_bad = sum(d.status not in agree for d in rep.tensors)
    n_dtype = sum(d.status == "dtype" for d in rep.tensors) if rep.ignore_dtype else 0
    ignored = f" (and {n_dtype} in dtype only, which --ignore-dtype lets agree)" if n_dtype else ""
    lines.append(f"{n_common} common tensor(s), {n_bad} differ{ignored}; {len(rep.only_a)} only in A, "
                 f"{len(rep.only_b)} only in B")
    if rep.first_divergence is not None:
        step = "init" if rep.first_step == "init" else (f"step {rep.first_step}" if rep.first_step is not None
                                                        else "no step")
        lines.append(f"first divergence: {step}, {rep.first_tensor}")
        hint = rep.hint()
        if hint is not None:
            lines.append(f"  look at: {hint}")
    else:
        lines.append("first divergence: none")
    if n_common == 0:
        lines.append("no tensor name is in both files, so nothing was compared")
    lines.append("result: " + ("agree" if rep.ok else "DIFFER"))
    return "\n".join(lines)
