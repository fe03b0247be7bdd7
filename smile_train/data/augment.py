"""Finetuning's per-clip augmentation, as the released SMILE / VideoMAE code runs it (docs/method.md §9).

Per clip, from the clip's own seeded generator, in the released order:

1. RandAugment `rand-m7-n4-mstd0.5-inc1` on the frames as loaded (before the crop): 4 operations
   drawn with replacement from timm's 15 "increasing" operations; each is applied with
   probability 0.5 at a magnitude drawn from N(7, 0.5) and clipped to [0, 10]. An operation's
   draws (whether it runs, its magnitude, its sign) are made once per clip and the operation is
   applied to every frame, as the authors' video RandAugment does; image statistics (the
   auto-contrast range, the equalisation histogram, the contrast mean) are those of each frame.
   Geometric operations resample bicubically and fill with grey (128, 128, 128). The pixel
   work is smile_train/data/rand_augment.py (whole clips, OpenCV and PIL's own table arithmetic,
   only the pixels the crop reads) in a loader worker, or smile_train/data/augment_device.py
   (batched tensor operations on the training device) with `augment_device: device`.
2. Random resized crop: area fraction in (0.25, 1), aspect w/h log-uniform in (3/4, 4/3), ten
   tries then the largest centred box; resized to the input size.
3. Horizontal flip with probability 0.5 (Kinetics; off for SSv2).
4. Random erasing (timm's RandomErasing in the video "cube" variant): with probability 0.25 one
   box of area (0.02, 1/3) of the frame and aspect h/w log-uniform in (0.3, 1/0.3), the same box
   in every frame. The box is drawn here; its pixels are replaced after ImageNet normalisation
   (`erase_boxes`, on the device) by per-pixel standard-normal values, new for every frame.

Every draw of a copy (`CopyDraws`) is made before any pixel work and depends on the frame size
alone, so both placements of the pixel work give the same clips for the same draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Collection

import numpy as np
import torch

from smile_data.images import FLIP_PROBABILITY
from smile_data.sampling import crop_resize_clip, hflip
from smile_train.data.rand_augment import apply_rand_augment
from smile_train.settings.finetune import ERASE_MODES

CROP_ATTEMPTS = 10  # random resized crop: tries before the centred fall-back
LEVEL_MAX = 10.0  # RandAugment magnitudes are out of 10
ROTATE_MAX_DEGREES = 30.0
SHEAR_MAX = 0.3
TRANSLATE_MAX_FRACTION = 0.45  # of the frame's width (x) or height (y)
ENHANCE_INCREASING_MAX = 0.9  # increasing enhance ops: factor 1 +- 0.9 x level / 10
ENHANCE_SPAN, ENHANCE_MIN = 1.8, 0.1  # plain enhance ops: factor 0.1 + 1.8 x level / 10
POSTERIZE_BITS_SPAN = 4
SOLARIZE_SPAN = 256
SOLARIZE_ADD_MAX = 110
ERASE_MIN_AREA, ERASE_MAX_AREA = 0.02, 1.0 / 3.0  # share of the frame's area
ERASE_MIN_ASPECT = 0.3  # h / w in (0.3, 1 / 0.3), log-uniform
ERASE_ATTEMPTS = 100  # the video variant tries 100 boxes, then erases nothing
NO_BOX = (0, 0, 0, 0)  # (top, left, height, width) of "nothing erased"


# --- random resized crop ---------------------------------------------------------------------


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): area fraction from `scale`, log-uniform aspect w/h from `ratio`; after
    CROP_ATTEMPTS boxes that do not fit, the largest centred box within the aspect range."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1)), w, h
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


OP_NAMES = (  # timm's RandAugment list (translations relative to the frame)
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY",
)
ENHANCE_OPS = ("Color", "Contrast", "Brightness", "Sharpness")


# --- RandAugment: magnitude level (0..10) -> operation argument --------------------------------


def _signed(value: float, rng: np.random.Generator) -> float:
    """timm's _randomly_negate: the value with a random sign (one draw)."""
    return -value if rng.random() > 0.5 else value


def level_to_argument(name: str, level: float, increasing: bool, rng: np.random.Generator) -> float:
    """timm's level functions (the `inc1` variants when `increasing`); draws the sign if any."""
    share = level / LEVEL_MAX
    if name == "Rotate":
        return _signed(share * ROTATE_MAX_DEGREES, rng)
    if name in ("ShearX", "ShearY"):
        return _signed(share * SHEAR_MAX, rng)
    if name in ("TranslateX", "TranslateY"):
        return _signed(share * TRANSLATE_MAX_FRACTION, rng)
    if name == "Posterize":  # bits kept: 4 .. 0 (increasing) or 0 .. 4
        bits = int(share * POSTERIZE_BITS_SPAN)
        return float(POSTERIZE_BITS_SPAN - bits if increasing else bits)
    if name == "Solarize":  # threshold: 256 .. 0 (increasing) or 0 .. 256
        threshold = int(share * SOLARIZE_SPAN)
        return float(SOLARIZE_SPAN - threshold if increasing else threshold)
    if name == "SolarizeAdd":
        return float(int(share * SOLARIZE_ADD_MAX))
    if name in ENHANCE_OPS:
        if increasing:
            return 1.0 + _signed(share * ENHANCE_INCREASING_MAX, rng)
        return share * ENHANCE_SPAN + ENHANCE_MIN
    return 0.0  # AutoContrast, Equalize, Invert take no argument


@dataclass(frozen=True)
class RandAugmentPolicy:
    """timm's `rand-m{magnitude}-n{ops}-mstd{magnitude_std}-inc{1 if increasing}`."""

    ops: int = 4
    magnitude: float = 7.0
    magnitude_std: float = 0.5
    prob: float = 0.5  # each drawn operation runs with this probability
    increasing: bool = True


def policy_of(s: Any) -> RandAugmentPolicy:
    return RandAugmentPolicy(s.rand_augment_ops, s.rand_augment_magnitude, s.rand_augment_magnitude_std,
                             s.rand_augment_prob, s.rand_augment_increasing)


def draw_rand_augment(rng: np.random.Generator, policy: RandAugmentPolicy) -> list[tuple[str, float]]:
    """One clip's plan [(name, argument), ...]: `policy.ops` operations drawn with replacement;
    each runs with probability `prob` (else no more draws for it), at a level drawn from
    N(magnitude, magnitude_std) clipped to [0, 10], mapped by `level_to_argument`."""
    plan = []
    for index in rng.integers(len(OP_NAMES), size=policy.ops):
        if rng.random() > policy.prob:
            continue
        level = rng.normal(policy.magnitude, policy.magnitude_std) if policy.magnitude_std > 0 else policy.magnitude
        level = min(LEVEL_MAX, max(0.0, float(level)))
        name = OP_NAMES[int(index)]
        plan.append((name, level_to_argument(name, level, policy.increasing, rng)))
    return plan


# --- random erasing ---------------------------------------------------------------------------


def draw_erase_box(rng: np.random.Generator, height: int, width: int, prob: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of the clip's erased box, or NO_BOX: with probability `prob`, up to
    ERASE_ATTEMPTS boxes of area (0.02, 1/3) of the frame, aspect h/w log-uniform in
    (0.3, 1/0.3), sides rounded; the first strictly inside the frame is taken."""
    if rng.random() > prob:
        return NO_BOX
    log_aspect = (math.log(ERASE_MIN_ASPECT), -math.log(ERASE_MIN_ASPECT))
    for _ in range(ERASE_ATTEMPTS):
        area = rng.uniform(ERASE_MIN_AREA, ERASE_MAX_AREA) * height * width
        aspect = math.exp(rng.uniform(*log_aspect))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if w < width and h < height:
            return int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1)), h, w
    return NO_BOX


def erase_boxes(videos: torch.Tensor, boxes: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Fill each clip's box, in every frame, after normalisation: (B, 3, T, H, W), boxes (B, 4).

    mode "pixel": a standard-normal value per pixel, channel and frame; "rand": one per channel
    and frame; "const": zeros (the dataset mean). Clips whose box has no area are left alone.
    """
    if mode not in ERASE_MODES:
        raise ValueError(f"erase_mode {mode!r}: expected one of {', '.join(ERASE_MODES)}")
    chosen = [(i, *map(int, box)) for i, box in enumerate(boxes.tolist()) if box[2] > 0 and box[3] > 0]
    if not chosen:
        return videos
    videos = videos.clone()
    channels, frames = videos.shape[1:3]
    for i, top, left, h, w in chosen:
        shape = (channels, frames, h, w) if mode == "pixel" else (channels, frames, 1, 1)
        fill = torch.randn(shape, generator=generator, device=videos.device, dtype=videos.dtype)
        videos[i, :, :, top : top + h, left : left + w] = fill if mode != "const" else 0.0
    return videos


# --- per-clip pipeline -----------------------------------------------------------------------


@dataclass(frozen=True)
class CopyDraws:
    """Everything random about one augmented copy of a clip, drawn before any pixel work."""

    plan: tuple[tuple[str, float], ...]  # RandAugment operations and arguments, in order
    crop: tuple[int, int, int, int]  # x0, y0, w, h in the loaded frames
    flip: bool
    erase: tuple[int, int, int, int]  # top, left, h, w in the augmented clip, or NO_BOX


def _draw_view(rng: np.random.Generator, s: Any, height: int, width: int) -> tuple:
    """(plan, crop box, flip) in the released order."""
    plan = tuple(draw_rand_augment(rng, policy_of(s))) if s.rand_augment else ()
    crop = random_resized_crop_box(rng, height, width, tuple(s.crop_scale), tuple(s.crop_ratio))
    return plan, crop, bool(s.flip and rng.random() < FLIP_PROBABILITY)


def draw_copy(rng: np.random.Generator, s: Any, height: int, width: int) -> CopyDraws:
    """One copy's draws in the released order: RandAugment plan, crop box, flip, erase box."""
    view = _draw_view(rng, s, height, width)
    return CopyDraws(*view, draw_erase_box(rng, s.input_size, s.input_size, s.erase_prob))


def draw_copies(rng: np.random.Generator, s: Any, height: int, width: int) -> list[CopyDraws]:
    """Repeated augmentation: the draws of `s.repeated_augment` independent copies of a clip."""
    return [draw_copy(rng, s, height, width) for _ in range(s.repeated_augment)]


def apply_copy(frames: np.ndarray, draws: CopyDraws, size: int,
               keep_ops: Collection[str] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8: RandAugment (computed only where the
    crop reads), crop, flip. `keep_ops` applies only those RandAugment operations."""
    x0, y0, w, h = draws.crop
    plan = [op for op in draws.plan if keep_ops is None or op[0] in keep_ops]
    frames = apply_rand_augment(frames, plan, keep=(x0, y0, x0 + w, y0 + h))
    no_boxes = np.zeros((frames.shape[0], 0, 4), np.float32)
    out, _ = crop_resize_clip(frames, no_boxes, draws.crop, size)
    if draws.flip:
        out, _ = hflip(out, no_boxes, in_place=out is not frames)
    return np.ascontiguousarray(out)


def augment_clip(frames: np.ndarray, rng: np.random.Generator, s: Any,
                 keep_ops: Collection[str] | None = None) -> np.ndarray:
    """One augmented view of (T, H, W, 3) uint8 frames: (T, S, S, 3) uint8 (RandAugment, crop
    and flip drawn from `rng`; no erase box)."""
    draws = CopyDraws(*_draw_view(rng, s, *frames.shape[1:3]), NO_BOX)
    return apply_copy(frames, draws, s.input_size, keep_ops)


def augmented_copies(frames: np.ndarray, rng: np.random.Generator, s: Any) -> tuple[np.ndarray, np.ndarray]:
    """Repeated augmentation: `s.repeated_augment` independently augmented copies of one clip.

    Returns videos (R, T, S, S, 3) uint8 and erase boxes (R, 4) int64 (top, left, h, w).
    """
    copies = draw_copies(rng, s, *frames.shape[1:3])
    videos = np.stack([apply_copy(frames, draws, s.input_size) for draws in copies])
    return videos, np.array([draws.erase for draws in copies], np.int64)
