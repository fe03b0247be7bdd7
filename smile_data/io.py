"""Atomic file output: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file under its final name, and a kill -9 leaves at most a
`<name>.tmp-<pid>` file that the next run of the same command removes (each command removes
only the temporaries of the files it writes, never other files that happen to look alike).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterator

TMP_MARK = ".tmp-"
TEMPORARY_PATTERN = re.compile(rf"(?P<final>.+){re.escape(TMP_MARK)}\d+")  # <name>.tmp-<pid>


def temporary_name(path: Path) -> Path:
    return path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success fsync it and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def temporary_target(name: str) -> str | None:
    """The final file name of a temporary `<name>.tmp-<pid>` (see temporary_name), else None."""
    match = TEMPORARY_PATTERN.fullmatch(name)
    return match["final"] if match else None


def remove_stale_temporaries(folder: str | Path,
                             is_own: Callable[[str], bool] | None = None) -> int:
    """Delete leftovers of interrupted atomic writes directly in `folder` (not in its
    subfolders); with `is_own`, only those whose final name it accepts. Returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for tmp in folder.glob(f"*{TMP_MARK}*"):
        target = temporary_target(tmp.name)
        if target is not None and tmp.is_file() and (is_own is None or is_own(target)):
            tmp.unlink()
            removed += 1
    return removed


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
