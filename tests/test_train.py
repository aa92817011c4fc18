"""Training: the step order, schedules wiring, bit-exact resume, checkpoints and their errors,
divergence handling, and a short run that learns without collapsing."""
import io
import itertools
import json
import os
import re
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import byol_ref as byol
from byol_ref import checkpoint as ckpt
from byol_ref.augment import VectorAug
from byol_ref.backend import get_backend, to_numpy
from byol_ref.checks import ByolRefWarning
from byol_ref.data import synthetic
from byol_ref.evaluate import knn_accuracy
from byol_ref.train import (TrainConfig, TrainingDiverged, checkpoint_features, encode, fit, init_sample, init_state,
                            knn_monitor, load_checkpoint, make_optimizer_for, make_schedules, save_checkpoint,
                            train_step)
from conventions import TRAIN_PAIRS, model_conventions, pair_ids, train_conventions

SMALL = dict(hidden_size=32, projection_dim=16, predictor_dim=16)


@pytest.fixture(scope="module")
def data():
    return synthetic(n=160, dim=12, n_classes=4, seed=0)


def _tcfg(**kw):
    base = dict(epochs=4, batch_size=32, lr=2e-3, log_every=1, checkpoint_every=3, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_step_follows_the_official_order():
    """optimizer update first, then EMA with the *updated* online params."""
    cfg = byol.Config(encoder_dim=6, **SMALL)
    tcfg = _tcfg(optimizer="sgd", lr=0.5, tau_base=0.9, tau_schedule="constant", warmup_epochs=0)
    be = get_backend("numpy", "float64", 0)
    state = init_state(cfg, tcfg, be)
    sched = make_schedules(tcfg, 64)
    opt = make_optimizer_for(tcfg)
    x = np.random.default_rng(0).standard_normal((8, 6))
    ident = (VectorAug.identity(), VectorAug.identity())
    new, m = train_step(state, x, optimizer=opt, schedules=sched, views=ident, tcfg=tcfg)
    res = byol.loss_and_grads(state.online, state.target, x, x)
    want_params, _ = opt.update(res.grads, state.opt_state, state.online.params, lr=sched.lr(0))
    for k, v in want_params.items():
        np.testing.assert_allclose(new.online.params[k], v, rtol=1e-12)
    want_target = byol.ema_update(want_params, state.target.params, 0.9)
    for k, v in want_target.items():
        np.testing.assert_allclose(new.target.params[k], v, rtol=1e-12)
    # both networks keep the running statistics their training-mode forward passes made
    for got, want in ((new.online.buffers, res.online_buffers), (new.target.buffers, res.target_buffers)):
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v, err_msg=k)
    assert int(new.target.buffers["encoder.norm1.count"]) == 2
    assert m["loss"] == pytest.approx(float(res.loss), rel=1e-12)
    # lightly's timing: EMA with the old params, before the forward
    tl = tcfg.replace(ema_when="pre_forward")
    new2, _ = train_step(state, x, optimizer=opt, schedules=sched, views=ident, tcfg=tl)
    pre = byol.ema_update(state.online.params, state.target.params, 0.9)
    for k, v in pre.items():
        np.testing.assert_allclose(new2.target.params[k], v, rtol=1e-12)
    # ... which the forward then sees: with a target apart from the online network (at step 0 they are one,
    # and the EMA changes nothing), the loss is that of the averaged target, not of the one before
    apart = state._replace(target=state.target._replace(params={k: v + 0.1 for k, v in state.target.params.items()}))
    _, m2 = train_step(apart, x, optimizer=opt, schedules=sched, views=ident, tcfg=tl)
    averaged = apart.target._replace(params=byol.ema_update(apart.online.params, apart.target.params, 0.9))
    assert m2["loss"] == pytest.approx(float(byol.loss_and_grads(apart.online, averaged, x, x).loss), rel=1e-12)
    assert m2["loss"] != pytest.approx(float(byol.loss_and_grads(apart.online, apart.target, x, x).loss), rel=1e-6)
    # the EMA's rounding follows ema_form, bit for bit, at either time: the paper's by default, the
    # official code's on request
    for when, form in itertools.product(("post_step", "pre_forward"), ("weighted", "increment")):
        t3 = tcfg.replace(ema_when=when) if form == "weighted" else tcfg.replace(ema_when=when, ema_form=form)
        new3, _ = train_step(state, x, optimizer=opt, schedules=sched, views=ident, tcfg=t3)
        averaged = new3.online.params if when == "post_step" else state.online.params
        for k, v in byol.ema_update(averaged, state.target.params, 0.9, form=form).items():
            np.testing.assert_array_equal(new3.target.params[k], v, err_msg=f"{when}, {form}: {k}")
    with pytest.raises(ValueError, match=r"ema_form must be one of \('weighted', 'increment'\), got 'lerp'"):
        tcfg.replace(ema_form="lerp")


def test_a_step_takes_the_lr_and_tau_of_its_own_index():
    """Step k updates with lr_k and averages with tau_k (BYOL_FACTS a1), not k + 1's: at a step where
    both schedules move from one step to the next, the target is the EMA with tau_k of the params
    the update with lr_k gave."""
    cfg = byol.Config(encoder_dim=6, **SMALL)
    tcfg = _tcfg(optimizer="sgd", lr=0.5, tau_base=0.9, warmup_epochs=0)  # tau cosine from 0.9 to 1
    be = get_backend("numpy", "float64", 0)
    sched = make_schedules(tcfg, 64)  # 2 steps per epoch, K = 8
    k = 5
    assert sched.lr(k) != sched.lr(k + 1) and sched.tau(k) != sched.tau(k + 1)
    state = init_state(cfg, tcfg, be)._replace(step=k)
    opt = make_optimizer_for(tcfg)
    x = np.random.default_rng(0).standard_normal((8, 6))
    ident = (VectorAug.identity(), VectorAug.identity())
    new, m = train_step(state, x, optimizer=opt, schedules=sched, views=ident, tcfg=tcfg)
    assert new.step == k + 1 and (m["lr"], m["tau"]) == (sched.lr(k), sched.tau(k))
    res = byol.loss_and_grads(state.online, state.target, x, x)
    want_params, _ = opt.update(res.grads, state.opt_state, state.online.params, lr=sched.lr(k))
    for key, v in byol.ema_update(want_params, state.target.params, sched.tau(k)).items():
        np.testing.assert_array_equal(new.online.params[key], want_params[key], err_msg=key)
        np.testing.assert_array_equal(new.target.params[key], v, err_msg=key)


def test_the_optimiser_gets_every_setting_the_train_config_gives_it():
    """make_optimizer_for passes each optimiser setting on: a step with it set is the step of
    make_optimizer given it by hand, and not the step of the setting's default."""
    cfg = byol.Config(encoder_dim=6, **SMALL)
    params = init_state(cfg, _tcfg(), get_backend("numpy", "float64", 0)).online.params
    rng = np.random.default_rng(0)
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}

    def step(opt):
        return opt.update(grads, opt.init(params), params, lr=0.1)[0]

    base = dict(weight_decay=1e-6, exclude="name")
    for setting, name, hyper in (
            (dict(optimizer="sgd", nesterov=True), "sgd", dict(base, momentum=0.9, nesterov=True)),
            (dict(optimizer="lars", weight_decay=0.0, lars_only_with_wd=True), "lars",
             dict(base, weight_decay=0.0, momentum=0.9, only_with_wd=True)),
            (dict(optimizer="lars", lars_eps=1e-3), "lars", dict(base, momentum=0.9, eps=1e-3)),
            (dict(optimizer="lars", lars_eta=2e-3), "lars", dict(base, momentum=0.9, eta=2e-3)),
            (dict(optimizer="adamw", predictor_lr_mult=0.5), "adamw",
             dict(base, lr_mult=byol.optim.predictor_lr_mult(0.5))),
            (dict(optimizer="adamw", predictor_lr_mult=2.0), "adamw",  # (2.0 too: not only the values below 1)
             dict(base, lr_mult=byol.optim.predictor_lr_mult(2.0)))):
        got = step(make_optimizer_for(_tcfg(**setting)))
        want = step(byol.optim.make_optimizer(name, **hyper))
        plain = {k: v for k, v in setting.items() if k in ("optimizer", "weight_decay")}
        default = step(make_optimizer_for(_tcfg(**plain)))
        assert all(np.array_equal(got[k], want[k]) for k in params), setting
        assert not all(np.array_equal(got[k], default[k]) for k in params), setting


def test_view_one_goes_through_the_networks_first():
    """The step's first view is drawn with the first config and goes through each network first: the
    running statistics are updated twice per step, the second time from the state the first left
    (BYOL_FACTS a1), and the step's outputs list view 1 first (the records' z and y are view 1's)."""
    import copy

    from byol_ref.augment import two_views

    cfg = byol.Config(encoder_dim=6, **SMALL)
    tcfg = _tcfg(optimizer="sgd", lr=0.5, warmup_epochs=0)
    state = init_state(cfg, tcfg, get_backend("numpy", "float64", 0))
    x = np.random.default_rng(0).standard_normal((8, 6))
    views = (VectorAug.identity(), VectorAug(noise_std=0.5, p_mask=0.0, scale=(1.0, 1.0)))
    view1, view2 = two_views(x, copy.deepcopy(state.rng), views)
    np.testing.assert_array_equal(view1, x)
    new, m = train_step(state, x, optimizer=make_optimizer_for(tcfg), schedules=make_schedules(tcfg, 64),
                        views=views, tcfg=tcfg)
    res = byol.loss_and_grads(state.online, state.target, view1, view2)
    for got, want in ((new.online.buffers, res.online_buffers), (new.target.buffers, res.target_buffers)):
        for k, v in want.items():
            np.testing.assert_array_equal(got[k], v, err_msg=k)
    for k in ("online.y", "online.z"):
        np.testing.assert_array_equal(m["outputs"][k][0], res.outputs[k][0], err_msg=k)


def test_schedules_round_fractional_warmup_and_scale_the_peak_lr():
    """W = warmup_epochs * steps per epoch rounded to the nearest step (1.9 x 3 = 5.7 -> 6 steps), and the
    peak is lr * B / lr_batch_scale, or lr itself with lr_batch_scale = 0."""
    from byol_ref.schedules import warmup_cosine_lr

    for scale, peak in ((256, 0.4 * 32 / 256), (0, 0.4)):
        tcfg = _tcfg(epochs=10, lr=0.4, warmup_epochs=1.9, lr_batch_scale=scale, final_lr=0.0)
        sched = make_schedules(tcfg, 96 + 5)  # 3 steps per epoch; the partial batch is dropped
        assert (sched.steps_per_epoch, sched.total_steps) == (3, 30)
        assert sched.lr(6) == pytest.approx(peak, rel=1e-12)
        assert sched.lr(5) == pytest.approx(peak * 5 / 6, rel=1e-12)
        for k in range(31):
            assert sched.lr(k) == warmup_cosine_lr(k, base_lr=0.4, batch_size=32, total_steps=30, warmup_steps=6,
                                                   final_lr=0.0, batch_scale=scale or 32)


def test_a_warmup_of_half_a_step_rounds_up_every_time():
    """W at exactly .5 steps rounds half up, as the default warm-up's whole epochs do (Python's round()
    took 2.5 -> 2 but 7.5 -> 8: banker's rounding)."""
    for warmup_epochs, W in ((0.5, 3), (1.5, 8), (2.5, 13), (1.25, 6)):
        sched = make_schedules(_tcfg(epochs=10, lr=0.4, warmup_epochs=warmup_epochs, final_lr=0.0), 5 * 32)
        assert sched.steps_per_epoch == 5
        peak = 0.4 * 32 / 256
        assert sched.lr(W - 1) == pytest.approx(peak * (W - 1) / W, rel=1e-12), warmup_epochs
        assert sched.lr(W) == pytest.approx(peak, rel=1e-12), warmup_epochs


def test_schedules_per_epoch_hold_each_value_through_its_epoch():
    """lr_interval / tau_interval = "epoch": K = epochs, W = warmup_epochs (whole), evaluated at the epoch
    index (a scheduler stepped once per epoch; lightly's BYOL example computes tau so)."""
    from byol_ref.schedules import target_tau, warmup_cosine_lr

    tcfg = _tcfg(epochs=6, lr=0.4, warmup_epochs=2, lr_interval="epoch", tau_interval="epoch", tau_base=0.996,
                 tau_denominator="K-1", final_lr=0.01)
    sched = make_schedules(tcfg, 96)  # 3 steps per epoch
    for k in range(sched.total_steps + 1):
        e = k // 3
        assert sched.lr(k) == warmup_cosine_lr(e, base_lr=0.4, batch_size=32, total_steps=6, warmup_steps=2,
                                               final_lr=0.01)
        # lightly's cosine_schedule(epoch, max_epochs, 0.996, 1): 1 - 0.004 (cos(pi e / (E - 1)) + 1) / 2
        want = 1.0 if e >= 5 else 1 - 0.004 * (np.cos(np.pi * e / 5) + 1) / 2
        assert sched.tau(k) == pytest.approx(want, abs=1e-15) and sched.tau(k) == target_tau(
            e, tau_base=0.996, total_steps=6, denominator="K-1")
    assert sched.lr(3) == sched.lr(5) != sched.lr(6)  # held through epoch 1, moved at epoch 2
    per_step = make_schedules(_tcfg(epochs=6, lr=0.4, warmup_epochs=1.6, final_lr=0.01), 96)
    assert per_step.lr(3) != per_step.lr(4)
    # Each interval belongs to its own schedule.
    lr_only = make_schedules(_tcfg(epochs=6, lr=0.4, warmup_epochs=2, lr_interval="epoch"), 96)
    tau_only = make_schedules(_tcfg(epochs=6, lr=0.4, warmup_epochs=2, tau_interval="epoch"), 96)
    assert lr_only.lr(4) == lr_only.lr(5) and lr_only.tau(4) != lr_only.tau(5)
    assert tau_only.tau(4) == tau_only.tau(5) and tau_only.lr(4) != tau_only.lr(5)
    # Per epoch the warm-up is whole epochs: the default rounds 5% half up, anything else fractional is refused.
    assert _tcfg(epochs=10, lr_interval="epoch").warmup_epochs == 1.0
    assert _tcfg(epochs=50, lr_interval="epoch").warmup_epochs == 3.0  # 2.5 -> 3
    assert _tcfg(epochs=10).warmup_epochs == 0.5  # per step: as given
    with pytest.raises(ValueError, match="warmup_epochs must be a whole number of epochs with lr_interval='epoch'"):
        _tcfg(epochs=10, lr_interval="epoch", warmup_epochs=2.5)
    with pytest.raises(ValueError, match="lr_interval must be one of"):
        _tcfg(lr_interval="batch")
    with pytest.raises(ValueError, match="tau_interval must be one of"):
        _tcfg(tau_interval="epochs")


class _TerminalThatCloses(io.StringIO):
    """stderr on a terminal (``tty``) or not, whose writes after the first fail with ``error``: the
    window a fit was started from, closed while it trains."""

    def __init__(self, tty: bool, error: int):
        super().__init__()
        self.tty, self.error, self.writes = tty, error, 0

    def isatty(self):
        return self.tty

    def write(self, text):
        self.writes += 1
        if self.writes > 1:
            raise OSError(self.error, os.strerror(self.error))
        return super().write(text)


@pytest.mark.parametrize("tty", [True, False])
def test_a_progress_bar_whose_terminal_closed_ends_and_the_fit_goes_on(data, monkeypatch, tty):
    """fit(progress=True) called from a program whose terminal closed failed on its next bar with
    "[Errno 5] Input/output error", and stopped training; a failing write of another kind still stops it."""
    import errno

    cfg = byol.Config(encoder_dim=12, **SMALL)
    gone = _TerminalThatCloses(tty, errno.EIO)
    monkeypatch.setattr(sys, "stderr", gone)
    res = fit(data, cfg, _tcfg(epochs=2), progress=True)
    assert res.state.step == 2 * (128 // 32) and gone.writes == 2 and gone.getvalue()  # one bar, then none
    monkeypatch.setattr(sys, "stderr", _TerminalThatCloses(tty, errno.ENOSPC))
    with pytest.raises(OSError, match="No space left"):
        fit(data, cfg, _tcfg(epochs=2), progress=True)


class _NotebookStream(io.StringIO):
    """A notebook's stderr, as ipykernel's ``OutStream`` is: no tty, but drawn by a front end that reads
    a carriage return as a terminal does."""

    def isatty(self):
        return False


_NotebookStream.__module__ = "ipykernel.iostream"


def test_fit_redraws_its_bar_in_place_in_a_notebook(data, monkeypatch):
    """In Jupyter (and VS Code, Colab) the bar was a new line every 10% of the run, as in a log file."""
    from byol_ref.train import Progress

    cell = _NotebookStream()
    monkeypatch.setattr(sys, "stderr", cell)
    fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=2), progress=True)
    assert cell.getvalue().startswith("\r[") and cell.getvalue().count("\n") == 1  # (one line, ended once)
    log = io.StringIO()
    bar = Progress(10, stream=log)
    for step in range(1, 11):
        bar.update(step)
    assert "\r" not in log.getvalue() and log.getvalue().count("\n") == 10  # (a file: a line every 10%)


def test_the_bar_times_the_steps_after_its_first_and_tells_slow_and_long_runs_plainly(monkeypatch):
    """A log's first line had said "9 it/s  eta 3280s" of a run of 26 it/s: its one timed step held the
    step-0 kNN monitor. The rate now counts the steps after the first update ("?" before a second one);
    a run slower than a step a second said "0 it/s", and an hour left read "eta 3600s"."""
    from types import SimpleNamespace

    from byol_ref import train

    def lines(total, times):
        clock = iter(times)
        monkeypatch.setattr(train, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
        log = io.StringIO()
        bar = train.Progress(total, stream=log)
        for step in range(1, total + 1):
            bar.update(step, loss=1.0)
        return [line.split("loss 1  ")[1] for line in log.getvalue().splitlines()]

    # The first update 5 s in (the step-0 monitor held it: the bar reads no clock before), then two steps a second.
    assert lines(10, [5.0 + 0.5 * k for k in range(10)]) == [
        "? it/s  eta ?", *(f"2 it/s  eta {round((10 - s) / 2)}s" for s in range(2, 11))]
    assert lines(10, [40.0 * k for k in range(10)])[1:3] == ["40.0 s/it  eta 5m20s", "40.0 s/it  eta 4m40s"]
    assert lines(10, [400.0 * k for k in range(10)])[1] == "400.0 s/it  eta 53m20s"
    assert lines(10, [4000.0 * k for k in range(10)])[1] == "4000.0 s/it  eta 8h53m"
    assert lines(1, [3.0]) == ["? it/s  eta 0s"]  # (one step: no rate, and nothing left)


def test_training_rows_that_are_all_one_are_warned_of_at_the_callers_line(data):
    """A blank image file or a table of one repeated row trained without a word, and its report read as a
    collapse (std and rank 0) that the data, not the method, made."""
    import warnings

    cfg = byol.Config(encoder_dim=12, **SMALL)
    same = data._replace(x_train=np.repeat(data.x_train[:1], len(data.x_train), axis=0), name="blank")
    with pytest.warns(UserWarning, match=r"^blank: its 128 training rows are one and the same \(every feature holds "
                                         r"a single value\): there is nothing in them to learn") as shown:
        fit(same, cfg, _tcfg(epochs=1), progress=False)
    assert [w.filename for w in shown if "one and the same" in str(w.message)] == [__file__]
    one_differs = same.x_train.copy()
    one_differs[-1, -1] += 1e-9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(same._replace(x_train=one_differs), cfg, _tcfg(epochs=1), progress=False)


def test_a_dtype_given_as_numpy_gives_it_trains_and_is_checkpointed(data, tmp_path):
    """TrainConfig(dtype=np.dtype("float32")) passed its check (it equals "float32"), trained to the end,
    and failed there, writing the checkpoint ("Object of type Float32DType is not JSON serializable"):
    the run was lost. It is kept as its name, as build takes it ("f4" and np.float32 too)."""
    for dtype in (np.dtype("float32"), "f4", np.float32):
        assert TrainConfig(dtype=dtype).dtype == "float32" and type(TrainConfig(dtype=dtype).dtype) is str
    res = fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1, dtype=np.dtype("float32")),
              progress=False, out_dir=tmp_path / "r")
    assert load_checkpoint(tmp_path / "r" / "checkpoint.npz")[2].dtype == "float32" == res.train_config.dtype


def test_encode_and_checkpoint_features_refuse_what_they_cannot_use_by_name(data, tmp_path):
    """batch=-1 returned no features for any rows; 0 and 2.5 failed inside range(); which="q", a 1-D x and
    no backend failed as KeyError and AttributeError."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    res = fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "r")
    online, be, x = res.state.online, get_backend(), data.x_test
    for batch, err in ((-1, ValueError), (0, ValueError), (2.5, TypeError)):
        with pytest.raises(err, match=rf"^batch must be an int >= 1, got {batch}"):
            encode(online, x, None, be, batch=batch)
        with pytest.raises(err, match=rf"^batch must be an int >= 1, got {batch}"):
            checkpoint_features(tmp_path / "r", x, batch=batch)
    with pytest.raises(ValueError, match=r"^which must be one of \('y', 'z'\), got 'q'"):
        encode(online, x, None, be, which="q")
    with pytest.raises(TypeError, match="^backend must be a byol_ref Backend, got NoneType"):
        encode(online, x, None, None)
    with pytest.raises(ValueError, match=r"^x must be a 2-D array, got shape \(12,\) \(1-D\)"):
        encode(online, x[0], None, be)
    # Blocks of 5 rows are those rows encoded alone, bit for bit (the same products). Against all rows in
    # one block they agree to rounding only: BLAS may sum a block of 5 rows in another order than one of
    # many (OpenBLAS on AMD EPYC does, for odd row counts), so no block size can promise the same bits.
    got = encode(online, x, None, be, batch=5)
    alone = [encode(online, x[i:i + 5], None, be) for i in range(0, len(x), 5)]
    assert len(x) % 5 and alone[-1].shape[0] == len(x) % 5  # (a last block shorter than the others)
    np.testing.assert_array_equal(got, np.concatenate(alone))
    np.testing.assert_allclose(got, encode(online, x, None, be), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", ["fortran", "strided"])
def test_the_same_data_in_another_memory_layout_trains_to_the_same_bits(data, layout):
    """A Fortran-ordered x_train (torch's t.T.numpy()) summed its statistics in another order: the params
    came out up to 1e-11 apart after a few steps, for the same numbers."""
    def laid_out(x):
        if layout == "fortran":
            return np.asfortranarray(x)
        wide = np.zeros((x.shape[0], 2 * x.shape[1]))
        wide[:, ::2] = x
        return wide[:, ::2]

    cfg, tcfg = byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=2)
    want = fit(data, cfg, tcfg, progress=False)
    got = fit(data._replace(x_train=laid_out(data.x_train), x_test=laid_out(data.x_test)), cfg, tcfg, progress=False)
    for k in want.state.online.params:
        np.testing.assert_array_equal(got.state.online.params[k], want.state.online.params[k], err_msg=k)
    assert got.history == want.history


def test_fit_shows_a_bar_by_default(data, monkeypatch):
    """``progress`` is True unless said otherwise, as the docstring has it (every other test of the bar
    passes it)."""
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1))
    assert log.getvalue().startswith("[") and f"{128 // 32}/{128 // 32}" in log.getvalue(), log.getvalue()


def test_durations_are_seconds_then_minutes_then_hours_from_60_s_and_3600_s():
    from byol_ref.train import _duration

    assert [_duration(s) for s in (0, 59, 59.4, 59.5, 60, 61, 3599, 3599.6, 3600, 3660, 90061)] == [
        "0s", "59s", "59s", "1m00s", "1m00s", "1m01s", "59m59s", "1h00m", "1h00m", "1h01m", "25h01m"]


def test_a_preprocessing_repr_shows_up_to_4_values_of_a_list_and_the_length_of_a_longer_one():
    from byol_ref.train import _describe_preprocessing

    assert _describe_preprocessing({"kind": "standardize", "mean": [0.5, 1.0, 1.5, 2.0], "std": [1.0] * 5}) == (
        "{'kind': 'standardize', 'mean': [0.5, 1.0, 1.5, 2.0], 'std': <5 floats>}")
    assert _describe_preprocessing(None) == "None"


def test_data_whose_std_overflows_while_their_mean_does_not_are_refused():
    """Values of +-1e200 have a mean of 0 and a std of inf. Image data trained with vector views are not
    checked for pixels in [0, 1]; were the mean's finiteness enough (scripts/mutation_sweep.py: an ``or`` for
    the ``and`` passed every test), their scalar InputNorm would take the inf std, and every input be 0."""
    from byol_ref.data import Dataset
    from byol_ref.train import prepare_training_data

    x = np.tile([[1e200, -1e200, 1e200, -1e200]], (8, 1))
    images = Dataset(x_train=x, y_train=np.zeros(8, int), x_test=x[:2], y_test=np.zeros(2, int),
                          image_shape=(2, 2), name="big")
    with pytest.raises(ValueError, match=r"^big: x_train has values whose standardisation overflows to inf or NaN "
                                         r"\(largest magnitude 1e\+200\); rescale the data$"):
        prepare_training_data(images, (VectorAug(), VectorAug()))


def test_fit_copies_a_masked_array_with_nothing_masked_as_a_plain_one(data):
    """fit only copies its data to the host (``host_copy``): a masked array with no value masked is taken, as
    ``np.asarray`` makes it (one with values masked is refused: test_foreign_arrays.py)."""
    plain = fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), progress=False)
    masked = fit(data._replace(x_train=np.ma.masked_array(data.x_train)), byol.Config(encoder_dim=12, **SMALL),
                 _tcfg(epochs=1), progress=False)
    assert masked.state.step == plain.state.step == 128 // 32
    for key, value in plain.state.online.params.items():
        np.testing.assert_array_equal(masked.state.online.params[key], value, err_msg=key)


def test_fit_shows_no_bar_where_there_is_no_stderr(data, monkeypatch):
    """Under pythonw, a GUI or a service sys.stderr is None: fit's default progress=True failed there on
    "'NoneType' object has no attribute 'write'" at its first bar."""
    monkeypatch.setattr(sys, "stderr", None)
    res = fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), progress=True)
    assert res.state.step == 128 // 32


def test_an_overflowing_step_is_told_once_in_byol_refs_words_and_a_callers_seterr_is_kept(data):
    """A step that overflowed float32 showed NumPy's RuntimeWarnings, five of them with lines of byol-ref's
    code, before the divergence message; an overflow whose loss stayed finite showed nothing else."""
    import warnings

    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=4, dtype="float32", optimizer="sgd", lr=1e30, warmup_epochs=0)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged, match="the loss became nan at step 2"):
            fit(data, cfg, tcfg, backend=get_backend("numpy", "float32", 1), progress=False)
    assert [str(w.message)[:57] for w in shown] == ["step 1 overflowed float32 (NumPy reported: invalid value, "[:57]]
    assert shown[0].category is ByolRefWarning and shown[0].filename == __file__  # (the caller's line: fit's call)
    assert "its loss is finite (4)" in str(shown[0].message) and "rate (lr 1.25e+29)" in str(shown[0].message)  # (x 32/256)
    with np.errstate(all="raise"), pytest.raises(FloatingPointError):  # (debugging where a NaN is born)
        fit(data, cfg, tcfg, backend=get_backend("numpy", "float32", 1), progress=False)
    seen = []
    with np.errstate(all="call", call=lambda kind, flag: seen.append(kind)), pytest.raises(TrainingDiverged):
        fit(data, cfg, tcfg, backend=get_backend("numpy", "float32", 1), progress=False)
    assert "overflow" in seen  # (a handler of the caller's own is still called)

    class Log:  # (np.seterr(...="log") writes to the handler's write)
        def write(self, text):
            seen.append(text)

    with warnings.catch_warnings(), np.errstate(over="log", invalid="warn", call=Log()):
        warnings.simplefilter("ignore", RuntimeWarning)  # (invalid="warn": NumPy's, as the caller asked)
        with pytest.raises(TrainingDiverged):  # (the handler was fit's, and NumPy called its .write: AttributeError)
            fit(data, cfg, tcfg, backend=get_backend("numpy", "float32", 1), progress=False)
    assert any("overflow" in text for text in seen if text not in ("overflow", "invalid value"))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        fit(data, cfg, _tcfg(epochs=1), progress=False)
    assert shown == []


def test_fit_makes_a_missing_out_dir_with_its_parents_and_logs_the_init_at_epoch_0(data, tmp_path):
    """fit(out_dir=a/b), where neither folder exists, makes both: the command line makes its --out
    itself, so only a library call reaches fit's own mkdir (a mutation audit: parents=False passed).
    The first record, the kNN of the random init, is at step 0 and epoch 0 (epoch 1.0 passed too), the
    same in the history and in metrics.jsonl; step k is at epoch k / steps per epoch (4 here: 128
    training rows, in batches of 32)."""
    out = tmp_path / "a" / "b"
    res = fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), out_dir=out, progress=False)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert data.x_train.shape[0] == 128 and records == res.history and len(records) == 1 + 4
    assert records[0]["step"] == 0 and records[0]["epoch"] == 0.0 and "knn" in records[0] and "loss" not in records[0]
    assert [(r["step"], r["epoch"]) for r in records[1:]] == [(k, k / 4) for k in range(1, 5)]


def test_fit_steps_its_own_state_in_place(data, monkeypatch):
    """fit owns its state (it copies a caller's), so each step updates the online and target params and
    the optimiser's buffers in the arrays the step before left: no weight-sized copy a step, the memory
    train_step's ``inplace`` promises. (A mutation audit: fit stepping with inplace=False gave the same
    numbers, bit for bit, and passed every test.)"""
    import byol_ref.train as train

    real, steps = train.train_step, []

    def arrays(state):  # (by name: a step may hand back a dict of the same arrays in another order)
        return {(part, name): id(a) for part, tree in (("online", state.online.params), ("target", state.target.params),
                                                      ("optimiser", state.opt_state)) for name, a in tree.items()}

    def watched(state, *args, **kwargs):
        before = arrays(state)
        new, metrics = real(state, *args, **kwargs)
        steps.append(arrays(new) == before)
        return new, metrics

    monkeypatch.setattr(train, "train_step", watched)
    fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), progress=False)
    assert steps == [True] * 4


def test_short_run_lowers_the_loss_without_collapse(data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    res = fit(data, cfg, _tcfg(epochs=30, lr=5e-3), progress=False)
    assert res.history[0]["step"] == 0 and "knn" in res.history[0]  # the kNN of the random init
    losses = [h["loss"] for h in res.history if "loss" in h]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.1
    assert res.history[-1]["z_std"] > 0.3 * res.history[-1]["z_std_healthy"]  # not collapsed (collapse is 0)
    assert res.history[-1]["z_rank"] > 2


def _assert_same_bits(got, want):
    """Two TrainStates hold the same params, buffers, optimiser state and generator, bit for bit."""
    for a, b in [(want.online.params, got.online.params), (want.target.params, got.target.params),
                 (want.online.buffers, got.online.buffers), (want.target.buffers, got.target.buffers),
                 (want.opt_state, got.opt_state)]:
        assert set(a) == set(b)
        for k in a:
            np.testing.assert_array_equal(to_numpy(a[k]), to_numpy(b[k]), err_msg=k)
    assert want.rng.bit_generator.state == got.rng.bit_generator.state


def test_resume_is_bit_identical(tmp_path, data, backend):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=4)  # 128 train samples: 4 steps per epoch -> 16 steps, checkpoints every 3

    def be():
        return get_backend(backend.name, "float64", tcfg.seed)

    full = fit(data, cfg, tcfg, backend=be(), progress=False, out_dir=tmp_path / "full")
    part = tmp_path / "part"
    fit(data, cfg, tcfg, backend=be(), progress=False, out_dir=part, stop_at=7)  # "crash" after step 7 (mid-epoch)
    resumed = fit(data, cfg, tcfg, backend=be(), progress=False, out_dir=part, resume=True)
    assert resumed.state.step == full.state.step == 16
    _assert_same_bits(resumed.state, full.state)


@pytest.mark.parametrize("row", range(len(TRAIN_PAIRS)), ids=pair_ids(TRAIN_PAIRS))
def test_resume_is_bit_identical_at_every_pair_of_conventions(tmp_path, data, row):
    """The test above resumes byol-ref's defaults; tests/conventions.py's TRAIN_PAIRS are a few dozen runs in which
    every value of every convention of the model and of the training (optimiser and its LARS variants, schedules
    and their denominators, when and how the EMA runs, float32, the logging, kNN and checkpoint cadences, ...)
    meets every value of every other. Each, stopped at some step, resumes to the uninterrupted run's bits."""
    model, train = TRAIN_PAIRS[row]
    _assert_resume_is_bit_identical(data, model, train, seed=row, stop=1 + row % 11, out=tmp_path)


@given(kw=model_conventions().flatmap(lambda mk: st.tuples(st.just(mk), train_conventions(mk.get("norm")))),
       seed=st.integers(0, 1000), stop=st.integers(1, 11))
def test_resume_is_bit_identical_at_drawn_conventions(tmp_path_factory, data, kw, seed, stop):
    """The conventions drawn at random (the profile's examples: 40 in CI, 150 under the search profile), beyond
    the pairs above. (A sweep of 736 draws, and three searches of 150, found none that differed.)"""
    _assert_resume_is_bit_identical(data, *kw, seed=seed, stop=stop, out=tmp_path_factory.mktemp("resume"))


def _assert_resume_is_bit_identical(data, model: dict, train: dict, *, seed: int, stop: int, out: Path):
    """A run of 12 steps stopped after ``stop`` and resumed ends with the uninterrupted run's params, buffers,
    optimiser state, generator and metrics.jsonl (but for the record stop_at adds)."""
    cfg = byol.Config(encoder_dim=12, hidden_size=16, projection_dim=8, predictor_dim=8, projector_hidden_dim=16,
                      **model)
    tcfg = TrainConfig(**{**train, "epochs": 3, "batch_size": 32, "seed": seed})  # 12 steps
    full = fit(data, cfg, tcfg, backend=get_backend("numpy", tcfg.dtype, seed), progress=False, out_dir=out / "full")
    fit(data, cfg, tcfg, backend=get_backend("numpy", tcfg.dtype, seed), progress=False, out_dir=out / "part",
        stop_at=stop)
    resumed = fit(data, cfg, tcfg, backend=get_backend("numpy", tcfg.dtype, seed), progress=False,
                  out_dir=out / "part", resume=True, log=lambda msg: None)
    assert resumed.state.step == full.state.step == 12
    _assert_same_bits(resumed.state, full.state)
    whole = (out / "full" / "metrics.jsonl").read_text().splitlines()
    part = (out / "part" / "metrics.jsonl").read_text().splitlines()
    assert [line for line in part if json.loads(line)["step"] != stop or line in whole] == whole


def test_a_full_disk_at_a_metrics_record_names_the_file_and_resume_is_bit_identical(tmp_path, data, monkeypatch):
    """A record of metrics.jsonl that finds the disk full is raised naming metrics.jsonl (the write
    said only ``[Errno 28]``), at that record, not at a later close; the checkpoint before it stands,
    and a resume, which drops the torn end of the file, is bit-identical to a run never stopped."""
    import errno

    from byol_ref import train

    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=2)  # 8 steps, a checkpoint every 3, a record every step
    full = fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "full")
    part, real_open, records = tmp_path / "part", open, []

    class NoRoomAfterStep5:
        def __init__(self, f):
            self.f, self.name = f, f.name

        def write(self, text):
            records.append(text)
            if '"step": 5,' in text:
                self.f.write(text[:7])  # (what got out before the disk was full)
                self.f.flush()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(train, "open", lambda *a, **kw: NoRoomAfterStep5(real_open(*a, **kw)), raising=False)
    with pytest.raises(OSError) as info:
        fit(data, cfg, tcfg, progress=False, out_dir=part)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(part / "metrics.jsonl")
    assert '"step": 5,' in records[-1] and load_checkpoint(part / "checkpoint.npz")[0].step == 3
    monkeypatch.undo()
    resumed = fit(data, cfg, tcfg, progress=False, out_dir=part, resume=True)
    for a, b in [(full.state.online.params, resumed.state.online.params),
                 (full.state.target.params, resumed.state.target.params),
                 (full.state.opt_state, resumed.state.opt_state)]:
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert (part / "metrics.jsonl").read_text() == (tmp_path / "full" / "metrics.jsonl").read_text()


@pytest.mark.parametrize("target_init", ["copy", "independent", "copy_encoder"])
def test_data_init_sets_the_affine_layers_from_the_training_inputs(tmp_path, data, target_init):
    """data_init: at step 0 every affine layer holds the batch statistics of the (standardised)
    training inputs, the target gets the same treatment, and a resumed run stays bit-identical
    (the initialisation happens once, before the first checkpoint)."""
    from byol_ref.augment import default_views_for
    from byol_ref.train import init_sample, prepare_training_data

    cfg = byol.Config(encoder_dim=12, norm="affine", target_init=target_init, **SMALL)
    tcfg = _tcfg(epochs=3, data_init=True)
    be = get_backend("numpy", "float64", tcfg.seed)
    _, prepared, input_norm = prepare_training_data(data, default_views_for(data))
    x0 = init_sample(prepared.x_train, input_norm, be)
    assert x0.shape == prepared.x_train.shape  # 128 rows: all of them
    state = init_state(cfg, tcfg, be, x0)
    # encoder.norm1 sees fc1's output: its affine standardises it
    h = x0 @ state.online.params["encoder.fc1.weight"] + state.online.params["encoder.fc1.bias"]
    out = h * state.online.params["encoder.norm1.gamma"] + state.online.params["encoder.norm1.beta"]
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1, rtol=1e-3)  # var / (var + eps)
    for k, v in state.target.params.items():
        same = np.array_equal(v, state.online.params[k])
        copied = target_init == "copy" or target_init == "copy_encoder" and k.startswith("encoder.")
        assert same == (copied or not k.endswith((".gamma", ".beta", ".weight"))), k
    with pytest.raises(ValueError, match="needs x_init"):
        init_state(cfg, tcfg, be)
    full = fit(data, cfg, tcfg, progress=False)
    first_steps = fit(data, cfg, tcfg, progress=False, stop_at=0)
    for k, v in state.online.params.items():
        np.testing.assert_array_equal(first_steps.state.online.params[k], v, err_msg=k)
    part = tmp_path / "part"
    fit(data, cfg, tcfg, progress=False, out_dir=part, stop_at=5)
    resumed = fit(data, cfg, tcfg, progress=False, out_dir=part, resume=True)
    for k, v in full.state.online.params.items():
        np.testing.assert_array_equal(resumed.state.online.params[k], v, err_msg=k)


def test_data_init_needs_the_affine_norm(data):
    with pytest.raises(ValueError, match=r"data_init=True sets the norm='affine' layers from the data, but the "
                                         r"model has norm='batch'; use norm='affine' \(--norm affine\)"):
        fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(data_init=True), progress=False)
    with pytest.raises(TypeError, match="data_init must be a bool, got 'yes'"):
        TrainConfig(data_init="yes")


def test_resume_keeps_the_runs_augmentations(tmp_path, data):
    """Custom views are stored in the checkpoint: a resume that does not pass them again continues
    with them (bit-identically), and one that passes others is refused."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=3)
    views = (VectorAug(noise_std=0.3, p_mask=0.2), VectorAug(noise_std=0.05, p_mask=0.0, scale=(0.9, 1.1)))
    full = fit(data, cfg, tcfg, progress=False, views=views)
    part = tmp_path / "part"
    fit(data, cfg, tcfg, progress=False, out_dir=part, stop_at=5, views=views)
    # (fit is called from Python: its messages name resume=True, not the CLI's --resume)
    with pytest.raises(ValueError, match="^resume=True: the checkpoint was trained with other augmentations"):
        fit(data, cfg, tcfg, progress=False, out_dir=part, resume=True, views=(VectorAug(), VectorAug()))
    resumed = fit(data, cfg, tcfg, progress=False, out_dir=part, resume=True)
    for k, v in full.state.online.params.items():
        np.testing.assert_array_equal(resumed.state.online.params[k], v, err_msg=k)


def test_checkpoint_features_use_the_runs_own_input_statistics(tmp_path):
    """Feature vectors are standardised with the train split's statistics before augmentation;
    the checkpoint stores them, so features of new rows match what the report probes (shifted
    and scaled data would otherwise be standardised with the new rows' own statistics)."""
    from byol_ref.report import evaluate_features
    from byol_ref.train import apply_preprocessing, checkpoint_features, encode, fit_preprocessing

    raw = synthetic(n=160, dim=12, n_classes=4, seed=0)
    shifted = raw._replace(x_train=raw.x_train * 40.0 + 7.0, x_test=raw.x_test * 40.0 + 7.0)
    cfg = byol.Config(encoder_dim=12, **SMALL)
    res = fit(shifted, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path / "r")
    prep = load_checkpoint(tmp_path / "r" / "checkpoint.npz")[3]["preprocessing"]
    assert prep == fit_preprocessing(shifted) and prep["kind"] == "standardize"
    # FitResult.dataset is what the networks saw: standardised, so the probes see the same thing.
    np.testing.assert_allclose(res.dataset.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(res.dataset.x_train.std(axis=0), 1.0, rtol=1e-12)
    be = get_backend()
    expected = encode(res.state.online, res.dataset.x_test, res.input_norm, be)
    np.testing.assert_array_equal(checkpoint_features(tmp_path / "r", shifted.x_test), expected)
    assert checkpoint_features(tmp_path / "r", shifted.x_test[:3], which="z").shape == (3, SMALL["projection_dim"])
    report = evaluate_features(res.state.online, res.dataset, res.input_norm, be)
    assert report["collapse"]["encoder_y"]["std_ratio"] == pytest.approx(
        evaluate_features(res.state.online, *apply_preprocessing(shifted, prep), be)["collapse"]["encoder_y"]["std_ratio"])
    # Images keep their pixels and get a scalar per-view normalisation.
    from byol_ref.data import load_digits

    digits = load_digits()
    img_prep = fit_preprocessing(digits)
    assert img_prep == {"kind": "image", "mean": float(digits.x_train.mean()), "std": float(digits.x_train.std())}
    same, norm = apply_preprocessing(digits, img_prep)
    assert same.x_train is digits.x_train and same.x_test is digits.x_test and same.image_shape == (8, 8)
    assert norm == (img_prep["mean"], img_prep["std"])
    # Clear errors: wrong width, wrong kind, malformed dicts, bad inputs.
    with pytest.raises(ValueError, match="standardises 12 features, but .* has 64"):
        apply_preprocessing(digits._replace(image_shape=None), prep)
    as_rows, norm = apply_preprocessing(digits._replace(image_shape=None), img_prep)  # e.g. a CSV export
    assert as_rows.x_train is digits.x_train and norm == (img_prep["mean"], img_prep["std"])
    with pytest.raises(ValueError, match="must come from fit_preprocessing"):
        apply_preprocessing(raw, {"kind": "whiten"})
    with pytest.raises(ValueError, match="x must have 12 features"):
        checkpoint_features(tmp_path / "r", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="which must be one of"):
        checkpoint_features(tmp_path / "r", shifted.x_test, which="p")
    # A checkpoint whose stored statistics do not fit its own network is named as the culprit.
    arrays, meta = ckpt.load(tmp_path / "r" / "checkpoint.npz")
    meta["preprocessing"] = {**prep, "mean": prep["mean"][:5], "std": prep["std"][:5]}
    bad = ckpt.save(tmp_path / "bad.npz", arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(ckpt.CheckpointError, match=r"bad.npz: the preprocessing standardises 5 features, but x has 12; "
                                                   "the file is corrupt or was edited, and no run writes this$"):
        checkpoint_features(bad, shifted.x_test)
    meta["preprocessing"] = {"kind": "image", "mean": [0.1, 0.2], "std": [0.3, 0.3]}  # (an image run's is scalar)
    bad = ckpt.save(tmp_path / "bad.npz", arrays, {k: v for k, v in meta.items() if k not in ("format", "version")})
    with pytest.raises(ckpt.CheckpointError, match=r"^\S*bad.npz: an image preprocessing holds one mean and one std, "
                                                   r"got shapes \(2,\), \(2,\); the file is corrupt or was edited, and no "
                                                   "run writes this$"):
        checkpoint_features(bad, np.full((2, 12), 0.5))


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (NumPy's "overflow encountered in divide" came first)
def test_checkpoint_features_name_rows_the_runs_standardisation_takes_beyond_its_dtype(data, tmp_path):
    """A user asked checkpoint_features for the features of finite rows that the run's recorded input
    statistics take beyond float64 (1e308 divided by a std below 1; or any row, by a std of 1e-320 in
    a checkpoint edited to hold one): NumPy warned of an overflow, then the network's check said "x has
    ... non-finite value(s)", of an x that had none. The rows are named as eval and embed name them, with
    the checkpoint whose statistics they are."""
    from byol_ref.train import checkpoint_features

    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "r")
    path = tmp_path / "r" / "checkpoint.npz"
    std = ckpt.load(path)[1]["preprocessing"]["std"]
    x = np.zeros((3, 12))
    x[1, int(np.argmin(std))] = 1.7e308
    says = (r"^x has 1 value\(s\) that the run's input standardisation \(its training data's mean and std, recorded "
            rf"in {re.escape(str(path))}\) takes beyond float64's range \(magnitude 1.8e\+308\), the first at index "
            r"\(1, \d+\) \(raw value 1.7e\+308\); the network would compute inf and NaN features from them: "
            "rescale these data as the run's were$")
    with pytest.raises(ValueError, match=says):
        checkpoint_features(path, x)
    arrays, meta = ckpt.load(path)
    meta["preprocessing"]["std"][0] = 1e-320
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    edited = ckpt.save(tmp_path / "edited.npz", arrays, meta)
    with pytest.raises(ValueError, match=r"^x has 3 value\(s\) that .* recorded in \S*edited.npz\) takes beyond "):
        checkpoint_features(edited, np.ones((3, 12)))


def test_checkpoint_features_scale_8_and_16_bit_pixels_of_an_image_run_only(data, tmp_path):
    """checkpoint_features reads uint8 and uint16 rows of an image run as load_file does (divided by 255 or
    65535, unless every value is 0 or 1: a mask); a feature-vector run has no pixels to divide, and takes
    float rows only, as everywhere else. Found by scripts/mutation_sweep.py: the image test made ``or``, the 16-bit case dropped and
    a mask divided by 0 each passed every test."""
    import warnings

    from byol_ref.augment import digits_views
    from byol_ref.data import load_digits
    from byol_ref.train import checkpoint_features

    digits = load_digits()
    fit(digits, byol.Config(encoder_dim=64, **SMALL), _tcfg(epochs=1, batch_size=256), progress=False,
        views=digits_views("affine"), out_dir=tmp_path / "img")
    rows = np.random.default_rng(0).integers(0, 256, (4, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (pixels in [0, 1] once scaled: no warning)
        for dtype, scale in (("uint8", 255), ("uint16", 65535)):
            np.testing.assert_array_equal(checkpoint_features(tmp_path / "img", rows.astype(dtype)),
                                          checkpoint_features(tmp_path / "img", rows / scale), err_msg=dtype)
        mask = rows % 2
        np.testing.assert_array_equal(checkpoint_features(tmp_path / "img", mask.astype("uint8")),
                                      checkpoint_features(tmp_path / "img", mask.astype(float)))
        fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), progress=False, out_dir=tmp_path / "vec")
    with pytest.raises(TypeError, match=r"^x must be a floating array \(float32 or float64\), got dtype uint8$"):
        checkpoint_features(tmp_path / "vec", rows[:, :12].astype("uint8"))  # (no pixels: not divided by 255)


def test_the_pixel_range_and_the_dtype_limit_at_their_edges():
    """pixels_outside names a span past 1 however little (1.5, not only 255); values_beyond takes a value of
    exactly the dtype's largest magnitude (a network can hold it) and names one past it."""
    from byol_ref.train import pixels_outside, values_beyond

    assert pixels_outside(np.array([0.0, 1.0])) is None and pixels_outside(np.array([0.0, 1.5])) == "[0, 1.5]"
    top = float(np.finfo("float32").max)
    assert values_beyond(np.array([[top, -top]]), None, "float32") is None
    assert values_beyond(np.array([[0.0, top], [-2 * top, 1.0]]), None, "float32") == (1, (1, 0), top)


def test_fit_names_the_type_of_an_x_train_with_a_dtype_but_no_shape():
    """Its type is named; its shape is not read (scripts/mutation_sweep.py: with the two tests of the message
    joined by ``or``, reading it would raise AttributeError, and every test passed)."""
    from byol_ref.data import Dataset

    class DtypeOnly:
        dtype = np.dtype("float64")

    table = Dataset(x_train=DtypeOnly(), y_train=None, x_test=np.zeros((0, 3)), y_test=None, image_shape=None,
                    name="table")
    with pytest.raises(TypeError, match=r"^dataset.x_train must be a 2-D array \(N, D\) of real numbers, got "
                                        r"DtypeOnly$"):
        fit(table, byol.Config(encoder_dim=3, **SMALL), _tcfg(epochs=1), progress=False)


class _Frame:
    """A table as pandas' DataFrame is one to fit: a 2-D shape, no ``dtype`` (its columns' ``dtypes``
    instead), and its values through ``__array__``."""

    def __init__(self, values):
        self.values, self.ndim, self.shape = values, 2, values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)


def test_fit_trains_on_a_table_with_no_dtype_as_on_its_values(data):
    """A DataFrame-like table (no ``dtype``, values through ``__array__``) trains to the numbers its
    array does; a table of strings, and an object with a shape but no values, are refused by name with
    the dtype they copy to (the bare object failed on "tuple index out of range"), and one whose values
    refuse the copy with what refused it."""
    from byol_ref.data import Dataset

    cfg, tcfg = byol.Config(encoder_dim=data.x_train.shape[1], **SMALL), _tcfg(epochs=1)
    want = fit(data, cfg, tcfg, progress=False).state.online.params
    got = fit(data._replace(x_train=_Frame(data.x_train), x_test=_Frame(data.x_test)), cfg, tcfg,
              progress=False).state.online.params
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    class Bare:
        ndim, shape = 2, (8, 3)

    class Held(_Frame):  # (as a torch tensor that requires grad: "Can't call numpy() on Tensor that requires grad")
        def __array__(self, dtype=None, copy=None):
            raise RuntimeError("not without detach()")

    words, held = _Frame(np.full((8, 3), "a")), Held(np.zeros((8, 3)))
    for split, x, copied in (("x_train", Bare(), "copies to an array of dtype object"),
                             ("x_train", words, "copies to an array of dtype <U1"),
                             ("x_test", Bare(), "copies to an array of dtype object"),
                             ("x_train", held, r"does not copy to an array \(RuntimeError: not without detach\(\)\)")):
        table = Dataset(x_train=np.zeros((8, 3)), y_train=None, x_test=np.zeros((0, 3)), y_test=None,
                        image_shape=None, name="table")._replace(**{split: x})
        with pytest.raises(TypeError, match=rf"^dataset.{split} must be a 2-D array .* of real numbers, got "
                                            rf"{type(x).__name__}, which {copied}$"):
            fit(table, byol.Config(encoder_dim=3, **SMALL), _tcfg(epochs=1), progress=False)


def test_the_monitor_subset_is_drawn_without_replacement_from_a_generator_of_seed_0():
    """monitor_subset's rows: train's, then test's, each ``sort(choice(n, size, replace=False))`` of one
    default_rng(0), as the docstring has it (the same rows on every resume)."""
    from byol_ref.train import monitor_subset

    data = synthetic(n=200, dim=4, n_classes=4, seed=0)
    sub = monitor_subset(data, 30)
    picker = np.random.default_rng(0)
    for split, n in (("train", data.x_train.shape[0]), ("test", data.x_test.shape[0])):
        keep = np.sort(picker.choice(n, 30, replace=False))
        np.testing.assert_array_equal(getattr(sub, f"x_{split}"), getattr(data, f"x_{split}")[keep], err_msg=split)
        np.testing.assert_array_equal(getattr(sub, f"y_{split}"), getattr(data, f"y_{split}")[keep], err_msg=split)


def test_the_knn_monitor_needs_labels_and_finite_features_and_takes_a_test_split_of_one_row(monkeypatch):
    from byol_ref import train
    from byol_ref.train import knn_monitor

    data = synthetic(n=60, dim=4, n_classes=2, seed=0)
    online = byol.build_online(4, projection_dim=4, predictor_dim=3, hidden_size=8, seed=0)
    be = get_backend("numpy")
    one = data._replace(x_test=data.x_test[:1], y_test=data.y_test[:1])
    assert set(knn_monitor(online, one, None, be)) == {"knn"}
    for unlabelled in (data._replace(y_train=None), data._replace(y_test=None),
                       data._replace(x_test=data.x_test[:0], y_test=data.y_test[:0])):
        assert knn_monitor(online, unlabelled, None, be) == {}
    real_encode = train.encode

    def encode(network, x, input_norm, backend):  # (a diverging network: its test features overflow)
        y = real_encode(network, x, input_norm, backend)
        return np.where(x.shape[0] == data.x_test.shape[0], np.inf, y)

    monkeypatch.setattr(train, "encode", encode)
    assert knn_monitor(online, data, None, be) == {}  # (finite train features, not finite test ones: no score)


def test_image_pixels_outside_the_unit_interval_are_refused():
    """The image augmentations clip each view to [0, 1]: 8-bit pixels would train on white images."""
    from byol_ref.augment import digits_views
    from byol_ref.data import load_digits

    digits = load_digits()
    cfg = byol.Config(encoder_dim=64, **SMALL)
    counts = digits._replace(x_train=digits.x_train * 16)  # the raw 0..16 counts
    with pytest.raises(ValueError, match=r"digits: image pixels must lie in \[0, 1\].*spans \[0, 16\]"):
        fit(counts, cfg, _tcfg(epochs=1), progress=False)
    shifted = digits._replace(x_train=digits.x_train - 0.5)
    with pytest.raises(ValueError, match=r"spans \[-0.5, 0.5\]"):
        fit(shifted, cfg, _tcfg(epochs=1), progress=False, views=digits_views("affine"))
    # The same values augmented as plain feature vectors (VectorAug views) are fine: nothing clips them.
    fit(counts, cfg, _tcfg(epochs=1, batch_size=256), progress=False, views=(VectorAug(), VectorAug()))


def test_views_round_trip_through_json():
    from byol_ref.augment import ImageAug, digits_views, views_from_dicts, views_to_dicts

    for views in (digits_views(), digits_views("affine"), (VectorAug(), VectorAug(p_mask=0.3))):
        assert views_from_dicts(json.loads(json.dumps(views_to_dicts(views)))) == tuple(views)
    with pytest.raises(ValueError, match="view kind"):
        views_from_dicts([{"kind": "audio"}])
    with pytest.raises(ValueError, match="unknown ImageAug field"):
        views_from_dicts([{"kind": "image", "hue": 0.1}])
    with pytest.raises(TypeError, match="ImageAug or VectorAug"):
        views_to_dicts([ImageAug(), "strong"])


def test_checkpoint_round_trip_and_atomicity(tmp_path):
    cfg = byol.Config(encoder_dim=5, **SMALL)
    tcfg = _tcfg()
    state = init_state(cfg, tcfg, get_backend("numpy", "float64", 3))
    path = save_checkpoint(tmp_path / "c.npz", state, cfg, tcfg)
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary left behind
    loaded, cfg2, tcfg2, meta = load_checkpoint(path)
    assert cfg2 == cfg and tcfg2 == tcfg and meta["format"] == "byol-ref-checkpoint"
    assert meta["written_by"] == {"byol_ref": byol.__version__, "numpy": np.__version__}
    for k, v in state.online.params.items():
        np.testing.assert_array_equal(loaded.online.params[k], v)
    assert loaded.rng.bit_generator.state == state.rng.bit_generator.state


def test_every_file_byol_ref_writes_appears_whole_or_not_at_all(tmp_path, monkeypatch):
    """A write that fails half-way (a crash, Ctrl-C, a full disk) leaves the earlier file as it was
    and no temporary behind: checkpoints, traces, converted weights, features, config and reports."""
    from byol_ref.interchange import save_arrays

    def half_then_fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    for name in ("checkpoint.npz", "config.json", "w.safetensors"):
        target = tmp_path / name
        target.write_bytes(b"the user's file")
        with pytest.raises(KeyboardInterrupt):
            ckpt.atomic_write(target, half_then_fail)
        assert target.read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "config.json", "w.safetensors"]
    # The .npz writers go through it: a member's write failing half-way leaves the old file.
    (tmp_path / "w.npz").write_bytes(b"the user's file")

    def failing_write_array(f, array, **kw):
        f.write(b"\x93NUMPY partial")
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(np.lib.format, "write_array", failing_write_array)
        for write in (lambda: save_arrays(tmp_path / "w.npz", {"a": np.ones(3)}),
                      lambda: ckpt.save(tmp_path / "w.npz", {"online": {"a": np.ones(3)}}, {})):
            with pytest.raises(OSError, match="disk full"):
                write()
            assert (tmp_path / "w.npz").read_bytes() == b"the user's file"
    ckpt.atomic_write_text(tmp_path / "config.json", "{}")
    save_arrays(tmp_path / "w.safetensors", {"a": np.ones(3)})
    save_arrays(tmp_path / "w.npz", {"a": np.ones(3)})
    assert (tmp_path / "config.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.npz", "config.json", "w.npz",
                                                         "w.safetensors"]


def _same_tree(a, b) -> bool:
    """Equal nested dicts / lists of arrays and plain values, dtypes included."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_tree(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same_tree(u, v) for u, v in zip(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    return type(a) is type(b) and a == b


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory):
    cfg = byol.Config(encoder_dim=5, hidden_size=6, projection_dim=3, predictor_dim=4)
    path = save_checkpoint(tmp_path_factory.mktemp("ck") / "good.npz",
                           init_state(cfg, _tcfg(), get_backend()), cfg, _tcfg())
    return path.read_bytes(), ckpt.load(path)


@settings(max_examples=200)
@given(where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7), cut=st.booleans())
def test_a_checkpoint_cut_short_or_with_any_bit_flipped_is_refused_or_reads_as_written(
        checkpoint_bytes, tmp_path_factory, where, bit, cut):
    """A disk or copy fault anywhere in the file: a checkpoint cut short at any byte, or with any one
    bit flipped, is a CheckpointError (no other exception: a zlib, struct or zip error, a KeyError)
    or, where the flip falls in bytes nothing reads (a zip timestamp), loads exactly as written.
    (A search of 4,500 random faults found no third outcome; the zip CRC is what catches a flip in
    an array's bytes.)"""
    raw, written = checkpoint_bytes
    at = int(where * len(raw))
    faulty = bytearray(raw[:at]) if cut else bytearray(raw)
    if not cut:
        faulty[at] ^= 1 << bit
    path = tmp_path_factory.mktemp("fault") / "checkpoint.npz"
    path.write_bytes(bytes(faulty))
    try:
        read = ckpt.load(path)
        load_checkpoint(path)  # (the state built from it, with its own checks)
    except ckpt.CheckpointError:
        return
    assert not cut, "a checkpoint cut short was read"
    assert _same_tree(read, written), f"a bit flipped at byte {at} was read as other values"


def test_checkpoint_save_writes_only_what_load_reads(tmp_path):
    """save refuses what would make a file its own load refuses (another format or version, an
    empty name) and names the bad argument; a meta that load returned saves again as it is."""
    path = tmp_path / "c.npz"
    for arrays, meta, err, says in (
            ({"online": {}}, {"format": "other"}, ValueError, r"meta sets \{'format': 'other'\}, but save writes "
                                                              "this byol-ref's checkpoint format"),
            ({"online": {}}, {"version": 99}, ValueError, r"meta sets \{'version': 99\}"),
            ({"online": {"": np.ones(2)}}, {}, ValueError, r"arrays\['online'\] has the name ''; names are "
                                                             "non-empty strings"),
            (None, {}, TypeError, "arrays must be a dict group -> dict name -> array, got NoneType"),
            ({"online": [np.ones(2)]}, {}, TypeError, "arrays must be a dict group -> dict name -> array"),
            ({"online": {}}, None, TypeError, "meta must be a dict of JSON values, got NoneType"),
            ({"online": {}}, {"x": np.ones(2), "step": 1}, TypeError, r"meta must hold JSON values .*; \['x'\] do "
                                                                       "not")):
        with pytest.raises(err, match=says):
            ckpt.save(path, arrays, meta)
    assert not path.exists()
    with pytest.raises(TypeError, match="path must be a str or os.PathLike file path, got NoneType"):
        ckpt.save(None, {}, {})
    arrays, meta = ckpt.load(ckpt.save(path, {"online": {"a": np.ones(2)}}, {"step": 3}))
    meta["written_by"] = {"byol_ref": "0.0.1"}  # replaced: the file is written now
    arrays, again = ckpt.load(ckpt.save(path, arrays, meta))
    assert again["step"] == 3 and again["written_by"]["byol_ref"] != "0.0.1"


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path):
    cfg = byol.Config(encoder_dim=5, **SMALL)
    tcfg = _tcfg()
    good = save_checkpoint(tmp_path / "good.npz", init_state(cfg, tcfg, get_backend()), cfg, tcfg)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ckpt.CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "trunc.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(ckpt.CheckpointError, match=r"garbage.npz is not an .npz \(zip\) file, so not a byol-ref "
                                                   r"checkpoint: another kind of file, or one cut short or corrupted"):
        load_checkpoint(tmp_path / "garbage.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match=r"empty.npz is empty \(0 bytes\), so not a byol-ref checkpoint"):
        load_checkpoint(tmp_path / "empty.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.zeros(3))
    with pytest.raises(ckpt.CheckpointError, match="not a byol-ref checkpoint"):
        load_checkpoint(tmp_path / "foreign.npz")
    with pytest.raises(FileNotFoundError, match=r"^checkpoint not found: \S*missing.npz does not exist$"):
        load_checkpoint(tmp_path / "missing.npz")
    # a folder is not taken for a missing file (and what a run directory is, the caller says)
    with pytest.raises(FileNotFoundError, match=r"is a folder, not a checkpoint file \(a run directory keeps its "
                                                r"checkpoint in checkpoint.npz\)$"):
        load_checkpoint(tmp_path)
    if hasattr(os, "mkfifo"):  # a pipe is there (it was said not to exist), and is not read (that would block)
        os.mkfifo(tmp_path / "pipe.npz")
        with pytest.raises(FileNotFoundError, match=r"^checkpoint not found: \S*pipe.npz is not a regular file "
                                                    r"\(a pipe, device or socket\)$"):
            load_checkpoint(tmp_path / "pipe.npz")
    # An entry stored a second time (zip allows it; NumPy would read one of the two without a word).
    import warnings

    twice = tmp_path / "twice.npz"
    twice.write_bytes(raw)
    with warnings.catch_warnings(), zipfile.ZipFile(twice, "a") as z:
        warnings.simplefilter("ignore")  # zipfile's "Duplicate name"
        z.writestr("online/encoder.fc1.weight.npy", zipfile.ZipFile(good).read("meta.npy"))
    with pytest.raises(ckpt.CheckpointError, match=r"twice.npz holds 1 array name\(s\) more than once "
                                                   r"\(\['online/encoder.fc1.weight'\]\)"):
        load_checkpoint(twice)
    # A member that is no .npy array (NumPy would hand back its bytes), and meta JSON that Python's
    # parser cannot take or would take quietly.
    def rewritten(name, **members):
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(tmp_path / name, "w") as dst:
            for item in src.namelist():
                dst.writestr(item, members.pop(item, None) or src.read(item))
            for item, data in members.items():
                dst.writestr(item, data)
        return tmp_path / name

    with pytest.raises(ckpt.CheckpointError, match=r"raw.npz holds 1 member\(s\) that are not .npy arrays "
                                                   r"\(\['opt/count'\]\)"):
        load_checkpoint(rewritten("raw.npz", **{"opt/count.npy": b"not an array"}))
    member = zipfile.ZipFile(good).read("online/encoder.fc1.bias.npy")
    (n,) = np.load(__import__("io").BytesIO(member)).shape
    cut = member.replace(f"({n},)".encode(), f"({n - 1},)".encode().ljust(len(f"({n},)")))
    with pytest.raises(ckpt.CheckpointError, match=rf"cut.npz is corrupt: its member 'online/encoder.fc1.bias': its "
                                                   rf"header claims shape \({n - 1},\) of float64 \({8 * (n - 1)} "
                                                   rf"bytes\) but it holds {8 * n} bytes of data"):
        load_checkpoint(rewritten("cut.npz", **{"online/encoder.fc1.bias.npy": cut}))

    def meta(text):
        import io
        buf = io.BytesIO()
        np.save(buf, np.array(text))
        return buf.getvalue()

    for text, says in (("[" * 100_000 + "]" * 100_000, "is not JSON that byol-ref reads: nested deeper"),
                       ('{"step": 1, "step": 2}', r"gives \['step'\] more than once"),
                       ('{"step": ' + "9" * 5000 + "}", r"is not valid JSON \(ValueError: Exceeds the limit")):
        with pytest.raises(ckpt.CheckpointError, match=r"meta.npz: its meta entry " + says):
            load_checkpoint(rewritten("meta.npz", **{"meta.npy": meta(text)}))
    with pytest.raises(ckpt.CheckpointError, match=r"meta.npz: its meta entry is a float64 array of shape \(2,\), "
                                                   r"expected one string of JSON"):
        load_checkpoint(rewritten("meta.npz", **{"meta.npy": meta([1.0, 2.0])}))
    with pytest.raises(ckpt.CheckpointError, match=r"meta.npz: its meta entry is a <U2 array of shape \(2,\)"):
        load_checkpoint(rewritten("meta.npz", **{"meta.npy": meta(["{}", "{}"])}))
    with pytest.raises(ckpt.CheckpointError, match=r"meta.npz: its meta entry is a <U2 array of shape \(1,\)"):
        load_checkpoint(rewritten("meta.npz", **{"meta.npy": meta(["{}"])}))  # one string, but in an array
    # A member's header larger than NumPy reads without trust: named, without NumPy's advice to trust it.
    big = np.lib.format.header_data_from_array_1_0(np.zeros(3))
    header = repr({**big, "descr": "<f8"}).encode().ljust(20_000) + b"\n"
    oversized = b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + bytes(24)
    with pytest.raises(ckpt.CheckpointError, match=r"big.npz is corrupt or not written by NumPy: [^\n]*$") as err:
        load_checkpoint(rewritten("big.npz", **{"opt/count.npy": oversized}))
    assert "allow_pickle" not in str(err.value)
    # a pickled object array is refused, never unpickled
    with zipfile.ZipFile(tmp_path / "pickled.npz", "w") as z:
        with z.open("meta.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ckpt.CheckpointError, match="holds pickled .object. data, which byol-ref never loads"):
        load_checkpoint(tmp_path / "pickled.npz")
    # a newer format version is refused with advice
    arrays, meta = ckpt.load(good)
    meta["version"] = 99
    ckpt.save(tmp_path / "newer.npz", {g: v for g, v in arrays.items() if v}, {k: v for k, v in meta.items()
                                                                             if k not in ("format", "version")})
    data = dict(np.load(tmp_path / "newer.npz", allow_pickle=False))
    data["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "newer.npz", **data)
    with pytest.raises(ckpt.CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "newer.npz")
    for version in (None, "1", 1.0):  # missing or not an int: refused, not read as version 0
        meta["version"] = version
        data["meta"] = np.array(json.dumps({k: v for k, v in meta.items() if v is not None}))
        np.savez(tmp_path / "odd.npz", **data)
        with pytest.raises(ckpt.CheckpointError, match="checkpoint format version"):
            load_checkpoint(tmp_path / "odd.npz")
    # an entry outside the groups, or a group with an empty key, is not a byol-ref checkpoint
    meta["version"] = ckpt.VERSION
    for entry in ("online/", "extra/w", "w"):
        np.savez(tmp_path / "entry.npz", **{**data, "meta": np.array(json.dumps(meta)), entry: np.zeros(2)})
        with pytest.raises(ckpt.CheckpointError, match="unexpected entry"):
            load_checkpoint(tmp_path / "entry.npz")


def test_the_random_init_baseline_is_not_the_runs_own_initial_weights(data, monkeypatch):
    """The report's random-init encoder is a fresh draw of the architecture (the run's own
    initial weights are already measured: the kNN at step 0 of the training history)."""
    from byol_ref import report

    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=1)
    res = fit(data, cfg, tcfg, progress=False)
    import byol_ref.train as train_module
    from byol_ref.evaluate import collapse_report

    drawn, calibrated = [], []
    real, real_calibrate = report.build_from_config, train_module.calibrate_batch_norm
    monkeypatch.setattr(report, "build_from_config", lambda *a, **k: drawn.append(real(*a, **k)) or drawn[-1])
    monkeypatch.setattr(train_module, "calibrate_batch_norm",
                        lambda net, *a: calibrated.append(net) or real_calibrate(net, *a))
    rep = report.evaluate_features(res.state.online, res.dataset, res.input_norm, get_backend("numpy", "float64", 0),
                                   seed=tcfg.seed, return_features=True)
    start = init_state(cfg, tcfg, get_backend("numpy", "float64", tcfg.seed))
    baseline = drawn[0][0]
    assert not any(np.array_equal(baseline.params[k], v) for k, v in start.online.params.items()
                   if k.endswith(".weight"))
    # the baseline's batch norm gets the data's statistics before it is probed
    assert len(calibrated) == 1 and calibrated[0] is baseline
    # the collapse statistics are those of the test split
    feats, y_test = rep["features"], res.dataset.y_test
    assert rep["collapse"]["projection_z"] == collapse_report(feats["BYOL projector (z)"], y_test)
    assert rep["collapse"]["random_encoder_y"] == collapse_report(feats["random-init encoder"], y_test)


@pytest.mark.parametrize("norm", ["batch", "affine"])
def test_the_random_init_baseline_sees_the_data_after_the_input_normalisation(data, norm):
    """Found by a mutation audit: random_init_baseline calibrating its batch norm on the data before the
    run's input normalisation (or a norm="affine" baseline initialised from them) passed every test; the
    test data had no input normalisation (only image runs have one). Calibrated on x with the
    normalisation, it is the baseline calibrated on the normalised x without one."""
    from byol_ref.model import build_from_config
    from byol_ref.report import random_init_baseline
    from byol_ref.train import InputNorm

    be = get_backend("numpy", "float64", 0)
    online, _ = build_from_config(byol.Config(encoder_dim=12, norm=norm, **SMALL), seed=5, dtype="float64")
    input_norm = InputNorm(np.float64(3.0), np.float64(0.25))  # (a scalar mean and std, as an image run's)
    x = data.x_train
    got = random_init_baseline(online, x, input_norm, be, seed=2)
    want = random_init_baseline(online, input_norm(x), None, be, seed=2)
    changed = random_init_baseline(online, x, None, be, seed=2)  # (the normalisation is not a no-op here)
    for tree in ("params", "buffers"):
        a, b = getattr(got, tree), getattr(want, tree)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12, err_msg=f"{tree}[{k!r}]")
    assert any(not np.allclose(getattr(got, tree)[k], v) for tree in ("params", "buffers")
               for k, v in getattr(changed, tree).items())


def test_the_report_probes_each_feature_set_with_the_options_given(data, monkeypatch):
    """evaluate_features: the four rows in order (raw inputs included), the probe options passed on and
    recorded (the kNN temperature too), the encoder's collapse statistics of y, not z; a norm="affine"
    baseline gets its data-dependent init, as the trained net did; no test labels is refused."""
    from byol_ref import report
    from byol_ref.evaluate import collapse_report
    from byol_ref.model import build_from_config, data_dependent_init
    from byol_ref.train import encode, init_sample

    be = get_backend("numpy", "float64", 0)
    for norm in ("batch", "affine"):
        cfg = byol.Config(encoder_dim=12, norm=norm, **SMALL)
        res = fit(data, cfg, _tcfg(epochs=1), progress=False)
        asked, real = [], report.probe_report
        monkeypatch.setattr(report, "probe_report", lambda *a, **k: asked.append(k) or real(*a, **k))
        shown = []
        rep = report.evaluate_features(res.state.online, res.dataset, res.input_norm, be, seed=3,
                                       labels_per_class=2, k=5, temperature=0.1, return_features=True,
                                       progress=lambda *a: shown.append(a))
        monkeypatch.undo()
        assert [r["name"] for r in rep["rows"]] == ["BYOL encoder (y)", "BYOL projector (z)", "random-init encoder",
                                                    "raw inputs"]
        assert len(asked) == 1 and callable(asked[0].pop("progress"))  # (passed on: `shown` below)
        assert asked == [dict(labels_per_class=2, k=5, seed=3, temperature=0.1)]
        assert shown[0] == (0, 12, "BYOL encoder (y): low-label probe") and shown[-1] == (12, 12, "done")
        assert rep["probe"] == {"k": 5, "labels_per_class": 2, "temperature": 0.1, "seed": 3, "repeats": 5,
                                "cv_folds": 2, "val_fraction": 0.2, "l2_grid": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]}
        feats, y_test = rep["features"], res.dataset.y_test
        np.testing.assert_array_equal(feats["raw inputs"], res.dataset.x_test)
        assert rep["collapse"]["encoder_y"] == collapse_report(feats["BYOL encoder (y)"], y_test)
        assert feats["BYOL encoder (y)"].shape[1] == SMALL["hidden_size"]
        if norm == "affine":  # the baseline's affine layers set from the data, as fit set the run's at step 0
            fresh, _ = build_from_config(cfg, seed=3 + 1_000_003, dtype="float64", backend="numpy")
            want = data_dependent_init(fresh, init_sample(res.dataset.x_train, res.input_norm, be))
            np.testing.assert_allclose(feats["random-init encoder"],
                                       encode(want, res.dataset.x_test, res.input_norm, be), rtol=1e-12)
            assert not np.allclose(feats["random-init encoder"], encode(fresh, res.dataset.x_test, res.input_norm, be))
    with pytest.raises(ValueError, match="evaluation needs labels for the train and test splits"):
        report.evaluate_features(res.state.online, res.dataset._replace(y_test=res.dataset.y_test[:0]),
                                 res.input_norm, be)


def test_format_collapse_and_format_convergence_say_what_they_are_given():
    from byol_ref.report import format_collapse, format_convergence

    stats = {"projection_z": dict(normalized_std=0.1234, healthy_std=0.25, std_ratio=0.49, effective_rank=3.14,
                                  max_rank=16),
             "encoder_y": dict(normalized_std=0.2, healthy_std=0.177, std_ratio=1.13, effective_rank=20.0, max_rank=32)}
    assert format_collapse(stats) == (
        "  projection_z       std of l2-normalised rows 0.1234 (healthy 1/sqrt(d) = 0.2500, ratio 0.49); "
        "effective rank 3.1 of 16\n"
        "  encoder_y          std of l2-normalised rows 0.2000 (healthy 1/sqrt(d) = 0.1770, ratio 1.13); "
        "effective rank 20.0 of 32")
    assert format_convergence([{"name": "raw inputs"}]) == ""  # (rows from before the flag: converged)
    assert format_convergence([{"name": "a", "converged": True}, {"name": "b", "converged": False}]).startswith(
        "Note: a logistic-regression fit of the probes of b stopped at its iteration cap")
    # every set whose fit stopped is named, in the rows' order (a mutation audit: naming only the first survived)
    assert format_convergence([{"name": "a", "converged": False}, {"name": "b", "converged": True},
                               {"name": "c", "converged": False}]).startswith(
        "Note: a logistic-regression fit of the probes of a, c stopped at its iteration cap")


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_data_whose_standardisation_overflows_is_refused_in_words_not_with_numpys_warning(data):
    """Its refusal came after NumPy's 'RuntimeWarning: overflow encountered in square', a traceback-like
    pair of lines with no word of what to do."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    poisoned = data._replace(x_train=data.x_train.copy())
    poisoned.x_train[3, 2] = 1e308
    with pytest.raises(ValueError, match=r"x_train has values whose standardisation overflows to inf or NaN "
                                         r"\(largest magnitude 1e\+308\); rescale the data"):
        fit(poisoned, cfg, _tcfg(epochs=1), progress=False)
    # a column whose sum is inf + -inf (column-major rows are summed pairwise): NaN, and NumPy's "invalid
    # value encountered in reduce" too
    poisoned = data._replace(x_train=data.x_train.copy(order="F"))
    poisoned.x_train[:, 2] = np.resize([1e308, 1e308, -1e308, -1e308], len(poisoned.x_train))
    with pytest.raises(ValueError, match=r"x_train has values whose standardisation overflows to inf or NaN "
                                         r"\(largest magnitude 1e\+308\); rescale the data"):
        fit(poisoned, cfg, _tcfg(epochs=1), progress=False)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (NumPy's: fit tells of an overflow in its own words)
@pytest.mark.filterwarnings(r"ignore:step \d+ overflowed:UserWarning")
def test_divergence_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    out = tmp_path / "run"
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out)  # 5 steps, checkpoint at the end
    before = (out / "checkpoint.npz").read_bytes()
    poisoned = data._replace(x_train=data.x_train.copy())
    poisoned.x_train[:] = 1e308  # standardisation overflows: refused before any step
    with pytest.raises(ValueError, match="overflows"):
        fit(poisoned, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "run2")
    assert not (tmp_path / "run2").exists()
    # a new run over it (asked for) with a lr so large the loss overflows
    huge = _tcfg(epochs=3, lr=1e300, optimizer="sgd", warmup_epochs=0)
    with pytest.raises(FileExistsError, match=f"^out_dir {out} holds a run \\(checkpoint.npz, metrics.jsonl\\); pass "
                                              "resume=True to continue it, overwrite=True to replace it, or choose "
                                              "another out_dir$"):
        fit(data, cfg, huge, progress=False, out_dir=out)
    assert (out / "checkpoint.npz").read_bytes() == before
    records = (out / "metrics.jsonl").read_bytes()
    with pytest.raises(TrainingDiverged, match=r"at step \d+.* No checkpoint was written before it\. The run it "
                                               r"replaces \(overwrite=True\) is put back\. Lower"):
        fit(data, cfg, huge, progress=False, out_dir=out, overwrite=True)
    assert (out / "checkpoint.npz").read_bytes() == before  # the last good checkpoint is back, with its records
    assert (out / "metrics.jsonl").read_bytes() == records and sorted(os.listdir(out)) == ["checkpoint.npz",
                                                                                          "metrics.jsonl"]


class _Crash(Exception):
    """Raised by stop_requested: a crash after a step, before its checkpoint."""


def _crash_after(step):
    count = iter(range(1, 10**6))
    def stop_requested():
        if next(count) == step:
            raise _Crash(f"crash after step {step}")
    return stop_requested


def test_overwrite_puts_the_run_it_replaces_back_whole_when_stopped_before_its_first_checkpoint(tmp_path, data):
    """fit(overwrite=True) truncated the old run's metrics.jsonl at once but left its checkpoint until the new
    run's first: a new run that stopped before then left the old checkpoint beside the new run's records, and
    resume=True continued the old run over them (found by tests/test_resume_lifecycle.py's author). The old
    run now waits aside and comes back whole; once the new run has a checkpoint, it goes."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    out = tmp_path / "run"
    old = fit(data, cfg, _tcfg(epochs=2, checkpoint_every=4), progress=False, out_dir=out, stop_at=6)  # ckpt at 6
    files = {name: (out / name).read_bytes() for name in ("checkpoint.npz", "metrics.jsonl")}
    new_cfg = _tcfg(epochs=2, checkpoint_every=4, seed=7)
    with pytest.raises(_Crash):
        fit(data, cfg, new_cfg, progress=False, out_dir=out, overwrite=True, stop_requested=_crash_after(2))
    assert {name: (out / name).read_bytes() for name in files} == files and sorted(os.listdir(out)) == sorted(files)
    resumed = fit(data, cfg, _tcfg(epochs=2, checkpoint_every=4), progress=False, out_dir=out, resume=True)
    assert resumed.start_step == old.state.step == 6 and resumed.state.step == 8
    # past the new run's first checkpoint (step 4), the run it replaced is gone, and a resume continues the new one
    with pytest.raises(_Crash):
        fit(data, cfg, new_cfg, progress=False, out_dir=out, overwrite=True, stop_requested=_crash_after(5))
    assert sorted(os.listdir(out)) == sorted(files)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()][-1] == 5
    again = fit(data, cfg, new_cfg, progress=False, out_dir=out, resume=True)
    whole = fit(data, cfg, new_cfg, progress=False)
    assert again.start_step == 4
    for k, v in whole.state.online.params.items():
        np.testing.assert_array_equal(again.state.online.params[k], v, err_msg=k)

def test_resume_with_overwrite_too_is_refused_and_writes_nothing(tmp_path, data):
    """resume=True continues the run, overwrite=True starts a new one over it: the pair was taken as a
    resume (overwrite ignored), where the CLI refuses --resume --overwrite. Now fit refuses it too."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    out = tmp_path / "run"
    fit(data, cfg, _tcfg(epochs=2, checkpoint_every=4), progress=False, out_dir=out, stop_at=4)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=r"^resume=True continues the run in out_dir, overwrite=True starts a new "
                                         r"one over it: pass one of them$"):
        fit(data, cfg, _tcfg(epochs=2, checkpoint_every=4), progress=False, out_dir=out, resume=True,
            overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_a_resume_says_where_a_run_an_overwrite_left_set_aside_is(tmp_path, data):
    """A fit(overwrite=True) or train --overwrite killed outright before its first checkpoint leaves the
    run it replaces in out_dir/.replaced and nothing else: fit(resume=True) said only "no checkpoint", where
    the CLI's --resume says where the run is and how to put it back; now fit says so too. A resume of a run
    whose checkpoint is there (the killed overwrite's) removes a .replaced left beside it, as the CLI's does."""
    from byol_ref.rundir import _move_aside

    cfg = byol.Config(encoder_dim=12, **SMALL)
    out = tmp_path / "run"
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out)
    _move_aside(out)  # what a kill leaves: the run aside, nothing of the new one yet
    aside = {p.name: p.read_bytes() for p in (out / ".replaced").iterdir()}
    with pytest.raises(FileNotFoundError, match=rf"^resume=True: {out} has no checkpoint: .* The run it was "
                                                rf"replacing is in {out / '.replaced'}; to go on with that one"):
        fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out, resume=True)
    assert sorted(os.listdir(out)) == [".replaced"] and {p.name: p.read_bytes()
                                                        for p in (out / ".replaced").iterdir()} == aside
    # a checkpoint beside it is the killed overwrite's, written before it could remove the folder
    other = tmp_path / "other"
    fit(data, cfg, _tcfg(epochs=2, seed=5), progress=False, out_dir=other, stop_at=3)
    for name in ("checkpoint.npz", "metrics.jsonl"):
        (out / name).write_bytes((other / name).read_bytes())
    res = fit(data, cfg, _tcfg(epochs=2, seed=5), progress=False, out_dir=out, resume=True)
    assert res.start_step == 3 and sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl"]


def test_a_new_run_is_not_started_beside_a_run_an_overwrite_left_set_aside(tmp_path, data):
    """A folder holding only the .replaced an overwrite killed outright left: fit with neither resume
    nor overwrite started a new run beside it, whose checkpoint a later resume or overwrite took for
    the killed overwrite's, and so removed the set-aside run. Now it is refused, saying where the run
    is; overwrite=True replaces it (kept until the new run's first checkpoint). A caller's own
    ``replacing`` is for a new run only."""
    from byol_ref.rundir import Replacing, _move_aside

    cfg = byol.Config(encoder_dim=12, **SMALL)
    out = tmp_path / "run"
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out)
    _move_aside(out)
    aside = {p.name: p.read_bytes() for p in (out / ".replaced").iterdir()}
    with pytest.raises(FileExistsError, match=rf"^out_dir {out} has no checkpoint: .* The run it was replacing is "
                                              rf"in {out / '.replaced'}; to go on with that one, put it back "
                                              r"\(.*\); or start a new run with overwrite=True$"):
        fit(data, cfg, _tcfg(epochs=1, seed=3), progress=False, out_dir=out)
    assert sorted(os.listdir(out)) == [".replaced"]
    assert {p.name: p.read_bytes() for p in (out / ".replaced").iterdir()} == aside
    for kw in ({"resume": True}, {"overwrite": True}, {"out_dir": None}):  # (overwrite: a second set-aside)
        with pytest.raises(ValueError, match=r"^replacing: .*not with resume=True, overwrite=True or out_dir=None "
                                             rf"\(got resume={kw.get('resume', False)}, "
                                             rf"overwrite={kw.get('overwrite', False)}, out_dir="):
            fit(data, cfg, _tcfg(epochs=1), progress=False, **{"out_dir": out, **kw}, replacing=Replacing(out))
        assert sorted(os.listdir(out)) == [".replaced"]
    with pytest.raises(ValueError, match=f"^replacing set aside the run in {tmp_path}, not in out_dir {out}$"):
        fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out, replacing=Replacing(tmp_path))
    # overwrite=True replaces it: it waits until the new run's first checkpoint, then goes
    stop = fit(data, cfg, _tcfg(epochs=2, seed=3, checkpoint_every=0), progress=False, out_dir=out,
               overwrite=True, stop_at=2)
    assert stop.state.step == 2 and sorted(os.listdir(out)) == ["checkpoint.npz", "metrics.jsonl"]
    # What it set aside had no checkpoint either (killed before its first): "put it back" would not help.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "metrics.jsonl").write_text('{"step": 0}\n')
    _move_aside(bare)
    for resume, error in ((True, FileNotFoundError), (False, FileExistsError)):
        with pytest.raises(error, match=r"has no checkpoint: .* and so had the run it was replacing, whose files are "
                                        r"in .*: there is no run to go on with; start a new one with overwrite=True$"):
            fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=bare, resume=resume)
    (out / ".replaced").write_text("mine")  # (the message named train --overwrite, which fit's user never ran)
    with pytest.raises(FileExistsError, match=r"\.replaced is a file or a link; fit\(overwrite=True\) sets the run"):
        fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out, overwrite=True)
    assert (out / ".replaced").read_text() == "mine"


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (NumPy's: fit tells of an overflow in its own words)
@pytest.mark.filterwarnings(r"ignore:step \d+ overflowed:UserWarning")
def test_a_divergence_says_the_run_it_replaces_is_put_back_only_where_there_was_one(tmp_path, data):
    """Both divergence guards (the loss, and the state a checkpoint would hold) say that the run an
    overwrite=True replaces is put back when out_dir held one, and not when it held none."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tc = _tcfg(epochs=1, optimizer="adam", checkpoint_every=1)
    s0 = init_state(cfg, tc, get_backend("numpy", "float64", 1))
    opt = dict(s0.opt_state)
    opt["nu.encoder.fc1.weight"] = np.full_like(opt["nu.encoder.fc1.weight"], np.inf)  # the loss stays finite
    bad_state = s0._replace(opt_state=opt)
    huge = _tcfg(epochs=3, lr=1e300, optimizer="sgd", warmup_epochs=0, checkpoint_every=0)
    old = tmp_path / "old"
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=old, stop_at=2)
    files = {name: (old / name).read_bytes() for name in os.listdir(old)}
    for held, back in ((False, ""), (True, "; the run it replaces (overwrite=True) is put back")):
        with pytest.raises(TrainingDiverged) as info:
            fit(data, cfg, tc, progress=False, state=bad_state, out_dir=old if held else tmp_path / "a",
                overwrite=True)
        assert str(info.value).endswith(f"; stopping (no checkpoint was written before it{back}). Lower the "
                                        "learning rate."), str(info.value)
        with pytest.raises(TrainingDiverged) as info:
            fit(data, cfg, huge, progress=False, out_dir=old if held else tmp_path / "b", overwrite=True)
        back = back and " The run it replaces (overwrite=True) is put back."
        assert re.fullmatch(r"the loss became \S+ at step \d+ \(lr \S+, tau \S+\); stopping\. No checkpoint was "
                            rf"written before it\.{re.escape(back)} Lower the learning rate or check the data\.",
                            str(info.value)), str(info.value)
    assert {name: (old / name).read_bytes() for name in os.listdir(old)} == files


def test_overwrite_puts_the_run_it_replaces_back_when_interrupted_at_the_first_knn_monitor(tmp_path, data,
                                                                                           monkeypatch):
    """A Ctrl-C (a KeyboardInterrupt, no Exception) in the kNN monitor of step 0, before any step: the run
    overwrite=True replaces comes back whole, as it does when the run stops later before its first checkpoint."""
    import byol_ref.train as train

    cfg = byol.Config(encoder_dim=12, **SMALL)
    out = tmp_path / "run"
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=out)
    files = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "knn_monitor", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(data, cfg, _tcfg(epochs=1, seed=7), progress=False, out_dir=out, overwrite=True)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == files


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="tau_base must be in"):
        TrainConfig(tau_base=1.5)
    with pytest.raises(ValueError, match="batch_size must be an int >= 2"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="warmup_epochs must be in"):
        TrainConfig(epochs=5, warmup_epochs=6)
    # the warm-up pair is refused when the config is made, with the schedule's own message
    with pytest.raises(ValueError, match="would overshoot the peak at step W - 1"):
        TrainConfig(warmup_offset=1, warmup_denominator="W-1")
    with pytest.raises(ValueError, match="warmup_offset must be 0 .official. or 1 .lightly., got True"):
        TrainConfig(warmup_offset=True)
    with pytest.raises(ValueError, match="lr_rounding must be 'exact' or 'float32'.*got 'bf16'"):
        TrainConfig(lr_rounding="bf16")
    import dataclasses

    floats = [f.name for f in dataclasses.fields(TrainConfig) if f.type in ("float", "float | None", "Filled[float]")]
    assert len(floats) >= 10
    for field in floats:  # a number, not a str that float() would take ...
        with pytest.raises(TypeError, match=f"{field} must be a real number, got '0.1'"):
            TrainConfig(**{field: "0.1"})
    # ... and stored as a Python float, so that config.json can hold it
    assert type(TrainConfig(lr=np.float32(0.5), momentum=np.float64(0.5)).lr) is float


def test_train_config_refuses_a_momentum_of_one_whatever_the_optimizer():
    """momentum is in [0, 1): 1 never forgets a gradient. Refused when the config is made, with Adam too
    (which does not use it), not left for an SGD or LARS optimiser to refuse when a run starts."""
    for optimizer in ("adamw", "sgd"):
        with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
            TrainConfig(optimizer=optimizer, momentum=1.0)
    assert TrainConfig(momentum=0.0).momentum == 0.0


def test_train_config_refuses_a_lars_eta_of_zero_whatever_the_optimizer():
    """lars_eta is > 0 (0 would freeze every LARS-scaled tensor): refused when the config is made, with
    Adam too, not left for the LARS optimiser to refuse when a run starts."""
    for optimizer in ("adamw", "lars"):
        with pytest.raises(ValueError, match=r"lars_eta must be in \(0, inf\), got 0.0"):
            TrainConfig(optimizer=optimizer, lars_eta=0.0)


def test_fit_gives_the_same_run_on_every_backend(backend, data, tmp_path):
    """A few steps on the backend (numpy, and cupy where a GPU answers) match NumPy float64,
    and the run checkpoints and resumes there too.

    No biases before batch norm: their true gradient is exactly zero, so they hold rounding noise,
    which Adam's g / sqrt(v) turns into steps of size lr whose signs depend on the order of
    operations; they would differ between backends by ~lr per step while meaning nothing."""
    cfg = byol.Config(encoder_dim=12, hidden_bias=False, **SMALL)
    tcfg = _tcfg(epochs=2)
    ref = fit(data, cfg, tcfg, progress=False)
    be = get_backend(backend.name, "float64", tcfg.seed)
    got = fit(data, cfg, tcfg, backend=be, progress=False, out_dir=tmp_path / "run")
    # atol from the scale of each tree: biases that feed batch norm have exactly-zero gradients, so
    # they hold only rounding noise, which differs with the order of operations (fused kernels).
    for tree_ref, tree_got in ((ref.state.online.params, got.state.online.params),
                               (ref.state.target.params, got.state.target.params)):
        scale = max(np.abs(v).max() for v in tree_ref.values())
        for k, v in tree_ref.items():
            np.testing.assert_allclose(be.to_numpy(tree_got[k]), v, rtol=1e-9, atol=1e-9 * scale, err_msg=k)
    state, _, _, _ = load_checkpoint(tmp_path / "run" / "checkpoint.npz", be)
    assert state.step == got.state.step


def test_a_checkpoint_no_run_could_write_is_refused_naming_the_entry(tmp_path):
    """Contents are checked on load, not found out later as a NaN "in the data", a KeyError or a
    broadcasting error: buffers and optimiser state that do not fit the configs, non-finite
    values, a negative running variance, a data order that is not a permutation, a bad meta."""
    cfg = byol.Config(encoder_dim=5, **SMALL)
    tcfg = _tcfg(optimizer="lars")
    state = init_state(cfg, tcfg, get_backend())
    perm = np.random.default_rng(0).permutation(10)
    good = save_checkpoint(tmp_path / "good.npz", state._replace(epoch_perm=perm), cfg, tcfg)
    load_checkpoint(good)  # as written: fine
    entries = dict(np.load(good, allow_pickle=False))

    def edited(**changes):
        path = tmp_path / "edited.npz"
        e = {**entries, **changes}
        np.savez(path, **{k: v for k, v in e.items() if v is not None})
        return path

    bn = next(k for k in entries if k.startswith("online_buffers/") and k.endswith("running_var"))
    w = next(k for k in entries if k.startswith("online/") and k.endswith(".weight"))
    opt = next(k for k in entries if k.startswith("opt/"))
    count = next(k for k in entries if k.startswith("online_buffers/") and k.endswith(".count"))
    nan_w = entries[w].copy()
    nan_w[0, 0] = np.nan
    cases = [
        ({bn: None}, f"online_buffers does not match the configs: missing \\['{bn.split('/')[1]}'\\]"),
        ({bn: np.ones(3)}, f"{bn} has shape \\(3,\\)"),
        ({bn: -entries[bn]}, f"{bn} holds a negative variance"),
        ({w: nan_w}, f"{w} holds 1 non-finite value"),
        ({opt: None}, "opt does not match the configs"),
        ({"data/epoch_perm": np.arange(10) * 2}, "data/epoch_perm must be a permutation of 0..N-1"),
        ({"data/epoch_perm": perm.astype(float)}, "data/epoch_perm must be a permutation"),
        ({"data/epoch_perm": np.array(0)}, r"data/epoch_perm must be a permutation .* of shape \(\)"),
        ({"meta": np.array("[1, 2]")}, "its meta entry holds a JSON list, expected an object"),
        ({w: entries[w].astype("float32")}, f"{w} has dtype float32, but the run computes in float64"),
        ({w: entries[w].astype("int64")}, f"{w} has dtype int64, but the run computes in float64"),
        ({bn: entries[bn].astype("float32")}, f"{bn} has dtype float32, but the run computes in float64"),
        ({count: -entries[count] - 1}, f"{count} holds a negative value"),
        # (the networks' params, checked as build's: named with the network they belong to)
        ({"online/encoder.fc1.weight": entries["online/encoder.fc1.weight"][:, :3]},
         r"^\S*edited.npz: checkpoint online.params\['encoder.fc1.weight'\] has shape \(5, 3\), expected \(5, 32\)$"),
        ({"target/encoder.fc1.bias": None}, r"^\S*edited.npz: checkpoint target.params do not match the config: "
                                            r"missing \['encoder.fc1.bias'\], unexpected \[\]$"),
    ]
    for changes, message in cases:
        with pytest.raises(ckpt.CheckpointError, match=message):
            load_checkpoint(edited(**changes))
    adam = _tcfg(optimizer="adam")
    entries = dict(np.load(save_checkpoint(tmp_path / "adam.npz", init_state(cfg, adam, get_backend()), cfg, adam),
                           allow_pickle=False))
    nu = next(k for k in entries if k.startswith("opt/nu."))
    for changes, message in (({nu: entries[nu] - 1.0}, f"{nu} holds a negative value"),
                             ({"opt/count": np.array(-1)}, "opt/count holds a negative value")):
        with pytest.raises(ckpt.CheckpointError, match=message):
            load_checkpoint(edited(**changes))
    meta = json.loads(str(entries["meta"][()]))
    with pytest.raises(ckpt.CheckpointError, match="step -3 and epoch position 0 must be >= 0"):
        load_checkpoint(edited(meta=np.array(json.dumps({**meta, "step": -3}))))
    for step in (float("inf"), 1e400, 1.5, 2.0, True, "4"):  # JSON reads 1e400 as infinity
        text = json.dumps({**meta, "step": step}).replace("Infinity", "1e400")
        with pytest.raises(ckpt.CheckpointError, match=r"step .* and epoch position 0 must be whole numbers"):
            load_checkpoint(edited(meta=np.array(text)))


def test_resume_drops_metric_records_logged_after_the_checkpoint(tmp_path, data):
    """An interrupted run has logged steps past its last checkpoint; resuming logs them again, so
    the old ones go: every step appears once, as in an uninterrupted run."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=3, log_every=1, checkpoint_every=2)
    fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "whole")
    out = tmp_path / "cut"
    fit(data, cfg, tcfg, progress=False, out_dir=out, stop_at=4)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    extra = json.loads(lines[-1])
    (out / "metrics.jsonl").write_text("\n".join(lines + [json.dumps({**extra, "step": 5})]) + "\n")  # logged, lost
    fit(data, cfg, tcfg, progress=False, out_dir=out, resume=True)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    whole = [json.loads(line)["step"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert steps == whole and len(set(steps)) == len(steps)


def test_metrics_are_rewritten_only_where_a_record_goes_and_a_record_without_a_step_is_step_0(tmp_path):
    """_drop_records_after, on a resume: a file whose records all stay, each on a line of its own, is left as
    it is (not rewritten: the same file); a record with no ``step`` counts as step 0 and stays, even at a
    resume from step 0; a line that is JSON but no record goes."""
    from byol_ref.train import _drop_records_after

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "knn": 0.5}\n{"step": 1, "loss": 3.0}\n')
    before = os.stat(path)
    _drop_records_after(path, 1)
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    path.write_text('{"note": "no step"}\n{"step": 0, "knn": 0.5}\n[1, 2]\n{"step": 1, "loss": 3.0}\n')
    _drop_records_after(path, 0)
    assert path.read_text() == '{"note": "no step"}\n{"step": 0, "knn": 0.5}\n'


def test_the_training_statistics_agree_to_a_relative_1e_9_and_an_absolute_1e_12():
    """_same_statistics, which a resume uses to tell the run's data from other data: a mean or std within
    rtol 1e-9 (plus atol 1e-12, for values near 0) of the checkpoint's is the same, 1.5 times that is not."""
    from byol_ref.train import _same_statistics

    def same(mean, std, kind="standardize"):
        return _same_statistics(("standardize", np.array([1.0, 0.0]), np.array([2.0, 1.0])),
                                {"kind": kind, "mean": mean, "std": std})

    assert same([1.0, 0.0], [2.0, 1.0]) and not same([1.0, 0.0], [2.0, 1.0], kind="image")
    assert same([1.0 + 0.9e-9, 0.0], [2.0, 1.0]) and not same([1.0 + 1.5e-9, 0.0], [2.0, 1.0])
    assert same([1.0, 0.9e-12], [2.0, 1.0]) and not same([1.0, 1.5e-12], [2.0, 1.0])
    assert same([1.0, 0.0], [2.0 * (1 + 0.9e-9), 1.0]) and not same([1.0, 0.0], [2.0 * (1 + 1.5e-9), 1.0])
    assert not same([1.0], [2.0])  # (another feature count)


def test_resume_drops_a_torn_last_metric_record(tmp_path, data):
    """A crash (or a full disk) can cut the last line short with no newline; resuming must not append
    the next record onto it (two records on one line, neither readable)."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=3, log_every=1, checkpoint_every=2)
    fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "whole")
    out = tmp_path / "torn"
    fit(data, cfg, tcfg, progress=False, out_dir=out, stop_at=4)
    text = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(text + '{"step": "x"}\n' + text.splitlines()[-1][:-7])  # not ours; torn
    fit(data, cfg, tcfg, progress=False, out_dir=out, resume=True)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    whole = [json.loads(line)["step"] for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert steps == whole


def test_resume_refuses_to_cut_a_run_short(tmp_path, data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=2, warmup_epochs=0.5), progress=False, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^resume=True: .* is at step 8, past the 4 steps of 1 epoch\(s\); a resumed run can be "
                                         r"extended, not cut short: ask for at least 2 epochs"):
        fit(data, cfg, _tcfg(epochs=1, warmup_epochs=0.5), progress=False, out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"differs from the requested one \(warmup_epochs: 0.5 in the checkpoint, "
                                         r"0.1 requested\); only epochs may change"):
        fit(data, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path, resume=True)



def test_schedules_are_checked_when_made_not_at_a_later_step():
    with pytest.raises(ValueError, match=r"the peak learning rate .* = inf is not finite"):
        make_schedules(_tcfg(lr=1e308, batch_size=512, lr_batch_scale=1), 1024)  # peak lr overflows to inf


def test_the_knn_monitor_runs_ten_times_a_run_whatever_the_logging(tmp_path, data):
    """kNN records come every K // 10 steps even when --log-every does not land on them."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    res = fit(data, cfg, _tcfg(epochs=5, log_every=7), progress=False, out_dir=tmp_path)  # K = 20
    knn_steps = [r["step"] for r in res.history if "knn" in r]
    assert knn_steps == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    logged = [r["step"] for r in res.history if "loss" in r]
    assert {7, 14, 20} <= set(logged) and set(logged) == {7, 14, 20} | set(knn_steps[1:])


def test_a_run_stopped_early_records_the_step_it_stopped_at(data):
    """stop_at ends a call with a record of its last step, on the logging cadence or not."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    res = fit(data, cfg, _tcfg(epochs=3, log_every=5, eval_every=100), progress=False, stop_at=7)  # K = 12
    assert [r["step"] for r in res.history if "loss" in r] == [5, 7]


def test_a_run_stopped_between_records_and_resumed_writes_the_uninterrupted_runs_metrics(tmp_path, data):
    """A Ctrl-C (``stop_requested``) off the logging cadence adds no record (only stop_at, above, does): the
    resumed run's metrics.jsonl is the uninterrupted run's, byte for byte, as its final state is."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=3, log_every=5, eval_every=100)  # K = 12: records at 0 (kNN), 5, 10 and 12

    class Stop(KeyboardInterrupt):
        pass

    fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "whole")
    steps = iter(range(1, 13))
    with pytest.raises(Stop):
        fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "part",
            stop_requested=lambda: Stop() if next(steps) == 7 else None)
    assert [json.loads(line)["step"] for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()] \
        == [0, 5]
    fit(data, cfg, tcfg, progress=False, out_dir=tmp_path / "part", resume=True, log=lambda msg: None)
    whole = (tmp_path / "whole" / "metrics.jsonl").read_bytes()
    assert (tmp_path / "part" / "metrics.jsonl").read_bytes() == whole and whole.count(b"\n") == 4


def test_atomic_writes_get_the_permissions_open_would_give(tmp_path):
    import os

    mask = os.umask(0o027)
    try:
        path = ckpt.atomic_write_text(tmp_path / "a.txt", "x")
        assert path.stat().st_mode & 0o777 == 0o640  # 0o666 less the umask; mkstemp alone gives 0o600
    finally:
        os.umask(mask)


def test_a_checkpoint_with_a_bad_epoch_position_count_dtype_or_one_negative_variance_is_refused(tmp_path):
    import re

    cfg = byol.Config(encoder_dim=5, **SMALL)
    tcfg = _tcfg(optimizer="lars")
    good = save_checkpoint(tmp_path / "good.npz", init_state(cfg, tcfg, get_backend()), cfg, tcfg)
    entries = dict(np.load(good, allow_pickle=False))

    def edited(**changes):
        path = tmp_path / "edited.npz"
        np.savez(path, **{**entries, **changes})
        return path

    bn = next(k for k in entries if k.startswith("online_buffers/") and k.endswith("running_var"))
    count = next(k for k in entries if k.startswith("online_buffers/") and k.endswith(".count"))
    one_negative = entries[bn].copy()
    one_negative[0] = -1.0
    meta = json.loads(str(entries["meta"][()]))
    cases = [
        ({"meta": np.array(json.dumps({**meta, "epoch_pos": -1}))}, "epoch position -1 must be >= 0"),
        ({count: entries[count].astype(np.float64)}, f"{re.escape(count)} has shape .* and dtype float64"),
        ({bn: one_negative}, f"{re.escape(bn)} holds a negative variance"),
    ]
    for changes, message in cases:
        with pytest.raises(ckpt.CheckpointError, match=message):
            load_checkpoint(edited(**changes))


def test_resume_length_allows_the_runs_own_end_and_rounds_the_hint_up():
    from byol_ref.train import check_resume_length, make_schedules

    tcfg = _tcfg(epochs=1)
    sched = make_schedules(tcfg, 128)  # 4 steps an epoch, 4 in all
    check_resume_length(4, sched, tcfg, "ckpt")  # a finished run resumed at its own length: nothing to do
    with pytest.raises(ValueError, match=r"^resume=True: ckpt is at step 6, past the 4 steps of 1 epoch\(s\); .* "
                                         r"ask for at least 2 epochs"):  # 1.5 epochs ran
        check_resume_length(6, sched, tcfg, "ckpt")
    with pytest.raises(ValueError, match=r"^--resume: ckpt is at step 6"):  # (the CLI names its flag)
        check_resume_length(6, sched, tcfg, "ckpt", "--resume")


def test_resume_of_a_finished_run_at_its_own_length_runs_no_step(tmp_path, data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=1)
    first = fit(data, cfg, tcfg, progress=False, out_dir=tmp_path)
    again = fit(data, cfg, tcfg, progress=False, out_dir=tmp_path, resume=True)
    assert again.state.step == again.start_step == first.state.step


def test_resume_names_only_the_settings_that_may_not_change(tmp_path, data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1, warmup_epochs=0.5), progress=False, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"differs from the requested one \(lr: 0.002 in the checkpoint, 0.001 "
                                         r"requested\); only epochs may change"):
        fit(data, cfg, _tcfg(epochs=2, warmup_epochs=0.5, lr=1e-3), progress=False, out_dir=tmp_path, resume=True)


def test_preprocessing_with_a_zero_or_non_finite_std_is_refused():
    from byol_ref.train import preprocess

    x = np.ones((3, 2))
    for std in ([1.0, 0.0], [1.0, np.inf], [1.0, -1.0]):
        with pytest.raises(ValueError, match="mean and std must be finite and std > 0"):
            preprocess(x, {"kind": "standardize", "mean": [0.0, 0.0], "std": std})
    with pytest.raises(ValueError, match="mean and std must be finite and std > 0"):
        preprocess(x.reshape(3, 1, 2), {"kind": "image", "mean": 0.5, "std": 0.0})
    with pytest.raises(ValueError, match=r"its mean has shape \(2,\) but its std \(1,\)"):
        preprocess(x, {"kind": "standardize", "mean": [0.0, 0.0], "std": [1.0]})


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (NumPy's: fit tells of an overflow in its own words)
@pytest.mark.filterwarnings(r"ignore:step \d+ overflowed:UserWarning")
def test_a_buffer_that_overflows_while_the_loss_stays_finite_stops_the_run_before_its_checkpoint(tmp_path):
    """A running variance overflowed to inf (batch norm then outputs 0: the loss and the params stay finite); the
    guard checked the params only, so each checkpoint replaced the last good one with a file load refuses."""
    from byol_ref.data import synthetic

    cfg = byol.Config(encoder_dim=12, hidden_size=32, projection_dim=16, predictor_dim=16)
    tc = TrainConfig(epochs=4, batch_size=32, seed=31, checkpoint_every=1, dtype="float32", optimizer="adam",
                     lr=1e6, lr_batch_scale=0, warmup_epochs=0, eval_every=1000, log_every=1)
    out = tmp_path / "run"
    # (by step 2, after the checkpoint of step 1: it said "by step 1", the step of the good checkpoint)
    with pytest.raises(TrainingDiverged, match=r"online.buffers\['predictor.norm1.running_var'\] became non-finite "
                                                r"by step 2 .*the loss still [\d.]+; stopping without overwriting "
                                                r"the last good checkpoint"):
        fit(synthetic(n=170, dim=12, n_classes=4, seed=0), cfg, tc, progress=False, out_dir=out)
    assert load_checkpoint(out / "checkpoint.npz")[0].step == 1  # the last good one, which loads


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (NumPy's: fit tells of an overflow in its own words)
@pytest.mark.filterwarnings(r"ignore:step \d+ overflowed:UserWarning")
def test_divergence_before_the_first_checkpoint_says_none_was_written(tmp_path, data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    huge = _tcfg(epochs=3, lr=1e300, optimizer="sgd", warmup_epochs=0, checkpoint_every=0)
    with pytest.raises(TrainingDiverged, match="No checkpoint was written before it") as info:
        fit(data, cfg, huge, progress=False, out_dir=tmp_path / "run")
    assert "untouched" not in str(info.value)


def test_fit_from_a_given_state_leaves_it_as_it_was(data):
    """fit trains in place; it trained the caller's own arrays (and drew from its generator), so a second run
    from the same initial state started from the first one's trained weights."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tc = _tcfg(epochs=2)
    s0 = init_state(cfg, tc, get_backend("numpy", "float64", 1))
    before = {k: v.copy() for k, v in s0.online.params.items()}
    rng_before = s0.rng.bit_generator.state
    first = fit(data, cfg, tc, progress=False, state=s0)
    for k, v in s0.online.params.items():
        np.testing.assert_array_equal(v, before[k])
    assert s0.rng.bit_generator.state == rng_before and s0.step == 0
    second = fit(data, cfg, tc, progress=False, state=s0)  # the same run again, to the bit
    for k, v in first.state.online.params.items():
        np.testing.assert_array_equal(second.state.online.params[k], v)
    assert not np.shares_memory(first.state.online.params["encoder.fc1.weight"], s0.online.params["encoder.fc1.weight"])


@pytest.mark.skipif(os.name == "nt", reason="no flock on this platform: RunLock holds nothing there")
def test_fit_refuses_an_out_dir_another_process_writes_in_and_holds_its_own(data, tmp_path, monkeypatch,
                                                                           held_elsewhere):
    import fcntl

    from byol_ref import train as train_module
    from byol_ref.rundir import RunDirectoryBusy

    cfg, out = byol.Config(encoder_dim=12, **SMALL), tmp_path / "r"
    real_step, held = train_module.train_step, []

    def step(*args, **kwargs):  # while fit trains, out is held
        held.append(held_elsewhere(out))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step)
    tcfg = _tcfg(epochs=2, checkpoint_every=2)
    fit(data, cfg, tcfg, progress=False, out_dir=out, stop_at=4)
    monkeypatch.undo()
    assert held == [True] * 4  # each of the 4 steps
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    fd = os.open(out, os.O_RDONLY)  # another process's lock (flock locks of two descriptors conflict)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for resume in (True, False):
            with pytest.raises(RunDirectoryBusy, match=f"^out_dir {out} is in use: another process is writing"):
                fit(data, cfg, tcfg, progress=False, out_dir=out, resume=resume)
    finally:
        os.close(fd)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    fit(data, cfg, tcfg, progress=False, out_dir=out, resume=True)  # once it has ended


def test_fit_refuses_an_out_dir_another_thread_of_the_process_writes_in(data, tmp_path):
    """A sweep that runs fit in threads, two of them given one out_dir: the run lock let every thread of
    the process through (a process takes again what it holds), and the two runs wrote their records
    into one metrics.jsonl, two on one line, and one checkpoint over the other's. The second is now
    refused, as another process is; the first trains on, and holds out_dir until it ends."""
    import threading

    from byol_ref.rundir import RunDirectoryBusy

    cfg, out = byol.Config(encoder_dim=12, **SMALL), tmp_path / "r"
    tcfg = _tcfg(epochs=2, checkpoint_every=2)
    training, go_on, ended = threading.Event(), threading.Event(), []

    def first_checkpoint(step):  # the first thread waits here, holding out, while the second tries
        training.set()
        go_on.wait(timeout=60)

    def first():
        ended.append(fit(data, cfg, tcfg, progress=False, out_dir=out, on_checkpoint=first_checkpoint))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert training.wait(timeout=60)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        with pytest.raises(RunDirectoryBusy, match=f"^out_dir {out} is in use: another thread of this process is "
                                                   "writing there"):
            fit(data, cfg, tcfg, progress=False, out_dir=out, overwrite=True)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    finally:
        go_on.set()
        thread.join(timeout=60)
    assert ended and ended[0].state.step == fit(data, cfg, tcfg, progress=False).state.step
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == list(range(1, ended[0].state.step + 1))
    fit(data, cfg, replace(tcfg, epochs=3), progress=False, out_dir=out, resume=True)  # once it has ended


def test_resume_with_a_fresh_train_config_for_a_longer_run_keeps_the_runs_warmup(data, tmp_path):
    """warmup_epochs defaults to 5% of the run: a TrainConfig made afresh with more epochs has another
    one, which --resume refused as a change nobody asked for. Left at the default on both sides, the run's
    own warm-up goes on, as the CLI's --resume --epochs does (it keeps the checkpoint's config)."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    short = _tcfg(epochs=2, checkpoint_every=100)
    assert short.warmup_epochs == 0.1 and _tcfg(epochs=4).warmup_epochs == 0.2
    for name in ("fresh", "kept"):
        fit(data, cfg, short, progress=False, out_dir=tmp_path / name)
    fresh = fit(data, cfg, _tcfg(epochs=4, checkpoint_every=100), progress=False, out_dir=tmp_path / "fresh",
                resume=True)
    kept = fit(data, cfg, replace(short, epochs=4), progress=False, out_dir=tmp_path / "kept", resume=True)
    assert fresh.train_config == kept.train_config and fresh.train_config.warmup_epochs == 0.1
    for k, v in kept.state.online.params.items():
        np.testing.assert_array_equal(fresh.state.online.params[k], v, err_msg=k)
    assert load_checkpoint(tmp_path / "fresh" / "checkpoint.npz")[2].warmup_epochs == 0.1
    # a warm-up asked for is still one asked for
    with pytest.raises(ValueError, match=r"warmup_epochs: 0\.1 in the checkpoint, 0\.3 requested"):
        fit(data, cfg, _tcfg(epochs=6, warmup_epochs=0.3), progress=False, out_dir=tmp_path / "kept", resume=True)


def test_a_run_resumed_for_a_longer_run_resumes_again_with_the_same_fresh_train_config(data, tmp_path):
    """The warm-up a resume for another length kept (5% of the first length) is no longer 5% of the length
    the checkpoint then holds; the same call again (after an interrupt, say) was refused, naming a
    warmup_epochs nobody set (found by tests/test_resume_lifecycle.py). One asked for is still compared."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1, checkpoint_every=100), progress=False, out_dir=tmp_path / "run")
    longer = _tcfg(epochs=2, checkpoint_every=100)
    fit(data, cfg, longer, progress=False, out_dir=tmp_path / "run", resume=True, stop_at=6)
    again = fit(data, cfg, longer, progress=False, out_dir=tmp_path / "run", resume=True)
    assert again.start_step == 6 and again.state.step == 8 and again.train_config.warmup_epochs == 0.05
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz")[2].warmup_epochs == 0.05
    with pytest.raises(ValueError, match=r"warmup_epochs: 0\.05 in the checkpoint, 0\.3 requested"):
        fit(data, cfg, _tcfg(epochs=3, warmup_epochs=0.3), progress=False, out_dir=tmp_path / "run", resume=True)



def test_the_checkpoint_records_whether_the_runs_warmup_was_left_at_its_default(data, tmp_path):
    """meta["warmup_default"] says whether a fresh TrainConfig's warm-up may stand for the run's: not when
    the run asked for one (a resume for another length with a fresh TrainConfig is refused, naming it), and,
    in a checkpoint from before the record, when the warm-up is 5% of the checkpoint's length."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    own = _tcfg(epochs=1, warmup_epochs=0.5, checkpoint_every=100)
    fit(data, cfg, own, progress=False, out_dir=tmp_path / "own")
    assert ckpt.load(tmp_path / "own" / "checkpoint.npz")[1]["warmup_default"] is False
    with pytest.raises(ValueError, match=r"warmup_epochs: 0\.5 in the checkpoint, 0\.1 requested"):
        fit(data, cfg, _tcfg(epochs=2, checkpoint_every=100), progress=False, out_dir=tmp_path / "own", resume=True)
    # A run's own warm-up that happens to be 5% of a later length is still its own (the record rules, not
    # the value: the value judges only checkpoints without the record).
    asked = _tcfg(epochs=1, warmup_epochs=0.1, checkpoint_every=100)
    assert _tcfg(epochs=2).warmup_epochs == 0.1 != _tcfg(epochs=1).warmup_epochs
    fit(data, cfg, asked, progress=False, out_dir=tmp_path / "asked")
    fit(data, cfg, replace(asked, epochs=2), progress=False, out_dir=tmp_path / "asked", resume=True)
    assert ckpt.load(tmp_path / "asked" / "checkpoint.npz")[1]["warmup_default"] is False
    with pytest.raises(ValueError, match=r"warmup_epochs: 0\.1 in the checkpoint, 0\.15"):
        fit(data, cfg, _tcfg(epochs=3, checkpoint_every=100), progress=False, out_dir=tmp_path / "asked",
            resume=True)
    path = tmp_path / "old" / "checkpoint.npz"
    fit(data, cfg, _tcfg(epochs=1, checkpoint_every=100), progress=False, out_dir=tmp_path / "old")
    arrays, meta = ckpt.load(path)
    assert meta.pop("warmup_default") is True
    ckpt.save(path, arrays, meta)  # as written before the record
    longer = fit(data, cfg, _tcfg(epochs=2, checkpoint_every=100), progress=False, out_dir=tmp_path / "old",
                 resume=True)
    assert longer.start_step == 4 and longer.train_config.warmup_epochs == 0.05
    assert ckpt.load(path)[1]["warmup_default"] is True

# ---------------------------------------------------------------------------------------
# What a mutation audit found untested: the data order, the divergence guard's reach, the records,
# resume checks, atomic writes.
# ---------------------------------------------------------------------------------------


def test_each_epoch_visits_every_row_once_in_a_new_random_order(data, monkeypatch):
    import byol_ref.train as train

    seen = []
    step = train.train_step

    def spy(state, x, **kw):
        seen.append(np.array(x))
        return step(state, x, **kw)

    monkeypatch.setattr(train, "train_step", spy)
    cfg = byol.Config(encoder_dim=12, **SMALL)
    res = fit(data, cfg, _tcfg(epochs=2), progress=False)
    index = {row.tobytes(): i for i, row in enumerate(res.dataset.x_train)}
    order = [index[row.tobytes()] for b in seen for row in b]
    n = len(index)  # 128 rows, 4 batches of 32 per epoch
    assert len(order) == 2 * n
    for epoch in (order[:n], order[n:]):
        assert sorted(epoch) == list(range(n))  # every row exactly once
    assert order[:n] != list(range(n)) and order[:n] != order[n:]  # shuffled, and again each epoch


def test_each_epoch_draws_its_order_from_the_runs_generator_and_drops_the_partial_batch(data, monkeypatch):
    """An epoch's data order is the permutation the run's generator draws where the epoch begins (so
    the generator state a checkpoint holds decides it), and an epoch is floor(N / B) full batches
    taken from it in turn: the last, partial batch is dropped, as the schedules count."""
    import copy

    import byol_ref.train as train

    seen, rngs = [], []
    step = train.train_step

    def spy(state, x, **kw):
        seen.append((state.epoch_pos, state.epoch_perm.copy(), np.array(x)))
        new = step(state, x, **kw)
        rngs.append(copy.deepcopy(new[0].rng))  # the generator as the next step finds it
        return new

    monkeypatch.setattr(train, "train_step", spy)
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=3, batch_size=48)  # 128 rows: 2 batches of 48 per epoch, 32 rows left over
    state = init_state(cfg, tcfg, get_backend("numpy", "float64", tcfg.seed))
    rngs.append(copy.deepcopy(state.rng))
    res = fit(data, cfg, tcfg, state=state, progress=False)
    assert res.state.step == len(seen) == 6
    for i, (pos, perm, x) in enumerate(seen):
        assert pos == i % 2 + 1 and x.shape == (48, 12), i  # (epoch_pos: the batch after this one)
        if pos == 1:  # a new epoch: its order from the generator the step before left
            np.testing.assert_array_equal(perm, rngs[i].permutation(128), err_msg=f"step {i}")
        np.testing.assert_array_equal(x, res.dataset.x_train[perm[(pos - 1) * 48:pos * 48]], err_msg=f"step {i}")


def test_an_infinite_loss_stops_the_run(data, monkeypatch):
    import byol_ref.train as train

    real = train.loss_and_grads
    monkeypatch.setattr(train, "loss_and_grads", lambda *a, **k: real(*a, **k)._replace(loss=float("inf")))
    # (step 1: the first, as metrics.jsonl counts; it said "at step 0", which no record or checkpoint has)
    with pytest.raises(TrainingDiverged, match=r"the loss became inf at step 1 "):
        fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), progress=False)


def test_a_divergence_names_its_step_as_metrics_jsonl_counts_them(data, monkeypatch, tmp_path):
    """The message counted steps from 0 ("the loss became inf at step 2" for the third step), where
    metrics.jsonl, the progress bar and the checkpoints count the steps done: a user who looked up
    step 2 in metrics.jsonl found a finite loss there, and the lr the message gave on the record after."""
    import byol_ref.train as train

    real, calls = train.loss_and_grads, []

    def third_is_inf(*a, **k):
        calls.append(1)
        res = real(*a, **k)
        return res._replace(loss=float("inf")) if len(calls) == 3 else res

    monkeypatch.setattr(train, "loss_and_grads", third_is_inf)
    tcfg = _tcfg(epochs=2, log_every=1)
    with pytest.raises(TrainingDiverged) as info:
        fit(data, byol.Config(encoder_dim=12, **SMALL), tcfg, progress=False, out_dir=tmp_path / "r")
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    lr = make_schedules(tcfg, data.x_train.shape[0]).lr(2)  # the lr of the third step (schedules count from 0)
    assert str(info.value).startswith(f"the loss became inf at step 3 (lr {lr:.3g}, ")


def test_a_fit_result_prints_short(data):
    """A notebook cell ending with fit(...) printed 245 KB (every array of the state, the optimiser's
    moments, and each of the preprocessing's per-feature statistics); now about 15 KB (four configs in
    full among them) that show the structure, the records as their count and steps."""
    res = fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), progress=False)
    text = repr(res)
    assert len(text) < 20_000, len(text)
    assert text.startswith("FitResult(state=TrainState(online=Network(config=Config(encoder_dim=12, ")
    steps = [h["step"] for h in res.history]
    assert f"history=<{len(res.history)} records, steps {steps[0]}..{steps[-1]}>" in text
    assert "preprocessing={'kind': 'standardize', 'mean': <12 floats>, 'std': <12 floats>}" in text
    assert f"step={res.state.step}, rng=Generator(PCG64)" in text and "epoch_perm=int64 (" in text
    assert repr(res._replace(preprocessing=None)).endswith(", preprocessing=None, start_step=0)")  # (one made by hand)


def test_the_guard_before_a_checkpoint_looks_at_every_tree_the_checkpoint_holds():
    """A NaN or inf in any array a checkpoint holds is named before the checkpoint is written: the
    target's params and running statistics too, which no loss or online array shows at once."""
    from byol_ref.train import _first_non_finite

    cfg = byol.Config(encoder_dim=5, **SMALL)
    state = init_state(cfg, _tcfg(optimizer="adam"), get_backend())
    assert _first_non_finite(state) is None
    for what, net, part in (("online.params", "online", "params"), ("target.params", "target", "params"),
                            ("online.buffers", "online", "buffers"), ("target.buffers", "target", "buffers"),
                            ("the optimiser state", None, "opt_state")):
        tree = state.opt_state if net is None else getattr(getattr(state, net), part)
        key = next(k for k, v in tree.items() if v.dtype.kind == "f")
        bad = {**tree, key: np.full_like(tree[key], np.inf)}
        edited = (state._replace(opt_state=bad) if net is None else
                  state._replace(**{net: getattr(state, net)._replace(**{part: bad})}))
        assert _first_non_finite(edited) == f"{what}[{key!r}]"


def test_an_optimiser_state_that_overflows_stops_the_run_before_its_checkpoint(data, tmp_path):
    """An Adam second moment at inf leaves the params (update m / sqrt(inf) = 0) and the loss finite."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tc = _tcfg(epochs=1, optimizer="adam", checkpoint_every=1)
    s0 = init_state(cfg, tc, get_backend("numpy", "float64", 1))
    opt = dict(s0.opt_state)
    opt["nu.encoder.fc1.weight"] = np.full_like(opt["nu.encoder.fc1.weight"], np.inf)
    with pytest.raises(TrainingDiverged, match=r"the optimiser state\['nu.encoder.fc1.weight'\] became non-finite"):
        fit(data, cfg, tc, progress=False, state=s0._replace(opt_state=opt), out_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_step_records_the_last_knn_the_epoch_and_the_healthy_std(data):
    cfg = byol.Config(encoder_dim=12, **SMALL)  # y: 32 wide, z: 16
    res = fit(data, cfg, _tcfg(epochs=3, eval_every=3, log_every=2), progress=False)  # K = 12, 4 steps an epoch
    knn_steps = [r["step"] for r in res.history if "knn" in r]
    assert knn_steps == [0, 3, 6, 9, 12]
    res = fit(data, cfg, _tcfg(epochs=3, eval_every=5), progress=False)
    assert [r["step"] for r in res.history if "knn" in r] == [0, 5, 10, 12]  # the run's end too
    for r in res.history[1:]:
        assert r["epoch"] == r["step"] / 4
        assert r["z_std_healthy"] == 1 / np.sqrt(16)


def test_a_step_record_reads_the_collapse_monitors_of_view_1_and_its_epoch_even_where_they_overflowed():
    """The monitors of a step are those of the first view's online z and y, as the record's comment says (view 2's
    passed unseen: two views of one batch give near figures); a step whose features are not finite keeps the
    step, its epoch (k / steps per epoch) and the schedules, without the monitors."""
    from byol_ref.evaluate import effective_rank, normalized_std
    from byol_ref.train import _step_record

    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(8, 4)), rng.normal(size=(8, 4)) * np.array([1.0, 1.0, 0.0, 0.0])
    y1, y2 = rng.normal(size=(8, 6)), rng.normal(size=(8, 6)) * np.array([1.0, 0, 0, 0, 0, 0])
    sched = make_schedules(_tcfg(epochs=4), 64)
    m = {"outputs": {"online.z": [z1, z2], "online.y": [y1, y2]}, "loss": 3.5, "lr": 0.1, "tau": 0.99}
    k = 3
    record = _step_record(k, sched, m)
    assert record == {"step": k, "epoch": k / sched.steps_per_epoch, "loss": 3.5, "lr": 0.1, "tau": 0.99,
                      "z_std": normalized_std(z1), "z_std_healthy": 0.5, "z_rank": effective_rank(z1),
                      "y_rank": effective_rank(y1)}
    assert record["z_rank"] != effective_rank(z2) and record["y_rank"] != effective_rank(y2)
    z1[0, 0] = np.inf
    assert _step_record(k, sched, m) == {"step": k, "epoch": k / sched.steps_per_epoch, "loss": 3.5, "lr": 0.1,
                                         "tau": 0.99}
    assert sched.steps_per_epoch != 1  # (so that k / steps and k * steps differ)


def test_a_data_dependent_init_sees_4096_evenly_spaced_rows_by_default():
    """init_sample's default max_rows: a train split of 10,000 rows gives 4096 of them, the first and the last
    among them, in order; a smaller split gives every row."""
    be = get_backend("numpy", "float64", 0)
    x = np.arange(10_000.0)[:, None]
    got = to_numpy(init_sample(x, None, be))[:, 0]
    assert got.shape == (4096,) and got[0] == 0 and got[-1] == 9999 and np.all(np.diff(got) > 0)
    assert to_numpy(init_sample(x[:100], None, be))[:, 0].tolist() == list(range(100))


def test_the_knn_monitor_votes_with_20_neighbours(data):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    be = get_backend("numpy", "float64", 0)
    online = init_state(cfg, _tcfg(), be).online
    tr, te = encode(online, data.x_train, None, be), encode(online, data.x_test, None, be)
    got = knn_monitor(online, data, None, be)["knn"]
    assert got == knn_accuracy(tr, data.y_train, te, data.y_test, k=20)
    assert got != knn_accuracy(tr, data.y_train, te, data.y_test, k=10)  # (so k matters here)


def test_the_knn_monitor_takes_every_train_row_where_there_are_fewer_than_20(data, tmp_path):
    """A labelled file of 24 rows (18 train), or monitor_rows=5, has fewer train rows than the monitor's 20
    neighbours: fit, train --data and train --no-eval stopped before step 0 with "k must be <= the number
    of train rows (18), got 20", though no user asked for a kNN of 20. The monitor votes with every row."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    small = synthetic(n=24, dim=12, n_classes=3, seed=0)
    run = fit(small, cfg, _tcfg(epochs=1, batch_size=6), progress=False)
    be = get_backend("numpy", "float64", 0)
    tr, te = (encode(run.state.online, x, run.input_norm, be) for x in (small.x_train, small.x_test))
    assert small.x_train.shape[0] < 20
    assert run.history[-1]["knn"] == knn_accuracy(tr, small.y_train, te, small.y_test, k=small.x_train.shape[0])
    few = fit(data, cfg, _tcfg(epochs=1, monitor_rows=5), progress=False)
    assert 0 <= few.history[-1]["knn"] <= 1
    np.savez(tmp_path / "small.npz", x=np.concatenate([small.x_train, small.x_test]),
             y=np.concatenate([small.y_train, small.y_test]))
    from byol_ref.cli import main as cli_main
    assert cli_main(["train", "--data", str(tmp_path / "small.npz"), "--epochs", "1", "--batch-size", "6",
                     "--no-eval", "--no-plots", "--no-progress", "--out", str(tmp_path / "run")]) == 0


def test_the_knn_monitor_scores_a_fixed_subset_of_a_large_split_and_leaves_the_run_alone(data):
    """On 56,000 x 14,000 rows ten kNN monitors took most of a one-epoch run. A split larger than
    ``monitor_rows`` is scored on a subset drawn once, by a generator of its own: the run's own draws,
    and so its params, are those of a run monitored on every row, and the monitor's value is the kNN
    of that subset, the same rows at every monitor."""
    from byol_ref.train import monitor_subset

    cfg = byol.Config(encoder_dim=12, **SMALL)
    whole = fit(data, cfg, _tcfg(epochs=2, monitor_rows=0), progress=False)
    part = fit(data, cfg, _tcfg(epochs=2, monitor_rows=20), progress=False)
    for a, b in ((whole.state.online.params, part.state.online.params),
                 (whole.state.target.params, part.state.target.params)):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    sub = monitor_subset(part.dataset, 20)
    assert sub.x_train.shape == (20, 12) and sub.x_test.shape == (20, 12)
    rows = [int(np.flatnonzero((part.dataset.x_train == r).all(axis=1))[0]) for r in sub.x_train]
    assert rows == sorted(rows) and np.array_equal(sub.y_train, part.dataset.y_train[rows])
    be = get_backend("numpy", "float64", 0)
    want = knn_accuracy(encode(part.state.online, sub.x_train, part.input_norm, be), sub.y_train,
                        encode(part.state.online, sub.x_test, part.input_norm, be), sub.y_test, k=20)
    assert part.history[-1]["knn"] == want != whole.history[-1]["knn"]
    again = monitor_subset(part.dataset, 20)
    assert np.array_equal(again.x_train, sub.x_train) and np.array_equal(again.x_test, sub.x_test)
    assert monitor_subset(data, 0) is data and monitor_subset(data, 128) is data  # (128 train, 32 test rows)
    small = monitor_subset(data, 40)
    assert small.x_train.shape[0] == 40 and small.x_test is data.x_test
    with pytest.raises(ValueError, match=r"monitor_rows must be an int >= 0, got -1"):
        _tcfg(monitor_rows=-1)


def test_resume_refuses_a_checkpoint_of_another_model(data, tmp_path):
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path)
    other = byol.Config(encoder_dim=12, hidden_size=32, projection_dim=8, predictor_dim=16)
    with pytest.raises(ValueError, match="^resume=True: the checkpoint's model config differs"):
        fit(data, other, _tcfg(epochs=2), progress=False, out_dir=tmp_path, resume=True)


def test_resume_refuses_nothing_to_continue_and_another_training_config(data, tmp_path):
    """fit's refusals name its own arguments (resume=True, overwrite=True), not the CLI's flags."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    with pytest.raises(FileNotFoundError, match=r"^resume=True: no checkpoint at .*nothing to continue: start it "
                                                r"again with overwrite=True\)$"):
        fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "never", resume=True)
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^resume=True: the checkpoint's training config differs from the requested "
                                         r"one \(seed: 1 in the checkpoint, 3 requested\); only epochs may change$"):
        fit(data, cfg, _tcfg(epochs=2, seed=3), progress=False, out_dir=tmp_path, resume=True)


def test_init_sample_takes_evenly_spaced_rows():
    x = np.arange(10.0)[:, None]
    be = get_backend("numpy", "float64", 0)
    # every row, not just the two ends: round(linspace(0, 9, k)) (4.5 rounds to even)
    for max_rows, rows in ((3, [0, 4, 9]), (4, [0, 3, 6, 9]), (6, [0, 2, 4, 5, 7, 9]), (10, range(10)),
                           (50, range(10))):
        got = init_sample(x, None, be, max_rows=max_rows)
        np.testing.assert_array_equal(got, x[list(rows)], err_msg=f"max_rows={max_rows}")


def test_train_step_normalises_both_image_views():
    from byol_ref.augment import digits_views, two_views
    from byol_ref.train import InputNorm, make_optimizer_for, make_schedules, train_step

    cfg = byol.Config(encoder_dim=64, **SMALL)
    tc = _tcfg(optimizer="sgd")
    be = get_backend("numpy", "float64", 0)
    state = init_state(cfg, tc, be)
    x = np.random.default_rng(11).random((8, 64))
    norm = InputNorm(0.3, 0.2)
    views = digits_views()
    r = np.random.default_rng(12)
    v1, v2 = two_views(x, np.random.default_rng(12), views, (8, 8))
    want = byol.loss_and_grads(state.online, state.target, norm(v1), norm(v2)).loss
    _, m = train_step(state._replace(rng=r), x, optimizer=make_optimizer_for(tc), schedules=make_schedules(tc, 64),
                      views=views, tcfg=tc, image_shape=(8, 8), input_norm=norm)
    assert m["loss"] == pytest.approx(float(want), rel=1e-12)


def test_batch_norm_shards_need_two_rows_each():
    from byol_ref.train import check_configs

    with pytest.raises(ValueError, match="cannot be split into bn_shards=4 equal shards of at least 2 rows"):
        check_configs(byol.Config(encoder_dim=12, bn_shards=4, **SMALL), _tcfg(batch_size=4))
    check_configs(byol.Config(encoder_dim=12, bn_shards=4, **SMALL), _tcfg(batch_size=8))
    # concatenated views: a shard's batch norm sees its rows of both views, so 1 row of each is 2 rows
    check_configs(byol.Config(encoder_dim=12, bn_shards=4, views="concat", **SMALL), _tcfg(batch_size=4))
    with pytest.raises(ValueError, match=r"^batch_size=6 cannot be split into bn_shards=4 equal shards of at least 1 "
                                         r"row each \(batch-norm statistics are taken per shard, over both views\); "
                                         "use a multiple of 4 that is at least 4$"):
        check_configs(byol.Config(encoder_dim=12, bn_shards=4, views="concat", **SMALL), _tcfg(batch_size=6))


def test_calibrating_batch_norm_forgets_the_previous_statistics():
    from byol_ref.train import calibrate_batch_norm

    cfg = byol.Config(encoder_dim=12, **SMALL)
    be = get_backend("numpy", "float64", 0)
    net = init_state(cfg, _tcfg(), be).online
    x1 = np.random.default_rng(13).standard_normal((50, 12))
    x2 = 3.0 + np.random.default_rng(14).standard_normal((50, 12))
    twice = calibrate_batch_norm(calibrate_batch_norm(net, x1, None, be), x2, None, be)
    once = calibrate_batch_norm(net, x2, None, be)
    for k, v in once.buffers.items():
        np.testing.assert_array_equal(twice.buffers[k], v, err_msg=k)


def test_resume_completes_a_metrics_line_that_lost_its_newline(tmp_path):
    import json

    from byol_ref.train import _drop_records_after

    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1}) + "\n" + json.dumps({"step": 2}))  # the last newline never written
    _drop_records_after(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_data_init_sees_the_image_inputs_as_the_network_does(monkeypatch):
    """With images the affine layers are set from the inputs after the run's InputNorm (mean 0, std 1)."""
    import byol_ref.train as train

    seen = []
    real = train.data_dependent_init
    monkeypatch.setattr(train, "data_dependent_init", lambda net, x: seen.append(np.array(x)) or real(net, x))
    r = np.random.default_rng(16)
    ds = synthetic(16, 4, 2)._replace(x_train=r.random((64, 16)), y_train=np.arange(64) % 2,
                                      x_test=r.random((8, 16)), y_test=np.arange(8) % 2, image_shape=(4, 4))
    cfg = byol.Config(encoder_dim=16, norm="affine", **SMALL)
    fit(ds, cfg, _tcfg(epochs=1, data_init=True), progress=False, stop_at=1)
    assert seen and abs(seen[0].mean()) < 1e-9 and abs(seen[0].std() - 1) < 1e-9


def test_atomic_write_flushes_to_disk_before_the_rename(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    calls = []
    real = os.fsync

    def spy(fd):
        calls.append((os.fstat(fd).st_ino == tmp_path.stat().st_ino, path.exists()))  # (the folder?, renamed?)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ckpt.atomic_write(path, lambda f: f.write(b"abc"))
    # the file before the rename, then its folder after it (so that the rename outlives a power cut)
    assert calls == [(False, False), (True, True)] and path.read_bytes() == b"abc"


def test_load_refuses_a_meta_of_another_format(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.atomic_savez(path, {"online/w": np.zeros(2), "meta": np.array('{"format": "other", "version": 1}')})
    with pytest.raises(ckpt.CheckpointError, match=r"not a byol-ref checkpoint \(format 'other'"):
        ckpt.load(path)


def test_temporary_prefix_keeps_the_writer_in_a_name_of_exactly_255_bytes():
    full = f".x.{ckpt._host_tag()}-{os.getpid()}."
    name = "x" * (255 - len("XXXXXXXX.tmp") - len(full) + 1)  # the full prefix then fills 255 bytes exactly
    prefix = ckpt.temporary_prefix(name)
    assert prefix == f".{name}.{ckpt._host_tag()}-{os.getpid()}." and len(prefix) + len("XXXXXXXX.tmp") == 255


def test_atomic_write_makes_a_missing_folder_and_syncs_what_was_written(tmp_path, monkeypatch):
    """The destination's folder is made if missing (as documented), and the fsync before the
    rename finds the bytes written in the file, not still in Python's buffer."""
    path = tmp_path / "new" / "deeper" / "f.bin"
    synced, real = [], os.fsync

    def spy(fd):
        synced.append(os.fstat(fd).st_size)
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ckpt.atomic_write(path, lambda f: f.write(b"abc"))
    assert synced[0] == 3 and len(synced) == 2 and path.read_bytes() == b"abc"  # (then the folder, after the rename)


def test_atomic_writes_give_every_permission_the_umask_allows_and_leave_the_umask_as_it_was(tmp_path):
    # With umask 002 open() gives 0o664 (group-writable): a base other than 0o666 would not; and
    # reading the umask (by setting it) must set it straight back.
    mask = os.umask(0o002)
    try:
        path = ckpt.atomic_write_text(tmp_path / "a.txt", "x")
        assert path.stat().st_mode & 0o777 == 0o664
        assert os.umask(0o002) == 0o002
    finally:
        os.umask(mask)


def test_a_ctrl_c_just_after_the_rename_is_raised_and_the_file_is_whole(tmp_path, monkeypatch):
    """An interrupt that lands once the temporary file is renamed (it is gone) is raised as it
    is, not turned into a FileNotFoundError by the clean-up, and the file written stays."""
    real = os.replace

    def replace_then_interrupt(src, dst):
        real(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write_text(tmp_path / "a.txt", "whole")
    monkeypatch.undo()
    assert (tmp_path / "a.txt").read_text() == "whole" and os.listdir(tmp_path) == ["a.txt"]


def test_atomic_write_text_writes_utf8_and_a_temporary_of_a_very_long_name_is_hidden(tmp_path):
    path = ckpt.atomic_write_text(tmp_path / "report.txt", "kNN accuracy \u2192 0.9 (\u00e9t\u00e9)\n")
    assert path.read_bytes() == "kNN accuracy \u2192 0.9 (\u00e9t\u00e9)\n".encode("utf-8")
    names = []
    longest = "z" * 247 + ".npz"  # (too long for .NAME.XXXXXXXX.tmp: its temporary is named by a digest)
    ckpt.atomic_write(tmp_path / longest, lambda f: names.extend(n for n in os.listdir(tmp_path) if n.endswith(".tmp")))
    assert len(names) == 1 and names[0].startswith(".")  # a dot file, as every other temporary


def test_checkpoint_save_refuses_a_group_a_name_or_an_array_load_could_not_read_and_writes_it_uncompressed(tmp_path):
    """A group load does not know, a name that is no string, an object array (its .npy would need
    pickle): each refused naming it, the file already there left as it was. What is written
    is a plain uncompressed .npz."""
    path = tmp_path / "c.npz"
    path.write_bytes(b"the earlier checkpoint")
    for arrays, err, says in (
            ({"onlne": {"a": np.ones(2)}}, ValueError, r"checkpoint group must be one of \('online', 'target', "
                                                        r"'online_buffers', 'target_buffers', 'opt', 'data'\), got 'onlne'"),
            ({"online": {3: np.ones(2)}}, ValueError, r"arrays\['online'\] has the name 3; names are non-empty strings"),
            ({"online": {"a": np.array([{"x": 1}], dtype=object)}}, ValueError, "pickle")):
        with pytest.raises(err, match=says):
            ckpt.save(path, arrays, {"step": 1})
        assert path.read_bytes() == b"the earlier checkpoint" and os.listdir(tmp_path) == ["c.npz"]
    ckpt.save(path, {"online": {"a": np.ones(2)}}, {"step": 1})
    with zipfile.ZipFile(path) as z:
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_encode_refuses_inputs_whose_features_overflow(dtype):
    """Finite inputs beyond what the network's sums hold gave inf and NaN features, silently (with only
    NumPy's RuntimeWarning), which embed wrote: with finite=True (embed's) the row is named."""
    import warnings

    online, _ = byol.build(4, 8, 4, 4, dtype=dtype)
    be = get_backend("numpy", dtype)
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(dtype)
    assert np.isfinite(encode(online, x, None, be)).all()
    w = "encoder.fc1.weight"
    online = online._replace(params={**online.params, w: np.abs(online.params[w]) + 1})
    assert np.isfinite(encode(online, x, None, be)).all()
    x[4] = np.finfo(dtype).max / 2  # (every input of the row, weights >= 1: the first Linear's sum overflows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (and no RuntimeWarning on the way)
        for which in ("y", "z"):
            with pytest.raises(ValueError, match=rf"features of 1 row\(s\) are not finite \(inf or NaN\), the first "
                                                 rf"row 4, .* in {dtype}"):
                encode(online, x, None, be, batch=3, which=which, finite=True)
    with np.errstate(over="ignore", invalid="ignore"):  # by default they are returned (knn_monitor skips them)
        assert not np.isfinite(encode(online, x, None, be)[4]).all()
    # the magnitude named is that of the input the network took: after the input normalisation, too
    from byol_ref.train import InputNorm

    halve = InputNorm(np.zeros(4, dtype), np.full(4, 0.5, dtype))  # (x - 0) / 0.5 doubles the row
    x[4] = np.finfo(dtype).max / 4
    with pytest.raises(ValueError, match=rf"the first row 4, whose largest input magnitude after the run's "
                                         rf"preprocessing is {re.escape(f'{float(np.finfo(dtype).max / 2):.3g}')}:"):
        encode(online, x, halve, be, finite=True)


@settings(max_examples=20)
@given(rows=st.sets(st.integers(0, 6), min_size=1), batch=st.integers(1, 7),
       dtype=st.sampled_from(["float64", "float32"]), which=st.sampled_from(["y", "z"]))
def test_encode_counts_every_row_whose_features_overflow_and_names_the_first(rows, batch, dtype, which):
    """Found by a mutation audit: the count was of the first batch holding such a row only (rows 1 and 4 in
    batches of 3 were "1 row(s)"); and an encode that looked for NaN only (not inf), or named the last such
    row, or its smallest input magnitude, passed every test. With every encoder weight positive, an
    overflowing row's encoder features are +inf (no NaN), its projector features NaN."""
    online, _ = byol.build(4, 8, 4, 4, dtype=dtype)
    be = get_backend("numpy", dtype)
    params = dict(online.params)
    for w in ("encoder.fc1.weight", "encoder.fc2.weight"):
        params[w] = np.abs(params[w]) + 1
    online = online._replace(params=params)
    x = np.random.default_rng(0).standard_normal((7, 4)).astype(dtype)
    big = np.finfo(dtype).max / 2
    for r in rows:
        x[r] = big
        x[r, r % 4] = -1e-3  # (the row's largest magnitude is still big)
    with np.errstate(over="ignore", invalid="ignore"):
        features = encode(online, x, None, be, which=which)
    assert (np.isinf(features[sorted(rows)]).all() and not np.isnan(features).any()) if which == "y" else \
        np.isnan(features[sorted(rows)]).any(axis=1).all()
    first = min(rows)
    says = (rf"^the network's features of {len(rows)} row\(s\) are not finite \(inf or NaN\), the first row "
            rf"{first}, whose largest input magnitude after the run's preprocessing is {re.escape(f'{big:.3g}')}: "
            rf"values beyond what the network computes in {dtype}")
    with pytest.raises(ValueError, match=says):
        encode(online, x, None, be, batch=batch, which=which, finite=True)


def test_a_generator_state_out_of_range_is_a_checkpoint_error(tmp_path, data):
    """An rng_state number NumPy cannot hold raised its OverflowError, a traceback from every command that
    reads the checkpoint (eval, embed, convert, train --resume); a flag NumPy takes but no generator
    has (has_uint32 -1, 2 or true) loaded without a word."""
    from byol_ref.train import load_checkpoint

    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "r")
    arrays, meta = ckpt.load(tmp_path / "r" / "checkpoint.npz")
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    for key, value in (("uinteger", -1), ("uinteger", 2**40), ("has_uint32", 2**70), ("state", {"state": -1}),
                       ("has_uint32", -1), ("has_uint32", 2), ("has_uint32", True), ("uinteger", True)):
        rng_state = {**meta["rng_state"], key: value}
        if key == "state":
            rng_state["state"] = {**meta["rng_state"]["state"], **value}
        bad = ckpt.save(tmp_path / "bad.npz", arrays, {**meta, "rng_state": rng_state})
        with pytest.raises(ckpt.CheckpointError, match=r"bad.npz: invalid generator state \("):
            load_checkpoint(bad)


def test_an_epoch_position_past_the_epoch_is_a_checkpoint_error(tmp_path, data):
    """No run writes an epoch position past its epoch's batches: resume began a new epoch there without a
    word (a data order an uninterrupted run never had)."""
    from byol_ref.train import load_checkpoint

    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "r")
    arrays, meta = ckpt.load(tmp_path / "r" / "checkpoint.npz")
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}
    batches = arrays["data"]["epoch_perm"].size // 32
    assert meta["epoch_pos"] == batches  # (the end of the epoch: a run writes that)
    load_checkpoint(ckpt.save(tmp_path / "ok.npz", arrays, meta))
    for pos in (batches + 1, 10**30):
        bad = ckpt.save(tmp_path / "bad.npz", arrays, {**meta, "epoch_pos": pos})
        with pytest.raises(ckpt.CheckpointError, match=rf"bad.npz: epoch position {pos} is past the {batches} batches "
                                                       "of 32 in data/epoch_perm"):
            load_checkpoint(bad)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd to name what is flushed")
def test_each_checkpoint_reaches_the_disk_after_the_metrics_it_follows_and_its_rename_too(data, tmp_path,
                                                                                          monkeypatch):
    """What a power cut may not undo: metrics.jsonl is flushed to disk before each checkpoint is
    written (a resume finds every record up to the checkpoint's step), and the checkpoint's rename
    is flushed with its folder (an fsync of the file alone leaves its new name to chance)."""
    events, real_fsync, real_replace = [], os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", Path(dst).name))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / "run"
    fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=2, checkpoint_every=3), progress=False, out_dir=out)
    renames = [i for i, e in enumerate(events) if e == ("replace", "checkpoint.npz")]
    assert len(renames) == 3  # steps 3, 6 and 8
    for i in renames:
        before = events[:i]
        last_metrics = max(j for j, e in enumerate(before) if e == ("fsync", "metrics.jsonl"))
        assert ("replace", "checkpoint.npz") not in before[last_metrics:]  # (a fresh one for each)
        assert events[i + 1] == ("fsync", out.name)


def test_a_resume_on_other_data_is_refused(data, tmp_path):
    """The checkpoint's epoch order indexes its own training split: a resume on a split of another
    size would raise an IndexError mid-epoch (fewer rows) or quietly leave rows out (more), and one
    on other rows of the same size would go on from statistics of data it never saw."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path, stop_at=5)  # (mid-epoch: 4 steps an epoch)
    for rows in (96, 160):  # fewer rows, more rows
        other = data._replace(x_train=np.concatenate([data.x_train] * 2)[:rows],
                              y_train=np.concatenate([data.y_train] * 2)[:rows])
        with pytest.raises(ValueError, match=rf"^resume=True: .*checkpoint.npz was trained on 128 training samples, "
                                             rf"but the data has {rows}: resume with the data the run trained on$"):
            fit(other, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path, resume=True)
    shifted = data._replace(x_train=data.x_train + 1e-3)
    with pytest.raises(ValueError, match=r"^resume=True: the data is not what .*checkpoint.npz was trained on \(its "
                                         r"training split's statistics differ"):
        fit(shifted, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path, resume=True)
    # the run's own data, rounded in the last bit (as another NumPy build may sum it), goes on
    nudged = data._replace(x_train=np.nextafter(data.x_train, np.inf))
    assert fit(nudged, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path, resume=True).state.step == 8


@pytest.mark.parametrize("change, error, match", [
    (dict(dataset=None), TypeError, r"dataset must be a byol_ref Dataset, got NoneType"),
    (dict(model_cfg={}), TypeError, r"model_cfg must be a byol_ref Config, got dict"),
    (dict(tcfg="adamw"), TypeError, r"tcfg must be a byol_ref TrainConfig, got str"),
    (dict(x_train="x"), TypeError, r"dataset.x_train must be a 2-D array \(N, D\) of real numbers, got str"),
    (dict(x_train=1), TypeError, r"dataset.x_train must be a 2-D array .* got ndarray of shape \(12,\)"),
    # (x_test: None and a 1-D one failed as AttributeError and IndexError; a NaN was "x has 1 non-finite value")
    (dict(x_test=None), TypeError, r"dataset.x_test must be a 2-D array \(N_test, D\), where N_test may be 0, of "
                                   r"real numbers, got NoneType"),
    (dict(x_test=1), TypeError, r"dataset.x_test must be a 2-D array .* got ndarray of shape \(12,\)"),
    (dict(x_test=2), ValueError, r"dataset.x_test has 5 features per row, but dataset.x_train has 12; expected the same"),
    (dict(x_test=3), ValueError, r"dataset.x_test has 1 non-finite value\(s\) \(NaN or inf\); the first is at "
                                 r"index \(1, 2\); expected finite numbers"),
    (dict(image_shape="x"), ValueError, r"dataset.image_shape must be \(H, W\) or \(C, H, W\) of positive ints, "
                                        r"got 'x'"),
    (dict(image_shape=(3, 3)), ValueError, r"dataset.image_shape \(3, 3\) has 9 pixels, but dataset.x_train has 12"),
    (dict(name=None), TypeError, r"dataset.name must be a non-empty str \(what messages call the data\), got None$"),
    (dict(name=" "), TypeError, r"dataset.name must be a non-empty str .*, got ' '$"),
    (dict(out_dir=""), ValueError, r"out_dir is empty"),
    (dict(out_dir=3), TypeError, r"out_dir must be a str or os.PathLike file path, got int"),
    (dict(progress=1), TypeError, r"progress must be True or False, got 1"),
    (dict(views=3), TypeError, r"views must be None or a pair of augmentation configs"),
    (dict(views=[]), TypeError, r"views must be None or a pair of augmentation configs \(view 1, view 2\), got \[\]"),
    (dict(views=("a", "b")), TypeError, r"views\[0\] must be an ImageAug or a VectorAug, got str"),
    (dict(state={}), TypeError, r"state must be None or a byol_ref TrainState, got dict"),
    (dict(stop_at="5"), TypeError, r"stop_at must be an int >= 0, got '5'"),
    (dict(stop_at=-1), ValueError, r"stop_at must be an int >= 0, got -1"),
    (dict(log="stderr"), TypeError, r"log must be None or a callable, got 'stderr' \(str\)"),
    (dict(on_checkpoint=1), TypeError, r"on_checkpoint must be None or a callable, got 1 \(int\)"),
    (dict(stop_requested=[]), TypeError, r"stop_requested must be None or a callable, got \[\] \(list\)"),
    (dict(model_cfg=byol.Config(encoder_dim=5, **SMALL)), ValueError,
     r"^model_cfg.encoder_dim is 5, but dataset.x_train has 12 features; the encoder takes one input per feature: "
     r"expected Config\(encoder_dim=12\)$"),
    (dict(backend=get_backend("numpy", "float32")), ValueError, r"^backend dtype float32 differs from "
                                                                r"TrainConfig.dtype float64$"),
    (dict(tcfg=_tcfg(epochs=1, batch_size=200)), ValueError, r"^batch_size=200 exceeds the 128 training samples$"),
])
def test_fit_refuses_a_bad_argument_naming_it_before_any_work(tmp_path, monkeypatch, data, change, error, match):
    # Found by a bad-input fuzz of fit: these were AttributeErrors ('NoneType' object has no attribute
    # 'x_train'), "'int' object is not callable" after the first checkpoint, IndexError for a 1-D x_train,
    # or were taken quietly: progress=1, views=[] read as the default, out_dir="" writing checkpoint.npz and
    # metrics.jsonl into the working folder, stop_at=-1 training nothing.
    monkeypatch.chdir(tmp_path)
    args = dict(dataset=data, model_cfg=byol.Config(encoder_dim=12, **SMALL), tcfg=_tcfg(epochs=1),
                out_dir=tmp_path / "run", progress=False)
    nan_at = data.x_test.copy()
    nan_at[1, 2] = np.nan
    stand_in = {1: data.x_train[0], 2: data.x_test[:, :5], 3: nan_at}
    for field in ("x_train", "x_test", "image_shape", "name"):
        if field in change:
            value = change.pop(field)
            change["dataset"] = data._replace(**{field: stand_in.get(value, value) if isinstance(value, int) else
                                                 value})
    args.update(change)
    with pytest.raises(error, match=match):
        fit(args.pop("dataset"), args.pop("model_cfg"), args.pop("tcfg"), **args)
    assert os.listdir(tmp_path) == []  # nothing written, not even the run directory


def test_fit_refuses_an_out_dir_that_is_a_file_and_leaves_it(tmp_path, data):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(FileExistsError, match=r"out_dir .*notes.txt is a file, not a run directory"):
        fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), out_dir=f, progress=False)
    assert f.read_text() == "mine"


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_fit_refuses_an_out_dir_at_a_link_to_nothing_or_below_a_loop_of_links(tmp_path, data):
    """A link to nothing (a disk not mounted) or a loop of links said "[Errno 17] File exists" or
    "[Errno 40] Too many levels of symbolic links", naming no argument; now out_dir and what is in its
    way are named, before any work, and nothing is made at the link's end."""
    os.symlink(tmp_path / "unmounted" / "disk", tmp_path / "gone")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    for out, why in [(tmp_path / "gone", "gone is a link to .*unmounted/disk, which leads to no file"),
                     (tmp_path / "loop1" / "run", "loop1 is a link to .*loop2, which leads round a loop of links")]:
        with pytest.raises(FileExistsError, match=f"out_dir {re.escape(str(out))}: .*{why}.*; choose another out_dir"):
            fit(data, byol.Config(encoder_dim=12, **SMALL), _tcfg(epochs=1), out_dir=out, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["gone", "loop1", "loop2"]


def test_a_checkpoint_missing_its_epoch_order_or_with_an_odd_version_is_refused(tmp_path, data):
    # Found by a corrupt-checkpoint fuzz: with data/epoch_perm removed or renamed (data/xepoch_perm) a
    # mid-epoch checkpoint loaded, and a resume drew a new sample order mid-epoch, silently not the run's;
    # a format version of true was read as 1, and 0 or -1 taken.
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1), out_dir=tmp_path / "run", progress=False, stop_at=2)
    good = tmp_path / "run" / "checkpoint.npz"
    state, _, _, _ = load_checkpoint(good)
    assert state.epoch_pos == 2 and state.epoch_perm is not None
    entries = dict(np.load(good, allow_pickle=False))
    perm = entries.pop("data/epoch_perm")

    def edited(**changes):
        path = tmp_path / "edited.npz"
        np.savez(path, **{**entries, **changes})
        return path

    with pytest.raises(ckpt.CheckpointError, match=r"edited.npz: epoch position 2 is inside an epoch, but "
                                                   r"data/epoch_perm, that epoch's sample order, is missing"):
        load_checkpoint(edited())
    with pytest.raises(ckpt.CheckpointError, match=r"data holds \['xepoch_perm'\], expected only epoch_perm"):
        load_checkpoint(edited(**{"data/xepoch_perm": perm}))
    meta = json.loads(str(entries["meta"][()]))
    for version in (True, 0, -1):
        with pytest.raises(ckpt.CheckpointError, match=f"edited.npz has checkpoint format version {version}, "
                                                       "expected a whole number from 1 to 1"):
            load_checkpoint(edited(**{"data/epoch_perm": perm, "meta": np.array(json.dumps({**meta,
                                                                                            "version": version}))}))
    # (and a warmup_default that is not a bool, which a resume read as false: the run's warm-up recomputed)
    for flag in ("yes", 1, None):
        with pytest.raises(ckpt.CheckpointError, match=f"edited.npz: warmup_default {flag!r} must be true or false"):
            load_checkpoint(edited(**{"data/epoch_perm": perm, "meta": np.array(json.dumps({**meta,
                                                                                            "warmup_default": flag}))}))
    load_checkpoint(edited(**{"data/epoch_perm": perm}))  # as written: fine


def test_the_training_helpers_name_an_argument_of_the_wrong_type(tmp_path):
    # Found by a bad-input fuzz of the training helpers: each of these was an AttributeError naming nothing
    # ('NoneType' object has no attribute 'step', 'str' object has no attribute 'xp'), "asdict() should be
    # called on dataclass instances", or "unsupported operand type(s) for //: 'str' and 'int'".
    cfg = byol.Config(encoder_dim=6, **SMALL)
    tcfg = _tcfg()
    be = get_backend()
    state = init_state(cfg, tcfg, be)
    sched = make_schedules(tcfg, 64)
    step = dict(optimizer=make_optimizer_for(tcfg), schedules=sched, views=(VectorAug(), VectorAug()), tcfg=tcfg)
    x = np.random.default_rng(0).standard_normal((32, 6))
    checks = [
        (lambda: init_state(None, tcfg, be), r"model_cfg must be a byol_ref Config, got NoneType"),
        (lambda: init_state(cfg, {}, be), r"tcfg must be a byol_ref TrainConfig, got dict"),
        (lambda: init_state(cfg, tcfg, None), r"backend must be a byol_ref Backend, got NoneType"),
        (lambda: train_step(None, x, **step), r"state must be a byol_ref TrainState, got NoneType"),
        (lambda: train_step(state, x, **{**step, "optimizer": "adamw"}), r"optimizer must be a byol_ref Optimizer"),
        (lambda: train_step(state, x, **{**step, "schedules": {}}), r"schedules must be a byol_ref Schedules"),
        (lambda: train_step(state, x, **{**step, "tcfg": None}), r"tcfg must be a byol_ref TrainConfig"),
        (lambda: train_step(state, x, **step, input_norm="z"), r"input_norm must be None or a byol_ref InputNorm, "
                                                              r"got str"),
        (lambda: save_checkpoint(tmp_path / "c.npz", None, cfg, tcfg), r"state must be a byol_ref TrainState"),
        (lambda: save_checkpoint(tmp_path / "c.npz", state, "cfg", tcfg), r"model_cfg must be a byol_ref Config"),
        (lambda: save_checkpoint(tmp_path / "c.npz", state, cfg, None), r"tcfg must be a byol_ref TrainConfig"),
        (lambda: save_checkpoint(tmp_path / "c.npz", state, cfg, tcfg, extra="x"), r"extra must be None or a dict, "
                                                                                    r"got str"),
        (lambda: load_checkpoint(tmp_path / "c.npz", "numpy"), r"backend must be None or a byol_ref Backend, got str"),
        (lambda: make_schedules(None, 64), r"tcfg must be a byol_ref TrainConfig, got NoneType"),
        (lambda: make_schedules(tcfg, "64"), r"n_train must be an int >= 0, got '64'"),
    ]
    for call, message in checks:
        with pytest.raises(TypeError, match=message):
            call()
    assert not (tmp_path / "c.npz").exists()
    train_step(state, x, **step)  # as given: fine


# --------------------------------------------------------------------------- found by a coverage audit (train.py)


def test_a_run_whose_generator_a_checkpoint_cannot_restore_is_refused_before_it_trains(data, tmp_path):
    """A checkpoint restores a PCG64 generator (default_rng's) only. fit(backend=Backend(..., rng=Generator(
    Philox(7)))) trained its steps, then failed at the first checkpoint on "can only convert an array of
    size 1 to a Python scalar" (so did save_checkpoint); one over PCG64DXSM wrote checkpoints that the resume
    refused ("invalid generator state"). Both are refused by name before a step; without out_dir nothing is
    saved, and any Generator trains."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    tcfg = _tcfg(epochs=1)
    state = init_state(cfg, tcfg, get_backend())
    says = r"must be a NumPy Generator over PCG64 \(numpy.random.default_rng's\), the one a checkpoint restores, got "
    for bits in (np.random.Philox(7), np.random.PCG64DXSM(7)):
        rng, name = np.random.Generator(bits), type(bits).__name__
        with pytest.raises(TypeError, match=rf"^backend.rng {says}a Generator over {name}$"):
            fit(data, cfg, tcfg, backend=byol.Backend("numpy", np, "float64", rng), out_dir=tmp_path / "r",
                progress=False)
        with pytest.raises(TypeError, match=rf"^state.rng {says}a Generator over {name}$"):
            fit(data, cfg, tcfg, state=state._replace(rng=rng), out_dir=tmp_path / "r", progress=False)
        with pytest.raises(TypeError, match=rf"^state.rng {says}a Generator over {name}$"):
            save_checkpoint(tmp_path / "c.npz", state._replace(rng=rng), cfg, tcfg)
    with pytest.raises(TypeError, match=rf"^state.rng {says}RandomState$"):
        save_checkpoint(tmp_path / "c.npz", state._replace(rng=np.random.RandomState(0)), cfg, tcfg)
    assert os.listdir(tmp_path) == []
    assert fit(data, cfg, tcfg, state=state._replace(rng=rng), progress=False).state.step == 4


def test_a_resume_from_a_checkpoint_with_a_bad_record_names_the_checkpoint(data, tmp_path):
    """A checkpoint whose stored augmentations or input statistics no run writes (a file edited, or
    corrupt) is named as the culprit. Statistics that did not read as numbers were told as the user's
    data: "the data is not what ... was trained on ... resume with the data the run trained on"; that
    is kept for a record that reads, but of other data (an image run's, resumed on the same pixels
    loaded as plain rows)."""
    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "r")
    arrays, meta = ckpt.load(tmp_path / "r" / "checkpoint.npz")
    meta = {k: v for k, v in meta.items() if k not in ("format", "version")}

    def resume_with(**changes):
        ckpt.save(tmp_path / "r" / "checkpoint.npz", arrays, {**meta, **changes})
        return fit(data, cfg, _tcfg(epochs=2), progress=False, out_dir=tmp_path / "r", resume=True)

    at = re.escape(str(tmp_path / "r" / "checkpoint.npz"))
    with pytest.raises(ckpt.CheckpointError, match=rf"^{at}: invalid augmentation settings \(view kind must be "
                                                   r"'image' or 'vector', got 'audio'\)$"):
        resume_with(views=[{"kind": "audio"}, {"kind": "vector"}])
    for record, why in (("garbage", "string indices must be integers"),
                        ({**meta["preprocessing"], "mean": "abc"}, "could not convert string to float: 'abc'")):
        with pytest.raises(ckpt.CheckpointError, match=rf"^{at}: preprocessing must come from fit_preprocessing, "
                                                       rf"got .*\({why}"):
            resume_with(preprocessing=record)
    with pytest.raises(ValueError, match=rf"^resume=True: the data is not what {at} was trained on \(its training "
                                         r"split's statistics differ"):
        resume_with(preprocessing={"kind": "image", "mean": 0.5, "std": 0.25})
    del meta["preprocessing"]  # (a checkpoint from before the record: nothing to compare with)
    assert resume_with().state.step == 8


def test_checkpoint_features_of_a_checkpoint_without_input_statistics_or_of_no_rows(tmp_path):
    """A checkpoint save_checkpoint wrote without extra={'preprocessing': ...} was said to "predate stored
    input statistics": it is told what it lacks and why it may. An image run's features of no rows are
    no rows (there are no pixels to look at the range of)."""
    r = np.random.default_rng(16)
    ds = synthetic(16, 4, 2)._replace(x_train=r.random((64, 16)), y_train=np.arange(64) % 2,
                                      x_test=r.random((8, 16)), y_test=np.arange(8) % 2, image_shape=(4, 4))
    cfg = byol.Config(encoder_dim=16, **SMALL)
    res = fit(ds, cfg, _tcfg(epochs=1), progress=False, out_dir=tmp_path / "r", stop_at=1)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert checkpoint_features(tmp_path / "r", np.zeros((0, 16))).shape == (0, SMALL["hidden_size"])
    own = save_checkpoint(tmp_path / "own.npz", res.state, cfg, res.train_config)
    with pytest.raises(ckpt.CheckpointError, match=r"^\S*own.npz holds no input statistics \(meta 'preprocessing'\): "
                                                   r"it predates them, or save_checkpoint wrote it without "
                                                   r"extra=\{'preprocessing': fit_preprocessing\(dataset\)\}; use "):
        checkpoint_features(own, ds.x_test)


def test_a_resume_in_a_folder_holding_only_the_checkpoint_starts_its_metrics_afresh(data, tmp_path):
    """A checkpoint.npz copied alone into a new folder (or one whose metrics.jsonl was removed) resumes
    there; the metrics of the steps after it go into a new metrics.jsonl."""
    import shutil

    cfg = byol.Config(encoder_dim=12, **SMALL)
    fit(data, cfg, _tcfg(epochs=1, log_every=1), progress=False, out_dir=tmp_path / "r")
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "r" / "checkpoint.npz", tmp_path / "copy")
    res = fit(data, cfg, _tcfg(epochs=2, log_every=1), progress=False, out_dir=tmp_path / "copy", resume=True)
    records = [json.loads(line) for line in (tmp_path / "copy" / "metrics.jsonl").read_text().splitlines()]
    assert res.start_step == 4 and [r["step"] for r in records] == [5, 6, 7, 8]


def test_image_rows_whose_mean_overflows_are_refused_naming_x_train(data):
    """Images trained as plain rows (VectorAug views, so no pixel range is asked for) keep an image
    run's scalar input normalisation; its mean of values near the float64 limit overflows. Refused in
    words before any step, naming the data, x_train and its largest magnitude."""
    ds = data._replace(x_train=np.full((128, 16), 1e308), x_test=np.zeros((32, 16)), image_shape=(4, 4))
    with pytest.raises(ValueError, match=r"^synthetic: x_train has values whose standardisation overflows to inf or "
                                         r"NaN \(largest magnitude 1e\+308\); rescale the data$"):
        fit(ds, byol.Config(encoder_dim=16, **SMALL), _tcfg(epochs=1), progress=False,
            views=(VectorAug(), VectorAug()))


def test_a_step_whose_features_overflow_while_its_loss_stays_finite_is_logged_without_the_monitors(data, tmp_path):
    """float32 without normalisation layers: the online projection overflows to inf, and the predictor's
    ReLU turns it into zeros, so the loss stays finite (the target's side is fine). The step's record
    keeps the loss, lr and tau but leaves out the collapse monitors of its inf features, and the run
    stops on the parameters that became NaN, before its checkpoint."""
    small = byol.Config(encoder_dim=12, hidden_size=8, projection_dim=4, predictor_dim=4, norm="none")
    tcfg = _tcfg(epochs=1, dtype="float32")
    state = init_state(small, tcfg, get_backend("numpy", "float32", 1))
    params = dict(state.online.params)
    params["projector.fc1.bias"] = np.full_like(params["projector.fc1.bias"], 10.0)  # (ReLU lets it all through)
    params["projector.fc2.weight"] = np.full_like(params["projector.fc2.weight"], 3e38)  # z: +inf in float32
    params["predictor.fc1.weight"] = -np.abs(params["predictor.fc1.weight"])  # -inf, then 0 after the ReLU
    state = state._replace(online=state.online._replace(params=params))
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged, match=r"^online.params\['predictor.fc1.weight'\] "
                                                                         r"became non-finite by step 1 "):
        fit(data, small, tcfg, state=state, stop_at=1, out_dir=tmp_path / "r", progress=False)
    step_1 = json.loads((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()[1])
    assert sorted(step_1) == ["epoch", "knn", "loss", "lr", "step", "tau"] and step_1["step"] == 1
    assert np.isfinite(step_1["loss"]) and not (tmp_path / "r" / "checkpoint.npz").exists()


def test_a_checkpoint_member_whose_header_claims_more_than_memory_or_lacks_a_key_is_a_checkpoint_error(tmp_path):
    """Crafted members of a checkpoint's zip: a header claiming 2**59 bytes of float64, which the zip's
    directory claims too (so the size check finds nothing amiss), failed NumPy's allocation as it was
    read; a header without its 'shape' key; a header whose dict has a key of bytes (NumPy's TypeError
    named no file). Each is a CheckpointError naming the file and the problem, not a MemoryError or
    NumPy's ValueError or TypeError."""
    cfg = byol.Config(encoder_dim=5, **SMALL)
    good = save_checkpoint(tmp_path / "good.npz", init_state(cfg, _tcfg(), get_backend()), cfg, _tcfg())

    def crafted(header: dict, claimed: int):
        """good.npz with online/encoder.fc1.weight an .npy header alone, its size in the zip's directory
        the header's plus ``claimed`` bytes (the member's local entry holds the true size)."""
        text = repr(header).encode()
        text += b" " * (63 - (10 + len(text)) % 64) + b"\n"  # (padded to 64 bytes in all, as NumPy does)
        npy = b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text
        path = tmp_path / "crafted.npz"
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
            for name in src.namelist():
                if name != "online/encoder.fc1.weight.npy":
                    dst.writestr(name, src.read(name))
                    continue
                info = zipfile.ZipInfo(name)
                with dst.open(info, "w", force_zip64=True) as f:
                    f.write(npy)
                info.file_size = len(npy) + claimed  # (written into the directory as the zip closes)
        return path

    at = re.escape(str(tmp_path / "crafted.npz"))
    with pytest.raises(ckpt.CheckpointError, match=rf"^{at} claims an array larger than memory: it is corrupt, or not "
                                                   r"written by NumPy$"):
        load_checkpoint(crafted({"descr": "<f8", "fortran_order": False, "shape": (2**56,)}, 2**59))
    with pytest.raises(ckpt.CheckpointError, match=rf"^{at} is truncated or corrupt \(Header does not contain the "
                                                   r"correct keys: [^\n]*\)$"):  # (NumPy's words after the colon)
        load_checkpoint(crafted({"descr": "<f8", "fortran_order": False}, 0))
    with pytest.raises(ckpt.CheckpointError, match=rf"^{at} is truncated or corrupt \(TypeError: '<' not supported "
                                                   r"between instances of 'bytes' and 'str'\)$"):
        load_checkpoint(crafted({"descr": "<f8", b"fortran_order": False, "shape": (2,)}, 0))
