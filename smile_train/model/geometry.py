"""The student's token geometry (docs/method.md §5): a token is a tube of TUBELET frames x PATCH x PATCH
pixels, in (t, h, w) order. The model, the masks, the pixel targets, the teacher and the loader
all cut clips this way; this module is the one place that says how.
"""

from __future__ import annotations

PATCH = 16  # pixels on a side of a token
TUBELET = 2  # consecutive frames in a token
FRAMES = 16  # the reference clip length
IMG_SIZE = 224  # the reference clip side, in pixels


def token_grid(frames: int, size: int) -> tuple[int, int, int]:
    """(temporal slices, rows, columns) of tokens in a clip of `frames` frames of size x size."""
    return frames // TUBELET, size // PATCH, size // PATCH


DEFAULT_GRID = token_grid(FRAMES, IMG_SIZE)  # (8, 14, 14): 1568 tokens
