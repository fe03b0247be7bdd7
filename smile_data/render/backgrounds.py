"""Background clips of SPEC §4 at the final size, with the multi-scale crop and the flip.

Every random choice of a background is drawn from the clip's own generator *before* the source
is known, as fractions (start position, frame position, crop offsets), so a clip keeps its draws
when its task falls back to another source.

Short videos follow VideoMAE's sampling: the T indices start + k*stride are clamped to the last
frame, so a video shorter than (T-1)*stride+1 frames starts at frame 0 and repeats its last
frame. Such videos are accepted; only a video with no decodable frame is skipped.

The crop (SPEC §4): width and height are drawn independently from crop_scales times the short
side, the offset uniformly, then the crop is resized to size x size (bilinear) and flipped
horizontally with probability 1/2 when `flip` is on. Black and noise clips are made directly at
the final size (cropping uniform noise and resizing it would smooth it).

Still backgrounds (frame, image, black, noise) are one frame seen T times: a read-only
(T, S, S, 3) view that costs the memory of one frame; the renderer pastes each frame's overlays
into a working copy of it (clip.render_frames).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from smile_data.images import FLIP_PROBABILITY, crop_resize
from smile_data.render.settings import RenderSettings

NOISE_LEVELS = 256


@dataclass(frozen=True)
class BackgroundDraw:
    """One clip's background draws, independent of which source it ends up on."""

    position: float  # start (natural) or frame (frame) as a fraction of the usable range
    crop_w_scale: float
    crop_h_scale: float
    crop_x: float  # offsets as fractions of the free room
    crop_y: float
    flip: bool


def draw_background(rng: np.random.Generator, s: RenderSettings) -> BackgroundDraw:
    scales = np.asarray(s.crop_scales, dtype=np.float64)
    position, crop_x, crop_y = rng.random(3)
    crop_w_scale, crop_h_scale = rng.choice(scales, size=2)
    flip = bool(rng.random() < FLIP_PROBABILITY) and s.flip
    return BackgroundDraw(float(position), float(crop_w_scale), float(crop_h_scale),
                          float(crop_x), float(crop_y), flip)


def natural_indices(position: float, length: int, frames: int, stride: int) -> list[int]:
    """T frame indices at `stride` from a start drawn by `position`, clamped to the last frame."""
    span = (frames - 1) * stride + 1
    start = math.floor(position * (length - span + 1)) if length >= span else 0
    indices = np.minimum(start + np.arange(frames) * stride, length - 1)
    return indices.tolist()


def single_frame_indices(position: float, length: int, frames: int) -> list[int]:
    """The one frame of a `frame` background, repeated T times."""
    return [min(math.floor(position * length), length - 1)] * frames


def crop_box(draw: BackgroundDraw, height: int, width: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the multi-scale crop inside a (height, width) image."""
    short = min(height, width)
    crop_w = min(width, max(1, round(short * draw.crop_w_scale)))
    crop_h = min(height, max(1, round(short * draw.crop_h_scale)))
    x = min(width - crop_w, math.floor(draw.crop_x * (width - crop_w + 1)))
    y = min(height - crop_h, math.floor(draw.crop_y * (height - crop_h + 1)))
    return x, y, crop_w, crop_h


def still_clip(image: np.ndarray, draw: BackgroundDraw, s: RenderSettings) -> tuple[np.ndarray, dict]:
    """One image (a still or a video frame) cropped once and repeated: (T, S, S, 3)."""
    box = crop_box(draw, *image.shape[:2])
    frame = crop_resize(image, box, s.size, draw.flip)
    return repeated(frame, s.frames), _geometry(box, image.shape, draw.flip)


def natural_clip(
    decoded: dict[int, np.ndarray], indices: list[int], draw: BackgroundDraw, s: RenderSettings
) -> tuple[np.ndarray, dict]:
    """T decoded frames cropped alike: (T, S, S, 3)."""
    shape = decoded[indices[0]].shape
    box = crop_box(draw, *shape[:2])
    clip = np.stack([crop_resize(decoded[i], box, s.size, draw.flip) for i in indices])
    return clip, _geometry(box, shape, draw.flip)


def repeated(frame: np.ndarray, frames: int) -> np.ndarray:
    """frame (S, S, 3) seen as `frames` identical frames: a read-only (T, S, S, 3) view."""
    return np.broadcast_to(frame, (frames, *frame.shape))


def black_clip(s: RenderSettings) -> np.ndarray:
    return repeated(np.zeros((s.size, s.size, 3), np.uint8), s.frames)


def noise_clip(rng: np.random.Generator, s: RenderSettings) -> np.ndarray:
    """One uniform-noise image repeated T times."""
    image = rng.integers(0, NOISE_LEVELS, size=(s.size, s.size, 3), dtype=np.uint8)
    return repeated(image, s.frames)


def _geometry(box: tuple[int, int, int, int], shape: tuple[int, ...], flip: bool) -> dict[str, Any]:
    """Metadata of the crop: box in decoded-source pixels, the decoded size, the flip."""
    return {"crop": list(box), "decoded_size": [int(shape[1]), int(shape[0])], "flip": flip}
