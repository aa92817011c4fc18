"""os.access as the OS answers a user who is not root, for the tests of what byol-ref says where the
OS refuses a file: the tests may run as root, whom the OS refuses nothing."""
import os
from pathlib import Path


def as_a_user(monkeypatch, *, unreadable=(), unwritable=(), closed=()) -> None:
    """os.access, through ``monkeypatch``, as the OS answers a user who may not read the files
    ``unreadable``, write in (or write) ``unwritable`` or enter the folders ``closed``."""
    real_access = os.access
    paths = {mode: {Path(p).absolute() for p in ps} for mode, ps in
             ((os.R_OK, unreadable), (os.W_OK, unwritable), (os.X_OK, closed))}

    def access(path, mode, **kw):
        here = Path(path).absolute()
        if any(mode & m and here in ps for m, ps in paths.items()):
            return False
        if mode == os.F_OK and any(c in here.parents for c in paths[os.X_OK]):
            return False  # (behind a folder this user may not enter, nothing can be seen)
        return real_access(path, mode, **kw)

    monkeypatch.setattr(os, "access", access)
