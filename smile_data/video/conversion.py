"""Decoded frames to RGB: only the pixels asked for, straight from the decoder's planes.

8-bit 4:2:0 frames (nearly all H.264 / VP9 / AV1 video) are read from PyAV's plane buffers
without a copy and converted by OpenCV, which is deterministic and about three times faster
than swscale. OpenCV gives each 2 x 2 block of luma the one chroma sample it shares, so
converting the even-aligned region around a crop gives exactly the crop of the whole frame's
conversion: a crop is cut from the planes first, converted, then resized bilinearly (as
smile_data.images.crop_resize does on the RGB frame). Other formats go through swscale.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

from smile_data.images import Box, crop_resize

I420_FORMAT = "yuv420p"  # what H.264 and VP9 decoders give for ordinary 8-bit video


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Y, U, V of a yuv420p frame as (rows, columns) views of the decoder's buffers."""
    return [np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, :plane.width]
            for plane in frame.planes]


def _i420_rgb(frame: av.VideoFrame, x0: int, y0: int, x1: int, y1: int,
              out: np.ndarray | None = None) -> np.ndarray:
    """RGB of the region [x0, x1) x [y0, y1) (all even) of a yuv420p frame (into `out`)."""
    luma, blue, red = _planes(frame)
    width, height = x1 - x0, y1 - y0
    packed = np.empty(height * width * 3 // 2, np.uint8)  # I420: Y, then U, then V
    quarter = height * width // 4
    packed[: height * width].reshape(height, width)[:] = luma[y0:y1, x0:x1]
    chroma = slice(y0 // 2, y1 // 2), slice(x0 // 2, x1 // 2)
    packed[height * width : height * width + quarter].reshape(height // 2, width // 2)[:] = blue[chroma]
    packed[height * width + quarter :].reshape(height // 2, width // 2)[:] = red[chroma]
    return cv2.cvtColor(packed.reshape(height * 3 // 2, width), cv2.COLOR_YUV2RGB_I420, dst=out)


def write_rgb(frame: av.VideoFrame, out: np.ndarray, crop: Box | None = None, size: int | None = None) -> None:
    """Write the frame into `out` as uint8 RGB: whole ((H, W, 3) out), or its `crop`
    (x, y, width, height) resized to `size` x `size` ((size, size, 3) out)."""
    width, height = frame.width, frame.height
    if frame.format.name != I420_FORMAT or width % 2 or height % 2:
        rgb = frame.to_ndarray(format="rgb24")
        if crop is None:
            out[...] = rgb
        else:
            crop_resize(rgb, crop, size, out=out)
        return
    if crop is None:
        _i420_rgb(frame, 0, 0, width, height, out)
        return
    x, y, w, h = crop
    x0, y0 = x - x % 2, y - y % 2
    x1, y1 = min(width, x + w + (x + w) % 2), min(height, y + h + (y + h) % 2)
    region = _i420_rgb(frame, x0, y0, x1, y1)
    crop_resize(region, (x - x0, y - y0, w, h), size, out=out)
