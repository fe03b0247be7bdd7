"""From an image to the object's cut-out: run the segmenters, filter, keep the best.

With several segmenters and a CLIP model, each image keeps the cut-out whose white composite
scores best against the class text (X-Paste); without CLIP, the first segmenter whose cut-out
passes the filters wins.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from smile_data.objects.clip_score import ClipModelScorer
from smile_data.objects.filters import candidate_reason
from smile_data.objects.segment import ALPHA_SOLID, ClassicalSegmenter, Segmenter, alpha_box
from smile_data.objects.settings import SegmentationSettings
from smile_data.vocabulary import LvisClass

ALPHA_MAX = 255
PNG_COMPRESS_LEVEL = 6


def png_bytes(rgba: np.ndarray) -> bytes:
    """PNG encoding of an (h, w, 4) uint8 array; the same array always gives the same bytes."""
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


@dataclass
class Extraction:
    """What one image gave: the tight RGBA cut-out (None when rejected) and its measurements."""

    rgba: np.ndarray | None  # (h, w, 4) uint8
    reason: str | None  # per-candidate filter failure, None when it passed
    area_fraction: float
    width: int
    height: int
    segmenter: str
    clip_score: float | None = None


def cut_out(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray | None:
    """(H, W, 3) uint8 + (H, W) alpha in [0, 1] -> tight (h, w, 4) uint8 crop, or None if empty."""
    alpha8 = np.round(np.clip(alpha, 0.0, 1.0) * ALPHA_MAX).astype(np.uint8)
    box = alpha_box(alpha8)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return np.dstack([rgb[y0:y1, x0:x1], alpha8[y0:y1, x0:x1]])


def build_segmenters(settings: SegmentationSettings, device: str) -> list[Segmenter]:
    segmenters: list[Segmenter] = []
    for name in settings.segmenters:
        if name == "classical":
            segmenters.append(ClassicalSegmenter(settings))
        else:
            from smile_data.objects.clipseg import ClipSegSegmenter

            segmenters.append(ClipSegSegmenter(settings, device))
    return segmenters


class Extractor:
    """Segmenters + filters + optional CLIP scoring, built once per process."""

    def __init__(self, settings: SegmentationSettings, device: str):
        self.settings = settings
        self.segmenters = build_segmenters(settings, device)
        self.clip_model_scorer = (ClipModelScorer(settings.clip_model, device)
                                  if settings.clip_model else None)

    def clip_model_text(self, lvis_class: LvisClass) -> str:
        return self.settings.clip_text_template.format(name=lvis_class.prompt_name)

    def _measure(self, rgb: np.ndarray, alpha: np.ndarray, segmenter: str) -> Extraction:
        rgba = cut_out(rgb, alpha)
        area = float((alpha >= ALPHA_SOLID).mean())
        height, width = (0, 0) if rgba is None else rgba.shape[:2]
        reason = candidate_reason(area, width, height, self.settings)
        return Extraction(rgba if reason is None else None, reason, area, width, height, segmenter)

    def _segment_all(self, rgb: np.ndarray, lvis_class: LvisClass, hint) -> list[Extraction]:
        results = []
        for segmenter in self.segmenters:
            alpha = segmenter.segment(rgb, lvis_class.prompt_name, hint=hint)
            results.append(self._measure(rgb, alpha, segmenter.name))
        return results

    def extract_batch(self, images, lvis_class: LvisClass, hints=None) -> list[Extraction]:
        """The kept cut-out of each (H, W, 3) uint8 image; `hints`: optional (H, W) bool each.

        Images are segmented in parallel threads (OpenCV and torch release the GIL); the result
        of each image depends on that image alone.
        """
        hints = hints if hints is not None else [None] * len(images)
        workers = min(len(images), self.settings.segment_workers or os.cpu_count() or 1)
        jobs = [(image, lvis_class, hint) for image, hint in zip(images, hints)]
        if workers > 1:
            with ThreadPoolExecutor(workers) as pool:
                per_image = list(pool.map(lambda job: self._segment_all(*job), jobs))
        else:
            per_image = [self._segment_all(*job) for job in jobs]
        passing = [r for results in per_image for r in results if r.reason is None]
        if self.clip_model_scorer is not None and passing:
            text = self.clip_model_text(lvis_class)
            scores = self.clip_model_scorer.score([r.rgba for r in passing], text)
            for result, score in zip(passing, scores):
                result.clip_score = score
        return [self._choose(results) for results in per_image]

    def _choose(self, results: list[Extraction]) -> Extraction:
        passing = [r for r in results if r.reason is None]
        if not passing:
            return results[0]
        if self.clip_model_scorer is None:
            return passing[0]
        return max(passing, key=lambda r: r.clip_score)  # first of equals: segmenter order

    def extract(self, rgb: np.ndarray, lvis_class: LvisClass,
                hint: np.ndarray | None = None) -> Extraction:
        """The kept cut-out of one (H, W, 3) uint8 image; `hint` (H, W) bool: where it may be."""
        return self.extract_batch([rgb], lvis_class, [hint])[0]
