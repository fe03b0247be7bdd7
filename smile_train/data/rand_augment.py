"""RandAugment on a whole clip in a loader worker: (T, H, W, 3) uint8, OpenCV and tables.

Each operation works on the clip as a whole (one OpenCV call over the frames stacked as one
tall image, or one call per frame where a frame's own statistics or borders matter), never on
PIL images: converting 16 frames to PIL and back cost as much as most operations.

Only what the crop reads is computed. The crop box is drawn before any pixel work (the draws
never depend on pixels), so `apply_rand_augment(..., keep=box)` walks the plan backwards to
find, for each operation, the region of its output that later steps read: a table op or a
blend reads the same region, Sharpness one pixel more, a warp the bounding box of where that
region samples (plus the bicubic taps), and the statistics ops the whole frame. A warp
followed only by the crop resamples the crop's pixels alone (on average 60 % of the frame).

Results against timm's PIL operations (tests/train/test_train_augment_ops.py): the table and
statistics operations give PIL's pixels exactly (smile_train.data.augment_tables); Color and
Sharpness differ by at most one level on a small share of pixels (OpenCV's grey conversion,
smoothing and blend round where PIL truncates); warps resample with OpenCV's bicubic kernel
(a = -0.75; PIL's affine uses -1) and constant grey border taps, a level or two at edges.
Rotate is OpenCV's per-pixel warp. Shears and translations move pixels along one axis, so every
row (or column) is one 4-tap filter at one fractional position: about a quarter of the cost,
and within a level of OpenCV's warp, which rounds positions to 1/32 pixel where this does not.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from smile_train.data.augment_tables import (
    BLEND_OPS,
    LEVELS,
    SMOOTH_WEIGHTS,
    STATISTICS_OPS,
    TABLE_OPS,
    WARP_OPS,
    autocontrast_luts,
    contrast_luts,
    equalize_luts,
    table_lut,
    warp_matrix,
)

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
Plan = Sequence[tuple[str, float]]
FILL = (128, 128, 128)  # what warps move in (timm's default fill)
WARP_FLAGS = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
BICUBIC_REACH = 2  # a bicubic sample reads input pixels up to 2 away from its position
CUBIC_A = -0.75  # the bicubic kernel's free parameter in OpenCV and torch's grid_sample
CUBIC_TAPS = 4  # samples per output pixel along one axis
ROW_WARPS = ("ShearX", "TranslateX")  # warps that move pixels within their row ...
COLUMN_WARPS = ("ShearY", "TranslateY")  # ... or within their column
# OpenCV's blend rounds to nearest; PIL truncates: subtracting just under half a level turns
# rounding into truncation, except for results within 1/512 of the next level up.
TRUNCATE_OFFSET = -0.5 + 1 / 512


# --- regions -------------------------------------------------------------------------------


def _clip_region(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> Region:
    x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
    x1, y1 = min(width, int(np.ceil(x1))), min(height, int(np.ceil(y1)))
    return (x0, y0, max(x0, x1), max(y0, y1))


def _is_empty(region: Region) -> bool:
    return region[2] <= region[0] or region[3] <= region[1]


def _sampled_region(matrix: np.ndarray, region: Region, width: int, height: int) -> Region:
    """The input pixels a warp reads to fill `region` of its output."""
    x0, y0, x1, y1 = region
    corners = np.array([[x0, y0, 1], [x1 - 1, y0, 1], [x0, y1 - 1, 1], [x1 - 1, y1 - 1, 1]], np.float64)
    sampled = corners @ matrix.T
    low, high = sampled.min(0) - BICUBIC_REACH, sampled.max(0) + BICUBIC_REACH + 1
    return _clip_region(low[0], low[1], high[0], high[1], width, height)


def output_regions(plan: Plan, keep: Region, height: int, width: int) -> list[Region]:
    """For each operation of `plan`, the region of its output that the later operations (and
    finally `keep`) read."""
    regions: list[Region] = []
    needed = keep
    for name, argument in reversed(plan):
        regions.append(needed)
        if _is_empty(needed):
            continue
        if name in STATISTICS_OPS:
            needed = (0, 0, width, height)
        elif name == "Sharpness":
            x0, y0, x1, y1 = needed
            needed = _clip_region(x0 - 1, y0 - 1, x1 + 1, y1 + 1, width, height)
        elif name in WARP_OPS:
            needed = _sampled_region(warp_matrix(name, argument, width, height), needed, width, height)
    return regions[::-1]


def _views(clip: np.ndarray, region: Region) -> list[np.ndarray]:
    """The region in each frame, or the whole clip as one tall image when it covers it."""
    x0, y0, x1, y1 = region
    frames, height, width = clip.shape[:3]
    if region == (0, 0, width, height):
        return [clip.reshape(frames * height, width, 3)]
    return [frame[y0:y1, x0:x1] for frame in clip]


# --- operations: src -> dst over a region --------------------------------------------------


def _apply_table(src: np.ndarray, dst: np.ndarray, region: Region, table: np.ndarray) -> None:
    """One (256,) table for every pixel and channel."""
    for source, target in zip(_views(src, region), _views(dst, region)):
        cv2.LUT(source, table, dst=target)


def _grey_histogram(frame: np.ndarray) -> list[int]:
    """(256,) counts of a frame's grey levels by PIL's "L" conversion (exact integers)."""
    from PIL import Image  # only Contrast needs PIL's grey conversion

    return Image.fromarray(frame).convert("L").histogram()


def _channel_tables(name: str, planes: list[list[np.ndarray]]) -> np.ndarray:
    """(T, 3, 256) tables of AutoContrast (each plane's range) or Equalize (its histogram)."""
    if name == "AutoContrast":
        ranges = np.array([[cv2.minMaxLoc(plane)[:2] for plane in frame] for frame in planes])
        return autocontrast_luts(torch.from_numpy(ranges[..., 0]), torch.from_numpy(ranges[..., 1])).numpy()
    counts = [[cv2.calcHist([plane], [0], None, [LEVELS], [0, LEVELS]).ravel() for plane in frame] for frame in planes]
    return equalize_luts(torch.from_numpy(np.array(counts, np.int64))).numpy()


def _statistics(src: np.ndarray, dst: np.ndarray, region: Region, name: str, argument: float) -> None:
    """A table per frame (Contrast: one for all channels) or per frame and channel
    (AutoContrast, Equalize), from the whole frame's statistics; applied to the region."""
    x0, y0, x1, y1 = region
    if name == "Contrast":
        counts = torch.tensor([_grey_histogram(frame) for frame in src], dtype=torch.int64)
        for frame, target, table in zip(src, dst, contrast_luts(counts, argument).numpy()):
            cv2.LUT(frame[y0:y1, x0:x1], table, dst=target[y0:y1, x0:x1])
        return
    planes = [cv2.split(frame) for frame in src]
    for frame_planes, target, tables in zip(planes, dst, _channel_tables(name, planes)):
        mapped = [cv2.LUT(plane[y0:y1, x0:x1], table) for plane, table in zip(frame_planes, tables)]
        cv2.merge(mapped, dst=target[y0:y1, x0:x1])


def _blend(src: np.ndarray, degenerate: np.ndarray, factor: float, dst: np.ndarray) -> None:
    """PIL's blend(degenerate, src, factor) with OpenCV's saturating weighted sum."""
    cv2.addWeighted(src, factor, degenerate, 1.0 - factor, TRUNCATE_OFFSET, dst=dst)


def _color(src: np.ndarray, dst: np.ndarray, region: Region, factor: float) -> None:
    for source, target in zip(_views(src, region), _views(dst, region)):
        grey = cv2.cvtColor(cv2.cvtColor(source, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        _blend(source, grey, factor, target)


def _sharpness(src: np.ndarray, dst: np.ndarray, region: Region, factor: float) -> None:
    """PIL's Sharpness: a blend with the SMOOTH-filtered frame, whose outer ring of pixels PIL
    leaves unfiltered (so the blend leaves it as it was)."""
    frames, height, width = src.shape[:3]
    x0, y0, x1, y1 = region
    ix0, iy0, ix1, iy1 = _clip_region(x0 - 1, y0 - 1, x1 + 1, y1 + 1, width, height)
    for t in range(frames):
        smooth = cv2.filter2D(src[t, iy0:iy1, ix0:ix1], -1, SMOOTH_WEIGHTS, borderType=cv2.BORDER_REPLICATE)
        _blend(src[t, y0:y1, x0:x1], smooth[y0 - iy0 : y1 - iy0, x0 - ix0 : x1 - ix0], factor, dst[t, y0:y1, x0:x1])
    for rows, cols in (((0, 1), (0, width)), ((height - 1, height), (0, width)),
                       ((0, height), (0, 1)), ((0, height), (width - 1, width))):
        ry0, ry1 = max(rows[0], y0), min(rows[1], y1)
        rx0, rx1 = max(cols[0], x0), min(cols[1], x1)
        if ry1 > ry0 and rx1 > rx0:
            dst[:, ry0:ry1, rx0:rx1] = src[:, ry0:ry1, rx0:rx1]


def _warp(src: np.ndarray, dst: np.ndarray, region: Region, name: str, argument: float) -> None:
    """Bicubic resampling of the output `region` only. Shears and translations move pixels along
    one axis (`_shift_rows`); Rotate warps each frame with OpenCV, the map shifted to the region."""
    frames, height, width = src.shape[:3]
    x0, y0, x1, y1 = region
    matrix = warp_matrix(name, argument, width, height)
    if name in ROW_WARPS:  # x_in = x + shear y + offset, y_in = y
        _shift_rows(src[:, y0:y1], dst[:, y0:y1, x0:x1], x0, y0, matrix[0, 1], matrix[0, 2])
        return
    if name in COLUMN_WARPS:  # the same along columns: rows of the frames transposed
        columns = np.empty((frames, x1 - x0, height, 3), np.uint8)
        shifted = np.empty((frames, x1 - x0, y1 - y0, 3), np.uint8)
        for t in range(frames):
            cv2.transpose(src[t, :, x0:x1], dst=columns[t])
        _shift_rows(columns, shifted, y0, x0, matrix[1, 0], matrix[1, 2])
        for t in range(frames):
            cv2.transpose(shifted[t], dst=dst[t, y0:y1, x0:x1])
        return
    matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    for t in range(frames):
        cv2.warpAffine(src[t], matrix, (x1 - x0, y1 - y0), dst=dst[t, y0:y1, x0:x1], flags=WARP_FLAGS,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=FILL)


def cubic_weights(phase: float) -> np.ndarray:
    """(1, 4) float32 weights of the samples at -1, 0, 1, 2 around a position `phase` (0..1) past
    a pixel: the bicubic convolution kernel with OpenCV's and grid_sample's a = -0.75."""
    a = CUBIC_A
    near = [phase, 1.0 - phase]  # distances to the two nearest samples
    inner = [((a + 2) * d - (a + 3)) * d * d + 1 for d in near]
    outer = ((a * (phase + 1) - 5 * a) * (phase + 1) + 8 * a) * (phase + 1) - 4 * a
    return np.array([[outer, inner[0], inner[1], 1.0 - outer - inner[0] - inner[1]]], np.float32)


def _shift_rows(rows: np.ndarray, out: np.ndarray, x0: int, y0: int, shear: float, offset: float) -> None:
    """A warp that keeps every row: out[:, i, j] samples row i of `rows` (all frames) at
    x0 + j + shear (y0 + i) + offset, with bicubic taps along the row and grey outside the frame.
    Every pixel of a row shares one fractional position, so a row is one 4-tap filter (a
    translation's rows all share one): a fraction of the cost of OpenCV's per-pixel bicubic map.
    rows (T, h, W, 3), out (T, h, n, 3)."""
    height, width = rows.shape[1:3]
    count = out.shape[2]
    positions = x0 + shear * (y0 + np.arange(height)) + offset  # of each row's first output pixel
    bands = [(0, height)] if shear == 0 else [(i, i + 1) for i in range(height)]
    for i0, i1 in bands:
        start = int(np.floor(positions[i0]))
        # output j reads inputs start + j - 1 .. start + j + 2: those before `first` or from `last`
        # on read only fill (each tap beyond the frame reads grey, as OpenCV's constant border)
        first = min(max(0, -2 - start), count)
        last = max(first, min(count, width + 1 - start))
        out[:, i0:i1, :first] = FILL
        out[:, i0:i1, last:] = FILL
        if last == first:
            continue
        weights = cubic_weights(positions[i0] - start)
        span = (start + first - 1, start + last + 2)  # the inputs the filter reads
        if i1 - i0 == 1:  # one row of every frame: one (T, L, 3) image
            out[:, i0, first:last] = _filtered_span(rows[:, i0], span, weights)
        else:
            for t in range(rows.shape[0]):
                out[t, i0:i1, first:last] = _filtered_span(rows[t, i0:i1], span, weights)


def _filtered_span(image: np.ndarray, span: tuple[int, int], weights: np.ndarray) -> np.ndarray:
    """Each row of `image` (r, W, 3) correlated with (1, 4) weights at -1 .. 2, for the outputs
    that read columns span[0] .. span[1] - 1 (grey beyond the image): (r, span - 3, 3)."""
    low, high = span
    width = image.shape[1]
    inside = image[:, max(low, 0) : min(high, width)]
    if low < 0 or high > width:
        inside = cv2.copyMakeBorder(inside, 0, 0, max(0, -low), max(0, high - width), cv2.BORDER_CONSTANT,
                                    value=FILL)
    return cv2.filter2D(inside, -1, weights, anchor=(1, 0), borderType=cv2.BORDER_REPLICATE)[:, 1:-2]


def _apply_one(name: str, argument: float, src: np.ndarray, dst: np.ndarray, region: Region) -> None:
    if name in TABLE_OPS:
        _apply_table(src, dst, region, table_lut(name, argument).numpy())
    elif name in STATISTICS_OPS:
        _statistics(src, dst, region, name, argument)
    elif name == "Color":
        _color(src, dst, region, argument)
    elif name == "Sharpness":
        _sharpness(src, dst, region, argument)
    elif name in WARP_OPS:
        _warp(src, dst, region, name, argument)
    else:
        raise ValueError(f"unknown RandAugment operation {name!r}")


def apply_rand_augment(clip: np.ndarray, plan: Plan, keep: Region | None = None) -> np.ndarray:
    """Apply a plan [(name, argument), ...] to every frame of a (T, H, W, 3) uint8 clip.

    `keep` (x0, y0, x1, y1): only that region of the result is computed and valid; by default
    the whole frame. `clip` itself is never written.
    """
    if not plan:
        return clip
    frames, height, width = clip.shape[:3]
    regions = output_regions(plan, keep or (0, 0, width, height), height, width)
    current, buffers = clip, [np.empty_like(clip), np.empty_like(clip)]
    for (name, argument), region in zip(plan, regions):
        if _is_empty(region):
            continue
        target = buffers[0] if current is not buffers[0] else buffers[1]
        if name not in WARP_OPS and name not in BLEND_OPS and current is not clip:
            target = current  # table ops run in place on our own buffer
        _apply_one(name, argument, current, target, region)
        current = target
    return current


