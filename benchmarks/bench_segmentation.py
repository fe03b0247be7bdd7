"""Segmentation speed on CPU: ms per 512x512 image (a table; nothing is asserted).

    .venv/bin/python benchmarks/bench_segmentation.py [--images 8] [--side 512] [--threads 1]

Times `ClassicalSegmenter.segment` (border colour model + GrabCut + clean-up + feathering) on
synthetic single-object renders (textured shapes on plain and gradient backgrounds, with noise):
the defaults (GrabCut at work side 256, edge refined at full size), full-size GrabCut, no edge
refinement, other iteration counts; then clean-up + feathering alone, and the build's
`Extractor.extract_batch` (segment, crop, filters) with one thread and with one per core.
Reports median and 90th percentile ms/image and the mean IoU against the known masks, so speed
is never bought with quality unseen.
"""

from __future__ import annotations

import dataclasses
import os
import time

import cv2
import numpy as np

from command_line import Option, benchmark_parser  # this script's folder

from smile_data.objects.extract import Extractor
from smile_data.objects.segment import ClassicalSegmenter, finish_alpha
from smile_data.objects.settings import SegmentationSettings
from smile_data.vocabulary import load_vocabulary

PERCENTILE = 90
SHAPES = ("disc", "star", "blob")


def render(side: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """(side, side, 3) uint8 render of one textured shape and its (side, side) bool mask."""
    rng = np.random.default_rng([index, side])
    ys, xs = np.mgrid[0:side, 0:side] / side
    start, end = rng.uniform(90, 240, (2, 3))
    weight = (xs + ys) / 2 if index % 2 else np.zeros_like(xs)  # gradient or plain
    image = start + (end - start) * weight[..., None]
    mask = np.zeros((side, side), np.uint8)
    centre = (int(side * rng.uniform(0.4, 0.6)), int(side * rng.uniform(0.4, 0.6)))
    shape = SHAPES[index % len(SHAPES)]
    if shape == "disc":
        cv2.circle(mask, centre, int(side * 0.28), 1, -1)
    elif shape == "star":
        angles = np.linspace(0, 2 * np.pi, 14, endpoint=False)
        radii = side * np.where(np.arange(14) % 2 == 0, 0.38, 0.16)
        points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
    else:
        for _ in range(5):
            offset = rng.integers(-side // 8, side // 8, 2)
            cv2.ellipse(mask, (centre[0] + int(offset[0]), centre[1] + int(offset[1])),
                        (int(side * 0.15), int(side * 0.09)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    base = rng.uniform(0, 110, 3)
    texture = base + 35 * np.stack([np.sin(xs * 50), np.cos(ys * 37), np.sin((xs + ys) * 29)], -1)
    image[mask > 0] = texture[mask > 0]
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask > 0


def time_calls(function, images: list[np.ndarray]) -> tuple[list[float], list]:
    timings, outputs = [], []
    function(images[0])  # warm-up (first-call allocations)
    for image in images:
        start = time.perf_counter()
        outputs.append(function(image))
        timings.append((time.perf_counter() - start) * 1000)
    return timings, outputs


def mean_iou(alphas: list[np.ndarray], masks: list[np.ndarray]) -> float:
    ious = [((a >= 0.5) & m).sum() / max(1, ((a >= 0.5) | m).sum()) for a, m in zip(alphas, masks)]
    return float(np.mean(ious))


def main() -> None:
    args = benchmark_parser(__doc__.splitlines()[0], [
        Option("--images", 8),
        Option("--side", 512),
        Option("--threads", 1, "OpenCV threads (1: one core)"),
    ]).parse_args()
    cv2.setNumThreads(args.threads)
    renders = [render(args.side, i) for i in range(args.images)]
    images, masks = [r[0] for r in renders], [r[1] for r in renders]
    base = SegmentationSettings()
    cases = [
        ("defaults (256 + edge refinement)", base),
        ("full size (work side 512)", dataclasses.replace(base, work_side=args.side)),
        ("work side 256, no edge refinement", dataclasses.replace(base, refine_iterations=0)),
        ("2 GrabCut iterations", dataclasses.replace(base, grabcut_iterations=2)),
        ("10 GrabCut iterations", dataclasses.replace(base, grabcut_iterations=10)),
        ("border model only (no GrabCut)", dataclasses.replace(base, grabcut_iterations=0,
                                                                refine_iterations=0)),
    ]
    print(f"{args.images} renders of {args.side}x{args.side}, OpenCV threads {args.threads}\n")
    print(f"| {'step':36s} | ms/img median | ms/img p{PERCENTILE} | mean IoU |")
    print(f"|{'-' * 38}|---------------|------------|----------|")
    for label, settings in cases:
        segmenter = ClassicalSegmenter(settings)
        timings, alphas = time_calls(segmenter.segment, images)
        print(f"| {label:36s} | {np.median(timings):13.1f} | {np.percentile(timings, PERCENTILE):10.1f}"
              f" | {mean_iou(alphas, masks):8.4f} |")
    timings, _ = time_calls(lambda m: finish_alpha(m, base.feather_px), masks)
    print(f"| {'clean-up + feathering only':36s} | {np.median(timings):13.1f} | "
          f"{np.percentile(timings, PERCENTILE):10.1f} | {'-':>8s} |")
    cat = load_vocabulary().by_name("cat")
    for workers in sorted({1, os.cpu_count() or 1}):
        extractor = Extractor(dataclasses.replace(base, segment_workers=workers), "cpu")
        extractor.extract_batch(images[:1], cat)  # warm-up
        start = time.perf_counter()
        extractor.extract_batch(images, cat)
        per_image = (time.perf_counter() - start) * 1000 / len(images)
        label = f"extract_batch, {workers} thread(s)"
        print(f"| {label:36s} | {per_image:13.1f} | {'(mean)':>10s} | {'-':>8s} |")

if __name__ == "__main__":
    main()
