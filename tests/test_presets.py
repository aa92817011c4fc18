"""Presets (byol_ref.presets): every implementation builds valid configs, every field is documented,
every field reaches the computation where it should and nowhere else (issue #4), and the CLI
``train --preset`` seeds the conventions under explicit flags and --set."""
import json
from dataclasses import fields

import pytest

from byol_ref.diff import diff_traces
from byol_ref.model import Config
from byol_ref.presets import (FIELD_DOCS, MODEL_FIELDS, OWN_FIELDS, PRESETS, TRAIN_FIELDS, Preset, get_preset,
                              preset_field_names, preset_names, presets_markdown)
from byol_ref.trace import make_inputs, trace_inputs
from byol_ref.train import TrainConfig


def test_shipped_presets_and_default():
    assert preset_names() == ["deepmind", "byol-pytorch", "lightly", "solo-learn", "edifice"]
    assert get_preset() == Preset() == PRESETS["deepmind"]
    for name in preset_names():
        p = get_preset(name)
        assert p.name == name
        cfg = p.config(encoder_dim=8, hidden_size=6, projection_dim=4, predictor_dim=3)
        tcfg = p.train_config(epochs=10, batch_size=32)
        assert isinstance(cfg, Config) and isinstance(tcfg, TrainConfig)
        for f in MODEL_FIELDS:
            assert getattr(cfg, f) == getattr(p, f), (name, f)
        for f in TRAIN_FIELDS:
            assert getattr(tcfg, f) == getattr(p, f), (name, f)
        assert tcfg.warmup_epochs == min(p.warmup_epochs, 10)
        scale = p.lr_batch_scale or 32
        assert tcfg.final_lr == pytest.approx(p.final_lr_ratio * p.lr * 32 / scale)


def test_every_field_is_a_config_field_and_documented():
    names = preset_field_names()
    assert set(names) == set(MODEL_FIELDS) | set(TRAIN_FIELDS) | set(OWN_FIELDS)
    assert set(MODEL_FIELDS) <= {f.name for f in fields(Config)}
    assert set(TRAIN_FIELDS) <= {f.name for f in fields(TrainConfig)}
    for f in names:
        assert f in FIELD_DOCS and len(FIELD_DOCS[f]) > 40, f
        assert f"    {f}: " in Preset.__doc__
    md = presets_markdown()
    for f in names:
        assert f"`{f}`" in md


def test_docs_presets_md_is_current():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "presets.md"
    assert path.read_text() == presets_markdown(), "regenerate docs/presets.md with presets_markdown()"


def test_overrides_and_errors():
    p = get_preset("lightly", norm_eps=1e-6, views="concat")
    assert (p.norm_eps, p.views, p.loss_form) == (1e-6, "concat", "2-2cos")
    assert p.replace(lr=0.1).lr == 0.1
    with pytest.raises(ValueError, match="preset must be one of"):
        get_preset("simclr")
    with pytest.raises(ValueError, match="unknown preset field.*bogus"):
        get_preset("deepmind", bogus=1)
    with pytest.raises(ValueError, match="views must be one of"):
        get_preset("deepmind", views="mixed")
    with pytest.raises(ValueError, match="ema_scope must be one of"):
        get_preset("deepmind", ema_scope="everything")
    with pytest.raises(ValueError, match="warmup_epochs"):
        get_preset("deepmind", warmup_epochs=-1.0)
    with pytest.raises(TypeError, match=r"^a preset's warmup_epochs is a number of epochs, got None: TrainConfig's "
                                        r"None \(5% of the run\)"):
        get_preset("lightly").train_config(epochs=10, batch_size=8, warmup_epochs=None)
    with pytest.raises(ValueError, match="unknown preset field"):
        Preset.from_dict({"name": "x", "nope": 1})
    assert Preset.from_dict(get_preset("solo-learn").to_dict()) == get_preset("solo-learn")


def test_a_new_norm_eps_mode_takes_its_own_default_eps_as_config_replace_does():
    """deepmind's 1e-12 is an eps under the squared norm; with norm_eps_mode="add" the preset kept it, where
    Config.replace (and a Config built afresh) take add's 1e-8. An eps that is no mode's default stays."""
    from byol_ref.losses import DEFAULT_EPS

    assert get_preset("deepmind", norm_eps_mode="add").norm_eps == DEFAULT_EPS["add"] == 1e-8
    assert get_preset("deepmind", norm_eps_mode="add").config(encoder_dim=2) == \
        get_preset("deepmind").config(encoder_dim=2).replace(norm_eps_mode="add")
    assert get_preset("edifice", norm_eps_mode="sq_norm").norm_eps == 1e-12
    assert get_preset("deepmind", norm_eps_mode="add", norm_eps=1e-3).norm_eps == 1e-3  # given: kept
    assert get_preset("deepmind", norm_eps=1e-6).replace(norm_eps_mode="add").norm_eps == 1e-6  # its own: kept
    assert get_preset("lightly", norm_eps_mode="add").norm_eps == 1e-8  # (cosine_similarity's eps, as it was)
    assert get_preset("deepmind", lr=0.1).norm_eps == 1e-12


@pytest.mark.parametrize("new_mode", ["sq_norm", "norm", "add"])
@pytest.mark.parametrize("old_mode", ["sq_norm", "norm", "add"])
@pytest.mark.parametrize("old_eps", [1e-12, 1e-8, 1e-6])
def test_preset_and_config_replace_derive_the_same_eps_for_a_new_mode(old_mode, old_eps, new_mode):
    """Both follow one rule (losses.eps_for_new_mode): an eps that was its mode's default follows the mode,
    any other stays; every pair of modes, with defaults and a chosen eps."""
    from byol_ref.losses import DEFAULT_EPS

    preset = get_preset("deepmind", norm_eps_mode=old_mode, norm_eps=old_eps).replace(norm_eps_mode=new_mode)
    config = Config(encoder_dim=2, norm_eps_mode=old_mode, norm_eps=old_eps).replace(norm_eps_mode=new_mode)
    derived = old_eps == DEFAULT_EPS[old_mode]
    assert preset.norm_eps == config.norm_eps == (DEFAULT_EPS[new_mode] if derived else old_eps)


# ------------------------------------------------------------------ every field reaches the computation

# Base: the deepmind preset with a 1-step warm-up (W = 1, unless a base says "W") from 1e-3 (so step 0 moves
# the params), 3 steps of K = 3.
BASE = dict(warmup_start=1e-3)

# (change, extra base fields, expected first divergence in execution order, one-sided names expected).
# The comparison is exact (rtol = atol = 0): everything before the named tensor is bitwise identical.
REACH = [
    (dict(layout="edifice"), {}, "step0.online.view1.encoder.norm1.batch_mean", True),
    (dict(norm="layer"), {}, "step0.online.view1.encoder.norm1.out", True),
    (dict(hidden_bias=False), {}, "step1.online.view2.encoder.fc1.out", True),  # Haiku biases start at 0
    (dict(head_bias=True), {}, "step1.online.view1.predictor.fc2.out", True),
    (dict(init="torch"), {}, "init.online.param.encoder.fc1.weight", False),
    (dict(target_init="copy"), {}, "init.target.param.encoder.fc1.weight", False),
    (dict(target_init="copy_encoder"), {}, "init.target.param.encoder.fc1.weight", False),
    (dict(target_init="copy_encoder"), dict(target_init="copy"), "init.target.param.projector.fc1.weight", False),
    (dict(bn_eps=1e-3), {}, "step0.online.view1.encoder.norm1.out", False),
    (dict(bn_decay=0.5), {}, "step0.online.buffer.encoder.norm1.running_mean", False),
    (dict(bn_running="torch"), {}, "step0.online.buffer.encoder.norm1.running_mean", False),
    (dict(bn_var="two_pass"), {}, "step0.online.view1.encoder.norm1.batch_var", False),
    (dict(ln_eps=1e-3), {}, None, False),  # no layer norm in this network: nowhere
    (dict(ln_eps=1e-3), dict(norm="layer"), "step0.online.view1.encoder.norm1.out", False),
    (dict(ln_var="one_pass"), {}, None, False),
    (dict(ln_var="one_pass"), dict(norm="layer"), "step0.online.view1.encoder.norm1.out", False),
    (dict(views="concat"), {}, "step0.online.view1.encoder.norm1.out", True),
    (dict(target_bn="running"), {}, "step0.target.view1.encoder.norm1.out", True),
    (dict(norm_eps_mode="norm"), dict(norm_eps=10.0), "step0.online.view1.p.normed", False),
    (dict(norm_eps=100.0), {}, "step0.online.view1.p.normed", False),
    (dict(loss_form="2-2cos"), {}, "step0.loss.per_sample", False),
    (dict(loss_form="neg_cos"), {}, "step0.loss.per_sample", False),
    (dict(symmetric=False), {}, "step0.loss.per_sample", False),
    (dict(sym_reduce="mean"), {}, "step0.loss.total", False),
    (dict(optimizer="adam"), {}, "step0.online.param.encoder.fc1.weight", True),
    (dict(optimizer="sgd"), {}, "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(lr=0.5), {}, "step1.lr", False),  # step 0 is the warm-up start
    (dict(lr_batch_scale=128), {}, "step1.lr", False),
    (dict(weight_decay=1e-2), {}, "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(momentum=0.5), {}, "step1.opt.momentum.encoder.fc1.weight", False),  # m_1 = u_0 whatever the momentum
    (dict(lars_eta=1e-2), {}, "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(lars_trust_ratio="sum_of_norms"), {}, "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(lars_eps=1e-3), {}, "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(lars_clip_lr=True), {}, "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(lars_only_with_wd=True), {}, None, False),  # the tensors without weight decay skip LARS already
    (dict(lars_only_with_wd=True), dict(weight_decay=0.0), "step0.opt.momentum.encoder.fc1.weight", False),
    (dict(exclude="none"), {}, "step0.opt.momentum.encoder.norm1.gamma", False),  # a zero bias has no LARS ratio
    (dict(exclude="ndim"), {}, None, False),  # in an MLP every 1-D tensor is a bias or a norm param
    (dict(exclude="ndim"), dict(exclude="none"), "step0.opt.momentum.encoder.norm1.gamma", False),
    (dict(warmup_start=2e-3), {}, "step0.lr", False),
    (dict(warmup_offset=1), {}, "step0.lr", False),
    (dict(warmup_denominator="W-1"), dict(W=2), "step1.lr", False),  # W = 2: peak at step 1
    (dict(cosine_denominator="K-W-1"), {}, "step2.lr", False),  # W = 1: step 1 is the peak either way
    (dict(lr_rounding="exact"), {}, "step0.lr", False),  # float32: even lr_0 = warmup_start is a float32
    (dict(final_lr_ratio=0.5), {}, "step2.lr", False),
    (dict(tau_base=0.9), {}, "step0.tau", False),
    (dict(tau_schedule="constant"), {}, "step1.tau", False),
    (dict(tau_denominator="K-1"), {}, "step1.tau", False),
    (dict(ema_when="pre_forward"), {}, "step0.target.view1.encoder.fc1.out", False),
    (dict(ema_form="weighted"), {}, "step0.target.param.encoder.fc1.weight", False),  # rounding: an ulp apart
    (dict(ema_scope="params+buffers"), {}, "step1.target.buffer.encoder.norm1.running_mean", True),
]


def _trace(preset, warmup_steps=1):
    inputs = make_inputs(preset, encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                         projector_hidden_dim=7, batch=4, steps=3, seed=0)
    return trace_inputs(inputs, preset, total_steps=3, warmup_steps=warmup_steps)


def test_reach_table_covers_every_field():
    # warmup_epochs: a trace has no epochs (it takes W in steps); it reaches train's schedule, below
    assert {k for change, _, _, _ in REACH for k in change} == set(preset_field_names()) - {"warmup_epochs"}


def test_warmup_epochs_is_a_number_of_epochs_capped_at_the_run():
    """It was a fraction of the run (deepmind 0.01): 3 epochs of warm-up at 300, where every implementation that
    warms up takes 10 at any length (BYOL_FACTS a6: W = 10 x 1,281,167 // B)."""
    from byol_ref.train import make_schedules

    for name, want in (("deepmind", 10.0), ("lightly", 10.0), ("solo-learn", 10.0), ("byol-pytorch", 0.0),
                       ("edifice", 0.0)):
        p = get_preset(name)
        for epochs in (1, 4, 100, 300, 1000):
            assert p.train_config(epochs=epochs, batch_size=256).warmup_epochs == min(want, epochs), (name, epochs)
    tcfg = get_preset("deepmind").train_config(epochs=300, batch_size=256)
    lr = make_schedules(tcfg, 2560).lr  # 10 steps per epoch: the peak at step 100
    assert lr(50) == pytest.approx(lr(100) / 2) and max(lr(k) for k in range(300)) == lr(100) > lr(99)
    assert get_preset("deepmind", warmup_epochs=2.5).train_config(epochs=300).warmup_epochs == 2.5


@pytest.mark.parametrize("change,base,first,one_sided", REACH,
                         ids=[f"{k}={v}" + ("+" + ",".join(b) if b else "") for c, b, _, _ in REACH
                              for k, v in c.items()])
def test_every_field_reaches_the_computation(change, base, first, one_sided):
    p = get_preset("deepmind", **{**BASE, **{k: v for k, v in base.items() if k != "W"}})
    w = base.get("W", 1)
    rep = diff_traces(_trace(p, w), _trace(p.replace(**change), w), rtol=0, atol=0)
    assert rep.first_divergence == first
    assert bool(rep.only_a or rep.only_b) == one_sided


# ------------------------------------------------------------------ CLI: train --preset


def test_train_preset_flags_and_sets(tmp_path):
    from byol_ref.cli import main

    out = tmp_path / "run"
    rc = main(["train", "--data", "synthetic", "--preset", "lightly", "--epochs", "1", "--batch-size", "128",
               "--lr", "0.3", "--set", "norm_eps=1e-6", "--set", "nesterov=false", "--no-eval", "--no-plots",
               "--no-progress", "--out", str(out)])
    assert rc == 0
    saved = json.loads((out / "config.json").read_text())
    m, t = saved["model_config"], saved["train_config"]
    lightly = get_preset("lightly")
    assert m["norm_eps"] == 1e-6 and m["loss_form"] == "2-2cos" and m["hidden_bias"] is False
    assert t["lr"] == 0.3 and t["optimizer"] == "lars" and t["ema_when"] == "pre_forward"
    assert t["tau_base"] == lightly.tau_base  # the --tau default did not override the preset
    assert t["final_lr"] == pytest.approx(0.001 * 0.3 * 128 / 256)


def test_train_preset_errors(capsys):
    from byol_ref.cli import main

    assert main(["train", "--data", "synthetic", "--preset", "deepmind", "--set", "ema_scope=params+buffers",
                 "--no-eval", "--out", "/nonexistent/never"]) == 2
    assert "ema_scope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--preset", "nope"])


def test_a_preset_validates_its_training_fields_when_made():
    """Preset fields that belong to TrainConfig are checked at construction, not first at a run."""
    for field, value in (("warmup_denominator", "W+1"), ("tau_schedule", "linear"), ("lr", -1.0),
                         ("optimizer", "rmsprop"), ("lr_rounding", "float16")):
        with pytest.raises(ValueError, match=field):
            get_preset("deepmind", **{field: value})


def test_train_config_resolves_the_fractions_with_overridden_preset_fields():
    """lightly decays to 0.001 x its peak: passing lr to train_config moves the end with it, as
    get_preset(..., lr=...) does (final_lr given explicitly still wins)."""
    preset = get_preset("lightly")
    a = preset.train_config(epochs=10, batch_size=256, lr=2.0)
    b = get_preset("lightly", lr=2.0).train_config(epochs=10, batch_size=256)
    assert a == b and a.final_lr == pytest.approx(2.0 * preset.final_lr_ratio)
    assert preset.train_config(epochs=10, batch_size=256, lr=2.0, final_lr=0.5).final_lr == 0.5


def test_preset_from_dict_round_trips_and_reads_older_dicts_as_exact():
    """A preset saved before lr_rounding existed was computed with the exact schedule, and one
    saved before ema_form existed with the weighted EMA."""
    for name in preset_names():
        assert Preset.from_dict(get_preset(name).to_dict()) == get_preset(name)
    old = get_preset("deepmind").to_dict()
    del old["lr_rounding"], old["ema_form"]
    assert (Preset.from_dict(old).lr_rounding, Preset.from_dict(old).ema_form) == ("exact", "weighted")
    assert get_preset("deepmind").ema_form == "increment"  # (what the official code computes)
    with pytest.raises(ValueError, match="unknown preset field"):
        Preset.from_dict({**old, "bogus": 1})


# ------------------------------------------------------------------ found by a mutation audit (presets.py)


def test_config_extra_fields_override_the_preset():
    """Preset.config's extra keyword arguments win over the preset's own fields, as documented: a
    convention asked for explicitly must not be silently replaced by the preset's."""
    p = get_preset("deepmind")
    cfg = p.config(encoder_dim=4, norm_eps=1e-6, views="concat", loss_form="2-2cos")
    assert (cfg.norm_eps, cfg.views, cfg.loss_form) == (1e-6, "concat", "2-2cos")
    assert (p.norm_eps, p.views, p.loss_form) == (1e-12, "separate", "mse")  # the preset itself unchanged


def test_preset_name_and_final_lr_ratio_are_checked_by_the_preset():
    """An empty name (a preset no table or run directory could name) and a negative final_lr_ratio are
    refused when the preset is made, naming the preset's own field."""
    with pytest.raises(TypeError, match="Preset.name must be a non-empty str, got ''"):
        Preset(name="")
    with pytest.raises(ValueError, match="final_lr_ratio"):
        get_preset("lightly", final_lr_ratio=-0.5)


def test_a_preset_is_frozen_and_its_train_config_takes_the_run_length_of_train_config_by_default():
    """A preset is a value (get_preset hands out the one shipped object: a preset changed in place would
    change every later get_preset); train_config() without epochs or batch_size is TrainConfig's run,
    300 epochs of batches of 256 (found unpinned by scripts/mutation_sweep.py)."""
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("lightly").norm_eps = 1.0
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for name in PRESETS:
        tcfg = get_preset(name).train_config()
        assert (tcfg.epochs, tcfg.batch_size) == (defaults["epochs"], defaults["batch_size"]) == (300, 256)
