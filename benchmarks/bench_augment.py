"""Finetuning loader cost per clip, one pinned core, process CPU time: augmentation on the loader
or on the training device.

Part 1, the augmentation alone on decoded frames (16 x 256x340 photo-like frames -> 224x224):
crop + flip, the released RandAugment (rand-m7-n4-mstd0.5-inc1, before the crop) + crop + flip
(+ the erase box draw), the same with 2 repeated copies; for `augment_device: device`, the
worker's share (the draws) and, for reference, the batched device code run on this CPU.

Part 2, the whole finetuning loader (`FinetuneClips`, the stream one DataLoader worker runs)
over video shards written by `smile-data pack --store video` from K400-like files (the sample
videos looped to 10 s at 30 fps, 320-px short side, H.264 with x264 defaults; re-encoded by the
packer with its defaults at --short-side, the packing default unless given): decode only
(temporal draw + decode of the window), the loader placement (decode + RandAugment + crop + flip
+ erase box) and the device placement's worker (decode + draws). Rows take turns clip by clip,
so load on the shared machine slows all alike; every timed clip is a new window decoded from
the shards (nothing is replayed).

    python benchmarks/bench_augment.py [--clips 48] [--part 1|2] [--short-side 256]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from command_line import Option  # noqa: E402
from one_core import cpu_seconds_in_turn, load_figures, start_on_one_core  # noqa: E402

from smile_data.render.settings import PackSettings  # noqa: E402
from smile_train.data.augment import augmented_copies, draw_copies  # noqa: E402
from smile_train.data.augment_device import augment_batch, collate_padded, pack_draws  # noqa: E402
from smile_train.settings.finetune import FinetuneSettings  # noqa: E402

FRAMES, HEIGHT, WIDTH = 16, 256, 340
DEVICE_BATCH = 8  # clips per batch of the device code timed on this CPU


def photo_like(rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) uint8: smooth gradients with noise, so histogram operations have work."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    base = np.stack([120 + 80 * np.sin(xs / (20 + 7 * c) + ys / 31) for c in range(3)], axis=-1)
    noise = rng.normal(0, 12, (FRAMES, HEIGHT, WIDTH, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def cpu_ms_per_call(work: Callable[[int], object], calls: int) -> float:
    start = time.process_time()
    for index in range(calls):
        work(index)
    return 1000 * (time.process_time() - start) / calls


def augmentation_rows(clips: int) -> list[tuple[str, float]]:
    rng = np.random.default_rng(0)
    frames = [photo_like(rng) for _ in range(8)]
    reference = FinetuneSettings(input_size=224)

    def loader(settings: FinetuneSettings) -> Callable[[int], object]:
        return lambda i: augmented_copies(frames[i % len(frames)], np.random.default_rng(i), settings)

    def worker_draws(i: int) -> object:
        return pack_draws(draw_copies(np.random.default_rng(i), reference, HEIGHT, WIDTH), reference.rand_augment_ops)

    batch = collate_padded([{"video": torch.from_numpy(frames[i]), "frame_size": torch.tensor([HEIGHT, WIDTH]),
                             **pack_draws(draw_copies(np.random.default_rng(i), reference, HEIGHT, WIDTH),
                                          reference.rand_augment_ops)} for i in range(DEVICE_BATCH)])
    device_batches = max(1, clips // (4 * DEVICE_BATCH))
    device_ms = cpu_ms_per_call(lambda i: augment_batch(batch, 224, torch.device("cpu")), device_batches)
    return [
        ("loader: crop + flip (RandAugment off)", cpu_ms_per_call(loader(replace(reference, rand_augment=False)), clips)),
        ("loader: RandAugment m7-n4 + crop + flip", cpu_ms_per_call(loader(reference), clips)),
        ("loader: same, 2 repeated copies", cpu_ms_per_call(loader(replace(reference, repeated_augment=2)), clips)),
        ("device: the worker's draws", cpu_ms_per_call(worker_draws, clips)),
        ("device: augment_batch on this CPU", device_ms / DEVICE_BATCH),
    ]


def pack_k400_like(folder: Path, short_side: int = PackSettings().short_side) -> str:
    """Labelled video shards (`pack --store video`, default settings but the short side) of K400-like videos."""
    from k400_like import write_k400_like  # K400-like sources: 10 s, 30 fps, 320 px, x264 defaults

    from smile_data.render.run import pack_dataset

    sources = write_k400_like(folder / "sources")
    (folder / "train.txt").write_text("".join(f"{path.name} {label}\n" for label, path in enumerate(sources)))
    settings = PackSettings(videos=str(folder / "train.txt"), video_root=str(folder / "sources"), store="video",
                            short_side=short_side)
    pack_dataset(settings, folder / "shards")
    return str(folder / "shards")


def loader_rows(shards: str, clips: int) -> list[tuple[str, float]]:
    from smile_train.data.finetune_loader import FinetuneClips
    from smile_train.data.loader import expand_urls

    base = FinetuneSettings(shards=shards, num_classes=len(os.listdir(Path(shards).parent / "sources")),
                            num_workers=0, shuffle_buffer=8)
    class DecodeOnly(FinetuneClips):
        def _prepare(self, sampler, raw, rng):
            return {"frames": sampler.decode(raw, rng)[1]}

    urls = expand_urls(base.shards)
    rows = {
        "decode only (window draw + decode)": DecodeOnly(urls, base),
        "loader: decode + RandAugment + crop + flip + erase box": FinetuneClips(urls, base),
        "device: decode + draws (the worker's share)": FinetuneClips(urls, replace(base, augment_device="device")),
    }
    # the first clip of each opens a shard and fills the shuffle buffer, untimed
    seconds = cpu_seconds_in_turn({name: iter(dataset) for name, dataset in rows.items()}, clips)
    return [(name, 1000 * seconds[name] / clips) for name in rows]


def print_rows(title: str, rows: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    print(f"| {'per loaded clip':<56} | {'CPU ms':>7} | {'clips/s per core':>16} |")
    print(f"| {'---':<56} | {'---:':>7} | {'---:':>16} |")
    for name, ms in rows:
        print(f"| {name:<56} | {ms:7.1f} | {1000 / ms:16.1f} |")


def main() -> None:
    args, pinned = start_on_one_core(__doc__, [
        Option("--clips", 48, "clips timed per row"),
        Option("--part", "both", choices=("1", "2", "both")),
        Option("--short-side", PackSettings().short_side,
               "short side the K400-like videos are packed at (part 2; the dataset guides pack at 320)"),
    ])
    print(f"finetuning loader, one core ({pinned}), process CPU time; load average {load_figures()}")
    if args.part in ("1", "both"):
        print_rows(f"augmentation alone: {FRAMES} x {HEIGHT}x{WIDTH} decoded frames -> 224x224",
                   augmentation_rows(args.clips))
    if args.part in ("2", "both"):
        with tempfile.TemporaryDirectory() as tmp:
            shards = pack_k400_like(Path(tmp), args.short_side)
            print_rows(f"FinetuneClips over `pack --store video` shards ({args.short_side}-px short side), "
                       f"16 frames at stride 4 -> 224x224", loader_rows(shards, args.clips))
    print(f"(load average at the end {load_figures()})")


if __name__ == "__main__":
    main()
