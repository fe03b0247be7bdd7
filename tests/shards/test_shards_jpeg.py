"""JPEG frames: simplejpeg decodes them in place with OpenCV's pixels; what it refuses goes
through OpenCV as before. The loader's in-place flip and allocator setting."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from smile_data.sampling import hflip
from smile_data.shards.reader import _decode_frame
from smile_train.data.allocator import keep_freed_memory


def _photo(rng: np.random.Generator) -> np.ndarray:
    return cv2.GaussianBlur(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), (5, 5), 2)


def test_jpeg_frames_decode_in_place_as_opencv_decodes_them():
    rgb = _photo(np.random.default_rng(0))
    data = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    out = np.zeros((2, 48, 64, 3), np.uint8)
    _decode_frame(data, "jpg", "frame 1", out[1])
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out[1], expected)
    assert not out[0].any()  # nothing written outside the frame's slot


def test_a_damaged_jpeg_simplejpeg_refuses_decodes_as_opencv_decodes_it():
    data = bytearray(cv2.imencode(".jpg", _photo(np.random.default_rng(3)))[1].tobytes())
    data[len(data) // 2:len(data) // 2 + 2] = b"\xff\xd9"  # an end marker inside the scan
    out = np.zeros((48, 64, 3), np.uint8)
    _decode_frame(bytes(data), "jpg", "frame 0", out)
    expected = cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    np.testing.assert_array_equal(out, expected)


def test_a_truncated_jpeg_is_an_error_naming_the_frame():
    data = cv2.imencode(".jpg", _photo(np.random.default_rng(4)))[1].tobytes()
    with pytest.raises(ValueError, match="frame 5: the image data does not decode"):
        _decode_frame(data[: len(data) * 2 // 3], "jpg", "frame 5", np.zeros((48, 64, 3), np.uint8))


def test_a_cmyk_jpeg_decodes_as_opencv_decodes_it():
    buffer = io.BytesIO()
    Image.fromarray(_photo(np.random.default_rng(1))).convert("CMYK").save(buffer, "JPEG")
    out = np.zeros((48, 64, 3), np.uint8)
    _decode_frame(buffer.getvalue(), "jpg", "frame 0", out)
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(out, expected)


def test_in_place_flip_overwrites_the_frames_and_moves_the_boxes():
    frames = np.random.default_rng(2).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    boxes = np.array([[[1, 2, 4, 6]]] * 3, np.float32)
    expected = frames[:, :, ::-1].copy()
    flipped, moved = hflip(frames, boxes, in_place=True)
    assert flipped is frames and np.array_equal(frames, expected)
    assert moved[0, 0].tolist() == [6, 2, 9, 6]


def test_allocator_setting_is_harmless_to_repeat():
    assert keep_freed_memory() == keep_freed_memory()
