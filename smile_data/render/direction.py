"""Motion-direction labels: one object crosses the clip in one of 4 (or 8) directions.

Class k of K points k * 360 / K degrees clockwise from "right" on screen (image y grows
downwards): with 4 classes right, down, left, up; with 8 the diagonals lie between them. The
class is drawn uniformly from the clip's generator; the object, its size and rotation changes
(docs/method.md §3) and the background are drawn as for any clip, so only the motion tells the class.

The centre path: between the first and the last frame the centre travels a distance drawn in
[direction_travel_min, direction_travel_max] x the frame side along the class direction, spread
over the frames by the trajectory's key-frame rates (linear, accelerating or decelerating
segments), while it wanders sideways by at most direction_jitter x the frame side (an offset
drawn at every key frame, interpolated linearly). The settings check makes sure that the
displacement from the first to the last frame always lies inside the class's sector, so the
label is never ambiguous. The start is drawn so that the object's largest box stays inside the
frame along the whole path; an object too large for that may overlap the edge, never its centre.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

DIRECTION_NAMES = {
    4: ("right", "down", "left", "up"),
    8: ("right", "down_right", "down", "down_left", "left", "up_left", "up", "up_right"),
}


class DirectionSettings(Protocol):
    """The render settings this module reads (RenderSettings, whose check calls this module's)."""

    direction_classes: int
    direction_travel_min: float
    direction_travel_max: float
    direction_jitter: float
    overlay: str
    objects: int
    frames: int


def direction_names(classes: int) -> tuple[str, ...]:
    """The class names in label order: label k is direction_names(classes)[k]."""
    if classes not in DIRECTION_NAMES:
        raise ValueError(f"direction_classes {classes} must be one of {sorted(DIRECTION_NAMES)}")
    return DIRECTION_NAMES[classes]


def direction_vector(label: int, classes: int) -> np.ndarray:
    """(2,) unit vector x, y (y down) of class `label`: k * 360 / K degrees clockwise on screen."""
    angle = 2 * math.pi * label / classes
    return np.array([math.cos(angle), math.sin(angle)])


def direction_label(displacement: tuple[float, float], classes: int) -> int:
    """The class whose sector holds a displacement (dx, dy): the nearest direction."""
    angle = math.atan2(displacement[1], displacement[0])
    return round(angle / (2 * math.pi / classes)) % classes


def check_direction_settings(s: DirectionSettings) -> None:
    """Refuse direction settings that could leave the label ambiguous or the path too long."""
    direction_names(s.direction_classes)
    if s.overlay == "none" or s.objects != 1:
        raise ValueError("label motion-direction moves exactly one overlay: set objects=1 and "
                         "overlay objects or patches")
    if s.frames < 2:
        raise ValueError("label motion-direction needs at least 2 frames")
    if not 0 < s.direction_travel_min <= s.direction_travel_max:
        raise ValueError("direction travel must satisfy 0 < direction_travel_min <= direction_travel_max")
    if s.direction_jitter < 0 or s.direction_travel_max + 2 * s.direction_jitter > 1:
        raise ValueError("direction_travel_max + 2 * direction_jitter must be at most 1 (the path "
                         "has to fit in the frame), with direction_jitter >= 0")
    half_sector = math.pi / s.direction_classes
    if 2 * s.direction_jitter >= s.direction_travel_min * math.tan(half_sector):
        raise ValueError(
            f"direction_jitter {s.direction_jitter} is too large for direction_travel_min "
            f"{s.direction_travel_min}: the end-to-end motion could leave its class's sector "
            f"(need 2 * jitter < travel_min * tan(180 / {s.direction_classes} degrees))")


def directed_centres(
    rng: np.random.Generator, s: DirectionSettings, label: int, sizes: np.ndarray, keys: np.ndarray,
    rates: np.ndarray, width: int, height: int,
) -> np.ndarray:
    """(T, 2) centres moving along class `label` (see the module docstring).

    sizes (T, 2) are the box sizes, keys the key frames and rates (T,) the per-frame share of
    each segment's step, as generate_trajectory draws them.
    """
    frame_size = np.array([width, height], np.float64)
    side = min(width, height)
    travel = rng.uniform(s.direction_travel_min, s.direction_travel_max) * side
    wander = s.direction_jitter * side
    sideways = np.interp(np.arange(len(rates)), keys, rng.uniform(-wander, wander, size=len(keys)))
    progress = np.cumsum(rates) / np.sum(rates)  # (T,) from 0 at frame 0 to 1 at the last
    forward = direction_vector(label, s.direction_classes)
    normal = np.array([-forward[1], forward[0]])
    path = travel * progress[:, None] * forward + sideways[:, None] * normal  # (T, 2) from the start
    low, high = path.min(axis=0), path.max(axis=0)
    # Keep the largest box inside the frame where box and path fit, else the centre at least.
    margin = np.minimum(sizes.max(axis=0) / 2, (frame_size - (high - low)) / 2)
    first, last = margin - low, frame_size - margin - high
    start = rng.uniform(first, np.maximum(first, last))  # equal when path and box just fit
    return start + path
