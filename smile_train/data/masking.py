"""Token masks for masked video modelling (docs/method.md §5). Numpy only: runs in data-loader workers.

A mask is a flat bool array (N,) over the (t, h, w) token grid, True = masked (hidden from the
encoder, predicted by the decoder). Token index = (s * h + y) * w + x for temporal slice s
(frames tubelet*s .. tubelet*s + tubelet - 1), patch row y and column x. Every random choice is
drawn from the numpy Generator passed in, so a seeded Generator gives the same mask every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from smile_train.model.geometry import DEFAULT_GRID, PATCH, TUBELET

MASK_KINDS = ("tube", "trajectory")
# Which token cells belong to an object (docs/method.md §9): "released" = per tube slice, the enclosing
# box of the unrotated boxes of the slice's frames; "per_frame" = the union of each frame's
# unrotated box; "rotated" = per_frame on the rotated object's axis-aligned bounds. The cells of
# a box run from floor(min / patch) to ceil(max / patch) + 1 (exclusive), clipped to the grid.
OBJECT_CELLS = ("released", "per_frame", "rotated")
FLOOR_TOLERANCE = 1e-9  # floor(0.57 * 100) must be 57, not 56 from 56.99999999999999
BOX_FIELDS = 4  # x0, y0, x1, y1 in clip pixels


@dataclass
class MaskSettings:
    """Which mask a clip gets; defaults are the reference defaults (docs/method.md §5)."""

    kind: str = "tube"  # "tube" (stage 2, natural clips) or "trajectory" (stage 1, overlays)
    ratio: float = 0.8  # masked share of the spatial positions of every temporal slice
    traj_unmask_ratio: float = 0.1  # share of trajectory tokens left visible (docs/method.md §9)
    object_cells: str = "released"  # one of OBJECT_CELLS (rotated: the caller passes rotated bounds)

    def __post_init__(self) -> None:
        check_choice("mask kind", self.kind, MASK_KINDS)
        check_choice("object_cells", self.object_cells, OBJECT_CELLS)
        check_ratio("ratio", self.ratio)
        check_ratio("traj_unmask_ratio", self.traj_unmask_ratio)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} {value!r} not in {choices}")


def check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def floor_share(ratio: float, count: int) -> int:
    """floor(ratio * count), robust to binary rounding of the product."""
    return int(math.floor(ratio * count + FLOOR_TOLERANCE))


def tokens_to_mask(grid: tuple[int, int, int] = DEFAULT_GRID, ratio: float = 0.8) -> int:
    """Tokens masked per clip: floor(ratio * h * w) per slice times t (1248 at the defaults)."""
    slices, rows, cols = grid
    return floor_share(ratio, rows * cols) * slices


def tube_mask(rng: np.random.Generator, grid: tuple[int, int, int] = DEFAULT_GRID,
              ratio: float = 0.8) -> np.ndarray:
    """The same random floor(ratio * h * w) spatial positions masked in every temporal slice."""
    check_ratio("ratio", ratio)
    slices, rows, cols = grid
    spatial = np.zeros(rows * cols, dtype=bool)
    spatial[rng.choice(rows * cols, size=floor_share(ratio, rows * cols), replace=False)] = True
    return np.tile(spatial, slices)  # (N,)


def _cell_range(low: float, high: float, patch: int, cells: int) -> tuple[int, int]:
    """Patch cells [first, stop) of the pixel span [low, high], widened by one (docs/method.md §5)."""
    first = min(max(math.floor(low / patch), 0), cells)
    stop = min(max(math.ceil(high / patch) + 1, 0), cells)
    return first, stop


def check_boxes(boxes: np.ndarray, grid: tuple[int, int, int], tubelet: int) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    frames = grid[0] * tubelet
    if boxes.ndim != 3 or boxes.shape[0] != frames or boxes.shape[2] != BOX_FIELDS:
        raise ValueError(f"boxes must be ({frames}, K, {BOX_FIELDS}) [x0, y0, x1, y1] per frame "
                         f"and object, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError("boxes hold non-finite values")
    if (boxes[..., 2] < boxes[..., 0]).any() or (boxes[..., 3] < boxes[..., 1]).any():
        raise ValueError("a box has x1 < x0 or y1 < y0")
    return boxes


def _covering(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, K) False for boxes of zero area (an object cropped away) or wholly outside the frame."""
    x0, y0, x1, y1 = np.moveaxis(boxes, -1, 0)
    return (x1 > np.maximum(x0, 0)) & (y1 > np.maximum(y0, 0)) & (x0 < width) & (y0 < height)


def _slice_boxes(boxes: np.ndarray, covering: np.ndarray, tubelet: int) -> tuple[np.ndarray, np.ndarray]:
    """Enclosing box (S, K, 4) of each object's covering boxes in each tube slice, and whether
    the slice has any (S, K)."""
    slices, objects = boxes.shape[0] // tubelet, boxes.shape[1]
    shape = (slices, tubelet, objects, 2)
    low = np.where(covering[..., None], boxes[..., :2], np.inf).reshape(shape).min(axis=1)
    high = np.where(covering[..., None], boxes[..., 2:], -np.inf).reshape(shape).max(axis=1)
    return np.concatenate([low, high], axis=-1), covering.reshape(shape[:3]).any(axis=1)


def trajectory_tokens(boxes: np.ndarray, grid: tuple[int, int, int] = DEFAULT_GRID,
                      patch: int = PATCH, tubelet: int = TUBELET, enclosing: bool = True) -> np.ndarray:
    """Tokens covered by an object: bool (N,) from boxes (T, K, 4) [x0, y0, x1, y1] in clip pixels.

    For slice s (frames tubelet*s ... tubelet*s + tubelet - 1) and every object, a box marks the
    cells from floor(min corner / patch) to ceil(max corner / patch) + 1 (exclusive), clipped to
    the grid; the slice's trajectory tokens are the union over objects. With `enclosing` (the
    released generator) the box is the enclosing box of the object's boxes in the slice's
    frames; without it each frame's box marks its own cells (the two differ where an object
    moves diagonally by more than a cell within one tubelet). Boxes of zero area (an object
    cropped away) and boxes wholly outside the frame cover nothing.
    """
    boxes = check_boxes(boxes, grid, tubelet)
    slices, rows, cols = grid
    cells = np.zeros(grid, dtype=bool)
    covering = _covering(boxes, cols * patch, rows * patch)  # (T, K)
    if enclosing:
        boxes, covering = _slice_boxes(boxes, covering, tubelet)  # (S, K, 4), (S, K)
    for index, object_index in zip(*np.nonzero(covering)):
        x0, y0, x1, y1 = boxes[index, object_index].tolist()
        col0, col1 = _cell_range(x0, x1, patch, cols)
        row0, row1 = _cell_range(y0, y1, patch, rows)
        cells[index if enclosing else index // tubelet, row0:row1, col0:col1] = True
    return cells.reshape(-1)


def _pick(rng: np.random.Generator, pools: list[np.ndarray], count: int) -> np.ndarray:
    """`count` indices drawn at random from the first pool, then from the next when it runs dry."""
    picked = []
    for pool in pools:
        take = min(count, pool.size)
        picked.append(rng.choice(pool, size=take, replace=False) if take else pool[:0])
        count -= take
    if count:
        raise ValueError(f"cannot balance the mask: {count} tokens short")
    return np.concatenate(picked)


def balance_mask(rng: np.random.Generator, mask: np.ndarray, object_tokens: np.ndarray,
                 target: int) -> np.ndarray:
    """Copy of `mask` with exactly `target` tokens masked, disturbing object tokens last.

    Surplus: unmask masked non-object tokens first (in a trajectory mask these are exactly the
    tube-masked ones), then masked object tokens. Deficit: mask visible non-object tokens first,
    then visible object tokens. Within each pool the tokens are drawn at random from `rng`.
    """
    mask = mask.copy()
    surplus = int(mask.sum()) - target
    if surplus > 0:
        pools = [np.flatnonzero(mask & ~object_tokens), np.flatnonzero(mask & object_tokens)]
        mask[_pick(rng, pools, surplus)] = False
    elif surplus < 0:
        pools = [np.flatnonzero(~mask & ~object_tokens), np.flatnonzero(~mask & object_tokens)]
        mask[_pick(rng, pools, -surplus)] = True
    return mask


def trajectory_mask(rng: np.random.Generator, boxes: np.ndarray,
                    grid: tuple[int, int, int] = DEFAULT_GRID, ratio: float = 0.8,
                    traj_unmask_ratio: float = 0.1, patch: int = PATCH,
                    tubelet: int = TUBELET, enclosing: bool = True,
                    objects: np.ndarray | None = None) -> np.ndarray:
    """Stage-1 "tube + trajectory" mask (docs/method.md §5): bool (N,) with exactly tokens_to_mask() True.

    In order, each step drawing from `rng`:
    1. a tube mask (`tube_mask(rng, grid, ratio)`) decides the non-object tokens;
    2. every trajectory token (`trajectory_tokens`) is masked except floor(traj_unmask_ratio x
       their number), drawn at random, which stay visible even where the tube would mask them;
    3. `balance_mask` brings the count to floor(ratio * h * w) * t: a surplus is unmasked first
       among tube-masked non-object tokens, then among masked trajectory tokens; a deficit is
       filled first from visible non-object tokens, then from visible trajectory tokens.

    `objects`: the clip's `trajectory_tokens`, when the caller already has them (they draw
    nothing, so several masks of one clip can share them).
    """
    check_ratio("traj_unmask_ratio", traj_unmask_ratio)
    if objects is None:
        objects = trajectory_tokens(boxes, grid, patch, tubelet, enclosing)
    mask = tube_mask(rng, grid, ratio)
    object_index = np.flatnonzero(objects)
    visible = rng.choice(object_index, size=floor_share(traj_unmask_ratio, object_index.size),
                         replace=False)
    mask[object_index] = True
    mask[visible] = False
    return balance_mask(rng, mask, objects, tokens_to_mask(grid, ratio))


def sample_masks(rng: np.random.Generator, settings: MaskSettings, count: int,
                 grid: tuple[int, int, int] = DEFAULT_GRID, boxes: np.ndarray | None = None,
                 patch: int = PATCH, tubelet: int = TUBELET) -> np.ndarray:
    """`count` masks of one clip, (count, N), drawn one after the other as `sample_mask` draws
    them; a trajectory mask's object tokens are found once for all of them."""
    if settings.kind == "tube":
        return np.stack([tube_mask(rng, grid, settings.ratio) for _ in range(count)])
    if boxes is None:
        raise ValueError("a trajectory mask needs the clip's object boxes")
    enclosing = settings.object_cells == "released"
    objects = trajectory_tokens(boxes, grid, patch, tubelet, enclosing)
    return np.stack([trajectory_mask(rng, boxes, grid, settings.ratio, settings.traj_unmask_ratio, patch, tubelet,
                                     enclosing, objects) for _ in range(count)])


def sample_mask(rng: np.random.Generator, settings: MaskSettings,
                grid: tuple[int, int, int] = DEFAULT_GRID, boxes: np.ndarray | None = None,
                patch: int = PATCH, tubelet: int = TUBELET) -> np.ndarray:
    """The mask `settings` asks for; a trajectory mask needs the clip's boxes (T, K, 4): the
    unrotated boxes, or the rotated bounds (layout.footprint_boxes) for object_cells "rotated"."""
    return sample_masks(rng, settings, 1, grid, boxes, patch, tubelet)[0]
