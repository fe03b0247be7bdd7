"""The embedded default bank: objects cut out of the photographs that scikit-image ships.

No weights and no network: each entry below names a photo, the LVIS class of one object in it,
and a hint box around that object (the photos are scenes, not single-object renders, so the
classical segmenter is told where to look; outside the box is background). The cut-outs go
through the same segmentation and filters as generated candidates. The bank is small and holds
real photographs only — no augmented copies (the renderer flips, scales and rotates anyway).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from smile_data import installed_version
from smile_data.io import write_bytes_atomic
from smile_data.objects.extract import Extractor, png_bytes
from smile_data.objects.generate import resolve_device
from smile_data.objects.manifest import (
    empty_row, object_path, remove_bank_temporaries, write_bank_files,
)
from smile_data.objects.segment import box_hint
from smile_data.objects.settings import PhotoSettings, validate_segmentation
from smile_data.vocabulary import load_vocabulary

SKIMAGE_DISTRIBUTION = "scikit-image"
SKIMAGE_DATA = "skimage/data"


@dataclass(frozen=True)
class PhotoObject:
    photo: str  # file name in skimage/data
    lvis_name: str
    box: tuple[int, int, int, int]  # hint (x0, y0, x1, y1) in photo pixels around the object
    exclude: tuple[tuple[int, int, int, int], ...] = ()  # clutter inside the box, not object

    def hint(self, crop: tuple[int, int, int, int]) -> np.ndarray:
        """(h, w) bool hint in the coordinates of the context `crop` (x0, y0, x1, y1)."""
        cx0, cy0, cx1, cy1 = crop

        def shift(box):
            return (box[0] - cx0, box[1] - cy0, box[2] - cx0, box[3] - cy0)

        return box_hint((cy1 - cy0, cx1 - cx0), shift(self.box), [shift(b) for b in self.exclude])


# Boxes were drawn by eye around each object; every name is an LVIS v1 class (checked by tests).
# Objects in clutter that GrabCut could not separate (the motorcycles, the astronaut) are left out.
PHOTO_OBJECTS = (
    PhotoObject("chelsea.png", "cat", (30, 0, 430, 300)),
    PhotoObject("coffee.png", "cup", (180, 10, 440, 310)),
    PhotoObject("astronaut.png", "space_shuttle", (345, 0, 470, 285)),
    PhotoObject("camera.png", "person", (0, 70, 360, 512)),
    PhotoObject("horse.png", "horse", (10, 10, 392, 320)),
    *(PhotoObject("coins.png", "coin", box) for box in (
        (301, 12, 368, 76), (312, 152, 383, 221), (242, 92, 300, 147),
        (272, 236, 330, 292), (216, 237, 273, 291), (128, 24, 183, 78),
    )),
)
DESCRIPTION = (
    "A small bank cut out of the photographs that scikit-image ships, for tests and demos without "
    "model weights: one classical segmentation (border colour model + GrabCut inside a hint box "
    "drawn by eye) per listed object, the same filters as generated banks, no augmented copies. "
    "It is not a substitute for a generated or imported LVIS bank."
)


def photo_path(file_name: str) -> Path:
    """Where the installed scikit-image keeps `skimage/data/<file_name>`."""
    wanted = f"{SKIMAGE_DATA}/{file_name}"
    try:
        for entry in importlib.metadata.files(SKIMAGE_DISTRIBUTION) or ():
            if str(entry).replace("\\", "/") == wanted:
                return Path(entry.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("skimage")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "data" / file_name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{wanted}: not found; the photo bank needs scikit-image installed")


def load_photo(file_name: str) -> np.ndarray:
    """(H, W, 3) uint8; grey photos are repeated over three channels, alpha is dropped."""
    with Image.open(photo_path(file_name)) as image:
        return np.asarray(image.convert("RGB"))


def context_crop(shape: tuple[int, int], box, margin: float) -> tuple[int, int, int, int]:
    """The hint box grown by `margin` of its size on each side, within the photo."""
    x0, y0, x1, y1 = box
    grow_x, grow_y = round(margin * (x1 - x0)), round(margin * (y1 - y0))
    return (max(0, x0 - grow_x), max(0, y0 - grow_y),
            min(shape[1], x1 + grow_x), min(shape[0], y1 + grow_y))


def build_photo_bank(out: str | Path, settings: PhotoSettings | None = None) -> dict:
    """Write the photo bank to `out` (objects/, objects.parquet, bank.json); return the card."""
    settings = settings or PhotoSettings()
    validate_segmentation(settings)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_bank_temporaries(out)
    vocabulary = load_vocabulary()
    extractor = Extractor(settings, resolve_device(settings.device))
    rows, next_index, candidates = [], {}, {}
    for item in PHOTO_OBJECTS:
        lvis_class = vocabulary.by_name(item.lvis_name)
        if lvis_class is None:
            raise ValueError(f"photo bank entry {item}: {item.lvis_name!r} is not an LVIS class")
        photo = load_photo(item.photo)
        crop = context_crop(photo.shape[:2], item.box, settings.photo_margin)
        cx0, cy0, cx1, cy1 = crop
        result = extractor.extract(photo[cy0:cy1, cx0:cx1], lvis_class, hint=item.hint(crop))
        candidate = candidates.get(item.lvis_name, 0)
        candidates[item.lvis_name] = candidate + 1
        path = None
        if result.reason is None:
            index = next_index.get(item.lvis_name, 0)
            next_index[item.lvis_name] = index + 1
            path = object_path(item.lvis_name, index)
            write_bytes_atomic(out / path, png_bytes(result.rgba))
        rows.append(empty_row(
            path=path, lvis_id=lvis_class.id, name=lvis_class.name, accepted=path is not None,
            reason=result.reason, candidate=candidate, area_fraction=result.area_fraction,
            clip_score=result.clip_score, width=result.width, height=result.height,
            segmenter=result.segmenter, source=f"{SKIMAGE_DATA}/{item.photo}",
        ))
    return write_bank_files(out, rows, source="photos", command="build-objects --source photos",
                            settings=settings, description=DESCRIPTION,
                            photos_version=installed_version(SKIMAGE_DISTRIBUTION))
