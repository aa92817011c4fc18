"""The run directory's set-aside protocol (byol_ref/rundir.py) on plain files: what a Ctrl-C in the
middle of a move, or a folder without its list, leaves behind. The commands that use it are tested
end to end in test_cli.py."""
import io
import os
import signal
import time
from pathlib import Path

import pytest

from byol_ref import rundir

RUN = {"checkpoint.npz": b"old checkpoint", "config.json": b'{"old": 1}', "metrics.jsonl": b'{"step": 0}\n',
       "report.txt": b"old report"}


def _write_run(out: Path, files=RUN) -> None:
    out.mkdir(exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)


def _contents(folder: Path) -> dict:
    return {f.name: f.read_bytes() for f in folder.iterdir()}


def _stuck(monkeypatch, name: str) -> None:
    """os.unlink refuses files called ``name`` (a file held open on Windows, a folder this user may not
    write in: as root no folder is one)."""
    import errno

    real_unlink = os.unlink

    def unlink(path, *args, **kw):
        if os.path.basename(os.fsdecode(path)) == name:
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real_unlink(path, *args, **kw)

    monkeypatch.setattr(os, "unlink", unlink)


def _ctrl_c_on_move(monkeypatch, at: int, *, back: bool = False) -> list:
    """Press Ctrl-C (a real SIGINT) as the ``at``-th file of a run is set aside (or, with ``back``,
    put back); those moves are listed."""
    real_replace, moved = os.replace, []

    def replace(src, dst):
        if Path(src).name.endswith(".tmp") or (Path(src).parent.name == rundir.SET_ASIDE) != back:
            return real_replace(src, dst)  # an atomic write (the folder's list), or a move the other way
        moved.append(Path(src).name)
        if len(moved) == at:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, before the file moves
        return real_replace(src, dst)

    monkeypatch.setattr(rundir.os, "replace", replace)
    return moved


@pytest.mark.parametrize("at", [1, 2, len(RUN)])
def test_ctrl_c_while_a_run_is_set_aside_waits_for_the_whole_move(tmp_path, monkeypatch, at):
    out = tmp_path / "r"
    _write_run(out)
    replacing = rundir.Replacing(out)
    moved = _ctrl_c_on_move(monkeypatch, at)
    with pytest.raises(KeyboardInterrupt):
        replacing.set_aside()
    assert moved[0] == "checkpoint.npz" and sorted(moved) == sorted(RUN)  # every file moved, the checkpoint first
    assert replacing.aside == out / ".replaced" and list(out.iterdir()) == [out / ".replaced"]
    monkeypatch.undo()
    assert replacing.stopped()  # and the interrupted run puts it back whole
    assert _contents(out) == RUN
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("at", [1, len(RUN)])
def test_ctrl_c_while_a_run_is_put_back_waits_for_the_whole_move(tmp_path, monkeypatch, at):
    out = tmp_path / "r"
    _write_run(out)
    replacing = rundir.Replacing(out)
    replacing.set_aside()
    (out / "config.json").write_text('{"new": 1}')  # the new run's, which goes
    moved = _ctrl_c_on_move(monkeypatch, at, back=True)
    with pytest.raises(KeyboardInterrupt):
        replacing.stopped()
    assert moved[-1] == "checkpoint.npz"  # the checkpoint comes back last
    monkeypatch.undo()
    assert _contents(out) == RUN


def test_ctrl_c_while_a_failed_run_puts_back_the_old_one_keeps_the_failure(tmp_path, capsys, monkeypatch):
    """The command is ending on an error already: a Ctrl-C meanwhile must not turn the error (and
    its message) into an interrupt, nor cut the put-back short."""
    import byol_ref.cli as cli

    out = tmp_path / "r"
    _write_run(out)
    (out / "checkpoint.npz").unlink()  # (train would offer a checkpoint to --resume; this run has none)
    old = _contents(out)

    def refusing_fit(*args, **kw):
        (out / "metrics.jsonl").write_text('{"step": 0, "new": 1}\n')
        raise ValueError("refused by fit")

    monkeypatch.setattr(cli, "fit", refusing_fit)
    moved = _ctrl_c_on_move(monkeypatch, 1, back=True)
    status = cli.main(["train", "--data", "synthetic", "--epochs", "1", "--batch-size", "32", "--hidden-size", "8",
                       "--projection-dim", "4", "--predictor-dim", "4", "--no-progress", "--no-eval",
                       "--out", str(out), "--overwrite"])
    assert status == 2 and "refused by fit" in capsys.readouterr().err and moved
    monkeypatch.undo()
    assert _contents(out) == old


def test_a_folder_without_its_list_keeps_what_may_be_the_replaced_runs(tmp_path):
    """A ``.replaced`` folder without its list (written before the lists were): a file in both
    places is the killed run's; one only in the run directory may be the replaced run's, not moved
    yet, and is kept. With the list, the list says whose it is."""
    out = tmp_path / "r"
    _write_run(out, {"config.json": b"killed run's", "metrics.jsonl": b"not moved yet?"})
    aside = out / ".replaced"
    _write_run(aside, {"checkpoint.npz": b"old", "config.json": b"old"})
    assert rundir._left_behind(out, aside) == (["metrics.jsonl"], ["config.json"])  # no list: keep what may be theirs
    (aside / rundir.MANIFEST).write_text("checkpoint.npz\nconfig.json\n")
    assert rundir._left_behind(out, aside) == ([], ["config.json", "metrics.jsonl"])  # the list says whose
    (aside / rundir.MANIFEST).write_text("checkpoint.npz\nconfig.json\nmetrics.jsonl\n")
    assert rundir._left_behind(out, aside) == (["metrics.jsonl"], ["config.json"])
    rundir._put_back(out, aside)
    assert _contents(out) == {"checkpoint.npz": b"old", "config.json": b"old", "metrics.jsonl": b"not moved yet?"}


@pytest.mark.parametrize("kind", ["file", "link"])
def test_a_replaced_that_is_no_folder_is_refused_and_left_alone(tmp_path, kind):
    out = tmp_path / "r"
    _write_run(out)
    if kind == "file":
        (out / rundir.SET_ASIDE).write_text("the user's")
    else:
        (out / rundir.SET_ASIDE).symlink_to(tmp_path)
    with pytest.raises(FileExistsError, match=r"\.replaced is a file or a link; train --overwrite sets the run it "
                                              "replaces aside there: move it away"):
        rundir.Replacing(out).set_aside()
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.name != rundir.SET_ASIDE} == RUN  # nothing moved


def test_a_replaced_holding_only_a_torn_list_is_no_run(tmp_path, capsys):
    # An --overwrite killed while it wrote the folder's list, before any file moved: the run is
    # whole in out, .replaced holds the list's temporary file. It is not a replaced run: the next
    # command removes the folder without saying that it held one.
    out = tmp_path / "run"
    _write_run(out)
    (out / rundir.SET_ASIDE).mkdir()
    (out / rundir.SET_ASIDE / f".{rundir.MANIFEST}.x1y2z3.tmp").write_bytes(b"checkpoint.npz\n")
    rundir.remove_stale(out)
    rundir.remove_replaced(out)
    assert capsys.readouterr().err == ""
    assert sorted(os.listdir(out)) == sorted(RUN) and _contents(out) == RUN


def test_ctrl_c_as_an_atomic_write_makes_its_file_leaves_no_file(tmp_path, monkeypatch):
    # A Ctrl-C that lands just after mkstemp made the temporary file, before atomic_write holds
    # its name, is raised once the name is held: the file is removed, the target never appears.
    from byol_ref import checkpoint

    real = checkpoint.tempfile.mkstemp

    def mkstemp(**kw):
        made = real(**kw)
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode, here
        return made

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", mkstemp)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(tmp_path / "out.bin", lambda f: f.write(b"data"))
    assert os.listdir(tmp_path) == []


def test_atomic_write_raises_the_error_of_a_failed_mkstemp(tmp_path, monkeypatch):
    """... naming the file to write, not the temporary one it was to be (embed said "[Errno 30]
    Read-only file system: '.f.npz.HOST-PID.XXXXXXXX.tmp'"); so does a report's staging folder."""
    from byol_ref import checkpoint

    def mkstemp(**kw):
        raise PermissionError(13, "Permission denied", os.path.join(kw["dir"], kw["prefix"] + "x.tmp"))

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", mkstemp)
    with pytest.raises(PermissionError) as info:
        checkpoint.atomic_write(tmp_path / "out.bin", lambda f: f.write(b"data"))
    assert str(info.value) == f"[Errno 13] Permission denied: '{tmp_path / 'out.bin'}'"

    def mkdtemp(**kw):
        raise OSError(30, "Read-only file system", os.path.join(kw["dir"], kw["prefix"] + "x.tmp"))

    monkeypatch.setattr(rundir.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(OSError) as info:
        with rundir.staged_report(tmp_path / "r"):
            pass
    assert str(info.value) == f"[Errno 30] Read-only file system: '{tmp_path / 'r'}'"


@pytest.mark.parametrize("when", ["write", "close"])
def test_an_atomic_write_that_finds_no_room_names_its_file_and_keeps_the_old_one(tmp_path, monkeypatch, when):
    """ENOSPC from a write, or from the close that flushes what was buffered, names no file: it is
    raised naming the destination (not the temporary file); the old file stands and the temporary
    goes. An OSError that already names a file, or has no errno, is raised as it was."""
    import errno

    from byol_ref import checkpoint

    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    real_fdopen = checkpoint.os.fdopen

    class NoRoomOnClose(io.BufferedWriter):
        def close(self):
            if not self.closed:
                super().close()
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode):
        return NoRoomOnClose(real_fdopen(fd, mode, buffering=0)) if when == "close" else real_fdopen(fd, mode)

    def write(f):
        f.write(b"new")
        if when == "write":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.os, "fdopen", fdopen)
    with pytest.raises(OSError) as info:
        checkpoint.atomic_write(dest, write)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(dest) and checkpoint.disk_full(info.value)
    assert os.listdir(tmp_path) == ["out.bin"] and dest.read_bytes() == b"old"
    monkeypatch.undo()
    for exc in (OSError(errno.EIO, "I/O error", "/elsewhere"), OSError("no errno")):
        def failing(f, exc=exc):
            raise exc

        with pytest.raises(OSError) as info:
            checkpoint.atomic_write(dest, failing)
        assert info.value is exc and str(exc) in ("[Errno 5] I/O error: '/elsewhere'", "no errno")
    assert not checkpoint.disk_full(OSError(errno.EIO, "I/O error")) and not checkpoint.disk_full(ValueError())


def test_a_ctrl_c_as_atomic_write_opens_its_file_closes_it(tmp_path, monkeypatch):
    from byol_ref import checkpoint

    real_mkstemp, real_fdopen, opened = checkpoint.tempfile.mkstemp, checkpoint.os.fdopen, []

    def mkstemp(**kw):
        made = real_mkstemp(**kw)
        os.kill(os.getpid(), signal.SIGINT)
        return made

    def fdopen(*a, **kw):
        opened.append(real_fdopen(*a, **kw))
        return opened[-1]

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(checkpoint.os, "fdopen", fdopen)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(tmp_path / "out.bin", lambda f: f.write(b"data"))
    assert opened and opened[0].closed and os.listdir(tmp_path) == []


def _ended_pid() -> int:
    """The id of a process of this host that has ended (and been reaped)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_a_write_removes_the_temporaries_of_its_file_that_a_killed_writer_left(tmp_path):
    # A process killed outright (SIGKILL) between mkstemp and the rename leaves its temporary file;
    # the next write of the same file removes it, but not one a process still running is writing,
    # nor those of other files, of other hosts, or whose writer the name does not say.
    from byol_ref import checkpoint

    host, dead = checkpoint._host_tag(), _ended_pid()
    left = {f".out.bin.{host}-{dead}.a1b2c3d4.tmp": "killed", f".out.bin.{host}-{os.getppid()}.zz9_x1y2.tmp": "live",
            f".out.bin.otherhost-{dead}.a1b2c3d4.tmp": "another host", ".out.bin.k2j4l5m6.tmp": "an older name",
            f".other.bin.{host}-{dead}.a1b2c3d4.tmp": "another file", f".out.bin.{host}-{dead}.a1b2c3d4": "not .tmp"}
    for name, text in left.items():
        (tmp_path / name).write_text(text)
    killed_dir = tmp_path / f".out.bin.{host}-{dead}.q7r8s9t0.tmp"  # (a staged report is a folder)
    killed_dir.mkdir()
    (killed_dir / "report.txt").write_text("half")
    checkpoint.atomic_write_text(tmp_path / "out.bin", "new")
    kept = {f.name for f in tmp_path.iterdir()}
    assert kept == set(left) - {f".out.bin.{host}-{dead}.a1b2c3d4.tmp"} | {"out.bin"}
    # The temporary file a write makes says whose it is.
    names = []
    checkpoint.atomic_write(tmp_path / "b.bin", lambda f: names.extend(os.listdir(tmp_path)))
    assert any(n.startswith(f".b.bin.{host}-{os.getpid()}.") and n.endswith(".tmp") for n in names), names
    # A name long enough that who writes it would not fit in 255 bytes is written all the same.
    long = "x" * 236 + ".npz"  # (.NAME.XXXXXXXX.tmp is 254 bytes; with the host and process, past 255)
    checkpoint.atomic_write_text(tmp_path / long, "long")
    assert (tmp_path / long).read_text() == "long"
    for n in (242, 251):  # too long for even .NAME.XXXXXXXX.tmp: they could not be written at all
        longer = "y" * (n - 4) + ".npz"
        checkpoint.atomic_write_text(tmp_path / longer, "longer")
        assert (tmp_path / longer).read_text() == "longer"


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_a_write_removes_only_its_own_files_temporaries_whatever_its_name_holds(tmp_path, monkeypatch):
    # The name is matched as it is (a '(' or '+' in it is no pattern), and whole: a file that only
    # begins like a killed writer's temporary is not one, nor is the temporary of another file
    # whose name begins like this one's (its own writer, still running, is writing it).
    from byol_ref import checkpoint

    host, dead, live = checkpoint._host_tag(), _ended_pid(), os.getppid()
    name = "run(1)+w.npz"
    orphan = f".{name}.{host}-{dead}.a1b2c3d4.tmp"
    impossible = f".{name}.{host}-{2 ** 80}.a1b2c3d4.tmp"  # (no process has that id: nobody's, so removed)
    kept = [f".{name}.{host}-{dead}.a1b2c3d4.tmp.keep",  # the user's copy of one
            f".{name}.{host}-{dead}.a.{host}-{live}.q7r8s9t0.tmp",  # being written, as {name}.{host}-{dead}.a
            f".run(1)xw.npz.{host}-{dead}.a1b2c3d4.tmp"]  # another file's
    for n in (orphan, impossible, *kept):
        (tmp_path / n).write_text("x")
    target = tmp_path / "target"  # a link to a folder, named as a temporary: the link goes, not what it points to
    target.mkdir()
    (target / "keep.txt").write_text("the user's")
    link = tmp_path / f".{name}.{host}-{dead}.z9y8x7w6.tmp"
    link.symlink_to(target, target_is_directory=True)
    removed = checkpoint.remove_orphaned_temporaries(tmp_path, name)
    assert sorted(p.name for p in removed) == sorted([orphan, impossible, link.name])
    assert sorted(os.listdir(tmp_path)) == sorted([*kept, "target"]) and (target / "keep.txt").read_text() == "the user's"
    # A temporary of a process that runs as another user (kill says: no permission) is that process's.
    (tmp_path / orphan).write_text("x")
    monkeypatch.setattr(checkpoint.os, "kill", lambda pid, sig: (_ for _ in ()).throw(PermissionError(1, "EPERM")))
    assert checkpoint.remove_orphaned_temporaries(tmp_path, name) == [] and (tmp_path / orphan).exists()
    monkeypatch.undo()
    # One that cannot be removed is left where it is: the write goes on.
    _stuck(monkeypatch, orphan)
    checkpoint.atomic_write_text(tmp_path / name, "written")
    assert (tmp_path / name).read_text() == "written" and (tmp_path / orphan).exists()


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_asking_whether_a_writer_runs_sends_it_no_signal():
    """_running asks with signal 0, which only checks that a signal could be sent: the process asked after (a
    writer still at work) goes on running. Once it has ended and been reaped, it is not running."""
    import subprocess
    import sys

    from byol_ref import checkpoint

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert checkpoint._running(child.pid) and checkpoint._running(os.getpid())
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=0.5)  # (a signal that ends a process is delivered well within this)
    finally:
        child.kill()
        child.wait()
    assert not checkpoint._running(child.pid)


@pytest.mark.parametrize("name, tag", [("node-7.example.org", "node-7exampleorg"), ("", "host"), ("..", "host"),
                                       ("gr\u00fcn_01", "grn01"), ("a" * 60, "a" * 40)])
def test_the_host_in_a_temporary_name_is_its_letters_digits_and_dashes(monkeypatch, name, tag):
    """What _host_tag's docstring says: the host name's ASCII letters, digits and '-' (no '.', which separates
    the parts of a temporary's name), at most 40 of them, and 'host' where none is left. Two hosts must not
    share a tag unless their names do: a tag of 'host' for every host would let one host remove another's
    temporaries in a shared folder."""
    import socket

    from byol_ref import checkpoint

    monkeypatch.setattr(socket, "gethostname", lambda: name)
    assert checkpoint._host_tag() == tag


def test_a_checkpoint_array_past_the_zip64_limit_is_written_as_zip64(tmp_path, monkeypatch):
    """An array of over 2 GiB needs a zip64 member, and a member written as a stream must say so before its size
    is known (zipfile raises "File size too large, try using force_zip64" on close otherwise). Played here
    with the limit lowered to 1000 bytes, so that a 4 kB array is past it."""
    import zipfile

    from byol_ref import checkpoint
    from byol_ref.backend import host as np

    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    x = np.arange(500.0)
    checkpoint.atomic_savez(tmp_path / "big.npz", {"online/w": x})
    assert checkpoint.read_npz(tmp_path / "big.npz", "big.npz")["online/w"].tobytes() == x.tobytes()


def test_a_write_into_a_folder_it_may_not_list_or_open_is_made_all_the_same(tmp_path, monkeypatch):
    """A drop-box folder (mode 0o300: write and enter, not read): listing it, to remove the temporaries
    of a killed writer, and opening it, to flush the rename to disk, fail with EACCES; the write goes on
    without them. (Root reads any folder: the kernel's refusal is played here.)"""
    from byol_ref import checkpoint

    box = tmp_path / "box"
    box.mkdir()
    real_scandir, real_open, refused = os.scandir, os.open, []

    def scandir(path="."):
        if Path(path) == box:
            refused.append("list")
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    def open_(path, flags, *args, **kwargs):
        if Path(path) == box:
            refused.append("open")
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(checkpoint.os, "scandir", scandir)
    monkeypatch.setattr(checkpoint.os, "open", open_)
    checkpoint.atomic_write_text(box / "report.json", "{}")
    monkeypatch.undo()
    assert refused == ["list", "open"] and os.listdir(box) == ["report.json"]
    assert (box / "report.json").read_text() == "{}"


def test_a_folder_that_cannot_be_flushed_gets_the_file_and_its_descriptor_back(tmp_path, monkeypatch):
    """Some file systems refuse an fsync of a folder (EINVAL: network ones; Windows): the rename is
    atomic all the same, so the write succeeds, and the folder's descriptor is closed."""
    import errno
    import stat

    from byol_ref import checkpoint

    real_fsync, refused = os.fsync, []

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            refused.append(fd)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    checkpoint.atomic_write_text(tmp_path / "config.json", "{}")
    monkeypatch.undo()
    assert len(refused) == 1
    with pytest.raises(OSError):  # (closed: nothing has opened a file since)
        os.fstat(refused[0])
    assert (tmp_path / "config.json").read_text() == "{}" and os.listdir(tmp_path) == ["config.json"]


def test_where_no_writer_can_be_asked_after_no_temporary_is_an_orphan(tmp_path, monkeypatch):
    """Not on POSIX (os.kill(pid, 0) would be a Ctrl-C on Windows, not a question) nothing tells
    whether a temporary's writer has ended: a write leaves them all, a killed writer's too."""
    from byol_ref import checkpoint

    orphan = tmp_path / f".out.bin.{checkpoint._host_tag()}-{_ended_pid()}.a1b2c3d4.tmp"
    orphan.write_text("x")
    assert [e.name for e in checkpoint.orphaned_temporaries(tmp_path, "out.bin")] == [orphan.name]  # (on POSIX)
    monkeypatch.setattr(checkpoint.os, "name", "nt")
    found = checkpoint.orphaned_temporaries(tmp_path, "out.bin")
    monkeypatch.undo()
    assert found == [] and orphan.exists()


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_a_write_leaves_the_temporary_this_process_is_writing_and_asks_after_no_process_0(tmp_path, monkeypatch):
    """A write of a file this process is writing already (from another thread; here, from inside the
    first write) leaves the first one's temporary: its writer runs. One whose name says process 0 is
    left too: os.kill(0, 0) would ask after the process group, not a process. Neither is asked after."""
    from byol_ref import checkpoint

    real_kill, asked = os.kill, []
    monkeypatch.setattr(checkpoint.os, "kill", lambda pid, sig: asked.append(pid) or real_kill(pid, sig))
    zero = tmp_path / f".out.bin.{checkpoint._host_tag()}-0.a1b2c3d4.tmp"
    zero.write_text("x")

    def outer(f):
        checkpoint.atomic_write_text(tmp_path / "out.bin", "inner")
        f.write(b"outer")

    checkpoint.atomic_write(tmp_path / "out.bin", outer)
    monkeypatch.undo()
    assert asked == [] and (tmp_path / "out.bin").read_text() == "outer"
    assert sorted(os.listdir(tmp_path)) == sorted(["out.bin", zero.name])


def test_a_report_lands_whole_or_not_at_all(tmp_path):
    out = tmp_path / "run"
    _write_run(out, {**RUN, **{name: b"old " + name.encode() for name in rundir.REPORT_FILES}})
    before = _contents(out)
    # Stopped halfway: the report in out is as it was, and the staging folder is gone.
    with pytest.raises(KeyboardInterrupt):
        with rundir.staged_report(out) as stage:
            (stage / "report.txt").write_text("new report")
            raise KeyboardInterrupt
    assert _contents(out) == before
    # Done: its files replace theirs, and the old report's others go (they would say something else).
    with rundir.staged_report(out) as stage:
        (stage / "report.txt").write_text("new report")
        (stage / "probes.png").write_text("new probes")
        removed = rundir.publish_report(stage, out)
    assert removed == ["report.json", "training.png", "features.png"]
    assert _contents(out) == {**{k: v for k, v in before.items() if k not in removed},
                              "report.txt": b"new report", "probes.png": b"new probes"}


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_a_report_removes_the_staging_folder_a_killed_report_left(tmp_path):
    from byol_ref import checkpoint

    host, dead = checkpoint._host_tag(), _ended_pid()
    killed, live = tmp_path / f".report.{host}-{dead}.a1b2c3d4.tmp", tmp_path / f".report.{host}-1.a1b2c3d4.tmp"
    for folder in (killed, live):
        folder.mkdir()
        (folder / "report.txt").write_text("half")
    with rundir.staged_report(tmp_path) as stage:
        assert stage.parent == tmp_path and stage.name.startswith(f".report.{host}-{os.getpid()}.")
    assert sorted(os.listdir(tmp_path)) == [live.name]


_KILLED_PUBLISHING = """
import os, signal, sys
from pathlib import Path
from byol_ref import rundir

out, at = Path(sys.argv[1]), int(sys.argv[2])
real_replace, moves = os.replace, []


def replace(src, dst):  # SIGKILL (no clean-up runs) as the at-th rename lands a file in out, or the list
    if Path(dst).parent == out or Path(dst).name == rundir.PUBLISHING:
        if len(moves) == at:
            os.kill(os.getpid(), signal.SIGKILL)
        moves.append(Path(dst).name)
    real_replace(src, dst)


os.replace = replace
with rundir.staged_report(out) as stage:
    for name in ("report.json", "report.txt", "training.png"):
        (stage / name).write_text("new " + name)
    rundir.publish_report(stage, out)
"""


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
@pytest.mark.parametrize("at", [0, 1, 2, 3])
def test_a_report_killed_while_it_moves_in_is_finished_by_the_next_writer(tmp_path, capsys, at):
    """SIGKILL among publish_report's renames left the report half new, half old (a new report.json
    beside the old report.txt) for good. Once its list of names is written (the commit point), the
    next writer in the folder finishes the moves; killed before that, the old report stands."""
    import subprocess
    import sys

    out = tmp_path / "run"
    _write_run(out, {**RUN, **{name: b"old " + name.encode() for name in rundir.REPORT_FILES}})
    before = _contents(out)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", _KILLED_PUBLISHING, str(out), str(at)], env=env)
    assert done.returncode == -signal.SIGKILL
    stages = [f for f in out.iterdir() if f.name.startswith(".report.")]
    assert len(stages) == 1  # (left behind by the kill)
    if at == 2:  # (the list, then report.json, were moved before the kill)
        assert (out / "report.json").read_bytes() == b"new report.json"
        assert (out / "report.txt").read_bytes() == b"old report.txt"
    new = {**{k: v for k, v in before.items() if k not in rundir.REPORT_FILES},
           **{name: b"new " + name.encode() for name in ("report.json", "report.txt", "training.png")}}
    # The next command that writes there (remove_stale: train --resume, train --overwrite) finishes it.
    rundir.remove_stale(out)
    assert _contents(out) == (before if at == 0 else new)
    err = capsys.readouterr().err
    assert ("finished moving the report" in err) == (at > 0), err
    if at > 0:
        assert "removed probes.png, features.png, which it has none of" in err, err
    # The next report into the folder, too (eval --out).
    _write_run(tmp_path / "run2", before)
    subprocess.run([sys.executable, "-c", _KILLED_PUBLISHING, str(tmp_path / "run2"), str(at)], env=env)
    with rundir.staged_report(tmp_path / "run2"):
        pass
    assert _contents(tmp_path / "run2") == (before if at == 0 else new)


def test_a_report_replaces_a_dangling_link_of_the_old_one_and_leaves_a_folder_of_that_name(tmp_path):
    # A report file of the old report that is a link to nothing is still the old report's, and
    # goes; a folder that has a report file's name is not one (not ours to remove), and stays.
    out = tmp_path / "run"
    out.mkdir()
    (out / "probes.png").symlink_to(tmp_path / "gone.png")
    (out / "features.png").mkdir()
    with rundir.staged_report(out) as stage:
        (stage / "report.txt").write_text("new report")
        removed = rundir.publish_report(stage, out)
    assert removed == ["probes.png"] and not os.path.lexists(out / "probes.png")
    assert (out / "features.png").is_dir() and (out / "report.txt").read_text() == "new report"


def test_a_report_staged_for_a_folder_not_made_yet_makes_it(tmp_path):
    out = tmp_path / "new" / "run"
    with rundir.staged_report(out) as stage:
        (stage / "report.txt").write_text("r")
        rundir.publish_report(stage, out)
    assert sorted(os.listdir(out)) == ["report.txt"]


def test_ctrl_c_while_a_report_is_published_waits_until_it_is_whole(tmp_path, monkeypatch):
    out = tmp_path / "run"
    _write_run(out, {name: b"old " + name.encode() for name in rundir.REPORT_FILES})
    with rundir.staged_report(out) as stage:
        for name in ("report.json", "report.txt"):
            (stage / name).write_text("new")
        moved = _ctrl_c_on_publish(monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            rundir.publish_report(stage, out)
        monkeypatch.undo()
    assert moved == ["report.json", "report.txt"]
    assert _contents(out) == {"report.json": b"new", "report.txt": b"new"}  # the old plots went too


def _ctrl_c_on_publish(monkeypatch) -> list:
    """Press Ctrl-C (a real SIGINT) as the first file of a report is published; the moves are listed
    (those of report files: the list of names publish_report writes first is renamed into place too)."""
    real_replace, moved = os.replace, []

    def replace(src, dst):
        if Path(src).name not in rundir.REPORT_FILES:
            return real_replace(src, dst)
        moved.append(Path(src).name)
        if len(moved) == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return real_replace(src, dst)

    monkeypatch.setattr(rundir.os, "replace", replace)
    return moved


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_remove_stale_removes_the_temporaries_a_killed_writer_left_of_every_run_file(tmp_path):
    from byol_ref import checkpoint

    host, dead = checkpoint._host_tag(), _ended_pid()
    _write_run(tmp_path, {f".{name}.{host}-{dead}.a1b2c3d4.tmp": b"half" for name in rundir.RUN_FILES})
    (tmp_path / "notes.txt").write_text("the user's")
    rundir.remove_stale(tmp_path)
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_replacing_run_may_checkpoint_unless_that_would_drop_a_run_an_interrupt_is_to_bring_back(tmp_path):
    # (train's Ctrl-C waits for the end of the step, to checkpoint it, only while may_checkpoint holds.)
    empty = rundir.Replacing(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    empty.set_aside()
    assert empty.aside is None and empty.may_checkpoint() and not empty.stopped()
    out = tmp_path / "r"
    _write_run(out)
    replacing = rundir.Replacing(out)
    assert replacing.may_checkpoint()  # (nothing set aside yet)
    replacing.set_aside()
    assert not replacing.may_checkpoint()
    (out / "checkpoint.npz").write_bytes(b"new checkpoint")
    replacing.commit()
    assert replacing.may_checkpoint() and not (out / ".replaced").exists()
    assert not replacing.stopped() and _contents(out) == {"checkpoint.npz": b"new checkpoint"}


def test_a_replacing_run_stopped_after_its_checkpoint_keeps_it_and_drops_the_replaced_run(tmp_path):
    """A stop between the new run's first checkpoint and its commit(): the checkpoint is the new run's,
    the replaced run goes, and nothing was put back (False, as the CLI reads it to say so)."""
    out = tmp_path / "r"
    _write_run(out)
    replacing = rundir.Replacing(out)
    replacing.set_aside()
    (out / "checkpoint.npz").write_bytes(b"new checkpoint")
    assert replacing.stopped() is False
    assert _contents(out) == {"checkpoint.npz": b"new checkpoint"} and replacing.committed
    assert replacing.stopped() is False  # (once committed, a second stop changes nothing)


def test_remove_stale_removes_a_replaced_run_being_removed_but_no_link_of_that_name(tmp_path, monkeypatch):
    """``.replaced-removing``: the run a killed --overwrite had begun to remove goes; what cannot go stays
    without an error (it was reported when it could not go the first time), and a link of that name is
    not followed into the user's folder."""
    out = tmp_path / "r"
    _write_run(out, {"checkpoint.npz": b"new checkpoint"})
    _write_run(out / rundir.REMOVING, RUN)
    rundir.remove_stale(out)
    assert _contents(out) == {"checkpoint.npz": b"new checkpoint"}
    _write_run(out / rundir.REMOVING, {**RUN, "stuck": b"held"})
    with monkeypatch.context() as m:
        _stuck(m, "stuck")
        rundir.remove_stale(out)
    assert os.listdir(out / rundir.REMOVING) == ["stuck"]
    (out / rundir.REMOVING / "stuck").unlink()
    (out / rundir.REMOVING).rmdir()
    mine = tmp_path / "mine"
    _write_run(mine, RUN)
    (out / rundir.REMOVING).symlink_to(mine, target_is_directory=True)
    rundir.remove_stale(out)
    assert _contents(mine) == RUN


def test_a_staged_report_names_the_file_an_error_was_for_as_the_one_in_out(tmp_path, monkeypatch):
    """A write that fails into the staging folder is told as the file in ``out`` it was to be (the folder
    has a name no one typed); an error about a file elsewhere keeps its name, one about no file names
    ``out``, and an OSError with a message of its own is raised as it came. The staging folder goes,
    and a file in it that cannot go is no error on top."""
    import errno

    out, elsewhere = tmp_path / "r", str(tmp_path / "data.npy")
    cases = ((lambda stage: OSError(errno.ENOSPC, "No space left on device", str(stage / "training.png")),
              str(out / "training.png")),
             (lambda stage: OSError(errno.EACCES, "Permission denied", elsewhere), elsewhere),
             (lambda stage: OSError(errno.ENOSPC, "No space left on device"), str(out)),
             (lambda stage: OSError("the plot could not be drawn"), None))
    for make, filename in cases:
        with pytest.raises(OSError) as info:
            with rundir.staged_report(out) as stage:
                raise make(stage)
        assert info.value.filename == filename
        assert os.listdir(out) == []
    assert str(info.value) == "the plot could not be drawn"
    with monkeypatch.context() as m:
        _stuck(m, "stuck")
        with rundir.staged_report(out) as stage:
            (stage / "stuck").write_text("held")
    assert [p.name for p in out.iterdir()] == [stage.name]


@pytest.mark.skipif(os.name != "posix", reason="a writer's process is asked after on POSIX only")
def test_a_link_named_as_a_killed_reports_folder_is_not_followed(tmp_path):
    """settle_dead_reports finishes the report a killed process had begun to move in; a link with such a
    folder's name, to a folder holding a report and its list, is no report of this run's: nothing in it
    moves into ``out``."""
    from byol_ref import checkpoint

    out, theirs = tmp_path / "r", tmp_path / "theirs"
    _write_run(out, {"report.txt": b"this run's report"})
    _write_run(theirs, {"report.txt": b"another report", rundir.PUBLISHING: b"report.txt\n"})
    link = out / f".report.{checkpoint._host_tag()}-{_ended_pid()}.a1b2c3d4.tmp"
    link.symlink_to(theirs, target_is_directory=True)
    assert rundir.settle_dead_reports(out) == []
    assert _contents(out) == {"report.txt": b"this run's report"}  # (the link went: it is a leftover's name)
    assert _contents(theirs) == {"report.txt": b"another report", rundir.PUBLISHING: b"report.txt\n"}


def test_a_second_signal_is_the_first_relayed_for_0_2_s_exactly(monkeypatch):
    """RELAYED_WITHIN_S is 0.2 s, and the window is open at its end: a second Ctrl-C 0.2 s after the first
    is a person's and raised, one just inside it is the first relayed and ignored (a clock of our own:
    real sleeps would make the edge a race)."""
    from types import SimpleNamespace

    now = [0.0]
    monkeypatch.setattr(rundir, "time", SimpleNamespace(monotonic=lambda: now[0]))
    assert rundir.RELAYED_WITHIN_S == 0.2
    with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: True) as pending:
        os.kill(os.getpid(), signal.SIGINT)  # waits, since 0.0
        now[0] = 0.19999
        os.kill(os.getpid(), signal.SIGINT)  # relayed: ignored
        assert type(pending()) is KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: True):
            now[0] = 0.0
            os.kill(os.getpid(), signal.SIGINT)
            now[0] = 0.2  # (exactly 0.2 after it: 10.2 - 10.0 is 0.19999999999999929)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second Ctrl-C, 0.2 s on, waited")


def test_off_the_main_thread_the_signal_contexts_change_nothing():
    """Python takes signal handlers on the main thread only ("signal only works in main thread of the main
    interpreter"): a command's contexts entered on another thread (a fit in a worker thread) put none in
    and leave no state for the main thread's handlers to read. Found by scripts/mutation_sweep.py: with
    either guard's ``or`` made ``and``, every test passed."""
    import threading

    seen = []

    def work():
        try:
            with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only():
                seen.append((signal.getsignal(signal.SIGTERM), rundir._terminating[:], rundir._first_only[:]))
        except BaseException as exc:  # (ValueError from signal.signal)
            seen.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == [(signal.SIG_DFL, [], [])]


def test_an_interrupt_after_step_inside_another_leaves_the_outer_one_waiting():
    with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: True) as pending:
        with rundir.interrupt_after_step(lambda: True) as inner:  # (the outer one's: a no-op)
            assert inner() is None
        os.kill(os.getpid(), signal.SIGINT)  # still waits for the outer step's end
        assert type(pending()) is KeyboardInterrupt
    assert rundir._waiting == rundir._first_only == []


def _sigterm_is_handled() -> bool:
    """Whether a SIGTERM sent now would raise, not end the test process (checked before each one)."""
    return signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN, None)


def test_sigterm_is_a_ctrl_c_by_another_name_only_within_sigterm_as_interrupt():
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with rundir.interrupts_held(), rundir.first_interrupt_only():  # outside it SIGTERM keeps its default action
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(rundir.Terminated) as stopped:
        with rundir.sigterm_as_interrupt():
            assert _sigterm_is_handled()
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("the SIGTERM did not stop the block")
    assert isinstance(stopped.value, KeyboardInterrupt)  # so every Ctrl-C clean-up runs for it too
    assert rundir.interrupt_status(stopped.value) == 143 and rundir.interrupt_status(KeyboardInterrupt()) == 130
    assert rundir.interrupted(stopped.value) == "terminated (SIGTERM)"
    assert rundir.interrupted(KeyboardInterrupt()) == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="needs SIGHUP (POSIX)")
def test_a_sighup_is_a_sigterm_by_another_name_and_an_ignored_one_stays_ignored():
    """A SIGHUP (the terminal closed) ended a command at once; within sigterm_as_interrupt it is now
    Terminated, status 129, named as such, held off by a hold as a SIGTERM is. One the caller ignores
    (nohup) stays ignored, while SIGTERM is still taken."""
    runner = signal.signal(signal.SIGHUP, signal.SIG_DFL)  # (the test runner's may be ignored: nohup)
    try:
        _sighup_within_sigterm_as_interrupt()
    finally:
        signal.signal(signal.SIGHUP, runner)


def _sighup_within_sigterm_as_interrupt():
    with pytest.raises(rundir.Terminated) as stopped:
        with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only():
            assert signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN, None)
            with rundir.interrupts_held():
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(0.05)  # (held off: the block goes on to its end)
            pytest.fail("the SIGHUP did not stop the block after the hold")
    assert stopped.value.signum == signal.SIGHUP and rundir.interrupt_status(stopped.value) == 129
    assert rundir.interrupted(stopped.value) == "hung up (SIGHUP: the terminal closed)"
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only(), rundir.interrupts_held():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN and _sigterm_is_handled()
            os.kill(os.getpid(), signal.SIGHUP)  # ignored
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.mark.parametrize("theirs", [signal.SIG_IGN, "handler"])
def test_sigterm_as_interrupt_leaves_a_callers_sigterm_alone(theirs):
    caught = []
    theirs = (lambda signum, frame: caught.append(signum)) if theirs == "handler" else theirs
    signal.signal(signal.SIGTERM, theirs)
    try:
        with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only(), rundir.interrupts_held():
            assert signal.getsignal(signal.SIGTERM) is theirs
            os.kill(os.getpid(), signal.SIGTERM)  # theirs: ignored, or caught by their handler
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert caught == ([] if theirs is signal.SIG_IGN else [signal.SIGTERM])


def test_a_held_sigterm_is_raised_as_terminated_after_the_move():
    done = []
    with rundir.sigterm_as_interrupt():
        with pytest.raises(rundir.Terminated):
            with rundir.interrupts_held():
                assert _sigterm_is_handled()
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)  # the stronger of the two is what ends the command
                done.append("the move")
        assert done == ["the move"]
        with pytest.raises(KeyboardInterrupt) as only_ctrl_c:
            with rundir.interrupts_held():
                os.kill(os.getpid(), signal.SIGINT)
        assert type(only_ctrl_c.value) is KeyboardInterrupt
        with rundir.interrupts_held(reraise=False):  # dropped: the command is ending on one already
            os.kill(os.getpid(), signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is rundir._on_sigterm
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_train_lets_one_sigterm_through_and_ignores_the_signals_that_follow():
    stopped = []
    with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only():
        try:
            assert _sigterm_is_handled()
            os.kill(os.getpid(), signal.SIGTERM)
            pytest.fail("the SIGTERM did not stop the block")
        except rundir.Terminated:
            stopped.append("first")
        os.kill(os.getpid(), signal.SIGTERM)  # ignored: the first one is being handled
        os.kill(os.getpid(), signal.SIGINT)  # and so is a Ctrl-C
        with rundir.interrupts_held():
            os.kill(os.getpid(), signal.SIGTERM)  # held, and then dropped for the same reason
    assert stopped == ["first"] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    # Ctrl-C ignored (a job in the background of a script), SIGTERM not: it still stops train.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(rundir.Terminated):
            with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only():
                assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and _sigterm_is_handled()
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                pytest.fail("the SIGTERM did not stop the block")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_interrupt_after_step_makes_the_first_signal_wait_and_raises_what_waited_at_the_end(capfd):
    may = [True]
    with pytest.raises(KeyboardInterrupt):  # outside first_interrupt_only (not train): nothing waits
        with rundir.interrupt_after_step(lambda: True) as pending:
            assert pending() is None
            os.kill(os.getpid(), signal.SIGINT)
    capfd.readouterr()
    with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only():
        with rundir.interrupt_after_step(lambda: may[0], "stopping after this step") as pending:
            assert pending() is None
            with rundir.interrupts_held():  # (a checkpoint being written)
                assert _sigterm_is_handled()
                os.kill(os.getpid(), signal.SIGTERM)
            assert capfd.readouterr().err == "\nstopping after this step\n"  # said as it began to wait
            stop = pending()  # it waited for the step's end, and is what the loop is to raise
            assert type(stop) is rundir.Terminated and pending() is None
            os.kill(os.getpid(), signal.SIGINT)  # train is stopping: ignored
    with pytest.raises(KeyboardInterrupt):  # one still waiting as the block ends is raised then
        with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: may[0]):
            os.kill(os.getpid(), signal.SIGINT)
    may[0] = False  # (an --overwrite run without a checkpoint of its own): raised where it lands
    with pytest.raises(KeyboardInterrupt):
        with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: may[0]):
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the Ctrl-C waited")
    may[0] = True
    with pytest.raises(KeyboardInterrupt):  # a second one is raised at once
        with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: may[0]):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(rundir.RELAYED_WITHIN_S * 1.5)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second Ctrl-C waited")
    # ... unless it came with the first: the same Ctrl-C relayed (GNU timeout, srun, a group kill)
    with rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: may[0]) as pending:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        assert type(pending()) is KeyboardInterrupt
    # A SIGTERM that waited stays a SIGTERM when a Ctrl-C cuts the wait short (a scheduler's stop: 143).
    with pytest.raises(rundir.Terminated):
        with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only(), rundir.interrupt_after_step(lambda: True):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(rundir.RELAYED_WITHIN_S * 1.5)
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the Ctrl-C waited")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert rundir._waiting == rundir._first_only == rundir._terminating == rundir._holding == []


def test_sigterms_handler_ignores_it_once_train_is_ending_on_a_signal():
    """(Between first_interrupt_only's start and its handler for SIGTERM: the first signal wins.)"""
    with rundir.sigterm_as_interrupt():
        rundir._first_only.append(True)  # train's first signal has been raised
        try:
            assert _sigterm_is_handled()
            os.kill(os.getpid(), signal.SIGTERM)  # ignored
        finally:
            rundir._first_only.clear()
        with pytest.raises(rundir.Terminated):
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_as_the_handlers_are_restored_leaves_none_of_them_in(monkeypatch):
    """signal.signal first runs the handler of a signal that another thread took (while this one
    blocked them): raised there, it must not leave a handler or a list entry behind."""
    real_signal, raised = signal.signal, []

    def set_handler(signum, handler):
        if handler is signal.default_int_handler and not raised:  # the first restore
            raised.append(signum)
            raise KeyboardInterrupt
        return real_signal(signum, handler)

    with pytest.raises(KeyboardInterrupt):
        with rundir.sigterm_as_interrupt():
            monkeypatch.setattr(signal, "signal", set_handler)
            with rundir.first_interrupt_only(), rundir.interrupts_held(reraise=False):
                pass
    monkeypatch.undo()
    assert raised == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert rundir._waiting == rundir._first_only == rundir._terminating == rundir._holding == []


try:
    import fcntl
except ImportError:  # (Windows: RunLock holds nothing there)
    fcntl = None
needs_flock = pytest.mark.skipif(fcntl is None, reason="no flock on this platform")


@needs_flock
def test_a_run_lock_holds_until_the_with_ends_and_a_process_takes_its_own_again(tmp_path, held_elsewhere):
    out = tmp_path / "r"
    out.mkdir()
    with rundir.RunLock() as lock:
        lock.take(out)
        assert held_elsewhere(out)
        with rundir.RunLock("out_dir") as inner:  # train holds its run around fit, which takes it too
            inner.take(out)
            inner.take(out)
        assert held_elsewhere(out)  # the inner one did not release what it did not take
    assert not held_elsewhere(out) and rundir._HELD == {}


@needs_flock
def test_a_run_directory_another_process_holds_is_refused_naming_it_and_a_killed_one_holds_nothing(tmp_path,
                                                                                                   held_elsewhere):
    import subprocess
    import sys

    out = tmp_path / "r"
    out.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); "
                           "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(out)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:  # (closes its pipes)
        try:
            assert holder.stdout.readline() == "held\n"
            with rundir.RunLock() as lock, pytest.raises(rundir.RunDirectoryBusy) as err:
                lock.take(out)
            assert str(err.value) == (f"--out {out} is in use: another process is writing there (a byol-ref train, "
                                      "or an eval --out); wait until it has ended, or choose another --out")
            assert rundir._HELD == {}
            holder.kill()  # kill -9: no clean-up runs, and the kernel ends its lock
            holder.wait(timeout=60)
            with rundir.RunLock() as lock:
                lock.take(out)
                assert held_elsewhere(out)
        finally:
            holder.kill()
            holder.wait(timeout=60)


@needs_flock
def test_a_run_directory_replaced_as_it_is_locked_is_locked_as_it_is_now(tmp_path, monkeypatch, held_elsewhere):
    out = tmp_path / "r"
    out.mkdir()
    real_flock, calls = fcntl.flock, []

    def flock(fd, op):
        if not calls:  # another process moves the folder away and makes a new one, between the open and the lock
            out.rename(tmp_path / "old")
            out.mkdir()
        calls.append(fd)
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with rundir.RunLock() as lock:
        lock.take(out)
        monkeypatch.undo()
        assert len(calls) == 2 and held_elsewhere(out) and not held_elsewhere(tmp_path / "old")


@needs_flock
def test_a_run_lock_releases_every_directory_it_took_and_without_locks_holds_against_threads_only(
        tmp_path, held_elsewhere, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    with rundir.RunLock() as lock:
        lock.take(a)
        lock.take(b)
        assert held_elsewhere(a) and held_elsewhere(b)
    assert not held_elsewhere(a) and not held_elsewhere(b) and rundir._HELD == {}

    def no_locks(fd, op):  # (a file system without flock: NFS mounted without locking, say)
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with rundir.RunLock() as lock:
        lock.take(a)  # not refused; held against the other threads of this process (there is no kernel lock)
        assert list(rundir._HELD) == [(os.stat(a).st_dev, os.stat(a).st_ino)]
    assert rundir._HELD == {}


@needs_flock
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_the_child_of_a_fork_holds_none_of_its_parents_run_directories(tmp_path, held_elsewhere):
    """A child forked while a run directory was held (a multiprocessing pool started from fit's callback)
    took it as its own, and went on writing beside its parent; and its copy of the descriptor kept the
    directory locked after the parent let go, for as long as the child lived."""
    out = tmp_path / "r"
    out.mkdir()
    with rundir.RunLock() as lock:
        lock.take(out)
        said_r, said_w = os.pipe()
        go_r, go_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: it never returns into the test runner it is a copy of
            code = b"?"
            try:
                os.close(said_r)
                os.close(go_w)
                try:
                    with rundir.RunLock() as mine:
                        mine.take(out)
                    code = b"taken"
                except rundir.RunDirectoryBusy as exc:
                    code = b"busy" if "another process" in str(exc) and not rundir._HELD else b"other"
            finally:
                os.write(said_w, code)
                os.read(go_r, 1)  # (alive until the parent has looked again)
                os._exit(0)
        os.close(said_w)
        os.close(go_r)
        try:
            assert os.read(said_r, 16) == b"busy"  # refused as another process is: the parent still holds it
            assert held_elsewhere(out)
            lock.__exit__(None, None, None)
            assert not held_elsewhere(out)  # the parent let go, and the live child holds nothing
        finally:
            os.write(go_w, b"x")
            os.waitpid(pid, 0)
            for fd in (said_r, go_w):
                os.close(fd)


@needs_flock
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_child_forked_while_another_thread_takes_a_run_lock_takes_its_own(tmp_path, held_elsewhere):
    """A fork() while another thread of the parent was inside RunLock.take (holding the module's lock)
    gave the child a copy of that lock held by a thread the child does not have: its first take would
    wait for ever. The child gets a lock of its own, and its copies of the parent's lock descriptors
    are closed (not unlocked: the parent's lock outlives the child)."""
    import threading
    import warnings

    out, theirs = tmp_path / "r", tmp_path / "child"
    out.mkdir()
    theirs.mkdir()
    with rundir.RunLock() as lock:
        lock.take(out)
        inherited = [fd for fd, _ in rundir._HELD.values()]
        inside, done = threading.Event(), threading.Event()

        def take_slowly():  # another thread, inside take: the module's lock held
            with rundir._TAKING:
                inside.set()
                done.wait(60)

        thread = threading.Thread(target=take_slowly)
        thread.start()
        try:
            assert inside.wait(60)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # ("use of fork() may lead to deadlocks")
                pid = os.fork()
            if pid == 0:  # the child: it never returns into the test runner it is a copy of
                status = 0
                try:
                    for fd in inherited:
                        try:
                            os.fstat(fd)
                            status |= 1  # still open in the child
                        except OSError:
                            pass
                    if rundir._TAKING.acquire(timeout=10):
                        rundir._TAKING.release()
                        with rundir.RunLock() as mine:
                            mine.take(theirs)
                            status |= 0 if list(rundir._HELD) == [(os.stat(theirs).st_dev,
                                                                    os.stat(theirs).st_ino)] else 4
                    else:
                        status |= 2  # the parent's thread's lock, which nothing in the child releases
                finally:
                    os._exit(status)
        finally:
            done.set()
            thread.join(60)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert held_elsewhere(out) and not held_elsewhere(theirs)  # the child has ended; the parent holds on


@needs_flock
def test_a_run_directory_that_keeps_being_replaced_is_refused_saying_so(tmp_path, monkeypatch, held_elsewhere):
    """Another process moves the folder away and makes a new one each time, between the open and the
    lock: after three tries take gives up, naming the folder and what to do, and holds nothing."""
    out = tmp_path / "r"
    out.mkdir()
    real_flock, replaced = fcntl.flock, []

    def flock(fd, op):
        replaced.append(tmp_path / f"old{len(replaced)}")
        out.rename(replaced[-1])
        out.mkdir()
        return real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    fds = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    with rundir.RunLock("out_dir") as lock, pytest.raises(rundir.RunDirectoryBusy) as err:
        lock.take(out)
    monkeypatch.undo()
    assert str(err.value) == (f"out_dir {out} keeps being replaced by another process; choose another out_dir")
    assert len(replaced) == 3 and rundir._HELD == {}
    assert not any(held_elsewhere(p) for p in (out, *replaced))
    assert fds is None or set(os.listdir("/proc/self/fd")) == fds  # (each try's descriptor closed)


def test_without_flock_a_run_lock_holds_nothing(tmp_path, monkeypatch, held_elsewhere):
    """Where fcntl does not import (Windows) a run directory is not locked at all (RunLock's docstring):
    take returns, holding nothing, and leaving the with releases nothing."""
    import sys

    out = tmp_path / "r"
    out.mkdir()
    monkeypatch.setitem(sys.modules, "fcntl", None)  # (import fcntl: ImportError)
    with rundir.RunLock() as lock:
        lock.take(out)
        assert rundir._HELD == {} and not held_elsewhere(out)
        with rundir.RunLock() as again:  # (another thread's take would be refused with flock; here, not)
            again.take(out)
    assert rundir._HELD == {}


def test_without_pthread_sigmask_a_hold_still_keeps_a_ctrl_c_to_its_end(monkeypatch):
    """Where signals cannot be blocked (Windows has no pthread_sigmask) the handlers are swapped
    without that, and a Ctrl-C inside interrupts_held is still raised at the end of the hold."""
    monkeypatch.delattr(signal, "pthread_sigmask")
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with rundir.interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("the end of the hold")
    assert reached == ["the end of the hold"] and rundir._holding == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_a_hangup_with_stdout_and_stderr_closed_waits_for_the_end_of_the_step(tmp_path):
    """A train started with both closed (`byol-ref train ... >&- 2>&-`) that gets a SIGHUP: its handler
    looks for a closed terminal among them (fstat: no such descriptor) and says on stderr that the stop
    waits (the write fails). Neither may raise out of the handler into the step, which is to end and
    write its checkpoint; the hang-up is raised after it."""
    import subprocess
    import sys

    code = ("import os, signal, sys\n"
            "from byol_ref import rundir\n"
            "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"  # (a suite under nohup would pass it on ignored)
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "os.close(1)\n"
            "os.close(2)\n"
            "with rundir.sigterm_as_interrupt(), rundir.first_interrupt_only():\n"
            "    with rundir.interrupt_after_step(lambda: True, 'stopping after this step') as pending:\n"
            "        os.kill(os.getpid(), signal.SIGHUP)\n"
            "        stop = pending()\n"
            "sys.exit(0 if type(stop) is rundir.Terminated and stop.signum == signal.SIGHUP else 3)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(rundir.__file__).parents[1], timeout=120)
    assert done.returncode == 0


@needs_flock
def test_two_processes_cannot_hold_one_run_directory(tmp_path):
    # Each takes the lock exclusively: a second byol-ref process is refused while the first holds it.
    import subprocess
    import sys

    out = tmp_path / "r"
    out.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import sys; from byol_ref import rundir; lock = rundir.RunLock(); "
                           "lock.take(sys.argv[1]); print('held', flush=True); sys.stdin.read()", str(out)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          cwd=Path(rundir.__file__).parents[1]) as holder:  # (the with closes its pipes)
        try:
            assert holder.stdout.readline() == "held\n"
            with rundir.RunLock() as lock, pytest.raises(rundir.RunDirectoryBusy):
                lock.take(out)
        finally:
            holder.kill()
            holder.wait(timeout=60)


def _log_moves_and_syncs(monkeypatch) -> list:
    """Record, in order, each move (``("move", destination)``), each flush of a folder
    (``("sync", folder)``) and each removal of a folder (``("remove", folder)``) that rundir makes."""
    events, real_replace, real_rmtree = [], os.replace, rundir.shutil.rmtree

    def replace(src, dst):
        events.append(("move", Path(dst)))
        return real_replace(src, dst)

    def rmtree(path, *args, **kwargs):
        events.append(("remove", Path(path)))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(rundir.os, "replace", replace)
    monkeypatch.setattr(rundir.shutil, "rmtree", rmtree)
    monkeypatch.setattr(rundir, "sync_folder", lambda folder: events.append(("sync", Path(folder))))
    return events


def test_a_set_aside_and_a_put_back_reach_the_disk_before_what_relies_on_them(tmp_path, monkeypatch):
    """After a power cut the new run's first checkpoint must not be on disk while the run it
    replaces is not yet in .replaced (the folder would read as the new run's, and .replaced be
    removed): both folders are flushed once the run has moved, and again once it is back."""
    out = tmp_path / "r"
    _write_run(out)
    replacing = rundir.Replacing(out)
    events = _log_moves_and_syncs(monkeypatch)
    replacing.set_aside()
    moves = [e for e in events if e[0] == "move" and e[1].parent == out / ".replaced" and e[1].name in RUN]
    assert len(moves) == len(RUN)
    after = events[events.index(moves[-1]) + 1:]
    assert {("sync", out), ("sync", out / ".replaced")} <= set(after)
    events.clear()
    replacing.stopped()
    # (the emptied folder goes only once the run is back on disk: removed first, a power cut could leave neither)
    assert events[-2:] == [("sync", out), ("remove", out / ".replaced")]
    assert [e[1].parent for e in events[:-2]] == [out] * len(RUN)
    assert _contents(out) == RUN


def test_a_set_aside_taken_over_and_a_published_report_reach_the_disk_after_their_moves(tmp_path, monkeypatch):
    """Found by a mutation audit: dropping either flush of _finish_move_aside (the --overwrite that
    takes over the .replaced a killed one left, moving the files it had yet to move) or the flush
    of a report's moves (_move_report) passed every test. A power cut after the new run's first
    checkpoint must not find the replaced run half in .replaced (whose list says the rest is the
    killed run's), nor a report half moved: both folders are flushed once the last file has moved."""
    out = tmp_path / "r"
    aside = out / rundir.SET_ASIDE
    _write_run(out, {"config.json": b"killed run's", "metrics.jsonl": b"not moved yet"})
    _write_run(aside, {"checkpoint.npz": b"old", "config.json": b"old"})
    (aside / rundir.MANIFEST).write_text("checkpoint.npz\nconfig.json\nmetrics.jsonl\n")
    events = _log_moves_and_syncs(monkeypatch)
    replacing = rundir.Replacing(out)
    replacing.set_aside()
    assert replacing.aside == aside and _contents(aside) == {
        "checkpoint.npz": b"old", "config.json": b"old", "metrics.jsonl": b"not moved yet",
        rundir.MANIFEST: b"checkpoint.npz\nconfig.json\nmetrics.jsonl\n"}
    assert os.listdir(out) == [rundir.SET_ASIDE]  # (the killed run's config.json went)
    moves = [e for e in events if e[0] == "move"]
    assert moves == [("move", aside / "metrics.jsonl")]
    assert {("sync", out), ("sync", aside)} <= set(events[events.index(moves[-1]) + 1:])
    events.clear()
    with rundir.staged_report(out) as stage:
        (stage / "report.txt").write_text("new report")
        rundir.publish_report(stage, out)
    last = max(i for i, e in enumerate(events) if e == ("move", out / "report.txt"))
    assert ("sync", out) in events[last + 1:]


def test_a_replaced_that_is_a_link_is_not_removed_beside_a_checkpoint(tmp_path, capsys):
    """Found by a mutation audit: remove_replaced following a link named .replaced passed every test. A
    link is not a folder an --overwrite made (it makes a folder, and refuses a link): it is left as it
    is, and so is what it points to, where following it renamed the link to .replaced-removing and
    warned that it could not be removed."""
    out, theirs = tmp_path / "r", tmp_path / "theirs"
    _write_run(out)
    _write_run(theirs)
    (out / rundir.SET_ASIDE).symlink_to(theirs)
    rundir.remove_stale(out)
    rundir.remove_replaced(out)
    assert (out / rundir.SET_ASIDE).is_symlink() and not os.path.lexists(out / rundir.REMOVING)
    assert _contents(theirs) == RUN and capsys.readouterr().err == ""


@pytest.mark.skipif(os.name != "posix", reason="the advice is a POSIX shell command")
def test_the_advice_for_a_run_left_set_aside_puts_it_back_and_is_given_only_for_a_run(tmp_path):
    """refuse_for_set_aside on its own (the commands that call it are tested in test_cli.py): the shell
    command it advises removes the killed run's files and puts the replaced run back whole; a .replaced
    without its checkpoint is said to hold no run to go on with; one holding no run file is no run."""
    import subprocess

    out = tmp_path / "run dir"  # (a path that needs quoting)
    aside = out / rundir.SET_ASIDE
    _write_run(out, {"config.json": b"killed run's", "report.json": b"killed run's, and the replaced run has none"})
    _write_run(aside, RUN)
    (aside / rundir.MANIFEST).write_text("".join(name + "\n" for name in RUN))
    said = r"^x: .* has no checkpoint: the run an overwrite started there stopped before its first\. The run it "
    with pytest.raises(FileNotFoundError, match=said + "was replacing is in ") as caught:
        rundir.refuse_for_set_aside(out, "x: ")
    undo = str(caught.value).split("put it back (")[1].split("); or start a new run with --overwrite")[0]
    subprocess.run(["sh", "-c", undo], check=True)
    assert _contents(out) == RUN
    _write_run(aside, {"config.json": b"old"})  # (its record only: the run it replaced had no checkpoint either)
    with pytest.raises(ValueError, match="there is no run to go on with; start a new one with --again$"):
        rundir.refuse_for_set_aside(out, "", overwrite="--again", error=ValueError)
    (aside / "config.json").unlink()
    (aside / rundir.MANIFEST).write_text("config.json\n")
    rundir.refuse_for_set_aside(out, "")  # (a list alone: no run set aside, nothing to say)


def test_an_overwrite_that_reaches_its_first_checkpoint_drops_the_replaced_run_without_a_word(tmp_path, capsys):
    """Found by a mutation audit: remove_replaced saying that the run it removes was left by an --overwrite
    killed after its first checkpoint, when called by commit (killed=False) too, passed test_rundir.py and
    the overwrite tests of test_cli.py and test_train.py: every ordinary --overwrite would have told
    of a killed run that never was. Only the next command after a kill says so."""
    out = tmp_path / "r"
    _write_run(out)
    replacing = rundir.Replacing(out)
    replacing.set_aside()
    (out / "checkpoint.npz").write_bytes(b"new checkpoint")
    replacing.commit()
    assert capsys.readouterr().err == "" and _contents(out) == {"checkpoint.npz": b"new checkpoint"}
    _write_run(out / rundir.SET_ASIDE, {"config.json": b"old"})  # (as a killed --overwrite leaves it)
    rundir.remove_replaced(out)
    assert "which was killed after its first checkpoint" in capsys.readouterr().err
    assert os.listdir(out) == ["checkpoint.npz"]


@pytest.mark.skipif(not hasattr(os, "mkfifo") or not hasattr(os, "symlink"), reason="needs FIFOs and symlinks (POSIX)")
def test_an_atomic_write_or_a_folder_made_at_a_pipe_or_a_link_to_nothing_is_refused_and_leaves_it(tmp_path):
    """atomic_write renamed its file over a pipe (as root, over a device) and so replaced it with a
    regular file; make_folder, at a link to nothing, said "[Errno 17] File exists" (make_folder's
    users: seed_table, collapse_lab, the examples' --workdir, plot_run's out_dir). Both now refuse,
    naming what stands there, and leave it."""
    import stat

    from byol_ref import checkpoint, checks

    os.mkfifo(tmp_path / "pipe.npz")
    os.symlink(tmp_path / "unmounted", tmp_path / "gone")
    with pytest.raises(FileExistsError, match=r"cannot write .*pipe.npz: .*pipe.npz is not a regular file \(a pipe, "
                       r"device or socket\); expected the path of a file to write"):
        checkpoint.atomic_write(tmp_path / "pipe.npz", lambda f: f.write(b"data"))
    with pytest.raises(FileExistsError, match=r"cannot write .*gone/x.bin: .*gone is a link to .*unmounted, which "
                       "leads to no file"):
        checkpoint.atomic_write(tmp_path / "gone" / "x.bin", lambda f: f.write(b"data"))
    with pytest.raises(FileExistsError, match=r"cannot make the folder .*gone/a: .*gone is a link to .*unmounted, "
                       r"which leads to no file .*; choose another --out"):
        checks.make_folder(tmp_path / "gone" / "a", "--out")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.npz").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["gone", "pipe.npz"]
