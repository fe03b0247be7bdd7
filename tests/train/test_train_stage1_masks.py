"""Stage-1 masks end to end: clips with an off-centre, rotated, moving object go through the real
loader with the multi-scale crop and the flip on, and the masked tokens must cover the object.

The object's pixels are known independently of any box arithmetic: each frame is drawn with the
rotated object in the red channel and its unrotated box in the green channel, over a black
background whose blue channel is a left-to-right ramp (it tells, in the loader's output, whether
a clip was flipped and how wide its crop was). Whatever the loader does to the frames, the red
and green pixels of its output are where the object and its box ended up.

What each object-cell rule (settings.object_cells) promises: "rotated" covers every pixel of the
turned object; "released" (the enclosing box of a slice's two unrotated boxes) and "per_frame"
cover every pixel of the unrotated box, which a turned object may leave.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from smile_data.shards import layout
from smile_train.data.loader import PretrainClips
from smile_train.settings.pretrain import PretrainSettings

FRAMES, HEIGHT, WIDTH = 16, 160, 192  # source clips, wider than high: crops move in x and y
SIZE, PATCH, TUBELET = 128, 16, 2  # loader output: 8 x 8 x 8 tokens
OBJECT_W, OBJECT_H = 44.0, 14.0  # declared (unrotated) box size: long and thin, so rotation shows
MARGIN = 1.0  # drawn pixels stay this far inside the declared box: resampling never pushes
#               a drawn pixel past it, so every miss below is a rule broken, not a rounding edge
CLIPS, SAMPLES = 8, 24
ON = 127  # a channel above this is drawn there
OBJECT, BOX = 0, 1  # channels: the rotated object, its unrotated box
COVERED = {"rotated": OBJECT, "released": BOX, "per_frame": BOX}  # what each rule must cover


def _object_track(rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """(centre x, centre y, angle in degrees) per frame: starts in the left third, moves, turns."""
    cx, cy = rng.uniform(60, 76), rng.uniform(50, 110)
    vx, vy = rng.uniform(0.5, 2.0), rng.uniform(-1.5, 1.5)
    angle, turn = rng.uniform(20, 70), rng.uniform(-4, 4)
    return [(cx + vx * t, cy + vy * t, angle + turn * t) for t in range(FRAMES)]


def _draw(track: list[tuple[float, float, float]]) -> np.ndarray:
    """(T, H, W, 3) uint8: R the rotated object, G its unrotated box, B a ramp over x."""
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH] + 0.5  # pixel centres
    frames = np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8)
    frames[..., 2] = (np.arange(WIDTH) * 255 // (WIDTH - 1)).astype(np.uint8)
    for t, (cx, cy, angle) in enumerate(track):
        cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        along = (xs - cx) * cos + (ys - cy) * sin
        across = -(xs - cx) * sin + (ys - cy) * cos
        rotated = (np.abs(along) <= OBJECT_W / 2 - MARGIN) & (np.abs(across) <= OBJECT_H / 2 - MARGIN)
        upright = (np.abs(xs - cx) <= OBJECT_W / 2 - MARGIN) & (np.abs(ys - cy) <= OBJECT_H / 2 - MARGIN)
        frames[t, ..., 0] = np.where(rotated, 255, 0)
        frames[t, ..., 1] = np.where(upright, 255, 0)
    return frames


def _metadata(key: str, track: list[tuple[float, float, float]]) -> dict:
    boxes = [[cx - OBJECT_W / 2, cy - OBJECT_H / 2, cx + OBJECT_W / 2, cy + OBJECT_H / 2]
             for cx, cy, _ in track]
    return {
        "schema_version": layout.SCHEMA_VERSION, "key": key, "seed": 0, "frames": FRAMES,
        "height": HEIGHT, "width": WIDTH, "codec": "png",
        "background": {"kind": "black", "source": None, "frame_indices": None},
        "objects": [{"kind": "object", "bank_path": "objects/stick/0.png", "lvis_id": 1,
                     "name": "stick", "boxes": boxes, "angles": [a for _, _, a in track]}],
        "label": None,
    }


@pytest.fixture(scope="module")
def rotated_shard(tmp_path_factory, craft_shard, sample_members) -> Path:
    rng = np.random.default_rng(2025)
    samples = []
    for index in range(CLIPS):
        key, track = layout.sample_key(index), _object_track(rng)
        samples.append((key, sample_members(_draw(track), _metadata(key, track))))
    return craft_shard(tmp_path_factory.mktemp("rotated") / "clips-000000.tar", samples)


def loader_samples(shard: Path, **changes) -> list[dict]:
    settings = dict(input_size=SIZE, frames=FRAMES, crop="multiscale", flip=True, num_workers=0,
                    shuffle_buffer=0, mask="trajectory", mask_ratio=0.5, traj_unmask_ratio=0.0,
                    mask_repeats=2, second_mask="own", seed=3)
    dataset = PretrainClips([str(shard)], PretrainSettings(**{**settings, **changes}))
    return list(itertools.islice(iter(dataset), SAMPLES))


def tokens_under(pixels: np.ndarray) -> np.ndarray:
    """(T, S, S) bool pixels -> bool (N,) tokens holding any of them."""
    frames, size, _ = pixels.shape
    cells = size // PATCH
    hit = pixels.reshape(frames // TUBELET, TUBELET, cells, PATCH, cells, PATCH).any(axis=(1, 3, 5))
    return hit.reshape(-1)


def covered_tokens(video: np.ndarray, rule: str) -> np.ndarray:
    """Tokens holding a pixel that `rule` promises to cover."""
    return tokens_under(video[..., COVERED[rule]] > ON)


def _flipped_and_crop_width(video: np.ndarray) -> tuple[bool, int]:
    """From the blue ramp: mirrored or not, and the source width the crop spanned."""
    ramp = video[0, :, :, 2].astype(np.float64).mean(axis=0)
    span = abs(ramp[-1] - ramp[0]) * (WIDTH - 1) / 255 * SIZE / (SIZE - 1)
    return bool(ramp[0] > ramp[-1]), int(round(span))


@pytest.fixture(scope="module", params=sorted(COVERED))
def stage1_samples(request, rotated_shard) -> tuple[str, list[dict]]:
    return request.param, loader_samples(rotated_shard, object_cells=request.param)


def test_the_loader_really_crops_flips_and_rotates(stage1_samples):
    """The checks below mean something only if the clips saw several crops, both flip states,
    and objects whose rotated footprint leaves their upright box."""
    _, samples = stage1_samples
    views = [_flipped_and_crop_width(s["video"].numpy()) for s in samples]
    assert {flipped for flipped, _ in views} == {True, False}
    assert len({width // 8 for _, width in views}) >= 3  # several crop widths
    seen = [s["video"].numpy() for s in samples if (s["video"].numpy()[..., OBJECT] > ON).any()]
    assert len(seen) >= 0.75 * len(samples)  # a crop may miss the object now and then
    assert all(((video[..., OBJECT] > ON) & (video[..., BOX] <= ON)).any() for video in seen)


def test_every_token_the_rule_covers_is_masked(stage1_samples):
    """traj_unmask_ratio 0: every token holding a pixel the rule promises to cover (after crop,
    resize and flip) is masked, in both masks of every clip. Ignoring the rotation ("rotated"),
    using the boxes from before the crop or missing the flip leaves some of them visible."""
    rule, samples = stage1_samples
    for sample in samples:
        covered = covered_tokens(sample["video"].numpy(), rule)
        for mask in sample["masks"].numpy():
            visible = np.flatnonzero(covered & ~mask)
            assert visible.size == 0, f"{rule}: covered tokens left visible: {visible[:10]}"


@pytest.mark.parametrize("rule", sorted(COVERED))
def test_most_object_tokens_are_masked_at_the_released_visible_share(rotated_shard, rule):
    """With 10% of the trajectory tokens left visible (the released share), about 90% of the
    covered tokens are masked, far above the 50% a tube mask alone would hide."""
    samples = loader_samples(rotated_shard, traj_unmask_ratio=0.1, object_cells=rule)
    covered = masked = 0
    for sample in samples:
        tokens = covered_tokens(sample["video"].numpy(), rule)
        for mask in sample["masks"].numpy():
            covered += int(tokens.sum())
            masked += int((tokens & mask).sum())
            assert mask.sum() == 8 * 32  # exactly floor(0.5 * 64) per slice
    assert masked / covered >= 0.85, masked / covered


def test_tube_masks_ignore_the_object(rotated_shard):
    """Stage 2's tube mask does not follow the object: at ratio 0.5 some object tokens show.
    (Guards the tests above against a loader that masks object pixels by accident.)"""
    samples = loader_samples(rotated_shard, mask="tube")
    visible = sum(int((covered_tokens(s["video"].numpy(), "rotated") & ~m).sum())
                  for s in samples for m in s["masks"].numpy())
    assert visible > 0


# --- overlays pasted by the loader (overlay: objects) ---------------------------------------


@pytest.fixture(scope="module")
def black_shard_and_bank(tmp_path_factory, craft_shard, sample_members) -> tuple[Path, Path]:
    """Black clips without objects, and a bank of opaque white sticks: in the loader's output
    every bright pixel belongs to an overlay the loader pasted."""
    root = tmp_path_factory.mktemp("overlays")
    for name in ("dog", "apple"):
        stick = np.zeros((12, 44, 4), np.uint8)
        stick[...] = 255
        path = root / "bank" / name / "0.png"
        path.parent.mkdir(parents=True)
        cv2.imwrite(str(path), stick)
    samples = []
    for index in range(4):
        key = layout.sample_key(index)
        metadata = {**_metadata(key, [(0.0, 0.0, 0.0)] * FRAMES), "objects": []}
        samples.append((key, sample_members(np.zeros((FRAMES, HEIGHT, WIDTH, 3), np.uint8), metadata)))
    return craft_shard(root / "black" / "clips-000000.tar", samples), root / "bank"


def test_loader_overlays_are_covered_by_the_rotated_rule(black_shard_and_bank):
    """Objects pasted by the loader, turning as they move: with object_cells "rotated" and no
    trajectory token left visible, every token holding a bright pixel is masked."""
    shard, bank = black_shard_and_bank
    samples = loader_samples(shard, object_cells="rotated", overlay="objects", bank=str(bank),
                             overlay_settings={"objects": 2, "box_sides": [24, 32], "box_aspects": [3.0]})
    turned = 0
    for sample in samples:
        video = sample["video"].numpy()
        bright = video.max(axis=-1) > 200  # (T, S, S): the sticks' opaque cores
        assert bright.any()
        covered = tokens_under(bright)
        for mask in sample["masks"].numpy():
            visible = np.flatnonzero(covered & ~mask)
            assert visible.size == 0, f"overlay tokens left visible: {visible[:10]}"
        turned += int(not _axis_aligned(bright[0]))
    assert turned > 0  # some sticks were drawn turned


def _axis_aligned(pixels: np.ndarray) -> bool:
    """True when the bright pixels fill their bounding box (an upright rectangle)."""
    ys, xs = np.nonzero(pixels)
    return bool(ys.size) and pixels[ys.min():ys.max() + 1, xs.min():xs.max() + 1].mean() > 0.9
