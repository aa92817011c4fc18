"""Weight interchange: byol-ref's own ``.npz`` layout, the PyTorch ``state_dict`` layout and the
Axon parameter layout of the Elixir module ``Edifice.Contrastive.BYOL``.

Nothing here ever unpickles. Files are plain ``.npz`` (``numpy.load(allow_pickle=False)``) or
``.safetensors`` (read and written by the small reader/writer below, no extra package). A
PyTorch ``.pt``/``.pth``/``.bin`` file *is* a pickle and is refused with the export recipe
(run in your PyTorch process, with NumPy available there as ``np``):

    np.savez("weights.npz", **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    # or: safetensors.torch.save_file(model.state_dict(), "weights.safetensors")

**byol-ref layout** (the trace inputs layout, ``byol_ref.trace``): ``online.param.<name>``,
``online.buffer.<name>``, ``target.param.<name>``, ``target.buffer.<name>``, where ``<name>`` is a
byol-ref key (``projector.fc1.weight``) and Linear weights are stored ``(in, out)``.

**PyTorch layout**: the model's ``state_dict`` names; Linear weights ``(out, in)`` (transposed on
the way in and out); a norm layer's ``weight``/``bias`` are byol-ref's ``gamma``/``beta``; batch
norm's ``running_mean``, ``running_var`` and ``num_batches_tracked`` are byol-ref's buffers
``running_mean``, ``running_var`` and ``count``. A *mapping* ``{byol-ref name: torch name}`` ties the
two; two are shipped, built for a byol-ref network of the same structure (see
:func:`torch_mapping`):

* ``"byol-pytorch"`` (lucidrains/byol-pytorch 0.9, ``byol_pytorch.py``): ``online_encoder.net.<i>``
  (your ``net``, assumed an ``nn.Sequential`` laid out like byol-ref's encoder; pass
  ``hidden_layer=-1`` so the representation is its output), ``online_encoder.projector.<i>`` and
  ``online_predictor.<i>`` (``MLP``: 0 Linear, 1 BatchNorm1d, 2 ReLU, 3 Linear),
  ``target_encoder.net.<i>``, ``target_encoder.projector.<i>`` (created by the first forward).
  With its simplicial embedding (``Config.sem_simplices``, on by default in 0.9) the projector is
  ``projector.0.0`` Linear, ``projector.0.1`` BatchNorm1d, ``projector.1`` the softmax, then the
  MLP at ``projector.2.<i>``.
  Versions before 0.6 wrapped the MLP in a module with ``.net``: pass your own mapping.
* ``"lightly"`` (lightly 1.6, ``lightly/models/modules/heads.py`` ``BYOLProjectionHead`` /
  ``BYOLPredictionHead``: ``layers.0`` Linear without bias, ``layers.1`` BatchNorm1d, ``layers.2`` ReLU,
  ``layers.3`` Linear with bias; the model of ``examples/pytorch/byol.py``): ``backbone.<i>``,
  ``projection_head.layers.<i>``, ``prediction_head.layers.<i>``, ``backbone_momentum.<i>``,
  ``projection_head_momentum.layers.<i>``.

For your own model pass a dict (or a JSON file of one); ``<i>`` above is the position of the step
in byol-ref's ``network_plan`` (ReLUs count, as in an ``nn.Sequential``).

**Axon layout** (Elixir: ``Axon.ModelState.data``, a map ``%{layer => %{param => tensor}}``, flattened
to ``"<layer>.<param>"`` and written with ``Safetensors.write!``; see ``docs/verifying.md``): a dense layer's
``kernel`` is byol-ref's ``weight`` and is stored ``(in, out)`` as byol-ref's, so nothing is
transposed; ``bias``, and a layer norm's ``gamma`` and ``beta``, keep their names. One mapping is
shipped:

* ``"edifice"`` (``Edifice.Contrastive.BYOL``, ``build_online`` / ``build_target``, for byol-ref's
  ``layout="edifice"``): ``online_encoder_fc1``, ``online_encoder_norm``, ``online_encoder_fc2``,
  ``online_proj_fc1``, ``online_proj_norm``, ``online_proj_fc2``, ``predictor_fc1``,
  ``predictor_fc2``, and the target's ``target_encoder_*`` and ``target_proj_*`` (the two Axon
  models' parameter maps merged into one; their names do not collide).
"""
from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import os
import struct
from collections.abc import Mapping

from .backend import host as np
from .backend import to_numpy
from .checkpoint import atomic_savez, atomic_write, first_line, parse_json
from .checks import check_bool, check_count, check_path, not_a_file
from .model import NETWORK_LAYOUTS, NORMS, Config, Network, buffer_shapes, network_plan, param_shapes
from .trace import TraceError, load_npz

__all__ = ["torch_mapping", "axon_mapping", "MAPPING_STYLES", "LAYOUTS", "STYLE_LAYOUT", "to_torch_layout",
           "from_torch_layout", "to_layout", "from_layout", "default_mapping", "load_arrays", "save_arrays",
           "networks_to_arrays", "save_networks", "load_networks", "transpose_weights", "read_safetensors",
           "write_safetensors", "resolve_mapping", "network_names", "mapping_file_note", "mapping_path"]

MAPPING_STYLES = ("byol-pytorch", "lightly", "edifice")
LAYOUTS = ("byol-ref", "torch", "axon")
# the layout each shipped mapping style names
STYLE_LAYOUT = {"byol-pytorch": "torch", "lightly": "torch", "edifice": "axon"}

_PREFIXES = {
    "byol-pytorch": {("online", "encoder"): "online_encoder.net", ("online", "projector"): "online_encoder.projector",
                     ("online", "predictor"): "online_predictor", ("target", "encoder"): "target_encoder.net",
                     ("target", "projector"): "target_encoder.projector"},
    "lightly": {("online", "encoder"): "backbone", ("online", "projector"): "projection_head.layers",
                ("online", "predictor"): "prediction_head.layers", ("target", "encoder"): "backbone_momentum",
                ("target", "projector"): "projection_head_momentum.layers"},
}
# state_dict names that are aliases of mapped tensors: byol-pytorch's BYOL keeps ``self.net`` as well as
# ``online_encoder.net`` (the same module), so its state_dict lists ``net.*`` twice.
_ALIASES = {"byol-pytorch": ("net.",), "lightly": ()}
_SUFFIX = {"weight": "weight", "bias": "bias", "gamma": "weight", "beta": "bias", "running_mean": "running_mean",
           "running_var": "running_var", "count": "num_batches_tracked"}


def torch_mapping(style: str, config: Config) -> dict:
    """The shipped ``{byol-ref name: torch state_dict name}`` mapping for a network structure.

    Args:
        style: ``"byol-pytorch"`` or ``"lightly"``.
        config: the byol-ref Config (layout, norm, biases, use_predictor decide the names; sizes
            do not matter).

    Returns:
        dict over every ``online.param.*``, ``online.buffer.*``, ``target.param.*``, ``target.buffer.*``.
    """
    if style not in _PREFIXES:
        raise ValueError(f"torch mapping style must be one of {tuple(_PREFIXES)} (or pass a dict), got {style!r}"
                         + (" (an Axon style: see axon_mapping)" if style in STYLE_LAYOUT else ""))
    _check_config(config)
    if config.sem_simplices and style != "byol-pytorch":
        raise ValueError(f"{style} has no simplicial embedding (sem_simplices={config.sem_simplices}); "
                         "pass your own mapping")
    mapping = {}
    for role in ("online", "target"):
        shapes = param_shapes(config, role)
        for part, steps in network_plan(config, role).items():
            base = _PREFIXES[style][(role, part)]
            for i, (kind, name) in enumerate(steps):
                own = [k for k in shapes if k.rsplit(".", 1)[0] == name]
                if kind == "batch_norm":
                    own = own + [f"{name}.running_mean", f"{name}.running_var", f"{name}.count"]
                for key in own:
                    group = "buffer" if key.rsplit(".", 1)[1] in ("running_mean", "running_var", "count") else "param"
                    mapping[f"{role}.{group}.{key}"] = f"{base}.{_position(steps, i)}.{_SUFFIX[key.rsplit('.', 1)[1]]}"
    return mapping


def _position(steps, i: int) -> str:
    """Where step ``i`` sits in the torch module: its index, except behind byol-pytorch's simplicial
    embedding, whose projector is ``Sequential(Sequential(Linear, BatchNorm1d), SEM, MLP)``."""
    names = [name for _, name in steps]
    if "projector.sem" not in names:
        return str(i)
    sem = names.index("projector.sem")
    return f"0.{i}" if i < sem else "1" if i == sem else f"2.{i - sem - 1}"


# Edifice.Contrastive.BYOL's Axon layer names (build_online, build_target) for byol-ref's layers of the
# edifice layout; the role prefix ``online_`` / ``target_`` goes in front, except on the predictor's.
_EDIFICE_LAYERS = {"encoder.fc1": "encoder_fc1", "encoder.norm1": "encoder_norm", "encoder.fc2": "encoder_fc2",
                   "projector.fc1": "proj_fc1", "projector.norm1": "proj_norm", "projector.fc2": "proj_fc2",
                   "predictor.fc1": "predictor_fc1", "predictor.fc2": "predictor_fc2"}
_AXON_PARAM = {"weight": "kernel", "bias": "bias", "gamma": "gamma", "beta": "beta"}


def _check_config(config) -> None:
    if not isinstance(config, Config):
        raise TypeError(f"config must be a byol_ref Config (e.g. preset.config(encoder_dim=1)), got "
                        f"{type(config).__name__}")


def axon_mapping(style: str, config: Config) -> dict:
    """The shipped ``{byol-ref name: "<axon layer>.<param>"}`` mapping for a network structure.

    Args:
        style: ``"edifice"`` (``Edifice.Contrastive.BYOL``).
        config: the byol-ref Config; it must have the Elixir module's structure (``layout="edifice"``,
            layer norm, no simplicial embedding); biases and the predictor follow the config.

    Returns:
        dict over every ``online.param.*`` and ``target.param.*`` (layer norm has no buffers).
    """
    if style != "edifice":
        raise ValueError(f"Axon mapping style must be 'edifice' (or pass a dict), got {style!r}")
    _check_config(config)
    need = {"layout": "edifice", "norm": "layer", "sem_simplices": 0}
    wrong = {k: getattr(config, k) for k, v in need.items() if getattr(config, k) != v}
    if wrong:
        raise ValueError(f"the edifice mapping names the layers of Edifice.Contrastive.BYOL (layout='edifice', "
                         f"norm='layer', no simplicial embedding), but the config has {wrong}: use --preset "
                         "edifice, or pass your own mapping")
    mapping = {}
    for role in ("online", "target"):
        for key in param_shapes(config, role):
            layer, leaf = key.rsplit(".", 1)
            prefix = "" if layer.startswith("predictor.") else f"{role}_"
            mapping[f"{role}.param.{key}"] = f"{prefix}{_EDIFICE_LAYERS[layer]}.{_AXON_PARAM[leaf]}"
    return mapping


@functools.lru_cache(maxsize=None)
def network_names() -> frozenset:
    """Every array name a byol-ref network of any structure has, as ``networks_to_arrays`` writes
    them: ``online.param.encoder.fc1.weight``, ``target.buffer.projector.norm1.count``, ..."""
    names = set()
    for layout, norm, sem, bias in itertools.product(NETWORK_LAYOUTS, NORMS, (0, 1), (True, False)):
        config = Config(encoder_dim=2, hidden_size=4, projection_dim=4, predictor_dim=4, layout=layout, norm=norm,
                        norm_groups=2, sem_simplices=sem, sem_simplex_dim=2, hidden_bias=bias, encoder_bias=bias,
                        head_bias=bias)
        for role in ("online", "target"):
            names |= {f"{role}.param.{k}" for k in param_shapes(config, role)}
            names |= {f"{role}.buffer.{k}" for k, _ in buffer_shapes(config, role)}
    return frozenset(names)


def resolve_mapping(mapping, config: Config | None = None, layout: str | None = None) -> dict:
    """A mapping from a style name (needs ``config``), a dict, or a path to a JSON file of a dict.

    ``layout`` (``"torch"`` or ``"axon"``), when given, must be the one a style name belongs to.
    """
    if layout is not None and layout not in _FOREIGN_LAYOUTS:  # (a dict was returned whatever it said)
        raise ValueError(f"layout must be None or one of {_FOREIGN_LAYOUTS}, got {layout!r}")
    if isinstance(mapping, str) and layout is not None and STYLE_LAYOUT.get(mapping, layout) != layout:
        raise ValueError(f"mapping style {mapping!r} names {STYLE_LAYOUT[mapping]} parameters, not {layout} ones: "
                         f"use it with the {STYLE_LAYOUT[mapping]} layout (trace --layout {STYLE_LAYOUT[mapping]}, "
                         f"convert --from/--to {STYLE_LAYOUT[mapping]})")
    if isinstance(mapping, dict):
        bad = [(k, v) for k, v in mapping.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise TypeError(f"mapping must map str to str, got {bad[:2]}")
        if not mapping:  # (load_networks with strict=False returned {}, and save_networks wrote no arrays)
            raise ValueError("mapping is empty; expected {byol-ref name: torch or axon name} for the arrays to map")
        if len(set(mapping.values())) != len(mapping):
            raise ValueError("mapping sends two byol-ref names to the same torch or axon name")
        unknown = [k for k in mapping if k not in network_names()]
        if unknown:  # (a misspelt name would be written out as it is, or never match)
            near = difflib.get_close_matches(unknown[0], network_names(), n=1)
            raise ValueError(f"mapping names {len(unknown)} array(s) no byol-ref network has, e.g. {unknown[0]!r}"
                             + (f" (did you mean {near[0]!r}?)" if near else "")
                             + "; its keys are byol-ref names such as 'online.param.encoder.fc1.weight'")
        return dict(mapping)
    if isinstance(mapping, str) and mapping in STYLE_LAYOUT:
        if config is None:
            raise ValueError(f"mapping style {mapping!r} needs the network config (layout, norm, biases)")
        return torch_mapping(mapping, config) if STYLE_LAYOUT[mapping] == "torch" else axon_mapping(mapping, config)
    if mapping_path(mapping) is not None:
        what = f"mapping file {mapping_path(mapping)}"
        found = not_a_file(mapping, folder="is a folder")  # (the OS said only "[Errno 2] No such file ...")
        if found:
            raise FileNotFoundError(f"{what} {found}; a mapping is a style "
                                    f"({', '.join(sorted(STYLE_LAYOUT))}) or a .json file of "
                                    "{byol-ref name: torch or axon name}")
        with open(mapping, "rb") as f:
            loaded = parse_json(f.read(), what)
        if not isinstance(loaded, dict):  # (a string in it would name a style, or another file)
            raise ValueError(f"{what} holds a JSON {type(loaded).__name__}, expected an object "
                             "{byol-ref name: torch or axon name}")
        try:
            return resolve_mapping(loaded)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{what}: {exc}") from None
    raise ValueError(f"mapping must be one of {MAPPING_STYLES}, a dict {{byol-ref name: torch or axon name}} or a "
                     f".json file of one, got {mapping!r}")


def _is_weight(name: str, a) -> bool:
    return (name == "weight" or name.endswith(".weight")) and np.ndim(a) == 2


def _check_dicts(arrays_name: str, arrays, mapping=None, layout: str | None = None) -> None:
    """A TypeError naming ``arrays`` unless it is a dict keyed by name, and ``mapping`` (when a layout is
    given) unless it is a resolved dict: a style name or None was an AttributeError from inside."""
    if not isinstance(arrays, Mapping) or not all(isinstance(k, str) for k in arrays):
        raise TypeError(f"{arrays_name} must be a dict name -> array, got {type(arrays).__name__}")
    if layout is not None and not isinstance(mapping, Mapping):
        raise TypeError(f"mapping must be a dict {{byol-ref name: {layout} name}} (resolve_mapping makes one from a "
                        f"style name or a JSON file), got {type(mapping).__name__}")


def transpose_weights(arrays: dict) -> dict:
    """Transpose every 2-D array named ``weight`` or ``*.weight`` (Linear weights, their gradients and
    optimiser buffers): turns a trace written in PyTorch's (out, in) layout into byol-ref's (in, out),
    and back. Other arrays are passed through. Returns a new dict in the same order."""
    _check_dicts("arrays", arrays)
    return {k: (np.ascontiguousarray(np.asarray(v).T) if _is_weight(k, v) else v) for k, v in arrays.items()}


_FOREIGN_LAYOUTS = tuple(x for x in LAYOUTS if x != "byol-ref")  # what to_layout/from_layout convert to/from


def _check_layout(layout: str) -> None:
    if layout not in _FOREIGN_LAYOUTS:
        raise ValueError(f"layout must be one of {_FOREIGN_LAYOUTS}, got {layout!r}")


def to_layout(arrays: dict, mapping: dict, *, layout: str, strict: bool = True) -> dict:
    """byol-ref layout -> another framework's layout: rename by ``mapping``; with ``"torch"`` also
    transpose Linear weights to (out, in) (an Axon kernel is (in, out), as byol-ref's weight).

    Args:
        arrays: ``online.param.*`` etc. (host arrays).
        mapping: ``{byol-ref name: other name}`` (see :func:`resolve_mapping`).
        layout: ``"torch"`` or ``"axon"``.
        strict: every array must have a mapping entry (else ValueError listing them).
    """
    _check_layout(layout)
    strict = check_bool(strict, "strict")
    _check_dicts("arrays", arrays, mapping, layout)
    missing = [k for k in arrays if k not in mapping]
    if strict and missing:
        raise ValueError(f"no {layout} name for {len(missing)} byol-ref array(s), e.g. {missing[:4]}; "
                         "extend the mapping or pass strict=False")
    out = {}
    for k, v in arrays.items():
        if k in mapping:
            a = np.array(to_numpy(v), copy=True)  # (not the network's own: torch.from_numpy would share them)
            out[mapping[k]] = np.ascontiguousarray(a.T) if layout == "torch" and _is_weight(k, a) else a
    return out


def to_torch_layout(arrays: dict, mapping: dict, *, strict: bool = True) -> dict:
    """byol-ref layout -> torch state_dict layout (rename, transpose Linear weights); see :func:`to_layout`."""
    return to_layout(arrays, mapping, layout="torch", strict=strict)


def unmapped_names(state: dict, mapping: dict, *, ignore_prefixes=()) -> list:
    """Torch names in ``state`` that ``mapping`` (``{byol-ref name: torch name}``) does not name,
    aliases under ``ignore_prefixes`` left out, in state order."""
    inverse = set(mapping.values())
    return [t for t in state if t not in inverse and not t.startswith(tuple(ignore_prefixes))]


def byol_pytorch_hint(names) -> str:
    """A hint when torch names show one of byol-pytorch's structures that its plain BYOL is not. Its
    simplicial embedding (0.9's default), to a config without one: names ``...projector.0.0.*`` exist
    only there. ``BYOL(use_momentum=False)``, which is SimSiam: its ``SimSiamMLP`` projector's third
    Linear and last batch norm (``...projector.6.weight``, ``...projector.7.running_mean``), which no
    BYOL projector has (a BYOL MLP's are 0, 1 and 3). Empty otherwise."""
    if any(".projector.0.0." in n for n in names):
        return (" These look like byol-pytorch 0.9's default simplicial embedding (projector.0.0, 0.1, 2.<i>): "
                "add --set sem_simplices=32 (model.Config.sem_simplices), or build its BYOL with "
                "use_simplicial_embeddings=False.")
    if any(n.endswith((".projector.6.weight", ".projector.7.running_mean")) for n in names):
        return (" These look like byol-pytorch's BYOL(use_momentum=False), which is SimSiam, not BYOL: its "
                "projector is SimSiamMLP (projector.0, 3 and 6: three Linears without biases, a batch norm after "
                "each, the last without gamma and beta), which byol-ref does not build; docs/verifying.md says "
                "what a byol-ref run of it matches.")
    return ""


def from_torch_layout(state: dict, mapping: dict, *, strict: bool = True, ignore_prefixes=()) -> dict:
    """torch state_dict layout -> byol-ref layout (rename, transpose Linear weights); see :func:`from_layout`."""
    return from_layout(state, mapping, layout="torch", strict=strict, ignore_prefixes=ignore_prefixes)


def from_layout(state: dict, mapping: dict, *, layout: str, strict: bool = True, ignore_prefixes=()) -> dict:
    """Another framework's layout -> byol-ref layout: rename by ``mapping``; with ``"torch"`` also
    transpose Linear weights from (out, in) and read ``num_batches_tracked`` as an int64 ``count``.

    Args:
        state: ``{torch or axon name: array}``.
        mapping: ``{byol-ref name: torch or axon name}``.
        layout: ``"torch"`` or ``"axon"`` (Linear weights (in, out), as Axon and Haiku keep them; a
            per-feature tensor stored ``(1, F)``, as old Axon versions kept a dense bias and Haiku keeps
            batch-norm scales, offsets and moving averages, is read as ``(F,)``).
        strict: every mapped torch name must be present, and every torch name must be mapped
            (else ValueError listing them). Without it, tensors of modules the mapping does not
            touch (a classifier head, say) are left out; a tensor of a module it *does* map (a
            bias on a Linear the byol-ref config builds without one) is still an error, since
            leaving it out would silently compute another network.
        ignore_prefixes: torch names starting with these are aliases, never "unmapped".

    Returns:
        ``{byol-ref name: array}`` in the mapping's order.
    """
    _check_layout(layout)
    strict = check_bool(strict, "strict")
    _check_dicts("state", state, mapping, layout)
    absent = [t for t in mapping.values() if t not in state]
    unmapped = unmapped_names(state, mapping, ignore_prefixes=ignore_prefixes)
    if absent and (strict or len(absent) == len(mapping)):
        raise ValueError(f"the {layout} state lacks {len(absent)} mapped name(s), e.g. {absent[:4]}; its names "
                         f"include {list(state)[:6]}. Wrong mapping style, or a model of another structure "
                         "(the --preset of the implementation that wrote it, or --set head_bias/hidden_bias/layout)?"
                         + byol_pytorch_hint(state))
    # A tensor of a layer the mapping does name is a structure mismatch, whatever ``strict`` says:
    # said first, since "extend the mapping" would be the wrong advice for it.
    modules = {}  # torch module -> the byol-ref names mapped to its tensors
    for ref, t in mapping.items():
        modules.setdefault(t.rsplit(".", 1)[0], []).append(ref)
    orphans = [t for t in unmapped if t.rsplit(".", 1)[0] in modules]
    # each orphan's norm layer (its module maps a norm's gamma or beta), or None
    norms = [next((r for r in modules[t.rsplit(".", 1)[0]] if ".param." in r and r.endswith((".gamma", ".beta"))),
                  None) for t in orphans]
    if orphans and all(norms):
        buffers = norms[0].rsplit(".", 1)[0].replace(".param.", ".buffer.", 1)
        raise ValueError(f"the {layout} state has {orphans[:4]}, unmapped tensor(s) of norm layer(s) the mapping "
                         f"names the gamma and beta of. If they are running statistics, map them to byol-ref's "
                         f"buffers, e.g. {buffers}.running_mean, .running_var and .count (the running "
                         "values as eval mode uses them: with bn_running='haiku' the debiased average "
                         "h / (1 - decay^count), not Haiku's hidden h); if your norm keeps none, remove them")
    if orphans:
        raise ValueError(f"the {layout} state has {orphans[:4]}, tensor(s) of layers the byol-ref network maps but "
                         "has no place for: the model's structure differs from the config's (a bias where "
                         "hidden_bias, encoder_bias or head_bias is False?). Use the preset of the implementation "
                         "that wrote the weights (--preset byol-pytorch, lightly, ...) or set the matching option "
                         "(--set encoder_bias=true for a backbone with biases in front of bias-free heads), "
                         "or remove the tensor if your model never uses it")
    if strict and unmapped:
        raise ValueError(f"{len(unmapped)} {layout} name(s) have no byol-ref name, e.g. {unmapped[:4]}; "
                         "extend the mapping or pass strict=False." + byol_pytorch_hint(unmapped))
    out = {}
    for ref, t in mapping.items():
        if t in state:
            try:  # (a copy: the caller's own arrays, a torch model's through .numpy(), are never the params)
                a = np.array(state[t], copy=True)
            except (RuntimeError, TypeError) as exc:  # (torch's: a tensor that requires grad, a bfloat16 one)
                raise TypeError(f"the {layout} state's {t!r} (for {ref}) is no array NumPy can read "
                                f"({type(state[t]).__name__}: {first_line(exc)}); "
                                "pass plain arrays, {k: v.detach().cpu().double().numpy() for k, v in "
                                "state_dict.items()} for a torch model's") from None
            if a.dtype.kind not in "fiu":
                raise TypeError(f"the {layout} state's {t!r} (for {ref}) holds {a.dtype} data, expected numbers")
            # (both passed through unconverted: a weight of another rank was not transposed, and integers
            # were cast where the arrays were used)
            if a.dtype.kind != "f" and not ref.endswith(".count"):
                raise TypeError(f"the {layout} state's {t!r} (for {ref}) holds {a.dtype} data, expected floating "
                                "point (only a batch count is a whole number)")
            if ref.endswith(".weight") and a.ndim != 2:  # (a mapping's byol-ref names are its networks')
                want = "(out, in)" if layout == "torch" else "(in, out)"
                raise ValueError(f"the {layout} state's {t!r} (for {ref}) has shape {a.shape}, expected a 2-D Linear "
                                 f"weight {want}")
            if layout == "torch" and _is_weight(ref, a):
                a = np.ascontiguousarray(a.T)
            elif layout == "torch" and ref.endswith(".count"):
                a = check_count(a, t)
            elif layout == "axon" and not _is_weight(ref, a) and a.ndim == 2 and a.shape[0] == 1:
                # a per-feature tensor kept as {1, F}: older Axon's dense bias (Axon.Shape.dense_bias),
                # Haiku's scale, offset and moving averages
                a = a.reshape(-1)
            out[ref] = a
    _check_orientation(out, mapping, layout)
    return out


def _check_orientation(arrays: dict, mapping: dict, layout: str) -> None:
    """A Linear weight read in the wrong orientation would otherwise be reported later as a wrong-sized
    bias: compare each weight's output width with its bias (byol-ref names, weights (in, out))."""
    for ref, w in arrays.items():
        bias_ref = ref[:-len("weight")] + "bias"
        b = arrays.get(bias_ref) if _is_weight(ref, w) else None
        if b is not None and np.ndim(b) == 1 and w.shape[1] != b.shape[0]:
            stored = w.T.shape if layout == "torch" else w.shape  # as the file holds it
            want = "(out, in)" if layout == "torch" else "(in, out)"
            hint = " It looks transposed." if w.shape[0] == b.shape[0] else ""
            raise ValueError(f"{mapping[ref]} has shape {stored} but its bias {mapping[bias_ref]} has {b.shape[0]} "
                             f"features: {layout} weights are {want}.{hint}")


# --------------------------------------------------------------------------- files


# (U16, U32 and U64 are the format's too: an Nx or a safetensors writer may hold a step count or a key in one)
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
              "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_ST_NAMES = {np.dtype(v).name: k for k, v in _ST_DTYPES.items()}


def _safetensors_entry(path, name, info, nbytes: int) -> tuple:
    """``(dtype, shape, (lo, hi))`` of one header entry, checked against the format and the
    ``nbytes``-byte data buffer (sizes in Python ints: a huge shape cannot overflow), else a TraceError."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        raise TraceError(f"{path}: malformed header entry for {name!r}: {info!r} (expected an object with dtype, "
                         "shape and data_offsets)")
    dt, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dt, str) or (dt != "BF16" and dt not in _ST_DTYPES):
        raise TraceError(f"{path}: {name!r} has dtype {dt!r}, which byol-ref does not read "
                         f"(it reads {sorted([*_ST_DTYPES, 'BF16'])})")
    if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
        raise TraceError(f"{path}: {name!r} has shape {shape!r}, expected a list of ints >= 0")
    itemsize = 2 if dt == "BF16" else np.dtype(_ST_DTYPES[dt]).itemsize
    if len(shape) > 64 or math.prod(d for d in shape if d) * itemsize >= 2**63:  # what a NumPy array can hold
        raise TraceError(f"{path}: {name!r} has shape {shape if len(shape) <= 8 else f'of {len(shape)} dimensions'}, "
                         "which no NumPy array holds (at most 64 dimensions, under 2**63 bytes counting the "
                         "zero-length ones as 1)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(is_int(o) for o in offsets)):
        raise TraceError(f"{path}: {name!r} has data offsets {offsets!r}, expected [begin, end], two ints")
    if not 0 <= offsets[0] <= offsets[1] <= nbytes:
        raise TraceError(f"{path}: {name!r} has data offsets {offsets!r}, outside the {nbytes}-byte data "
                         f"buffer: expected [begin, end] with 0 <= begin <= end <= {nbytes}")
    count = math.prod(shape)
    if (offsets[1] - offsets[0]) != count * itemsize:
        raise TraceError(f"{path}: {name!r} holds {offsets[1] - offsets[0]} bytes but its shape {shape} of {dt} "
                         f"needs {count * itemsize}")
    return dt, tuple(shape), tuple(offsets)


def read_safetensors(path) -> dict:
    """Read a ``.safetensors`` file into host arrays (BF16 is widened to float32 exactly)."""
    path = check_path(path)
    found = not_a_file(path)
    if found:  # (open said "[Errno 21] Is a directory")
        raise FileNotFoundError(f"weights file {path} {found}; expected a .safetensors file")
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise TraceError(f"{path} is too short to be a .safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise TraceError(f"{path}: header length {n} exceeds the file size; truncated or not .safetensors")
    header = parse_json(raw[8:8 + n], f"{path}: the .safetensors header", TraceError)
    if not isinstance(header, dict):
        raise TraceError(f"{path}: the .safetensors header is a JSON {type(header).__name__}, expected an object "
                         "{name: {dtype, shape, data_offsets}}")
    meta = header.get("__metadata__", {})  # a string-to-string map; safetensors itself refuses any other
    odd = [f"gives {k!r} a JSON {type(v).__name__}" for k, v in meta.items() if not isinstance(v, str)] \
        if isinstance(meta, dict) else [f"is a JSON {type(meta).__name__}"]
    if odd:
        raise TraceError(f"{path}: the .safetensors __metadata__ {odd[0]}, expected an object of strings")
    data = memoryview(raw)[8 + n:]
    entries = {name: _safetensors_entry(path, name, info, len(data))
               for name, info in header.items() if name != "__metadata__"}
    # The format packs the tensors end to end from byte 0 to the file's end: no gap, no overlap (two
    # names for the same bytes), nothing after the last (safetensors itself refuses such a file).
    end = 0
    for name, (_, _, (lo, hi)) in sorted(entries.items(), key=lambda e: e[1][2]):
        if lo != end:
            before = f"the tensors before it end at byte {end}" if end else "the data begin at byte 0"
            raise TraceError(f"{path}: {name!r} starts at data byte {lo}, but {before}; .safetensors packs tensors "
                             f"end to end ({'overlap' if lo < end else 'gap'})")
        end = hi
    if end != len(data):
        raise TraceError(f"{path}: the tensors end at data byte {end}, but the file holds {len(data)} data bytes; "
                         ".safetensors allows nothing after the last tensor (appended to, or a wrong header)")
    out = {}
    for name, (dt, shape, (lo, hi)) in entries.items():
        buf = bytes(data[lo:hi])
        if dt == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype("<u4") << 16).view("<f4")
        else:
            a = np.frombuffer(buf, dtype=_ST_DTYPES[dt])
        out[name] = a.reshape(shape).astype(a.dtype.newbyteorder("="), copy=True)
    return out


def write_safetensors(path, arrays: dict) -> None:
    """Write host arrays as ``.safetensors`` (little-endian, header padded to 8 bytes)."""
    check_path(path)
    if not isinstance(arrays, Mapping):  # (it was "'NoneType' object has no attribute 'items'")
        raise TypeError(f"arrays must be a dict name -> array, got {type(arrays).__name__}")
    header, chunks, offset = {}, [], 0
    for name, v in arrays.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"array names must be non-empty strings other than '__metadata__', got {name!r}")
        a = np.array(to_numpy(v), order="C")  # (ascontiguousarray would turn a 0-d array into 1-d)
        if a.dtype.name not in _ST_NAMES:
            raise TypeError(f"{name!r} has dtype {a.dtype}; .safetensors here holds {sorted(_ST_NAMES)}")
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_NAMES[a.dtype.name], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        chunks.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(h)) + h)
        for c in chunks:
            f.write(c)

    atomic_write(path, write)


def load_arrays(path) -> dict:
    """Every array of a ``.npz`` or ``.safetensors`` file, in file order; pickles are refused."""
    p = check_path(path)
    if p.lower().endswith(".safetensors"):
        return read_safetensors(p)
    return load_npz(p, "weights file")


def save_arrays(path, arrays: dict) -> str:
    """Write arrays as ``.safetensors`` (by extension) or ``.npz`` (otherwise; the exact path is kept)."""
    p = check_path(path)
    if not isinstance(arrays, Mapping):
        raise TypeError(f"arrays must be a dict name -> array, got {type(arrays).__name__}")
    if p.lower().endswith(".safetensors"):
        write_safetensors(p, arrays)
    else:
        atomic_savez(p, {k: np.asarray(to_numpy(v)) for k, v in arrays.items()})
    return p


def networks_to_arrays(online: Network, target: Network | None = None) -> dict:
    """``online.param.*``, ``online.buffer.*`` (and the target's) as host arrays, byol-ref layout:
    copies, so that changing one leaves the networks as they are (on NumPy the networks' own arrays
    were returned, and a ``*=`` on one changed the network)."""
    out = {}
    for role, net in (("online", online), ("target", target)):
        if net is None and role == "target":
            continue
        if not isinstance(net, Network):
            raise TypeError(f"{role} must be a byol_ref Network, got {type(net).__name__}")
        out.update({f"{role}.param.{k}": np.array(to_numpy(v)) for k, v in net.params.items()})  # (copies)
        out.update({f"{role}.buffer.{k}": np.array(to_numpy(v)) for k, v in net.buffers.items()})
    return out


def default_mapping(layout: str, mapping=None):
    """``mapping``, or the layout's default when it is None: the Axon layout has one shipped style
    (``"edifice"``); PyTorch's two are a choice, so the torch layout has none (None is returned)."""
    if mapping is None and layout == "axon":
        return "edifice"
    return mapping


def _layout_mapping(layout: str, mapping, path):
    """The mapping for a non-byol-ref layout (see :func:`default_mapping`), or a ValueError naming the choices."""
    mapping = default_mapping(layout, mapping)
    if mapping is None:
        raise ValueError(f"{path} in the {layout} layout needs a mapping: one of "
                         f"{tuple(k for k, v in STYLE_LAYOUT.items() if v == layout)}, a dict or a JSON file")
    return mapping


def save_networks(path, online: Network, target: Network | None = None, *, layout: str = "byol-ref",
                  mapping=None, strict: bool = True) -> str:
    """Save networks in byol-ref's layout, as a torch state_dict or as flat Axon parameters.

    Args:
        path: ``.npz`` or ``.safetensors``.
        online, target: Networks (target optional).
        layout: ``"byol-ref"``, ``"torch"`` or ``"axon"``.
        mapping: with ``"torch"``: a style (``"byol-pytorch"``, ``"lightly"``), a dict or a JSON path;
            with ``"axon"``: ``"edifice"`` (the default), a dict or a JSON path.
        strict: every array of the networks must have a mapping entry (the shipped mappings name
            them all); ``False`` writes only those a partial mapping names.
    """
    strict = check_bool(strict, "strict")
    arrays = networks_to_arrays(online, target)
    if layout in _FOREIGN_LAYOUTS:
        mapping = resolve_mapping(_layout_mapping(layout, mapping, path), online.config, layout)
        arrays = to_layout(arrays, mapping, layout=layout, strict=strict)
    elif layout != "byol-ref":
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return save_arrays(path, arrays)


def load_networks(path, *, layout: str = "byol-ref", mapping=None, config: Config | None = None,
                  strict: bool = True) -> dict:
    """Load weights into byol-ref's layout (a dict; feed it to ``trace.networks_from_inputs``).

    Args:
        path: ``.npz`` or ``.safetensors`` (never a pickle).
        layout: ``"byol-ref"`` (the file is already in byol-ref's layout), ``"torch"`` or ``"axon"``.
        mapping: with ``"torch"``: a style name (needs ``config``), a dict or a JSON path; with
            ``"axon"``: ``"edifice"`` (the default; needs ``config``), a dict or a JSON path.
        config: the structure the style mapping is built for (e.g. ``preset.config(encoder_dim=1)``).
        strict: every name in the file must be mapped.

    Returns:
        ``{"online.param.<name>": array, ...}`` (host arrays, weights (in, out)).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    strict = check_bool(strict, "strict")
    arrays = load_arrays(path)
    if layout == "byol-ref":
        return arrays
    mapping_in = _layout_mapping(layout, mapping, path)
    ignore = _ALIASES.get(mapping_in, ()) if isinstance(mapping_in, str) else ()
    mapping_out = resolve_mapping(mapping_in, config, layout)
    try:
        return from_layout(arrays, mapping_out, layout=layout, strict=strict, ignore_prefixes=ignore)
    except (TypeError, ValueError) as exc:  # say which files do not fit
        raise type(exc)(f"{os.fspath(path)}{mapping_file_note(mapping_in)}: {exc}") from None


def mapping_path(mapping) -> str | None:
    """The JSON file a mapping names (a str or path ending in ``.json``), or None for a style
    name or a dict: the one rule by which ``resolve_mapping`` reads a file."""
    if isinstance(mapping, (str, os.PathLike)) and os.fspath(mapping).endswith(".json"):
        return os.fspath(mapping)
    return None


def mapping_file_note(mapping) -> str:
    """`` (mapping file PATH)`` when ``mapping`` names a JSON file, for errors about what it maps."""
    path = mapping_path(mapping)
    return "" if path is None else f" (mapping file {path})"
