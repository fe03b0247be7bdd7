"""Trajectories against docs/method.md §3: box sizes and ratios, key frames, per-frame step bounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from smile_data.render.settings import RenderSettings
from smile_data.render.trajectory import (
    gaussian_centres, generate_trajectory, initial_box_size, key_frames, segment_rates,
)

SIZE = 224
FRAMES = 16
DRAWS = 400


def _trajectories(settings: RenderSettings, count: int = DRAWS):
    return [generate_trajectory(np.random.default_rng([3, i]), settings, FRAMES, SIZE, SIZE)
            for i in range(count)]


def test_initial_box_side_and_ratio_come_from_the_spec_sets_up_to_jitter():
    s = RenderSettings()
    rng = np.random.default_rng(0)
    sides, aspects = np.array(s.box_sides, float), np.array(s.box_aspects, float)
    ideal_w = sides[:, None] * np.sqrt(aspects)[None, :]  # (sides, aspects)
    ideal_h = sides[:, None] / np.sqrt(aspects)[None, :]
    for _ in range(DRAWS):
        w, h = initial_box_size(rng, s, SIZE, SIZE)
        fits = (np.abs(np.log(w / ideal_w)) <= s.box_jitter + 1e-9) & (
            np.abs(np.log(h / ideal_h)) <= s.box_jitter + 1e-9)
        assert fits.any(), (w, h)
        assert 1 <= w <= SIZE - 1 and 1 <= h <= SIZE - 1


def test_without_jitter_boxes_are_exactly_the_spec_products():
    s = dataclasses.replace(RenderSettings(), box_jitter=0.0)
    rng = np.random.default_rng(1)
    expected = {(round(a * np.sqrt(r), 6), round(a / np.sqrt(r), 6))
                for a in s.box_sides for r in s.box_aspects}
    seen = {tuple(round(v, 6) for v in initial_box_size(rng, s, SIZE, SIZE)) for _ in range(DRAWS)}
    assert seen <= expected
    assert len(seen) > len(expected) // 2  # the draw covers the sets


def test_boxes_are_clipped_to_small_frames():
    s = RenderSettings()
    rng = np.random.default_rng(2)
    for _ in range(50):
        w, h = initial_box_size(rng, s, 40, 30)
        assert 1 <= w <= 39 and 1 <= h <= 29


def test_key_frames_include_both_ends_and_follow_the_inner_count_probabilities():
    s = RenderSettings()
    rng = np.random.default_rng(4)
    counts = np.zeros(3)
    for _ in range(3000):
        keys = key_frames(rng, FRAMES, s)
        assert keys[0] == 0 and keys[-1] == FRAMES - 1
        assert np.all(np.diff(keys) > 0)
        inner = len(keys) - 2
        counts[inner] += 1
        spacing = (FRAMES - 1) / (inner + 1)
        for k, frame in enumerate(keys[1:-1], start=1):
            assert abs(frame - k * spacing) <= spacing / 3 + 0.5  # jitter, then rounding
    assert np.allclose(counts / counts.sum(), s.inner_keyframe_probs, atol=0.04)


def test_eased_segments_ramp_their_rate():
    s = dataclasses.replace(RenderSettings(), interpolation_probs=[0.0, 1.0, 0.0])
    keys = np.array([0, 5, FRAMES - 1])
    segment_of, rates = segment_rates(np.random.default_rng(0), keys, FRAMES, s)
    assert rates[0] == 0 and segment_of[5] == 0 and segment_of[6] == 1
    assert np.all(np.diff(rates[1:6]) > 0) and rates[5] == 1  # accelerating to the full step


def test_linear_motion_steps_are_bounded_and_the_box_stays_inside():
    s = dataclasses.replace(RenderSettings(), motion="linear", trajectory_sampler="bounded")
    for trajectory in _trajectories(s):
        steps = np.abs(np.diff(trajectory.centres, axis=0))  # (T-1, 2)
        # Clipping to the box-inside range can move a centre by half the box's size change.
        allowance = np.abs(np.diff(trajectory.sizes, axis=0)) / 2
        assert np.all(steps <= s.linear_max_shift + allowance + 1e-9)
        boxes = trajectory.boxes
        assert boxes[:, :2].min() >= -1e-9 and boxes[:, 2].max() <= SIZE + 1e-9
        assert boxes[:, 3].max() <= SIZE + 1e-9


def test_linear_motion_actually_moves():
    s = dataclasses.replace(RenderSettings(), motion="linear")
    travel = [np.abs(t.centres[-1] - t.centres[0]).max() for t in _trajectories(s, 50)]
    assert np.median(travel) > 10


def test_bounded_rotation_and_size_steps_per_frame_are_within_the_spec():
    s = RenderSettings(trajectory_sampler="bounded")
    for trajectory in _trajectories(s):
        assert trajectory.angles[0] == 0
        assert np.all(np.abs(np.diff(trajectory.angles)) <= s.rotation_step + 1e-9)
        log_sizes = np.log(trajectory.sizes)
        assert np.all(np.abs(np.diff(log_sizes, axis=0)) <= s.scale_step + 1e-9)
        aspect = trajectory.sizes[:, 0] / trajectory.sizes[:, 1]
        unclipped = (trajectory.sizes < SIZE - 1).all(axis=1)
        assert np.allclose(aspect[unclipped], aspect[unclipped][0])  # size changes keep the ratio


def test_rotation_can_be_switched_off():
    s = dataclasses.replace(RenderSettings(), rotation=False)
    assert all(np.all(t.angles == 0) for t in _trajectories(s, 20))


def test_gaussian_path_stays_inside_the_frame_within_the_extent():
    s = RenderSettings()
    for trajectory in _trajectories(s):
        centres = trajectory.centres
        assert centres.min() >= 0 and centres.max() <= SIZE
        assert np.all(np.ptp(centres, axis=0) < s.gaussian_extent_max)


def test_gaussian_path_spans_its_extent_anywhere_in_the_frame():
    """docs/method.md §3: the path is normalised, scaled by an extent in [40, 180) and offset anywhere
    the extent fits in the frame; with T = 48 every point is sampled, so the span is the extent."""
    s = RenderSettings()
    box = (64.0, 48.0)
    spans, lows, highs = [], [], []
    for i in range(DRAWS):
        path = gaussian_centres(np.random.default_rng([5, i]), s, s.gaussian_points, box, SIZE, SIZE)
        spans.append(np.ptp(path, axis=0))
        lows.append(path.min(axis=0))
        highs.append(path.max(axis=0))
    spans, lows, highs = np.array(spans), np.array(lows), np.array(highs)  # (DRAWS, 2)
    assert spans.min() >= s.gaussian_extent_min - 1e-9 and spans.max() < s.gaussian_extent_max
    assert lows.min() >= 0 and highs.max() <= SIZE
    # The offset ranges over the whole frame, not only over centres keeping the box inside.
    assert (lows < np.array(box) / 2).any(axis=0).all()
    assert (highs > SIZE - np.array(box) / 2).any(axis=0).all()


def test_gaussian_extent_is_capped_at_the_frame_side():
    side = 32  # smaller than the smallest extent (40 px of a 32-px reference clip): the path
    s = RenderSettings(reference_size=side)  # spans the whole frame
    for i in range(20):
        path = gaussian_centres(np.random.default_rng([6, i]), s, s.gaussian_points, (8.0, 8.0),
                                side, side)
        assert np.allclose(path.min(axis=0), 0) and np.allclose(path.max(axis=0), side)


@pytest.mark.parametrize("motion", ["gaussian", "linear"])
def test_a_one_frame_clip_has_one_still_box(motion):
    s = dataclasses.replace(RenderSettings(), motion=motion)
    trajectory = generate_trajectory(np.random.default_rng(0), s, 1, SIZE, SIZE)
    assert trajectory.boxes.shape == (1, 4) and trajectory.angles.tolist() == [0.0]
    assert np.isfinite(trajectory.boxes).all()


def test_gaussian_paths_are_smooth():
    s = RenderSettings()
    steps = np.concatenate([np.abs(np.diff(t.centres, axis=0)).ravel() for t in _trajectories(s)])
    # 48 smoothed points sampled 16 times: neighbouring centres are never far apart.
    assert np.percentile(steps, 99) < s.gaussian_extent_max / 2


@pytest.mark.parametrize("motion", ["gaussian", "linear"])
def test_same_generator_seed_gives_the_same_trajectory(motion):
    s = dataclasses.replace(RenderSettings(), motion=motion)
    a = generate_trajectory(np.random.default_rng([9, 1]), s, FRAMES, SIZE, SIZE)
    b = generate_trajectory(np.random.default_rng([9, 1]), s, FRAMES, SIZE, SIZE)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.angles, b.angles)
