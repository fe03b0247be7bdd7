"""`ObjectBank`: random access to the RGBA cut-outs of a bank, decoded lazily.

A bank is either a folder made by build-objects / import-objects (`objects/<lvis_name>/<i>.png`,
`objects.parquet`, `bank.json`) or a plain folder of RGBA PNGs laid out as `<lvis_name>/<i>.png`.
Only the list of paths is held in memory; each PNG is decoded when asked for, with OpenCV
(faster than PIL), after its header's size was checked; the few PNG kinds OpenCV reads
differently from PIL (16-bit, grey with a transparent colour) and other formats go through PIL.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
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
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_SIZE_FIELDS = struct.Struct(">4sII")  # after the signature and chunk length: IHDR, width, height
PNG_SIZE_OFFSET = len(PNG_SIGNATURE) + 4


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


def _png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None if `data` is not a PNG."""
    if not data.startswith(PNG_SIGNATURE) or len(data) < PNG_SIZE_OFFSET + PNG_SIZE_FIELDS.size:
        return None
    chunk, width, height = PNG_SIZE_FIELDS.unpack_from(data, PNG_SIZE_OFFSET)
    return (width, height) if chunk == b"IHDR" else None


def _opencv_to_rgba(image: np.ndarray, has_transparent_colour: bool) -> np.ndarray | None:
    """OpenCV's 8-bit BGRA / BGR / grey -> RGBA as PIL's convert("RGBA") gives it, or None.

    OpenCV turns a transparent colour (tRNS) into alpha for colour and palette PNGs but not for
    grey ones: those give None, to be decoded by PIL (a false tRNS match only costs that).
    """
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGBA)
    if image.ndim == 2 and not has_transparent_colour:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGBA)
    return None


def _decode_with_pil(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_OBJECT_PIXELS:
                raise ValueError(f"{path}: {image.width}x{image.height} is too large for an object")
            return np.asarray(image.convert("RGBA"))
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"{path}: cannot decode object image: {error}") from None


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
        """The cut-out as (h, w, 4) uint8 RGBA; alpha added as opaque if the file has none."""
        path = self.root / self.entries[index].path
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ValueError(f"{path}: cannot read object image: {error}") from None
        size = _png_size(data)
        if size is None:
            return _decode_with_pil(path)
        if size[0] * size[1] > MAX_OBJECT_PIXELS:
            raise ValueError(f"{path}: {size[0]}x{size[1]} is too large for an object")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{path}: cannot decode object image (corrupt PNG)")
        rgba = _opencv_to_rgba(image, b"tRNS" in data) if image.dtype == np.uint8 else None
        return rgba if rgba is not None else _decode_with_pil(path)

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
