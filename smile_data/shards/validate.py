"""`validate_dataset`: check a dataset folder against its card, manifest and the sample layout.

Quick mode checks what needs no decoding: every card shard on disk with its recorded size and
sha256, no shard on disk that the card does not list, counts of the card and the manifest.
The full check also opens every tar safely and decodes every sample (reader.decode_sample),
flags members that must never be in a shard, and checks that keys are unique across the
dataset and that each shard holds exactly the keys the manifest says it does.
Every problem names the shard (and member) it was found in.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from smile_data.io import sha256_file
from smile_data.shards import layout
from smile_data.shards.dataset import CARD_FILE, MANIFEST_FILE, load_card, read_manifest_rows
from smile_data.shards.reader import UnreadableShard, decode_sample, iter_tar_samples
from smile_data.shards.writer import END_OF_ARCHIVE

WORKER_START_METHOD = "spawn"


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
    problems: list[str] = field(default_factory=list)


def _sample_problems(raw: dict[str, Any]) -> list[str]:
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


def end_of_archive_problem(path: Path) -> str | None:
    """Why the tar does not end properly, or None: a shard cut at a member boundary still
    parses, but lacks the zero blocks that close every tar."""
    with tarfile.open(path, mode="r:") as archive:
        for _ in archive:  # headers only: member data is skipped by seeking
            pass
        end = archive.offset
    with open(path, "rb") as handle:
        handle.seek(end)
        closing = handle.read(END_OF_ARCHIVE)
    if len(closing) < END_OF_ARCHIVE or closing.count(0) != END_OF_ARCHIVE:
        return "truncated: no end-of-archive blocks after the last member"
    return None


def inspect_shard(path: str | Path) -> ShardContents:
    """Read one shard safely, decoding every sample; never extracts or unpickles anything."""
    path = Path(path)
    found = ShardContents()

    def refuse(info: tarfile.TarInfo, reason: str) -> None:
        found.problems.append(f"{path.name}: member {info.name!r}: {reason}")

    try:
        for raw in iter_tar_samples(path, on_refused=refuse):
            found.keys.append(raw["__key__"])
            found.problems += [f"{path.name}: {p}" for p in _sample_problems(raw)]
        ending = end_of_archive_problem(path)
        if ending:
            found.problems.append(f"{path.name}: unreadable tar ({ending})")
    except UnreadableShard as error:
        found.problems.append(f"{path.name}: unreadable tar ({error.reason})")
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        found.problems.append(f"{path.name}: unreadable tar ({type(error).__name__}: {error})")
    return found


def _file_problems(folder: Path, card: dict[str, Any]) -> tuple[list[str], list[dict]]:
    """Card shards missing, of the wrong size or hash, and shards on disk the card lacks."""
    problems = []
    listed = {shard["name"] for shard in card["shards"]}
    on_disk = {p.name for p in folder.iterdir()
               if p.is_file() and layout.SHARD_NAME_PATTERN.fullmatch(p.name)}
    problems += [f"{name}: on disk but not in {CARD_FILE}" for name in sorted(on_disk - listed)]
    present = []
    for shard in card["shards"]:
        path = folder / shard["name"]
        if not path.is_file():
            problems.append(f"{shard['name']}: listed in {CARD_FILE} but missing on disk")
            continue
        present.append(shard)
        size = path.stat().st_size
        if size != shard["bytes"]:
            problems.append(f"{shard['name']}: {size} bytes, {CARD_FILE} says {shard['bytes']}")
        elif sha256_file(path) != shard["sha256"]:
            problems.append(f"{shard['name']}: sha256 differs from {CARD_FILE}")
    return problems, present


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


def _inspect_all(paths: list[Path], workers: int) -> list[ShardContents]:
    if workers <= 1 or len(paths) <= 1:
        return [inspect_shard(path) for path in paths]
    context = multiprocessing.get_context(WORKER_START_METHOD)
    with concurrent.futures.ProcessPoolExecutor(min(workers, len(paths)),
                                                mp_context=context) as pool:
        return list(pool.map(inspect_shard, paths))


def _content_problems(present: list[dict], contents: list[ShardContents],
                      rows: list[dict[str, Any]]) -> list[str]:
    """Each shard's keys against the manifest's, and keys unique across shards."""
    problems = []
    manifest_keys = collections.defaultdict(list)
    for row in rows:
        manifest_keys[row.get("shard")].append(row.get("key"))
    seen: dict[str, str] = {}
    for shard, found in zip(present, contents):
        name = shard["name"]
        problems += found.problems
        if sorted(found.keys) != sorted(manifest_keys.get(name, [])):
            problems.append(f"{name}: holds keys that differ from the {MANIFEST_FILE} rows "
                            f"({len(found.keys)} samples read, {len(manifest_keys.get(name, []))} "
                            "listed)")
        for key in found.keys:
            if key in seen:
                problems.append(f"{name}: sample key {key!r} is also in {seen[key]}")
            seen.setdefault(key, name)
    return problems


def validate_dataset(folder: str | Path, quick: bool = False, workers: int = 1) -> ValidationReport:
    """Check the dataset in `folder`; see the module docstring. Never raises for bad shards."""
    folder = Path(folder)
    card = load_card(folder)
    report = ValidationReport(shards=len(card.get("shards", [])))
    if card.get("schema_version") != layout.SCHEMA_VERSION:
        report.problems.append(f"{CARD_FILE}: schema_version {card.get('schema_version')!r} is "
                               f"not {layout.SCHEMA_VERSION}")
    rows: list[dict[str, Any]] = []
    if (folder / MANIFEST_FILE).is_file():
        try:
            rows = read_manifest_rows(folder / MANIFEST_FILE)
        except (OSError, pa.ArrowException) as error:
            report.problems.append(f"{MANIFEST_FILE}: unreadable ({error})")
    else:
        report.problems.append(f"{MANIFEST_FILE}: missing")
    file_problems, present = _file_problems(folder, card)
    report.problems += file_problems + _count_problems(card, rows)
    report.samples = sum(shard["samples"] for shard in card["shards"])
    if not quick:
        contents = _inspect_all([folder / shard["name"] for shard in present], workers)
        report.problems += _content_problems(present, contents, rows)
    return report
