"""The finished dataset folder: `dataset.json` (the card) and `manifest.parquet`.

Each rank ends by writing its part (progress/rank-*.manifest.parquet, then rank-*.card.json);
`finalize_dataset` merges all parts once every rank's card part exists (the README beside the
card is card_readme.py's). The card holds no timestamps, so a rerun of the same command gives
the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from smile_data.io import atomic_path, sha256_file, write_json_atomic
from smile_data.processes import folder_lock
from smile_data.shards import layout, remote
from smile_data.shards.progress import (
    card_part_path,
    first_difference,
    manifest_part_path,
    progress_dir,
    read_identity,
)


FORMAT_NAME = "smile-clip-shards"
CARD_FILE = "dataset.json"
MANIFEST_FILE = "manifest.parquet"
MANIFEST_FIRST_COLUMNS = ("shard", "key")
# Fields the writer sets in dataset.json; a command's `card` may not use these names.
RESERVED_CARD_FIELDS = ("format", "schema_version", "fingerprint", "writer", "counts",
                        "skipped", "shards", "manifest")
# The dataset folder's schema (card + manifest), apart from the sample metadata's. 1: the
# first release; 2: the card records the manifest's sha256 and the manifest one sha256 per
# sample (column SAMPLE_DIGEST_COLUMN). A reader accepts every version up to its own.
CARD_SCHEMA_VERSION = 2
MERGE_LOCK = "merge"  # held while the ranks' parts are merged into the card and manifest
OLDEST_CARD_SCHEMA_VERSION = 1
SAMPLE_DIGEST_COLUMN = "sample_sha256"
MAX_CARD_BYTES = 64 << 20  # a card lists every shard: a few hundred bytes each
MANIFEST_FIXED_BYTES = 1 << 20  # a parquet file's footer, schema and column statistics
# One sample's manifest row: key, shard, digest, a source path and object names of up to 4096
# characters each (layout.MAX_TEXT), stored compressed: far under this.
MAX_MANIFEST_ROW_BYTES = 16 << 10
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
SHARD_ENTRY_FIELDS = ("name", "sha256", "bytes", "samples")


def rows_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Manifest rows as a table: `shard`, `key`, then the other columns in sorted order."""
    extra = sorted({name for row in rows for name in row} - set(MANIFEST_FIRST_COLUMNS))
    columns = {}
    for name in (*MANIFEST_FIRST_COLUMNS, *extra):
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values, type=pa.string() if name in MANIFEST_FIRST_COLUMNS else None)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise ValueError(f"manifest column {name!r} mixes value types: {error}") from None
    return pa.table(columns)


def concat_row_tables(tables: list[pa.Table]) -> pa.Table:
    """One manifest table from per-shard or per-rank ones (a column null in one part takes
    the others' type), columns ordered as in `rows_table`."""
    if not tables:
        return rows_table([])
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise ValueError(f"manifest columns disagree on their types: {error}") from None
    extra = sorted(set(table.column_names) - set(MANIFEST_FIRST_COLUMNS))
    return table.select([*MANIFEST_FIRST_COLUMNS, *extra]).combine_chunks()


def write_parquet_atomic(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest_rows(path: str | Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def shard_entry_problem(entry: Any) -> str | None:
    """What is wrong with one `shards` entry of a card (None if nothing).

    Cards travel with shards between labs: a name is used as a file name inside the dataset
    folder, so it must be a plain shard name (layout.SHARD_NAME_PATTERN), never a path or URL.
    """
    if not isinstance(entry, dict) or not set(SHARD_ENTRY_FIELDS) <= set(entry):
        return f"must be an object with the fields {', '.join(SHARD_ENTRY_FIELDS)}"
    name = entry["name"]
    if not isinstance(name, str) or not layout.SHARD_NAME_PATTERN.fullmatch(name):
        return f"name {str(name)[:80]!r} is not a shard file name (<prefix>-NNNNNN.tar)"
    if not _is_count(entry["bytes"]) or not _is_count(entry["samples"]):
        return "bytes and samples must be non-negative integers"
    if not isinstance(entry["sha256"], str) or not SHA256_PATTERN.fullmatch(entry["sha256"]):
        return "sha256 must be 64 lower-case hex digits"
    return None


def check_shard_entries(shards: Any, where: str | Path) -> None:
    """Raise ValueError naming `where` and the entry when a `shards` list is malformed or
    names one shard twice."""
    if not isinstance(shards, list):
        raise ValueError(f"{where}: shards must be a list")
    first_position: dict[str, int] = {}
    for index, entry in enumerate(shards):
        problem = shard_entry_problem(entry)
        if problem:
            raise ValueError(f"{where}: shards[{index}]: {problem}")
        seen = first_position.setdefault(entry["name"], index)
        if seen != index:  # one file cannot be two shards (fetch would write it twice at once)
            raise ValueError(f"{where}: shards[{index}]: name {entry['name']} is also "
                             f"shards[{seen}]")


def card_location(folder: str | Path) -> str | Path:
    return remote.join(folder, CARD_FILE)


def schema_problem(version: Any) -> str | None:
    """Why a card of this schema_version cannot be read by this reader (None if it can)."""
    if not _is_count(version) or version < OLDEST_CARD_SCHEMA_VERSION:
        return f"schema_version {str(version)[:40]!r} is not a dataset schema version"
    if version > CARD_SCHEMA_VERSION:
        return (f"schema_version {version} is newer than this smile reads (up to "
                f"{CARD_SCHEMA_VERSION}): upgrade smile (pip install -U smile) to read it")
    return None


class CardPinError(ValueError):
    """A card whose sha256 is none of the pinned ones."""


def check_card_sha256(data: bytes, pinned: str | None, where: str | Path) -> None:
    """Refuse a card whose bytes are not the pinned ones (the user's root of trust); `pinned`
    is one sha256 or several, comma-separated (the card must have one of them)."""
    pins = [pin.strip().lower() for pin in (pinned or "").split(",") if pin.strip()]
    if not pins:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual not in pins:
        raise CardPinError(f"{where}: sha256 {actual} is not the pinned {pinned} "
                         "(--card-sha256): the card changed or is not the one you trust")


def parse_card(data: bytes, where: str | Path) -> dict[str, Any]:
    """A card's JSON, its structure checked (schema version, shard entries, counts, skipped)
    so that nothing in it can name a file outside its folder."""
    try:
        card = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{where}: not valid JSON ({error})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT_NAME:
        raise ValueError(f"{where}: not a {FORMAT_NAME} card")
    problem = schema_problem(card.get("schema_version"))
    if problem:
        raise ValueError(f"{where}: {problem}")
    check_shard_entries(card.get("shards"), where)
    if not isinstance(card.get("counts", {}), dict) or not isinstance(card.get("skipped", []), list):
        raise ValueError(f"{where}: counts must be an object and skipped a list")
    manifest = card.get("manifest")
    if manifest is not None and not (
            isinstance(manifest, dict) and manifest.get("name") == MANIFEST_FILE
            and _is_count(manifest.get("bytes"))
            and SHA256_PATTERN.fullmatch(str(manifest.get("sha256")))):
        raise ValueError(f"{where}: manifest must be {{name: {MANIFEST_FILE}, sha256, bytes}}")
    limit = manifest_byte_limit(card)
    if manifest is not None and manifest["bytes"] > limit:
        raise ValueError(f"{where}: manifest.bytes {manifest['bytes']} is more than a manifest "
                         f"of its {card_samples(card)} samples can take ({limit} bytes at most); "
                         "the card is damaged or not honest")
    return card


def card_samples(card: dict[str, Any]) -> int:
    """The samples a (checked) card's shard entries hold: its manifest's row count."""
    return sum(entry["samples"] for entry in card["shards"])


def manifest_byte_limit(card: dict[str, Any]) -> int:
    """The most bytes a manifest of a (checked) card's samples can take: what a card that is
    not pinned may make a reader read (manifest.py)."""
    return MANIFEST_FIXED_BYTES + card_samples(card) * MAX_MANIFEST_ROW_BYTES


def read_card_bytes(folder: str | Path) -> bytes:
    """The raw bytes of a dataset folder's (or dataset URL's) card."""
    location = card_location(folder)
    if not remote.is_url(folder) and not Path(location).is_file():
        raise FileNotFoundError(_missing_card_problem(Path(folder)))
    try:
        return remote.read_bytes(location, MAX_CARD_BYTES)
    except FileNotFoundError:
        raise FileNotFoundError(f"{location} not found: not a dataset URL") from None


def _missing_card_problem(folder: Path) -> str:
    """Why a local folder has no card: no folder, no dataset, or ranks still to finish."""
    if not folder.is_dir():
        return f"{folder}: no such folder" if not folder.exists() else f"{folder}: not a folder"
    if not progress_dir(folder).is_dir():
        return f"{folder}: not a dataset folder (no {CARD_FILE})"
    return (f"{folder / CARD_FILE} not found: not a finished dataset folder "
            "(unfinished ranks? run `smile-data merge-shards` when all are done)")


def read_card(folder: str | Path, card_sha256: str | None = None) -> tuple[bytes, dict[str, Any]]:
    """The bytes and the checked card (see parse_card) of a finished dataset folder or dataset
    URL; with `card_sha256` (check_card_sha256), only if the bytes have a pinned sha256."""
    data = read_card_bytes(folder)
    check_card_sha256(data, card_sha256, card_location(folder))
    return data, parse_card(data, card_location(folder))


def load_card(folder: str | Path, card_sha256: str | None = None) -> dict[str, Any]:
    """The checked card of a finished dataset folder or dataset URL (read_card)."""
    return read_card(folder, card_sha256)[1]


class ManifestMismatch(ValueError):
    """A manifest whose bytes are not the ones its card records."""


def write_rank_part(out_dir: Path, part: dict[str, Any], rows: pa.Table) -> None:
    """Write a rank's manifest part, then its card part (the rank's "done" marker)."""
    rank, world_size = part["rank"], part["world_size"]
    write_parquet_atomic(manifest_part_path(out_dir, rank, world_size), rows)
    write_json_atomic(card_part_path(out_dir, rank, world_size), part)


def missing_ranks(out_dir: str | Path, world_size: int) -> list[int]:
    return [rank for rank in range(world_size)
            if not card_part_path(out_dir, rank, world_size).is_file()]


def _load_parts(out_dir: Path, identity: dict[str, Any]) -> list[dict[str, Any]]:
    world_size = int(identity["writer"]["world_size"])
    missing = missing_ranks(out_dir, world_size)
    if missing:
        raise FileNotFoundError(
            f"{out_dir}: rank(s) {', '.join(map(str, missing))} of {world_size} have not finished "
            f"(no {card_part_path(out_dir, missing[0], world_size).name}); run them, or copy "
            "their shards and progress/ files here, then merge")
    parts = []
    for rank in range(world_size):
        path = card_part_path(out_dir, rank, world_size)
        part = json.loads(path.read_text())
        difference = first_difference(identity, part["identity"])
        if difference:
            raise ValueError(f"{path}: written by a run with other settings: {difference}")
        if parts and part["card"] != parts[0]["card"]:
            raise ValueError(f"{path}: its card differs from rank 0's: "
                             f"{first_difference(parts[0]['card'], part['card'])}")
        check_shard_entries(part.get("shards"), path)
        parts.append(part)
    return parts


def _check_shards_present(out_dir: Path, shards: list[dict[str, Any]]) -> None:
    for shard in shards:
        path = out_dir / shard["name"]
        if not path.is_file() or path.stat().st_size != shard["bytes"]:
            raise FileNotFoundError(f"{path}: missing or not {shard['bytes']} bytes as recorded "
                                    "by the rank that wrote it")


def _merged_rows(out_dir: Path, world_size: int) -> pa.Table:
    """Every rank's manifest rows sorted by key; a key in two shards is an error."""
    parts = [pq.read_table(manifest_part_path(out_dir, rank, world_size))
             for rank in range(world_size)]
    table = concat_row_tables(parts).sort_by("key")
    keys = table.column("key")
    if table.num_rows > 1:
        repeated = pc.equal(keys.slice(1), keys.slice(0, table.num_rows - 1))
        if pc.any(repeated).as_py():
            at = pc.index(repeated, True).as_py()
            shards = table.column("shard")
            raise ValueError(f"{out_dir}: sample key {keys[at].as_py()!r} is in both "
                             f"{shards[at].as_py()} and {shards[at + 1].as_py()}")
    return table


def finalize_dataset(out_dir: str | Path) -> dict[str, Any]:
    """Merge every rank's part into `manifest.parquet` and `dataset.json`; return the card.

    Raises FileNotFoundError naming the ranks that have not finished, FolderBusy while another
    process merges the same folder (a second merge would race on the temporary files).
    """
    out_dir = Path(out_dir)
    identity = read_identity(out_dir)
    if identity is None:
        raise FileNotFoundError(f"{out_dir}: no progress/identity.json; not a folder written by "
                                "smile-data render/pack")
    with folder_lock(out_dir, MERGE_LOCK):
        return _merge_parts(out_dir, identity)


def _merge_parts(out_dir: Path, identity: dict[str, Any]) -> dict[str, Any]:
    parts = _load_parts(out_dir, identity)
    shards = [shard for part in parts for shard in part["shards"]]
    skipped = [source for part in parts for source in part["skipped"]]
    _check_shards_present(out_dir, shards)
    rows = _merged_rows(out_dir, len(parts))
    card = {
        "format": FORMAT_NAME,
        "schema_version": CARD_SCHEMA_VERSION,
        **parts[0]["card"],
        "fingerprint": identity["fingerprint"],
        "writer": identity["writer"],
        "counts": {"samples": rows.num_rows, "shards": len(shards), "skipped": len(skipped)},
        "skipped": skipped,
        "shards": shards,
    }
    write_parquet_atomic(out_dir / MANIFEST_FILE, rows)
    card["manifest"] = {"name": MANIFEST_FILE, "bytes": (out_dir / MANIFEST_FILE).stat().st_size,
                        "sha256": sha256_file(out_dir / MANIFEST_FILE)}
    write_json_atomic(out_dir / CARD_FILE, card)
    return card

