"""BYOL networks: configuration, parameters, forward/backward, the objective, the EMA.

The online network is encoder -> projector -> predictor, the target network is
encoder -> projector (no predictor). Each part is a short list of steps
``(kind, name)`` (linear, batch/layer norm, ReLU) that :func:`mlp_forward` walks top to
bottom and :func:`mlp_backward` walks back up. State is plain flat dicts with dotted
keys: ``params`` (weights ``(in, out)``, biases, norm gamma/beta), ``buffers`` (batch-norm
running statistics, never inside params) and ``grads`` (exactly the keys of params).

The public API mirrors the Elixir/Axon module ``Edifice.Contrastive.BYOL``
(``build``, ``build_online``, ``build_target``, ``ema_update``, ``loss``,
``output_size``), see BYOL_FACTS section (g).
"""
from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Generic, NamedTuple, Optional, TypeVar, overload

from . import kernels
from .backend import FLOAT_DTYPES, Backend, check_dtype, get_array_module, get_backend, host
from .checks import (dataclass_from_dict, check_array, check_bool, check_choice, check_one_place, check_overwritable,
                     check_plain, check_positive_int, check_real, check_seed, same_dtype)
from .layers import (RunningStats, affine_backward, affine_forward, batch_norm_backward, batch_norm_forward,
                     group_norm_backward, group_norm_forward, layer_norm_backward, layer_norm_forward, linear_backward,
                     linear_forward, relu_backward, relu_forward, simplex_backward, simplex_forward,
                     weight_standardize_backward, weight_standardize_forward)
from .losses import (DEFAULT_EPS, EPS_MODES, LOSS_FORMS, eps_for_new_mode, l2_normalize_backward,
                     regression_loss_dn, regression_loss_forward)
from .tree import describe, describe_tree

DEFAULT_PROJECTION_DIM = 256
DEFAULT_PREDICTOR_DIM = 64
DEFAULT_HIDDEN_SIZE = 256
DEFAULT_MOMENTUM = 0.996
NORMS = ("batch", "layer", "group", "affine", "none")

# Per-layout defaults for the fields left as None in Config.
_LAYOUT_DEFAULTS = {
    # The paper / official code: Linear -> BN -> ReLU -> Linear(no bias), official loss.
    "paper": dict(norm="batch", head_bias=False, norm_eps_mode="sq_norm", loss_form="mse", symmetric=True,
                  init="haiku"),
    # Edifice.Contrastive.BYOL: ReLU before LayerNorm, biases everywhere, no norm in the
    # predictor, x / sqrt(sum x^2 + 1e-8), one-sided 2 - 2 cos, Axon's dense init.
    "edifice": dict(norm="layer", head_bias=True, norm_eps_mode="add", loss_form="2-2cos", symmetric=False,
                    init="glorot"),
}
NETWORK_LAYOUTS = tuple(_LAYOUT_DEFAULTS)  # Config.layout's choices
INITS = ("haiku", "torch", "glorot")  # Config.init's choices (init_params)


_T = TypeVar("_T")

# The fields of Config (and TrainConfig) that __post_init__ fills in when left as None (the layout's default, or
# one derived from another field) are typed Filled[T]: the constructor (and replace) takes T or None, and a
# config's field reads as T. For type checkers (mypy and pyright both) Filled is a descriptor whose __set__ takes
# T | None and whose __get__ gives T; at run time it is Optional (the annotation reads Optional[T]) and the field a
# plain one. The default FILLED_IN is None, typed Any: a checker takes no None for a Filled[T].
if TYPE_CHECKING:
    class Filled(Generic[_T]):
        @overload
        def __get__(self, obj: None, owner: Any) -> _T | None: ...
        @overload
        def __get__(self, obj: object, owner: Any) -> _T: ...
        def __get__(self, obj: object, owner: Any) -> _T | None: ...
        def __set__(self, obj: object, value: _T | None) -> None: ...
else:
    Filled = Optional
FILLED_IN: Any = None


@dataclass(frozen=True)
class Config:
    """Architecture and objective conventions of a BYOL model.

    Fields left as None take the layout's default (``paper`` or ``edifice``).

    Attributes:
        encoder_dim: input feature width D (required).
        hidden_size: encoder width H (default 256).
        projection_dim: projector output P (default 256).
        predictor_dim: predictor hidden width Q (default 64).
        projector_hidden_dim: projector hidden width (default: projection_dim, as the
            Elixir module; the paper uses 4096).
        layout: ``"paper"`` (Linear -> norm -> ReLU blocks) or ``"edifice"`` (the Elixir
            module exactly: Linear -> ReLU -> LayerNorm, no norm in the predictor).
        norm: ``"batch"``, ``"layer"``, ``"group"`` (per-sample statistics over feature
            groups; with ``weight_std`` the BN-free BYOL of Richemond et al. 2020), ``"affine"``
            (a learnable per-feature scale and shift, no statistics: with
            ``TrainConfig.data_init`` set from the data's batch statistics at step 0, the other
            BN-free BYOL of Richemond et al.) or ``"none"`` (the normalisation-free collapse
            ablation).
        norm_groups: number of feature groups G of ``norm="group"`` (must divide every
            normalised width; Wu & He's default 32).
        weight_std: standardise the weight of every Linear except the last one of projector
            and predictor (per output unit: mean 0, variance 1 over its inputs), as in
            Richemond et al.; the parameter stays the raw weight.
        ws_eps: weight-standardisation eps inside the square root.
        hidden_bias: bias on the first Linear of projector and predictor and on encoder
            linears (official: yes; lightly: no, since BN follows).
        encoder_bias: bias on the encoder's Linears, when it differs from ``hidden_bias`` (None:
            as ``hidden_bias``). The encoder stands in for a backbone, whose biases are its
            author's choice: lightly's heads have none, an MLP backbone in front of them may.
        head_bias: bias on the *last* Linear of projector and predictor (official: no).
        use_predictor: False is the no-predictor ablation (p = z).
        init: ``"haiku"`` (w ~ truncated normal, std 1/sqrt(fan_in), cut at 2 std; b = 0),
            ``"torch"`` (w, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))) or ``"glorot"`` (Axon's
            dense default: w ~ U(+-sqrt(6 / (fan_in + fan_out))), b = 0). None: the layout's
            (paper: haiku; edifice: glorot).
        target_init: ``"copy"`` (byol-pytorch, lightly's examples, solo-learn, Edifice docs),
            ``"independent"`` (official: a separate random draw) or ``"copy_encoder"`` (the
            encoder copied, the projector drawn apart: lightly's imagenet benchmark).
        bn_eps: batch-norm eps inside the square root (1e-5 everywhere).
        bn_decay: weight on the old running statistic (Haiku decay_rate 0.9 = torch momentum 0.1).
        bn_running: ``"haiku"`` (biased variance, zero-debiased EMA) or ``"torch"`` (unbiased).
        bn_var: ``"two_pass"`` or ``"one_pass"`` (official E[x^2] - mean^2) batch variance
            (one_pass clamped at 0 against rounding, which Haiku does not do).
        ln_eps: layer- and group-norm eps (Axon 1e-5).
        ln_var: ``"two_pass"`` or ``"one_pass"`` variance of layer and group norm (as ``bn_var``).
        views: ``"separate"`` (per-view batch statistics: official, lightly, solo-learn) or
            ``"concat"`` (both views as one batch of 2N: byol-pytorch).
        bn_shards: S, the number of equal shards of the batch that take their batch-norm
            statistics separately: the S replicas of data-parallel training without
            synchronised statistics (DDP without SyncBN), or the S micro-batches of gradient
            accumulation. Shard s holds rows s*N/S to (s+1)*N/S - 1 of each view; with
            ``views="concat"`` its two views form one batch of 2N/S, as each replica
            concatenates its own. The loss and the gradient stay the mean over all N samples
            (DDP averages the replicas' gradients). 1 (default): statistics over the whole
            batch, as the official code (a cross-replica mean) and SyncBN.
        bn_shard_running: which shards update the running statistics when S > 1: ``"first"``
            (DDP: the first replica's buffers are broadcast to all at every forward, so only
            shard 0's batches count) or ``"sequential"`` (accumulation: every micro-batch in
            turn, shard by shard, each view in order within a shard).
        target_bn: ``"batch"`` (target in training mode: every implementation) or ``"running"``.
        norm_eps_mode, norm_eps: l2-normalisation epsilon convention (see ``losses``).
        loss_form: ``"mse"``, ``"2-2cos"`` or ``"neg_cos"``.
        symmetric: sum both directions l(p1, z2) + l(p2, z1) (paper) or only l(p1, z2) (Edifice).
        sym_reduce: ``"sum"`` (official, loss in [0, 8]) or ``"mean"`` of the two directions.
        stop_gradient: False is the no-stop-gradient ablation: the target branch's gradient is
            added to the online gradient of the same parameter name (exact when the target
            shares the online weights, i.e. with tau = 0).
        sem_simplices: L > 0 puts a simplicial embedding (Lavoie et al. 2022) in front of the
            projector, as byol-pytorch 0.9 does by default: Linear (``projector.sem_fc``, to
            L * V features) -> norm (``projector.sem_norm``) -> a softmax over each of L groups of
            V (``projector.sem``), then the projector MLP on the L * V simplex features. 0 (the
            default): none, the projector of the BYOL paper. byol-pytorch's defaults: L = 32.
        sem_simplex_dim: V, the features per simplex (byol-pytorch: 8).
        sem_temperature: the softmax temperature tau (byol-pytorch: 0.1).
    """

    encoder_dim: int
    hidden_size: int = DEFAULT_HIDDEN_SIZE
    projection_dim: int = DEFAULT_PROJECTION_DIM
    predictor_dim: int = DEFAULT_PREDICTOR_DIM
    projector_hidden_dim: Filled[int] = FILLED_IN
    layout: str = "paper"
    norm: Filled[str] = FILLED_IN
    norm_groups: int = 32
    weight_std: bool = False
    ws_eps: float = 1e-5
    hidden_bias: bool = True
    encoder_bias: bool | None = None
    head_bias: Filled[bool] = FILLED_IN
    use_predictor: bool = True
    init: Filled[str] = FILLED_IN
    target_init: str = "copy"
    bn_eps: float = 1e-5
    bn_decay: float = 0.9
    bn_running: str = "haiku"
    bn_var: str = "two_pass"
    ln_eps: float = 1e-5
    ln_var: str = "two_pass"
    views: str = "separate"
    bn_shards: int = 1
    bn_shard_running: str = "first"
    target_bn: str = "batch"
    norm_eps_mode: Filled[str] = FILLED_IN
    norm_eps: Filled[float] = FILLED_IN
    loss_form: Filled[str] = FILLED_IN
    symmetric: Filled[bool] = FILLED_IN
    sym_reduce: str = "sum"
    stop_gradient: bool = True
    sem_simplices: int = 0
    sem_simplex_dim: int = 8
    sem_temperature: float = 0.1

    def __post_init__(self):
        check_choice(self.layout, "layout", _LAYOUT_DEFAULTS)
        for key, value in _LAYOUT_DEFAULTS[self.layout].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        if self.projector_hidden_dim is None:
            object.__setattr__(self, "projector_hidden_dim", self.projection_dim)
        if self.norm_eps is None:
            object.__setattr__(self, "norm_eps", DEFAULT_EPS[self.norm_eps_mode]
                               if self.norm_eps_mode in DEFAULT_EPS else None)
        for name, least in (("encoder_dim", 1), ("hidden_size", 1), ("projection_dim", 1), ("predictor_dim", 1),
                            ("projector_hidden_dim", 1), ("norm_groups", 1), ("sem_simplices", 0),
                            ("sem_simplex_dim", 1), ("bn_shards", 1)):  # (stored as ints: NumPy's are taken)
            object.__setattr__(self, name, check_positive_int(getattr(self, name), name, minimum=least))
        check_choice(self.norm, "norm", NORMS)
        object.__setattr__(self, "sem_temperature",
                           check_real(self.sem_temperature, "sem_temperature", 0, None, lo_open=True))
        check_choice(self.init, "init", INITS)
        check_choice(self.target_init, "target_init", ("copy", "independent", "copy_encoder"))
        check_choice(self.bn_running, "bn_running", ("haiku", "torch"))
        check_choice(self.bn_var, "bn_var", ("two_pass", "one_pass"))
        check_choice(self.ln_var, "ln_var", ("two_pass", "one_pass"))
        check_choice(self.views, "views", ("separate", "concat"))
        check_choice(self.bn_shard_running, "bn_shard_running", ("first", "sequential"))
        if self.bn_shards > 1 and self.norm != "batch":
            raise ValueError(f"bn_shards={self.bn_shards} splits batch-norm statistics, but norm={self.norm!r} "
                             "takes none; use bn_shards=1 or norm='batch'")
        check_choice(self.target_bn, "target_bn", ("batch", "running"))
        _check_weights_fit(self)
        check_choice(self.norm_eps_mode, "norm_eps_mode", EPS_MODES)
        check_choice(self.loss_form, "loss_form", LOSS_FORMS)
        check_choice(self.sym_reduce, "sym_reduce", ("sum", "mean"))
        flags = ("hidden_bias", "head_bias", "use_predictor", "symmetric", "stop_gradient", "weight_std")
        for name in (*flags, "encoder_bias"):  # (encoder_bias may also be None)
            if isinstance(getattr(self, name), host.bool_):  # (NumPy's, as train= takes it: kept as Python's)
                object.__setattr__(self, name, bool(getattr(self, name)))
        for name in flags:
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.encoder_bias is not None and not isinstance(self.encoder_bias, bool):
            raise TypeError(f"encoder_bias must be a bool or None (as hidden_bias), got {self.encoder_bias!r}")
        object.__setattr__(self, "bn_eps", check_real(self.bn_eps, "bn_eps", 0, None, lo_open=True))
        object.__setattr__(self, "ln_eps", check_real(self.ln_eps, "ln_eps", 0, None, lo_open=True))
        object.__setattr__(self, "ws_eps", check_real(self.ws_eps, "ws_eps", 0, None, lo_open=True))
        if self.norm == "group":
            for role in ("online", "target"):
                for name, shape in param_shapes(self, role).items():
                    if name.endswith(".gamma") and shape[0] % self.norm_groups:
                        raise ValueError(f"norm_groups={self.norm_groups} must divide every normalised width, "
                                         f"but {name.rsplit('.', 1)[0]} has {shape[0]} features")
        if self.weight_std:  # one input per unit standardises every weight to 0: a layer that ignores its input
            for name, shape in param_shapes(self, "online").items():
                if name.endswith(".weight") and not is_head_output(name[:-len(".weight")]) and shape[0] < 2:
                    raise ValueError(f"weight_std=True needs 2 or more inputs per standardised Linear, but {name} "
                                     f"has {shape[0]} (shape {shape}): one weight standardises to 0")
        object.__setattr__(self, "norm_eps", check_real(self.norm_eps, "norm_eps", 0, None, lo_open=True))
        object.__setattr__(self, "bn_decay", check_real(self.bn_decay, "bn_decay", 0, 1, hi_open=True))

    def replace(self, **changes) -> "Config":
        """A copy with some fields changed.

        A field whose value this config derived from another (the layout's conventions; ``norm_eps``
        from ``norm_eps_mode``; ``projector_hidden_dim`` from ``projection_dim``) is derived again
        when that field changes, unless it is changed too or holds other than the derived value:
        ``replace(norm_eps_mode="add")`` takes add's eps 1e-8, not sq_norm's 1e-12 (it once kept
        1e-12, and ``replace(layout="edifice")`` kept the paper's batch norm and loss).
        """
        d = asdict(self)
        if changes.get("layout", self.layout) != self.layout:
            for key, value in _LAYOUT_DEFAULTS[self.layout].items():
                if key not in changes and d[key] == value:
                    d[key] = None
        if changes.get("projection_dim", self.projection_dim) != self.projection_dim \
                and "projector_hidden_dim" not in changes and self.projector_hidden_dim == self.projection_dim:
            d["projector_hidden_dim"] = None
        mode = changes.get("norm_eps_mode", d["norm_eps_mode"])  # the copy's (None: its layout's)
        if mode is None:
            mode = _LAYOUT_DEFAULTS.get(changes.get("layout", self.layout), {}).get("norm_eps_mode")
        if "norm_eps" not in changes:
            d["norm_eps"] = eps_for_new_mode(self.norm_eps_mode, self.norm_eps, mode)
        return Config(**{**d, **changes})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        return dataclass_from_dict(cls, d)


class Network(NamedTuple):
    """One BYOL network: its config, role (``"online"``/``"target"``), params and buffers."""

    config: Config
    role: str
    params: dict
    buffers: dict

    def __repr__(self) -> str:  # (the arrays as dtype and shape: their values made it 24 KB in a notebook)
        return (f"Network(config={self.config!r}, role={self.role!r}, params={describe_tree(self.params)}, "
                f"buffers={describe_tree(self.buffers)})")


# --------------------------------------------------------------------------- architecture


def network_plan(config: Config, role: str) -> dict:
    """The steps of each part of a network, in execution order.

    Returns:
        dict part -> list of (kind, name); kind in linear, batch_norm, layer_norm, group_norm,
        affine, relu, simplex (the simplicial embedding in front of the projector).
        The online net has parts encoder, projector and (unless disabled) predictor;
        the target net has encoder and projector.
    """
    check_choice(role, "role", ("online", "target"))
    norm = {"batch": "batch_norm", "layer": "layer_norm", "group": "group_norm", "affine": "affine",
            "none": None}[config.norm]

    def block(part, i, *, has_norm=True):
        # paper: Linear -> norm -> ReLU; edifice: Linear -> ReLU -> norm
        steps = [("linear", f"{part}.fc{i}")]
        tail = [(norm, f"{part}.norm{i}")] if (norm and has_norm) else []
        relu = [("relu", f"{part}.relu{i}")]
        return steps + (tail + relu if config.layout == "paper" else relu + tail)

    if config.layout == "paper":
        plan = {
            "encoder": block("encoder", 1) + block("encoder", 2),
            "projector": block("projector", 1) + [("linear", "projector.fc2")],
            "predictor": block("predictor", 1) + [("linear", "predictor.fc2")],
        }
    else:
        plan = {
            "encoder": block("encoder", 1) + [("linear", "encoder.fc2"), ("relu", "encoder.relu2")],
            "projector": block("projector", 1) + [("linear", "projector.fc2")],
            "predictor": block("predictor", 1, has_norm=False) + [("linear", "predictor.fc2")],
        }
    if config.sem_simplices:  # byol-pytorch 0.9: projector = Sequential(Linear -> BN, SEM, MLP)
        embed = [("linear", "projector.sem_fc")] + ([(norm, "projector.sem_norm")] if norm else [])
        plan["projector"] = embed + [("simplex", "projector.sem")] + plan["projector"]
    if role == "target" or not config.use_predictor:
        del plan["predictor"]
    return plan


def is_head_output(name: str) -> bool:
    """Whether a Linear is the last one of projector or predictor (no norm after it, ``head_bias``,
    never weight-standardised)."""
    return name.endswith("fc2") and not name.startswith("encoder")


def has_bias(config: Config, name: str) -> bool:
    """Whether the Linear ``name`` (``"encoder.fc1"``, ``"projector.fc2"``, ...) has a bias."""
    if is_head_output(name):
        return config.head_bias
    if name.startswith("encoder") and config.encoder_bias is not None:
        return config.encoder_bias
    return config.hidden_bias


def param_shapes(config: Config, role: str) -> dict:
    """Shapes of every parameter (dict name -> shape), in execution order."""
    widths = {
        "encoder.fc1": config.hidden_size, "encoder.fc2": config.hidden_size,
        "projector.sem_fc": config.sem_simplices * config.sem_simplex_dim,
        "projector.fc1": config.projector_hidden_dim, "projector.fc2": config.projection_dim,
        "predictor.fc1": config.predictor_dim, "predictor.fc2": config.projection_dim,
    }
    shapes = {}
    width = config.encoder_dim
    for steps in network_plan(config, role).values():
        for kind, name in steps:
            if kind == "linear":
                shapes[f"{name}.weight"] = (width, widths[name])
                width = widths[name]
                if has_bias(config, name):
                    shapes[f"{name}.bias"] = (width,)
            elif kind in ("batch_norm", "layer_norm", "group_norm", "affine"):
                shapes[f"{name}.gamma"] = (width,)
                shapes[f"{name}.beta"] = (width,)
    return shapes


# The width field behind each Linear's output width (projector.sem_fc's is sem_simplices * sem_simplex_dim:
# _width_field), and the most float64 values one array can hold: beyond it NumPy refuses the shape in its own
# words ("Maximum allowed dimension exceeded", "array is too big"), which name no width. (Below it, an
# allocation too large for memory is a MemoryError.)
_WIDTH_FIELDS = {"encoder.fc1": "hidden_size", "encoder.fc2": "hidden_size",
                 "projector.fc1": "projector_hidden_dim", "projector.fc2": "projection_dim",
                 "predictor.fc1": "predictor_dim", "predictor.fc2": "projection_dim"}
_MAX_ARRAY_VALUES = sys.maxsize // 8


def _width_field(config: Config, layer: str) -> str:
    """The field behind the output width of the Linear ``layer``: for the simplicial embedding's,
    the larger of its two factors (naming sem_simplices for a sem_simplex_dim too large named a
    field that was 1)."""
    if layer == "projector.sem_fc":
        return max(("sem_simplices", "sem_simplex_dim"), key=lambda name: getattr(config, name))
    return _WIDTH_FIELDS[layer]


def _check_weights_fit(config: Config) -> None:
    """Raise a ValueError naming the width (the larger of a weight's two) that makes a weight
    matrix hold more values than any array can."""
    field = "encoder_dim"  # the field behind the input width of the next Linear
    for name, shape in param_shapes(config, "online").items():
        if not name.endswith(".weight"):
            continue
        layer = name[:-len(".weight")]
        if shape[0] * shape[1] > _MAX_ARRAY_VALUES:
            culprit = _width_field(config, layer) if shape[1] >= shape[0] else field
            if culprit == "projector_hidden_dim" and config.projector_hidden_dim == config.projection_dim:
                culprit = "projection_dim"  # (the field it follows by default)
            raise ValueError(f"{culprit} must leave every weight within what one array holds "
                             f"({_MAX_ARRAY_VALUES} values), got {getattr(config, culprit)}: {name} would have "
                             f"shape {shape}")
        field = _width_field(config, layer)


def param_mismatch(params: Mapping, config: Config, role: str) -> tuple:
    """How ``params`` differ from what ``config`` gives a ``role`` network, for the callers' own
    messages: (names missing, names unexpected, [(name, shape held, shape expected), ...] of the
    others). A value without a ``shape`` counts as shape ()."""
    expected = param_shapes(config, role)
    held = {key: tuple(getattr(value, "shape", ())) for key, value in params.items()}
    missing, extra = sorted(set(expected) - set(held)), sorted(set(held) - set(expected))
    reshaped = [(key, held[key], shape) for key, shape in expected.items() if key in held and held[key] != shape]
    return missing, extra, reshaped


def init_params(config: Config, role: str, rng, backend: Backend) -> dict:
    """Draw fresh parameters on the host from ``rng`` and move them to the backend.

    ``haiku``: w ~ N(0, 1/fan_in) truncated at 2 standard deviations (Haiku's
    TruncatedNormal, which does not rescale for the truncation), b = 0.
    ``torch``: w, b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (``nn.Linear``'s default,
    kaiming_uniform with a = sqrt(5)).
    ``glorot``: w ~ U(-a, a), a = sqrt(6 / (fan_in + fan_out)), b = 0 (``Axon.dense``'s
    ``glorot_uniform`` kernel and ``zeros`` bias). Norm layers: gamma = 1, beta = 0.
    """
    from .backend import host as np

    params = {}
    shapes = param_shapes(config, role)
    for name, shape in shapes.items():
        if name.endswith(".gamma"):
            value = np.ones(shape)
        elif name.endswith(".beta"):
            value = np.zeros(shape)
        else:
            fan_in, fan_out = shapes[name.rsplit(".", 1)[0] + ".weight"]
            bound = 1 / np.sqrt(fan_in)
            if config.init == "torch":
                value = rng.uniform(-bound, bound, size=shape)
            elif name.endswith(".bias"):
                value = np.zeros(shape)
            elif config.init == "glorot":
                limit = np.sqrt(6 / (fan_in + fan_out))
                value = rng.uniform(-limit, limit, size=shape)
            else:
                value = rng.standard_normal(shape)
                while True:  # rejection: redraw anything outside [-2, 2]
                    bad = np.abs(value) > 2
                    if not bad.any():
                        break
                    value[bad] = rng.standard_normal(int(bad.sum()))
                value *= bound
        params[name] = backend.asarray(value)
    return params


def init_buffers(config: Config, role: str, backend: Backend) -> dict:
    """Batch-norm running statistics: mean 0, var 1, count 0 (none without batch norm)."""
    xp = backend.xp
    fresh = {"running_mean": lambda s: xp.zeros(s, dtype=backend.dtype),
             "running_var": lambda s: xp.ones(s, dtype=backend.dtype), "count": lambda s: xp.zeros(s, dtype="int64")}
    return {name: fresh[name.rsplit(".", 1)[1]](shape) for name, shape in buffer_shapes(config, role)}


# --------------------------------------------------------------------------- forward / backward


def mlp_forward(steps, params, buffers, x, *, config: Config, train: bool, record=None, prefix="",
                need_cache: bool = True, running_groups: int | None = None):
    """Run a list of steps forward.

    Args:
        steps: list of (kind, name) from network_plan.
        params, buffers: flat dicts.
        x: (N, F) or (G, N, F) input.
        config: Config (norm eps and running-statistics conventions).
        train: batch statistics (True) or running statistics (False) in batch norm.
        record: optional callable ``record(key, array)`` that sees every step's output,
            keyed ``prefix + name + ".out"`` (and batch statistics), in execution order.
        prefix: key prefix for ``record``.
        need_cache: False for a forward that is never differentiated (the BYOL target under
            stop-gradient): batch norm keeps no x_hat and caches is empty.
        running_groups: only the first this many groups update batch-norm running statistics
            (None: all; see ``shard_running_groups``).

    Returns:
        out: the last step's output.
        caches: list of (kind, name, cache) for mlp_backward (empty without need_cache); a
            weight-standardised Linear appears as kind "ws_linear" with (linear cache, WS cache).
        new_buffers: the updated running statistics of the batch-norm steps run.
    """
    caches = []
    new_buffers = {}
    # Memory: a step may overwrite its input when that input is a temporary made by the previous
    # step of this loop (``owned``), which nothing else holds: never the caller's x, and never
    # while ``record`` may keep references to the intermediates.
    owned = False
    for kind, name in steps:
        inplace = owned and record is None
        if kind == "linear" and config.weight_std and not is_head_output(name):
            w_hat, ws_cache = weight_standardize_forward(params[f"{name}.weight"], eps=config.ws_eps)
            x, cache = linear_forward(x, w_hat, params.get(f"{name}.bias"))
            kind, cache = "ws_linear", (cache, ws_cache)
        elif kind == "linear":
            x, cache = linear_forward(x, params[f"{name}.weight"], params.get(f"{name}.bias"))
        elif kind == "relu":
            x, cache = relu_forward(x, inplace=inplace)
        elif kind == "batch_norm":
            running = RunningStats(buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"],
                                   buffers[f"{name}.count"])
            x, cache, running = batch_norm_forward(
                x, params[f"{name}.gamma"], params[f"{name}.beta"], running, train=train,
                eps=config.bn_eps, decay=config.bn_decay, mode=config.bn_running, var_formula=config.bn_var,
                inplace=inplace, need_cache=need_cache, running_groups=running_groups)
            new_buffers[f"{name}.running_mean"] = running.mean
            new_buffers[f"{name}.running_var"] = running.var
            new_buffers[f"{name}.count"] = running.count
        elif kind == "layer_norm":
            x, cache = layer_norm_forward(x, params[f"{name}.gamma"], params[f"{name}.beta"], eps=config.ln_eps,
                                          var_formula=config.ln_var)
        elif kind == "group_norm":  # eps and variance: as layer norm's (per-sample statistics)
            x, cache = group_norm_forward(x, params[f"{name}.gamma"], params[f"{name}.beta"],
                                          groups=config.norm_groups, eps=config.ln_eps, var_formula=config.ln_var)
        elif kind == "affine":
            x, cache = affine_forward(x, params[f"{name}.gamma"], params[f"{name}.beta"])
        elif kind == "simplex":
            x, cache = simplex_forward(x, simplex_dim=config.sem_simplex_dim, temperature=config.sem_temperature)
        else:  # pragma: no cover - network_plan only makes the kinds above
            raise ValueError(f"unknown step kind {kind!r}")
        # A step's output is the next step's to overwrite unless a cache holds it: the simplex output is a
        # view of its cache, and a ReLU's cache is its output (its backward masks by it), so the batch norm
        # after edifice's ReLU once overwrote the mask with x_hat: wrong gradients, on this path only.
        owned = kind != "simplex" and not (kind == "relu" and need_cache)
        if need_cache:
            caches.append((kind, name, cache))
        if record is not None:
            record(f"{prefix}{name}.out", x)
    return x, caches, new_buffers


def mlp_backward(dout, caches, grads: dict, *, record=None, prefix="", need_input_grad: bool = True):
    """Run the steps backward, *adding* parameter gradients into ``grads``.

    Args:
        dout: gradient of the last output.
        caches: from mlp_forward.
        grads: dict to accumulate into (a key absent so far is set, not added).
        record: optional ``record(key, array)`` for the gradient of each step's output.
        need_input_grad: False when the input is data: the first linear layer then skips its
            dx GEMM, and None is returned.

    Returns:
        dx: gradient of the input (None without need_input_grad).
    """

    def acc(key, g):
        if key in grads:
            grads[key] += g  # both are gradients this backward made: add in place
        else:
            grads[key] = g

    # As in mlp_forward: overwrite dout only when it is a temporary made by the previous step.
    owned = False
    for i, (kind, name, cache) in reversed(list(enumerate(caches))):
        if record is not None:
            record(f"{prefix}{name}.dout", dout)
        inplace = owned and record is None
        if kind in ("linear", "ws_linear"):
            lin_cache, ws_cache = cache if kind == "ws_linear" else (cache, None)
            dout, dw, db = linear_backward(dout, lin_cache, need_dx=need_input_grad or i > 0)
            if ws_cache is not None:  # the layer used w_hat(w): chain through the standardisation
                dw = weight_standardize_backward(dw, ws_cache)
            acc(f"{name}.weight", dw)
            if db is not None:
                acc(f"{name}.bias", db)
        elif kind == "relu":
            dout = relu_backward(dout, cache, inplace=inplace)
        elif kind == "simplex":
            dout = simplex_backward(dout, cache)
        elif kind == "batch_norm":
            dout, dgamma, dbeta = batch_norm_backward(dout, cache, inplace=inplace)
            acc(f"{name}.gamma", dgamma)
            acc(f"{name}.beta", dbeta)
        else:
            backward = {"group_norm": group_norm_backward, "layer_norm": layer_norm_backward,
                        "affine": affine_backward}[kind]
            dout, dgamma, dbeta = backward(dout, cache)
            acc(f"{name}.gamma", dgamma)
            acc(f"{name}.beta", dbeta)
        owned = True
    return dout


def network_forward(config: Config, role: str, params, buffers, x, *, train: bool, record=None, prefix="",
                    need_cache: bool = True, running_groups: int | None = None):
    """Forward through every part of a network (``need_cache``, ``running_groups``: see mlp_forward).

    Returns:
        outputs: dict ``y`` (encoder), ``z`` (projection) and, online with a predictor, ``p``.
        caches: dict part -> caches.
        new_buffers: updated running statistics (the given buffers where a layer did not run).
    """
    outputs, caches = {}, {}
    new_buffers = dict(buffers)
    out_names = {"encoder": "y", "projector": "z", "predictor": "p"}
    for part, steps in network_plan(config, role).items():
        x, caches[part], updated = mlp_forward(steps, params, buffers, x, config=config, train=train,
                                               record=record, prefix=prefix, need_cache=need_cache,
                                               running_groups=running_groups)
        new_buffers.update(updated)
        outputs[out_names[part]] = x
    if "p" not in outputs:
        outputs["p"] = outputs["z"]  # no-predictor ablation: the projection is the prediction
    return outputs, caches, new_buffers


def network_backward(dout, caches: dict, grads: dict, *, record=None, prefix="", need_input_grad: bool = True):
    """Backward through every part, last part first; returns the input gradient.

    ``need_input_grad=False`` (the input is data) skips the first layer's dx and returns None.
    """
    parts = list(caches)
    for part in reversed(parts):
        dout = mlp_backward(dout, caches[part], grads, record=record, prefix=prefix,
                            need_input_grad=need_input_grad or part != parts[0])
    return dout


def to_groups(x, config: Config):
    """Lay out V stacked batches as the groups batch norm takes its statistics over.

    Args:
        x: (V, N, F): the V views of the same N samples (V = 2 in a training step).
        config: its ``views`` and ``bn_shards`` (S) decide the groups.

    Returns:
        ``"separate"``: (S*V, N/S, F), group s*V + v = rows s*N/S to (s+1)*N/S - 1 of view v;
        ``"concat"``: (S, V*N/S, F), group s = those rows of every view, one view after the
        other. Groups come in execution order: shard by shard (each replica or micro-batch
        runs its own views). With S = 1 this is a reshape, no copy: (V, N, F) or (1, V*N, F).
    """
    v, n, f = x.shape
    s = config.bn_shards
    if s > 1:
        x = x.reshape(v, s, n // s, f).transpose(1, 0, 2, 3)  # (S, V, N/S, F); copied by the reshape below
    rows = n // s if config.views == "separate" else v * n // s
    return x.reshape(-1, rows, f)


def from_groups(a, config: Config, views: int):
    """The inverse of ``to_groups``: (G, rows, F) back to (V, N, F), V = ``views``."""
    f = a.shape[-1]
    s = config.bn_shards
    if s > 1:
        a = a.reshape(s, views, -1, f).transpose(1, 0, 2, 3)  # (V, S, N/S, F)
    return a.reshape(views, -1, f)


def shard_running_groups(config: Config, n_groups: int) -> int | None:
    """How many leading groups of ``to_groups`` update batch-norm running statistics: all
    (None), except with S > 1 shards and ``bn_shard_running="first"``: shard 0's groups."""
    if config.bn_shards == 1 or config.bn_shard_running == "sequential":
        return None
    return n_groups // config.bn_shards


def rows_per_shard(config: Config, *, both_views: bool = True) -> int:
    """The rows of each view one batch-norm shard needs: 2, for statistics over them, or 1 where
    ``views="concat"`` joins both views' rows (2 in all). ``both_views=False``: one input alone."""
    return 1 if both_views and config.views == "concat" else 2


def shards_of_at_least(least: int) -> str:
    """How a shard refusal words the rows each shard needs (``rows_per_shard``)."""
    return (f"at least {least} row{'s' if least > 1 else ''} each (batch-norm statistics are taken per shard"
            f"{', over both views' if least == 1 else ''})")


def _check_shards(config: Config, n: int, name: str, *, both_views: bool = True):
    """Each of the S shards of an ``n``-row batch must be equal and hold ``rows_per_shard`` rows."""
    s, least = config.bn_shards, rows_per_shard(config, both_views=both_views)
    if s > 1 and (n % s or n // s < least):
        raise ValueError(f"{name} has {n} rows, which bn_shards={s} cannot split into equal shards of "
                         f"{shards_of_at_least(least)}; use a batch size that is a multiple of {s} and at least "
                         f"{least * s}")


def data_dependent_init(network: Network, x, *, eps: float | None = None) -> Network:
    """Set every ``norm="affine"`` layer so that, on the batch ``x``, the network computes what
    the same network with training-mode batch norm computes (per feature, biased variance).

    Walking the layers in order, each affine layer sees the activations h of x produced by the
    layers before it (already re-initialised) and becomes

        gamma' = gamma / sqrt(var_N(h) + eps),    beta' = beta - gamma' * mean_N(h)

    so ``gamma' * h + beta' = gamma * (h - mean) / sqrt(var + eps) + beta``: batch norm with
    the layer's current gamma and beta (1 and 0 when fresh). From then on the statistics are
    fixed numbers inside gamma' and beta', which train like any parameter; no sample ever
    sees another. This is the BN-free BYOL with a data-dependent initialisation of Richemond
    et al. (2020): 65.7% top-1 on ImageNet at 300 epochs, where no normalisation gives 0.1%.

    Args:
        network: a Network with ``norm="affine"``.
        x: (N, encoder_dim) inputs, N >= 2, the parameters' dtype.
        eps: added to each variance (default: the config's ``bn_eps``, as batch norm would).

    Returns:
        A new Network (params copied where changed; the input network is not modified).

    Examples:
        On the batch it was set from, the network computes what batch norm in training mode does:

        >>> import numpy as np
        >>> import byol_ref as byol
        >>> x = np.random.default_rng(0).standard_normal((64, 16))
        >>> affine = byol.data_dependent_init(byol.build_online(16, norm="affine", seed=0), x)
        >>> batch = byol.build_online(16, norm="batch", seed=0)  # the same draw of the weights
        >>> got, want = byol.forward(affine, x)[0], byol.forward(batch, x, train=True)[0]
        >>> bool(np.allclose(got["p"], want["p"]))
        True

    References:
        Richemond et al., "BYOL works even without batch statistics", arXiv 2010.10241, 2020.
    """
    _check_network(network, "network")
    cfg = network.config
    if cfg.norm != "affine":
        raise ValueError(f"data_dependent_init sets norm='affine' layers, but this network has norm={cfg.norm!r}")
    check_array(x, "x", ndim=2, last_dim=cfg.encoder_dim, dtype=_params_dtype(network.params, "network.params"),
                min_rows=2, rows_for="each scale and shift is set from the batch's mean and variance")
    eps = cfg.bn_eps if eps is None else check_real(eps, "eps", 0, None, lo_open=True)
    xp = get_array_module(x)
    params = dict(network.params)
    h = x
    for steps in network_plan(cfg, network.role).values():
        for kind, name in steps:
            if kind == "affine":
                mean = h.mean(axis=0)  # (F,)
                var = ((h - mean) ** 2).mean(axis=0)  # (F,), biased, two-pass
                gamma = params[f"{name}.gamma"] / xp.sqrt(var + eps)
                params[f"{name}.beta"] = params[f"{name}.beta"] - gamma * mean
                params[f"{name}.gamma"] = gamma
            h, _, _ = mlp_forward([(kind, name)], params, network.buffers, h, config=cfg, train=False,
                                  need_cache=False)
    return network._replace(params=params)


def forward(network: Network, x, *, train: bool = False):
    """Apply a network to one batch.

    Args:
        network: a Network from build/build_online/build_target.
        x: (N, encoder_dim) inputs.
        train: batch statistics (and updated running statistics) if True; running
            statistics if False (evaluation).

    Returns:
        outputs: dict with ``y`` (N, H), ``z`` (N, P) and ``p`` (N, P) (``p`` is ``z`` for a
            target or predictor-less network).
        buffers: the network's buffers, updated when train is True.

    Examples:
        >>> import numpy as np
        >>> import byol_ref as byol
        >>> online = byol.build_online(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
        >>> x = np.random.default_rng(0).standard_normal((5, 16))
        >>> outputs, buffers = byol.forward(online, x)
        >>> {k: v.shape for k, v in outputs.items()}
        {'y': (5, 32), 'z': (5, 8), 'p': (5, 8)}
    """
    _check_network(network, "network")
    cfg = network.config
    train = check_bool(train, "train")
    dtype = _params_dtype(network.params, "network.params")
    _check_buffers(network, "network", dtype)
    batch_stats = train and any(k.endswith(".running_mean") for k in network.buffers)
    check_array(x, "x", ndim=2, last_dim=cfg.encoder_dim, dtype=dtype, min_rows=2 if batch_stats else 1,
                rows_for="batch norm in training mode takes its statistics over the rows (train=False uses "
                         "the running statistics)" if batch_stats else None)
    check_one_place(lambda: {"x": x, **_first(network, "network")})
    if not train:
        outputs, _, buffers = network_forward(cfg, network.role, network.params, network.buffers, x, train=False)
        return outputs, buffers
    _check_shards(cfg, x.shape[0], "x", both_views=False)
    groups = to_groups(x[None], cfg)  # (S, N/S, D): one group per shard
    outputs, _, buffers = network_forward(cfg, network.role, network.params, network.buffers, groups, train=True,
                                          running_groups=shard_running_groups(cfg, groups.shape[0]))
    return {k: from_groups(v, cfg, 1)[0] for k, v in outputs.items()}, buffers


# --------------------------------------------------------------------------- the objective


class LossAndGrads(NamedTuple):
    """Result of loss_and_grads.

    Attributes:
        loss: 0-d array, the BYOL objective averaged over the batch.
        grads: dict, the gradient of loss for every online parameter (exactly its keys).
        online_buffers, target_buffers: updated batch-norm running statistics.
        outputs: dict of stacked per-view activations, each (2, N, F):
            ``online.y``, ``online.z``, ``online.p``, ``target.z``, ``loss_per_sample`` (2, N)
            or (1, N) when one-sided.
    """

    loss: Any
    grads: dict
    online_buffers: dict
    target_buffers: dict
    outputs: dict

    def __repr__(self) -> str:
        return (f"LossAndGrads(loss={describe(self.loss)}, grads={describe_tree(self.grads)}, online_buffers="
                f"{describe_tree(self.online_buffers)}, target_buffers={describe_tree(self.target_buffers)}, "
                f"outputs={describe_tree(self.outputs)})")


def loss_and_grads(online: Network, target: Network, view1, view2, *, record: Callable | None = None):
    """The BYOL objective for two views, its gradient for the online params, new buffers.

    1. Online forward on each view (training mode; batch statistics per view, or over
       the concatenated 2N batch with ``views="concat"``).
    2. Target forward on each view, with no gradient (training-mode batch statistics
       unless ``target_bn="running"``).
    3. loss = mean_i [ l(p1_i, z'2_i) + l(p2_i, z'1_i) ], the official scale in [0, 8]
       (``sym_reduce="mean"`` halves it; one-sided configs keep only the first term).
    4. Backward through the online network. The stop-gradient on the target is
       structural: the target's gradient is never propagated (unless
       ``stop_gradient=False``, the collapse ablation).

    Args:
        online, target: Networks with the same config.
        view1, view2: (N, encoder_dim) augmented views, in the params' dtype, finite.
        record: optional ``record(key, array)`` callback seeing every intermediate in
            execution order (used by the trace tool).

    Returns:
        LossAndGrads. The parameters and buffers are checked for their names, shapes and
        dtypes, not their values (that would read every one of them each step): a non-finite
        parameter gives a non-finite loss, on which ``fit`` stops and names the step.

    Examples:
        >>> import numpy as np
        >>> import byol_ref as byol
        >>> online, target = byol.build(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
        >>> rng = np.random.default_rng(0)
        >>> x = rng.standard_normal((8, 16))
        >>> view1, view2 = x + 0.1 * rng.standard_normal(x.shape), x + 0.1 * rng.standard_normal(x.shape)
        >>> res = byol.loss_and_grads(online, target, view1, view2)
        >>> print(f"{float(res.loss):.4f}", res.grads.keys() == online.params.keys())
        3.2734 True

    References:
        Grill et al. 2020, section 3.1 and eq. 2; official ``byol_experiment.py``.
    """
    _check_network(online, "online", role="online")
    _check_network(target, "target", role="target")
    cfg = online.config
    if target.config != cfg:
        raise ValueError("online and target were built with different configs: "
                         f"{_config_diff(cfg, target.config)}")
    if record is not None and not callable(record):
        raise TypeError(f"record must be None or a callable record(key, array), got {record!r}")
    if record is not None:
        try:
            inspect.signature(record).bind("loss.total", None)
        except TypeError:
            raise TypeError(f"record must take two arguments, record(key, array), got {record!r} with signature "
                            f"{inspect.signature(record)}") from None
        except ValueError:  # (no signature to read: a builtin)
            pass
    dtype = _params_dtype(online.params, "online.params")
    target_dtype = _params_dtype(target.params, "target.params")
    if target_dtype != dtype:
        raise TypeError(f"target.params have dtype {target_dtype}, but online.params have {dtype}; "
                        "build both in one dtype, byol_ref never mixes dtypes silently")
    _check_buffers(online, "online", dtype)
    _check_buffers(target, "target", dtype)
    # Batch statistics need 2 rows: of each view, or of both views joined (views="concat", as one replica of
    # a DDP run with a batch of 1 per view sees them: 2 rows for its batch norm).
    # (A layer or group norm's statistics are per row, and no reason is given for its 1 row.)
    rows = (dict(min_rows=2, rows_for="batch norm takes its statistics over the rows of a batch")
            if cfg.norm == "batch" and rows_per_shard(cfg) == 2 else dict(min_rows=1))
    check_array(view1, "view1", ndim=2, last_dim=cfg.encoder_dim, dtype=dtype, **rows)
    check_array(view2, "view2", ndim=2, last_dim=cfg.encoder_dim, dtype=dtype, **rows)
    if view1.shape != view2.shape:
        raise ValueError(f"view1 and view2 must have the same shape, got {tuple(view1.shape)} and {tuple(view2.shape)}")
    check_one_place(lambda: {"view1": view1, "view2": view2, **_first(online, "online"), **_first(target, "target")})
    _check_shards(cfg, view1.shape[0], "view1")
    xp = get_array_module(view1)
    n = view1.shape[0]

    # Stack the views: (2, N, D). Batch norm takes statistics per leading group, so
    # "separate" keeps two groups and "concat" reshapes to one group of 2N rows (with
    # bn_shards, each shard's; to_groups).
    x = to_groups(xp.stack([view1, view2]), cfg)  # (G, rows, D)
    running_groups = shard_running_groups(cfg, x.shape[0])

    on, on_caches, online_buffers = network_forward(cfg, "online", online.params, online.buffers, x,
                                                    train=True, record=record, prefix="online.",
                                                    running_groups=running_groups)
    target_train = cfg.target_bn == "batch"
    # Under stop-gradient nothing differentiates the target: it keeps no caches, and each of
    # its activations is freed (or overwritten) as soon as the next one is made.
    tg, tg_caches, target_buffers = network_forward(cfg, "target", target.params, target.buffers, x,
                                                    train=target_train, record=record, prefix="target.",
                                                    need_cache=not cfg.stop_gradient, running_groups=running_groups)
    p = from_groups(on["p"], cfg, 2)  # (2, N, P)
    z = from_groups(tg["z"], cfg, 2)  # (2, N, P)
    del tg  # the target's other outputs (its y) are not needed: free them now

    # Each online prediction regresses the target projection of the *other* view.
    if cfg.symmetric:
        per_sample, loss_cache = regression_loss_forward(p, z[::-1], form=cfg.loss_form,
                                                         eps=cfg.norm_eps, eps_mode=cfg.norm_eps_mode)  # (2, N)
        weight = 1.0 / n if cfg.sym_reduce == "sum" else 0.5 / n
    else:
        per_sample, loss_cache = regression_loss_forward(p[:1], z[1:], form=cfg.loss_form,
                                                         eps=cfg.norm_eps, eps_mode=cfg.norm_eps_mode)  # (1, N)
        weight = 1.0 / n
    loss = per_sample.sum() * weight
    if record is not None:
        record("loss.per_sample", per_sample)
        record("loss.total", loss)

    dper_sample = xp.full(per_sample.shape, weight, dtype=per_sample.dtype)
    # The loss's gradient with respect to n(p) (and n(z): it only exists for the no-stop-gradient
    # ablation), then through each l2 normalisation.
    dn_p, dn_z = regression_loss_dn(dper_sample, loss_cache, need_dz=not cfg.stop_gradient)

    # The loss's rows back to the views' order, (2, N, P): one-sided, view 2's prediction and
    # view 1's projection are unused; symmetric, the target's rows were swapped.
    def online_views(d):
        return d if cfg.symmetric else xp.concatenate([d, xp.zeros_like(d)])

    def target_views(d):
        return d[::-1] if cfg.symmetric else xp.concatenate([xp.zeros_like(d), d])

    dp = online_views(l2_normalize_backward(dn_p, loss_cache.p_cache))
    dz = None if dn_z is None else target_views(l2_normalize_backward(dn_z, loss_cache.z_cache))
    if record is not None:
        record("online.p.normed.grad", online_views(dn_p))
        if dn_z is not None:
            record("target.z.normed.grad", target_views(dn_z))
        record("online.p.grad", dp)
    # (Kept to the end of the network backward, they were 2N x P floats each of the step's peak memory.)
    del dn_p, dn_z, loss_cache

    grads = {}
    # The views are data: no gradient for them (skips the first layer's dx GEMM).
    network_backward(to_groups(dp, cfg), on_caches, grads, record=record, prefix="online.",
                     need_input_grad=False)
    if not cfg.stop_gradient:
        # The ablation: let the gradient flow into the target branch too, and credit it to
        # the online parameter of the same name (exact when the weights are shared, tau = 0).
        network_backward(to_groups(dz, cfg), tg_caches, grads, record=record, prefix="target.",
                         need_input_grad=False)
    # Every param has its gradient: each Linear writes its weight's (and its bias's, where it has one) and
    # each norm its gamma's and beta's; a bias before batch norm gets its computed zero. In params' order:
    grads = {key: grads[key] for key in online.params}

    outputs = {"online.y": from_groups(on["y"], cfg, 2), "online.z": from_groups(on["z"], cfg, 2),
               "online.p": p, "target.z": z, "loss_per_sample": per_sample}
    return LossAndGrads(loss, grads, online_buffers, target_buffers, outputs)


def loss(online_pred, target_proj, *, eps=None, eps_mode="sq_norm", form="mse"):
    """One-sided BYOL loss: the batch mean of l(p, z) = ||n(p) - n(z)||^2 = 2 - 2 cos(p, z).

    Mirrors ``Edifice.Contrastive.BYOL.loss``; with ``eps_mode="add", form="2-2cos"`` it is that
    module's formula (x / sqrt(sum x^2 + 1e-8), 2 - 2 cos), equal to its numbers up to the last
    bit or so: it computes 2 - 2 mean(cos) and x / norm, byol-ref the mean of 2 - 2 cos and
    x * rstd. The defaults are the official code's (BYOL_FACTS a2).

    Args:
        online_pred: (N, P) online predictions.
        target_proj: (N, P) target projections (no gradient flows to them in BYOL).
        eps, eps_mode, form: see ``losses.regression_loss_forward`` (eps: None or a finite real > 0).

    Returns:
        0-d array, the mean over the batch (N >= 1).

    Examples:
        Equal directions give 0, opposite ones 4 (any positive scale is normalised away):

        >>> import numpy as np
        >>> import byol_ref as byol
        >>> p = np.random.default_rng(0).standard_normal((4, 8))
        >>> round(float(byol.loss(p, 3 * p)), 6), round(float(byol.loss(p, -p)), 6)
        (0.0, 4.0)
    """
    check_array(online_pred, "online_pred", ndim=2, dtype=FLOAT_DTYPES, min_rows=1)
    check_array(target_proj, "target_proj", ndim=2, dtype=online_pred.dtype.name, dtype_of="online_pred")
    if online_pred.shape != target_proj.shape:
        raise ValueError(f"online_pred and target_proj must have the same shape, got "
                         f"{tuple(online_pred.shape)} and {tuple(target_proj.shape)}")
    if online_pred.shape[1] == 0:  # (the loss read 0, perfect agreement)
        raise ValueError(f"online_pred and target_proj have no features (shape {tuple(online_pred.shape)}): the "
                         "cosine of empty vectors is undefined; expected (N, P) with P >= 1")
    check_one_place({"online_pred": online_pred, "target_proj": target_proj})
    per_sample, _ = regression_loss_forward(online_pred, target_proj, form=form, eps=eps, eps_mode=eps_mode)
    return per_sample.mean()


# --------------------------------------------------------------------------- target EMA


def ema_update(online_params: dict, target_params: dict, momentum: float = DEFAULT_MOMENTUM, *,
               inplace: bool = False, form: str = "weighted") -> dict:
    """Exponential moving average of the target parameters.

    target <- momentum * target + (1 - momentum) * online, for every target parameter,
    matched to the online parameter of the same name. ``momentum`` is the paper's tau,
    the weight on the *old* target (optax's ``step_size`` is 1 - tau). tau = 1 keeps the
    target; tau = 0 copies the online params. Online-only params (the predictor) are
    ignored. Buffers (running statistics) are not averaged, as in every implementation.

    Args:
        online_params: dict name -> array.
        target_params: dict name -> array (a subset of the online names).
        momentum: tau in [0, 1].
        inplace: overwrite the target arrays instead of making new ones (no weight-sized
            temporaries: on the CPU the update runs block by block through one small scratch,
            on CuPy as one fused kernel). The values are bitwise those of the pure update on
            the CPU. A read-only target array is refused by name before any is written.
        form: how the average is rounded. ``"weighted"``: ``tau * t + (1 - tau) * o``, the
            paper's eq. 1 (byol-pytorch, lightly, solo-learn, the Elixir module). ``"increment"``:
            ``t + (1 - tau) * (o - t)``, the official code's (``byol_experiment.py``). Equal in
            exact arithmetic; rounded, they differ by an ulp or so. Only ``"weighted"`` gives the
            online params back bit for bit at tau = 0.

    Returns:
        New target params: a new dict of new arrays (nothing is mutated), or, in place, a new
        dict holding the updated target arrays themselves.

    Examples:
        With tau = 0.99 the target moves 1% of the way to the online params:

        >>> import byol_ref as byol
        >>> online, target = byol.build(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
        >>> moved = {k: v + 1.0 for k, v in online.params.items()}
        >>> new = byol.ema_update(moved, target.params, momentum=0.99)
        >>> w = "encoder.fc1.weight"
        >>> round(float((new[w] - target.params[w]).mean()), 6), "predictor.fc1.weight" in new
        (0.01, False)

    References:
        Grill et al. 2020, eq. 1 (xi <- tau xi + (1 - tau) theta).
    """
    for name, tree in (("online_params", online_params), ("target_params", target_params)):
        if not isinstance(tree, Mapping):
            hint = f" (pass {name.split('_')[0]}.params, not the Network)" if isinstance(tree, Network) else ""
            raise TypeError(f"{name} must be a dict name -> array{hint}, got {type(tree).__name__}")
    tau = check_real(momentum, "momentum", 0, 1)
    inplace = check_bool(inplace, "inplace")
    check_choice(form, "form", kernels.EMA_FORMS)
    missing = sorted(set(target_params) - set(online_params))
    if missing:
        raise ValueError(f"ema_update: target parameter(s) {missing} have no online twin of the same name")
    for key, t in target_params.items():
        o = online_params[key]
        for name, a in (("online_params", o), ("target_params", t)):
            if not (hasattr(a, "shape") and hasattr(a, "dtype")):
                raise TypeError(f"ema_update: {name}[{key!r}] must be a NumPy or CuPy array, got {type(a).__name__}")
            check_plain({f"{name}[{key!r}]": a}, "ema_update")
        check_overwritable("ema_update", inplace, **{f"target_params[{key!r}]": t})
        if o.shape != t.shape:
            raise ValueError(f"ema_update: shape mismatch for {key!r}: online {tuple(o.shape)}, "
                             f"target {tuple(t.shape)}")
        if not same_dtype(o.dtype, t.dtype):
            raise TypeError(f"ema_update: dtype mismatch for {key!r}: online {o.dtype}, target {t.dtype}")
        if t.dtype.kind != "f" or t.dtype.itemsize not in (4, 8):  # float32 or float64 (cheaper than .name)
            raise TypeError(f"ema_update: {key!r} has dtype {t.dtype} in both online_params and target_params, "
                            f"expected one of {FLOAT_DTYPES}")
    first = next(iter(target_params), None)  # (one of each: they come from one build, and are moved together)
    check_one_place(lambda: {f"online_params[{first!r}]": online_params[first], f"target_params[{first!r}]":
                             target_params[first]} if first is not None else {}, "ema_update")
    if not inplace and form == "weighted":
        return {key: tau * t + (1 - tau) * online_params[key] for key, t in target_params.items()}
    if not inplace:
        return {key: t + (1 - tau) * (online_params[key] - t) for key, t in target_params.items()}
    new = {}
    for key, t in target_params.items():
        new[key] = kernels.ema(get_array_module(t), t, online_params[key], tau, out=t, form=form)  # the same, in t
    return new


# --------------------------------------------------------------------------- building


def _make_config(encoder_dim, projection_dim, predictor_dim, hidden_size, options) -> Config:
    if "config" in options:  # (it said "not both" to a call that gave the config alone, as config=)
        raise TypeError(f"config is not an option here (got {type(options['config']).__name__}): pass a Config to "
                        "build_from_config(config), or the sizes and other Config fields as keyword options")
    return Config(encoder_dim=encoder_dim, projection_dim=projection_dim, predictor_dim=predictor_dim,
                  hidden_size=hidden_size, **options)


def _resolve_backend(backend, dtype, seed) -> Backend:
    if isinstance(backend, Backend):
        return backend
    return get_backend(backend or "numpy", dtype, check_seed(seed, allow_none=True))


def build_from_config(config: Config, *, seed: int | None = 0, dtype="float64", backend=None):
    """Build (online, target) from a Config (see build).

    Examples:
        >>> import byol_ref as byol
        >>> cfg = byol.Config(encoder_dim=16, hidden_size=32, projection_dim=8, predictor_dim=4)
        >>> online, target = byol.build_from_config(cfg, seed=0)
        >>> online.config == target.config == cfg, cfg.norm, cfg.loss_form
        (True, 'batch', 'mse')
    """
    if not isinstance(config, Config):
        raise TypeError(f"config must be a byol_ref Config (Config(...) or Config.from_dict(d)), got "
                        f"{type(config).__name__}")
    be = _resolve_backend(backend, dtype, seed)
    online_params = init_params(config, "online", be.rng, be)
    online = Network(config, "online", online_params, init_buffers(config, "online", be))
    if config.target_init == "copy":
        target_params = {k: online_params[k].copy() for k in param_shapes(config, "target")}
    else:  # (copy_encoder draws the whole target, then takes the online encoder's: one stream for both)
        target_params = init_params(config, "target", be.rng, be)
        if config.target_init == "copy_encoder":
            target_params.update({k: online_params[k].copy() for k in target_params if k.startswith("encoder.")})
    target = Network(config, "target", target_params, init_buffers(config, "target", be))
    return online, target


def build(encoder_dim: int, projection_dim: int = DEFAULT_PROJECTION_DIM, predictor_dim: int = DEFAULT_PREDICTOR_DIM,
          hidden_size: int = DEFAULT_HIDDEN_SIZE, *, seed: int | None = 0, dtype="float64", backend=None, **options):
    """Build the online and target networks.

    Args:
        encoder_dim: input feature width D.
        projection_dim: P (default 256).
        predictor_dim: predictor hidden width Q (default 64).
        hidden_size: encoder width H (default 256).
        seed: seed of the parameter draw (default 0, so a call is reproducible as it stands; None: fresh
            entropy; ignored when a Backend object is passed).
        dtype: ``"float64"`` (default) or ``"float32"``.
        backend: ``"numpy"`` (default), ``"cupy"``, or a Backend.
        **options: any other Config field (layout, norm, projector_hidden_dim, target_init, ...).

    Returns:
        (online, target): Networks. The target is an exact copy of the online encoder and
        projector unless ``target_init="independent"`` (neither) or ``"copy_encoder"`` (the
        encoder only).

    Examples:
        >>> import byol_ref as byol
        >>> online, target = byol.build(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
        >>> w = online.params["encoder.fc1.weight"]
        >>> w.shape, w.dtype.name, bool((target.params["encoder.fc1.weight"] == w).all())
        ((16, 32), 'float64', True)
        >>> sorted({k.split(".")[0] for k in online.params.keys() - target.params.keys()})  # online only
        ['predictor']
    """
    cfg = _make_config(encoder_dim, projection_dim, predictor_dim, hidden_size, options)
    return build_from_config(cfg, seed=seed, dtype=dtype, backend=backend)


def build_online(encoder_dim: int, projection_dim: int = DEFAULT_PROJECTION_DIM,
                 predictor_dim: int = DEFAULT_PREDICTOR_DIM, hidden_size: int = DEFAULT_HIDDEN_SIZE, *,
                 seed: int | None = 0, dtype="float64", backend=None, **options) -> Network:
    """Build only the online network (encoder -> projector -> predictor); same args as build.

    Examples:
        >>> import byol_ref as byol
        >>> online = byol.build_online(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
        >>> online.role, sorted({k.split(".")[0] for k in online.params})
        ('online', ['encoder', 'predictor', 'projector'])
    """
    cfg = _make_config(encoder_dim, projection_dim, predictor_dim, hidden_size, options)
    be = _resolve_backend(backend, dtype, seed)
    return Network(cfg, "online", init_params(cfg, "online", be.rng, be), init_buffers(cfg, "online", be))


def build_target(encoder_dim: int | None = None, projection_dim: int = DEFAULT_PROJECTION_DIM,
                 predictor_dim: int = DEFAULT_PREDICTOR_DIM, hidden_size: int = DEFAULT_HIDDEN_SIZE, *,
                 seed: int | None = 0, dtype=None, backend=None, online: Network | None = None,
                 **options) -> Network:
    """Build only the target network (encoder -> projector, no predictor).

    With ``online`` given, the target copies its encoder and projector params (the
    config and dtype then come from ``online``: ``encoder_dim`` may be left out, or must be
    online's, the other size arguments are ignored, and a ``dtype`` and any option must be
    online's);
    otherwise ``encoder_dim`` is needed, and the params are a fresh draw in ``dtype`` (default
    float64).

    Examples:
        >>> import byol_ref as byol
        >>> online = byol.build_online(16, projection_dim=8, predictor_dim=4, hidden_size=32, seed=0)
        >>> target = byol.build_target(online=online)
        >>> target.role, sorted({k.split(".")[0] for k in target.params})
        ('target', ['encoder', 'projector'])
        >>> bool((target.params["projector.fc2.weight"] == online.params["projector.fc2.weight"]).all())
        True
    """
    if online is not None:
        _check_network(online, "online", role="online")
        cfg = online.config
        if encoder_dim is not None and encoder_dim != cfg.encoder_dim:
            raise ValueError(f"encoder_dim={encoder_dim!r}, but online takes {cfg.encoder_dim} input features: the "
                             "target copies it (leave encoder_dim out)")
        # (norm="layer" was ignored: a batch-norm target, without a word; an unknown option is refused as build's)
        asked = replace(cfg, **options)
        for key in options:
            if getattr(asked, key) != getattr(cfg, key):
                raise ValueError(f"{key}={options[key]!r}, but online's config has {key}={getattr(cfg, key)!r}: the "
                                 f"target copies online's config (leave {key} out)")
        own = _params_dtype(online.params, "online.params")
        if dtype is not None and check_dtype(dtype) != own:
            raise ValueError(f"dtype={dtype!r}, but online's params are {own}: the target copies them (cast the "
                             "online network first, or leave dtype out)")
        be = _resolve_backend(backend, own, seed)
        params = {k: online.params[k].copy() for k in param_shapes(cfg, "target")}
        return Network(cfg, "target", params, init_buffers(cfg, "target", be)
                       if not online.buffers else _target_buffers_like(online, cfg, be))
    if encoder_dim is None:
        raise TypeError("build_target needs encoder_dim (the number of input features), or online=... to copy")
    cfg = _make_config(encoder_dim, projection_dim, predictor_dim, hidden_size, options)
    be = _resolve_backend(backend, "float64" if dtype is None else dtype, seed)
    return Network(cfg, "target", init_params(cfg, "target", be.rng, be), init_buffers(cfg, "target", be))


def _target_buffers_like(online, cfg, be):
    xp = get_array_module(*online.buffers.values())
    dtype = _params_dtype(online.params, "online.params")
    fresh = init_buffers(cfg, "target", be)
    return {k: xp.asarray(v, dtype=(v.dtype if k.endswith(".count") else dtype)) for k, v in fresh.items()}


def loss_range(config: Config) -> tuple[str, float, float]:
    """What ``loss_and_grads`` reports as the loss for ``config``, and its range: (how, low, high).

    One direction is in [0, 4] for the ``"mse"`` and ``"2-2cos"`` forms and in [-1, 1] for
    ``"neg_cos"``; the symmetric loss sums the two directions (twice the range) or averages them.
    """
    low, high = (-1.0, 1.0) if config.loss_form == "neg_cos" else (0.0, 4.0)
    form = {"mse": "||n(p) - n(z)||^2", "2-2cos": "2 - 2 cos", "neg_cos": "-cos"}[config.loss_form]
    if not config.symmetric:
        return f"{form}, one direction", low, high
    if config.sym_reduce == "sum":
        return f"{form}, both directions summed", 2 * low, 2 * high
    return f"{form}, mean of both directions", low, high


def output_size(projection_dim: int = DEFAULT_PROJECTION_DIM, **options) -> int:
    """Width of the network output (the projection and prediction), i.e. projection_dim.

    Takes build's keyword options too, so that the options a network was built with can be passed
    whole (``output_size(**opts)``, as the Elixir ``output_size(opts)``); a name build would not take
    (a misspelt ``projection_size``, say, which would silently give the default) is refused.

    Examples:
        >>> import byol_ref as byol
        >>> byol.output_size(), byol.output_size(projection_dim=128, hidden_size=512)
        (256, 128)
    """
    known = {f.name for f in fields(Config)} | {"seed", "dtype", "backend"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"output_size got option(s) {unknown} that build does not take; the output width is "
                        f"projection_dim (default {DEFAULT_PROJECTION_DIM})")
    return check_positive_int(projection_dim, "projection_dim")


def default_projection_dim() -> int:
    """The default projection_dim P of ``build``.

    Examples:
        >>> import byol_ref as byol
        >>> byol.default_projection_dim()
        256
    """
    return DEFAULT_PROJECTION_DIM


def default_predictor_dim() -> int:
    """The default predictor hidden width Q of ``build``.

    Examples:
        >>> import byol_ref as byol
        >>> byol.default_predictor_dim()
        64
    """
    return DEFAULT_PREDICTOR_DIM


def default_hidden_size() -> int:
    """The default encoder width H of ``build``.

    Examples:
        >>> import byol_ref as byol
        >>> byol.default_hidden_size()
        256
    """
    return DEFAULT_HIDDEN_SIZE


def default_momentum() -> float:
    """The default EMA rate tau of ``ema_update``.

    Examples:
        >>> import byol_ref as byol
        >>> byol.default_momentum()
        0.996
    """
    return DEFAULT_MOMENTUM


# --------------------------------------------------------------------------- helpers


def _first(network: Network, name: str) -> dict:
    """A network's first param by the name a message gives it (``online.params['...']``): where one is,
    all are, as a network is built whole on one backend (``build(..., backend=...)``)."""
    key = next(iter(network.params))
    return {f"{name}.params[{key!r}]": network.params[key]}


def _params_dtype(params: dict, name: str = "params") -> str:
    """The one dtype of ``params``, which must be float32 or float64 (a cheap check: no data is read)."""
    dtypes = {v.dtype for v in params.values()}  # dtype objects: ``.name`` builds a string, once is enough
    if len(dtypes) > 1:  # (float64 in both byte orders is one dtype: checks.same_dtype)
        dtypes = {d.newbyteorder("=") for d in dtypes}
    if len(dtypes) != 1:
        raise TypeError(f"{name} mix dtypes {sorted(d.name for d in dtypes)}; expected one floating dtype")
    dtype = dtypes.pop().name
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} have dtype {dtype}; byol_ref computes in one of {FLOAT_DTYPES}")
    return dtype


@lru_cache(maxsize=64)
def buffer_shapes(config: Config, role: str) -> tuple:
    """The buffers a network needs, as (name, shape) pairs: running_mean and running_var (width,)
    and count () per batch-norm layer.

    Cached per (config, role): loss_and_grads checks its buffers every step.
    """
    shapes = param_shapes(config, role)
    return tuple((f"{name}.{stat}", shape)
                 for steps in network_plan(config, role).values() for kind, name in steps if kind == "batch_norm"
                 for stat, shape in (("running_mean", shapes[f"{name}.gamma"]),
                                     ("running_var", shapes[f"{name}.gamma"]), ("count", ())))


def _check_buffers(net, name, dtype: str):
    """Every buffer the network's batch-norm layers read is present, with its shape and dtype:
    running statistics in the params' ``dtype`` (float32 statistics would round a float64 run
    and come back float64), an integer count (extra keys are passed through). Reads metadata
    only, no data (a count's value is checked where it is read from a file: ``check_count``)."""
    if not isinstance(net.buffers, Mapping):
        raise TypeError(f"{name}.buffers must be a dict name -> array, got {type(net.buffers).__name__}")
    want = buffer_shapes(net.config, net.role)
    missing = [k for k, _ in want if k not in net.buffers]
    if missing:
        raise ValueError(f"{name}.buffers is missing {missing}: every batch-norm layer needs its running_mean, "
                         "running_var and count (init_buffers makes them; a Network from build has them)")
    for key, shape in want:
        got = getattr(net.buffers[key], "shape", None)
        if got is None or tuple(got) != shape:
            raise ValueError(f"{name}.buffers[{key!r}] has shape {got}, expected {shape} (an array)")
        kind = net.buffers[key].dtype
        if key.endswith(".count") and (kind.kind not in "iu" or kind.itemsize < 4):  # (uint8 255 went on as 0)
            raise TypeError(f"{name}.buffers[{key!r}] has dtype {kind}, expected an integer count of the batches "
                            "seen, of 32 bits or more (build makes int64): a narrower one wraps round")
        if not key.endswith(".count") and kind.name != dtype:
            raise TypeError(f"{name}.buffers[{key!r}] has dtype {kind}, expected {dtype} (the params' dtype); "
                            "byol_ref never mixes dtypes silently")


def _check_network(net, name, role=None):
    if not isinstance(net, Network):
        raise TypeError(f"{name} must be a byol_ref Network (from build/build_online/build_target), "
                        f"got {type(net).__name__}")
    if not isinstance(net.config, Config):
        raise TypeError(f"{name}.config must be a byol_ref Config, got {type(net.config).__name__}")
    if role is not None and net.role != role:
        raise ValueError(f"{name} must be the {role} network, got a {net.role} network")
    if not isinstance(net.params, Mapping):  # (None failed on "'NoneType' object has no attribute 'items'")
        raise TypeError(f"{name}.params must be a dict name -> array, got {type(net.params).__name__}")
    missing, extra, reshaped = param_mismatch(net.params, net.config, net.role)
    if missing or extra:
        raise ValueError(f"{name}.params do not match the config: missing {missing}, unexpected {extra}")
    for key, value in net.params.items():
        if not (hasattr(value, "shape") and hasattr(value, "dtype")):
            raise TypeError(f"{name}.params[{key!r}] must be a NumPy or CuPy array, got {type(value).__name__}")
        check_plain({f"{name}.params[{key!r}]": value})
    if reshaped:
        key, got, shape = reshaped[0]
        raise ValueError(f"{name}.params[{key!r}] has shape {got}, expected {shape}")


def _config_diff(a: Config, b: Config) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]!r} vs {db[k]!r}" for k in da if da[k] != db[k])
