"""Finetuning augmentation cost per clip, on one core: RandAugment, crop, flip, erasing.

Clips of 16 frames at the size packed shards hold (short side 256, 4:3 -> 256 x 340) are
augmented to 224 x 224 by `smile_train.augment`: crop + flip only, then with the released
RandAugment (rand-m7-n4-mstd0.5-inc1, before the crop), and with 2 repeated copies. Erasing is
timed separately, on a normalised batch of 16 clips (it runs in the training step).

    python benchmarks/bench_augment.py [--clips 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reader import pin_to_one_core  # noqa: E402

from smile_train.augment import augmented_copies, draw_erase_box, erase_boxes  # noqa: E402
from smile_train.finetune_settings import FinetuneSettings  # noqa: E402

FRAMES, HEIGHT, WIDTH = 16, 256, 340
BATCH = 16


def photo_like(rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8: smooth gradients with noise, so histogram operations have work."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([120 + 80 * np.sin(xs / (20 + 7 * c) + ys / 31) for c in range(3)], axis=-1)
    noise = rng.normal(0, 12, (FRAMES, HEIGHT, WIDTH, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def ms_per_clip(settings: FinetuneSettings, clips: list[np.ndarray]) -> float:
    start = time.perf_counter()
    for index, clip in enumerate(clips):
        augmented_copies(clip, np.random.default_rng(index), settings)
    return 1000 * (time.perf_counter() - start) / len(clips)


def erase_ms_per_batch(repeats: int) -> float:
    rng = np.random.default_rng(0)
    videos = torch.randn(BATCH, 3, FRAMES, 224, 224)
    boxes = torch.tensor([draw_erase_box(rng, 224, 224, 1.0) for _ in range(BATCH)])
    start = time.perf_counter()
    for _ in range(repeats):
        erase_boxes(videos, boxes, "pixel", torch.Generator().manual_seed(0))
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=40, help="clips timed per row")
    args = parser.parse_args()
    pinned = pin_to_one_core()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    clips = [photo_like(rng) for _ in range(min(args.clips, 8))]
    clips = (clips * (args.clips // len(clips) + 1))[: args.clips]
    reference = FinetuneSettings(input_size=224)
    rows = [
        ("crop + flip (RandAugment off)", ms_per_clip(replace(reference, rand_augment=False), clips)),
        ("RandAugment m7-n4 + crop + flip", ms_per_clip(reference, clips)),
        ("same, 2 repeated copies", ms_per_clip(replace(reference, repeated_augment=2), clips)),
    ]
    print(f"finetuning augmentation, one core ({pinned}), {FRAMES} x {HEIGHT}x{WIDTH} -> 224x224")
    print(f"{'per loaded clip':<36}{'ms':>10}{'clips/s':>10}")
    for name, ms in rows:
        print(f"{name:<36}{ms:>10.1f}{1000 / ms:>10.1f}")
    print(f"{'erasing (pixel), batch of 16, CPU':<36}{erase_ms_per_batch(5):>10.1f}")


if __name__ == "__main__":
    main()
