"""Deterministic H.264 re-encoding of a video for `smile-data pack --store video`.

A source video is decoded frame by frame (the same safe decoder the trainer uses), each frame
resized so its short side is `short_side`, and encoded with libx264 on one thread into an MP4
held in memory. One thread, fixed options and FFmpeg's bit-exact flags make the bytes a pure
function of the input and the settings (with a given FFmpeg/x264 build). Keyframes come every
`keyframe_interval` frames exactly (no scene-cut keyframes, closed GOPs), so a random window
never needs more than `keyframe_interval - 1` frames decoded before its first frame, and every
fourth frame is a reference: the others are decoded only when a window wants them. With
`fast_decode` (the default) the stream is coded the way x264's `fastdecode` tune codes it:
CAVLC instead of CABAC, no deblocking filter, no weighted prediction; decoding then costs about
a third less for about 15 % more bytes at the same crf (docs/data.md has the table).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

import av
from av.codec.context import Flags
import cv2
import numpy as np

from smile_data.video.decode import OpenVideo, VideoInfo, probe_video
from smile_data.video.limits import VideoLimits

ENCODER = "libx264"
PIXEL_FORMAT = "yuv420p"  # chroma is subsampled by two: frame sides must be even
ENCODE_THREADS = 1  # x264's output depends on its thread count: one thread, one result
# Always B_FRAMES B-frames between references and no B-frame a reference: a decoder skips
# every B-frame a window does not want (3 of 4 frames), see docs/data.md.
B_FRAMES, B_ADAPT, B_PYRAMID = 3, 0, "none"
# x264's `fastdecode` tune: the entropy coder and in-loop filter that cost the decoder most.
FAST_DECODE_PARAMS = "cabac=0:no-deblock=1:weightb=0:weightp=0"
# x264's macroblock-tree rate control gave different bytes now and then for the same frames
# (about one run in ten, more under load); without it the output was the same in every trial.
MB_TREE = 0
MAX_FPS_DENOMINATOR = 1001 * 1000  # exact NTSC rates; anything finer is rounded


@dataclass(frozen=True)
class EncodeSettings:
    short_side: int       # target short side in pixels; 0 keeps the source size
    keyframe_interval: int
    crf: int              # x264 constant rate factor (quality; 23 is x264's default)
    preset: str           # x264 speed preset
    fast_decode: bool = True  # x264's fastdecode coding tools (module docstring)
    b_frames: int = B_FRAMES  # non-reference B-frames between reference frames


def even_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """(width, height) scaled so the short side is `short_side` (0 keeps it), both even."""
    scale = 1.0 if short_side <= 0 else short_side / min(width, height)
    return (max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2)))


def _resized(frames: Iterable[np.ndarray], size: tuple[int, int]) -> Iterable[np.ndarray]:
    for frame in frames:
        if (frame.shape[1], frame.shape[0]) == size:
            yield frame
        else:
            shrinking = size[0] < frame.shape[1]
            yield cv2.resize(frame, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def encode_frames(frames: Iterable[np.ndarray], size: tuple[int, int], fps: Fraction,
                  s: EncodeSettings) -> bytes:
    """MP4 bytes of (H, W, 3) uint8 RGB frames of `size` = (width, height) at `fps`."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as output:
        stream = output.add_stream(ENCODER, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = PIXEL_FORMAT
        stream.codec_context.thread_count = ENCODE_THREADS
        stream.codec_context.flags |= Flags.bitexact
        interval = s.keyframe_interval
        params = (f"keyint={interval}:min-keyint={interval}:scenecut=0:"
                  f"bframes={s.b_frames}:b-adapt={B_ADAPT}:b-pyramid={B_PYRAMID}:mbtree={MB_TREE}:"
                  f"threads={ENCODE_THREADS}:lookahead-threads={ENCODE_THREADS}")
        if s.fast_decode:
            params += ":" + FAST_DECODE_PARAMS
        stream.options = {"preset": s.preset, "crf": str(s.crf), "x264-params": params}
        # OpenCV's conversion reads exactly the frame (swscale's from RGB gave a different
        # result now and then: not deterministic)
        planes = (cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420) for frame in frames)  # (3H/2, W) each
        mux_frames(output, stream, (av.VideoFrame.from_ndarray(p, format=PIXEL_FORMAT) for p in planes))
    return buffer.getvalue()


def mux_frames(output: av.container.OutputContainer, stream: av.video.stream.VideoStream,
               frames: Iterable[av.VideoFrame]) -> None:
    """Encode `frames` on `stream` and write the packets to `output`, then flush the packets
    the encoder still holds (B-frames, lookahead)."""
    for frame in frames:
        for packet in stream.encode(frame):
            output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)


def reencode_video(data: bytes, s: EncodeSettings,
                   limits: VideoLimits = VideoLimits()) -> tuple[bytes, VideoInfo]:
    """The video re-encoded with `s` (decoded safely within `limits`); returns the new bytes and
    their probe. Raises VideoError if the source cannot be decoded."""
    with OpenVideo(data, limits) as source:
        size = even_size(source.info.width, source.info.height, s.short_side)
        fps = Fraction(source.info.fps).limit_denominator(MAX_FPS_DENOMINATOR)
        encoded = encode_frames(_resized(source.iter_frames(), size), size, fps, s)
    return encoded, probe_video(encoded, limits)
