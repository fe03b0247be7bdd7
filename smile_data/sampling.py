"""Which frames and which pixels a clip takes from a source video (docs/method.md §4 and §9).

Pure numpy functions: every random choice comes from the generator passed in, so a clip's
draw is a function of the generator's seed (smile_train.data.loader seeds it per sample and epoch).

Temporal sampling, in training (frame indices into a video of `length` frames):
    window    T frames at `stride` from a start drawn uniformly in [0, length - T*stride]
              (VideoMAE's pretraining loader). The index then advances by `stride` only while
              the next index stays below length - 1, so a video shorter than T*stride frames
              starts at 0 and repeats the last index it reached (the released loader's rule,
              which never reads the very last frame of a short video).
    segments  TSN: the video is cut into T segments of length // T frames and one frame is
              drawn uniformly inside each (Something-Something v2's loader); a video shorter
              than T frames gives T zeros, as the released loader does.
At test time (`view` of `views`):
    window    clips of T frames at `stride`, their starts evenly spaced over the whole video
              (VideoMAE's K400 test: start = int(view * (n - T) / (views - 1)) over the n frames
              0, stride, 2*stride, ..., the last repeated when n < T); one view is the centre.
    segments  T segments of length / T frames, frame int(tick * view / views + tick * segment):
              views 2 gives the released offsets 0 and 1/2 of a segment.

Spatial (GroupMultiScaleCrop): crop sides int(short side x scale) for scale in
{1, .875, .75, .66}, a side within SNAP_PIXELS of the input size snapped to it; width and height
scale indices i, j with |i - j| <= max_distort (10 pairs); the offset is one of the fixed grid
of 13 positions (corners, centre, edge centres and quarter points of a 4 x 4 step grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from smile_data.images import crop_resize

if TYPE_CHECKING:
    from smile_data.shards.reader import EncodedClip

TEMPORAL_MODES = ("window", "segments")
MAX_STRIDE = 64  # frames between sampled frames (K400 4, SSv2 2)
CROP_MODES = ("multiscale", "none")  # multi-scale crop (docs/method.md §4) | centre square
CROP_OFFSET_MODES = ("grid", "corners", "uniform")  # 13 fixed positions | 5 | anywhere
SNAP_PIXELS = 3  # a crop side this close (exclusive) to the input size becomes the input size
GRID_STEPS = 4  # the offset grid divides the free room into 4 steps per axis
# (x, y) offsets in units of the grid step: 4 corners and the centre, then the 4 edge centres
# and the 4 quarter points (GroupMultiScaleCrop.fill_fix_offset with more_fix_crop).
CORNER_OFFSETS = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2))
MORE_OFFSETS = ((0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3))


# --- the settings of a draw: declared once, inherited by every command's settings that draw ---


@dataclass
class VideoSampling:
    """How a video sample (`<key>.mp4`) becomes clips: which frames they take, where its label is.

    The trainer's commands that read video shards derive their settings from this class, so a
    YAML file names these keys at the top level, as every other setting.
    """

    temporal: str = "window"  # window: T frames at `stride` (K400) | segments: TSN (SSv2)
    stride: int = 4  # window: frames between sampled frames (K400 4, SSv2 2)
    label_field: str = ""  # videos without `.cls`: the JSON field holding the label


@dataclass
class MultiScaleCrop:
    """The draws of the multi-scale crop (`multiscale_crop_box`): the renderer's and the
    trainer's loader's settings derive from this class."""

    crop_scales: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)  # side fractions of the short side
    crop_max_distort: int = 1  # |i - j| between the scale indices of crop height and width
    crop_offsets: str = "grid"  # grid: the released 13 fixed offsets | corners: 5 | uniform


# --- temporal sampling ----------------------------------------------------------------------


def _check_length(length: int, frames: int) -> None:
    if length < 1 or frames < 1:
        raise ValueError(f"cannot sample {frames} frames from a video of {length} frames")


def advance_rule(start: int, length: int, frames: int, stride: int) -> np.ndarray:
    """T indices from `start`, each `stride` past the previous while that stays below
    length - 1; otherwise the index repeats (the released loader's short-video rule)."""
    indices = np.empty(frames, np.int64)
    index = start
    for t in range(frames):
        indices[t] = index
        if index + stride + 1 < length:
            index += stride
    return indices


def window_indices(rng: np.random.Generator, length: int, frames: int, stride: int) -> np.ndarray:
    """(T,) frame indices of a random training window (module docstring)."""
    _check_length(length, frames)
    room = length - frames * stride + 1
    start = int(rng.integers(room)) if room > 0 else 0
    return advance_rule(start, length, frames, stride)


def segment_indices(rng: np.random.Generator, length: int, frames: int) -> np.ndarray:
    """(T,) frame indices, one drawn in each of T equal segments (TSN training)."""
    _check_length(length, frames)
    segment = length // frames
    if segment == 0:
        return np.zeros(frames, np.int64)
    return np.arange(frames, dtype=np.int64) * segment + rng.integers(segment, size=frames)


def window_test_indices(length: int, frames: int, stride: int, view: int, views: int) -> np.ndarray:
    """(T,) indices of test clip `view` of `views`, starts evenly spaced over the video."""
    _check_length(length, frames)
    strided = np.arange(0, length, stride, dtype=np.int64)  # the frames the test reads
    if strided.size < frames:
        strided = np.concatenate([strided, np.full(frames - strided.size, strided[-1])])
    room = strided.size - frames
    start = room // 2 if views == 1 else int(view * (room / (views - 1)))
    return strided[start : start + frames]


def segment_test_indices(length: int, frames: int, view: int, views: int) -> np.ndarray:
    """(T,) indices of test view `view` of `views`: a fixed offset inside each segment."""
    _check_length(length, frames)
    tick = length / frames
    shift = tick * view / views  # views 2: tick / 2, the released loader's second offset
    return np.array([int(shift + tick * segment) for segment in range(frames)], np.int64)


def training_indices(rng: np.random.Generator, mode: str, length: int, frames: int, stride: int) -> np.ndarray:
    if mode == "window":
        return window_indices(rng, length, frames, stride)
    if mode == "segments":
        return segment_indices(rng, length, frames)
    raise ValueError(f"temporal sampling {mode!r} must be one of {TEMPORAL_MODES}")


def test_indices(mode: str, length: int, frames: int, stride: int, view: int, views: int) -> np.ndarray:
    if mode == "window":
        return window_test_indices(length, frames, stride, view, views)
    if mode == "segments":
        return segment_test_indices(length, frames, view, views)
    raise ValueError(f"temporal sampling {mode!r} must be one of {TEMPORAL_MODES}")


# --- multi-scale crop -----------------------------------------------------------------------


def crop_sides(short_side: int, input_size: int, scales: tuple[float, ...]) -> list[int]:
    """int(short side x scale), snapped to the input size when within SNAP_PIXELS of it."""
    sides = [int(short_side * scale) for scale in scales]
    return [input_size if abs(side - input_size) < SNAP_PIXELS else side for side in sides]


def crop_pairs(sides: list[int], max_distort: int) -> list[tuple[int, int]]:
    """(w, h) pairs whose scale indices differ by at most max_distort, in the released order
    (height index outer, width index inner)."""
    return [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]


def grid_offsets(width: int, height: int, crop_w: int, crop_h: int, more: bool = True) -> list[tuple[int, int]]:
    """The fixed (x, y) offsets: 5 (corners, centre) or 13 positions of a 4-step grid."""
    step_x, step_y = (width - crop_w) // GRID_STEPS, (height - crop_h) // GRID_STEPS
    units = CORNER_OFFSETS + (MORE_OFFSETS if more else ())
    return [(ux * step_x, uy * step_y) for ux, uy in units]


def multiscale_crop_box(
    rng: np.random.Generator, height: int, width: int, input_size: int,
    scales: tuple[float, ...], max_distort: int, offsets: str = "grid",
) -> tuple[int, int, int, int]:
    """(x0, y0, crop_w, crop_h) of one multi-scale crop of a (height, width) frame."""
    sides = crop_sides(min(height, width), input_size, tuple(scales))
    sides = [max(1, min(side, height, width)) for side in sides]  # a snapped side never overflows
    pairs = crop_pairs(sides, max_distort)
    crop_w, crop_h = pairs[int(rng.integers(len(pairs)))]
    if offsets == "uniform":
        return int(rng.integers(width - crop_w + 1)), int(rng.integers(height - crop_h + 1)), crop_w, crop_h
    if offsets not in CROP_OFFSET_MODES:
        raise ValueError(f"crop offsets {offsets!r} must be one of {CROP_OFFSET_MODES}")
    positions = grid_offsets(width, height, crop_w, crop_h, more=offsets == "grid")
    x0, y0 = positions[int(rng.integers(len(positions)))]
    return x0, y0, crop_w, crop_h


# --- crop, resize and flip with boxes ------------------------------------------------------


def center_square_box(height: int, width: int) -> tuple[int, int, int, int]:
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def crop_boxes(boxes: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Boxes (T, K, 4) in frame pixels -> in the pixels of the crop `box` resized to size."""
    x0, y0, w, h = box
    scale = np.array([size / w, size / h, size / w, size / h], np.float32)
    moved = (boxes - np.array([x0, y0, x0, y0], np.float32)) * scale
    return np.clip(moved, 0, size).astype(np.float32)


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Boxes (T, K, 4) of a frame `width` pixels wide, mirrored left-right."""
    flipped = boxes.copy()
    flipped[..., 0], flipped[..., 2] = width - boxes[..., 2], width - boxes[..., 0]
    return flipped


def _is_whole(box: tuple[int, int, int, int], height: int, width: int, size: int) -> bool:
    """A crop that is the frame itself, already at the input size: nothing to resize."""
    return tuple(box) == (0, 0, width, height) and width == height == size


def crop_resize_clip(
    frames: np.ndarray, boxes: np.ndarray, box: tuple[int, int, int, int], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop (T, H, W, 3) frames to `box` and resize to size x size (images.crop_resize, the
    renderer's own); boxes (T, K, 4) follow."""
    if _is_whole(box, frames.shape[1], frames.shape[2], size):
        return frames, boxes
    out = np.empty((frames.shape[0], size, size, 3), np.uint8)
    for t, frame in enumerate(frames):
        crop_resize(frame, box, size, out=out[t])
    return out, crop_boxes(boxes, box, size)


def decode_crop_flip(clip: EncodedClip, boxes: np.ndarray, box: tuple[int, int, int, int], size: int,
                     flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """crop_resize_clip and hflip of an encoded clip's frames, each frame decoded straight into
    its place through one frame-sized buffer (the same pixels, without the decoded clip in
    memory): (T, size, size, 3) uint8 and the boxes (T, K, 4), which follow."""
    out = np.empty((len(clip.frames), size, size, 3), np.uint8)
    whole = _is_whole(box, clip.height, clip.width, size)
    scratch = None if whole else np.empty((clip.height, clip.width, 3), np.uint8)
    for t in range(len(clip.frames)):
        if whole:
            clip.decode_into(t, out[t])
        else:
            clip.decode_into(t, scratch)
            crop_resize(scratch, box, size, out=out[t])
        if flip:
            cv2.flip(out[t], 1, dst=out[t])
    return out, crop_flip_boxes(boxes, box, clip.height, clip.width, size, flip)


def crop_flip_boxes(boxes: np.ndarray, box: tuple[int, int, int, int], height: int, width: int, size: int,
                    flip: bool) -> np.ndarray:
    """Boxes (T, K, 4) in (height, width) frames -> where they land once the frames are cropped
    to `box`, resized to size x size and mirrored if `flip` (crop_resize_clip, hflip)."""
    boxes = boxes if _is_whole(box, height, width, size) else crop_boxes(boxes, box, size)
    return flip_boxes(boxes, size) if flip else boxes


def hflip(frames: np.ndarray, boxes: np.ndarray, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (T, H, W, 3) frames left-right; boxes (T, K, 4) follow. `in_place` overwrites
    `frames` (when the caller owns them): no new clip-sized array, whose first touch costs
    more than the flip itself."""
    out = frames if in_place else np.empty_like(frames)
    for t, frame in enumerate(frames):  # OpenCV's flip is ~10x faster than a strided numpy copy
        cv2.flip(frame, 1, dst=out[t])
    return out, flip_boxes(boxes, frames.shape[2])
