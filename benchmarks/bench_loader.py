"""Pretraining loader throughput: decoded, cropped, flipped and masked clips/s per worker.

One loader worker (the stream `PretrainClips` yields inside a DataLoader worker), pinned to one
core, over synthetic JPEG shards of 16 x 224x224 clips with one moving object each. Rows: tube
and trajectory masks, with and without the multi-scale crop; plus the decode-only floor.
Goal: >= 200 clips/s per core at 16 x 224^2 JPEG.

    python benchmarks/bench_loader.py [--clips 192]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reader import pin_to_one_core, write_shards  # noqa: E402

from smile_data.shards.reader import read_samples  # noqa: E402
from smile_train.data import PretrainClips  # noqa: E402
from smile_train.settings import PretrainSettings  # noqa: E402


def clips_per_second(stream, count: int) -> float:
    """Clips per second of this process's CPU time: on a shared machine wall time mostly
    measures the neighbours (the loader worker is one single-threaded process)."""
    iterator = iter(stream)
    next(iterator)  # open the first shard and fill the shuffle buffer outside the timing
    start = time.process_time()
    for _ in itertools.islice(iterator, count):
        pass
    return count / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=192, help="clips in the shards")
    parser.add_argument("--measure", type=int, default=150, help="clips timed per row")
    args = parser.parse_args()
    pinned = pin_to_one_core()
    with tempfile.TemporaryDirectory() as folder:
        urls = write_shards(Path(folder), args.clips, frames=16, size=224, codec="jpg")
        rows = [("decode only (read_samples)", clips_per_second(itertools.cycle(read_samples(urls)), args.measure))]
        for mask, crop in [("tube", "none"), ("trajectory", "none"), ("trajectory", "multiscale")]:
            settings = PretrainSettings(input_size=224, frames=16, num_workers=0, mask=mask, crop=crop,
                                        shuffle_buffer=64)
            rate = clips_per_second(PretrainClips(urls, settings), args.measure)
            rows.append((f"{mask} mask, crop {crop}, flip, 2 masks", rate))
    print(f"loader throughput, one worker ({pinned}), 16 x 224x224 JPEG clips, per CPU second")
    print(f"{'pipeline':<42}{'clips/s':>10}{'ms/clip':>10}")
    for name, rate in rows:
        print(f"{name:<42}{rate:>10.1f}{1000 / rate:>10.2f}")


if __name__ == "__main__":
    main()
