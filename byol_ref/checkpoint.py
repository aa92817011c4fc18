"""Checkpoints: one ``.npz`` (never pickled), written atomically, read with clear errors.

Layout (format ``byol-ref-checkpoint``, version 1): every array is stored under a
prefixed name, ``online/<param>``, ``target/<param>``, ``online_buffers/<buffer>``,
``target_buffers/<buffer>``, ``opt/<state key>``, ``data/epoch_perm``; one 0-d string
``meta`` holds JSON: format, version, ``written_by`` (the byol-ref and NumPy versions), step,
epoch position, the generator state, the model and training configs, and anything the caller
adds. ``numpy.load`` is always called with ``allow_pickle=False``.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed
over the destination (``os.replace`` is atomic on POSIX and Windows), so a crash leaves
either the old checkpoint or the new one, never half of one; the folder is then flushed too
(``sync_folder``), so that the rename outlives a power cut. A temporary file's name says which
process on which host writes it (``.NAME.HOST-PID.XXXXXXXX.tmp``), so that the next write of the
same file removes those a process killed outright left (``remove_orphaned_temporaries``).
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import tempfile
import tokenize
import warnings
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

from .backend import host as np
from .backend import to_numpy
from .checks import check_path, in_the_way, native_order, not_a_file, warn
from .version import __version__, release

FORMAT = "byol-ref-checkpoint"
VERSION = 1
GROUPS = ("online", "target", "online_buffers", "target_buffers", "opt", "data")
# How deep meta's values may nest (byol-ref's own nest 3 deep): Python 3.10 and 3.11 read JSON nested up to
# about 1000 deep, 3.13 up to about 10,000, so a limit far below both keeps a checkpoint readable by every Python.
META_DEPTH = 100


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or not a byol-ref checkpoint."""


# --------------------------------------------------------------------------- reading NumPy files safely
# Shared by checkpoints, user data (data.py) and traces and weights (trace.py, interchange.py).

NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"  # how an .npy and an .npz (a zip archive) start
EMPTY_ZIP_MAGIC = b"PK\x05\x06"  # how a zip of no files starts (numpy.savez with no arrays writes one)


def file_head(path, n: int = 6) -> bytes:
    """The first ``n`` bytes of a file (fewer if it is shorter)."""
    with open(path, "rb") as f:
        return f.read(n)


@contextmanager
def numpy_read_errors(what: str, error=ValueError):
    """Turn what NumPy and zipfile raise on a bad file into ``error`` naming it (``what``):
    pickled (object) data, which byol-ref never loads; a truncated or corrupt file; a header
    that claims more than memory."""
    try:
        yield
    except MemoryError:
        raise error(f"{what} claims an array larger than memory: it is corrupt, or not written by NumPy") from None
    except ValueError as exc:
        if "max_header_size" in str(exc):  # (NumPy's advice there, to trust the file, is not ours to give)
            raise error(f"{what} is corrupt or not written by NumPy: {first_line(exc)}") from None
        if "pickle" in str(exc).lower():
            raise error(f"{what} holds pickled (object) data, which byol-ref never loads; save numeric arrays "
                        "(float or int dtype)") from None
        raise error(f"{what} is truncated or corrupt ({first_line(exc)})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError, NotImplementedError, SyntaxError, TypeError,
            OverflowError, tokenize.TokenError, RuntimeError) as exc:  # (SyntaxError, TokenError, TypeError: NumPy
        # parsing a mangled .npy header, TypeError where its dict has a bytes or list key; OverflowError: a dimension
        # beyond int64 in the shape of an empty array, (0, 2**70), whose 0 bytes the size check finds right;
        # RuntimeError: zipfile reading a flipped flag bit as "File ... is encrypted, password required")
        raise error(f"{what} is truncated or corrupt ({type(exc).__name__}: {first_line(exc)})") from None


#: What NumPy warns of a header written by Python 2's NumPy (``(40L, 6L)``), naming no file.
PYTHON2_HEADER = r".*created on Python 2"
_PYTHON2_LONG = re.compile(rb"\d[lL]\b")  # (a Python 2 long in the header's shape: 40L)


def _python2_header(fh) -> bool:
    """Whether the ``.npy`` that ``fh`` reads from where it stands has a version 1.0 header (the one
    Python 2's NumPy wrote) holding Python 2's longs; ``fh`` is left where it was."""
    start = fh.tell()
    try:
        head = fh.read(10)
        if len(head) < 10 or not head.startswith(NPY_MAGIC) or head[6] != 1:
            return False
        return _PYTHON2_LONG.search(fh.read(int.from_bytes(head[8:10], "little"))) is not None
    finally:
        fh.seek(start)


def written_by_python2(path) -> bool:
    """Whether an ``.npy``, or an array of an ``.npz``, has a header from Python 2's NumPy (read
    after the size check, which has found the file sound)."""
    with open(path, "rb") as fh:
        if fh.read(len(NPY_MAGIC)) == NPY_MAGIC:
            fh.seek(0)
            return _python2_header(fh)
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as member:
                if _python2_header(member):
                    return True
    return False


@contextmanager
def _python2_warning_ignored(ignore: bool):
    """NumPy's warning of a Python 2 header filtered out in this block where ``ignore`` (the caller names the
    file in a warning of its own); where not, the warning filters untouched (they are the process's, not this
    thread's: ``catch_warnings`` is entered only for such a file)."""
    if not ignore:
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", PYTHON2_HEADER, UserWarning)
        yield


@contextmanager
def python2_named(path, what: str):
    """Read ``path`` (an ``.npy`` or ``.npz``, named ``what``) in this block with one warning, naming it,
    where a header is Python 2's: NumPy warns once per such array and names no file. Other files are
    read as they are."""
    python2 = written_by_python2(path)
    with _python2_warning_ignored(python2):
        yield
    if python2:
        warn(f"{what} was written by Python 2's NumPy, whose header takes extra parsing to read; save "
             "it again with numpy.save to read it faster and without this warning")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (NumPy's can run to several, with advice)."""
    return (str(exc).splitlines() or [""])[0]


def read_npz(path, what: str, error=ValueError) -> dict:
    """Every array of an ``.npz``, in file order, read with ``allow_pickle=False``; a file that
    is not one, or cannot be read, raises ``error`` naming it (``what``) and the problem."""
    head = file_head(path)
    if head.startswith(EMPTY_ZIP_MAGIC):  # (it said "not a zip archive, which numpy.savez writes")
        raise error(f"{what} holds no arrays: an .npz of none, as numpy.savez with no arrays writes")
    if not head.startswith(ZIP_MAGIC):
        found = ("it is empty (0 bytes)" if not head else
                 "it is an .npy array; rename it to .npy" if head == NPY_MAGIC else
                 "it is not a zip archive, which numpy.savez writes")
        raise error(f"{what} is not an .npz file: {found}")
    with numpy_read_errors(what, error):
        size_problem = npz_size_problem(path)
        if size_problem is None:
            with python2_named(path, what), np.load(path, allow_pickle=False) as f:
                names = list(f.files)
                arrays = {k: f[k] for k in names}
    if size_problem is not None:
        raise error(f"{what} is corrupt: {size_problem}")
    check_members(names, arrays, what, error)
    return {k: native_order(a) for k, a in arrays.items()}  # (another machine's file holds >f8)


def npy_size_problem(fh, size: int) -> str | None:
    """What is wrong with the size of the ``.npy`` that ``fh`` reads from its start (``size``
    bytes in all), or None: a header that claims other than the data it holds. NumPy reads what
    the header claims and quietly leaves the rest; a header claiming more (terabytes, when
    corrupt) would have it allocate first. A mangled header raises ValueError or what NumPy's
    parser raises (SyntaxError, tokenize.TokenError)."""
    with _python2_warning_ignored(_python2_header(fh)):  # (the array's read warns of it, naming the file)
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh)
    claimed, held = math.prod(shape) * dtype.itemsize, size - fh.tell()
    if dtype.hasobject or claimed == held:  # (object arrays: np.load refuses them without reading)
        return None
    return f"its header claims shape {shape} of {dtype} ({claimed} bytes) but it holds {held} bytes of data"


def npz_size_problem(path) -> str | None:
    """``npy_size_problem`` of each array of an ``.npz``, naming the first that has one: each member that
    starts as an ``.npy`` does, whatever its name (NumPy reads one named without ``.npy`` as an array too)."""
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as fh:
                if fh.read(len(NPY_MAGIC)) != NPY_MAGIC:
                    continue  # (no array at all: check_members refuses it)
                fh.seek(0)
                problem = npy_size_problem(fh, info.file_size)
            if problem:
                return f"its member {info.filename.removesuffix('.npy')!r}: {problem}"
    return None


def parse_json(text, what: str, error=ValueError):
    """``json.loads`` of ``text`` (a file's contents, or a part of one), refusing by ``error``
    naming ``what`` what Python's parser raises something else for or takes quietly: nesting
    deeper than it recurses, integers longer than it converts or beyond a float's range (every
    number byol-ref reads is one; they failed later on OverflowError), a key given twice."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_int=_float_sized_int)
    except _KeyTwice as exc:
        raise error(f"{what} gives {exc.args[0]} more than once") from None
    except _TooLarge as exc:
        raise error(f"{what} holds the integer {exc.args[0]}, larger than any number byol-ref reads (a float's "
                    "range, about 1.8e308)") from None
    except RecursionError:
        raise error(f"{what} is not JSON that byol-ref reads: nested deeper than Python's parser goes") from None
    except ValueError as exc:  # JSONDecodeError, the integer digit limit, UnicodeDecodeError of bytes
        raise error(f"{what} is not valid JSON ({type(exc).__name__}: {first_line(exc)})") from None


class _KeyTwice(Exception):
    pass


class _TooLarge(Exception):
    pass


def _float_sized_int(text: str) -> int:
    """A JSON integer, refused (``_TooLarge``, naming it shortened) beyond the range of a float."""
    value = int(text)  # (over Python's digit limit: ValueError, told as invalid JSON)
    try:
        float(value)
    except OverflowError:
        raise _TooLarge(f"{text[:12]}... ({len(text.lstrip('-'))} digits)") from None
    return value


def _unique_keys(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) < len(pairs):
        seen = set()
        raise _KeyTwice(sorted({k for k, _ in pairs if k in seen or seen.add(k)})[:4])
    return out


def check_members(names: list, arrays: dict, what: str, error=ValueError) -> None:
    """Refuse an archive that stores a name twice (zip allows it, and NumPy would read one of the
    two without a word) or a member that is no ``.npy`` array (NumPy hands back its raw bytes)."""
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise error(f"{what} holds {len(twice)} array name(s) more than once ({twice[:4]}): the archive was "
                    "appended to or hand-made; write it again with numpy.savez")
    raw = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
    if raw:
        raise error(f"{what} holds {len(raw)} member(s) that are not .npy arrays ({raw[:4]}): an .npz holds "
                    "only what numpy.savez writes")


def save(path, arrays: dict, meta: dict) -> Path:
    """Atomically write a checkpoint.

    Args:
        path: destination ``.npz`` path.
        arrays: group name (one of GROUPS) -> dict name -> array (NumPy or CuPy).
        meta: JSON-serialisable dict (step, configs, generator state, ...). ``format`` and
            ``version`` are save's own (a meta that :func:`load` returned holds the same);
            ``written_by`` is replaced by this byol-ref's and NumPy's versions.

    Returns:
        The path written.
    """
    path = Path(check_path(path))
    if not isinstance(arrays, Mapping) or not all(isinstance(t, Mapping) for t in arrays.values()):
        raise TypeError(f"arrays must be a dict group -> dict name -> array, got {type(arrays).__name__}")
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict of JSON values, got {type(meta).__name__}")
    written_by = {"byol_ref": __version__, "numpy": np.__version__}  # provenance, never checked on load
    header = {"format": FORMAT, "version": VERSION}
    clash = {k: meta[k] for k in header if k in meta and meta[k] != header[k]}
    if clash:  # (load would refuse the file, or read it as another version)
        raise ValueError(f"meta sets {clash}, but save writes this byol-ref's checkpoint format {header}; leave "
                         "them out")
    header["written_by"] = written_by  # (a loaded meta's own is replaced: the file is written now)
    flat = {}
    for group, tree in arrays.items():
        if group not in GROUPS:
            raise ValueError(f"checkpoint group must be one of {GROUPS}, got {group!r}")
        for name, value in tree.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"arrays[{group!r}] has the name {name!r}; names are non-empty strings")
            flat[f"{group}/{name}"] = np.asanyarray(to_numpy(value))
            if flat[f"{group}/{name}"].dtype.hasobject:  # (NumPy said only "Object arrays cannot be saved ...")
                raise ValueError(f"arrays[{group!r}][{name!r}] is a {type(value).__name__} of dtype object, which a "
                                 "checkpoint cannot hold without pickle; expected a numeric array")
    walks = {k: _walk(v, META_DEPTH) for k, v in meta.items()}  # key -> (its value's dict keys, depth)
    deep = [k for k, (_, depth) in walks.items() if depth > META_DEPTH]
    if deep:  # (how deep Python's JSON goes depends on its version: 3.13 writes what 3.11 cannot read)
        raise TypeError(f"meta must hold JSON values nested at most {META_DEPTH} deep, which every Python reads "
                        f"back; {deep[:4]} are nested deeper (or hold themselves)")
    try:  # (no NaN or inf: standard JSON has none, and a reader other than Python's refuses them)
        text = json.dumps({**meta, **header}, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        bad = [k for k, v in meta.items() if not _json_ok(v)]
        raise TypeError(f"meta must hold JSON values (numbers, strings, lists, dicts; finite numbers); {bad[:4]} do "
                        f"not ({exc})") from None
    odd = [key for key in [*meta, *(key for keys, _ in walks.values() for key in keys)] if not isinstance(key, str)]
    if odd:  # (JSON would write it as a string, and load give back another meta)
        raise TypeError(f"meta must hold JSON values, whose keys are strings; it has the key {odd[0]!r}")
    flat["meta"] = np.array(text)
    return atomic_savez(path, flat)


def _json_ok(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # (RecursionError: nested deeper than Python's encoder goes)
        return False
    return True


def _walk(value, limit: int) -> tuple[list, int]:
    """(every dict key in ``value``, a tree of dicts, lists and tuples, at every depth; how deep it
    nests: 0 for a number or a string, 1 for a list of them), walked without recursion. The walk
    goes no deeper than ``limit`` + 1 (then the depth it gives is ``limit`` + 1, and the keys below
    are not listed), so it ends on a list that holds itself too."""
    keys, deepest, stack = [], 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit + 1:
            continue
        if isinstance(item, Mapping):
            keys.extend(item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
        else:
            continue
        deepest = max(deepest, depth)
    return keys, deepest


def atomic_write(path, write) -> Path:
    """Write a file that appears whole or not at all.

    ``write(f)`` fills a temporary binary file in the destination's folder, which is then
    flushed to disk and renamed over ``path``, and the rename flushed (``sync_folder``); on any
    error (or interrupt) the temporary file is removed and an existing ``path`` is untouched.

    Args:
        path: destination; its folder is created if missing.
        write: callable taking the open binary file.

    Returns:
        The path written.
    """
    from .rundir import interrupts_held  # (rundir writes with this module)

    path = Path(check_path(path))
    if path.is_dir():  # (os.replace said "Is a directory", naming the temporary file first)
        raise IsADirectoryError(f"{path} is a folder; expected the path of a file to write")
    blocked = in_the_way(path, folder=False)  # (the rename would put a regular file where a pipe or device was)
    if blocked is not None:
        raise FileExistsError(f"cannot write {path}: {blocked}; expected the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temporaries(path.parent, path.name)
    tmp = f = None
    try:
        with interrupts_held():  # a Ctrl-C between the file's creation and `tmp` would leave it behind
            with naming_file(path, instead=True):  # (the file to write, not the temporary one it was to be)
                fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
            f = os.fdopen(fd, "wb")
        with naming_file(path), f:  # (a full disk's "[Errno 28]" names no file; nor does the close)
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file owner-only; give it the permissions open() would (0o666 less the umask)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        tmp = None  # (renamed: there is nothing left to remove)
        sync_folder(path.parent)
    except BaseException:
        if f is not None:
            f.close()
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


@contextmanager
def naming_file(path, *, instead: bool = False):
    """Raise an OSError that names no file as one naming ``path``, the file being written: a write
    or flush that finds the disk full says only ``[Errno 28] No space left on device``. With
    ``instead``, one that names another file (a temporary one) is made to name ``path`` too."""
    try:
        yield
    except OSError as exc:
        if (instead or exc.filename is None) and exc.errno is not None and exc.strerror:
            exc.filename = os.fspath(path)
        raise


# No room left: on the disk, in the user's quota (not on Windows), under the file-size limit (ulimit -f).
_NO_ROOM = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name))


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write found no room left (``_NO_ROOM``)."""
    return isinstance(exc, OSError) and exc.errno in _NO_ROOM


def sync_folder(folder) -> None:
    """Flush a folder's entries (a rename into it, a file created) to disk: a file's own ``fsync``
    does not make its new name durable on POSIX, and after a power cut the folder could show the
    old file, or none. Where a folder cannot be opened or flushed (Windows, some network file
    systems) nothing is done: the rename itself is still atomic."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _host_tag() -> str:
    """This host's name as it goes into a temporary file's name: its ASCII letters, digits and '-', at most 40
    of them, or "host" where none is left."""
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:40] or "host"


def temporary_prefix(name: str) -> str:
    """How the temporary files (or folders) that become ``name`` begin: ``.NAME.HOST-PID.``, which
    says who writes them (``remove_orphaned_temporaries``); ``tempfile`` adds a random part. A
    name too long for that within the 255 bytes file systems allow gets ``.NAME.`` alone, and one
    too long for even that (242 to 255 bytes: it could not be written at all) a digest of it."""
    for prefix in (f".{name}.{_host_tag()}-{os.getpid()}.", f".{name}."):
        if len(os.fsencode(prefix)) + len("XXXXXXXX.tmp") <= 255:
            return prefix
    return f".{hashlib.sha256(os.fsencode(name)).hexdigest()[:16]}."


def orphaned_temporaries(folder, name: str) -> list:
    """The temporary files and folders of ``name`` in ``folder`` (``temporary_prefix``'s) that a
    process of this host that has since ended left: one killed outright (SIGKILL, the machine's
    memory running out) between creating one and renaming it. Those of a process still running
    (another one writing the same file, say), of another host sharing the folder, or whose writer
    cannot be told (not POSIX, or a name from before the names said) are not among them.

    Returns:
        ``os.DirEntry`` objects.
    """
    if os.name != "posix":  # (os.kill(pid, 0) would be a Ctrl-C there, not a question)
        return []
    pattern = re.compile(re.escape(f".{name}.{_host_tag()}-") + r"(\d+)\.[^.]+\.tmp")
    try:
        entries = list(os.scandir(folder))
    except OSError:  # (the write that follows says what is wrong with the folder)
        return []
    orphans = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is not None and not _running(int(match.group(1))):
            orphans.append(entry)
    return orphans


def remove_orphaned_temporaries(folder, name: str) -> list:
    """Remove the :func:`orphaned_temporaries` of ``name`` in ``folder``.

    Returns:
        The paths removed.
    """
    removed = []
    for entry in orphaned_temporaries(folder, name):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # (gone meanwhile, or not ours to remove: it does no harm where it is)
            continue
        removed.append(Path(entry.path))
    return removed


def _running(pid: int) -> bool:
    """Whether a process with this id runs on this host (POSIX); True where that cannot be told."""
    if pid == os.getpid() or pid <= 0:
        return True
    try:
        os.kill(pid, 0)  # (signal 0: only the question whether it could be sent)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    except (OSError, OverflowError):  # (an id no process can have)
        return False
    return True


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_savez(path, arrays: dict) -> Path:
    """:func:`atomic_write` of host arrays as an uncompressed ``.npz`` at exactly ``path``
    (no object arrays: they would need pickle to read).

    Written member by member, as ``np.savez`` does, but from the dict itself: ``np.savez(f, **arrays)``
    would take an array named ``allow_pickle`` or ``file`` for its own argument.
    """
    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, value in arrays.items():
                with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    return atomic_write(path, write)


def atomic_write_text(path, text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text (config.json, report.json, report.txt)."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def newer_writer(meta) -> str | None:
    """The byol-ref that wrote a checkpoint's ``meta`` (its ``written_by``), where it is a later release
    than this one, as "byol-ref 0.2.0"; else None. A later release may record settings this one does
    not know: that is not a file edited, and upgrading reads it."""
    theirs = meta.get("written_by", {}).get("byol_ref") if isinstance(meta.get("written_by"), dict) else None
    if isinstance(theirs, str) and release(theirs) > release(__version__):
        return f"byol-ref {theirs}"
    return None


def load(path) -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save`.

    Returns:
        (arrays, meta): arrays as group -> dict name -> host array; meta the JSON dict.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated, corrupt, foreign (not a byol-ref checkpoint) or of a
            newer format version.
    """
    path = Path(check_path(path))
    # (what a caller's path stands for, a run directory say, is the caller's to say)
    what = not_a_file(path, folder="is a folder, not a checkpoint file (a run directory keeps its checkpoint in "
                                   "checkpoint.npz)")
    if what:
        raise FileNotFoundError(f"checkpoint not found: {path} {what}")
    head = file_head(path)
    if not head.startswith(ZIP_MAGIC):
        what = ("is empty (0 bytes)" if not head else "is an .npz of no arrays" if head.startswith(EMPTY_ZIP_MAGIC)
                else "is not an .npz (zip) file")
        raise CheckpointError(f"{path} {what}, so not a byol-ref checkpoint: another kind of file, or one cut short "
                              "or corrupted; pass a run directory or its checkpoint.npz")
    flat = read_npz(path, str(path), CheckpointError)
    names = list(flat)
    if "meta" not in flat:
        raise CheckpointError(f"{path} is an .npz file but not a byol-ref checkpoint "
                              f"(no 'meta' entry; it has {names[:5]}{'...' if len(names) > 5 else ''})")
    if flat["meta"].shape != () or flat["meta"].dtype.kind != "U":
        raise CheckpointError(f"{path}: its meta entry is a {flat['meta'].dtype} array of shape "
                              f"{flat['meta'].shape}, expected one string of JSON")
    meta = parse_json(str(flat.pop("meta")[()]), f"{path}: its meta entry", CheckpointError)
    arrays = {g: {} for g in GROUPS}
    for name, value in flat.items():
        group, _, key = name.partition("/")
        if group not in arrays or not key:
            raise CheckpointError(f"{path}: unexpected entry {name!r} in a byol-ref checkpoint")
        arrays[group][key] = value
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a byol-ref checkpoint (its meta entry holds a JSON "
                              f"{type(meta).__name__}, expected an object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a byol-ref checkpoint (format {meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    version = meta.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {version!r}; this byol-ref "
                              f"reads versions up to {VERSION}: upgrade byol-ref")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:  # (true was read as version 1)
        raise CheckpointError(f"{path} has checkpoint format version {version!r}, expected a whole number from 1 "
                              f"to {VERSION}: the file is corrupt or was edited")
    return arrays, meta
