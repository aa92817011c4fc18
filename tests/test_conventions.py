"""The covering designs of tests/conventions.py: every row is a configuration byol-ref takes, and every pair of
values of two fields appears in some row but the pairs the library refuses (batch statistics per shard without
batch norm, the data-dependent init without the affine norm it initialises, and so the two together, lightly's
warm-up offset with solo-learn's denominator)."""
import itertools

import pytest

import byol_ref as byol
from byol_ref.train import TrainConfig
from conventions import MODEL, MODEL_ROWS, TRAIN, TRAIN_PAIRS, TRAIN_ROWS


def _missing(table: dict, rows: list) -> set:
    """The pairs of values of two fields of ``table`` that no row holds."""
    held = {((a, row[a]), (b, row[b])) for row in rows for a, b in itertools.combinations(table, 2)}
    return {((a, u), (b, v)) for a, b in itertools.combinations(table, 2) for u in table[a] for v in table[b]} - held


NO_BATCH_NORM = [("norm", v) for v in ("layer", "group", "affine", "none")]


def test_the_model_design_holds_every_pair_but_shards_without_batch_norm():
    assert _missing(MODEL, MODEL_ROWS) == {(norm, ("bn_shards", 2)) for norm in NO_BATCH_NORM}
    assert len(MODEL_ROWS) < 50  # (the product of the fields' counts is 10^10)


def test_the_training_design_holds_every_pair_but_those_the_library_refuses():
    refused = {(norm, ("bn_shards", 2)) for norm in NO_BATCH_NORM}
    refused |= {(("norm", v), ("data_init", True)) for v in (None, "batch", "layer", "group", "none")}
    refused |= {(("bn_shards", 2), ("data_init", True))}  # (one needs batch norm, the other the affine norm)
    refused |= {(("warmup_offset", 1), ("warmup_denominator", "W-1"))}
    assert _missing({**MODEL, **TRAIN}, TRAIN_ROWS) == refused
    assert len(TRAIN_ROWS) < 60


@pytest.mark.parametrize("row", range(len(TRAIN_ROWS)))
def test_every_row_is_a_configuration_byol_ref_takes(row):
    model, train = TRAIN_PAIRS[row]
    byol.Config(encoder_dim=12, hidden_size=16, projection_dim=8, predictor_dim=8, projector_hidden_dim=16, **model)
    TrainConfig(**train)
