"""Decoded clips per second from shards, on one CPU core.

Writes its own shards of synthetic clips (16 frames of 224x224 by default) into a temporary
folder, then times: reading raw samples (tar only), the safe reader (`read_samples`: tar +
JPEG/PNG decode + checks), webdataset.WebDataset + `decode_webdataset_sample`, and a full
`validate_dataset` pass (which also hashes). Prints a table.

    .venv/bin/python benchmarks/bench_reader.py [--clips 96] [--frames 16] [--size 224]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import webdataset

# The synthetic clips are the shard tests' fixture (tests/shards/synthetic_clips.py), importable
# from the repository root; the spawned writer processes inherit this path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from command_line import Option  # noqa: E402
from one_core import start_on_one_core  # noqa: E402

from smile_data.shards.reader import (  # noqa: E402
    decode_webdataset_sample, iter_tar_samples, read_samples,
)
from smile_data.shards.runner import write_dataset  # noqa: E402
from smile_data.shards.validate import validate_dataset  # noqa: E402
from tests.shards.synthetic_clips import SyntheticClips  # noqa: E402

CLIPS_PER_TASK = 4
CLIPS_PER_SHARD = 32


def peak_resident_mb() -> float:
    """VmHWM: this process's peak resident memory in MiB (unlike ru_maxrss, not carried over
    from the parent across exec); NaN where /proc does not tell."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_shards(folder: Path, clips: int, frames: int, size: int, codec: str) -> list[str]:
    task = SyntheticClips(samples_per_task=CLIPS_PER_TASK, frames=frames, height=size, width=size,
                          codec=codec)
    card = write_dataset(folder, run_task=task, task_count=-(-clips // CLIPS_PER_TASK),
                         samples_per_task=CLIPS_PER_TASK, fingerprint={"codec": codec}, card={},
                         shard_size=CLIPS_PER_SHARD)
    return [str(folder / shard["name"]) for shard in card["shards"]]


def timed(count_items: Callable[[], Iterable], repeats: int) -> tuple[float, int]:
    """Best-of-`repeats` seconds for one pass, and the item count of a pass."""
    best, count = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = sum(1 for _ in count_items())
        best = min(best, time.perf_counter() - start)
    return best, count


def measure(folder: Path, urls: list[str], repeats: int) -> list[tuple[str, float, int]]:
    def raw():
        for url in urls:
            yield from iter_tar_samples(url)

    def ours():
        return read_samples(urls)

    def theirs():
        return webdataset.WebDataset(urls, shardshuffle=False).map(decode_webdataset_sample)

    def validated():
        return range(validate_dataset(folder).samples)

    cases = [("tar only (iter_tar_samples)", raw), ("read_samples", ours),
             ("WebDataset + decode_webdataset_sample", theirs), ("validate (full)", validated)]
    return [(name, *timed(run, repeats)) for name, run in cases]


def main() -> None:
    args, where = start_on_one_core(__doc__.splitlines()[0], [
        Option("--clips", 96),
        Option("--frames", 16),
        Option("--size", 224),
        Option("--repeats", 3),
        Option("--codecs", "jpg,png"),
    ])
    print(f"{args.clips} clips x {args.frames} frames x {args.size}x{args.size}, one CPU ({where}),"
          f" best of {args.repeats}")
    print(f"| codec | reader | clips/s | frames/s | MB/s |")
    print(f"| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for codec in args.codecs.split(","):
            folder = Path(tmp) / codec
            urls = write_shards(folder, args.clips, args.frames, args.size, codec)
            megabytes = sum(Path(u).stat().st_size for u in urls) / 1e6
            for name, seconds, count in measure(folder, urls, args.repeats):
                print(f"| {codec} | {name} | {count / seconds:.1f} | "
                      f"{count * args.frames / seconds:.0f} | {megabytes / seconds:.1f} |")


if __name__ == "__main__":
    main()
