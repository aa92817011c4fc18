"""The ``byol-ref`` command line (also ``python -m byol_ref``).

    byol-ref train [--data digits|synthetic|PATH] [options]   train, evaluate, plot
    byol-ref eval RUN_DIR_OR_CHECKPOINT                        evaluate a saved run
    byol-ref embed RUN_DIR_OR_CHECKPOINT --out FEATURES.npz    export its features for your own probes
    byol-ref trace --preset NAME (--inputs FILE | --dims ...)  trace every tensor of N steps
    byol-ref diff A.npz B.npz                                  compare two traces
    byol-ref convert IN OUT --from/--to byol-ref|torch|axon    weight interchange

Every run writes into its own directory: ``config.json``, ``metrics.jsonl``,
``checkpoint.npz`` (atomic, never pickled), ``report.json``, ``report.txt`` and PNG plots.
An existing non-empty directory is refused unless ``--resume`` or ``--overwrite`` (which keeps the
replaced run in ``RUN_DIR/.replaced`` until the new run's first checkpoint, and puts it back if the new
run stops before that).
"""
from __future__ import annotations

import argparse
import errno
import functools
import hashlib
import itertools
import json
import math
import os
import platform
import shlex
import shutil
import signal
import sys
import time
import warnings
from dataclasses import asdict, fields, replace
from pathlib import Path

from .augment import default_views_for, views_to_dicts
from .backend import get_backend, host
from .checkpoint import (atomic_savez, atomic_write, atomic_write_text, disk_full, first_line, newer_writer,
                         parse_json)
from .checkpoint import load as load_checkpoint_file
from .checks import (ArgumentError, ByolRefWarning, check_image_shape, check_real, check_seed, check_writable,
                     in_the_way, not_a_file, why_refused)
from .data import csv_header_rule, image_files_hint, labels_file, load_digits, load_file, synthetic
from .model import NORMS, Config, loss_range
from .rundir import (ENDS, REPORT_FILES, RUN_FILES, SET_ASIDE, Replacing, RunDirectoryBusy, RunLock,
                     first_interrupt_only, interrupt_after_step, interrupt_status, interrupted, interrupts_held,
                     leave_a_closed_terminal, publish_report, refuse_for_set_aside, remove_replaced, remove_stale,
                     sigterm_as_interrupt, staged_report)
from .train import (EDITED, MONITOR_K, TrainConfig, TrainingDiverged, apply_preprocessing, check_configs,
                    check_resume_length, check_same_training_data, checkpoint_file, encode, fit, fit_preprocessing,
                    load_checkpoint, make_schedules, monitor_sizes, pixels_outside, prepare_training_data,
                    recorded_views, values_beyond)
from .version import __version__

EXIT_USAGE = 2


def _load_data(spec: dict, strict: bool = True, scale_pixels: bool = True):
    """The data set ``spec`` names (``strict``, ``scale_pixels``: see ``load_file``; a run's own data are
    read with strict False; 8-bit and 16-bit images are divided by their full scale unless the run
    they are for standardises its inputs as feature vectors). The spec's ``image_shape`` and
    ``full_scale`` (``--image-shape``, ``--full-scale``, as a run records them) go to ``load_file``."""
    kind = spec["data"]
    if kind in ("digits", "synthetic") and spec.get("csv_header", "auto") != "auto":
        raise ValueError(f"--csv-header {spec['csv_header']} is for a .csv --data, not the built-in {kind}")
    if kind in ("digits", "synthetic") and spec.get("labels") is not None and strict:  # (runs that recorded one
        # before it was refused read their data as they trained: without it)
        raise ValueError(f"--labels {spec['labels']} is for a file --data; the built-in {kind} has its own labels")
    image_shape, full_scale = spec.get("image_shape"), spec.get("full_scale")
    for flag, value in (("--image-shape", image_shape), ("--full-scale", full_scale)):
        if kind in ("digits", "synthetic") and value is not None:
            shown = _shape_text(value) if flag == "--image-shape" else f"{value:g}"
            raise ValueError(f"{flag} {shown} is for a file --data; the built-in {kind} is read as it is")
    if full_scale is not None:
        scale_pixels = check_real(full_scale, "--full-scale", lo=0, lo_open=True)
    if image_shape is not None:
        image_shape = check_image_shape(tuple(image_shape), "--image-shape")
    seed = check_seed(spec.get("data_seed", 0), "--data-seed")  # (synthetic and load_file said "seed")
    if kind == "digits":
        return load_digits()
    if kind == "synthetic":
        return synthetic(seed=seed)
    found = kind and not_a_file(kind, missing=None)  # (load_file said "path:")
    if found:
        raise FileNotFoundError(f"--data {kind!r} {found}; expected 'digits', 'synthetic' or a .npy/.npz/.csv "
                                f"feature file{image_files_hint(kind)}")
    if not kind or not Path(kind).exists():  # ("" is Path('.'), which was refused as "path: '.' is a directory")
        raise FileNotFoundError(f"--data {kind!r}: no such file, and not a built-in data set; pass 'digits', "
                                "'synthetic' or a .npy/.npz/.csv feature file")
    if Path(kind).suffix.lower() not in (".npy", ".npz", ".csv", ".txt"):  # (load_file said "path must end in")
        raise ValueError(f"--data {kind!r} is no .npy, .npz or .csv file; expected 'digits', 'synthetic' or a "
                         f"feature file of those{image_files_hint(kind)}")
    header = _CSV_HEADER[spec.get("csv_header", "auto")]  # (a run's record is checked by _data_for_run)
    if header is not None and Path(kind).suffix.lower() not in (".csv", ".txt"):
        raise ValueError(f"--csv-header {spec['csv_header']} is for a .csv --data; {kind} is not one")
    try:
        return load_file(kind, labels=spec.get("labels"), seed=seed, header=header, strict=strict,
                         image_shape=image_shape, scale_pixels=scale_pixels)
    except ArgumentError as exc:
        if exc.arg == "test_fraction":  # (the command line has no test_fraction to raise or set to 0)
            raise exc.reworded(advice="use more samples of each class, or a file already split (an .npz of "
                               "x_train, y_train, x_test and y_test), which is read as given") from None
        if exc.arg == "image_shape" and image_shape is not None:  # (named as the flag gave it)
            raise exc.reworded(subject=f"--image-shape {_shape_text(image_shape)}") from None
        raise


_CSV_HEADER = {"auto": None, "yes": True, "no": False}
_CSV_HEADER_ARG = dict(choices=tuple(_CSV_HEADER), default="auto",
                       help="whether a .csv/.txt --data starts with a header row. auto: yes when no field of its "
                            "first row is a number, or --labels names one; no when all are, or when the one other "
                            "field is a class name in the --labels column that comes again below; any other "
                            "first row of numbers and other fields, or one that reads as pandas' column numbers "
                            "(0,1,...,K-1, or rising whole numbers above rows of fractions), is refused until yes "
                            "or no says")


_FULL_SCALE_ARG = dict(type=float, default=None, metavar="N",
                       help="with a file --data: the value of a full-white pixel, which every value is divided by "
                            "as the data are read: 255 for 8-bit pixels written as numbers (a CSV), 16 for the UCI "
                            "digits' counts (default: uint8 and uint16 images by 255 and 65535, others as stored)")


def _shape_text(shape) -> str:
    """An image shape as ``--image-shape`` and train's first line write it: ``8x8``, ``3x32x32``."""
    return "x".join(map(str, shape))


def _image_shape_arg(text: str) -> tuple:
    """``--image-shape``: ``28x28`` or ``3x32x32`` as a tuple of ints >= 1, or the parser's error."""
    try:
        shape = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"expected HxW or CxHxW, whole numbers >= 1 (28x28, 3x32x32), got {text!r}")
    return shape


def _with_csv_header(spec: dict) -> dict:
    """``spec`` with the header its CSV data file was read with: a run records "yes" or "no", so
    that its data are read the same way later, whatever rule ``--csv-header auto`` follows then.
    A record without one (runs before it) gets the rule those runs followed."""
    path = spec.get("data")
    if (spec.get("csv_header", "auto") != "auto" or not isinstance(path, str)
            or Path(path).suffix.lower() not in (".csv", ".txt") or not Path(path).is_file()):
        return spec
    return {**spec, "csv_header": "yes" if csv_header_rule(path, spec.get("labels")) else "no"}


def _parse_value(field, text):
    """Convert ``text`` to the type of a dataclass field (bool, int, float, str, or None).

    ``null`` is None (an optional field's default); so is ``none``, except for a text field, where
    it is the word: ``norm=none`` and ``exclude=none`` are choices of theirs (read as None, norm
    took the layout's batch norm, and exclude was refused).
    """
    kind = str(field.type)
    if text.lower() == "null" or (text.lower() == "none" and "str" not in kind):
        return None
    if "bool" in kind:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--set {field.name}: expected true/false, got {text!r}")
    try:
        if "int" in kind and "float" not in kind:
            return int(text)
        if "float" in kind:
            return float(text)
    except ValueError:
        expected = "an int" if "float" not in kind else "a number"
        raise ValueError(f"--set {field.name}: expected {expected}, got {text!r}") from None
    return text


def _route_pairs(pairs, groups):
    """Parse ``--set KEY=VALUE`` pairs into the first group whose dataclass has that field.

    Args:
        pairs: the --set strings (or None).
        groups: list of (label, {field name: dataclasses.Field}, dict to fill), in priority order.
    """
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        key, text = pair.split("=", 1)
        key = key.strip().replace("-", "_")
        for _, known, target in groups:
            if key in known:
                target[key] = _parse_value(known[key], text)
                break
        else:
            from .presets import OWN_FIELDS

            if key in OWN_FIELDS:  # (a preset's own field: it maps onto training fields)
                raise ValueError(f"--set: {key} is a field of the presets, not of train's configs: pass it with a "
                                 f"--preset (--preset deepmind --set {key}=...), or set the training fields it maps "
                                 "onto (docs/presets.md)")
            listed = "; ".join(f"{label}: {sorted(known)}" for label, known, _ in groups)
            raise ValueError(f"--set: unknown field {key!r}; {listed}")


def _apply_sets(pairs, model_kw, train_kw):
    _route_pairs(pairs, [("model fields", {f.name: f for f in fields(Config)}, model_kw),
                         ("training fields", {f.name: f for f in fields(TrainConfig)}, train_kw)])


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where the help does not already state its default and X means
    something: not None (a None default is explained in the help text or means "not given"; the
    required arguments' is None) and not a switch's False. (argparse's own formatter leaves a SUPPRESS
    default out.)"""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.nargs == 0 or "default" in text:
            return text
        return super()._get_help_string(action)


def _explicit_dests(argv: list) -> set:
    """The ``dest`` of every option the command line ``argv`` gives, whatever its value.

    Parsing again with every default suppressed leaves only what was typed, so ``--epochs 300``
    counts as given even though 300 is the default (comparing values cannot tell that apart)."""
    def suppress(parser):
        for action in parser._actions:
            action.default = argparse.SUPPRESS
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    suppress(child)
    shadow = build_parser()
    suppress(shadow)
    return set(vars(shadow.parse_args(argv))) - {"command"}


# What a script calling byol-ref can read from its exit status (main's docstring, --help, README).
EXIT_STATUSES = ("exit status: 0 done; 1 training diverged (a non-finite loss; the last good checkpoint stays), "
                 "diff found tensors that differ, or memory or disk space ran out; 2 bad input (an option, a file, "
                 "a setting: the message names it); 130 stopped by Ctrl-C, 143 by SIGTERM, 129 by SIGHUP (the "
                 "terminal closed); 141 the reader of the output went away (| head)")


#: The report's probe defaults: kNN neighbours (the training's kNN monitor takes the same) and the low-label
#: probe's labels per class.
KNN_K, LABELS_PER_CLASS = MONITOR_K, 10


def _add_probe_args(g) -> None:
    """The report's probe options, the same for ``train`` and ``eval``."""
    g.add_argument("--knn-k", type=int, default=KNN_K,
                   help=f"kNN neighbours in the report (default: {KNN_K}, or every training row where there are fewer)")
    g.add_argument("--knn-temperature", type=float, default=None,
                   help="kNN vote weights exp(sim/T) (e.g. 0.1); default: majority vote")
    g.add_argument("--labels-per-class", type=int, default=LABELS_PER_CLASS,
                   help=f"labels per class of the low-label probe (default: {LABELS_PER_CLASS}, or as many as the "
                        "smallest class of the training split holds where that is fewer, 2 at least)")


def build_parser() -> argparse.ArgumentParser:
    """The ``byol-ref`` argument parser: one sub-command per task (train, eval, embed, trace, diff,
    convert), each option with its help; ``--help`` prints it."""
    p = argparse.ArgumentParser(prog="byol-ref", description="BYOL reference implementation (NumPy/CuPy).",
                                epilog=EXIT_STATUSES)
    p.add_argument("--version", action="version",
                   version=f"byol-ref {__version__} (NumPy {host.__version__}, Python {platform.python_version()})")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train BYOL, then evaluate and plot",
                       description="Train BYOL on a data set, then report probes against baselines. The defaults "
                                   "shown are byol-ref's own; with --preset, the preset's value replaces the default "
                                   "of every option not given on the command line.",
                       formatter_class=_HelpFormatter)
    g = t.add_argument_group("data")
    g.add_argument("--data", default="digits",
                   help="'digits' (embedded UCI digits), 'synthetic', or a .npy/.npz/.csv feature file; "
                        "image pixels lie in [0, 1] (uint8 or uint16 ones are divided by 255 or 65535)")
    g.add_argument("--labels", default=None,
                   help="for a CSV: label column name or index; or a separate .npy/.npz/.csv label file. "
                        "Labels are class ids 0..K-1, or class names (read as ids in sorted order)")
    g.add_argument("--data-seed", type=int, default=0,
                   help="seed of the train/test split of a user file, and of the points of --data synthetic")
    g.add_argument("--csv-header", **_CSV_HEADER_ARG)
    g.add_argument("--image-shape", type=_image_shape_arg, default=None, metavar="HxW|CxHxW",
                   help="the rows of a 2-D table (a CSV, say) are flattened images of this shape (channels "
                        "first), augmented as images: 28x28, 3x32x32")
    g.add_argument("--full-scale", **_FULL_SCALE_ARG)
    g = t.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="passes over the training split")
    g.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                   help="samples per step (each gives two views); the last partial batch of an epoch is dropped")
    g.add_argument("--optimizer", choices=("adamw", "adam", "sgd", "lars"), default=TrainConfig.optimizer,
                   help="lars is the official optimiser (biases and norm params excluded by name)")
    g.add_argument("--lr", type=float, default=TrainConfig.lr,
                   help="base lr; peak = lr * batch / lr_batch_scale (256; a preset with lr_batch_scale=0 "
                        "uses lr as the peak)")
    g.add_argument("--weight-decay", type=float, default=TrainConfig.weight_decay,
                   help="decay on weights (biases and norm params excluded, unless --set exclude=none)")
    g.add_argument("--tau", type=float, default=TrainConfig.tau_base, help="target EMA rate tau at step 0")
    g.add_argument("--tau-schedule", choices=("cosine", "constant"), default=TrainConfig.tau_schedule,
                   help="cosine: tau -> 1 over the run (official); constant: tau throughout (byol-pytorch)")
    g.add_argument("--predictor-lr-mult", type=float, default=1.0, help="learning-rate multiplier of the predictor")
    g.add_argument("--augment", choices=("crop", "affine"), default=None,
                   help="image augmentation recipe (byol_ref.augment.digits_views): crop (default: random "
                        "resized crop, jitter, noise, asymmetric blur/solarize) or affine (BYOL_FACTS (h): "
                        "rotation, zoom, shift, jitter, noise, erase); feature vectors have one recipe")
    g.add_argument("--seed", type=int, default=0, help="seed of the initialisation, data order and augmentations")
    g.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="float64 for verification, float32 for speed")
    g = t.add_argument_group("model")
    g.add_argument("--hidden-size", type=int, default=Config.hidden_size, help="encoder width H")
    g.add_argument("--projection-dim", type=int, default=Config.projection_dim, help="projection width P")
    g.add_argument("--projector-hidden-dim", type=int, default=None, help="projector hidden width (default P)")
    g.add_argument("--predictor-dim", type=int, default=Config.predictor_dim, help="predictor hidden width Q")
    g.add_argument("--norm", choices=NORMS, default=None,
                   help="normalisation layers (default: batch, or the --preset's; group: --set norm_groups=G, "
                        "and --set weight_std=true for the batch-statistics-free BYOL; affine: --set "
                        "data_init=true for the BN-free BYOL initialised from the data's statistics)")
    g.add_argument("--layout", choices=("paper", "edifice"), default="paper",
                   help="paper: Linear -> norm -> ReLU blocks; edifice: the Elixir/Axon module's layout")
    g = t.add_argument_group("collapse-lab ablations")
    g.add_argument("--no-predictor", action="store_true", help="drop the predictor (p = z)")
    g.add_argument("--no-stop-gradient", action="store_true",
                   help="let the gradient flow through the target branch (with --tau 0 --tau-schedule constant: "
                        "the target is the online network, SimSiam's ablation)")
    g = t.add_argument_group("any other field")
    g.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any model.Config or TrainConfig field, e.g. --set views=concat; null is None "
                        "(an optional field's default)")
    g = t.add_argument_group("run directory")
    g.add_argument("--out", default=None,
                   help="run directory (default runs/<data>-<time>, or -2, -3, ... after it where that is taken)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint with the run's saved settings; only "
                        "--epochs may change, other settings that differ are refused. A longer run spreads the lr "
                        "and tau cosines over the new length from the current step on (the lr rises again: a warm "
                        "restart, not the schedule of a run planned that long), with the run's warm-up")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the run in a non-empty --out: its checkpoint, metrics, config, report and plots "
                        "(other files stay). They wait in --out/.replaced until the new run writes its first "
                        "checkpoint, and come back if it stops before that")
    g.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every,
                   help="steps (0: only at the end and where a Ctrl-C, SIGTERM or SIGHUP stops the run)")
    g.add_argument("--log-every", type=int, default=TrainConfig.log_every, help="steps between metric records")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    g.add_argument("--no-eval", action="store_true", help="skip the final evaluation (training.png is still drawn)")
    _add_probe_args(g)

    e = sub.add_parser("eval", help="evaluate a saved run or checkpoint",
                       description="Probe the online encoder of a saved run against baselines.",
                       formatter_class=_HelpFormatter)
    e.add_argument("path", help="a run directory or a checkpoint .npz")
    e.add_argument("--data", default=None, help="data set (default: the run's own, from config.json; a "
                   "checkpoint without one needs --data)")
    e.add_argument("--labels", default=None, help="with --data: the label column or label file, as for train")
    e.add_argument("--csv-header", **_CSV_HEADER_ARG)
    e.add_argument("--full-scale", **_FULL_SCALE_ARG)
    e.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    e.add_argument("--json", action="store_true", help="print the report as JSON")
    e.add_argument("--out", default=None,
                   help="also write report.json, report.txt and the plots (training curves from the run's "
                        "metrics.jsonl, probes, features) into this folder")
    e.add_argument("--overwrite", action="store_true",
                   help="replace the report already in --out (its report and plot files, as one set)")
    e.add_argument("--no-progress", action="store_true", help="no line saying which probe is running")
    e.add_argument("--no-plots", action="store_true", help="with --out: skip the PNG plots")
    g = e
    _add_probe_args(g)
    m = sub.add_parser("embed", help="write a saved run's features of its data to an .npz",
                       description="Write the online encoder's (and projector's) eval-mode features of the "
                                   "run's train and test splits, after the run's own input preprocessing, with "
                                   "the labels, to an .npz (plain arrays, readable with numpy.load without "
                                   "pickle): encoder_train (N, H), encoder_test, projector_train (N, P), "
                                   "projector_test, labels_train, labels_test (when the data have labels); "
                                   "with --baselines also the report's two baselines.",
                       formatter_class=_HelpFormatter)
    m.add_argument("path", help="a run directory or a checkpoint .npz")
    m.add_argument("--out", required=True, help="the .npz to write (never overwritten unless --overwrite)")
    m.add_argument("--data", default=None, help="data set (default: the run's own, from config.json; a "
                   "checkpoint without one needs --data)")
    m.add_argument("--labels", default=None, help="with --data: the label column or label file, as for train")
    m.add_argument("--csv-header", **_CSV_HEADER_ARG)
    m.add_argument("--full-scale", **_FULL_SCALE_ARG)
    m.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cpu (NumPy) or cuda (CuPy)")
    m.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    m.add_argument("--baselines", action="store_true",
                   help="also write the features of the report's two baselines: random_encoder_train/test (a "
                        "random-init encoder of the same architecture, drawn and calibrated as eval draws it) and "
                        "inputs_train/test (the data after the run's preprocessing, as the 'raw inputs' row probes "
                        "them: pixels for images, standardised features for feature vectors)")
    _add_verify_parsers(sub, t)
    return p


def _read_run_config(cfg_file: Path) -> dict:
    """A run directory's config.json, checked: the JSON object ``train`` wrote."""
    try:
        text = cfg_file.read_bytes()
    except OSError as exc:
        if why_refused(exc):  # (not the file's fault: main names the argument and the right missing)
            raise
        raise ValueError(f"{cfg_file} cannot be read as a run's config.json ({type(exc).__name__}: {exc})") from None
    saved = parse_json(text, f"{cfg_file}, a run's config.json,")
    want = ("model_config", "train_config", "data")
    if not isinstance(saved, dict) or any(not isinstance(saved.get(k), dict) for k in want):
        got = ({k: type(saved.get(k)).__name__ for k in want} if isinstance(saved, dict) else
               type(saved).__name__)
        raise ValueError(f"{cfg_file} is not a byol-ref run's config.json: expected an object with objects "
                         f"{list(want)}, got {got}")
    digests = {k: v for k, v in saved["data"].items() if k.endswith("_sha256")}
    if any(k not in ("data_sha256", "labels_sha256") or not isinstance(v, str) or len(v) != 64
           for k, v in digests.items()) or ("labels_sha256" in digests
                                            and not isinstance(saved["data"].get("labels"), str)):
        raise ValueError(f"{cfg_file} records {digests} as the data's SHA-256, which no run writes (64 hex digits "
                         "for data_sha256, and for labels_sha256 beside a labels file's path); the file was edited")
    labels, seed = saved["data"].get("labels"), saved["data"].get("data_seed", 0)  # (data: _data_for_run)
    if not isinstance(labels, (str, int, type(None))) or not isinstance(seed, int) or isinstance(seed, bool) \
            or isinstance(labels, bool) or seed < 0:
        raise ValueError(f"{cfg_file} records labels {labels!r} and data_seed {seed!r} for the data, which no run "
                         "writes (labels: None or a column or file; data_seed: an int >= 0); the file was edited")
    shape, scale = saved["data"].get("image_shape"), saved["data"].get("full_scale")
    try:  # (they were told as the flags --image-shape and --full-scale, which --resume and eval were not given)
        if shape is not None:
            check_image_shape(tuple(shape) if isinstance(shape, list) else shape, "image_shape")
        if scale is not None:
            check_real(scale, "full_scale", lo=0, lo_open=True)
    except (TypeError, ValueError):
        raise ValueError(f"{cfg_file} records image_shape {shape!r} and full_scale {scale!r} for the data, which no "
                         "run writes (image_shape: None or [H, W] or [C, H, W] of ints >= 1; full_scale: None or a "
                         "number > 0); the file was edited") from None
    return saved


def _data_for_run(data_spec: dict, cfg_file: Path, *, resume: bool = False):
    """Load the data a run was trained on, or say where its record points when the file is gone
    (``resume``: the record is the only way to name the data, as --resume takes no --data)."""
    kind = data_spec.get("data")
    way = (f"correct the \"data\" record in {cfg_file} (--resume reads the data from there)" if resume else
           "pass --data PATH (and --labels) to name the data")
    if not isinstance(kind, str):
        raise ValueError(f"{cfg_file} records the data as {kind!r}, expected 'digits', 'synthetic' or a file path; "
                         f"the file was edited: {way}")
    moved = "does not exist (moved, or a path relative to another folder?)"
    found = None if kind in ("digits", "synthetic") else not_a_file(kind, missing=moved)
    if found:
        raise FileNotFoundError(f"{cfg_file} records the data file {kind!r}, which {found}; {way}")
    header = data_spec.get("csv_header", "auto")
    if not isinstance(header, str) or header not in _CSV_HEADER:
        raise ValueError(f"{cfg_file} records csv_header {header!r}, expected one of {list(_CSV_HEADER)}; the file "
                         f"was edited: {way}")
    labels = data_spec.get("labels")  # (load_file said "labels: no such file", of labels no flag here named)
    label_path = labels_file(labels, kind, _CSV_HEADER[header]) if kind not in ("digits", "synthetic") else None
    gone = label_path and not_a_file(label_path, missing=moved)
    if gone:
        raise FileNotFoundError(f"{cfg_file} records the labels file {labels!r}, which {gone}; " + (
            f"correct the \"labels\" record in {cfg_file} (--resume reads the labels from there)" if resume else
            "pass --data PATH and --labels to name the data"))
    # The files' SHA-256 as the run recorded them (runs before the record have none to compare).
    changed = [data_spec[key] for key in ("data", "labels") if f"{key}_sha256" in data_spec
               and Path(data_spec[key]).is_file() and _sha256(data_spec[key]) != data_spec[f"{key}_sha256"]]
    if changed:
        what = (f"{' and '.join(map(repr, changed))} {'has' if len(changed) == 1 else 'have'} changed since the run "
                "trained (its SHA-256 differs from the one recorded in " + str(cfg_file) + ")")
        if resume:
            raise ValueError(f"--resume: {what}; a run continues on the data it trained on: restore the file, or "
                             "start a new run")
        print(f"byol-ref: warning: {what}: its train/test split is drawn anew, so rows the run trained on may be "
              "in the test split now; pass --data (and --labels) to evaluate on other data knowingly",
              file=sys.stderr)
    return _load_data(_with_csv_header(data_spec), strict=False)  # as it read when the run trained


def _sha256(path) -> str:
    """The SHA-256 of a file, as a run records those of its data and labels files."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _configs_from_flags(args, encoder_dim: int):
    """(model Config, TrainConfig, names of the fields the command line set) for ``train``."""
    model_kw = dict(encoder_dim=encoder_dim, hidden_size=args.hidden_size,
                    projection_dim=args.projection_dim, projector_hidden_dim=args.projector_hidden_dim,
                    predictor_dim=args.predictor_dim, norm=args.norm, layout=args.layout,
                    use_predictor=not args.no_predictor, stop_gradient=not args.no_stop_gradient)
    train_kw = dict(epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                    weight_decay=args.weight_decay, tau_base=args.tau, tau_schedule=args.tau_schedule,
                    predictor_lr_mult=args.predictor_lr_mult, seed=args.seed, dtype=args.dtype,
                    checkpoint_every=args.checkpoint_every, log_every=args.log_every)
    set_keys = {pair.split("=", 1)[0].strip().replace("-", "_") for pair in args.set or []}
    named = {k for kw in (model_kw, train_kw) for k in kw if _TRAIN_DEST.get(k, k) in args.given} | set_keys
    try:
        if args.preset:  # verification toolkit block below
            from .presets import preset_field_names
            model_cfg, tcfg = _preset_configs(args, model_kw, train_kw)
            named |= set(preset_field_names()) | {"final_lr"}  # (from its final_lr_ratio)
        else:
            _apply_sets(args.set, model_kw, train_kw)
            model_cfg, tcfg = Config(**model_kw), TrainConfig(**train_kw)
    except (ValueError, TypeError) as exc:
        raise _in_flags(exc, args, set_keys) from None
    return model_cfg, tcfg, named


def _in_flags(exc: Exception, args, set_keys) -> Exception:
    """A config's refusal of a value that a flag gave, worded with the flag the user typed:
    ``--tau (tau_base) must be in [0, 1], got 1.5``, not ``tau_base must be ...``."""
    field, sep, rest = str(exc).partition(" ")
    dest = _TRAIN_DEST.get(field, field)
    if not sep or dest not in args.given or field in set_keys:
        return exc
    flag = "--" + dest.replace("_", "-")
    return type(exc)(f"{flag if dest == field else f'{flag} ({field})'} {rest}")


# What --resume may change: the run's length and how this call reports; everything else is the run's.
_RESUME_FREE = {"out", "resume", "epochs", "device", "augment", "no_progress", "no_plots", "no_eval", "knn_k",
                "knn_temperature", "labels_per_class"}


def _lr_note(tcfg: TrainConfig) -> str:
    """`` (peak P = lr x N/S; per epoch)``: the peak when the linear scaling rule moves it off --lr,
    and whether the schedule steps per epoch; empty when neither applies."""
    scale = tcfg.lr_batch_scale or tcfg.batch_size  # 0 disables the rule (train.make_schedules)
    notes = []
    if tcfg.batch_size != scale:
        notes.append(f"peak {tcfg.lr * tcfg.batch_size / scale:.4g} = lr x {tcfg.batch_size}/{scale}")
    if tcfg.lr_interval == "epoch":
        notes.append("per epoch")
    return f" ({'; '.join(notes)})" if notes else ""


def _check_record_matches(cfg_file: Path, ckpt: Path, trained_with: dict, recorded: dict) -> None:
    """Refuse to resume when config.json and the checkpoint disagree on the run's settings (all
    model and training fields as one dict; but the length, which --epochs may change): one of
    them was edited or replaced."""
    differ = [f"{k}: {v!r} in the checkpoint, {recorded.get(k)!r} in config.json"
              for k, v in trained_with.items() if k != "epochs" and v != recorded.get(k)]
    if differ:
        raise ValueError(f"--resume: {cfg_file} and {ckpt} disagree on the run's settings ({'; '.join(differ)}): "
                         "one of them was edited or replaced; config.json records what the checkpoint was "
                         "trained with")


def _check_resume_flags(args, out: Path, saved: dict, model_cfg: Config, tcfg: TrainConfig) -> None:
    """Refuse command-line settings that a resumed run would not honour (it continues with the
    settings in its config.json): name each with the value asked for and the run's own."""
    given = args.given - _RESUME_FREE
    if "overwrite" in given:
        raise ValueError(f"--resume continues the run in {out}; --overwrite would start it again: pass one of them")
    def same(dest, a, b):  # file paths compare as files (the run records them absolute)
        if dest in ("data", "labels") and isinstance(a, str) and isinstance(b, str) and Path(a).exists():
            return Path(a).resolve() == Path(b).resolve()
        return a == b

    asked = []
    recorded = {"data": None, "labels": None, "data_seed": 0, "csv_header": "auto",  # (runs before csv_header)
                "image_shape": None, "full_scale": None}
    for dest, default in recorded.items():
        run_value = saved["data"].get(dest, default)
        value = getattr(args, dest)
        if dest == "image_shape" and value is not None:  # (config.json holds a list)
            value = list(value)
        if dest == "csv_header":  # auto asks for what the rule makes of the run's file
            value = _with_csv_header({**saved["data"], "csv_header": value})["csv_header"]
        if dest in given and not same(dest, value, run_value):
            shown = {"image_shape": lambda v: v if v is None else _shape_text(v),  # (as the flags read)
                     "full_scale": lambda v: v if v is None else f"{v:g}"}.get(dest, lambda v: v)
            asked.append(f"--{dest.replace('_', '-')} {shown(getattr(args, dest))} (run: {shown(run_value)})")
    if given - set(recorded):  # as the run's length and batch, so derived fields (warm-up, final_lr) compare
        run_batch = {} if "batch_size" in args.given else {"batch_size": tcfg.batch_size}
        same_length = argparse.Namespace(**{**vars(args), "epochs": tcfg.epochs, **run_batch})
        new_model, new_train, named = _configs_from_flags(same_length, model_cfg.encoder_dim)
        # (--epochs was set to the run's own just above: epochs differs here only by --set, which is
        # refused rather than ignored, as it was; --epochs is the one way to change a resumed run's length)
        for name in sorted(named):
            for new, old in ((new_model, model_cfg), (new_train, tcfg)):
                if hasattr(old, name) and getattr(new, name) != getattr(old, name):
                    asked.append(f"{name} {getattr(new, name)!r} (run: {getattr(old, name)!r}"
                                 + ("; --epochs, not --set, changes the length of a resumed run)"
                                    if name == "epochs" else ")"))
    if asked:
        raise ValueError(f"--resume continues {out} with the settings in its config.json, but the command line asks "
                         f"for others: {'; '.join(asked)}. Only --epochs may change (to extend the run); drop the "
                         "others, or start a new run with another --out")


def _with_note(exc: Exception, note: str | None) -> Exception:
    """``exc`` with `` (note: ...)`` after its message, when there is a note."""
    if note is not None:
        exc.args = (f"{exc} (note: {note})",)
    return exc


def _read_what_stands_there(ckpt: Path) -> bool:
    """Read a checkpoint path that is there, as anything (a file, a link to none, a folder, a pipe):
    the reader names what is wrong with it, where "no checkpoint" would misread it. False: nothing there."""
    if ckpt.is_symlink() or ckpt.exists():
        load_checkpoint(ckpt)
        return True
    return False


def _refuse_no_checkpoint(run_dir: Path, prefix: str, verb: str) -> None:
    """Say why a run directory has no checkpoint, if byol-ref knows: an --overwrite set its run
    aside (and how to put it back), or a run stopped before its first checkpoint (a config.json
    that train wrote, and nothing else). A checkpoint.npz that is there but no file, a link to none
    say, is named by the reader (advising --overwrite would replace the run it stands for)."""
    _read_what_stands_there(run_dir / "checkpoint.npz")
    refuse_for_set_aside(run_dir, prefix, overwrite="--overwrite" if verb == "continue" else
                         _train_again(run_dir))  # (eval's is another command)
    try:
        _read_run_config(run_dir / "config.json")
    except ValueError:  # none, or another program's config.json (a Hugging Face model's, say)
        return
    if _training_there(run_dir):  # it has not reached its first checkpoint yet, it did not stop
        raise FileNotFoundError(f"{prefix}{run_dir} has no checkpoint yet: a process is training there and has not "
                                f"written its first one; wait for it (every --checkpoint-every steps, and at the "
                                f"end), then {verb} it")
    raise FileNotFoundError(f"{prefix}{run_dir} has no checkpoint: its run stopped before writing its "
                            f"first one, so there is nothing to {verb}; start it again with: "
                            f"{_train_again(run_dir)}")


def _training_there(run_dir: Path) -> bool:
    """Whether a live train (of another process or thread) holds ``run_dir``: its run has not ended."""
    try:
        with RunLock() as probe:
            probe.take(run_dir)
    except RunDirectoryBusy:
        return True
    return False


def _resume_settings(args, out: Path) -> tuple:
    """(config.json's record, model Config, TrainConfig with --epochs, the checkpoint's TrainState
    and its meta) of the run ``train --resume`` continues, checked: the record against the
    checkpoint, the command line against the record."""
    if not args.out:
        raise ValueError("--resume needs --out RUN_DIR, the run directory to continue")
    if not out.exists():
        raise FileNotFoundError(f"--resume: {out} does not exist; --resume continues the run in a directory that "
                                "train made (its --out)")
    if not checkpoint_file(out).is_file():
        _refuse_no_checkpoint(out, "--resume: ", "continue")
    cfg_file = out / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"--resume: {cfg_file} not found; is {out} a byol-ref run directory?")
    saved = _read_run_config(cfg_file)
    saved["data"] = _with_csv_header(saved["data"])
    try:
        model_cfg = Config.from_dict(saved["model_config"])
        tcfg = TrainConfig.from_dict(saved["train_config"])
    except (TypeError, ValueError) as exc:
        try:
            newer = newer_writer(load_checkpoint_file(checkpoint_file(out))[1])
        except (OSError, ValueError):  # (the checkpoint's own problem is told where it is read)
            newer = None
        if newer:
            raise ValueError(f"--resume: {out} was written by {newer}, a later release than this one ({__version__}), "
                             f"with settings this one does not know ({exc}); upgrade byol-ref to continue it") from None
        raise ValueError(f"{cfg_file} records settings no run has ({exc}); the file was edited") from None
    # config.json must record what the checkpoint was trained with
    resumed, ck_model, ck_train, meta = load_checkpoint(checkpoint_file(out))
    _check_record_matches(cfg_file, checkpoint_file(out), {**ck_model.to_dict(), **asdict(ck_train)},
                          {**model_cfg.to_dict(), **asdict(tcfg)})
    _check_resume_flags(args, out, saved, model_cfg, tcfg)
    if "epochs" in args.given:
        # The warm-up is the run's own, fixed when it started (TrainConfig bounds it by the run's length):
        # say so here, in --resume's terms, rather than as a bad warmup_epochs.
        if 0 < args.epochs < tcfg.warmup_epochs:
            raise ValueError(f"--resume: {out} warms up over its first {tcfg.warmup_epochs:g} epochs (warmup_epochs, "
                             f"fixed when the run started); --epochs {args.epochs} would end it inside that warm-up: "
                             f"ask for at least {math.ceil(tcfg.warmup_epochs)} epochs")
        tcfg = replace(tcfg, epochs=args.epochs)
    return saved, model_cfg, tcfg, resumed, meta


def _train(args) -> int:
    with RunLock() as lock:  # the run directory is this process's alone until the command ends
        return _train_holding(args, lock)


def _train_holding(args, lock: RunLock) -> int:
    data_spec = {"data": args.data, "labels": args.labels, "data_seed": args.data_seed, "csv_header": args.csv_header,
                 **({} if args.image_shape is None else {"image_shape": list(args.image_shape)}),
                 **({} if args.full_scale is None else {"full_scale": args.full_scale})}
    # Without --out: runs/<data>-<time>, or -2, -3, ... after it where another train took that name.
    base = None if args.out else Path("runs") / f"{Path(args.data).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(args.out) if args.out else next(p for p in _numbered(base) if not os.path.lexists(p))
    args.default_out = None if args.out else out  # (for main's message, where the OS refuses it)
    existed = out.is_dir()
    if existed:  # before anything in it is read
        check_writable(out, f"--out {out}", "make it writable, or copy the run to a folder that is and resume the "
                       "copy" if args.resume else "choose another --out")
        lock.take(out)
    if args.resume:
        saved, model_cfg, tcfg, resumed, meta = _resume_settings(args, out)
        data_spec = saved["data"]
        dataset = _data_for_run(data_spec, out / "config.json", resume=True)
    else:
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"--out {out} is a file, not a run directory; choose another --out")
        label, choose = _PATH_ARGS["out" if args.out else "default_out"]  # (the default's way: runs/ here)
        _refuse_a_file_on_the_way(out, label, folder=False, advice=choose)
        if out.exists() and any(out.iterdir()) and not args.overwrite:
            _refuse_a_run_there(out)
        dataset = _load_data(data_spec)
        if args.full_scale is not None and dataset.image_shape is None:
            raise ValueError(f"--full-scale {args.full_scale:g} is for image pixels, but {dataset.name} was read as "
                             f"{_count(dataset.x_train.shape[1], 'feature')}, which are standardised whatever their "
                             "scale; pass --image-shape too, to read its rows as images")
        data_spec = _with_csv_header(data_spec)
        if data_spec["data"] not in ("digits", "synthetic"):  # so eval and --resume find them from any folder
            data_spec["data"] = str(Path(data_spec["data"]).resolve())
            found = labels_file(args.labels, data_spec["data"], _CSV_HEADER[data_spec["csv_header"]])
            if found is not None:
                data_spec["labels"] = str(found.resolve())
            # their SHA-256, so that a file changed later is noticed (_data_for_run)
            data_spec["data_sha256"] = _sha256(data_spec["data"])
            if dataset.full_scale is not None:  # how the pixels were read: --resume and eval read them so again
                data_spec["full_scale"] = dataset.full_scale
            if found is not None:
                data_spec["labels_sha256"] = _sha256(found)
        model_cfg, tcfg, _ = _configs_from_flags(args, dataset.x_train.shape[1])
    if dataset.x_train.shape[0] < tcfg.batch_size:  # (a step takes a full batch: drop_last)
        n_train, n_test = dataset.x_train.shape[0], dataset.x_test.shape[0]
        raise ValueError(f"--batch-size {tcfg.batch_size} exceeds the {n_train} training samples"
                         + (f" ({n_test} more are the test split)" if n_test else "")
                         + f"; a step takes a full batch: pass --batch-size {n_train} or less")
    if model_cfg.encoder_dim != dataset.x_train.shape[1]:
        raise ValueError(f"encoder_dim={model_cfg.encoder_dim}, but {dataset.name} has {dataset.x_train.shape[1]} "
                         "features; the encoder takes one input per feature (drop --set encoder_dim)")
    probe = None if args.no_eval else _probe_opts(args, dataset.x_train.shape[0], dataset.y_train)
    try:
        views = default_views_for(dataset, args.augment)
    except ValueError:
        raise ValueError(f"--augment {args.augment}: {dataset.name} holds feature vectors, not images; their "
                         "augmentations (noise, masking, scaling) have no recipe to choose") from None
    check_configs(model_cfg, tcfg)  # bad settings and data are refused before the run directory is made
    try:
        prep, _, _ = prepare_training_data(dataset, views)
    except ArgumentError as exc:  # (the library's advice names load_file; here the flag does it too)
        if exc.arg != "scale_pixels":
            raise
        raise exc.reworded(advice=f"{exc.advice}; here, --full-scale N divides them as they are read (255 for 8-bit "
                           "pixels)") from None
    sched = make_schedules(tcfg, dataset.x_train.shape[0])  # a non-finite peak learning rate, say
    if args.resume:  # before config.json records the new length, and before "training on ..." is said
        check_resume_length(resumed.step, sched, tcfg, checkpoint_file(out), "--resume")
        check_same_training_data(resumed, meta, prep, dataset.x_train.shape[0], checkpoint_file(out), "--resume")
        # The checkpoint holds the run's augmentations; an explicit --augment must agree with them. config.json
        # records them as the checkpoint holds them (a record from before it held dicts held repr strings).
        recorded = recorded_views(meta, checkpoint_file(out)) if "views" in meta else None
        if args.augment and recorded is not None and recorded != tuple(views):
            raise ValueError(f"--resume: {checkpoint_file(out)} was trained with other augmentations than "
                             f"--augment {args.augment} gives; drop --augment to go on with the run's own")
        views_record = views_to_dicts(recorded) if recorded is not None else saved.get("views", views_to_dicts(views))
        views = views if args.augment else None
    else:  # (as augment.views_from_dicts reads them back)
        views_record = views_to_dicts(views)
    backend = get_backend("cupy" if args.device == "cuda" else "numpy", tcfg.dtype, tcfg.seed)
    if base is not None:
        # This run's own, though another train began in the same second (a loop of seeds in the background)
        # and may have taken the name meanwhile.
        out = args.default_out = _claim_folder(base)
        created = fresh = True
    else:
        created = not out.exists()
        fresh = created or not any(out.iterdir())
        out.mkdir(parents=True, exist_ok=True)
    if not existed:
        lock.take(out)
        if any(out.iterdir()) and not args.overwrite:  # another process made it meanwhile, and has ended
            _refuse_a_run_there(out)
    replacing = Replacing(out) if args.overwrite else None  # (never with --resume: _check_resume_flags refuses both)
    if args.resume:
        remove_stale(out)
        remove_replaced(out)  # (this run has its checkpoint: what an --overwrite set aside was replaced)
    # (a resume that fit refuses, on a checkpoint whose records do not read, leaves config.json as it was)
    before = ((out / "config.json").read_bytes(), _identity(checkpoint_file(out))) if args.resume else None
    t0 = time.perf_counter()
    try:
        if replacing is not None:
            replacing.set_aside()
        atomic_write_text(out / "config.json", json.dumps(
            {"model_config": model_cfg.to_dict(), "train_config": asdict(tcfg), "data": data_spec,
             "views": views_record}, indent=2))
        print(f"byol-ref: training on {dataset.name} ({dataset.x_train.shape[0]} train / {dataset.x_test.shape[0]} "
              f"test, {_rows_are(dataset)}) for {_count(tcfg.epochs, 'epoch')}, "
              f"batch {tcfg.batch_size}, {tcfg.optimizer} lr {tcfg.lr}{_lr_note(tcfg)}, "
              f"tau {tcfg.tau_base} ({tcfg.tau_schedule}{', per epoch' if tcfg.tau_interval == 'epoch' else ''}), "
              f"{tcfg.dtype} on {backend.name}",
              flush=True)
        if dataset.label_names is not None:
            print(f"byol-ref: {_class_names(dataset.label_names)}", flush=True)
        n_train, n_test = dataset.x_train.shape[0], dataset.x_test.shape[0]
        watched = monitor_sizes(dataset, tcfg.monitor_rows)  # (what fit's kNN monitor scores, if labelled)
        if dataset.y_train is not None and n_test and watched != (n_train, n_test):
            print(f"byol-ref: the kNN monitor scores {watched[1]} of the {n_test} test rows against {watched[0]} of "
                  f"the {n_train} train rows, a subset drawn once (--set monitor_rows=0 for all of them; the "
                  "report's probes take all)", flush=True)
        # A Ctrl-C, SIGTERM or SIGHUP waits for the end of its step, which is then checkpointed (not while that
        # would drop the run an --overwrite replaces: it is to come back).
        with interrupt_after_step(lambda: replacing is None or replacing.may_checkpoint(),
                                  "byol-ref: stopping once this step is done, with a checkpoint of it (a second "
                                  "Ctrl-C or SIGTERM stops at once, without one)") as stop_requested:
            result = fit(dataset, model_cfg, tcfg, backend=backend, out_dir=out, resume=args.resume,
                         progress=not args.no_progress, views=views, stop_requested=stop_requested,
                         replacing=replacing)
    except BaseException as exc:
        # A Ctrl-C now (a second one, or the first after an error) must not cut the restore or its message
        # short, nor end the command as interrupted: it is ending on exc.
        with interrupts_held(reraise=False):
            status = _train_stopped(exc, out, replacing, fresh=fresh, created=created, total=sched.total_steps,
                                    before=before)
        if status is None:
            raise
        return status
    if replacing is not None:
        replacing.commit()  # (a finished run has written its checkpoint; this is a second line of defence)
    train_s = time.perf_counter() - t0
    ran = result.state.step - result.start_step
    so_far = f" (step {result.state.step} of the run)" if result.start_step else ""
    print(f"byol-ref: trained {_count(ran, 'step')}{so_far} in {train_s:.1f} s; run directory {out}", flush=True)
    if ran == 0 and args.resume:
        print(f"byol-ref: the run was already at its last step; a longer run continues with --epochs N (more than "
              f"{tcfg.epochs}). {'Its report is made again.' if not args.no_eval else ''}".rstrip(), flush=True)
    try:
        if args.no_eval:
            if not args.no_plots:
                _plot_curves_only(out, out / "metrics.jsonl", model_cfg)
            return 0
        return _report(result.state.online, result.dataset, result.input_norm, backend, out, out / "metrics.jsonl",
                       plots=not args.no_plots, seed=tcfg.seed, extra={"train_seconds": train_s}, probe=probe,
                       progress=not args.no_progress)
    except (KeyboardInterrupt, OSError) as exc:
        if isinstance(exc, BrokenPipeError):  # (the reader of the report went away: main's to end quietly)
            raise
        doing = "while drawing the training curves" if args.no_eval else "in the evaluation"
        then = f"the run is trained and its checkpoint written. Its report and plots: {_eval_again(out)}"
        if isinstance(exc, OSError):  # (a full disk, say: the run is kept, only the report is missing)
            return _failed("byol-ref train", exc, then)
        print(f"\nbyol-ref: {interrupted(exc)} {doing}; {then}", file=sys.stderr)
        return interrupt_status(exc)


def _rows_are(dataset) -> str:
    """What a row of ``dataset`` was read as, for the line a train begins with: ``64 features``, or
    ``8x8 images`` and ``3x32x32 images (C x H x W, 8-bit pixels / 255)``, so that images read in
    another layout or scale than they were saved in show before the run."""
    if dataset.image_shape is None:
        return _count(dataset.x_train.shape[1], "feature")
    shape = _shape_text(dataset.image_shape)
    scaled = None if dataset.full_scale is None else {255: "8-bit pixels / 255", 65535: "16-bit pixels / 65535"}.get(
        dataset.full_scale, f"pixels / {dataset.full_scale:g}")
    notes = [n for n in ("C x H x W" if len(dataset.image_shape) == 3 else None, scaled) if n]
    return f"{shape} images" + (f" ({', '.join(notes)})" if notes else "")


def _count(n: int, noun: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _refuse_a_run_there(out: Path) -> None:
    if any((out / name).exists() for name in (*RUN_FILES, SET_ASIDE)):
        raise FileExistsError(f"run directory {out} exists and is not empty; pass --resume to continue it, "
                              "--overwrite to replace it, or choose another --out")
    raise FileExistsError(f"--out {out} is not empty and holds no byol-ref run (none of {', '.join(RUN_FILES[:3])}, "
                          "...); choose another --out, or pass --overwrite to train in it (the files it holds stay)")


def _numbered(base: Path):
    """``base``, then ``base-2``, ``base-3``, ...: the names a default run directory may take."""
    yield base
    for k in itertools.count(2):
        yield base.with_name(f"{base.name}-{k}")


def _claim_folder(base: Path) -> Path:
    """Make the first of :func:`_numbered` ``base`` that no one has made, and return it. Making a
    folder is atomic: of two processes making one name, one is told it exists, and takes the next."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for path in _numbered(base):
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _identity(path: Path) -> tuple | None:
    """What tells a file from the one written in its place (an atomic write is a new inode); None
    where there is none to stat."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _train_stopped(exc: BaseException, out: Path, replacing, *, fresh: bool, created: bool,
                   total: int, before: tuple | None = None) -> int | None:
    """What ``train`` does when training stops on ``exc``: the exit status, or None to raise it.
    The run an --overwrite replaces comes back unless this run has a checkpoint; a run refused
    before its first step leaves no half-made run directory, and a resume refused so (``before``:
    its config.json's bytes and checkpoint as they were) leaves the run's config.json as it was."""
    if before is not None and isinstance(exc, (ValueError, TypeError)):
        if _identity(out / "checkpoint.npz") == before[1]:  # (no step checkpointed: it says the run's own length)
            try:
                atomic_write(out / "config.json", lambda f: f.write(before[0]))
            except OSError:  # (a full disk, say: the refusal is still what is told; the new length stays)
                pass
    back = replacing is not None and replacing.stopped()
    restored = f"the run it was to replace is back in {out}"
    ckpt = out / "checkpoint.npz"
    if isinstance(exc, TrainingDiverged):
        print(f"byol-ref: {exc}" + (f"\nbyol-ref: {restored}" if back else ""), file=sys.stderr)
        return 1
    if isinstance(exc, KeyboardInterrupt):
        print(f"\nbyol-ref: {interrupted(exc)}; {_where_it_stands(out, replacing, back, total)}", file=sys.stderr)
        return interrupt_status(exc)
    # (a closed pipe is no error of the run: main ends quietly, 141)
    io_error = isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError)
    if io_error and (ckpt.is_file() or back):  # a full disk, say, mid-run: what is kept
        return _failed("byol-ref train", exc, _where_it_stands(out, replacing, back, total))
    # (Warning: one that the warnings filter made an error, which main reports as bad input)
    if (io_error or isinstance(exc, (ValueError, TypeError, MemoryError, Warning))) and fresh and not ckpt.exists():
        for name in ("config.json", "metrics.jsonl"):  # refused before any step: leave no half-made run
            (out / name).unlink(missing_ok=True)
        if created and not any(out.iterdir()):  # a folder the user made stays
            out.rmdir()
    if back:
        print(f"byol-ref: {restored}", file=sys.stderr)
    return None


def _class_names(names: tuple) -> str:
    """How the class names a data set's labels were read as ids, for the line before training."""
    shown = ", ".join(f"{i} {name}" for i, name in enumerate(names[:12])) + (", ..." if len(names) > 12 else "")
    return f"the labels are {len(names)} class names, read as ids 0..{len(names) - 1} in sorted order: {shown}"


# The path-valued arguments, as a message names them, and where the command writes there, how to choose
# another place (None where it only reads). ``default_out``: train's run directory without --out.
_PATH_ARGS = {"out": ("--out", "choose another --out"), "dst": ("dst", "choose another dst"),
              "data": ("--data", None), "labels": ("--labels", None), "inputs": ("--inputs", None),
              "mapping": ("--mapping", None), "path": ("the run", None), "a": ("trace A", None),
              "b": ("trace B", None), "src": ("src", None),
              "default_out": ("the run directory (no --out given)", "choose one with --out")}


def _expand_home(args) -> None:
    """Read ``~`` and ``~user`` at the start of a path argument as the home folder, as a shell does for a
    word of its own: it does not after ``=`` (``--out=~/runs``) nor within quotes, and the run went into a
    folder named ``~`` in the current folder, while the messages said ``~/runs`` (the home folder, to any
    reader). A folder literally named ``~`` is still ``./~``."""
    for dest in _PATH_ARGS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and value.startswith("~"):
            setattr(args, dest, os.path.expanduser(value))


def _refused(exc: BaseException, args) -> str | None:
    """A refusal by the OS (``checks.why_refused``: no right to read or write, a read-only file
    system, a name too long) as a message that names the argument whose path it was, what was refused
    and what to do: ``--out /data/run cannot be written: this user may not write in /data; choose
    ...``, not Python's ``[Errno 13] Permission denied: '/data/run'``. None for any other error."""
    why = why_refused(exc)
    if why is None:
        return None
    name = os.path.abspath(os.fsdecode(exc.filename))
    # The argument whose path it was: the file itself, one in the folder it names, or a folder made on the way
    # to it; the nearest, where two fit (--out . and --data ./x.csv).
    fits = []
    for dest, (label, choose) in _PATH_ARGS.items():
        value = getattr(args, dest, None)
        if isinstance(value, (str, Path)) and str(value):
            given = os.path.abspath(value)
            if name == given or name.startswith(given.rstrip(os.sep) + os.sep) or given.startswith(name + os.sep):
                fits.append((abs(len(given) - len(name)), label, choose, value, given))
    if fits:
        _, label, choose, value, given = min(fits, key=lambda fit: fit[0])
        at = "" if name == given else f" (at {name})"
        long_name = exc.errno == errno.ENAMETOOLONG
        if choose and not why.startswith("this user may not read"):
            where = ("where this user may write" if not long_name else "with a shorter path"
                     if why.startswith("the path is longer") else "with shorter names")
            return f"{label} {value}{at} cannot be written: {why}; {choose}, {where}"
        fix = "check the path" if long_name else "give this user the right to read it, or copy it where they may"
        return f"{label} {value}{at} cannot be read: {why}; {fix}"
    return f"{name}: {why}"


def _failed(prog: str, exc: BaseException | str, then: str = "") -> int:
    """Say that ``exc`` (an exception, or the message to show for one) stopped the command (and
    ``then``, what to do next), and return the exit status: 1 where a write found no room left
    (with what to do about it), else 2, bad input."""
    room = (" (no room left to write it: free some space there, or raise the quota or the file-size limit)"
            if disk_full(exc) else "")
    print(f"{prog}: error: {exc}{room}{'; ' + then if then else ''}", file=sys.stderr)
    return 1 if room else EXIT_USAGE


def _where_it_stands(out: Path, replacing, back: bool, total: int) -> str:
    """What a train stopped before its end (Ctrl-C, a full disk) leaves in ``out``, and the command
    that goes on from there."""
    ckpt = out / "checkpoint.npz"
    if back:
        return f"no checkpoint was written yet, so the run it was to replace is back in {out}"
    if replacing is not None and not replacing.began and ckpt.is_file():  # before the run moved
        return f"nothing was changed: {out} still holds the run it was to replace"
    if ckpt.is_file():
        at = load_checkpoint(ckpt)[0].step
        return (f"its last checkpoint is at step {at}; continue with: {_prog()} train --out {_q(out)} --resume"
                if at < total else f"the run is trained (its checkpoint is at its last step, {at}). Its report "
                f"and plots: {_eval_again(out)}")
    return f"no checkpoint was written yet; start again with: {_train_again(out)}"


def _report(online, dataset, input_norm, backend, out: Path | None, metrics: Path | None, *, plots: bool, seed: int,
            probe: dict, progress: bool, extra=None, as_json=False, run: Path | None = None, data_args: str = "",
            checkpoint_note: str | None = None) -> int:
    """Probe, print, and (with ``out``) write report.json/.txt and, with ``plots`` (given only with
    ``out``), the plots into ``out``;
    with ``progress``, which probe is running shows on a terminal (``_probe_progress``).
    ``metrics`` is the run's metrics.jsonl (the whole run's curves, across resumes), if any;
    ``run`` is the run directory or checkpoint the features come from (default: ``out``);
    ``data_args`` the data options (``--data FILE ...``) the hints' embed command needs to read the same data;
    ``checkpoint_note`` heads report.txt (a checkpoint short of its run's end: ``_unfinished``), or is told on
    stderr where no report text is printed (``as_json``, nothing to probe)."""
    from .report import evaluate_features, format_collapse, format_convergence

    skipped = None
    if dataset.y_train is None:
        hint = (f"{_prog()} embed {_q(run or out)}{data_args} --out features.npz"
                if (run or out) is not None else f"{_prog()} embed")
        skipped = (f"the data set has no labels, so there is nothing to probe; {hint} writes the features (if one "
                   "of its columns holds the labels, train with --labels COLUMN: a name or an index)")
    elif len(dataset.x_test) == 0:  # a pre-split file may hold an empty test split
        skipped = (f"{dataset.name} has an empty test split, so the probes have nothing to be tested on; "
                   f"{_prog()} eval {_q(run or out)} --data FILE probes the run on other data")
    if checkpoint_note and (skipped or as_json):
        print(f"byol-ref: note: {checkpoint_note}", file=sys.stderr)
    if skipped:
        # --json: still one JSON object on stdout, for whatever parses it
        print(json.dumps({"rows": [], "skipped": skipped}) if as_json else f"byol-ref: {skipped}")
        if plots:
            _plot_curves_only(out, metrics, online.config)
        return 0
    t0 = time.perf_counter()
    print(f"byol-ref: probing the features (kNN, {probe['labels_per_class']}-label and linear probes of the "
          "BYOL encoder and projector, a random-init encoder and the raw inputs)...", file=sys.stderr, flush=True)
    report = evaluate_features(online, dataset, input_norm, backend, seed=seed, return_features=plots,
                               progress=_probe_progress() if progress else None, **probe)
    features = report.pop("features", None)
    report["eval_seconds"] = time.perf_counter() - t0
    report.update(extra or {})
    k, lpc = report["probe"]["k"], report["probe"]["labels_per_class"]  # (as evaluate_features ran them)
    note = format_convergence(report["rows"])  # ("" when every probe fit converged)
    text = ((f"Note: {checkpoint_note}\n" if checkpoint_note else "")
            + f"Test accuracy (%) on the held-out split; kNN = cosine k={k}, low-label = {lpc} labels per class "
            f"(mean +- sd over {report['probe']['repeats']} draws of the labelled samples), linear = l2-regularised "
            "logistic regression on all train labels\nrandom-init encoder: the same networks drawn afresh, batch norm "
            "calibrated on the train split (not the run's own step-0 network, whose kNN starts the run's curve)\n"
            + report["table"] + ("\n" + note if note else "")
            + "\n\n" + _gains(report["rows"], len(dataset.y_test))
            + "\n\nCollapse monitors (test split; the effective rank is at most min(test samples - 1, width)):\n"
            + format_collapse(report["collapse"]))
    if out is not None:
        footer = []  # where the run's other outputs are (printed, not part of report.txt)
        with staged_report(out) as stage:  # (the report lands whole, or not at all)
            atomic_write_text(stage / "report.json",
                              json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2))
            atomic_write_text(stage / "report.txt", text + "\n")
            if plots:
                from .plots import MATPLOTLIB_LEAST, matplotlib_problem, plot_features, plot_run

                def draw():
                    paths = plot_run(_read_history(metrics), report, stage, loss_label=_loss_label(online.config),
                                     n_test=len(dataset.y_test))
                    if paths:
                        paths += [p for p in [plot_features(features, dataset.y_test, stage)] if p is not None]
                    return paths

                paths, failed = _try_to_draw(draw)
                if failed:
                    for name in REPORT_FILES:  # (none drawn, rather than some)
                        if name.endswith(".png"):
                            (stage / name).unlink(missing_ok=True)
                if paths:
                    footer.append("Plots: " + ", ".join(str(out / p.name) for p in paths))
                elif failed:
                    footer.append(f"(no plots: {failed})")
                elif problem := matplotlib_problem():  # (one command installs it or upgrades it)
                    footer.append(f"(no plots: {problem}; {_q(sys.executable)} -m pip install --upgrade "
                                  f"{_q('matplotlib>=' + MATPLOTLIB_LEAST)})")
            removed = publish_report(stage, out)
        if removed:
            print(f"byol-ref: removed {', '.join(str(out / n) for n in removed)}: of the report this one replaces, "
                  "which has none", file=sys.stderr)
        run = run or out
        footer.append(f"Features for your own probes: {_prog()} embed {_q(run)}{data_args} "
                      f"--out {_q(out / 'features.npz')} --baselines")
        text += "\n\n" + "\n".join(footer)
    if as_json:
        print(json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2))
    else:
        print(text)
    return 0


def _probe_progress(stream=None):
    """On a terminal, a line redrawn in place as the report's probes run ("byol-ref: probing 4/12,
    9 s: random-init encoder: linear probe"), cleared at the end; elsewhere (a log, a pipe), None:
    the line before the probes says what they are. A report on 56,000 rows takes minutes."""
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return None
    t0 = time.perf_counter()

    def show(done: int, total: int, what: str) -> None:
        took = time.perf_counter() - t0
        line = "" if done == total else f"byol-ref: probing {done + 1}/{total}, {took:.0f} s: {what}"
        width = shutil.get_terminal_size().columns - 1  # (a longer line would wrap, and \r redraw only its end)
        stream.write("\r" + line[:width].ljust(width) + ("\r" if done == total else ""))
        stream.flush()

    return show


def _read_history(metrics: Path | None) -> list:
    """The records of a run's metrics.jsonl (none if there is no such file)."""
    if metrics is None or not metrics.is_file():
        return []
    records = []
    for i, line in enumerate(metrics.read_bytes().decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # a torn write (--resume drops it); the others still draw the curves
            record = None
        if _plottable(record):
            records.append(record)
        else:
            print(f"byol-ref: note: line {i} of {metrics} is not a record of ours; the plots leave it out",
                  file=sys.stderr)
    return records


_STEP_FIELDS = ("loss", "lr", "tau", "z_std", "z_std_healthy", "z_rank", "y_rank")  # of a step record (plots.py)


def _plottable(record) -> bool:
    """A metrics.jsonl record the plots can draw: a step, and finite numbers where they draw them."""
    def real(v):
        try:  # (an int beyond a float's range: OverflowError, which took every plot with it)
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        except OverflowError:
            return False

    if not isinstance(record, dict) or not real(record.get("step")):
        return False
    drawn = (_STEP_FIELDS if "z_std" in record else ()) + (("knn",) if "knn" in record else ())
    if not all(real(record.get(k)) for k in drawn):
        return False
    # the plots draw z_std / z_std_healthy (1/sqrt(d) > 0): a 0 failed them on ZeroDivisionError, an overflow
    # on "Axis limits cannot be NaN or Inf", and either took every plot with it
    return "z_std" not in record or record["z_std_healthy"] > 0 and real(record["z_std"] / record["z_std_healthy"])


def _loss_label(config: Config) -> str:
    how, low, high = loss_range(config)
    return f"{how}, in [{low:g}, {high:g}]"


def _plot_curves_only(out: Path, metrics: Path, config: Config) -> None:
    """training.png alone (no probes: --no-eval, or data without labels); says where it went, or
    that it could not be drawn (the run stands without it)."""
    from .plots import plot_run

    paths, _ = _try_to_draw(lambda: plot_run(_read_history(metrics), None, out, loss_label=_loss_label(config)))
    if paths:
        print(f"Plots: {', '.join(str(p) for p in paths)}")


def _try_to_draw(draw) -> tuple:
    """``(draw(), None)``: the plots' paths; or, where drawing fails (a broken font cache, a backend
    of the user's that cannot be set), ``([], what to say)``, said as a warning too: the plots are an
    optional extra, and the run and its report stand without them. (It said "matplotlib failed",
    where the failure was byol-ref's own: a one-feature data set's PCA panel.) A full disk is raised:
    not the drawing's doing, and main says so, and that the report is not written."""
    try:
        return draw(), None
    except Exception as exc:
        if disk_full(exc):
            raise
        failed = (f"drawing them failed ({type(exc).__name__}: {first_line(exc)}); the run and its report "
                  "stand without them")
        print(f"byol-ref: warning: no plots: {failed}", file=sys.stderr)
        return [], failed


def _train_again(run_dir: Path) -> str:
    """The command that starts a new run in ``run_dir`` over what is there, for hints."""
    return f"{_prog()} train ... --out {_q(run_dir)} --overwrite"


def _eval_again(run_dir: Path) -> str:
    """The command that makes a trained run's report and plots again, in its own folder, for hints."""
    return f"{_prog()} eval {_q(run_dir)} --out {_q(run_dir)} --overwrite"


def _q(path) -> str:
    """A path as a shell word: a hint's command runs as printed, spaces and all."""
    return shlex.quote(str(path))


def _prog() -> str:
    """How to run this program again, for hints: ``byol-ref`` when called by that name, else the
    interpreter that runs it (``make run`` calls ``.venv/bin/python -m byol_ref``, not on PATH)."""
    if Path(sys.argv[0]).name == "byol-ref":
        return "byol-ref"
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(Path.cwd())  # keep the venv's own python: it may be a symlink to the system one
    except ValueError:
        pass
    return f"{_q(exe)} -m byol_ref"


def _gains(rows: list, n_test: int) -> str:
    """One line per baseline: what the BYOL encoder gains over it, in accuracy points."""
    by_name = {r["name"]: r for r in rows}
    byol = by_name["BYOL encoder (y)"]
    lines = []
    for base in ("random-init encoder", "raw inputs"):
        gains = ", ".join(f"{label} {100 * (byol[key] - by_name[base][key]):+.1f}"
                          for key, label in (("knn", "kNN"), ("low_label", "low-label"), ("linear", "linear")))
        lines.append(f"BYOL encoder vs {base}: {gains} points")
    return "\n".join(lines) + f" (one test sample is {100 / n_test:.2f} points)"


def _eval(args) -> int:
    out = Path(args.out) if args.out else None
    if out is not None:
        _refuse_a_file_on_the_way(out, "--out", folder=True)
    if out is not None and not args.overwrite:
        _refuse_a_report_there(out)
    _probe_opts(args)
    online, dataset, input_norm, backend, tcfg, (step, total, note) = _load_run(args)
    probe = _probe_opts(args, dataset.x_train.shape[0], dataset.y_train)
    metrics = checkpoint_file(args.path).parent / "metrics.jsonl"  # the run's own curves, for training.png
    with RunLock() as lock:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            check_writable(out, f"--out {out}", "choose another --out")  # (now, not after the probes)
            lock.take(out)  # (a train there, or another eval, would mix its files with this report's)
            if not args.overwrite:
                _refuse_a_report_there(out)  # (one written meanwhile)
        return _report(online, dataset, input_norm, backend, out, metrics, plots=out is not None and not args.no_plots,
                       seed=tcfg.seed, as_json=args.json, probe=probe, run=Path(args.path), data_args=_data_args(args),
                       progress=not args.no_progress, extra={"checkpoint_step": step, "total_steps": total},
                       checkpoint_note=note)


def _data_args(args) -> str:
    """The data options of an eval, as embed takes them: its hint must read the data eval probed (a
    checkpoint without its config.json names none of its own)."""
    if args.data is None:
        return ""
    given = [("--data", args.data), ("--labels", args.labels),
             ("--csv-header", None if args.csv_header == "auto" else args.csv_header),
             ("--full-scale", None if args.full_scale is None else f"{args.full_scale:g}")]
    return "".join(f" {flag} {_q(value)}" for flag, value in given if value is not None)


def _refuse_a_report_there(out: Path) -> None:
    taken = [n for n in REPORT_FILES if (out / n).exists()]
    if taken:
        raise FileExistsError(f"--out {out} already holds {', '.join(taken)}; pass --overwrite to replace "
                              "them or choose another folder")


def _refuse_a_file_on_the_way(path: Path, flag: str, *, folder: bool, advice: str = "") -> None:
    """Refuse a path that goes through a file (or, when it names a folder, is one), a link to nothing or a
    loop of links, or that names a pipe or a device (``checks.in_the_way``): the OS said only "[Errno 17]
    File exists", "[Errno 20] Not a directory" or "[Errno 40] Too many levels of symbolic links", after
    the work. ``advice``: what to do, said after (default: choose another ``flag``)."""
    blocked = in_the_way(path, folder=folder)
    if blocked is not None:
        raise FileExistsError(f"{flag} {path}: {blocked}; {advice or 'choose another ' + flag}")


def _check_output(path, flag: str, overwrite: bool, inputs=()) -> None:
    """Refuse to write over a folder, over a file the command reads (``inputs``: even with
    ``--overwrite``, as a run's checkpoint would be lost), or over an existing file unless ``--overwrite``."""
    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(f"{flag} {p} is a directory; name the file to write")
    _refuse_a_file_on_the_way(p, flag, folder=False)
    for source in inputs:
        if source is not None and p.resolve() == Path(source).resolve():
            raise ValueError(f"{flag} {p} is the file this command reads ({source}); write to another file")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{flag} {p} exists; pass --overwrite to replace it or choose another path")
    folder = next(d for d in p.absolute().parents if d.exists())  # (the folders below it are made)
    check_writable(folder, f"{flag} {p}: {'its folder' if folder == p.absolute().parent else 'the folder'} "
                   f"{folder}", "choose another path")


def _embed(args) -> int:
    out = Path(args.out)
    if out.suffix != ".npz":
        raise ValueError(f"--out must name an .npz file, got {out}")
    _check_output(out, "--out", args.overwrite, inputs=(checkpoint_file(args.path), *_data_files(args)))
    online, dataset, input_norm, backend, tcfg, (_, _, note) = _load_run(args)
    if note:
        print(f"byol-ref: note: {note}", file=sys.stderr)
    arrays = {}
    for split, x in (("train", dataset.x_train), ("test", dataset.x_test)):
        arrays[f"encoder_{split}"] = encode(online, x, input_norm, backend, finite=True)
        arrays[f"projector_{split}"] = encode(online, x, input_norm, backend, which="z", finite=True)
    if args.baselines:  # the report's other two rows: a random-init encoder (drawn as eval draws it), the inputs
        from .report import random_init_baseline

        random_online = random_init_baseline(online, dataset.x_train, input_norm, backend, seed=tcfg.seed)
        for split, x in (("train", dataset.x_train), ("test", dataset.x_test)):
            arrays[f"random_encoder_{split}"] = encode(random_online, x, input_norm, backend, finite=True)
        arrays["inputs_train"], arrays["inputs_test"] = dataset.x_train, dataset.x_test
    if dataset.y_train is not None:
        arrays["labels_train"], arrays["labels_test"] = dataset.y_train, dataset.y_test
    if dataset.label_names is not None:  # (a str array: allow_pickle=False reads it)
        arrays["label_names"] = host.array(dataset.label_names)
    atomic_savez(out, arrays)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in arrays.items())
    print(f"byol-ref: wrote {out}: {shapes}")
    return 0


def _data_files(args) -> list:
    """The files ``embed``/``eval`` read the data from: --data and --labels, else those config.json records."""
    spec = {"data": args.data, "labels": args.labels}
    cfg_file = checkpoint_file(args.path).parent / "config.json"
    if args.data is None and cfg_file.is_file():
        try:
            spec = _read_run_config(cfg_file)["data"]
        except ValueError:
            return []  # _load_run names what is wrong with it
    return [v for v in (spec.get("data"), spec.get("labels")) if isinstance(v, str)]


def _load_run(args):
    """(online network on the device, data as the network sees it, InputNorm, backend, TrainConfig,
    where the checkpoint stands) of ``args.path`` (a run directory or checkpoint) on its own data or
    ``args.data``. Where it stands: (its step, the run's steps or None where no record says, a note
    where it is not the run's end: the run is training now, or stopped short)."""
    if args.labels is not None and args.data is None:
        raise ValueError("--labels goes with --data (the run's own data keep their own labels); pass both, or "
                         "neither")
    if args.csv_header != "auto" and args.data is None:
        raise ValueError(f"--csv-header {args.csv_header} goes with --data (the run's own data are read as the "
                         "run read them)")
    if args.full_scale is not None and args.data is None:
        raise ValueError(f"--full-scale {args.full_scale:g} goes with --data (the run's own data are read as the "
                         "run read them)")
    ckpt_path = checkpoint_file(args.path)
    if not ckpt_path.is_file():
        if Path(args.path).is_dir():
            _refuse_no_checkpoint(ckpt_path.parent, "", "evaluate" if args.command == "eval" else "embed")
            raise FileNotFoundError(f"checkpoint not found: {args.path} is a folder without a checkpoint.npz, so not a "
                                    "byol-ref run directory (expected a run directory, or a checkpoint .npz)")
        _read_what_stands_there(ckpt_path)  # (a link to nothing, a pipe)
        # (a checkpoint file that is not there is only that, unless an --overwrite set it aside)
        refuse_for_set_aside(ckpt_path.parent, "", overwrite=_train_again(ckpt_path.parent))
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path} does not exist (expected a run directory, "
                                "or a checkpoint .npz)")
    state, model_cfg, tcfg, meta = load_checkpoint(ckpt_path)
    cfg_file = ckpt_path.parent / "config.json"
    if args.data:  # (a run fit from Python on pixels standardised as feature vectors takes them as stored)
        vectors = isinstance(meta.get("preprocessing"), dict) and meta["preprocessing"].get("kind") == "standardize"
        dataset = _load_data({"data": args.data, "labels": args.labels, "csv_header": args.csv_header,
                              "full_scale": args.full_scale}, scale_pixels=not vectors)
    elif cfg_file.is_file():
        dataset = _data_for_run(_read_run_config(cfg_file)["data"], cfg_file)
    else:  # (it took the embedded digits, without a word, whatever the run had trained on)
        raise ValueError(f"{ckpt_path} has no config.json beside it to say which data its run trained on; pass "
                         "--data (digits, synthetic, or the file)")
    what = f"--data {args.data}" if args.data else f"the data {cfg_file} records ({dataset.name})"
    if dataset.x_train.shape[1] != model_cfg.encoder_dim:
        raise ValueError(f"{what} has {dataset.x_train.shape[1]} features, but the encoder of {ckpt_path} expects "
                         f"{model_cfg.encoder_dim}")
    # The run's own input statistics; checkpoints written before they were stored refit them on this data.
    recorded = meta.get("preprocessing")
    prep = recorded or fit_preprocessing(dataset)
    raw = dataset
    try:
        with host.errstate(over="ignore", invalid="ignore"):  # (what overflows is refused just below)
            dataset, input_norm = apply_preprocessing(dataset, prep)
    except ValueError as exc:  # (fit records what fit_preprocessing gives, which is taken: the record was changed)
        edited = f"; {EDITED}" if recorded else ""
        raise ValueError(f"{ckpt_path}: {exc}{edited}") from None
    _check_in_range(raw, dataset, input_norm, tcfg.dtype, what)
    span = None if input_norm is None else pixels_outside(raw.x_train)  # (an image run's)
    if span is not None:
        print(f"byol-ref: warning: the pixels of {what} span {span}, but {ckpt_path} trained on pixels in [0, 1]: "
              "its features of these mean little; pass --full-scale (255 for 8-bit pixels; a file of uint8 or "
              "uint16 images is read so without it)", file=sys.stderr)
    backend = get_backend("cupy" if args.device == "cuda" else "numpy", tcfg.dtype, tcfg.seed)
    online = state.online
    if backend.name != "numpy":
        online = online._replace(params={k: backend.asarray(v) for k, v in online.params.items()},
                                 buffers={k: backend.xp.asarray(v) for k, v in online.buffers.items()})
    total = meta.get("total_steps")
    if type(total) is not int and not args.data:  # (a checkpoint written before it was kept: its own data say)
        try:
            total = make_schedules(tcfg, raw.x_train.shape[0]).total_steps
        except ValueError:
            total = None
    total = total if type(total) is int else None
    return online, dataset, input_norm, backend, tcfg, (state.step, total, _unfinished(ckpt_path, state.step, total))


def _unfinished(ckpt_path: Path, step: int, total: int | None) -> str | None:
    """What to say of a checkpoint that is not its run's end, or None: its run is training now (in
    another process), or stopped short of its length. Their features are not the run's, and eval's
    report and embed's file would otherwise pass for them. A checkpoint file of another name (one
    copied out of its run) is no run directory's: it is named itself, and no train is looked for."""
    run = ckpt_path.parent
    if ckpt_path.name != "checkpoint.npz":
        return None if total is None or step >= total else (
            f"{ckpt_path} is the checkpoint of step {step} of its run's {total}: these are the features of an "
            "unfinished run")
    try:
        live = _training_there(run)
    except OSError:  # (a folder this user may not open, but whose checkpoint was read: nothing to tell)
        live = False
    if live:
        return (f"{run} is training now, in another process: these are the features of its checkpoint at step "
                f"{step}{'' if total is None else f' of {total}'}, not of the finished run")
    if total is None or step >= total:
        return None
    finish = (f"; {_prog()} train --out {_q(run)} --resume finishes it" if (run / "config.json").is_file() else "")
    return (f"{run} stopped at step {step} of {total}, its last checkpoint: these are the features of an unfinished "
            f"run{finish}")


def _check_in_range(raw, dataset, input_norm, dtype: str, what: str) -> None:
    """Refuse data that the run's input preprocessing (its training data's statistics, from the
    checkpoint) takes beyond the run's dtype: the networks would compute inf and NaN features from
    them, written by embed and probed by eval without a word. Train fits its statistics on the data
    themselves and refuses such values itself (``prepare_training_data``); other data are not so held.

    Args:
        raw: the Dataset as loaded.
        dataset: the same after ``apply_preprocessing``.
        input_norm: the per-view InputNorm of an image run, or None.
        dtype: the run's dtype (``TrainConfig.dtype``).
        what: how to name the data in the error.
    """
    for split in ("train", "test"):
        beyond = values_beyond(getattr(dataset, f"x_{split}"), input_norm, dtype)
        if beyond is not None:
            n, at, limit = beyond
            value = float(getattr(raw, f"x_{split}")[at])
            raise ValueError(f"{what}: x_{split} has {n} value(s) that the run's input standardisation "
                             f"(its training data's mean and std) takes beyond {dtype}'s range (magnitude "
                             f"{limit:.3g}), the first at index {at} (raw value {value:.3g}); "
                             "the network would compute inf and NaN features from them: rescale these data as the "
                             "run's were")


def _probe_opts(args, n_train: int | None = None, y_train=None) -> dict:
    """The probe options, checked (``n_train``: the training rows the kNN draws neighbours from;
    ``y_train``: the labels the probes fit on, checked now rather than after a run has trained).
    A default the data are too small for (``--knn-k`` above ``n_train``, ``--labels-per-class``
    above the smallest class) is lowered to what they hold, with a line saying so; a value typed
    on the command line is refused instead."""
    k, per_class = args.knn_k, args.labels_per_class
    if k < 1 or per_class < 2:
        raise ValueError(f"--knn-k must be >= 1 and --labels-per-class >= 2, got {k} and {per_class}")
    typed = getattr(args, "given", None)  # (a Namespace made by hand: every value counts as typed)
    lowered = []
    if n_train is not None and k > n_train:
        if typed is None or "knn_k" in typed:
            raise ValueError(f"--knn-k {k} exceeds the {n_train} training samples the neighbours come from")
        k = n_train
        lowered.append((f"--knn-k {k} (every training row)", f"--knn-k {KNN_K}"))
    if y_train is not None:
        classes, counts = host.unique(host.asarray(y_train), return_counts=True)
        skip = "pass --no-eval to train without them" if args.command == "train" else "they cannot be probed"
        if classes.size < 2:
            raise ValueError(f"the training split's labels hold {classes.size} class(es); the probes of the report "
                             f"tell at least 2 apart ({skip})")
        fewest = int(counts.min())
        if fewest < per_class and fewest >= 2 and typed is not None and "labels_per_class" not in typed:
            per_class = fewest
            lowered.append((f"--labels-per-class {per_class} (the fewest examples of a class)",
                            f"--labels-per-class {LABELS_PER_CLASS}"))
        elif fewest < per_class:
            few = classes[counts < per_class][:5].tolist()
            way = (f"lower --labels-per-class to {fewest}" if fewest >= 2 else
                   f"a class with one example cannot be probed: {skip}")
            raise ValueError(f"--labels-per-class {per_class}, but class(es) {few} of the training "
                             f"split have fewer examples (the fewest: {fewest}); {way}")
    t = args.knn_temperature
    if t is not None and not (t > 0 and t != float("inf")):
        raise ValueError(f"--knn-temperature must be a positive finite number (e.g. 0.1), got {t}")
    if lowered:  # (the report's header says them too; JSON on stdout keeps stdout to itself)
        print(f"byol-ref: the report's probes take {' and '.join(now for now, _ in lowered)}: the data hold too few "
              f"for the default {' and '.join(default for _, default in lowered)}", flush=True,
              file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    return {"k": k, "temperature": args.knn_temperature, "labels_per_class": per_class}


def main(argv=None) -> int:
    """Run one ``byol-ref`` command, as the console script and ``python -m byol_ref`` do.

    Args:
        argv: the arguments after the program name (default ``sys.argv[1:]``).

    Returns:
        The exit status: 0 done; 1 training diverged, ``diff`` found tensors that differ, or memory
        or disk space ran out; 2 bad input, with a message on stderr naming it (argparse's own
        refusals raise ``SystemExit(2)``); 130 after Ctrl-C, 143 after SIGTERM, 129 after SIGHUP; 141
        when the reader of the output went away.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    prog, args = "byol-ref", None
    try:
        args = build_parser().parse_args(argv)
        args.given = _explicit_dests(argv)  # options typed on the command line, whatever their value
        _expand_home(args)
        prog = f"byol-ref {args.command}"
        # SIGTERM (`kill`, `timeout`, a scheduler's end of job) and SIGHUP (the terminal closed) are tidied
        # up after as Ctrl-C is. The first of them stops the command; those that follow must not cut short
        # what it set off: the clean-up, and the message below.
        with sigterm_as_interrupt(), first_interrupt_only(), warnings.catch_warnings():
            warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
            try:
                return _command(args)
            except KeyboardInterrupt as exc:  # (train says more where its run stands)
                print(f"\n{prog}: {interrupted(exc)}", file=sys.stderr)
                return interrupt_status(exc)
    except KeyboardInterrupt as exc:  # while the arguments were read, before the handlers were in
        print(f"\n{prog}: {interrupted(exc)}", file=sys.stderr)
        return interrupt_status(exc)
    except BrokenPipeError:  # the reader went away (`byol-ref diff ... | head`): nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    except (ValueError, TypeError, OSError, RuntimeError) as exc:  # OSError: missing files, --out a folder, ...
        return _failed(prog, _refused(exc, args) or exc, "then run the command again" if disk_full(exc) else "")
    except Warning as exc:  # a warning that the warnings filter made an error (python -W error, PYTHONWARNINGS)
        return _failed(prog, f"{exc} (a {type(exc).__name__}, raised as an error by the warnings filter: "
                             "python -W error or PYTHONWARNINGS)")
    except MemoryError as exc:  # (NumPy's says how much, for what shape)
        print(f"{prog}: error: out of memory: {exc or 'an allocation failed'}; smaller sizes (widths, batch, "
              "data) or float32 need less", file=sys.stderr)
        return 1


def _show_warning(shown_before, message, category, filename, lineno, file=None, line=None):
    """byol-ref's own warnings (:class:`~byol_ref.checks.ByolRefWarning`) as its other messages read
    ("byol-ref: warning: ..."), without the file and line they name; others (NumPy's) as
    ``shown_before``, the ``warnings.showwarning`` in place when the command began, shows them."""
    if issubclass(category, ByolRefWarning):
        print(f"byol-ref: warning: {message}", file=sys.stderr if file is None else file)
    else:
        shown_before(message, category, filename, lineno, file, line)


# What an --out names, for the message refusing an empty one.
_OUT_NAMES = {"train": "a run directory (without --out: runs/<data>-<time>)",
              "eval": "a folder for the report (without --out: the report is only printed)",
              "embed": "the .npz file to write", "trace": "the trace .npz file to write",
              "convert": "the .npz or .safetensors file to write"}


def _refuse_an_empty_out(args) -> None:
    """--out '' (an unset shell variable, ``--out "$DIR"``): train and eval took it for no --out (a
    run in runs/..., a report not written) and exited 0; embed, trace and convert's dst named '.',
    which no one typed."""
    flag, path = ("dst", args.dst) if args.command == "convert" else ("--out", getattr(args, "out", None))
    if path == "":
        raise ValueError(f"{flag} is empty (''); expected {_OUT_NAMES[args.command]}")


def _command(args) -> int:
    _refuse_an_empty_out(args)
    if args.command == "train":
        return _train(args)
    if args.command in _VERIFY_COMMANDS:
        return _VERIFY_COMMANDS[args.command](args)
    if args.command == "embed":
        return _embed(args)
    return _eval(args)


class _TerminalMayClose:
    """stdout or stderr of the console script, where a terminal that has closed is no error: a train
    left running in the background of a shell that exited (no SIGHUP comes then), or run where SIGHUP
    is ignored, failed on its next progress bar with "[Errno 5] Input/output error", and stopped. A
    write or flush that finds its terminal closed points stdout and stderr at the null device
    (``rundir.leave_a_closed_terminal``) and the command goes on; any other error is raised."""

    def __init__(self, stream):
        self._stream = stream

    def _guarded(self, call, *args):
        try:
            return call(*args)
        except OSError as exc:
            try:
                mine = self._stream.fileno()
            except (OSError, ValueError, AttributeError):  # (a stream with no descriptor of its own)
                mine = None
            if exc.errno != errno.EIO or mine not in leave_a_closed_terminal():  # (a failing disk, say)
                raise
            return len(args[0]) if args else None

    def write(self, text):
        return self._guarded(self._stream.write, text)

    def flush(self):
        return self._guarded(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def console_main() -> int:
    """The ``byol-ref`` console script and ``python -m byol_ref``: ``main``, after which the
    command is over: a Ctrl-C as the interpreter shuts down would only print a traceback, so it is
    ignored; and once the command has ended on Ctrl-C, SIGTERM or SIGHUP, so are SIGTERM and SIGHUP
    (which would report 143 or 129 after the first one's message). Text the terminal's encoding
    cannot show (a class name or a path in another script, on a Windows console or under
    ``PYTHONIOENCODING=ascii``) is written as ``\\uXXXX`` escapes, as Python writes it to stderr,
    not refused mid-run."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):  # (an io.TextIOWrapper; a replaced stream is its owner's)
            stream.reconfigure(errors="backslashreplace")
    if sys.stdout is not None and sys.stderr is not None:  # (None: no console at all, pythonw)
        sys.stdout, sys.stderr = _TerminalMayClose(sys.stdout), _TerminalMayClose(sys.stderr)
    try:
        status = main()
    except KeyboardInterrupt as exc:  # one that came as main was returning, its handlers out
        status = interrupt_status(exc)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if status in (129, 130, 143):
        for signum in ENDS:
            signal.signal(signum, signal.SIG_IGN)
    return status


# =========================================================================== verification toolkit
# ``byol-ref trace`` / ``diff`` / ``convert`` and ``train --preset`` (issue #4). Everything the
# rest of this file calls from here is _add_verify_parsers, _preset_configs and _VERIFY_COMMANDS.


def _add_verify_parsers(sub, train_parser) -> None:
    from .diff import DEFAULT_ATOL, DEFAULT_RTOL
    from .interchange import LAYOUTS
    from .presets import preset_names

    train_parser.add_argument(
        "--preset", choices=preset_names(), default=None,
        help="start from an implementation's conventions (byol_ref.presets); flags you pass explicitly and "
             "--set KEY=VALUE override it")

    t = sub.add_parser(
        "trace", help="run N training steps on fixed views and save every intermediate",
        description="Run N full BYOL training steps under a preset from given params and views (--inputs) or "
                    "from a seed (--dims), and save every intermediate in execution order as .npz "
                    "(docs/trace-format.md).", formatter_class=_HelpFormatter)
    t.add_argument("--out", required=True, help="trace file to write (.npz; never overwritten unless --overwrite)")
    t.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    t.add_argument("--preset", choices=preset_names(), default=None,
                   help="the implementation whose conventions the traced steps follow (docs/presets.md; default: "
                        "edifice with --layout axon and its edifice mapping, else deepmind)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a preset field, or set another model.Config / TrainConfig field")
    g = t.add_argument_group("inputs (one of)")
    g.add_argument("--inputs", default=None,
                   help=".npz/.safetensors with online.param.*, target.param.*, optional buffers and opt state, "
                        "and step<i>.input.view1/2 (or view1/view2); a trace file works too")
    g.add_argument("--layout", choices=LAYOUTS, default="byol-ref",
                   help="layout of the --inputs weights (torch: state_dict names, weights (out, in); axon: flat "
                        "'<layer>.<param>' Axon names, kernels (in, out))")
    g.add_argument("--mapping", default=None,
                   help=f"with --layout torch: {_styles('torch')}; with --layout axon: {_styles('axon')} (the "
                        "default); or a JSON file {byol-ref name: torch or axon name}")
    g.add_argument("--dims", default=None, metavar="D,H,P,Q[,PH]",
                   help="generate inputs: encoder_dim, hidden_size, projection_dim, predictor_dim "
                        "[, projector_hidden_dim]")
    g.add_argument("--batch", type=int, default=4, help="with --dims: batch size N")
    g.add_argument("--seed", type=int, default=0, help="with --dims: seed of params and views")
    g = t.add_argument_group("steps")
    g.add_argument("--steps", type=int, default=None,
                   help="steps to trace (default: one per step<i>.input.view1/2 pair in the inputs; a single "
                        "view1/view2 pair, reused by every step, needs --steps; 2 with --dims)")
    g.add_argument("--total-steps", type=int, default=None,
                   help="K of the lr and tau schedules (default: start-step + steps)")
    g.add_argument("--warmup-steps", type=int, default=None,
                   help="W of the lr warm-up, in steps (default 0: pass the W of the run you compare with)")
    g.add_argument("--start-step", type=int, default=0, help="global step k of the first traced step")
    g.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="dtype of params, views and every traced tensor")

    d = sub.add_parser(
        "diff", help="compare two traces tensor by tensor",
        description="Compare two trace .npz files: per tensor max abs/rel error, shape and dtype mismatches, names "
                    "on one side only, and the first tensor in execution order outside tolerance. Exit status 0 "
                    "when all agree, 1 otherwise (2 on a usage error).",
        formatter_class=_HelpFormatter)
    d.add_argument("a", help="trace A (.npz)")
    d.add_argument("b", help="trace B (.npz)")
    d.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help="relative tolerance: an element agrees when |a - b| <= atol + rtol max(|a|, |b|)")
    d.add_argument("--atol", type=float, default=DEFAULT_ATOL, help="absolute tolerance (see --rtol)")
    d.add_argument("--only-common", action="store_true", help="names on one side only do not fail the diff")
    d.add_argument("--subset", action="store_true",
                   help="names only in B do not fail the diff, names only in A do (A, a step you recorded, need "
                        "not hold every byol-ref intermediate, but each of its tensors must be compared)")
    d.add_argument("--ignore-dtype", action="store_true", help="dtype differences alone do not fail the diff")
    d.add_argument("--transpose-weights", choices=("a", "b"), default=None,
                   help="that side stores 2-D *.weight arrays in PyTorch's (out, in) layout")
    d.add_argument("--all", action="store_true",
                   help="list every tensor (those that differ first), not only the first 40 that differ")
    d.add_argument("--json", action="store_true", help="print the full report as JSON")

    c = sub.add_parser(
        "convert", help="convert weights between byol-ref's layout and a PyTorch or Axon one",
        description="Convert weights (never via pickle) between byol-ref's .npz layout and a PyTorch state_dict "
                    "or flat Axon parameters (Elixir, Edifice.Contrastive.BYOL) exported as .npz or .safetensors. "
                    "The mapping's structure comes from --preset/--set.",
        formatter_class=_HelpFormatter)
    c.add_argument("src", help="input .npz or .safetensors; with --from byol-ref also a run directory or its "
                               "checkpoint.npz (its online and target networks, in the checkpoint's own structure)")
    c.add_argument("dst", help="output .npz or .safetensors (never overwritten unless --overwrite)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing dst")
    c.add_argument("--from", dest="src_layout", choices=LAYOUTS, required=True,
                   help="layout of src: byol-ref names and (in, out) weights, a PyTorch state_dict, or flat Axon "
                        "'<layer>.<param>' names")
    c.add_argument("--to", dest="dst_layout", choices=LAYOUTS, required=True,
                   help="layout of dst (one of src and dst is byol-ref)")
    c.add_argument("--mapping", default=None,
                   help=f"torch: {_styles('torch')}; axon: {_styles('axon')} (the default); or a JSON file")
    c.add_argument("--preset", choices=preset_names(), default=None,
                   help="network structure for a named mapping (biases, layout; default: edifice with --from "
                        "axon and its edifice mapping, else deepmind); not with a run directory or checkpoint, "
                        "whose own config is the structure")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a structure field")
    c.add_argument("--partial", action="store_true", help="allow names without a mapping entry (dropped)")


def _preset_name(args, read_layout: str) -> str:
    """--preset, else the structure the mapping fixes: Edifice.Contrastive.BYOL's when weights are read
    from the axon layout with its shipped mapping (the only structure that mapping accepts), else
    deepmind. Only a read implies it: the file's Axon names then have to match, whereas byol-ref
    weights of another structure written to the axon layout would be renamed wrongly."""
    from .interchange import default_mapping

    if args.preset is not None:
        return args.preset
    return "edifice" if read_layout == "axon" and default_mapping("axon", args.mapping) == "edifice" else "deepmind"


def _styles(layout: str) -> str:
    """The shipped mapping styles of a layout, for help texts."""
    from .interchange import STYLE_LAYOUT

    return " or ".join(k for k, v in STYLE_LAYOUT.items() if v == layout)


def _layout_style(layout: str, mapping, flag: str):
    """--mapping, or the layout's default (``interchange.default_mapping``); ``flag`` names the option
    that chose the layout (``--layout``, ``--from``, ``--to``) in the error when there is none."""
    from .interchange import default_mapping

    style = default_mapping(layout, mapping)
    if style is None:
        raise ValueError(f"{flag} {layout} needs --mapping ({_styles(layout)}, or a JSON file)")
    return style


def _structure(preset, model_extra):
    """The config whose layer names a mapping follows: the preset and --set, without the sizes (which
    the weights give; ``sem_simplex_dim`` stays, as the group width that ``norm_groups`` must divide).
    It is built with stand-in sizes that any ``norm_groups`` divides and that give each standardised
    Linear 2 inputs (``weight_std``): byol-ref's default widths refused a group norm of 3 groups that
    the weights' own widths allow, and an encoder_dim of 1 refused every weight_std network."""
    kept = {k: v for k, v in model_extra.items()
            if k == "sem_simplex_dim" or not k.endswith("_dim") and k != "hidden_size"}
    groups = kept.get("norm_groups", Config.norm_groups)  # (a bad one: Config says so)
    width = 2 * groups if isinstance(groups, int) and groups > 0 else 2
    return preset.config(encoder_dim=2, hidden_size=width, projection_dim=width, projector_hidden_dim=width,
                         predictor_dim=width, **kept)


def _route_sets(pairs, preset):
    """Split --set pairs into preset fields, other Config fields and other TrainConfig fields."""
    from .presets import Preset

    preset_fields = {f.name: f for f in fields(Preset) if f.name != "name"}
    model_fields = {f.name: f for f in fields(Config) if f.name not in preset_fields}
    train_fields = {f.name: f for f in fields(TrainConfig) if f.name not in preset_fields}
    changes, model_extra, train_extra = {}, {}, {}
    _route_pairs(pairs, [("preset fields", preset_fields, changes), ("other model fields", model_fields, model_extra),
                         ("other training fields", train_fields, train_extra)])
    return (preset.replace(**changes) if changes else preset), model_extra, train_extra


# train keyword -> the argparse dest that sets it (when not the same name)
_TRAIN_DEST = {"tau_base": "tau", "use_predictor": "no_predictor", "stop_gradient": "no_stop_gradient"}


def _preset_configs(args, model_kw, train_kw):
    """``train --preset``: the preset seeds every convention; flags given on the command line
    (whatever their value, the default's included) and then --set override it."""
    from .presets import get_preset, preset_field_names

    conventions = set(preset_field_names())
    changes = {k: v for kw in (model_kw, train_kw) for k, v in kw.items()
               if k in conventions and _TRAIN_DEST.get(k, k) in args.given}
    preset = get_preset(args.preset, **changes)
    preset, model_extra, train_extra = _route_sets(args.set, preset)
    if preset.ema_scope != "params":
        raise ValueError(f"ema_scope={preset.ema_scope!r} is honoured by `byol-ref trace` only; train supports "
                         "ema_scope=params")
    model_cfg = preset.config(**{**{k: v for k, v in model_kw.items() if k not in conventions}, **model_extra})
    rest = {k: v for k, v in train_kw.items() if k not in conventions and k not in ("epochs", "batch_size")}
    tcfg = preset.train_config(epochs=train_kw["epochs"], batch_size=train_kw["batch_size"],
                               **{**rest, **train_extra})
    return model_cfg, tcfg


def _cmd_trace(args) -> int:
    import re as _re

    from .interchange import from_layout, load_arrays, mapping_path, resolve_mapping
    from .presets import get_preset
    from .trace import TraceError, make_inputs, save_trace, trace_inputs

    preset, model_extra, train_extra = _route_sets(args.set, get_preset(_preset_name(args, args.layout)))
    if (args.inputs is None) == (args.dims is None):
        raise ValueError("pass exactly one of --inputs FILE and --dims D,H,P,Q[,PH]")
    steps = args.steps
    edifice_note = None  # said with an error that the weights do not fit (a mapping file's: Haiku's names, say)
    if args.mapping is not None and args.layout == "byol-ref":
        raise ValueError("--mapping renames PyTorch state_dict or Axon names: it goes with --layout torch or axon")
    if args.dims is not None and args.layout != "byol-ref":
        raise ValueError(f"--layout {args.layout} describes the --inputs file; --dims generates byol-ref weights")
    if args.inputs is not None:
        inputs = load_arrays(args.inputs)
        if args.layout != "byol-ref":
            keep = _re.compile(_VIEW_NAMES)
            views = {k: v for k, v in inputs.items() if keep.match(k)}
            weights = {k: v for k, v in inputs.items() if not keep.match(k)}
            structure = _structure(preset, model_extra)
            from .interchange import _ALIASES, byol_pytorch_hint, unmapped_names
            style = _layout_style(args.layout, args.mapping, "--layout")
            if args.layout == "axon" and (structure.layout, structure.norm) != ("edifice", "layer"):
                note = (f"--layout axon with preset {preset.name} (layout {structure.layout!r}, norm "
                        f"{structure.norm!r}); Edifice.Contrastive.BYOL's structure is --preset edifice")
                if style == "edifice":  # said at once
                    print(f"byol-ref trace: note: {note}", file=sys.stderr)
                else:
                    edifice_note = note
            mapping, aliases = resolve_mapping(style, structure, args.layout), _ALIASES.get(style, ())
            absent = [t for ref, t in mapping.items() if ".param." in ref and t not in weights]
            try:
                if absent and len(absent) < sum(".param." in ref for ref in mapping):  # all absent: from_layout says
                    biases, hint = all(t.endswith(".bias") for t in absent), byol_pytorch_hint(weights)
                    raise ValueError(f"--inputs {args.inputs} lacks {len(absent)} {args.layout} tensor(s) that the "
                                     f"{style} mapping names, e.g. {absent[:4]}"
                                     + (" (a model without these biases: use the preset of the implementation that "
                                        "wrote the weights, or --set hidden_bias=false / head_bias=false)" if biases
                                        else "") + ("." + hint if hint else ""))
                inputs = {**from_layout(weights, mapping, layout=args.layout, strict=False, ignore_prefixes=aliases),
                          **views}
            except ValueError as exc:  # the weights do not fit the preset's structure
                raise _with_note(exc, edifice_note) from None
            ignored = unmapped_names(weights, mapping, ignore_prefixes=aliases)
            if ignored:  # say what was left out, so that nothing is dropped silently
                print(f"byol-ref trace: left out {len(ignored)} input tensor(s) the mapping does not name: "
                      f"{', '.join(ignored[:6])}{', ...' if len(ignored) > 6 else ''}", file=sys.stderr)
                hint = byol_pytorch_hint(ignored)
                if hint:
                    print(f"  {hint.strip()}", file=sys.stderr)
    else:
        try:
            dims = [int(x) for x in args.dims.split(",")]
        except ValueError:
            raise ValueError(f"--dims must be integers D,H,P,Q[,PH], got {args.dims!r}") from None
        if len(dims) not in (4, 5):
            raise ValueError(f"--dims must be D,H,P,Q or D,H,P,Q,PH, got {args.dims!r}")
        steps = 2 if steps is None else steps
        if args.seed < 0:
            raise ValueError(f"--seed must be an int >= 0, got {args.seed}")
        inputs = make_inputs(preset, encoder_dim=dims[0], hidden_size=dims[1], projection_dim=dims[2],
                             predictor_dim=dims[3], projector_hidden_dim=dims[4] if len(dims) == 5 else None,
                             batch=args.batch, steps=steps, seed=args.seed, dtype=args.dtype, model_extra=model_extra)
    # after the inputs, before the steps; a mapping file is read too (--overwrite once wrote over it)
    _check_output(args.out, "--out", args.overwrite, inputs=(args.inputs, mapping_path(args.mapping)))
    try:
        tr = trace_inputs(inputs, preset, steps=steps, dtype=args.dtype, model_extra=model_extra,
                          train_extra=train_extra, total_steps=args.total_steps, warmup_steps=args.warmup_steps,
                          start_step=args.start_step)
    except TraceError as exc:  # the weights do not fit the preset's structure (sizes, names)
        raise _with_note(exc, edifice_note) from None
    save_trace(args.out, tr)
    losses = ", ".join(f"{float(tr.arrays[f'step{i}.loss.total']):.10g}" for i in range(tr.meta["steps"]))
    print(f"byol-ref trace: preset {preset.name}, {tr.meta['steps']} step(s), batch {tr.meta['batch']}, "
          f"{tr.meta['dtype']}: {len(tr.arrays)} tensors -> {args.out} (loss per step: {losses})")
    return 0


def _cmd_diff(args) -> int:
    from .diff import diff_traces, format_report
    from .interchange import transpose_weights
    from .trace import Trace, load_trace

    for path in (args.a, args.b):  # (it compared nothing: "no tensor name is in both files")
        if _is_checkpoint(path):
            kind = "run directory" if Path(path).is_dir() else "training checkpoint"
            raise ValueError(f"{path} is a byol-ref {kind}, not a trace: diff compares the "
                             "intermediates of traces (docs/trace-format.md), which trace writes; a checkpoint "
                             "holds a run's state (convert writes its networks as inputs for trace --inputs)")
    a, b = load_trace(args.a), load_trace(args.b)
    if args.transpose_weights == "a":
        a = Trace(transpose_weights(a.arrays), a.meta)
    elif args.transpose_weights == "b":
        b = Trace(transpose_weights(b.arrays), b.meta)
    rep = diff_traces(a, b, rtol=args.rtol, atol=args.atol, only_common=args.only_common, subset=args.subset,
                      ignore_dtype=args.ignore_dtype, a_label=args.a, b_label=args.b)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=1, allow_nan=True))
    else:
        print(format_report(rep, show_all=args.all, max_rows=None if args.all else 40))
    return 0 if rep.ok else 1


# The views a trace's inputs carry next to the weights (docs/verifying.md): never renamed or transposed.
_VIEW_NAMES = r"^(step\d+\.input\.view[12]|view[12])$"


def _is_checkpoint(path) -> bool:
    """Whether ``path`` is a byol-ref run directory or training checkpoint: an .npz of ``meta`` and
    ``<group>/<name>`` arrays (checkpoint.GROUPS), not any weights file that has an array named meta."""
    import zipfile

    from .checkpoint import GROUPS

    p = checkpoint_file(path)
    try:
        with zipfile.ZipFile(p) as z:
            names = [n for n in z.namelist() if n != "meta.npy"]
            return len(names) < len(z.namelist()) and all(n.split("/", 1)[0] in GROUPS and "/" in n for n in names)
    except (OSError, zipfile.BadZipFile):
        return False


def _cmd_convert(args) -> int:
    import re as _re

    from .interchange import (_ALIASES, from_layout, load_arrays, mapping_file_note, mapping_path,
                              networks_to_arrays, resolve_mapping, save_arrays, to_layout)
    from .presets import get_preset

    _check_output(args.dst, "dst", args.overwrite, inputs=(checkpoint_file(args.src), mapping_path(args.mapping)))
    preset, model_extra, _ = _route_sets(args.set, get_preset(_preset_name(args, args.src_layout)))
    structure = _structure(preset, model_extra)
    src = Path(args.src)
    from_run = False
    if args.src_layout == "byol-ref" and _is_checkpoint(src):
        # A training checkpoint: its online and target networks; its own config is the structure.
        if args.given & {"preset", "set"}:
            raise ValueError(f"{src} is a byol-ref run, whose checkpoint fixes the network's structure; drop "
                             "--preset/--set (they describe the structure of a plain weights file)")
        state, structure, _, _ = load_checkpoint(checkpoint_file(src))
        from_run = True
        arrays = networks_to_arrays(state.online, state.target)
        print(f"byol-ref convert: read the online and target networks (params and buffers) at step {state.step} of "
              f"{checkpoint_file(src)}; its optimiser state is not converted", file=sys.stderr)
    elif _is_checkpoint(src):
        raise ValueError(f"{src} is a byol-ref run or checkpoint, so its layout is byol-ref: pass --from byol-ref")
    elif src.is_dir():
        # A checkpoint that does not read as one (cut short, corrupt): its reader says what is wrong,
        # where the lines below said the run had none and advised --overwrite, which would replace it.
        if _read_what_stands_there(checkpoint_file(src)):  # (one the reader takes is taken above: it came since)
            raise FileNotFoundError(f"{checkpoint_file(src)} appeared while convert read {src} (a run writing its "
                                    "first checkpoint?); run convert again")
        if args.src_layout == "byol-ref":
            _refuse_no_checkpoint(src, "", "convert")
        raise FileNotFoundError(f"{src} is a directory without a checkpoint.npz; pass a weights file (.npz or "
                                ".safetensors), a run directory or a checkpoint")
    else:
        arrays = load_arrays(src)
    keep = _re.compile(_VIEW_NAMES)
    views = {k: v for k, v in arrays.items() if keep.match(k)}
    weights = {k: v for k, v in arrays.items() if not keep.match(k)}
    if args.src_layout == args.dst_layout and args.given & {"mapping", "preset", "set"}:
        raise ValueError(f"src and dst are both in the {args.src_layout} layout, so nothing is renamed: drop "
                         f"{', '.join('--' + k for k in ('mapping', 'preset', 'set') if k in args.given)}")
    if args.src_layout != args.dst_layout:
        other, flag = (args.dst_layout, "--to") if args.src_layout == "byol-ref" else (args.src_layout, "--from")
        if "byol-ref" not in (args.src_layout, args.dst_layout):
            raise ValueError(f"convert goes between byol-ref's layout and another one, got {args.src_layout} -> "
                             f"{args.dst_layout}: convert to byol-ref first, then from it")
        style = _layout_style(other, args.mapping, flag)
        try:
            mapping = resolve_mapping(style, structure, other)
        except ValueError as exc:  # a run's structure is its own: no --preset can change it
            if not from_run:
                raise
            raise ValueError(f"{src} holds a network that the {style} mapping does not name: "
                             + str(exc).replace("use --preset edifice", "only a run trained with --preset edifice "
                                                "converts with it")) from None
        try:
            if args.src_layout == "byol-ref":
                weights = to_layout(weights, mapping, layout=other, strict=not args.partial)
            else:
                weights = from_layout(weights, mapping, layout=other, strict=not args.partial,
                                      ignore_prefixes=_ALIASES.get(style, ()))
        except ValueError as exc:  # name the flag, not the Python argument, and the files
            raise ValueError(f"{src}{mapping_file_note(style)}: "
                             + str(exc).replace("pass strict=False", "pass --partial to leave them out")) from None
        if not weights:
            raise ValueError(f"no array of {src} has a name in the {style} mapping, so there is nothing to "
                             f"write; is it a {args.src_layout} file of this network?")
    if views:
        print(f"byol-ref convert: kept {len(views)} view array(s) unchanged: {', '.join(list(views)[:4])}"
              f"{', ...' if len(views) > 4 else ''}", file=sys.stderr)
    arrays = {**weights, **views}
    save_arrays(args.dst, arrays)
    print(f"byol-ref convert: {len(arrays)} arrays, {args.src_layout} -> {args.dst_layout}: {args.dst}")
    if args.src_layout == "byol-ref" and args.src_layout != args.dst_layout:
        _say_the_structure_written(structure, style)
    return 0


def _say_the_structure_written(structure: Config, style) -> None:
    """Say where a network written under a package's names is built otherwise than that package
    builds it (a default byol-ref run under lightly's names has hidden biases lightly's MLPs lack),
    and how to read the file back: a strict load of it into that package's own model would fail.
    Weight standardisation and the number of norm groups change no name, so that load would pass
    and the model would compute otherwise: they are said apart, and belong in the read-back too."""
    from .interchange import MAPPING_STYLES
    from .model import has_bias
    from .presets import get_preset

    if style not in MAPPING_STYLES:
        return
    theirs = get_preset(style).config(encoder_dim=1)
    differ = {k: getattr(structure, k) for k in ("layout", "norm", "hidden_bias", "head_bias", "use_predictor")
              if getattr(structure, k) != getattr(theirs, k)}
    read_back = theirs.replace(**differ)  # (an encoder bias apart from the hidden ones needs saying too)
    if has_bias(read_back, "encoder.fc1") != has_bias(structure, "encoder.fc1"):
        differ["encoder_bias"] = has_bias(structure, "encoder.fc1")
    unnamed = {k: getattr(structure, k) for k in ("weight_std", "norm_groups")
               if getattr(structure, k) != getattr(theirs, k) and (k != "norm_groups" or structure.norm == "group")}
    if not differ and not unnamed:
        return
    own = {**{k: getattr(theirs, k) for k in {**differ, **unnamed}}, "encoder_bias": has_bias(theirs, "encoder.fc1")}
    unsaid = ", ".join(f"{k}={v!r}" for k, v in unnamed.items())
    if differ:
        said = (f"has {', '.join(f'{k}={v!r}' for k, v in differ.items())}, where {style}'s own has "
                f"{', '.join(f'{k}={own[k]!r}' for k in differ)}: a model built by {style} will not load it whole"
                + (f"; nor do its names show {unsaid}" if unnamed else ""))
    else:
        said = (f"has {unsaid}, where {style}'s own has {', '.join(f'{k}={own[k]!r}' for k in unnamed)}, which no "
                f"array's name shows: a model built by {style} loads it and computes otherwise")
    sets = " ".join(f"--set {k}={str(v).lower()}" for k, v in {**differ, **unnamed}.items())
    print(f"byol-ref convert: note: the network written {said}. Read it back with --preset {style} "
          f"{sets}", file=sys.stderr)


_VERIFY_COMMANDS = {"trace": _cmd_trace, "diff": _cmd_diff, "convert": _cmd_convert}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
