"""Temporal windows, TSN segments, test views and the multi-scale crop, against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from smile_data.sampling import (
    crop_pairs, crop_sides, grid_offsets, multiscale_crop_box, segment_indices, segment_test_indices,
    window_indices, window_test_indices,
)


class FixedDraws:
    """Stands in for a numpy Generator: integers() returns queued values (checked against high)."""

    def __init__(self, *values):
        self.values = list(values)

    def integers(self, high, size=None):
        if size is None:
            value = self.values.pop(0)
            assert 0 <= value < high
            return value
        drawn = np.asarray(self.values.pop(0))
        assert drawn.shape == (size,) and (0 <= drawn).all() and (drawn < high).all()
        return drawn


def test_window_start_is_uniform_over_the_room_and_advances_by_stride():
    # 100 frames, 16 x stride 4: starts 0..36 (100 - 64 + 1 = 37 choices).
    assert window_indices(FixedDraws(36), 100, 16, 4).tolist() == list(range(36, 100, 4))
    assert window_indices(FixedDraws(5), 100, 16, 4).tolist() == [5 + 4 * k for k in range(16)]
    starts = {int(window_indices(np.random.default_rng(i), 100, 16, 4)[0]) for i in range(400)}
    assert starts == set(range(37))


def test_short_video_starts_at_zero_and_repeats_the_last_reached_frame():
    # 30 frames < 64: start 0, advance while index + 4 < 29 -> 0, 4, ..., 28, then 28 repeated.
    assert window_indices(FixedDraws(), 30, 16, 4).tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8
    # The released rule never reads the last frame: 16 frames at stride 1 end 13, 14, 14.
    assert window_indices(FixedDraws(0), 16, 16, 1).tolist() == list(range(15)) + [14]
    assert window_indices(FixedDraws(), 1, 16, 4).tolist() == [0] * 16


def test_tsn_segments_draw_one_frame_per_equal_segment():
    # 50 frames / 16 segments: length 3 each, offsets drawn in [0, 3).
    offsets = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 2]
    expected = [3 * k + o for k, o in enumerate(offsets)]
    assert segment_indices(FixedDraws(offsets), 50, 16).tolist() == expected
    assert segment_indices(FixedDraws(), 10, 16).tolist() == [0] * 16  # shorter than T: zeros
    drawn = segment_indices(np.random.default_rng(0), 160, 16)
    assert ((drawn // 10) == np.arange(16)).all()  # each index inside its own segment


def test_tsn_test_views_take_the_released_two_offsets():
    # tick = 50 / 16 = 3.125: view 0 int(3.125 k), view 1 int(1.5625 + 3.125 k).
    assert segment_test_indices(50, 16, 0, 2).tolist() == [
        0, 3, 6, 9, 12, 15, 18, 21, 25, 28, 31, 34, 37, 40, 43, 46]
    assert segment_test_indices(50, 16, 1, 2).tolist() == [
        1, 4, 7, 10, 14, 17, 20, 23, 26, 29, 32, 35, 39, 42, 45, 48]


def test_window_test_views_are_evenly_spaced_over_the_whole_video():
    # 300 frames at stride 4 -> 75 strided frames; 5 clips of 16 start at int(k * 59 / 4).
    starts = [int(window_test_indices(300, 16, 4, k, 5)[0]) // 4 for k in range(5)]
    assert starts == [0, 14, 29, 44, 59]
    assert window_test_indices(300, 16, 4, 2, 5).tolist() == [4 * (29 + i) for i in range(16)]
    assert window_test_indices(300, 16, 4, 0, 1)[0] == 4 * 29  # one view: the centre clip
    short = window_test_indices(20, 16, 4, 1, 3)  # 5 strided frames, the last repeated
    assert short.tolist() == [0, 4, 8, 12, 16] + [16] * 11


def test_multiscale_crop_sides_snap_and_pair_like_the_released_crop():
    assert crop_sides(240, 224, (1, .875, .75, .66)) == [240, 210, 180, 158]
    assert crop_sides(226, 224, (1, .875, .75, .66)) == [224, 197, 169, 149]  # 226 snaps to 224
    pairs = crop_pairs([240, 210, 180, 158], 1)
    assert len(pairs) == 10 and (240, 158) not in pairs and (158, 180) in pairs
    assert grid_offsets(320, 226, 224, 197) == [
        (0, 0), (96, 0), (0, 28), (96, 28), (48, 14), (0, 14), (96, 14), (48, 28), (48, 0),
        (24, 7), (72, 7), (24, 21), (72, 21)]


def test_multiscale_crops_use_only_grid_offsets_and_every_pair():
    rng = np.random.default_rng(0)
    seen_pairs, seen_offsets = set(), set()
    for _ in range(600):
        x0, y0, w, h = multiscale_crop_box(rng, 240, 320, 224, (1, .875, .75, .66), 1)
        assert (x0, y0) in grid_offsets(320, 240, w, h)
        seen_pairs.add((w, h))
        if 240 - h >= 4:  # a grid with a step of at least one pixel on both axes
            seen_offsets.add(grid_offsets(320, 240, w, h).index((x0, y0)))
    assert seen_pairs == set(crop_pairs([240, 210, 180, 158], 1))
    assert seen_offsets == set(range(13))
    # Small inputs never overflow: a side snapped up to the input size is clipped to the frame.
    x0, y0, w, h = multiscale_crop_box(rng, 222, 300, 224, (1.0,), 0)
    assert (w, h) == (222, 222) and y0 == 0
    with pytest.raises(ValueError, match="crop offsets"):
        multiscale_crop_box(rng, 240, 320, 224, (1.0,), 0, offsets="diagonal")
