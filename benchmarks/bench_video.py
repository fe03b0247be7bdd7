"""Packing choices for `smile-data pack --store video` against the cost of a training window.

The inputs are K400-like videos (k400_like.py: 10 s, 30 fps, 320-px short side, libx264's
defaults). Each row re-encodes them the way `pack --store video` does (smile_data.video.encode)
with one choice of short side, keyframe interval, B-frames and coding tools (`fast`: x264's
fastdecode tools, CAVLC instead of CABAC, no deblocking filter, no weighted prediction; `full`:
x264's usual tools); the first row keeps the authors' input itself. Every row then decodes the
same random 16-frame windows at stride 4 with their multi-scale crop to 224 px:
    ours    as the loader does: the frame index from the pack record, one container open, only
            the frames the window needs, the crop converted from the YUV planes and resized;
    decord  `VideoReader(io.BytesIO(bytes), num_threads=1).get_batch(window)` on the same bytes,
            then the same crop (OpenCV), as the authors' loader.
One process pinned to one core; ms per window are process CPU time, the rows and decoders
taking turns window by window (so load on the shared machine slows all alike). PSNR: the
packed frames against the decoded source frames resized to that size (every 10th frame), in
dB; rows of one size compare with each other.

    python benchmarks/bench_video.py [--windows 48]

The decord column needs the `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from k400_like import (  # noqa: E402
    CLIP_FRAMES, CLIP_STRIDE, INPUT_SIZE, SHORT_SIDE, training_draw, write_k400_like,
)
from command_line import Option  # noqa: E402
from one_core import load_average, start_on_one_core  # noqa: E402

from smile_data.video import OpenVideo, VideoLimits, index_from_record, probe_video  # noqa: E402
from smile_data.video.encode import EncodeSettings, reencode_video  # noqa: E402
from smile_data.sampling import crop_resize_clip  # noqa: E402

PSNR_FRAME_STEP = 10
CRF, PRESET = 23, "veryfast"  # pack's defaults


def choice(short_side: int, interval: int, b_frames: int, fast: bool) -> tuple[str, EncodeSettings]:
    name = f"{short_side} px, keyframe {interval}, B {b_frames}, {'fast' if fast else 'full'}"
    return name, EncodeSettings(short_side, interval, CRF, PRESET, fast_decode=fast, b_frames=b_frames)


CHOICES = [
    choice(320, 32, 3, False), choice(320, 32, 3, True), choice(320, 16, 3, True),
    choice(320, 64, 3, True), choice(320, 32, 0, True), choice(320, 32, 7, True),
    choice(256, 32, 3, False), choice(256, 32, 3, True), choice(256, 64, 3, True),
]


def psnr(videos: list[bytes], sources: list[list[np.ndarray]]) -> float:
    errors = []
    for video, frames in zip(videos, sources):
        with OpenVideo(video) as opened:
            for index, packed in enumerate(opened.iter_frames()):
                if index % PSNR_FRAME_STEP == 0:
                    source = frames[index]
                    if source.shape != packed.shape:
                        source = cv2.resize(source, packed.shape[1::-1], interpolation=cv2.INTER_AREA)
                    errors.append(np.mean((packed.astype(np.float64) - source) ** 2))
    return 10 * np.log10(255.0**2 / np.mean(errors))


class Row:
    """One packing of the videos, with the windows both decoders take from it."""

    def __init__(self, name: str, videos: list[bytes], count: int, seed: int = 0):
        self.name, self.videos = name, videos
        infos = [probe_video(v) for v in videos]
        self.records = [info.index.record() for info in infos]
        rng = np.random.default_rng(seed)
        self.windows = []
        for i in range(count):
            info = infos[i % len(videos)]
            self.windows.append((i % len(videos), *training_draw(rng, info.frames, info.height, info.width)))
        self.seconds = {"ours": 0.0, "decord": 0.0}

    def ours(self, window: int) -> np.ndarray:
        video, indices, box = self.windows[window]
        index = index_from_record(self.records[video], VideoLimits())
        with OpenVideo(self.videos[video], index=index) as opened:
            return opened.frames(indices, crop=box, size=INPUT_SIZE)

    def decord(self, window: int) -> np.ndarray:
        import decord

        video, indices, box = self.windows[window]
        frames = decord.VideoReader(io.BytesIO(self.videos[video]), num_threads=1).get_batch(indices).asnumpy()
        return crop_resize_clip(frames, np.zeros((len(indices), 0, 4), np.float32), box, INPUT_SIZE)[0]

    def time(self, window: int) -> None:
        for decoder in self.seconds:
            start = time.process_time()
            getattr(self, decoder)(window)
            self.seconds[decoder] += time.process_time() - start


def main() -> None:
    args, pinned = start_on_one_core(__doc__, [Option("--windows", 48, "windows timed per row and decoder")])
    with tempfile.TemporaryDirectory() as folder:
        paths = write_k400_like(Path(folder))
        originals = [p.read_bytes() for p in paths]
    sources = []
    for video in originals:
        with OpenVideo(video) as opened:
            sources.append(list(opened.iter_frames()))
    rows = [(Row("authors' input: x264 defaults, 320 px", originals, args.windows), None)]
    for name, settings in CHOICES:
        videos = [reencode_video(v, settings)[0] for v in originals]
        rows.append((Row(name, videos, args.windows), psnr(videos, sources)))
    for row, _ in rows:  # window 0 warms both decoders up, untimed
        row.ours(0), row.decord(0)
    for window in range(1, args.windows):
        for row, _ in rows:
            row.time(window)
    timed = args.windows - 1
    authors = rows[0][0].seconds["decord"] / timed
    print(f"random {CLIP_FRAMES}-frame windows at stride {CLIP_STRIDE} + multi-scale crop to {INPUT_SIZE} of "
          f"{len(originals)} K400-like videos (10 s, 30 fps, {SHORT_SIDE}-px short side), one core "
          f"({pinned}), {timed} windows per cell, CPU time; {load_average()}")
    print("| packing | MB/video | PSNR dB | ours ms/window | decord ms/window (same bytes) | "
          "ours / decord on the authors' input |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row, quality in rows:
        ours, theirs = (row.seconds[d] / timed * 1000 for d in ("ours", "decord"))
        megabytes = sum(map(len, row.videos)) / len(row.videos) / 1e6
        shown = "source" if quality is None else f"{quality:.2f}"
        print(f"| {row.name} | {megabytes:.2f} | {shown} | {ours:.1f} | {theirs:.1f} | "
              f"{authors * 1000 / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
