"""Segmentation on synthetic renders with known masks, the shared mask clean-up, and CLIPSeg."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from smile_data.objects.segment import ClassicalSegmenter, box_hint, clean_mask, soft_alpha
from smile_data.objects.settings import SegmentationSettings

SIDE = 192
MIN_IOU = 0.9


def shape_mask(kind: str) -> np.ndarray:
    mask = np.zeros((SIDE, SIDE), np.uint8)
    centre = (SIDE // 2, SIDE // 2 + 6)
    if kind == "disc":
        cv2.circle(mask, centre, 55, 1, -1)
    elif kind == "ellipse":
        cv2.ellipse(mask, centre, (70, 35), 30, 0, 360, 1, -1)
    elif kind == "star":
        angles = np.pi * 2 * np.arange(10) / 10
        radii = np.where(np.arange(10) % 2 == 0, 75, 32)
        points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
    return mask.astype(bool)


def render(kind: str, background: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A textured object on a plain or gradient background with sensor noise: (rgb, mask)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    if background == "plain":
        image = np.broadcast_to(rng.uniform(150, 240, 3), (SIDE, SIDE, 3)).copy()
    else:
        start, end = rng.uniform(60, 240, (2, 3))
        image = start + (end - start) * ((xs + ys) / 2)[..., None]
    base = rng.uniform(0, 120, 3)
    texture = base + 40 * np.stack([np.sin(xs * 40), np.cos(ys * 31), np.sin((xs + ys) * 23)], -1)
    mask = shape_mask(kind)
    image[mask] = texture[mask]
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("background", ["plain", "gradient"])
@pytest.mark.parametrize("kind", ["disc", "ellipse", "star"])
def test_classical_segmenter_recovers_known_masks(kind, background, seed):
    rgb, truth = render(kind, background, seed=seed)
    alpha = ClassicalSegmenter(SegmentationSettings()).segment(rgb)
    assert alpha.shape == truth.shape and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    assert iou(alpha >= 0.5, truth) >= MIN_IOU


def test_segmentation_is_a_pure_function_of_the_image():
    segmenter = ClassicalSegmenter(SegmentationSettings())
    first_rgb, _ = render("star", "gradient", seed=3)
    other_rgb, _ = render("disc", "plain", seed=4)
    first = segmenter.segment(first_rgb)
    segmenter.segment(other_rgb)  # GrabCut's random state must not carry over
    assert np.array_equal(segmenter.segment(first_rgb), first)


def test_large_images_are_segmented_at_work_side_and_scaled_back():
    rgb, truth = render("ellipse", "plain", seed=5)
    big = cv2.resize(rgb, (SIDE * 3, SIDE * 3), interpolation=cv2.INTER_NEAREST)
    big_truth = cv2.resize(truth.astype(np.uint8), (SIDE * 3, SIDE * 3), interpolation=cv2.INTER_NEAREST) > 0
    alpha = ClassicalSegmenter(SegmentationSettings(work_side=SIDE)).segment(big)
    assert alpha.shape == big_truth.shape and iou(alpha >= 0.5, big_truth) >= MIN_IOU


def test_plain_image_has_no_foreground():
    rgb = np.full((64, 64, 3), 128, np.uint8)
    assert not ClassicalSegmenter(SegmentationSettings()).segment(rgb).any()


def test_hint_keeps_the_object_inside_the_box():
    rgb, truth = render("disc", "plain", seed=6)
    rgb[:20, :20] = (0, 0, 0)  # clutter outside the hint box
    hint = box_hint(truth.shape, (30, 30, 165, 170))
    alpha = ClassicalSegmenter(SegmentationSettings()).segment(rgb, hint=hint)
    assert not alpha[~hint].any() and iou(alpha >= 0.5, truth) >= MIN_IOU


def test_clean_mask_keeps_the_largest_component_with_holes_filled():
    mask = np.zeros((50, 50), bool)
    mask[5:35, 5:35] = True
    mask[15:20, 15:20] = False  # a hole
    mask[40:45, 40:45] = True  # a smaller island
    cleaned = clean_mask(mask)
    expected = np.zeros_like(mask)
    expected[5:35, 5:35] = True
    assert np.array_equal(cleaned, expected)
    assert not clean_mask(np.zeros((5, 5), bool)).any()


def test_soft_alpha_feathers_the_edge_and_thresholds_back_to_the_mask():
    mask = shape_mask("star")
    alpha = soft_alpha(mask, feather_px=3.0)
    assert np.array_equal(alpha >= 0.5, mask)
    soft = (alpha > 0) & (alpha < 1)
    assert soft.any() and not soft[mask & (cv2.erode(mask.astype(np.uint8), np.ones((7, 7))) > 0)].any()


def test_clipseg_segmenter_loads_by_path_and_returns_a_clean_alpha(tiny_clipseg):
    from smile_data.objects.clipseg import ClipSegSegmenter

    settings = SegmentationSettings(clipseg_model=str(tiny_clipseg), clipseg_threshold=0.0)
    segmenter = ClipSegSegmenter(settings)
    rgb, _ = render("disc", "plain", seed=7)
    probability = segmenter.probability(rgb, "cat")
    assert probability.shape == (SIDE, SIDE) and 0 <= probability.min() <= probability.max() <= 1
    hint = box_hint((SIDE, SIDE), (20, 30, 120, 150))
    alpha = segmenter.segment(rgb, "cat", hint=hint)
    assert alpha.dtype == np.float32 and alpha.shape == (SIDE, SIDE)
    assert (alpha >= 0.5).sum() == hint.sum()  # threshold 0: all of the hint box, nothing else
    assert not alpha[~hint].any()
