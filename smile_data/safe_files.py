"""Reading files of a folder that came from elsewhere (a bank, an imported folder, a dataset).

Such a folder may hold symbolic links to anywhere (`/dev/zero`, a private file) and FIFOs,
sockets or device nodes, which hang or never end when opened and read. A file is read only if
its real path lies inside the folder's real path and it is a regular file: checked with lstat
before it is opened (opening a device or a FIFO can block or have effects), then opened
component by component from the folder without following any link and without blocking, and
checked again on the open descriptor (the path may have been swapped in between). Reads are
bounded by a byte limit.

Hard links cannot be told from ordinary files (both are names of the same inode), so a hard
link planted in a folder is read like any file; they cannot point at another file system.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import IO

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
OPEN_FLAGS = os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
FOLDER_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


class UnsafeFile(ValueError):
    """A file that must not be read; `reason` says why, the message names the file too."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _checked(path: str | Path, root: str | Path) -> tuple[str, str | None]:
    """(real path, why it must not be read or None); opens nothing."""
    real = os.path.realpath(path)
    if not Path(real).is_relative_to(os.path.realpath(root)):
        return real, f"a link to {real}, outside {root}"
    try:
        mode = os.lstat(real).st_mode
    except OSError as error:
        return real, f"cannot be read ({error.strerror})"
    return real, None if stat.S_ISREG(mode) else f"{_kind(mode)}, not a regular file"


def outside_problem(path: str | Path, root: str | Path) -> str | None:
    """Why `path` must not be read as a file of `root` (None if it may): a link leading out of
    the folder, a missing file, or anything but a regular file. Opens nothing."""
    return _checked(path, root)[1]


def _open_beneath(real: str, root: str | Path) -> int:
    """A descriptor of `real` (a resolved path inside `root`), opened one component at a time
    from the root's folder, none of them followed if it is a link: a link swapped in on the way
    after the check fails the open (ELOOP, ENOTDIR) instead of leading elsewhere."""
    real_root = os.path.realpath(root)
    parts = Path(real).relative_to(real_root).parts
    if not parts:
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    folder = os.open(real_root, FOLDER_FLAGS)
    try:
        for part in parts[:-1]:
            inner = os.open(part, FOLDER_FLAGS | NOFOLLOW, dir_fd=folder)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], OPEN_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)


def open_inside(path: str | Path, root: str | Path) -> IO[bytes]:
    """`path` opened for reading if it is a regular file inside `root` (see the module
    docstring); UnsafeFile naming the file otherwise. Nothing else is opened on the way: the
    path the check resolved is opened component by component without following any link
    (`_open_beneath`), so a file or folder swapped for a link meanwhile is refused."""
    real, problem = _checked(path, root)
    if problem:
        raise UnsafeFile(path, problem)
    try:
        descriptor = _open_beneath(real, root)
    except OSError as error:
        swapped = error.errno in (errno.ELOOP, errno.ENOTDIR)
        raise UnsafeFile(path, "a link was swapped in since its check" if swapped
                         else f"cannot be read ({error.strerror})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise UnsafeFile(path, f"{_kind(mode)}, not a regular file")
    # the stream keeps the name it was asked by (messages name the file, not the target)
    return open(path, "rb", opener=lambda _name, _flags: descriptor)


def read_inside(path: str | Path, root: str | Path, max_bytes: int) -> bytes:
    """The bytes of the regular file `path` inside `root`; UnsafeFile (a ValueError) naming the
    file if it is a link out of `root`, not a regular file, or larger than `max_bytes`."""
    with open_inside(path, root) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > max_bytes:
            raise UnsafeFile(path, f"{size} bytes, over the {max_bytes} allowed")
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UnsafeFile(path, f"grew past the {max_bytes} bytes allowed while being read")
    return data
