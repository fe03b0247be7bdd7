"""`smile-data fetch URL --out DIR`: mirror a dataset (or some of its shards) to local disk.

Ours, not fsspec's get: the card decides the files, each checked by size and sha256 and resumed where it stopped.

The card is read first (pinned with `card_sha256` if given) and decides everything: which
shards exist (each name once), their sizes and sha256s, and the manifest's, which is streamed
to a temporary file within the bound the card's sample count allows (manifest.py). The output
folder is locked for the run: a second fetch into it refuses. Shards are downloaded in parallel
into `<name>.partial`; a rerun continues each partial file where it stopped (a range request
from its current size). Remote reads have timeouts and retry transient errors with back-off
(remote_stream.py). A shard gets its final name only once the whole file on disk has the size
and sha256 of the card; a mismatch removes the partial file and is an error naming the shard.
The manifest, the dataset README and, last, the card itself are then renamed or written
atomically, so a folder with `dataset.json` is a finished mirror. With a subset of shards
(`--shards 0-9`), the card and manifest are the source's, unchanged (so a pinned sha256 still
holds); train on the subset by listing its shards.
"""

from __future__ import annotations

import concurrent.futures
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from smile_data.io import atomic_path, remove_stale_temporaries, sha256_file, write_bytes_atomic
from smile_data.processes import folder_lock
from smile_data.progress_bar import progress_bar
from smile_data.shards import remote
from smile_data.shards.card_readme import README_FILE
from smile_data.shards.dataset import CARD_FILE, MANIFEST_FILE, read_card
from smile_data.shards.manifest import copy_checked_manifest

PARTIAL_SUFFIX = ".partial"
MAX_README_BYTES = 1 << 20
DEFAULT_FETCH_WORKERS = 4
FETCH_BLOCK_BYTES = 1 << 20  # written and flushed at a time: what a killed run loses at most
MAX_FETCH_WORKERS = 64  # parallel downloads: each holds a connection and a thread
FETCH_LOCK = "fetch"
APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC


@dataclass
class FetchReport:
    downloaded: list[str]     # shard names fetched (fully or the rest of a partial file)
    already_present: list[str]  # shard names already verified under their final name
    resumed: list[str]        # shard names whose partial file was continued
    bytes_read: int           # bytes transferred in this run


def select_shards(spec: str | None, count: int) -> list[int]:
    """Card positions from `0-9,12` (inclusive ranges); all of them when `spec` is empty."""
    if not spec:
        return list(range(count))
    chosen: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.strip().partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise ValueError(f"--shards {spec!r}: {part!r} is not N or N-M") from None
        if not 0 <= low <= high < count:
            raise ValueError(f"--shards {spec!r}: {part!r} is outside 0-{count - 1} "
                             f"(the card lists {count} shards)")
        chosen.update(range(low, high + 1))
    return sorted(chosen)


def _partial_size(partial: Path) -> int:
    """Bytes already in a partial file (0 if none); anything but a regular file is removed."""
    try:
        mode, size = partial.lstat().st_mode, partial.lstat().st_size
    except FileNotFoundError:
        return 0
    if not stat.S_ISREG(mode):
        partial.unlink()
        return 0
    return size


def _download_shard(source: str | Path, out: Path, entry: dict[str, Any],
                    progress: Callable[[int, bool], None]) -> tuple[str, bool]:
    """Fetch one shard into its partial file, verify the file, rename it; (name, resumed)."""
    name, expected = entry["name"], entry["bytes"]
    partial = out / f"{name}{PARTIAL_SUFFIX}"
    have = _partial_size(partial)
    if have > expected:  # not a prefix of this shard: start again
        partial.unlink()
        have = 0
    progress(have, False)
    resumed = have > 0
    if have < expected:
        with remote.open_binary(remote.join(source, name), offset=have,
                                block_size=FETCH_BLOCK_BYTES) as stream, \
                open(os.open(partial, APPEND_FLAGS, 0o644), "ab") as target:
            while have < expected:
                chunk = stream.read(min(FETCH_BLOCK_BYTES, expected - have))
                if not chunk:
                    break
                target.write(chunk)
                target.flush()  # a killed run keeps what it received
                have += len(chunk)
                progress(len(chunk), True)
    if not _is_verified(partial, entry):  # the whole file on disk, as it will be kept
        on_disk = _partial_size(partial)
        partial.unlink(missing_ok=True)
        raise ValueError(f"{remote.join(source, name)}: {on_disk} bytes with a sha256 that is "
                         f"not the {CARD_FILE}'s ({expected} bytes); the partial file was "
                         "removed, rerun to fetch it again")
    write_complete(partial, out / name)
    return name, resumed


def write_complete(partial: Path, final: Path) -> None:
    """fsync and rename a verified partial file to its final name."""
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, final)


def _is_verified(path: Path, entry: dict[str, Any]) -> bool:
    return (path.is_file() and path.stat().st_size == entry["bytes"]
            and sha256_file(path) == entry["sha256"])


def _check_destination(out: Path, card_bytes: bytes) -> None:
    existing = out / CARD_FILE
    if existing.is_file() and existing.read_bytes() != card_bytes:
        raise ValueError(f"{out}: holds another dataset ({CARD_FILE} differs from the one "
                         "fetched); choose an empty folder")


def fetch_dataset(source: str | Path, out: str | Path, shards: str | None = None,
                  workers: int = DEFAULT_FETCH_WORKERS, card_sha256: str | None = None,
                  show_progress: bool = True) -> FetchReport:
    """Mirror the dataset at `source` (URL or folder) into `out`; see the module docstring."""
    if remote.is_url(source):
        remote.check_url(str(source))
    if not 1 <= workers <= MAX_FETCH_WORKERS:
        raise ValueError(f"--workers must be within 1..{MAX_FETCH_WORKERS}, not {workers}")
    out = Path(out)
    card_bytes, card = read_card(source, card_sha256)
    entries = [card["shards"][i] for i in select_shards(shards, len(card["shards"]))]
    with folder_lock(out, FETCH_LOCK):
        remove_stale_temporaries(out, is_own=lambda name: name in (MANIFEST_FILE, README_FILE,
                                                                   CARD_FILE))
        _check_destination(out, card_bytes)
        with atomic_path(out / MANIFEST_FILE) as manifest:  # renamed once the shards are in
            with open(manifest, "wb") as handle:
                copy_checked_manifest(source, card, handle)
            report = _download_all(source, out, entries, workers, show_progress)
        _write_card_files(source, out, card_bytes)
    return report


def _download_all(source: str | Path, out: Path, entries: list[dict[str, Any]], workers: int,
                  show_progress: bool) -> FetchReport:
    present = [e["name"] for e in entries if _is_verified(out / e["name"], e)]
    wanted = [e for e in entries if e["name"] not in present]
    report = FetchReport([], present, [], 0)
    lock = threading.Lock()
    with progress_bar(total=sum(e["bytes"] for e in wanted), unit="B", unit_scale=True,
                      desc=f"fetch {out.name}", disable=not show_progress) as bar:
        def progress(count: int, transferred: bool) -> None:
            with lock:
                bar.update(count)
                report.bytes_read += count if transferred else 0

        with concurrent.futures.ThreadPoolExecutor(max(1, min(workers, len(wanted) or 1))) as pool:
            jobs = [pool.submit(_download_shard, source, out, entry, progress) for entry in wanted]
            for job in concurrent.futures.as_completed(jobs):
                name, resumed = job.result()
                report.downloaded.append(name)
                if resumed:
                    report.resumed.append(name)
    report.downloaded.sort()
    report.resumed.sort()
    return report


def _write_card_files(source: str | Path, out: Path, card_bytes: bytes) -> None:
    """The README if the source has one, then the card (the 'finished' mark)."""
    readme = remote.join(source, README_FILE)
    if remote.exists(readme):
        write_bytes_atomic(out / README_FILE, remote.read_bytes(readme, MAX_README_BYTES))
    write_bytes_atomic(out / CARD_FILE, card_bytes)
