"""A run's lifecycle on disk, as a hypothesis state machine: ``fit(out_dir=...)`` split into random segments.

Each call of fit is a fresh start, a new run over the one there (``overwrite=True``: the old run comes back
whole if the new one dies before its first checkpoint) or a ``resume=True`` (for the run's length or another
one), and ends at
its end, at a ``stop_at`` a few steps on, at an interrupt (``stop_requested`` returns the exception:
raised once that step's checkpoint is written, as a Ctrl-C is) or at a crash (the exception is raised
between a step's record and its checkpoint, so the steps since the last checkpoint are lost and
logged again on resume); between calls the last line of metrics.jsonl may be torn, as a write cut
short leaves it. After every call the checkpoint on disk loads and is the last one fit reported
written (``on_checkpoint``), at the steps ``checkpoint_every``, the end and an interrupt call for,
and metrics.jsonl holds one record per logged step, in order. Resumed to its end, the run is
bit-identical to the reference (params, target params, buffers, optimiser state, generator state,
data order, step), on disk too, and each of its records equals the reference's of the same step.

The reference is one uninterrupted fit with the same configs. A resume with another number of
epochs is allowed (a warm restart: the lr and tau schedules run over the new length from there on),
so then the reference is one uninterrupted in-memory fit per length in force, each continuing the
previous one's state (``fit(state=...)``: no checkpoint, no metrics file), with every step logged.
"""
import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import byol_ref as byol
from byol_ref.backend import to_numpy
from byol_ref.data import synthetic
from byol_ref.train import TrainConfig, fit, load_checkpoint

DATA = synthetic(n=30, dim=6, n_classes=3, seed=0)  # 24 training rows (labelled: the kNN monitor runs)
CFG = byol.Config(encoder_dim=6, hidden_size=8, projection_dim=4, predictor_dim=4)
BATCH = 6
STEPS_PER_EPOCH = 24 // BATCH


class Interrupt(KeyboardInterrupt):
    """What stop_requested returns (as the CLI's Ctrl-C): fit raises it once the step's checkpoint is written."""


class Crash(Exception):
    """Raised by stop_requested itself: the run dies after a step's record, before its checkpoint."""


def _quiet(msg):
    pass


@functools.lru_cache(maxsize=None)
def _reference(plan: tuple):
    """(state, {step: record}) of in-memory fits, one per (TrainConfig, last step) of ``plan``, each
    continuing the one before it; every step logged. Cached: examples share their prefixes."""
    if not plan:
        return None, {}
    state, records = _reference(plan[:-1])
    tcfg, last = plan[-1]
    res = fit(DATA, CFG, tcfg, state=state, stop_at=last, progress=False, log=_quiet)
    assert res.state.step == last
    return res.state, {**records, **{r["step"]: json.loads(json.dumps(r)) for r in res.history}}


def _records(path: Path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_state(got, want, what):
    for name in ("online", "target"):
        for part in ("params", "buffers"):
            a, b = getattr(getattr(got, name), part), getattr(getattr(want, name), part)
            assert set(a) == set(b), f"{what}: {name}.{part}"
            for k in a:
                x, y = to_numpy(a[k]), to_numpy(b[k])
                assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), \
                    f"{what}: {name}.{part}[{k!r}] differs"
    assert set(got.opt_state) == set(want.opt_state), f"{what}: optimiser state"
    for k in got.opt_state:
        x, y = to_numpy(got.opt_state[k]), to_numpy(want.opt_state[k])
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f"{what}: opt_state[{k!r}] differs"
    assert got.step == want.step, what
    assert got.rng.bit_generator.state == want.rng.bit_generator.state, f"{what}: generator state"
    assert got.epoch_pos == want.epoch_pos, f"{what}: epoch position"
    np.testing.assert_array_equal(got.epoch_perm, want.epoch_perm, err_msg=f"{what}: data order")


# mostly a few steps on: most calls stop short of the end, some on it, some would stop past it
aheads = st.sampled_from([None, 1, 2, 3, 4, 5])
halts = st.sampled_from([None, "interrupt", "crash"]).flatmap(
    lambda kind: st.just(None) if kind is None else st.tuples(st.just(kind), st.integers(1, 4)))
# a record cut short (a prefix, with or without a newline), or the last one without its newline
tears = st.none() | st.tuples(st.floats(0.0, 1.0, exclude_max=True), st.booleans()) | st.just((1.0, False))


class RunLifecycle(RuleBasedStateMachine):
    """The model: the steps metrics.jsonl must hold records of, the checkpoint (step, epochs) fit
    reported last, and the plan of the steps that count: (epochs in force, last step) in order."""

    def __init__(self):
        super().__init__()
        self.out = Path(tempfile.mkdtemp(prefix="byol-lifecycle-"))
        self.consistent = True  # no rule failed: teardown may finish the run and compare it
        self.kw = None
        self.checkpoint = None  # (step, epochs) of the last checkpoint fit reported written

    @initialize(epochs=st.integers(1, 3), log_every=st.integers(1, 3),
                checkpoint_every=st.sampled_from([0, 1, 2, 3, 5]), eval_every=st.sampled_from([0, 3]),
                optimizer=st.sampled_from(["adamw", "lars", "sgd"]),
                warmup_epochs=st.sampled_from([None, 1.0]), lr_interval=st.sampled_from(["step", "epoch"]),
                tau_interval=st.sampled_from(["step", "epoch"]))
    def configure(self, epochs, **kw):
        self.kw = dict(batch_size=BATCH, lr=0.2, seed=1, **kw)
        self.epochs = epochs  # the length the next call asks for, unless it asks for another
        self.warmup = None  # the run's warm-up: a default one is the first length's, kept on resume
        self.logged = []
        self.plan = []
        self.torn = False  # metrics.jsonl was torn since the last call of fit

    def tcfg(self, epochs, *, reference=False):
        if reference:  # the run's warm-up, every step logged
            return TrainConfig(**{**self.kw, "log_every": 1, "warmup_epochs": self.warmup}, epochs=epochs)
        return TrainConfig(**self.kw, epochs=epochs)

    def fit(self, epochs, *, resume, stop_ahead=None, halt=None, replacing=None):
        """One call of fit, checked against the model, which it then updates; returns the FitResult
        (None when it raised Interrupt or Crash, as the model says it must). ``replacing``: the files of
        the run a new one replaces (overwrite=True), which come back unless it writes a checkpoint."""
        start = self.checkpoint[0] if resume else 0
        total = epochs * STEPS_PER_EPOCH
        stop_at = None if stop_ahead is None else start + stop_ahead
        end = total if stop_at is None else min(stop_at, total)
        kind, at = (None, None) if halt is None or start + halt[1] > end else (halt[0], start + halt[1])
        reached = end if at is None else at
        calls, written = [], []

        def stop_requested():
            calls.append(start + len(calls) + 1)
            if calls[-1] != at:
                return None
            if kind == "crash":
                raise Crash(at)
            return Interrupt(at)

        result, self.torn = None, False
        try:
            result = fit(DATA, CFG, self.tcfg(epochs), out_dir=self.out, resume=resume,
                         overwrite=not resume and any(self.out.iterdir()), progress=False, stop_at=stop_at,
                         on_checkpoint=written.append, stop_requested=stop_requested, log=_quiet)
            raised = None
        except (Interrupt, Crash) as exc:
            raised = (type(exc), exc.args[0])
        assert raised == (None if kind is None else ({"crash": Crash, "interrupt": Interrupt}[kind], at))
        assert calls == list(range(start + 1, reached + 1)), "stop_requested is asked once after each step"

        # the checkpoints: every checkpoint_every steps, at the end, at an interrupt; not at a crash
        every = self.kw["checkpoint_every"]
        due = [k for k in range(start + 1, reached + 1)
               if (every and k % every == 0) or k == end or (k == at and kind == "interrupt")]
        assert written == [k for k in due if not (k == at and kind == "crash")]
        if replacing is not None and not written:  # died before its first checkpoint: the old run is back, whole
            assert sorted(p.name for p in self.out.iterdir()) == sorted(replacing), "the replaced run is not back"
            assert {name: (self.out / name).read_bytes() for name in replacing} == replacing
            return result
        if not resume:
            self.warmup = self.tcfg(epochs).warmup_epochs
        if written:
            self.checkpoint = (written[-1], epochs)
        # the records: every log_every steps, at the end of the call, at each kNN monitor
        monitor = self.kw["eval_every"] or max(total // 10, 1)
        new = [k for k in range(start + 1, reached + 1)
               if k % self.kw["log_every"] == 0 or k == end or k % monitor == 0 or k == total]
        self.logged = [k for k in self.logged if k <= start] + new if resume else [0] + new
        assert [r["step"] for r in _records(self.out / "metrics.jsonl")] == self.logged
        # the steps up to the checkpoint resumed from count, with the length they ran with; those after it ran again
        kept = [(e, min(last, start)) for i, (e, last) in enumerate(self.plan) if i == 0 or self.plan[i - 1][1] < start]
        self.plan = (kept if resume else []) + ([(epochs, reached)] if reached > start else [])
        self.epochs = epochs
        return result

    @precondition(lambda self: self.checkpoint is None)
    @rule(stop_ahead=aheads, halt=halts)
    def start(self, stop_ahead, halt):
        """A fresh run (replacing one that died before its first checkpoint: it comes back if this one does too)."""
        self.consistent = False
        replacing = {p.name: p.read_bytes() for p in self.out.iterdir()} or None
        self.fit(self.epochs, resume=False, stop_ahead=stop_ahead, halt=halt, replacing=replacing)
        self.consistent = True

    @precondition(lambda self: self.checkpoint is not None)
    @rule(stop_ahead=aheads, halt=halts)
    def replace(self, stop_ahead, halt):
        """A new run over the one there (overwrite=True): the old one goes whole at the new one's first
        checkpoint, and comes back whole if the new one dies before it."""
        self.consistent = False
        replacing = {p.name: p.read_bytes() for p in self.out.iterdir()}
        kept = self.checkpoint
        self.checkpoint = None  # (the new run's, once it writes one)
        self.fit(self.epochs, resume=False, stop_ahead=stop_ahead, halt=halt, replacing=replacing)
        self.checkpoint = self.checkpoint or kept
        self.consistent = True

    @precondition(lambda self: self.checkpoint is not None)
    @rule(epochs=st.none() | st.integers(1, 4), stop_ahead=aheads, halt=halts, tear=tears)
    def resume(self, epochs, stop_ahead, halt, tear):
        """Continue from the checkpoint, for the same length or another (refused if shorter than its step),
        the last line of metrics.jsonl torn first or not."""
        self.consistent = False
        if tear is not None and not self.torn:  # (one crash in a write, then a resume repairs the file)
            self.tear(*tear)
            self.torn = True
        epochs = self.epochs if epochs is None else epochs
        if self.checkpoint[0] > epochs * STEPS_PER_EPOCH:
            before = {p.name: p.read_bytes() for p in self.out.iterdir()}
            with pytest.raises(ValueError, match="a resumed run can be extended, not cut short"):
                fit(DATA, CFG, self.tcfg(epochs), out_dir=self.out, resume=True, progress=False, log=_quiet)
            assert {p.name: p.read_bytes() for p in self.out.iterdir()} == before, "a refused resume wrote"
        else:
            self.fit(epochs, resume=True, stop_ahead=stop_ahead, halt=halt)
        self.consistent = True

    def tear(self, cut, newline):
        """A write of a record cut short: a prefix of a line, with or without its newline; or (cut 1.0)
        the file's last record left without its newline."""
        path = self.out / "metrics.jsonl"
        if cut == 1.0:
            text = path.read_text()
            path.write_text(text[:-1] if text.endswith("\n") else text)
            return
        line = json.dumps({"step": 10 ** 6, "epoch": 1.5, "loss": 3.25, "lr": 0.1})
        with open(path, "a") as f:
            f.write(line[:1 + int(cut * (len(line) - 1))] + ("\n" if newline else ""))

    @invariant()
    def checkpoint_is_the_last_reported(self):
        assert not (self.out / ".replaced").exists(), "a replaced run was left set aside"
        path = self.out / "checkpoint.npz"
        if self.checkpoint is None:
            assert not path.exists()
            return
        state, model_cfg, tcfg, _ = load_checkpoint(path)
        assert (state.step, tcfg.epochs) == self.checkpoint and model_cfg == CFG

    def teardown(self):
        try:
            if self.consistent and self.kw is not None:
                self.finish_and_compare()
        finally:
            shutil.rmtree(self.out, ignore_errors=True)

    def finish_and_compare(self):
        """Resume (or start) the run to its end; compare it with the reference."""
        result = self.fit(self.epochs, resume=self.checkpoint is not None)
        plan = []
        for epochs, last in self.plan:  # one fit per length in force
            if plan and plan[-1][0] == epochs:
                plan[-1] = (epochs, last)
            else:
                plan.append((epochs, last))
        want, records = _reference(tuple((self.tcfg(e, reference=True), last) for e, last in plan))
        assert result.state.step == self.epochs * STEPS_PER_EPOCH == want.step
        _assert_same_state(result.state, want, "the resumed run")
        disk, _, tcfg, _ = load_checkpoint(self.out / "checkpoint.npz")
        _assert_same_state(disk, want, "its last checkpoint")
        # (the length of the call that wrote it: a resume at the run's last step writes none)
        assert tcfg == self.tcfg(self.checkpoint[1], reference=True).replace(log_every=self.kw["log_every"])
        got = _records(self.out / "metrics.jsonl")
        assert [r["step"] for r in got] == self.logged
        for r in got:
            assert r == records[r["step"]], f"the record of step {r['step']} differs from the reference's"


TestRunLifecycle = RunLifecycle.TestCase
TestRunLifecycle.settings = settings(max_examples=15, stateful_step_count=6, deadline=None)
