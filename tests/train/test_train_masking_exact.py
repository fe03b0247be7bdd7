"""Exact masking rules: cells from box corners where floor, round and ceil disagree, and random
draws that are really random (a deterministic "first k" would pass every count check)."""

from __future__ import annotations

import numpy as np
import pytest

from smile_train.data.masking import (
    MaskSettings,
    balance_mask,
    sample_mask,
    tokens_to_mask,
    trajectory_mask,
    trajectory_tokens,
    tube_mask,
)

GRID = (8, 14, 14)
OFF_FRAME = [300.0, 300.0, 301.0, 301.0]  # covers no cell

# One box per case, in both frames of slice 0 (every other frame off the grid). Each corner sits
# where floor, round and ceil of corner / 16 give different cells:
#   27 / 16 = 1.69 -> floor 1, round 2      17 / 16 = 1.06 -> floor 1, ceil 2
#   33 / 16 = 2.06 -> ceil 3, round 2       45 / 16 = 2.81 -> ceil 3, floor 2
# Expected cells: rows / cols floor(low / 16) .. ceil(high / 16) + 1 (exclusive), clipped.
CELL_CASES = [
    ([27.0, 17.0, 33.0, 45.0], (slice(1, 4), slice(1, 4))),
    ([17.0, 27.0, 45.0, 33.0], (slice(1, 4), slice(1, 4))),
    ([40.0, 8.0, 56.0, 24.0], (slice(0, 3), slice(2, 5))),  # 40 / 16 = 2.5: round-half cases
    ([200.0, 215.0, 223.0, 223.9], (slice(13, 14), slice(12, 14))),  # clipped at the grid edge
    ([0.0, 0.0, 16.0, 16.0], (slice(0, 2), slice(0, 2))),  # exact multiples: ceil(1) + 1 = 2
]


def _tokens_of_a_box_in_slice_zero(box: list[float], cells) -> np.ndarray:
    """The (slices, rows, columns) tokens of a box held over the two frames of slice 0, after
    checking that slice 0 marks exactly `cells` (None: none)."""
    boxes = np.tile(np.array(OFF_FRAME), (16, 1, 1))
    boxes[0, 0] = boxes[1, 0] = box
    tokens = trajectory_tokens(boxes, GRID).reshape(GRID)
    expected = np.zeros(GRID[1:], bool)
    if cells is not None:
        expected[cells] = True
    assert (tokens[0] == expected).all(), np.argwhere(tokens[0])
    return tokens


@pytest.mark.parametrize("box, cells", CELL_CASES, ids=[str(c[0]) for c in CELL_CASES])
def test_cells_are_floor_of_low_to_ceil_of_high_plus_one(box, cells):
    tokens = _tokens_of_a_box_in_slice_zero(box, cells)
    assert not tokens[1:].any()


def _pool_mask(size: int = 400, masked: int = 200) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros(size, bool)
    mask[:masked] = True
    return mask, np.zeros(size, bool)


def test_surplus_tokens_are_unmasked_at_random():
    """200 masked, target 180: over seeds the 20 unmasked tokens differ and spread over the pool.
    Taking the first (or last) 20 of the pool would unmask the same tokens every time."""
    mask, objects = _pool_mask()
    chosen = [frozenset(np.flatnonzero(mask & ~balance_mask(np.random.default_rng(s), mask, objects, 180)))
              for s in range(60)]
    assert all(len(c) == 20 for c in chosen)
    assert len(set(chosen)) == 60
    counts = np.bincount(np.concatenate([list(c) for c in chosen]), minlength=200)
    assert (counts[:100].sum(), counts[100:].sum()) == pytest.approx((600, 600), rel=0.2)
    assert (counts > 0).mean() > 0.9  # nearly every token of the pool was drawn at least once


def test_missing_tokens_are_masked_at_random():
    mask, objects = _pool_mask()
    chosen = [frozenset(np.flatnonzero(balance_mask(np.random.default_rng(s), mask, objects, 220) & ~mask))
              for s in range(60)]
    assert len(set(chosen)) == 60
    counts = np.bincount(np.concatenate([list(c) for c in chosen]), minlength=400)[200:]
    assert (counts[:100].sum(), counts[100:].sum()) == pytest.approx((600, 600), rel=0.2)


def test_visible_trajectory_tokens_are_drawn_at_random_over_the_whole_object():
    """The share of trajectory tokens left visible is drawn over all of them: over seeds every
    slice keeps some visible, not only the first slices of the token order."""
    boxes = np.tile(np.array([[40.0, 40.0, 120.0, 120.0]]), (16, 1, 1))  # 7 x 7 cells per slice
    objects = trajectory_tokens(boxes, GRID)
    per_slice = np.zeros(GRID[0])
    for seed in range(40):
        mask = trajectory_mask(np.random.default_rng(seed), boxes, GRID, traj_unmask_ratio=0.2)
        visible = (objects & ~mask).reshape(GRID[0], -1).sum(axis=1)
        per_slice += visible
    assert (per_slice > 0).all()
    assert per_slice.max() < 2.5 * per_slice.min()


def test_tube_positions_are_drawn_at_random():
    first = [tube_mask(np.random.default_rng(s)).reshape(8, -1)[0] for s in range(40)]
    counts = np.sum(first, axis=0)
    assert counts.min() > 0 and counts.max() < 40  # no position always or never masked


# Boxes at the frame's edges (one box in both frames of slice 0): what each one covers.
EDGE_CASES = [
    ([-10.0, 50.0, 0.0, 60.0], None),  # zero width after the crop clipped it to x = 0
    ([-10.0, 50.0, 0.5, 60.0], (slice(3, 5), slice(0, 2))),  # half a pixel inside: column 0
    ([50.0, -10.0, 60.0, 0.0], None),  # zero height at y = 0
    ([224.0, 50.0, 260.0, 60.0], None),  # starts at the right edge: outside
    ([50.0, 224.0, 60.0, 230.0], None),  # starts at the bottom edge: outside
    ([223.5, 223.5, 230.0, 230.0], (slice(13, 14), slice(13, 14))),  # last cell only
    ([30.0, 30.0, 30.0, 40.0], None),  # zero width inside the frame
]


@pytest.mark.parametrize("box, cells", EDGE_CASES, ids=[str(c[0]) for c in EDGE_CASES])
def test_boxes_at_the_edges_cover_exactly_their_cells(box, cells):
    _tokens_of_a_box_in_slice_zero(box, cells)


@pytest.mark.parametrize("boxes, message", [
    (np.tile([[10.0, 10.0, 5.0, 20.0]], (16, 1, 1)), "x1 < x0"),
    (np.tile([[10.0, 10.0, 20.0, 5.0]], (16, 1, 1)), "y1 < y0"),
    (np.zeros((16, 1, 5)), r"\(16, K, 4\)"),
    (np.zeros((16, 4)), r"\(16, K, 4\)"),
    (np.zeros((17, 1, 4)), r"\(16, K, 4\)"),
    (np.full((16, 1, 4), np.inf), "non-finite"),
])
def test_malformed_boxes_are_refused(boxes, message):
    with pytest.raises(ValueError, match=message):
        trajectory_tokens(boxes, GRID)


def test_balancing_past_every_token_is_an_error():
    mask, objects = _pool_mask(size=10, masked=5)
    with pytest.raises(ValueError, match="cannot balance the mask: 1 tokens short"):
        balance_mask(np.random.default_rng(0), mask, objects, 11)
    assert balance_mask(np.random.default_rng(0), mask, objects, 10).all()
    assert not balance_mask(np.random.default_rng(0), mask, objects, 0).any()


def test_sample_mask_follows_the_object_cell_rule_and_the_ratio():
    """An object jumping diagonally within one tubelet: "released" covers the enclosing 5 x 5
    block of its two boxes, "per_frame" only the two 2 x 2 boxes. With exactly 25 tokens to
    mask and none left visible, the released mask is that block and nothing else."""
    grid = (1, 14, 14)
    boxes = np.array([[[0.0, 0.0, 16.0, 16.0]], [[48.0, 48.0, 64.0, 64.0]]])  # frames 0 and 1
    block = np.zeros((14, 14), bool)
    block[:5, :5] = True  # rows / cols floor(0 / 16) .. ceil(64 / 16) + 1
    corners = np.zeros((14, 14), bool)
    corners[:2, :2] = corners[3:5, 3:5] = True
    ratio = block.sum() / 196
    for seed in range(5):
        released = sample_mask(np.random.default_rng(seed), MaskSettings("trajectory", ratio, 0.0, "released"),
                               grid, boxes).reshape(14, 14)
        assert (released == block).all()
        per_frame = sample_mask(np.random.default_rng(seed), MaskSettings("trajectory", ratio, 0.0, "per_frame"),
                                grid, boxes).reshape(14, 14)
        assert per_frame[corners].all() and per_frame.sum() == block.sum() and not (per_frame == block).all()
        default = trajectory_mask(np.random.default_rng(seed), boxes, grid, ratio, 0.0)  # released
        assert (default.reshape(14, 14) == block).all()
    tube = sample_mask(np.random.default_rng(0), MaskSettings("tube", 0.5), GRID)
    assert tube.sum() == 8 * 98


@pytest.mark.parametrize("field", ["ratio", "traj_unmask_ratio"])
def test_ratio_errors_name_the_setting(field):
    with pytest.raises(ValueError, match=rf"^{field} must lie in \[0, 1\], got 1.5"):
        MaskSettings(**{field: 1.5})
    with pytest.raises(ValueError, match=rf"^{field} must lie in \[0, 1\], got 1.5"):
        trajectory_mask(np.random.default_rng(0), np.zeros((16, 0, 4)), **{field: 1.5})


def test_without_objects_a_trajectory_mask_is_the_tube_mask_of_its_ratio():
    """Non-object tokens follow the tube: the same spatial positions in every slice, at the
    mask's own ratio (a tube drawn at another ratio and balanced afterwards breaks the tube)."""
    for seed in range(5):
        mask = trajectory_mask(np.random.default_rng(seed), np.zeros((16, 0, 4)), GRID, ratio=0.5)
        slices = mask.reshape(8, -1)
        assert (slices == slices[0]).all() and slices[0].sum() == 98


def test_the_reference_count_is_1248():
    assert tokens_to_mask() == 1248 and tokens_to_mask(GRID, 0.9) == 8 * 176
