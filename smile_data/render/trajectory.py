"""Object trajectories of docs/method.md §3: a box (centre, size) and an angle in every frame of a clip.

Both samplers stay: "bounded" is what configs/toy/render_112.yaml and the toy experiment use.

Sizes relative to the clip: box sides, Gaussian extents and linear speeds are pixels of a
`reference_size` clip (224, docs/method.md §3); a clip of another size scales them by
min(W, H) / reference_size (`size_scale`), so every caller of `generate_trajectory` (the
renderer, on-the-fly overlays) draws objects covering the same share of the frame.

Two samplers (`trajectory_sampler`):

"released" (default; the authors' released code, docs/method.md §9). Location (linear motion), size and
rotation each draw their own key frames: frame 0 and T-1, plus 0/1/2 inner ticks
int(T / (k+1) x i), each moved by an integer jitter in [-r, r) with r = int(T / (k+1) / 3).
Key values accumulate one draw per segment of d frames: the angle by U(-6d, 6d) degrees, the
width and the height each by its own factor exp(U(-0.025d, 0.025d)), a linear centre by
U(-12d, 12d) px per axis (clipped to keep the initial box inside). Between key frames the value
is interpolated linearly (p .7), accelerating (start + (end - start) (k/d)^2) or decelerating
(end - (end - start) ((d - k)/d)^2), reaching the key value: per-frame bounds hold on average.
Only the initial box is clipped to the frame: a growing box may outgrow it (`clip_sizes` clips).
Gaussian motion: 48 points uniform over [1 + b/2, W - 1 - b/2] per axis, smoothed (sigma 8,
reflect), normalised to [0, 1], scaled by ONE integer extent randint(40, 180) shared by x and y,
shifted by an integer offset randint(0, side - extent) per axis, clipped to [0, side - 1],
sampled at T evenly spaced indices and truncated to integer pixels. Boxes end on integer pixels
(rounded corners), angles on whole degrees (truncated), as the released paste uses them.

"bounded" (this project's earlier sampler): one key-frame set for everything, jittered by up to
a third of the spacing; every quantity moves by one step drawn per segment, spent frame by
frame at the full rate (linear) or at a rate ramping up or down (eased), so no frame ever moves
by more than the per-frame bound of docs/method.md §3 (12 px per axis, exp(+-0.025) in size, +-6 degrees), and eased
segments cover about half the distance. The size keeps its aspect ratio. Gaussian motion draws
a float extent per axis and a float offset. A one-frame clip is its initial state (both).

With label motion-direction the centre instead crosses the frame in the clip's class direction
(direction.py, on the bounded key frames); size and rotation follow the sampler.

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
GAUSSIAN_MARGIN = 1.0  # released sampler: path points keep the box this many px off the edge
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
        """Mean width x mean height over the frames (the released paste ranks objects by it)."""
        return float(np.prod(self.sizes.mean(axis=0)))


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


def size_scale(s: RenderSettings, width: int, height: int) -> float:
    """Factor from the reference clip's pixels (docs/method.md §3 numbers) to this clip's pixels."""
    return min(width, height) / s.reference_size


def initial_box_size(
    rng: np.random.Generator, s: RenderSettings, width: int, height: int
) -> tuple[float, float]:
    """w = side*sqrt(aspect), h = side/sqrt(aspect), each jittered by exp(U[-j, j]), clipped;
    sides scaled to the clip (size_scale)."""
    side = float(s.box_sides[rng.integers(len(s.box_sides))]) * size_scale(s, width, height)
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
    scale = size_scale(s, width, height)
    extent = np.minimum(rng.uniform(s.gaussian_extent_min * scale, s.gaussian_extent_max * scale, size=2),
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
    shift = s.linear_max_shift * size_scale(s, width, height)
    steps = rng.uniform(-shift, shift, size=(segment_of.max() + 1, 2))
    centres = start + np.cumsum(_increments(steps, segment_of, rates), axis=0)
    half = sizes / 2  # (T, 2): keep the whole box inside the frame
    return np.clip(centres, half, frame_size - half)


# --- the released sampler (module docstring) ------------------------------------------------


def released_key_frames(rng: np.random.Generator, frames: int, s: RenderSettings) -> np.ndarray:
    """Key frames as the released sampler draws them: 0, T-1 and `inner` ticks int(T/(inner+1) x i)
    moved by an integer jitter in [-reach, reach), reach = int(T/(inner+1) x keyframe_jitter)."""
    inner = draw_index(rng, s.inner_keyframe_probs)
    if frames <= 2 or inner == 0:
        return np.unique([0, frames - 1])
    spacing = frames / (inner + 1)
    ticks = (spacing * np.arange(1, inner + 1)).astype(np.int64)
    reach = int(spacing * s.keyframe_jitter)
    if reach > 0:
        ticks = ticks + rng.integers(-reach, reach, size=inner)
    return np.unique(np.concatenate([ticks, [0, frames - 1]]))


def sampler_key_frames(rng: np.random.Generator, frames: int, s: RenderSettings) -> np.ndarray:
    """Key frames as the configured sampler draws them (patch opacities use these too)."""
    if s.trajectory_sampler == "bounded":
        return key_frames(rng, frames, s)
    return released_key_frames(rng, frames, s)


def interpolate_keys(rng: np.random.Generator, values: np.ndarray, keys: np.ndarray,
                     s: RenderSettings) -> np.ndarray:
    """(T, ...) values from key values (K, ...) at key frames `keys`, each segment linear,
    accelerating or decelerating (drawn with interpolation_probs); every key value is reached."""
    out = np.empty((int(keys[-1]) + 1,) + values.shape[1:], np.float64)
    out[0] = values[0]
    modes = draw_indices(rng, s.interpolation_probs, len(keys) - 1)
    for segment, (start, end) in enumerate(zip(keys[:-1].tolist(), keys[1:].tolist())):
        progress = np.arange(end - start + 1) / (end - start)  # 0 .. 1 over the segment
        if modes[segment] == ACCELERATE:
            progress = progress**2
        elif modes[segment] == DECELERATE:
            progress = 1 - (1 - progress) ** 2
        weight = progress.reshape((-1,) + (1,) * (values.ndim - 1))
        out[start : end + 1] = values[segment] + weight * (values[segment + 1] - values[segment])
    return out


def _key_steps(rng: np.random.Generator, keys: np.ndarray, per_frame: float, axes: tuple = ()) -> np.ndarray:
    """One uniform step per segment within +-per_frame x its length, as (K-1, *axes)."""
    lengths = np.diff(keys).astype(np.float64).reshape((-1,) + (1,) * len(axes))
    return rng.uniform(-1.0, 1.0, size=(len(keys) - 1,) + axes) * per_frame * lengths


def released_sizes(rng: np.random.Generator, s: RenderSettings, frames: int,
                   box: tuple[float, float], width: int, height: int) -> np.ndarray:
    """(T, 2) sizes: width and height each scaled by its own factor per segment of size key
    frames; at least one pixel, and at most the frame side - 1 only with `clip_sizes` (the
    released code lets a box grown from the initial one outgrow the frame)."""
    keys = released_key_frames(rng, frames, s)
    log_factors = np.cumsum(_key_steps(rng, keys, s.scale_step, (2,)), axis=0)
    key_sizes = np.array(box) * np.exp(np.concatenate([np.zeros((1, 2)), log_factors]))
    sizes = interpolate_keys(rng, key_sizes, keys, s)
    largest = np.array([width - 1, height - 1], np.float64) if s.clip_sizes else np.inf
    return np.clip(sizes, MIN_BOX_SIDE, largest)


def released_angles(rng: np.random.Generator, s: RenderSettings, frames: int) -> np.ndarray:
    """(T,) angles on their own key frames, truncated to whole degrees as the released paste."""
    keys = released_key_frames(rng, frames, s)
    key_angles = np.concatenate([[0.0], np.cumsum(_key_steps(rng, keys, s.rotation_step))])
    angles = np.trunc(interpolate_keys(rng, key_angles, keys, s))
    return angles if s.rotation else np.zeros(frames)


def released_gaussian_centres(rng: np.random.Generator, s: RenderSettings, frames: int,
                              box: tuple[float, float], width: int, height: int) -> np.ndarray:
    """(T, 2) integer centres on a smoothed path with one integer extent for both axes."""
    frame_size = np.array([width, height], np.float64)
    low = np.minimum(GAUSSIAN_MARGIN + np.array(box) / 2, frame_size / 2)
    points = rng.uniform(low, np.maximum(frame_size - low, low), size=(s.gaussian_points, 2))
    smooth = gaussian_filter1d(points, s.gaussian_sigma, axis=0, mode="reflect")
    low_point, high_point = smooth.min(axis=0), smooth.max(axis=0)
    unit = (smooth - low_point) / np.maximum(high_point - low_point, _NORMALISE_EPS)
    scale = size_scale(s, width, height)
    longest = min(width, height) - 1  # the offset needs at least one position
    extent_low = max(1, min(round(s.gaussian_extent_min * scale), longest))
    extent_high = max(extent_low + 1, min(round(s.gaussian_extent_max * scale), longest + 1))
    extent = int(rng.integers(extent_low, extent_high))  # shared by x and y
    offset = rng.integers(0, np.array([width, height]) - extent)  # per axis, [0, side - extent)
    path = np.clip(unit * extent + offset, 0.0, frame_size - 1)
    return np.floor(path[_evenly_spaced(s.gaussian_points, frames)])


def released_linear_centres(rng: np.random.Generator, s: RenderSettings, frames: int,
                            box: tuple[float, float], width: int, height: int) -> np.ndarray:
    """(T, 2) centres: location key frames, U(-12d, 12d) px per axis and segment, the key
    centres clipped to keep the initial box inside the frame."""
    frame_size = np.array([width, height], np.float64)
    half = np.minimum(np.array(box) / 2, frame_size / 2)
    keys = released_key_frames(rng, frames, s)
    centre = rng.uniform(half, frame_size - half)
    steps = _key_steps(rng, keys, s.linear_max_shift * size_scale(s, width, height), (2,))
    key_centres = [centre]
    for step in steps:
        key_centres.append(np.clip(key_centres[-1] + step, half, frame_size - half))
    return interpolate_keys(rng, np.array(key_centres), keys, s)


def integer_boxes(centres: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes of the boxes with rounded corners (at least one pixel wide)."""
    low = np.round(centres - sizes / 2)
    high = np.maximum(np.round(centres + sizes / 2), low + MIN_BOX_SIDE)
    return (low + high) / 2, high - low


def released_trajectory(
    rng: np.random.Generator, s: RenderSettings, frames: int, width: int, height: int,
    direction: int | None = None,
) -> Trajectory:
    """The "released" sampler (module docstring)."""
    w0, h0 = initial_box_size(rng, s, width, height)
    sizes = released_sizes(rng, s, frames, (w0, h0), width, height)
    angles = released_angles(rng, s, frames)
    if direction is not None:
        keys = key_frames(rng, frames, s)
        _, rates = segment_rates(rng, keys, frames, s)
        centres = directed_centres(rng, s, direction, sizes, keys, rates, width, height)
    elif s.motion == "gaussian":
        centres = released_gaussian_centres(rng, s, frames, (w0, h0), width, height)
    else:
        centres = released_linear_centres(rng, s, frames, (w0, h0), width, height)
    centres, sizes = integer_boxes(centres, sizes)
    return Trajectory(centres=centres, sizes=sizes, angles=angles)


# --- the bounded sampler and the entry point ---------------------------------------------------


def bounded_trajectory(
    rng: np.random.Generator, s: RenderSettings, frames: int, width: int, height: int,
    direction: int | None = None,
) -> Trajectory:
    """The "bounded" sampler (module docstring)."""
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


def generate_trajectory(
    rng: np.random.Generator, s: RenderSettings, frames: int, width: int, height: int,
    direction: int | None = None,
) -> Trajectory:
    """Draw one object's trajectory in final-clip pixels with the configured sampler.

    With `direction` (a motion-direction class), the centre crosses the frame that way
    (direction.py) instead of following `s.motion`.
    """
    if s.trajectory_sampler == "bounded":
        return bounded_trajectory(rng, s, frames, width, height, direction)
    return released_trajectory(rng, s, frames, width, height, direction)
