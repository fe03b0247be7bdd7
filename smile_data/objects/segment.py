"""Foreground segmentation that needs no weights, and the mask clean-up every segmenter shares.

`ClassicalSegmenter` suits single-object renders: it models the background from the image border
(a smooth colour surface fitted in Lab, robust to the object touching the border), seeds GrabCut
with what clearly differs from that background, and refines. Large images are segmented at
`work_side` and only the band around the upscaled mask's edge is solved again at full size.
Every segmenter's mask then goes through `clean_mask` (largest connected component, holes
filled) and `soft_alpha` (feathered edge).
"""

from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np
from scipy import ndimage

from smile_data.objects.settings import SegmentationSettings

# GrabCut seeds its colour models with k-means drawn from OpenCV's thread-local RNG; resetting it
# before each call makes the mask a pure function of the image (resume = uninterrupted run).
GRABCUT_RNG_SEED = 0x5EED
GRABCUT_MODEL_SIZE = 65  # OpenCV's GMM state: 5 components x (1 weight + 3 means + 9 covariances)
MIN_BORDER_PX = 2
ROBUST_FIT_ROUNDS = 2
MAD_TO_SIGMA = 1.4826
ROBUST_TRIM_SIGMAS = 3.0  # background samples further than this from the fit are dropped
SIGMA_FLOOR = 1e-6  # a perfectly flat background still gets a positive spread
ALPHA_SOLID = 0.5  # soft alpha at or above this counts as object


class Segmenter(Protocol):
    """rgb (H, W, 3) uint8 -> alpha (H, W) float32 in [0, 1].

    `prompt` names the object (text-prompted segmenters use it); `hint`, an optional (H, W)
    bool array, marks where the object may be — alpha is zero everywhere else.
    """

    name: str

    def segment(self, rgb: np.ndarray, prompt: str = "",
                hint: np.ndarray | None = None) -> np.ndarray: ...


def box_hint(shape: tuple[int, int], box, exclude=()) -> np.ndarray:
    """(H, W) bool hint: inside box (x0, y0, x1, y1), minus the `exclude` boxes."""
    hint = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    hint[y0:y1, x0:x1] = True
    for ex0, ey0, ex1, ey1 in exclude:
        hint[ey0:ey1, ex0:ex1] = False
    return hint


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """Largest 8-connected component of a boolean (H, W) mask, with its holes filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros(mask.shape, bool)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return ndimage.binary_fill_holes(labels == largest)


def soft_alpha(mask: np.ndarray, feather_px: float) -> np.ndarray:
    """(H, W) float32 alpha: a linear ramp `feather_px` wide centred on the mask edge.

    Thresholding the result at 0.5 gives the mask back exactly.
    """
    if feather_px <= 0 or not mask.any():
        return mask.astype(np.float32)
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    signed = np.where(mask, inside - 0.5, 0.5 - outside)  # pixel centres: +-0.5 at the edge
    return np.clip(0.5 + signed / feather_px, 0.0, 1.0).astype(np.float32)


def finish_alpha(mask: np.ndarray, feather_px: float, hint: np.ndarray | None = None) -> np.ndarray:
    """The shared post-processing: clean the raw mask, feather it, zero it outside the hint."""
    if hint is not None:
        mask = mask & hint
    alpha = soft_alpha(clean_mask(mask), feather_px)
    if hint is not None:
        alpha[~hint] = 0.0  # the feathered ramp must not spill past the hint either
    return alpha


def alpha_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight (y0, y1, x0, x1) box of alpha > 0, or None when alpha is empty."""
    rows = np.flatnonzero(alpha.any(axis=1))
    cols = np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _resize_to_work_side(rgb: np.ndarray, work_side: int) -> tuple[np.ndarray, float]:
    scale = min(1.0, work_side / max(rgb.shape[:2]))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _sample_region(shape: tuple[int, int], border_fraction: float, hint) -> np.ndarray:
    """(H, W) bool: where background is sampled — the border, or everything outside the hint."""
    height, width = shape
    if hint is not None and not hint.all():
        return ~hint
    region = np.zeros(shape, bool)
    border = max(MIN_BORDER_PX, round(border_fraction * min(height, width)))
    region[:border] = region[-border:] = True
    region[:, :border] = region[:, -border:] = True
    return region


def _surface_terms(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, 6) quadratic terms of normalised pixel coordinates."""
    y = ys / max(1, shape[0] - 1) - 0.5
    x = xs / max(1, shape[1] - 1) - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def background_residual(lab: np.ndarray, region: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Distance of each pixel to a smooth background colour surface fitted on `region`.

    lab: (H, W, 3) float32. Returns the (H, W) residual and the median and robust sigma of the
    residual over the background samples that survived trimming. The fit is repeated without
    the worst samples, so parts of the object that touch the border do not bend the surface.
    """
    ys, xs = np.nonzero(region)
    terms = _surface_terms(ys.astype(np.float32), xs.astype(np.float32), lab.shape[:2])
    values = lab[ys, xs]  # (N, 3)
    keep = np.ones(len(values), bool)
    for _ in range(ROBUST_FIT_ROUNDS):
        coefficients, *_ = np.linalg.lstsq(terms[keep], values[keep], rcond=None)  # (6, 3)
        sample_residual = np.linalg.norm(values - terms @ coefficients, axis=1)
        median = np.median(sample_residual[keep])
        sigma = MAD_TO_SIGMA * np.median(np.abs(sample_residual[keep] - median)) + SIGMA_FLOOR
        keep = sample_residual <= median + ROBUST_TRIM_SIGMAS * sigma
    grid_y, grid_x = np.mgrid[0 : lab.shape[0], 0 : lab.shape[1]].astype(np.float32)
    all_terms = _surface_terms(grid_y.ravel(), grid_x.ravel(), lab.shape[:2])
    surface = (all_terms @ coefficients).reshape(lab.shape)
    residual = np.linalg.norm(lab - surface, axis=2)
    return residual, float(median), float(sigma)


def _grabcut(rgb: np.ndarray, seeds: np.ndarray, iterations: int) -> np.ndarray:
    """Boolean (H, W) foreground of GrabCut started from the (H, W) uint8 GC_* `seeds`."""
    cv2.setRNGSeed(GRABCUT_RNG_SEED)
    bgd_model = np.zeros((1, GRABCUT_MODEL_SIZE), np.float64)
    fgd_model = np.zeros((1, GRABCUT_MODEL_SIZE), np.float64)
    seeds = seeds.copy()
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), seeds, None, bgd_model, fgd_model,
                iterations, cv2.GC_INIT_WITH_MASK)
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


class ClassicalSegmenter:
    """Border colour model + GrabCut; an optional hint (for photos) marks where the object is."""

    name = "classical"

    def __init__(self, settings: SegmentationSettings):
        self.settings = settings

    def segment(self, rgb: np.ndarray, prompt: str = "", hint: np.ndarray | None = None) -> np.ndarray:
        """alpha (H, W) float32 of the main object; `hint` (H, W) bool: where it may be."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
        small, scale = _resize_to_work_side(rgb, self.settings.work_side)
        small_hint = hint
        if hint is not None and scale != 1.0:
            size = (small.shape[1], small.shape[0])
            small_hint = cv2.resize(hint.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        mask = self._foreground(small, small_hint)
        if scale != 1.0:
            size = (rgb.shape[1], rgb.shape[0])
            mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
            mask = self._refine_edge(rgb, mask)
        return finish_alpha(mask, self.settings.feather_px, hint)

    def _refine_edge(self, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Full-resolution GrabCut in a band around an upscaled mask's edge (fixed elsewhere)."""
        band, iterations = self.settings.refine_band_px, self.settings.refine_iterations
        if iterations <= 0 or band <= 0 or not mask.any() or mask.all():
            return mask
        kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
        inner = cv2.erode(mask.astype(np.uint8), kernel)
        outer = cv2.dilate(mask.astype(np.uint8), kernel)
        seeds = np.full(mask.shape, cv2.GC_BGD, np.uint8)
        seeds[outer > 0] = cv2.GC_PR_BGD
        seeds[mask] = cv2.GC_PR_FGD
        seeds[inner > 0] = cv2.GC_FGD
        # Only the band's box (plus a band of background for the colour model) needs solving.
        y0, y1, x0, x1 = alpha_box(outer)
        y0, x0 = max(0, y0 - band), max(0, x0 - band)
        y1, x1 = min(mask.shape[0], y1 + band), min(mask.shape[1], x1 + band)
        window = seeds[y0:y1, x0:x1].copy()
        if not (window == cv2.GC_BGD).any():
            return mask
        refined = mask.copy()
        refined[y0:y1, x0:x1] = _grabcut(rgb[y0:y1, x0:x1], window, iterations)
        return refined

    def _foreground(self, rgb: np.ndarray, hint: np.ndarray | None) -> np.ndarray:
        """Raw boolean (H, W) foreground before clean-up."""
        settings = self.settings
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
        region = _sample_region(rgb.shape[:2], settings.border_fraction, hint)
        residual, median, sigma = background_residual(lab, region)
        threshold = max(settings.min_contrast, median + settings.contrast_sigmas * sigma)
        seeds = np.full(rgb.shape[:2], cv2.GC_PR_BGD, np.uint8)
        seeds[residual > threshold] = cv2.GC_PR_FGD
        seeds[region & (residual <= threshold)] = cv2.GC_BGD
        if hint is not None:
            # GrabCut's classic start from a box: all of it may be object, outside is not.
            seeds[~region] = cv2.GC_PR_FGD
            seeds[region] = cv2.GC_BGD
        if not (seeds == cv2.GC_PR_FGD).any():
            return np.zeros(rgb.shape[:2], bool)
        if (seeds == cv2.GC_BGD).any() and settings.grabcut_iterations > 0:
            return _grabcut(rgb, seeds, settings.grabcut_iterations)
        return seeds == cv2.GC_PR_FGD
