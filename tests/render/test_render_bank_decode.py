"""ObjectBank.load_rgba: OpenCV decoding gives exactly PIL's RGBA for every PNG kind, refuses
oversized images from the header alone, and names the file of anything undecodable."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from smile_data.objects import bank as bank_module
from smile_data.objects.bank import ObjectBank

HEIGHT, WIDTH = 13, 17
# Each PNG kind is stored in its own LVIS class folder (a plain bank keeps LVIS classes only).
KIND_CLASSES = {
    "rgba": "apple", "rgb": "banana", "grey": "bowl", "grey_alpha": "carrot", "one_bit": "cup",
    "palette": "fork", "palette_transparent": "giraffe", "rgb_transparent": "horse",
    "grey_transparent": "kite", "grey_16": "lemon", "rgba_16": "pear",
    "cut": "plate", "junk": "spoon", "jpeg": "tomato",
}


def _pil_png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def _png_kinds() -> dict[str, bytes]:
    """One PNG of every colour type and bit depth a bank may hold, with and without tRNS."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)
    rgb, grey = rgba[..., :3].copy(), rgba[..., 0].copy()
    palette = Image.fromarray(rgb, "RGB").convert("P", palette=Image.ADAPTIVE, colors=16)
    wide = rgba.astype(np.uint16) * 257 + 5
    return {
        "rgba": _pil_png(Image.fromarray(rgba, "RGBA")),
        "rgb": _pil_png(Image.fromarray(rgb, "RGB")),
        "grey": _pil_png(Image.fromarray(grey, "L")),
        "grey_alpha": _pil_png(Image.fromarray(rgba[..., :2].copy(), "LA")),
        "one_bit": _pil_png(Image.fromarray(grey > 128)),
        "palette": _pil_png(palette),
        "palette_transparent": _pil_png(palette, transparency=bytes([0, 128] + [255] * 14)),
        "rgb_transparent": _pil_png(Image.fromarray(rgb, "RGB"), transparency=tuple(map(int, rgb[0, 0]))),
        "grey_transparent": _pil_png(Image.fromarray(grey, "L"), transparency=int(grey[0, 0])),
        "grey_16": cv2.imencode(".png", wide[..., 0])[1].tobytes(),
        "rgba_16": cv2.imencode(".png", wide[..., [2, 1, 0, 3]])[1].tobytes(),
    }


def _bank_of(root: Path, files: dict[str, bytes]) -> ObjectBank:
    for kind, data in files.items():
        folder = root / KIND_CLASSES[kind]
        folder.mkdir(parents=True)
        (folder / "0.png").write_bytes(data)
    return ObjectBank(root)


def test_every_png_kind_decodes_as_pil_does(tmp_path):
    kinds = _png_kinds()
    bank = _bank_of(tmp_path / "bank", kinds)
    for index in range(len(bank)):
        path = tmp_path / "bank" / bank.entry(index).path
        with Image.open(path) as image:
            expected = np.asarray(image.convert("RGBA"))
        rgba = bank.load_rgba(index)
        assert rgba.dtype == np.uint8 and rgba.shape == (HEIGHT, WIDTH, 4), path
        assert np.array_equal(rgba, expected), f"{bank.entry(index).name} differs from PIL"
    transparent = bank.load_rgba(bank.classes.index(KIND_CLASSES["grey_transparent"]))
    assert (transparent[..., 3] == 0).any() and (transparent[..., 3] == 255).any()


def test_oversized_images_are_refused_from_the_header(tmp_path, monkeypatch):
    bank = _bank_of(tmp_path / "bank", {"rgba": _png_kinds()["rgba"]})
    monkeypatch.setattr(bank_module, "MAX_OBJECT_PIXELS", HEIGHT * WIDTH - 1)
    decoded = []
    monkeypatch.setattr(bank_module.cv2, "imdecode", lambda *args: decoded.append(args))
    with pytest.raises(ValueError, match=f"{WIDTH}x{HEIGHT} is too large for an object"):
        bank.load_rgba(0)
    assert not decoded


def test_unreadable_objects_name_their_file(tmp_path):
    png = _png_kinds()["rgba"]
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), np.uint8)).save(jpeg, "JPEG")
    bank = _bank_of(tmp_path / "bank", {"cut": png[:60], "junk": b"not an image at all",
                                        "jpeg": jpeg.getvalue()})  # PIL would open a JPEG
    for index in range(len(bank)):
        with pytest.raises(ValueError, match=rf"{bank.entry(index).path}: cannot decode object image"):
            bank.load_rgba(index)
    (tmp_path / "bank" / KIND_CLASSES["junk"] / "0.png").unlink()
    with pytest.raises(ValueError, match="cannot read object image"):
        bank.load_rgba(bank.classes.index(KIND_CLASSES["junk"]))
