"""`validate_dataset`: check a dataset folder or URL against its card, manifest and layout.

Quick mode checks what needs no decoding: the manifest's sha256 against the card, every card
shard present with its recorded size and sha256, no shard in the folder that the card does not
list (where the store can list folders: not on plain web servers), counts of the card and the
manifest. The full check also opens every tar safely and decodes every clip
(reader.decode_sample) and probes every video within its limits, decoding its first and last
frames (video_sample), checks each sample's sha256 against the manifest, flags members that
must never be in a shard, and checks that keys are unique across the dataset and that each
shard holds exactly the keys the manifest says it does.
Every problem names the shard (and member) it was found in. A full check hashes each shard
while it decodes it; the end-of-archive check then reads its tar headers once more.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


from smile_data.processes import WORKER_START_METHOD, exit_with_parent
from smile_data.shards import layout, remote
from smile_data.shards.dataset import (
    CARD_FILE, MANIFEST_FILE, SAMPLE_DIGEST_COLUMN, ManifestMismatch, load_card,
)
from smile_data.shards.manifest import checked_manifest, read_manifest_table
from smile_data.shards.integrity import HashingReader, raw_sample_digest
from smile_data.shards.reader import UnreadableShard, decode_sample, iter_tar_samples
from smile_data.shards.video_sample import is_video_sample, video_sample_problems
from smile_data.shards.writer import END_OF_ARCHIVE


@dataclass
class ValidationReport:
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        return (f"{verdict}: {self.shards} shards, {self.samples} samples, "
                f"{len(self.problems)} problems")


@dataclass
class ShardContents:
    """What a full read of one shard found."""

    keys: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # key -> sample sha256
    sha256: str = ""   # of the whole file, hashed while it was read
    size: int = 0
    problems: list[str] = field(default_factory=list)


def _sample_problems(raw: dict[str, Any]) -> list[str]:
    if is_video_sample(raw):
        return video_sample_problems(raw)
    try:
        sample = decode_sample(raw)
        boxes = layout.boxes_array(sample.metadata)  # (T, N, 4)
    except ValueError as error:
        return [str(error)]
    key = sample.key
    if boxes.ndim != 3 or boxes.shape[0] != sample.frames.shape[0] or boxes.shape[2] != 4:
        return [f"sample {key}: member {key}.json: boxes shape {boxes.shape} is not (T, N, 4)"]
    if not np.isfinite(boxes).all():
        return [f"sample {key}: member {key}.json: boxes hold non-finite values"]
    return []


def end_of_archive_problem(location: str | Path) -> str | None:
    """Why the tar does not end properly, or None: a shard cut at a member boundary still
    parses, but lacks the zero blocks that close every tar."""
    with remote.open_binary(location) as handle:
        with tarfile.open(fileobj=handle, mode="r:") as archive:
            for _ in archive:  # headers only: member data is skipped by seeking
                pass
            end = archive.offset
        handle.seek(end)
        closing = handle.read(END_OF_ARCHIVE)
    if len(closing) < END_OF_ARCHIVE or closing.count(0) != END_OF_ARCHIVE:
        return "truncated: no end-of-archive blocks after the last member"
    return None


def inspect_shard(location: str | Path) -> ShardContents:
    """Read one shard (a path or URL) safely, decoding every sample; never extracts or
    unpickles anything."""
    name = str(location).replace("\\", "/").rsplit("/", 1)[-1]
    found = ShardContents()

    def refuse(info: tarfile.TarInfo, reason: str) -> None:
        found.problems.append(f"{name}: member {info.name!r}: {reason}")

    try:
        with remote.open_binary(location) as stream:
            hashing = HashingReader(stream)
            try:
                for raw in iter_tar_samples(hashing, on_refused=refuse):
                    found.keys.append(raw[layout.KEY_FIELD])
                    found.digests[raw[layout.KEY_FIELD]] = raw_sample_digest(raw)
                    found.problems += [f"{name}: {p}" for p in _sample_problems(raw)]
            finally:  # the file's sha256 also when its tar is unreadable
                hashing.drain()
                found.sha256, found.size = hashing.digest.hexdigest(), hashing.size
        ending = end_of_archive_problem(location)
        if ending:
            found.problems.append(f"{name}: unreadable tar ({ending})")
    except UnreadableShard as error:
        found.problems.append(f"{name}: unreadable tar ({error.reason})")
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        found.problems.append(f"{name}: unreadable tar ({type(error).__name__}: {error})")
    return found


def _file_sha256(location: str | Path) -> str:
    with remote.open_binary(location) as handle:
        hashing = HashingReader(handle)
        hashing.drain()
    return hashing.digest.hexdigest()


def _file_problems(folder: str | Path, card: dict[str, Any],
                   hash_files: bool) -> tuple[list[str], list[dict]]:
    """Card shards missing, of the wrong size or (with `hash_files`) hash, and shards in the
    folder the card lacks."""
    problems = []
    listed = {shard["name"] for shard in card["shards"]}
    names = remote.list_names(folder)
    on_disk = {name for name in names or [] if layout.SHARD_NAME_PATTERN.fullmatch(name)}
    problems += [f"{name}: on disk but not in {CARD_FILE}" for name in sorted(on_disk - listed)]
    present = []
    for shard in card["shards"]:
        location = remote.join(folder, shard["name"])
        if not remote.exists(location):
            problems.append(f"{shard['name']}: listed in {CARD_FILE} but missing on disk")
            continue
        present.append(shard)
        size = remote.size(location)
        if size != shard["bytes"]:
            problems.append(f"{shard['name']}: {size} bytes, {CARD_FILE} says {shard['bytes']}")
        elif hash_files and _file_sha256(location) != shard["sha256"]:
            problems.append(f"{shard['name']}: sha256 differs from {CARD_FILE}")
    return problems, present


def _manifest_rows(folder: str | Path, card: dict[str, Any]) -> tuple[list[dict], list[str]]:
    """The manifest's rows (none if it is unusable) and what is wrong with it; read streamed
    within the card's bound (manifest.py)."""
    location = remote.join(folder, MANIFEST_FILE)
    if not remote.exists(location):
        return [], [f"{MANIFEST_FILE}: missing"]
    try:
        with checked_manifest(folder, card) as handle:
            table = read_manifest_table(handle, card, MANIFEST_FILE, exact=False)
    except ManifestMismatch:
        return [], [f"{MANIFEST_FILE}: sha256 or size differs from {CARD_FILE}"]
    except ValueError as error:
        return [], [str(error)]
    if card.get("manifest") and SAMPLE_DIGEST_COLUMN not in table.column_names:
        return [], [f"{MANIFEST_FILE}: no {SAMPLE_DIGEST_COLUMN} column"]
    return table.to_pylist(), []


def _count_problems(card: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    problems = []
    counts = card.get("counts", {})
    listed_samples = sum(shard["samples"] for shard in card["shards"])
    expected = {"shards": len(card["shards"]), "samples": listed_samples,
                "skipped": len(card.get("skipped", []))}
    for name, value in expected.items():
        if counts.get(name) != value:
            problems.append(f"{CARD_FILE}: counts.{name} is {counts.get(name)}, counted {value}")
    if len(rows) != listed_samples:
        problems.append(f"{MANIFEST_FILE}: {len(rows)} rows, the shards in {CARD_FILE} "
                        f"hold {listed_samples} samples")
    per_shard = collections.Counter(row.get("shard") for row in rows)
    for shard in card["shards"]:
        if per_shard.pop(shard["name"], 0) != shard["samples"]:
            problems.append(f"{shard['name']}: {MANIFEST_FILE} lists a different number of "
                            f"samples than {CARD_FILE} ({shard['samples']})")
    problems += [f"{MANIFEST_FILE}: rows name shard {name!r}, which {CARD_FILE} does not list"
                 for name in sorted(map(str, per_shard))]
    duplicates = [k for k, n in collections.Counter(row.get("key") for row in rows).items() if n > 1]
    problems += [f"{MANIFEST_FILE}: key {key!r} is listed more than once" for key in duplicates]
    return problems


def _inspect_all(paths: list[str | Path], workers: int) -> list[ShardContents]:
    if workers <= 1 or len(paths) <= 1:
        return [inspect_shard(path) for path in paths]
    context = multiprocessing.get_context(WORKER_START_METHOD)
    with concurrent.futures.ProcessPoolExecutor(  # workers die with their parent: no orphans
            min(workers, len(paths)), mp_context=context,
            initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        return list(pool.map(inspect_shard, paths))


def _content_problems(present: list[dict], contents: list[ShardContents],
                      rows: list[dict[str, Any]]) -> list[str]:
    """Each shard's keys against the manifest's, and keys unique across shards."""
    problems = []
    manifest_keys = collections.defaultdict(list)
    manifest_digests = {}
    for row in rows:
        manifest_keys[row.get("shard")].append(row.get("key"))
        manifest_digests[(row.get("shard"), row.get("key"))] = row.get(SAMPLE_DIGEST_COLUMN)
    seen: dict[str, str] = {}
    for shard, found in zip(present, contents):
        name = shard["name"]
        problems += found.problems
        if found.size == shard["bytes"] and found.sha256 != shard["sha256"]:
            problems.append(f"{name}: sha256 differs from {CARD_FILE}")
        if sorted(found.keys) != sorted(manifest_keys.get(name, [])):
            problems.append(f"{name}: holds keys that differ from the {MANIFEST_FILE} rows "
                            f"({len(found.keys)} samples read, {len(manifest_keys.get(name, []))} "
                            "listed)")
        for key in found.keys:
            expected = manifest_digests.get((name, key))
            if expected is not None and found.digests.get(key) != expected:
                problems.append(f"{name}: sample {key}: sha256 differs from {MANIFEST_FILE}")
            if key in seen:
                problems.append(f"{name}: sample key {key!r} is also in {seen[key]}")
            seen.setdefault(key, name)
    return problems


def validate_dataset(folder: str | Path, quick: bool = False, workers: int = 1,
                     card_sha256: str | None = None) -> ValidationReport:
    """Check the dataset in `folder` (a path or dataset URL); see the module docstring.
    Never raises for bad shards; raises for a missing, unreadable, too new or (with
    `card_sha256`) unpinned card."""
    if remote.is_url(folder):
        remote.check_url(str(folder))
    else:
        folder = Path(folder)
    card = load_card(folder, card_sha256)
    report = ValidationReport(shards=len(card.get("shards", [])))
    rows, report.problems = _manifest_rows(folder, card)
    file_problems, present = _file_problems(folder, card, hash_files=quick)
    report.problems += file_problems + _count_problems(card, rows)
    report.samples = sum(shard["samples"] for shard in card["shards"])
    if not quick:
        locations = [remote.join(folder, shard["name"]) for shard in present]
        contents = _inspect_all(locations, workers)
        report.problems += _content_problems(present, contents, rows)
    return report
