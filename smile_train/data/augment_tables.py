"""RandAugment's arithmetic, shared by both placements of finetuning augmentation.

The operations of `smile_train.data.augment` reduce to three kinds of pixel work:

    tables     a 256-entry lookup table per channel, fixed by the argument (Invert, Posterize,
               Solarize, SolarizeAdd, Brightness) or computed per frame from the frame's
               histograms (AutoContrast, Equalize, Contrast);
    blends     PIL's Image.blend with a per-pixel degenerate image (Color: the frame's grey
               level; Sharpness: the frame smoothed by PIL's SMOOTH kernel);
    warps      an affine resampling (Rotate, Shear, Translate), bicubic, grey fill.

This module holds the parts both placements compute alike: the tables (as torch tensors, on
whatever device the histograms are), PIL's blend arithmetic and the warp matrices. The tables
are PIL's own arithmetic (ImageOps, ImageEnhance, Image.blend in float32, truncated), so a
table op gives PIL's pixels exactly; tests/train/test_train_augment_ops.py checks each against
PIL.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LEVELS = 256
BYTE_MAX = 255
SOLARIZE_ADD_THRESHOLD = 128
# PIL's "L" conversion: L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (Convert.c, rgb2l)
GREY_WEIGHTS = (19595, 38470, 7471)
GREY_ROUNDING, GREY_SHIFT = 0x8000, 16
SMOOTH_KERNEL = ((1, 1, 1), (1, 5, 1), (1, 1, 1))  # PIL's ImageFilter.SMOOTH ...
SMOOTH_SCALE = 13  # ... divided by the sum of its weights
SMOOTH_WEIGHTS = np.array(SMOOTH_KERNEL, np.float32) / np.float32(SMOOTH_SCALE)  # float32, IEEE division

TABLE_OPS = ("Invert", "Posterize", "Solarize", "SolarizeAdd", "Brightness")
STATISTICS_OPS = ("AutoContrast", "Equalize", "Contrast")  # a table per frame, from its histograms
BLEND_OPS = ("Color", "Sharpness")
WARP_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")


# --- fixed tables --------------------------------------------------------------------------


def blend(degenerate: torch.Tensor, image: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """PIL's Image.blend(degenerate, image, factor) on 8-bit values held in any tensor type:
    degenerate + factor x (image - degenerate) in float32, clipped to 0..255 and truncated."""
    degenerate = degenerate.to(torch.float32)
    difference = image.to(torch.float32) - degenerate
    factor = torch.as_tensor(factor, dtype=torch.float32, device=image.device)
    return (degenerate + factor * difference).clamp_(0, BYTE_MAX).floor_()


def table_lut(name: str, argument: float) -> torch.Tensor:
    """(256,) uint8 table of an operation whose result depends on the pixel value alone."""
    values = torch.arange(LEVELS)
    if name == "Invert":
        table = BYTE_MAX - values
    elif name == "Posterize":  # bits kept; 0 keeps none (PIL refuses 0, its mask formula gives 0)
        bits = int(argument)
        table = values if bits >= 8 else values & ~((1 << (8 - bits)) - 1)
    elif name == "Solarize":
        table = torch.where(values < argument, values, BYTE_MAX - values)
    elif name == "SolarizeAdd":
        added = (values + int(argument)).clamp(max=BYTE_MAX)
        table = torch.where(values < SOLARIZE_ADD_THRESHOLD, added, values)
    elif name == "Brightness":  # a blend with black
        table = blend(torch.zeros(LEVELS), values, argument)
    else:
        raise ValueError(f"{name} is not a table operation")
    return table.to(torch.uint8)


# --- tables from histograms (one per frame and channel) -------------------------------------


def autocontrast_luts(low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """ImageOps.autocontrast (no cutoff) from each channel's lowest and highest value (...,):
    (..., 256) uint8 tables mapping low to 0 and high to 255; identity where low == high."""
    values = torch.arange(LEVELS, device=low.device, dtype=torch.float64)
    low, high = low.to(torch.float64)[..., None], high.to(torch.float64)[..., None]
    # Python floats: float64, as PIL computes (a tensor divided, not a reciprocal multiplied)
    scale = torch.full_like(low, BYTE_MAX).div((high - low).clamp(min=1))
    mapped = (values * scale - low * scale).trunc().clamp(0, BYTE_MAX)
    return torch.where(high > low, mapped, values).to(torch.uint8)


def equalize_luts(histograms: torch.Tensor) -> torch.Tensor:
    """ImageOps.equalize: (..., 256) counts -> (..., 256) uint8 tables. The step is the count of
    all but the highest present value over 255; entry i is (step // 2 + count below i) // step;
    identity with fewer than two present values or a step of 0."""
    histograms = histograms.to(torch.int64)
    values = torch.arange(LEVELS, device=histograms.device)
    present = histograms > 0
    highest = torch.where(present, values, -1).amax(-1, keepdim=True)
    top_count = histograms.gather(-1, highest.clamp(min=0))
    step = (histograms.sum(-1, keepdim=True) - top_count) // BYTE_MAX
    below = histograms.cumsum(-1) - histograms
    mapped = (step // 2 + below) // step.clamp(min=1)
    usable = (present.sum(-1, keepdim=True) > 1) & (step > 0)
    return torch.where(usable, mapped.clamp(max=BYTE_MAX), values).to(torch.uint8)


def grey_levels(rgb: torch.Tensor) -> torch.Tensor:
    """PIL's "L" conversion of (..., 3) 8-bit values (any numeric dtype) -> (...,) int32."""
    r, g, b = (rgb[..., i].to(torch.int32) for i in range(3))
    weights = GREY_WEIGHTS
    return (r * weights[0] + g * weights[1] + b * weights[2] + GREY_ROUNDING) >> GREY_SHIFT


def contrast_luts(grey_histograms: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """ImageEnhance.Contrast: (..., 256) grey-level counts of each frame -> (..., 256) uint8
    tables blending every value with the frame's mean grey level, int(mean + 0.5)."""
    values = torch.arange(LEVELS, device=grey_histograms.device, dtype=torch.float64)
    counts = grey_histograms.to(torch.float64)
    mean = (counts * values).sum(-1, keepdim=True) / counts.sum(-1, keepdim=True).clamp(min=1)
    level = (mean + 0.5).floor()
    factor = torch.as_tensor(factor, dtype=torch.float32, device=grey_histograms.device)
    if factor.ndim:
        factor = factor.reshape(*factor.shape, *[1] * (grey_histograms.ndim - factor.ndim))
    return blend(level.expand_as(counts), values, factor).to(torch.uint8)


# --- warps ---------------------------------------------------------------------------------


def pil_affine(name: str, argument: float, width: int, height: int) -> tuple[float, ...]:
    """PIL's AFFINE coefficients (a, b, c, d, e, f) of a warp operation, as timm calls it:
    output pixel (x, y) samples the input at (a x + b y + c, d x + e y + f), both measured
    from pixel corners. Rotate is PIL's Image.rotate: counter-clockwise about the centre."""
    if name == "Rotate":
        angle = -math.radians(argument)
        a, b, d, e = math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle)
        cx, cy = width / 2, height / 2
        return a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy
    if name == "ShearX":
        return 1.0, argument, 0.0, 0.0, 1.0, 0.0
    if name == "ShearY":
        return 1.0, 0.0, 0.0, argument, 1.0, 0.0
    if name == "TranslateX":
        return 1.0, 0.0, argument * width, 0.0, 1.0, 0.0
    if name == "TranslateY":
        return 1.0, 0.0, 0.0, 0.0, 1.0, argument * height
    raise ValueError(f"{name} is not a warp operation")


def warp_matrix(name: str, argument: float, width: int, height: int) -> np.ndarray:
    """(2, 3) float64 map from an output pixel's index to the input position it samples, both
    measured from pixel centres (OpenCV's WARP_INVERSE_MAP and grid_sample's convention): PIL's
    corner-based offsets move by half a pixel through the linear part."""
    a, b, c, d, e, f = pil_affine(name, argument, width, height)
    return np.array([[a, b, c + 0.5 * (a + b - 1)], [d, e, f + 0.5 * (d + e - 1)]], np.float64)
