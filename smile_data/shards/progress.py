"""Resume state of a dataset folder: the run identity and one append-only journal per rank.

    <out>/progress/identity.json                       fingerprint + writer settings of the run
    <out>/progress/rank-RRRRR-of-WWWWW.journal.jsonl    one JSON line per finished shard
    <out>/progress/rank-RRRRR-of-WWWWW.manifest.parquet this rank's manifest rows (at its end)
    <out>/progress/rank-RRRRR-of-WWWWW.card.json        this rank's summary, written last: "done"

The journal is a `smile_data.jobs.Journal`. A line is written only after its shard was fsynced
and renamed, and holds the shard's name, sha256, size, sample count, manifest rows, the skipped
sources of the tasks finished before the shard was closed, and the resume position: the (task,
sample offset) of the first sample not in any finished shard. A kill can only leave a truncated
last line, which is ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from smile_data.io import write_json_atomic
from smile_data.jobs import Journal, WorkShare
from smile_data.shards.layout import SHARD_NAME_PATTERN

PROGRESS_DIR = "progress"
IDENTITY_FILE = "identity.json"
MAX_WORLD_SIZE = 99_999  # rank file names hold five digits
MAX_PROGRESS_BYTES = 1 << 20  # identity.json holds settings, a few kilobytes
MAX_COUNT = 1 << 53  # task, sample, byte and shard numbers: exact in a JSON double


def progress_dir(out_dir: str | Path) -> Path:
    return Path(out_dir) / PROGRESS_DIR


def rank_stem(rank: int, world_size: int) -> str:
    return f"rank-{rank:05d}-of-{world_size:05d}"


def journal_path(out_dir: str | Path, share: WorkShare) -> Path:
    return progress_dir(out_dir) / f"{rank_stem(share.rank, share.world_size)}.journal.jsonl"


def manifest_part_path(out_dir: str | Path, rank: int, world_size: int) -> Path:
    return progress_dir(out_dir) / f"{rank_stem(rank, world_size)}.manifest.parquet"


def card_part_path(out_dir: str | Path, rank: int, world_size: int) -> Path:
    return progress_dir(out_dir) / f"{rank_stem(rank, world_size)}.card.json"


def normalise_json(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), so stored and new compare."""
    try:
        return json.loads(json.dumps(value, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ValueError(f"fingerprint/card must be JSON-able without NaN: {error}") from None


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key in sorted(value):
            flat.update(_flatten(value[key], f"{path}.{key}" if path else str(key)))
        return flat
    return {path: value}


_MISSING = "<missing>"


def first_difference(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """A sentence naming the first setting (in sorted dotted-path order) that differs, or None."""
    old, new = _flatten(stored), _flatten(current)
    for path in sorted(set(old) | set(new)):
        before, after = old.get(path, _MISSING), new.get(path, _MISSING)
        if before != after:
            return f"{path} was {before!r}, now {after!r}"
    return None


def read_identity(out_dir: str | Path) -> dict[str, Any] | None:
    """The run identity, checked: a folder copied from other machines sizes loops by its
    world size, so that number is bounded before anything counts ranks with it."""
    path = progress_dir(out_dir) / IDENTITY_FILE
    if not path.is_file():
        return None
    remedy = "remove the folder or pass overwrite"
    try:
        if path.stat().st_size > MAX_PROGRESS_BYTES:
            raise ValueError(f"larger than {MAX_PROGRESS_BYTES} bytes")
        identity = json.loads(path.read_text())
    except (ValueError, RecursionError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); {remedy}") from None
    writer = identity.get("writer") if isinstance(identity, dict) else None
    world_size = writer.get("world_size") if isinstance(writer, dict) else None
    if not _is_count(world_size) or not 1 <= world_size <= MAX_WORLD_SIZE:
        raise ValueError(f"{path}: writer.world_size {world_size!r} is not an integer in "
                         f"1..{MAX_WORLD_SIZE}; {remedy}")
    return identity


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def write_identity(out_dir: str | Path, identity: dict[str, Any]) -> None:
    write_json_atomic(progress_dir(out_dir) / IDENTITY_FILE, identity)


@dataclass(frozen=True, order=True)
class Position:
    """Where the writer stands: task index and sample offset within that task."""

    task: int
    offset: int


@dataclass(frozen=True)
class JournalEntry:
    """One finished shard, as its rank's journal records it."""

    shard: str
    index: int
    sha256: str
    bytes: int
    samples: int
    rows: list[dict[str, Any]]
    skipped: list[dict[str, str]]
    next: Position

    def to_record(self) -> dict[str, Any]:
        return {"shard": self.shard, "index": self.index, "sha256": self.sha256,
                "bytes": self.bytes, "samples": self.samples, "rows": self.rows,
                "skipped": self.skipped, "next": [self.next.task, self.next.offset]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> "JournalEntry":
        """ValueError (or KeyError, TypeError) when `record` is not a journal entry this project
        wrote: a shard name that is not a plain shard file name, a count that is not a bounded
        integer."""
        task, offset = record["next"]
        counts = (record["index"], record["bytes"], record["samples"], task, offset)
        if not all(_is_count(value) for value in counts):
            raise ValueError(f"journal numbers {counts} are not integers in 0..{MAX_COUNT}")
        if not isinstance(record["shard"], str) or not SHARD_NAME_PATTERN.match(record["shard"]):
            raise ValueError(f"journal shard {record['shard']!r} is not a shard file name")
        return cls(record["shard"], record["index"], str(record["sha256"]),
                   record["bytes"], record["samples"], list(record["rows"]),
                   list(record["skipped"]), Position(task, offset))


def rank_journal(out_dir: str | Path, share: WorkShare) -> Journal:
    return Journal(journal_path(out_dir, share))


def load_entries(out_dir: str | Path, journal: Journal) -> list[JournalEntry]:
    """The rank's entries whose shard is on disk with the recorded size, up to the first that is
    not; the journal is cut there (its owner calls this before appending).

    A truncated or unreadable line, or a shard that is missing or of another size, ends the
    usable journal, and the work from that point on is simply done again. The entries come
    without their manifest rows (see `entry_rows`), so that memory does not grow with the
    dataset.
    """
    def on_disk(record: dict[str, Any]) -> JournalEntry:
        entry = JournalEntry.from_record(record)
        shard = Path(out_dir) / entry.shard
        if not shard.is_file() or shard.stat().st_size != entry.bytes:
            raise ValueError(f"{shard}: missing or not {entry.bytes} bytes")
        return dataclasses.replace(entry, rows=[])

    return journal.keep_leading(on_disk)


def entry_rows(journal: Journal) -> Iterator[list[dict[str, Any]]]:
    """The manifest rows of each recorded shard, in journal order (call after `load_entries`)."""
    for record in journal.records():
        yield JournalEntry.from_record(record).rows
