"""Append-only JSON-lines journals: the record of finished work that makes commands resumable.

A record is appended (and fsynced) only after the files it describes are in place, so a kill -9
loses at most the work in flight. A torn last line (killed mid-write) is ignored when read, and
cut off before the owner appends again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Complete records of a journal; a missing file has none, a torn last line is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().split(b"\n"):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # only the last line can be torn: everything before it was fsynced whole
    return records


class Journal:
    """The journal one process owns and appends to."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(len(complete))
                os.fsync(handle.fileno())

    def records(self) -> list[dict[str, Any]]:
        return read_records(self.path)

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        lines = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records)
        with open(self.path, "ab") as handle:
            handle.write(lines.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
