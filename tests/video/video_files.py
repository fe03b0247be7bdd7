"""Small videos encoded in the tests: each frame shows its own index, so a test can read back
which frames were decoded."""

from __future__ import annotations

import io

import av
import numpy as np

from smile_data.video.encode import mux_frames

BIT_SIDE = 16        # one bit of the frame number is a BIT_SIDE x BIT_SIDE black or white block
COUNTER_BITS = 10    # frames 0..1023
WIDTH, HEIGHT = BIT_SIDE * COUNTER_BITS, 4 * BIT_SIDE


def counter_frame(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the top row of blocks spells `index` in binary, the rest is a
    moving gradient so the encoder has motion to code."""
    frame = np.zeros((height, width, 3), np.uint8)
    ramp = (np.arange(width)[None, :] + 3 * index + np.arange(height)[:, None]) % 256
    frame[BIT_SIDE:] = ramp[BIT_SIDE:, :, None].astype(np.uint8)
    for bit in range(COUNTER_BITS):
        if index >> bit & 1:
            frame[:BIT_SIDE, bit * BIT_SIDE:(bit + 1) * BIT_SIDE] = 255
    return frame


def read_counter(frame: np.ndarray) -> int:
    """The index a decoded counter_frame shows."""
    value = 0
    for bit in range(COUNTER_BITS):
        block = frame[2:BIT_SIDE - 2, bit * BIT_SIDE + 2:(bit + 1) * BIT_SIDE - 2]
        value |= int(block.mean() > 127) << bit
    return value


def encode_video(frames: list[np.ndarray] | int, fps: int = 25, keyframe_interval: int = 8,
                 b_frames: int = 2, container: str = "mp4") -> bytes:
    """H.264 in an mp4 (or matroska) container, in memory; an int gives that many counter frames."""
    if isinstance(frames, int):
        frames = [counter_frame(i) for i in range(frames)]
    height, width = (frames[0].shape[:2] if frames else (HEIGHT, WIDTH))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as output:
        stream = output.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12", "threads": "1", "x264-params":
                          f"keyint={keyframe_interval}:min-keyint={keyframe_interval}:"
                          f"scenecut=0:bframes={b_frames}"}
        mux_frames(output, stream, (av.VideoFrame.from_ndarray(image, format="rgb24") for image in frames))
    return buffer.getvalue()


def mp4_box(data: bytes, *path: str) -> tuple[int, int]:
    """(payload start, payload end) of the first box at `path` (e.g. "moov", "trak", ...,
    "stsz") of an MP4 with 32-bit box sizes, as our encoder writes them."""
    start, end = 0, len(data)
    for name in path:
        position = start
        while position < end:
            size = int.from_bytes(data[position:position + 4], "big")
            if data[position + 4:position + 8] == name.encode():
                start, end = position + 8, position + size
                break
            position += size
        else:
            raise KeyError(f"no box {name!r} in {path}")
    return start, end


SAMPLE_TABLE = ("moov", "trak", "mdia", "minf", "stbl")


def patch_sample_table(data: bytes, box: str, offset: int, value: int) -> bytes:
    """The MP4 with the 32-bit field at `offset` of the payload of its first track's sample
    table box `box` (stsz, stts, stsc, ctts, stco, ...) set to `value`: a header that lies."""
    start, _ = mp4_box(data, *SAMPLE_TABLE, box)
    patched = bytearray(data)
    patched[start + offset:start + offset + 4] = value.to_bytes(4, "big")
    return bytes(patched)
