"""The released trajectory sampler (docs/method.md §9) against its formulas, and sizes relative to the clip."""

from __future__ import annotations

import numpy as np
import pytest

from smile_data.render import trajectory
from smile_data.render.clip import largest_box_side
from smile_data.render.settings import RenderSettings, check_render_settings
from smile_data.render.trajectory import (
    generate_trajectory, initial_box_size, interpolate_keys, released_gaussian_centres,
    released_key_frames,
)

LINEAR_ONLY, ACCELERATE_ONLY, DECELERATE_ONLY = [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]


@pytest.mark.parametrize("inner, expected", [
    (0, [set()]),
    # one tick at int(16 / 2) = 8, jitter an integer in [-int(8 / 3), int(8 / 3)) = [-2, 2)
    (1, [{6, 7, 8, 9}]),
    # ticks int(16/3) = 5 and int(32/3) = 10, jitter in [-int(5.33 / 3), 1) = [-1, 1)
    (2, [{4, 5}, {9, 10}]),
])
def test_key_frames_are_integer_ticks_with_integer_jitter(inner, expected):
    probs = [0.0, 0.0, 0.0]
    probs[inner] = 1.0
    s = RenderSettings(inner_keyframe_probs=probs)
    seen = [set() for _ in expected]
    for seed in range(300):
        keys = released_key_frames(np.random.default_rng(seed), 16, s)
        assert keys[0] == 0 and keys[-1] == 15 and len(keys) == inner + 2
        for position, frame in enumerate(keys[1:-1]):
            seen[position].add(int(frame))
    assert seen == expected or (inner == 0 and seen == [set()])


@pytest.mark.parametrize("probs, expected", [
    (LINEAR_ONLY, [0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0]),
    # start + (end - start) (k / d)^2
    (ACCELERATE_ONLY, [0, 0.05, 0.2, 0.45, 0.8, 1.25, 1.8, 2.45, 3.2, 4.05, 5.0]),
    # end - (end - start) ((d - k) / d)^2
    (DECELERATE_ONLY, [0, 0.95, 1.8, 2.55, 3.2, 3.75, 4.2, 4.55, 4.8, 4.95, 5.0]),
])
def test_easing_reaches_the_key_values(probs, expected):
    s = RenderSettings(interpolation_probs=probs)
    values = interpolate_keys(np.random.default_rng(0), np.array([0.0, 5.0]), np.array([0, 10]), s)
    np.testing.assert_allclose(values, expected, atol=1e-12)
    three = interpolate_keys(np.random.default_rng(0), np.array([[1.0, 2.0], [3.0, 0.0], [-1.0, 4.0]]),
                             np.array([0, 4, 6]), s)
    np.testing.assert_allclose(three[[0, 4, 6]], [[1, 2], [3, 0], [-1, 4]])  # every key value reached


def test_gaussian_motion_shares_one_integer_extent_and_integer_offsets():
    s = RenderSettings()
    for seed in range(200):
        path = released_gaussian_centres(np.random.default_rng(seed), s, 48, (60.0, 40.0), 224, 224)
        assert np.array_equal(path, np.round(path))  # integer pixels
        span = np.ptp(path, axis=0)  # every point sampled: the span is the extent, on both axes
        assert span[0] == span[1] and 40 <= span[0] < 180
        # offsets are integers in [0, 224 - extent): the path ends by the last pixel, unclipped
        assert path.min() >= 0 and path.max() <= 223 and (path.min(axis=0) + span <= 223).all()


def test_sizes_change_per_axis_on_their_own_key_frames():
    s = RenderSettings(box_jitter=0.0, rotation_step=0.0)
    aspects = set()
    for seed in range(100):
        t = generate_trajectory(np.random.default_rng(seed), s, 16, 224, 224)
        assert np.array_equal(t.boxes, np.round(t.boxes))  # integer boxes, as the released rois
        assert (t.sizes >= 1).all() and np.all(t.angles == 0)
        aspects.add(round(float(t.sizes[-1, 0] / t.sizes[-1, 1] / (t.sizes[0, 0] / t.sizes[0, 1])), 3))
    assert len(aspects) > 50  # width and height change by different factors


def test_size_and_rotation_draw_separate_key_frames(monkeypatch):
    drawn = []

    def spy(rng, frames, s):
        keys = released_key_frames(rng, frames, s)
        drawn.append(keys)
        return keys

    monkeypatch.setattr(trajectory, "released_key_frames", spy)
    generate_trajectory(np.random.default_rng(0), RenderSettings(), 16, 224, 224)
    assert len(drawn) == 2  # sizes, angles (the Gaussian centre needs none)
    drawn.clear()
    generate_trajectory(np.random.default_rng(0), RenderSettings(motion="linear"), 16, 224, 224)
    assert len(drawn) == 3  # sizes, angles, location


def test_angle_and_size_key_values_follow_the_per_frame_bounds_times_the_segment_length():
    s = RenderSettings(interpolation_probs=LINEAR_ONLY, inner_keyframe_probs=[1.0, 0, 0])
    for seed in range(100):
        t = generate_trajectory(np.random.default_rng(seed), s, 16, 224, 224)
        # one segment of 15 frames: the angle ends within 15 x 6 degrees, each side within
        # exp(15 x 0.025) of its start (plus a pixel of rounding)
        assert abs(t.angles[-1]) <= 90
        assert (np.abs(np.log(t.sizes[-1] / t.sizes[0])) <= 0.375 + np.log1p(2 / t.sizes[0])).all()


def test_sizes_are_relative_to_the_clip():
    s = RenderSettings(box_jitter=0.0)
    sides_112 = {round(np.sqrt(w * h), 6) for w, h in
                 (initial_box_size(np.random.default_rng(i), s, 112, 112) for i in range(300))}
    assert sides_112 <= {side / 2 for side in s.box_sides} and len(sides_112) == len(s.box_sides)
    for seed in range(100):  # the Gaussian extent randint(40, 180) at 224 is randint(20, 90) at 112
        path = released_gaussian_centres(np.random.default_rng(seed), s, 48, (30.0, 20.0), 112, 112)
        assert 20 <= np.ptp(path[:, 0]) < 90
    small = dict(box_sides=[32])  # sprites are shrunk to the largest box a clip can hold
    assert largest_box_side(RenderSettings(size=112, **small)) == pytest.approx(
        largest_box_side(RenderSettings(**small)) / 2)
    # the reference size is a setting: 112-px clips of a 112-px reference keep the 224 numbers
    same = {round(np.sqrt(w * h), 6) for w, h in (initial_box_size(
        np.random.default_rng(i), RenderSettings(box_jitter=0.0, box_aspects=[1.0], reference_size=112), 112, 112)
        for i in range(300))}
    assert same == {32.0, 48.0, 56.0, 64.0, 96.0, 111.0}  # 128 does not fit: clipped to 111


def test_sampler_and_reference_size_are_checked():
    with pytest.raises(ValueError, match="trajectory_sampler"):
        check_render_settings(RenderSettings(trajectory_sampler="smooth"))
    with pytest.raises(ValueError, match="reference_size"):
        check_render_settings(RenderSettings(reference_size=0))


def test_key_frames_stay_inside_the_clip_whatever_the_jitter():
    # a config's keyframe_jitter sizes the trajectory arrays: it is bounded, and even at the
    # bound (a whole spacing) every key frame lies in the clip and the trajectory has T frames
    with pytest.raises(ValueError, match="keyframe_jitter"):
        check_render_settings(RenderSettings(keyframe_jitter=5.0))
    s = RenderSettings(keyframe_jitter=1.0, inner_keyframe_probs=[0, 0, 1.0])
    check_render_settings(s)
    for seed in range(50):
        keys = released_key_frames(np.random.default_rng(seed), 16, s)
        assert keys[0] == 0 and keys[-1] == 15
        assert generate_trajectory(np.random.default_rng(seed), s, 16, 64, 64).centres.shape == (16, 2)


def test_sizes_stay_finite_whatever_the_scale_step():
    # the released sampler lets a box outgrow the frame: scale_step is bounded so that sizes
    # (and the centres of the rounded boxes) stay finite numbers
    with pytest.raises(ValueError, match="scale_step"):
        check_render_settings(RenderSettings(scale_step=100.0))
    s = RenderSettings(scale_step=20 / 15, frames=16)
    check_render_settings(s)
    for seed in range(20):
        t = generate_trajectory(np.random.default_rng(seed), s, 16, 64, 64)
        assert np.isfinite(t.sizes).all() and np.isfinite(t.centres).all()


def test_patch_opacity_keys_follow_the_sampler():
    from smile_data.render.patches import make_patch

    clip = np.random.default_rng(0).integers(0, 255, size=(16, 64, 64, 3), dtype=np.uint8)
    s = RenderSettings(overlay="patches", inner_keyframe_probs=[0.0, 1.0, 0.0])
    kinks = set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        patch = make_patch(rng, s, clip, generate_trajectory(rng, s, 16, 64, 64))
        bends = np.flatnonzero(np.abs(np.diff(patch.opacity, 2)) > 1e-12) + 1  # linear between keys
        assert len(bends) <= 1
        kinks.update(bends.tolist())
    assert kinks <= {6, 7, 8, 9} and len(kinks) >= 3  # the released inner tick 8 + [-2, 2)


@pytest.mark.parametrize("clip_sizes", [False, True])
def test_released_sizes_may_outgrow_the_frame(clip_sizes):
    # No inner key frame and linear easing: the released sizes run linearly from the initial box
    # to box x exp(u x 0.025 x 15) per axis, u ~ U(-1, 1) per axis, with no clip after the
    # initial box. Draw order: the key-frame count (one uniform), the two u, the easing.
    s = RenderSettings(inner_keyframe_probs=[1.0, 0, 0], interpolation_probs=LINEAR_ONLY,
                       clip_sizes=clip_sizes)
    replay = np.random.default_rng(7)
    replay.random()
    u = replay.uniform(-1.0, 1.0, size=2)
    assert (u > 0.1).all()  # this seed grows both sides, past 223 px from 220 px
    end = 220.0 * np.exp(u * 0.025 * 15)
    sizes = trajectory.released_sizes(np.random.default_rng(7), s, 16, (220.0, 220.0), 224, 224)
    expected = 220.0 + (end - 220.0) * np.arange(16)[:, None] / 15
    np.testing.assert_allclose(sizes, np.minimum(expected, 223.0) if clip_sizes else expected, rtol=1e-12)
    assert (sizes[-1] > 223.0).all() != clip_sizes
