"""Tube and trajectory masks: exact counts, trajectory cells, balancing order, determinism; the
exact rules: cells from box corners where floor, round and ceil disagree, and random draws that
are really random (a deterministic "first k" would pass every count check)."""

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
SPATIAL = 196


def moving_boxes(rng: np.random.Generator, objects: int, side: float = 48.0) -> np.ndarray:
    """(16, objects, 4) boxes drifting across the clip, some leaving the frame."""
    start = rng.uniform(-40, 230, size=(objects, 2))
    step = rng.uniform(-12, 12, size=(objects, 2))
    centres = start[None] + np.arange(16)[:, None, None] * step[None]  # (16, objects, 2)
    return np.concatenate([centres - side / 2, centres + side / 2], axis=-1)


BOX_CASES = {
    "none": np.zeros((16, 0, 4)),
    "everything": np.tile([[-10.0, -10.0, 300.0, 300.0]], (16, 1, 1)),
    "outside": np.tile([[300.0, 300.0, 340.0, 360.0], [-90.0, 10.0, -40.0, 50.0]], (16, 1, 1)),
    "small": np.tile([[100.0, 100.0, 110.0, 108.0]], (16, 1, 1)),
}


def test_tube_mask_repeats_156_positions_in_every_slice():
    mask = tube_mask(np.random.default_rng(0))
    assert mask.shape == (1568,) and mask.dtype == bool and mask.sum() == 1248
    slices = mask.reshape(8, SPATIAL)
    assert (slices == slices[0]).all() and slices[0].sum() == 156
    assert tokens_to_mask(GRID, 0.8) == 1248 and tokens_to_mask((4, 10, 10), 0.57) == 4 * 57


@pytest.mark.parametrize("case", sorted(BOX_CASES))
@pytest.mark.parametrize("unmask_ratio", [0.0, 0.1, 0.2, 0.9, 1.0])
def test_trajectory_mask_has_exactly_1248_masked(case, unmask_ratio):
    for seed in range(10):
        mask = trajectory_mask(np.random.default_rng(seed), BOX_CASES[case],
                               traj_unmask_ratio=unmask_ratio)
        assert mask.dtype == bool and mask.shape == (1568,) and mask.sum() == 1248


def test_random_moving_objects_always_give_1248():
    rng = np.random.default_rng(123)
    for seed in range(200):
        boxes = moving_boxes(rng, objects=int(rng.integers(0, 5)), side=float(rng.uniform(8, 160)))
        assert trajectory_mask(np.random.default_rng(seed), boxes).sum() == 1248


def test_trajectory_cells_follow_floor_and_ceil_plus_one():
    boxes = np.zeros((16, 1, 4))
    boxes[:] = [300.0, 300.0, 301.0, 301.0]  # off-frame everywhere ...
    boxes[2, 0] = [20.0, 33.0, 40.0, 47.0]  # ... except frame 2 (slice 1)
    cells = trajectory_tokens(boxes).reshape(GRID)
    expected = np.zeros((14, 14), bool)
    expected[2:4, 1:4] = True  # rows floor(33/16)=2 .. ceil(47/16)+1=4, cols 1 .. ceil(40/16)+1=4
    assert (cells[1] == expected).all()
    assert cells.sum() == expected.sum()
    boxes[3, 0] = [200.0, 0.0, 224.0, 16.0]  # frame 3: cols 12..14 (clipped), rows 0..2
    cells = trajectory_tokens(boxes, enclosing=False).reshape(GRID)  # each frame its own cells
    expected[0:2, 12:14] = True
    assert (cells[1] == expected).all()
    # released rule: the enclosing box [20, 0, 224, 47] of the slice's two frames
    cells = trajectory_tokens(boxes).reshape(GRID)
    expected[:] = False
    expected[0:4, 1:14] = True  # rows 0 .. ceil(47/16)+1 = 4, cols floor(20/16) = 1 .. 15 -> 14
    assert (cells[1] == expected).all() and cells.sum() == expected.sum()


def test_objects_outside_the_frame_cover_nothing_and_huge_ones_everything():
    assert not trajectory_tokens(BOX_CASES["outside"]).any()
    assert trajectory_tokens(BOX_CASES["everything"]).all()


def test_trajectory_tokens_masked_at_the_configured_ratio_before_balancing():
    """Huge object, no balancing needed: exactly the unmask share of its tokens stays visible."""
    boxes = BOX_CASES["everything"]
    unmask_ratio = 320 / 1568  # 320 visible, 1248 masked
    mask = trajectory_mask(np.random.default_rng(0), boxes, traj_unmask_ratio=unmask_ratio)
    assert (~mask).sum() == 320


def test_small_object_keeps_its_unmask_share_whichever_way_the_count_is_balanced():
    """Small object: balancing moves only background tokens, in the direction the count needs."""
    boxes = BOX_CASES["small"]
    objects = trajectory_tokens(boxes)
    assert objects.sum() == 8 * 4  # 2x2 cells per slice
    directions = set()
    for seed in range(40):
        mask = trajectory_mask(np.random.default_rng(seed), boxes, traj_unmask_ratio=0.25)
        assert (mask & objects).sum() == 32 - 8  # floor(0.25 * 32) = 8 visible
        tube = tube_mask(np.random.default_rng(seed))  # first draw of the same generator
        before = (tube & ~objects).sum() + 24  # masked count before balancing
        if before >= 1248:  # surplus: background masked only where the tube masked it
            assert not (mask & ~objects & ~tube).any()
        else:  # deficit: every tube-masked background token stays masked
            assert (mask[tube & ~objects]).all()
        directions.add(before >= 1248)
    assert directions == {True, False}  # both branches exercised


def test_balance_takes_non_object_tokens_first():
    rng = np.random.default_rng(0)
    objects = np.zeros(20, bool)
    objects[:8] = True
    mask = np.zeros(20, bool)
    mask[[0, 1, 2, 3, 10, 11, 12, 13, 14]] = True  # 4 object + 5 background masked
    fewer = balance_mask(rng, mask, objects, target=6)  # surplus 3 -> from background only
    assert fewer.sum() == 6 and (fewer[:8] == mask[:8]).all() and not (fewer & ~mask).any()
    fewest = balance_mask(rng, mask, objects, target=2)  # surplus 7: 5 background, 2 objects
    assert fewest.sum() == 2 and not fewest[8:].any()
    more = balance_mask(rng, mask, objects, target=15)  # deficit 6 -> from background only
    assert more.sum() == 15 and (more[:8] == mask[:8]).all() and (more & mask).sum() == 9
    full = balance_mask(rng, mask, objects, target=16)  # deficit 7 = every background token
    assert full.sum() == 16 and full[8:].all() and (full[:8] == mask[:8]).all()
    most = balance_mask(rng, mask, objects, target=18)
    assert most.sum() == 18 and most[8:].all() and (most & mask).sum() == mask.sum()


def test_masks_are_deterministic_under_a_seed():
    boxes = moving_boxes(np.random.default_rng(5), objects=2)
    first = trajectory_mask(np.random.default_rng([7, 42]), boxes)
    again = trajectory_mask(np.random.default_rng([7, 42]), boxes)
    other = trajectory_mask(np.random.default_rng([7, 43]), boxes)
    assert (first == again).all() and not (first == other).all()
    assert (tube_mask(np.random.default_rng(3)) == tube_mask(np.random.default_rng(3))).all()


def test_sample_mask_dispatches_and_validates():
    rng = np.random.default_rng(0)
    assert sample_mask(rng, MaskSettings()).sum() == 1248
    trajectory = MaskSettings(kind="trajectory", traj_unmask_ratio=0.1)
    assert sample_mask(rng, trajectory, boxes=BOX_CASES["small"]).sum() == 1248
    with pytest.raises(ValueError, match="boxes"):
        sample_mask(rng, trajectory)
    with pytest.raises(ValueError, match="kind"):
        MaskSettings(kind="random")
    with pytest.raises(ValueError, match="ratio"):
        MaskSettings(ratio=1.5)
    with pytest.raises(ValueError, match=r"\(16, K, 4\)"):
        trajectory_tokens(np.zeros((8, 1, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        trajectory_tokens(np.full((16, 1, 4), np.nan))


def test_boxes_cropped_away_cover_no_token():
    from smile_train.data.masking import trajectory_tokens

    grid = (8, 14, 14)
    zero_width_at_edge = np.zeros((16, 1, 4))  # a box clipped to x0 = x1 = 0
    assert not trajectory_tokens(zero_width_at_edge, grid).any()
    outside = np.tile(np.array([[[224.0, 10, 260, 40]]]), (16, 1, 1))
    assert not trajectory_tokens(outside, grid).any()


def test_released_object_cells_take_the_enclosing_box_of_each_slice():
    # Values where floor, round and ceil disagree: 40/16 = 2.5, 71/16 = 4.4375, 17.4/16 = 1.0875,
    # 47.7/16 = 2.98. Slice 0: frame 0 at x [40, 55], frame 1 at x [60, 71]; y [17.4, 30] then
    # [33, 47.7]. Enclosing box [40, 17.4, 71, 47.7]: cols floor(2.5) = 2 .. ceil(4.4375)+1 = 6,
    # rows floor(1.0875) = 1 .. ceil(2.98)+1 = 4.
    boxes = np.full((16, 1, 4), 300.0)
    boxes[0, 0] = [40.0, 17.4, 55.0, 30.0]
    boxes[1, 0] = [60.0, 33.0, 71.0, 47.7]
    expected = np.zeros((14, 14), bool)
    expected[1:4, 2:6] = True
    released = trajectory_tokens(boxes).reshape(GRID)
    assert (released[0] == expected).all() and released.sum() == 12
    # per frame: frame 0 cols 2 .. ceil(3.4375)+1 = 5, rows 1 .. ceil(1.875)+1 = 3;
    # frame 1 cols floor(3.75) = 3 .. 6, rows floor(2.0625) = 2 .. 4: 6 + 6 cells, 2 shared
    per_frame = trajectory_tokens(boxes, enclosing=False).reshape(GRID)
    expected[:] = False
    expected[1:3, 2:5] = True
    expected[2:4, 3:6] = True
    assert (per_frame[0] == expected).all() and per_frame.sum() == 10


def test_object_cells_setting_picks_the_boxes_and_the_rule():
    from smile_train.data.loader import object_boxes

    # one object, a 32-px square centred on (32, 32), turned by 45 degrees in every frame
    metadata = {"frames": 16, "objects": [{"boxes": [[16, 16, 48, 48]] * 16, "angles": [45.0] * 16}]}
    unrotated = object_boxes(metadata, "released")
    np.testing.assert_allclose(unrotated[0, 0], [16, 16, 48, 48])
    rotated = object_boxes(metadata, "rotated")  # half side 16 x (cos 45 + sin 45) = 22.63
    np.testing.assert_allclose(rotated[0, 0], [32 - 22.627, 32 - 22.627, 32 + 22.627, 32 + 22.627], atol=1e-3)
    # unrotated: cells 1 .. ceil(3)+1 = 4 (3 x 3); rotated: 0 .. ceil(3.41)+1 = 5 (5 x 5), per slice
    assert trajectory_tokens(unrotated).sum() == 8 * 9 and trajectory_tokens(rotated).sum() == 8 * 25
    assert MaskSettings().object_cells == "released"
    with pytest.raises(ValueError, match="object_cells"):
        MaskSettings(object_cells="rounded")


# --- exact rules: corners where floor, round and ceil disagree; draws that are really random ---

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
