"""Reading a dataset's `manifest.parquet` within what its card can honestly describe.

A card that is not pinned (`--card-sha256`) is only as trustworthy as the server it came from,
yet it says how many manifest bytes to read. The manifest holds one row per sample of the
card's shards, so the card's own sample count bounds it (`dataset.manifest_byte_limit`): a
card that claims a larger manifest is refused when it is parsed, before a byte of the manifest
is read; a body longer than the card says is refused as soon as it passes. The bytes are streamed (to the caller's file, or to a temporary
file) and hashed on the way, never held whole in memory, and are used only when their size and
sha256 are the card's. A card of schema 1, which records neither, gets the same bound.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from smile_data.shards import remote
from smile_data.shards.dataset import (
    CARD_FILE, MANIFEST_FILE, ManifestMismatch, card_samples, manifest_byte_limit,
)


def _expected_size(card: dict[str, Any]) -> tuple[int, str | None]:
    """(bytes to read at most, the sha256 to match or None for schema 1)."""
    entry = card.get("manifest")
    if entry is None:
        return manifest_byte_limit(card), None
    return entry["bytes"], entry["sha256"]


def copy_checked_manifest(folder: str | Path, card: dict[str, Any], target: IO[bytes]) -> int:
    """Stream the manifest of `folder` into `target`, checked against the card (size and
    sha256; the byte limit alone for schema 1); return its size. ManifestMismatch when the
    bytes are not the card's, ValueError when there are more than allowed."""
    limit, sha256 = _expected_size(card)
    location = remote.join(folder, MANIFEST_FILE)
    digest, have = hashlib.sha256(), 0
    with remote.open_binary(location) as stream:
        while have <= limit:
            chunk = stream.read(min(remote.CHUNK_BYTES, limit + 1 - have))
            if not chunk:
                break
            digest.update(chunk)
            target.write(chunk)
            have += len(chunk)
    if have > limit and sha256 is None:
        raise ValueError(f"{location}: more than the {limit} bytes a manifest of "
                         f"{card_samples(card)} samples can take")
    if sha256 is not None and (have != limit or digest.hexdigest() != sha256):
        raise ManifestMismatch(f"{location}: differs from the sha256 and size in {CARD_FILE}")
    return have


@contextlib.contextmanager
def checked_manifest(folder: str | Path, card: dict[str, Any]) -> Iterator[IO[bytes]]:
    """The checked manifest (copy_checked_manifest) as a seekable file at its start: a
    temporary copy, removed when the block ends."""
    with tempfile.TemporaryFile(prefix="smile-manifest-") as spool:
        copy_checked_manifest(folder, card, spool)
        spool.seek(0)
        yield spool


def read_manifest_table(handle: IO[bytes], card: dict[str, Any], where: str | Path,
                        columns: list[str] | None = None, exact: bool = True) -> pa.Table:
    """The manifest's table (`columns` only, when given), read only if it has one row per
    sample of the card (with `exact` false: at most that many rows). Rows are counted from
    the footer before any column is decoded: a small file cannot unfold into a huge table."""
    samples = card_samples(card)
    try:
        parquet = pq.ParquetFile(handle)
        rows = parquet.metadata.num_rows
        if rows > samples or (exact and rows != samples):
            raise ValueError(f"{where}: {rows} rows, the shards in {CARD_FILE} hold "
                             f"{samples} samples")
        return parquet.read(columns=columns)
    except (pa.ArrowException, KeyError) as error:
        wanted = f" or without the columns {', '.join(columns)}" if columns else ""
        raise ValueError(f"{where}: unreadable{wanted} ({error})") from None
