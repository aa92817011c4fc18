"""The command line through a subprocess: help, a tiny train + eval, resume, and bad arguments."""
import contextlib
import errno
import functools
import io
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from byol_ref.presets import get_preset
from repo_modules import repo_module
from user_standin import as_a_user

ROOT = Path(__file__).parents[1]


def run(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "byol_ref", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=300)


def test_help_explains_every_option():
    out = run("train", "--help")
    assert out.returncode == 0
    for flag in ("--data", "--epochs", "--batch-size", "--optimizer", "--lr", "--tau", "--device", "--dtype",
                 "--seed", "--out", "--resume", "--no-predictor", "--no-stop-gradient", "--predictor-lr-mult",
                 "--augment"):
        assert flag in out.stdout
    assert run("eval", "--help").returncode == 0
    assert run("embed", "--help").returncode == 0
    out = run("--help")
    assert out.returncode == 0
    # what a script can read from the exit status, each status main returns (they are tested one by one below)
    said = " ".join(out.stdout.split()[out.stdout.split().index("status:") + 1:])
    for status in ("0 done", "1 training diverged", "2 bad input", "130 stopped by Ctrl-C", "143 by SIGTERM",
                   "129 by SIGHUP", "141 the"):
        assert status in said, said
    import byol_ref
    out = run("--version")
    assert out.returncode == 0 and out.stdout.startswith(f"byol-ref {byol_ref.__version__} (NumPy {np.__version__}")


def test_no_command_or_no_required_option_is_a_usage_error_naming_what_is_missing(tmp_path):
    """``byol-ref`` alone: the sub-command is required (not taken for ``eval``, the command main falls
    through to, which would fail on its missing arguments); so are embed's and trace's --out and
    convert's --from and --to, which have no default to fall back on (a None there would fail later,
    as "expected str, bytes or os.PathLike object, not NoneType", say)."""
    out = run()
    assert out.returncode == 2 and out.stdout == "", out.stderr
    assert "byol-ref: error: the following arguments are required: command" in out.stderr, out.stderr
    assert "{train,eval,embed,trace,diff,convert}" in out.stderr, out.stderr
    for cmd, missing in ((["embed", str(tmp_path)], "--out"), (["trace"], "--out"),
                         (["convert", "a.npz", "b.npz", "--to", "byol-ref"], "--from"),
                         (["convert", "a.npz", "b.npz", "--from", "byol-ref"], "--to")):
        out = run(*cmd)
        assert out.returncode == 2 and out.stdout == "", out.stderr
        assert f"byol-ref {cmd[0]}: error: the following arguments are required: {missing}" in out.stderr, out.stderr


def test_every_option_of_every_command_has_help():
    import argparse

    from byol_ref.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, parser in sub.choices.items()
               for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    res = run("train", "--data", "synthetic", "--epochs", "3", "--batch-size", "64", "--hidden-size", "32",
              "--projection-dim", "16", "--predictor-dim", "16", "--out", str(out), "--no-plots",
              "--no-progress", "--checkpoint-every", "2")
    assert res.returncode == 0, res.stderr
    return out, res


def test_train_writes_a_run_directory_and_reports(tiny_run):
    out, res = tiny_run
    for name in ("config.json", "metrics.jsonl", "checkpoint.npz", "report.json", "report.txt"):
        assert (out / name).is_file(), name
    assert "BYOL encoder (y)" in res.stdout and "random-init encoder" in res.stdout and "raw inputs" in res.stdout
    assert "batch 64, adamw lr 0.002 (peak 0.0005 = lr x 64/256), tau 0.996" in res.stdout  # the linear scaling
    # The gain lines restate the table's differences.
    report = json.loads((out / "report.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    knn_gain = 100 * (rows["BYOL encoder (y)"]["knn"] - rows["raw inputs"]["knn"])
    assert f"BYOL encoder vs raw inputs: kNN {knn_gain:+.1f}" in res.stdout
    for base in ("random-init encoder", "raw inputs"):  # each probe's gain from its own column
        gains = ", ".join(f"{label} {100 * (rows['BYOL encoder (y)'][key] - rows[base][key]):+.1f}" for key, label in
                          (("knn", "kNN"), ("low_label", "low-label"), ("linear", "linear")))
        assert f"BYOL encoder vs {base}: {gains} points" in res.stdout, base
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 18  # 409 train samples // 64 = 6 steps x 3 epochs
    report = json.loads((out / "report.json").read_text())
    assert {r["name"] for r in report["rows"]} >= {"BYOL encoder (y)", "raw inputs"}
    # report.json is the data, not the printed table (a mutation audit: writing the table there too survived);
    # it says how long the probes took, and report.txt is a text file that ends its last line
    # (each under the command's 300 s timeout: a sum with the clock's reading rather than a difference is not)
    assert "table" not in report and 0 < report["eval_seconds"] < 300 and 0 < report["train_seconds"] < 300
    said = re.search(r"byol-ref: trained 18 steps in ([0-9.]+) s; run directory", res.stdout)
    assert said and 0 <= float(said.group(1)) < 300, res.stdout
    assert (out / "report.txt").read_text().endswith("\n")


def test_eval_of_a_run_dir_and_of_a_checkpoint(tiny_run):
    out, _ = tiny_run
    res = run("eval", str(out))
    assert res.returncode == 0, res.stderr
    assert "BYOL encoder (y)" in res.stdout
    res = run("eval", str(out / "checkpoint.npz"), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["rows"]


def test_eval_writes_its_report_and_plots_on_request(tiny_run, tmp_path):
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    dest = tmp_path / "ev"
    res = run("eval", str(out), "--out", str(dest))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["features.png", "probes.png", "report.json", "report.txt",
                                                      "training.png"]  # training.png from the run's metrics
    # The hint names the run, not the report folder, and runs as printed (here: this python -m byol_ref).
    hint = next(line for line in res.stdout.splitlines() if line.startswith("Features for your own probes: "))
    cmd = shlex.split(hint.split(": ", 1)[1])
    assert os.path.samefile(ROOT / cmd[0], sys.executable)  # relative to the working directory when inside it
    assert cmd[1:5] == ["-m", "byol_ref", "embed", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == 0 and (dest / "features.npz").is_file(), done.stderr
    before = (dest / "report.json").read_bytes()
    res = run("eval", str(out), "--out", str(dest))
    assert res.returncode == 2 and "already holds report.json" in res.stderr
    (tmp_path / "afile").write_text("mine")  # a file, or a path through one: said so, not "[Errno 17] File exists"
    for dest_ in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        res = run("eval", str(out), "--out", str(dest_), "--overwrite")
        assert res.returncode == 2 and f"--out {dest_}: {tmp_path / 'afile'} is a file, not a folder" \
            in res.stderr, res.stderr
    for cmd in (["embed", str(out), "--out"], ["trace", "--dims", "5,6,4,3", "--out"], ["train", "--out"]):
        res = run(*cmd, str(tmp_path / "afile" / "x.npz"))
        assert res.returncode == 2 and f"{tmp_path / 'afile'} is a file, not a folder" in res.stderr, res.stderr
    assert (tmp_path / "afile").read_text() == "mine"
    assert (dest / "report.json").read_bytes() == before
    assert run("eval", str(out), "--out", str(dest), "--overwrite").returncode == 0
    # A checkpoint on its own has no training curves: no training.png.
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "c.npz").write_bytes((out / "checkpoint.npz").read_bytes())
    # without a config.json to say which data, --data must (eval and embed took the digits, silently)
    for cmd in (["eval"], ["embed", "--out", str(alone / "f.npz")]):
        res = run(*cmd[:1], str(alone / "c.npz"), *cmd[1:])
        assert res.returncode == 2 and (f"{alone / 'c.npz'} has no config.json beside it to say which data its run "
                                        "trained on; pass --data") in res.stderr, res.stderr
    assert sorted(p.name for p in alone.iterdir()) == ["c.npz"]
    res = run("eval", str(alone / "c.npz"), "--data", "synthetic", "--out", str(tmp_path / "ev2"))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "ev2").iterdir()) == ["features.png", "probes.png", "report.json",
                                                                     "report.txt"]


def test_a_report_replaced_with_overwrite_is_replaced_whole_or_not_at_all(tiny_run, tmp_path, capsys, monkeypatch):
    # eval --out --overwrite stopped as it draws the plots leaves the report it was replacing as it
    # was, not a new report.txt beside the old plots; one that finishes replaces the whole set,
    # removing (and naming) the old report's files it has no counterpart of.
    pytest.importorskip("matplotlib")
    import signal

    from byol_ref import plots
    from byol_ref.cli import main

    out, _ = tiny_run
    dest = tmp_path / "ev"
    assert main(["eval", str(out), "--out", str(dest), "--knn-k", "5"]) == 0
    before = {f.name: f.read_bytes() for f in dest.iterdir()}
    assert sorted(before) == ["features.png", "probes.png", "report.json", "report.txt", "training.png"]
    capsys.readouterr()

    def ctrl_c(*args, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # (never reached)

    monkeypatch.setattr(plots, "plot_features", ctrl_c)
    assert main(["eval", str(out), "--out", str(dest), "--overwrite", "--knn-k", "7"]) == 130
    assert {f.name: f.read_bytes() for f in dest.iterdir()} == before  # no staging folder left either
    monkeypatch.undo()
    capsys.readouterr()
    # A checkpoint alone has no training curves: the old training.png goes, and the message says so.
    (tmp_path / "alone").mkdir()
    shutil.copy(out / "checkpoint.npz", tmp_path / "alone" / "c.npz")
    assert main(["eval", str(tmp_path / "alone" / "c.npz"), "--data", "synthetic", "--out", str(dest),
                 "--overwrite", "--knn-k", "7"]) == 0
    assert f"removed {dest / 'training.png'}: of the report this one replaces, which has none" in \
        capsys.readouterr().err
    assert sorted(f.name for f in dest.iterdir()) == ["features.png", "probes.png", "report.json", "report.txt"]
    assert json.loads((dest / "report.json").read_text())["probe"]["k"] == 7
    assert all((dest / n).read_bytes() != before[n] for n in ("report.json", "report.txt", "probes.png"))


def test_existing_run_directory_is_never_overwritten(tiny_run):
    out, _ = tiny_run
    before = (out / "checkpoint.npz").read_bytes()
    res = run("train", "--data", "synthetic", "--epochs", "1", "--out", str(out))
    assert res.returncode == 2
    assert "exists and is not empty" in res.stderr
    assert (out / "checkpoint.npz").read_bytes() == before


def test_resume_continues_a_run(tmp_path):
    out = tmp_path / "r"
    common = ["--data", "synthetic", "--batch-size", "64", "--hidden-size", "16", "--projection-dim", "8",
              "--predictor-dim", "8", "--out", str(out), "--no-eval", "--no-progress"]
    assert run("train", "--epochs", "2", *common).returncode == 0
    res = run("train", "--epochs", "3", "--resume", *common)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr
    # the new --epochs extends the run: 408 // 64 = 6 steps per epoch, 3 epochs, 6 of them in this call
    assert "trained 6 steps (step 18 of the run)" in res.stdout and "already at its last step" not in res.stdout
    # the same flags again are fine; any that differ from the run's are refused, naming both values
    res = run("train", "--epochs", "3", "--resume", *common, "--lr", "0.1", "--seed", "0", "--set", "views=concat")
    assert res.returncode == 2
    assert ("the command line asks for others: lr 0.1 (run: 0.002); views 'concat' (run: 'separate'). "
            "Only --epochs may change") in res.stderr
    # --set epochs is refused, not ignored (it was: the run kept its length, 0 steps trained, exit 0)
    for n in ("5", "1"):
        res = run("train", "--resume", *common, "--set", f"epochs={n}")
        assert res.returncode == 2 and (f"epochs {n} (run: 3; --epochs, not --set, changes the length of a resumed "
                                        "run)") in res.stderr
    res = run("train", "--resume", *common, "--set", "epochs=3")  # the run's own: nothing asked
    assert res.returncode == 0 and ("trained 0 steps (step 18 of the run)" in res.stdout and "byol-ref: the run was "
                                    "already at its last step; a longer run continues with --epochs N (more than "
                                    "3).\n" in res.stdout)
    # --epochs counts when given, even at its default value (300 is the parser's default)
    res = run("train", "--epochs", "300", "--resume", *common[:-4], "--out", str(out), "--no-eval", "--no-progress")
    assert res.returncode == 0 and "for 300 epochs" in res.stdout
    assert json.loads((out / "config.json").read_text())["train_config"]["epochs"] == 300
    res = run("train", "--epochs", "2", "--resume", "--out", str(out), "--no-eval", "--no-progress")
    assert res.returncode == 2 and "is at step 1800, past the 12 steps of 2 epoch(s)" in res.stderr
    assert json.loads((out / "config.json").read_text())["train_config"]["epochs"] == 300  # not rewritten
    assert "needs --out RUN_DIR" in run("train", "--resume").stderr
    assert "--overwrite would start it again" in run("train", "--resume", "--overwrite", "--out", str(out)).stderr


def test_preset_yields_to_every_flag_given_even_at_its_default_value(tmp_path):
    res = run("train", "--data", "synthetic", "--epochs", "1", "--preset", "lightly", "--optimizer", "adamw",
              "--lr", "0.002", "--tau", "0.996", "--out", str(tmp_path / "p"), "--no-eval", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "adamw lr 0.002, tau 0.996" in res.stdout  # all three are byol-ref's defaults, the preset's are others
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    lightly = get_preset("lightly")  # the rest is the preset's (these differ from byol-ref's defaults)
    assert (saved["train_config"]["tau_denominator"], saved["train_config"]["ema_when"]) == ("K-1", "pre_forward")
    assert (lightly.tau_denominator, lightly.ema_when, saved["model_config"]["loss_form"]) == ("K-1", "pre_forward",
                                                                                                lightly.loss_form)


def test_augment_chooses_the_image_recipe_and_resume_keeps_it(tmp_path):
    out = tmp_path / "aff"
    common = ["--data", "digits", "--batch-size", "256", "--hidden-size", "16", "--projection-dim", "8",
              "--predictor-dim", "8", "--out", str(out), "--no-eval", "--no-progress"]
    res = run("train", "--epochs", "1", "--augment", "affine", *common)
    assert res.returncode == 0, res.stderr
    recorded = json.loads((out / "config.json").read_text())["views"]
    assert all(v["kind"] == "image" and v["p_erase"] == 0.5 and v["zoom"][0] == pytest.approx(1 / 1.1)
               for v in recorded)
    from byol_ref.augment import views_from_dicts
    assert len(views_from_dicts(recorded)) == 2  # (the record reads back)
    # Resuming without --augment continues with the run's own recipe; asking for another is refused.
    res = run("train", "--epochs", "2", "--augment", "crop", "--resume", *common)
    assert res.returncode == 2 and f"--resume: {out / 'checkpoint.npz'} was trained with other augmentations than " \
        "--augment crop gives; drop --augment" in res.stderr
    res = run("train", "--epochs", "2", "--resume", *common)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "config.json").read_text())["views"] == recorded
    res = run("train", "--epochs", "3", "--augment", "affine", "--resume", *common)  # (the run's own: taken)
    assert res.returncode == 0, res.stderr
    # Feature vectors have no image recipe to choose.
    res = run("train", "--data", "synthetic", "--augment", "affine", "--out", str(tmp_path / "v"))
    assert res.returncode == 2 and "--augment affine" in res.stderr and "feature vectors" in res.stderr
    assert not (tmp_path / "v").exists()


def test_train_report_eval_and_embed_agree_on_unstandardised_vectors(tmp_path):
    """A feature file far from zero mean and unit scale: the report printed after training, the
    report of `eval` and the features of `embed` all see the inputs as the network was trained
    on them (standardised with the train split's statistics, stored in the checkpoint)."""
    from byol_ref.data import synthetic
    from byol_ref.train import checkpoint_features

    ds = synthetic(n=300, dim=10, n_classes=3, seed=4)
    data = tmp_path / "far.npz"
    np.savez(data, x=np.concatenate([ds.x_train, ds.x_test]) * 50.0 + 20.0,
             y=np.concatenate([ds.y_train, ds.y_test]))
    out = tmp_path / "run"
    res = run("train", "--data", str(data), "--epochs", "3", "--batch-size", "64", "--hidden-size", "24",
              "--projection-dim", "12", "--predictor-dim", "12", "--out", str(out), "--no-plots", "--no-progress")
    assert res.returncode == 0, res.stderr
    trained = json.loads((out / "report.json").read_text())
    res = run("eval", str(out), "--json")
    assert res.returncode == 0, res.stderr
    evaluated = json.loads(res.stdout)
    assert evaluated["rows"] == trained["rows"]
    assert evaluated["collapse"] == trained["collapse"]

    feats = tmp_path / "feats.npz"
    res = run("embed", str(out), "--out", str(feats))
    assert res.returncode == 0, res.stderr
    with np.load(feats, allow_pickle=False) as f:
        got = {k: f[k] for k in f.files}
    assert set(got) == {"encoder_train", "encoder_test", "projector_train", "projector_test", "labels_train",
                        "labels_test"}
    assert got["encoder_train"].shape == (240, 24) and got["projector_test"].shape == (60, 12)
    from byol_ref.data import load_file
    split = load_file(str(data))
    np.testing.assert_array_equal(got["labels_test"], split.y_test)
    np.testing.assert_array_equal(got["encoder_test"], checkpoint_features(out, split.x_test))
    # Never overwritten unless asked; only .npz.
    before = feats.read_bytes()
    res = run("embed", str(out), "--out", str(feats))
    assert res.returncode == 2 and "exists" in res.stderr and feats.read_bytes() == before
    assert run("embed", str(out), "--out", str(feats), "--overwrite").returncode == 0
    res = run("embed", str(out), "--out", str(tmp_path / "f.csv"))
    assert res.returncode == 2 and "--out must name an .npz" in res.stderr


@pytest.mark.parametrize("data", ["synthetic", "digits"])
def test_embed_baselines_reproduce_every_row_of_the_runs_report(tmp_path, data):
    """An evaluator with only embed's file and report.json reproduces the report's table, the baselines'
    rows too: the random-init encoder is drawn and calibrated as the report draws it (the run's seed), the
    inputs are the data as the 'raw inputs' row probes them (pixels for images, standardised feature
    vectors), and report.json's probe settings name the protocol (seed, draws, l2 grid) the probes used."""
    from byol_ref.evaluate import probe_report

    out, feats = tmp_path / "run", tmp_path / "feats.npz"
    res = run("train", "--data", data, "--epochs", "1", "--batch-size", "128", "--hidden-size", "16",
              "--projection-dim", "8", "--predictor-dim", "8", "--seed", "3", "--out", str(out), "--no-plots",
              "--no-progress")
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "report.json").read_text())
    res = run("embed", str(out), "--out", str(feats), "--baselines")
    assert res.returncode == 0, res.stderr
    with np.load(feats, allow_pickle=False) as f:
        got = {k: f[k] for k in f.files}
    assert set(got) == {f"{kind}_{split}" for split in ("train", "test") for kind in
                        ("encoder", "projector", "labels", "random_encoder", "inputs")}
    names = {"BYOL encoder (y)": "encoder", "BYOL projector (z)": "projector", "random-init encoder": "random_encoder",
             "raw inputs": "inputs"}
    rows = probe_report({name: (got[f"{key}_train"], got[f"{key}_test"]) for name, key in names.items()},
                        got["labels_train"], got["labels_test"], seed=report["probe"]["seed"],
                        k=report["probe"]["k"], labels_per_class=report["probe"]["labels_per_class"],
                        temperature=report["probe"]["temperature"], repeats=report["probe"]["repeats"],
                        l2_grid=report["probe"]["l2_grid"])
    assert report["probe"]["seed"] == 3  # (the run's seed: report.json says which draws it made)
    assert json.loads(json.dumps(rows)) == report["rows"]
    assert "inputs_train" not in np.load(_embed_plain(out, tmp_path), allow_pickle=False).files  # (asked for only)


def _embed_plain(out, tmp_path):
    path = tmp_path / "plain.npz"
    res = run("embed", str(out), "--out", str(path))
    assert res.returncode == 0, res.stderr
    return path


def test_unlabelled_data_train_and_embed(tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).standard_normal((200, 6)))
    out = tmp_path / "run"
    res = run("train", "--data", str(data), "--epochs", "2", "--batch-size", "64", "--hidden-size", "16",
              "--projection-dim", "8", "--predictor-dim", "8", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "no labels" in res.stdout and f"-m byol_ref embed {out} --out" in res.stdout
    res = run("embed", str(out), "--out", str(tmp_path / "f.npz"))
    assert res.returncode == 0, res.stderr
    with np.load(tmp_path / "f.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["encoder_test", "encoder_train", "projector_test", "projector_train"]
        assert f["encoder_train"].shape[0] + f["encoder_test"].shape[0] == 200


def test_plots_of_a_resumed_run_show_the_whole_run(tmp_path, monkeypatch):
    """training.png is drawn from the run's metrics.jsonl, which a resume appends to, not from the
    records of the last invocation only."""
    import byol_ref.plots as plots
    from byol_ref.cli import main

    seen = []
    monkeypatch.setattr(plots, "plot_run", lambda history, report, out, **kw: seen.append(list(history)) or [])
    common = ["--data", "synthetic", "--batch-size", "64", "--hidden-size", "16", "--projection-dim", "8",
              "--predictor-dim", "8", "--out", str(tmp_path / "r"), "--no-progress", "--log-every", "1"]
    assert main(["train", "--epochs", "2", *common]) == 0
    assert main(["train", "--epochs", "3", "--resume", *common]) == 0
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in seen[-1]] == [r["step"] for r in records]
    assert seen[-1][0]["step"] == 0 and seen[-1][-1]["step"] == 18  # 409 // 64 = 6 steps x 3 epochs


def test_train_bn_free_with_a_data_dependent_init(tmp_path):
    out = tmp_path / "affine"
    res = run("train", "--data", "synthetic", "--epochs", "2", "--batch-size", "64", "--hidden-size", "32",
              "--projection-dim", "16", "--predictor-dim", "16", "--norm", "affine", "--set", "data_init=true",
              "--out", str(out), "--no-plots", "--no-progress")
    assert res.returncode == 0, res.stderr
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_config"]["norm"] == "affine" and saved["train_config"]["data_init"] is True
    rows = {r["name"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert {"BYOL encoder (y)", "random-init encoder", "raw inputs"} <= set(rows)


def test_train_with_per_shard_batch_statistics_and_eval(tmp_path):
    out = tmp_path / "shards"
    res = run("train", "--data", "synthetic", "--epochs", "2", "--batch-size", "64", "--hidden-size", "32",
              "--projection-dim", "16", "--predictor-dim", "16", "--set", "bn-shards=4",  # hyphens work as in flags
              "--set", "bn_shard_running=sequential", "--out", str(out), "--no-plots", "--no-progress")
    assert res.returncode == 0, res.stderr
    saved = json.loads((out / "config.json").read_text())["model_config"]
    assert saved["bn_shards"] == 4 and saved["bn_shard_running"] == "sequential"
    res = run("eval", str(out), "--json")
    assert res.returncode == 0, res.stderr


def test_bad_arguments_get_clear_errors(tmp_path):
    res = run("train", "--data", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "a"))
    assert res.returncode == 2 and "nope.npy" in res.stderr
    res = run("train", "--data", "synthetic", "--set", "colour=red", "--out", str(tmp_path / "b"))
    assert res.returncode == 2 and "unknown field 'colour'" in res.stderr
    res = run("train", "--data", "synthetic", "--epochs", "0", "--out", str(tmp_path / "c"))
    assert res.returncode == 2 and "epochs must be an int >= 1" in res.stderr
    res = run("train", "--data", "synthetic", "--lr", "inf", "--out", str(tmp_path / "e"))
    assert res.returncode == 2 and "lr must be finite, got inf" in res.stderr
    both = tmp_path / "both.npz"
    np.savez(both, x=np.ones((10, 3)), y=np.arange(10) % 2)
    res = run("train", "--data", str(both), "--labels", "2", "--out", str(tmp_path / "f"))
    assert res.returncode == 2 and "already holds its labels under 'y'" in res.stderr and "--labels" in res.stderr
    images = tmp_path / "img255.npy"  # 8-bit values as floats: the image augmentations would clip every view to white
    np.save(images, np.random.default_rng(0).integers(0, 256, (40, 8, 8)).astype(np.float32))
    res = run("train", "--data", str(images), "--batch-size", "16", "--out", str(tmp_path / "g"))
    assert res.returncode == 2 and "pixels must lie in [0, 1]" in res.stderr and "[0, 255]" in res.stderr
    assert "255 for 8-bit images" in res.stderr and "uint8" in res.stderr
    assert not (tmp_path / "g").exists()  # refused before the run directory is made
    res = run("train", "--data", "synthetic", "--set", "data_init=true", "--out", str(tmp_path / "h"))
    assert res.returncode == 2 and "data_init=True sets the norm='affine' layers" in res.stderr
    assert "norm='batch'" in res.stderr and "--norm affine" in res.stderr
    assert not (tmp_path / "h").exists()
    res = run("train", "--data", "synthetic", "--batch-size", "64", "--set", "bn_shards=3",
              "--out", str(tmp_path / "i"))
    assert res.returncode == 2 and "batch_size=64 cannot be split into bn_shards=3" in res.stderr
    assert not (tmp_path / "i").exists()
    res = run("train", "--optimizer", "rmsprop")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    bad = tmp_path / "bad.npy"
    np.save(bad, np.array([[1.0, np.nan], [2.0, 3.0]] * 10))
    res = run("train", "--data", str(bad), "--out", str(tmp_path / "d"))
    assert res.returncode == 2 and ("finite" in res.stderr.lower() or "nan" in res.stderr.lower())
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04garbage")
    res = run("eval", str(tmp_path / "corrupt.npz"))
    assert res.returncode == 2 and "corrupt" in res.stderr


def test_a_run_written_by_earlier_code_is_evaluated_and_resumed(tmp_path, capsys):
    """tests/old_runs/c9aff3b was written by the code of 2026-11-28: its config.json lacks every
    field added since, and records the views as reprs rather than dicts. The checkpoint format has
    kept version 1 since, so today's code must still evaluate, embed and resume such a run (the
    new fields read as the behaviour the run was trained with), not refuse it or misread it."""
    import shutil

    from byol_ref.cli import main
    from byol_ref.train import load_checkpoint

    run = tmp_path / "old"
    shutil.copytree(Path(__file__).resolve().parent / "old_runs" / "c9aff3b", run)
    assert "ema_form" not in json.loads((run / "config.json").read_text())["train_config"]
    assert main(["eval", str(run), "--out", str(tmp_path / "e"), "--no-plots", "--no-progress"]) == 0
    rows = json.loads((tmp_path / "e" / "report.json").read_text())["rows"]
    assert [r["name"] for r in rows][:1] == ["BYOL encoder (y)"] and all(0 < r["knn"] <= 1 for r in rows)
    assert main(["embed", str(run), "--out", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz") as features:
        assert features["encoder_train"].shape == (408, 8)
    capsys.readouterr()
    assert main(["train", "--out", str(run), "--resume", "--epochs", "3", "--no-progress", "--no-eval",
                 "--no-plots"]) == 0
    assert "at step 12" in capsys.readouterr().err
    state, model_cfg, tcfg, _ = load_checkpoint(run / "checkpoint.npz")
    assert state.step == 18 and tcfg.ema_form == "weighted" and model_cfg.hidden_size == 8


def test_quoted_result_tables_are_the_generated_ones():
    """README quotes docs/results-digits.md (scripts/seed_table.py writes it) and collapse-lab.md
    quotes docs/collapse-lab-results.md (scripts/collapse_lab.py): each quote is the whole file, as
    written. (A rerun of the lab on 2026-12-01 moved one linear probe by a test image, 96.1 ->
    96.4: the page has to follow the file, and nothing checked that it did.)"""
    root = Path(__file__).resolve().parents[1]
    for generated, page in (("docs/results-digits.md", "README.md"),
                            ("docs/collapse-lab-results.md", "docs/collapse-lab.md")):
        assert (root / generated).read_text().strip() in (root / page).read_text(), (generated, page)


def _documented_command_lines():
    """(page, line, command) of each byol-ref command line in README.md and docs/*.md: the lines of
    fenced blocks other than Python's and of indented ones, and the inline code spans that give more than one argument
    (``byol-ref trace --inputs`` names a flag; ``byol-ref embed RUN --baselines`` is a command to type)."""
    root = Path(__file__).resolve().parents[1]
    command = r"(?:byol-ref|python3? -m byol_ref) (?:train|eval|embed|trace|diff|convert)(?=\s|$)"
    found = []
    for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        lines, fence = page.read_text().splitlines(), None
        for i, line in enumerate(lines):
            if line.startswith("```"):
                fence = None if fence is not None else line[3:].strip()
            elif ((fence not in (None, "python") or (fence is None and line.startswith("    ")))  # (an indented block)
                  and re.match(command, line.strip().removeprefix("$ "))):
                cmd, k = line.strip().removeprefix("$ "), i
                while cmd.endswith("\\"):  # (a command continued on the next line)
                    k += 1
                    cmd = cmd[:-1] + " " + lines[k].strip()
                found.append((page.name, i + 1, cmd))
            elif fence is None:
                for span in re.finditer(f"`({command}[^`]*)`", line):
                    if len(span.group(1).split()) - (4 if "byol_ref" in span.group(1) else 2) >= 2:
                        found.append((page.name, i + 1, span.group(1)))
    return [(page, line, cmd) for page, line, cmd in found if "..." not in cmd and "$" not in cmd]


def test_every_command_line_the_docs_give_is_one_byol_ref_takes():
    """README said `byol-ref embed RUN --baselines` writes every row's features; typed as written it
    was refused, "the following arguments are required: --out"."""
    import contextlib

    from byol_ref.cli import build_parser

    lines = _documented_command_lines()
    assert len(lines) >= 15 and any(cmd.startswith("byol-ref embed RUN --out") for _, _, cmd in lines)
    for page, line, cmd in lines:
        words = shlex.split(cmd, comments=True)
        argv = words[words.index("byol_ref") + 1:] if "byol_ref" in words else words[1:]
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said):
                build_parser().parse_args(argv)
        except SystemExit as exc:
            assert not exc.code, f"{page}:{line}: {cmd}: {said.getvalue().strip()}"


def test_make_run_recipe_is_the_one_the_readme_table_measures():
    """scripts/seed_table.py (which produced the README table) runs the Makefile's `run` recipe."""
    root = Path(__file__).resolve().parents[1]
    make = re.search(r"^run:.*\n\t\$\(PY\) -m byol_ref train (.*)$", (root / "Makefile").read_text(), re.M).group(1)
    seed_table = repo_module("scripts", "seed_table")
    assert make.split() == seed_table.RECIPE
    assert f"`byol-ref train {' '.join(seed_table.RECIPE)}`" in (root / "README.md").read_text()
    # and scripts/collapse_lab.py runs the same recipe (as configs rather than flags)
    lab = repo_module("scripts", "collapse_lab")
    flags = dict(zip(seed_table.RECIPE[2::2], seed_table.RECIPE[3::2]))  # after --data digits
    assert {k.lstrip("-").replace("-", "_"): float(v) for k, v in flags.items()} == \
        {**{k: float(v) for k, v in lab.RECIPE_MODEL.items() if k != "encoder_dim"}, **lab.RECIPE_TRAIN}


# --------------------------------------------------------------------------- corners, in process


def test_a_preset_field_set_without_a_preset_is_named(capsys):
    from byol_ref.cli import main

    for field in ("ema_scope=params", "final_lr_ratio=0.1"):
        assert main(["train", "--data", "synthetic", "--set", field]) == 2
        assert f"--set: {field.split('=')[0]} is a field of the presets, not of train's configs: pass it with a " \
               "--preset" in capsys.readouterr().err


def test_set_values_parse_as_documented():
    from dataclasses import fields

    from byol_ref.cli import _route_pairs
    from byol_ref.model import Config
    from byol_ref.train import TrainConfig

    model, train = {}, {}
    groups = [("model", {f.name: f for f in fields(Config)}, model),
              ("train", {f.name: f for f in fields(TrainConfig)}, train)]
    _route_pairs(["encoder_bias=null", "weight_std=yes", "stop_gradient=off", "symmetric=on",
                  "bn-shards=2", "bn_eps=1e-3", "layout=a=b"], groups)
    assert model == dict(encoder_bias=None, weight_std=True, stop_gradient=False, symmetric=True, bn_shards=2,
                         bn_eps=1e-3, layout="a=b")  # the value is everything after the first "="
    _route_pairs(["nesterov=no", "data_init=1", "final_lr=None"], groups)
    assert train == dict(nesterov=False, data_init=True, final_lr=None)
    # "none" is a choice of text fields (it was read as None: norm=none trained with the layout's batch norm)
    model.clear(), train.clear()
    _route_pairs(["norm=none", "exclude=none", "loss_form=null", "projector_hidden_dim=none"], groups)
    assert (model, train) == (dict(norm="none", loss_form=None, projector_hidden_dim=None), dict(exclude="none"))
    assert Config(4, **model).norm == "none" and TrainConfig(**train).exclude == "none"
    with pytest.raises(ValueError, match="--set weight_std: expected true/false, got 'maybe'"):
        _route_pairs(["weight_std=maybe"], groups)


def test_parser_defaults():
    from byol_ref.cli import build_parser

    p = build_parser()
    t = p.parse_args(["train"])
    assert (t.predictor_lr_mult, t.knn_k, t.labels_per_class) == (1.0, 20, 10)
    assert p.parse_args(["trace", "--dims", "5,6,4,3", "--out", "t.npz"]).batch == 4


def test_train_run_directory_rules_and_a_batch_of_the_whole_split(tmp_path, capsys):
    from byol_ref.cli import main

    common = ["--data", "synthetic", "--epochs", "1", "--hidden-size", "8", "--projection-dim", "4",
              "--predictor-dim", "4", "--no-eval", "--no-progress", "--no-plots"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an existing empty directory is used as it is
    assert main(["train", *common, "--batch-size", "408", "--out", str(empty)]) == 0  # 408 train samples: 1 step
    assert "trained 1 step in" in capsys.readouterr().out
    assert main(["train", *common, "--batch-size", "409", "--out", str(tmp_path / "big")]) == 2
    assert ("--batch-size 409 exceeds the 408 training samples (104 more are the test split); a step takes a full "
            "batch: pass --batch-size 408 or less") in capsys.readouterr().err
    before = (empty / "checkpoint.npz").read_bytes()
    assert main(["train", *common, "--batch-size", "64", "--seed", "5", "--out", str(empty)]) == 2
    assert (empty / "checkpoint.npz").read_bytes() == before
    assert main(["train", *common, "--batch-size", "64", "--seed", "5", "--out", str(empty), "--overwrite"]) == 0
    assert (empty / "checkpoint.npz").read_bytes() != before  # replaced on request
    capsys.readouterr()
    mine = tmp_path / "mine"  # a folder of other files: --resume, which the message offered, could not work there
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["train", *common, "--batch-size", "64", "--out", str(mine)]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: --out {mine} is not empty and holds no byol-ref run "
                                       "(none of checkpoint.npz, config.json, metrics.jsonl, ...); choose another "
                                       "--out, or pass --overwrite to train in it (the files it holds stay)\n")
    assert main(["train", *common, "--batch-size", "64", "--out", str(mine), "--overwrite"]) == 0
    assert (mine / "notes.txt").read_text() == "mine" and (mine / "checkpoint.npz").is_file()


@pytest.mark.skipif(os.name == "nt", reason="no flock on this platform: RunLock holds nothing there")
def test_a_run_directory_another_process_writes_in_is_refused_to_every_writer(tmp_path, capsys, monkeypatch,
                                                                             held_elsewhere):
    import fcntl

    import byol_ref.cli as cli
    from byol_ref.rundir import RunLock

    common = ["--data", "synthetic", "--epochs", "1", "--batch-size", "204", "--hidden-size", "8",
              "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots"]
    out = tmp_path / "r"
    real_fit, held = cli.fit, []

    def fit(*args, **kwargs):  # train holds its run directory while it trains
        held.append(held_elsewhere(out))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(cli, "fit", fit)
    assert cli.main(["train", *common, "--no-eval", "--out", str(out)]) == 0 and held == [True]
    monkeypatch.undo()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    fd = os.open(out, os.O_RDONLY)  # another process's lock (flock locks of two descriptors conflict)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for cmd in (["train", *common, "--out", str(out), "--resume", "--epochs", "2"],
                    ["train", *common, "--out", str(out), "--overwrite"],
                    ["eval", str(out), "--out", str(out), "--overwrite"]):
            assert cli.main(cmd) == 2, cmd
            assert capsys.readouterr().err == (f"byol-ref {cmd[0]}: error: --out {out} is in use: another process "
                                               "is writing there (a byol-ref train, or an eval --out); wait until it "
                                               "has ended, or choose another --out\n")
        assert cli.main(["eval", str(out)]) == 0  # reading it is not writing in it
    finally:
        os.close(fd)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    class Meanwhile(RunLock):  # a folder that another process made, trained a run in and left, as this one began
        def take(self, path):
            (path / "checkpoint.npz").write_bytes(b"the other run's")
            super().take(path)

    monkeypatch.setattr(cli, "RunLock", Meanwhile)
    assert cli.main(["train", *common, "--out", str(tmp_path / "new")]) == 2
    assert f"run directory {tmp_path / 'new'} exists and is not empty" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["checkpoint.npz"]


@pytest.mark.filterwarnings("error::RuntimeWarning")  # (NumPy's, five of them, came before the message)
def test_train_that_diverges_exits_1_naming_the_step(tmp_path, capsys):
    from byol_ref.cli import main

    res = main(["train", "--data", "synthetic", "--epochs", "2", "--batch-size", "64", "--hidden-size", "8",
                "--projection-dim", "4", "--predictor-dim", "4", "--optimizer", "sgd", "--lr", "1e30",
                "--no-eval", "--no-progress", "--no-plots", "--out", str(tmp_path / "nan")])
    assert res == 1
    err = capsys.readouterr().err
    told = re.search(r"^byol-ref: warning: step (\d+) overflowed float64 \(NumPy reported: [a-z, ]+\), though its "
                     r"loss is finite", err, re.M)
    stopped = re.search(r"^byol-ref: the loss became nan at step (\d+) ", err, re.M)
    assert told and stopped and int(told[1]) < int(stopped[1]) and "RuntimeWarning" not in err, err


def test_probe_options_are_checked(tmp_path, capsys):
    from byol_ref.cli import main

    assert main(["train", "--data", "synthetic", "--labels-per-class", "1", "--out", str(tmp_path / "a")]) == 2
    assert "--labels-per-class >= 2" in capsys.readouterr().err


def test_trace_diff_and_convert_options(tmp_path, capsys):
    from byol_ref.cli import main
    from byol_ref.interchange import transpose_weights
    from byol_ref.trace import Trace, load_trace, save_trace

    a = tmp_path / "a.npz"
    assert main(["trace", "--dims", "5,6,4,3", "--start-step", "3", "--total-steps", "10", "--out", str(a)]) == 0
    tr = load_trace(a)
    assert tr.meta["start_step"] == 3
    assert main(["trace", "--dims", "5,6,4,3,7,9", "--out", str(tmp_path / "x.npz")]) == 2
    assert "--dims must be D,H,P,Q or D,H,P,Q,PH" in capsys.readouterr().err
    assert main(["trace", "--dims", "5,6,4,3", "--inputs", str(a), "--out", str(tmp_path / "x.npz")]) == 2
    assert "exactly one of" in capsys.readouterr().err
    # diff --transpose-weights b transposes B's 2-D weights (to A's layout), a transposes A's
    b = save_trace(tmp_path / "b.npz", Trace(transpose_weights(tr.arrays), tr.meta))
    assert main(["diff", str(a), str(b)]) == 1  # (out, in) against (in, out): shapes differ
    capsys.readouterr()
    w = "init.online.param.encoder.fc1.weight"  # (in, out) = (5, 6) in A
    for side, shape in (("b", [5, 6]), ("a", [6, 5])):
        assert main(["diff", str(a), str(b), "--transpose-weights", side, "--json"]) == 0
        rep = json.loads(capsys.readouterr().out)
        assert next(t for t in rep["tensors"] if t["name"] == w)["shape_a"] == shape
    # convert --partial leaves out what the mapping does not name
    nets = tmp_path / "nets.npz"
    arrays = {k[len("init."):]: v for k, v in tr.arrays.items() if k.startswith("init.") and ".opt." not in k}
    np.savez(nets, **arrays, **{"online.param.extra.weight": np.zeros((2, 2))})
    out = tmp_path / "torch.npz"
    args = ["convert", str(nets), str(out), "--from", "byol-ref", "--to", "torch", "--mapping", "byol-pytorch",
            "--preset", "deepmind"]
    assert main(args) == 2
    assert main([*args, "--partial"]) == 0



SMALL_RUN = ["--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--hidden-size", "8", "--projection-dim",
             "4", "--predictor-dim", "4", "--no-progress", "--no-plots"]


def test_text_the_terminal_cannot_encode_is_escaped_not_fatal(tmp_path):
    r"""On a console whose encoding lacks a character (a Windows cp1252 console, PYTHONIOENCODING=ascii),
    train stopped with status 2 at its first line naming a class ("'charmap' codec can't encode
    character '\u732b'") and trained nothing. What it prints is now escaped, as Python escapes stderr;
    the files it writes are UTF-8 as before."""
    rng = np.random.default_rng(0)
    names = ["caf\u00e9", "\u732b", "dog"]
    rows = [",".join(f"{v:.3f}" for v in rng.standard_normal(3) + i % 3) + "," + names[i % 3] for i in range(90)]
    (tmp_path / "pets.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "run_\u732b"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", PYTHONIOENCODING="ascii")
    said = {}
    for args in (["train", "--data", str(tmp_path / "pets.csv"), "--labels", "-1", "--epochs", "1", "--batch-size",
                  "32", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-progress",
                  "--no-plots", "--out", str(out)], ["eval", str(out), "--out", str(tmp_path / "report_\u732b")]):
        done = subprocess.run([sys.executable, "-m", "byol_ref", *args], capture_output=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr.decode("ascii", "replace")
        said[args[0]] = done.stdout.decode("ascii")  # (escapes only)
    assert r"0 caf\xe9, 1 dog, 2 \u732b" in said["train"]
    assert r"run_\u732b" in said["train"] and r"report_\u732b" in said["eval"] and "BYOL encoder (y)" in said["eval"]
    assert (tmp_path / "report_\u732b" / "report.txt").read_text(encoding="utf-8").startswith("Test accuracy")


def test_train_says_when_the_knn_monitor_scores_a_subset(tmp_path, capsys):
    from byol_ref.cli import main

    assert main(["train", *SMALL_RUN, "--no-eval", "--set", "monitor_rows=50", "--out", str(tmp_path / "a")]) == 0
    assert ("byol-ref: the kNN monitor scores 50 of the 104 test rows against 50 of the 408 train rows, a subset "
            "drawn once (--set monitor_rows=0 for all of them; the report's probes take all)\n") \
        in capsys.readouterr().out
    for rows in ("0", "408"):  # every row: nothing to say
        assert main(["train", *SMALL_RUN, "--no-eval", "--set", f"monitor_rows={rows}", "--out",
                     str(tmp_path / rows)]) == 0
        assert "kNN monitor" not in capsys.readouterr().out


def test_class_names_as_labels_are_said_as_training_starts_and_kept_by_embed(tmp_path, capsys):
    from byol_ref.cli import main

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 4)) + y[:, None]
    table = tmp_path / "iris-like.csv"
    table.write_text("a,b,c,d,species\n" + "\n".join(
        ",".join(f"{v:.3f}" for v in r) + f",{['setosa', 'versicolor', 'virginica'][c]}" for r, c in zip(x, y)) + "\n")
    args = ["--data", str(table), "--labels", "species", "--epochs", "1", "--batch-size", "64", "--hidden-size",
            "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots"]
    assert main(["train", *args, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert ("byol-ref: the labels are 3 class names, read as ids 0..2 in sorted order: 0 setosa, 1 versicolor, "
            "2 virginica\n") in out and "linear" in out
    assert main(["embed", str(tmp_path / "r"), "--out", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz", allow_pickle=False) as f:
        assert f["label_names"].tolist() == ["setosa", "versicolor", "virginica"]
        assert sorted(set(f["labels_train"].tolist())) == [0, 1, 2]


def test_help_shows_only_defaults_that_mean_something():
    """No "(default: None)" (the help says what a missing value means) or "(default: False)" (a
    switch), and no default stated twice."""
    import argparse

    from byol_ref.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "default" in text or name == "diff"
    train = sub.choices["train"].format_help()
    assert "(default: 300)" in train and "(default: batch, or the --preset's" in " ".join(train.split())


def test_refused_settings_leave_no_run_directory_and_probe_options_are_checked_before_training(tmp_path, capsys):
    from byol_ref.cli import main

    cases = [(["--set", "encoder_dim=3"], "encoder_dim=3, but synthetic has 32 features"),
             (["--knn-k", "0"], "--knn-k must be >= 1"),
             (["--knn-k", "1000"], "--knn-k 1000 exceeds the 408 training samples"),
             (["--knn-temperature", "0"], "--knn-temperature must be a positive finite number"),
             (["--seed", "-1"], "error: --seed must be an int >= 0, got -1"),
             (["--tau", "1.5"], "error: --tau (tau_base) must be in [0, 1], got 1.5"),  # the flag typed, and its field
             (["--preset", "deepmind", "--tau", "2"], "error: --tau (tau_base) must be in [0, 1], got 2.0"),
             (["--set", "tau_base=2"], "error: tau_base must be in [0, 1], got 2.0"),  # (the name typed)
             (["--tau", "0.9", "--set", "tau_base=2"], "error: tau_base must be in [0, 1], got 2.0"),  # (--set's)
             (["--set", "epochs=abc"], "--set epochs: expected an int, got 'abc'"),
             (["--data", "mnist"], "--data 'mnist': no such file, and not a built-in data set")]
    for extra, message in cases:
        assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "r"), *extra]) == 2, extra
        assert message in capsys.readouterr().err
        assert not (tmp_path / "r").exists(), extra
    (tmp_path / "afile").write_text("mine")
    assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "afile")]) == 2
    assert "--out" in capsys.readouterr().err and (tmp_path / "afile").read_text() == "mine"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the diverging run overflows on purpose
def test_overwrite_removes_the_replaced_runs_report(tmp_path, capsys):
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 0
    assert (out / "report.json").exists()
    assert main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval", "--seed", "3"]) == 0
    assert not (out / "report.json").exists() and not (out / "report.txt").exists()
    capsys.readouterr()
    # A replacing run that stops before its first checkpoint puts the replaced run back whole; no file of
    # the stopped run stays beside it (its config.json would have --resume continue the old checkpoint
    # under the new settings).
    before = {name: (out / name).read_bytes() for name in ("checkpoint.npz", "config.json", "metrics.jsonl")}
    assert main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval", "--epochs", "3",
                 "--checkpoint-every", "0", "--lr", "1e300"]) == 1
    err = capsys.readouterr().err
    assert "became" in err and "last good checkpoint" not in err
    assert f"the run it was to replace is back in {out}" in err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (out / ".replaced").exists()


def test_overwrite_keeps_the_replaced_run_until_the_first_checkpoint(tmp_path, capsys, monkeypatch):
    import byol_ref.cli as cli

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    old = (out / "checkpoint.npz").read_bytes()
    (out / "notes.txt").write_text("mine")
    seen = []
    real_fit = cli.fit

    def watching_fit(*args, replacing, stop_requested, **kw):
        commit, steps_done = replacing.commit, []

        def step_done():  # (fit asks after each step, before its checkpoint)
            steps_done.append(1)
            return stop_requested()

        def watch():
            seen.append((len(steps_done), (out / ".replaced").exists()))
            commit()
            seen.append((len(steps_done), (out / ".replaced").exists()))
        seen.append(("start", (out / ".replaced" / "checkpoint.npz").read_bytes() == old,
                     (out / "checkpoint.npz").exists()))
        replacing.commit = watch
        return real_fit(*args, replacing=replacing, stop_requested=step_done, **kw)

    monkeypatch.setattr(cli, "fit", watching_fit)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval", "--epochs", "2",
                     "--checkpoint-every", "6", "--seed", "4"]) == 0
    steps = (408 // 64) * 2
    # (the last two: the CLI commits again once fit has returned)
    assert seen == [("start", True, False), (6, True), (6, False), (steps, False), (steps, False),
                    (steps, False), (steps, False)]
    assert (out / "checkpoint.npz").read_bytes() != old and (out / "notes.txt").read_text() == "mine"

    # Ctrl-C before the first checkpoint: the replaced run comes back; exit 130 as for any interrupt.
    def interrupted_fit(dataset, model_cfg, tcfg, *, out_dir, **kw):
        (out_dir / "metrics.jsonl").write_text('{"step": 0}\n')
        raise KeyboardInterrupt

    before = {f.name: f.read_bytes() for f in out.iterdir()}
    monkeypatch.setattr(cli, "fit", interrupted_fit)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval", "--seed", "9"]) == 130
    assert f"interrupted; no checkpoint was written yet, so the run it was to replace is back in {out}" in \
        capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before

    def refusing_fit(dataset, model_cfg, tcfg, *, out_dir, **kw):
        (out_dir / "metrics.jsonl").write_text('{"step": 0}\n')
        raise ValueError("refused by fit")

    monkeypatch.setattr(cli, "fit", refusing_fit)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval", "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert "refused by fit" in err and f"the run it was to replace is back in {out}" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the diverging run overflows on purpose
def test_a_run_set_aside_by_a_killed_overwrite_survives_it(tmp_path, capsys):
    import shlex
    import subprocess

    from byol_ref import cli
    from byol_ref.cli import main

    out = tmp_path / "my run"  # (the advice is a shell command: its paths are quoted)
    assert main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    old = {f.name: f.read_bytes() for f in out.iterdir()}
    aside = out / ".replaced"

    def killed_while_setting_aside(moved, run=old):  # as rundir._move_aside moves a run: its list first
        aside.mkdir()
        (aside / ".files").write_text("".join(f"{name}\n" for name in run))
        for name in moved:
            (out / name).rename(aside / name)

    def killed_before_first_checkpoint():  # the new run wrote its config and the start of its metrics
        (out / "config.json").write_text((aside / "config.json").read_text().replace('"seed": 0', '"seed": 9'))
        (out / "metrics.jsonl").write_text('{"step": 0}\n')

    def advice(err):  # the shell command the message gives to put the run back
        return re.search(r"put it back \((.*)\); or start", err).group(1)

    killed_while_setting_aside(old)
    killed_before_first_checkpoint()
    capsys.readouterr()
    for command in (["train", "--out", str(out), "--resume"], ["eval", str(out)],
                    ["embed", str(out), "--out", str(tmp_path / "f.npz")]):
        assert main(command) == 2
        err = capsys.readouterr().err
        q = shlex.quote
        undo = f"rm {q(str(out / 'config.json'))} {q(str(out / 'metrics.jsonl'))} && mv {q(str(aside))}/* " \
               f"{q(str(out))}/ && rm -r {q(str(aside))}"
        assert f"{out} has no checkpoint: the run an overwrite started there stopped before its first. The run " \
               f"it was replacing is in {aside}; to go on with that one, put it back ({undo}); or start a new " \
               "run" in err
        # (eval's and embed's own --overwrite is another thing: they name train's)
        assert err.rstrip().endswith("with --overwrite" if command[0] == "train" else
                                     f"with {cli._prog()} train ... --out {q(str(out))} --overwrite"), err
    subprocess.run(advice(err), shell=True, check=True)  # the advice followed: the run is back whole
    assert {f.name: f.read_bytes() for f in out.iterdir()} == old
    # A second --overwrite keeps the set-aside run (the last with a checkpoint) until its own checkpoint.
    killed_while_setting_aside(old)
    killed_before_first_checkpoint()
    replace = ["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval"]
    assert main([*replace, "--lr", "1e300", "--checkpoint-every", "0"]) == 1
    assert "holds the run an earlier overwrite set aside" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == old
    # Killed while setting the run aside: the files its list names and it lacks are the replaced run's.
    killed_while_setting_aside(["checkpoint.npz"])
    assert main([*replace, "--lr", "1e300", "--checkpoint-every", "0"]) == 1
    assert {f.name: f.read_bytes() for f in out.iterdir()} == old
    # A replaced run without metrics.jsonl: the killed run's metrics never join it, by hand or not.
    partial = {name: data for name, data in old.items() if name != "metrics.jsonl"}
    (out / "metrics.jsonl").unlink()
    killed_while_setting_aside(partial, run=partial)
    killed_before_first_checkpoint()
    assert main(["train", "--out", str(out), "--resume"]) == 2
    subprocess.run(advice(capsys.readouterr().err), shell=True, check=True)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == partial
    killed_while_setting_aside(partial, run=partial)
    killed_before_first_checkpoint()
    assert main([*replace, "--lr", "1e300", "--checkpoint-every", "0"]) == 1
    assert {f.name: f.read_bytes() for f in out.iterdir()} == partial
    (out / "metrics.jsonl").write_bytes(old["metrics.jsonl"])
    aside.mkdir()  # an empty folder (the rm -r forgotten) counts for nothing
    assert main([*replace, "--seed", "8"]) == 0
    assert not aside.exists() and (out / "checkpoint.npz").read_bytes() != old["checkpoint.npz"]
    # A checkpoint beside a set-aside run: the --overwrite that wrote it was killed before it removed the
    # folder (the checkpoint moves first when set aside, last when put back): the next --resume or
    # --overwrite removes it.
    for command in (["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--no-eval"],
                    [*replace, "--seed", "9"]):
        aside.mkdir()
        (aside / ".files").write_text("config.json\n")
        (aside / "config.json").write_text("{}")  # the replaced run's, and the checkpoint in out the new one's
        capsys.readouterr()
        assert main(command) == 0
        assert f"removing {aside}: it holds the run an --overwrite replaced, which was killed after its first " \
               "checkpoint" in capsys.readouterr().err
        assert not aside.exists() and not (out / ".replaced-removing").exists()
    aside.symlink_to(tmp_path)
    assert main(replace) == 2
    assert f"{aside} is a file or a link" in capsys.readouterr().err


def test_a_replacing_run_keeps_its_first_checkpoint_whatever_stops_it_after(tmp_path, capsys, monkeypatch):
    """Once the new run has written a checkpoint, the replaced run is gone: an interrupt before or
    while its folder is removed, or a failure to remove it, never puts it back over the new one."""
    import byol_ref.cli as cli
    import byol_ref.rundir as rundir

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    real_fit = cli.fit

    def fit_stopped_at_first_checkpoint(*args, replacing, **kw):
        def stop():
            replacing.commit = commit
            raise KeyboardInterrupt  # after the checkpoint was written, before the replaced run was dropped
        commit, replacing.commit = replacing.commit, stop
        return real_fit(*args, replacing=replacing, **kw)

    replace = ["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--no-eval", "--checkpoint-every", "2"]
    monkeypatch.setattr(cli, "fit", fit_stopped_at_first_checkpoint)
    assert cli.main([*replace, "--seed", "5"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; its last checkpoint is at step 2; continue with: " in err
    assert f" train --out {out} --resume" in err and "back in" not in err
    assert not (out / ".replaced").exists() and json.loads((out / "config.json").read_text())[
        "train_config"]["seed"] == 5
    monkeypatch.setattr(cli, "fit", real_fit)
    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress", "--no-eval"]) == 0

    def failing_rmtree(path):
        raise PermissionError(f"[Errno 13] Permission denied: '{path}/training.png'")

    real_rmtree = rundir.shutil.rmtree
    monkeypatch.setattr(rundir.shutil, "rmtree", failing_rmtree)
    assert cli.main([*replace, "--seed", "6"]) == 0
    assert f"could not remove {out / '.replaced-removing'}, which holds the replaced run" in capsys.readouterr().err
    assert json.loads((out / "config.json").read_text())["train_config"]["seed"] == 6
    assert (out / "checkpoint.npz").is_file() and (out / ".replaced-removing" / "checkpoint.npz").is_file()
    assert not (out / ".replaced").exists()
    # What nothing reads goes with the next --overwrite or --resume: that folder, and temporary files
    # of atomic writes cut short.
    monkeypatch.setattr(rundir.shutil, "rmtree", real_rmtree)
    from byol_ref.checkpoint import _host_tag

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = f".checkpoint.npz.{_host_tag()}-{int(done.stdout)}.k2j4.tmp"  # (a writer that has ended)
    live = f".checkpoint.npz.{_host_tag()}-{os.getppid()}.k2j4.tmp"  # a writer still running: its own, not stale
    for name in (killed, live):
        (out / name).write_bytes(b"half")
    (out / ".mine.tmp").write_text("not ours")
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--no-eval"]) == 0
    assert not (out / ".replaced-removing").exists() and (os.name != "posix" or not (out / killed).exists())
    assert (out / ".mine.tmp").read_text() == "not ours" and (out / live).read_bytes() == b"half"


def test_ctrl_c_anywhere_ends_with_status_130_and_says_where_the_run_stands(tmp_path, capsys, monkeypatch):
    import os
    import signal

    import byol_ref.cli as cli
    import byol_ref.rundir as rundir

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def interrupted(*args, **kw):
        raise KeyboardInterrupt

    def ctrl_c(*args, **kw):  # as a user stops it: the signal
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # (never reached: the signal raises at once)

    real_stopped, real_put_back = rundir.Replacing.stopped, rundir._put_back

    def pressed_again(self):  # a second Ctrl-C as the replaced run is put back, and a third inside that
        os.kill(os.getpid(), signal.SIGINT)
        return real_stopped(self)

    def pressed_inside(out, aside):
        os.kill(os.getpid(), signal.SIGINT)
        real_put_back(out, aside)

    monkeypatch.setattr(cli, "fit", ctrl_c)
    monkeypatch.setattr(rundir.Replacing, "stopped", pressed_again)
    monkeypatch.setattr(rundir, "_put_back", pressed_inside)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--seed", "4"]) == 130
    assert "interrupted; no checkpoint was written yet, so the run it was to replace is back" in \
        capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    # A run that diverged is ending already: a Ctrl-C as the run it replaces is put back is dropped, and
    # the command ends on what stopped it (status 1, not 130), its message whole.
    from byol_ref.train import TrainingDiverged

    def diverged(*args, **kw):
        raise TrainingDiverged("the loss is nan at step 1")

    monkeypatch.setattr(cli, "fit", diverged)
    monkeypatch.setattr(rundir, "_put_back", pressed_inside)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--seed", "4"]) == 1
    err = capsys.readouterr().err
    assert err.endswith(f"byol-ref: the loss is nan at step 1\nbyol-ref: the run it was to replace is back in {out}\n")
    assert "interrupted" not in err and {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    # Ctrl-C before the run was set aside: nothing changed, and the message says so (its checkpoint is
    # the replaced run's, which --resume would continue).
    real_set_aside = rundir.Replacing.set_aside

    def pressed_first(self):
        os.kill(os.getpid(), signal.SIGINT)
        real_set_aside(self)

    monkeypatch.setattr(rundir.Replacing, "set_aside", pressed_first)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--seed", "4"]) == 130
    assert f"interrupted; nothing was changed: {out} still holds the run it was to replace" in \
        capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    monkeypatch.undo()

    monkeypatch.setattr(cli, "_report", interrupted)
    assert cli.main(["train", *SMALL_RUN, "--out", str(tmp_path / "e")]) == 130
    err = capsys.readouterr().err
    assert "interrupted in the evaluation; the run is trained and its checkpoint written. Its report and plots: " in err
    assert f" eval {tmp_path / 'e'} --out {tmp_path / 'e'} --overwrite" in err
    monkeypatch.setattr(cli, "_plot_curves_only", interrupted)
    with_plots = [a for a in SMALL_RUN if a != "--no-plots"]
    assert cli.main(["train", *with_plots, "--no-eval", "--out", str(tmp_path / "c")]) == 130
    err = capsys.readouterr().err
    assert "interrupted while drawing the training curves; the run is trained and its checkpoint written" in err
    assert (tmp_path / "c" / "checkpoint.npz").is_file()
    monkeypatch.setattr(cli, "_load_run", interrupted)
    assert cli.main(["eval", str(out)]) == 130
    assert capsys.readouterr().err == "\nbyol-ref eval: interrupted\n"


def test_sigterm_stops_a_command_as_ctrl_c_does_and_ends_with_status_143(tmp_path, capsys, monkeypatch):
    """`kill`, `timeout`, a batch scheduler's end of job: the same clean-up and messages as Ctrl-C."""
    import signal

    import byol_ref.cli as cli
    import byol_ref.rundir as rundir

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def sigterm(*args, **kw):
        # (checked first: with SIGTERM's default action the kill below would end the test process)
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        os.kill(os.getpid(), signal.SIGTERM)
        pytest.fail("the SIGTERM did not stop the command")

    real_stopped = rundir.Replacing.stopped

    def sent_again(self):  # a scheduler that sends SIGTERM twice, and a Ctrl-C on top, as the run is put back
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        return real_stopped(self)

    monkeypatch.setattr(cli, "fit", sigterm)
    monkeypatch.setattr(rundir.Replacing, "stopped", sent_again)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--seed", "4"]) == 143
    assert "terminated (SIGTERM); no checkpoint was written yet, so the run it was to replace is back" in \
        capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    monkeypatch.setattr(cli, "_report", sigterm)
    assert cli.main(["train", *SMALL_RUN, "--out", str(tmp_path / "e")]) == 143
    assert "terminated (SIGTERM) in the evaluation; the run is trained and its checkpoint written" in \
        capsys.readouterr().err
    monkeypatch.setattr(cli, "_load_run", sigterm)
    assert cli.main(["eval", str(out)]) == 143
    assert capsys.readouterr().err == "\nbyol-ref eval: terminated (SIGTERM)\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    def then_ctrl_c(*args, **kw):  # a Ctrl-C (and another SIGTERM) while the first signal unwinds the command
        try:
            sigterm()
        finally:
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGTERM)

    for command in (["eval", str(out)], ["embed", str(out), "--out", str(tmp_path / "f.npz")]):
        monkeypatch.setattr(cli, "_load_run", then_ctrl_c)
        assert cli.main(command) == 143  # the first signal is what stopped it, and its message is whole
        assert capsys.readouterr().err == f"\nbyol-ref {command[0]}: terminated (SIGTERM)\n"
        assert not (tmp_path / "f.npz").exists()


def _sigterm_mid_training(*args, signum=signal.SIGTERM, then=None, preexec_fn=None) -> tuple:
    """Start ``byol-ref train ARGS`` for a very long run, send it a real ``signum`` (SIGTERM) once it
    trains, and ``then`` another a second later if given; (its exit status, its stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    long_run = [a if a != "1" else "100000" for a in SMALL_RUN]  # (--epochs 1 -> 100000: still training)
    proc = subprocess.Popen([sys.executable, "-m", "byol_ref", "train", *long_run, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT, preexec_fn=preexec_fn)
    try:
        assert "training on" in proc.stdout.readline()  # the run directory is ready and fit is starting
        time.sleep(1.0)  # (some steps in)
        proc.send_signal(signum)
        if then is not None:
            time.sleep(1.0)
            assert proc.poll() is None  # still training
            proc.send_signal(then)
        err = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert "Traceback" not in err
    return proc.returncode, err


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP (POSIX)")
def test_a_sighup_mid_training_checkpoints_the_step_and_nohup_keeps_the_run_going(tmp_path):
    """A SIGHUP (the terminal closed, an ssh connection dropped) ended train at once, the steps since
    the last checkpoint lost (and an --overwrite's replaced run left set aside); it now stops as a
    SIGTERM does, with a checkpoint of its step and status 129. Under nohup, which ignores SIGHUP,
    it is ignored still: the run goes on (until the SIGTERM sent after it)."""
    from byol_ref.train import load_checkpoint

    out = tmp_path / "hup"
    status, err = _sigterm_mid_training("--out", str(out), "--checkpoint-every", "0", signum=signal.SIGHUP,
                                        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    assert status == 129, err
    step = load_checkpoint(out / "checkpoint.npz")[0].step
    assert step >= 1 and (f"hung up (SIGHUP: the terminal closed); its last checkpoint is at step {step}; continue "
                          "with: ") in err
    out = tmp_path / "nohup"
    status, err = _sigterm_mid_training("--out", str(out), "--checkpoint-every", "0", signum=signal.SIGHUP,
                                        then=signal.SIGTERM,
                                        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert status == 143 and "terminated (SIGTERM)" in err and "SIGHUP" not in err, err


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="needs a pseudo-terminal (Linux)")
def test_a_train_whose_terminal_closes_stops_with_a_checkpoint_not_on_a_write_error(tmp_path):
    """Closing the terminal a train runs in (its progress bar on it) sends SIGHUP, and every write to
    that terminal fails from then on ("[Errno 5] Input/output error"): the run stopped at once, or,
    had it caught the signal, on its progress bar before the step's checkpoint. It now writes to a
    closed terminal no more, checkpoints its step and ends with status 129."""
    from byol_ref.train import load_checkpoint

    out = tmp_path / "run"
    long_run = [a if a != "1" else "100000" for a in SMALL_RUN if a != "--no-progress"]
    argv = [sys.executable, "-m", "byol_ref", "train", *long_run, "--out", str(out), "--checkpoint-every", "0"]
    status, seen = _close_the_terminal_of(argv, sighup=signal.SIG_DFL)
    assert status == 129, seen
    assert load_checkpoint(out / "checkpoint.npz")[0].step >= 1


def test_only_a_closed_terminal_is_written_to_no_more(tmp_path):
    """The console script's stdout and stderr drop what a closed terminal cannot take, and nothing
    else: an I/O error of a file (a failing disk), or any other error, is raised as it was."""
    import errno
    import io

    from byol_ref.cli import _TerminalMayClose

    class Failing:
        def __init__(self, code, fd):
            self.code, self.fd = code, fd

        def write(self, text):
            raise OSError(self.code, os.strerror(self.code))

        def fileno(self):
            return self.fd

    with open(tmp_path / "log.txt", "w") as log:
        for code in (errno.EIO, errno.ENOSPC):
            with pytest.raises(OSError) as info:
                _TerminalMayClose(Failing(code, log.fileno())).write("x")
            assert info.value.errno == code
    text = _TerminalMayClose(io.StringIO())
    assert text.write("kept") == 4 and text.getvalue() == "kept"  # (everything else is the stream's)


def _close_the_terminal_of(argv, *, sighup) -> tuple:
    """Run ``argv`` (a byol-ref command) on a pseudo-terminal with SIGHUP's action ``sighup``, close
    the terminal once its progress bar shows, and wait for it: (its exit status, what it wrote)."""
    import pty

    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    try:
        pid, terminal = pty.fork()
    except OSError as exc:  # (a container without pseudo-terminals)
        pytest.skip(f"no pseudo-terminal here: {exc}")
    if pid == 0:  # the child: byol-ref, on the terminal (the test runner's own SIGHUP action not inherited)
        try:
            signal.signal(signal.SIGHUP, sighup)
            os.chdir(ROOT)
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)  # (never back into the test runner, in a copy of it)
    seen, deadline = b"", time.monotonic() + 60
    while b" loss " not in seen.split(b"training on", 1)[-1] and time.monotonic() < deadline:
        seen += os.read(terminal, 4096)  # (the progress bar: training has begun)
    os.close(terminal)  # the terminal closes
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), seen.decode(errors="replace")[-2000:]


@pytest.mark.skipif(not hasattr(os, "fork") or sys.platform != "linux", reason="needs a pseudo-terminal (Linux)")
def test_a_train_that_outlives_its_terminal_goes_on_to_its_end(tmp_path):
    """A train left in the background of a shell that exited (no SIGHUP comes then), or run where
    SIGHUP is ignored, failed on its next write to the terminal that had closed ("[Errno 5]
    Input/output error"). It now writes no more there and trains to its end: checkpoint, report."""
    from byol_ref.train import load_checkpoint

    out = tmp_path / "run"
    run_ = [a if a != "1" else "300" for a in SMALL_RUN if a != "--no-progress"]  # (some seconds of training)
    argv = [sys.executable, "-m", "byol_ref", "train", *run_, "--out", str(out)]
    status, seen = _close_the_terminal_of(argv, sighup=signal.SIG_IGN)
    assert status == 0, seen
    assert load_checkpoint(out / "checkpoint.npz")[0].step == 300 * 6 and (out / "report.txt").is_file()


def test_a_real_sigterm_mid_training_checkpoints_the_step_or_puts_the_replaced_run_back(tmp_path):
    """The console script, stopped by a real SIGTERM (`kill`, a scheduler's end of job) while it
    trains: status 143 and a checkpoint of the last step; or, for an --overwrite run without a
    checkpoint of its own, the run it was to replace back byte for byte."""
    from byol_ref.train import load_checkpoint

    fresh = tmp_path / "fresh"
    status, err = _sigterm_mid_training("--out", str(fresh), "--checkpoint-every", "0")
    assert status == 143, err
    step = load_checkpoint(fresh / "checkpoint.npz")[0].step
    assert step >= 1 and f"terminated (SIGTERM); its last checkpoint is at step {step}; continue with: " in err
    assert "byol-ref: stopping once this step is done, with a checkpoint of it" in err  # said as it came
    out = tmp_path / "r"
    assert run("train", *SMALL_RUN, "--out", str(out), "--no-eval").returncode == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    status, err = _sigterm_mid_training("--out", str(out), "--overwrite", "--checkpoint-every", "0", "--seed", "4")
    assert status == 143, err
    assert "terminated (SIGTERM); no checkpoint was written yet, so the run it was to replace is back" in err
    assert "stopping once this step is done" not in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before


def _sigint_in_step(monkeypatch, at: int, times: int = 1, gap: float | None = None) -> None:
    """Press Ctrl-C (real SIGINTs, ``times`` of them, ``gap`` seconds apart: by default far enough
    apart not to be taken for one press relayed) as fit calls train_step for step ``at`` (from 1):
    the handler runs before the step is done (a stop that did not wait would leave it half made)."""
    import signal

    import byol_ref.rundir as rundir
    import byol_ref.train as train

    real_step, calls = train.train_step, []
    gap = rundir.RELAYED_WITHIN_S * 1.5 if gap is None else gap

    def train_step(*args, **kw):
        calls.append(1)
        if len(calls) == at:
            for i in range(times):
                if i and gap:
                    time.sleep(gap)
                os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args, **kw)

    monkeypatch.setattr(train, "train_step", train_step)


def _assert_same_run(whole: Path, resumed: Path) -> None:
    """A resumed run ends bit-identical to one never stopped: every checkpoint array, and metrics.jsonl."""
    with np.load(whole / "checkpoint.npz") as a, np.load(resumed / "checkpoint.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            assert np.array_equal(a[name], b[name]), name
    assert (resumed / "metrics.jsonl").read_text() == (whole / "metrics.jsonl").read_text()


def test_ctrl_c_mid_step_lets_the_step_finish_checkpoints_it_and_resume_is_bit_identical(tmp_path, capsys,
                                                                                           monkeypatch):
    import signal

    from byol_ref.cli import main
    from byol_ref.train import load_checkpoint

    args = [*SMALL_RUN, "--epochs", "2", "--checkpoint-every", "0", "--no-eval"]
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    stopped = tmp_path / "stopped"
    _sigint_in_step(monkeypatch, at=3)
    assert main(["train", *args, "--out", str(stopped)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; its last checkpoint is at step 3; continue with: " in err
    assert f" train --out {stopped} --resume" in err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    assert main(["train", "--out", str(stopped), "--resume", "--no-progress", "--no-eval"]) == 0
    _assert_same_run(tmp_path / "whole", stopped)
    # A second Ctrl-C does not wait: it stops the step where it lands, which is not checkpointed.
    _sigint_in_step(monkeypatch, at=3, times=2)
    assert main(["train", *args, "--out", str(tmp_path / "twice")]) == 130
    assert "interrupted; no checkpoint was written yet" in capsys.readouterr().err
    assert not (tmp_path / "twice" / "checkpoint.npz").exists()
    monkeypatch.undo()
    # Two at once are one Ctrl-C relayed (GNU timeout passes the terminal's on to its child): it waits.
    _sigint_in_step(monkeypatch, at=3, times=2, gap=0)
    assert main(["train", *args, "--out", str(tmp_path / "relayed")]) == 130
    assert "interrupted; its last checkpoint is at step 3" in capsys.readouterr().err
    monkeypatch.undo()
    # Nor does the first wait while a checkpoint would drop the run an --overwrite replaces: it comes back.
    before = {f.name: f.read_bytes() for f in stopped.iterdir()}
    _sigint_in_step(monkeypatch, at=3)
    assert main(["train", *args, "--out", str(stopped), "--overwrite", "--seed", "5"]) == 130
    assert "no checkpoint was written yet, so the run it was to replace is back" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in stopped.iterdir()} == before
    # Once this run has a checkpoint of its own, the replaced run is gone, and the first one waits again.
    _sigint_in_step(monkeypatch, at=3)
    assert main(["train", *args, "--out", str(stopped), "--overwrite", "--seed", "5", "--checkpoint-every",
                 "2"]) == 130
    assert "its last checkpoint is at step 3" in capsys.readouterr().err
    assert not (stopped / ".replaced").exists()
    # An --overwrite that finds no run to set aside (an empty folder, or none) is a fresh run, and says so.
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "absent"):
        _sigint_in_step(monkeypatch, at=3)
        assert main(["train", *args, "--out", str(out), "--overwrite"]) == 130
        err = capsys.readouterr().err
        assert "interrupted; its last checkpoint is at step 3; continue with: " in err and "nothing was" not in err
    # Stopped in its last step, the run is trained: what is left is its report, not a --resume.
    last = load_checkpoint(tmp_path / "whole" / "checkpoint.npz")[0].step
    _sigint_in_step(monkeypatch, at=last)
    assert main(["train", *args, "--out", str(tmp_path / "last")]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; the run is trained (its checkpoint is at its last step, {last}). Its report and " \
           "plots: " in err and "--resume" not in err


def _disk_full_at(monkeypatch, name: str, at: int = 1) -> list:
    """From the ``at``-th atomic write of ``name`` (``checkpoint.npz``, ``report.txt``) on, the disk is
    full once the file is written (before its flush), as ``[Errno 28]``, naming no file, says it.
    Returns the paths of those writes."""
    import errno

    from byol_ref import checkpoint

    real, seen = checkpoint.atomic_write, []

    def atomic_write(path, write):
        if Path(path).name != name:
            return real(path, write)
        seen.append(Path(path))

        def write_then_no_room(f):
            write(f)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(path, write_then_no_room if len(seen) >= at else write)

    monkeypatch.setattr(checkpoint, "atomic_write", atomic_write)
    return seen


def test_a_full_disk_mid_run_keeps_the_last_checkpoint_and_resume_is_bit_identical(tmp_path, capsys, monkeypatch):
    """A write that finds the disk full was ``error: [Errno 28] No space left on device``, status 2
    (bad input): no file named, no word of what was kept nor of how to go on. It names the file, says
    where the run stands as a Ctrl-C does, and is status 1, as memory running out is. The checkpoint
    before it is whole, the temporary file is gone, and a resume once there is room is bit-identical
    to a run never stopped."""
    from byol_ref.cli import main

    args = [*SMALL_RUN, "--epochs", "2", "--checkpoint-every", "2", "--no-eval"]
    assert main(["train", *args, "--out", str(tmp_path / "whole")]) == 0
    stopped = tmp_path / "stopped"
    seen = _disk_full_at(monkeypatch, "checkpoint.npz", at=2)
    assert main(["train", *args, "--out", str(stopped)]) == 1
    assert len(seen) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"byol-ref train: error: [Errno 28] {os.strerror(28)}: '{stopped / 'checkpoint.npz'}' "
                          "(no room left to write it: free some space there, or raise the quota or the file-size "
                          "limit); its last checkpoint is at step 2; continue with: "), err
    assert err.rstrip().endswith(f" train --out {stopped} --resume") and err.count("\n") == 1, err
    assert sorted(f.name for f in stopped.iterdir()) == ["checkpoint.npz", "config.json", "metrics.jsonl"]
    monkeypatch.undo()
    assert main(["train", "--out", str(stopped), "--resume", "--no-progress", "--no-eval"]) == 0
    _assert_same_run(tmp_path / "whole", stopped)
    # Before this run's first checkpoint, the run an --overwrite replaces comes back whole.
    before = {f.name: f.read_bytes() for f in stopped.iterdir()}
    _disk_full_at(monkeypatch, "checkpoint.npz")
    assert main(["train", *args, "--out", str(stopped), "--overwrite", "--seed", "5"]) == 1
    err = capsys.readouterr().err
    assert err.rstrip().endswith(f"limit); no checkpoint was written yet, so the run it was to replace is back in "
                                 f"{stopped}"), err
    assert {f.name: f.read_bytes() for f in stopped.iterdir()} == before
    # A fresh run leaves nothing behind, as a refusal before its first step does: the same command goes again.
    assert main(["train", *args, "--out", str(tmp_path / "fresh")]) == 1
    assert capsys.readouterr().err.rstrip().endswith("limit); then run the command again")
    assert not (tmp_path / "fresh").exists()


def test_a_full_disk_at_the_report_keeps_the_trained_run(tmp_path, capsys, monkeypatch):
    """Training done, a report that finds no room names the file it was to be in the run directory
    (not the staging folder it is written in), leaves no half report, and says how to make it."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    _disk_full_at(monkeypatch, "report.txt")
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 1
    err = capsys.readouterr().err.splitlines()[-1]  # (after "probing the features ...")
    assert err.startswith(f"byol-ref train: error: [Errno 28] {os.strerror(28)}: '{out / 'report.txt'}' (no room "
                          "left to write it: free some space there, or raise the quota or the file-size limit); the "
                          "run is trained and its checkpoint written. Its report and plots: "), err
    assert err.rstrip().endswith(f" eval {out} --out {out} --overwrite"), err
    assert sorted(f.name for f in out.iterdir()) == ["checkpoint.npz", "config.json", "metrics.jsonl"]
    monkeypatch.undo()
    assert main(["eval", str(out), "--out", str(out), "--overwrite"]) == 0
    assert (out / "report.txt").is_file()
    capsys.readouterr()
    # eval, embed and the other commands: the file named, status 1, and the command to run again.
    _disk_full_at(monkeypatch, "features.npz")
    assert main(["embed", str(out), "--out", str(tmp_path / "features.npz")]) == 1
    assert capsys.readouterr().err == (f"byol-ref embed: error: [Errno 28] {os.strerror(28)}: "
                                       f"'{tmp_path / 'features.npz'}' (no room left to write it: free some space "
                                       "there, or raise the quota or the file-size limit); then run the command "
                                       "again\n")
    assert not (tmp_path / "features.npz").exists() and sorted(f.name for f in tmp_path.iterdir()) == ["r"]


def _unwritable(monkeypatch, folder: Path, *, read_only: bool) -> None:
    """``folder`` as the OS shows one nothing can be written in: on a read-only mount, or without
    write permission for this user (neither can be made here: the tests may run as root)."""
    import types

    real_access = os.access

    def access(path, mode, **kw):
        if Path(path).absolute() == folder.absolute() and mode & os.W_OK:
            return False
        return real_access(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
    flag = getattr(os, "ST_RDONLY", 1) if read_only else 0
    monkeypatch.setattr(os, "statvfs", lambda path: types.SimpleNamespace(f_flag=flag), raising=False)


def test_an_output_folder_nothing_can_be_written_in_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """eval --out on a read-only file system probed for a minute, then said "[Errno 30] Read-only
    file system" of its staging folder; train --resume said "continue with: ... --resume", the command
    that had just failed, and embed named its temporary file. Each now refuses before the work, naming
    the folder and why, and the run is left as it was."""
    from byol_ref import report
    from byol_ref.cli import main

    run = tmp_path / "run"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run)]) == 0
    before = {f.name: f.read_bytes() for f in run.iterdir()}
    capsys.readouterr()
    out = tmp_path / "ro"
    out.mkdir()
    monkeypatch.setattr(report, "evaluate_features", lambda *a, **kw: pytest.fail("probed"))
    _unwritable(monkeypatch, out, read_only=True)
    assert main(["eval", str(run), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"byol-ref eval: error: --out {out} cannot be written: it is on a file "
                                       "system mounted read-only; choose another --out\n")
    assert main(["embed", str(run), "--out", str(out / "f.npz")]) == 2
    assert capsys.readouterr().err == (f"byol-ref embed: error: --out {out / 'f.npz'}: its folder {out} cannot be "
                                       "written: it is on a file system mounted read-only; choose another path\n")
    assert main(["embed", str(run), "--out", str(out / "a" / "f.npz")]) == 2
    assert f"--out {out / 'a' / 'f.npz'}: the folder {out} cannot be written" in capsys.readouterr().err
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    _unwritable(monkeypatch, run, read_only=False)
    assert main(["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: --out {run} cannot be written: this user may not "
                                       "write in it; make it writable, or copy the run to a folder that is and "
                                       "resume the copy\n")
    assert main(["train", *SMALL_RUN, "--out", str(run), "--overwrite"]) == 2
    assert capsys.readouterr().err.endswith("this user may not write in it; choose another --out\n")
    assert {f.name: f.read_bytes() for f in run.iterdir()} == before
    from byol_ref import train
    from byol_ref.data import synthetic
    with pytest.raises(PermissionError, match=rf"^out_dir {re.escape(str(run))} cannot be written: this user may "
                                              "not write in it; choose another out_dir$"):
        train.fit(synthetic(n=64, dim=6, seed=0), train.Config(encoder_dim=6), train.TrainConfig(epochs=1),
                  out_dir=run, progress=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write in any folder")
def test_a_folder_without_write_permission_is_refused_by_the_os_own_word(tmp_path):
    """The same refusal from the OS's own permissions, where the tests run as a user."""
    from byol_ref.checks import check_writable

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match=r"^--out L cannot be written: this user may not write in it; go$"):
            check_writable(locked, "--out L", "go")
        check_writable(tmp_path, "--out T", "go")
    finally:
        locked.chmod(0o755)


def test_a_file_or_folder_the_os_refuses_is_named_by_its_argument_and_the_right_missing(tmp_path, capsys,
                                                                                        monkeypatch):
    """Where the OS refused a file (no right to read it, to write in its folder, to enter a folder on
    the way; a read-only mount), the command said Python's "[Errno 13] Permission denied: '/x/run'":
    not which argument, nor which right, nor where. It now names the argument, the right and the folder
    it lacks, and what to do. (The refusals are made here, as the tests may run as root; the next test
    has the OS's own, where they run as a user.)"""
    import errno
    from pathlib import Path as P

    from byol_ref import cli
    from byol_ref import trace as trace_module
    from byol_ref.cli import main

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(64, 6)))

    def refused(path, code=errno.EACCES):
        def call(*args, **kwargs):
            raise PermissionError(code, os.strerror(code), str(path))
        return call

    monkeypatch.setattr(cli, "load_file", refused(data))
    as_a_user(monkeypatch, unreadable=[data])
    assert main(["train", *SMALL_RUN, "--data", str(data), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: --data {data} cannot be read: this user may not "
                                       "read it; give this user the right to read it, or copy it where they may\n")
    monkeypatch.undo()

    locked, real_mkdir = tmp_path / "locked", P.mkdir
    locked.mkdir()
    out = locked / "a" / "run"

    def mkdir(self, *args, **kwargs):
        if locked in self.absolute().parents:  # (the first folder to be made under it is refused)
            raise PermissionError(errno.EACCES, "Permission denied",
                                  str(locked / self.absolute().relative_to(locked).parts[0]))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(P, "mkdir", mkdir)
    as_a_user(monkeypatch, unwritable=[locked])
    assert main(["train", *SMALL_RUN, "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: --out {out} (at {locked / 'a'}) cannot be written: "
                                       f"this user may not write in {locked}; choose another --out, where this user "
                                       "may write\n")
    monkeypatch.chdir(locked)  # without --out: runs/<data>-<time> in a folder this user may not write in
    assert main(["train", *SMALL_RUN]) == 2
    assert re.fullmatch(rf"byol-ref train: error: the run directory \(no --out given\) runs/synthetic-[-0-9]+ \(at "
                        rf"{re.escape(str(locked / 'runs'))}\) cannot be written: this user may not write in "
                        rf"{re.escape(str(locked))}; choose one with --out, where this user may write\n",
                        capsys.readouterr().err)
    monkeypatch.undo()

    closed = tmp_path / "closed"
    closed.mkdir()
    trace = closed / "t.npz"
    monkeypatch.setattr(trace_module, "load_trace", refused(trace))
    as_a_user(monkeypatch, closed=[closed])
    assert main(["diff", str(data), str(trace)]) == 2
    assert capsys.readouterr().err == (f"byol-ref diff: error: trace B {trace} cannot be read: this user may not "
                                       f"enter {closed}; give this user the right to read it, or copy it where "
                                       "they may\n")
    monkeypatch.undo()

    monkeypatch.setattr(cli, "load_file", refused(tmp_path / "r2", errno.EROFS))
    assert main(["train", *SMALL_RUN, "--data", str(data), "--out", str(tmp_path / "r2")]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: --out {tmp_path / 'r2'} cannot be written: it is "
                                       "on a file system mounted read-only; choose another --out, where this user "
                                       "may write\n")


def test_why_refused_says_which_right_is_missing_and_is_silent_on_other_errors(tmp_path, monkeypatch):
    """checks.why_refused, the reason the messages above give: it asks the OS about the file and the
    folders above it, and says nothing of an error that is no refusal (a missing file, a full disk)."""
    import errno

    from byol_ref.checks import why_refused

    f = tmp_path / "f.npz"
    f.write_bytes(b"")

    def denied(path, code=errno.EACCES):
        return PermissionError(code, os.strerror(code), str(path))

    assert why_refused(FileNotFoundError(errno.ENOENT, "No such file", str(f))) is None
    assert why_refused(OSError(errno.ENOSPC, "No space left", str(f))) is None
    assert why_refused(PermissionError("no file named")) is None
    assert why_refused(denied(f, errno.EROFS)) == "it is on a file system mounted read-only"
    with monkeypatch.context() as m:
        as_a_user(m, unreadable=[f])
        assert why_refused(denied(f)) == "this user may not read it"
    with monkeypatch.context() as m:
        as_a_user(m, unwritable=[tmp_path])
        assert why_refused(denied(tmp_path / "new")) == f"this user may not write in {tmp_path}"
        assert why_refused(denied(tmp_path / "a" / "b")) == (f"this user may not write in {tmp_path}, the "
                                                                "nearest folder of the path that exists")
    with monkeypatch.context() as m:
        as_a_user(m, closed=[tmp_path])
        assert why_refused(denied(tmp_path / "a" / "b")) == f"this user may not enter {tmp_path}"
        assert why_refused(denied(f)) == f"this user may not enter {tmp_path}"
    with monkeypatch.context() as m:  # (the folder that hides the rest is named, not the one the file is in)
        as_a_user(m, closed=[tmp_path.parent])
        assert why_refused(denied(f)) == f"this user may not enter {tmp_path.parent}"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may read and write anything")
def test_the_os_own_refusals_are_named_by_their_argument(tmp_path, capsys):
    """The messages of the test above from the OS's own permissions, where the tests run as a user."""
    from byol_ref.cli import main

    data = tmp_path / "x.npy"
    np.save(data, np.random.default_rng(0).normal(size=(64, 6)))
    locked = tmp_path / "locked"
    locked.mkdir()
    try:
        data.chmod(0)
        assert main(["train", *SMALL_RUN, "--data", str(data), "--out", str(tmp_path / "r")]) == 2
        assert capsys.readouterr().err.startswith(f"byol-ref train: error: --data {data} cannot be read: this "
                                                  "user may not read it;")
        data.chmod(0o644)
        locked.chmod(0o555)
        assert main(["train", *SMALL_RUN, "--out", str(locked / "a" / "run")]) == 2
        assert capsys.readouterr().err.startswith(f"byol-ref train: error: --out {locked / 'a' / 'run'} (at "
                                                  f"{locked / 'a'}) cannot be written: this user may not write "
                                                  f"in {locked};")
        locked.chmod(0)
        assert main(["diff", str(data), str(locked / "t.npz")]) == 2
        assert capsys.readouterr().err.startswith(f"byol-ref diff: error: trace B {locked / 't.npz'} cannot be "
                                                  f"read: this user may not enter {locked};")
    finally:
        data.chmod(0o644)
        locked.chmod(0o755)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file limits")
def test_a_write_past_the_file_size_limit_is_told_as_a_full_disk(tmp_path):
    """The kernel's own refusal (``ulimit -f``: EFBIG, "File too large"), not a stand-in: the
    checkpoint, larger than the limit, is named, and the fresh run leaves nothing."""
    import resource

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # (a write past it then fails)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))  # above config.json, below the checkpoint

    out = tmp_path / "r"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "byol_ref", "train", *SMALL_RUN, "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300, preexec_fn=limited)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"byol-ref train: error: [Errno 27] {os.strerror(27)}: '{out / 'checkpoint.npz'}' "
                                  "(no room left to write it"), done.stderr
    assert not out.exists()


@pytest.mark.skipif(shutil.which("timeout") is None or not hasattr(os, "killpg"), reason="needs GNU timeout, POSIX")
def test_a_ctrl_c_relayed_by_timeout_still_waits_for_its_step(tmp_path):
    """The terminal's Ctrl-C goes to the process group, and `timeout` passes it on to its child too:
    byol-ref gets two at once, which are one press, not a second one that stops without a checkpoint."""
    import signal

    from byol_ref.train import load_checkpoint

    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    long_run = [a if a != "1" else "100000" for a in SMALL_RUN]
    for attempt in range(3):  # (a stop that did not wait might still, by the timing, find the step done)
        out = tmp_path / f"r{attempt}"
        proc = subprocess.Popen(["timeout", "300", sys.executable, "-m", "byol_ref", "train", *long_run, "--out",
                                 str(out), "--checkpoint-every", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT, start_new_session=True)  # (a group, as a terminal's job)
        try:
            assert "training on" in proc.stdout.readline()
            time.sleep(0.5)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: to timeout and to byol-ref, which timeout relays it to
            err = proc.communicate(timeout=120)[1]
        finally:
            proc.kill()
        assert proc.returncode == 130, err
        step = load_checkpoint(out / "checkpoint.npz")[0].step
        assert f"interrupted; its last checkpoint is at step {step}" in err


def test_interrupts_are_held_while_a_run_moves(tmp_path):
    import os
    import signal

    from byol_ref.rundir import interrupts_held

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")
    assert done == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupts_held():
        pass  # no signal, nothing raised
    with interrupts_held(reraise=False):
        os.kill(os.getpid(), signal.SIGINT)  # dropped: the command is ending on one already
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)  # a hold inside a hold is the outer one's
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # and one hold leaves nothing behind for the next
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("moves", [1, 2, 4])
def test_a_run_killed_while_it_moves_leaves_no_checkpoint_beside_a_partial_run(tmp_path, monkeypatch, moves):
    """The checkpoint is set aside first and put back last: a checkpoint in the run directory
    beside a .replaced folder that holds files is never the replaced run's (the next --overwrite
    and the advice rely on it), and the folder's list tells the rest apart."""
    import byol_ref.cli as cli
    import byol_ref.rundir as rundir

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out)]) == 0
    old = {f.name: f.read_bytes() for f in out.iterdir()}
    assert len(old) > 4  # checkpoint, config, metrics and the reports
    real_replace, done = os.replace, []

    class Killed(BaseException):
        pass

    def replace_then_die(src, dst):
        if Path(src).name.endswith(".tmp"):  # (an atomic write: the folder's list)
            return real_replace(src, dst)
        if len(done) == moves:
            raise Killed
        real_replace(src, dst)
        done.append(Path(src).name)

    monkeypatch.setattr(rundir.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        rundir._move_aside(out)
    assert done[0] == "checkpoint.npz" and not (out / "checkpoint.npz").exists()
    monkeypatch.setattr(rundir.os, "replace", real_replace)
    assert rundir._move_aside(out) == out / ".replaced"  # the next --overwrite finishes the move
    assert {f.name for f in (out / ".replaced").iterdir()} == {*old, ".files"}
    (out / "config.json").write_text("{}")  # the killed run's
    done.clear()
    monkeypatch.setattr(rundir.os, "replace", replace_then_die)
    with pytest.raises(Killed):
        rundir._put_back(out, out / ".replaced")
    assert "checkpoint.npz" not in done and not (out / "checkpoint.npz").exists()
    monkeypatch.setattr(rundir.os, "replace", real_replace)
    rundir._put_back(out, out / ".replaced")  # (what Replacing.stopped of the next run would do)
    assert {f.name: f.read_bytes() for f in out.iterdir()} == old


_KILLED_AT_A_RENAME = """
import os, signal, sys
from byol_ref.cli import main

at, renames, real_replace = int(sys.argv[1]), [], os.replace


def replace(src, dst):  # SIGKILL (no clean-up runs) in place of the at-th rename of the command
    if len(renames) == at:
        os.kill(os.getpid(), signal.SIGKILL)
    renames.append(dst)
    real_replace(src, dst)


os.replace = replace
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_an_overwrite_killed_at_any_rename_keeps_the_old_run_or_has_a_checkpoint_and_the_advice_restores(
        tmp_path, capsys):
    """Crash consistency of train --overwrite, end to end: a real process SIGKILLed in place of each
    of its renames in turn (the run set aside file by file, config.json, each checkpoint, the drop
    of .replaced) until one runs to the end. After each kill: every file there is whole, the old
    run is byte for byte in the run directory or .replaced unless the new run has a checkpoint,
    and the next --resume either continues or says, in one line, how to put the old run back;
    following that advice brings it back whole, and --resume then works."""
    from byol_ref.checkpoint import load
    from byol_ref.cli import main

    template = tmp_path / "old"
    assert main(["train", *SMALL_RUN, "--out", str(template), "--no-eval", "--seed", "3"]) == 0
    for name in ("report.txt", "report.json"):  # (stand-ins: a report is set aside like any run file)
        (template / name).write_text(json.dumps({"old": name}))
    old = {f.name: f.read_bytes() for f in template.iterdir()}
    new = ["train", *SMALL_RUN, "--no-eval", "--seed", "4", "--checkpoint-every", "3", "--overwrite"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    resume = ["train", "--resume", "--no-progress", "--no-eval", "--no-plots"]
    outcomes = []
    for at in range(40):
        out = tmp_path / f"r{at}"
        shutil.copytree(template, out)
        done = subprocess.run([sys.executable, "-c", _KILLED_AT_A_RENAME, str(at), *new, "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            break  # every rename of the command has had its kill
        assert done.returncode == -9, done.stderr
        for f in out.rglob("*"):  # nothing half-written, but the temporaries of writes the kill cut short
            if f.is_file() and not f.name.endswith(".tmp") and ".replaced-removing" not in f.parts:
                if f.suffix == ".npz":
                    load(f)
                elif f.suffix == ".json":
                    json.loads(f.read_text())
                elif f.suffix == ".jsonl":  # (records written whole: a torn last line would be a SIGKILL's
                    [json.loads(line) for line in f.read_text().splitlines()]  # mid-write, not a rename's)
        ckpt = out / "checkpoint.npz"
        replaced = ckpt.is_file() and ckpt.read_bytes() != old["checkpoint.npz"]
        if not replaced:
            for name, data in old.items():
                assert data in [(d / name).read_bytes() for d in (out, out / ".replaced") if (d / name).is_file()], \
                    (at, name, sorted(str(f.relative_to(out)) for f in out.rglob("*")))
        capsys.readouterr()
        status = main([*resume, "--out", str(out)])
        err = capsys.readouterr().err
        if status != 0:  # the new run has no checkpoint: the message says how to put the old one back
            assert status == 2 and not replaced and "Traceback" not in err, (at, err)
            undo = re.search(r"put it back \((.*)\); or start a new run with --overwrite", err)
            assert undo, (at, err)
            subprocess.run(undo.group(1), shell=True, check=True)
            # (a temporary file of the killed run's config.json stays until the next write of it)
            assert {f.name: f.read_bytes() for f in out.iterdir() if not f.name.endswith(".tmp")} == old, at
            assert main([*resume, "--out", str(out)]) == 0, capsys.readouterr().err
        assert not [f.name for f in out.iterdir() if f.name.startswith(".")], at  # (.replaced, temporaries)
        outcomes.append("new" if replaced else "old" if status == 0 else "put back")
    else:
        pytest.fail("the --overwrite did not reach its end in 40 renames")
    # the kills landed on both sides of the first checkpoint, and between the moves of the set-aside
    assert {"old", "put back", "new"} <= set(outcomes) and len(outcomes) > 8, outcomes


def test_replacing_a_run_without_a_checkpoint_that_fails_puts_it_back_whole(tmp_path, capsys, monkeypatch):
    """A run that stopped before its first checkpoint is still the user's: an --overwrite refused
    by fit puts it back, and the clean-up of a half-made run must not take it for one."""
    import byol_ref.cli as cli

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    (out / "checkpoint.npz").unlink()
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def refusing_fit(dataset, model_cfg, tcfg, *, out_dir, **kw):
        raise ValueError("refused by fit")

    monkeypatch.setattr(cli, "fit", refusing_fit)
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--overwrite", "--seed", "3"]) == 2
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    monkeypatch.undo()
    (out / ".replaced").mkdir()  # an empty folder beside it says nothing of where a run is
    capsys.readouterr()
    assert cli.main(["eval", str(out)]) == 2
    assert ".replaced" not in capsys.readouterr().err


def test_a_data_file_changed_since_the_run_trained_is_noticed(tmp_path, capsys):
    """A run reads its data file again, drawing its split anew: a changed file would put rows it
    trained on into the test split without a word. The run records the files' SHA-256: --resume
    refuses a changed file, eval and embed warn."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((60, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0] > 0.5).astype(np.int64))
    out = tmp_path / "r"
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--epochs", "1",
                 "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4",
                 "--no-progress", "--no-eval", "--no-plots", "--out", str(out)]) == 0
    data = json.loads((out / "config.json").read_text())["data"]
    assert len(data["data_sha256"]) == len(data["labels_sha256"]) == 64
    capsys.readouterr()
    assert main(["eval", str(out), "--knn-k", "5"]) == 0
    assert "warning" not in capsys.readouterr().err
    np.save(tmp_path / "y.npy", (x[:, 1] > 0.5).astype(np.int64))  # other labels, same shape
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert f"--resume: {str(tmp_path / 'y.npy')!r} has changed since the run trained (its SHA-256 differs from " \
           f"the one recorded in {out / 'config.json'}); a run continues on the data it trained on" in \
        capsys.readouterr().err
    assert main(["embed", str(out), "--out", str(tmp_path / "f.npz")]) == 0
    assert "warning: " + repr(str(tmp_path / "y.npy")) + " has changed since the run trained" in \
        capsys.readouterr().err
    assert main(["eval", str(out), "--knn-k", "5", "--data", str(tmp_path / "x.npy"), "--labels",
                 str(tmp_path / "y.npy")]) == 0  # named on the command line: knowingly
    assert "warning" not in capsys.readouterr().err
    record = json.loads((out / "config.json").read_text())
    for edit in ({"data_sha256": None}, {"data_sha256": "abc"}, {"x_sha256": "0" * 64},  # the file was edited
                 {"data_sha256": "0" * 63}, {"labels": 3}):  # (a digit short; a column beside the SHA-256 of a file)
        (out / "config.json").write_text(json.dumps({**record, "data": {**record["data"], **edit}}))
        assert main(["eval", str(out)]) == 2
        assert f"records {{'data_sha256': {({**record['data'], **edit})['data_sha256']!r}, 'labels_sha256': " in \
            capsys.readouterr().err
    (out / "config.json").write_text(json.dumps(record))
    (tmp_path / "y.npy").rename(tmp_path / "gone.npy")  # a labels file that is gone is named as such, as the
    assert main(["eval", str(out)]) == 2  # record the user never typed in this command (it said "labels: no such file")
    assert (f"{out / 'config.json'} records the labels file {str(tmp_path / 'y.npy')!r}, which does not exist (moved, "
            "or a path relative to another folder?); pass --data PATH and --labels to name the data") in \
        capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
    assert (f"records the labels file {str(tmp_path / 'y.npy')!r}, which does not exist (moved, or a path relative to "
            f"another folder?); correct the \"labels\" record in {out / 'config.json'} (--resume reads the labels "
            "from there)") in capsys.readouterr().err
    (tmp_path / "gone.npy").rename(tmp_path / "y.npy")
    # A label column named like a file is a column, as load_file reads it, even beside such a file: no
    # file recorded, nothing hashed but the data.
    rows = "\n".join(",".join(f"{v:.6f}" for v in r) + f",{int(r[0] > 0.5)}" for r in x)
    (tmp_path / "c.csv").write_text("a,b,c,d,y.csv\n" + rows + "\n")
    (tmp_path / "y.csv").write_text("0\n1\n")  # an unrelated file of that name
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["train", "--data", "c.csv", "--labels", "y.csv", "--epochs", "1", "--batch-size", "16",
                     "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-progress",
                     "--no-eval", "--no-plots", "--out", "c"]) == 0
    finally:
        os.chdir(cwd)
    data = json.loads((tmp_path / "c" / "config.json").read_text())["data"]
    assert data["labels"] == "y.csv" and "labels_sha256" not in data and "data_sha256" in data
    assert main(["eval", str(tmp_path / "c"), "--knn-k", "5"]) == 0


def test_a_run_records_the_header_its_csv_was_read_with(tmp_path, capsys):
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((40, 3))
    rows = "\n".join(",".join(repr(float(v)) for v in r) + f",{i % 2}" for i, r in enumerate(x))
    (tmp_path / "h.csv").write_text("f1,2,3,y\n" + rows + "\n")  # a header --labels names a field of
    (tmp_path / "x.txt").write_text(rows + "\n")  # .txt is read as CSV
    small = ["--epochs", "1", "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4",
             "--predictor-dim", "4", "--no-progress", "--no-plots", "--no-eval"]
    for name, labels, header in (("h.csv", "y", "yes"), ("x.txt", "3", "no")):
        out = tmp_path / name.replace(".", "_")
        assert main(["train", "--data", str(tmp_path / name), "--labels", labels, *small, "--out", str(out)]) == 0
        assert json.loads((out / "config.json").read_text())["data"]["csv_header"] == header
        assert main(["eval", str(out), "--knn-k", "5"]) == 0


def test_train_lets_one_ctrl_c_through_and_none_where_it_is_ignored():
    import os
    import signal

    from byol_ref.rundir import first_interrupt_only, interrupts_held

    stopped = []
    with first_interrupt_only():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            stopped.append("first")
        os.kill(os.getpid(), signal.SIGINT)  # ignored: the first one is being handled
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)  # held, and then dropped for the same reason
    assert stopped == ["first"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):  # each train command lets its own first one through
        with first_interrupt_only():
            with interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
    # Started with Ctrl-C ignored (a job in the background of a script): it stays ignored.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with first_interrupt_only(), interrupts_held():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_the_console_script_ignores_ctrl_c_once_a_command_ended_on_one(monkeypatch):
    """Else a second Ctrl-C as the interpreter shuts down prints a traceback after the message."""
    import signal

    import byol_ref.cli as cli

    before = {signum: signal.getsignal(signum) for signum in cli.ENDS}
    for status, sigterm in ((130, signal.SIG_IGN), (143, signal.SIG_IGN), (129, signal.SIG_IGN), (0, signal.SIG_DFL),
                            (2, signal.SIG_DFL)):
        monkeypatch.setattr(cli, "main", lambda: status)
        try:
            assert cli.console_main() == status
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # the command is over, whatever its end
            assert signal.getsignal(signal.SIGTERM) is sigterm  # (143 would belie a Ctrl-C's message)
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            for signum, handler in before.items():  # (SIGHUP too: as the test process had it)
                signal.signal(signum, handler)


def test_csv_header_is_recorded_kept_on_resume_and_given_to_eval_with_data(tmp_path, capsys):
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((80, 4))
    text = "0,1,2,3,4\n" + "\n".join(",".join(repr(float(v)) for v in r) + f",{i % 2}" for i, r in enumerate(x))
    (tmp_path / "p.csv").write_text(text + "\n")  # as pandas writes a table without column names
    out = tmp_path / "r"
    args = ["train", "--data", str(tmp_path / "p.csv"), "--labels", "4", "--epochs", "1", "--batch-size", "16",
            "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots",
            "--no-eval", "--out", str(out)]
    assert main(args) == 2
    assert "Say which: header=True or header=False (on the command line, --csv-header yes or no)" in \
        capsys.readouterr().err
    assert main([*args, "--csv-header", "yes"]) == 0
    assert "(64 train / 16 test, 4 features)" in capsys.readouterr().out  # 80 samples, not 81
    assert json.loads((out / "config.json").read_text())["data"]["csv_header"] == "yes"
    assert main(["train", "--out", str(out), "--resume", "--csv-header", "no"]) == 2
    assert "--csv-header no (run: yes)" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--csv-header", "yes", "--epochs", "2", "--no-progress",
                 "--no-eval", "--no-plots"]) == 0
    assert main(["eval", str(out), "--knn-k", "5"]) == 0  # the run's data, read as the run read them
    capsys.readouterr()
    assert main(["eval", str(out), "--csv-header", "yes"]) == 2
    assert "--csv-header yes goes with --data" in capsys.readouterr().err
    assert main(["eval", str(out), "--data", str(tmp_path / "p.csv"), "--labels", "4", "--knn-k", "5"]) == 2
    assert "Say which: header=True or header=False" in capsys.readouterr().err
    assert main(["eval", str(out), "--data", str(tmp_path / "p.csv"), "--labels", "4", "--csv-header", "yes",
                 "--knn-k", "5"]) == 0
    capsys.readouterr()
    assert main([*args[:-2], "--out", str(tmp_path / "d"), "--csv-header", "no", "--data", "digits"]) == 2
    assert "--csv-header no is for a .csv --data, not the built-in digits" in capsys.readouterr().err
    # so is --labels (it was ignored, and recorded in config.json as if it had counted)
    assert main([*args[:-2], "--out", str(tmp_path / "d"), "--labels", "y.npy", "--data", "synthetic"]) == 2
    assert "--labels y.npy is for a file --data; the built-in synthetic has its own labels" in capsys.readouterr().err
    assert main(["eval", str(out), "--data", "digits", "--labels", "0"]) == 2 and not (tmp_path / "d").exists()
    assert "--labels 0 is for a file --data; the built-in digits" in capsys.readouterr().err
    np.save(tmp_path / "x.npy", x)
    assert main(["embed", str(out), "--out", str(tmp_path / "f.npz"), "--data", str(tmp_path / "x.npy"),
                 "--csv-header", "no"]) == 2
    assert f"--csv-header no is for a .csv --data; {tmp_path / 'x.npy'} is not one" in capsys.readouterr().err
    assert not (tmp_path / "d").exists() and not (tmp_path / "f.npz").exists()


def test_csv_header_takes_a_csv_whose_suffix_is_upper_case(tmp_path):
    """A .CSV (or .TXT) file is a CSV file to --csv-header as it is to the reader: it was refused
    as "not a .csv --data"."""
    from byol_ref.cli import _load_data

    rows = "\n".join(f"{i % 3}.5,{i}.25,{i % 2}" for i in range(12))
    for name in ("d.CSV", "d.TXT"):
        (tmp_path / name).write_text("a,b,label\n" + rows + "\n")
        data = _load_data({"data": str(tmp_path / name), "labels": "label", "csv_header": "yes"})
        assert data.x_train.shape[1] == 2


def test_a_run_reads_its_csv_as_it_did_whatever_the_rule_says_now(tmp_path, capsys):
    """A run records the header its CSV was read with. A record without one (runs before the
    --csv-header option) is read by the rule of its time: a header when a field is not a number,
    so a first row 0,1,2,... was data; resume, eval and embed must not start asking about it."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((80, 4))
    body = "\n".join(",".join(repr(float(v)) for v in r) + f",{i % 2}" for i, r in enumerate(x))
    (tmp_path / "named.csv").write_text("a,b,c,d,label\n" + body + "\n")
    (tmp_path / "p.csv").write_text("0,1,2,3,0\n" + body + "\n")  # its first line was data to those runs
    small = ["--epochs", "1", "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4",
             "--predictor-dim", "4", "--no-progress", "--no-plots", "--no-eval"]
    assert main(["train", "--data", str(tmp_path / "named.csv"), "--labels", "label", *small,
                 "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "config.json").read_text())["data"]["csv_header"] == "yes"  # resolved
    out = tmp_path / "old"
    assert main(["train", "--data", str(tmp_path / "p.csv"), "--labels", "4", "--csv-header", "no", *small,
                 "--out", str(out)]) == 0
    assert "(65 train / 16 test, 4 features)" in capsys.readouterr().out  # 81 samples: the first line is one
    for legacy in (None, "auto"):
        record = json.loads((out / "config.json").read_text())
        record["data"].pop("csv_header")
        if legacy:
            record["data"]["csv_header"] = legacy
        (out / "config.json").write_text(json.dumps(record))
        assert main(["eval", str(out), "--knn-k", "5", "--json"]) == 0
        assert main(["embed", str(out), "--out", str(tmp_path / f"{legacy}.npz")]) == 0
        assert np.load(tmp_path / f"{legacy}.npz")["encoder_train"].shape[0] == 65
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--no-eval"]) == 0
        assert json.loads((out / "config.json").read_text())["data"]["csv_header"] == "no"  # now recorded
        assert main(["train", "--out", str(out), "--resume", "--csv-header", "yes"]) == 2
        assert "--csv-header yes (run: no)" in capsys.readouterr().err
    # The default said outright asks for what the run's rule made of its file: no other header.
    assert main(["train", "--out", str(out), "--resume", "--epochs", "3", "--csv-header", "auto", "--no-progress",
                 "--no-eval"]) == 0
    record["data"]["csv_header"] = "maybe"
    (out / "config.json").write_text(json.dumps(record))
    assert main(["eval", str(out)]) == 2
    assert f"{out / 'config.json'} records csv_header 'maybe', expected one of ['auto', 'yes', 'no']" in \
        capsys.readouterr().err


def test_a_damaged_config_or_metrics_record_is_named_and_never_a_traceback(tmp_path, capsys):
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    cfg = out / "config.json"
    good = json.loads(cfg.read_text())
    capsys.readouterr()

    def edited(**change):
        record = json.loads(json.dumps(good))
        for path, value in change.items():
            part, key = path.split("__")
            record[part][key] = value
        return json.dumps(record)

    for text, says in (
            ("[" * 100_000, "is not JSON that byol-ref reads: nested deeper"),
            ('{"data": {}, "data": {}}', r"gives \['data'\] more than once"),
            (json.dumps({**good, "train_config": 1.5}), r"expected an object with objects \['model_config', "
                                                        r"'train_config', 'data'\], got \{'model_config': 'dict', "
                                                        r"'train_config': 'float', 'data': 'dict'\}"),
            (edited(train_config__batch_size=100000), r"disagree on the run's settings \(batch_size: 64 in the "
                                                      r"checkpoint, 100000 in config.json\)"),  # not --batch-size
            (edited(data__csv_header=["yes"]), r"records csv_header \['yes'\], expected one of"),
            (edited(data__data="."), r"records the data file '.', which is a directory"),
            (edited(train_config__lr="fast"), "records settings no run has"),
            (edited(data__data_seed=1.5), r"records labels None and data_seed 1.5 for the data, which no run writes"),
            (edited(data__data_seed=True), r"records labels None and data_seed True for the data"),
            (edited(data__data_seed=-1), r"records labels None and data_seed -1 for the data"),
            (edited(data__labels=True), r"records labels True and data_seed 0 for the data"),
            # (a record from before data_seed was kept: its runs drew with 0, which the message shows)
            (json.dumps({**good, "data": {**{k: v for k, v in good["data"].items() if k != "data_seed"},
                                          "labels": True}}), r"records labels True and data_seed 0 for the data"),
            (edited(train_config__lars_eta=1.5), r"disagree on the run's settings \(lars_eta: 0.001 in the "
                                                 r"checkpoint, 1.5 in config.json\)")):
        cfg.write_text(text)
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert str(cfg) in err and re.search(says, err), err
    cfg.write_text(json.dumps(good))

    # metrics.jsonl lines the plots cannot draw are left out with a note; non-UTF-8 bytes do not stop a resume.
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    junk = ['{"step": 3}', '{"step": 4, "z_std": 0.1}', '{"step": 5, "knn": null}', '{"step": "6"}',
            '{"step": 7, "knn": 0.5, "lr": "' + "a" * 100_000 + '"}', "[" * 10_000, "[1, 2]",
            '{"step": 9, "knn": true}', '{"step": 10, "knn": NaN}']
    metrics.write_bytes(("\n".join(lines[:2] + junk) + "\n").encode() + b'{"step": 8, "x": "\xff"}\n')
    assert main(["eval", str(out), "--out", str(tmp_path / "e"), "--knn-k", "5"]) == 0
    err = capsys.readouterr().err
    noted = [int(m) for m in re.findall(r"line (\d+) of \S+ is not a record of ours; the plots leave it out", err)]
    assert noted == [4, 5, 6, 8, 9, 10, 11]  # z_std alone, knn null, step "6", too deep, a list, knn true, knn NaN
    from byol_ref.plots import have_matplotlib
    assert (tmp_path / "e" / "training.png").is_file() == have_matplotlib()  # (the plot extra: drawn from the rest)
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--no-eval"]) == 0


def test_a_metrics_record_with_an_integer_beyond_a_floats_range_is_left_out_with_a_note(tmp_path, capsys):
    """A metrics.jsonl line edited to hold an integer no float holds ("step": 1 and 400 zeros): eval's
    plots failed on its OverflowError, and the report lost training.png, probes.png and features.png,
    said as "drawing them failed (OverflowError: int too large to convert to float)", naming no file.
    The line is left out with the note other lines the plots cannot draw get; the rest are drawn."""
    from byol_ref.cli import _read_history

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 0, "knn": 0.5}\n{"step": 1' + "0" * 400 + ', "knn": 0.5}\n'
                       '{"step": 2, "knn": 0.1' + "0" * 400 + '1}\n')
    assert _read_history(metrics) == [{"step": 0, "knn": 0.5}, {"step": 2, "knn": 0.1}]
    assert capsys.readouterr().err == (f"byol-ref: note: line 2 of {metrics} is not a record of ours; the plots "
                                       "leave it out\n")


def test_a_metrics_record_whose_std_ratio_cannot_be_drawn_is_left_out_with_a_note(tmp_path, capsys):
    """A metrics.jsonl step record edited to hold z_std_healthy 0, or one so small that z_std over it
    overflows: the plots draw that ratio, and eval's report lost every plot to "drawing them failed
    (ZeroDivisionError: float division by zero)" or matplotlib's "Axis limits cannot be NaN or Inf".
    The line is left out with the note other lines the plots cannot draw get; the rest are drawn."""
    from byol_ref.cli import _read_history
    from byol_ref.plots import have_matplotlib, plot_run

    step = {"step": 1, "loss": 1.0, "lr": 0.1, "tau": 0.99, "z_std": 0.3, "z_std_healthy": 0.5, "z_rank": 2.0,
            "y_rank": 3.0}
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({**step, **change}) + "\n" for change in (
        {}, {"step": 2, "z_std_healthy": 0}, {"step": 3, "z_std_healthy": 0.0}, {"step": 4, "z_std": 1e308,
                                                                                  "z_std_healthy": 1e-300})))
    assert _read_history(metrics) == [step]
    assert capsys.readouterr().err == "".join(f"byol-ref: note: line {i} of {metrics} is not a record of ours; the "
                                              "plots leave it out\n" for i in (2, 3, 4))
    if have_matplotlib():
        assert [p.name for p in plot_run(_read_history(metrics), None, tmp_path)] == ["training.png"]


def test_an_edited_image_shape_or_full_scale_record_is_told_as_config_jsons(tmp_path, capsys):
    """config.json edited to record an image_shape or full_scale no run writes (["x"], 5, -255, 0): train
    --resume and eval said "--image-shape must be (H, W) or (C, H, W) of positive ints, got ('x',)", of a
    flag they were not given, or "'int' object is not iterable". They name config.json and the record."""
    from byol_ref.cli import _read_run_config, main

    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(size=(24, 4)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--image-shape", "2x2", "--epochs", "1", "--batch-size",
                 "4", "--hidden-size", "2", "--projection-dim", "2", "--predictor-dim", "2", "--no-progress",
                 "--no-eval", "--no-plots", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["image_shape"] == [2, 2]
    for change in ({"image_shape": ["x"]}, {"image_shape": 5}, {"full_scale": -255}, {"full_scale": 0},
                   {"full_scale": "255"}):
        record = {**config["data"], **change}
        (out / "config.json").write_text(json.dumps({**config, "data": record}))
        capsys.readouterr()
        for cmd in (["train", "--out", str(out), "--resume", "--no-progress", "--no-eval", "--no-plots"],
                    ["embed", str(out), "--out", str(tmp_path / "f.npz")]):
            assert main(cmd) == 2
            assert capsys.readouterr().err.startswith(
                f"byol-ref {cmd[0]}: error: {out / 'config.json'} records image_shape {record['image_shape']!r} and "
                f"full_scale {record.get('full_scale')!r} for the data, which no run writes"), (change, cmd)
    # --full-scale takes any number > 0, a fraction too (pixels stored as 0..0.5): so does the record
    for scale in (0.5, 1e-3):
        (out / "config.json").write_text(json.dumps({**config, "data": {**config["data"], "full_scale": scale}}))
        assert _read_run_config(out / "config.json")["data"]["full_scale"] == scale


def test_a_run_reads_its_own_data_as_it_did_before_the_new_refusals(tmp_path, capsys):
    """An .npz with a key outside its layout, a CSV with an unnamed column of row numbers: refused
    for a new run, but a run trained on one before (here: the file changed under it, as such a
    file was) still evaluates, embeds and resumes on it."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((80, 4))
    y = np.arange(80) % 2
    small = ["--epochs", "1", "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4",
             "--predictor-dim", "4", "--no-progress", "--no-plots", "--no-eval"]
    np.savez(tmp_path / "d.npz", x=x, y=y)
    csv = "\n".join(f"{i}," + ",".join(repr(float(v)) for v in r) + f",{c}" for i, (r, c) in enumerate(zip(x, y)))
    (tmp_path / "d.csv").write_text("id,a,b,c,d,label\n" + csv + "\n")
    for name, extra in (("d.npz", []), ("d.csv", ["--labels", "label"])):
        out = tmp_path / name.replace(".", "_")
        assert main(["train", "--data", str(tmp_path / name), *extra, *small, "--out", str(out)]) == 0
        record = json.loads((out / "config.json").read_text())  # as runs of that time recorded it: no SHA-256
        del record["data"]["data_sha256"]  # (with one, --resume refuses a changed file: see the test above)
        (out / "config.json").write_text(json.dumps(record))
    np.savez(tmp_path / "d.npz", x=x, y=y, classes=np.array(["even", "odd"]))
    (tmp_path / "d.csv").write_text(",a,b,c,d,label\n" + csv + "\n")  # R's write.csv heads its row names so
    for name, says in (("d.npz", "and nothing else; got ['classes', 'x', 'y']"),
                       ("d.csv", "its first column has no name and holds 80 distinct whole numbers")):
        out = tmp_path / name.replace(".", "_")
        capsys.readouterr()
        assert main(["train", "--data", str(tmp_path / name), "--labels", "label", *small,
                     "--out", str(tmp_path / "new")]) == 2  # a new run: refused
        assert says in capsys.readouterr().err
        assert main(["eval", str(out), "--knn-k", "5"]) == 0
        assert main(["embed", str(out), "--out", str(tmp_path / f"{name}.features.npz")]) == 0
        assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--no-eval"]) == 0


def test_eval_of_a_run_whose_record_is_damaged_or_whose_data_moved(tmp_path, capsys):
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((80, 6))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.arange(80) % 2)
    out = tmp_path / "r"
    args = ["train", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--epochs", "1",
            "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4",
            "--no-progress", "--no-plots", "--no-eval", "--out", str(out)]
    assert main(args) == 0
    saved = json.loads((out / "config.json").read_text())["data"]
    assert Path(saved["data"]).is_absolute() and Path(saved["labels"]).is_absolute()  # found from any folder
    assert main(["eval", str(out), "--knn-k", "5"]) == 0
    assert main(["eval", str(out), "--labels", str(tmp_path / "y.npy")]) == 2
    assert "--labels goes with --data" in capsys.readouterr().err
    (tmp_path / "x.npy").rename(tmp_path / "moved.npy")
    assert main(["eval", str(out)]) == 2
    assert "records the data file" in capsys.readouterr().err
    assert main(["eval", str(out), "--data", str(tmp_path / "moved.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--knn-k", "5"]) == 0
    record = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**record, "data": {**record["data"], "data": 5}}))
    assert main(["eval", str(out)]) == 2
    assert "records the data as 5, expected 'digits', 'synthetic' or a file path" in capsys.readouterr().err
    (out / "config.json").write_text("{}")
    assert main(["eval", str(out)]) == 2
    assert "is not a byol-ref run's config.json: expected an object with" in capsys.readouterr().err
    assert main(["eval", str(out / "config.json")]) == 2
    assert "is not an .npz (zip) file, so not a byol-ref checkpoint" in capsys.readouterr().err


def test_trace_and_convert_never_write_over_a_file_unless_asked(tmp_path, capsys):
    from byol_ref.cli import main

    mine = tmp_path / "mine.npz"
    np.savez(mine, keep=np.ones(3))
    trace = ["trace", "--dims", "5,6,4,3"]
    assert main([*trace, "--out", str(mine)]) == 2
    assert "--out" in capsys.readouterr().err and np.load(mine)["keep"].tolist() == [1, 1, 1]
    assert main([*trace, "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main([*trace, "--out", str(mine), "--overwrite"]) == 0
    assert main([*trace, "--steps", "0", "--out", str(tmp_path / "t0.npz")]) == 2
    assert "steps must be an int >= 1, got 0" in capsys.readouterr().err
    other = tmp_path / "other.npz"
    np.savez(other, keep=np.ones(2))
    conv = ["convert", str(mine), str(other), "--from", "byol-ref", "--to", "byol-ref"]
    assert main(conv) == 2
    assert "dst" in capsys.readouterr().err and np.load(other)["keep"].tolist() == [1, 1]
    assert main([*conv, "--overwrite"]) == 0


def test_convert_reads_a_run_keeps_views_and_refuses_to_write_nothing(tmp_path, capsys):
    from byol_ref.cli import main
    from byol_ref.train import load_checkpoint

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    sd = tmp_path / "sd.npz"
    assert main(["convert", str(run_dir), str(sd), "--from", "byol-ref", "--to", "torch", "--mapping",
                 "byol-pytorch"]) == 0
    assert "read the online and target networks" in capsys.readouterr().err
    state = load_checkpoint(run_dir / "checkpoint.npz")[0]
    torch_sd = dict(np.load(sd))
    assert np.array_equal(torch_sd["online_encoder.net.0.weight"], state.online.params["encoder.fc1.weight"].T)
    views = {"view1": np.zeros((4, 32)), "view2": np.ones((4, 32))}
    np.savez(tmp_path / "with_views.npz", **torch_sd, **views)
    back = tmp_path / "back.npz"
    assert main(["convert", str(tmp_path / "with_views.npz"), str(back), "--from", "torch", "--to", "byol-ref",
                 "--mapping", "byol-pytorch"]) == 0
    assert "kept 2 view array(s) unchanged: view1, view2" in capsys.readouterr().err
    got = dict(np.load(back))
    assert np.array_equal(got["view2"], views["view2"])
    assert np.array_equal(got["online.param.encoder.fc1.weight"], state.online.params["encoder.fc1.weight"])
    np.savez(tmp_path / "foreign.npz", **{"classifier.weight": np.zeros((2, 2))})
    assert main(["convert", str(tmp_path / "foreign.npz"), str(tmp_path / "none.npz"), "--from", "byol-ref",
                 "--to", "torch", "--mapping", "lightly", "--partial"]) == 2
    assert "nothing to write" in capsys.readouterr().err and not (tmp_path / "none.npz").exists()
    assert main(["convert", str(run_dir), str(tmp_path / "x.npz"), "--from", "torch", "--to", "byol-ref",
                 "--mapping", "lightly"]) == 2
    assert "is a byol-ref run or checkpoint, so its layout is byol-ref: pass --from byol-ref" in capsys.readouterr().err
    assert main(["convert", str(tmp_path), str(tmp_path / "x.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "lightly"]) == 2
    assert "is a directory without a checkpoint.npz" in capsys.readouterr().err


def test_a_folder_where_a_file_is_expected_is_named_as_such(tmp_path, capsys):
    from byol_ref.cli import main

    assert main(["trace", "--inputs", str(tmp_path), "--out", str(tmp_path / "t.npz")]) == 2
    assert f"{tmp_path} is a directory; expected an .npz file" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    assert f"--data {str(tmp_path)!r} is a directory; expected 'digits', 'synthetic' or a .npy/.npz/.csv " \
           "feature file" in capsys.readouterr().err
    assert main(["diff", str(tmp_path), str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    # A folder of images, or an image file: how to give byol-ref images (it said only "path must end in ...").
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "a.png").write_bytes(b"")
    stack = "; byol-ref reads no image files: stack the images into one array of shape (N, H, W) or (N, C, H, W)"
    assert main(["train", "--data", str(tmp_path / "shots"), "--out", str(tmp_path / "r")]) == 2
    assert "is a directory; expected 'digits', 'synthetic' or a .npy/.npz/.csv feature file" + stack in \
        capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "shots" / "a.png"), "--out", str(tmp_path / "r")]) == 2
    assert (f"--data {str(tmp_path / 'shots' / 'a.png')!r} is no .npy, .npz or .csv file; expected 'digits', "
            "'synthetic' or a feature file of those" + stack) in capsys.readouterr().err
    (tmp_path / "d.dat").write_bytes(b"")
    assert main(["train", "--data", str(tmp_path / "d.dat"), "--out", str(tmp_path / "r")]) == 2
    assert "is no .npy, .npz or .csv file; expected 'digits', 'synthetic' or a feature file of those\n" in \
        capsys.readouterr().err


def test_training_curves_are_drawn_without_an_evaluation(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from byol_ref.cli import main

    common = [a for a in SMALL_RUN if a != "--no-plots"]
    assert main(["train", *common, "--no-eval", "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "training.png").is_file() and not (tmp_path / "a" / "report.json").exists()
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((80, 6)))  # no labels: nothing to probe
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--epochs", "2", "--batch-size", "16", "--hidden-size",
                 "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "training.png").is_file()
    assert "nothing to probe" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "b"), "--json"]) == 0  # still JSON for whatever parses it
    said = json.loads(capsys.readouterr().out)
    assert said["rows"] == [] and said["skipped"].startswith("the data set has no labels")


def test_an_interrupted_run_says_how_to_continue(tmp_path, capsys, monkeypatch):
    from byol_ref import cli

    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--epochs", "2", "--no-eval",  # 408 // 64 = 6 steps an epoch
                     "--out", str(out)]) == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "fit", interrupted)
    assert cli.main(["train", *SMALL_RUN, "--epochs", "3", "--out", str(out), "--resume"]) == 130
    err = capsys.readouterr().err
    assert "interrupted; its last checkpoint is at step 12; continue with: " in err and f"--out {out} --resume" in err
    assert cli.main(["train", *SMALL_RUN, "--out", str(tmp_path / "new")]) == 130
    assert "no checkpoint was written yet; start again with:" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`byol-ref diff ... | head -1`: the reader leaves; no "error", no usage exit status."""
    from byol_ref.trace import Trace, save_trace

    a = save_trace(tmp_path / "a.npz", Trace({f"t{i}": np.zeros(1) for i in range(3000)}, {}))
    b = save_trace(tmp_path / "b.npz", Trace({f"t{i}": np.ones(1) for i in range(3000)}, {}))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    with subprocess.Popen([sys.executable, "-m", "byol_ref", "diff", a, b, "--all"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, env=env) as proc:  # (the with closes the pipes: no ResourceWarning)
        proc.stdout.readline()
        proc.stdout.close()  # as head does after its line
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141 and err == ""


def test_a_closed_pipe_during_train_ends_quietly_not_as_a_full_disk(tmp_path, capsys, monkeypatch):
    """A BrokenPipeError is an OSError: train's handling of a full disk (an error message, where the
    run stands) must not take `byol-ref train | head` for one, in training or in the report."""
    from byol_ref import cli
    from byol_ref.cli import main

    real_fit, real_report = cli.fit, cli._report

    def fit_then_pipe_closed(*args, **kwargs):
        real_fit(*args, **kwargs)
        raise BrokenPipeError(32, "Broken pipe")

    def report_pipe_closed(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe")

    spare = os.open(os.devnull, os.O_WRONLY)  # (what main points its stdout at /dev/null over: not pytest's)
    monkeypatch.setattr(cli.sys.stdout, "fileno", lambda: spare, raising=False)
    for patch in (("fit", fit_then_pipe_closed), ("_report", report_pipe_closed)):
        monkeypatch.setattr(cli, *patch)
        out = tmp_path / patch[0]
        assert main(["train", *SMALL_RUN, "--out", str(out)]) == 141
        assert capsys.readouterr().err.count("error") == 0
        assert (out / "checkpoint.npz").is_file()
        monkeypatch.setattr(cli, "fit", real_fit)
        monkeypatch.setattr(cli, "_report", real_report)
    os.close(spare)


def test_options_that_would_be_ignored_are_refused(tmp_path, capsys):
    from byol_ref.cli import main

    assert main(["trace", "--dims", "5,6,4,3", "--mapping", "lightly", "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert "--mapping renames PyTorch state_dict or Axon names: it goes with --layout torch or axon" in err
    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    for extra in (["--preset", "lightly"], ["--set", "head_bias=true"]):
        assert main(["convert", str(run_dir), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch",
                     "--mapping", "lightly", *extra]) == 2
        assert "whose checkpoint fixes the network's structure; drop --preset/--set" in capsys.readouterr().err


# --------------------------------------------------------------------------- mutation audit (third)


def test_resume_compares_data_files_as_files_and_refuses_a_new_seed_or_data_seed(tmp_path, capsys, monkeypatch):
    """A run given relative data paths records them absolute (eval and --resume find them from any
    folder); the same files given again by their relative paths are the run's own, while a --seed
    or --data-seed other than the run's is refused, not silently ignored."""
    from byol_ref.cli import main

    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.random.default_rng(0).random((80, 6)))
    np.save("y.npy", np.arange(80) % 2)
    args = ["train", "--data", "x.npy", "--labels", "y.npy", "--batch-size", "16", "--hidden-size", "8",
            "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots", "--no-eval", "--out", "r"]
    assert main([*args, "--epochs", "1"]) == 0
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["data"]
    assert Path(saved["data"]).is_absolute() and Path(saved["labels"]).is_absolute()
    assert Path(saved["data"]) == (tmp_path / "x.npy").resolve()
    capsys.readouterr()
    assert main([*args, "--epochs", "2", "--resume"]) == 0, capsys.readouterr().err
    assert "(step 8 of the run)" in capsys.readouterr().out
    for extra, message in ((["--seed", "7"], "seed 7 (run: 0)"), (["--data-seed", "5"], "--data-seed 5 (run: 0)")):
        assert main([*args, "--epochs", "2", "--resume", *extra]) == 2, extra
        assert message in capsys.readouterr().err
    # the seed alone, with nothing else the run compares, is refused too
    assert main(["train", "--resume", "--out", "r", "--epochs", "2", "--seed", "7", "--no-eval", "--no-progress"]) == 2
    assert "seed 7 (run: 0)" in capsys.readouterr().err
    # a run from before config.json recorded its data seed drew its split with 0: --data-seed 0 is its own
    cfg = tmp_path / "r" / "config.json"
    record = json.loads(cfg.read_text())
    del record["data"]["data_seed"]
    cfg.write_text(json.dumps(record))
    assert main([*args, "--epochs", "2", "--resume", "--data-seed", "1"]) == 2
    assert "--data-seed 1 (run: 0)" in capsys.readouterr().err
    assert main([*args, "--epochs", "3", "--resume", "--data-seed", "0"]) == 0, capsys.readouterr().err


def test_resume_compares_a_file_name_with_none_as_a_name(tmp_path, capsys):
    """--resume --labels None names a labels file called None: it is not the labels the run did not
    record (None), so it is refused like any other labels (compared as text, the two were the same)."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--labels", "None", "--no-progress", "--no-eval"]) == 2
    assert "but the command line asks for others: --labels None (run: None)" in capsys.readouterr().err


def test_resume_of_a_preset_run_compares_its_derived_warm_up_at_the_runs_own_length(tmp_path, capsys):
    """deepmind's warm-up, 10 epochs capped at the run, depends on --epochs below 10: a resume that
    extends the run with the same --preset is not a changed setting."""
    from byol_ref.cli import main

    args = ["train", *SMALL_RUN, "--preset", "deepmind", "--no-eval", "--out", str(tmp_path / "p")]
    assert main(args) == 0
    capsys.readouterr()
    assert main([*args, "--resume", "--epochs", "3"]) == 0, capsys.readouterr().err
    saved = json.loads((tmp_path / "p" / "config.json").read_text())["train_config"]
    assert saved["epochs"] == 3 and saved["warmup_epochs"] == 1.0  # the run's, from 1 epoch


def test_resume_shorter_than_the_runs_warm_up_says_so(tmp_path, capsys):
    """A run's warm-up is fixed when it starts (5% of a 300-epoch run is 15 epochs); --resume --epochs
    below it was refused as "warmup_epochs must be in [0, 5], got 15.0", naming neither --resume nor
    the run, and what to ask for instead."""
    from byol_ref.cli import main

    out = tmp_path / "w"
    args = ["train", *SMALL_RUN[2:], "--epochs", "4", "--set", "warmup_epochs=3", "--no-eval", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--no-eval", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "warmup_epochs must be in" not in err
    assert (f"--resume: {out} warms up over its first 3 epochs (warmup_epochs, fixed when the run started); "
            "--epochs 2 would end it inside that warm-up: ask for at least 3 epochs") in err
    assert json.loads((out / "config.json").read_text())["train_config"]["epochs"] == 4  # not rewritten


def test_resume_at_the_runs_warm_up_is_no_warm_up_error_and_a_fractional_one_asks_for_whole_epochs(tmp_path,
                                                                                                    capsys):
    """Found by a mutation audit: --epochs equal to the warm-up (which TrainConfig takes) refused as inside
    it, --epochs 0 refused as inside it, and the epochs to ask for rounded down (at least 3 for a warm-up
    of 3.5 epochs) each passed every test."""
    from byol_ref.cli import main

    out = tmp_path / "w"
    assert main(["train", *SMALL_RUN[2:], "--epochs", "4", "--set", "warmup_epochs=3.5", "--no-eval", "--out",
                 str(out)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--epochs", "3", "--no-eval", "--no-progress"]) == 2
    assert ("would end it inside that warm-up: ask for at least 4 epochs\n") in capsys.readouterr().err
    for epochs in ("0", "-2"):  # (no run length: refused as such, not as inside the warm-up)
        assert main(["train", "--resume", "--out", str(out), "--epochs", epochs, "--no-eval", "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert "warms up" not in err and f"epochs must be an int >= 1, got {epochs}" in err, err
    assert main(["train", *SMALL_RUN[2:], "--epochs", "4", "--set", "warmup_epochs=3", "--no-eval", "--out",
                 str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--epochs", "3", "--no-eval", "--no-progress"]) == 2
    err = capsys.readouterr().err  # (the run is past 3 epochs: refused as cut short, not as inside its warm-up)
    assert "warms up" not in err and "a resumed run can be extended, not cut short: ask for at least 4 epochs" in err


def test_the_embed_command_eval_prints_runs_as_printed(tmp_path, capsys):
    """eval's footer names the embed command for the features it probed. For a checkpoint without its
    config.json (eval needs --data there) it left --data out, so the command printed was refused:
    "has no config.json beside it to say which data its run trained on; pass --data"."""
    from byol_ref.cli import main

    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(tmp_path / "r")]) == 0
    alone = tmp_path / "alone" / "c.npz"
    alone.parent.mkdir()
    shutil.copy(tmp_path / "r" / "checkpoint.npz", alone)
    capsys.readouterr()
    assert main(["eval", str(alone), "--data", "synthetic", "--out", str(tmp_path / "rep"), "--knn-k", "5"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Features for your own probes: ")]
    assert len(line) == 1
    argv = shlex.split(line[0].split(": ", 1)[1])
    argv = argv[argv.index("embed"):]
    assert argv == ["embed", str(alone), "--data", "synthetic", "--out", str(tmp_path / "rep" / "features.npz"),
                    "--baselines"]
    assert main(argv) == 0, capsys.readouterr().err


def test_the_embed_commands_eval_prints_quote_the_paths_and_name_unlabelled_data(tmp_path, capsys):
    """Found by a mutation audit: with the path's quoting dropped from the footer, or --data dropped from
    the hint eval prints for data without labels, every test passed (no path held a space, and no eval
    of a checkpoint alone had unlabelled data)."""
    from byol_ref.cli import main

    where = tmp_path / "a folder"
    where.mkdir()
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(where / "r")]) == 0
    alone = where / "c.npz"
    shutil.copy(where / "r" / "checkpoint.npz", alone)
    x = np.random.default_rng(0).standard_normal((40, 32))
    np.save(where / "x.npy", x)
    capsys.readouterr()
    assert main(["eval", str(alone), "--data", "synthetic", "--out", str(where / "rep"), "--knn-k", "5"]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Features for your own probes: ")]
    argv = shlex.split(line[0].split(": ", 1)[1])
    assert argv[argv.index("embed"):] == ["embed", str(alone), "--data", "synthetic", "--out",
                                          str(where / "rep" / "features.npz"), "--baselines"]
    assert main(["eval", str(alone), "--data", str(where / "x.npy")]) == 0
    out = capsys.readouterr().out
    hint = out.split("nothing to probe; ", 1)[1].split(" writes the features")[0]
    argv = shlex.split(hint)
    assert argv[argv.index("embed"):] == ["embed", str(alone), "--data", str(where / "x.npy"), "--out",
                                          "features.npz"], out


def test_the_commands_a_stopped_train_prints_run_as_printed_whatever_the_folder_is_called(tmp_path, capsys,
                                                                                           monkeypatch):
    """The --resume and eval commands a stop prints (Ctrl-C, a full disk) took the run directory
    unquoted: a folder with a space in its name gave a command that named two folders, neither the
    run's. Run through the shell as printed, each now goes on with the run."""
    from byol_ref import cli
    from byol_ref.cli import main

    out = tmp_path / "Jo's run $HOME"
    args = [*SMALL_RUN, "--epochs", "2", "--checkpoint-every", "0", "--no-eval"]
    _sigint_in_step(monkeypatch, at=3)
    assert main(["train", *args, "--out", str(out)]) == 130
    monkeypatch.undo()
    env = dict(os.environ, PYTHONPATH=str(ROOT), OPENBLAS_NUM_THREADS="1")
    resume = capsys.readouterr().err.split("continue with: ", 1)[1].strip()
    assert shlex.split(resume)[-3:] == ["--out", str(out), "--resume"]
    done = subprocess.run(resume + " --no-progress --no-eval", shell=True, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and f"run directory {out}" in done.stdout, done.stderr
    _disk_full_at(monkeypatch, "report.txt")
    assert main(["train", *SMALL_RUN, "--out", str(out), "--overwrite"]) == 1
    report = capsys.readouterr().err.split("Its report and plots: ", 1)[1].strip()
    assert shlex.split(report)[-5:] == ["eval", str(out), "--out", str(out), "--overwrite"]
    done = subprocess.run(report, shell=True, capture_output=True, text=True, env=env)
    assert done.returncode == 0 and (out / "report.txt").is_file(), done.stderr
    # the interpreter, too, is one word however its path reads
    monkeypatch.setattr(cli.sys, "executable", "/opt/my python/bin/python3")
    monkeypatch.setattr(cli.sys, "argv", ["x"])
    assert cli._prog() == "'/opt/my python/bin/python3' -m byol_ref"


def test_a_run_a_later_byol_ref_wrote_is_not_called_edited(tiny_run, tmp_path, capsys):
    """A run written by a later release, with a setting this one does not know, was refused as "the file
    was edited" (--resume) or "metadata is incomplete or invalid" (eval, embed): the way on is to
    upgrade, which neither said. A run of this release with such a setting is still called edited."""
    import shutil

    from byol_ref import __version__
    from byol_ref.cli import main

    def written_by(version):
        out = tmp_path / version
        shutil.copytree(tiny_run[0], out)
        with np.load(out / "checkpoint.npz", allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays["meta"]))
        meta["model_config"]["future_option"] = 3
        meta["written_by"]["byol_ref"] = version
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(out / "checkpoint.npz", **arrays)
        config = json.loads((out / "config.json").read_text())
        config["model_config"]["future_option"] = 3
        (out / "config.json").write_text(json.dumps(config))
        return out

    later = written_by("99.0.1")
    for cmd in (["eval", str(later)], ["embed", str(later), "--out", str(tmp_path / "f.npz")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert (f"{later / 'checkpoint.npz'} was written by byol-ref 99.0.1, a later release than this one "
                f"({__version__}), with settings this one does not know (unknown Config field(s) ['future_option']"
                in err) and err.rstrip().endswith("; upgrade byol-ref to read it")
    assert main(["train", "--out", str(later), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"--resume: {later} was written by byol-ref 99.0.1, a later release than this one ({__version__})" in err
    assert err.rstrip().endswith("; upgrade byol-ref to continue it")
    same = written_by(__version__)
    assert main(["eval", str(same)]) == 2
    assert "checkpoint metadata is incomplete or invalid (unknown Config field(s)" in capsys.readouterr().err
    assert main(["train", "--out", str(same), "--resume", "--no-progress"]) == 2
    assert "records settings no run has (unknown Config field(s)" in capsys.readouterr().err


@pytest.mark.skipif(os.name == "nt", reason="no flock on this platform: RunLock holds nothing there")
def test_eval_and_embed_say_when_the_checkpoint_is_not_the_end_of_its_run(tmp_path, capsys, monkeypatch):
    """eval of a run stopped at step 3 of 12 (or of one still training) printed and wrote a report
    that read as the finished run's, and embed wrote its features without a word: neither said which
    step the checkpoint is. They now say it (eval at the head of report.txt, --json and embed on
    stderr), report.json records checkpoint_step and total_steps, and a finished run has no note."""
    import fcntl

    from byol_ref import checkpoint as ckpt
    from byol_ref.cli import main

    out = tmp_path / "r"
    _sigint_in_step(monkeypatch, at=4)  # (stops once step 4 is done: its checkpoint is step 4)
    assert main(["train", *SMALL_RUN, "--epochs", "2", "--no-eval", "--out", str(out)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    stopped = f"{out} stopped at step 4 of 12, its last checkpoint: these are the features of an unfinished run; "
    assert main(["eval", str(out), "--out", str(tmp_path / "e")]) == 0
    assert capsys.readouterr().out.startswith(f"Note: {stopped}")
    assert (tmp_path / "e" / "report.txt").read_text().startswith(f"Note: {stopped}")
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert (report["checkpoint_step"], report["total_steps"]) == (4, 12)
    assert main(["eval", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    assert json.loads(printed.out)["checkpoint_step"] == 4 and f"byol-ref: note: {stopped}" in printed.err
    assert main(["embed", str(out), "--out", str(tmp_path / "f.npz")]) == 0
    err = capsys.readouterr().err
    assert f"byol-ref: note: {stopped}" in err and err.rstrip().endswith(f"train --out {out} --resume finishes it")
    copied = tmp_path / "step4.npz"  # (out of its run: named itself, and no train looked for in its folder)
    copied.write_bytes((out / "checkpoint.npz").read_bytes())
    assert main(["embed", str(copied), "--data", "synthetic", "--out", str(tmp_path / "g.npz")]) == 0
    assert (f"byol-ref: note: {copied} is the checkpoint of step 4 of its run's 12: these are the features of an "
            "unfinished run\n") in capsys.readouterr().err
    path = out / "checkpoint.npz"  # one written before the checkpoint kept the run's length: its data say
    arrays, meta = ckpt.load(path)
    del meta["total_steps"]
    ckpt.save(path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version", "written_by")})
    assert main(["eval", str(out)]) == 0 and f"Note: {stopped}" in capsys.readouterr().out
    fd = os.open(out, os.O_RDONLY)  # a train of another process, writing there now
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["eval", str(out)]) == 0
        assert (f"Note: {out} is training now, in another process: these are the features of its checkpoint at "
                "step 4 of 12, not of the finished run\n") in capsys.readouterr().out
    finally:
        os.close(fd)
    assert main(["train", *SMALL_RUN, "--epochs", "2", "--no-eval", "--out", str(out), "--resume"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    report = json.loads(printed.out)
    assert (report["checkpoint_step"], report["total_steps"]) == (12, 12) and "note" not in printed.err
    assert main(["eval", str(out)]) == 0 and "Note" not in capsys.readouterr().out


@pytest.mark.skipif(os.name == "nt", reason="no flock on this platform: RunLock holds nothing there")
def test_a_live_run_before_its_first_checkpoint_is_not_called_stopped(tmp_path, capsys):
    """eval (and embed) of a run that a live train has not checkpointed yet said that its run "stopped
    before writing its first one" and to start it again with --overwrite (which the lock then refuses)."""
    import fcntl

    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 0
    (out / "checkpoint.npz").unlink()  # as train leaves it until its first checkpoint: config.json, metrics
    capsys.readouterr()
    fd = os.open(out, os.O_RDONLY)  # another process's lock (flock locks of two descriptors conflict)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for cmd in (["eval", str(out)], ["eval", str(out), "--out", str(out)],
                    ["embed", str(out), "--out", str(tmp_path / "f.npz")]):
            assert main(cmd) == 2, cmd
            err = capsys.readouterr().err
            assert "stopped" not in err and f"{out} has no checkpoint yet: a process is training there" in err, err
    finally:
        os.close(fd)
    assert main(["eval", str(out)]) == 2  # nobody there: it did stop
    assert "its run stopped before writing its first one" in capsys.readouterr().err


@pytest.mark.skipif(os.name == "nt", reason="no flock on this platform: RunLock holds nothing there")
def test_a_live_run_before_its_first_checkpoint_says_when_to_run_the_command_given(tiny_run, tmp_path, capsys):
    """Found by a mutation audit: a message saying "then eval it" whatever the command (embed, convert)
    passed every test."""
    import fcntl

    from byol_ref.cli import main

    out = tmp_path / "r"
    out.mkdir()
    shutil.copy(tiny_run[0] / "config.json", out / "config.json")  # (as train leaves it before its first checkpoint)
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for verb, cmd in (("evaluate", ["eval", str(out)]),
                          ("embed", ["embed", str(out), "--out", str(tmp_path / "f.npz")]),
                          ("convert", ["convert", str(out), str(tmp_path / "c.npz"), "--from", "byol-ref", "--to",
                                       "torch", "--mapping", "lightly"])):
            assert main(cmd) == 2, cmd
            assert capsys.readouterr().err.endswith(f"{out} has no checkpoint yet: a process is training there and "
                                                    "has not written its first one; wait for it (every "
                                                    f"--checkpoint-every steps, and at the end), then {verb} it\n")
    finally:
        os.close(fd)


def test_a_run_config_without_its_sections_is_refused_by_eval_and_resume(tmp_path, capsys):
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    good = json.loads((run_dir / "config.json").read_text())
    for bad in ({**good, "data": "synthetic"}, {k: v for k, v in good.items() if k != "train_config"}):
        (run_dir / "config.json").write_text(json.dumps(bad))
        capsys.readouterr()
        assert main(["eval", str(run_dir)]) == 2
        assert "is not a byol-ref run's config.json: expected an object with" in capsys.readouterr().err
        assert main(["train", "--resume", "--out", str(run_dir), "--epochs", "2", "--no-eval", "--no-progress"]) == 2
        assert "is not a byol-ref run's config.json: expected an object with" in capsys.readouterr().err


def test_a_run_refused_inside_fit_before_its_first_step_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    """What train wrote for a run that fit then refuses (config.json, the metrics file fit opens
    before the first step) goes again, and so does the folder it made (the one it claims without
    --out too); a folder that held something before keeps it."""
    import byol_ref.cli as cli

    def refusing_fit(dataset, model_cfg, tcfg, *, out_dir, **kw):
        (out_dir / "metrics.jsonl").write_text("")
        raise ValueError("refused by fit")

    monkeypatch.setattr(cli, "fit", refusing_fit)
    out = tmp_path / "r"
    assert cli.main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 2
    assert "refused by fit" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert cli.main(["train", *SMALL_RUN, "--no-eval", "--overwrite", "--out", str(kept)]) == 2
    assert (kept / "notes.txt").read_text() == "mine"
    # Without --out, the runs/<data>-<time> folder this run claimed is its own (made by it): it goes too.
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", *SMALL_RUN, "--no-eval"]) == 2
    assert "refused by fit" in capsys.readouterr().err
    assert list((tmp_path / "runs").iterdir()) == []


def test_knn_k_may_be_every_training_sample_and_the_temperature_must_be_finite(tmp_path, capsys):
    import argparse

    from byol_ref.cli import _probe_opts, main

    opts = argparse.Namespace(knn_k=408, labels_per_class=10, knn_temperature=0.1)
    assert _probe_opts(opts, 408) == {"k": 408, "temperature": 0.1, "labels_per_class": 10}
    with pytest.raises(ValueError, match="--knn-k 409 exceeds the 408 training samples"):
        _probe_opts(argparse.Namespace(knn_k=409, labels_per_class=10, knn_temperature=None), 408)
    for t in ("inf", "nan", "-1"):
        assert main(["train", *SMALL_RUN, "--knn-temperature", t, "--out", str(tmp_path / "r")]) == 2, t
        assert "--knn-temperature must be a positive finite number" in capsys.readouterr().err
        assert not (tmp_path / "r").exists()


def test_convert_never_writes_over_its_own_input(tmp_path, capsys):
    from byol_ref.cli import main

    mine = tmp_path / "mine.npz"
    np.savez(mine, keep=np.ones(3))
    assert main(["convert", str(mine), str(mine), "--from", "byol-ref", "--to", "byol-ref", "--overwrite"]) == 2
    assert f"dst {mine} is the file this command reads ({mine}); write to another file" in capsys.readouterr().err
    assert np.load(mine)["keep"].tolist() == [1, 1, 1]


def test_embed_and_trace_never_write_over_what_they_read(tmp_path, capsys):
    """Not even with --overwrite: embed --out RUN/checkpoint.npz would replace the run's only checkpoint."""
    from byol_ref.cli import main

    run = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run)]) == 0
    before = (run / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main(["embed", str(run), "--out", str(run / "checkpoint.npz"), "--overwrite"]) == 2
    assert f"--out {run / 'checkpoint.npz'} is the file this command reads" in capsys.readouterr().err
    assert (run / "checkpoint.npz").read_bytes() == before
    assert main(["trace", "--dims", "5,6,4,3", "--out", str(tmp_path / "t.npz")]) == 0
    before = (tmp_path / "t.npz").read_bytes()
    capsys.readouterr()
    assert main(["trace", "--inputs", str(tmp_path / "t.npz"), "--out", str(tmp_path / "t.npz"), "--overwrite"]) == 2
    assert "is the file this command reads" in capsys.readouterr().err
    assert (tmp_path / "t.npz").read_bytes() == before


def test_an_output_is_compared_with_the_inputs_as_a_file_however_it_is_spelt(tmp_path, capsys, monkeypatch):
    """dst spelt through a folder and .., or relative to the working folder, is still the file that
    convert reads: refused even with --overwrite (compared as strings, each was written over)."""
    from byol_ref.cli import main

    mine = tmp_path / "mine.npz"
    np.savez(mine, keep=np.ones(3))
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    for dst in (str(tmp_path / "sub" / ".." / "mine.npz"), "mine.npz"):
        assert main(["convert", str(mine), dst, "--from", "byol-ref", "--to", "byol-ref", "--overwrite"]) == 2
        assert f"dst {dst} is the file this command reads ({mine})" in capsys.readouterr().err
    assert np.load(mine)["keep"].tolist() == [1, 1, 1]


@pytest.mark.parametrize("groups", [3, 1])
def test_convert_and_trace_take_group_norm_and_weight_std_networks_of_any_width(tmp_path, capsys, groups):
    """The structure a mapping follows was built at byol-ref's default widths (encoder 256, input 1):
    norm_groups=3, which the weights' own widths of 6 allow, was refused (256 is no multiple of 3), and
    weight_std was refused outright (one input per unit). Both now convert there and back unchanged,
    and trace reads the torch file. The stand-in widths are twice norm_groups, so that one group still
    gives each standardised Linear 2 inputs (a width of norm_groups refused norm_groups=1: "encoder.fc2.weight
    has 1 input")."""
    from byol_ref.cli import main
    from byol_ref.interchange import networks_to_arrays
    from byol_ref.model import build_from_config

    sets = ["--set", "norm=group", "--set", f"norm_groups={groups}", "--set", "weight_std=true"]
    online, target = build_from_config(get_preset("deepmind").config(
        encoder_dim=5, hidden_size=6, projection_dim=6, projector_hidden_dim=9, predictor_dim=3, norm="group",
        norm_groups=groups, weight_std=True), seed=0)
    nets, sd, back = tmp_path / "nets.npz", tmp_path / "sd.npz", tmp_path / "back.npz"
    np.savez(nets, **networks_to_arrays(online, target))
    assert main(["convert", str(nets), str(sd), "--from", "byol-ref", "--to", "torch", "--mapping", "byol-pytorch",
                 *sets]) == 0, capsys.readouterr().err
    assert main(["convert", str(sd), str(back), "--from", "torch", "--to", "byol-ref", "--mapping", "byol-pytorch",
                 *sets]) == 0, capsys.readouterr().err
    with np.load(nets) as a, np.load(back) as b:
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
    x = np.random.default_rng(0).random((4, 5))
    with np.load(sd) as f:
        np.savez(tmp_path / "in.npz", **f, view1=x, view2=x[::-1])
    assert main(["trace", "--inputs", str(tmp_path / "in.npz"), "--layout", "torch", "--mapping", "byol-pytorch",
                 "--steps", "1", *sets, "--out", str(tmp_path / "t.npz")]) == 0, capsys.readouterr().err


def test_convert_takes_the_sizes_from_the_weights_and_names_a_bad_norm_groups_itself(tmp_path, capsys):
    """The structure a mapping follows keeps the --set fields that shape its names and drops the sizes,
    which the weights give: --set projection_dim=7 over weights of width 4 converts them as they are. A
    norm_groups of 0 or -2 is named as norm_groups, not as the stand-in widths it would make (0, -4)."""
    from byol_ref.cli import main
    from byol_ref.interchange import networks_to_arrays
    from byol_ref.model import build_from_config

    online, target = build_from_config(get_preset("deepmind").config(encoder_dim=5, hidden_size=6, projection_dim=4,
                                                                     predictor_dim=3), seed=0)
    nets, sd = tmp_path / "nets.npz", tmp_path / "sd.npz"
    np.savez(nets, **networks_to_arrays(online, target))
    args = ["convert", str(nets), str(sd), "--from", "byol-ref", "--to", "torch", "--mapping", "byol-pytorch",
            "--preset", "deepmind"]
    assert main([*args, "--set", "projection_dim=7", "--set", "hidden_size=9"]) == 0, capsys.readouterr().err
    with np.load(sd) as f:
        assert f["online_encoder.projector.0.weight"].shape == (4, 6)  # (torch's (out, in))
    for groups in (0, -2):
        assert main([*args, "--overwrite", "--set", f"norm_groups={groups}"]) == 2
        assert "norm_groups must be " in capsys.readouterr().err


def test_convert_names_its_own_flag_for_tensors_the_mapping_leaves_out(tmp_path, capsys):
    from byol_ref.cli import main
    from byol_ref.interchange import networks_to_arrays
    from byol_ref.model import build_from_config

    online, target = build_from_config(get_preset("deepmind").config(encoder_dim=5, hidden_size=6, projection_dim=4,
                                                                     predictor_dim=3), seed=0)
    nets = tmp_path / "nets.npz"
    np.savez(nets, **networks_to_arrays(online, target), **{"online.param.extra.weight": np.zeros((2, 2))})
    args = ["convert", str(nets), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch", "--mapping",
            "byol-pytorch", "--preset", "deepmind"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "online.param.extra.weight" in err and "pass --partial to leave them out" in err
    assert "strict=False" not in err


def test_a_run_refused_in_fit_removes_its_files_but_leaves_a_folder_the_user_made(tmp_path, capsys, monkeypatch):
    from byol_ref import cli

    def refuses(*args, **kwargs):
        raise ValueError("refused before the first step")

    monkeypatch.setattr(cli, "fit", refuses)
    mine = tmp_path / "mine"
    mine.mkdir()
    assert cli.main(["train", *SMALL_RUN, "--out", str(mine)]) == 2
    assert mine.is_dir() and not any(mine.iterdir())  # config.json gone, the folder stays
    assert cli.main(["train", *SMALL_RUN, "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()
    assert "refused before the first step" in capsys.readouterr().err


def test_start_line_notes_the_peak_lr_and_a_per_epoch_schedule():
    from byol_ref.cli import _lr_note
    from byol_ref.train import TrainConfig

    assert _lr_note(TrainConfig()) == ""  # batch 256 = the scale: the peak is --lr
    assert _lr_note(TrainConfig(batch_size=64)) == " (peak 0.0005 = lr x 64/256)"
    assert _lr_note(TrainConfig(batch_size=64, lr_interval="epoch")) == " (peak 0.0005 = lr x 64/256; per epoch)"
    assert _lr_note(TrainConfig(batch_size=64, lr_batch_scale=0, lr_interval="epoch")) == " (per epoch)"


def test_eval_reads_a_run_whose_last_metric_record_is_torn(tmp_path, capsys):
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 0
    metrics = out / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 9, "lo')  # a write cut off
    capsys.readouterr()
    assert main(["eval", str(out), "--out", str(tmp_path / "e")]) == 0
    err = capsys.readouterr().err
    assert f"line {len(metrics.read_text().splitlines())} of {metrics} is not a record of ours" in err


def test_labels_the_probes_cannot_use_are_refused_before_training(tmp_path, capsys):
    """Too few examples of a class for --labels-per-class, or a single class, used to be found only when the
    report ran, after the training."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((100, 6))
    y = np.array([0] * 60 + [1] * 36 + [2] * 4)  # class 2: about 3 in the training split
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    args = ["train", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--epochs", "1",
            "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4",
            "--no-progress", "--no-plots"]
    assert main([*args, "--labels-per-class", "10", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--labels-per-class 10, but class(es) [2] of the training split have fewer examples" in err
    assert "lower --labels-per-class to" in err and not (tmp_path / "a").exists()
    np.save(tmp_path / "y.npy", np.zeros(100, dtype=int))
    assert main([*args, "--out", str(tmp_path / "b")]) == 2
    assert "labels hold 1 class(es)" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main([*args, "--out", str(tmp_path / "c"), "--no-eval"]) == 0  # the way out it names
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "c")]) == 2  # eval has no --no-eval to offer
    err = capsys.readouterr().err
    assert "labels hold 1 class(es)" in err and "(they cannot be probed)" in err and "--no-eval" not in err
    (tmp_path / "x.npy").rename(tmp_path / "moved.npy")  # --resume takes no --data: the record is the way
    assert main(["train", "--out", str(tmp_path / "c"), "--resume", "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "which does not exist" in err and "--resume reads the data from there" in err and "--data" not in err


def test_embed_never_writes_over_the_data_its_run_records(tmp_path, capsys):
    from byol_ref.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mine.npz", x=rng.random((60, 4)), y=np.arange(60) % 2)
    before = (tmp_path / "mine.npz").read_bytes()
    assert main(["train", "--data", str(tmp_path / "mine.npz"), "--epochs", "1", "--batch-size", "16",
                 "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-eval",
                 "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["embed", str(tmp_path / "r"), "--out", str(tmp_path / "mine.npz"), "--overwrite"]) == 2
    assert f"is the file this command reads ({tmp_path / 'mine.npz'})" in capsys.readouterr().err
    assert (tmp_path / "mine.npz").read_bytes() == before


def test_odd_but_valid_data_and_weights_files(tmp_path, capsys):
    """A pre-split file with an empty test split trains (no probes, said why); a file with no features is
    named; a weights .npz that merely holds an array named meta is not taken for a checkpoint."""
    from byol_ref.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "split.npz", x_train=rng.random((40, 4)), y_train=np.arange(40) % 2,
             x_test=np.zeros((0, 4)), y_test=np.zeros(0, dtype=int))
    small = ["--epochs", "1", "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4",
             "--predictor-dim", "4", "--no-progress", "--no-plots", "--labels-per-class", "2"]
    assert main(["train", "--data", str(tmp_path / "split.npz"), *small, "--out", str(tmp_path / "a")]) == 0
    assert "has an empty test split, so the probes have nothing to be tested on" in capsys.readouterr().out
    assert main(["embed", str(tmp_path / "a"), "--out", str(tmp_path / "f.npz")]) == 0
    features = np.load(tmp_path / "f.npz")
    assert features["encoder_test"].shape == (0, 8) and features["projector_test"].shape == (0, 4)
    assert features["encoder_train"].shape == (40, 8)
    np.save(tmp_path / "wide0.npy", np.zeros((40, 0)))
    assert main(["train", "--data", str(tmp_path / "wide0.npy"), *small, "--out", str(tmp_path / "b")]) == 2
    assert "zero width, shape (40, 0); expected at least one value per sample" in capsys.readouterr().err
    np.savez(tmp_path / "w.npz", meta=np.array("mine"), w=np.ones(3))
    assert main(["convert", str(tmp_path / "w.npz"), str(tmp_path / "w2.npz"), "--from", "byol-ref",
                 "--to", "byol-ref"]) == 0
    assert sorted(np.load(tmp_path / "w2.npz")) == ["meta", "w"]


def test_a_run_without_its_first_checkpoint_or_without_a_folder_says_so(tmp_path, capsys):
    """A run killed before its first checkpoint leaves config.json (and metrics) only: every
    command that needs the checkpoint says that, and how to start again, before printing anything
    else; --resume of a folder that is not there says that it is not there."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    (run_dir / "checkpoint.npz").unlink()
    capsys.readouterr()
    for argv, verb in ((["train", "--resume", "--out", str(run_dir), "--no-eval", "--no-progress"], "continue"),
                       (["eval", str(run_dir)], "evaluate"),
                       (["embed", str(run_dir), "--out", str(tmp_path / "f.npz")], "embed"),
                       (["convert", str(run_dir), str(tmp_path / "x.npz"), "--from", "byol-ref", "--to", "torch",
                         "--mapping", "lightly"], "convert")):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""  # (no banner before the error)
        assert f"{run_dir} has no checkpoint: its run stopped before writing its first one, so there is nothing " \
               f"to {verb}; start it again with: " in err and f"train ... --out {run_dir} --overwrite" in err
    assert main(["train", "--resume", "--out", str(tmp_path / "never"), "--no-progress"]) == 2
    assert f"--resume: {tmp_path / 'never'} does not exist" in capsys.readouterr().err
    # ... but only for a run directory: a checkpoint file misspelt beside a trained run is only missing,
    # and a folder whose config.json another program wrote (a Hugging Face model) is no run
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir / "checkpoint-typo.npz")]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "--overwrite" not in err
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"architectures": ["ViTModel"]}')
    for argv in (["convert", str(hf), str(tmp_path / "y.npz"), "--from", "torch", "--to", "byol-ref", "--mapping",
                  "lightly", "--preset", "lightly"],
                 ["convert", str(hf), str(tmp_path / "y.npz"), "--from", "byol-ref", "--to", "torch", "--mapping",
                  "lightly"], ["eval", str(hf)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "stopped before" not in err and "--overwrite" not in err, argv


def test_a_folder_that_is_no_run_gets_the_plain_missing_checkpoint_message(tmp_path, capsys):
    from byol_ref.cli import main
    assert main(["eval", str(tmp_path / "nothere")]) == 2  # a path to nothing: what was expected there
    assert capsys.readouterr().err == (f"byol-ref eval: error: checkpoint not found: {tmp_path / 'nothere'} does not "
                                       "exist (expected a run directory, or a checkpoint .npz)\n")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"architectures": ["ViTModel"]}')
    empty = tmp_path / "empty"
    empty.mkdir()
    for d in (hf, empty):
        assert main(["eval", str(d)]) == 2
        err = capsys.readouterr().err
        assert "checkpoint not found" in err and "config.json" not in err, err
        assert "does not exist" not in err, err  # (the folder does)
        assert f"{d} is a folder without a checkpoint.npz, so not a byol-ref run directory" in err, err
        assert main(["convert", str(d), str(tmp_path / "y.npz"), "--from", "byol-ref", "--to", "torch",
                     "--mapping", "lightly"]) == 2
        err = capsys.readouterr().err
        assert "is a directory without a checkpoint.npz" in err and "config.json" not in err, err


def test_convert_from_torch_of_a_run_folder_without_a_checkpoint_says_it_is_no_weights_file(tmp_path, capsys):
    from byol_ref.cli import main
    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    (run_dir / "checkpoint.npz").unlink()
    capsys.readouterr()
    assert main(["convert", str(run_dir), str(tmp_path / "y.npz"), "--from", "torch", "--to", "byol-ref",
                 "--mapping", "lightly", "--preset", "lightly"]) == 2
    err = capsys.readouterr().err
    assert "is a directory without a checkpoint.npz" in err and "--overwrite" not in err, err


def test_out_of_memory_is_one_line_and_leaves_no_half_made_run(tmp_path, capsys, monkeypatch):
    """A MemoryError (a width too large for the machine) was a traceback, and the run directory stayed, half made."""
    from byol_ref import train
    from byol_ref.cli import main

    def too_big(*args, **kwargs):
        raise MemoryError("Unable to allocate 238. GiB for an array with shape (32, 1000000000) and data type "
                          "float64")

    monkeypatch.setattr(train, "init_state", too_big)
    args = ["train", "--data", "synthetic", "--epochs", "1", "--batch-size", "16", "--hidden-size", "8",
            "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-plots", "--no-eval"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("byol-ref train: error: out of memory: Unable to allocate 238. GiB for an array with shape "
                          "(32, 1000000000)") and "float32 need less" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()  # a folder the user made stays, empty
    assert main([*args, "--out", str(tmp_path / "b")]) == 1
    assert list((tmp_path / "b").iterdir()) == []


def test_byol_refs_own_warnings_read_as_its_other_messages(tmp_path, capsys, monkeypatch):
    """A warning of byol-ref's is shown as its other messages are; where the warnings filter makes
    warnings errors (python -W error, PYTHONWARNINGS=error), it stops the command as bad input
    does, with the message and what made it an error, where it was a traceback."""
    import warnings

    from byol_ref.cli import main

    np.save(tmp_path / "hwc.npy", np.random.default_rng(0).random((40, 8, 8, 3)))  # channels last
    train = ["train", "--data", str(tmp_path / "hwc.npy"), "--epochs", "1", "--batch-size", "16", "--hidden-size",
             "8", "--projection-dim", "4", "--predictor-dim", "4", "--no-eval", "--no-progress", "--no-plots"]
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # (whatever -W this suite runs under)
        assert main([*train, "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("byol-ref: warning: features in file") and "x.transpose(0, 3, 1, 2)" in err
    assert "UserWarning" not in err and "cli.py" not in err
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main([*train, "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("byol-ref train: error: features in file") and err.endswith(
        "x.transpose(0, 3, 1, 2) (a ByolRefWarning, raised as an error by the warnings filter: python -W error or "
        "PYTHONWARNINGS)\n")
    assert not (tmp_path / "e" / "checkpoint.npz").exists()
    # One raised as an error once the run directory is made (NumPy's overflow warning in the first
    # step, say) leaves no half-made run there, as a refusal of bad input does.
    from byol_ref import cli
    real = cli.fit

    def warns(*args, **kwargs):
        warnings.warn("overflow encountered in multiply", RuntimeWarning)
        return real(*args, **kwargs)

    monkeypatch.setattr(cli, "fit", warns)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["train", "--data", "synthetic", *train[3:], "--out", str(tmp_path / "w")]) == 2
    assert "error: overflow encountered in multiply (a RuntimeWarning" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_diff_of_a_checkpoint_says_it_is_not_a_trace(tiny_run, tmp_path, capsys):
    """It compared nothing and said only "no tensor name is in both files"."""
    from byol_ref.cli import main

    out, _ = tiny_run
    trace = tmp_path / "t.npz"
    assert main(["trace", "--dims", "5,6,4,3", "--out", str(trace)]) == 0
    capsys.readouterr()
    for a, b, kind in ((trace, out / "checkpoint.npz", "training checkpoint"), (out, trace, "run directory")):
        assert main(["diff", str(a), str(b)]) == 2
        bad = b if kind == "training checkpoint" else a
        assert f"{bad} is a byol-ref {kind}, not a trace: diff compares the intermediates of traces" in \
            capsys.readouterr().err


def test_convert_never_writes_over_its_mapping_file(tiny_run, tmp_path, capsys):
    """A mapping file is read as the weights are: --overwrite once let dst (or trace's --out) replace it."""
    from byol_ref.cli import main

    out, _ = tiny_run
    mapping = tmp_path / "m.json"
    mapping.write_text('{"online.param.encoder.fc1.weight": "w"}')
    before = mapping.read_bytes()
    assert main(["convert", str(out), str(mapping), "--from", "byol-ref", "--to", "torch", "--mapping",
                 str(mapping), "--overwrite"]) == 2
    assert f"dst {mapping} is the file this command reads ({mapping})" in capsys.readouterr().err
    assert mapping.read_bytes() == before  # (trace's --out is checked against its --mapping by the same code)


def test_convert_to_a_packages_names_says_where_the_network_is_built_otherwise(tiny_run, tmp_path, capsys):
    """A default run written under lightly's names has hidden biases and no head bias, which lightly's own
    MLPs have the other way round: the file was written without a word, and read back only by trial."""
    from byol_ref.cli import main

    out, _ = tiny_run
    assert main(["convert", str(out), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "lightly"]) == 0
    err = capsys.readouterr().err
    hint = ("byol-ref convert: note: the network written has hidden_bias=True, head_bias=False, where lightly's own "
            "has hidden_bias=False, head_bias=True: a model built by lightly will not load it whole. Read it back "
            "with --preset lightly --set hidden_bias=true --set head_bias=false\n")
    assert err.endswith(hint), err
    assert main(["convert", str(tmp_path / "sd.npz"), str(tmp_path / "back.npz"), "--from", "torch", "--to",
                 "byol-ref", "--mapping", "lightly", *hint.split("with ")[-1].split()]) == 0  # as it says
    assert main(["convert", str(out), str(tmp_path / "own.npz"), "--from", "byol-ref", "--to", "byol-ref"]) == 0
    with np.load(tmp_path / "back.npz") as back, np.load(tmp_path / "own.npz") as own:
        assert sorted(back.files) == sorted(own.files) and len(own.files) == 52
        for k in own.files:
            np.testing.assert_array_equal(back[k], own[k], err_msg=k)
    capsys.readouterr()
    assert main(["convert", str(out), str(tmp_path / "bp.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "byol-pytorch"]) == 0
    assert capsys.readouterr().err.endswith("byol-ref convert: note: the network written has head_bias=False, where "
                                            "byol-pytorch's own has head_bias=True: a model built by byol-pytorch "
                                            "will not load it whole. Read it back with --preset byol-pytorch --set "
                                            "head_bias=false\n")
    from byol_ref.cli import _say_the_structure_written  # an encoder bias apart from the hidden ones is said too

    _say_the_structure_written(get_preset("byol-pytorch").config(encoder_dim=1, encoder_bias=False), "byol-pytorch")
    assert capsys.readouterr().err == ("byol-ref convert: note: the network written has encoder_bias=False, where "
                                       "byol-pytorch's own has encoder_bias=True: a model built by byol-pytorch will "
                                       "not load it whole. Read it back with --preset byol-pytorch --set "
                                       "encoder_bias=false\n")
    run_lightly = tmp_path / "lightly-run"  # a run trained with the package's preset: nothing to say
    assert main(["train", *SMALL_RUN, "--no-eval", "--preset", "lightly", "--out", str(run_lightly)]) == 0
    capsys.readouterr()
    assert main(["convert", str(run_lightly), str(tmp_path / "l.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "lightly"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_convert_says_the_structure_no_name_shows_and_reads_back_as_it_says(tmp_path, capsys):
    """Weight standardisation and the number of norm groups change no array name: a package's model
    loads the file and computes otherwise. The note said nothing of them, and its read-back command
    left them out, so a trace of the file read back computed another network without a word."""
    from byol_ref.cli import _say_the_structure_written, main
    from byol_ref.model import Config

    run_dir = tmp_path / "ws"
    assert main(["train", *SMALL_RUN, "--no-eval", "--preset", "lightly", "--set", "weight_std=true",
                 "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["convert", str(run_dir), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "lightly"]) == 0
    hint = ("byol-ref convert: note: the network written has weight_std=True, where lightly's own has "
            "weight_std=False, which no array's name shows: a model built by lightly loads it and computes "
            "otherwise. Read it back with --preset lightly --set weight_std=true\n")
    assert capsys.readouterr().err.endswith(hint)
    assert main(["convert", str(tmp_path / "sd.npz"), str(tmp_path / "back.npz"), "--from", "torch", "--to",
                 "byol-ref", "--mapping", "lightly", *hint.split("with ")[-1].split()]) == 0  # as it says
    capsys.readouterr()
    groups = get_preset("lightly").config(encoder_dim=2, hidden_size=8, projection_dim=8, predictor_dim=8,
                                          norm="group", norm_groups=4, weight_std=True)
    _say_the_structure_written(groups, "lightly")
    assert capsys.readouterr().err == (
        "byol-ref convert: note: the network written has norm='group', where lightly's own has norm='batch': a "
        "model built by lightly will not load it whole; nor do its names show weight_std=True, norm_groups=4. Read "
        "it back with --preset lightly --set norm=group --set weight_std=true --set norm_groups=4\n")
    _say_the_structure_written(groups.replace(norm_groups=Config.norm_groups, hidden_size=32, projection_dim=32,
                                              projector_hidden_dim=32, predictor_dim=32), "lightly")
    assert "norm_groups" not in capsys.readouterr().err  # the default number of groups: --set norm=group gives it
    _say_the_structure_written(get_preset("lightly").config(encoder_dim=2, norm_groups=4), "lightly")
    assert capsys.readouterr().err == ""  # groups of a batch norm: nothing computes with them


# --------------------------------------------------------------------------- mutation audit (fourth)


def test_every_train_flag_reaches_the_run_and_a_resume_refuses_another_value(tmp_path, capsys):
    """Each training and model flag lands in config.json as given (a flag dropped on its way to the
    configs trains with the default without a word); a --resume asking for another value of one (named
    by its field: --tau sets tau_base, --no-predictor use_predictor), or for a --preset, is refused, one
    flag alone as well as beside others,
    while the run's own values again, --device and the report's options are not."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    flags = ["--weight-decay", "0.01", "--tau", "0.9", "--tau-schedule", "constant", "--predictor-lr-mult", "2.0",
             "--optimizer", "sgd", "--lr", "0.01", "--dtype", "float32", "--checkpoint-every", "3", "--log-every",
             "2", "--projector-hidden-dim", "6", "--layout", "edifice", "--seed", "2", "--no-stop-gradient"]
    assert main(["train", *SMALL_RUN, "--no-eval", *flags, "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    model, train = saved["model_config"], saved["train_config"]
    assert {k: train[k] for k in ("weight_decay", "tau_base", "tau_schedule", "predictor_lr_mult", "optimizer", "lr",
                                  "dtype", "checkpoint_every", "log_every", "seed")} == dict(
        weight_decay=0.01, tau_base=0.9, tau_schedule="constant", predictor_lr_mult=2.0, optimizer="sgd", lr=0.01,
        dtype="float32", checkpoint_every=3, log_every=2, seed=2)
    assert (model["projector_hidden_dim"], model["layout"], model["stop_gradient"], model["use_predictor"]) == \
        (6, "edifice", False, True)
    capsys.readouterr()
    resume = ["train", "--resume", "--out", str(out), "--no-eval", "--no-progress", "--no-plots"]
    for extra, asked in ((["--tau", "0.5"], "tau_base 0.5 (run: 0.9)"),
                         (["--no-predictor"], "use_predictor False (run: True)"),
                         (["--weight-decay", "0"], "weight_decay 0.0 (run: 0.01)"),
                         (["--preset", "lightly"], "optimizer 'lars' (run: 'sgd')"),  # (and the rest of lightly's)
                         (["--lr", "0.5"], "lr 0.5 (run: 0.01)"),  # each alone too, not only beside another flag
                         (["--norm", "batch"], "norm 'batch' (run: 'layer')"),
                         (["--data", "digits"], "--data digits (run: synthetic)"),
                         (["--labels", "y"], "--labels y (run: None)")):
        assert main([*resume, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert "the command line asks for others: " in err and asked in err, extra
    assert main([*resume, *flags, "--device", "cpu", "--knn-k", "5", "--labels-per-class", "3",
                 "--knn-temperature", "0.1"]) == 0
    assert "trained 0 steps (step 6 of the run)" in capsys.readouterr().out


def test_a_preset_resume_refuses_another_final_lr_ratio(tmp_path, capsys):
    """A preset's final_lr_ratio reaches TrainConfig as final_lr, no preset field name: a --resume with
    another ratio must still be refused (it changes the cosine's end value), and the run's own accepted,
    at the run's batch (final_lr = ratio x lr x B / 256: the check took the default batch, 256, and so
    refused a resume repeating the run's own --preset whenever the run's batch was another)."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    run = ["--preset", "lightly", "--set", "final_lr_ratio=0.01"]
    assert main(["train", *SMALL_RUN, "--no-eval", *run, "--out", str(out)]) == 0
    capsys.readouterr()
    resume = ["train", "--resume", "--out", str(out), "--no-eval", "--no-progress", "--no-plots"]
    assert main([*resume, "--preset", "lightly", "--set", "final_lr_ratio=0.5"]) == 2
    err = capsys.readouterr().err
    assert "the command line asks for others: " in err and "final_lr" in err, err
    assert main([*resume, *run]) == 0


def test_a_report_probes_with_the_runs_seed_and_options_as_eval_does(tmp_path, capsys):
    """The report train prints and eval's of the same run agree (both draw the probes' labelled samples
    and random-init encoder from the run's seed), and the probe options given are the ones used."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((60, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0] > 0.5).astype(np.int64))
    out = tmp_path / "r"
    probe = ["--knn-k", "7", "--labels-per-class", "5", "--knn-temperature", "0.5"]
    assert main(["train", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--epochs", "1",
                 "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4",
                 "--seed", "3", *probe, "--no-progress", "--no-plots", "--out", str(out)]) == 0
    trained = json.loads((out / "report.json").read_text())
    assert trained["probe"] == {"k": 7, "labels_per_class": 5, "temperature": 0.5, "seed": 3, "repeats": 5,
                                "cv_folds": 5, "val_fraction": 0.2, "l2_grid": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]}
    assert "kNN = cosine k=7, low-label = 5 labels per class" in capsys.readouterr().out
    assert main(["eval", str(out), *probe, "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["rows"] == trained["rows"] and evaluated["probe"] == trained["probe"]


def test_embed_with_data_reads_it_as_the_run_and_keeps_the_runs_input_statistics(tmp_path, capsys):
    """embed --data (eval's too): the run's own data named again give the run's own split (data seed 0,
    as train's default), and other data are standardised with the run's statistics, stored in its
    checkpoint, not with their own. A run that recorded --labels beside a built-in data set (before
    that was refused) still reads its data, without them."""
    from byol_ref.cli import main
    from byol_ref.data import load_file, synthetic
    from byol_ref.train import checkpoint_features

    run_dir = tmp_path / "s"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    x = np.random.default_rng(0).random((60, 4))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "far.npy", x * 5.0 + 3.0)
    small = ["--epochs", "1", "--batch-size", "16", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim",
             "4", "--no-progress", "--no-plots", "--no-eval"]
    assert main(["train", "--data", str(tmp_path / "x.npy"), *small, "--out", str(tmp_path / "f")]) == 0
    for run, data in ((run_dir, "synthetic"), (tmp_path / "f", str(tmp_path / "x.npy"))):
        assert main(["embed", str(run), "--out", str(tmp_path / "own.npz"), "--overwrite"]) == 0
        assert main(["embed", str(run), "--data", data, "--out", str(tmp_path / "named.npz"), "--overwrite"]) == 0
        with np.load(tmp_path / "own.npz") as own, np.load(tmp_path / "named.npz") as named:
            assert sorted(own.files) == sorted(named.files)
            for k in own.files:
                np.testing.assert_array_equal(own[k], named[k], err_msg=k)
    record = json.loads((run_dir / "config.json").read_text())
    record["data"]["labels"] = "y"
    (run_dir / "config.json").write_text(json.dumps(record))
    assert main(["embed", str(run_dir), "--out", str(tmp_path / "legacy.npz")]) == 0
    with np.load(tmp_path / "legacy.npz") as legacy:
        np.testing.assert_array_equal(legacy["labels_test"], synthetic(seed=0).y_test)
    assert main(["embed", str(tmp_path / "f"), "--data", str(tmp_path / "far.npy"), "--out",
                 str(tmp_path / "far.npz")]) == 0
    split = load_file(str(tmp_path / "far.npy"))
    with np.load(tmp_path / "far.npz") as far:
        np.testing.assert_allclose(far["encoder_test"], checkpoint_features(tmp_path / "f", split.x_test))


def test_errors_the_fourth_audit_found_unchecked(tmp_path, capsys):
    """Refusals whose message (or whose existence) no test held: each dropped or reworded went unnoticed."""
    from byol_ref.cli import main

    assert main(["train", *SMALL_RUN, "--set", "lr", "--out", str(tmp_path / "a")]) == 2
    assert "--set expects KEY=VALUE, got 'lr'" in capsys.readouterr().err
    assert main(["train", *SMALL_RUN, "--preset", "deepmind", "--set", "ema_scope=params+buffers",
                 "--out", str(tmp_path / "a")]) == 2
    assert "ema_scope='params+buffers' is honoured by `byol-ref trace` only" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    np.save(tmp_path / "w5.npy", np.random.default_rng(0).random((40, 5)))
    capsys.readouterr()
    for cmd in (["eval", str(run_dir)], ["embed", str(run_dir), "--out", str(tmp_path / "f.npz")]):
        assert main([*cmd, "--data", str(tmp_path / "w5.npy")]) == 2
        assert (f"--data {tmp_path / 'w5.npy'} has 5 features, but the encoder of {run_dir / 'checkpoint.npz'} "
                "expects 32") in capsys.readouterr().err
    (run_dir / "config.json").unlink()
    assert main(["train", "--resume", "--out", str(run_dir), "--no-progress", "--no-eval"]) == 2
    assert f"--resume: {run_dir / 'config.json'} not found; is {run_dir} a byol-ref run directory?" in \
        capsys.readouterr().err
    t = tmp_path / "t.npz"
    assert main(["trace", "--dims", "5,6,4,3", "--layout", "torch", "--out", str(t)]) == 2
    assert "--layout torch describes the --inputs file; --dims generates byol-ref weights" in capsys.readouterr().err
    assert main(["trace", "--dims", "5,6,4,3", "--seed", "-1", "--out", str(t)]) == 2
    assert "--seed must be an int >= 0, got -1" in capsys.readouterr().err
    assert not t.exists()
    assert main(["trace", "--dims", "5,6,4,3", "--out", str(t)]) == 0  # two steps unless --steps says
    assert "2 step(s)" in capsys.readouterr().out
    np.savez(tmp_path / "sd.npz", w=np.ones(2))
    assert main(["convert", str(tmp_path / "sd.npz"), str(tmp_path / "ax.npz"), "--from", "torch", "--to", "axon",
                 "--mapping", "lightly"]) == 2
    assert "convert goes between byol-ref's layout and another one, got torch -> axon" in capsys.readouterr().err


# --------------------------------------------------------------------------- mutation audit (fifth)
# Changes to cli.py that no test noticed, and the tests that notice them.


def test_set_reads_0_as_false_and_strips_the_key():
    """--set's documented spellings of a switch include 0 (only 1 of the pair was tested), and a key
    keeps no stray spaces around it (" bn_eps =..." sets bn_eps, not an unknown field)."""
    from dataclasses import fields

    from byol_ref.cli import _route_pairs
    from byol_ref.model import Config

    model = {}
    _route_pairs(["weight_std=0", " bn_eps =1e-3"], [("model", {f.name: f for f in fields(Config)}, model)])
    assert model == dict(weight_std=False, bn_eps=1e-3)


def test_a_resume_stopped_before_its_first_checkpoint_is_resumed_at_its_new_length(tmp_path, capsys, monkeypatch):
    """A longer --resume records its new --epochs in config.json before it trains; stopped before its
    first checkpoint, the checkpoint still holds the old length. The record and the checkpoint then
    differ in epochs alone, which --epochs may change: the next resume continues to the new length
    (were epochs compared with the rest, the run could never be continued)."""
    from byol_ref import cli
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 0

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(cli, "fit", stopped)
        assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--no-eval", "--no-progress"]) == 130
    assert json.loads((out / "config.json").read_text())["train_config"]["epochs"] == 2
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--no-eval", "--no-progress", "--no-plots"]) == 0
    assert "trained 6 steps (step 12 of the run)" in capsys.readouterr().out


def test_warnings_from_outside_byol_ref_are_shown_as_python_shows_them(monkeypatch, capsys):
    """Only byol-ref's own warnings read "byol-ref: warning: ..."; another package's (NumPy's, here
    one raised from this file) keep their category, file and line, through whatever shows warnings."""
    import warnings

    from byol_ref import cli

    def command(args):
        warnings.warn("a warning of another package", UserWarning)
        return 0

    monkeypatch.setattr(cli, "_command", command)
    with pytest.warns(UserWarning, match="a warning of another package"):
        assert cli.main(["diff", "a.npz", "b.npz"]) == 0
    assert "byol-ref: warning" not in capsys.readouterr().err


def test_probe_defaults_the_data_cannot_meet_are_lowered_and_said_typed_values_refused(tmp_path, capsys):
    """A labelled file of 24 rows (18 train, 6 of each class): the report's defaults, kNN k = 20 and
    10 labels per class, used to stop train before step 0 with "--knn-k 20 exceeds the 18 training
    samples", naming a flag the user never typed. Defaults now take what the data hold, with a line
    saying so and the report's header showing them; a typed value is still refused. eval does the same,
    and with --json the line goes to stderr, leaving stdout to the JSON."""
    from byol_ref.cli import main

    y = np.repeat(np.arange(3), 8)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(24, 6)) + y[:, None])
    np.save(tmp_path / "y.npy", y)
    args = ["train", "--data", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--epochs", "1",
            "--batch-size", "8", "--hidden-size", "8", "--projection-dim", "4", "--predictor-dim", "4",
            "--no-progress", "--no-plots"]
    assert main([*args, "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert ("the report's probes take --knn-k 18 (every training row) and --labels-per-class 6 (the fewest examples "
            "of a class): the data hold too few for the default --knn-k 20 and --labels-per-class 10") in out
    assert "kNN = cosine k=18, low-label = 6 labels per class" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert (report["probe"]["k"], report["probe"]["labels_per_class"]) == (18, 6)
    for typed, said in ((["--knn-k", "20"], "--knn-k 20 exceeds the 18 training samples"),
                        (["--labels-per-class", "7"], "--labels-per-class 7, but class(es) [0, 1, 2]")):
        assert main([*args, *typed, "--out", str(tmp_path / "t")]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "t").exists()
    assert main(["eval", str(tmp_path / "r"), "--knn-k", "5", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["probe"]["k"] == 5
    assert captured.err.count("the report's probes take") == 1 and "--labels-per-class 6" in captured.err


def test_too_few_labels_name_the_first_five_classes_and_the_lowest_count_that_works():
    """The message lists up to five short classes (one test saw a single one), and a fewest count of
    2 is still a --labels-per-class to offer (2 is the least the probe takes); a class holding exactly
    --labels-per-class examples is enough."""
    import argparse

    from byol_ref.cli import _probe_opts

    args = argparse.Namespace(command="train", knn_k=1, labels_per_class=10, knn_temperature=None)
    y = np.array([0] * 20 + [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6])
    with pytest.raises(ValueError, match=r"class\(es\) \[1, 2, 3, 4, 5\] of the training split have fewer examples "
                                         r"\(the fewest: 2\); lower --labels-per-class to 2$"):
        _probe_opts(args, len(y), y)
    args.labels_per_class = 2  # as many as the fewest class holds: enough
    assert _probe_opts(args, len(y), y)["labels_per_class"] == 2


def test_byol_refs_warning_goes_to_the_file_it_is_shown_on():
    """_show_warning stands in for warnings.showwarning, whose ``file`` argument says where to print
    (logging's capture and tools that call it directly pass one): stderr is only the default. What it
    shows as byol-ref's own is told by the category, not by the file the warning names (byol-ref names the
    line that called into it); another UserWarning, even one naming a file of byol-ref's, is shown as the
    warnings module showed it."""
    import io

    from byol_ref import cli
    from byol_ref.checks import ByolRefWarning

    buf = io.StringIO()
    cli._show_warning(None, "features read as images", ByolRefWarning, "/home/someone/run.py", 1, file=buf)
    assert buf.getvalue() == "byol-ref: warning: features read as images\n"
    shown = []
    cli._show_warning(lambda *a: shown.append(a), "NumPy's", UserWarning, str(Path(cli.__file__).parent / "data.py"),
                      7, file=buf)
    assert shown == [("NumPy's", UserWarning, str(Path(cli.__file__).parent / "data.py"), 7, buf, None)]
    assert buf.getvalue() == "byol-ref: warning: features read as images\n"



def test_trace_dims_defaults_are_the_documented_ones(tmp_path, capsys):
    """trace --dims without --seed, --start-step, --dtype and --batch traces what their documented
    defaults (0, 0, float64, 4) trace: a trace to compare with another implementation's is made
    from these numbers, so a default that moved would compare other steps than the ones asked for.
    Another --seed draws other params and views."""
    from byol_ref.cli import main

    dims = ["trace", "--dims", "5,6,4,3", "--steps", "1"]
    assert main([*dims, "--out", str(tmp_path / "default.npz")]) == 0
    assert main([*dims, "--seed", "0", "--start-step", "0", "--dtype", "float64", "--batch", "4",
                 "--out", str(tmp_path / "given.npz")]) == 0
    with np.load(tmp_path / "default.npz") as a, np.load(tmp_path / "given.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert main([*dims, "--seed", "1", "--out", str(tmp_path / "seed1.npz")]) == 0
    with np.load(tmp_path / "default.npz") as a, np.load(tmp_path / "seed1.npz") as b:
        assert not np.array_equal(a["init.online.param.encoder.fc1.weight"], b["init.online.param.encoder.fc1.weight"])


def test_a_resume_without_augment_keeps_the_runs_own_augmentations(tmp_path, capsys):
    """A run trained with --augment affine is continued with its own views when --augment is not
    given again (the checkpoint holds them), and config.json keeps recording them, not the default
    recipe's (crop) that a plain `train` would take."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    digits = ["--data", "digits", "--epochs", "1", "--batch-size", "256", "--hidden-size", "8", "--projection-dim",
              "4", "--predictor-dim", "4", "--no-progress", "--no-plots", "--no-eval"]
    assert main(["train", *digits, "--augment", "affine", "--out", str(out)]) == 0
    views = json.loads((out / "config.json").read_text())["views"]
    assert views[0]["rotation"] == 10.0  # (affine's; crop has none)
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(out), "--epochs", "2", "--no-eval", "--no-progress",
                 "--no-plots"]) == 0
    assert "trained 5 steps (step 10 of the run)" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["views"] == views
    # A run from before config.json held dicts recorded repr strings: a resume records what the
    # checkpoint holds, which views_from_dicts reads back.
    record = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**record, "views": [f"ImageAug(rotation={v['rotation']})"
                                                                     for v in views]}))
    assert main(["train", "--resume", "--out", str(out), "--epochs", "3", "--no-eval", "--no-progress",
                 "--no-plots"]) == 0
    assert json.loads((out / "config.json").read_text())["views"] == views


def test_diff_rtol_and_atol_each_do_their_own_part(tmp_path, capsys):
    """--rtol scales with the values and --atol does not: 1000 against 1000.5 agrees under --rtol 1e-3
    alone and not under --atol 1e-3 alone (were the two swapped on their way to diff_traces, both
    answers would turn round); 0 against 1e-4 is the other way about."""
    from byol_ref.cli import main
    from byol_ref.trace import Trace, save_trace

    for (x, y), agree in (((1000.0, 1000.5), ("rtol",)), ((0.0, 1e-4), ("atol",))):
        a = save_trace(tmp_path / "a.npz", Trace({"t": np.array([x])}, {}))
        b = save_trace(tmp_path / "b.npz", Trace({"t": np.array([y])}, {}))
        for tol in ("rtol", "atol"):
            other = "atol" if tol == "rtol" else "rtol"
            status = main(["diff", str(a), str(b), f"--{tol}", "1e-3", f"--{other}", "0"])
            assert status == (0 if tol in agree else 1), (x, y, tol)
    capsys.readouterr()


def test_eval_probes_by_default_as_train_reports():
    """eval's probe options default to train's (kNN k 20, majority vote, 10 labels per class), so
    that `eval RUN` reproduces the report train wrote; only train's defaults were tested."""
    from byol_ref.cli import build_parser

    p = build_parser()
    probe = ("knn_k", "knn_temperature", "labels_per_class")
    train, ev = p.parse_args(["train"]), p.parse_args(["eval", "run"])
    assert [getattr(ev, k) for k in probe] == [getattr(train, k) for k in probe] == [20, None, 10]


def test_a_folder_holding_only_a_set_aside_run_is_a_run_directory_to_train(tmp_path, capsys):
    """An --overwrite killed right after it set the old run aside leaves only --out/.replaced; a plain
    train there is refused as in a run directory (resume or overwrite it), not told the folder "holds
    no byol-ref run" and that --overwrite would train beside the files it holds; an eval of its
    checkpoint file by name is told where the run went, as one of the folder is."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 0
    aside = out / ".replaced"
    aside.mkdir()
    names = [f.name for f in out.iterdir() if f.is_file()]
    (aside / ".files").write_text("".join(f"{name}\n" for name in names))
    for name in names:
        (out / name).rename(aside / name)
    capsys.readouterr()
    assert main(["train", *SMALL_RUN, "--out", str(out), "--no-eval"]) == 2
    err = capsys.readouterr().err
    assert f"run directory {out} exists and is not empty; pass --resume to continue it" in err
    assert "holds no byol-ref run" not in err
    # eval of the checkpoint file by name (not the folder) says where the run is too
    assert main(["eval", str(out / "checkpoint.npz")]) == 2
    assert f"The run it was replacing is in {aside}" in capsys.readouterr().err


def test_a_fresh_run_that_fails_after_its_checkpoint_keeps_its_record(tmp_path, capsys, monkeypatch):
    """A new run refused before its first step leaves no half-made run directory; one that fails once
    its checkpoint is written (out of memory, say) keeps the config.json and metrics.jsonl beside it,
    without which the checkpoint can be neither resumed nor evaluated on its data. (Its report's gains
    line puts its points in scale with one sample of the test split the probes are scored on: synthetic
    has 104 test samples, 0.96 points each, not with one of the 408 training samples; and an eval
    that writes its report elsewhere names the run, not that folder, as what embed reads.)"""
    from byol_ref import cli
    from byol_ref.cli import main

    real = cli.fit

    def fails_after_the_checkpoint(*args, **kwargs):
        real(*args, **kwargs)
        raise MemoryError("Unable to allocate 1. GiB")

    monkeypatch.setattr(cli, "fit", fails_after_the_checkpoint)
    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 1
    assert "out of memory" in capsys.readouterr().err
    assert all((out / name).is_file() for name in ("checkpoint.npz", "config.json", "metrics.jsonl"))
    monkeypatch.setattr(cli, "fit", real)
    from byol_ref import plots
    monkeypatch.setattr(plots, "plot_run", lambda *args, **kwargs: [])  # (no plots: they are not what is checked)
    assert main(["eval", str(out), "--knn-k", "5", "--out", str(tmp_path / "e")]) == 0
    text = capsys.readouterr().out
    assert "points (one test sample is 0.96 points)" in text
    assert (f"Features for your own probes: {cli._prog()} embed {out} --out {tmp_path / 'e' / 'features.npz'} "
            "--baselines\n") in text


def test_set_wins_over_the_flags_defaults_under_a_preset(tmp_path, capsys):
    """With --preset, --set of a field that is no preset convention (a width, log_every) is what the
    run gets: the flags' defaults (hidden size 256, log_every 10), which also reach the preset's
    configs, must not override it; and a flag that is no convention either (--seed) reaches the run."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--batch-size", "64", "--preset", "deepmind",
                 "--set", "hidden_size=8", "--set", "projection_dim=4", "--set", "predictor_dim=4", "--set",
                 "log_every=3", "--seed", "3", "--no-eval", "--no-plots", "--no-progress", "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["model_config"]["hidden_size"], saved["model_config"]["projection_dim"],
            saved["train_config"]["log_every"], saved["train_config"]["seed"]) == (8, 4, 3, 3)


def test_eval_never_writes_over_a_report_written_while_it_loaded(tmp_path, capsys, monkeypatch):
    """eval --out refuses a report already there before it loads the run, and again once it holds the
    folder: one written meanwhile (another eval that finished first) is refused, not replaced."""
    from byol_ref import cli
    from byol_ref.cli import main

    run_dir, dest = tmp_path / "r", tmp_path / "e"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    real = cli._load_run

    def another_eval_finishes_meanwhile(args):
        loaded = real(args)
        dest.mkdir()
        (dest / "report.json").write_text("{}")
        return loaded

    monkeypatch.setattr(cli, "_load_run", another_eval_finishes_meanwhile)
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--knn-k", "5", "--out", str(dest)]) == 2
    assert f"--out {dest} already holds report.json; pass --overwrite" in capsys.readouterr().err
    assert (dest / "report.json").read_text() == "{}" and sorted(p.name for p in dest.iterdir()) == ["report.json"]


def test_convert_of_a_group_norm_network_with_a_simplicial_embedding_keeps_its_simplex_width(tmp_path, capsys):
    """convert builds the structure a mapping follows without the network's sizes, but keeps
    sem_simplex_dim: norm_groups must divide the simplicial embedding's width L x V (here 1 x 16 over
    16 groups), which the default V (8) would not."""
    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    sets = ["--set", "norm=group", "--set", "norm_groups=16", "--set", "sem_simplices=1", "--set", "sem_simplex_dim=16"]
    assert main(["trace", "--dims", "16,16,16,16", "--steps", "1", *sets, "--out", str(tmp_path / "t.npz")]) == 0
    arrays = {k[len("init."):]: v for k, v in load_trace(tmp_path / "t.npz").arrays.items()
              if k.startswith("init.") and ".opt." not in k}
    np.savez(tmp_path / "nets.npz", **arrays)
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "nets.npz"), str(tmp_path / "torch.npz"), "--from", "byol-ref", "--to",
                 "torch", "--mapping", "byol-pytorch", "--preset", "byol-pytorch", *sets]) == 0, capsys.readouterr().err


def test_outputs_through_a_file_are_named_before_any_work(tmp_path, capsys):
    """A trace, convert or embed output whose folder is a file is named as such up front (the OS
    said only "[Errno 20] Not a directory", once the work was done)."""
    from byol_ref.cli import main

    (tmp_path / "f").write_text("")
    assert main(["trace", "--dims", "5,6,4,3", "--out", str(tmp_path / "f" / "t.npz")]) == 2
    assert f"--out {tmp_path / 'f' / 't.npz'}: {tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err
    np.savez(tmp_path / "w.npz", w=np.ones(2))
    assert main(["convert", str(tmp_path / "w.npz"), str(tmp_path / "f" / "c.npz"), "--from", "byol-ref", "--to",
                 "byol-ref"]) == 2
    assert f"dst {tmp_path / 'f' / 'c.npz'}: {tmp_path / 'f'} is a file, not a folder" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "symlink") or not hasattr(os, "mkfifo"), reason="needs symlinks and FIFOs (POSIX)")
def test_outputs_at_a_link_to_nothing_a_loop_of_links_or_a_pipe_are_named_before_any_work(tmp_path, capsys,
                                                                                        tiny_run):
    """An --out that is a link to nothing (a disk not mounted), or that goes through a loop of links,
    said only "[Errno 17] File exists: 'x'" or "[Errno 40] Too many levels of symbolic links", for
    train, eval and embed alike; and an output file at a pipe, with --overwrite, was replaced by a
    regular file (as root, an output at a device would have replaced the device). Each is now named,
    with where and what to do, before any work, and nothing is made at the link's end or the pipe's
    place."""
    from byol_ref.cli import main

    run_dir, _ = tiny_run
    os.symlink(tmp_path / "unmounted" / "disk", tmp_path / "gone")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    os.mkfifo(tmp_path / "pipe.npz")
    gone = f"{tmp_path / 'gone'} is a link to {tmp_path / 'unmounted' / 'disk'}, which leads to no file"
    loop = f"{tmp_path / 'loop1'} is a link to {tmp_path / 'loop2'}, which leads round a loop of links, to no file"
    pipe = f"{tmp_path / 'pipe.npz'} is not a regular file (a pipe, device or socket)"
    cases = [(["train", *SMALL_RUN, "--out", str(tmp_path / "gone")], gone),
             (["train", *SMALL_RUN, "--out", str(tmp_path / "loop1" / "run")], loop),
             (["train", *SMALL_RUN, "--out", str(tmp_path / "loop1")], loop),
             (["eval", str(run_dir), "--out", str(tmp_path / "gone"), "--no-progress"], gone),
             (["eval", str(run_dir), "--out", str(tmp_path / "loop1" / "r"), "--no-progress"], loop),
             (["embed", str(run_dir), "--out", str(tmp_path / "loop1" / "f.npz")], loop),
             (["embed", str(run_dir), "--out", str(tmp_path / "pipe.npz"), "--overwrite"], pipe),
             (["trace", "--dims", "5,6,4,3", "--out", str(tmp_path / "pipe.npz"), "--overwrite"], pipe)]
    for argv, why in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"--out {argv[argv.index('--out') + 1]}: {why}" in err and "; choose another --out" in err, (argv, err)
    assert not (tmp_path / "unmounted").exists() and stat.S_ISFIFO(os.lstat(tmp_path / "pipe.npz").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gone", "loop1", "loop2", "pipe.npz"]


def test_a_path_that_starts_with_a_tilde_is_in_the_home_folder(tmp_path, capsys, monkeypatch):
    """The shell reads ~ as the home folder only at the start of a word of its own: not after --out=,
    nor within quotes. train --out=~/r trained into a folder named ~ in the current folder, and said
    "run directory ~/r", which any reader takes for the home folder; --data=~/x.npy was not found.
    Every path argument now reads ~ as the shell would have (./~ still names a folder named ~)."""
    from byol_ref.cli import main

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    np.save(home / "x.npy", np.random.default_rng(0).standard_normal((80, 6)))
    small = [a for a in SMALL_RUN if a != "synthetic" and a != "--data"]
    assert main(["train", "--data=~/x.npy", *small, "--no-eval", "--out=~/r"]) == 0, capsys.readouterr().err
    assert f"run directory {home / 'r'}" in capsys.readouterr().out
    assert (home / "r" / "checkpoint.npz").is_file() and os.listdir(work) == []
    assert main(["embed", "~/r", "--out", "~/f.npz"]) == 0, capsys.readouterr().err
    assert (home / "f.npz").is_file() and os.listdir(work) == []


def test_the_first_line_says_what_a_row_was_read_as(tmp_path, capsys):
    """It said "64 features" of images too (how they were read, channels first, showed nowhere before the
    run), and "1 features" of one column."""
    from byol_ref.cli import main

    rng = np.random.default_rng(0)
    small = [a for a in SMALL_RUN if a not in ("--data", "synthetic")] + ["--no-eval"]
    for name, shape, says in (("one", (80, 1), "(64 train / 16 test, 1 feature) for 1 epoch"),
                              ("grey", (80, 4, 6), "(64 train / 16 test, 4x6 images) for 1 epoch"),
                              ("rgb", (80, 3, 5, 5), "(64 train / 16 test, 3x5x5 images (C x H x W)) for 1 epoch")):
        np.save(tmp_path / f"{name}.npy", rng.random(shape))
        assert main(["train", "--data", str(tmp_path / f"{name}.npy"), *small, "--out", str(tmp_path / name)]) == 0
        assert f"byol-ref: training on {name} {says}, " in capsys.readouterr().out


def test_8_bit_images_are_read_as_pixels_in_0_1_by_train_eval_embed_and_checkpoint_features(tmp_path, capsys):
    """A file of uint8 images was refused ("pixels must lie in [0, 1]"), where torchvision and scikit-image
    read them as pixel / 255; and eval --data, embed --data and checkpoint_features took such pixels into an
    image run as they were, without a word."""
    import warnings

    from byol_ref.cli import main
    from byol_ref.train import checkpoint_features

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (80, 6, 6)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", x)
    small = [a for a in SMALL_RUN if a not in ("--data", "synthetic")] + ["--no-eval"]
    run_dir = tmp_path / "r"
    assert main(["train", "--data", str(tmp_path / "u8.npy"), *small, "--out", str(run_dir)]) == 0
    assert "(64 train / 16 test, 6x6 images (8-bit pixels / 255)) for 1 epoch" in capsys.readouterr().out
    assert json.loads((run_dir / "config.json").read_text())["data"]["full_scale"] == 255  # (for the record)
    assert main(["embed", str(run_dir), "--baselines", "--out", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz", allow_pickle=False) as f:
        inputs = np.concatenate([f["inputs_train"], f["inputs_test"]])
    assert inputs.min() >= 0 and inputs.max() <= 1
    np.testing.assert_array_equal(np.sort(inputs.ravel()), np.sort(x.ravel() / 255.0))
    assert "warning" not in capsys.readouterr().err
    # The same pixels saved as floats 0..255 are the run's pixels times 255: said, for eval and embed alike.
    np.save(tmp_path / "f255.npy", x.astype(np.float64))
    assert main(["embed", str(run_dir), "--data", str(tmp_path / "f255.npy"), "--out", str(tmp_path / "g.npz")]) == 0
    err = capsys.readouterr().err
    assert "warning: the pixels of --data" in err and "span [0, 255]" in err and "pixels in [0, 1]" in err
    rows = x.reshape(80, 36)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from_u8 = checkpoint_features(run_dir, rows)
    np.testing.assert_array_equal(from_u8, checkpoint_features(run_dir, rows / 255.0))
    with pytest.warns(UserWarning, match=r"x spans \[0, 255\], but .* trained on image pixels in \[0, 1\]"):
        checkpoint_features(run_dir, rows.astype(np.float64))


def test_eval_and_embed_data_read_8_bit_pixels_as_the_run_read_its_own(tmp_path, capsys):
    """--data of uint8 images is read as the run read its data: divided by 255 for an image run, and as
    stored for a run on the same pixels as feature vectors (a 2-D table, standardised per feature),
    whose statistics are of values 0..255: the features equal those of the run's own data."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).integers(0, 256, (80, 6, 6)).astype(np.uint8)
    np.save(tmp_path / "u8.npy", x)
    np.save(tmp_path / "rows.npy", x.reshape(80, 36))
    small = [a for a in SMALL_RUN if a not in ("--data", "synthetic")] + ["--no-eval"]
    for data, kind in (("u8.npy", "image"), ("rows.npy", "standardize")):
        run_dir = tmp_path / kind
        assert main(["train", "--data", str(tmp_path / data), *small, "--out", str(run_dir)]) == 0
        assert json.loads((run_dir / "config.json").read_text())["data"]["data"].endswith(data)
        own, given = tmp_path / f"{kind}-own.npz", tmp_path / f"{kind}-given.npz"
        assert main(["embed", str(run_dir), "--out", str(own)]) == 0
        assert main(["embed", str(run_dir), "--data", str(tmp_path / "u8.npy"), "--out", str(given)]) == 0
        assert "warning" not in capsys.readouterr().err
        with np.load(own, allow_pickle=False) as a, np.load(given, allow_pickle=False) as b:
            np.testing.assert_array_equal(a["encoder_test"], b["encoder_test"])
            np.testing.assert_array_equal(a["projector_train"], b["projector_train"])


def test_a_csv_of_pixels_trains_as_images_with_image_shape_and_full_scale(tmp_path, capsys):
    """A CSV of pixels (UCI's optdigits.tra: 64 counts 0..16 and the class; Kaggle's MNIST: 784 values 0..255)
    could only be read as feature vectors: there was no --image-shape, and no way to scale its pixels."""
    from byol_ref.cli import main
    from byol_ref.data import DIGITS_PATH, load_file

    with np.load(DIGITS_PATH, allow_pickle=False) as f:  # (the embedded digits' counts, as UCI's CSV holds them)
        counts, y = f["x_train"][:200].reshape(200, 64), f["y_train"][:200]
    table = tmp_path / "optdigits.csv"
    np.savetxt(table, np.c_[counts, y], fmt="%d", delimiter=",")
    small = [a for a in SMALL_RUN if a not in ("--data", "synthetic")] + ["--no-eval"]
    run_dir = tmp_path / "r"
    assert main(["train", "--data", str(table), "--labels", "64", "--image-shape", "8x8", "--full-scale", "16",
                 *small, "--out", str(run_dir)]) == 0
    assert "(160 train / 40 test, 8x8 images (pixels / 16)) for 1 epoch" in capsys.readouterr().out
    data = json.loads((run_dir / "config.json").read_text())["data"]
    assert (data["image_shape"], data["full_scale"]) == ([8, 8], 16)
    read = load_file(table, labels=64, image_shape=(8, 8), scale_pixels=16)
    assert read.x_train.max() == 1.0 and set(np.unique(read.x_train * 16)) <= set(range(17))
    # The run reads its data so again; eval --data takes --full-scale, and warns without it.
    assert main(["train", "--out", str(run_dir), "--resume", "--epochs", "2", *small[small.index("--batch-size"):]]) == 0
    assert "8x8 images (pixels / 16)" in capsys.readouterr().out
    assert main(["eval", str(run_dir), "--json", "--no-progress"]) == 0
    own = json.loads(capsys.readouterr().out)["rows"]
    assert main(["eval", str(run_dir), "--json", "--no-progress", "--data", str(table), "--labels", "64",
                 "--full-scale", "16"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == own
    assert main(["eval", str(run_dir), "--no-progress", "--data", str(table), "--labels", "64"]) == 0
    assert "warning: the pixels of --data" in capsys.readouterr().err
    # Refusals, each naming the flag.
    for argv, said in (
            (["--resume", "--out", str(run_dir), "--full-scale", "255"], "--full-scale 255 (run: 16)"),
            (["--resume", "--out", str(run_dir), "--image-shape", "1x8x8"], "--image-shape 1x8x8 (run: 8x8)"),
            (["--data", "digits", "--image-shape", "8x8"], "--image-shape 8x8 is for a file --data"),
            (["--data", str(table), "--labels", "64", "--full-scale", "16"],
             "--full-scale 16 is for image pixels, but optdigits was read as 64 features"),
            (["--data", str(table), "--labels", "64", "--image-shape", "8x9"],
             "--image-shape 8x9 has 72 pixels but the rows of features in file"),
            (["--data", str(table), "--labels", "64", "--image-shape", "8x8", "--batch-size", "64"],
             "x_train spans [0, 16]"),
            (["--data", str(table), "--labels", "64", "--image-shape", "8x8", "--full-scale", "0"],
             "--full-scale must be in (0, inf), got 0.0"),
            (["--data", str(table), "--image-shape", "8by8"], "argument --image-shape: expected HxW or CxHxW")):
        with pytest.raises(SystemExit) if "8by8" in argv else contextlib.nullcontext():
            assert main(["train", *argv, *([] if "--resume" in argv else ["--out", str(tmp_path / "new")])]) == 2
        err = capsys.readouterr().err
        assert said in err, (argv, err)
        assert "8by8" in argv or "x_train spans" not in said or "here, --full-scale N divides them" in err
    assert not (tmp_path / "new").exists()
    assert main(["eval", str(run_dir), "--full-scale", "16"]) == 2
    assert "--full-scale 16 goes with --data" in capsys.readouterr().err


def test_embed_never_writes_over_the_data_given_with_data(tmp_path, capsys):
    """embed --data FILE reads FILE, not the data the run records: an --out naming FILE is refused
    (the check looked at the run's own data files instead, and FILE was written over)."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).random((40, 32)))
    before = data.read_bytes()
    capsys.readouterr()
    assert main(["embed", str(run_dir), "--data", str(data), "--out", str(data), "--overwrite"]) == 2
    assert f"--out {data} is the file this command reads ({data}); write to another file" in capsys.readouterr().err
    assert data.read_bytes() == before


def test_trace_dims_takes_the_projector_hidden_width_and_the_batch(tmp_path, capsys):
    """--dims D,H,P,Q,PH sets the projector's hidden width and --batch the views' rows (neither was
    checked: both could be dropped for their defaults, P and 4)."""
    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    assert main(["trace", "--dims", "5,6,4,3,7", "--batch", "3", "--steps", "1", "--out", str(tmp_path / "t.npz")]) == 0
    assert "batch 3" in capsys.readouterr().out
    a = load_trace(tmp_path / "t.npz").arrays
    assert a["init.online.param.projector.fc1.weight"].shape == (6, 7)
    assert a["step0.input.view1"].shape == (3, 5)


def test_embed_of_a_float32_run_computes_in_float32(tmp_path, capsys):
    """eval and embed run the network in the run's own dtype (--dtype float32 trains in float32): its
    features are float32, as train's report computed them, not float64."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--dtype", "float32", "--out", str(run_dir)]) == 0
    assert main(["embed", str(run_dir), "--out", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz") as f:
        assert f["encoder_train"].dtype == np.float32 and f["projector_test"].dtype == np.float32


def test_trace_schedule_options_reach_the_traced_steps(tmp_path, capsys):
    """--total-steps K, --warmup-steps W and --start-step k set the step's lr and tau: at k = 2 of
    K = 10 with W = 4, deepmind's lr is 0.2 x 4/256 x 2/4 and tau 1 - 0.004 (cos(pi k/K) + 1)/2
    (only start_step was checked, through the trace's meta). The loss it prints has 10 digits."""
    import math

    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    assert main(["trace", "--dims", "5,6,4,3", "--steps", "1", "--total-steps", "10", "--warmup-steps", "4",
                 "--start-step", "2", "--out", str(tmp_path / "t.npz")]) == 0
    tr = load_trace(tmp_path / "t.npz")
    assert (tr.meta["total_steps"], tr.meta["warmup_steps"], tr.meta["start_step"]) == (10, 4, 2)
    said = float(capsys.readouterr().out.rsplit("(loss per step: ", 1)[1].rstrip(")\n"))
    assert said == pytest.approx(float(tr.arrays["step0.loss.total"]), rel=1e-9)  # (10 digits: a diff's scale)
    assert float(tr.arrays["step0.lr"]) == pytest.approx(0.2 * 4 / 256 * 2 / 4, rel=1e-6)  # (float32 rounding)
    assert float(tr.arrays["step0.tau"]) == pytest.approx(1 - 0.004 * (math.cos(math.pi * 2 / 10) + 1) / 2, rel=1e-12)


def test_a_runtime_error_is_one_line_and_a_usage_status(monkeypatch, capsys):
    """A RuntimeError from a command (CuPy missing for --device cuda, say) is said in one line with
    status 2, as the other errors a command raises, never a traceback."""
    from byol_ref import cli

    def command(args):
        raise RuntimeError("--device cuda needs CuPy")

    monkeypatch.setattr(cli, "_command", command)
    assert cli.main(["diff", "a.npz", "b.npz"]) == 2
    assert capsys.readouterr().err == "byol-ref diff: error: --device cuda needs CuPy\n"


def test_only_an_npz_with_meta_is_taken_for_a_checkpoint(tmp_path, capsys):
    """A training checkpoint is an .npz of meta and <group>/<name> arrays; without meta it is a plain
    file: an empty .npz is said to hold no arrays (not "a byol-ref run or checkpoint"), and arrays
    named like a checkpoint's are diffed as any others."""
    from byol_ref.cli import main

    np.savez(tmp_path / "empty.npz")
    assert main(["convert", str(tmp_path / "empty.npz"), str(tmp_path / "o.npz"), "--from", "torch", "--to",
                 "byol-ref", "--mapping", "lightly"]) == 2
    err = capsys.readouterr().err
    assert "holds no arrays" in err and "checkpoint" not in err
    np.savez(tmp_path / "g.npz", **{"online/param.encoder.fc1.weight": np.ones((2, 2))})
    assert main(["diff", str(tmp_path / "g.npz"), str(tmp_path / "g.npz")]) == 0
    assert "result: agree" in capsys.readouterr().out


def test_convert_of_a_run_without_predictor_says_so_for_the_package_that_has_one(tmp_path, capsys):
    """A --no-predictor run written under byol-pytorch's names lacks the predictor byol-pytorch builds:
    the note names use_predictor beside head_bias, and its read-back flags include it."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--no-predictor", "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["convert", str(run_dir), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "byol-pytorch"]) == 0
    err = capsys.readouterr().err
    assert ("the network written has head_bias=False, use_predictor=False, where byol-pytorch's own has "
            "head_bias=True, use_predictor=True") in err
    assert err.endswith("--preset byol-pytorch --set head_bias=false --set use_predictor=false\n")


def test_eval_refuses_a_report_already_there_before_it_loads_the_run(tmp_path, capsys, monkeypatch):
    """eval --out with a report there (and no --overwrite) is refused before the run is loaded and
    probed (minutes on a large run), not only once it holds the folder; so are probe options out of
    range and an --out that is a file (which the OS refused only after the probes)."""
    from byol_ref import cli
    from byol_ref.cli import main

    def not_to_be_loaded(args):
        raise AssertionError("the run was loaded")

    monkeypatch.setattr(cli, "_load_run", not_to_be_loaded)
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "report.txt").write_text("")
    assert main(["eval", str(tmp_path / "run"), "--out", str(tmp_path / "e")]) == 2
    assert f"--out {tmp_path / 'e'} already holds report.txt; pass --overwrite" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--knn-k", "0"]) == 2
    assert "--knn-k must be >= 1" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "run"), "--out", str(tmp_path / "e" / "report.txt")]) == 2
    assert f"{tmp_path / 'e' / 'report.txt'} is a file, not a folder" in capsys.readouterr().err


def test_diff_switches_each_reach_the_comparison(tmp_path, capsys):
    """--only-common, --subset and --ignore-dtype each turn a failing diff into an agreeing one (only
    --transpose-weights and the exit status of a plain diff were checked)."""
    from byol_ref.cli import main
    from byol_ref.trace import Trace, save_trace

    a = save_trace(tmp_path / "a.npz", Trace({"t": np.ones(2), "only_a": np.ones(1)}, {}))
    b = save_trace(tmp_path / "b.npz", Trace({"t": np.ones(2), "only_b": np.ones(1)}, {}))
    assert main(["diff", str(a), str(b)]) == 1
    assert main(["diff", str(a), str(b), "--only-common"]) == 0
    sub = save_trace(tmp_path / "sub.npz", Trace({"t": np.ones(2)}, {}))
    assert main(["diff", str(sub), str(b)]) == 1
    assert main(["diff", str(sub), str(b), "--subset"]) == 0  # only_b is B's alone
    assert main(["diff", str(a), str(b), "--subset"]) == 1  # only_a is A's alone: still a failure
    f32 = save_trace(tmp_path / "f32.npz", Trace({"t": np.ones(2, dtype=np.float32)}, {}))
    assert main(["diff", str(sub), str(f32)]) == 1
    assert main(["diff", str(sub), str(f32), "--ignore-dtype"]) == 0
    capsys.readouterr()


def test_trace_never_writes_over_its_mapping_file(tmp_path, capsys):
    """trace --layout torch --mapping FILE.json reads FILE.json as it reads --inputs: an --out naming
    it is refused even with --overwrite (only convert's dst was checked against its mapping). (convert
    under a mapping file, no package's names, has no package structure to note beside the file.)"""
    from byol_ref.cli import main
    from byol_ref.trace import load_trace

    assert main(["trace", "--dims", "5,6,4,3", "--steps", "1", "--out", str(tmp_path / "t.npz")]) == 0
    a = load_trace(tmp_path / "t.npz").arrays
    nets = {k[len("init."):]: v for k, v in a.items() if k.startswith("init.") and ".param." in k and ".opt." not in k}
    np.savez(tmp_path / "nets.npz", **nets, **{f"step0.input.{v}": a[f"step0.input.{v}"] for v in ("view1", "view2")})
    mapping = tmp_path / "m.json"
    mapping.write_text(json.dumps({k: k.replace(".param.", "_") for k in nets}))
    assert main(["convert", str(tmp_path / "nets.npz"), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to",
                 "torch", "--mapping", str(mapping)]) == 0
    assert "note" not in capsys.readouterr().err
    before = mapping.read_bytes()
    common = ["trace", "--inputs", str(tmp_path / "sd.npz"), "--layout", "torch", "--mapping", str(mapping)]
    assert main([*common, "--out", str(tmp_path / "t2.npz")]) == 0  # (the mapping file works)
    capsys.readouterr()
    assert main([*common, "--out", str(mapping), "--overwrite"]) == 2
    assert f"--out {mapping} is the file this command reads ({mapping})" in capsys.readouterr().err
    assert mapping.read_bytes() == before


def test_diff_lists_40_differing_tensors_unless_all_and_its_json_holds_nan(tmp_path, capsys):
    """The plain report lists the first 40 tensors that differ and says how many more --all lists;
    --all lists every tensor, those that agree too; --json writes a NaN value as JSON's NaN (a trace
    of a run gone wrong holds them) rather than failing on it."""
    from byol_ref.cli import main
    from byol_ref.trace import Trace, save_trace

    same = {"t_same": np.ones(1)}  # agrees: listed by --all only
    a = save_trace(tmp_path / "a.npz", Trace({**{f"t{i:02d}": np.zeros(1) for i in range(50)}, **same}, {}))
    b = save_trace(tmp_path / "b.npz", Trace({**{f"t{i:02d}": np.ones(1) for i in range(50)}, **same}, {}))
    for extra, listed in (([], 40), (["--all"], 51)):
        assert main(["diff", str(a), str(b), *extra]) == 1
        out = capsys.readouterr().out
        assert sum(line.startswith("  t") for line in out.splitlines()) == listed, extra
        assert ("... and 10 more (--all lists them all" in out) == (listed == 40)
    n = save_trace(tmp_path / "n.npz", Trace({"t": np.array([np.nan])}, {}))
    main(["diff", str(n), str(n), "--json"])
    rep = json.loads(capsys.readouterr().out)  # (Python's json reads NaN back)
    assert np.isnan(next(t for t in rep["tensors"] if t["name"] == "t")["a_value"])


def test_convert_from_torch_leaves_out_unmapped_names_only_with_partial(tmp_path, capsys):
    """Reading a state_dict, a tensor the mapping does not name is refused by name unless --partial
    (which only the byol-ref -> torch direction had a test of)."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    assert main(["convert", str(run_dir), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch",
                 "--mapping", "byol-pytorch"]) == 0
    with np.load(tmp_path / "sd.npz") as z:
        np.savez(tmp_path / "extra.npz", **z, **{"extra.weight": np.zeros((2, 2))})
    capsys.readouterr()
    back = ["convert", str(tmp_path / "extra.npz"), str(tmp_path / "back.npz"), "--from", "torch", "--to", "byol-ref",
            "--mapping", "byol-pytorch", "--preset", "byol-pytorch", "--set", "head_bias=false"]
    assert main(back) == 2
    assert ("1 torch name(s) have no byol-ref name, e.g. ['extra.weight']; extend the mapping or pass --partial to "
            "leave them out") in capsys.readouterr().err
    assert main([*back, "--partial"]) == 0
    with np.load(tmp_path / "back.npz") as z:
        assert "extra.weight" not in z.files and len(z.files) == 52


def test_convert_of_a_run_whose_checkpoint_is_cut_short_names_the_damage_and_never_advises_overwrite(tmp_path,
                                                                                                     capsys):
    """A run folder whose checkpoint.npz is truncated or corrupt does have a checkpoint: convert said it had
    none ("its run stopped before writing its first one") and advised train --overwrite, which would
    replace the run; it says what eval and --resume say, that the file is cut short or corrupt."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    ckpt = run_dir / "checkpoint.npz"
    whole = ckpt.read_bytes()
    capsys.readouterr()
    for size in (0, 30, len(whole) // 2, len(whole) - 1):
        ckpt.write_bytes(whole[:size])
        for layout in (["--from", "byol-ref", "--to", "torch"], ["--from", "torch", "--to", "byol-ref"]):
            assert main(["convert", str(run_dir), str(tmp_path / "x.npz"), *layout, "--mapping", "lightly"]) == 2
            err = capsys.readouterr().err
            assert f"{ckpt}" in err and ("truncated or corrupt" in err or "empty (0 bytes)" in err), (size, err)
            assert "--overwrite" not in err and "stopped before" not in err and "without a checkpoint" not in err
        assert ckpt.read_bytes() == whole[:size] and not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("dtype, value", [("float32", 1e39), ("float32", 1e300), ("float64", 1.79e308)])
def test_eval_and_embed_refuse_data_the_runs_preprocessing_takes_beyond_its_dtype(tmp_path, capsys, dtype, value):
    """Other data than the run's own are standardised with the run's statistics, which train never
    checked them against: a value beyond the run's dtype there (or one its sums overflow) gave inf and NaN
    features, written by embed and probed by eval with exit status 0 and only NumPy's RuntimeWarning."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--dtype", dtype, "--out", str(run_dir)]) == 0
    x = np.random.default_rng(0).standard_normal((40, 32))
    y = np.arange(40) % 2
    x[3, 5] = value
    np.savez(tmp_path / "big.npz", x=x, y=y)
    capsys.readouterr()
    for argv in (["embed", str(run_dir), "--out", str(tmp_path / "f.npz")], ["eval", str(run_dir), "--knn-k", "3",
                                                                            "--labels-per-class", "2"]):
        assert main([*argv, "--data", str(tmp_path / "big.npz")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Warning" not in err, err
        assert f"--data {tmp_path / 'big.npz'}: x_train has 1 value(s)" in err and f"beyond {dtype}'s range" in err
    assert not (tmp_path / "f.npz").exists()
    x[3, 5] = 0.0  # and the same data in range are read
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    assert main(["embed", str(run_dir), "--out", str(tmp_path / "f.npz"), "--data", str(tmp_path / "ok.npz")]) == 0
    with np.load(tmp_path / "f.npz") as f:
        assert all(np.isfinite(f[k]).all() for k in f.files)


def test_a_bad_data_seed_is_named_as_the_flag(tmp_path, capsys):
    """--data-seed -1 was refused as "seed must be an int >= 0", which reads as --seed (a flag of its own)."""
    from byol_ref.cli import main

    np.savetxt(tmp_path / "d.csv", np.random.default_rng(0).standard_normal((40, 3)), delimiter=",")
    for data in ("synthetic", str(tmp_path / "d.csv"), "digits"):
        assert main(["train", *SMALL_RUN, "--no-eval", "--data", data, "--data-seed", "-1",
                     "--out", str(tmp_path / "r")]) == 2
        assert capsys.readouterr().err == "byol-ref train: error: --data-seed must be an int >= 0, got -1\n", data
        assert not (tmp_path / "r").exists()


def test_an_empty_data_argument_is_named_as_given(tmp_path, capsys):
    """--data '' (an unset shell variable) read as Path('.'): "path: '.' is a directory"."""
    from byol_ref.cli import main

    assert main(["train", *SMALL_RUN, "--data", "", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith("byol-ref train: error: --data '': no such file, and not a built-in ")


# --------------------------------------------------------------------------- mutation audit (cli, eighteenth)


def test_the_embed_command_eval_prints_keeps_the_labels_and_header_of_its_data(tmp_path, capsys):
    """Found by a mutation audit: with --labels dropped from the embed command that eval's footer
    prints for other data (or swapped with --data), every test passed, as no test evaluated data with
    --labels and --out. The command printed then read a CSV's label column as a feature: refused."""
    from byol_ref.cli import main

    x = np.random.default_rng(0).random((80, 4))
    rows = "\n".join(",".join(repr(float(v)) for v in r) + f",{int(r[0] > 0.5)}" for r in x)
    (tmp_path / "d.csv").write_text("a,b,c,d,label\n" + rows + "\n")
    data = ["--data", str(tmp_path / "d.csv"), "--labels", "label"]
    run_dir, rep = tmp_path / "r", tmp_path / "rep"
    assert main(["train", *SMALL_RUN[2:], *data, "--batch-size", "16", "--no-eval", "--out", str(run_dir)]) == 0
    capsys.readouterr()
    assert main(["eval", str(run_dir), *data, "--csv-header", "yes", "--knn-k", "5", "--labels-per-class", "2",
                 "--out", str(rep)]) == 0
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Features for your own probes: ")]
    argv = shlex.split(line[0].split(": ", 1)[1])
    argv = argv[argv.index("embed"):]
    assert argv == ["embed", str(run_dir), *data, "--csv-header", "yes", "--out", str(rep / "features.npz"),
                    "--baselines"]
    assert main(argv) == 0, capsys.readouterr().err
    with np.load(rep / "features.npz") as f:
        assert f["encoder_train"].shape[0] == f["labels_train"].shape[0] == f["inputs_train"].shape[0] > 0


@pytest.mark.parametrize("image", [False, True])
def test_data_beyond_the_runs_dtype_are_named_by_split_count_first_index_and_raw_value(tmp_path, capsys, image):
    """Found by a mutation audit: the refusal of data the run's preprocessing takes beyond its dtype
    was held only for one value in the train split of a feature-vector run: checking the train split
    alone, counting 1, naming the last index, the standardised value for the raw one, or leaving out
    an image run's input normalisation (raw 2e38 is in float32's range, normalised it is not) passed."""
    from byol_ref.cli import main

    run_dir, rng = tmp_path / "r", np.random.default_rng(0)
    if image:  # the digits' pixels, normalised by the run's scalar mean and std (about 0.31 and 0.38)
        assert main(["train", *SMALL_RUN, "--data", "digits", "--no-eval", "--dtype", "float32",
                     "--out", str(run_dir)]) == 0
        x_train, x_test, big = rng.random((30, 64)), rng.random((20, 64)), (2e38, 3e38)
    else:  # features of std about 100: standardised, 1e41 is about 1e39
        x = 100 * rng.standard_normal((80, 3))
        np.savez(tmp_path / "d.npz", x=x, y=np.arange(80) % 2)
        assert main(["train", *SMALL_RUN[2:], "--data", str(tmp_path / "d.npz"), "--batch-size", "16", "--no-eval",
                     "--dtype", "float32", "--out", str(run_dir)]) == 0
        x_train, x_test, big = rng.standard_normal((30, 3)), rng.standard_normal((20, 3)), (1e41, 2e41)
    x_test[1, 2], x_test[3, 0] = big
    np.savez(tmp_path / "big.npz", x_train=x_train, x_test=x_test, y_train=np.arange(30) % 2,
             y_test=np.arange(20) % 2)
    capsys.readouterr()
    for argv in (["embed", str(run_dir), "--out", str(tmp_path / "f.npz")], ["eval", str(run_dir), "--knn-k", "3"]):
        assert main([*argv, "--data", str(tmp_path / "big.npz")]) == 2
        assert capsys.readouterr().err == (
            f"byol-ref {argv[0]}: error: --data {tmp_path / 'big.npz'}: x_test has 2 value(s) that the run's input "
            "standardisation (its training data's mean and std) takes beyond float32's range (magnitude 3.4e+38), "
            f"the first at index (1, 2) (raw value {big[0]:.3g}); the network would compute inf and NaN features "
            "from them: rescale these data as the run's were\n")
    assert not (tmp_path / "f.npz").exists()


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges there")
def test_a_run_whose_checkpoint_is_a_dangling_link_is_named_so_by_every_command(tmp_path, capsys):
    """Found by a mutation audit: a checkpoint.npz that is a link to a file no longer there (a disk not
    mounted) does not exist() as a file; with convert's is_symlink() test dropped, every test passed,
    and convert said the run stopped before its first checkpoint and advised train --overwrite."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    ckpt = run_dir / "checkpoint.npz"
    ckpt.unlink()
    ckpt.symlink_to(tmp_path / "elsewhere" / "checkpoint.npz")
    capsys.readouterr()
    says = (f"checkpoint not found: {ckpt} is a link to {tmp_path / 'elsewhere' / 'checkpoint.npz'}, which leads to "
            "no file (a disk not mounted, a file moved?)\n")
    for layout in (["--from", "byol-ref", "--to", "torch"], ["--from", "torch", "--to", "byol-ref"]):
        assert main(["convert", str(run_dir), str(tmp_path / "x.npz"), *layout, "--mapping", "lightly"]) == 2
        assert capsys.readouterr().err == f"byol-ref convert: error: {says}"
    # eval, embed and --resume said the run stopped before its first checkpoint and advised --overwrite;
    # eval and embed of the link itself (found in review) said it did not exist
    for argv in (["eval", str(run_dir)], ["embed", str(run_dir), "--out", str(tmp_path / "f.npz")],
                 ["train", "--resume", "--out", str(run_dir), "--no-progress"], ["eval", str(ckpt)],
                 ["embed", str(ckpt), "--out", str(tmp_path / "f.npz")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.endswith(f"error: {says}") and "--overwrite" not in err, err
    assert ckpt.is_symlink() and not (tmp_path / "x.npz").exists() and not (tmp_path / "f.npz").exists()


def test_convert_says_a_layout_and_an_encoder_bias_its_package_builds_otherwise():
    """Found by a mutation audit: with 'layout' left out of the fields the note compares, or the
    package's own encoder bias read as always True, every test passed: no test wrote an edifice-layout
    network under lightly's names (the mapping takes it), nor one with an encoder bias lightly lacks."""
    from contextlib import redirect_stderr
    from io import StringIO

    from byol_ref.cli import _say_the_structure_written

    lightly = get_preset("lightly")
    for extra, says in (({"layout": "edifice"}, "layout='edifice', where lightly's own has layout='paper'"),
                        ({"encoder_bias": True}, "encoder_bias=True, where lightly's own has encoder_bias=False")):
        err = StringIO()
        with redirect_stderr(err):
            _say_the_structure_written(lightly.config(encoder_dim=2, **extra), "lightly")
        (key, value), = extra.items()
        assert err.getvalue() == (f"byol-ref convert: note: the network written has {says}: a model built by lightly "
                                  f"will not load it whole. Read it back with --preset lightly --set "
                                  f"{key}={str(value).lower()}\n")


def test_a_run_whose_checkpoint_npz_is_a_folder_or_a_pipe_is_named_so_not_called_stopped(tmp_path, capsys):
    """Found by a mutation audit: with _refuse_no_checkpoint's exists() test dropped (a checkpoint.npz
    there, but no file), every test passed; eval, embed and --resume then said the run stopped before
    its first checkpoint and advised --overwrite, which would replace the run."""
    from byol_ref.cli import main

    run_dir = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    ckpt = run_dir / "checkpoint.npz"
    ckpt.unlink()
    kinds = [("folder", ckpt.mkdir, "is a folder, not a checkpoint file")]
    if hasattr(os, "mkfifo"):
        kinds.append(("pipe", lambda: os.mkfifo(ckpt), "is not a regular file (a pipe, device or socket)"))
    for kind, make, says in kinds:
        make()
        capsys.readouterr()
        for argv in (["eval", str(run_dir)], ["embed", str(run_dir), "--out", str(tmp_path / "f.npz")],
                     ["train", "--resume", "--out", str(run_dir), "--no-progress"]):
            assert main(argv) == 2, (kind, argv)
            err = capsys.readouterr().err
            assert f"error: checkpoint not found: {ckpt} {says}" in err and "--overwrite" not in err, err
        ckpt.rmdir() if kind == "folder" else ckpt.unlink()
    assert not (tmp_path / "f.npz").exists()


def test_embed_baselines_refuses_random_encoder_features_that_are_not_finite(tmp_path, capsys, monkeypatch):
    """Found by a mutation audit: with finite=True dropped from the random-init encoder's encode, every
    test passed, and embed --baselines would write its inf/NaN features without a word (the trained
    network's features of the same rows being finite says nothing of another network's)."""
    from byol_ref import report
    from byol_ref.cli import main

    run_dir, feats = tmp_path / "r", tmp_path / "f.npz"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    real = report.random_init_baseline

    def overflowing(online, *a, **k):  # (weights of 1e308: the first Linear's sums overflow float64)
        net = real(online, *a, **k)
        return net._replace(params={**net.params, "encoder.fc1.weight": np.full_like(net.params[
            "encoder.fc1.weight"], 1e308)})

    monkeypatch.setattr(report, "random_init_baseline", overflowing)
    capsys.readouterr()
    assert main(["embed", str(run_dir), "--out", str(feats), "--baselines"]) == 2
    assert "error: the network's features of " in capsys.readouterr().err
    assert not feats.exists()


def test_embed_refuses_encoder_features_that_are_not_finite_where_the_projector_s_are(tmp_path, capsys, monkeypatch):
    """The encoder's features are checked on their own: an encoder unit that overflows to +inf, which
    the projector's first Linear (negative weights) makes -inf and its ReLU 0, leaves every projector
    feature finite; with the encoder's check dropped embed wrote the inf without a word."""
    import byol_ref.cli as cli

    run_dir, feats = tmp_path / "r", tmp_path / "f.npz"
    assert cli.main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    real = cli._load_run

    def overflowing(args):  # (scale and shift of 1e308 on the encoder's last norm: its unit 0 overflows float64)
        online, *rest = real(args)
        p = {k: v.copy() for k, v in online.params.items()}
        p["encoder.norm2.gamma"][0] = p["encoder.norm2.beta"][0] = 1e308
        p["projector.fc1.weight"][0] = -1.0
        return (online._replace(params=p), *rest)

    monkeypatch.setattr(cli, "_load_run", overflowing)
    online, dataset, input_norm, backend, *_ = cli._load_run(cli.build_parser().parse_args(["embed", str(run_dir),
                                                                                        "--out", str(feats)]))
    with np.errstate(over="ignore", invalid="ignore"):
        y = cli.encode(online, dataset.x_test, input_norm, backend)
        z = cli.encode(online, dataset.x_test, input_norm, backend, which="z")
    assert np.isposinf(y[:, 0]).any() and np.isfinite(y[:, 1:]).all() and np.isfinite(z).all()  # (the case)
    capsys.readouterr()
    assert cli.main(["embed", str(run_dir), "--out", str(feats)]) == 2
    assert "error: the network's features of " in capsys.readouterr().err
    assert not feats.exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_a_recorded_data_file_that_became_a_link_to_nothing_or_a_pipe_is_named_as_such(tmp_path):
    """The data file config.json records is named for what stands there (checks.odd_entry), as every reader
    names it: 'does not exist (moved ...)' sent the user looking for a file that stands there."""
    from byol_ref.cli import _data_for_run

    cfg_file = tmp_path / "r" / "config.json"
    link, pipe = tmp_path / "x.npy", tmp_path / "p.npy"
    link.symlink_to(tmp_path / "gone" / "x.npy")
    os.mkfifo(pipe)
    way = "pass --data PATH (and --labels) to name the data"
    for path, found in ((link, f"is a link to {tmp_path / 'gone' / 'x.npy'}, which leads to no file (a disk not "
                               "mounted, a file moved?)"),
                        (pipe, "is not a regular file (a pipe, device or socket)")):
        with pytest.raises(FileNotFoundError) as info:
            _data_for_run({"data": str(path)}, cfg_file)
        assert str(info.value) == f"{cfg_file} records the data file {str(path)!r}, which {found}; {way}"


def test_a_width_no_array_can_hold_is_named_as_its_flag(tmp_path, capsys):
    """A width whose weight matrix holds more values than any array can (NumPy's own refusals,
    "Maximum allowed dimension exceeded" and "array is too big", named no flag) is refused by
    the config, naming the flag, the value and the weight, before a run directory is made."""
    from byol_ref.cli import main

    tiny = ["--epochs", "1", "--batch-size", "32", "--no-progress", "--no-plots", "--no-eval"]
    for flag, value, weight in (("--hidden-size", 2**63, "encoder.fc1.weight"),
                                ("--hidden-size", 2**62, "encoder.fc1.weight"),
                                ("--projection-dim", 10**23, "projector.fc1.weight"),
                                ("--predictor-dim", 2**63 - 1, "predictor.fc1.weight")):
        out = tmp_path / f"r{value}"
        assert main(["train", "--data", "synthetic", flag, str(value), "--out", str(out), *tiny]) == 2
        err = capsys.readouterr().err
        assert f"byol-ref train: error: {flag} must leave every weight within what one array holds" in err, err
        assert f"got {value}: {weight} would have shape" in err and not out.exists()
    assert main(["trace", "--dims", f"4,{2**63},4,4", "--out", str(tmp_path / "t.npz")]) == 2
    assert f"hidden_size must leave every weight within what one array holds ({sys.maxsize // 8} values), " \
           f"got {2**63}: encoder.fc1.weight would have shape (4, {2**63})" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_a_data_flag_that_names_no_file_is_named_as_the_flag_for_what_stands_there(tmp_path, capsys):
    """--data names a folder, a link to nothing or a pipe: the message names --data (load_file's
    own named its Python argument, "path: ..."; a link to nothing was "no such file")."""
    from byol_ref.cli import main

    link, pipe = tmp_path / "x.npy", tmp_path / "p.npy"
    link.symlink_to(tmp_path / "gone.npy")
    os.mkfifo(pipe)
    expected = "expected 'digits', 'synthetic' or a .npy/.npz/.csv feature file"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(tmp_path / "r")]) == 0
    for command in (["train"], ["eval", str(tmp_path / "r")], ["embed", str(tmp_path / "r"), "--out",
                                                                 str(tmp_path / "e.npz")]):
        for path, found in ((tmp_path, "is a directory"), (pipe, "is not a regular file (a pipe, device or socket)"),
                            (link, f"is a link to {tmp_path / 'gone.npy'}, which leads to no file")):
            assert main([*command, "--data", str(path)]) == 2
            err = capsys.readouterr().err
            assert f"error: --data {str(path)!r} {found}" in err and expected in err, err
    assert not (tmp_path / "e.npz").exists()


def test_an_empty_out_is_named_not_taken_for_no_out(tmp_path, capsys, monkeypatch):
    """--out '' (an unset shell variable): train made a run in runs/<data>-<time> and eval wrote no
    report, both exiting 0; embed, trace and convert named '.', which no one typed."""
    from byol_ref.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    for argv, says in ((["train", *SMALL_RUN, "--out", ""], "--out is empty (''); expected a run directory"),
                       (["eval", "r", "--out", ""], "--out is empty (''); expected a folder for the report"),
                       (["embed", "r", "--out", ""], "--out is empty (''); expected the .npz file to write"),
                       (["trace", "--dims", "4,3,4,4", "--out", ""], "--out is empty (''); expected the trace .npz"),
                       (["convert", "r", "", "--from", "byol-ref", "--to", "torch", "--mapping", "lightly"],
                        "dst is empty (''); expected the .npz or .safetensors file to write")):
        assert main(argv) == 2, argv
        captured = capsys.readouterr()
        assert f"byol-ref {argv[0]}: error: {says}" in captured.err and not captured.out, captured
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no runs/ folder, nothing written


def test_data_seed_draws_the_points_of_synthetic_and_the_split_of_a_file(tmp_path, capsys):
    """--data-seed reaches the data: the points of --data synthetic and the train/test split of a
    file are those its seed draws (dropped on the way, every seed trained on the same data without a
    word), and a run records it, so that eval reads the run's own split again."""
    from byol_ref.cli import _load_data, main
    from byol_ref.data import load_file, synthetic

    x = np.random.default_rng(0).random((60, 4))
    np.save(tmp_path / "x.npy", x)
    for spec, direct in (({"data": "synthetic"}, synthetic), ({"data": str(tmp_path / "x.npy")},
                                                              functools.partial(load_file, tmp_path / "x.npy"))):
        seeded = {s: _load_data({**spec, "data_seed": s}).x_train for s in (0, 1)}
        assert not np.array_equal(seeded[0], seeded[1]), spec
        for s in (0, 1):
            assert np.array_equal(seeded[s], direct(seed=s).x_train), (spec, s)
    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--data-seed", "3", "--no-eval", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["data"]["data_seed"] == 3


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_which_probe_is_running_shows_on_a_terminal_and_nowhere_else(tmp_path, capsys, monkeypatch):
    """The report's probes take minutes on 56,000 rows, and said nothing after "probing the
    features...". On a terminal a line now says which of the twelve is running, redrawn in place
    within the terminal's width (a wrapped line is not redrawn: so for training's bar too), and is
    cleared at the end; in a log or a pipe, and with --no-progress, nothing more is written."""
    from byol_ref import cli, evaluate
    from byol_ref.cli import main
    from byol_ref.data import synthetic
    from byol_ref.train import Progress

    monkeypatch.setenv("COLUMNS", "60")
    term = _Terminal()
    show = cli._probe_progress(term)
    d = synthetic(n=80, dim=4, n_classes=3, seed=0)
    rows = evaluate.probe_report({"a": (d.x_train, d.x_test), "b": (2 * d.x_train, 2 * d.x_test)}, d.y_train,
                                 d.y_test, labels_per_class=2, k=3, progress=show)
    assert len(rows) == 2
    drawn = term.getvalue().split("\r")[1:]
    assert [d.rstrip() for d in drawn[:-2]] == [
        f"byol-ref: probing {i + 1}/6, 0 s: {name}: {what}"[:59]
        for i, (name, what) in enumerate((n, w) for n in "ab" for w in ("low-label probe", "linear probe", "kNN"))]
    assert all(len(d) == 59 for d in drawn[:-1]) and drawn[-2:] == [" " * 59, ""]
    assert cli._probe_progress(io.StringIO()) is None  # (not a terminal)
    bar = Progress(10, stream=term)
    bar.update(3, loss=1.0, lr=0.5, tau=0.99)
    assert len(term.getvalue().split("\r")[-1]) == 59
    monkeypatch.setattr(cli, "_probe_progress", lambda: pytest.fail("shown with --no-progress"))
    assert main(["train", *SMALL_RUN, "--out", str(tmp_path / "r")]) == 0
    with pytest.raises(pytest.fail.Exception):
        main(["eval", str(tmp_path / "r")])
    assert main(["eval", str(tmp_path / "r"), "--no-progress"]) == 0  # (eval takes it as train does)


def test_eval_no_plots_writes_the_report_without_plots(tmp_path, capsys, monkeypatch):
    """eval --out draws the plots unless --no-plots, as train does (eval had no such flag)."""
    from byol_ref import plots
    from byol_ref.cli import main

    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(tmp_path / "r")]) == 0
    monkeypatch.setattr(plots, "plot_run", lambda *args, **kwargs: pytest.fail("drawn with --no-plots"))
    monkeypatch.setattr(plots, "matplotlib_problem", lambda: pytest.fail("asked with --no-plots"))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--out", str(tmp_path / "e"), "--no-plots"]) == 0
    assert sorted(p.name for p in (tmp_path / "e").iterdir()) == ["report.json", "report.txt"]
    assert "Plots:" not in capsys.readouterr().out
    with pytest.raises(pytest.fail.Exception):
        main(["eval", str(tmp_path / "r"), "--out", str(tmp_path / "e2")])


def test_seed_reaches_the_training_and_the_progress_bar_shows_unless_no_progress(tmp_path, capsys):
    """--seed seeds the backend the run trains with (its initialisation, data order and views: a run
    of --seed 1 is fit's with a backend of seed 1, not one that records 1 and trains with another);
    the progress bar is on stderr unless --no-progress."""
    from byol_ref.backend import get_backend
    from byol_ref.cli import main
    from byol_ref.data import synthetic
    from byol_ref.train import fit, load_checkpoint

    shown = [a for a in SMALL_RUN if a != "--no-progress"]
    params = {}
    for seed, quiet in ((0, ["--no-progress"]), (1, [])):
        out = tmp_path / f"s{seed}"
        assert main(["train", *shown, *quiet, "--seed", str(seed), "--no-eval", "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert ("] 6/6 " in err and "it/s" in err) == (not quiet), err  # 408 // 64 = 6 steps
        state, model_cfg, tcfg, _ = load_checkpoint(out / "checkpoint.npz")
        params[seed] = state.online.params
    assert tcfg.seed == 1
    direct = fit(synthetic(), model_cfg, tcfg, backend=get_backend("numpy", tcfg.dtype, 1), progress=False)
    for k, v in direct.state.online.params.items():
        np.testing.assert_array_equal(v, params[1][k], err_msg=k)
    assert any(not np.array_equal(params[0][k], params[1][k]) for k in params[0])


def test_no_plots_draws_nothing_with_or_without_the_evaluation_and_the_report_times_the_training(tmp_path, capsys):
    """--no-plots leaves every PNG out (the probes' and training.png; with --no-eval too, where
    training.png is otherwise drawn alone); train's report.json records the training's seconds."""
    pytest.importorskip("matplotlib")
    from byol_ref.cli import main

    for extra in ([], ["--no-eval"]):
        out = tmp_path / f"r{len(extra)}"
        assert main(["train", *SMALL_RUN, *extra, "--knn-k", "5", "--out", str(out)]) == 0, extra
        assert not list(out.glob("*.png")), (extra, sorted(p.name for p in out.iterdir()))
    report = json.loads((tmp_path / "r0" / "report.json").read_text())
    assert isinstance(report["train_seconds"], float) and report["train_seconds"] > 0
    assert main(["train", *[a for a in SMALL_RUN if a != "--no-plots"], "--no-eval", "--out", str(tmp_path / "p")]) == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == ["training.png"]


def test_eval_of_a_checkpoint_draws_its_runs_training_curves(tiny_run, tmp_path, capsys):
    """eval of a run's checkpoint.npz, not its folder, still finds the run's metrics.jsonl beside it
    for training.png."""
    pytest.importorskip("matplotlib")
    from byol_ref.cli import main

    out, _ = tiny_run
    assert main(["eval", str(out / "checkpoint.npz"), "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "training.png").is_file()


def test_report_txt_says_which_probe_fits_stopped_at_their_cap_under_the_table(tmp_path, monkeypatch, capsys):
    """Found by a mutation audit: dropping the convergence note from the printed report (and report.txt)
    passed every test; no test's probes stopped at their cap. Here the probes are given (evaluate_features
    replaced): the note follows the table, in report.txt and on stdout, and report.json keeps each row's flag
    (and not the table)."""
    from types import SimpleNamespace

    from byol_ref import cli, report

    names = ("BYOL encoder (y)", "BYOL projector (z)", "random-init encoder", "raw inputs")
    rows = [{"name": n, "knn": 0.9, "low_label": 0.8, "low_label_std": 0.01, "linear": 0.95,
             "converged": n != "raw inputs"} for n in names]
    given = {"rows": rows, "collapse": {}, "table": "THE TABLE",
             "probe": {"repeats": 5, "k": 20, "labels_per_class": 10}}
    monkeypatch.setattr(report, "evaluate_features", lambda *a, **k: dict(given))
    data = SimpleNamespace(name="d", y_train=np.zeros(8, int), x_test=np.zeros((4, 2)), y_test=np.zeros(4, int))
    assert cli._report(None, data, None, None, tmp_path, None, plots=False, seed=0,
                       probe={"k": 20, "labels_per_class": 10}, progress=False) == 0
    note = report.format_convergence(rows)
    assert note.startswith("Note: a logistic-regression fit of the probes of raw inputs stopped")
    assert "THE TABLE\n" + note + "\n\n" in (tmp_path / "report.txt").read_text()
    assert "THE TABLE\n" + note + "\n\n" in capsys.readouterr().out
    written = json.loads((tmp_path / "report.json").read_text())
    assert [r["converged"] for r in written["rows"]] == [True, True, True, False] and "table" not in written


def test_trains_begun_in_the_same_second_without_out_each_get_a_run_directory(tmp_path, capsys, monkeypatch):
    """Without --out a run goes to runs/<data>-<time>, to the second: of two trains begun in one second
    (`for s in 0 1 2; do byol-ref train --seed $s & done`) the second was refused, "--out runs/... is in
    use", naming an --out no one gave, and trained nothing. It now takes runs/<data>-<time>-2 (then -3,
    ...): where the name is there before it looks, and where another process makes it between its look
    and its own mkdir."""
    import time as time_module
    from pathlib import Path as P

    from byol_ref.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time_module, "strftime", lambda fmt, *a: "20261201-120000")
    base = tmp_path / "runs" / "synthetic-20261201-120000"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")  # another run's, begun this second
    assert main(["train", *SMALL_RUN, "--no-eval"]) == 0
    assert "run directory runs/synthetic-20261201-120000-2\n" in capsys.readouterr().out
    assert (base.parent / "synthetic-20261201-120000-2" / "checkpoint.npz").is_file()
    assert (base / "config.json").read_text() == "{}"

    real_mkdir, made = P.mkdir, []

    def mkdir(self, *args, **kwargs):  # another process makes -3 just after this one found it free
        if self.name == "synthetic-20261201-120000-3" and not made:
            made.append(real_mkdir(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(P, "mkdir", mkdir)
    assert main(["train", *SMALL_RUN, "--no-eval"]) == 0
    assert "run directory runs/synthetic-20261201-120000-4\n" in capsys.readouterr().out
    assert made and list((base.parent / "synthetic-20261201-120000-3").iterdir()) == []


def test_a_name_longer_than_the_file_system_takes_is_named_by_its_argument(tmp_path, capsys):
    """A file or folder name over the file system's limit (255 bytes on most) was Python's "[Errno 36]
    File name too long: '...'", naming no argument; without --out, a long data file name makes the
    default run directory's name too long, and the message named a runs/ path no one typed."""
    from byol_ref.cli import main

    long = "a" * 300
    assert main(["trace", "--dims", "4,5,3,3", "--out", str(tmp_path / f"{long}.npz")]) == 2
    assert capsys.readouterr().err == (f"byol-ref trace: error: --out {tmp_path / long}.npz cannot be written: a "
                                       "name in the path is longer than the file system takes (the longest is 304 "
                                       "bytes; most take 255); choose another --out, with shorter names\n")
    assert main(["eval", str(tmp_path / long)]) == 2
    assert capsys.readouterr().err.endswith(f"error: the run {tmp_path / long} cannot be read: a name in the path is "
                                            "longer than the file system takes (the longest is 300 bytes; most take "
                                            "255); check the path\n")


def test_a_path_longer_than_the_system_takes_is_told_from_a_name_too_long(tmp_path, capsys):
    """Names of 200 bytes each, 25 of them: no name is over the file system's 255, the path is over
    the OS's 4096 (PATH_MAX). Both are ENAMETOOLONG, and the message said a name was too long,
    "the longest is 200 bytes; most take 255", which reads as a contradiction."""
    from byol_ref.cli import main

    deep = str(tmp_path / "/".join(["b" * 200] * 25))
    size, most = len(os.fsencode(deep)), os.pathconf(tmp_path, "PC_PATH_MAX") - 1  # (4095 on Linux)
    assert main(["trace", "--dims", "4,5,3,3", "--out", deep + ".npz"]) == 2
    assert capsys.readouterr().err == (f"byol-ref trace: error: --out {deep}.npz cannot be written: the path is "
                                       f"longer than the system takes ({size + 4} bytes; at most {most}); choose "
                                       "another --out, with a shorter path\n")
    assert main(["eval", deep]) == 2
    assert capsys.readouterr().err.endswith(f"error: the run {deep} cannot be read: the path is longer than the "
                                            f"system takes ({size} bytes; at most {most}); check the path\n")


def test_without_out_a_file_named_runs_is_told_as_the_default_run_directory_s_way(tmp_path, capsys, monkeypatch):
    """No --out, and a file named runs in the current folder: the message named an --out no one gave
    ("--out runs/synthetic-...: runs is a file"); it now names the default run directory and says to
    choose one with --out. Nothing is trained, and the file is left as it was."""
    from byol_ref.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("mine\n")
    assert main(["train", *SMALL_RUN]) == 2
    assert re.fullmatch(r"byol-ref train: error: the run directory \(no --out given\) runs/synthetic-[-0-9]+: runs "
                        r"is a file, not a folder; choose one with --out\n", capsys.readouterr().err)
    assert (tmp_path / "runs").read_text() == "mine\n"


# ------------------------------------------------------------------------------------------------------------
# Error paths that a line-coverage run found no test running (byol_ref/cli.py), each reached as a user
# reaches it, with what the user is told.
def _edit_checkpoint_meta(path: Path, **changes) -> None:
    """Rewrite the checkpoint at ``path`` with ``changes`` to its meta (None: the key removed)."""
    from byol_ref import checkpoint as ckpt

    arrays, meta = ckpt.load(path)
    meta = {k: v for k, v in {**meta, **changes}.items() if v is not None}
    ckpt.save(path, arrays, {k: v for k, v in meta.items() if k not in ("format", "version", "written_by")})


def test_eval_and_embed_of_a_checkpoint_whose_input_statistics_were_edited(tiny_run, tmp_path, capsys):
    """A checkpoint whose recorded input statistics were edited (a std of 0) was refused with the
    library's words only ("preprocessing must come from fit_preprocessing"), which no command-line
    user called: it now says the checkpoint is corrupt or was edited. A checkpoint from before the
    record, whose statistics are refitted on the data given, is not blamed so."""
    from byol_ref import checkpoint
    from byol_ref.cli import main

    out = tmp_path / "r"
    shutil.copytree(tiny_run[0], out)
    ckpt = out / "checkpoint.npz"
    prep = checkpoint.load(ckpt)[1]["preprocessing"]
    _edit_checkpoint_meta(ckpt, preprocessing={**prep, "std": [0.0] + prep["std"][1:]})
    for cmd in (["eval", str(out)], ["embed", str(out), "--out", str(tmp_path / "f.npz")]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"byol-ref {cmd[0]}: error: {ckpt}: preprocessing must come from fit_preprocessing, "
                              "got {'kind': 'standardize', "), err
        assert err.endswith("(mean and std must be finite and std > 0); the file is corrupt or was edited, and no "
                            "run writes this\n"), err
    digits, pixels = tmp_path / "digits", tmp_path / "flat.npy"  # an image run's checkpoint without the record
    assert main(["train", *SMALL_RUN, "--data", "digits", "--batch-size", "256", "--no-eval", "--out",
                 str(digits)]) == 0
    _edit_checkpoint_meta(digits / "checkpoint.npz", preprocessing=None)
    np.save(pixels, np.zeros((50, 8, 8)))  # (one value: a std of 0, refitted)
    capsys.readouterr()
    assert main(["embed", str(digits), "--data", str(pixels), "--out", str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert "{'kind': 'image', 'mean': 0.0, 'std': 0.0}" in err and "corrupt" not in err, err


def _unlabelled_run(tmp_path: Path, rows: int = 100) -> tuple:
    """(a run trained on an unlabelled .npy of ``rows`` x 4, that file): eval and embed read it without
    probing (nothing to probe), so they end quickly."""
    from byol_ref.cli import main

    data, out = tmp_path / "d.npy", tmp_path / "run"
    np.save(data, np.random.default_rng(0).normal(size=(rows, 4)))
    assert main(["train", *SMALL_RUN, "--data", str(data), "--batch-size", "16", "--no-eval", "--out", str(out)]) == 0
    return out, data


def test_a_resume_whose_checkpoint_records_augmentations_no_run_writes_names_the_checkpoint(tmp_path, capsys):
    """train --resume of a run whose checkpoint's augmentations were edited into ones no release writes:
    the checkpoint's reader refuses them, naming the file. (The check of --augment against them reads
    them first and leaves that to the reader: its own error, "view kind must be ...", names no file.)"""
    from byol_ref.cli import main

    out = tmp_path / "r"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(out)]) == 0
    _edit_checkpoint_meta(out / "checkpoint.npz", views=[{"kind": "nonsense"}])
    capsys.readouterr()
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress", "--no-eval"]) == 2
    assert capsys.readouterr().err.endswith(f"byol-ref train: error: {out / 'checkpoint.npz'}: invalid augmentation "
                                            "settings (view kind must be 'image' or 'vector', got 'nonsense')\n")


def test_a_resume_of_an_edited_config_names_it_though_its_checkpoint_is_cut_short_too(tiny_run, tmp_path, capsys):
    """config.json edited to a setting no run has, and the checkpoint cut short too: --resume says what
    is wrong with config.json. (The checkpoint is read there only to see whether a later release wrote
    the run; that it cannot be read is told where it is read, once config.json is put right.)"""
    from byol_ref.cli import main

    out = tmp_path / "r"
    shutil.copytree(tiny_run[0], out)
    config = json.loads((out / "config.json").read_text())
    config["model_config"]["hidden_size"] = -1
    (out / "config.json").write_text(json.dumps(config))
    ckpt = (out / "checkpoint.npz").read_bytes()
    (out / "checkpoint.npz").write_bytes(ckpt[:len(ckpt) // 2])
    assert main(["train", "--out", str(out), "--resume", "--no-progress", "--no-eval"]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: {out / 'config.json'} records settings no run has "
                                       "(hidden_size must be an int >= 1, got -1); the file was edited\n")


def test_train_data_whose_standardisation_overflows_get_no_advice_for_pixels(tmp_path, capsys):
    """Feature vectors of 1e300 and more, whose squares overflow: train refuses them as overflowing and
    says to rescale them, without the advice for pixels outside [0, 1] (--full-scale), which only that
    refusal gets; no run directory is left."""
    from byol_ref.cli import main

    data, out = tmp_path / "big.npy", tmp_path / "r"
    x = np.random.default_rng(0).normal(size=(100, 4))
    x[:, 0] *= 1e300
    np.save(data, x)
    assert main(["train", *SMALL_RUN, "--data", str(data), "--batch-size", "16", "--out", str(out)]) == 2
    assert re.fullmatch(r"byol-ref train: error: big: x_train has values whose standardisation overflows to inf or "
                        r"NaN \(largest magnitude [0-9.]+e\+300\); rescale the data\n", capsys.readouterr().err)
    assert not out.exists()


def test_trace_dims_that_are_not_whole_numbers_are_named(tmp_path, capsys):
    """trace --dims with a field that is no whole number (a letter, a fraction, nothing) is named as
    the flag, with what it got and the form it takes."""
    from byol_ref.cli import main

    for dims in ("4,8,x,4", "4.5,8,4,4", "", "4,8,4,4,"):
        assert main(["trace", "--dims", dims, "--out", str(tmp_path / "t.npz")]) == 2
        assert capsys.readouterr().err == (f"byol-ref trace: error: --dims must be integers D,H,P,Q[,PH], got "
                                           f"{dims!r}\n")
    assert not (tmp_path / "t.npz").exists()


def test_trace_says_what_it_left_out_and_a_simplicial_embedding_among_it(tmp_path, capsys):
    """trace --layout torch of a byol-pytorch file that holds, besides every tensor the mapping names,
    a tensor of byol-pytorch 0.9's simplicial embedding: the tensor is left out with a word, and the
    hint for that embedding follows on a line of its own. (A file of such a network alone lacks the
    plain projector: that is refused, with the same hint, before anything is left out.)"""
    from byol_ref.cli import main
    from byol_ref.interchange import networks_to_arrays, to_torch_layout, torch_mapping
    from byol_ref.model import build_from_config

    rng = np.random.default_rng(0)
    for sem in ({"sem_simplices": 2, "sem_simplex_dim": 3}, {}):
        cfg = get_preset("byol-pytorch").config(encoder_dim=5, hidden_size=6, projection_dim=4, predictor_dim=3,
                                                **sem)
        state = to_torch_layout(networks_to_arrays(*build_from_config(cfg, seed=3)), torch_mapping("byol-pytorch", cfg))
        if not sem:
            state["online_encoder.projector.0.0.weight"] = np.ones((6, 6))
        np.savez(tmp_path / "sd.npz", **state, view1=rng.standard_normal((4, 5)), view2=rng.standard_normal((4, 5)))
        status = main(["trace", "--inputs", str(tmp_path / "sd.npz"), "--layout", "torch", "--mapping",
                       "byol-pytorch", "--preset", "byol-pytorch", "--steps", "1", "--out", str(tmp_path / "t.npz")])
        err = capsys.readouterr().err
        hint = "These look like byol-pytorch 0.9's default simplicial embedding (projector.0.0, 0.1, 2.<i>): add "
        if sem:
            assert status == 2 and "lacks 12 torch tensor(s) that the byol-pytorch mapping names" in err
            assert "note:" not in err  # (the note of a structure other than Edifice's is --layout axon's only)
            assert "']. " + hint in err, err  # (a sentence of its own: it ran on from the list, "...'] These")
    assert status == 0
    assert err.startswith("byol-ref trace: left out 1 input tensor(s) the mapping does not name: "
                          f"online_encoder.projector.0.0.weight\n  {hint}"), err


def test_embed_of_a_run_from_before_its_length_was_kept_whose_data_shrank_says_no_step(tmp_path, capsys):
    """A checkpoint from before it kept its run's length, at step 2, whose data file now holds fewer
    training rows than its batch: the run's length cannot be told from those data, so embed writes the
    features and says nothing of an unfinished run (it is not known to be one); nor does it fail on the
    run's schedule. Nor is the length told from other data given with --data."""
    from byol_ref.cli import main

    out, data = _unlabelled_run(tmp_path)
    _edit_checkpoint_meta(out / "checkpoint.npz", total_steps=None, step=2)
    # Its own data, unchanged, tell its length (80 training rows in batches of 16: 5 steps); other data
    # given with --data tell nothing of it (1000 rows would make it 50).
    capsys.readouterr()
    assert main(["embed", str(out), "--out", str(tmp_path / "own.npz")]) == 0
    assert f"note: {out} stopped at step 2 of 5, its last checkpoint" in capsys.readouterr().err
    np.save(tmp_path / "other.npy", np.random.default_rng(2).normal(size=(1000, 4)))
    assert main(["embed", str(out), "--data", str(tmp_path / "other.npy"), "--out", str(tmp_path / "g.npz")]) == 0
    assert "note:" not in capsys.readouterr().err
    np.save(data, np.random.default_rng(1).normal(size=(12, 4)))
    capsys.readouterr()
    assert main(["embed", str(out), "--out", str(tmp_path / "f.npz")]) == 0
    err = capsys.readouterr().err
    assert "has changed since the run trained" in err and "note:" not in err, err
    with np.load(tmp_path / "f.npz") as f:
        assert f["encoder_train"].shape == (10, 8)


def test_embed_checks_its_output_before_it_reads_a_damaged_config(tiny_run, tmp_path, capsys):
    """embed of a run whose config.json is damaged, to an --out that exists: the --out is refused
    first, as for any run (the files the config would name as inputs are then unknown); without it,
    the damage is named."""
    from byol_ref.cli import main

    out, dest = tmp_path / "r", tmp_path / "f.npz"
    out.mkdir()
    shutil.copy(tiny_run[0] / "checkpoint.npz", out)
    (out / "config.json").write_text("{")
    dest.write_bytes(b"mine")
    assert main(["embed", str(out), "--out", str(dest)]) == 2
    assert capsys.readouterr().err == (f"byol-ref embed: error: --out {dest} exists; pass --overwrite to replace it "
                                       "or choose another path\n")
    dest.unlink()
    assert main(["embed", str(out), "--out", str(dest)]) == 2
    assert capsys.readouterr().err.startswith(f"byol-ref embed: error: {out / 'config.json'}, a run's config.json, is "
                                              "not valid JSON (JSONDecodeError: ")
    assert not dest.exists()


def test_a_blank_line_in_metrics_is_passed_over_without_a_note(tmp_path, capsys):
    """A metrics.jsonl with a blank line (a hand edit, files joined): the curves are drawn from its
    records, and the blank line is not called a line that is no record of ours."""
    pytest.importorskip("matplotlib")
    from byol_ref.cli import main

    out, _ = _unlabelled_run(tmp_path)
    with open(out / "metrics.jsonl", "a") as f:
        f.write("\n\n")
    capsys.readouterr()
    assert main(["eval", str(out), "--out", str(tmp_path / "e")]) == 0
    printed = capsys.readouterr()
    assert f"Plots: {tmp_path / 'e' / 'training.png'}" in printed.out and "note" not in printed.err, printed.err


def test_a_full_disk_while_the_curves_are_drawn_is_told_as_a_full_disk(tmp_path, capsys, monkeypatch):
    """The disk fills as training.png is written: that is no failed drawing to warn of and go on
    from (status 0, "no plots"), but a full disk, status 1, with where the run stands."""
    pytest.importorskip("matplotlib")
    import errno

    from byol_ref import checkpoint, plots
    from byol_ref.cli import main

    def atomic_write(path, write):
        def write_then_no_room(f):
            write(f)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return checkpoint.atomic_write(path, write_then_no_room)

    monkeypatch.setattr(plots, "atomic_write", atomic_write)
    out = tmp_path / "r"
    assert main(["train", *[a for a in SMALL_RUN if a != "--no-plots"], "--no-eval", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"byol-ref train: error: [Errno 28] {os.strerror(errno.ENOSPC)}: '{out / 'training.png'}' "
                          "(no room left to write it: free some space there, or raise the quota or the file-size "
                          "limit); the run is trained and its checkpoint written. Its report and plots: "), err
    assert "warning" not in err and sorted(f.name for f in out.iterdir()) == ["checkpoint.npz", "config.json",
                                                                             "metrics.jsonl"]


def test_hints_say_byol_ref_when_it_was_called_by_that_name(tiny_run, tmp_path, capsys, monkeypatch):
    """Called as the byol-ref console script, the commands a message gives begin with byol-ref (not
    the interpreter that runs it)."""
    from byol_ref.cli import main

    out = tmp_path / "r"
    out.mkdir()
    shutil.copy(tiny_run[0] / "config.json", out)  # (a run stopped before its first checkpoint)
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/byol-ref", "eval", str(out)])
    assert main(["eval", str(out)]) == 2
    assert capsys.readouterr().err.endswith(f"start it again with: byol-ref train ... --out {out} --overwrite\n")


def test_ctrl_c_while_the_arguments_are_read_or_as_main_returns_ends_with_status_130(monkeypatch, capsys):
    """A Ctrl-C while the command line is read (before the command's own handlers are in) is said
    as any other and ends with status 130, not a traceback; one that comes as main returns ends
    the console script with status 130 too."""
    import signal

    import byol_ref.cli as cli
    from byol_ref import rundir

    def interrupted(argv):
        raise KeyboardInterrupt

    def status(call):
        try:
            return call()
        except KeyboardInterrupt:  # (escaped: it would stop the test session as well)
            pytest.fail("the Ctrl-C escaped as a KeyboardInterrupt")

    with monkeypatch.context() as m:
        m.setattr(cli, "_explicit_dests", interrupted)
        assert status(lambda: cli.main(["eval", "run"])) == 130
    assert capsys.readouterr().err == "\nbyol-ref: interrupted\n"

    def main():
        raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdout", sys.stdout)  # (console_main wraps them: put back after)
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    monkeypatch.setattr(cli, "main", main)
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, *rundir.ENDS)}
    try:
        assert status(cli.console_main) == 130
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():  # (as they were: nohup ignores SIGHUP, say)
            signal.signal(signum, handler)


def test_a_write_error_of_a_stream_without_a_descriptor_is_raised_as_it_came(monkeypatch):
    """stdout replaced by a stream of no descriptor of its own (io.StringIO, a host program's), whose
    write fails with an input/output error: that is not the terminal that closed (even where one
    did), and the error is raised as it came, not as the stream's refusal to give a descriptor."""
    import errno

    import byol_ref.cli as cli

    class Failing(io.StringIO):
        def write(self, text):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        def flush(self):
            raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(cli, "leave_a_closed_terminal", lambda: {1, 2})  # (as where the terminal closed)
    for call in (lambda s: s.write("x"), lambda s: s.flush()):
        with pytest.raises(OSError) as got:
            call(cli._TerminalMayClose(Failing()))
        assert got.value.errno == errno.EIO


def _os_refuses_to_open(monkeypatch, folder: Path) -> None:
    """``folder`` as the OS shows one this user may enter but not read (mode 0o311): opening it
    (RunLock does, to lock it) is refused. (Root may: the tests may run as root.)"""
    import errno

    real_open = os.open

    def refusing(path, flags, *args, **kwargs):
        if Path(os.fsdecode(path)).absolute() == folder.absolute():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing)
    as_a_user(monkeypatch, unreadable=[folder])


def test_what_the_os_refuses_in_a_run_is_named_or_passed_over(tiny_run, tmp_path, capsys, monkeypatch):
    """The OS refusing, as it does a user who is not root: a run's config.json this user may not read
    (named as the run's, with the right missing, not as a config.json that "cannot be read as a run's");
    the data file a run records, outside it and unreadable (no argument names it: the file is named); a
    run folder this user may enter but not read, whose checkpoint eval and embed read (there is then
    no telling whether a train writes there, and nothing to tell); an --out folder train may not read
    (it is opened to be locked). The next test has the OS's own refusals, where the tests run as a user."""
    import errno

    from byol_ref import cli
    from byol_ref.cli import main

    run, config = tiny_run[0], tiny_run[0] / "config.json"
    real_read = Path.read_bytes

    def read_bytes(self):
        if self.absolute() == config.absolute():
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_read(self)

    with monkeypatch.context() as m:
        m.setattr(Path, "read_bytes", read_bytes)
        as_a_user(m, unreadable=[config])
        assert main(["eval", str(run)]) == 2
    assert capsys.readouterr().err == (f"byol-ref eval: error: the run {run} (at {config}) cannot be read: this user "
                                       "may not read it; give this user the right to read it, or copy it where they "
                                       "may\n")
    out, data = _unlabelled_run(tmp_path)
    with monkeypatch.context() as m:
        def load_file(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(data))

        m.setattr(cli, "load_file", load_file)
        as_a_user(m, unreadable=[data])
        assert main(["eval", str(out)]) == 2
    assert capsys.readouterr().err == f"byol-ref eval: error: {data}: this user may not read it\n"
    with monkeypatch.context() as m:
        _os_refuses_to_open(m, run)
        assert main(["embed", str(run), "--out", str(tmp_path / "f.npz")]) == 0
        assert "note" not in capsys.readouterr().err and (tmp_path / "f.npz").is_file()
        locked = tmp_path / "locked"
        locked.mkdir()
        _os_refuses_to_open(m, locked)
        assert main(["train", *SMALL_RUN, "--out", str(locked)]) == 2
    assert capsys.readouterr().err == (f"byol-ref train: error: --out {locked} cannot be read: this user may not "
                                       "read this folder; give this user the right to read it, or copy it where "
                                       "they may\n")
    assert list(locked.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may read and write anything")
def test_what_the_os_itself_refuses_in_a_run_is_named_or_passed_over(tiny_run, tmp_path, capsys):
    """The refusals of the test above from the OS's own permissions, where the tests run as a user."""
    from byol_ref.cli import main

    run = tmp_path / "tiny"
    shutil.copytree(tiny_run[0], run)
    out, data = _unlabelled_run(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    try:
        (run / "config.json").chmod(0)
        assert main(["eval", str(run)]) == 2
        assert capsys.readouterr().err.startswith(f"byol-ref eval: error: the run {run} (at {run / 'config.json'}) "
                                                  "cannot be read: this user may not read it;")
        (run / "config.json").chmod(0o644)
        data.chmod(0)
        assert main(["eval", str(out)]) == 2
        assert capsys.readouterr().err == f"byol-ref eval: error: {data}: this user may not read it\n"
        data.chmod(0o644)
        run.chmod(0o311)
        assert main(["embed", str(run), "--out", str(tmp_path / "f.npz")]) == 0
        assert "note" not in capsys.readouterr().err
        locked.chmod(0o333)
        assert main(["train", *SMALL_RUN, "--out", str(locked)]) == 2
        assert capsys.readouterr().err.startswith(f"byol-ref train: error: --out {locked} cannot be read: this user "
                                                  "may not read this folder;")
    finally:
        (run / "config.json").chmod(0o644)
        data.chmod(0o644)
        run.chmod(0o755)
        locked.chmod(0o755)


def test_convert_of_a_folder_whose_checkpoint_appeared_meanwhile_says_so(tiny_run, tmp_path, monkeypatch, capsys):
    """convert of a run folder reads its checkpoint.npz twice: once to see whether it is a checkpoint,
    then, where it is not, to let its reader say what is wrong with it. A checkpoint written between
    the two (a run writing its first one) was told "is not a byol-ref checkpoint: it holds other
    arrays than meta and ...", false of it; it is told that it appeared, and to run convert again."""
    from byol_ref import cli

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    monkeypatch.setattr(cli, "_is_checkpoint", lambda path: False)  # (the first read, before it was written)
    assert cli.main(["convert", str(run_dir), str(tmp_path / "sd.npz"), "--from", "byol-ref", "--to", "torch",
                     "--mapping", "byol-pytorch"]) == 2
    assert capsys.readouterr().err == (f"byol-ref convert: error: {run_dir / 'checkpoint.npz'} appeared while convert "
                                       f"read {run_dir} (a run writing its first checkpoint?); run convert again\n")
    assert not (tmp_path / "sd.npz").exists()


def test_a_resume_refused_by_fit_leaves_config_json_as_it_was(tiny_run, tmp_path, monkeypatch, capsys):
    """train --resume --epochs N rewrites config.json with the new length, then trains. Where fit then
    refused the resume before its first step, config.json was left saying N epochs of a run that had
    not moved; it is now left byte for byte as it was. A resume that goes on records the new length."""
    from byol_ref import cli

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    before = (run_dir / "config.json").read_bytes()

    def refuses(*args, **kwargs):
        assert json.loads((run_dir / "config.json").read_text())["train_config"]["epochs"] == 5  # (rewritten)
        raise ValueError("resume=True: refused, as a test asks")

    monkeypatch.setattr(cli, "fit", refuses)
    assert cli.main(["train", "--out", str(run_dir), "--resume", "--epochs", "5", "--no-progress", "--no-plots"]) == 2
    assert "refused, as a test asks" in capsys.readouterr().err
    assert (run_dir / "config.json").read_bytes() == before
    monkeypatch.undo()  # the resume goes on, to 5 epochs
    assert cli.main(["train", "--out", str(run_dir), "--resume", "--epochs", "5", "--no-progress", "--no-plots"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["train_config"]["epochs"] == 5


def test_a_checkpoint_whose_records_do_not_fit_the_resume_is_refused_before_training_is_announced(tiny_run,
                                                                                                   tmp_path, capsys):
    """A checkpoint whose augmentation record does not read, or whose recorded input statistics are not
    those of the run's data (both edited by hand), was refused by fit, after train --resume had printed
    "training on ... for N epochs", and named the Python argument ("resume=True: the data is not what
    ..."). Both are now refused before that line, in --resume's words, and config.json is not touched."""
    from byol_ref import checkpoint as ck
    from byol_ref.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    arrays, meta = ck.load(run_dir / "checkpoint.npz")
    before = (run_dir / "config.json").read_bytes()
    shifted = {**meta["preprocessing"], "mean": [m + 1 for m in meta["preprocessing"]["mean"]]}
    for edit, said in (({"views": [{"kind": "bogus"}, {"kind": "bogus"}]},
                        f"{run_dir / 'checkpoint.npz'}: invalid augmentation settings (view kind must be"),
                       ({"preprocessing": shifted},
                        f"--resume: the data is not what {run_dir / 'checkpoint.npz'} was trained on")):
        ck.save(run_dir / "checkpoint.npz", arrays, {**meta, **edit})
        assert main(["train", "--out", str(run_dir), "--resume", "--epochs", "5", "--no-progress", "--no-plots"]) == 2
        out, err = capsys.readouterr()
        assert said in err and "training on" not in out
        assert (run_dir / "config.json").read_bytes() == before


def test_a_resume_that_stops_on_an_error_after_a_checkpoint_keeps_the_new_length(tiny_run, tmp_path, monkeypatch,
                                                                                  capsys):
    """The other side of the test above: where the resumed run has checkpointed a step (its checkpoint
    is another file) or its checkpoint is gone, config.json keeps the length asked for, the one that
    checkpoint's steps were trained towards; only a checkpoint still the one resumed from puts it back."""
    from byol_ref import cli

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[0], run_dir)
    kept = (run_dir / "checkpoint.npz").read_bytes()

    def stops(after):
        def fit(*args, **kwargs):
            after()
            raise ValueError("stopped, as a test asks")
        return fit

    def checkpoints():  # (as save_checkpoint writes one: a new file, renamed over the old)
        shutil.copy(run_dir / "checkpoint.npz", run_dir / "new.npz")
        os.replace(run_dir / "new.npz", run_dir / "checkpoint.npz")

    for after in (checkpoints, (run_dir / "checkpoint.npz").unlink):
        (run_dir / "checkpoint.npz").write_bytes(kept)
        monkeypatch.setattr(cli, "fit", stops(after))
        assert cli.main(["train", "--out", str(run_dir), "--resume", "--epochs", "7", "--no-progress",
                         "--no-plots"]) == 2
        assert "stopped, as a test asks" in capsys.readouterr().err
        assert json.loads((run_dir / "config.json").read_text())["train_config"]["epochs"] == 7, after
        (run_dir / "config.json").write_text((tiny_run[0] / "config.json").read_text())
    # Where config.json cannot be put back (a full disk), the refusal is still what is told.
    (run_dir / "checkpoint.npz").write_bytes(kept)
    monkeypatch.setattr(cli, "fit", stops(lambda: None))
    monkeypatch.setattr(cli, "atomic_write", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    assert cli.main(["train", "--out", str(run_dir), "--resume", "--epochs", "7", "--no-progress", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.endswith("byol-ref train: error: stopped, as a test asks\n") and "space" not in err, err


def test_the_line_before_training_says_how_rows_and_labels_were_read():
    """_rows_are: 8-bit and 16-bit pixels are named so, another scale by its number; _class_names shows
    twelve names, and "..." only where there are more."""
    from byol_ref.cli import _class_names, _rows_are
    from byol_ref.data import Dataset

    x = np.zeros((2, 12))
    ds = Dataset(x, None, x[:0], None, (3, 2, 2), "d")
    assert _rows_are(ds._replace(image_shape=None)) == "12 features"
    assert _rows_are(ds) == "3x2x2 images (C x H x W)"
    for scale, said in ((255, "8-bit pixels / 255"), (65535, "16-bit pixels / 65535"), (65536, "pixels / 65536"),
                        (0.5, "pixels / 0.5")):
        assert _rows_are(ds._replace(image_shape=(4, 3), full_scale=scale)) == f"4x3 images ({said})", scale
    twelve = tuple(f"c{i}" for i in range(12))
    shown = ", ".join(f"{i} c{i}" for i in range(12))
    assert _class_names(twelve) == f"the labels are 12 class names, read as ids 0..11 in sorted order: {shown}"
    assert _class_names(twelve + ("c12",)) == (f"the labels are 13 class names, read as ids 0..12 in sorted order: "
                                               f"{shown}, ...")


def test_a_checkpoint_copied_out_of_its_run_is_unfinished_only_short_of_its_length(tmp_path):
    """_unfinished of a checkpoint file of another name: its step against its run's length alone;
    at the length, or with no length kept, nothing to say."""
    from byol_ref.cli import _unfinished

    copy = tmp_path / "c.npz"
    assert _unfinished(copy, 18, 18) is None and _unfinished(copy, 20, 18) is None
    assert _unfinished(copy, 3, None) is None
    assert _unfinished(copy, 17, 18) == (f"{copy} is the checkpoint of step 17 of its run's 18: these are the "
                                         "features of an unfinished run")


def test_train_and_eval_make_the_folders_their_out_is_in(tmp_path, capsys):
    """--out a/b/run, where neither a nor a/b exists yet: train and eval make the whole path, as
    ``mkdir -p`` does, rather than refusing a folder the user asked for."""
    from byol_ref.cli import main

    run = tmp_path / "a" / "b" / "run"
    assert main(["train", *SMALL_RUN, "--no-eval", "--out", str(run)]) == 0, capsys.readouterr().err
    assert (run / "checkpoint.npz").is_file()
    report = tmp_path / "c" / "d" / "report"
    assert main(["eval", str(run), "--no-plots", "--out", str(report)]) == 0, capsys.readouterr().err
    assert (report / "report.json").is_file()


def test_the_labels_per_class_default_is_lowered_only_below_the_fewest_class_and_never_below_2(capsys):
    """With --labels-per-class not typed: a smallest class of exactly 10 examples keeps the default 10,
    silently; one of 2 lowers it to 2, with the line saying so (2 is the least the probe takes). Typed,
    the refusal lists the classes below the value, not one holding exactly as many."""
    import argparse

    from byol_ref.cli import _probe_opts

    args = argparse.Namespace(command="train", knn_k=1, labels_per_class=10, knn_temperature=None, given=set())
    enough = np.array([0] * 20 + [1] * 10)
    assert _probe_opts(args, len(enough), enough)["labels_per_class"] == 10
    assert capsys.readouterr().out == ""
    two = np.array([0] * 20 + [1] * 2)
    assert _probe_opts(args, len(two), two)["labels_per_class"] == 2
    assert "the report's probes take --labels-per-class 2 (the fewest examples of a class)" in capsys.readouterr().out
    args.given = {"labels_per_class"}
    y = np.array([0] * 20 + [1] * 10 + [2, 2, 3, 3])
    with pytest.raises(ValueError, match=r"class\(es\) \[2, 3\] of the training split have fewer examples"):
        _probe_opts(args, len(y), y)


def test_embed_refuses_projector_features_that_are_not_finite(tmp_path, capsys, monkeypatch):
    """The run's own projector is checked as its encoder is: with an encoder whose features are finite
    and a projector whose sums overflow (its last weights 1e308), embed writes no inf/NaN features."""
    from byol_ref import cli

    run_dir, feats = tmp_path / "r", tmp_path / "f.npz"
    assert cli.main(["train", *SMALL_RUN, "--no-eval", "--out", str(run_dir)]) == 0
    real = cli.load_checkpoint

    def overflowing(*a, **k):
        state, *rest = real(*a, **k)
        online = state.online
        params = {**online.params, "projector.fc2.weight": np.full_like(online.params["projector.fc2.weight"], 1e308)}
        return (state._replace(online=online._replace(params=params)), *rest)

    monkeypatch.setattr(cli, "load_checkpoint", overflowing)
    capsys.readouterr()
    assert cli.main(["embed", str(run_dir), "--out", str(feats)]) == 2
    assert "error: the network's features of " in capsys.readouterr().err
    assert not feats.exists()


def test_the_console_script_leaves_a_missing_stream_missing(monkeypatch):
    """pythonw (no console) runs with sys.stdout or sys.stderr None: console_main wraps the streams
    only where both are there, and leaves a None as it is (wrapped, it would pass for a stream)."""
    import signal

    import byol_ref.cli as cli

    for missing, other in (("stdout", "stderr"), ("stderr", "stdout")):
        with monkeypatch.context() as m:
            m.setattr(cli, "main", lambda: 0)
            m.setattr(sys, missing, None)
            kept = getattr(sys, other)
            try:
                assert cli.console_main() == 0
                assert getattr(sys, missing) is None
                assert getattr(sys, other) is kept
            finally:
                signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_refusal_names_the_nearest_path_argument_it_fits(tmp_path):
    """Where the refused path lies in or under two path arguments (--labels a folder's file, --out a
    run folder in that folder), the message names the nearer one, --out (not the first in any order)."""
    import argparse

    from byol_ref.cli import _refused

    run = tmp_path / "w" / "run"
    name = run / "checkpoint.npz"
    args = argparse.Namespace(labels=str(tmp_path / "w"), out=str(run))
    said = _refused(PermissionError(errno.EROFS, os.strerror(errno.EROFS), str(name)), args)
    assert said == (f"--out {run} (at {name}) cannot be written: it is on a file system mounted read-only; "
                    "choose another --out, where this user may write")


def test_is_checkpoint_takes_meta_and_group_arrays_only(tmp_path):
    """_is_checkpoint: an .npz of meta and ``<group>/<name>`` arrays of checkpoint.GROUPS is one; with an
    array under another folder, or with no meta, it is some other weights file."""
    from byol_ref.cli import _is_checkpoint

    w = np.zeros(2)
    for arrays, taken in (({"meta": w, "online/w": w}, True), ({"meta": w, "online/w": w, "weights/w": w}, False),
                          ({"meta": w, "online/w": w, "w": w}, False), ({"online/w": w}, False)):
        path = tmp_path / "c.npz"
        np.savez(path, **arrays)
        assert _is_checkpoint(path) is taken, arrays
