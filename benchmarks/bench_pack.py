"""What packing a dataset costs: CPU time and disk per video or clip, and the decode cost after.

The inputs are K400-like videos (k400_like.py: 10 s, 30 fps, 320-px short side, libx264's
defaults). Rows, each one `smile-data pack` run with one worker, pinned to one core (CPU time
of the process and its children):
    --store video --short-side S   whole videos re-encoded (the pack defaults otherwise)
    --store video --copy           whole videos stored as they are (the original bytes)
    (default, clips)               one 16-frame JPEG clip at stride 4 per video, 256-px short side
Per row: videos (or clips) per CPU-second, MB per video (or clip), and the loader's decode cost
of one training clip (ms of CPU): for video shards a random 16-frame window at stride 4 decoded
with its multi-scale crop to 224 (frame index from the pack record), for clip shards the JPEG
frames of one sample decoded. Then the same figures extrapolated to the training sets of four
datasets by frames: packing time scales with the frames decoded from each source, so a
dataset's CPU time is its videos x its frames per video x the per-frame cost measured here
(sources at 320 px; frames per video as assumed in DATASETS, printed); a video sample's bytes
scale with its frames, a clip's do not.

    python benchmarks/bench_pack.py [--windows 32]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from k400_like import FPS, INPUT_SIZE, SECONDS, training_draw, write_k400_like  # noqa: E402
from command_line import Option  # noqa: E402
from one_core import load_average, start_on_one_core  # noqa: E402

from smile_data.render.settings import PackSettings  # noqa: E402
from smile_data.shards.reader import decode_sample, iter_tar_samples  # noqa: E402
from smile_data.shards.video_sample import decode_video_sample, open_video_sample  # noqa: E402

FRAMES_PER_SOURCE = SECONDS * FPS
# Training videos and frames per video (assumed typical lengths: K400 clips are cut to 10 s at
# about 30 fps; SSv2 videos are a few seconds at 12 fps; UCF101 averages about 7 s at 25 fps;
# HMDB51 clips a few seconds at 30 fps). Change them here for better figures.
DATASETS = {"K400": (240_436, 300), "SSv2": (168_913, 48), "UCF101": (9_537, 180), "HMDB51": (3_570, 100)}
ROWS = {  # name -> pack settings
    "video, short side 256 (pack default)": {"store": "video"},
    "video, short side 320": {"store": "video", "short_side": 320},
    "video, --copy (original bytes, 320 px)": {"store": "video", "reencode": False},
    "clips (pack default: 1 x 16 JPEG frames, 256 px)": {},
}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (pack may start workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pack(sources: Path, out: Path, changes: dict) -> tuple[float, list[Path]]:
    """CPU seconds of one pack run, and its shards."""
    from smile_data.render.run import pack_dataset

    start = cpu_seconds()
    card = pack_dataset(PackSettings(videos=str(sources), **changes), out)
    return cpu_seconds() - start, [out / shard["name"] for shard in card["shards"]]


def window_ms(raws: list[dict], windows: int) -> float:
    """CPU ms of one training window with its crop, decoded as the loader does."""
    rng = np.random.default_rng(0)
    samples = [decode_video_sample(raw) for raw in raws]
    start = time.process_time()
    for i in range(windows):
        with open_video_sample(samples[i % len(samples)]) as video:
            indices, box = training_draw(rng, video.info.frames, video.info.height, video.info.width)
            video.frames(indices, crop=box, size=INPUT_SIZE)
    return (time.process_time() - start) / windows * 1000


def clip_ms(raws: list[dict], repeats: int) -> float:
    start = time.process_time()
    for i in range(repeats):
        decode_sample(raws[i % len(raws)])
    return (time.process_time() - start) / repeats * 1000


def measure(sources: Path, folder: Path, windows: int) -> dict[str, tuple[float, float, float]]:
    """Per row: (items per CPU-second, MB per item, decode ms per training clip)."""
    results = {}
    pack(sources, folder / "warm-up", {"store": "video", "short_side": 64})  # imports, untimed
    for number, (name, changes) in enumerate(ROWS.items()):
        seconds, shards = pack(sources, folder / f"row{number}", changes)
        raws = [raw for shard in shards for raw in iter_tar_samples(shard)]
        megabytes = sum(shard.stat().st_size for shard in shards) / len(raws) / 1e6
        decode = window_ms(raws, windows) if changes.get("store") == "video" else clip_ms(raws, windows)
        results[name] = (len(raws) / seconds, megabytes, decode)
    return results


def main() -> None:
    args, pinned = start_on_one_core(__doc__, [Option("--windows", 32, "training clips decoded per row")])
    with tempfile.TemporaryDirectory() as tmp:
        sources = write_k400_like(Path(tmp) / "sources")
        results = measure(sources[0].parent, Path(tmp), args.windows)
    print(f"smile-data pack of {len(sources)} K400-like videos ({SECONDS} s, {FPS} fps, 320-px short "
          f"side), one worker ({pinned}), CPU time; {load_average()}")
    print("| pack | per CPU-second | MB each | decode ms per training clip |")
    print("| --- | ---: | ---: | ---: |")
    for name, (rate, megabytes, decode) in results.items():
        print(f"| {name} | {rate:.2f} | {megabytes:.3f} | {decode:.1f} |")
    print(f"\nextrapolated by frames (a K400-like video is {FRAMES_PER_SOURCE} frames); "
          "CPU-hours of packing on one core, GB of shards")
    print("| dataset | train videos | frames per video (assumed) | "
          + " | ".join(f"{name}: CPU-h, GB" for name in results) + " |")
    print("| --- | ---: | ---: | " + " | ".join("---:" for _ in results) + " |")
    for dataset, (videos, frames) in DATASETS.items():
        equivalent = videos * frames / FRAMES_PER_SOURCE  # in K400-like videos
        cells = []
        for name, (rate, megabytes, _) in results.items():
            stored = equivalent if name.startswith("video") else videos  # a clip: 16 frames
            cells.append(f"{equivalent / rate / 3600:.1f} h, {stored * megabytes / 1000:.1f} GB")
        print(f"| {dataset} | {videos:,} | {frames} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
