"""`ObjectBank`: random access to the RGBA cut-outs of a bank, decoded lazily.

A bank is either a folder made by build-objects / import-objects (`objects/<lvis_name>/<i>.png`,
`objects.parquet`, `bank.json`) or a plain folder of RGBA PNGs laid out as `<lvis_name>/<i>.png`
(or `objects/<lvis_name>/<i>.png`). Banks are shared between labs, so the manifest is checked:
every accepted row's path must be `objects/<its name>/<digits>.png` and resolve inside the bank.
In a plain folder, class folders that are not LVIS class names are skipped with a warning, as
import-objects skips them: every object of a bank has an LVIS class.
Only the list of paths is held in memory; each PNG is decoded when asked for, with OpenCV
(faster than PIL), after its header's size was checked; the few PNG kinds OpenCV reads
differently from PIL (16-bit, grey with a transparent colour) go through PIL, which is allowed
to open PNG only.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from smile_data.safe_files import UnsafeFile, outside_problem, read_inside
from smile_data.shards.image_header import png_size
from smile_data.vocabulary import load_vocabulary

log = logging.getLogger(__name__)

MANIFEST_FILE = "objects.parquet"
CARD_FILE = "bank.json"
OBJECTS_DIR = "objects"
UNKNOWN_CLASS_ID = -1
MANIFEST_READ_COLUMNS = ("path", "lvis_id", "name", "accepted")
# Accepted rows point at objects/<class name>/<index>.png; the class name is one path part.
OBJECT_PATH_PATTERN = re.compile(rf"{OBJECTS_DIR}/(?P<name>[^/\\]+)/(?P<index>[0-9]+)\.png")
# Sorts files without a number after every numbered one (no bank holds 2**62 objects a class).
UNNUMBERED_LAST = 1 << 62
# Cut-outs are small; anything larger than this is not an object crop and may be a bomb.
MAX_OBJECT_PIXELS = 4096 * 4096
MAX_OBJECT_BYTES = 256 << 20  # a PNG of MAX_OBJECT_PIXELS RGBA pixels compresses to well below this
MAX_CARD_BYTES = 16 << 20  # bank.json: settings, counts and provenance, a few kilobytes
PIL_ERRORS = (OSError, EOFError, SyntaxError, ValueError, Image.DecompressionBombError)
SKIPPED_NAMES_SHOWN = 5  # unknown class folders named in the warning


@dataclass(frozen=True)
class BankObject:
    path: str  # relative to the bank root
    lvis_id: int
    name: str


def object_number(stem: str) -> int | None:
    """The number of an object file `<number>.png` from its stem (ASCII digits), else None."""
    return int(stem) if stem.isascii() and stem.isdigit() else None


def natural_order(path: str | Path) -> tuple:
    """Sort key of `<class>/<i>.png`: class folder, then the number i, then the name."""
    path = Path(path)
    number = object_number(path.stem)
    return (path.parent.name, UNNUMBERED_LAST if number is None else number, path.name)


def objects_base(root: Path) -> Path:
    """Where a bank's class folders are: `root/objects` if it exists, else `root` itself."""
    return root / OBJECTS_DIR if (root / OBJECTS_DIR).is_dir() else root


def _scan_plain_folder(root: Path) -> list[BankObject]:
    vocabulary = load_vocabulary()
    entries, unknown = [], {}
    for png in sorted(objects_base(root).glob("*/*.png"), key=natural_order):
        problem = outside_problem(png, root)
        if problem:  # a link out of the bank, a FIFO or a device: never opened
            log.warning("%s: skipped: %s", png, problem)
            continue
        lvis_class = vocabulary.by_name(png.parent.name)
        if lvis_class is None:
            unknown[png.parent.name] = unknown.get(png.parent.name, 0) + 1
            continue
        entries.append(BankObject(png.relative_to(root).as_posix(), lvis_class.id, lvis_class.name))
    if unknown:
        names = ", ".join(sorted(unknown)[:SKIPPED_NAMES_SHOWN])
        log.warning("%s: skipped %d objects in %d folders that are not LVIS class names (%s%s)",
                    root, sum(unknown.values()), len(unknown), names,
                    ", ..." if len(unknown) > SKIPPED_NAMES_SHOWN else "")
    return entries


def _manifest_rows(path: Path) -> list[dict[str, Any]]:
    try:
        columns = set(pq.read_schema(path).names)
        missing = [c for c in MANIFEST_READ_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}: column(s) {', '.join(missing)} missing")
        return pq.read_table(path, columns=list(MANIFEST_READ_COLUMNS)).to_pylist()
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{path}: not a readable parquet manifest ({error})") from None


def _row_problem(row: dict[str, Any], root: Path, resolved_root: Path) -> str | None:
    """Why an accepted manifest row cannot be trusted (None if it can)."""
    if not isinstance(row["lvis_id"], int):
        return "lvis_id is null"
    match = OBJECT_PATH_PATTERN.fullmatch(row["path"] or "")
    if match is None or match["name"] != row["name"] or row["name"] in (".", ".."):
        return f"path must be {OBJECTS_DIR}/<its name>/<number>.png"
    if not Path(os.path.realpath(root / row["path"])).is_relative_to(resolved_root):
        return "path resolves outside the bank"
    return None


def _read_manifest(root: Path) -> list[BankObject]:
    path = root / MANIFEST_FILE
    resolved_root = Path(os.path.realpath(root))
    entries = []
    for number, row in enumerate(_manifest_rows(path)):
        if not row["accepted"]:
            continue
        problem = _row_problem(row, root, resolved_root)
        if problem:
            shown = {k: row[k] for k in ("path", "lvis_id", "name")}
            raise ValueError(f"{path}: row {number} {shown}: {problem}")
        entries.append(BankObject(row["path"], int(row["lvis_id"]), row["name"]))
    entries.sort(key=lambda e: natural_order(e.path))
    return entries


ALPHA_FREE_WORD = 0x00FFFFFF  # a little-endian pixel word whose alpha byte is zero is at most this
# OpenCV decodes to BGR(A) or grey: the conversion to RGBA, or to BGRA (the renderer's order)
TO_RGBA = {4: cv2.COLOR_BGRA2RGBA, 3: cv2.COLOR_BGR2RGBA, 1: cv2.COLOR_GRAY2RGBA}
TO_BGRA = {3: cv2.COLOR_BGR2BGRA, 1: cv2.COLOR_GRAY2BGRA}  # 4 channels are BGRA already


def _opencv_to_four_channels(image: np.ndarray, has_transparent_colour: bool, bgra: bool) -> np.ndarray | None:
    """OpenCV's 8-bit BGRA / BGR / grey -> RGBA (or BGRA) as PIL's convert("RGBA") gives it,
    or None.

    OpenCV turns a transparent colour (tRNS) into alpha for colour and palette PNGs but not for
    grey ones: those give None, to be decoded by PIL (a false tRNS match only costs that).
    """
    channels = 1 if image.ndim == 2 else image.shape[2]
    if image.ndim == 2 and has_transparent_colour or channels not in TO_RGBA:
        return None
    if bgra:
        return image if channels == 4 else cv2.cvtColor(image, TO_BGRA[channels])
    return cv2.cvtColor(image, TO_RGBA[channels])


def _any_alpha(four_channels: np.ndarray) -> bool:
    """Whether any pixel of (h, w, 4) uint8 (alpha last) is not wholly transparent; read as one
    32-bit word per pixel, alpha in its top byte, when the array allows it."""
    if four_channels.flags.c_contiguous and np.little_endian:
        return bool((four_channels.view(np.uint32) > ALPHA_FREE_WORD).any())
    return bool(four_channels[..., 3].any())


def _decode_with_pil(data: bytes, path: Path) -> np.ndarray:
    """(h, w, 4) RGBA of a PNG whose size was already checked; PIL may open PNG only."""
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            return np.asarray(image.convert("RGBA"))
    except PIL_ERRORS as error:
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
                "or RGBA PNGs laid out as <lvis_name>/<i>.png with LVIS class names)"
            )
        self.classes = sorted({e.name for e in self.entries})
        self._indices_by_class = {}
        for index, entry in enumerate(self.entries):
            self._indices_by_class.setdefault(entry.name, []).append(index)

    def __len__(self) -> int:
        return len(self.entries)

    def entry(self, index: int) -> BankObject:
        return self.entries[index]

    def load_rgba(self, index: int, bgra: bool = False) -> np.ndarray:
        """The cut-out as (h, w, 4) uint8 RGBA (BGRA with `bgra`: OpenCV's own order, no channel
        swap); alpha added as opaque if the file has none.

        ValueError for a file that is a link out of the bank, not a regular file, not a
        decodable PNG, too large, or wholly transparent (it would be an invisible object
        carrying a label and a box)."""
        path = self.root / self.entries[index].path
        try:
            data = read_inside(path, self.root, MAX_OBJECT_BYTES)
        except UnsafeFile as error:
            raise ValueError(f"{path}: cannot read object image: {error.reason}") from None
        try:
            size = png_size(data)
        except ValueError:
            raise ValueError(f"{path}: cannot decode object image: not a PNG") from None
        if size[0] * size[1] > MAX_OBJECT_PIXELS:
            raise ValueError(f"{path}: {size[0]}x{size[1]} is too large for an object")
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError(f"{path}: cannot decode object image (corrupt PNG)")
        grey_with_transparent_colour = image.ndim == 2 and b"tRNS" in data
        rgba = _opencv_to_four_channels(image, grey_with_transparent_colour, bgra) if image.dtype == np.uint8 else None
        if rgba is None:
            rgba = _decode_with_pil(data, path)
            rgba = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA) if bgra else rgba
        if rgba.size == 0 or not _any_alpha(rgba):
            raise ValueError(f"{path}: alpha is zero everywhere (an invisible object)")
        return rgba

    def sample(self, rng: np.random.Generator, balanced: bool = False) -> int:
        """Uniform over objects (as the authors do) or, with `balanced`, over classes first."""
        if not balanced:
            return int(rng.integers(len(self.entries)))
        members = self._indices_by_class[self.classes[int(rng.integers(len(self.classes)))]]
        return members[int(rng.integers(len(members)))]

    @property
    def content_sha256(self) -> str:
        """Identifies the bank in dataset cards wherever it lies: a hash of bank.json (if any)
        and of the object list (path, LVIS id, name of every object, in bank order)."""
        digest = hashlib.sha256()
        digest.update(read_card_bytes(self.root))
        for entry in self.entries:
            digest.update(f"\n{entry.path}\t{entry.lvis_id}\t{entry.name}".encode())
        return digest.hexdigest()


def read_card_bytes(root: str | Path) -> bytes:
    """The bytes of the bank's `bank.json` (empty if it has none); UnsafeFile (a ValueError)
    naming it if it is a link out of the bank, not a regular file, or over MAX_CARD_BYTES."""
    card = Path(root) / CARD_FILE
    return read_inside(card, root, MAX_CARD_BYTES) if os.path.lexists(card) else b""
