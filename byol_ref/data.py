"""Data sets for byol_ref: the embedded UCI digits, user files, a synthetic set, batching.

Everything here is host (CPU) work on NumPy arrays obtained from :mod:`byol_ref.backend`
(``host``); a training loop moves batches to its device with ``backend.asarray``.

Conventions:
    * ``x`` arrays are float64, shape (N, D): images are stored flattened, and
      :attr:`Dataset.image_shape` says how to fold them back ((H, W) or (C, H, W)).
    * ``y`` arrays are int64 class ids >= 0, shape (N,), or ``None`` when unlabelled.
    * Every random choice (split, batch order) is drawn from a ``numpy.random.Generator``
      that the caller passes in or seeds, so data order is part of the generator state.
"""
from __future__ import annotations

import codecs
import csv
import itertools
import math
import numbers
import os
import re
import shlex
import tokenize
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, Union

from .backend import host as np
from .checkpoint import (NPY_MAGIC, ZIP_MAGIC, file_head, first_line, npy_size_problem, numpy_read_errors,
                         python2_named, read_npz)
from .checks import (ArgumentError, check_bool, check_finite, check_image_shape, check_plain, check_real,
                     check_seed, column_mean_std, native_order, not_a_file, odd_entry, warn)

__all__ = [
    "Dataset",
    "load_digits",
    "load_file",
    "csv_header_rule",
    "synthetic",
    "train_test_indices",
    "feature_stats",
    "standardize",
    "standardize_dataset",
    "pixel_full_scale",
    "image_files_hint",
    "batches",
    "DIGITS_PATH",
]

#: Where the embedded digits live (shipped as package data, see datasets/README.md).
DIGITS_PATH = Path(__file__).resolve().parent / "datasets" / "digits.npz"

PathLike = Union[str, "os.PathLike[str]"]


class Dataset(NamedTuple):
    """A split data set on the host.

    Attributes:
        x_train: features, float64, shape (N_train, D); images are flattened.
        y_train: int64 class ids, shape (N_train,), or None when unlabelled.
        x_test: features, float64, shape (N_test, D) (N_test may be 0).
        y_test: int64 class ids, shape (N_test,), or None when unlabelled.
        image_shape: (H, W) or (C, H, W) when each row of x is a flattened image,
            None for plain feature vectors.
        name: a short name (``"digits"``, a file stem, ``"synthetic"``).
        label_names: when the file's labels were class names, not ids: the names in id order
            (the ids are 0..K-1 in the names' sorted order); None otherwise.
        full_scale: what the file's pixels were divided by as they were read: 255 or 65535 for
            8-bit or 16-bit images (uint8, uint16), or the full scale given (see :func:`load_file`'s
            ``scale_pixels``); None where x holds the values as stored.
    """

    x_train: Any
    y_train: Optional[Any]
    x_test: Any
    y_test: Optional[Any]
    image_shape: Optional[tuple]
    name: str
    label_names: Optional[tuple] = None
    full_scale: Optional[int] = None


# --------------------------------------------------------------------------- splits


def _check_fraction(test_fraction) -> float:
    """A real number in [0, 1): a NumPy float32 or a 0-d array too, as the other settings take them."""
    return check_real(test_fraction, "test_fraction", 0, 1, hi_open=True)


def _round_half_up(v: float) -> int:
    # floor(v + 0.5): round half up, not Python's round-half-to-even, so the split
    # rule is easy to state and reproduce in any language.
    return int(math.floor(v + 0.5))


def train_test_indices(n: int, test_fraction: float, rng, labels=None):
    """Split ``range(n)`` into train and test indices.

    Rule (it is the one used to make ``datasets/digits.npz``):

    * With ``labels`` (stratified): for each class ``c`` in ascending order, take that
      class's indices in ascending order, permute them with ``rng.permutation``, and send
      the first ``floor(test_fraction * n_c + 0.5)`` of them to test (at most ``n_c - 1``,
      so every class keeps a training sample); the rest go to train.
    * Without labels: permute ``range(n)`` once; the first
      ``floor(test_fraction * n + 0.5)`` indices (at least 1 when ``test_fraction > 0``,
      at most ``n - 1``) go to test.

    Both index arrays are returned sorted, so the split keeps the original order.

    Args:
        n: number of samples (>= 2).
        test_fraction: fraction in [0, 1) sent to test.
        rng: ``numpy.random.Generator``.
        labels: optional int class ids, shape (n,).

    Returns:
        (train_idx, test_idx): int64 arrays, disjoint, together ``range(n)``.

    Raises:
        ValueError: n < 2, bad test_fraction, labels of the wrong length, or a
            positive test_fraction that rounds to an empty test set.
    """
    f = _check_fraction(test_fraction)
    _check_rng(rng)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an integer >= 2 (a split needs 2 samples), got {n!r}")
    n = int(n)
    if labels is None:
        perm = rng.permutation(n)
        n_test = _round_half_up(f * n)
        if f > 0:
            n_test = max(n_test, 1)
        n_test = min(n_test, n - 1)
        test, train = perm[:n_test], perm[n_test:]
    else:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {labels.shape}")
        whole = labels.dtype.kind in "iub" or (  # (0.5 would be a class of its own, NaN one per sample)
            labels.dtype.kind == "f" and bool(np.all(np.isfinite(labels) & (labels == np.round(labels)))))
        if not whole:
            raise ValueError(f"labels must be whole-number class ids, got dtype {labels.dtype}"
                             + (" with fractions or non-finite values" if labels.dtype.kind == "f" else ""))
        tests, trains = [], []
        for c in np.unique(labels):
            idx = np.flatnonzero(labels == c)  # ascending
            perm = rng.permutation(idx)
            k = min(_round_half_up(f * idx.size), idx.size - 1)
            tests.append(perm[:k])
            trains.append(perm[k:])
        test, train = np.concatenate(tests), np.concatenate(trains)
        if f > 0 and test.size == 0:
            raise ArgumentError("test_fraction", f"of {n} labelled samples gives an empty stratified test set "
                                "(each class keeps at least one training sample)", subject=f"test_fraction={f}",
                                advice="use more samples, a larger test_fraction, or test_fraction=0")
    return np.sort(train).astype(np.int64), np.sort(test).astype(np.int64)


def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. byol_ref.backend.host.random.default_rng(0)), "
            f"got {type(rng).__name__}"
        )


def _split(x, y, test_fraction, seed, image_shape, name, label_names=None, what: str = "data") -> Dataset:
    """Split checked arrays ``x`` (N, D) and ``y`` (N,) or None into a Dataset (``what``: the file, for errors)."""
    rng = np.random.default_rng(seed)
    try:
        train, test = train_test_indices(x.shape[0], test_fraction, rng, labels=y)
    except ArgumentError as exc:  # (too few samples of each class for a test set: said without the file's name)
        raise exc.reworded(subject=f"{what}: {exc.subject}") from None
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    return Dataset(
        x_train=x[train], y_train=None if y is None else y[train],
        x_test=x[test], y_test=None if y is None else y[test],
        image_shape=image_shape, name=name, label_names=label_names,
    )


# --------------------------------------------------------------------------- digits


def load_digits() -> Dataset:
    """Load the embedded UCI optical handwritten digits (8x8 grey images, 10 classes).

    1797 images with pixel counts 0..16, stored as a fixed stratified 80/20 split
    (1438 train, 359 test; see ``byol_ref/datasets/README.md`` for source, license
    (CC BY 4.0) and the split rule). Pixels are returned as ``pixel / 16`` in [0, 1].

    Returns:
        Dataset with x_train (1438, 64), x_test (359, 64) float64 in [0, 1], y int64 in
        0..9, image_shape (8, 8), name ``"digits"``.

    References:
        Alpaydin, E. & Kaynak, C. (1998). Optical Recognition of Handwritten Digits.
        UCI Machine Learning Repository. https://doi.org/10.24432/C50P49
    """
    if not DIGITS_PATH.is_file():
        raise FileNotFoundError(
            f"embedded digits file not found at {DIGITS_PATH}; regenerate it with "
            "scripts/make_digits_npz.py"
        )
    with np.load(DIGITS_PATH, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    out = {}
    for split in ("train", "test"):
        xi, yi = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if xi.ndim != 3 or xi.shape[1:] != (8, 8) or yi.shape != (xi.shape[0],):
            raise ValueError(f"{DIGITS_PATH} is corrupt: x_{split} {xi.shape}, y_{split} {yi.shape}")
        # Pixel counts 0..16 (how many of a 4x4 block's 16 bitmap pixels were set) -> [0, 1].
        out[f"x_{split}"] = xi.reshape(xi.shape[0], 64).astype(np.float64) / 16.0
        out[f"y_{split}"] = yi.astype(np.int64)
    return Dataset(image_shape=(8, 8), name="digits", **out)


# --------------------------------------------------------------------------- user files


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _csv_rows(path, what: str) -> Iterator[tuple]:
    """The non-blank rows of a CSV file: (line number, stripped fields)."""
    # utf-8-sig: a byte-order mark (spreadsheets write one) is not part of the first field
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(_no_nul(fh, f"{what} {str(path)!r}"))
        last = 0  # (the line the last row ended on)
        try:
            for fields in reader:
                last = reader.line_num
                if all(not s.strip() for s in fields):
                    continue  # a blank line, or a spreadsheet's empty row (",,,")
                if any(("\n" in s or "\r" in s) and "," in s for s in fields):
                    raise ValueError(f"{what} {str(path)!r}: a field that ends on line {reader.line_num} spans "
                                     "several lines of comma-separated values: rows a stray quote swallowed")
                yield reader.line_num, [s.strip() for s in fields]
        except UnicodeDecodeError:
            raise ValueError(f"{what} {str(path)!r} {_not_utf8(path)}; save the CSV as UTF-8") from None
        except csv.Error as exc:
            if reader.line_num > last + 1:  # (a field over csv's size limit, open since a row above the one read)
                raise ValueError(f"{what} {str(path)!r}: a field that starts on line {last + 1} runs on to line "
                                 f"{reader.line_num}, past the {csv.field_size_limit()} characters a field may hold: "
                                 "rows a stray quote swallowed") from None
            raise ValueError(f"{what} {str(path)!r} is not a readable CSV table (line {reader.line_num}: "
                             f"{exc})") from None


def _not_utf8(path) -> str:
    """What is not UTF-8 in a file that does not decode: where its first bad byte is in the file
    (a decode error's offset counts from the start of the chunk being read), or that it is UTF-16."""
    data = Path(path).read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "is UTF-16 text (it starts with UTF-16's byte-order mark)"
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        line = data[:at].count(b"\n") + 1
        return f"is not UTF-8 text (byte {data[at]:#04x} at offset {at}, line {line})"
    return "is not UTF-8 text"  # (changed since it was read)


def _no_nul(lines, what: str) -> Iterator[str]:
    """``lines``, refusing one with a NUL character, as Python 3.10's csv module does (3.11's reads it
    into a field): the mark of UTF-16 text (every other byte a NUL) or of a file that is no text."""
    for number, line in enumerate(lines, 1):
        if "\x00" in line:
            raise ValueError(f"{what} holds a NUL character on line {number}: UTF-16 text, or no text at all? Save "
                             "the CSV as UTF-8")
        yield line


def csv_header_rule(path, labels=None) -> bool:
    """Whether the first row of a CSV file is a header by the plain rule ``load_file(header=None)``
    applies: a field of it is not a number, unless the one such field is a class name in the
    label column (``labels`` as load_file takes it) that comes again below in it. load_file also
    refuses a first row that may be either; a run records the answer, so that the run's data are
    read the same way later."""
    rows = _csv_rows(path, "file")  # (read on only as far as the rule needs)
    try:
        first = next(rows, None)
        return first is not None and _first_row_is_header(first[1], rows, label_column=labels) is not False
    finally:
        rows.close()  # (and so the file)


def _first_row_is_header(first: list, below, label_column) -> bool | None:
    """The header rule on a CSV file's first row (its fields) and the ``_csv_rows`` ``below`` it
    (an iterable, read only for a row of both numbers and other fields, up to the name found
    again): True when no field of the first row is a number, or ``label_column`` names one of
    them; False when all are numbers, or when the one field that is not is a class name in the
    label column (an index) that comes again below in it; None when it may be either (other
    mixes of numbers and other fields)."""
    numbers = [_is_number(s) for s in first]
    if all(numbers):
        return False
    if not any(numbers) or (isinstance(label_column, str) and not _is_number(label_column)
                            and label_column in first):  # (the labels name a field: a header)
        return True
    at = _label_field(label_column, None, len(first))
    named = [i for i, ok in enumerate(numbers) if not ok] == [at] and any(
        fields[at:at + 1] == [first[at]] for _, fields in below)
    return False if named else None


def _read_csv(path: Path, what: str, header=None, label_column=None, ask: bool = True, strict: bool = True,
              rows=None):
    """Read a numeric CSV table.

    Args:
        path: the file.
        what: how to name the file in errors.
        header: True/False, or None to detect (``_first_row_is_header``): a first row that may be
            either, or (with ``ask``) one that reads as column numbers (``_check_header_guess``),
            is refused: ``header`` must say.
        label_column: the ``labels`` argument: a column of class names there is read as ids.
        ask: refuse an ambiguous first row (a table; a label file has one column).
        strict: refuse an unnamed first column of row numbers (see ``load_file``).
        rows: the file's ``_csv_rows``, where the caller has read them already.

    Returns:
        (names, values, label_names): column names (list of str) or None; float64 array (R, K);
        and, when the label column holds class names, those names in sorted order, the column
        in ``values`` then holding each row's index among them (else None).
    """
    rows = list(_csv_rows(path, what)) if rows is None else rows
    if not rows:
        raise ValueError(f"{what} {str(path)!r} is empty (expected a numeric CSV table)")
    guessed = header is None
    if guessed:
        header = _first_row_is_header(rows[0][1], rows[1:], label_column)  # (csv_header_rule)
        if header is None:
            # A label index past the row's end is the mistake to name, not the header (unless the row has a
            # field of its digits: then header=True makes it a column's name).
            width = len(rows[0][1])
            at = None if label_column in rows[0][1] else _label_index(label_column)
            if at is not None:
                _column_in_range(at, width, f"{what} {str(path)!r}")
            shown = ",".join(rows[0][1][:6]) + (",..." if len(rows[0][1]) > 6 else "")
            raise ValueError(f"{what} {str(path)!r}: its first line ({shown}) mixes numbers and other fields: a "
                             "header with some numeric names, or a row of data with missing or bad values? Say "
                             "which: header=True or header=False (on the command line, --csv-header yes or no)")
    names = rows[0][1] if header else None
    data = rows[1:] if header else rows
    width = len(rows[0][1])
    for line, fields in data:
        if len(fields) != width:
            fields_word = "field" if len(fields) == 1 else "fields"
            raise ValueError(
                f"{what} {str(path)!r}: line {line} has {len(fields)} {fields_word}, expected {width} "
                "(like the first line)" + _separator_hint(rows[0][1] + fields)
            )
    at = _label_field(label_column, names, width)
    label_names = None
    if at is not None and not all(_is_number(fields[at]) for _, fields in data):  # class names: ids
        column = f"{what} {str(path)!r}: the label column{f' ({names[at]!r})' if names else ''}"
        ids, label_names = _names_as_ids([fields[at] for _, fields in data], column, lambda i: f"line {data[i][0]}")
        data = [(line, fields[:at] + [str(i)] + fields[at + 1:]) for (line, fields), i in zip(data, ids)]
    try:
        values = np.array([fields for _, fields in data], dtype=np.float64).reshape(len(data), width)
    except ValueError:
        # Slow path, only to say where the bad value is.
        for line, fields in data:
            for col, s in enumerate(fields):
                if not _is_number(s):
                    colname = f" ({names[col]!r})" if names else ""
                    raise ValueError(
                        f"{what} {str(path)!r}: non-numeric value {s!r} at line {line}, "
                        f"column {col}{colname}; expected numbers only"
                        + ("" if header else " (the first line was taken as data, not a header)")
                        + _separator_hint([s])
                        + (f"; if that column holds the classes, name it as the labels (labels={names[col]!r}, "
                           f"--labels {shlex.quote(names[col])})" if names and label_column is None and not
                           any(_is_number(f[col]) for _, f in data) else "")
                    ) from None
        raise
    if guessed and not header and ask:
        _check_header_guess(rows[0][1], values, f"{what} {str(path)!r}")
    if strict and names and names[0] == "" and len(values) > 1:
        _check_not_row_numbers(values[:, 0], f"{what} {str(path)!r}")
    return names, values, label_names


def _label_field(label_column, names, width: int) -> int | None:
    """The column of a CSV row that ``label_column`` (load_file's ``labels``) selects, as load_file
    reads it: a header's name first, else an index (negative from the end); None for a label file,
    no labels, or no such column (load_file says which)."""
    if isinstance(label_column, str) and names and label_column in names:
        return names.index(label_column)
    index = _label_index(label_column)  # (an int is an index even where a header has a column of its digits)
    return index % width if index is not None and -width <= index < width else None


def _label_index(label_column) -> int | None:
    """The column index ``label_column`` gives as typed, an int or digits (:func:`_is_int_text`), before any
    range check; None for a name, a label file's path, no labels, or more digits than any index has."""
    if isinstance(label_column, bool) or not isinstance(label_column, (int, str)):
        return None  # (None, or a label file's path)
    if isinstance(label_column, str):
        return _index_of_text(label_column) if _is_int_text(label_column) else None
    return label_column


def _class_names_as_ids(y, what: str) -> tuple:
    """Labels that are class names (a str array: an .npy, .npz or a pre-split .npz of them) as ids
    0..K-1 in the names' sorted order, and the names; numeric labels as :func:`_as_labels` checks
    them, and None."""
    y = np.asarray(y)
    if y.dtype.kind not in "US":
        return _as_labels(y, what), None
    _check_names_have_characters(y, what)
    if y.dtype.kind == "S":
        try:
            y = np.char.decode(y, "utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{what} holds class names that are not UTF-8 text") from None
    elif y.dtype.itemsize and y.size and _character_codes(y).max() > 0x10FFFF:
        # (NumPy reads any 4 bytes as a character: a corrupt file's names became strs Python cannot print or sort)
        raise ValueError(f"{what} holds class names that are not Unicode text (a character code above U+10FFFF): "
                         "it is corrupt, or not written by NumPy")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D class names or ids (N,), got shape {y.shape}")
    y = np.char.strip(y).tolist()
    if y and all(_is_number(v) for v in y):  # ids written as text
        return _as_labels(np.array(y, dtype=np.float64), what), None
    return _names_as_ids(y, what, lambda i: f"index {i}")


def _character_codes(y):
    """The code of every character of a str array (dtype U), as uint32 in the machine's byte order: a
    big-endian file's 'a' is 0x61, not the 0x61000000 a plain view of its bytes reads."""
    return np.ascontiguousarray(y, dtype=y.dtype.newbyteorder("=")).reshape(-1).view(np.uint32)


def _check_names_have_characters(y, what: str) -> None:
    """Refuse class names of no characters at all (dtype <U0 or |S0), however many: an .npy of them holds no data
    whatever count its header claims, and reading them one by one took seconds and gigabytes for a file of 128
    bytes (every one is an empty class name, refused after that)."""
    if y.dtype.itemsize == 0 and y.size:
        raise ValueError(f"{what} holds {y.size} class names of no characters (dtype {y.dtype}, shape {y.shape}); "
                         "every sample needs its class")


def _names_as_ids(values: list, what: str, where) -> tuple:
    """Class names (a list of str, one per sample) as ids 0..K-1 in the names' sorted order (int64),
    and the names; an empty name, or names mixed with numbers, is refused, ``where(i)`` saying where
    the i-th value is ("line 7" of a CSV, "index 6" of an array)."""
    empty = next((i for i, v in enumerate(values) if not v), None)
    if empty is not None:
        raise ValueError(f"{what} has an empty class name at {where(empty)}; every sample needs its class")
    number = next((i for i, v in enumerate(values) if _is_number(v)), None)
    if number is not None:  # ("NA" among ids is a missing label, not a class of its own)
        word = next(i for i, v in enumerate(values) if not _is_number(v))
        raise ValueError(f"{what} holds both numbers ({values[number]!r} at {where(number)}) and other values "
                         f"({values[word]!r} at {where(word)}); expected class ids or class names, not both (a "
                         "missing label?)")
    names, ids = np.unique(np.array(values, dtype=str), return_inverse=True)
    return ids.reshape(-1).astype(np.int64), tuple(str(n) for n in names)


_LABEL_NAMES = ("label", "labels", "target", "targets", "class", "classes", "y")


def _warn_of_a_label_column(names, what: str) -> None:
    """Warn when a header names a column like labels and none were asked for: it is trained on as
    a feature (the labels leak into the inputs), and the run has nothing to probe."""
    for i, name in enumerate(names):
        if name.strip().lower() in _LABEL_NAMES:
            warn(f"{what}: column {i} ({name!r}) is named like labels, but no labels were asked for, so it "
                 f"is read as a feature; if it holds the class ids, pass labels={name!r} (on the command "
                 f"line, --labels {name})")
            return


def _separator_hint(fields) -> str:
    """What to add to an error about CSV fields in which tabs or semicolons separate the values."""
    seps = [name for sep, name in (("\t", "tabs"), (";", "semicolons")) if any(sep in s for s in fields)]
    if not seps:
        return ""
    return (f"; its values look separated by {seps[0]}, and byol-ref reads comma-separated ones (where a decimal "
            "comma splits a number in two): save the table with commas between values and points in numbers")


def _whole_number_key(digits: str) -> tuple:
    """A string of ASCII digits as a key that orders and compares as its number does, however long: the
    longer number (leading zeros aside) is the larger (int() refuses more than 4300 digits, and said so alone)."""
    digits = digits.lstrip("0")
    return len(digits), digits


def _check_header_guess(first: list, values, what: str) -> None:
    """Refuse a first row of numbers that reads as column numbers: the header pandas writes for a
    table without column names (``0,1,...,K-1``, or what is left of it after dropping or
    concatenating columns: plain whole numbers in rising runs, each new run from 0); it is
    taken for one when it is exactly ``0..K-1`` (K >= 3) or the rows below hold fractions. A
    table of whole numbers whose first row is other whole numbers is data, as ever."""
    if not all(s.isascii() and s.isdigit() for s in first):
        return
    numbers = [_whole_number_key(s) for s in first]
    # pandas' column numbers, after columns are dropped or tables put side by side: rising runs,
    # each new one from 0
    if not all(b > a or b == _whole_number_key("0") for a, b in zip(numbers, numbers[1:])):
        return
    body = values[1:][np.isfinite(values[1:])]  # (a NaN below is another error, said later)
    counted = [_whole_number_key(str(i)) for i in range(len(numbers))]  # 0, 1, ..., K-1
    if (len(numbers) >= 3 and numbers == counted) or np.any(body != np.trunc(body)):
        shown = ",".join(first[:6]) + (",..." if len(first) > 6 else "")
        raise ValueError(f"{what}: is its first line ({shown}) a header of column numbers, as pandas writes for a "
                         "table without column names, or a row of data? Say which: header=True or header=False "
                         "(on the command line, --csv-header yes or no)")


def _check_not_row_numbers(column, what: str) -> None:
    """Refuse an unnamed first column of distinct whole numbers: the row numbers that pandas'
    ``to_csv`` (index) and R's ``write.csv`` (row names) write first, which are no feature."""
    if np.all(np.isfinite(column) & (column == np.trunc(column))) and len(np.unique(column)) == len(column):
        raise ValueError(f"{what}: its first column has no name and holds {len(column)} distinct whole numbers "
                         f"({column.min():.0f} to {column.max():.0f}): row numbers, as pandas' to_csv writes without "
                         "index=False and R's write.csv without row.names=FALSE; they are no feature. Write the "
                         "file without them, or delete that column")


#: Image files, which byol-ref does not decode (that takes an image library): named as such, with what to do.
_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def image_files_hint(path) -> str:
    """How to give byol-ref images, as the end of an error message ("; byol-ref reads no image files:
    ..."), where ``path`` is an image file or a folder with image files in it; "" otherwise. (The
    message was only "path must end in .npy, .npz or .csv", or "is a directory".)

    >>> image_files_hint("cat.png")[:35], image_files_hint("table.csv")
    ('; byol-ref reads no image files: st', '')
    """
    p = Path(path)
    images = p.suffix.lower() in _IMAGE_SUFFIXES
    if not images and p.is_dir():
        try:
            with os.scandir(p) as entries:  # (the first 1000 names: a folder of a million files is not read through)
                images = any(Path(e.name).suffix.lower() in _IMAGE_SUFFIXES for e in itertools.islice(entries, 1000))
        except OSError:
            pass
    return ("; byol-ref reads no image files: stack the images into one array of shape (N, H, W) or (N, C, H, W) "
            "and save it as an .npy (numpy.save), 8-bit pixels as uint8" if images else "")


def _check_path(path, arg: str, expected: str = "a data file") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{arg} must be a str or os.PathLike, got {type(path).__name__}")
    if not os.fspath(path):  # (Path('') is Path('.'): "'.' is a directory" sent the user looking there)
        raise FileNotFoundError(f"{arg}: the path is empty (''); expected {expected}")
    p = Path(path)
    # (a FIFO, /dev/null, a link to nothing is named: "no such file" sent the user looking for it)
    found = not_a_file(p, missing=None)
    if found:
        raise FileNotFoundError(f"{arg}: {str(p)!r} {found}; expected {expected}{image_files_hint(p)}")
    if not p.is_file():
        raise FileNotFoundError(f"{arg}: no such file: {str(p)!r}")
    return p


def _check_npy_size(path: Path, what: str) -> None:
    """Refuse an .npy whose header claims other than the data the file holds (more: before anything is
    allocated, as a corrupt header could claim terabytes; less: bytes np.load would quietly leave)."""
    with open(path, "rb") as fh:
        try:
            problem = npy_size_problem(fh, os.fstat(fh.fileno()).st_size)
        except (ValueError, EOFError, OSError, SyntaxError, tokenize.TokenError, TypeError) as exc:  # (the last 3:
            raise ValueError(f"{what} {str(path)!r} is truncated or corrupt (its .npy header: "  # a mangled header)
                             f"{first_line(exc)})") from None
    if problem:
        raise ValueError(f"{what} {str(path)!r} is corrupt or cut short: {problem}")


def _load_npy(path: Path, what: str):
    head = file_head(path)
    if head != NPY_MAGIC:
        found = ("it is empty (0 bytes)" if not head else
                 "it is an .npz archive; rename it to .npz" if head.startswith(ZIP_MAGIC) else
                 "it does not start with the .npy header that numpy.save writes")
        raise ValueError(f"{what} {str(path)!r} is not an .npy file: {found}")
    _check_npy_size(path, what)
    with numpy_read_errors(f"{what} {str(path)!r}"), python2_named(path, f"{what} {str(path)!r}"):
        return native_order(np.load(path, allow_pickle=False))  # (another machine's file: >f8)


def _check_numeric(a, what: str):
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{what} must be numeric, got dtype {a.dtype}")
    return a


def _as_labels(y, what: str):
    """Check class ids: integer-valued, >= 0, shape (N,) (or (N, 1)); return int64 (N,)."""
    y = _check_numeric(y, what)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{what} must be 1-D class ids (N,), got shape {y.shape}")
    if y.dtype.kind == "f":
        check_finite(y, what)
        if not np.all(y == np.round(y)):
            i = int(np.flatnonzero(y != np.round(y))[0])
            raise ValueError(f"{what} must be integer class ids, got {y[i].item()!r} at index {i}")
    if y.size and y.min() < 0:
        i = int(np.argmin(y))
        raise ValueError(
            f"{what} must be class ids >= 0, got {y[i].item()} at index {i}; remap classes to 0..K-1"
        )
    if y.size and y.max() >= 2**31:
        i = int(np.argmax(y))
        raise ValueError(f"{what} must be class ids below 2**31, got {y[i].item()} at index {i}; remap classes to "
                         "0..K-1")
    return y.astype(np.int64)


def _fold_features(x, image_shape, what: str, warn_layout: bool = True):
    """Turn (N, D), (N, H, W) or (N, C, H, W) into float64 (N, D) and an image shape (warn_layout: warn of
    images that look channels last)."""
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{what} must be a feature matrix (N, D), images (N, H, W) or (N, C, H, W); "
            f"got shape {x.shape}"
        )
    if image_shape is not None:
        image_shape = check_image_shape(image_shape)
        if x.ndim > 2 and tuple(x.shape[1:]) != image_shape:
            raise ArgumentError("image_shape", f"does not match {what} of shape {x.shape}",
                                subject=f"image_shape={image_shape}")
        if x.ndim == 2 and math.prod(image_shape) != x.shape[1]:
            raise ArgumentError("image_shape", f"has {math.prod(image_shape)} pixels but the rows of {what} "
                                f"hold D={x.shape[1]} values", subject=f"image_shape={image_shape}")
    elif x.ndim > 2:
        image_shape = tuple(int(s) for s in x.shape[1:])
    if warn_layout and x.ndim == 4 and x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        # Channels first is the one layout read (as torch stores images); PIL, TF and matplotlib store them
        # channels last, which would be read as C = H channels of H x C images: crops and blurs along the wrong axes.
        n, c, h, w = x.shape
        warn(f"{what} of shape {x.shape} are read as (N, C, H, W): {c} channels of {h}x{w} images. If "
             f"they are channels last, (N, H, W, C) = {c}x{h} images with {w} channels, save them as "
             "x.transpose(0, 3, 1, 2)")
    if math.prod(x.shape[1:]) == 0:
        raise ValueError(f"{what}: zero width, shape {x.shape}; expected at least one value per sample")
    check_finite(x, what)
    with np.errstate(over="ignore"):  # (a longdouble beyond float64's range becomes inf: refused just below)
        x64 = x.astype(np.float64)
    bad = ~np.isfinite(x64) if x.dtype.itemsize > 8 else None  # (no other dtype holds a value float64 cannot)
    if bad is not None and bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} has {int(bad.sum())} value(s) beyond float64's range (magnitude above 1.8e308), "
                         f"the first at index {first}; byol-ref computes in float64 at most")
    # (the width is spelled out: reshape(N, -1) cannot infer it when N is 0, an empty test split)
    return x64.reshape(x.shape[0], math.prod(x.shape[1:])), image_shape


def pixel_full_scale(images) -> int | None:
    """What images stored as ``images`` (an array of them as saved, or a list of such arrays: a
    file's splits) are divided by as they are read: 255 for 8-bit and 65535 for 16-bit pixels
    (uint8, uint16; as torchvision's ``ToTensor`` and scikit-image's ``img_as_float`` read them),
    where all are of that one type and a value exceeds 1; else None. (Images of 0s and 1s only,
    masks, are read as they are, as they always were: the image augmentations take pixels in
    [0, 1], and pixels above 1 were refused until then.)

    >>> pixel_full_scale(np.array([[0, 128, 255]], dtype=np.uint8)), pixel_full_scale([np.eye(2, dtype=np.uint8)])
    (255, None)
    """
    images = [np.asarray(a) for a in ([images] if hasattr(images, "dtype") else images)]
    kinds = {(a.dtype.kind, a.dtype.itemsize) for a in images}  # (either byte order)
    if len(kinds) != 1 or kinds.pop() not in (("u", 1), ("u", 2)):
        return None
    return 2 ** (8 * images[0].dtype.itemsize) - 1 if any(a.size and a.max() > 1 for a in images) else None


def _check_scale(scale_pixels):
    """``load_file``'s ``scale_pixels`` as a bool (by the pixels' type) or a full scale > 0 (a float)."""
    if isinstance(scale_pixels, (bool, np.bool_)):
        return bool(scale_pixels)
    if not isinstance(scale_pixels, numbers.Real):
        raise TypeError(f"scale_pixels must be True, False or a full scale (a number > 0), got {scale_pixels!r} "
                        f"({type(scale_pixels).__name__})")
    return check_real(scale_pixels, "scale_pixels", lo=0, lo_open=True)


def _full_scale_of(stored, image_shape, scale_pixels):
    """What a file's features ``stored`` (its arrays as saved) are divided by as they are read: a full
    scale given (any values, images or not), or by the type of images (:func:`pixel_full_scale`);
    None for as stored. An integral full scale is an int (``255``, as config.json records it)."""
    if scale_pixels is True:
        return pixel_full_scale(stored) if image_shape else None
    if scale_pixels is False:
        return None
    return int(scale_pixels) if float(scale_pixels).is_integer() else scale_pixels


def _column_index(labels, names, ncols: int, what: str, strict: bool) -> int:
    if isinstance(labels, str):
        if names is None:
            raise ValueError(f"labels={labels!r} names a column, but {what} has no header row"
                             + _not_a_label_file(labels))
        if labels not in names:
            raise ValueError(f"labels={labels!r} is not a column of {what}; columns are {names}"
                             + _not_a_label_file(labels))
        if strict and names.count(labels) > 1:
            at = [i for i, n in enumerate(names) if n == labels]
            raise ValueError(f"labels={labels!r} names {len(at)} columns of {what} (columns {at}); pass the index "
                             "of the one that holds the labels")
        return names.index(labels)
    return _column_in_range(labels, ncols, what)


def _column_in_range(index: int, ncols: int, what: str) -> int:
    """A label column index of a table of ``ncols`` columns as one from the start (-1: the last), or the
    error for one past either end."""
    if not -ncols <= index < ncols:
        raise ValueError(f"labels column index {index} is out of range for {ncols} columns in {what}")
    return index % ncols


_LABEL_FILE = ".npy, .npz, .csv or .txt, one class id per row"  # (what a label file is, for messages)


def _not_a_label_file(labels: str) -> str:
    """The end of a "not a column" message for a ``labels`` meant as a file that is no label file
    (a folder, an .npz, a name without an extension that stands on disk): say what a label file is."""
    if not labels.strip():  # (Path("") is the working folder, which was called "a directory")
        return f"; a blank name is no label file either ({_LABEL_FILE})"
    p = Path(labels)
    if p.is_dir():
        return f"; it is a directory, not a label file ({_LABEL_FILE})"
    if p.suffix or p.exists() or odd_entry(p):
        return "; a label file ends in .npy, .npz, .csv or .txt (one class id per row)"
    return ""


def _labels_from_file(path, n: int) -> tuple:
    """(class ids (n,), the class names in id order or None) of a label file."""
    p = _check_path(path, "labels", f"a label file ({_LABEL_FILE})")
    ext = p.suffix.lower()
    what = f"labels file {str(p)!r}"
    if ext == ".npy":
        y, label_names = _class_names_as_ids(_load_npy(p, "labels file"), what)
    elif ext == ".npz":  # (np.savez("y.npz", y=y): one array, whatever its name)
        arrays = read_npz(p, what)
        if len(arrays) != 1:
            raise ValueError(f"{what} must hold one array of class ids, got {len(arrays)}: {sorted(arrays)}")
        y, label_names = _class_names_as_ids(*arrays.values(), what)
    elif ext in (".csv", ".txt"):
        # A first row that is no number is a header ("class"), unless it is a class name of its own: one
        # row per sample, and the name comes again below ("setosa" in a file of names with no header).
        rows = list(_csv_rows(p, "labels file"))
        first = rows[0][1][0] if rows else None  # (a row holds a field: _csv_rows skips blank ones)
        named = len(rows) == n and first is not None and not _is_number(first) and any(
            fields[:1] == [first] for _, fields in rows[1:])
        _, y, label_names = _read_csv(p, "labels file", header=False if named else None, label_column=0, ask=False,
                                      rows=rows)
        if y.shape[1] != 1:
            raise ValueError(f"{what} must have one column of class ids or names, got {y.shape[1]} columns")
        y = _as_labels(y, what)
    else:
        raise ValueError(f"labels file must end in .npy, .npz, .csv or .txt, got {str(p)!r}")
    if y.shape[0] != n:
        raise ValueError(f"{what} has {y.shape[0]} labels but the features have {n} samples")
    return y, label_names


def _is_int_text(s: str) -> bool:
    """A column index as typed: ASCII digits with one optional sign (``str.isdigit`` also takes
    superscripts, which ``int`` refuses)."""
    return re.fullmatch(r"[+-]?[0-9]+", s.strip()) is not None


def _index_of_text(s: str) -> int | None:
    """The column index that ``s`` (digits, as :func:`_is_int_text` takes them) gives, or None where
    it has more than 18 digits: no table has 10**18 columns, and ``int`` refuses more than 4300."""
    return int(s) if len(s.strip().lstrip("+-").lstrip("0")) <= 18 else None


def labels_file(labels, path, header=None) -> Path | None:
    """The labels file that :func:`load_file` reads for ``labels`` with the data file ``path``,
    or None when ``labels`` is a column (or None): a ``.npy``/``.npz``/``.csv``/``.txt`` name is a file
    unless the CSV's header names a column so (``header`` as ``load_file`` takes it)."""
    names = None
    if isinstance(labels, str) and header is not False and Path(path).suffix.lower() in (".csv", ".txt"):
        first = next(_csv_rows(path, "file"), None)  # (the header, when there is one)
        names = None if first is None else first[1]
    return Path(labels) if _is_label_path(labels, names) else None


def _is_label_path(labels, names) -> bool:
    if isinstance(labels, os.PathLike):
        return True
    return isinstance(labels, str) and (names is None or labels not in names) and (
        Path(labels).suffix.lower() in (".npy", ".npz", ".csv", ".txt")
    )


def load_file(
    path: PathLike,
    labels=None,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_shape=None,
    header: Optional[bool] = None,
    strict: bool = True,
    scale_pixels: Union[bool, float] = False,
) -> Dataset:
    """Load a user data set from a .npy, .npz or .csv file and split it.

    Accepted layouts:

    * ``.npy``: a feature matrix (N, D), or images (N, H, W) / (N, C, H, W), which are
      flattened and set ``image_shape``.
    * ``.npz``: keys ``x`` (and optionally ``y``), split here; or ``x_train``, ``x_test``
      (and optionally ``y_train``, ``y_test``), used as given (``test_fraction`` ignored).
    * ``.csv``: a numeric table, one sample per row. The first row is a header when none
      of its fields is a number or ``labels`` names one of them, data when all are numbers or
      the one other field is a class name in the ``labels`` column that comes again below (or as
      ``header`` says). Any other first row of both, or one that reads as the column numbers
      pandas writes as a header
      (``0,1,...,K-1``, or whole numbers above rows of fractions), must be declared either
      way; an unnamed first column of distinct whole numbers (the row numbers pandas and R
      write) is refused.

    ``labels`` selects class ids:

    * ``None``: unlabelled (or ``y`` keys of an .npz);
    * ``str``: a column name of a CSV with a header; an integer in text (``"6"``, as a
      command line passes it) is a column index unless the header has a column of that name;
    * ``int``: a column index of a CSV or a 2-D .npy table (negative counts from the end);
      that column is removed from the features;
    * a path (``os.PathLike``, or a str ending in .npy/.npz/.csv/.txt that is not a column
      name): a separate label file with one class id per sample (an .npz holds one array).

    Labels are integer class ids >= 0, or class names (strings: a CSV column or label file of
    them, an .npy/.npz of str), which are read as ids 0..K-1 in the names' sorted order (both
    splits of a pre-split .npz at once) and kept in the Dataset's ``label_names``. Features are
    converted to float64 and must be finite. With ``scale_pixels``, images stored as 8-bit or
    16-bit pixels (uint8, uint16, in an .npy or .npz) are divided by their full scale, 255 or
    65535, into [0, 1], where the image augmentations take them (as torchvision's ``ToTensor``
    reads 8-bit pixels; the command line reads files so); the Dataset's ``full_scale`` records
    it. Images of 0s and 1s only are read as they are, and so are feature tables (no image
    shape), whatever their type. With labels the split is stratified,
    otherwise random (see :func:`train_test_indices`), drawn from ``numpy.random.default_rng(seed)``.

    Args:
        path: the data file.
        labels: see above.
        test_fraction: fraction in [0, 1) held out for testing.
        seed: seed of the split.
        image_shape: (H, W) or (C, H, W) to declare that the D columns of a 2-D table are
            flattened images (H * W or C * H * W must equal D); checked against 3-D/4-D arrays.
        header: force (True) or forbid (False) a CSV header row; None detects it (CSV only).
        strict: False reads a file as byol-ref did before it refused these: keys of an .npz
            outside its layout (ignored), an unnamed first column of distinct whole numbers
            (kept as a feature), a label column name given twice (the first). A run's own
            data, recorded before, must read as they did when it trained.
        scale_pixels: True: divide 8-bit or 16-bit images by their full scale (see above); a
            number > 0: divide every value by it, the full scale of pixels that no type tells
            (a CSV's: 255 for 8-bit pixels written as text, 16 for the UCI digits' counts).
            Off by default, as it was before there was such an option: code that divides the
            pixels it gets itself goes on getting them as stored.

    Returns:
        Dataset with x float64 (N, D), y int64 (N,) or None, named after the file stem.

    Raises:
        FileNotFoundError: ``path`` (or a label file) is no regular file: it does not exist,
            or is a folder, a pipe or a link to nothing.
        ValueError: unknown extension, wrong rank, non-numeric or non-finite values,
            label count mismatch, fewer than 2 samples, bad split settings.
        TypeError: ``labels`` or ``path`` of the wrong type.
    """
    p = _check_path(path, "path")
    ext = p.suffix.lower()
    what = f"file {str(p)!r}"
    if isinstance(labels, np.integer):  # (a column index from a NumPy computation: np.argmax, say)
        labels = int(labels)
    if labels is not None and (isinstance(labels, bool) or not isinstance(labels, (str, int, os.PathLike))):
        raise TypeError(
            f"labels must be None, a column name (str), a column index (int) or a label file path, "
            f"got {type(labels).__name__}"
        )
    _check_fraction(test_fraction)
    seed = check_seed(seed, "seed (of the train/test split)")
    if header is not None and not isinstance(header, bool):
        raise TypeError(f"header must be True, False or None (detect), got {header!r}")
    scale_pixels = _check_scale(scale_pixels)
    if header is not None and ext not in (".csv", ".txt"):
        raise ValueError(f"header={header} applies to a CSV table, but {what} is a {ext or 'extension-less'} file; "
                         "leave header=None")

    if ext == ".npz":
        arrays = read_npz(p, what)
        keys = set(arrays)
        layout = {"x_train", "x_test", "y_train", "y_test"} if {"x_train", "x_test"} & keys else {"x", "y"}
        if (strict and keys - layout) or not {"x", "x_train", "x_test"} & keys:  # (labels elsewhere: lost)
            raise ValueError(f"{what} must hold x (and y), or x_train and x_test (and y_train and y_test), and "
                             f"nothing else; got {sorted(keys)}")
        if "x_train" in keys or "x_test" in keys:
            return _load_presplit(arrays, labels, image_shape, what, p.stem, scale_pixels)
        x = _check_numeric(arrays["x"], f"x in {what}")
        y = arrays.get("y")
        if y is not None and labels is not None:
            raise ValueError(f"{what} already holds its labels under 'y'; do not pass labels (--labels) as well")
        if labels is not None and not _is_label_path(labels, None):
            raise ValueError(f"labels for an .npz file must be a label file path, got {labels!r}")
        names = label_names = None
    elif ext == ".npy":
        x = _check_numeric(_load_npy(p, "file"), what)
        y, names, label_names = None, None, None
    elif ext in (".csv", ".txt"):
        names, x, label_names = _read_csv(p, "file", header=header, label_column=labels, strict=strict)
        y = None
    else:
        raise ValueError(f"path must end in .npy, .npz or .csv, got {str(p)!r}{image_files_hint(p)}")

    # "6" from a command line is column 6, unless a header names a column "6".
    if isinstance(labels, str) and _is_int_text(labels) and (names is None or labels not in names):
        index = _index_of_text(labels)
        if index is None:
            raise ValueError(f"labels column index {labels.strip()[:12]}... ({len(labels.strip())} characters) is out "
                             f"of range for {x.shape[1]} columns in {what}")
        labels = index
    # Labels from a column of the table.
    if labels is not None and not _is_label_path(labels, names):
        if x.ndim != 2:
            raise ValueError(
                f"labels={labels!r} selects a column, which needs a 2-D table, but {what} has shape {x.shape}"
            )
        col = _column_index(labels, names, x.shape[1], what, strict)
        y = x[:, col]
        x = np.delete(x, col, axis=1)
        if x.shape[1] == 0:
            raise ValueError(f"{what} has no feature columns left after taking labels from column {col}")
        y = _as_labels(y, f"labels column {col} of {what}")
    elif labels is None and names:
        _warn_of_a_label_column(names, what)

    if x.ndim < 1 or x.shape[0] < 2:
        raise ValueError(f"{what} must hold at least 2 samples, got shape {x.shape}")
    stored = x
    x, image_shape = _fold_features(x, image_shape, f"features in {what}")
    full_scale = _full_scale_of([stored], image_shape, scale_pixels)
    if full_scale is not None:
        x /= full_scale
    n = x.shape[0]
    if labels is not None and _is_label_path(labels, names):
        y, label_names = _labels_from_file(labels, n)
    elif y is not None and label_names is None:  # (a column checked above, or an .npz's y)
        y, label_names = _class_names_as_ids(y, f"labels in {what}")
    if y is not None and y.shape[0] != n:
        raise ValueError(f"{what}: {y.shape[0]} labels but {n} samples")
    return _split(x, y, test_fraction, seed, image_shape, p.stem, label_names, what)._replace(full_scale=full_scale)


def _load_presplit(arrays, labels, image_shape, what, name, scale_pixels: bool) -> Dataset:
    """The x_train/y_train/x_test/y_test layout of an .npz file."""
    for k in ("x_train", "x_test"):
        if k not in arrays:
            raise ValueError(f"{what} holds x_train/x_test layout but lacks {k!r}")
    if labels is not None:
        raise ValueError(
            f"{what} is already split (x_train/x_test keys); labels must come from "
            f"y_train/y_test, got labels={labels!r}"
        )
    has_y = ("y_train" in arrays, "y_test" in arrays)
    if has_y[0] != has_y[1]:
        held, lacked = ("y_train", "y_test") if has_y[0] else ("y_test", "y_train")
        raise ValueError(f"{what} holds {held} but no {lacked}; it must hold both y_train and y_test or neither")
    out, stored = {}, []
    shape = image_shape
    label_names = None
    if has_y[0] and any(np.asarray(arrays[f"y_{split}"]).dtype.kind in "US" for split in ("train", "test")):
        # class names: ids from the names of both splits at once (a class missing from one split must
        # not shift the other's ids)
        ys = [np.asarray(arrays[f"y_{split}"]) for split in ("train", "test")]
        if any(y.dtype.kind not in "US" for y in ys):
            raise ValueError(f"{what}: one of y_train and y_test holds class names and the other numbers; both must "
                             "hold names, or both class ids")
        for split, y in zip(("train", "test"), ys):  # (before both are put together, in the wider dtype)
            _check_names_have_characters(y, f"y_{split} in {what}")
        ys = [y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y for y in ys]
        if any(y.ndim != 1 for y in ys):
            raise ValueError(f"{what}: y_train and y_test must be 1-D class names or ids, got shapes "
                             f"{ys[0].shape} and {ys[1].shape}")
        joint, label_names = _class_names_as_ids(np.concatenate(ys), f"y_train and y_test in {what}")
        arrays = {**arrays, "y_train": joint[:len(ys[0])], "y_test": joint[len(ys[0]):]}
    for split in ("train", "test"):
        x = _check_numeric(arrays[f"x_{split}"], f"x_{split} in {what}")
        if split == "train" and (x.ndim < 1 or x.shape[0] < 2):  # (an x_test of no samples is an empty split)
            raise ValueError(f"x_train in {what} must hold at least 2 samples, got shape {x.shape}")
        stored.append(x)
        x, s = _fold_features(x, image_shape, f"x_{split} in {what}", warn_layout=split == "train")  # (once)
        if split == "test" and s != shape:
            raise ValueError(f"x_train and x_test in {what} have different image shapes: {shape} vs {s}")
        shape = s
        y = None
        if has_y[0]:
            y = _as_labels(arrays[f"y_{split}"], f"y_{split} in {what}")
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"{what}: y_{split} has {y.shape[0]} labels but x_{split} has {x.shape[0]} samples")
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    if out["x_train"].shape[1] != out["x_test"].shape[1]:
        raise ValueError(
            f"x_train and x_test in {what} have different feature counts: "
            f"{out['x_train'].shape[1]} vs {out['x_test'].shape[1]}"
        )
    full_scale = _full_scale_of(stored, shape, scale_pixels)  # (both splits or neither)
    if full_scale is not None:
        out["x_train"] /= full_scale
        out["x_test"] /= full_scale
    if out["y_train"] is not None:
        unseen = np.setdiff1d(out["y_test"], out["y_train"])
        if unseen.size:  # (the report showed their test samples as errors, with no word of why)
            shown = [label_names[i] for i in unseen[:8]] if label_names else unseen[:8].tolist()
            warn(f"y_test in {what} holds class(es) {shown} that y_train lacks: no probe fit "
                 f"on y_train predicts them, so their {int(np.isin(out['y_test'], unseen).sum())} test "
                 "sample(s) count as errors")
    return Dataset(image_shape=shape, name=name, label_names=label_names, full_scale=full_scale, **out)


# --------------------------------------------------------------------------- synthetic


def synthetic(
    n: int = 512,
    dim: int = 32,
    n_classes: int = 4,
    *,
    latent_dim: int = 4,
    noise: float = 0.1,
    seed: int = 0,
    test_fraction: float = 0.2,
) -> Dataset:
    """A labelled synthetic set: Gaussian classes in a latent subspace, plus noise.

    Generative model: class means ``mu_c ~ N(0, 2^2 I)`` in R^latent_dim; a sample of class
    ``c`` is ``z = mu_c + N(0, I)`` (classes overlap a little), mapped to R^dim by a fixed
    random map with orthonormal rows (so latent distances are kept), plus isotropic noise
    ``noise * N(0, I)`` in all ``dim`` directions. Classes are balanced (``n % n_classes``
    classes get one extra sample) and the split is stratified.

    Args:
        n: number of samples (>= 2).
        dim: feature dimension D (>= latent_dim).
        n_classes: number of classes K (>= 1).
        latent_dim: dimension of the class subspace.
        noise: standard deviation of the additive feature noise (>= 0).
        seed: everything (means, map, samples, split) is drawn from ``default_rng(seed)``.
        test_fraction: fraction held out, as in :func:`train_test_indices`.

    Returns:
        Dataset with x float64 (N, D), y int64 in 0..K-1, image_shape None, name ``"synthetic"``.
    """
    for arg, v, lo in (("n", n, 2), ("dim", dim, 1), ("n_classes", n_classes, 1), ("latent_dim", latent_dim, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{arg} must be an integer >= {lo}, got {v!r}")
    if latent_dim > dim:
        raise ValueError(f"latent_dim must be <= dim, got latent_dim={latent_dim}, dim={dim}")
    noise = check_real(noise, "noise", lo=0)
    rng = np.random.default_rng(check_seed(seed))
    means = 2.0 * rng.standard_normal((n_classes, latent_dim))  # (K, L)
    # Orthonormal rows: Q of a QR factorisation of a Gaussian (D, L) matrix, transposed.
    q, _ = np.linalg.qr(rng.standard_normal((dim, latent_dim)))  # (D, L)
    y = rng.permutation(np.arange(n) % n_classes).astype(np.int64)  # (N,)
    z = means[y] + rng.standard_normal((n, latent_dim))  # (N, L)
    x = z @ q.T + noise * rng.standard_normal((n, dim))  # (N, D)
    train, test = train_test_indices(n, test_fraction, rng, labels=y)
    return Dataset(x[train], y[train], x[test], y[test], None, "synthetic")


# --------------------------------------------------------------------------- standardize


def feature_stats(x_train, *, eps: float = 1e-8):
    """Per-feature mean and standard deviation of the training features.

    Constant features (std < eps, e.g. the always-blank corner pixels of the digits) get
    std 1 instead: dividing by ~0 would send any test value that differs from the
    training constant to ~1e8. Such a feature is then only centred.

    Args:
        x_train: features, shape (N, D).
        eps: threshold below which a std counts as zero.

    Returns:
        (mean, std): float64 arrays, shape (D,). The std is the biased (population) one.

    Raises:
        ValueError: x_train not (N, D), not finite, or so large that its mean or std overflows.
    """
    eps = check_real(eps, "eps", lo=0)
    x = _as_features(x_train, "x_train")
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x_train must have shape (N, D) with N >= 1, got {x.shape}")
    check_finite(x, "x_train")
    mean, std = column_mean_std(x, "x_train", "data")  # (D,) each; the std biased: divide by N
    std = np.where(std <= eps, 1.0, std)  # (<=: with eps = 0 a constant feature's 0 is replaced too)
    return mean, std


def standardize(x, mean, std):
    """Return ``(x - mean) / std`` (a new float64 array), shape (N, D); ``mean`` and ``std`` are
    the (D,) statistics of :func:`feature_stats` (``std`` > 0 and finite)."""
    x = _as_features(x, "x")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (N, D), got {x.shape}")
    check_finite(x, "x")  # (NaN or inf would come back standardised, as NaN, without a word)
    stats = {"mean": _as_features(mean, "mean"), "std": _as_features(std, "std")}
    for name, a in stats.items():
        if a.shape not in ((), (x.shape[1],)):
            raise ValueError(f"{name} must have shape ({x.shape[1]},), one value per feature of x {x.shape} (or "
                             f"one for all), got {a.shape}")
        check_finite(a, name)
    if np.any(stats["std"] <= 0):
        raise ValueError(f"std must be > 0 (feature_stats sets a constant feature's to 1), got "
                         f"{stats['std'][stats['std'] <= 0][:4]} at features "
                         f"{np.flatnonzero(stats['std'] <= 0)[:4].tolist()}")
    return (x - stats["mean"]) / stats["std"]


def _as_features(a, name: str):
    """``a`` as a float64 host array, or a TypeError naming it (a str, None or object array; a
    masked array with values masked, :func:`checks.odd_array`)."""
    check_plain({name: a}, host_copy=True)
    try:
        kind = np.asarray(a).dtype
    except (TypeError, ValueError):  # (a ragged list, say)
        raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__}") from None
    if kind.kind not in "fiub":
        raise TypeError(f"{name} must be an array of real numbers, got {type(a).__name__} of dtype {kind}")
    return np.asarray(a, dtype=np.float64)


def standardize_dataset(ds: Dataset, *, eps: float = 1e-8):
    """Standardise a Dataset's features with statistics of its training split only.

    Args:
        ds: the data set.
        eps: see :func:`feature_stats`.

    Returns:
        (dataset, mean, std): the standardised Dataset (image_shape set to None, because
        image augmentations expect pixels in [0, 1]) and the statistics, shape (D,).
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a Dataset (load_digits, load_file, synthetic), got {type(ds).__name__}")
    mean, std = feature_stats(ds.x_train, eps=eps)
    return (
        ds._replace(x_train=standardize(ds.x_train, mean, std), x_test=standardize(ds.x_test, mean, std),
                    image_shape=None),
        mean,
        std,
    )


# --------------------------------------------------------------------------- batches


def batches(n: int, batch_size: int, rng, *, drop_last: bool = True) -> Iterator:
    """One epoch of shuffled batch indices.

    The permutation is drawn from ``rng`` when this function is called (not lazily on the
    first ``next``), so the data order is part of the generator state at that point.

    Args:
        n: number of samples.
        batch_size: samples per batch (>= 1).
        rng: ``numpy.random.Generator``.
        drop_last: drop the last, smaller batch (BYOL's batch norm wants full batches).

    Returns:
        An iterator of int64 index arrays, each of shape (batch_size,) (the last may be
        shorter when ``drop_last`` is False).

    Raises:
        ValueError: n < 1, batch_size < 1, or drop_last with batch_size > n (an empty epoch).
    """
    _check_rng(rng)
    for arg, v in (("n", n), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{arg} must be an integer >= 1, got {v!r}")
    drop_last = check_bool(drop_last, "drop_last")
    if drop_last and batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} > n={n} with drop_last=True gives an empty epoch; "
            "use a smaller batch_size or drop_last=False"
        )
    perm = rng.permutation(int(n)).astype(np.int64)
    stop = (n // batch_size) * batch_size if drop_last else n

    def _gen():
        for start in range(0, stop, batch_size):
            yield perm[start:start + batch_size]

    return _gen()
