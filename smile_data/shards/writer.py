"""Deterministic tar shards: fixed member order and metadata, cut by sample count and bytes.

`ShardWriter` streams samples into `<prefix>-NNNNNN.tar.tmp-<pid>`, and when a shard is full
fsyncs it and renames it to its final name, so a reader never sees a half-written shard. Every
tar header carries the same metadata (mtime 0, uid/gid 0, empty user and group names, mode
0o644, GNU format), and the members of a sample are written in sorted extension order
(`00.jpg` ... `15.jpg`, `cls`, `json`), so the same samples always give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Mapping

from smile_data.io import temporary_name
from smile_data.shards import layout

TAR_FORMAT = tarfile.GNU_FORMAT
BLOCK_SIZE = tarfile.BLOCKSIZE  # 512: headers and payloads are padded to whole blocks
RECORD_SIZE = tarfile.RECORDSIZE  # 10240: the archive is padded to whole records
END_OF_ARCHIVE = 2 * BLOCK_SIZE  # two zero blocks close a tar
MEMBER_MODE = 0o644


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def member_header(name: str, size: int) -> bytes:
    """The tar header block(s) of a regular file `name` of `size` bytes, with fixed metadata."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = MEMBER_MODE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info.tobuf(format=TAR_FORMAT, encoding="utf-8", errors="strict")


def encode_sample(key: str, members: Mapping[str, bytes]) -> bytes:
    """The tar bytes of one sample: members in sorted extension order, each padded to a block."""
    layout.check_key(key)
    if not members:
        raise ValueError(f"sample {key!r} has no members")
    chunks = []
    for extension in sorted(members):
        if not layout.is_allowed_extension(extension):
            raise ValueError(f"sample {key!r}: member extension {extension!r} is not allowed")
        payload = members[extension]
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ValueError(f"sample {key!r}: member {extension!r} is not bytes")
        payload = bytes(payload)
        chunks.append(member_header(f"{key}.{extension}", len(payload)))
        chunks.append(payload)
        chunks.append(b"\0" * (_round_up(len(payload), BLOCK_SIZE) - len(payload)))
    return b"".join(chunks)


def archive_size(member_bytes: int) -> int:
    """Bytes of a finished tar holding `member_bytes` of headers and padded payloads."""
    return _round_up(member_bytes + END_OF_ARCHIVE, RECORD_SIZE)


@dataclass(frozen=True)
class ShardRecord:
    """A finished shard: its final name, index, sha256, size and the keys it holds."""

    name: str
    index: int
    sha256: str
    bytes: int
    keys: tuple[str, ...]


class _OpenShard:
    """A shard being written under its temporary name, hashed and counted as it is written."""

    def __init__(self, folder: Path, name: str, index: int):
        self.final_path = folder / name
        self.tmp_path = temporary_name(self.final_path)
        self.index = index
        self.handle: BinaryIO = open(self.tmp_path, "wb")
        self.digest = hashlib.sha256()
        self.member_bytes = 0
        self.keys: list[str] = []

    def write(self, data: bytes) -> None:
        self.handle.write(data)
        self.digest.update(data)

    def finish(self) -> ShardRecord:
        total = archive_size(self.member_bytes)
        self.write(b"\0" * (total - self.member_bytes))
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp_path, self.final_path)
        _fsync_folder(self.final_path.parent)
        return ShardRecord(self.final_path.name, self.index, self.digest.hexdigest(), total,
                           tuple(self.keys))

    def abandon(self) -> None:
        self.handle.close()
        self.tmp_path.unlink(missing_ok=True)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (a power cut after it must not lose the shard's name)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ShardWriter:
    """Append samples to numbered shards, cutting a shard before a sample that would not fit.

    A shard holds at most `shard_size` samples and at most `shard_bytes` bytes, except that a
    single sample larger than `shard_bytes` gets a shard of its own. The cut only depends on the
    sequence of samples, never on timing, so the bytes do not depend on the number of workers.
    A full shard is closed lazily, when the next sample arrives or on `close()`, so that the
    caller knows where the next shard starts when it records the finished one.
    """

    def __init__(self, folder: str | Path, prefix: str, first_index: int,
                 shard_size: int, shard_bytes: int):
        if shard_size < 1 or shard_bytes < 1:
            raise ValueError(f"shard_size ({shard_size}) and shard_bytes ({shard_bytes}) must be >= 1")
        self.folder = Path(folder)
        self.prefix = prefix
        self.next_index = first_index
        self.shard_size = shard_size
        self.shard_bytes = shard_bytes
        self._open: _OpenShard | None = None

    def fits(self, sample_bytes: int) -> bool:
        """Whether a sample of `sample_bytes` tar bytes goes into the open shard."""
        shard = self._open
        if shard is None:
            return True
        if len(shard.keys) >= self.shard_size:
            return False
        return archive_size(shard.member_bytes + sample_bytes) <= self.shard_bytes

    def add(self, key: str, encoded: bytes) -> ShardRecord | None:
        """Write one encoded sample (see `encode_sample`); return the shard this add closed."""
        closed = None
        if not self.fits(len(encoded)):
            closed = self.close()
        if self._open is None:
            name = layout.shard_name(self.prefix, self.next_index)
            self._open = _OpenShard(self.folder, name, self.next_index)
            self.next_index += 1
        self._open.write(encoded)
        self._open.member_bytes += len(encoded)
        self._open.keys.append(key)
        return closed

    def close(self) -> ShardRecord | None:
        """Finish the open shard (if any) and return its record."""
        shard, self._open = self._open, None
        return shard.finish() if shard is not None else None

    def abandon(self) -> None:
        """Drop the open shard's temporary file (after an error); finished shards stay."""
        shard, self._open = self._open, None
        if shard is not None:
            shard.abandon()

