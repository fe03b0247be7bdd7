"""Finetuning augmentation batched on the training device (`augment_device: device`); for
pretraining on clip shards, the crop and flip alone (`crop_flip_batch`).

Loader workers decode a clip and draw its copies' augmentation (`augment.draw_copies`: the same
draws, in the same order, as with `augment_device: loader`); `pack_draws` turns the draws into
fixed-size tensors that travel with the decoded frames, and `collate_padded` pads the frames of
a batch to its largest frame size. In the training step, `augment_batch` applies RandAugment,
the random resized crop and the flip to the whole batch in a few tensor operations per drawn
operation (clips that drew the same operation at the same position of their plan are processed
together) and returns what the loader would have shipped: (B x R, T, S, S, 3) uint8.
Normalisation and random erasing follow as in the loader placement.

Pixel arithmetic: the working clips are float32 holding whole levels; every operation ends on
whole levels as its uint8 counterpart does. Table, statistics and Color operations compute
PIL's values exactly (smile_train/data/augment_tables.py); Sharpness sums PIL's smoothing kernel in
PIL's order; warps and the crop resample with grid_sample (bicubic a = -0.75 like OpenCV, grey
fill; bilinear), where OpenCV rounds positions to 1/32 pixel and weights to fixed point: a
level or two apart on edges. tests/train/test_train_augment_device.py states the tolerance.

Padding: a clip's frames fill the top-left of the padded frame; the rest holds the fill grey
(which is what a warp's border taps read) and takes no part in a frame's statistics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from smile_train.data.augment import OP_NAMES, CopyDraws
from smile_train.data.augment_tables import (
    BYTE_MAX,
    LEVELS,
    SMOOTH_WEIGHTS,
    STATISTICS_OPS,
    TABLE_OPS,
    WARP_OPS,
    autocontrast_luts,
    blend,
    contrast_luts,
    equalize_luts,
    grey_levels,
    table_lut,
    warp_matrix,
)

FILL = 128.0  # what warps move in, and what padding holds
NO_OP = -1  # an unused position of a plan
LINEAR_WEIGHT_SCALE = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: bilinear weights in 11 bits
# Decoded frames a worker ships whole, padded to the batch's largest and turned to float32 once
# per copy on the device: 1080p (a 16-frame batch of 8 is 3.2 GB a copy) is the most accepted.
MAX_DEVICE_FRAME_PIXELS = 1920 * 1080


# --- in the loader worker --------------------------------------------------------------------


def check_frame_size(key: str, height: int, width: int) -> None:
    """Refuse a sample whose whole frames are too large to ship to the device (it is skipped and
    counted like any unreadable sample)."""
    if height * width > MAX_DEVICE_FRAME_PIXELS:
        raise ValueError(f"sample {key}: {width}x{height} frames are over augment_device: device's "
                         f"{MAX_DEVICE_FRAME_PIXELS:,} pixels; pack at a smaller --short-side or use "
                         "augment_device: loader")


def pack_draws(copies: list[CopyDraws], max_ops: int) -> dict[str, torch.Tensor]:
    """The draws of a clip's R copies as tensors: ops (R, max_ops) operation numbers (NO_OP
    where a plan is shorter), args (R, max_ops) float64, crop (R, 4) x0 y0 w h, flip (R,)."""
    ops = torch.full((len(copies), max_ops), NO_OP, dtype=torch.int64)
    args = torch.zeros((len(copies), max_ops), dtype=torch.float64)
    for r, copy in enumerate(copies):
        for k, (name, argument) in enumerate(copy.plan):
            ops[r, k], args[r, k] = OP_NAMES.index(name), argument
    return {"ops": ops, "args": args, "crop": torch.tensor([c.crop for c in copies], dtype=torch.int64),
            "flip": torch.tensor([c.flip for c in copies], dtype=torch.bool)}


def collate_padded(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch raw clips of different frame sizes: "video" (B, T, H, W, 3) uint8 padded at the
    bottom and right to the largest H and W; the other fields stacked as usual."""
    height = max(int(s["video"].shape[1]) for s in samples)
    width = max(int(s["video"].shape[2]) for s in samples)
    first = samples[0]["video"]
    video = torch.full((len(samples), first.shape[0], height, width, 3), int(FILL), dtype=torch.uint8)
    for i, sample in enumerate(samples):
        frames = sample["video"]
        video[i, :, : frames.shape[1], : frames.shape[2]] = frames
    rest = default_collate([{k: v for k, v in s.items() if k != "video"} for s in samples])
    return {"video": video, **rest}


# --- on the device: one function per kind of operation -----------------------------------------


def _table(x: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """x (G, T, 3, H, W) levels; tables (G, 256), (G, T, 256) or (G, T, 3, 256) uint8."""
    g, t, c, h, w = x.shape
    tables = tables.to(x.device, torch.float32)
    if tables.ndim == 2:  # one per clip
        tables = tables[:, None, None]
    elif tables.ndim == 3:  # one per frame
        tables = tables[:, :, None]
    tables = tables.expand(g, t, c, LEVELS).reshape(g * t * c, LEVELS)
    return tables.gather(1, x.reshape(g * t * c, h * w).long()).reshape(x.shape)


def _channel_histograms(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """values (G, ..., H, W) whole levels, valid (G, 1.., H, W) -> (G, ..., 256) counts of
    the valid pixels, one clip at a time (bounded memory). A scatter-add into a fixed-size
    count (bincount would read the largest index back to the host: a GPU sync per clip)."""
    counts = []
    for clip, inside in zip(values, valid):
        planes = clip.reshape(-1, *clip.shape[-2:]).long()
        index = planes + LEVELS * torch.arange(len(planes), device=clip.device)[:, None, None]
        index = torch.where(inside.reshape(1, *clip.shape[-2:]), index, len(planes) * LEVELS)
        count = torch.zeros((len(planes) + 1) * LEVELS, dtype=torch.int64, device=clip.device)
        counts.append(count.scatter_add_(0, index.flatten(), torch.ones_like(index.flatten()))[:-LEVELS])
    return torch.stack(counts).reshape(*values.shape[:-2], LEVELS)


def _statistics(name: str, x: torch.Tensor, factor: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    if name == "AutoContrast":
        low = torch.where(valid, x, float(BYTE_MAX)).amin((-2, -1))
        high = torch.where(valid, x, 0.0).amax((-2, -1))
        return _table(x, autocontrast_luts(low, high))
    if name == "Equalize":
        return _table(x, equalize_luts(_channel_histograms(x, valid)))
    grey = grey_levels(x.movedim(2, -1))  # (G, T, H, W)
    return _table(x, contrast_luts(_channel_histograms(grey, valid[:, :, 0]), factor))


def _sharpness(x: torch.Tensor, factor: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter summed in PIL's order (rows below, centre, above; float32, +0.5,
    truncated), blended with the clip; each frame's outer ring keeps its pixels."""
    kernel = torch.from_numpy(SMOOTH_WEIGHTS)
    padded = F.pad(x.flatten(0, 1), (1, 1, 1, 1), mode="replicate").unflatten(0, x.shape[:2])
    height, width = x.shape[-2:]
    total = torch.full_like(x, 0.5)
    for row, dy in enumerate((2, 1, 0)):  # PIL: kernel row 0 on the row below, row 2 above
        line = None
        for column, dx in enumerate((0, 1, 2)):
            term = padded[..., dy : dy + height, dx : dx + width] * kernel[row, column]
            line = term if line is None else line + term
        total = total + line
    smooth = total.clamp_(0, BYTE_MAX).floor_()
    return torch.where(ring, x, blend(smooth, x, factor))


def _warp(name: str, x: torch.Tensor, arguments: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Bicubic warp of each clip by its own matrix; taps outside a frame read the fill grey."""
    g, t, c, height, width = x.shape
    matrices = torch.tensor(np.stack([warp_matrix(name, float(a), int(w), int(h))
                                      for a, (h, w) in zip(arguments.tolist(), sizes.tolist())]),
                            dtype=torch.float32, device=x.device)  # (G, 2, 3) output index -> input
    grid = _sampling_grid(matrices, height, width, height, width).repeat_interleave(t, 0)
    sampled = F.grid_sample(x.flatten(0, 1) - FILL, grid, mode="bicubic", padding_mode="zeros",
                            align_corners=False)
    return (sampled + FILL).round_().clamp_(0, BYTE_MAX).unflatten(0, (g, t))


def _sampling_grid(matrices: torch.Tensor, out_height: int, out_width: int, height: int,
                   width: int) -> torch.Tensor:
    """grid_sample's (G, out_H, out_W, 2) grid for (G, 2, 3) maps from output pixel indices to
    input positions in pixels (centres at whole numbers), over inputs of height x width.
    Elementwise, not a matrix product: TF32 matrix products would move samples."""
    ys = torch.arange(out_height, device=matrices.device, dtype=torch.float32)[None, :, None]
    xs = torch.arange(out_width, device=matrices.device, dtype=torch.float32)[None, None, :]
    m = matrices[:, :, :, None, None]
    source_x = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]
    source_y = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    return torch.stack([(2 * source_x + 1) / width - 1, (2 * source_y + 1) / height - 1], -1)


def _valid_pixels(sizes: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(G, 1, 1, H, W) True inside each clip's own frame."""
    sizes = sizes.to(device)
    rows = torch.arange(height, device=device)[None, :, None] < sizes[:, 0, None, None]
    cols = torch.arange(width, device=device)[None, None, :] < sizes[:, 1, None, None]
    return (rows & cols)[:, None, None]


def _ring(sizes: torch.Tensor, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(G, 1, 1, H, W) True on each clip's outer ring of pixels (which PIL's filter leaves)."""
    sizes = sizes.to(device)
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    h, w = sizes[:, 0, None, None], sizes[:, 1, None, None]
    return ((rows == 0) | (rows == h - 1) | (cols == 0) | (cols == w - 1))[:, None, None]


def apply_operation(name: str, x: torch.Tensor, arguments: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """One RandAugment operation on clips x (G, T, 3, H, W) (whole levels, padding at FILL),
    each with its own argument (G,) and frame size (G, 2) = (height, width)."""
    height, width = x.shape[-2:]
    valid = _valid_pixels(sizes, height, width, x.device)
    factor = arguments.to(x.device, torch.float32).reshape(-1, 1, 1, 1, 1)
    if name in TABLE_OPS:
        out = _table(x, torch.stack([table_lut(name, float(a)) for a in arguments.tolist()]))
    elif name in STATISTICS_OPS:
        out = _statistics(name, x, arguments.to(x.device, torch.float32).reshape(-1, 1), valid)
    elif name == "Color":
        out = blend(grey_levels(x.movedim(2, -1)).unsqueeze(2), x, factor)
    elif name == "Sharpness":
        out = _sharpness(x, factor, _ring(sizes, height, width, x.device))
    elif name in WARP_OPS:
        out = _warp(name, x, arguments, sizes)
    else:
        raise ValueError(f"unknown RandAugment operation {name!r}")
    return torch.where(valid, out, FILL)


# --- crop, flip and the whole batch -----------------------------------------------------------


def _linear_taps(starts: torch.Tensor, lengths: torch.Tensor, size: int,
                 columns: bool) -> tuple[torch.Tensor, ...]:
    """OpenCV's INTER_LINEAR taps along one axis of each clip's box: (G, size) first input
    index (absolute), second index and their 11-bit weights. Positions are
    (i + 0.5) x length / size - 0.5 in float32; a column position outside the box is moved to
    its edge, a row position keeps its weights and reads the edge row twice (OpenCV's setup)."""
    scale = 1.0 / (size / lengths.to(torch.float64)[:, None])  # OpenCV: scale = 1 / inverse scale
    position = ((torch.arange(size, dtype=torch.float64)[None] + 0.5) * scale - 0.5).to(torch.float32)
    first = position.floor()
    fraction = position - first
    last = (lengths[:, None] - 1).to(torch.float32)
    if columns:
        fraction = torch.where((first < 0) | (first >= last), torch.zeros_like(fraction), fraction)
    weight_second = torch.round(fraction * LINEAR_WEIGHT_SCALE)
    weight_first = torch.round((1 - fraction) * LINEAR_WEIGHT_SCALE)
    start = starts[:, None].to(torch.int64)
    first_index = start + first.clamp(min=0).minimum(last).to(torch.int64)
    second_index = start + (first + 1).clamp(min=0).minimum(last).to(torch.int64)
    return first_index, second_index, weight_first.to(torch.int32), weight_second.to(torch.int32)


def _gather(x: torch.Tensor, index: torch.Tensor, dim: int) -> torch.Tensor:
    """x (G, T, 3, A, B) indexed along dim 3 or 4 by (G, n), a different index per clip."""
    shape = list(x.shape)
    shape[dim] = index.shape[1]
    view = [index.shape[0], 1, 1, 1, 1]
    view[dim] = index.shape[1]
    return x.gather(dim, index.to(x.device).reshape(view).expand(shape))


def _crop_resize(x: torch.Tensor, crops: torch.Tensor, size: int) -> torch.Tensor:
    """x (G, T, 3, H, W) levels -> (G, T, 3, size, size): each clip's box (x0, y0, w, h)
    resized with OpenCV's INTER_LINEAR arithmetic for 8-bit images: rows combined with 11-bit
    weights in integers, then columns through its vectorised fixed-point step
    ((((r0 >> 4) b0) >> 16) + (((r1 >> 4) b1) >> 16) + 2) >> 2."""
    x = x.to(torch.int32)
    cols = _linear_taps(crops[:, 0], crops[:, 2], size, columns=True)
    rows = _linear_taps(crops[:, 1], crops[:, 3], size, columns=False)
    weights = [w.to(x.device)[:, None, None, None, :] for w in cols[2:]]
    combined = []
    for row in rows[:2]:
        lines = _gather(x, row, 3)  # (G, T, 3, size, W)
        combined.append(_gather(lines, cols[0], 4) * weights[0] + _gather(lines, cols[1], 4) * weights[1])
    b0, b1 = (w.to(x.device)[:, None, None, :, None] for w in rows[2:])
    out = ((((combined[0] >> 4) * b0) >> 16) + (((combined[1] >> 4) * b1) >> 16) + 2) >> 2
    return out.clamp_(0, BYTE_MAX)


def augment_batch(batch: dict[str, Any], input_size: int, device: torch.device) -> torch.Tensor:
    """The device placement's pixel work on a collated batch of raw clips (`collate_padded`):
    (B x R, T, input_size, input_size, 3) uint8 on `device`, copy r of clip b at b x R + r."""
    frames = batch["video"].to(device, non_blocking=True)  # (B, T, H, W, 3)
    ops, args = batch["ops"].flatten(0, 1), batch["args"].flatten(0, 1)  # (B*R, N), on the CPU
    copies = batch["ops"].shape[1]
    sizes = batch["frame_size"].repeat_interleave(copies, 0)  # (B*R, 2)
    x = frames.movedim(-1, 2).to(torch.float32).repeat_interleave(copies, 0)  # (B*R, T, 3, H, W)
    for position in range(ops.shape[1]):
        for number in torch.unique(ops[:, position]).tolist():
            if number == NO_OP:
                continue
            chosen = torch.nonzero(ops[:, position] == number).flatten()
            on_device = chosen.to(device)
            x[on_device] = apply_operation(OP_NAMES[number], x[on_device], args[chosen, position], sizes[chosen])
    return _crop_flip(x, batch["crop"].flatten(0, 1), batch["flip"].flatten(), input_size)


def crop_flip_batch(batch: dict[str, Any], input_size: int, device: torch.device) -> torch.Tensor:
    """Pretraining's device placement (`augment_device: device`): each clip of a collated batch
    (`collate_padded`; "crop" (B, 4), "flip" (B,)) cropped, resized and mirrored as the loader
    worker would have done: (B, T, input_size, input_size, 3) uint8 on `device`."""
    frames = batch["video"].to(device, non_blocking=True)  # (B, T, H, W, 3)
    return _crop_flip(frames.movedim(-1, 2), batch["crop"], batch["flip"], input_size)


def _crop_flip(x: torch.Tensor, crops: torch.Tensor, flips: torch.Tensor, size: int) -> torch.Tensor:
    """x (G, T, 3, H, W) levels -> (G, T, size, size, 3) uint8: the crop boxes resized (OpenCV's
    bilinear arithmetic), then mirrored where `flips`."""
    out = _crop_resize(x, crops, size)
    flip = flips.to(out.device)[:, None, None, None, None]
    out = torch.where(flip, out.flip(-1), out)
    return out.to(torch.uint8).movedim(2, -1).contiguous()
