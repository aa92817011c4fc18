"""Diff (byol_ref.diff): a single perturbed element is found and the right first tensor named;
shape/dtype mismatches and one-sided names are reported; tolerances; CLI exit status and --json."""
import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from byol_ref.diff import diff_traces, divergence_hint, format_report
from byol_ref.presets import get_preset
from byol_ref.trace import Trace, make_inputs, save_trace, trace_inputs

_TRACE = {}


def _trace(name="deepmind"):
    if name not in _TRACE:
        inputs = make_inputs(get_preset(name), encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                             batch=4, steps=2, seed=0)
        _TRACE[name] = trace_inputs(inputs, name)
    return _TRACE[name]


def _perturbed(tr, name, index, delta):
    arrays = dict(tr.arrays)
    a = arrays[name].astype("float64", copy=True)
    a[index] += delta
    arrays[name] = a.astype(tr.arrays[name].dtype)
    return Trace(arrays, tr.meta)


def test_identical_traces_agree():
    rep = diff_traces(_trace(), _trace())
    assert rep.ok and rep.first_divergence is None and not rep.only_a and not rep.only_b
    assert all(d.status == "ok" and d.max_abs == 0 for d in rep.tensors)


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_single_perturbed_element_is_found(data):
    tr = _trace()
    floats = [k for k, v in tr.arrays.items() if v.dtype.kind == "f" and v.size and not k.startswith("init.")]
    name = data.draw(st.sampled_from(floats), label="name")
    shape = tr.arrays[name].shape
    index = tuple(data.draw(st.integers(0, s - 1)) for s in shape)
    # relative to the element: p.grad and friends reach 1e5 in this tiny model (||p|| is small), where
    # an absolute 1e-6 is below the rtol of 1e-9 and rightly not a divergence
    delta = data.draw(st.sampled_from([1e-6, -3e-4, 0.5])) * max(1.0, abs(float(tr.arrays[name][index])))
    rep = diff_traces(tr, _perturbed(tr, name, index, delta))
    assert not rep.ok
    assert rep.first_divergence == name
    bad = [d for d in rep.tensors if d.status != "ok"]
    assert [d.name for d in bad] == [name]
    assert bad[0].n_bad == 1 and tuple(bad[0].worst_index) == index
    assert bad[0].max_abs == pytest.approx(abs(delta), rel=1e-6)
    text = format_report(rep)
    step = name.split(".")[0]
    assert f"first divergence: step {int(step[4:])}, {name.split('.', 1)[1]}" in text


@pytest.mark.parametrize("preset", ["deepmind", "byol-pytorch", "lightly", "solo-learn", "edifice"])
def test_every_traced_name_gets_a_hint_and_the_report_shows_it(preset):
    """Whatever tensor diverges first, the report says where to look: every name of a trace of every
    preset (with a simplicial embedding, shards, the ablation's target dout and the buffer EMA on
    top) has a hint."""
    model = dict(sem_simplices=2, bn_shards=2, stop_gradient=False) if preset == "deepmind" else {}
    p = get_preset(preset, ema_scope="params+buffers") if preset == "deepmind" else get_preset(preset)
    inputs = make_inputs(p, encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3, batch=4, steps=1,
                         seed=0, model_extra=model)
    tr = trace_inputs(inputs, p, model_extra=model)
    names = [k for k in tr.arrays if not k.startswith("__")]
    assert [k for k in names if divergence_hint(k) is None] == []
    name = next(k for k in names if k.endswith(".normed"))
    text = format_report(diff_traces(tr, _perturbed(tr, name, (0, 0), 0.5)))
    assert f"first divergence: step 0, {name[6:]}\n  look at: l2 normalisation: norm_eps_mode, norm_eps" in text
    assert "look at" not in format_report(diff_traces(tr, tr))


def test_hints_name_the_options_of_the_operation_that_diverged():
    for name, says in (("init.online.param.encoder.fc1.weight", "mapping"), ("step1.lr", "lr_rounding"),
                       ("init.target.buffer.encoder.norm1.running_var", "with 'torch' the first update reads them"),
                       ("step0.tau", "tau_denominator"), ("step1.target.param.encoder.fc1.weight", "ema_form"),
                       ("step0.target.param.projector.fc2.weight", "ema_when"),
                       ("step0.online.view1.encoder.norm1.batch_var", "bn_var"),
                       ("step0.online.view12.shard1.encoder.norm1.batch_mean", "views"),
                       ("step0.online.view1.encoder.norm1.out", "bn_eps"),
                       ("step0.online.view1.projector.fc2.out", "head_bias"),
                       ("step0.target.view2.z.normed", "norm_eps_mode"), ("step0.loss.per_sample", "loss_form"),
                       ("step0.loss.total", "sym_reduce"), ("step0.online.grad.encoder.fc1.bias", "backward"),
                       ("step0.online.buffer.encoder.norm1.running_var", "bn_running"),
                       ("step0.opt.momentum.encoder.fc1.bias", "exclude"),
                       ("step0.online.param.encoder.fc1.weight", "learning rate"),
                       ("step0.input.view1", "views themselves"),
                       ("step0.online.view1.p.grad", "norm_eps_mode"), ("step0.online.view2.p.grad", "loss_form"),
                       ("step0.online.view1.p.normed.grad", "loss_form"),
                       ("step0.target.view2.z.normed.grad", "sym_reduce")):
        assert says in divergence_hint(name), name
    assert divergence_hint(None) is None and divergence_hint("step0.something.else") is None


def test_first_divergence_is_earliest_in_execution_order():
    tr = _trace()
    a = _perturbed(tr, "step1.loss.total", (), 1.0)
    b = _perturbed(a, "step0.online.view2.projector.norm1.out", (0, 1), 1e-3)
    rep = diff_traces(tr, b)
    assert rep.first_divergence == "step0.online.view2.projector.norm1.out"
    assert (rep.first_step, rep.first_tensor) == (0, "online.view2.projector.norm1.out")
    # a user's file without __order__/__meta__ on the A side: B's (byol-ref's) order is used
    user = {k: b.arrays[k] for k in reversed(list(b.arrays))}
    assert diff_traces(user, tr).first_divergence == "step0.online.view2.projector.norm1.out"


def test_tolerances():
    tr = _trace()
    name = "step0.online.view1.encoder.fc1.out"
    x = tr.arrays[name][0, 0]
    rel = _perturbed(tr, name, (0, 0), abs(x) * 1e-7)
    assert not diff_traces(tr, rel, rtol=1e-9).ok
    assert diff_traces(tr, rel, rtol=1e-6).ok
    assert diff_traces(tr, rel, rtol=0, atol=abs(x) * 2e-7).ok
    with pytest.raises(ValueError, match="rtol"):
        diff_traces(tr, tr, rtol=-1)


def test_shape_dtype_missing_and_nan():
    tr = _trace()
    arrays = dict(tr.arrays)
    arrays["step0.loss.per_sample"] = arrays["step0.loss.per_sample"][:1]
    fc1 = "init.online.param.encoder.fc1.weight"
    arrays[fc1] = arrays[fc1].astype("float32")
    count = "init.online.buffer.encoder.norm1.count"
    arrays[count] = arrays[count].astype("int32")  # Haiku's counter: the same count, another width
    del arrays["step1.tau"]
    arrays["extra.thing"] = np.zeros(3)
    rep = diff_traces(tr, arrays, rtol=1e-6)  # (float32 rounding of fc1 within tolerance: only its dtype differs)
    status = {d.name: d.status for d in rep.tensors}
    assert status["step0.loss.per_sample"] == "shape"
    assert status[fc1] == "dtype" and status[count] == "ok"
    assert rep.only_a == ["step1.tau"] and rep.only_b == ["extra.thing"]
    assert rep.first_divergence == fc1
    rep2 = diff_traces(tr, arrays, rtol=1e-6, ignore_dtype=True)
    assert rep2.first_divergence == "step0.loss.per_sample"
    arrays[fc1], arrays[count] = tr.arrays[fc1], arrays[count] + 1  # a count that differs still does
    assert diff_traces(tr, arrays, rtol=1e-6).first_divergence == count
    arrays[count] = tr.arrays[count].astype("float64")  # the same value as a float is another dtype
    assert {d.name: d.status for d in diff_traces(tr, arrays, rtol=1e-6).tensors}[count] == "dtype"
    common = {k: v for k, v in tr.arrays.items() if k != "step1.tau"}
    assert not diff_traces(tr, common).ok
    assert diff_traces(tr, common, only_common=True).ok
    nan = dict(tr.arrays)
    nan["step1.loss.total"] = np.asarray(np.nan)
    rep3 = diff_traces(tr, nan)
    assert rep3.first_divergence == "step1.loss.total" and rep3.tensors[-1].max_abs is not None
    assert diff_traces(nan, nan).ok  # NaN in the same place on both sides agrees


@pytest.mark.filterwarnings("error::RuntimeWarning")  # infinities compare without a warning
def test_tolerance_is_per_element_with_the_larger_magnitude_as_scale():
    """|a - b| <= atol + rtol * max(|a|, |b|), element by element, as documented."""
    def diff(a, b, **kw):
        return diff_traces({"t": np.asarray(a, dtype=float)}, {"t": np.asarray(b, dtype=float)}, **kw).tensors[0]

    # 1 vs 1.9: err 0.9 <= 0.5 * max = 0.95 agrees; with min(|a|, |b|) = 1 it would too, so also 1 vs 2.1:
    assert diff([1.0], [1.9], rtol=0.5, atol=0).values_ok
    assert diff([1.0], [2.1], rtol=0.5, atol=0).n_bad == 1  # 1.1 > 1.05
    assert diff([1.9], [1.0], rtol=0.5, atol=0).values_ok  # symmetric
    # a large element's tolerance is its own: a small element with the same error still fails
    d = diff([100.0, 1.0], [100.5, 1.5], rtol=1e-2, atol=0)
    assert d.n_bad == 1 and d.worst_index == [1]
    # opposite infinities differ; equal ones agree; NaN against a number is a mismatch
    assert diff([np.inf, -np.inf], [np.inf, -np.inf]).values_ok
    assert diff([np.inf], [-np.inf]).n_bad == 1
    assert diff([np.nan, 1.0], [np.nan, 1.0]).values_ok and diff([np.nan], [1.0]).n_bad == 1


def test_report_points_at_the_worst_violation_and_the_largest_relative_error():
    a = {"t": np.array([1000.0, 1.0, 2.0])}
    b = {"t": np.array([1000.5, 1.2, 2.0])}  # errors 0.5 (rel 5e-4) and 0.2 (rel 0.17)
    d = diff_traces(a, b, rtol=1e-3, atol=0).tensors[0]
    assert d.n_bad == 1 and d.worst_index == [1]  # 1000 vs 1000.5 is inside rtol; 1 vs 1.2 is not
    assert (d.a_value, d.b_value) == (1.0, 1.2)
    assert d.max_abs == pytest.approx(0.5) and d.max_rel == pytest.approx(0.2 / 1.2)


@pytest.mark.parametrize("bad", [float("nan"), -1e-9, "1e-9", float("inf"), True])
def test_tolerances_must_be_numbers_at_least_zero(bad):
    for name in ("rtol", "atol"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number >= 0"):
            diff_traces({"t": np.zeros(1)}, {"t": np.ones(1)}, **{name: bad})


def test_cli_exit_status_and_json(tmp_path, capsys):
    from byol_ref.cli import main

    tr = _trace()
    a = save_trace(tmp_path / "a.npz", tr)
    b = save_trace(tmp_path / "b.npz", _perturbed(tr, "step0.online.view1.projector.norm1.out", (1, 2), 1e-5))
    assert main(["diff", a, a]) == 0
    assert "result: agree" in capsys.readouterr().out
    assert main(["diff", a, b]) == 1
    out = capsys.readouterr().out
    assert "first divergence: step 0, online.view1.projector.norm1.out" in out
    assert main(["diff", a, b, "--atol", "1e-3"]) == 0
    capsys.readouterr()
    assert main(["diff", a, b, "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["first_divergence"] == "step0.online.view1.projector.norm1.out" and rep["ok"] is False
    assert rep["hint"].startswith("the norm layer: bn_eps")  # where to look, as the text report says
    assert main(["diff", a, str(tmp_path / "none.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    part = tmp_path / "part.npz"  # a recorded step: a few of the traced tensors
    np.savez(part, **{k: tr.arrays[k] for k in ("step0.loss.total", "step0.online.grad.encoder.fc1.weight")})
    assert main(["diff", str(part), a]) == 1 and main(["diff", str(part), a, "--subset"]) == 0
    assert main(["diff", a, str(part), "--subset"]) == 1  # the other way round, the trace's extra names fail
    capsys.readouterr()


def test_two_files_with_no_name_in_common_do_not_agree():
    """Nothing compared is not agreement, even with only_common (two unrelated files)."""
    rep = diff_traces({"a": np.zeros(2)}, {"b": np.zeros(2)}, only_common=True)
    assert not rep.ok
    text = format_report(rep)
    assert "no tensor name is in both files, so nothing was compared" in text and text.endswith("result: DIFFER")
    assert diff_traces({"a": np.zeros(2), "b": np.ones(1)}, {"b": np.ones(1)}, only_common=True).ok


def test_subset_lets_names_only_in_b_pass_but_not_names_only_in_a():
    """A recorded step holds fewer tensors than a byol-ref trace; every one it holds must be compared."""
    a, b = {"x": np.ones(2)}, {"x": np.ones(2), "y": np.zeros(1)}
    assert diff_traces(a, b, subset=True).ok and not diff_traces(a, b).ok
    misspelt = {"x": np.ones(2), "z": np.zeros(1)}
    rep = diff_traces(misspelt, b, subset=True)
    assert not rep.ok and rep.only_a == ["z"] and rep.first_divergence is None
    assert diff_traces(misspelt, b, only_common=True).ok  # only_common would have skipped it
    assert not diff_traces({"x": np.zeros(2)}, b, subset=True).ok  # values still count


def test_all_lists_every_tensor_with_the_differing_ones_first():
    a = {f"t{i:02d}": np.zeros(1) for i in range(50)}
    b = {**a, "t45": np.ones(1)}
    rep = diff_traces(a, b)
    short = format_report(rep)
    assert "t45" in short and "t00" not in short  # only what differs
    full = format_report(rep, show_all=True, max_rows=None)
    rows = [line.split()[0] for line in full.splitlines()[2:52]]
    assert rows[0] == "t45" and sorted(rows) == sorted(a) and " more (" not in full
    cut = format_report(rep, show_all=True)  # 40 rows by default: the rest is counted, and --all named
    assert "  ... and 10 more (--all lists them all, --json too)" in cut.splitlines()


def test_flags_and_row_limits_are_checked():
    """1 or "no" for a flag would read as yes; max_rows=0 crashed on an empty table."""
    rep = diff_traces({"a": np.ones(2)}, {"a": np.zeros(2)})
    for bad in (-1, 0, "a", True):
        with pytest.raises(ValueError, match=rf"max_rows must be an int >= 1 or None \(no limit\), got {bad!r}"):
            format_report(rep, max_rows=bad)
    assert "... and" not in format_report(rep, max_rows=1)
    for flag in ("only_common", "subset", "ignore_dtype"):
        with pytest.raises(TypeError, match=f"{flag} must be True or False, got 1"):
            diff_traces({"a": np.ones(2)}, {"a": np.ones(2)}, **{flag: 1})
    with pytest.raises(TypeError, match="show_all must be True or False, got 'no'"):
        format_report(rep, show_all="no")
    for bad in ({"a": np.ones(2)}, rep.to_dict(), "report"):
        with pytest.raises(TypeError, match=rf"rep must be a DiffReport \(from diff_traces\), "
                                            rf"got {type(bad).__name__}"):
            format_report(bad)


def test_ignore_dtype_reports_dtype_only_tensors_as_agreeing_and_a_dtype_only_divergence_says_so():
    a = {"w": np.array([0, 0.25, 0.5, 1]), "loss": np.asarray(2.5), "y": np.ones(3)}
    b = {k: v.astype(np.float32) for k, v in a.items()}  # the same values (exact in float32), another dtype
    rep = diff_traces(a, b)
    assert not rep.ok and rep.first_divergence == "w" and "--ignore-dtype compares the values alone" in rep.hint()
    text = format_report(rep)
    assert "look at: the dtypes only (float64 vs float32), the values agree within tolerance" in text
    assert "3 common tensor(s), 3 differ; " in text and rep.to_dict()["hint"] == rep.hint()
    rep = diff_traces(a, b, ignore_dtype=True)
    text = format_report(rep)
    assert rep.ok and "3 common tensor(s), 0 differ (and 3 in dtype only, which --ignore-dtype lets agree)" in text
    assert "status" not in text  # no table: nothing differs
    b["loss"] = np.asarray(3.5, dtype=np.float32)  # one real mismatch: the only row, with both dtypes
    text = format_report(diff_traces(a, b, ignore_dtype=True))
    rows = [line for line in text.splitlines() if line.startswith("  ") and "look at" not in line][1:]
    assert len(rows) == 1 and rows[0].split()[:2] == ["loss", "mismatch"] and "; float64 vs float32)" in rows[0]
    assert "1 differ (and 2 in dtype only" in text


def test_names_only_in_b_under_subset_are_counted_not_listed():
    a = {"x": np.ones(2)}
    b = {"x": np.ones(2), **{f"y{i}": np.zeros(1) for i in range(20)}}
    text = format_report(diff_traces(a, b, subset=True))
    assert "only in B: 20 name(s), not compared (--subset; --all lists them)" in text and "y3" not in text
    assert "only in B: y0, y1" in format_report(diff_traces(a, b))  # without --subset they are the failure
    assert "y3" in format_report(diff_traces(a, b, subset=True), show_all=True)
    text = format_report(diff_traces({**a, "z0": np.ones(1)}, b, only_common=True))  # both sides pass
    assert "only in A: 1 name(s), not compared (--only-common" in text and "only in B: 20 name(s)" in text


def test_subset_lists_names_only_in_a_and_all_lists_the_passing_names():
    a = {"x": np.ones(2), "z": np.zeros(1)}
    b = {"x": np.ones(2), **{f"y{i}": np.zeros(1) for i in range(20)}}
    text = format_report(diff_traces(a, b, subset=True))
    assert "only in A: z" in text  # under --subset they are the failure, so named
    full = format_report(diff_traces(a, b, subset=True), show_all=True, max_rows=1)
    assert "only in B: y0, y1" in full and "not compared" not in full


def test_all_under_ignore_dtype_lists_the_dtype_only_rows():
    a = {"w": np.array([0, 0.25]), "y": np.ones(3)}
    b = {k: v.astype(np.float32) for k, v in a.items()}
    text = format_report(diff_traces(a, b, ignore_dtype=True), show_all=True)
    rows = [line.split()[:2] for line in text.splitlines()]
    assert ["w", "dtype"] in rows and ["y", "dtype"] in rows


def test_the_running_statistics_and_p_grad_hints_say_what_decides():
    hint = divergence_hint("init.online.buffer.encoder.norm1.running_mean")
    assert "With bn_running='haiku' nothing reads them at count 0" in hint
    assert "with 'torch' the first update reads them" in hint
    assert "if p.normed.grad agrees" in divergence_hint("step0.online.view1.p.grad")


# ---------------------------------------------------------------------------------------
# diff_traces and format_report on values worked by hand (a mutation audit found these unpinned).
# ---------------------------------------------------------------------------------------


META = {"format": "byol-ref-trace"}  # a non-empty meta: a byol-ref trace


def _one(a, b, **kw):
    return diff_traces({"t": np.asarray(a, dtype=float)}, {"t": np.asarray(b, dtype=float)}, **kw).tensors[0]


def test_two_plain_dicts_are_compared_in_a_s_order():
    """Neither side is a byol-ref trace: A's order decides, not B's."""
    a = {"x": np.zeros(1), "y": np.zeros(1)}
    b = {"y": np.ones(1), "x": np.ones(1)}
    assert diff_traces(a, b).first_divergence == "x"
    assert diff_traces(b, a).first_divergence == "y"


def test_a_user_file_against_a_trace_takes_the_trace_s_execution_order_not_the_names_order():
    """B's execution order puts a layer output before the loss and step 2 before step 10, which
    sorting the names would turn round ("loss" < "online", "step10" < "step2")."""
    names = ["step2.online.view1.encoder.fc1.out", "step2.loss.total", "step10.online.view1.encoder.fc1.out"]
    ref = Trace({k: np.zeros(2) for k in names}, dict(META))
    mine = {k: np.ones(2) for k in reversed(names)}  # a user's file, its own order, every tensor diverging
    rep = diff_traces(mine, ref)
    assert rep.first_divergence == "step2.online.view1.encoder.fc1.out"
    assert [d.name for d in rep.tensors] == names
    mine["step2.online.view1.encoder.fc1.out"] = np.zeros(2)  # the next one in B's order
    assert diff_traces(mine, ref).first_divergence == "step2.loss.total"
    mine["step2.loss.total"] = np.zeros(2)
    assert diff_traces(mine, ref).first_divergence == "step10.online.view1.encoder.fc1.out"


def test_a_first_divergence_in_the_initial_state_is_reported_at_init():
    a = {"init.online.param.encoder.fc1.weight": np.zeros((2, 3)), "step0.loss.total": np.asarray(1.0)}
    b = {**a, "init.online.param.encoder.fc1.weight": np.ones((2, 3))}
    rep = diff_traces(a, b)
    assert (rep.first_step, rep.first_tensor) == ("init", "online.param.encoder.fc1.weight")
    assert "first divergence: init, online.param.encoder.fc1.weight\n" in format_report(rep)
    rep = diff_traces({"step3.lr": np.asarray(1.0)}, {"step3.lr": np.asarray(2.0)})
    assert (rep.first_step, rep.first_tensor) == (3, "lr")


def test_nan_against_zero_is_infinitely_wrong_in_both_errors():
    """|NaN - 0| counts as inf; max(|a|, |b|) is 0 there, and an error over a 0 scale is inf, not 0."""
    d = _one([np.nan, 1.0], [0.0, 1.0])
    assert d.n_bad == 1 and d.worst_index == [0] and not d.values_ok
    assert d.max_abs == np.inf and d.max_rel == np.inf


def test_relative_error_is_over_the_larger_magnitude_whichever_side_holds_it():
    assert _one([2.0], [1.0], rtol=1.0).max_rel == 0.5  # 1 / max(2, 1)
    assert _one([1.0], [2.0], rtol=1.0).max_rel == 0.5
    assert _one([-4.0, 0.0], [-3.0, 0.0], rtol=1.0).max_rel == 0.25  # 0 vs 0: no error, no NaN


def test_when_every_element_agrees_the_worst_index_is_that_of_the_largest_error():
    e = 2.0 ** -41  # under atol 1e-12: within tolerance
    d = _one([1.0, 2.0, 3.0], [1.0, 2.0 + 2 * e, 3.0 - e])
    assert d.values_ok and d.n_bad == 0
    assert d.worst_index == [1] and (d.a_value, d.b_value) == (2.0, 2.0 + 2 * e) and d.max_abs == 2 * e


def test_complex_tensors_are_refused_not_compared_on_their_real_parts():
    for a, b in (({"t": np.array([1 + 1j])}, {"t": np.array([1 + 2j])}), ({"t": np.ones(1)}, {"t": np.ones(1) + 0j})):
        with pytest.raises(TypeError, match="traces hold numbers only"):
            diff_traces(a, b)


def test_a_tensor_of_another_kind_is_refused_naming_the_file_that_holds_it(tmp_path, capsys):
    """`byol-ref diff a.npz b.npz` where b.npz holds a tensor of dates (or complex numbers, or strings)
    under a name a.npz holds numbers under: the error said "'t' in B has dtype datetime64[s]", and no
    report, which defines A and B, is printed with it. It names the file."""
    from byol_ref.cli import main

    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    np.savez(a, t=np.ones(2))
    dates = np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[s]")
    for other in (dates, np.ones(2) + 1j, np.array(["x", "y"])):
        np.savez(b, t=other)
        assert main(["diff", a, b]) == 2
        assert capsys.readouterr().err == (f"byol-ref diff: error: 't' in {b} has dtype {other.dtype}; traces hold "
                                           "numbers only\n")


def test_a_float32_nan_against_a_subnormal_float64_is_reported(tmp_path, capsys):
    """`byol-ref diff` of a float64 trace holding 5e-324 (a subnormal) where a float32 trace holds NaN: the
    hint's check for float32 rounding divided by eps times the tensor's largest value, which underflows
    to 0, and the command failed on ZeroDivisionError, a traceback. The report says they differ."""
    from byol_ref.cli import main

    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    np.savez(a, t=np.array([5e-324]))
    np.savez(b, t=np.array([np.nan], dtype=np.float32))
    assert main(["diff", a, b]) == 1
    out = capsys.readouterr().out
    assert "t  mismatch" in out and out.endswith("first divergence: no step, t\nresult: DIFFER\n")


def test_an_error_exactly_at_the_tolerance_agrees():
    """|a - b| <= atol + rtol * max(|a|, |b|): the bound itself agrees, and with rtol = atol = 0 only equality."""
    assert _one([1.0], [1.5], rtol=0, atol=0.5).values_ok  # err 0.5 == atol (all exact in binary)
    assert _one([2.0], [3.0], rtol=0.25, atol=0.25).values_ok  # err 1 == 0.25 + 0.25 * 3
    assert _one([1.0, -2.0], [1.0, -2.0], rtol=0, atol=0).values_ok  # bit-equal is the strictest agreement
    assert _one([1.0], [1.5], rtol=0, atol=0.25).n_bad == 1


def test_shapes_that_broadcast_or_hold_as_many_values_are_a_shape_divergence():
    """Haiku keeps a norm's scale (1, F): against a (F,) one with the same values it is still a shape
    mismatch, not values compared by broadcasting."""
    for a, b in ((np.ones(3), np.ones((1, 3))), (np.ones((3, 1)), np.ones(3)), (np.ones(()), np.ones(1))):
        rep = diff_traces({"t": a}, {"t": b})
        assert rep.tensors[0].status == "shape" and rep.first_divergence == "t" and not rep.ok


def test_when_both_sides_are_byol_ref_traces_a_s_execution_order_is_used():
    """Only when A has no recorded order does B's decide: two traces (a pre_forward EMA against a
    post_step one, say) are read in A's order."""
    a = Trace({"step0.target.param.w": np.zeros(1), "step0.loss.total": np.zeros(())}, dict(META))
    b = Trace({"step0.loss.total": np.ones(()), "step0.target.param.w": np.ones(1)}, dict(META))
    assert diff_traces(a, b).first_divergence == "step0.target.param.w"
    assert diff_traces(b, a).first_divergence == "step0.loss.total"


def test_the_worst_index_is_the_largest_excess_over_the_tolerance_not_the_largest_error():
    """100 vs 101.5 is off by 1.5 against a tolerance of 1.015; 1 vs 2 by 1 against 0.02: the second
    is the worse violation (by excess and by ratio), though its error is smaller."""
    d = _one([100.0, 1.0], [101.5, 2.0], rtol=1e-2, atol=0)
    assert d.n_bad == 2 and d.worst_index == [1] and (d.a_value, d.b_value) == (1.0, 2.0)
    assert d.max_abs == 1.5


def _float32_trace(name="deepmind", preset=None):
    """The _trace() inputs traced in float32 (each cast to it; preset: another convention)."""
    inputs = make_inputs(get_preset(name), encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                         batch=4, steps=2, seed=0)
    return trace_inputs(inputs, preset or get_preset(name), dtype="float32")


def test_a_float32_trace_against_a_float64_one_is_called_rounding_not_a_wrong_init():
    """A float32 trace diffed against byol-ref's float64 one at float64's tolerances: every value differs
    by float32 rounding, and the first divergence (the starting weights, rounded) used to send the reader
    to the mapping and the init. The hint now says float32 rounding and where the docs say how to
    compare float32, before the operation's own hint; with --ignore-dtype and float32's tolerances, the
    first divergence (a gradient that cancels) is rounding too."""
    ref, f32 = _trace(), _float32_trace()
    rep = diff_traces(ref, f32)
    assert not rep.ok and rep.first_divergence.startswith("init.")
    hint = rep.hint()
    assert hint.startswith("float32 rounding, by the look of it:") and "docs/verifying.md section 5" in hint
    assert hint.endswith("if it is more than rounding: " + divergence_hint(rep.first_divergence))
    loose = diff_traces(ref, f32, ignore_dtype=True, rtol=1e-5, atol=1e-6)
    assert not loose.ok and loose.hint().startswith("float32 rounding")
    assert format_report(loose).count("float32 rounding, by the look of it") == 1


def test_a_float32_trace_with_another_convention_is_not_called_rounding():
    """The rounding note is no excuse: a float32 trace with joint batch statistics (views=concat) against
    the float64 per-view one diverges at the first batch norm by far more than rounding, and gets that
    layer's hint alone; two float64 traces never get the note, however small their difference."""
    ref = _trace()
    other = _float32_trace(preset=get_preset("deepmind").replace(views="concat"))
    rep = diff_traces(ref, other, ignore_dtype=True, rtol=1e-5, atol=1e-6)
    assert rep.first_divergence == "step0.online.view1.encoder.norm1.out"
    assert rep.hint() == divergence_hint(rep.first_divergence)
    tiny = diff_traces(ref, _perturbed(ref, "step0.online.view1.encoder.norm1.out", (0, 0), 1e-8))
    assert tiny.first_divergence == "step0.online.view1.encoder.norm1.out"
    assert tiny.hint() == divergence_hint(tiny.first_divergence)


def test_a_bias_update_hint_names_the_rounding_noise_adam_scales_up():
    """A first divergence at a bias's update is, more often than not, the rounding noise of a bias in
    front of batch norm (true gradient 0) that Adam scales up: the byol-pytorch cross-check with
    --lr 0.01 --steps 4 --dims 2,6,7,2 --batch 8 --seed 74 and its simplicial embedding differed there
    by 1.1e-8 and nowhere else, and the hint spoke only of learning rates."""
    for name in ("step2.online.param.predictor.fc1.bias", "step0.online.param.projector.sem_fc.bias",
                 "step1.online.param.encoder.fc2.bias"):
        hint = divergence_hint(name)
        assert hint.startswith("a bias's update: if a batch norm follows its layer") and "Adam" in hint, name
        assert hint.endswith(divergence_hint("step0.online.param.encoder.fc1.weight")), name
    assert not divergence_hint("step0.online.param.encoder.fc1.weight").startswith("a bias")
    assert not divergence_hint("init.online.param.encoder.fc1.bias").startswith("a bias")


def test_traces_of_different_batch_sizes_are_called_that_not_a_schedule_difference():
    """Two traces drawn with --batch 4 and --batch 8 differ first at the learning rate (it scales with
    the batch), and the hint used to send the reader to the lr schedule's options alone. When an input
    view differs in shape the hint now says first that the traces are not of the same work, and how to
    make them so; a difference in the views' values alone gets the inputs' own hint."""
    small = _trace()
    inputs = make_inputs(get_preset("deepmind"), encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                         batch=8, steps=2, seed=0)
    rep = diff_traces(small, trace_inputs(inputs, "deepmind"))
    assert rep.first_divergence == "step0.lr"
    hint = rep.hint()
    assert hint.startswith("the input views differ in shape (step0.input.view1: 4x5 in A, 8x5 in B)"), hint
    assert "--inputs" in hint and hint.endswith(divergence_hint("step0.lr"))
    assert format_report(rep).count("the input views differ in shape") == 1
    assert json.loads(json.dumps(rep.to_dict()))["hint"] == hint
    moved = diff_traces(small, _perturbed(small, "step0.input.view1", (0, 0), 1e-3))
    assert moved.first_divergence == "step0.input.view1"
    assert moved.hint() == divergence_hint("step0.input.view1")


def test_an_integer_tensor_that_differs_gets_its_own_hint_and_no_rounding_note():
    """Integers (an optimiser's count, int64 in one trace, int32 in the other) that differ are no float's
    rounding: the hint is the tensor's own, and the rounding note, which looks for a float dtype, has
    none to look at (it failed on max() of no dtypes without its guard)."""
    rep = diff_traces({"step1.opt.count": np.array(1, np.int64)}, {"step1.opt.count": np.array(2, np.int32)})
    assert not rep.ok and rep.first_divergence == "step1.opt.count"
    assert rep.hint() == divergence_hint("step1.opt.count") and "rounding" not in rep.hint()


def test_traces_that_are_no_trace_or_name_dict_are_refused_naming_the_side():
    """A path where a trace belongs (diff_files reads files), or a dict keyed by other than names: the
    side is named with what it got. A non-string key failed on "'int' object has no attribute
    'startswith'"."""
    tr = {"step0.loss.total": np.array(1.0)}
    with pytest.raises(TypeError, match=r"^a must be a Trace or a dict name -> array, got str$"):
        diff_traces("a.npz", tr)
    with pytest.raises(TypeError, match=r"^b must be a Trace or a dict name -> array, got NoneType$"):
        diff_traces(tr, None)
    for key in (0, None, ("step0", "loss")):
        with pytest.raises(TypeError, match=rf"^b must be a Trace or a dict name -> array, got a dict with the key "
                                            rf"{re.escape(repr(key))} \({type(key).__name__}\); names are strings$"):
            diff_traces(tr, {**tr, key: np.array(1.0)})


def test_the_default_tolerances_are_the_documented_rtol_1e_9_and_atol_1e_12():
    """An error of 1.5 times either default fails, where a default twice as loose would let it pass."""
    assert not _one([1.0], [1.0 + 1.5e-9]).values_ok and _one([1.0], [1.0 + 0.5e-9]).values_ok
    assert not _one([0.0], [1.5e-12]).values_ok and _one([0.0], [0.5e-12]).values_ok
    assert "(rtol 1e-09, atol 1e-12)" in format_report(diff_traces({"t": np.ones(1)}, {"t": np.ones(1)}))


def test_a_nan_or_an_infinity_agrees_only_exactly_whatever_the_tolerances():
    """inf became 1.8e308 in the tolerance's scale, so under an rtol over 1 the tolerance overflowed to
    inf and inf against 1 agreed; and 1e308 against -1e308 warned of an overflow."""
    with np.errstate(all="raise"):
        d = _one([np.inf, np.nan, -np.inf, 1e308, np.inf], [1.0, 1.0, -np.inf, -1e308, np.inf], rtol=5.0)
    assert d.n_bad == 2 and d.worst_index == [0] and d.max_abs == np.inf
    assert not _one([np.inf], [-np.inf], rtol=1e300, atol=1e300).values_ok


def test_relative_errors_below_a_scale_of_1_are_over_that_scale():
    """max(|a|, |b|) under 1 divides the error as any other does; a 0 scale is no error or an infinite one."""
    assert _one([0.5], [0.25], rtol=1.0).max_rel == 0.5
    assert _one([1e-300], [0.0], rtol=1.0).max_rel == 1.0
    assert _one([0.0, 0.0], [0.0, 0.0]).max_rel == 0.0


def test_empty_tensors_agree_with_errors_of_0():
    d = _one(np.zeros((0, 3)), np.zeros((0, 3)))
    assert d.status == "ok" and d.values_ok and (d.max_abs, d.max_rel, d.scale, d.n_bad) == (0.0, 0.0, 0.0, 0)
    assert d.worst_index is None


def test_rows_that_are_not_compared_count_no_bad_elements_in_the_json():
    a = {"x": np.ones(2), "y": np.ones(3), "z": np.zeros(1)}
    b = {"x": np.ones(2), "y": np.ones(4), "w": np.zeros(1)}
    rows = {t["name"]: t for t in diff_traces(a, b).to_dict()["tensors"]}
    assert {k: (t["status"], t["n_bad"], t["values_ok"], t["max_abs"]) for k, t in rows.items()} == {
        "x": ("ok", 0, True, 0.0), "y": ("shape", 0, None, None), "z": ("only_a", 0, None, None),
        "w": ("only_b", 0, None, None)}


@pytest.mark.parametrize("units, note", [(1000, True), (1001, False)])
def test_a_float32_difference_is_called_rounding_up_to_1000_units_of_its_eps(units, note):
    """ROUNDING_UNITS, at its edge: eps(float32) = 2**-23 and a largest value of 1 make a unit 2**-23 exactly."""
    a = {"step0.loss.total": np.array([1.0, 0.5], np.float32)}
    b = {"step0.loss.total": np.array([1.0 - units * 2.0 ** -23, 0.5])}  # (the error exactly that many units)
    assert diff_traces(a, b).hint().startswith("float32 rounding, by the look of it") is note


def test_two_float64_traces_are_never_called_rounding_even_an_ulp_apart_at_tolerance_0():
    a = {"step0.loss.total": np.array([1.0])}
    rep = diff_traces(a, {"step0.loss.total": np.nextafter(a["step0.loss.total"], 2)}, rtol=0, atol=0)
    assert not rep.ok and rep.hint() == divergence_hint("step0.loss.total")


@pytest.mark.parametrize("n", [8, 9])
def test_up_to_8_one_sided_names_are_listed_then_the_count(n):
    a = {"x": np.ones(1), **{f"a{i}": np.ones(1) for i in range(n)}}
    line = next(s for s in format_report(diff_traces(a, {"x": np.ones(1)})).splitlines() if s.startswith("only in A"))
    listed = ", ".join(f"a{i}" for i in range(8))
    assert line == f"only in A: {listed}" + (", ... (9 in all)" if n == 9 else "")
