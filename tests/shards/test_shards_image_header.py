"""Frame sizes from JPEG / PNG headers, checked before decoding."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from smile_data.shards.image_header import image_size, jpeg_size, png_size


@pytest.mark.parametrize("width,height", [(1, 1), (224, 224), (341, 256), (17, 93)])
def test_sizes_match_the_encoders(width, height):
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert jpeg_size(cv2.imencode(".jpg", image)[1].tobytes()) == (width, height)
    assert png_size(cv2.imencode(".png", image)[1].tobytes()) == (width, height)
    progressive = io.BytesIO()
    Image.fromarray(image).save(progressive, "JPEG", progressive=True, quality=80)
    assert image_size(progressive.getvalue(), "jpg") == (width, height)


def test_a_bomb_header_is_read_without_decoding():
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (100000).to_bytes(4, "big") * 2
    assert png_size(header) == (100000, 100000)


@pytest.mark.parametrize("data", [b"", b"GIF89a....", b"\xff\xd8\xff\xe0\x00", b"\xff\xd8\x00\x00\x00\x00"])
def test_garbage_is_refused(data):
    with pytest.raises(ValueError, match="not a"):
        jpeg_size(data)
    with pytest.raises(ValueError, match="not a PNG"):
        png_size(data)
