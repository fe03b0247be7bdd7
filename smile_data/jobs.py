"""Resumable work split between ranks: which tasks a rank runs, and the journal of what it finished.

`build-objects` (a task is one LVIS class) and the shard writer (a task yields the samples of
consecutive clips) both number their tasks, give each rank one contiguous block of them
(`WorkShare.tasks`), and record finished work in a `Journal` that the rank owns:

- a record is one JSON object on one line, appended and fsynced only after the files it
  describes are in place, so a kill -9 loses at most the work in flight;
- reading stops at the first line that is not a complete record (torn by a kill, damaged, or
  longer than `MAX_RECORD_BYTES`): everything before it was fsynced whole, and what follows it
  is simply done again;
- before appending, the owner cuts the file after the records it kept (`keep_leading`), so a
  new record never lands behind a line that readers stop at.

Where the rank and world size come from (flags, torchrun, SLURM): `smile_data.distributed`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

# One record holds at most a shard's or a class's manifest rows: a few megabytes. A longer line
# is not read into memory; the journal ends before it.
MAX_RECORD_BYTES = 64 << 20
RECORD_END = b"\n"

Kept = TypeVar("Kept")


@dataclass(frozen=True)
class WorkShare:
    """This process's share of the work: rank `rank` of `world_size`."""

    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not within world size {self.world_size}")

    def tasks(self, task_count: int) -> range:
        """The contiguous block of task numbers 0..task_count-1 this rank runs.

        Blocks follow rank order and differ in length by at most one, so every task belongs
        to exactly one rank, and the shard writer can number a rank's shards by its first clip.
        """
        first = task_count * self.rank // self.world_size
        end = task_count * (self.rank + 1) // self.world_size
        return range(first, end)


def encode_record(record: dict[str, Any]) -> bytes:
    """One journal line: compact JSON with sorted keys (non-ASCII escaped, so any file name,
    even one that is not valid UTF-8, round-trips)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + RECORD_END


def _decode_record(line: bytes) -> dict[str, Any] | None:
    """The record of one complete line, or None when the line is not one."""
    if not line.endswith(RECORD_END):
        return None  # torn by a kill, or longer than MAX_RECORD_BYTES
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


class Journal:
    """An append-only JSON-lines file of finished work; one process owns (appends to) it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _lines(self) -> Iterator[tuple[dict[str, Any], int]]:
        """(record, byte offset after it) of each leading complete record."""
        if not self.path.is_file():
            return
        end = 0
        with open(self.path, "rb") as handle:
            while line := handle.readline(MAX_RECORD_BYTES + len(RECORD_END)):
                record = _decode_record(line)
                if record is None:
                    return
                end += len(line)
                yield record, end

    def records(self) -> Iterator[dict[str, Any]]:
        """The complete records, in order, up to the first line that is not one (any reader)."""
        for record, _ in self._lines():
            yield record

    def keep_leading(self, check: Callable[[dict[str, Any]], Kept] | None = None) -> list[Kept]:
        """For the owner, before it appends: the leading records that `check` accepts (its
        results; it raises ValueError, KeyError or TypeError for one it does not), and the file
        cut right after them."""
        kept: list[Any] = []
        end = 0
        for record, record_end in self._lines():
            try:
                kept.append(record if check is None else check(record))
            except (ValueError, KeyError, TypeError):
                break
            end = record_end
        self._cut(end)
        return kept

    def _cut(self, size: int) -> None:
        if self.path.is_file() and self.path.stat().st_size != size:
            with open(self.path, "r+b") as handle:
                handle.truncate(size)
                os.fsync(handle.fileno())

    def append(self, *records: dict[str, Any]) -> None:
        """Write `records` at the end and fsync; call only after their files are in place."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as handle:
            handle.write(b"".join(encode_record(record) for record in records))
            handle.flush()
            os.fsync(handle.fileno())
