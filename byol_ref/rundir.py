"""A run directory, and how ``train --overwrite`` replaces the run in one without risking it.

A run directory holds ``RUN_FILES``: ``checkpoint.npz``, ``config.json``, ``metrics.jsonl`` and
the report (``REPORT_FILES``). ``train --overwrite`` must not mix a file of the old run with the new
one's (the old checkpoint would be offered to ``--resume``), and must not lose the old run to a new
run that stops before it has a checkpoint of its own. So (``Replacing``):

1. the old run moves into ``RUN/.replaced`` (``SET_ASIDE``), after a list of what is to move
   (``.replaced/.files``) is written, and its checkpoint first;
2. the new run's first checkpoint drops it: renamed to ``.replaced-removing`` (``REMOVING``), then
   deleted;
3. a new run that stops before that (an error, a divergence, Ctrl-C) puts it back, checkpoint last.

Hence the invariant the commands that come later rely on: a checkpoint in ``RUN`` beside a
``.replaced`` that holds files is the new run's, whose process was killed before step 2 was done.
A process killed outright leaves the folder where it is, for the next command to find:
``remove_replaced`` drops it once the run has a checkpoint, ``refuse_for_set_aside`` says how to put
it back when the run has none, and the next ``--overwrite`` takes it over.

Ctrl-C must not cut a move in two: ``interrupts_held`` holds it off meanwhile, and
``first_interrupt_only`` lets one Ctrl-C stop ``train`` and ignores those that would cut its
clean-up short.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import atomic_write_text

REPORT_FILES = ("report.json", "report.txt", "training.png", "probes.png", "features.png")
RUN_FILES = ("checkpoint.npz", "config.json", "metrics.jsonl", *REPORT_FILES)
SET_ASIDE = ".replaced"  # where train --overwrite keeps the run it replaces until its own first checkpoint
REMOVING = ".replaced-removing"  # the same, once the new run has a checkpoint: it is being removed
MANIFEST = ".files"  # in .replaced: the names of the files it is to hold, written before they move


def remove_stale(out: Path) -> None:
    """Remove what a process killed outright left in a run directory and nothing reads: a
    ``.replaced`` folder it was removing, and the temporary files of its atomic writes."""
    if (out / REMOVING).is_dir() and not (out / REMOVING).is_symlink():
        shutil.rmtree(out / REMOVING, ignore_errors=True)  # (what cannot go was reported when it could not)
    for name in RUN_FILES:
        for tmp in out.glob(f".{name}.*.tmp"):  # (checkpoint.atomic_write's names)
            tmp.unlink(missing_ok=True)


def refuse_for_set_aside(out: Path, prefix: str) -> None:
    """Say where the run is when ``out`` has no checkpoint but ``.replaced`` holds a run, and how
    to put it back by hand."""
    aside = out / SET_ASIDE
    if aside.is_dir() and not aside.is_symlink() and _aside_files(aside):
        killed = _left_behind(out, aside)[1]
        q = shlex.quote
        undo = (f"rm {' '.join(q(str(out / n)) for n in killed)} && " if killed else "") + \
            f"mv {q(str(aside))}/* {q(str(out))}/ && rm -r {q(str(aside))}"
        raise FileNotFoundError(
            f"{prefix}{out} has no checkpoint: the --overwrite run started there stopped before its first. "
            f"The run it was replacing is in {aside}; to go on with that one, put it back ({undo}); or start a "
            "new run with --overwrite")


class Replacing:
    """``train --overwrite``: the run in ``out`` (its ``RUN_FILES``) goes whole, as no file of it may
    mix with the new run's (its checkpoint would be offered to --resume), but only once the new run
    has a checkpoint of its own. Until then it waits in ``out/.replaced``; if the new run stops
    first, it comes back; a process killed outright leaves it there, for the next command to find.
    A checkpoint in ``out`` while ``.replaced`` holds files therefore always means the new run's
    (the checkpoint moves first when set aside, last when put back), which a process killed before
    it removed the folder left there: the next command removes it (``remove_replaced``)."""

    def __init__(self, out: Path):
        self.out, self.aside, self.committed = out, None, False

    def set_aside(self) -> None:
        with interrupts_held():  # the run moves whole, and self.aside says where
            remove_stale(self.out)
            self.aside = _move_aside(self.out)

    def commit(self, step=None) -> None:
        """The new run has written a checkpoint (``fit``'s ``on_checkpoint``): the replaced run goes."""
        if self.aside is None or self.committed:
            return
        self.committed = True
        remove_replaced(self.out, killed=False)

    def stopped(self) -> bool:
        """The new run stopped: put the replaced run back unless the new one has a checkpoint.
        True when it was put back."""
        if self.aside is None or self.committed:
            return False
        if (self.out / "checkpoint.npz").exists():  # written, and stopped before commit() ran
            self.commit()
            return False
        _put_back(self.out, self.aside)
        return True


def _move_aside(out: Path) -> Path | None:
    """Move the run in ``out`` into ``out/.replaced`` (see ``Replacing``); None if there is none.
    The folder lists the files it is to hold (``MANIFEST``) before any moves. One found here is
    what an --overwrite killed outright left: ``_finish_move_aside``."""
    aside = out / SET_ASIDE
    if aside.is_symlink() or (aside.exists() and not aside.is_dir()):
        raise FileExistsError(f"{aside} is a file or a link; train --overwrite sets the run it replaces aside "
                              "there: move it away")
    if aside.is_dir():
        remove_replaced(out)  # (when out's checkpoint says the killed run had replaced it)
    if aside.is_dir():
        return _finish_move_aside(out, aside)
    present = [name for name in RUN_FILES if (out / name).exists()]  # the checkpoint first
    if not present:
        return None
    aside.mkdir()
    atomic_write_text(aside / MANIFEST, "\n".join(present) + "\n")
    for name in present:
        os.replace(out / name, aside / name)
    return aside


def _finish_move_aside(out: Path, aside: Path) -> Path:
    """Take over the ``.replaced`` an --overwrite killed before its first checkpoint left (or
    while it moved the run there): its run stays set aside, the files it had yet to move join it,
    and the killed run's own go (``_left_behind`` says which are whose)."""
    theirs, killed = _left_behind(out, aside)
    for name in killed:
        (out / name).unlink()
    for name in theirs:
        os.replace(out / name, aside / name)
    print(f"byol-ref: {aside} holds the run an earlier --overwrite set aside; it stays there until this run's "
          "first checkpoint", file=sys.stderr)
    return aside


def remove_replaced(out: Path, *, killed: bool = True) -> None:
    """Remove ``out/.replaced`` once the run in ``out`` has a checkpoint: the run it held was
    replaced (the folder is empty, or the --overwrite that wrote the checkpoint was killed before
    it removed it). Renamed first, so that a removal cut short leaves nothing that looks set
    aside; a removal that fails is a warning, as the run is replaced all the same."""
    aside = out / SET_ASIDE
    if not aside.is_dir() or aside.is_symlink():
        return
    if _aside_files(aside):
        if not (out / "checkpoint.npz").exists():
            return  # set aside, still: the run in out has no checkpoint
        if killed:
            print(f"byol-ref: removing {aside}: it holds the run an --overwrite replaced, which was killed after "
                  "its first checkpoint", file=sys.stderr)
    doomed = aside
    try:  # (a stale .replaced-removing in the way went with remove_stale, which every caller ran first)
        with interrupts_held():
            os.replace(aside, out / REMOVING)
            doomed = out / REMOVING
        shutil.rmtree(doomed)
    except OSError as exc:  # (a file held open elsewhere, say)
        print(f"byol-ref: could not remove {doomed}, which holds the replaced run ({exc}); remove it by hand",
              file=sys.stderr)


def _aside_files(aside: Path) -> list:
    """The run files in a ``.replaced`` folder (not its list of them, nor the temporary file of a
    list whose write was killed: a folder holding only that was never given the run)."""
    return [f for f in aside.iterdir() if f.name in RUN_FILES]


def _left_behind(out: Path, aside: Path) -> tuple:
    """(the replaced run's files still in ``out``, the killed run's files in ``out``), by name:
    a file the folder's list names but does not hold yet is the replaced run's; any other run
    file in ``out`` was written by the --overwrite run that was killed."""
    try:
        listed = set((aside / MANIFEST).read_text().split())
    except OSError:  # (a folder from before the lists: what is in both places is the killed run's)
        listed = set(RUN_FILES)
    here = [name for name in RUN_FILES if (out / name).exists()]
    theirs = [name for name in here if name in listed and not (aside / name).exists()]
    return theirs, [name for name in here if name not in theirs]


def _put_back(out: Path, aside: Path) -> None:
    """Undo ``_move_aside``: this run's files go, the replaced run's come back, its checkpoint last
    (so that a checkpoint in ``out`` beside ``.replaced`` is never the replaced run's)."""
    with interrupts_held():
        for name in _left_behind(out, aside)[1]:
            (out / name).unlink()
        for f in sorted(_aside_files(aside), key=lambda f: f.name == "checkpoint.npz"):
            os.replace(f, out / f.name)
        shutil.rmtree(aside)


_holding = []  # the interrupts an outer interrupts_held has held off (nested holds leave them to it)
_first_only = []  # while first_interrupt_only is on: [whether its one KeyboardInterrupt has been raised]


def _catching_sigint() -> bool:
    """Whether byol-ref may put its own Ctrl-C handler in: on the main thread, and only where
    Ctrl-C is not ignored (a job started in the background of a script ignores it, and must)."""
    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None))


@contextmanager
def interrupts_held(reraise: bool = True):
    """Hold Ctrl-C off while files move between a run directory and its ``.replaced`` folder, so
    that each move is whole; an interrupt that came meanwhile is raised at the end (``reraise``)
    or dropped (when the command is already ending on one). A hold inside another is the outer
    one's."""
    if _holding or not _catching_sigint():
        yield
        return
    came = []
    _holding.append(came)
    previous = signal.signal(signal.SIGINT, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _holding.pop()
    if came and reraise:
        if _first_only:
            if _first_only[0]:
                return  # train has raised its one KeyboardInterrupt already
            _first_only[0] = True
        raise KeyboardInterrupt


@contextmanager
def first_interrupt_only():
    """For ``train``: the first Ctrl-C stops it (KeyboardInterrupt), and those that follow, which
    would cut the restore of a replaced run or its message short, are ignored."""
    if _first_only or not _catching_sigint():
        yield
        return

    def first_only(signum, frame):
        if not _first_only[0]:
            _first_only[0] = True
            raise KeyboardInterrupt

    _first_only.append(False)
    previous = signal.signal(signal.SIGINT, first_only)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _first_only.clear()
