"""Patch mode of docs/method.md §3 (the "tubelet" baseline): overlays cut from the clip itself.

Each overlay is a patch of the clip's own background, cropped at its trajectory's initial box
size from a random frame and position, shaped by an alpha mask (rectangle / ellipse / rhombus,
p .5 / .35 / .15), with soft (blurred) edges half the time, and pasted with an opacity drawn in
[0.8, 1] at each of its own key frames and interpolated linearly between them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from smile_data.render.overlay import ALPHA_MAX
from smile_data.render.settings import RenderSettings
from smile_data.render.trajectory import Trajectory, draw_index, sampler_key_frames

PATCH_SHAPES = ("rectangle", "ellipse", "rhombus")


@dataclass
class Patch:
    sprite: np.ndarray  # (h, w, 4) premultiplied BGRA
    opacity: np.ndarray  # (T,) in [0, 1]
    shape: str
    soft_edges: bool
    source_frame: int
    crop: tuple[int, int, int, int]  # x, y, w, h in the clip


def shape_mask(shape: str, width: int, height: int) -> np.ndarray:
    """(height, width) uint8 alpha: 255 inside the shape, 0 outside."""
    if shape == "rectangle":
        return np.full((height, width), ALPHA_MAX, np.uint8)
    # Distances of pixel centres from the centre, in units of the half sides.
    ys = (np.arange(height) + 0.5) / (height / 2) - 1
    xs = (np.arange(width) + 0.5) / (width / 2) - 1
    if shape == "ellipse":
        inside = xs[None, :] ** 2 + ys[:, None] ** 2 <= 1
    elif shape == "rhombus":
        inside = np.abs(xs)[None, :] + np.abs(ys)[:, None] <= 1
    else:
        raise ValueError(f"patch shape {shape!r} must be one of {PATCH_SHAPES}")
    return np.where(inside, ALPHA_MAX, 0).astype(np.uint8)


def soften(mask: np.ndarray, fraction: float) -> np.ndarray:
    """Blur the mask so its edges fade out; outside the patch counts as transparent."""
    sigma = max(fraction * min(mask.shape), 0.5)
    return cv2.GaussianBlur(mask, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)


def _premultiplied(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """BGR (h, w, 3) and alpha (h, w) -> premultiplied BGRA (the conversion is channel-blind)."""
    return cv2.cvtColor(np.dstack([colour, alpha]), cv2.COLOR_RGBA2mRGBA)


def make_patch(
    rng: np.random.Generator, s: RenderSettings, clip: np.ndarray, trajectory: Trajectory
) -> Patch:
    """Cut one patch from clip (T, H, W, 3) for the given trajectory."""
    frames, height, width = clip.shape[:3]
    patch_w = int(np.clip(np.ceil(trajectory.sizes[0, 0]), 1, width))
    patch_h = int(np.clip(np.ceil(trajectory.sizes[0, 1]), 1, height))
    source_frame = int(rng.integers(frames))
    x = int(rng.integers(width - patch_w + 1))
    y = int(rng.integers(height - patch_h + 1))
    shape = PATCH_SHAPES[draw_index(rng, s.patch_shape_probs)]
    soft_edges = bool(rng.random() < s.patch_soft_edge_prob)
    alpha = shape_mask(shape, patch_w, patch_h)
    if soft_edges:
        alpha = soften(alpha, s.patch_soft_edge_fraction)
    keys = sampler_key_frames(rng, frames, s)
    levels = rng.uniform(s.patch_opacity_min, s.patch_opacity_max, size=len(keys))
    opacity = np.interp(np.arange(frames), keys, levels)
    colour = clip[source_frame, y : y + patch_h, x : x + patch_w]
    return Patch(
        sprite=_premultiplied(colour, alpha), opacity=opacity, shape=shape,
        soft_edges=soft_edges, source_frame=source_frame, crop=(x, y, patch_w, patch_h),
    )
