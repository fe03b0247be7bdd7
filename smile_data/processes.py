"""Processes sharing an output folder: an exclusive lock per writer, workers that die with
their parent.

Two commands writing into one folder at once would race on temporary files and journals; the
second one refuses at start with a message naming the folder and its lock file. The
lock is an advisory `flock` on a small file in the folder, released by the kernel when its
holder exits however it exits (kill -9 included), so there is never a stale lock to remove.

Worker processes compute tasks for a parent that writes; a worker whose parent was killed has
nobody to give its results to, so it asks Linux to kill it when the parent dies
(PR_SET_PDEATHSIG), and exits at once if the parent is already gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import fcntl
import os
import signal
import sys
from pathlib import Path
from typing import Iterator

LOCK_PREFIX = ".lock-"
# Worker processes start fresh (no inherited threads, locks or accelerator state).
WORKER_START_METHOD = "spawn"
MAX_WORKERS = 256  # worker processes one command starts on one machine
PR_SET_PDEATHSIG = 1  # linux/prctl.h
_HELD_UNTIL_EXIT: dict[str, int] = {}  # lock file -> descriptor, see hold_until_exit
_LOCK_DESCRIPTORS: set[int] = set()  # every lock descriptor this process holds


def _drop_locks_in_child() -> None:
    """A forked child (a loader or render worker) shares its parent's lock descriptors, and a
    flock is held until every descriptor of it is closed: a worker outliving a killed parent
    would keep the folder locked and refuse the --resume that follows. Children close their
    copies (close, never LOCK_UN, which would release the parent's lock too)."""
    for descriptor in _LOCK_DESCRIPTORS:
        with contextlib.suppress(OSError):
            os.close(descriptor)
    _LOCK_DESCRIPTORS.clear()
    _HELD_UNTIL_EXIT.clear()


os.register_at_fork(after_in_child=_drop_locks_in_child)


class FolderBusy(ValueError):
    """Another process holds the lock of an output folder."""


def _lock(folder: Path, name: str) -> int:
    """An open descriptor holding `<folder>/.lock-<name>` exclusively; FolderBusy if another
    process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LOCK_PREFIX}{name}"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise FolderBusy(f"{folder}: another command is writing into this folder (it holds "
                         f"{path.name}); wait for it to finish or choose another output folder") from None
    _LOCK_DESCRIPTORS.add(descriptor)
    return descriptor  # the file stays empty: reruns leave the folder byte-identical


@contextlib.contextmanager
def folder_lock(folder: str | Path, name: str) -> Iterator[None]:
    """Hold `<folder>/.lock-<name>` exclusively for the duration; FolderBusy if another holds it."""
    descriptor = _lock(Path(folder), name)
    try:
        yield
    finally:
        _LOCK_DESCRIPTORS.discard(descriptor)
        os.close(descriptor)  # releases the lock


def hold_until_exit(folder: str | Path, name: str) -> None:
    """Hold `<folder>/.lock-<name>` until this process exits; FolderBusy if another process
    holds it. Asking again from the same process is a no-op (a process may run several stages
    or retries into one folder; only other processes are kept out)."""
    key = os.path.realpath(Path(folder) / f"{LOCK_PREFIX}{name}")
    if key not in _HELD_UNTIL_EXIT:
        _HELD_UNTIL_EXIT[key] = _lock(Path(folder), name)


def exit_with_parent(parent_pid: int) -> None:
    """Make this (worker) process die when its parent dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
