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


@pytest.mark.parametrize("luma,chroma", [(0x14, 0x11), (0x11, 0x22), (0x31, 0x11)])
def test_sizes_of_uncommon_chroma_sampling_are_read(luma, chroma):
    """Sampling factors no common encoder writes, but legal and decoded by OpenCV (the reader's
    fallback): 4:4:1, chroma finer than luma, luma 3x1."""
    image = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    data = bytearray(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])[1].tobytes())
    frame = data.index(b"\xff\xc0")  # baseline start of frame: length, precision, size, 3 components
    data[frame + 11], data[frame + 14], data[frame + 17] = luma, chroma, chroma
    assert cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR) is not None
    assert jpeg_size(bytes(data)) == (40, 24)
