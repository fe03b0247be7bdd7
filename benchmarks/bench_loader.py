"""Pretraining loader on clip shards (pre-rendered JPEG clips): clips/s per core against the
decode floor.

One process pinned to one core; every figure is that process's CPU time (time.process_time),
not wall time. The shards hold synthetic 16 x 224x224 JPEG clips with one moving object each,
written with a card and manifest (so the loader verifies every sample's digest, its default).
Rows, taking turns clip by clip so that load on a shared machine slows them alike:

    decode floor     simplejpeg.decode_jpeg of each of the clip's frames into one clip buffer,
                     the JPEG bytes already in memory (no tar, no checks, no crop)
    read_samples     the safe reader: tar parsing, member checks, header sizes, decode
    PretrainClips    one loader worker's stream (integrity checks, decode, crop, flip, masks);
                     with `augment_device: device` the worker's share (the crop and flip run
                     batched on the training device, augment_device.crop_flip_batch)

No clip is timed twice: every row reads the shards once, in order (the loader's stream with its
shard resampling replaced by one pass), the shards hold more clips than are timed, and no
stream is cycled or cached.
Goal: trajectory mask + multi-scale crop + 2 masks >= 0.6 of the decode floor (a worker's
cost: the crop in the worker, or on the device).

    python benchmarks/bench_loader.py [--clips 160]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import simplejpeg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reader import write_shards  # noqa: E402
from command_line import Option  # noqa: E402
from one_core import cpu_seconds_in_turn, load_figures, start_on_one_core  # noqa: E402

from smile_data.shards.reader import iter_tar_samples, read_samples  # noqa: E402
from smile_train.data.loader import PretrainClips  # noqa: E402
from smile_train.settings.pretrain import PretrainSettings  # noqa: E402

FRAMES, SIZE = 16, 224
SHUFFLE_BUFFER = 16
SPARE_CLIPS = 2 * SHUFFLE_BUFFER  # the loader's buffer fill and its first clip are not timed
GOAL_SHARE_OF_FLOOR = 0.6


def decode_floor(urls: list[str]) -> Iterator[np.ndarray]:
    """Each clip's frames decoded into one buffer, from JPEG bytes read beforehand."""
    clips = [[raw[f"{t:02d}.jpg"] for t in range(FRAMES)] for url in urls for raw in iter_tar_samples(url)]
    for frames in clips:
        buffer = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
        for t, data in enumerate(frames):
            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=buffer[t])
        yield buffer


class OnePass(PretrainClips):
    """The loader's stream reading its shards once each, in order, instead of resampling them
    (so that no clip is read twice); the per-sample work is the loader's own."""

    def _shards(self, urls: list[str], rng: np.random.Generator) -> Iterator[dict[str, str]]:
        return iter([{"url": url} for url in urls])


def pretrain_stream(urls: list[str], mask: str, crop: str, placement: str = "loader") -> Iterator[dict]:
    settings = PretrainSettings(input_size=SIZE, frames=FRAMES, num_workers=0, mask=mask, crop=crop,
                                shuffle_buffer=SHUFFLE_BUFFER, augment_device=placement)
    return iter(OnePass(urls, settings))


def main() -> None:
    args, pinned = start_on_one_core(__doc__, [Option("--clips", 160, "clips timed per row")])
    with tempfile.TemporaryDirectory() as folder:
        urls = write_shards(Path(folder), args.clips + SPARE_CLIPS, frames=FRAMES, size=SIZE, codec="jpg")
        rows = {
            "decode floor (simplejpeg, bytes in memory)": decode_floor(urls),
            "read_samples (tar + checks + decode)": read_samples(urls),
            "tube mask, crop none, flip, 2 masks": pretrain_stream(urls, "tube", "none"),
            "trajectory mask, crop none, flip, 2 masks": pretrain_stream(urls, "trajectory", "none"),
            "trajectory mask, multi-scale crop, flip, 2 masks": pretrain_stream(urls, "trajectory", "multiscale"),
            "same, crop and flip on the device (worker's share)": pretrain_stream(urls, "trajectory", "multiscale",
                                                                                  "device"),
        }
        start_load = load_figures()
        # the first clip opens a shard and fills a loader's shuffle buffer, untimed
        seconds = cpu_seconds_in_turn(rows, args.clips)
    floor = args.clips / seconds[next(iter(rows))]
    print(f"clip shards -> loader, one worker ({pinned}), {FRAMES} x {SIZE}x{SIZE} JPEG clips, "
          f"{args.clips} clips per row, per CPU second; load average {start_load} -> {load_figures()}")
    print(f"| {'pipeline':<50} | {'clips/s':>8} | {'ms/clip':>8} | {'of floor':>8} |")
    print(f"| {'---':<50} | {'---:':>8} | {'---:':>8} | {'---:':>8} |")
    for name, spent in seconds.items():
        rate = args.clips / spent
        print(f"| {name:<50} | {rate:8.1f} | {1000 / rate:8.2f} | {rate / floor:8.2f} |")
    print(f"goal: a multi-scale row at >= {GOAL_SHARE_OF_FLOOR} of the floor")


if __name__ == "__main__":
    main()
