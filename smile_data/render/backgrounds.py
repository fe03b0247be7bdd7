"""Background clips of docs/method.md §4 at the final size, sampled as the trainer's loader samples.

Every random choice of a background is drawn from the clip's own generator *before* the source
is known, so a clip keeps its draws when its task falls back to another source: the position of
a `frame` background (a fraction of the video) and one seed for a generator of its own. That
generator then makes, in the loader's order and with the loader's functions
(smile_data/sampling.py), the temporal window (natural backgrounds: the released window rule at
`stride`, which starts a short video at frame 0 and repeats the last index it reaches), the
multi-scale crop (GroupMultiScaleCrop: `crop_scales` of the short side, width and height scale
indices at most `crop_max_distort` apart, one of the fixed `crop_offsets`, resized to size x
size) and, when `flip` is on, the horizontal flip. So a rendered clip takes exactly the window,
crop and flip the loader would draw from the same generator. Black and noise clips are made
directly at the final size (cropping uniform noise and resizing it would smooth it).

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
from smile_data.sampling import multiscale_crop_box, window_indices

NOISE_LEVELS = 256
SEED_RANGE = 2**63  # a background's own generator is seeded with one draw below this


@dataclass(frozen=True)
class BackgroundDraw:
    """One clip's background draws, independent of which source it ends up on."""

    position: float  # the frame of a `frame` background, as a fraction of the video's frames
    sampling_seed: int  # seeds the window, crop and flip draws (sampling_rng)


def draw_background(rng: np.random.Generator) -> BackgroundDraw:
    position = float(rng.random())
    return BackgroundDraw(position, int(rng.integers(SEED_RANGE)))


def sampling_rng(draw: BackgroundDraw) -> np.random.Generator:
    """The generator of a clip's window, crop and flip, drawn in the loader's order."""
    return np.random.default_rng(draw.sampling_seed)


def natural_indices(draw: BackgroundDraw, length: int, s: RenderSettings) -> list[int]:
    """T frame indices of the clip's training window (sampling.window_indices)."""
    return window_indices(sampling_rng(draw), length, s.frames, s.stride).tolist()


def single_frame_indices(position: float, length: int, frames: int) -> list[int]:
    """The one frame of a `frame` background, repeated T times."""
    return [min(math.floor(position * length), length - 1)] * frames


def crop_and_flip(rng: np.random.Generator, height: int, width: int, s: RenderSettings) -> tuple[tuple, bool]:
    """The multi-scale crop box (x, y, w, h) of a (height, width) source and the flip, drawn
    from `rng` after the window (sampling.multiscale_crop_box; the flip only when `flip` is on)."""
    box = multiscale_crop_box(rng, height, width, s.size, tuple(s.crop_scales), s.crop_max_distort,
                              s.crop_offsets)
    return box, bool(s.flip and rng.random() < FLIP_PROBABILITY)


def still_clip(image: np.ndarray, draw: BackgroundDraw, s: RenderSettings) -> tuple[np.ndarray, dict]:
    """One image (a still or a video frame) cropped once and repeated: (T, S, S, 3)."""
    box, flip = crop_and_flip(sampling_rng(draw), *image.shape[:2], s)
    frame = crop_resize(image, box, s.size, flip)
    return repeated(frame, s.frames), _geometry(box, image.shape, flip)


def natural_clip(
    decoded: dict[int, np.ndarray], length: int, draw: BackgroundDraw, s: RenderSettings
) -> tuple[np.ndarray, dict]:
    """T decoded frames of the clip's window, cropped alike: (T, S, S, 3)."""
    rng = sampling_rng(draw)
    indices = window_indices(rng, length, s.frames, s.stride)  # the same draw as natural_indices
    shape = decoded[int(indices[0])].shape
    box, flip = crop_and_flip(rng, *shape[:2], s)
    clip = np.stack([crop_resize(decoded[int(i)], box, s.size, flip) for i in indices])
    return clip, _geometry(box, shape, flip)


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
