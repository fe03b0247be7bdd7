"""The bank's manifest (`objects.parquet`, one row per candidate) and card (`bank.json`).

Every source (Stable Diffusion build, photo bank, import) writes the same columns, so readers and
tools need one schema. Both files are written atomically and hold no timestamps: the same
inputs give the same bytes.
"""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from smile_data import installed_version
from smile_data.config import settings_to_dict
from smile_data.io import remove_stale_temporaries, write_bytes_atomic, write_json_atomic
from smile_data.objects.bank import (
    CARD_FILE, MANIFEST_FILE, OBJECTS_DIR, UNNUMBERED_LAST, object_number,
)

CARD_SCHEMA_VERSION = 1
PACKAGE_NAME = "smile"
MANIFEST_SCHEMA = pa.schema(
    [
        ("path", pa.string()),  # relative to the bank root; null when rejected
        ("lvis_id", pa.int32()),  # -1 for a folder name outside the vocabulary (import)
        ("name", pa.string()),
        ("accepted", pa.bool_()),
        ("reason", pa.string()),  # why rejected; null when accepted
        ("candidate", pa.int32()),  # candidate index within the class (import: file number)
        ("seed", pa.int64()),  # generation seed; null for photos and imports
        ("area_fraction", pa.float64()),  # mask area / image area
        ("clip_score", pa.float64()),  # 100 x cosine; null without a CLIP model
        ("width", pa.int32()),  # of the tight crop
        ("height", pa.int32()),
        ("segmenter", pa.string()),
        ("source", pa.string()),  # the photo or imported file; null for generated candidates
    ]
)
COLUMNS = tuple(MANIFEST_SCHEMA.names)
PROGRESS_DIR = "progress"


def object_path(name: str, index: int) -> str:
    """Bank-relative path of accepted object `index` of class folder `name`."""
    return f"{OBJECTS_DIR}/{name}/{index}.png"


def empty_row(**values: Any) -> dict[str, Any]:
    """A manifest row with every column present (None unless given); unknown keys refused."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise KeyError(f"not manifest columns: {sorted(unknown)}")
    return {column: values.get(column) for column in COLUMNS}


def _row_order(row: dict[str, Any]) -> tuple:
    candidate = row["candidate"] if row["candidate"] is not None else UNNUMBERED_LAST
    return (row["lvis_id"], row["name"], candidate, row["source"] or "")


def manifest_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Parquet bytes of `rows` in canonical order (class id, name, candidate, source)."""
    ordered = sorted(rows, key=_row_order)
    table = pa.Table.from_pylist(ordered, schema=MANIFEST_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def remove_bank_temporaries(root: str | Path, extra_files: tuple[str, ...] = ()) -> int:
    """Leftovers of interrupted writes of the bank tools, and nothing else: temporaries of the
    manifest, the card and `extra_files` at the root, of `objects/<class>/<i>.png`, and in
    progress/. Returns how many were removed."""
    root = Path(root)
    top = {MANIFEST_FILE, CARD_FILE, *extra_files}
    removed = remove_stale_temporaries(root, top.__contains__)
    removed += remove_stale_temporaries(root / PROGRESS_DIR)
    objects = root / OBJECTS_DIR
    for folder in sorted(objects.iterdir()) if objects.is_dir() else []:
        removed += remove_stale_temporaries(folder, _is_object_file)
    return removed


def _is_object_file(name: str) -> bool:
    """`<number>.png`, the name of an object in its class folder."""
    return name.endswith(".png") and object_number(name.removesuffix(".png")) is not None


def count_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals, accepted objects per class name, rejections per reason."""
    per_class = Counter()
    for row in rows:
        per_class[row["name"]] += 0
        if row["accepted"]:
            per_class[row["name"]] += 1
    rejected = Counter(row["reason"] for row in rows if not row["accepted"])
    return {
        "candidates": len(rows),
        "accepted": sum(per_class.values()),
        "rejected": len(rows) - sum(per_class.values()),
        "classes": len(per_class),
        "classes_with_objects": sum(1 for n in per_class.values() if n),
        "rejected_by_reason": dict(sorted(rejected.items())),
        "per_class": dict(sorted(per_class.items())),
    }


def write_bank_files(
    root: str | Path,
    rows: list[dict[str, Any]],
    source: str,
    command: str,
    settings: Any,
    description: str,
    **card_fields: Any,
) -> dict[str, Any]:
    """Write `objects.parquet` and `bank.json` (settings, counts, provenance); return the card."""
    root = Path(root)
    card = {
        "schema_version": CARD_SCHEMA_VERSION,
        "created_by": {"tool": f"smile-data {command}", "version": installed_version(PACKAGE_NAME)},
        "source": source,
        "description": description,
        **card_fields,
        "settings": settings_to_dict(settings),
        "counts": count_rows(rows),
    }
    write_bytes_atomic(root / MANIFEST_FILE, manifest_bytes(rows))
    write_json_atomic(root / CARD_FILE, card)
    return card
