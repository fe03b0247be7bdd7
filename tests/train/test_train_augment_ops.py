"""RandAugment's pixel work against timm's PIL operations, one frame at a time: the whole-clip
OpenCV / table implementation (smile_train/data/rand_augment.py) gives PIL's pixels exactly for the
table and statistics operations, within a level for Color and Sharpness, and computes only the
region the crop reads without changing it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from smile_train.data.augment import OP_NAMES, level_to_argument
from smile_train.data.augment_tables import (
    autocontrast_luts,
    contrast_luts,
    equalize_luts,
    grey_levels,
    table_lut,
)
from smile_train.data.rand_augment import apply_rand_augment, output_regions
from tests.train.test_train_augment import photo_like_clip

# timm's operations on one PIL frame (timm/data/auto_augment.py), the reference
PIL_OPERATIONS = {
    "AutoContrast": lambda frame, _: ImageOps.autocontrast(frame),
    "Equalize": lambda frame, _: ImageOps.equalize(frame),
    "Invert": lambda frame, _: ImageOps.invert(frame),
    "Posterize": lambda frame, bits: ImageOps.posterize(frame, int(bits)),
    "Solarize": lambda frame, threshold: ImageOps.solarize(frame, threshold),
    "SolarizeAdd": lambda frame, add: frame.point(
        [min(255, i + int(add)) if i < 128 else i for i in range(256)] * 3),
    "Color": lambda frame, factor: ImageEnhance.Color(frame).enhance(factor),
    "Contrast": lambda frame, factor: ImageEnhance.Contrast(frame).enhance(factor),
    "Brightness": lambda frame, factor: ImageEnhance.Brightness(frame).enhance(factor),
    "Sharpness": lambda frame, factor: ImageEnhance.Sharpness(frame).enhance(factor),
}
EXACT = ("AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd", "Contrast", "Brightness")
WITHIN_A_LEVEL = ("Color", "Sharpness")
ARGUMENTS = {"Posterize": (1.0, 2.0, 4.0, 7.0), "Solarize": (0.0, 77.0, 200.0, 256.0),
             "SolarizeAdd": (0.0, 44.0, 77.0, 110.0)}
FACTORS = (0.0, 0.37, 0.63, 1.0, 1.37, 1.63, 1.9)


def pil_reference(clip: np.ndarray, name: str, argument: float) -> np.ndarray:
    return np.stack([np.asarray(PIL_OPERATIONS[name](Image.fromarray(frame), argument)) for frame in clip])


def sample_clip(seed: int = 0) -> np.ndarray:
    """Frames with structure, one dark, one bright, one with a narrow range, one random."""
    rng = np.random.default_rng(seed)
    clip = photo_like_clip(4, seed=seed, height=40, width=52)
    clip[1] //= 3
    clip[2] = clip[2] // 8 + 120
    clip[3] = rng.integers(0, 256, clip[3].shape)
    return clip


@pytest.mark.parametrize("name", EXACT + WITHIN_A_LEVEL)
def test_colour_operations_give_pils_pixels(name):
    clip = sample_clip()
    for argument in ARGUMENTS.get(name, FACTORS if name in PIL_OPERATIONS and name not in (
            "AutoContrast", "Equalize", "Invert") else (0.0,)):
        ours = apply_rand_augment(clip, [(name, argument)]).astype(int)
        difference = np.abs(ours - pil_reference(clip, name, argument))
        if name in EXACT:
            assert difference.max() == 0, (name, argument)
        else:
            assert difference.max() <= 1 and np.mean(difference > 0) < 0.02, (name, argument)


def test_tables_match_pil_where_pixels_are_rare():
    """Equalize and AutoContrast tables of tiny frames with few present values, where PIL's
    step arithmetic has its edge cases (a step of 0 or 1, one value present)."""
    rng = np.random.default_rng(3)
    for trial in range(200):
        size = int(rng.integers(1, 6))
        values = rng.choice(256, size=int(rng.integers(1, 5)), replace=False)
        frame = rng.choice(values, size=(size, size + 1, 3)).astype(np.uint8)
        for name in ("Equalize", "AutoContrast"):
            ours = apply_rand_augment(frame[None], [(name, 0.0)])[0]
            assert np.array_equal(ours, pil_reference(frame[None], name, 0.0)[0]), (trial, name)


def test_table_arithmetic_matches_pil_on_random_histograms():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (6, 30, 20, 3), dtype=np.uint8)
    frames[0] = frames[0] // 16 * 16
    grey = [np.asarray(Image.fromarray(f).convert("L")) for f in frames]
    assert all(np.array_equal(grey_levels(torch.from_numpy(f)).numpy(), g) for f, g in zip(frames, grey))
    low = torch.from_numpy(frames.reshape(6, -1, 3).min(1))
    high = torch.from_numpy(frames.reshape(6, -1, 3).max(1))
    for t, frame in enumerate(frames):
        image = Image.fromarray(frame)
        counts = torch.tensor(image.histogram()).reshape(3, 256)
        assert np.array_equal(np.asarray(image.point(autocontrast_luts(low[t], high[t]).flatten().tolist())),
                              np.asarray(ImageOps.autocontrast(image)))
        assert np.array_equal(np.asarray(image.point(equalize_luts(counts).flatten().tolist())),
                              np.asarray(ImageOps.equalize(image)))
        grey_counts = torch.tensor(image.convert("L").histogram())
        for factor in FACTORS:
            table = contrast_luts(grey_counts, factor).tolist() * 3
            assert np.array_equal(np.asarray(image.point(table)),
                                  np.asarray(ImageEnhance.Contrast(image).enhance(factor)))
    assert table_lut("Posterize", 0.0).max() == 0  # PIL refuses 0 bits; its mask keeps none


@pytest.mark.parametrize("name", OP_NAMES)
def test_the_crop_region_alone_is_the_same_as_the_whole_frame(name):
    """Computing only what a crop reads changes none of its pixels (warps: OpenCV's fixed-point
    positions may move a sample by 1/32 pixel, a level at most)."""
    clip = photo_like_clip(3, seed=4, height=48, width=64)
    argument = level_to_argument(name, 7.0, True, np.random.default_rng(2))
    keep = (9, 5, 41, 37)
    plan = [(name, argument), ("Rotate", 12.0), (name, argument)]
    whole = apply_rand_augment(clip, plan)[:, 5:37, 9:41].astype(int)
    part = apply_rand_augment(clip, plan, keep=keep)[:, 5:37, 9:41]
    assert np.abs(whole - part).max() <= 1
    regions = output_regions(plan, keep, 48, 64)
    assert regions[-1] == keep
    assert (regions[0] == (0, 0, 64, 48)) == (name in ("AutoContrast", "Equalize", "Contrast"))


def test_input_clip_is_never_written():
    clip = photo_like_clip(2, seed=5)
    before = clip.copy()
    clip.flags.writeable = False
    for name in OP_NAMES:
        apply_rand_augment(clip, [(name, level_to_argument(name, 7.0, True, np.random.default_rng(0)))] * 2)
    assert np.array_equal(clip, before)


@pytest.mark.parametrize("name", ("ShearX", "ShearY", "TranslateX", "TranslateY"))
@pytest.mark.parametrize("argument", (-0.45, -0.21, 0.03, 0.3, 0.45))
def test_row_and_column_warps_match_opencvs_bicubic_warp(name, argument):
    """Shears and translations filter whole rows or columns; OpenCV's per-pixel warp (the kernel
    they share, grey taps beyond the frame) is the reference: a level at most, on a few values in
    a thousand (OpenCV rounds positions to 1/32 pixel), over the whole frame and a crop region."""
    import cv2

    from smile_train.data.augment_tables import warp_matrix
    from smile_train.data.rand_augment import FILL, WARP_FLAGS

    clip = photo_like_clip(3, seed=6, height=48, width=64)
    for keep in ((0, 0, 64, 48), (7, 3, 50, 41)):
        x0, y0, x1, y1 = keep
        ours = apply_rand_augment(clip, [(name, argument)], keep=keep)[:, y0:y1, x0:x1].astype(int)
        matrix = warp_matrix(name, argument, 64, 48)
        reference = np.stack([cv2.warpAffine(frame, matrix, (64, 48), flags=WARP_FLAGS, borderMode=cv2.BORDER_CONSTANT,
                                             borderValue=FILL) for frame in clip])[:, y0:y1, x0:x1]
        difference = np.abs(ours - reference)
        assert difference.max() <= 1 and np.mean(difference > 0) < 0.01


@pytest.mark.parametrize("name, argument", (("TranslateX", 1.2), ("TranslateY", -1.5)))
def test_a_translation_past_the_frame_leaves_only_grey(name, argument):
    clip = photo_like_clip(2, seed=7, height=20, width=30)
    assert (apply_rand_augment(clip, [(name, argument)]) == 128).all()
