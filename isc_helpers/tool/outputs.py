"""Outputs a user can trust, for every command of the tool: nothing an earlier run or the user made
is replaced without ``overwrite``, never an input; a folder has one writer at a time (a lock that
a second writer is refused by, and that a dead process's leftover does not block); outputs are
written into a temporary folder and moved into place only when the whole run has finished, so a
failed run (a full disk, Ctrl-C) leaves the earlier complete result as it was.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ..core.errors import CourseError, OutputExistsError

LOCK_FILE = ".isc-course.lock"


class OutputError(CourseError, ValueError):
    """An output cannot be written as asked; the message says what to do."""


class LockedError(OutputError):
    """Another process is writing into the same folder."""


def check_folder_target(out) -> Path:
    """``out`` as a folder that can be written: refused before any work when it is a file or when
    neither it nor its nearest existing parent can be written."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder (it is created when missing).")
    parent = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: {parent} cannot be written; choose a folder you can write to.")
    return out


def refuse_existing(out: Path, names, overwrite: bool) -> None:
    """Refuse to replace the files ``names`` of an earlier run in ``out`` unless ``overwrite``."""
    there = [n for n in names if (Path(out) / n).exists()]
    if there and not overwrite:
        raise OutputExistsError(f"{out} already holds {', '.join(there)}; pass --overwrite to replace them, or "
                                "choose another --out.")


def refuse_inputs(target, inputs, what: str = "--out") -> None:
    """Refuse an output path that is one of the ``inputs`` (files or folders) or lies inside one."""
    where = Path(target).expanduser().resolve()
    for given in inputs:
        if given is None:
            continue
        p = Path(given).expanduser().resolve()
        if where == p or (p.is_dir() and p in where.parents):
            raise OutputError(f"{what} {target} would write over or into an input ({given}); choose another path.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> tuple[str, str]:
    try:
        host, _, pid = lock.read_text().partition(" ")
    except OSError:
        return "", ""
    return host, pid.strip()


def _take(lock: Path) -> bool:
    """Create the lock atomically (O_CREAT | O_EXCL); a lock left by a dead process on this
    machine is taken over. False when a live process holds it."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        host, pid = _holder(lock)
        if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
            lock.unlink(missing_ok=True)
            return _take(lock)
        return False
    with os.fdopen(fd, "w") as f:
        f.write(f"{socket.gethostname()} {os.getpid()}")
    return True


@contextlib.contextmanager
def locked(folder, wait: float = 0.0, what: str = "--out"):
    """Hold ``folder``'s lock while writing into it (the folder is created when missing). A second
    writer waits up to ``wait`` seconds, then is refused with :class:`LockedError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (PermissionError, NotADirectoryError, FileExistsError) as e:
        raise OutputError(f"Cannot write into {what} {folder} ({type(e).__name__}); choose a folder you can "
                          "write to.") from None
    lock, deadline = folder / LOCK_FILE, time.monotonic() + wait
    while not _take(lock):
        if time.monotonic() >= deadline:
            host, pid = _holder(lock)
            raise LockedError(f"Another process is writing into {folder} (lock file {lock}, held by {host or '?'} "
                              f"pid {pid or '?'}). Wait for it to finish and run again; if no such process runs, "
                              "delete the lock file.")
        time.sleep(0.2)
    try:
        yield folder
    finally:
        lock.unlink(missing_ok=True)


@contextlib.contextmanager
def staged(out, replaces=()):
    """Write a run's outputs into a temporary folder beside ``out`` (``yield``-ed); when the block
    ends without error, move each file into ``out`` and delete the files of ``replaces`` that
    this run did not write (an earlier run's); on any error, delete the temporary folder and
    leave ``out`` as it was."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".isc-course-run-"))
    try:
        yield tmp
        written = [p for p in tmp.rglob("*") if p.is_file()]
        for p in written:                     # renames in one folder: they cannot fail for a full disk
            target = out / p.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, target)
        done = {p.relative_to(tmp).as_posix() for p in written}
        for name in replaces:
            if name not in done:
                (out / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
