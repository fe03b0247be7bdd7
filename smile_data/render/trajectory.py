"""Object trajectories of SPEC §3: a box (centre, size) and an angle in every frame of a clip.

Key frames: frame 0 and T-1 always, plus 0/1/2 inner key frames (p .5/.3/.2) evenly spaced and
jittered by up to a third of the spacing. Between two key frames every changing quantity (the
centre in linear motion, the log size, the angle) moves with one step drawn per segment; the
segment's interpolation mode shapes how that step is spent frame by frame:
    linear       the full step every frame,
    accelerate   a rate ramping up to the step (j/n of it on the j-th of n frames),
    decelerate   a rate ramping down from the step.
So no frame ever moves by more than the SPEC bound (12 px per axis, exp(+-0.025) in size,
+-6 degrees), and the eased modes cover about half the distance of the linear one (a deliberate
choice, docs/data.md). A one-frame clip has no segment: its single frame is the initial state.

Gaussian motion (SPEC §3, literally) ignores key frames for the centre: 48 points uniform over
the centres that keep the initial box inside the frame, each axis smoothed (sigma 8, reflect)
and normalised to [0, 1], scaled by an extent drawn in [40, 180) px (at most the frame side),
shifted by an offset drawn uniformly in [0, side - extent] so the path lies inside the frame,
clipped to the frame, and sampled at T evenly spaced indices. The centre thus stays in the
frame, but the box may reach past the edge; compositing clips what lies outside.

With label motion-direction the centre instead crosses the frame in the clip's class direction
(direction.py); key frames, size and rotation are drawn as above.

Coordinates are continuous pixels of the final clip: the frame spans [0, W] x [0, H] and pixel
(i, j) covers [i, i+1) x [j, j+1).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from smile_data.render.direction import directed_centres
from smile_data.render.settings import RenderSettings

LINEAR, ACCELERATE, DECELERATE = 0, 1, 2
MIN_BOX_SIDE = 1.0
_NORMALISE_EPS = 1e-9


@dataclass
class Trajectory:
    """One object's path: centres (T, 2) as x, y; sizes (T, 2) as w, h; angles (T,) degrees."""

    centres: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray

    @property
    def boxes(self) -> np.ndarray:
        """(T, 4) float64 boxes x0, y0, x1, y1 (unrotated box; the angle turns it about its centre)."""
        half = self.sizes / 2
        return np.concatenate([self.centres - half, self.centres + half], axis=1)

    @property
    def mean_area(self) -> float:
        return float(np.mean(self.sizes[:, 0] * self.sizes[:, 1]))


def _normalised_cdf(probabilities: list[float]) -> list[float]:
    cumulative = list(itertools.accumulate(float(p) for p in probabilities))
    return [c / cumulative[-1] for c in cumulative]


def draw_index(rng: np.random.Generator, probabilities: list[float]) -> int:
    """Index i with probability probabilities[i], from one uniform draw.

    The same draw as rng.choice(len(p), p=p) (one uniform, the first cumulative probability
    above it), without that call's overhead, which adds up over millions of trajectories.
    """
    return bisect.bisect_right(_normalised_cdf(probabilities), rng.random())


def draw_indices(rng: np.random.Generator, probabilities: list[float], count: int) -> list[int]:
    """`count` independent draw_index draws (as rng.choice(len(p), size=count, p=p))."""
    cdf = _normalised_cdf(probabilities)
    return [bisect.bisect_right(cdf, u) for u in rng.random(count).tolist()]


def initial_box_size(
    rng: np.random.Generator, s: RenderSettings, width: int, height: int
) -> tuple[float, float]:
    """w = side*sqrt(aspect), h = side/sqrt(aspect), each jittered by exp(U[-j, j]), clipped."""
    side = float(s.box_sides[rng.integers(len(s.box_sides))])
    aspect = float(s.box_aspects[rng.integers(len(s.box_aspects))])
    jitter_w, jitter_h = np.exp(rng.uniform(-s.box_jitter, s.box_jitter, size=2)).tolist()
    w = min(max(side * math.sqrt(aspect) * jitter_w, MIN_BOX_SIDE), width - 1)
    h = min(max(side / math.sqrt(aspect) * jitter_h, MIN_BOX_SIDE), height - 1)
    return float(w), float(h)


def key_frames(rng: np.random.Generator, frames: int, s: RenderSettings) -> np.ndarray:
    """Sorted unique key-frame indices, always including 0 and frames-1."""
    inner = draw_index(rng, s.inner_keyframe_probs)
    if frames <= 2:
        return np.unique([0, frames - 1])
    spacing = (frames - 1) / (inner + 1)
    positions = spacing * np.arange(1, inner + 1)
    positions = positions + rng.uniform(-1, 1, size=inner) * spacing * s.keyframe_jitter
    inner_frames = np.clip(np.rint(positions), 1, frames - 2).astype(np.int64)
    return np.unique(np.concatenate([[0], inner_frames, [frames - 1]]))


def segment_rates(
    rng: np.random.Generator, keys: np.ndarray, frames: int, s: RenderSettings
) -> tuple[np.ndarray, np.ndarray]:
    """For each frame t >= 1: the segment it ends (T,) and the share of the step it takes (T,).

    Frame 0 takes no step (segment 0, rate 0).
    """
    segment_of = np.zeros(frames, np.int64)
    rates = np.zeros(frames, np.float64)
    modes = draw_indices(rng, s.interpolation_probs, len(keys) - 1)
    for segment, (start, end) in enumerate(zip(keys[:-1], keys[1:])):
        length = int(end - start)
        j = np.arange(1, length + 1, dtype=np.float64)
        if modes[segment] == ACCELERATE:
            share = j / length
        elif modes[segment] == DECELERATE:
            share = (length - j + 1) / length
        else:
            share = np.ones(length)
        segment_of[start + 1 : end + 1] = segment
        rates[start + 1 : end + 1] = share
    return segment_of, rates


def _increments(steps: np.ndarray, segment_of: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Per-frame increments (T, ...) from per-segment steps (S, ...); all zero when S == 0
    (a one-frame clip)."""
    if len(steps) == 0:
        return np.zeros(rates.shape + steps.shape[1:])
    rate = rates.reshape((-1,) + (1,) * (steps.ndim - 1))
    return steps[segment_of] * rate


def gaussian_centres(
    rng: np.random.Generator, s: RenderSettings, frames: int, box: tuple[float, float],
    width: int, height: int,
) -> np.ndarray:
    """(T, 2) centres along a smoothed random path inside the frame (module docstring)."""
    frame_size = np.array([width, height], np.float64)
    half_box = np.minimum(np.array(box) / 2, frame_size / 2)  # centres keeping the box inside
    points = rng.uniform(half_box, frame_size - half_box, size=(s.gaussian_points, 2))
    smooth = gaussian_filter1d(points, s.gaussian_sigma, axis=0, mode="reflect")
    low, high = smooth.min(axis=0), smooth.max(axis=0)
    unit = (smooth - low) / np.maximum(high - low, _NORMALISE_EPS)  # (P, 2), each axis in [0, 1]
    extent = np.minimum(rng.uniform(s.gaussian_extent_min, s.gaussian_extent_max, size=2),
                        frame_size)
    offset = rng.uniform(0.0, frame_size - extent)  # the extent stays inside the frame
    path = np.clip(unit * extent + offset, 0.0, frame_size)
    return path[_evenly_spaced(s.gaussian_points, frames)]


@functools.lru_cache(maxsize=16)
def _evenly_spaced(points: int, frames: int) -> np.ndarray:
    """`frames` evenly spaced indices into `points` (rounded to the nearest)."""
    return np.rint(np.linspace(0, points - 1, frames)).astype(np.int64)


def linear_centres(
    rng: np.random.Generator, s: RenderSettings, sizes: np.ndarray, segment_of: np.ndarray,
    rates: np.ndarray, width: int, height: int,
) -> np.ndarray:
    """(T, 2) centres moving by a per-segment shift of up to linear_max_shift px per frame."""
    frame_size = np.array([width, height], np.float64)
    half0 = sizes[0] / 2
    start = rng.uniform(half0, frame_size - half0)
    steps = rng.uniform(-s.linear_max_shift, s.linear_max_shift, size=(segment_of.max() + 1, 2))
    centres = start + np.cumsum(_increments(steps, segment_of, rates), axis=0)
    half = sizes / 2  # (T, 2): keep the whole box inside the frame
    return np.clip(centres, half, frame_size - half)


def generate_trajectory(
    rng: np.random.Generator, s: RenderSettings, frames: int, width: int, height: int,
    direction: int | None = None,
) -> Trajectory:
    """Draw one object's trajectory in final-clip pixels.

    With `direction` (a motion-direction class), the centre crosses the frame that way
    (direction.py) instead of following `s.motion`.
    """
    w0, h0 = initial_box_size(rng, s, width, height)
    keys = key_frames(rng, frames, s)
    segment_of, rates = segment_rates(rng, keys, frames, s)
    segments = len(keys) - 1

    log_scale_steps = rng.uniform(-s.scale_step, s.scale_step, size=segments)
    log_scale = np.cumsum(_increments(log_scale_steps, segment_of, rates))
    sizes = np.array([w0, h0]) * np.exp(log_scale)[:, None]  # (T, 2)
    sizes = np.clip(sizes, MIN_BOX_SIDE, np.array([width - 1, height - 1], np.float64))

    angle_steps = rng.uniform(-s.rotation_step, s.rotation_step, size=segments)
    angles = np.cumsum(_increments(angle_steps, segment_of, rates)) if s.rotation else np.zeros(frames)

    if direction is not None:
        centres = directed_centres(rng, s, direction, sizes, keys, rates, width, height)
    elif s.motion == "gaussian":
        centres = gaussian_centres(rng, s, frames, (w0, h0), width, height)
    else:
        centres = linear_centres(rng, s, sizes, segment_of, rates, width, height)
    return Trajectory(centres=centres, sizes=sizes, angles=angles)
