"""`ObjectBank`: random access to the RGBA cut-outs of a bank, decoded lazily.

A bank is either a folder made by build-objects / import-objects (`objects/<lvis_name>/<i>.png`,
`objects.parquet`, `bank.json`) or a plain folder of RGBA PNGs laid out as `<lvis_name>/<i>.png`.
Only the list of paths is held in memory; each PNG is decoded when asked for.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from smile_data.vocabulary import load_vocabulary

MANIFEST_FILE = "objects.parquet"
CARD_FILE = "bank.json"
OBJECTS_DIR = "objects"
UNKNOWN_CLASS_ID = -1
# Cut-outs are small; anything larger than this is not an object crop and may be a bomb.
MAX_OBJECT_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class BankObject:
    path: str  # relative to the bank root
    lvis_id: int
    name: str


def _natural_key(path: Path) -> tuple:
    return (path.parent.name, int(path.stem) if path.stem.isdigit() else 1 << 62, path.name)


def _scan_plain_folder(root: Path) -> list[BankObject]:
    base = root / OBJECTS_DIR if (root / OBJECTS_DIR).is_dir() else root
    vocabulary = load_vocabulary()
    entries = []
    for png in sorted(base.glob("*/*.png"), key=_natural_key):
        lvis_class = vocabulary.by_name(png.parent.name)
        lvis_id = lvis_class.id if lvis_class else UNKNOWN_CLASS_ID
        entries.append(BankObject(str(png.relative_to(root)), lvis_id, png.parent.name))
    return entries


def _read_manifest(root: Path) -> list[BankObject]:
    table = pq.read_table(root / MANIFEST_FILE, columns=["path", "lvis_id", "name", "accepted"])
    rows = table.to_pylist()
    accepted = [r for r in rows if r["accepted"] and r["path"]]
    accepted.sort(key=lambda r: _natural_key(Path(r["path"])))
    return [BankObject(r["path"], int(r["lvis_id"]), r["name"]) for r in accepted]


class ObjectBank:
    """Objects of a bank in a fixed order (class folder, then index), decoded on demand."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: object bank folder not found")
        manifest = self.root / MANIFEST_FILE
        self.entries = _read_manifest(self.root) if manifest.is_file() else _scan_plain_folder(self.root)
        if not self.entries:
            raise ValueError(
                f"{self.root}: no objects found (expected {MANIFEST_FILE} with accepted rows, "
                "or RGBA PNGs laid out as <lvis_name>/<i>.png)"
            )
        self.classes = sorted({e.name for e in self.entries})
        self._indices_by_class = {}
        for index, entry in enumerate(self.entries):
            self._indices_by_class.setdefault(entry.name, []).append(index)

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, index: int) -> BankObject:
        return self.entries[index]

    def load_rgba(self, index: int) -> np.ndarray:
        """The cut-out as (h, w, 4) uint8; alpha added as opaque if the file has none."""
        path = self.root / self.entries[index].path
        try:
            with Image.open(path) as image:
                if image.width * image.height > MAX_OBJECT_PIXELS:
                    raise ValueError(f"{path}: {image.width}x{image.height} is too large for an object")
                return np.asarray(image.convert("RGBA"))
        except (OSError, Image.DecompressionBombError) as error:
            raise ValueError(f"{path}: cannot decode object image: {error}") from None

    def sample(self, rng: np.random.Generator, balanced: bool = False) -> int:
        """Uniform over objects (as the authors do) or, with `balanced`, over classes first."""
        if not balanced:
            return int(rng.integers(len(self.entries)))
        members = self._indices_by_class[self.classes[int(rng.integers(len(self.classes)))]]
        return members[int(rng.integers(len(members)))]

    @property
    def card_sha256(self) -> str:
        """Identifies the bank in dataset cards: hash of bank.json, else of the object list."""
        card = self.root / CARD_FILE
        if card.is_file():
            return hashlib.sha256(card.read_bytes()).hexdigest()
        listing = "\n".join(e.path for e in self.entries).encode()
        return hashlib.sha256(listing).hexdigest()
