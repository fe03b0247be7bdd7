"""Verifying streamed shards against their dataset's card: per sample, per shard, or not at all.

The chain of trust: the card (`dataset.json`, optionally pinned by its sha256) records the
manifest's sha256; the manifest records one sha256 per sample (`sample_digest`); so a reader
can check every sample before it uses it, although the shard's own sha256 can only be checked
at its end. Modes (IntegritySettings.mode):
    sample  each sample against the manifest before it is yielded (cards of schema 1, which
            have no sample digests, fall back to `shard`)
    shard   each shard's sha256 and size against the card once it was read to its end (its
            samples were already used by then)
    off     no checks
On a mismatch (`on_mismatch`), `stop` raises IntegrityError; `skip` drops the sample, reports
it to the caller's error counter and goes on. Messages name the dataset, shard and sample.
Shards with no card beside them (plain shard lists) are not verified; a warning says so.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Mapping

import pyarrow as pa

from smile_data.shards import remote
from smile_data.shards.dataset import (
    CARD_FILE, MANIFEST_FILE, SAMPLE_DIGEST_COLUMN, CardPinError, ManifestMismatch, load_card,
)
from smile_data.shards.manifest import checked_manifest, read_manifest_table
from smile_data.shards.layout import KEY_FIELD, SHARD_NAME_PATTERN

log = logging.getLogger(__name__)

INTEGRITY_MODES = ("sample", "shard", "off")
MISMATCH_POLICIES = ("stop", "skip")
LENGTH_BYTES = 8  # a member's length in the sample digest, big-endian

OnMismatch = Callable[[Exception], Any]


class IntegrityError(RuntimeError):
    """Data that differs from what its card and manifest say (not a decoding problem)."""


@dataclass(frozen=True)
class IntegritySettings:
    mode: str = "sample"        # sample | shard | off
    on_mismatch: str = "stop"   # stop | skip (skipped samples count as corrupt ones)
    card_sha256: str = ""       # comma-separated: every card read must have one of these

    def check(self) -> None:
        if self.mode not in INTEGRITY_MODES:
            raise ValueError(f"integrity must be one of {', '.join(INTEGRITY_MODES)}, "
                             f"not {self.mode!r}")
        if self.on_mismatch not in MISMATCH_POLICIES:
            raise ValueError(f"on_integrity_mismatch must be one of "
                             f"{', '.join(MISMATCH_POLICIES)}, not {self.on_mismatch!r}")

    @property
    def pins(self) -> tuple[str, ...]:
        return tuple(p.strip().lower() for p in self.card_sha256.split(",") if p.strip())


def sample_digest(key: str, members: Mapping[str, bytes]) -> str:
    """sha256 of a sample's members in sorted extension order, each as its member name, its
    length and its bytes: the same whether computed from the writer's members or a reader's."""
    digest = hashlib.sha256()
    for extension in sorted(members):
        payload = members[extension]
        name = f"{key}.{extension}".encode("utf-8")
        digest.update(len(name).to_bytes(LENGTH_BYTES, "big") + name)
        digest.update(len(payload).to_bytes(LENGTH_BYTES, "big"))
        digest.update(payload)
    return digest.hexdigest()


def raw_sample_digest(raw: Mapping[str, Any]) -> str:
    """`sample_digest` of a reader's raw sample dict (fields named `__...__` left out)."""
    members = {name: value for name, value in raw.items()
               if not (name.startswith("__") and name.endswith("__"))}
    return sample_digest(raw[KEY_FIELD], members)


class DatasetIndex:
    """What one dataset's card (and manifest) say its shards and samples must be."""

    def __init__(self, folder: str | Path, card: dict[str, Any],
                 digests: "SampleDigests | None"):
        self.folder, self.card = folder, card
        self.shards = {entry["name"]: entry for entry in card["shards"]}
        self.digests = digests  # None for schema-1 cards

    @classmethod
    def load(cls, folder: str | Path, pins: tuple[str, ...] = ()) -> "DatasetIndex":
        try:
            card = load_card(folder, ",".join(pins))
        except CardPinError as error:
            raise IntegrityError(str(error)) from None
        return cls(folder, card, _load_digests(folder, card))

    def shard_problem(self, name: str, sha256: str, size: int) -> str | None:
        entry = self.shards.get(name)
        if entry is None:
            return f"{self.folder}: shard {name} is not listed in its {CARD_FILE}"
        if size != entry["bytes"]:
            return f"{self.folder}: shard {name}: {size} bytes, {CARD_FILE} says {entry['bytes']}"
        if sha256 != entry["sha256"]:
            return f"{self.folder}: shard {name}: sha256 differs from {CARD_FILE}"
        return None

    def sample_problem(self, name: str, raw: Mapping[str, Any]) -> str | None:
        key = raw[KEY_FIELD]
        expected = self.digests.of_shard(name).get(key) if self.digests else None
        if expected is None:
            return (f"{self.folder}: shard {name}: sample {key} is not listed in its "
                    f"{MANIFEST_FILE}")
        if raw_sample_digest(raw) != expected:
            return (f"{self.folder}: shard {name}: sample {key}: sha256 differs from "
                    f"{MANIFEST_FILE}")
        return None


class SampleDigests:
    """The manifest's sample digests, kept as one Arrow table sorted by shard (no Python object
    per sample, so forked loader workers share its pages); a shard's are looked up when it is
    opened, and the last shard's kept."""

    def __init__(self, table: pa.Table):
        self.table = table.sort_by([("shard", "ascending"), ("key", "ascending")])
        shards = self.table.column("shard").to_pylist()
        self.ranges: dict[str, tuple[int, int]] = {}
        for position, name in enumerate(shards):
            start, _ = self.ranges.get(name, (position, position))
            self.ranges[name] = (start, position + 1)
        self._last: tuple[str, dict[str, str]] = ("", {})

    def of_shard(self, name: str) -> dict[str, str]:
        """key -> sample sha256 of one shard (empty if the manifest lists none)."""
        if self._last[0] != name:
            start, stop = self.ranges.get(name, (0, 0))
            rows = self.table.slice(start, stop - start)
            keys = rows.column("key").to_pylist()
            self._last = (name, dict(zip(keys, rows.column(SAMPLE_DIGEST_COLUMN).to_pylist())))
        return self._last[1]


def _load_digests(folder: str | Path, card: dict[str, Any]) -> SampleDigests | None:
    """Sample digests from the manifest, whose bytes are first checked against the card
    (streamed, within the card's bound: manifest.py)."""
    if card.get("manifest") is None:
        return None
    where = remote.join(folder, MANIFEST_FILE)
    try:
        with checked_manifest(folder, card) as handle:
            table = read_manifest_table(handle, card, where,
                                        ["shard", "key", SAMPLE_DIGEST_COLUMN])
    except ManifestMismatch as error:
        raise IntegrityError(str(error)) from None
    return SampleDigests(table)


# --- one index per dataset folder and process (DataLoader workers build their own) ---------

IndexCache = dict[tuple, "DatasetIndex | None"]
_INDEXES: IndexCache = {}


def split_shard_location(location: str | Path) -> tuple[str | Path, str]:
    """(dataset folder, shard name) of a shard path or URL."""
    if remote.is_url(location):
        folder, _, name = str(location).rpartition("/")
        return folder, name
    return Path(location).parent, Path(location).name


def _cache_key(folder: str | Path, pins: tuple[str, ...]) -> tuple:
    """A local card is known by its size and modification time too: a folder rewritten by
    `--overwrite` in the same process gets a new index."""
    if remote.is_url(folder):
        return str(folder), pins
    try:
        stat = (Path(folder) / CARD_FILE).stat()
    except OSError:
        return str(folder), pins
    return str(folder), pins, stat.st_size, stat.st_mtime_ns


def index_for_shard(location: str | Path, pins: tuple[str, ...] = (),
                    cache: IndexCache | None = None) -> DatasetIndex | None:
    """The index of the dataset a shard belongs to (its folder's card), or None without one;
    kept in `cache` (default: one per process)."""
    cache = _INDEXES if cache is None else cache
    folder, _ = split_shard_location(location)
    key = _cache_key(folder, pins)
    if key not in cache:
        if remote.exists(remote.join(folder, CARD_FILE)):
            cache[key] = DatasetIndex.load(folder, pins)
        elif pins:
            raise IntegrityError(f"{folder}: no {CARD_FILE} beside shard {location}, but a "
                                 "card sha256 is pinned")
        else:
            log.warning("%s: no %s beside the shards: their samples are not verified",
                        folder, CARD_FILE)
            cache[key] = None
    return cache[key]


class HashingReader:
    """A read-only stream that hashes and counts every byte read through it."""

    def __init__(self, stream: IO[bytes]):
        self.stream, self.digest, self.size = stream, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(remote.CHUNK_BYTES):
            pass


def _report(problem: str, settings: IntegritySettings, on_mismatch: OnMismatch) -> None:
    if settings.on_mismatch == "stop":
        raise IntegrityError(f"{problem} (integrity: stop; run `smile-data validate`)")
    on_mismatch(IntegrityError(problem))


def checked_samples(location: str | Path, stream: IO[bytes], settings: IntegritySettings,
                    on_mismatch: OnMismatch, read: Callable[[IO[bytes]], Iterator[dict]],
                    cache: IndexCache | None = None) -> Iterator[dict[str, Any]]:
    """Raw samples of one shard read from `stream` by `read`, verified as settings say."""
    index = None if settings.mode == "off" else index_for_shard(location, settings.pins, cache)
    if index is None:
        yield from read(stream)
        return
    _, name = split_shard_location(location)
    if name not in index.shards or not SHARD_NAME_PATTERN.fullmatch(name):
        _report(f"{index.folder}: shard {name} is not listed in its {CARD_FILE}", settings,
                on_mismatch)
        return
    per_sample = settings.mode == "sample" and index.digests is not None
    if per_sample:
        count = 0
        for raw in read(stream):
            count += 1
            problem = index.sample_problem(name, raw)
            if problem:
                _report(problem, settings, on_mismatch)
                continue
            yield raw
        if count != index.shards[name]["samples"]:  # cut short: its missing samples
            _report(f"{index.folder}: shard {name}: {count} samples read, {CARD_FILE} says "
                    f"{index.shards[name]['samples']}", settings, on_mismatch)
        return
    hashing = HashingReader(stream)
    yield from read(hashing)
    hashing.drain()
    problem = index.shard_problem(name, hashing.digest.hexdigest(), hashing.size)
    if problem:
        _report(problem, settings, on_mismatch)
