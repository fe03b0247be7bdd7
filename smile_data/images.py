"""Image geometry shared by the renderer, the packer and the trainer's loader (OpenCV).

One definition of each operation, so that a shard rendered offline and a clip composed in the
loader are cut, scaled and mirrored alike.
"""

from __future__ import annotations

import cv2
import numpy as np

FLIP_PROBABILITY = 0.5  # chance of a horizontal mirror, where flipping is switched on

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


def crop_resize(image: np.ndarray, box: Box, size: int, flip: bool = False,
                out: np.ndarray | None = None) -> np.ndarray:
    """(h, w, 3) -> (size, size, 3): crop to `box`, resize bilinearly, mirror if `flip`.

    `out`, a (size, size, 3) array of the image's dtype, receives the resized crop (unflipped
    only) instead of a new array."""
    x, y, w, h = box
    resized = cv2.resize(image[y : y + h, x : x + w], (size, size), dst=out, interpolation=cv2.INTER_LINEAR)
    return cv2.flip(resized, 1) if flip else resized


def resize_short_side(image: np.ndarray, short_side: int, upscale: bool = False,
                      interpolation: int | None = None) -> np.ndarray:
    """Resize (h, w, 3) so that min(h, w) == short_side, aspect kept (each side rounded, at
    least 1 px); the image itself when nothing changes. A smaller image is left as it is
    unless `upscale`; `short_side` <= 0 leaves every image as it is.

    `interpolation`: an OpenCV flag; by default area averaging when shrinking (no aliasing)
    and bilinear when enlarging."""
    height, width = image.shape[:2]
    current = min(height, width)
    if short_side <= 0 or current == short_side or (current < short_side and not upscale):
        return image
    scale = short_side / current
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if interpolation is None:
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)
