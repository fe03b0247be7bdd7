"""The image helpers the renderer, the packer and the loaders share (smile_data/images.py)."""

from __future__ import annotations

import cv2
import numpy as np

from smile_data.images import crop_resize, resize_short_side
from smile_train.loop.evaluate import spatial_views


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_crop_resize_into_a_given_array_and_mirrored():
    image = _image(40, 60)
    fresh = crop_resize(image, (10, 5, 30, 20), 16)
    out = np.zeros((16, 16, 3), np.uint8)
    assert crop_resize(image, (10, 5, 30, 20), 16, out=out) is out
    assert np.array_equal(out, fresh)
    assert np.array_equal(crop_resize(image, (10, 5, 30, 20), 16, flip=True), fresh[:, ::-1])
    assert np.array_equal(fresh, cv2.resize(image[5:25, 10:40], (16, 16), interpolation=cv2.INTER_LINEAR))


def test_resize_short_side_rounds_each_side_and_keeps_small_images_unless_asked():
    image = _image(30, 45)
    assert resize_short_side(image, 20).shape == (20, 30, 3)
    assert resize_short_side(image, 40) is image and resize_short_side(image, 0) is image
    assert resize_short_side(image, 40, upscale=True).shape == (40, 60, 3)
    assert resize_short_side(_image(7, 10), 4).shape == (4, 6, 3)  # 5.71 -> 6


def test_resize_short_side_shrinks_by_area_unless_told_otherwise():
    image = _image(64, 96)
    assert np.array_equal(resize_short_side(image, 24), cv2.resize(image, (36, 24), interpolation=cv2.INTER_AREA))
    bilinear = resize_short_side(image, 24, interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(bilinear, cv2.resize(image, (36, 24), interpolation=cv2.INTER_LINEAR))
    assert not np.array_equal(bilinear, resize_short_side(image, 24))


def test_test_views_scale_bilinearly_both_ways():
    clip = np.stack([_image(64, 96, seed) for seed in range(2)])
    for size in (24, 80):
        views = spatial_views(clip, size, 1)
        wide = round(96 * size / 64)
        expected = np.stack([cv2.resize(f, (wide, size), interpolation=cv2.INTER_LINEAR) for f in clip])
        start = (wide - size) // 2
        assert np.array_equal(views[0], expected[:, :, start : start + size])
