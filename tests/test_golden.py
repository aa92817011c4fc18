"""Golden vectors (tests/golden/<preset>.npz): byol-ref's trace of four float64 steps agrees with an
independent PyTorch autodiff implementation (scripts/make_golden.py) for every preset. The goldens are
committed, so this runs without torch; test_regenerate_goldens reruns the generator when torch is
installed (skipped otherwise)."""
import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from byol_ref.diff import diff_traces, format_report
from byol_ref.presets import get_preset, preset_names
from byol_ref.trace import load_trace, trace_inputs
from repo_modules import repo_module

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = GOLDEN.parents[1]
# float64 throughout. atol covers parameters whose true gradient is exactly 0 (a bias followed by batch
# norm, BYOL_FACTS d "consequences"): each implementation's rounding noise (~1e-17) there differs, and Adam
# (byol-pytorch) divides it by sqrt(v) + eps, turning it into ~1e-12 differences in those params.
RTOL, ATOL = 1e-9, 1e-10


# Variants: a preset with some fields changed plus model fields no preset has (the meta says which).
VARIANTS = ["deepmind-gn-ws"]  # group norm + weight standardisation: BYOL without batch statistics


def _check(golden_path):
    g = load_trace(golden_path)
    m = g.meta
    preset = get_preset(m["preset"], **m.get("preset_overrides", {}))
    tr = trace_inputs(g.arrays, preset, steps=m["steps"], total_steps=m["total_steps"],
                      warmup_steps=m["warmup_steps"], start_step=m["start_step"], dtype=m["dtype"],
                      model_extra=m.get("model_extra"))
    rep = diff_traces(tr, g, rtol=RTOL, atol=ATOL)
    return g, tr, rep


def _schedule_mismatch(tr, g):
    """The first stepI.lr or stepI.tau that differs beyond rtol 1e-12 with no atol (ATOL is larger than a
    learning rate's float32 rounding, 1e-10 at lr 3e-3), or None."""
    import numpy as np

    for i in range(g.meta["steps"]):
        for key in (f"step{i}.lr", f"step{i}.tau"):
            if not np.allclose(tr.arrays[key], g.arrays[key], rtol=1e-12, atol=0):
                return key
    return None


@pytest.mark.parametrize("name", preset_names())
def test_golden(name):
    g, tr, rep = _check(GOLDEN / f"{name}.npz")
    assert g.meta["format"] == "byol-ref-trace" and g.meta["preset"] == name
    assert len(g.arrays) > 300
    assert not rep.only_b, f"golden tensors byol-ref does not produce: {rep.only_b[:5]}"
    assert rep.ok, format_report(rep)
    assert _schedule_mismatch(tr, g) is None


@pytest.mark.parametrize("name", VARIANTS)
def test_golden_variant(name):
    g, tr, rep = _check(GOLDEN / f"{name}.npz")
    m = g.meta
    assert m["variant"] == name and m["preset"] in preset_names() and m["model_extra"]
    assert not rep.only_b, f"golden tensors byol-ref does not produce: {rep.only_b[:5]}"
    assert rep.ok, format_report(rep)
    preset = get_preset(m["preset"], **m["preset_overrides"])
    for key, value in m["conventions"].items():
        assert getattr(preset, key) == value, (name, key)
    # and each model field matters: changing one makes byol-ref's trace differ from the golden
    for change in (dict(weight_std=False), dict(norm_groups=1)):
        other = trace_inputs(g.arrays, preset, steps=m["steps"], total_steps=m["total_steps"],
                             warmup_steps=m["warmup_steps"], start_step=m["start_step"], dtype=m["dtype"],
                             model_extra={**m["model_extra"], **change})
        assert not diff_traces(other, g, rtol=RTOL, atol=ATOL).ok, change


@pytest.mark.parametrize("name", preset_names())
def test_golden_conventions_match_presets(name):
    """The generator's own reading of each implementation equals byol-ref's preset, field by field."""
    conventions = load_trace(GOLDEN / f"{name}.npz").meta["conventions"]
    preset = get_preset(name)
    for key, value in conventions.items():
        assert getattr(preset, key) == value, (name, key)


@pytest.mark.parametrize("name, change, first", [
    ("lightly", dict(cosine_denominator="K-W"), "step3.lr"),  # steps 2 and 3 are past the warm-up (W = 2)
    ("lightly", dict(final_lr_ratio=0.0), "step3.lr"),
    ("deepmind", dict(lr_rounding="exact"), "step3.lr*"),     # the cosine is no float32 number there
    ("deepmind", dict(cosine_denominator="K-W-1"), "step3.lr"),
    ("lightly", dict(loss_form="neg_cos", sym_reduce="mean"), "step0.loss.per_sample"),  # the examples' loss
])
def test_golden_detects_a_wrong_schedule_or_loss(name, change, first):
    """The goldens of two steps, both in the warm-up, could not tell these apart (nor lightly's loss from its
    examples' mean of -cos, which the preset and the generator both had)."""
    g = load_trace(GOLDEN / f"{name}.npz")
    m = g.meta
    tr = trace_inputs(g.arrays, get_preset(name, **change), steps=m["steps"], total_steps=m["total_steps"],
                      warmup_steps=m["warmup_steps"])
    if first.endswith("*"):  # a float32 rounding of the lr, below ATOL: the schedule check sees it
        assert _schedule_mismatch(tr, g) == first[:-1]
    else:
        assert diff_traces(tr, g, rtol=RTOL, atol=ATOL).first_divergence == first


def test_golden_detects_a_wrong_convention():
    g = load_trace(GOLDEN / "lightly.npz")
    m = g.meta
    wrong = get_preset("lightly", tau_denominator="K")
    tr = trace_inputs(g.arrays, wrong, steps=m["steps"], total_steps=m["total_steps"], warmup_steps=m["warmup_steps"])
    rep = diff_traces(tr, g, rtol=RTOL, atol=ATOL)
    assert rep.first_divergence == "step1.tau"


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (optional cross-check)")
def test_regenerate_goldens(tmp_path):
    """The generator, rerun, makes the committed goldens (to their own tolerance, RTOL and ATOL, the one
    byol-ref is held to), and byol-ref agrees with what it makes.

    Not to 1e-12: torch's float64 kernels round differently on another machine. Measured (2026-12-02) on an
    Intel VM, with the very torch that made the goldens elsewhere (2.13.0+cpu, as their meta says) and with
    2.14.1 alike: byol-pytorch's params up to 1.2e-10 apart (Adam turns the rounding noise in the gradient
    of a bias before batch norm into steps, as RTOL's note says), two of deepmind's tensors 3e-12 apart
    (relative), the other four goldens to 1e-12. A 1e-12 check failed there for no fault of the code;
    the goldens' tolerance still catches the deepmind generator's lr changed by 1e-6 (at step1.lr)."""
    script = ROOT / "scripts" / "make_golden.py"
    res = subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    for name in preset_names() + VARIANTS:
        new, old = load_trace(tmp_path / f"{name}.npz"), load_trace(GOLDEN / f"{name}.npz")
        assert diff_traces(new, old, rtol=RTOL, atol=ATOL).ok, name
        _, _, rep = _check(tmp_path / f"{name}.npz")
        assert rep.ok, format_report(rep)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed (optional example)")
def test_example_verify_pytorch(tmp_path):
    script = ROOT / "examples" / "verify_pytorch.py"
    ok = subprocess.run([sys.executable, str(script), "--workdir", str(tmp_path)], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0 and "result: agree" in ok.stdout, ok.stdout + ok.stderr
    bug = subprocess.run([sys.executable, str(script), "--bug", "--workdir", str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert bug.returncode == 1 and "first divergence: step 0, loss.total" in bug.stdout



@pytest.mark.parametrize("package, script, says, extra", [
    ("byol_pytorch", "crosscheck_byol_pytorch.py", "byol-pytorch agrees with byol-ref", []),
    ("lightly", "crosscheck_lightly.py", "lightly agrees with byol-ref", []),
    ("lightly", "crosscheck_lightly.py", "lightly agrees with byol-ref", ["--weight-decay", "0"]),  # no LARS then
    ("torch", "crosscheck_ddp.py", "DDP and gradient accumulation agree with byol-ref's bn_shards", []),
    # at settings other than the defaults (a verifier's own): seed, batch, widths, schedule lengths, tau
    ("byol_pytorch", "crosscheck_byol_pytorch.py", "byol-pytorch agrees with byol-ref",
     ["--seed", "2", "--batch", "5", "--dims", "3,10,7,4", "--lr", "0.01", "--tau-base", "0.5", "--atol", "1e-7"]),
    ("byol_pytorch", "crosscheck_byol_pytorch.py", "byol-pytorch agrees with byol-ref",  # Adam's bias noise grows
     ["--lr", "0.1", "--steps", "4", "--atol", "1e-7"]),
    ("lightly", "crosscheck_lightly.py", "lightly agrees with byol-ref",
     ["--seed", "3", "--batch", "5", "--dims", "5,9,7,4", "--steps", "4", "--total-steps", "9", "--warmup", "3",
      "--tau-base", "0.9", "--eta", "0.02"]),
    ("lightly", "crosscheck_lightly.py", "lightly agrees with byol-ref",  # both schedules from a later step
     ["--start-step", "3", "--steps", "3", "--total-steps", "8", "--warmup", "2"]),
    ("torch", "crosscheck_ddp.py", "DDP and gradient accumulation agree with byol-ref's bn_shards",
     ["--shards", "3", "--rows", "2", "--views", "concat", "--seed", "1", "--dims", "3,5,2,4,6", "--tau-base", "0.5"]),
    ("torch", "crosscheck_ddp.py", "DDP and gradient accumulation agree with byol-ref's bn_shards",  # a batch of 1
     ["--shards", "3", "--rows", "1", "--views", "concat"]),  # per GPU: 2 rows for each replica's batch norm
])
def test_crosscheck_against_the_installed_package(package, script, says, extra, tmp_path):
    """Another implementation's own code, step for step (runs only where that package is installed)."""
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} is not installed (optional cross-check against its own code)")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--workdir", str(tmp_path), *extra],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and says in res.stdout, res.stdout + res.stderr


def test_a_lightly_crosscheck_rerun_in_its_workdir_traces_byol_ref_again(tmp_path):
    """The second run (here with another weight decay) was refused its byol-ref trace, the file being
    there, went on unaware, and compared lightly's new step with byol-ref's old one: DIFFER, where both
    agree. byol-pytorch's check and verify_pytorch.py wrote their traces the same way."""
    if importlib.util.find_spec("lightly") is None:
        pytest.skip("lightly is not installed (optional cross-check against its own code)")
    for extra in ([], ["--weight-decay", "0"]):
        res = subprocess.run([sys.executable, str(ROOT / "examples" / "crosscheck_lightly.py"), "--workdir",
                              str(tmp_path), *extra], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and "lightly agrees with byol-ref" in res.stdout, res.stdout + res.stderr


def test_crosscheck_against_solo_learn_source(tmp_path):
    """solo-learn's BYOL files, step for step (runs where torch is installed and SOLO_LEARN_SRC names a checkout of
    vturrisi/solo-learn), twice in one --workdir: a rerun replaces the files of the first."""
    if importlib.util.find_spec("torch") is None or not os.environ.get("SOLO_LEARN_SRC"):
        pytest.skip("solo-learn's source is not here (torch and SOLO_LEARN_SRC are needed)")
    for _ in range(2):
        res = subprocess.run([sys.executable, str(ROOT / "examples" / "crosscheck_solo_learn.py"), "--workdir",
                              str(tmp_path)], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0 and "solo-learn agrees with byol-ref" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("extra", [
    ["--warmup", "0"],  # base.py then starts the scheduler at the peak (the script once left it at 3e-5: DIFFER)
    ["--seed", "4", "--batch", "5", "--dims", "5,9,7,4", "--steps", "4", "--total-steps", "9", "--warmup", "2",
     "--tau-base", "0.9", "--eta", "1", "--lr", "3"],
    # both schedules from a later step (solo-learn's scheduler and tau started at step 0 instead: DIFFER at step0.lr)
    ["--start-step", "3", "--steps", "3", "--total-steps", "8", "--warmup", "2"],
])
def test_crosscheck_against_solo_learn_source_at_other_settings(extra, tmp_path):
    """solo-learn's BYOL files at settings other than the script's defaults (as
    test_crosscheck_against_solo_learn_source)."""
    if importlib.util.find_spec("torch") is None or not os.environ.get("SOLO_LEARN_SRC"):
        pytest.skip("solo-learn's source is not here (torch and SOLO_LEARN_SRC are needed)")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "crosscheck_solo_learn.py"), "--workdir",
                          str(tmp_path), *extra], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "solo-learn agrees with byol-ref" in res.stdout, res.stdout + res.stderr


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the solo-learn check imports torch")
@pytest.mark.parametrize("signature, switches", [
    (("clip_lr", "exclude_bias_n_norm"), ["clip_lr", "exclude_bias_n_norm"]),
    (("clip_lars_lr", "exclude_bias_n_norm"), ["clip_lars_lr", "exclude_bias_n_norm"]),  # a renamed clip only
    (("clip_lars_lr", "exclude_bias_n_norm_lars"), ["clip_lars_lr", "exclude_bias_n_norm_lars"]),
])
def test_solo_learn_check_finds_both_lars_switches_in_every_spelling(signature, switches):
    """solo-learn renamed LARS's two switches one at a time; the check turns both on in whichever spelling its
    LARS takes (a subprocess: importing the script sets torch's default dtype)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import crosscheck_solo_learn as c; "
            "print(sorted(c.lars_switches(('params', 'lr', 'eta') + tuple(sys.argv[2:]))))")
    res = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples"), *signature], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == str(sorted(switches)), res.stdout + res.stderr


def _lars_switches_without_torch():
    """crosscheck_solo_learn.lars_switches and the two spelling tuples it reads, taken from the script's source:
    the script imports torch at its top, but this function is plain Python, so CI (no torch) checks it too."""
    tree = ast.parse((ROOT / "examples" / "crosscheck_solo_learn.py").read_text())
    wanted = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "lars_switches":
            wanted.append(node)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Tuple) and {getattr(e, "id", None) for e in t.elts}
                                                 == {"LARS_CLIP", "LARS_EXCLUDE"} for t in node.targets):
            wanted.append(node)
    assert len(wanted) == 2, "crosscheck_solo_learn.py no longer defines LARS_CLIP, LARS_EXCLUDE and lars_switches"
    namespace = {}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "crosscheck_solo_learn.py", "exec"), namespace)
    return namespace["lars_switches"]


@pytest.mark.parametrize("signature, switches", [
    (("clip_lr", "exclude_bias_n_norm"), ["clip_lr", "exclude_bias_n_norm"]),
    (("clip_lars_lr", "exclude_bias_n_norm"), ["clip_lars_lr", "exclude_bias_n_norm"]),
    (("clip_lars_lr", "exclude_bias_n_norm_lars"), ["clip_lars_lr", "exclude_bias_n_norm_lars"]),
])
def test_lars_switch_spellings_without_torch(signature, switches):
    """The spelling logic of test_solo_learn_check_finds_both_lars_switches_in_every_spelling, which skips
    without torch (as in CI): every spelling found and switched on, and a LARS taking neither refused by name."""
    lars_switches = _lars_switches_without_torch()
    assert lars_switches(("params", "lr", "eta") + signature) == dict.fromkeys(switches, True)
    for missing in signature:
        rest = tuple(n for n in signature if n != missing)
        with pytest.raises(SystemExit, match=r"solo/utils/lars.py: LARS takes none of \("):
            lars_switches(("params", "lr", "eta") + rest)


@pytest.mark.parametrize("extra", [
    [],
    # K = 6, W = 2: float32 rounds the rates of steps 3 and 5 by less than the 1e-9 tolerance, and the exact
    # schedule diverges downstream, at a step-4 gradient (the script once wanted step1.lr whatever the settings)
    ["--steps", "6", "--total-steps", "6", "--warmup", "2"],
    ["--seed", "5", "--batch", "5", "--dims", "4,10,6,8,12", "--warmup", "0", "--steps", "3", "--tau-base", "0.9",
     "--eta", "0.02", "--momentum", "0.5"],
    # batch norm's decay rate and eps on both sides (the decay on one side only, either one: DIFFER at
    # step0.online.buffer.encoder.norm1.running_mean; byol-ref's eps left at 1e-5: DIFFER at step0.loss.total)
    ["--bn-decay", "0.5", "--bn-eps", "1e-3"],
])
def test_crosscheck_against_the_official_code(extra, tmp_path):
    """The official JAX/Haiku building blocks, step for step (runs where JAX, Haiku, optax and dm-tree are
    installed and BYOL_OFFICIAL_SRC names a checkout of google-deepmind/deepmind-research), at the script's
    defaults and at other settings."""
    missing = [m for m in ("jax", "haiku", "optax", "tree") if importlib.util.find_spec(m) is None]
    if missing or not os.environ.get("BYOL_OFFICIAL_SRC"):
        pytest.skip(f"the official code is not here ({', '.join(missing) or 'BYOL_OFFICIAL_SRC is not set'})")
    res = subprocess.run([sys.executable, str(ROOT / "examples" / "crosscheck_official.py"), "--workdir",
                          str(tmp_path), *extra], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "The official code agrees with byol-ref" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("script, says, runs_with", [
    ("crosscheck_solo_learn.py", "skipped: this check runs solo-learn's own code", None),
    ("crosscheck_official.py", "skipped: this check runs the official BYOL code", None),
    ("crosscheck_byol_pytorch.py", "skipped: this check runs the byol-pytorch package itself", "byol_pytorch"),
    ("crosscheck_lightly.py", "skipped: this check runs the lightly package itself", "lightly"),
    ("crosscheck_ddp.py", "skipped: this check runs PyTorch's DistributedDataParallel", "torch"),
    ("verify_pytorch.py", "skipped: this example needs PyTorch", "torch"),
])
def test_a_crosscheck_that_cannot_run_here_exits_as_skipped_not_passed(script, says, runs_with, tmp_path):
    """Without its checkout (or its packages) a cross-check says why and exits 77, the status harnesses read
    as a skip: never 0, which a CI step would read as agreement. --help still prints the usage (exit 0).
    (Without a checkout the first two skip wherever they are; the others only where their package is missing.)"""
    if runs_with is not None and importlib.util.find_spec(runs_with) is not None:
        pytest.skip(f"{runs_with} is installed here, so {script} would run")
    env = {k: v for k, v in os.environ.items() if k not in ("SOLO_LEARN_SRC", "BYOL_OFFICIAL_SRC")}
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script)], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert res.returncode == 77 and res.stderr.startswith(says), res.stdout + res.stderr
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--help"], capture_output=True,
                         text=True, timeout=120, env=env, cwd=tmp_path)
    words = " ".join(res.stdout.split())  # argparse re-wraps the description where the packages are installed
    first_line = ast.get_docstring(ast.parse((ROOT / "examples" / script).read_text())).splitlines()[0]
    assert res.returncode == 0 and first_line in words, res.stdout + res.stderr


def test_the_cross_checks_read_dims_as_positive_integers_one_per_name(capsys):
    """--dims of every cross-check (examples/_args.py): one positive int per width, else the parser's
    error naming the flag, what it got and the widths it wants (a 0 or a missing width failed later,
    inside the other package or byol-ref, with no word of --dims)."""
    import argparse

    parse_dims = repo_module("examples", "_args").parse_dims
    ap = argparse.ArgumentParser(prog="crosscheck")
    assert parse_dims(ap, "6,7,9,3", "D,H,PH,P") == (6, 7, 9, 3)
    for bad in ("6,7,9", "6,7,9,3,5", "6,0,9,3", "6,x,9,3", ""):
        with pytest.raises(SystemExit):
            parse_dims(ap, bad, "D,H,PH,P")
        assert f"crosscheck: error: --dims wants 4 positive integers D,H,PH,P, got {bad!r}" in capsys.readouterr().err


def test_the_cross_checks_read_start_and_total_steps_from_one_place(capsys):
    """--start-step and --total-steps of the cross-checks that take them (examples/_args.py): K defaults to
    S + --steps where a script leaves it None, and an S below 0 or a K below S + --steps is the parser's error
    naming the flag (byol-ref trace refused it later, in its own words)."""
    import argparse

    _args = repo_module("examples", "_args")
    add_start_step, schedule_steps = _args.add_start_step, _args.schedule_steps
    ap = argparse.ArgumentParser(prog="crosscheck")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--total-steps", type=int, default=None)
    add_start_step(ap)
    assert schedule_steps(ap, ap.parse_args([])) == (0, 5)
    assert schedule_steps(ap, ap.parse_args(["--start-step", "3"])) == (3, 8)
    assert schedule_steps(ap, ap.parse_args(["--start-step", "3", "--total-steps", "20"])) == (3, 20)
    for bad, says in ((["--start-step", "-1"], "argument --start-step: wants an integer >= 0, got '-1'"),
                      (["--start-step", "3", "--total-steps", "7"],
                       "--total-steps wants an integer >= --start-step + --steps = 8, got 7")):
        with pytest.raises(SystemExit):
            schedule_steps(ap, ap.parse_args(bad))
        assert f"crosscheck: error: {says}" in capsys.readouterr().err
