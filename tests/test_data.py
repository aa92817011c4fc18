"""Tests for byol_ref.data: embedded digits, file loading, synthetic set, splits, batches."""
import codecs
import io
import math
import re
import zipfile

import pytest
from hypothesis import given
from hypothesis import strategies as st

from byol_ref.backend import host as np
from byol_ref.data import (
    DIGITS_PATH,
    Dataset,
    batches,
    feature_stats,
    image_files_hint,
    labels_file,
    load_digits,
    load_file,
    pixel_full_scale,
    standardize,
    standardize_dataset,
    synthetic,
    train_test_indices,
)

# UCI optdigits.tes class counts (the 1797 images scikit-learn ships).
DIGIT_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


# --------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_shapes_and_types(digits):
    assert isinstance(digits, Dataset)
    assert digits.name == "digits"
    assert digits.image_shape == (8, 8)
    assert digits.x_train.shape == (1438, 64) and digits.x_test.shape == (359, 64)
    assert digits.y_train.shape == (1438,) and digits.y_test.shape == (359,)
    assert digits.x_train.dtype == np.float64 and digits.y_train.dtype == np.int64


def test_digits_values_are_counts_over_16(digits):
    for x in (digits.x_train, digits.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        counts = x * 16
        np.testing.assert_array_equal(counts, np.round(counts))


def test_digits_classes_and_stratified_split(digits):
    assert set(np.unique(digits.y_train)) == set(range(10))
    total = np.bincount(digits.y_train, minlength=10) + np.bincount(digits.y_test, minlength=10)
    assert total.tolist() == DIGIT_COUNTS
    expected_test = [math.floor(0.2 * c + 0.5) for c in DIGIT_COUNTS]
    assert np.bincount(digits.y_test, minlength=10).tolist() == expected_test


def test_digits_split_is_disjoint(digits):
    # The 1797 images are pairwise distinct, so disjoint indices mean disjoint rows.
    train_rows = {r.tobytes() for r in digits.x_train}
    assert len(train_rows) == len(digits.x_train)
    assert not any(r.tobytes() in train_rows for r in digits.x_test)


def test_digits_file_is_pickle_free():
    with np.load(DIGITS_PATH, allow_pickle=False) as f:
        assert sorted(f.files) == ["x_test", "x_train", "y_test", "y_train"]
        assert f["x_train"].dtype == np.uint8 and f["x_train"].shape == (1438, 8, 8)


# --------------------------------------------------------------------------- splits


@given(
    n=st.integers(2, 60),
    k=st.integers(1, 5),
    frac=st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.9]),
    seed=st.integers(0, 2**32 - 1),
)
def test_train_test_indices_stratified(n, k, frac, seed):
    labels = np.random.default_rng(seed).integers(0, k, size=n)
    try:
        train, test = train_test_indices(n, frac, np.random.default_rng(seed), labels=labels)
    except ValueError as exc:  # only allowed when rounding leaves the test set empty
        assert "empty stratified test set" in str(exc) and frac > 0
        return
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(test) > 0)
    for c in np.unique(labels):
        n_c = int((labels == c).sum())
        assert (labels[test] == c).sum() == min(math.floor(frac * n_c + 0.5), n_c - 1)
        assert (labels[train] == c).sum() >= 1


@given(n=st.integers(2, 200), frac=st.floats(0.0, 0.99), seed=st.integers(0, 1000))
def test_train_test_indices_random(n, frac, seed):
    train, test = train_test_indices(n, frac, np.random.default_rng(seed))
    assert len(train) >= 1 and (len(test) >= 1 or frac == 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(n))
    again = train_test_indices(n, frac, np.random.default_rng(seed))
    np.testing.assert_array_equal(train, again[0])


@pytest.mark.parametrize("frac", [-0.1, 1.0, 1.5])
def test_train_test_indices_bad_fraction(frac):
    with pytest.raises(ValueError, match="test_fraction"):
        train_test_indices(10, frac, np.random.default_rng(0))


def test_numpy_numbers_are_the_numbers_they_hold(tmp_path):
    """test_fraction=np.float32(0.2) (a sweep's value) was refused where np.float64(0.2) was taken, and
    labels=np.int64(4) (a column found by np.argmax) where 4 was; and a class of the low-label probe's
    refusal read "class np.int64(0)"."""
    from byol_ref.evaluate import low_label_probe

    want = train_test_indices(10, 0.2, np.random.default_rng(0))
    for frac in (np.float32(0.2), np.array(0.2)):
        got = train_test_indices(10, frac, np.random.default_rng(0))
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
    rows = np.c_[np.random.default_rng(0).random((20, 3)), np.arange(20) % 2]
    np.savetxt(tmp_path / "d.csv", rows, delimiter=",")
    np.testing.assert_array_equal(load_file(tmp_path / "d.csv", labels=np.int64(3)).y_train,
                                  load_file(tmp_path / "d.csv", labels=3).y_train)
    y = np.r_[np.zeros(5, int), np.ones(25, int)]
    with pytest.raises(ValueError, match=r"^labels_per_class=10 but class 0 of y_train has only 5 examples"):
        low_label_probe(np.ones((30, 2)), y, np.ones((30, 2)), y, labels_per_class=10)


def test_train_test_indices_bad_args():
    with pytest.raises(ValueError, match="n must be"):
        train_test_indices(1, 0.2, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        train_test_indices(10, 0.2, 0)
    with pytest.raises(ValueError, match="labels must have shape"):
        train_test_indices(10, 0.2, np.random.default_rng(0), labels=np.zeros(9, int))


# --------------------------------------------------------------------------- load_file: round trips


def _expected_split(n, seed, labels=None, frac=0.2):
    return train_test_indices(n, frac, np.random.default_rng(seed), labels=labels)


def _table(n=20, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, 3, size=n)


def test_load_npy_matrix_roundtrip(tmp_path):
    x, _ = _table()
    np.save(tmp_path / "feat.npy", x)
    ds = load_file(tmp_path / "feat.npy", seed=3)
    train, test = _expected_split(20, 3)
    np.testing.assert_array_equal(ds.x_train, x[train])
    np.testing.assert_array_equal(ds.x_test, x[test])
    assert ds.y_train is None and ds.y_test is None
    assert ds.image_shape is None and ds.name == "feat"


def test_load_npy_images_are_flattened(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, size=(10, 4, 6)).astype(np.uint8)
    np.save(tmp_path / "img.npy", x)
    ds = load_file(str(tmp_path / "img.npy"))
    assert ds.image_shape == (4, 6)
    assert ds.x_train.dtype == np.float64 and ds.x_train.shape[1] == 24
    train, _ = _expected_split(10, 0)
    np.testing.assert_array_equal(ds.x_train, x[train].reshape(len(train), 24))


def test_8_and_16_bit_images_are_divided_by_their_full_scale_when_asked(tmp_path):
    rng = np.random.default_rng(0)
    train, test = _expected_split(10, 0)
    for dtype, scale in ((np.uint8, 255), (">u2", 65535), ("<u2", 65535)):
        x = rng.integers(0, scale + 1, size=(10, 4, 6)).astype(dtype)
        x[0, 0, 0] = scale
        np.save(tmp_path / "img.npy", x)
        ds = load_file(tmp_path / "img.npy", scale_pixels=True)
        assert ds.full_scale == scale and ds.x_train.dtype == np.float64
        np.testing.assert_array_equal(ds.x_train, x[train].reshape(8, 24).astype(np.float64) / scale)
        np.testing.assert_array_equal(ds.x_test, x[test].reshape(2, 24).astype(np.float64) / scale)
        assert ds.x_train.max() <= 1.0
        as_stored = load_file(tmp_path / "img.npy")  # (the default: as before there was a choice)
        assert as_stored.full_scale is None and as_stored.x_train.max() > 1
    # A declared image shape over a 2-D table is images too; the table alone is feature vectors, left as they are.
    flat = rng.integers(0, 256, size=(10, 6)).astype(np.uint8)
    np.save(tmp_path / "flat.npy", flat)
    assert load_file(tmp_path / "flat.npy", image_shape=(2, 3), scale_pixels=True).full_scale == 255
    table = load_file(tmp_path / "flat.npy", scale_pixels=True)
    assert table.full_scale is None and table.x_train.max() > 1
    # Masks of 0s and 1s are pixels in [0, 1] already; float, signed and 32-bit images are read as stored.
    for x in (rng.integers(0, 2, size=(10, 4, 4)).astype(np.uint8), rng.integers(0, 256, size=(10, 4, 4)),
              rng.integers(0, 256, size=(10, 4, 4)).astype(np.uint32), rng.random((10, 4, 4)) * 255,
              rng.integers(0, 100, size=(10, 4, 4)).astype(np.int8)):
        np.save(tmp_path / "other.npy", x)
        ds = load_file(tmp_path / "other.npy", scale_pixels=True)
        assert ds.full_scale is None
        np.testing.assert_array_equal(ds.x_train, x[train].reshape(8, 16).astype(np.float64))
    assert load_file(tmp_path / "other.npy", scale_pixels=np.bool_(True)).full_scale is None  # (NumPy's bool too)


def test_a_full_scale_given_divides_every_value_whatever_its_type(tmp_path):
    """scale_pixels=N: the full scale of pixels no type tells (a CSV's text: 255, or the UCI digits' 16)."""
    counts = np.random.default_rng(2).integers(0, 17, size=(20, 16))
    np.savetxt(tmp_path / "px.csv", counts, fmt="%d", delimiter=",")
    train, test = _expected_split(20, 0)
    ds = load_file(tmp_path / "px.csv", image_shape=(4, 4), scale_pixels=16)
    assert ds.full_scale == 16 and type(ds.full_scale) is int and ds.image_shape == (4, 4)
    np.testing.assert_array_equal(ds.x_train, counts[train] / 16)
    np.testing.assert_array_equal(ds.x_test, counts[test] / 16)
    assert load_file(tmp_path / "px.csv", scale_pixels=np.float32(2.5)).full_scale == 2.5  # (a table: as asked)
    np.save(tmp_path / "u8.npy", counts.reshape(20, 4, 4).astype(np.uint8))  # (a number given beats the type's 255)
    assert load_file(tmp_path / "u8.npy", scale_pixels=16.0).full_scale == 16
    np.savez(tmp_path / "split.npz", x_train=counts[:15], x_test=counts[15:])
    ds = load_file(tmp_path / "split.npz", scale_pixels=16)
    np.testing.assert_array_equal(np.r_[ds.x_train, ds.x_test], counts / 16)
    for bad, error, said in ((0, ValueError, r"scale_pixels must be in \(0, inf\), got 0"),
                             (-255, ValueError, "got -255"), (float("inf"), ValueError, "must be finite"),
                             ("255", TypeError, r"scale_pixels must be True, False or a full scale \(a number > 0\), "
                                                r"got '255' \(str\)")):
        with pytest.raises(error, match=said):
            load_file(tmp_path / "px.csv", scale_pixels=bad)


def test_a_presplit_file_of_8_bit_images_divides_both_splits_or_neither(tmp_path):
    rng = np.random.default_rng(1)
    x_train = rng.integers(0, 256, size=(6, 3, 2, 2)).astype(np.uint8)
    masks = rng.integers(0, 2, size=(3, 3, 2, 2)).astype(np.uint8)  # (no value above 1 in this split)
    np.savez(tmp_path / "split.npz", x_train=x_train, x_test=masks)
    ds = load_file(tmp_path / "split.npz", scale_pixels=True)
    assert ds.full_scale == 255 and ds.image_shape == (3, 2, 2)
    np.testing.assert_array_equal(ds.x_train, x_train.reshape(6, 12) / 255)
    np.testing.assert_array_equal(ds.x_test, masks.reshape(3, 12) / 255)
    np.savez(tmp_path / "mixed.npz", x_train=x_train, x_test=masks.astype(np.float64))  # two kinds of pixel
    ds = load_file(tmp_path / "mixed.npz", scale_pixels=True)
    assert ds.full_scale is None and ds.x_train.max() > 1  # (train then refuses them, naming the full scale)
    np.savez(tmp_path / "empty.npz", x_train=x_train, x_test=x_train[:0])
    assert load_file(tmp_path / "empty.npz", scale_pixels=True).full_scale == 255


def test_pixel_full_scale_of_an_array_or_a_list_of_them():
    assert pixel_full_scale(np.array([[0, 2]], dtype=np.uint8)) == 255
    assert pixel_full_scale([np.array([1], dtype=np.uint16), np.array([7], dtype=np.uint16)]) == 65535
    assert pixel_full_scale([np.array([1], dtype=np.uint16), np.array([7], dtype=np.uint8)]) is None
    assert pixel_full_scale(np.ones((2, 2), dtype=np.uint8)) is None
    assert pixel_full_scale(np.full((2, 2), 3.0)) is None


def test_channels_last_images_are_read_channels_first_with_a_warning(tmp_path):
    import warnings
    x = np.random.default_rng(0).random((10, 8, 8, 3))  # PIL / TF layout (N, H, W, C)
    np.save(tmp_path / "hwc.npy", x)
    with pytest.warns(UserWarning, match=r"8 channels of 8x3 images.*x\.transpose\(0, 3, 1, 2\)"):
        ds = load_file(tmp_path / "hwc.npy")
    assert ds.image_shape == (8, 8, 3)  # still read as (C, H, W): the layout is the user's to fix
    np.savez(tmp_path / "split.npz", x_train=x, x_test=x[:4])
    with pytest.warns(UserWarning, match="x_train in"):
        load_file(tmp_path / "split.npz")
    for shape in [(10, 3, 8, 8), (10, 1, 8, 3), (10, 8, 8, 5), (10, 8, 8)]:  # channels first, or no sign of last
        np.save(tmp_path / "chw.npy", np.zeros(shape))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            load_file(tmp_path / "chw.npy")


def test_load_npy_with_image_shape_and_label_file(tmp_path):
    x, y = _table(n=12, d=6)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    ds = load_file(tmp_path / "x.npy", labels=tmp_path / "y.npy", image_shape=(2, 3))
    assert ds.image_shape == (2, 3)
    train, test = _expected_split(12, 0, labels=y)
    np.testing.assert_array_equal(ds.y_train, y[train])
    np.testing.assert_array_equal(ds.x_test, x[test])


def test_load_npy_label_column(tmp_path):
    x, y = _table(n=12, d=4)
    np.save(tmp_path / "t.npy", np.column_stack([x, y]))
    ds = load_file(tmp_path / "t.npy", labels=-1)
    train, _ = _expected_split(12, 0, labels=y)
    np.testing.assert_array_equal(ds.x_train, x[train])
    np.testing.assert_array_equal(ds.y_train, y[train])


def test_a_label_column_index_is_typed_in_ascii_digits(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,c\n" + "".join(f"{i},{i + 1},{i % 2}\n" for i in range(12)))
    ds = load_file(tmp_path / "t.csv", labels=" -1 ")  # (as a command line gives it)
    assert ds.x_train.shape[1] == 2 and set(ds.y_train) == {0, 1}
    for text in ("\u00b2", "+-1", "--1", "\u0662"):  # a superscript 2, two signs, an Arabic-Indic 2
        with pytest.raises(ValueError, match=re.escape(f"labels={text!r} is not a column of file")):
            load_file(tmp_path / "t.csv", labels=text)


def test_load_npz_x_y(tmp_path):
    x, y = _table()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    ds = load_file(tmp_path / "d.npz", test_fraction=0.25, seed=1)
    train, test = _expected_split(20, 1, labels=y, frac=0.25)
    np.testing.assert_array_equal(ds.x_train, x[train])
    np.testing.assert_array_equal(ds.y_test, y[test])
    assert ds.y_train.dtype == np.int64


def test_an_npz_that_stores_a_name_twice_is_refused(tmp_path):
    import io
    import warnings
    import zipfile

    from byol_ref.trace import TraceError, load_trace

    def npy(a):
        buf = io.BytesIO()
        np.save(buf, a)
        return buf.getvalue()

    path = tmp_path / "twice.npz"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as z:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name"
        z.writestr("y.npy", npy(np.arange(20) % 2))
        z.writestr("x.npy", npy(np.ones((20, 3))))
        z.writestr("x.npy", npy(np.zeros((20, 3))))
    with pytest.raises(ValueError, match=r"twice.npz'? holds 1 array name\(s\) more than once \(\['x'\]\)"):
        load_file(path)
    with pytest.raises(TraceError, match=r"more than once \(\['x'\]\)"):
        load_trace(path)


def test_split_sizes_round_half_up_and_refuse_an_empty_stratified_test_set():
    rng = np.random.default_rng(0)
    train, test = train_test_indices(10, 0.25, rng)  # 2.5 test samples -> 3 (floor(x + 0.5)), not 2
    assert test.size == 3 and train.size == 7
    with pytest.raises(ValueError, match="empty stratified test set"):
        train_test_indices(4, 0.2, np.random.default_rng(0), labels=np.arange(4))  # one sample per class


def test_presplit_npz_with_different_feature_counts_is_refused(tmp_path):
    np.savez(tmp_path / "s.npz", x_train=np.zeros((8, 9)), x_test=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="different feature counts: 9 vs 5"):
        load_file(tmp_path / "s.npz")


def test_a_csv_with_nul_characters_is_refused_on_every_python(tmp_path):
    """A NUL character in a CSV (UTF-16 text has one in every other byte) was "not a readable CSV table
    (line 1: line contains NUL)" on Python 3.10, and on 3.11 a field like any other ("1.5\\x00" is no
    number: a first line that "mixes numbers and other fields"). It is now refused as such on both,
    with the line it is on."""
    body = "\n".join(f"{i},{i + 0.5},{i * 2}" for i in range(8)) + "\n"
    (tmp_path / "wide.csv").write_bytes(body.encode("utf-16-le"))  # (no byte-order mark)
    with pytest.raises(ValueError, match=r"wide.csv'? holds a NUL character on line 1: UTF-16 text, or no text at "
                                         r"all\? Save the CSV as UTF-8$"):
        load_file(tmp_path / "wide.csv")
    for lines, at in ((["1.5,2.5,3\x00"] + body.splitlines(), 1), (body.splitlines()[:5] + ["4,\x00,5"], 6)):
        (tmp_path / "nul.csv").write_text("\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=rf"nul.csv'? holds a NUL character on line {at}:"):
            load_file(tmp_path / "nul.csv", header=False)


def test_a_first_line_of_numbers_and_other_fields_must_be_declared(tmp_path):
    """A header with some numeric names, or a row of data with a missing or mangled value (which
    would otherwise be taken for a header, and lost): byol-ref asks rather than guess."""
    body = "\n".join(f"{i},{i + 0.5},{i * 2}" for i in range(8)) + "\n"
    for first in ("f1,2,3", "1.5,2.5,", "1.5,NA,3"):
        (tmp_path / "h.csv").write_text(first + "\n" + body)
        with pytest.raises(ValueError, match=r"h.csv'?: its first line \(.*\) mixes numbers and other fields: a "
                                             r"header with some numeric names, or a row of data with missing or bad "
                                             r"values\? Say which: header=True or header=False"):
            load_file(tmp_path / "h.csv")
    (tmp_path / "h.csv").write_text("f1,2,3\n" + "\n".join(f"{i + 0.5},{i % 2},{i * 2}" for i in range(8)) + "\n")
    ds = load_file(tmp_path / "h.csv", test_fraction=0.25, header=True, labels="2")  # column "2" by name: index 1
    assert ds.x_train.shape[1] == 2 and sorted([*ds.y_train, *ds.y_test]) == [0] * 4 + [1] * 4
    (tmp_path / "h.csv").write_text("f1,f2,f3\n" + body)  # no number in it: a header
    assert load_file(tmp_path / "h.csv", test_fraction=0.25).x_train.shape == (6, 3)


def test_a_table_separated_by_tabs_or_semicolons_is_named_as_such(tmp_path):
    hint = "look separated by {}, and byol-ref reads comma-separated ones"
    for name, text, says in (
            ("t.csv", "a\tb\tc\n1\t2\t3\n", r"non-numeric value '1\\t2\\t3' at line 2.*" + hint.format("tabs")),
            ("s.csv", "1;2;3\n4;5;6\n", r"non-numeric value '4;5;6' at line 2.*" + hint.format("semicolons")),
            ("d.csv", "a;b;c\n1,5;2,0;3\n", r"line 2 has 3 fields, expected 1.*" + hint.format("semicolons"))):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=says):
            load_file(tmp_path / name)
    (tmp_path / "c.csv").write_text("1,2\n3,x\n")  # commas: no hint
    with pytest.raises(ValueError, match="non-numeric value 'x'") as info:
        load_file(tmp_path / "c.csv")
    assert "look separated" not in str(info.value)


def test_csv_rows_are_never_lost_quietly(tmp_path):
    """A row with some values missing is an error; a row with none is an empty row (spreadsheets
    write them, ",,,"); a stray quote that swallows rows into one field is refused (a header name
    with a line break is not); a label name given twice is ambiguous."""
    (tmp_path / "e.csv").write_text("1,2,3\n,,4\n5,6,7\n7,8,9\n")
    with pytest.raises(ValueError, match=r"e.csv'?: non-numeric value '' at line 2, column 0"):
        load_file(tmp_path / "e.csv")
    (tmp_path / "b.csv").write_text("1,2\n\n   \n,\n5,6\r\n7,8\r\n,\r\n, \r\n")  # blank and empty rows
    assert load_file(tmp_path / "b.csv", test_fraction=0).x_train.shape == (3, 2)
    (tmp_path / "q.csv").write_text('label,"f0,f1\n1,2.0,3.0\n0,4.0",5.0\n1,6.0,7.0\n0,8.0,9.0\n')
    with pytest.raises(ValueError, match=r"q.csv'?: a field that ends on line 3 spans several lines of "
                                         r"comma-separated values: rows a stray quote swallowed"):
        load_file(tmp_path / "q.csv", labels="label")
    rows = "\n".join(f"{i % 2},{i * 0.5},{i * 0.25}" for i in range(8))
    (tmp_path / "n.csv").write_text('label,"petal\nwidth",sepal\n' + rows + "\n")  # a spreadsheet's header
    assert load_file(tmp_path / "n.csv", labels="label", test_fraction=0.25).x_train.shape == (6, 2)
    (tmp_path / "d.csv").write_text("a,a,b\n" + "\n".join(f"{i % 2},{i},{i * 0.5}" for i in range(8)) + "\n")
    with pytest.raises(ValueError, match=r"labels='a' names 2 columns of .*d.csv'? \(columns \[0, 1\]\); pass the "
                                         r"index of the one that holds the labels"):
        load_file(tmp_path / "d.csv", labels="a")
    assert load_file(tmp_path / "d.csv", labels=0, test_fraction=0.25).x_train.shape == (6, 2)


def test_rows_a_stray_quote_swallowed_are_refused_with_any_line_ending(tmp_path):
    for end in ("\n", "\r\n", "\r"):
        (tmp_path / "q.csv").write_bytes(end.join(["a,b", '1,"2', "3,4", "5,6", ""]).encode())
        with pytest.raises(ValueError, match=r"q.csv'?: a field that ends on line \d+ spans several lines"):
            load_file(tmp_path / "q.csv")


def test_a_first_row_with_a_number_of_thousands_of_digits_is_read_as_any_other(tmp_path):
    """A CSV whose first row is whole numbers, one of them 5000 digits long (more than Python's int()
    converts), is weighed as a header of pandas' column numbers or data like any other first row: it
    raised Python's "Exceeds the limit (4300 digits) for integer string conversion ... use
    sys.set_int_max_str_digits()", naming no file."""
    long = "9" * 5000
    (tmp_path / "d.csv").write_text(f"1,{long}\n1,2\n3,4\n5,6\n")  # data: its inf is refused as such
    with pytest.raises(ValueError, match=r"^features in file .*d.csv.? has 1 non-finite value.* at index \(0, 1\)"):
        load_file(tmp_path / "d.csv")
    (tmp_path / "d.csv").write_text(f"1,{long}\n1.5,2\n3,4\n5,6\n")  # rising whole numbers above a fraction
    with pytest.raises(ValueError, match=rf"^file .*d.csv'?: is its first line \(1,{long}\) a header of column "):
        load_file(tmp_path / "d.csv")
    assert load_file(tmp_path / "d.csv", header=True).x_train.shape[1] == 2
    (tmp_path / "d.csv").write_text(f"0,1,000{long}\n1.5,2,3\n3,4,5\n5,6,7\n")  # (leading zeros: the same number)
    with pytest.raises(ValueError, match=r"d.csv'?: is its first line \(0,1,0009"):
        load_file(tmp_path / "d.csv")


def test_an_unnamed_first_column_with_an_inf_is_no_row_numbers(tmp_path):
    """An unnamed first column of distinct whole numbers and an inf (1e999 written in a table) was
    refused as row numbers "(0 to inf)": an inf is no whole number, and the column no row numbers. The
    inf is refused as what it is, by its place."""
    (tmp_path / "i.csv").write_text(",a,b\n0,1,2\n1e999,2,3\n2,3,4\n")
    with pytest.raises(ValueError, match=r"^features in file .*i.csv'? has 1 non-finite value.* at index \(1, 0\)"):
        load_file(tmp_path / "i.csv")


def test_a_header_the_labels_name_a_field_of_is_a_header_whatever_its_other_names(tmp_path):
    """pd.DataFrame(x).assign(label=y).to_csv(index=False) writes 0,1,2,label; spectra tables
    name columns by wavelength. --labels label says which row is the header."""
    rows = "\n".join(f"{i * 0.5},{i * 0.25},{i % 2}" for i in range(8))
    (tmp_path / "p.csv").write_text("0,1,label\n" + rows + "\n")
    ds = load_file(tmp_path / "p.csv", labels="label", test_fraction=0.25)
    assert ds.x_train.shape == (6, 2) and sorted([*ds.y_train, *ds.y_test]) == [0] * 4 + [1] * 4
    with pytest.raises(ValueError, match=r"p.csv'?: its first line \(0,1,label\) mixes numbers and other fields"):
        load_file(tmp_path / "p.csv", labels=2)  # by index: the labels say nothing of the first row


def test_csv_files_as_pandas_writes_them(tmp_path):
    """DataFrame(x).to_csv(index=False) heads the table with the column numbers, which could also be
    a row of data: byol-ref asks rather than guess. to_csv() with its index, and R's write.csv, add an
    unnamed first column of row numbers, which is no feature: refused."""
    x, y = _table(n=10, d=3)
    rows = "\n".join(",".join(repr(float(v)) for v in r) for r in x)
    asks = (r"p.csv'?: is its first line \({}\) a header of column numbers, as pandas writes for a table without "
            r"column names, or a row of data\? Say which: header=True or header=False \(on the command line, "
            r"--csv-header yes or no\)")
    for first in ("0,1,2", "1,2,3", "0,2,3", "0,1,0", "0,0,1"):  # also what dropping or joining columns leaves
        (tmp_path / "p.csv").write_text(first + "\n" + rows + "\n")
        with pytest.raises(ValueError, match=asks.format(first)):
            load_file(tmp_path / "p.csv")
    assert load_file(tmp_path / "p.csv", header=True, test_fraction=0.5).x_train.shape == (5, 3)
    assert load_file(tmp_path / "p.csv", header=False, test_fraction=0.5).x_test.shape == (6, 3)  # 11 rows: 5 + 6
    wide = ",".join(map(str, range(8)))
    (tmp_path / "p.csv").write_text(wide + "\n" + "\n".join(",".join(["1"] * 8) for _ in range(4)) + "\n")
    with pytest.raises(ValueError, match=asks.format(r"0,1,2,3,4,5,\.\.\.")):  # 0..K-1 even above whole numbers
        load_file(tmp_path / "p.csv")

    ints = "\n".join(",".join(str(int(9 * v)) for v in r) for r in x)  # a table of whole numbers (pixels, counts)
    for first in ("1,2,3", "0,1,1", "1.5,2,3"):  # its first row is data, as ever; so is a row with a fraction
        (tmp_path / "n.csv").write_text(first + "\n" + (ints if "." not in first else rows) + "\n")
        assert load_file(tmp_path / "n.csv", test_fraction=0.5).x_test.shape == (6, 3)
    (tmp_path / "p.csv").write_text("1,2,3\n" + ints + "\n0.5,1,2\n")  # one fraction below is enough
    with pytest.raises(ValueError, match=asks.format("1,2,3")):
        load_file(tmp_path / "p.csv")
    for first in ("5,3,9", "2,1,0", "1,1,2"):  # above fractions, but no column numbers pandas writes: data
        (tmp_path / "n.csv").write_text(first + "\n" + rows + "\n")
        assert load_file(tmp_path / "n.csv", test_fraction=0.5).x_test.shape == (6, 3)
    (tmp_path / "n.csv").write_text("1,2,3\n" + ints + "\nnan,1,2\n")  # a NaN is no fraction: its own error
    with pytest.raises(ValueError, match=r"n.csv'? has 1 non-finite value"):
        load_file(tmp_path / "n.csv")
    (tmp_path / "two.csv").write_text("0,1\n" + "\n".join(f"{int(9 * a)},{int(9 * b)}" for a, b, _ in x) + "\n")
    assert load_file(tmp_path / "two.csv", test_fraction=0.5).x_test.shape == (6, 2)  # 0..K-1 asks from K = 3
    negative = "\n".join(",".join(str(-1 - abs(int(9 * v))) for v in r) for r in x)  # minus signs are no fraction
    (tmp_path / "neg.csv").write_text("1,2,3\n" + negative + "\n")
    assert load_file(tmp_path / "neg.csv", test_fraction=0.5).x_test.shape == (6, 3)

    def with_index(numbers, head):
        body = "\n".join(f"{i}," + ",".join(repr(float(v)) for v in r) for i, r in zip(numbers, x))
        (tmp_path / "i.csv").write_text(head + "\n" + body + "\n")
        return tmp_path / "i.csv"

    pandas, sampled, r_rows = [3, 0, 1, 2, 4, 5, 6, 7, 8, 9], [17, 4, 40, 2, 3, 8, 11, 5, 6, 99], range(1, 11)
    for numbers, head, says in ((pandas, ",a,b,c", "0 to 9"), (sampled, ",a,b,c", "2 to 99"),
                                (r_rows, '"","V1","V2","V3"', "1 to 10")):
        with pytest.raises(ValueError, match=r"i.csv'?: its first column has no name and holds 10 distinct whole "
                                             rf"numbers \({says}\): row numbers, as pandas' to_csv writes without "
                                             r"index=False and R's write.csv without row.names=FALSE"):
            load_file(with_index(numbers, head))
    (tmp_path / "i2.csv").write_text(",a,b\n0,0.5,1.5\n1,2.5,3.5\n")  # two rows are enough to tell
    with pytest.raises(ValueError, match=r"i2.csv'?: its first column has no name and holds 2 distinct whole"):
        load_file(tmp_path / "i2.csv", test_fraction=0)
    (tmp_path / "i1.csv").write_text(",a,b\n7,0.5,1.5\n")  # one row is not: a single number is no sequence
    with pytest.raises(ValueError, match=r"i1.csv'? must hold at least 2 samples, got shape \(1, 3\)"):
        load_file(tmp_path / "i1.csv", test_fraction=0)
    assert load_file(with_index(pandas, "id,a,b,c"), test_fraction=0.5).x_train.shape == (5, 4)  # a named column
    assert load_file(with_index([0, 1] * 5, ",a,b,c"), test_fraction=0.5).x_train.shape == (5, 4)  # not distinct
    assert load_file(with_index(np.arange(10) + 0.5, ",a,b,c"), test_fraction=0.5).x_train.shape == (5, 4)
    (tmp_path / "y.csv").write_text(",label\n" + "\n".join(f"{i},{v}" for i, v in enumerate(y)) + "\n")
    (tmp_path / "x.csv").write_text(rows + "\n")
    with pytest.raises(ValueError, match=r"y.csv'?: its first column has no name and holds 10 distinct"):
        load_file(tmp_path / "x.csv", labels=str(tmp_path / "y.csv"))
    # A label file is one column of class ids: its first line is a label, never asked about.
    (tmp_path / "y.csv").write_text("\n".join(map(str, y)) + "\n")
    assert load_file(tmp_path / "x.csv", labels=str(tmp_path / "y.csv")).y_train is not None
    (tmp_path / "y3.csv").write_text("0,1,2\n" + "\n".join(f"{v},{v},{v}" for v in y) + "\n")
    with pytest.raises(ValueError, match=r"labels file .*y3.csv'? must have one column of class ids or names, got 3"):
        load_file(tmp_path / "x.csv", labels=str(tmp_path / "y3.csv"))

    with pytest.raises(TypeError, match=r"header must be True, False or None \(detect\), got 1"):
        load_file(tmp_path / "x.csv", header=1)
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(ValueError, match=r"header=False applies to a CSV table, but file .*x.npy'? is a .npy file"):
        load_file(tmp_path / "x.npy", header=False)
    (tmp_path / "x.txt").write_text("a,b,c\n" + rows + "\n")  # .txt is read as CSV
    assert load_file(tmp_path / "x.txt", header=True, test_fraction=0.5).x_train.shape == (5, 3)
    with pytest.raises(ValueError, match=r"non-numeric value 'a' at line 1, column 0; expected numbers only \(the "
                                         r"first line was taken as data, not a header\)"):
        load_file(tmp_path / "x.txt", header=False)


def test_feature_stats_treat_rounding_level_spread_as_constant():
    x = np.column_stack([np.full(3, 0.1), [0.0, 1.0, 2.0]])
    assert 0 < x[:, 0].std() < 1e-16  # a constant column whose computed std is not exactly 0
    _, std = feature_stats(x)
    assert std[0] == 1.0 and std[1] == pytest.approx(x[:, 1].std())


def test_load_npz_presplit(tmp_path):
    rng = np.random.default_rng(0)
    xt, xv = rng.random((8, 3, 3)), rng.random((4, 3, 3))
    yt, yv = rng.integers(0, 2, 8), rng.integers(0, 2, 4)
    np.savez(tmp_path / "s.npz", x_train=xt, y_train=yt, x_test=xv, y_test=yv)
    ds = load_file(tmp_path / "s.npz")
    assert ds.image_shape == (3, 3)
    np.testing.assert_array_equal(ds.x_train, xt.reshape(8, 9))
    np.testing.assert_array_equal(ds.y_test, yv)
    # test classes the training split lacks: said, as no probe can predict them (they scored 0, without a word)
    np.savez(tmp_path / "u.npz", x_train=xt, y_train=np.zeros(8, int), x_test=xv, y_test=np.array([0, 2, 2, 3]))
    with pytest.warns(UserWarning, match=r"y_test in .* holds class\(es\) \[2, 3\] that y_train lacks: no probe fit on "
                                         r"y_train predicts them, so their 3 test sample\(s\) count as errors"):
        load_file(tmp_path / "u.npz")


def test_load_csv_header_and_label_name(tmp_path):
    x, y = _table(n=10, d=3)
    lines = ["a,label,b,c"] + [f"{float(r[0])!r},{lab},{float(r[1])!r},{float(r[2])!r}" for r, lab in zip(x, y)]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n\n")
    ds = load_file(tmp_path / "t.csv", labels="label")
    train, test = _expected_split(10, 0, labels=y)
    np.testing.assert_array_equal(ds.x_train, x[train])  # repr round-trips floats exactly
    np.testing.assert_array_equal(ds.y_test, y[test])


def test_load_csv_no_header_index_and_label_file(tmp_path):
    x, y = _table(n=10, d=3)
    np.savetxt(tmp_path / "t.csv", np.column_stack([y, x]), delimiter=",", fmt="%.17g")
    ds = load_file(tmp_path / "t.csv", labels=0)
    train, _ = _expected_split(10, 0, labels=y)
    np.testing.assert_array_equal(ds.x_train, x[train])
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", fmt="%.17g")
    (tmp_path / "y.csv").write_text("class\n" + "\n".join(str(v) for v in y) + "\n")
    ds2 = load_file(tmp_path / "x.csv", labels=str(tmp_path / "y.csv"))
    np.testing.assert_array_equal(ds2.x_train, ds.x_train)
    np.testing.assert_array_equal(ds2.y_train, ds.y_train)


def test_load_csv_unlabelled_random_split(tmp_path):
    x, _ = _table(n=7, d=2)
    np.savetxt(tmp_path / "u.csv", x, delimiter=",", fmt="%.17g")
    ds = load_file(tmp_path / "u.csv", test_fraction=0.0)
    np.testing.assert_array_equal(ds.x_train, x)
    assert ds.x_test.shape == (0, 2)


# --------------------------------------------------------------------------- load_file: errors


def test_missing_file_names_path(tmp_path):
    p = tmp_path / "nope.npy"
    with pytest.raises(FileNotFoundError, match="nope.npy"):
        load_file(p)


def test_unknown_extension(tmp_path):
    (tmp_path / "d.json").write_text("[]")
    with pytest.raises(ValueError, match=r"\.npy, \.npz or \.csv, got '.*d\.json'$"):
        load_file(tmp_path / "d.json")


def test_image_files_and_folders_of_them_are_named_with_how_to_give_them(tmp_path):
    """A PNG, or a folder of them, got "path must end in .npy, .npz or .csv" or "is a directory"."""
    stack = "byol-ref reads no image files: stack the images into one array of shape (N, H, W) or (N, C, H, W)"
    (tmp_path / "cat.JPG").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match=re.escape(f"got {str(tmp_path / 'cat.JPG')!r}; {stack}")):
        load_file(tmp_path / "cat.JPG")
    (tmp_path / "cats").mkdir()
    with pytest.raises(FileNotFoundError, match="is a directory; expected a data file$"):  # (no images in it yet)
        load_file(tmp_path / "cats")
    (tmp_path / "cats" / "0001.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=re.escape(f"is a directory; expected a data file; {stack}")):
        load_file(tmp_path / "cats")
    assert image_files_hint(tmp_path / "notes.txt") == "" and image_files_hint(tmp_path / "cats").startswith("; ")


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2, 2, 2)])
def test_wrong_rank(tmp_path, shape):
    np.save(tmp_path / "r.npy", np.zeros(shape))
    with pytest.raises(ValueError, match="shape"):
        load_file(tmp_path / "r.npy")


def test_non_numeric_csv_names_line_and_column(tmp_path):
    (tmp_path / "b.csv").write_text("x,y\n1,2\n3,oops\n5,6\n")
    with pytest.raises(ValueError, match=r"'oops' at line 3, column 1 \('y'\)"):
        load_file(tmp_path / "b.csv")


def test_non_numeric_npy(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(ValueError, match="numeric"):
        load_file(tmp_path / "s.npy")


def test_object_npy_is_refused_without_pickle(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[1, None], [2, 3]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickle"):
        load_file(tmp_path / "o.npy")


def test_non_finite_reports_count_and_first_index(tmp_path):
    x = np.ones((4, 3))
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    np.save(tmp_path / "n.npy", x)
    with pytest.raises(ValueError, match=r"2 non-finite .* index \(1, 2\)"):
        load_file(tmp_path / "n.npy")
    # finite in a longdouble file, inf in float64: refused at load (it trained, and failed at the probes)
    big = np.ones((6, 2), dtype=np.longdouble)
    big[4, 1] = np.longdouble(10) ** 400
    if not np.isfinite(big[4, 1]) or np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("this platform's longdouble is float64")
    np.save(tmp_path / "big.npy", big)
    with pytest.raises(ValueError, match=r"1 value\(s\) beyond float64's range .* first at index \(4, 1\)"):
        load_file(tmp_path / "big.npy")
    np.savez(tmp_path / "split.npz", x_train=big[:4], x_test=big[4:])
    with pytest.raises(ValueError, match=r"x_test in .* beyond float64's range .* index \(0, 1\)"):
        load_file(tmp_path / "split.npz")


def test_label_count_mismatch(tmp_path):
    x, y = _table(n=10)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y[:9])
    with pytest.raises(ValueError, match="9 labels .* 10 samples"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    np.savez(tmp_path / "d.npz", x=x, y=y[:9])
    with pytest.raises(ValueError, match="9 labels but 10 samples"):
        load_file(tmp_path / "d.npz")


def test_fewer_than_two_samples(tmp_path):
    np.save(tmp_path / "one.npy", np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2 samples"):
        load_file(tmp_path / "one.npy")


def test_bad_labels(tmp_path):
    x, _ = _table(n=6, d=2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "yf.npy", np.array([0, 1, 0.5, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"integer class ids, got 0\.5 at index 2$"):  # (not np.float64(0.5))
        load_file(tmp_path / "x.npy", labels=tmp_path / "yf.npy")
    np.save(tmp_path / "yn.npy", np.array([0, 1, -1, 1, 0, 1]))
    with pytest.raises(ValueError, match=">= 0"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "yn.npy")
    with pytest.raises(TypeError, match="labels"):
        load_file(tmp_path / "x.npy", labels=1.5)
    with pytest.raises(ValueError, match="out of range"):
        load_file(tmp_path / "x.npy", labels=5)


def test_csv_label_name_errors(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n1,0\n2,1\n3,0\n")
    with pytest.raises(ValueError, match="'c' is not a column"):
        load_file(tmp_path / "h.csv", labels="c")
    (tmp_path / "n.csv").write_text("1,0\n2,1\n3,0\n")
    with pytest.raises(ValueError, match="no header row$"):  # (a plain name: no word of label files)
        load_file(tmp_path / "n.csv", labels="b")
    # A labels meant as a file but no label file (a .json, a folder) was told only "names a column".
    (tmp_path / "y.json").write_text("[0, 1, 0]")
    ends = r"; a label file ends in \.npy, \.npz, \.csv or \.txt \(one class id per row\)$"
    for data in ("n.csv", "h.csv"):
        with pytest.raises(ValueError, match=ends):
            load_file(tmp_path / data, labels=str(tmp_path / "y.json"))
        with pytest.raises(ValueError, match="; it is a directory, not a label file"):
            load_file(tmp_path / data, labels=str(tmp_path))
    # a name without an extension is a column's unless something stands on disk by that name
    (tmp_path / "ylabels").write_text("0\n1\n0\n")
    with pytest.raises(ValueError, match=ends):
        load_file(tmp_path / "h.csv", labels=str(tmp_path / "ylabels"))


def test_npz_label_file(tmp_path):
    # np.savez("y.npz", y=y) is a label file like y.npy: its one array, whatever its name, is read
    # (it was refused as "not a column" before). Several arrays are refused, naming them.
    x = np.arange(12.0).reshape(6, 2)
    y = np.array([0, 1, 0, 1, 0, 1])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "y.npz", labels=y)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    for data in ("x.npy", "x.csv"):
        want = load_file(tmp_path / data, labels=tmp_path / "y.npy", test_fraction=0.5)
        for labels in (tmp_path / "y.npz", str(tmp_path / "y.npz")):
            got = load_file(tmp_path / data, labels=labels, test_fraction=0.5)
            for a, b in ((got.x_train, want.x_train), (got.y_train, want.y_train), (got.y_test, want.y_test)):
                np.testing.assert_array_equal(a, b)
    # the CLI records (and on resume checks) the SHA-256 of the file labels_file names
    assert labels_file(str(tmp_path / "y.npz"), tmp_path / "x.csv") == tmp_path / "y.npz"
    np.savez(tmp_path / "xz.npz", x=x)
    got = load_file(tmp_path / "xz.npz", labels=str(tmp_path / "y.npz"), test_fraction=0.5)
    np.testing.assert_array_equal(got.y_train, want.y_train)
    np.savez(tmp_path / "two.npz", y=y, w=y)
    with pytest.raises(ValueError, match=r"'.*two\.npz' must hold one array of class ids, got 2: \['w', 'y'\]"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "two.npz")
    np.savez(tmp_path / "short.npz", y=y[:5])
    with pytest.raises(ValueError, match="has 5 labels but the features have 6 samples"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "short.npz")
    np.savez(tmp_path / "frac.npz", y=y + 0.5)
    with pytest.raises(ValueError, match="whole-number|integer"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "frac.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"bad\.npz' is not an \.npz file"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "bad.npz")


def test_ragged_csv(tmp_path):
    """A short line is named with its count in words a person would write ("has 1 fields" before)."""
    (tmp_path / "r.csv").write_text("1,2\n3\n")
    with pytest.raises(ValueError, match=r"^file '.*r\.csv': line 2 has 1 field, expected 2 \(like the first line\)$"):
        load_file(tmp_path / "r.csv")


def test_image_shape_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 10)))
    with pytest.raises(ValueError, match="image_shape"):
        load_file(tmp_path / "x.npy", image_shape=(3, 3))
    for bad in ((2.0, 5.0), 10, (True, 10), (0, 10)):  # (2.0, 5.0) was read as (2, 5); 10 said "not iterable"
        with pytest.raises(ValueError, match=r"image_shape must be \(H, W\) or \(C, H, W\) of positive ints, got "
                                             + re.escape(repr(bad))):
            load_file(tmp_path / "x.npy", image_shape=bad)
    assert load_file(tmp_path / "x.npy", image_shape=(np.int64(2), 5)).image_shape == (2, 5)


# --------------------------------------------------------------------------- synthetic


@given(seed=st.integers(0, 10_000), n=st.integers(12, 80), k=st.integers(1, 4))  # >= 3 per class
def test_synthetic_is_deterministic(seed, n, k):
    a = synthetic(n, 6, k, latent_dim=3, seed=seed)
    b = synthetic(n, 6, k, latent_dim=3, seed=seed)
    for u, v in zip(a[:4], b[:4]):
        np.testing.assert_array_equal(u, v)
    assert a.x_train.shape[0] + a.x_test.shape[0] == n
    assert a.x_train.shape[1] == 6 and a.image_shape is None
    c = synthetic(n, 6, k, latent_dim=3, seed=seed + 1)
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_defaults_are_balanced_and_learnable():
    ds = synthetic()
    assert ds.x_train.shape == (408, 32) and ds.x_test.shape == (104, 32)
    assert np.bincount(ds.y_train).tolist() == [102] * 4
    # Nearest class mean on the test split: the classes carry signal.
    means = np.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(4)])
    pred = np.argmin(((ds.x_test[:, None, :] - means) ** 2).sum(-1), axis=1)
    assert (pred == ds.y_test).mean() > 0.7


@pytest.mark.parametrize("kw", [dict(n=1), dict(dim=2, latent_dim=3), dict(noise=-1.0), dict(n_classes=0)])
def test_synthetic_bad_args(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        synthetic(**kw)


# --------------------------------------------------------------------------- standardize


def test_standardize_uses_train_stats_only(digits):
    ds, mean, std = standardize_dataset(digits)
    assert ds.image_shape is None
    np.testing.assert_allclose(ds.x_train.mean(0), 0.0, atol=1e-12)
    varying = digits.x_train.std(0) > 1e-8
    np.testing.assert_allclose(ds.x_train.std(0)[varying], 1.0, rtol=1e-12)
    assert np.all(std[~varying] == 1.0)  # constant pixels are only centred
    np.testing.assert_array_equal(ds.x_test, standardize(digits.x_test, mean, std))
    m2, s2 = feature_stats(digits.x_train)
    np.testing.assert_array_equal(mean, m2)



def test_standardize_and_feature_stats_refuse_what_would_give_inf_or_nan():
    x = np.arange(6.0).reshape(2, 3)
    mean, std = feature_stats(x)
    np.testing.assert_array_equal(standardize(x.astype(int), mean, std), standardize(x, mean, std))
    np.testing.assert_array_equal(standardize(x, 1.0, 2.0), (x - 1.0) / 2.0)  # one value for every feature
    for m, s, err, says in (
            (mean, np.zeros(3), ValueError, r"std must be > 0 \(feature_stats sets a constant feature's to 1\), "
                                            r"got \[0. 0. 0.\] at features \[0, 1, 2\]"),
            (np.zeros((5, 3)), std, ValueError, r"mean must have shape \(3,\), one value per feature of x "
                                                r"\(2, 3\) \(or one for all\), got \(5, 3\)"),
            (np.zeros(4), std, ValueError, r"mean must have shape \(3,\), one value per feature of x \(2, 3\) "
                                           r"\(or one for all\), got \(4,\)"),
            (None, std, TypeError, "mean must be an array of real numbers, got NoneType"),
            (mean, np.array([1.0, np.nan, 1.0]), ValueError, r"std has 1 non-finite value\(s\)")):
        with pytest.raises(err, match=says):
            standardize(x, m, s)
    with pytest.raises(TypeError, match="x must be an array of real numbers, got ndarray of dtype complex128"):
        standardize(x + 1j, mean, std)
    with pytest.raises(ValueError, match=r"x_train has 6 non-finite value\(s\)"):
        feature_stats(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match=r"eps must be in \[0, inf\), got -1"):
        feature_stats(x, eps=-1)
    with pytest.raises(TypeError, match="eps must be a real number, got 'a'"):
        feature_stats(x, eps="a")


# --------------------------------------------------------------------------- batches


def test_split_labels_are_class_ids_and_drop_last_a_bool():
    rng = np.random.default_rng(0)
    for labels in (np.array([0.5, 1.5] * 5), np.array([np.nan] * 10)):  # 0.5 a class, each NaN one of its own
        with pytest.raises(ValueError, match=f"labels must be whole-number class ids, got dtype {labels.dtype}"):
            train_test_indices(10, 0.2, rng, labels=labels)
    for labels in (np.array([0.0, 1.0] * 5), np.array([True, False] * 5)):  # whole numbers, as load_file takes
        assert len(train_test_indices(10, 0.2, rng, labels=labels)[1]) == 2
    with pytest.raises(TypeError, match="drop_last must be True or False, got 'no'"):
        batches(10, 3, rng, drop_last="no")


@given(n=st.integers(1, 50), bs=st.integers(1, 20), drop=st.booleans(), seed=st.integers(0, 1000))
def test_batches_cover_a_permutation(n, bs, drop, seed):
    if drop and bs > n:
        with pytest.raises(ValueError, match="empty epoch"):
            batches(n, bs, np.random.default_rng(seed), drop_last=drop)
        return
    rng = np.random.default_rng(seed)
    out = list(batches(n, bs, rng, drop_last=drop))
    flat = np.concatenate(out)
    assert len(np.unique(flat)) == len(flat)
    if drop:
        assert all(len(b) == bs for b in out) and len(out) == n // bs
    else:
        np.testing.assert_array_equal(np.sort(flat), np.arange(n))
    again = list(batches(n, bs, np.random.default_rng(seed), drop_last=drop))
    assert all(np.array_equal(a, b) for a, b in zip(out, again))


def test_batches_advance_the_generator():
    rng = np.random.default_rng(0)
    first = np.concatenate(list(batches(30, 10, rng)))
    second = np.concatenate(list(batches(30, 10, rng)))
    assert not np.array_equal(first, second)


def test_batches_bad_args():
    with pytest.raises(ValueError, match="batch_size"):
        batches(10, 0, np.random.default_rng(0))
    with pytest.raises(TypeError, match="rng"):
        batches(10, 2, None)


def test_files_of_the_wrong_kind_or_cut_short_are_named_as_such(tmp_path):
    """Empty, truncated and misnamed files get what is wrong with them, never a raw numpy error
    (EOFError, BadZipFile, a context-manager TypeError) or numpy's hint to enable pickle."""
    x = np.random.default_rng(0).random((20, 4))
    (tmp_path / "e.npy").write_bytes(b"")
    (tmp_path / "e.npz").write_bytes(b"")
    np.save(tmp_path / "a.npy", x)
    (tmp_path / "a.npz").write_bytes((tmp_path / "a.npy").read_bytes())  # an .npy under an .npz name
    np.savez(tmp_path / "z.npz", x=x)
    raw = (tmp_path / "z.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[:len(raw) // 2])
    (tmp_path / "cut.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:100])
    (tmp_path / "text.npy").write_text("1,2,3\n")
    np.savez(tmp_path / "arch.npz", x=x)
    (tmp_path / "arch.npy").write_bytes((tmp_path / "arch.npz").read_bytes())
    np.savez(tmp_path / "none.npz")  # a zip of no files: it was "not a zip archive, which numpy.savez writes"
    flag = bytearray(raw)  # one flipped bit: zipfile's RuntimeError "File ... is encrypted, password required"
    flag[flag.find(b"PK\x01\x02") + 8] |= 1
    (tmp_path / "flag.npz").write_bytes(bytes(flag))
    cases = [("e.npy", "is not an .npy file: it is empty"), ("e.npz", "is not an .npz file: it is empty"),
             ("a.npz", "is an .npy array; rename it to .npy"), ("cut.npz", "is truncated or corrupt"),
             ("cut.npy", "is truncated or corrupt"), ("text.npy", "does not start with the .npy header"),
             ("arch.npy", "it is an .npz archive; rename it to .npz"),
             ("none.npz", "holds no arrays: an .npz of none, as numpy.savez with no arrays writes"),
             ("flag.npz", r"is truncated or corrupt \(RuntimeError: File .* is encrypted")]
    for name, message in cases:
        with pytest.raises(ValueError, match=message):
            load_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="is a directory; expected a data file"):
        load_file(tmp_path)


def test_pickled_data_is_refused_without_inviting_to_unpickle(tmp_path):
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}], dtype=object))
    for name in ("o.npy", "o.npz"):
        with pytest.raises(ValueError, match="holds pickled .object. data, which byol-ref never loads") as info:
            load_file(tmp_path / name)
        assert "allow_pickle" not in str(info.value)


def test_csv_byte_order_mark_and_encoding(tmp_path):
    """A spreadsheet's UTF-8 byte-order mark is not a header: all 20 rows are samples."""
    rng = np.random.default_rng(0)
    rows = [",".join(f"{v:.3f}" for v in rng.random(4)) + f",{i % 2}" for i in range(20)]
    (tmp_path / "bom.csv").write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    ds = load_file(tmp_path / "bom.csv", labels=4)
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == 20 and ds.x_train.shape[1] == 4
    (tmp_path / "latin.csv").write_bytes("a,b\n1,2\n3,\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.csv' is not UTF-8 text \(byte 0xe9 at offset 10, line 3\); save "
                                         r"the CSV as UTF-8$"):
        load_file(tmp_path / "latin.csv")
    # The offset is the file's, not that of the chunk being decoded (it said 6010 for a byte at 128890).
    text = "".join(f"{i},{i + 0.5}\n" for i in range(20000)).encode()
    at = len(text) // 2
    line = text[:at].count(b"\n") + 1
    (tmp_path / "long.csv").write_bytes(text[:at] + b"\xe9" + text[at + 1:])
    with pytest.raises(ValueError, match=rf"long.csv' is not UTF-8 text \(byte 0xe9 at offset {at}, line {line}\)"):
        load_file(tmp_path / "long.csv")
    for bom in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # (Excel's "Unicode text")
        (tmp_path / "u16.csv").write_bytes(bom + "a,b\n1,2\n".encode("utf-16-le" if bom == codecs.BOM_UTF16_LE
                                                                    else "utf-16-be"))
        with pytest.raises(ValueError, match=r"u16.csv' is UTF-16 text \(it starts with UTF-16's byte-order mark\); "
                                             r"save the CSV as UTF-8$"):
            load_file(tmp_path / "u16.csv")
    # A label file names itself once, as a table does.
    np.save(tmp_path / "x.npy", np.zeros((3, 2)))
    (tmp_path / "names.csv").write_bytes("caf\xe9\nb\nc\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"^labels file '[^']*names.csv' is not UTF-8 text \(byte 0xe9 at offset 3, line "
                                         r"1\)"):
        load_file(tmp_path / "x.npy", labels=str(tmp_path / "names.csv"))


def test_labels_given_as_text_index_as_a_command_line_passes_them(tmp_path):
    """labels="4" is column 4 (and "-1" the last) unless a header names a column "4"."""
    rng = np.random.default_rng(1)
    table = np.column_stack([rng.random((20, 4)), np.arange(20) % 2])
    np.savetxt(tmp_path / "t.csv", table, delimiter=",")
    a, b, c = (load_file(tmp_path / "t.csv", labels=v) for v in ("4", -1, "-1"))
    assert np.array_equal(a.y_train, b.y_train) and np.array_equal(a.x_train, c.x_train)
    assert a.x_train.shape[1] == 4
    (tmp_path / "h.csv").write_text("f0,4,f2\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(20)) + "\n")
    named = load_file(tmp_path / "h.csv", labels="4", header=True)  # the header's column "4", not column index 4
    assert set(named.y_train) == {0, 1, 2} and named.x_train.shape[1] == 2


def test_labels_too_large_for_class_ids_and_bad_split_seed(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((20, 3)))
    np.save(tmp_path / "y.npy", np.array([1e30] * 10 + [0.0] * 10))
    with pytest.raises(ValueError, match=r"must be class ids below 2\*\*31, got 1e\+30 at index 0"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    np.save(tmp_path / "yneg.npy", np.array([-1e30] + [0.0] * 19))
    with pytest.raises(ValueError, match=r"must be class ids >= 0, got -1e\+30 at index 0"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "yneg.npy")
    with pytest.raises(ValueError, match=r"seed \(of the train/test split\) must be an int >= 0, got -1"):
        load_file(tmp_path / "x.npy", seed=-1)


def test_class_names_in_the_label_column_are_read_as_ids_in_sorted_order(tmp_path):
    """Class names as labels (iris's "setosa", a column of "cat" and "dog") were refused ("map class
    names to ids first"), as scikit-learn would not have. They are now ids 0..K-1 in the names'
    sorted order, whichever way the column is named, and the names are kept (label_names). A
    column of names not given as the labels is still refused, saying how to name it."""
    rows = "\n".join(f"{i / 10},{(i * 7) % 5 / 10},{'cat' if i % 2 else 'dog'}" for i in range(20))
    (tmp_path / "named.csv").write_text("a,b,label\n" + rows + "\n")
    want = np.array([1 if i % 2 == 0 else 0 for i in range(20)])  # cat = 0, dog = 1
    for labels in ("label", 2, "2", -1):
        ds = load_file(tmp_path / "named.csv", labels=labels)
        assert ds.label_names == ("cat", "dog") and ds.x_train.shape[1] == 2
        x = np.concatenate([ds.x_train, ds.x_test])
        y = np.concatenate([ds.y_train, ds.y_test])
        assert y.dtype == np.int64 and np.array_equal(y, want[np.round(x[:, 0] * 10).astype(int)])
    with pytest.raises(ValueError, match=r"non-numeric value 'dog' at line 2, column 2 \('label'\); expected numbers "
                                         r"only; if that column holds the classes, name it as the labels "
                                         r"\(labels='label', --labels label\)$"):
        load_file(tmp_path / "named.csv")
    # labels=2 (an int) is column 2, though the header names column 0 "2"; labels="2" is that column 0
    (tmp_path / "digits.csv").write_text("2,b,label\n" + rows + "\n")
    assert load_file(tmp_path / "digits.csv", labels=2, header=True).label_names == ("cat", "dog")
    with pytest.raises(ValueError, match=r"non-numeric value 'dog' at line 2, column 2 \('label'\)"):
        load_file(tmp_path / "digits.csv", labels="2", header=True)
    (tmp_path / "ids.csv").write_text("a,b,label\n" + rows.replace("cat", "0").replace("dog", "1") + "\n")
    assert load_file(tmp_path / "ids.csv", labels="label").label_names is None  # ids stay ids
    (tmp_path / "gap.csv").write_text("a,b,label\n" + rows + "\n0.5,0.5,\n")
    with pytest.raises(ValueError, match=r"gap.csv'?: the label column \('label'\) has an empty class name at line "
                                         r"22; every sample needs its class$"):
        load_file(tmp_path / "gap.csv", labels="label")


def test_a_table_of_class_names_without_a_header_needs_no_csv_header(tmp_path):
    """A CSV of features and a column of class names with no header (iris as some copies ship it)
    was refused until told header=False: its first row mixes numbers and a name. Where the only
    fields of it that are no number are the label column's, and that name comes again below in
    that column, it is a row of data, and csv_header_rule (what a run records) says so too. A first
    row whose name does not come again ("label" over cats and dogs) is still refused: it may be a
    header with numeric column names."""
    from byol_ref.data import csv_header_rule

    rows = "\n".join(f"{i / 10},{(i * 7) % 5 / 10},{'cat' if i % 2 else 'dog'}" for i in range(20))
    (tmp_path / "bare.csv").write_text(rows + "\n")
    want = np.array([1 if i % 2 == 0 else 0 for i in range(20)])  # cat = 0, dog = 1
    for labels in (2, "2", -1, "-1"):
        ds = load_file(tmp_path / "bare.csv", labels=labels)
        assert ds.label_names == ("cat", "dog")
        x = np.concatenate([ds.x_train, ds.x_test])
        assert x.shape == (20, 2) and sorted(x[:, 0].tolist()) == [i / 10 for i in range(20)]  # row 0 is data
        assert np.array_equal(np.concatenate([ds.y_train, ds.y_test]), want[np.round(x[:, 0] * 10).astype(int)])
        assert csv_header_rule(tmp_path / "bare.csv", labels) is False
    mixed = r"its first line \(0.0,0.0,dog\) mixes numbers and other fields"
    for labels in (None, 0, "label"):  # (not the labels: nothing says which column holds the names)
        with pytest.raises(ValueError, match=mixed):
            load_file(tmp_path / "bare.csv", labels=labels)
    (tmp_path / "once.csv").write_text("0.0,0.0,bird\n" + "\n".join(rows.splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=r"its first line \(0.0,0.0,bird\) mixes numbers and other fields"):
        load_file(tmp_path / "once.csv", labels=2)
    (tmp_path / "num.csv").write_text("1,2,label\n" + rows + "\n")
    with pytest.raises(ValueError, match=r"its first line \(1,2,label\) mixes numbers and other fields"):
        load_file(tmp_path / "num.csv", labels=2)
    assert load_file(tmp_path / "num.csv", labels="label").label_names == ("cat", "dog")
    assert csv_header_rule(tmp_path / "num.csv", "label") is True and csv_header_rule(tmp_path / "num.csv") is True


def test_class_names_in_label_files_and_npz_files_are_ids_too(tmp_path):
    """The same for a label file (.npy, .npz, .csv of names), an .npz's y, and a pre-split .npz,
    whose two splits are read as one (a class missing from y_train must not shift y_test's ids);
    names and ids mixed across the splits, and an empty name, are refused."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 3))
    names = np.array(["b", "a", "c"])[np.arange(30) % 3]
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", names)
    np.savez(tmp_path / "y.npz", labels=names.astype("S"))  # (bytes too)
    (tmp_path / "y.csv").write_text("class\n" + "\n".join(names) + "\n")
    np.savez(tmp_path / "xy.npz", x=x, y=names)
    for ds in (load_file(tmp_path / "x.npy", labels=tmp_path / "y.npy"),
               load_file(tmp_path / "x.npy", labels=tmp_path / "y.npz"),
               load_file(tmp_path / "x.npy", labels=str(tmp_path / "y.csv")), load_file(tmp_path / "xy.npz")):
        assert ds.label_names == ("a", "b", "c")
        rows = [int(np.flatnonzero((x == r).all(axis=1))[0]) for r in ds.x_train]
        assert np.array_equal(ds.y_train, np.array([1, 0, 2])[np.array(rows) % 3])
    np.savez(tmp_path / "split.npz", x_train=x[:20], x_test=x[20:], y_train=np.array(["b", "c"] * 10),
             y_test=np.array(["a", "b"] * 5))
    with pytest.warns(UserWarning, match=r"y_test in .* holds class\(es\) \['a'\] that y_train lacks"):
        ds = load_file(tmp_path / "split.npz")
    assert ds.label_names == ("a", "b", "c") and ds.y_train[:2].tolist() == [1, 2] and ds.y_test[:2].tolist() == [0, 1]
    np.savez(tmp_path / "mixed.npz", x_train=x[:20], x_test=x[20:], y_train=np.array(["b", "c"] * 10),
             y_test=np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match=r"one of y_train and y_test holds class names and the other numbers"):
        load_file(tmp_path / "mixed.npz")
    np.save(tmp_path / "gap.npy", np.where(np.arange(30) == 7, " ", names))
    with pytest.raises(ValueError, match=r"labels file .*gap.npy'? has an empty class name at index 7"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "gap.npy")
    # "NA" among ids is a missing label, not a class of its own; ids written as text are ids.
    np.save(tmp_path / "na.npy", np.where(np.arange(30) == 4, "NA", (np.arange(30) % 3).astype(str)))
    with pytest.raises(ValueError, match=r"na.npy'? holds both numbers \('0' at index 0\) and other values \('NA' at "
                                         r"index 4\); expected class ids or class names, not both \(a missing label"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "na.npy")
    (tmp_path / "na.csv").write_text("label\n" + "\n".join(np.load(tmp_path / "na.npy").tolist()) + "\n")
    with pytest.raises(ValueError, match=r"na.csv'?: the label column \('label'\) holds both numbers \('0' at line 2\) "
                                         r"and other values \('NA' at line 6\); expected class ids or class names, "
                                         r"not both"):
        load_file(tmp_path / "x.npy", labels=str(tmp_path / "na.csv"))
    np.save(tmp_path / "text.npy", (np.arange(30) % 3).astype(str))
    ds = load_file(tmp_path / "x.npy", labels=tmp_path / "text.npy")
    assert ds.label_names is None and ds.y_train.dtype == np.int64
    # A label .csv of names with no header: its first name is a label, not a header, as it comes again
    # below; a header over one row too few is still the header (and the count is refused).
    (tmp_path / "bare.csv").write_text("\n".join(names) + "\n")
    assert load_file(tmp_path / "x.npy", labels=str(tmp_path / "bare.csv")).label_names == ("a", "b", "c")
    (tmp_path / "short.csv").write_text("class\n" + "\n".join(names[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"short.csv'? has 29 labels but the features have 30 samples"):
        load_file(tmp_path / "x.npy", labels=str(tmp_path / "short.csv"))


def test_class_ids_from_2_to_the_31_on_are_refused_and_float_ids_come_back_as_int64(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((20, 3)))
    np.save(tmp_path / "y.npy", np.array([2**31] + [0] * 19, dtype=np.int64))
    with pytest.raises(ValueError, match=r"must be class ids below 2\*\*31, got 2147483648 at index 0"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    np.save(tmp_path / "yf.npy", (np.arange(20) % 3).astype(np.float64))
    ds = load_file(tmp_path / "x.npy", labels=tmp_path / "yf.npy")
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64


def test_a_header_that_claims_more_data_than_the_file_holds_is_refused_before_allocating(tmp_path):
    """A corrupt .npy header could claim terabytes: numpy would try to allocate them first."""
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "huge.npy").write_bytes(raw.replace(b"(4, 3)", b"(4000000000000, 3)"))
    with pytest.raises(ValueError, match=r"huge.npy' is corrupt or cut short: its header claims shape "
                                         r"\(4000000000000, 3\) of float64 \(96000000000000 bytes\) but it holds"):
        load_file(tmp_path / "huge.npy")


def test_an_npy_header_mangled_or_oversized_and_bytes_after_the_data_are_named(tmp_path):
    import struct

    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "tok.npy").write_bytes(raw[:8] + struct.pack("<H", 7) + raw[10:])  # header cut mid-dict
    with pytest.raises(ValueError, match=r"tok.npy' is truncated or corrupt \(its .npy header: "):
        load_file(tmp_path / "tok.npy")
    big = raw[:8] + struct.pack("<H", 20000) + raw[10:10 + 80].ljust(20000, b" ") + raw[10 + 118:]
    (tmp_path / "big.npy").write_bytes(big)
    with pytest.raises(ValueError, match=r"big.npy' is truncated or corrupt \(its .npy header: [^\n]*\)$") as err:
        load_file(tmp_path / "big.npy")
    assert "allow_pickle" not in str(err.value)  # NumPy's advice: not ours to give
    (tmp_path / "tail.npy").write_bytes(raw + b"\x00" * 8)
    with pytest.raises(ValueError, match=r"tail.npy' is corrupt or cut short: its header claims shape \(4, 3\) of "
                                         r"float64 \(96 bytes\) but it holds 104 bytes of data"):
        load_file(tmp_path / "tail.npy")


def test_an_npy_header_whose_dict_has_a_bytes_or_list_key_is_named_as_corrupt(tmp_path):
    """A mangled .npy header whose dict NumPy cannot read for a key of bytes or a list (a flipped byte
    made 'fortran_order' b'fortran_order') is refused naming the file, in an .npy, an .npz and a label
    file: NumPy's TypeError went through alone ("'<' not supported between instances of 'bytes' and
    'str'", "unhashable type: 'list'"), naming no file."""
    np.save(tmp_path / "x.npy", np.zeros((4, 3)))
    raw = (tmp_path / "x.npy").read_bytes()
    bytes_key = raw.replace(b"'fortran_order'", b"b'fortran_order'").replace(b" \n", b"\n", 1)  # (as long as it was)
    list_key = raw.replace(b"'fortran_order'", b"['fortran_order']").replace(b"  \n", b"\n", 1)
    for name, data, said in (("bk", bytes_key, "'<' not supported between instances of 'bytes' and 'str'"),
                             ("lk", list_key, "unhashable type: 'list'")):
        (tmp_path / f"{name}.npy").write_bytes(data)
        with pytest.raises(ValueError, match=rf"^file .*{name}.npy'? is truncated or corrupt \(its .npy header: "
                                             rf"{said}\)$"):
            load_file(tmp_path / f"{name}.npy")
        with zipfile.ZipFile(tmp_path / f"{name}.npz", "w") as z:
            z.writestr("x.npy", data)
        with pytest.raises(ValueError, match=rf"^file .*{name}.npz'? is truncated or corrupt \(TypeError: {said}\)$"):
            load_file(tmp_path / f"{name}.npz")
        with pytest.raises(ValueError, match=rf"^labels file .*{name}.npy'? is truncated or corrupt"):
            load_file(tmp_path / "x.npy", labels=tmp_path / f"{name}.npy")


def test_an_npz_with_keys_outside_its_layout_or_a_member_of_the_wrong_size_is_refused(tmp_path):
    """labels under another name than y would be dropped without a word; a member whose header
    claims fewer rows than it holds would be cut short."""
    import io
    import zipfile

    x, y = _table(n=10, d=4)
    for keys in (dict(x=x, labels=y), dict(x=x, x_train=x, x_test=x), dict(x_train=x, x_test=x, y=y), dict(z=x)):
        np.savez(tmp_path / "k.npz", **keys)
        with pytest.raises(ValueError, match=r"k.npz'? must hold x \(and y\), or x_train and x_test \(and y_train "
                                             r"and y_test\), and nothing else; got " + re.escape(str(sorted(keys)))):
            load_file(tmp_path / "k.npz")
    for present, lacks in (("x_test", "x_train"), ("x_train", "x_test")):  # half of the split layout
        np.savez(tmp_path / "half.npz", **{present: x})
        with pytest.raises(ValueError, match=rf"half.npz'? holds x_train/x_test layout but lacks '{lacks}'"):
            load_file(tmp_path / "half.npz")
    buf = io.BytesIO()
    np.save(buf, x)
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue().replace(b"(10, 4)", b"(8, 4) "))
    with pytest.raises(ValueError, match=r"cut.npz'? is corrupt: its member 'x': its header claims shape \(8, 4\) of "
                                         r"float64 \(256 bytes\) but it holds 320 bytes of data"):
        load_file(tmp_path / "cut.npz")
    np.savez_compressed(tmp_path / "ok.npz", x=x, y=y)  # compressed members are measured uncompressed
    ok = load_file(tmp_path / "ok.npz", test_fraction=0.5)
    assert len(ok.x_train) + len(ok.x_test) == 10 and ok.x_train.shape[1] == 4


def test_an_npz_member_named_without_npy_is_measured_as_an_array_too(tmp_path):
    """NumPy reads a member of an .npz that starts as an .npy does as an array whatever its name (a
    hand-made zip's 'x'), and the size check passed over members not named .npy: a header claiming 8
    of the 10 rows the member holds loaded 8 rows without a word, and one claiming 8 GB had NumPy
    allocate before it found the data short. Both are refused naming the member, as for 'x.npy'."""
    def npy(shape):  # (a header by hand, padded as NumPy pads it, above 10 x 4 float64: 320 bytes)
        header = repr({"descr": "<f8", "fortran_order": False, "shape": shape}).encode()
        header += b" " * (-(len(header) + 11) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + np.ones((10, 4)).tobytes()

    for name, shape, claim in (("cut", (8, 4), r"\(8, 4\) of float64 \(256 "),
                               ("big", (10**9,), r"\(1000000000,\) of float64 \(8000000000 ")):
        with zipfile.ZipFile(tmp_path / f"{name}.npz", "w") as z:
            z.writestr("x", npy(shape))
        with pytest.raises(ValueError, match=rf"^file .*{name}.npz'? is corrupt: its member 'x': its header claims "
                                             rf"shape {claim}bytes\) but it holds 320 bytes of data$"):
            load_file(tmp_path / f"{name}.npz")


def test_an_npz_member_that_is_no_npy_array_is_refused(tmp_path):
    """NumPy hands back the raw bytes of such a member; every reader would take them for data."""
    import zipfile

    from byol_ref.interchange import load_arrays
    from byol_ref.trace import TraceError, load_trace

    np.savez(tmp_path / "d.npz", x=np.ones((10, 3)))
    with zipfile.ZipFile(tmp_path / "d.npz", "a") as z:
        z.writestr("readme.txt", b"junk")
    with pytest.raises(ValueError, match=r"d.npz'? holds 1 member\(s\) that are not .npy arrays \(\['readme.txt'\]\)"):
        load_file(tmp_path / "d.npz")
    for read in (load_trace, load_arrays):
        with pytest.raises(TraceError, match=r"holds 1 member\(s\) that are not .npy arrays"):
            read(tmp_path / "d.npz")


def test_what_the_mutation_audit_found_no_test_for_in_the_data(tmp_path):
    from pathlib import Path

    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="labels must be whole-number class ids, got dtype float64"):
        train_test_indices(4, 0.5, rng, labels=np.array([0.0, 1.0, np.inf, 1.0]))
    (tmp_path / "d.txt").write_text("a,lab.csv\n" + "".join(f"{i / 10},{i % 2}\n" for i in range(10)))
    assert labels_file("lab.csv", tmp_path / "d.txt") is None  # a .txt is read as CSV: its header names a column
    assert labels_file("lab.csv", tmp_path / "d.txt", header=False) == Path("lab.csv")  # no header: a file
    assert labels_file(2, tmp_path / "d.txt") is None and labels_file(None, tmp_path / "d.txt") is None
    assert synthetic(noise=0).x_train.shape[1] == 32  # noise-free data
    with pytest.raises(TypeError, match="x_train must be an array of real numbers, got ndarray of dtype <U1"):
        feature_stats(np.array([["1", "2"], ["3", "4"]]))  # (not parsed as numbers)
    with pytest.raises(TypeError, match="x_train must be an array of real numbers, got list"):
        feature_stats([[1, 2], [3]])  # ragged
    np.testing.assert_array_equal(feature_stats(np.eye(3, dtype=bool))[0], [1 / 3] * 3)
    # eps = 0: a constant feature's std of 0 is replaced all the same, so that standardize takes it
    x = np.column_stack([np.ones(5), np.arange(5.0)])
    mean, std = feature_stats(x, eps=0)
    assert std[0] == 1.0 and np.all(standardize(x, mean, std)[:, 0] == 0)


# ---------------------------------------------------------------------------------------
# What a mutation audit found untested: synthetic noise, pre-split shapes, the split's and the batches' draws.
# ---------------------------------------------------------------------------------------


def test_synthetic_noise_fills_the_other_dimensions():
    clean = synthetic(n=60, dim=10, latent_dim=3, noise=0.0, seed=1)
    noisy = synthetic(n=60, dim=10, latent_dim=3, noise=0.1, seed=1)
    assert np.linalg.matrix_rank(clean.x_train) == 3 and np.linalg.matrix_rank(noisy.x_train) == 10


def test_presplit_npz_with_different_image_shapes_is_refused(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x_train=np.zeros((4, 8, 8)), x_test=np.zeros((2, 4, 16)))
    with pytest.raises(ValueError, match="have different image shapes"):
        load_file(path)


def test_stratified_split_draws_each_class_test_samples_at_random():
    labels = np.repeat([0, 1], 50)
    tests = [tuple(train_test_indices(100, 0.2, np.random.default_rng(s), labels=labels)[1]) for s in range(3)]
    assert len(set(tests)) == 3
    assert tests[0] != tuple(list(range(10)) + list(range(50, 60)))


def test_batches_draw_the_permutation_when_called():
    from byol_ref.data import batches

    r = np.random.default_rng(10)
    before = r.bit_generator.state
    it = batches(10, 2, r)
    assert r.bit_generator.state != before  # drawn now, not at the first next()
    after = r.bit_generator.state
    next(it)
    assert r.bit_generator.state == after


def test_a_column_named_like_labels_read_as_a_feature_is_warned_of(tmp_path):
    """Without labels=, a header's 'label' column was trained on as a feature (the labels leaking into
    the inputs), and the run said it had nothing to probe only once it had trained."""
    rows = "\n".join(f"{i * 0.5},{i % 3},{1.0 - i}" for i in range(12))
    (tmp_path / "t.csv").write_text("f0, Target ,f1\n" + rows + "\n")
    with pytest.warns(UserWarning, match=r"column 1 \('Target'\) is named like labels, but no labels were asked "
                                         r"for, so it is read as a feature; if it holds the class ids, pass "
                                         r"labels='Target' \(on the command line, --labels Target\)"):
        ds = load_file(tmp_path / "t.csv")
    assert ds.y_train is None and ds.x_train.shape[1] == 3
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_file(tmp_path / "t.csv", labels="Target").x_train.shape[1] == 2  # asked for: no warning
        (tmp_path / "u.csv").write_text("f0,labelled,f1\n" + rows + "\n")
        load_file(tmp_path / "u.csv")  # a name that only contains one


def test_a_path_that_is_no_regular_file_is_named_as_such(tmp_path):
    """A FIFO or a device (/dev/null) exists: it was refused as "no such file", for data and labels alike.
    It is a FileNotFoundError (no regular file to read), as a folder or a missing file is, and as the
    other readers (checkpoints, traces, weights files) raise it."""
    import os
    from pathlib import Path

    fifo = tmp_path / "x.npy"
    os.mkfifo(fifo)
    np.savetxt(tmp_path / "d.csv", np.random.default_rng(0).standard_normal((10, 3)), delimiter=",")
    for call, arg in ((lambda p: load_file(p), "path"), (lambda p: load_file(tmp_path / "d.csv", labels=p), "labels")):
        for p in (fifo, "/dev/null"):
            if p == "/dev/null" and arg == "labels":
                p = Path("/dev/null")  # (a str not ending in .npy/.csv/.txt names a column)
            expected = "a data file" if arg == "path" else \
                r"a label file \(\.npy, \.npz, \.csv or \.txt, one class id per row\)"  # (it said "a data file")
            says = rf"^{arg}: '{p}' is not a regular file \(a pipe, device or socket\); expected {expected}$"
            with pytest.raises(FileNotFoundError, match=says):
                call(p)
    link = tmp_path / "moved.csv"
    link.symlink_to(tmp_path / "elsewhere" / "d.csv")
    with pytest.raises(FileNotFoundError, match=rf"^path: '{link}' is a link to {tmp_path / 'elsewhere' / 'd.csv'}, "
                                                r"which leads to no file \(a disk not mounted, a file moved\?\); "
                                                "expected a data file$"):
        load_file(link)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_file(tmp_path / "gone.npy")
    with pytest.raises(FileNotFoundError, match=r"^path: the path is empty \(''\); expected a data file$"):
        load_file("")  # (found by a mutation audit: "path: '.' is a directory", as Path('') is Path('.'))
    with pytest.raises(FileNotFoundError, match=r"^path: the path is empty \(''\); expected a data file$"):
        load_file(_EmptyPathLike())  # (found by a mutation audit: a test of str(path), not os.fspath, passed)


class _EmptyPathLike:
    """An os.PathLike whose path is '' (Path('') is already Path('.'), so only such an object is an empty
    path that is no str)."""

    def __fspath__(self):
        return ""


def test_standardize_refuses_a_non_finite_x_and_standardize_dataset_a_non_dataset():
    """Found by an API audit: standardize checked its mean and std but not x, so NaN or inf in x
    (a test split, say) came back standardised as NaN without a word; standardize_dataset(None)
    was an AttributeError."""
    x = np.arange(6.0).reshape(2, 3)
    mean, std = feature_stats(x)
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[1, 2] = bad
        with pytest.raises(ValueError, match=r"x has 1 non-finite value\(s\) \(NaN or inf\); the first is at index "
                                             r"\(1, 2\)"):
            standardize(y, mean, std)
    with pytest.raises(TypeError, match="ds must be a Dataset .*got NoneType"):
        standardize_dataset(None)


# ---------------------------------------------------------------------------------------
# A second mutation audit: the split rule step by step, the synthetic generator's model, the digits'
# labels against their images, the CSV header rule.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_train_test_indices_follow_the_documented_rule(seed):
    """The rule of the docstring (and of datasets/README.md, which made digits.npz), replayed step by step:
    the first indices of each permutation go to test, and the classes take their turns in ascending order."""
    n, f = 23, 0.3
    perm = np.random.default_rng(seed).permutation(n)
    train, test = train_test_indices(n, f, np.random.default_rng(seed))
    np.testing.assert_array_equal(test, np.sort(perm[:7]))  # floor(0.3 * 23 + 0.5) = 7
    np.testing.assert_array_equal(train, np.sort(perm[7:]))
    labels = np.random.default_rng(seed + 10).integers(0, 3, size=n)
    rng = np.random.default_rng(seed)
    tests = []
    for c in (0, 1, 2):
        idx = np.flatnonzero(labels == c)
        tests.append(rng.permutation(idx)[:math.floor(f * idx.size + 0.5)])
    train, test = train_test_indices(n, f, np.random.default_rng(seed), labels=labels)
    np.testing.assert_array_equal(test, np.sort(np.concatenate(tests)))
    np.testing.assert_array_equal(train, np.setdiff1d(np.arange(n), test))


def test_an_unlabelled_split_always_keeps_a_training_sample():
    """A test fraction that rounds up to every sample (0.75 of 2 is 1.5, rounded to 2) is capped at n - 1."""
    for n, f in ((2, 0.75), (10, 0.97)):
        train, test = train_test_indices(n, f, np.random.default_rng(0))
        assert (train.size, test.size) == (1, n - 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_follows_its_generative_model(seed):
    """One class, so x = (mu + N(0, I_L)) Q^T + noise N(0, I_D) with Q^T's rows orthonormal: the covariance of x
    has L eigenvalues 1 + noise^2 (the latent directions, kept at unit scale) and D - L eigenvalues noise^2."""
    ds = synthetic(4000, 8, 1, latent_dim=3, noise=0.5, seed=seed)
    eig = np.linalg.eigvalsh(np.cov(ds.x_train.T))  # ascending; 3200 samples: a few percent of sampling error
    assert np.all((0.2 < eig[:5]) & (eig[:5] < 0.3)) and np.all((1.1 < eig[5:]) & (eig[5:] < 1.45)), eig


def test_digits_labels_belong_to_their_images():
    """The labels are aligned with the rows: the class means of the training split classify the test split
    (88% with nearest centroids; labels shuffled against their images would give about 10%)."""
    ds = load_digits()
    centroids = np.stack([ds.x_train[ds.y_train == c].mean(axis=0) for c in range(10)])  # (10, 64)
    pred = ((ds.x_test[:, None, :] - centroids) ** 2).sum(axis=2).argmin(axis=1)
    assert (pred == ds.y_test).mean() > 0.8


def test_csv_header_rule_is_a_field_that_is_no_number(tmp_path):
    """csv_header_rule (what a run records as --csv-header): the first row is a header when any of its
    fields is not a number, so a header with some numeric names (read with labels naming one) counts."""
    from byol_ref.data import csv_header_rule

    for text, expected in (("a,b,label\n1,2,0\n", True), ("2020,b,label\n1,2,0\n", True),
                           ("1,2,0\n3,4,1\n", False), ("", False)):
        path = tmp_path / "t.csv"
        path.write_text(text)
        assert csv_header_rule(path) is expected, text
    # It reads no further than it needs (a run records it once its data have been read whole; a table
    # of MNIST's size takes seconds a reading): here, not to the bytes that are no UTF-8, which lie past
    # the first chunks of 8 KB that Python decodes at once.
    (tmp_path / "t.csv").write_bytes(b"1,2,0\n3,4,1\n" * 10_000 + b"\xff\xfe\n")
    assert csv_header_rule(tmp_path / "t.csv") is False
    (tmp_path / "t.csv").write_bytes(b"1,2,cat\n3,4,cat\n" * 10_000 + b"\xff\xfe\n")
    assert csv_header_rule(tmp_path / "t.csv", 2) is False
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 0xff at offset 160000, line 20001\)"):
        load_file(tmp_path / "t.csv", labels=2)


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_feature_stats_refuses_values_whose_std_overflows():
    """feature_stats returned an inf std (after NumPy's overflow warning) for finite values near 1e300,
    which standardize then refused as "std has 1 non-finite value(s)", of an argument the caller never
    passed; it now says what is wrong with x_train, as training does."""
    x = np.random.default_rng(0).standard_normal((10, 3))
    x[4, 1] = 1e300
    with pytest.raises(ValueError, match=r"^x_train has values whose standardisation overflows to inf or NaN "
                                         r"\(largest magnitude 1e\+300\); rescale the data$"):
        feature_stats(x)
    x[4, 1] = 1e150  # (its square, 1e300, is finite: accepted)
    assert np.isfinite(feature_stats(x)[1]).all()


# ---------------------------------------------------------------------------------------
# Refusals a coverage run found that no test reached: the user's files (CSV, .npy, .npz, pre-split .npz,
# label files of class names), the embedded digits file, feature_stats and standardize.
# ---------------------------------------------------------------------------------------


def test_a_presplit_npz_whose_x_test_holds_no_samples_names_x_test(tmp_path):
    """A pre-split .npz whose x_test is a single number (0-d) was refused as "x_train ... must hold at
    least 2 samples, got shape ()", naming the split that was fine; it is now x_test, and what it must
    be. An x_test of 0 samples (an empty test split) is taken, as before."""
    np.savez(tmp_path / "s.npz", x_train=np.zeros((4, 2)), x_test=np.float64(1.0))
    with pytest.raises(ValueError, match=r"^x_test in file .*s.npz'? must be a feature matrix \(N, D\), images "
                                         r"\(N, H, W\) or \(N, C, H, W\); got shape \(\)$"):
        load_file(tmp_path / "s.npz")
    for x_train in (np.float64(1.0), np.zeros((1, 2))):
        np.savez(tmp_path / "s.npz", x_train=x_train, x_test=np.zeros((2, 2)))
        with pytest.raises(ValueError, match=rf"^x_train in file .*s.npz'? must hold at least 2 samples, got shape "
                                             rf"{re.escape(str(x_train.shape))}$"):
            load_file(tmp_path / "s.npz")
    np.savez(tmp_path / "s.npz", x_train=np.zeros((4, 2)), x_test=np.zeros((0, 2)))
    assert load_file(tmp_path / "s.npz").x_test.shape == (0, 2)


def test_a_presplit_npz_with_labels_for_one_split_only_says_which_it_holds(tmp_path):
    """A pre-split .npz with y_train and no y_test (or the reverse) was told it "must hold both y_train
    and y_test or neither", not which of them it holds; it now says so."""
    x = {"x_train": np.zeros((4, 2)), "x_test": np.zeros((2, 2))}
    for held, lacked, y in (("y_train", "y_test", np.array([0, 1, 0, 1])), ("y_test", "y_train", np.array([0, 1]))):
        np.savez(tmp_path / "s.npz", **x, **{held: y})
        with pytest.raises(ValueError, match=rf"^file .*s.npz'? holds {held} but no {lacked}; it must hold both "
                                             r"y_train and y_test or neither$"):
            load_file(tmp_path / "s.npz")


def test_a_stray_quote_that_swallows_the_rest_of_a_long_csv_names_the_line_it_opens_on(tmp_path):
    """A stray quote that opens a field early in a long CSV swallows rows until the field passes the
    csv module's size limit (131072 characters), far below: the user was sent to that line ("is not a
    readable CSV table (line 32771: field larger than field limit (131072))"), where nothing is wrong.
    The message now names the line the field starts on, as for a stray quote in a short file; a field
    over the limit on one line (no stray quote) is still named at its line."""
    (tmp_path / "q.csv").write_text('a,b\n1,2\n3,"4\n' + "5,6\n" * 40_000)
    with pytest.raises(ValueError, match=r"q.csv'?: a field that starts on line 3 runs on to line \d{5}, past the "
                                         r"131072 characters a field may hold: rows a stray quote swallowed$"):
        load_file(tmp_path / "q.csv")
    (tmp_path / "w.csv").write_text("a,b\n1,2\n3," + "4" * 140_000 + "\n5,6\n")
    with pytest.raises(ValueError, match=r"w.csv'? is not a readable CSV table \(line 3: field larger than field "
                                         r"limit \(131072\)\)$"):
        load_file(tmp_path / "w.csv")


def test_a_missing_or_corrupt_embedded_digits_file_is_named(tmp_path, monkeypatch):
    """An install without the embedded digits (package data left out), or with a digits file of other
    shapes, is told which file and how to make it again, not a bare FileNotFoundError or an IndexError."""
    import byol_ref.data as data

    monkeypatch.setattr(data, "DIGITS_PATH", tmp_path / "digits.npz")
    with pytest.raises(FileNotFoundError, match=r"^embedded digits file not found at .*digits.npz; regenerate it "
                                                r"with scripts/make_digits_npz.py$"):
        load_digits()
    np.savez(tmp_path / "digits.npz", x_train=np.zeros((5, 64)), y_train=np.zeros(5, int),
             x_test=np.zeros((2, 8, 8)), y_test=np.zeros(2, int))
    with pytest.raises(ValueError, match=r"digits.npz is corrupt: x_train \(5, 64\), y_train \(5,\)$"):
        load_digits()
    np.savez(tmp_path / "digits.npz", x_train=np.zeros((5, 8, 8)), y_train=np.zeros(5, int),
             x_test=np.zeros((2, 8, 8)), y_test=np.zeros(3, int))
    with pytest.raises(ValueError, match=r"digits.npz is corrupt: x_test \(2, 8, 8\), y_test \(3,\)$"):
        load_digits()


def test_an_empty_csv_data_or_label_file_is_refused_as_empty(tmp_path):
    """A CSV with nothing in it, or only blank lines and a spreadsheet's empty rows, is named as empty,
    as a data file and as a label file."""
    np.save(tmp_path / "x.npy", np.zeros((4, 2)))
    for text in ("", "\n\n", " ,\n,,\n"):
        (tmp_path / "e.csv").write_text(text)
        with pytest.raises(ValueError, match=r"^file .*e.csv'? is empty \(expected a numeric CSV table\)$"):
            load_file(tmp_path / "e.csv")
        with pytest.raises(ValueError, match=r"^labels file .*e.csv'? is empty \(expected a numeric CSV table\)$"):
            load_file(tmp_path / "x.npy", labels=str(tmp_path / "e.csv"))


def test_a_csv_rewritten_with_utf8_text_while_it_was_read_is_still_named_as_no_utf8(tmp_path, monkeypatch):
    """What is not UTF-8 in a CSV is found by reading the file again; a file rewritten in between (as
    UTF-8 text) has no bad byte left to show, and is named as not UTF-8 text, without a place."""
    (tmp_path / "t.csv").write_bytes(b"1,2\n3,\xff\n")
    monkeypatch.setattr(type(tmp_path), "read_bytes", lambda self: b"1,2\n3,4\n")  # (the second read)
    with pytest.raises(ValueError, match=r"t.csv'? is not UTF-8 text; save the CSV as UTF-8$"):
        load_file(tmp_path / "t.csv")


def test_class_names_of_another_shape_or_encoding_are_refused_by_name(tmp_path):
    """Class names stored as bytes that are no UTF-8 text, or in an array of 2 columns, are refused
    naming the label file; one column of names, (N, 1), is read as the names. Numeric class ids of 2
    columns are refused alike, in a label file and as an .npz's y."""
    x = np.random.default_rng(0).standard_normal((6, 2))
    np.save(tmp_path / "x.npy", x)
    names = np.array(["a", "b"] * 3)
    np.save(tmp_path / "col.npy", names[:, None])
    ds = load_file(tmp_path / "x.npy", labels=tmp_path / "col.npy", test_fraction=0)
    assert ds.label_names == ("a", "b") and ds.y_train.tolist() == [0, 1] * 3
    np.save(tmp_path / "bytes.npy", np.array([b"a", b"\xff"] * 3))
    with pytest.raises(ValueError, match=r"^labels file .*bytes.npy'? holds class names that are not UTF-8 text$"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "bytes.npy")
    np.save(tmp_path / "two.npy", np.stack([names, names], axis=1))
    with pytest.raises(ValueError, match=r"^labels file .*two.npy'? must be 1-D class names or ids \(N,\), got shape "
                                         r"\(6, 2\)$"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "two.npy")
    np.save(tmp_path / "ids2.npy", np.zeros((6, 2), dtype=int))
    with pytest.raises(ValueError, match=r"^labels file .*ids2.npy'? must be 1-D class ids \(N,\), got shape "
                                         r"\(6, 2\)$"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "ids2.npy")
    np.savez(tmp_path / "xy.npz", x=x, y=np.zeros((6, 2), dtype=int))
    with pytest.raises(ValueError, match=r"^labels in file .*xy.npz'? must be 1-D class ids \(N,\), got shape "
                                         r"\(6, 2\)$"):
        load_file(tmp_path / "xy.npz")


def test_class_names_whose_characters_are_no_unicode_are_refused_by_name(tmp_path):
    """A corrupt .npz or .npy whose str class names hold a character code above U+10FFFF (NumPy reads
    any 4 bytes as one) is refused naming the file: it loaded, its label_names strs that Python can
    neither sort nor print (iterating one raised SystemError)."""
    x = np.random.default_rng(0).standard_normal((10, 2))
    names = np.array(["cat", "dog"] * 5)
    names.view(np.uint32)[3] = 0x7CBC69BC  # (the first character of the second name)
    np.savez(tmp_path / "xy.npz", x=x, y=names)
    with pytest.raises(ValueError, match=r"^labels in file .*xy.npz'? holds class names that are not Unicode text \(a "
                                         r"character code above U\+10FFFF\): it is corrupt, or not written by NumPy$"):
        load_file(tmp_path / "xy.npz")
    np.savez(tmp_path / "split.npz", x_train=x, y_train=names, x_test=x[:2], y_test=names[:2])
    with pytest.raises(ValueError, match=r"^y_train and y_test in file .*split.npz'? holds class names that are not "
                                         r"Unicode text"):
        load_file(tmp_path / "split.npz")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "names.npy", names)
    with pytest.raises(ValueError, match=r"^labels file .*names.npy'? holds class names that are not Unicode text"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "names.npy")
    np.save(tmp_path / "names.npy", np.array(["cat", "dog", "\U0010FFFF"] * 3 + ["cat"]))  # (the last one there is)
    assert load_file(tmp_path / "x.npy", labels=tmp_path / "names.npy").label_names == ("cat", "dog", "\U0010FFFF")
    big_endian = np.array(["cat", "dog"] * 5, dtype=">U3")  # (each code read in the file's byte order)
    from byol_ref.data import _class_names_as_ids
    assert _class_names_as_ids(big_endian, "y")[1] == ("cat", "dog")


def test_class_names_of_no_characters_are_refused_before_they_are_read_one_by_one(tmp_path):
    """An .npy of str class names of no characters (dtype <U0 or |S0) holds no data, whatever count its
    header claims: a 128-byte label file claiming 10**8 names took 2 s and 800 MB (|S0: 55 s and 2 GB)
    to be refused as "an empty class name at index 0". It is refused at once, naming the file, the
    dtype and the count; so is such a y in an .npz and a y_test beside a y_train of names."""
    def npy(descr, shape):  # (numpy.save writes no array this large of no bytes: the header by hand)
        header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
        header += b" " * (-(len(header) + 11) % 64) + b"\n"
        return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header

    claimed = 10**8
    np.save(tmp_path / "x.npy", np.zeros((10, 2)))
    for descr in ("<U0", "|S0"):
        (tmp_path / "names.npy").write_bytes(npy(descr, (claimed,)))
        with pytest.raises(ValueError, match=rf"^labels file .*names.npy'? holds {claimed} class names of no "
                                             rf"characters \(dtype {re.escape(descr)}, shape \({claimed},\)\); every "
                                             "sample needs its class$"):
            load_file(tmp_path / "x.npy", labels=tmp_path / "names.npy")
    x = (tmp_path / "x.npy").read_bytes()
    with zipfile.ZipFile(tmp_path / "xy.npz", "w") as z:
        z.writestr("x.npy", x)
        z.writestr("y.npy", npy("<U0", (claimed,)))
    with pytest.raises(ValueError, match=rf"^labels in file .*xy.npz'? holds {claimed} class names of no characters"):
        load_file(tmp_path / "xy.npz")
    with zipfile.ZipFile(tmp_path / "split.npz", "w") as z:
        z.writestr("x_train.npy", x)
        z.writestr("x_test.npy", x)
        z.writestr("y_train.npy", npy("<U1", (10,)) + b"a\0\0\0" * 10)
        z.writestr("y_test.npy", npy("<U0", (claimed,)))
    with pytest.raises(ValueError, match=rf"^y_test in file .*split.npz'? holds {claimed} class names of no "):
        load_file(tmp_path / "split.npz")


def test_too_few_samples_of_each_class_for_a_test_set_names_the_file(tmp_path):
    """Labelled data with too few samples of each class for a stratified test set (2 of each of 3
    classes, 20% held out) is refused naming the file: the message named only test_fraction. The
    command line, which has no test_fraction, says what else to do."""
    from byol_ref.cli import _load_data

    np.savez(tmp_path / "few.npz", x=np.zeros((6, 2)), y=np.arange(6) % 3)
    with pytest.raises(ValueError, match=r"^file .*few.npz'?: test_fraction=0.2 of 6 labelled samples gives an empty "
                                         r"stratified test set .*; use more samples, a larger test_fraction, or "
                                         r"test_fraction=0$"):
        load_file(tmp_path / "few.npz")
    with pytest.raises(ValueError, match=r"^file .*few.npz'?: test_fraction=0.2 of 6 labelled samples .*; use more "
                                         r"samples of each class, or a file already split \(an .npz of x_train, "
                                         r"y_train, x_test and y_test\), which is read as given$"):
        _load_data({"data": str(tmp_path / "few.npz")})


def test_load_file_refuses_labels_and_shapes_that_do_not_fit_the_file(tmp_path):
    """A path that is no str or path; an image_shape other than the images'; a label file that is no
    .npy/.npz/.csv/.txt (a path object: a str of that name is a column name); a column index for an
    .npz or for images; a one-column table whose column is the labels: each is named with what it got."""
    x = np.random.default_rng(0).standard_normal((6, 2))
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(TypeError, match=r"^path must be a str or os.PathLike, got int$"):
        load_file(3)
    np.save(tmp_path / "im.npy", np.zeros((6, 4, 4)))
    with pytest.raises(ValueError, match=r"^image_shape=\(2, 8\) does not match features in file .*im.npy'? of shape "
                                         r"\(6, 4, 4\)$"):
        load_file(tmp_path / "im.npy", image_shape=(2, 8))
    (tmp_path / "y.json").write_text("[0, 1, 0, 1, 0, 1]")
    with pytest.raises(ValueError, match=r"^labels file must end in .npy, .npz, .csv or .txt, got .*y.json'?$"):
        load_file(tmp_path / "x.npy", labels=tmp_path / "y.json")
    np.savez(tmp_path / "x.npz", x=x)
    for labels in (1, "1", "label"):
        with pytest.raises(ValueError, match=rf"^labels for an .npz file must be a label file path, got "
                                             rf"{re.escape(repr(labels))}$"):
            load_file(tmp_path / "x.npz", labels=labels)
    with pytest.raises(ValueError, match=r"^labels=0 selects a column, which needs a 2-D table, but file .*im.npy'? "
                                         r"has shape \(6, 4, 4\)$"):
        load_file(tmp_path / "im.npy", labels=0)
    (tmp_path / "one.csv").write_text("label\n" + "\n".join("01" * 3) + "\n")
    for labels in ("label", 0, -1):
        with pytest.raises(ValueError, match=r"^file .*one.csv'? has no feature columns left after taking labels "
                                             r"from column 0$"):
            load_file(tmp_path / "one.csv", labels=labels)


def test_a_presplit_npz_refuses_labels_passed_and_labels_of_the_wrong_shape_or_count(tmp_path):
    """A pre-split .npz holds its own labels: labels passed as well are refused; so are class names of
    2 columns, and a y_train or y_test of another length than its x."""
    x = {"x_train": np.zeros((4, 2)), "x_test": np.zeros((2, 2))}
    np.save(tmp_path / "y.npy", np.zeros(6, dtype=int))
    np.savez(tmp_path / "s.npz", **x)
    with pytest.raises(ValueError, match=r"^file .*s.npz'? is already split \(x_train/x_test keys\); labels must come "
                                         r"from y_train/y_test, got labels='.*y.npy'$"):
        load_file(tmp_path / "s.npz", labels=str(tmp_path / "y.npy"))
    np.savez(tmp_path / "s.npz", **x, y_train=np.array([["a", "b"]] * 4), y_test=np.array([["a", "b"]] * 2))
    with pytest.raises(ValueError, match=r"^file .*s.npz'?: y_train and y_test must be 1-D class names or ids, got "
                                         r"shapes \(4, 2\) and \(2, 2\)$"):
        load_file(tmp_path / "s.npz")
    for split, y_train, y_test, n in (("train", [0, 1, 0], [0, 1], 4), ("test", [0, 1, 0, 1], [0, 1, 0], 2)):
        np.savez(tmp_path / "s.npz", **x, y_train=np.array(y_train), y_test=np.array(y_test))
        with pytest.raises(ValueError, match=rf"^file .*s.npz'?: y_{split} has 3 labels but x_{split} has {n} "
                                             rf"samples$"):
            load_file(tmp_path / "s.npz")


def test_feature_stats_and_standardize_refuse_arrays_that_are_no_table():
    """feature_stats and standardize take an (N, D) table: another shape is named with the argument."""
    for x in (np.zeros(3), np.zeros((0, 3)), np.zeros((2, 3, 1))):
        with pytest.raises(ValueError, match=rf"^x_train must have shape \(N, D\) with N >= 1, got "
                                             rf"{re.escape(str(x.shape))}$"):
            feature_stats(x)
    for x in (np.zeros(3), np.zeros((1, 2, 3))):
        with pytest.raises(ValueError, match=rf"^x must have shape \(N, D\), got {re.escape(str(x.shape))}$"):
            standardize(x, np.zeros(3), np.ones(3))


def test_image_files_hint_of_a_folder_this_user_may_not_list_is_empty(tmp_path, monkeypatch):
    """A folder of images that cannot be listed (a user without the right to read it) gets no hint, and
    load_file still names it as a directory, not a crash of the hint."""
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "0.png").write_bytes(b"")
    assert image_files_hint(tmp_path / "pics").startswith("; byol-ref reads no image files")

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("os.scandir", refused)
    assert image_files_hint(tmp_path / "pics") == ""
    with pytest.raises(FileNotFoundError, match=r"^path: .*pics'? is a directory; expected a data file$"):
        load_file(tmp_path / "pics")


def _python2_npy(x) -> bytes:
    """``x`` as an .npy whose header Python 2's NumPy wrote: its shape in longs, ``(40L, 6L)``."""
    buf = io.BytesIO()
    np.save(buf, x)
    raw = buf.getvalue()
    size = int.from_bytes(raw[8:10], "little")
    header = raw[10:10 + size].decode("latin1").rstrip()
    header = header.replace(str(x.shape), "(" + ", ".join(f"{n}L" for n in x.shape) + ("," * (x.ndim == 1)) + ")")
    header += " " * (63 - (10 + len(header)) % 64) + "\n"  # (the header ends on a 64-byte boundary)
    return raw[:8] + len(header).to_bytes(2, "little") + header.encode("latin1") + raw[10 + size:]


def test_a_python2_header_is_read_with_one_warning_that_names_the_file(tmp_path):
    """An .npy from Python 2's NumPy reads, but NumPy warned of its header twice (the size check read it,
    then the load), naming no file; an .npz warned once per array. One warning now names the file."""
    import warnings

    x = np.random.default_rng(0).normal(size=(40, 6))
    (tmp_path / "x.npy").write_bytes(_python2_npy(x))
    with zipfile.ZipFile(tmp_path / "xy.npz", "w") as z:
        z.writestr("x.npy", _python2_npy(x))
        z.writestr("y.npy", _python2_npy(np.arange(40) % 2))
    for name in ("x.npy", "xy.npz"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            data = load_file(tmp_path / name, test_fraction=0)
        assert [str(w.message) for w in caught] == [
            f"file {str(tmp_path / name)!r} was written by Python 2's NumPy, whose header takes extra parsing to "
            "read; save it again with numpy.save to read it faster and without this warning"], name
        assert np.array_equal(data.x_train, x)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_only_a_python2_header_is_taken_for_one(tmp_path, version):
    """The check looks for Python 2's longs (``40L``) in a version 1.0 header, and only there: a 2.0 or 3.0
    header (4 length bytes, which Python 2's NumPy never wrote), and data bytes after a 1.0 header that
    spell ``1L``, are read without the warning. (With every version taken for Python 2's, the 2.0 and 3.0
    files warned; a check that read past the header would warn of the 1.0 one.)"""
    import warnings

    x = np.frombuffer(b"(1L, 2L)" * 30, dtype="<f8").reshape(5, 6)
    with open(tmp_path / "x.npy", "wb") as f:
        np.lib.format.write_array(f, x, version=version)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_file(tmp_path / "x.npy", test_fraction=0)
    assert caught == [] and data.x_train.tobytes() == x.tobytes()


def test_an_npy_cut_at_any_byte_is_named_as_cut_or_not_an_npy(tmp_path):
    """A download or copy that stopped part way: at every length short of the whole, load_file says what is
    wrong in its own words, never an IndexError or EOFError from the header checks (the Python 2 check
    looks at a header's 7th byte, which a file of the magic string alone does not have)."""
    buf = io.BytesIO()
    np.save(buf, np.arange(6.0).reshape(2, 3))
    full = buf.getvalue()
    says = (r"is empty \(0 bytes\)|does not start with the \.npy header|is truncated or corrupt \(its \.npy header: "
            r"EOF|but it holds \d+ bytes of data$")
    for n in range(len(full)):
        (tmp_path / "x.npy").write_bytes(full[:n])
        with pytest.raises(ValueError, match=says):
            load_file(tmp_path / "x.npy")
    (tmp_path / "x.npy").write_bytes(full)
    assert load_file(tmp_path / "x.npy", test_fraction=0).x_train.shape == (2, 3)


def test_an_ordinary_file_is_read_without_touching_the_warning_filters(tmp_path, monkeypatch):
    """Only a file with a Python 2 header is read inside warnings.catch_warnings, whose change of the
    process's warning filters another thread reading at the same time could leave behind; every
    other .npy and .npz is read with the filters as they are."""
    import warnings

    def refused(*args, **kwargs):
        raise AssertionError("warnings.catch_warnings was entered for an ordinary file")

    x = np.random.default_rng(0).normal(size=(40, 6))
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "xy.npz", x=x, y=np.arange(40) % 2)
    monkeypatch.setattr(warnings, "catch_warnings", refused)
    for name in ("x.npy", "xy.npz"):
        assert load_file(tmp_path / name, test_fraction=0).x_train.shape == (40, 6)


def test_a_column_index_of_thousands_of_digits_is_out_of_range_not_a_python_limit(tmp_path):
    """labels="111...1" (5000 digits) for a CSV hit Python's 4300-digit limit of int(), whose message
    names neither the argument nor the file; 19 digits or more are now out of range, shortened."""
    x, y = _table(n=8, d=3)
    np.savetxt(tmp_path / "t.csv", np.column_stack([x, y]), delimiter=",")
    for digits in ("1" * 5000, "9" * 19, "-" + "0" * 30 + "9" * 19):
        with pytest.raises(ValueError, match=r"^labels column index [-0-9]{12}\.\.\. \(\d+ characters\) is out of "
                                             r"range for 4 columns in file '.*t\.csv'$"):
            load_file(tmp_path / "t.csv", labels=digits)
    data = load_file(tmp_path / "t.csv", labels="-" + "0" * 30 + "1", test_fraction=0)  # (the last column)
    assert data.x_train.shape == (8, 3) and np.array_equal(data.y_train, y)


def test_blank_labels_are_not_called_a_directory(tmp_path):
    """labels="" (a config.json edited by hand, an empty shell variable) was "names a column ...; it is a
    directory, not a label file": Path("") is the working folder."""
    np.save(tmp_path / "x.npy", _table(n=8, d=3)[0])
    for blank in ("", "  "):
        with pytest.raises(ValueError, match=r"has no header row; a blank name is no label file either \(\.npy"):
            load_file(tmp_path / "x.npy", labels=blank)


# --------------------------------------------------------------------------- found by a mutation sweep (data.py)


def test_every_warning_of_load_file_names_the_line_that_called_it(tmp_path):
    """A warning points at the caller's line (a script's, a notebook cell's), however deep in byol-ref it is
    raised: the .npz's channels-last warning named load_file's own line in data.py, and a Python 2 header's
    a line of checkpoint.py; each is a ByolRefWarning, which a filter can single out."""
    import warnings

    from byol_ref.checks import ByolRefWarning

    hwc = np.random.default_rng(0).random((10, 8, 8, 3))
    np.save(tmp_path / "hwc.npy", hwc)
    np.savez(tmp_path / "hwc.npz", x_train=hwc, x_test=hwc[:4])
    np.savez(tmp_path / "unseen.npz", x_train=np.eye(6), x_test=np.eye(6)[:2], y_train=np.zeros(6, np.int64),
             y_test=np.array([0, 1]))
    (tmp_path / "label.csv").write_text("a,b,label\n1,2,0\n3,4,1\n5,6,0\n")
    (tmp_path / "py2.npy").write_bytes(_python2_npy(np.eye(4)))
    with zipfile.ZipFile(tmp_path / "py2.npz", "w") as z:
        z.writestr("x.npy", _python2_npy(np.eye(4)))
    for name in ("hwc.npy", "hwc.npz", "unseen.npz", "label.csv", "py2.npy", "py2.npz"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_file(tmp_path / name, test_fraction=0.5)
        assert [(w.category, w.filename) for w in caught] == [(ByolRefWarning, __file__)], name


def test_the_warning_category_is_exported_at_the_top_and_a_filter_on_it_stops_a_script(tmp_path):
    """``warnings.filterwarnings("error", category=byol_ref.ByolRefWarning)``, as the README has it."""
    import warnings

    import byol_ref
    from byol_ref.checks import ByolRefWarning

    assert byol_ref.ByolRefWarning is ByolRefWarning and issubclass(ByolRefWarning, UserWarning)
    np.save(tmp_path / "hwc.npy", np.random.default_rng(0).random((10, 8, 8, 3)))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=byol_ref.ByolRefWarning)
        with pytest.raises(byol_ref.ByolRefWarning, match="channels last"):
            load_file(tmp_path / "hwc.npy", test_fraction=0.5)


@pytest.mark.parametrize("shape, warned", [((10, 8, 8, 1), True), ((10, 8, 8, 4), True), ((10, 5, 8, 3), True),
                                           ((10, 3, 8, 3), False), ((10, 4, 8, 4), False), ((10, 1, 8, 1), False)])
def test_images_look_channels_last_when_the_last_axis_is_1_3_or_4_and_the_second_is_not(tmp_path, shape, warned):
    import warnings

    np.save(tmp_path / "x.npy", np.zeros(shape))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_file(tmp_path / "x.npy")
    assert [("channels last" in str(w.message)) for w in caught] == ([True] if warned else [])


def test_a_stray_quote_in_the_first_row_is_named_from_line_1(tmp_path):
    """A quote opened on line 1 that runs past csv's field size limit: the message says the field starts on
    line 1 (the count of lines read before the failing row starts at 0, not 1)."""
    import csv

    (tmp_path / "t.csv").write_text('"' + "x" * 10 + "\n" + "y" * (csv.field_size_limit() + 5) + "\n1,2\n")
    with pytest.raises(ValueError, match=r"a field that starts on line 1 runs on to line 2, past the \d+ characters"):
        load_file(tmp_path / "t.csv")


def test_a_file_whose_first_byte_is_no_utf8_is_named_at_offset_0(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"\xe9,1\n2,3\n")
    with pytest.raises(ValueError, match=r"is not UTF-8 text \(byte 0xe9 at offset 0, line 1\); save the CSV"):
        load_file(tmp_path / "t.csv")


@pytest.mark.parametrize("width", [6, 7])
def test_a_first_row_in_a_message_shows_six_fields_then_dots(tmp_path, width):
    """Both questions about a first row (mixed numbers and names; column numbers as pandas writes them) show
    its first 6 fields, with ',...' only where it has more."""
    shown = ",".join(["x", "1", "2", "3", "4", "5"]) + (",..." if width > 6 else "")
    (tmp_path / "mixed.csv").write_text(",".join(["x"] + [str(i) for i in range(1, width)]) + "\n"
                                        + ",".join(["1"] * width) + "\n")
    with pytest.raises(ValueError, match=rf"its first line \({re.escape(shown)}\) mixes numbers and other fields"):
        load_file(tmp_path / "mixed.csv")
    numbers = ",".join(str(i) for i in range(6)) + (",..." if width > 6 else "")
    (tmp_path / "counted.csv").write_text(",".join(str(i) for i in range(width)) + "\n"
                                          + ",".join(["1"] * width) + "\n" + ",".join(["2"] * width) + "\n")
    with pytest.raises(ValueError, match=rf"is its first line \({re.escape(numbers)}\) a header of column numbers"):
        load_file(tmp_path / "counted.csv")


def test_a_first_row_of_column_numbers_is_asked_about_from_three_columns(tmp_path):
    """'0,1,2' over whole numbers reads as pandas' column numbers (K >= 3, as the docstring says); '0,1' over
    whole numbers is a row of data."""
    (tmp_path / "two.csv").write_text("0,1\n5,6\n7,8\n")
    assert load_file(tmp_path / "two.csv", test_fraction=0).x_train.tolist() == [[0, 1], [5, 6], [7, 8]]
    (tmp_path / "three.csv").write_text("0,1,2\n5,6,7\n7,8,9\n")
    with pytest.raises(ValueError, match=r"is its first line \(0,1,2\) a header of column numbers"):
        load_file(tmp_path / "three.csv")


def test_a_label_index_from_the_end_names_the_first_column_and_one_past_either_end_is_out_of_range(tmp_path):
    """labels=-3 of a 3-column table is its first column (here class names, so the first row, a name and
    numbers, is data: the name comes again below). 3 and -4 are past its ends, and that is what is said, not
    a question about the first row (which was asked, and answering it led only to the same refusal)."""
    (tmp_path / "t.csv").write_text("a,1,2\na,3,4\nb,5,6\n")
    ds = load_file(tmp_path / "t.csv", labels=-3, test_fraction=0)
    assert ds.y_train.tolist() == [0, 0, 1] and ds.label_names == ("a", "b") and ds.x_train.tolist() == [
        [1, 2], [3, 4], [5, 6]]
    for labels in (3, "3", -4, "-4"):
        with pytest.raises(ValueError, match=rf"^labels column index {labels} is out of range for 3 columns in file"):
            load_file(tmp_path / "t.csv", labels=labels)
    (tmp_path / "named.csv").write_text("a,1,3\nb,3,4\nc,5,6\n")  # ("3" names a field: header=True would read it)
    with pytest.raises(ValueError, match=r"its first line \(a,1,3\) mixes numbers and other fields"):
        load_file(tmp_path / "named.csv", labels="3")


def test_a_label_index_of_18_digits_is_a_number_and_of_19_shortened(tmp_path):
    np.savetxt(tmp_path / "t.csv", np.eye(3), delimiter=",")
    with pytest.raises(ValueError, match=r"^labels column index 111111111111111111 is out of range for 3 columns"):
        load_file(tmp_path / "t.csv", labels="1" * 18)
    with pytest.raises(ValueError, match=r"^labels column index 111111111111\.\.\. \(19 characters\) is out of range"):
        load_file(tmp_path / "t.csv", labels="1" * 19)


def test_class_ids_up_to_2_to_the_31_less_1_are_read(tmp_path):
    np.save(tmp_path / "x.npy", np.eye(4))
    np.save(tmp_path / "y.npy", np.array([0, 62, 1000, 2**31 - 1]))
    assert load_file(tmp_path / "x.npy", labels=tmp_path / "y.npy", test_fraction=0).y_train.tolist() == [
        0, 62, 1000, 2**31 - 1]


def test_class_names_of_an_npz_split_may_be_a_column(tmp_path):
    """y_train and y_test of class names as (N, 1) columns, as a one-column table is saved, read as (N,)."""
    np.savez(tmp_path / "s.npz", x_train=np.eye(4), x_test=np.eye(4)[:2],
             y_train=np.array([["b"], ["a"], ["b"], ["a"]]), y_test=np.array([["a"], ["b"]]))
    ds = load_file(tmp_path / "s.npz")
    assert ds.label_names == ("a", "b") and ds.y_train.tolist() == [1, 0, 1, 0] and ds.y_test.tolist() == [0, 1]


@pytest.mark.parametrize("names", [False, True])
def test_the_classes_y_train_lacks_are_listed_up_to_eight(tmp_path, names):
    y_test = np.arange(10)
    np.savez(tmp_path / "s.npz", x_train=np.eye(10)[:2], x_test=np.eye(10),
             y_train=np.array(["c00", "c00"]) if names else np.zeros(2, np.int64),
             y_test=np.array([f"c{i:02d}" for i in y_test]) if names else y_test)
    listed = [f"c{i:02d}" for i in range(1, 9)] if names else list(range(1, 9))
    with pytest.warns(UserWarning, match=re.escape(f"holds class(es) {listed} that y_train lacks")):
        load_file(tmp_path / "s.npz")


def test_synthetic_draws_from_seed_0_by_default_and_takes_its_smallest_sizes():
    a, b = synthetic(), synthetic(seed=0)
    assert all(np.array_equal(u, v) for u, v in zip(a[:4], b[:4]))
    ds = synthetic(n=2, dim=1, n_classes=1, latent_dim=1, test_fraction=0.5)
    assert ds.x_train.shape == (1, 1) and ds.x_test.shape == (1, 1)
    for kw, says in ((dict(dim=0, latent_dim=0), "dim must be an integer >= 1, got 0"),
                     (dict(latent_dim=0), "latent_dim must be an integer >= 1, got 0")):
        with pytest.raises(ValueError, match="^" + re.escape(says)):
            synthetic(**kw)


def test_feature_stats_count_a_std_above_1e_8_as_a_spread_by_default():
    """The default eps (1e-8): a feature whose std is 1.5e-8 is standardised as any other; one of 0.5e-8 is
    constant, its std replaced by 1. standardize_dataset has the same default."""
    x = np.array([[1.5e-8, 0.5e-8], [-1.5e-8, -0.5e-8]])
    _, std = feature_stats(x)
    assert std.tolist() == [1.5e-8, 1.0]
    ds = Dataset(x, None, x, None, None, "t")
    assert standardize_dataset(ds)[2].tolist() == [1.5e-8, 1.0]


def test_batches_drop_the_last_smaller_batch_by_default():
    assert [b.size for b in batches(10, 4, np.random.default_rng(0))] == [4, 4]
