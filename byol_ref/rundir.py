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
``first_interrupt_only`` lets one Ctrl-C stop a command and ignores those that would cut its
clean-up short; in ``train``'s loop, ``interrupt_after_step`` makes that one wait for the end of
its step, which is checkpointed. A SIGTERM (``kill``, ``timeout``, a batch scheduler ending a job) is, within
``sigterm_as_interrupt`` (every command of the CLI), a Ctrl-C by another name: ``Terminated``, a
KeyboardInterrupt, goes through the same clean-up, and the command ends with status 143, not 130. So
is a SIGHUP (the terminal closed, an ssh connection dropped; status 129), after which a terminal
that closed is written to no more; under ``nohup``, which ignores it, the run goes on.

All of this assumes one process writes in a run directory at a time: ``RunLock`` makes sure of it.
"""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .checkpoint import (atomic_write_text, orphaned_temporaries, remove_orphaned_temporaries, sync_folder,
                         temporary_prefix)

REPORT_FILES = ("report.json", "report.txt", "training.png", "probes.png", "features.png")
RUN_FILES = ("checkpoint.npz", "config.json", "metrics.jsonl", *REPORT_FILES)
SET_ASIDE = ".replaced"  # where train --overwrite keeps the run it replaces until its own first checkpoint
REMOVING = ".replaced-removing"  # the same, once the new run has a checkpoint: it is being removed
MANIFEST = ".files"  # in .replaced: the names of the files it is to hold, written before they move
PUBLISHING = ".publishing"  # in a staged report: the names it holds, written before the first of them moves


class RunDirectoryBusy(RuntimeError):
    """Another process, or another thread of this one, is writing in the run directory (``RunLock``)."""


_HELD = {}  # (st_dev, st_ino) of each run directory this process holds -> (its open descriptor, the holding thread)
_TAKING = threading.Lock()


def _hold_nothing_in_a_child() -> None:
    """In the child of a fork() (a multiprocessing pool started from a callback of fit, say), hold
    none of the parent's run directories. The child's copy of ``_HELD`` said that it held them, so
    that a fit in it into the parent's run directory went on beside the parent's; and the
    descriptors it inherited kept the directories locked after the parent had let them go, for as
    long as the child lived. (Closing them here leaves the parent's locks: an flock lasts until the
    last descriptor of its open file is closed, and the parent's stays open.)"""
    global _TAKING
    _TAKING = threading.Lock()  # (a thread that held it at the fork does not exist in the child to release it)
    for fd, _ in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # (not on Windows, which has no fork)
    os.register_at_fork(after_in_child=_hold_nothing_in_a_child)


class RunLock:
    """Hold run directories for this process alone while it writes in them: a second ``train``
    (or ``eval --out``, or ``fit(out_dir=...)``) into one a live process is writing in is refused
    at once (``RunDirectoryBusy``), where the two would have mixed their checkpoints, metrics and
    reports, and the second's clean-up (``remove_stale``) would have removed the first's
    temporary files. The lock is the kernel's, an ``flock`` on the directory itself: it ends with
    the process however that ends (a ``kill -9`` too), so nothing is left to clear. A thread takes
    a directory it holds again without effect (``train`` holds its run around ``fit``); another
    thread of the process is refused as another process is (two ``fit`` calls of a sweep run in
    threads mixed their records on one line of metrics.jsonl), and so is the child of a fork(),
    which holds none of its parent's directories. On a file system without such locks the
    directory is held against the threads of this process only; on Windows, not at all.

    Use as a context manager; ``take`` each directory once it exists, before anything in it is
    read or written. Leaving the ``with`` releases them."""

    def __init__(self, what: str = "--out"):
        self.what, self._keys = what, []

    def take(self, out: Path) -> None:
        try:
            import fcntl
        except ImportError:  # (Windows)
            return
        for _ in range(3):  # the directory can be replaced between the open and the lock: lock the new one
            with _TAKING:  # (one thread at a time: the check of _HELD and the entry go together)
                fd = os.open(out, os.O_RDONLY)
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                if key in _HELD:
                    os.close(fd)
                    if _HELD[key][1] == threading.get_ident():
                        return
                    raise self._busy(out, thread=True)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise self._busy(out, thread=False) from None
                except OSError:  # no locks on this file system: the threads of this process are still kept apart
                    pass
                now = os.stat(out)
                if (now.st_dev, now.st_ino) == key:
                    _HELD[key] = (fd, threading.get_ident())
                    self._keys.append(key)
                    return
                os.close(fd)
        raise RunDirectoryBusy(f"{self.what} {out} keeps being replaced by another process; choose another "
                               f"{self.what}")

    def _busy(self, out: Path, *, thread: bool) -> RunDirectoryBusy:
        who = ("another thread of this process is writing there (a fit called from another thread)" if thread
               else "another process is writing there (a byol-ref train, or an eval --out)")
        return RunDirectoryBusy(f"{self.what} {out} is in use: {who}; wait until it has ended, or choose another "
                                f"{self.what}")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        while self._keys:
            with _TAKING:
                held = _HELD.pop(self._keys.pop(), None)  # (None in the child of a fork: it holds nothing)
                if held is not None:
                    os.close(held[0])


def remove_stale(out: Path) -> None:
    """Remove what a process killed outright left in a run directory and nothing reads: a
    ``.replaced`` folder it was removing, and the temporary files of its atomic writes (those of
    a writer that has ended only: hold ``out`` first (``RunLock``), as a live writer's would go too).
    A report folder it left is settled (``settle_dead_reports``)."""
    settle_dead_reports(out)
    if (out / REMOVING).is_dir():  # (a link of that name stays, and what it leads to: rmtree removes no link)
        shutil.rmtree(out / REMOVING, ignore_errors=True)  # (what cannot go was reported when it could not)
    for name in RUN_FILES:
        remove_orphaned_temporaries(out, name)


@contextmanager
def staged_report(out: Path):
    """A folder in ``out`` to write a report into (its ``REPORT_FILES``), removed on the way out;
    ``publish_report`` moves what it holds into ``out``. A report stopped halfway (an error, Ctrl-C,
    SIGTERM) thus changes nothing in ``out``, where a new report.txt beside the old plots would
    have said two things at once; one killed outright leaves the folder, which the next report
    into ``out`` settles first (``settle_dead_reports``)."""
    out.mkdir(parents=True, exist_ok=True)
    settle_dead_reports(out)
    stage = None
    try:
        with interrupts_held():  # (a Ctrl-C between the folder's creation and `stage` would leave it)
            stage = Path(tempfile.mkdtemp(prefix=temporary_prefix("report"), suffix=".tmp", dir=out))
        yield stage
    except OSError as exc:  # (a full disk, say) named as the file in ``out`` it was to be, not the staged one
        if exc.errno is not None and exc.strerror:
            if stage is None or exc.filename is None:  # (the folder's creation; a plot's write)
                exc.filename = os.fspath(out)
            elif isinstance(exc.filename, str) and Path(exc.filename).parent == stage:
                exc.filename = os.fspath(out / Path(exc.filename).name)
        raise
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def publish_report(stage: Path, out: Path) -> list:
    """Move the report in ``stage`` into ``out`` as one set: its files replace those of the same
    name, and the other ``REPORT_FILES`` in ``out``, of the report it replaces, are removed (a
    probes.png of other probes, say, or plots the new report could not draw without matplotlib).
    Ctrl-C and SIGTERM wait until it is done; should the process be killed outright meanwhile, the
    next writer in ``out`` finishes it (``settle_dead_reports``).

    Returns:
        The names removed from ``out``.
    """
    with interrupts_held():
        names = [name for name in REPORT_FILES if (stage / name).exists()]
        # The commit point: once this list is there, a process killed outright among the renames
        # leaves a report the next writer in ``out`` finishes moving (``settle_dead_reports``), where
        # it used to stay half new, half old; before it, the old report stands.
        atomic_write_text(stage / PUBLISHING, "".join(name + "\n" for name in names))
        return _move_report(stage, out, names)


def _move_report(stage: Path, out: Path, names: list) -> list:
    """Move the report ``names`` of ``stage`` into ``out`` and remove the other ``REPORT_FILES``
    there. A name no longer in ``stage`` was moved already (by a publish that was killed)."""
    removed = []
    for name in REPORT_FILES:
        if name in names:
            if (stage / name).exists():
                os.replace(stage / name, out / name)
        elif (out / name).is_file() or (out / name).is_symlink():
            (out / name).unlink()
            removed.append(name)
    sync_folder(out)
    return removed


def settle_dead_reports(out: Path) -> list:
    """Settle the report folders (``staged_report``'s) that processes killed outright (SIGKILL, out
    of memory) left in ``out``. A report one had begun to move in (``publish_report`` had written
    its list of names) is moved in whole, so that the report in ``out`` is that one, not half of it
    beside half of the one before; one it had not begun to move is dropped, and the old report
    stands. Either way the folder goes. Hold ``out`` first (``RunLock``).

    Returns:
        The staging folders whose reports were finished.
    """
    finished = []
    for entry in orphaned_temporaries(out, "report"):
        stage, marker = Path(entry.path), Path(entry.path) / PUBLISHING
        if entry.is_dir(follow_symlinks=False) and marker.is_file() and not marker.is_symlink():
            names = [n for n in marker.read_text(encoding="utf-8", errors="replace").split() if n in REPORT_FILES]
            with interrupts_held():
                removed = _move_report(stage, out, names)
            print(f"byol-ref: finished moving the report into {out} that a process killed outright had begun to "
                  "move" + (f" (removed {', '.join(removed)}, which it has none of)" if removed else ""),
                  file=sys.stderr)
            finished.append(stage)
    remove_orphaned_temporaries(out, "report")  # (the finished folders and the others)
    return finished


def refuse_for_set_aside(out: Path, prefix: str, *, overwrite: str = "--overwrite",
                         error: type = FileNotFoundError) -> None:
    """Say where the run is when ``out`` has no checkpoint but ``.replaced`` holds a run, and how
    to put it back by hand (``overwrite``: how the caller's user asks for a new run over it)."""
    aside = out / SET_ASIDE
    if aside.is_dir() and not aside.is_symlink() and _aside_files(aside):
        if not (aside / "checkpoint.npz").exists():  # (its record only: a run killed before its first checkpoint)
            raise error(f"{prefix}{out} has no checkpoint: the run an overwrite started there stopped before its "
                        f"first, and so had the run it was replacing, whose files are in {aside}: there is no run "
                        f"to go on with; start a new one with {overwrite}")
        killed = _left_behind(out, aside)[1]
        q = shlex.quote
        undo = (f"rm {' '.join(q(str(out / n)) for n in killed)} && " if killed else "") + \
            f"mv {q(str(aside))}/* {q(str(out))}/ && rm -r {q(str(aside))}"
        raise error(
            f"{prefix}{out} has no checkpoint: the run an overwrite started there stopped before its first. "
            f"The run it was replacing is in {aside}; to go on with that one, put it back ({undo}); or start a "
            f"new run with {overwrite}")


class Replacing:
    """``train --overwrite`` or ``fit(overwrite=True)`` (``flag``, which messages name): the run in
    ``out`` (its ``RUN_FILES``) goes whole, as no file of it may mix with the new run's (its
    checkpoint would be offered to --resume), but only once the new run has a checkpoint of its own.
    Until then it waits in ``out/.replaced``; if the new run stops first, it comes back; a process
    killed outright leaves it there, for the next command to find.
    A checkpoint in ``out`` while ``.replaced`` holds files therefore always means the new run's
    (the checkpoint moves first when set aside, last when put back), which a process killed before
    it removed the folder left there: the next command removes it (``remove_replaced``)."""

    def __init__(self, out: Path, flag: str = "train --overwrite"):
        self.out, self.flag, self.aside, self.committed = out, flag, None, False
        self.began = False  # set_aside has run: from then on, a checkpoint in out is the new run's

    def set_aside(self) -> None:
        with interrupts_held():  # the run moves whole, and self.aside says where
            remove_stale(self.out)
            self.aside = _move_aside(self.out, self.flag)  # (None: out held no run to replace)
            self.began = True

    def commit(self, step=None) -> None:
        """The new run has written a checkpoint (``fit`` calls it, for its own or its caller's ``replacing``):
        the replaced run goes."""
        if self.aside is None or self.committed:
            return
        self.committed = True
        remove_replaced(self.out, killed=False)

    def may_checkpoint(self) -> bool:
        """Whether the new run may write a checkpoint now: not while that would drop a replaced run
        that an interrupt is to bring back (the new run has none of its own yet)."""
        return self.aside is None or self.committed

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


def _move_aside(out: Path, flag: str = "train --overwrite") -> Path | None:
    """Move the run in ``out`` into ``out/.replaced`` (see ``Replacing``); None if there is none.
    The folder lists the files it is to hold (``MANIFEST``) before any moves. One found here is
    what an --overwrite killed outright left: ``_finish_move_aside``."""
    aside = out / SET_ASIDE
    if aside.is_symlink() or (aside.exists() and not aside.is_dir()):
        raise FileExistsError(f"{aside} is a file or a link; {flag} sets the run it replaces aside there: "
                              "move it away")
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
    # on disk before anything relies on it: the new run's first checkpoint must not get there first
    sync_folder(aside)
    sync_folder(out)
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
    sync_folder(aside)  # (as _move_aside)
    sync_folder(out)
    print(f"byol-ref: {aside} holds the run an earlier overwrite set aside; it stays there until this run's "
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
        listed = set((aside / MANIFEST).read_text(encoding="utf-8", errors="replace").split())
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
        sync_folder(out)  # (the run is back, whatever a power cut does to the rest)
        shutil.rmtree(aside)


class Terminated(KeyboardInterrupt):
    """A SIGTERM, or a SIGHUP, stopped the command (within ``sigterm_as_interrupt``); ``signum`` says
    which. A KeyboardInterrupt, so that everything that tidies up after Ctrl-C tidies up after it too."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__()
        self.signum = signum


def interrupt_status(exc: BaseException) -> int:
    """The exit status of a command stopped by ``exc``: 128 + the signal, as a shell reports it."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def interrupted(exc: BaseException) -> str:
    """How the CLI's messages name what stopped a command."""
    if not isinstance(exc, Terminated):
        return "interrupted"
    return "hung up (SIGHUP: the terminal closed)" if exc.signum == _SIGHUP else "terminated (SIGTERM)"


# What the handlers below consult. Each changes only together with the handlers that read it,
# inside _signals_deferred, so that a signal never finds the two half-changed.
_holding = []  # the interrupts an outer interrupts_held has held off (nested holds leave them to it)
_first_only = []  # while first_interrupt_only is on: [whether its one KeyboardInterrupt has been raised]
_terminating = []  # while sigterm_as_interrupt is on: [the signals it took: SIGTERM, SIGHUP or both]
_waiting = []  # while interrupt_after_step is on: [its _Wait]
_SIGHUP = getattr(signal, "SIGHUP", None)  # (the terminal closed, an ssh connection dropped; not on Windows)
ENDS = tuple(s for s in (signal.SIGTERM, _SIGHUP) if s is not None)  # the signals Terminated stands for
_STOPS = (signal.SIGINT, *ENDS)
# A second signal this soon after the one a stop waits with is the same one relayed (GNU timeout
# and srun pass the terminal's Ctrl-C on to their child, which gets it twice; so does a kill of the
# process group), not a person pressing Ctrl-C again.
RELAYED_WITHIN_S = 0.2


@contextmanager
def _signals_deferred():
    """Keep SIGINT, SIGTERM and SIGHUP from this thread (they are delivered at the end, to the handlers
    then in), where the platform can (POSIX); elsewhere, nothing."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


@contextmanager
def _handlers(signums, handler, state: list, entry):
    """``handler`` in for each of ``signums`` and ``entry`` on ``state`` for the block; the previous
    handlers back and ``state`` empty after it, whatever signal comes meanwhile."""
    previous = {}
    try:
        with _signals_deferred():
            state.append(entry)
            for signum in signums:
                previous[signum] = signal.getsignal(signum)
                signal.signal(signum, handler)
        yield
    finally:
        with _signals_deferred():
            came = None
            for signum, old in previous.items():
                while True:  # signal.signal first runs the Python handler of a signal another thread took
                    try:
                        signal.signal(signum, old)
                        break
                    except KeyboardInterrupt as exc:  # (raised before the handler changed: try again)
                        came = came or exc
            state.clear()
        if came is not None:
            raise came


def _on_sigterm(signum, frame):
    """The handler of SIGTERM and SIGHUP within ``sigterm_as_interrupt``: ``Terminated``, unless the
    command is ending on a signal already (``_stop``)."""
    _stop([signum])


def leave_a_closed_terminal() -> set:
    """Point stdout and stderr at the null device where they are a terminal that has closed: a write
    to it fails ("[Errno 5] Input/output error"), and a train that a SIGHUP stops at the end of its
    step would fail on its progress bar instead, before the step's checkpoint. A closed terminal is
    still a character device but no longer a terminal (``isatty``); one still open (a SIGHUP sent by
    ``kill -HUP``), a file or a pipe keeps what is written to it. Returns the descriptors pointed
    at the null device."""
    moved = set()
    for fd in (1, 2):
        try:
            if stat.S_ISCHR(os.fstat(fd).st_mode) and not os.isatty(fd):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, fd)
                os.close(null)
                moved.add(fd)
        except OSError:  # (no such descriptor)
            pass
    return moved


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def sigterm_as_interrupt():
    """Within: a SIGTERM, or a SIGHUP (the terminal closed, an ssh connection dropped), raises
    ``Terminated``, where it would end the process at once: the steps since the last checkpoint
    lost, a replaced run left set aside (or a temporary file) for the next command to find. Only on
    the main thread, and only for a signal with its default action: a handler the caller put in
    stays, and so does a signal ignored (``nohup`` ignores SIGHUP, and the run goes on)."""
    taken = [s for s in ENDS if signal.getsignal(s) is signal.SIG_DFL]
    if _terminating or not _on_main_thread() or not taken:
        yield
        return
    with _handlers(taken, _on_sigterm, _terminating, taken):
        yield


def _catching_sigint() -> bool:
    """Whether byol-ref may put its own Ctrl-C handler in: on the main thread, and only where
    Ctrl-C is not ignored (a job started in the background of a script ignores it, and must)."""
    return _on_main_thread() and signal.getsignal(signal.SIGINT) not in (signal.SIG_IGN, None)


def _stop_signals() -> list:
    """The signals that stop a command here and that byol-ref handles: Ctrl-C where it may catch
    it, SIGTERM and SIGHUP (those it took) within ``sigterm_as_interrupt``."""
    return ([signal.SIGINT] if _catching_sigint() else []) + (
        list(_terminating[0]) if _terminating and _on_main_thread() else [])


def _interrupt(signums) -> KeyboardInterrupt:
    """What stops the command for these signals (a SIGTERM or SIGHUP among them makes it ``Terminated``,
    by the first of them)."""
    ends = [s for s in signums if s in ENDS]
    return Terminated(ends[0]) if ends else KeyboardInterrupt()


@contextmanager
def interrupts_held(reraise: bool = True):
    """Hold Ctrl-C (and a SIGTERM byol-ref handles) off while files move between a run directory and
    its ``.replaced`` folder, so that each move is whole; an interrupt that came meanwhile is raised
    at the end (``reraise``) or dropped (when the command is already ending on one). A hold inside
    another is the outer one's."""
    signums = _stop_signals()
    if _holding or not signums:
        yield
        return
    came = []
    with _handlers(signums, lambda signum, frame: came.append(signum), _holding, came):
        yield
    if came and reraise:
        _stop(came)


@contextmanager
def first_interrupt_only():
    """For a command of the CLI: the first Ctrl-C (or SIGTERM) stops it, and those that follow,
    which would cut its clean-up (``train``: the restore of a replaced run) or its message short,
    are ignored."""
    signums = _stop_signals()
    if _first_only or not signums:
        yield
        return
    with _handlers(signums, lambda signum, frame: _stop([signum]), _first_only, False):
        yield


def _stop(signums) -> None:
    """A stop signal has come where it may act (in a handler, or at the end of a hold): raise it,
    unless the command is stopping already (its first one was raised), or ``train`` may stop after
    its step (``interrupt_after_step``: the first one waits there, the same one relayed is ignored,
    and a second one is raised at once). After a SIGHUP, a terminal that closed is written to no more."""
    if _SIGHUP in signums:  # (None, where there is no SIGHUP, is in no list of signals)
        leave_a_closed_terminal()
    if _first_only:
        if _first_only[0]:
            return  # the command has raised its one KeyboardInterrupt already
        wait = _waiting[0] if _waiting else None
        if wait is not None and wait.signals is None and wait.may():
            wait.signals, wait.since = list(signums), time.monotonic()
            _say(wait.note)  # at once: a step may be long, and a user who sees nothing presses again
            return
        if wait is not None and wait.signals is not None:
            if time.monotonic() - wait.since < RELAYED_WITHIN_S:
                return
            signums = [*wait.signals, *signums]  # (a SIGTERM that waited stays a SIGTERM)
        _first_only[0] = True
    raise _interrupt(signums)


def _say(message: str | None) -> None:
    """Write ``message`` to stderr from a signal handler: straight to the file descriptor, as the
    handler may run in the middle of a write to ``sys.stderr`` (a progress bar), and never failing."""
    if message:
        try:
            os.write(2, ("\n" + message + "\n").encode())
        except OSError:  # (no stderr)
            pass


class _Wait:
    """A stop that waits for the end of train's step (``interrupt_after_step``)."""

    def __init__(self, may, note):
        self.may, self.note = may, note
        self.signals, self.since = None, None  # the signals it waits with, and when the first came


@contextmanager
def interrupt_after_step(may, note: str | None = None):
    """For ``train``'s loop, inside ``first_interrupt_only``: while ``may()`` holds, the first Ctrl-C
    or SIGTERM is not raised where it lands, which could be halfway through a step that updates the
    parameters in place, but waits: ``fit`` calls the function this yields after each step, and
    given the interrupt, writes the step's checkpoint and raises it. A second one is raised at once
    (a step may be long), unless it came within ``RELAYED_WITHIN_S`` of the first: that is the first
    relayed. One still waiting as the block ends without error is raised then.

    ``may``: whether the run may write a checkpoint now (not while an ``--overwrite`` run without
    one of its own would thereby drop the run it replaces, which an interrupt is to bring back).
    ``note``: what to print on stderr as a stop begins to wait."""
    if not _first_only or _waiting:
        yield lambda: None
        return
    wait = _Wait(may, note)

    def pending():
        """The interrupt to raise once this step's checkpoint is written, or None."""
        if wait.signals is None:
            return None  # (after every step: nothing to change)
        with _signals_deferred():
            if _first_only[0]:
                return None
            _first_only[0] = True  # from here on, train is stopping: the signals that follow are ignored
            return _interrupt(wait.signals)

    waiting = None
    with _handlers([], None, _waiting, wait):  # (no handler of its own: _stop reads _waiting)
        try:
            yield pending
        finally:
            waiting = pending()
    if waiting is not None:
        raise waiting
