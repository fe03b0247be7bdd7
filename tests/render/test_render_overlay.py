"""Compositing and patch mode: exact pixels, paste order, clipping, rotation bounds, alpha."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from smile_data.render.backgrounds import repeated
from smile_data.render.clip import Overlays, render_frames
from smile_data.render.overlay import (
    SpriteCache, composite, paste, paste_order, premultiply_rgba, shrink_to,
)
from smile_data.render.patches import PATCH_SHAPES, make_patch, shape_mask
from smile_data.render.settings import RenderSettings
from smile_data.render.trajectory import Trajectory


def _static(box: tuple[float, float, float, float], frames: int = 3, angle: float = 0.0) -> Trajectory:
    x0, y0, x1, y1 = box
    centres = np.tile([(x0 + x1) / 2, (y0 + y1) / 2], (frames, 1))
    sizes = np.tile([x1 - x0, y1 - y0], (frames, 1))
    return Trajectory(centres=centres.astype(float), sizes=sizes.astype(float),
                      angles=np.full(frames, angle, float))


def _known_object() -> np.ndarray:
    """(6, 4) RGBA with varied colours and alphas 0, 64, 128, 255."""
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=(6, 4, 4), dtype=np.uint8)
    rgba[..., 3] = np.array([0, 64, 128, 255], np.uint8)[None, :]
    return rgba


def _white_square(side: int) -> np.ndarray:
    """A premultiplied, fully opaque white (side, side) sprite."""
    return premultiply_rgba(np.full((side, side, 4), 255, np.uint8))


def _white_square_on_black(frame_side: int, side: int, centre: tuple[float, float], angle: float) -> np.ndarray:
    """A black (frame_side, frame_side) frame with a white square pasted at its own size."""
    frame = np.zeros((frame_side, frame_side, 3), np.uint8)
    paste(frame, _white_square(side), centre=centre, size=(float(side), float(side)), angle=angle)
    return frame


def test_premultiply_rounds_exactly_and_swaps_to_bgra():
    rgba = np.random.default_rng(1).integers(0, 256, size=(50, 40, 4), dtype=np.uint8)
    sprite = premultiply_rgba(rgba)
    expected = np.floor(rgba[..., :3].astype(float) * rgba[..., 3:] / 255 + 0.5)
    assert np.array_equal(sprite[..., :3], expected[..., ::-1]) and np.array_equal(sprite[..., 3], rgba[..., 3])


def test_known_alpha_on_black_gives_exact_pixels():
    rgba = _known_object()
    frame = np.zeros((40, 30, 3), np.uint8)
    paste(frame, premultiply_rgba(rgba), centre=(10 + 2, 20 + 3), size=(4, 6), angle=0.0)
    rgb, alpha = rgba[..., :3].astype(float), rgba[..., 3:].astype(float)
    expected_rgb = np.floor(rgb * alpha / 255 + 0.5).astype(np.uint8)
    assert np.array_equal(frame[20:26, 10:14], expected_rgb[..., ::-1])  # frames are BGR
    outside = frame.copy()
    outside[20:26, 10:14] = 0
    assert not outside.any()


def test_known_alpha_blends_over_a_grey_background():
    rgba = _known_object()
    frame = np.full((16, 16, 3), 200, np.uint8)
    paste(frame, premultiply_rgba(rgba), centre=(2 + 2, 5 + 3), size=(4, 6), angle=0.0)
    rgb, alpha = rgba[..., :3].astype(float)[..., ::-1], rgba[..., 3:].astype(float)
    expected = np.floor(rgb * alpha / 255 + 0.5) + np.floor(200 * (255 - alpha) / 255 + 0.5)
    assert np.array_equal(frame[5:11, 2:6], np.minimum(expected, 255).astype(np.uint8))
    assert (frame[:5] == 200).all() and (frame[11:] == 200).all()


def test_transparent_pixels_never_bleed_their_colour():
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., :3] = 255  # white but fully transparent ...
    rgba[5:15, 5:15] = (10, 20, 30, 255)  # ... around a dark opaque square
    frame = np.zeros((64, 64, 3), np.uint8)
    paste(frame, premultiply_rgba(rgba), centre=(32.3, 31.7), size=(33.0, 27.0), angle=17.0)
    assert frame.max() <= 30  # bilinear edges mix with black, never with the hidden white


def test_out_of_frame_parts_are_clipped_without_error():
    frame = _white_square_on_black(20, 10, centre=(0.0, 0.0), angle=0.0)
    assert (frame[:5, :5] == 255).all() and not frame[5:, :].any() and not frame[:, 5:].any()
    sprite = _white_square(10)
    paste(frame, sprite, centre=(19.0, 19.0), size=(10.0, 10.0), angle=30.0)
    before = frame.copy()
    for centre in [(-50.0, 5.0), (5.0, 70.0), (500.0, 500.0)]:
        paste(frame, sprite, centre=centre, size=(10.0, 10.0), angle=45.0)
    assert np.array_equal(frame, before)


def test_rotation_expands_the_bounds_instead_of_cutting_corners():
    frame = _white_square_on_black(64, 20, centre=(32.0, 32.0), angle=45.0)
    covered = frame[..., 0] > 127
    ys, xs = np.nonzero(covered)
    diagonal = 20 * np.sqrt(2)
    assert xs.max() - xs.min() + 1 >= diagonal - 2 and ys.max() - ys.min() + 1 >= diagonal - 2
    assert abs(covered.sum() - 400) < 40  # the whole square, turned


def test_positive_angles_turn_counter_clockwise():
    rgba = np.zeros((4, 20, 4), np.uint8)
    rgba[:, 10:] = 255  # only the right half is opaque
    frame = np.zeros((64, 64, 3), np.uint8)
    paste(frame, premultiply_rgba(rgba), centre=(32.0, 32.0), size=(20.0, 4.0), angle=90.0)
    ys, _ = np.nonzero(frame[..., 0] > 127)
    assert ys.mean() < 32  # the right half now points up on screen


def test_larger_objects_are_pasted_first():
    red = premultiply_rgba(np.dstack([np.full((8, 8, 3), (255, 0, 0), np.uint8), np.full((8, 8), 255, np.uint8)]))
    green = premultiply_rgba(np.dstack([np.full((8, 8, 3), (0, 255, 0), np.uint8), np.full((8, 8), 255, np.uint8)]))
    clip = np.zeros((3, 32, 32, 3), np.uint8)
    small, large = _static((12, 12, 18, 18)), _static((4, 4, 28, 28))
    order = composite(clip, [green, red], [small, large])  # small listed first
    assert order == [1, 0]
    assert (clip[:, 15, 15] == (0, 255, 0)).all()  # BGR green: the small one stays on top
    assert (clip[:, 6, 6] == (0, 0, 255)).all()


def test_paste_order_ranks_mean_width_times_mean_height():
    # The released paste sorts by mean(w) x mean(h), not mean(w x h). Object a: 10 x 10 then
    # 30 x 2 -> mean(w x h) 80, mean(w) x mean(h) = 20 x 6 = 120. Object b: 10 x 10 twice -> 100
    # either way. So a is larger (pasted first); equal ranks go last index first.
    a = Trajectory(centres=np.full((2, 2), 16.0), sizes=np.array([[10.0, 10.0], [30.0, 2.0]]), angles=np.zeros(2))
    b = Trajectory(centres=np.full((2, 2), 16.0), sizes=np.full((2, 2), 10.0), angles=np.zeros(2))
    assert (a.mean_area, b.mean_area) == (120.0, 100.0)
    assert paste_order([b, a]) == [1, 0] and paste_order([a, b]) == [0, 1]
    assert paste_order([b, b, a]) == [2, 1, 0]


def test_opacity_scales_the_overlay():
    sprite = _white_square(4)
    clip = np.zeros((2, 8, 8, 3), np.uint8)
    composite(clip, [sprite], [_static((2, 2, 6, 6), frames=2)], [np.array([1.0, 0.8])])
    assert clip[0, 3, 3, 0] == 255 and clip[1, 3, 3, 0] == 204


def test_shrink_to_reaches_the_target_and_never_upscales():
    sprite = np.zeros((300, 200, 4), np.uint8)
    assert shrink_to(sprite, 64.2, 40).shape == (40, 65, 4)
    assert shrink_to(sprite, 150, 120).shape == (120, 150, 4)
    assert shrink_to(sprite, 500, 500) is sprite


def test_sprite_cache_stays_within_its_byte_budget():
    cache = SpriteCache(max_bytes=10_000)
    for key in range(50):
        cache.get(key, lambda: np.zeros((30, 30, 4), np.uint8))  # 3600 bytes each
    assert len(cache) == 2
    loads = []
    cache.get(49, lambda: loads.append(1) or np.zeros(1))
    assert not loads  # a hit does not reload


@pytest.mark.parametrize("shape,area", [("rectangle", 1.0), ("ellipse", np.pi / 4), ("rhombus", 0.5)])
def test_patch_shapes_cover_their_area(shape, area):
    mask = shape_mask(shape, 80, 60)
    assert mask.shape == (60, 80)
    assert abs((mask == 255).mean() - area) < 0.03


def test_patches_come_from_the_clip_with_opacity_in_range():
    s = RenderSettings()
    rng = np.random.default_rng(5)
    clip = rng.integers(0, 256, size=(8, 48, 48, 3), dtype=np.uint8)
    shapes = []
    for _ in range(300):
        trajectory = _static((10, 10, 30, 26), frames=8)
        patch = make_patch(rng, s, clip, trajectory)
        x, y, w, h = patch.crop
        assert (w, h) == (20, 16) and patch.sprite.shape == (16, 20, 4)
        opaque = patch.sprite[..., 3] == 255
        source = clip[patch.source_frame, y : y + h, x : x + w]
        assert np.array_equal(patch.sprite[..., :3][opaque], source[opaque])
        assert np.all((patch.opacity >= s.patch_opacity_min) & (patch.opacity <= s.patch_opacity_max))
        shapes.append(patch.shape)
    shares = [shapes.count(name) / len(shapes) for name in PATCH_SHAPES]
    assert np.allclose(shares, s.patch_shape_probs, atol=0.08)


def test_soft_edges_fade_out():
    s = dataclasses.replace(RenderSettings(), patch_soft_edge_prob=1.0, patch_shape_probs=[1.0, 0.0, 0.0])
    clip = np.full((4, 64, 64, 3), 100, np.uint8)
    patch = make_patch(np.random.default_rng(0), s, clip, _static((0, 0, 40, 40), frames=4))
    alpha = patch.sprite[..., 3]
    assert patch.soft_edges and alpha[0, 0] < 128 and alpha[20, 20] > alpha[0, 20] > alpha[0, 0]


def test_a_still_background_gets_each_frames_overlays_only():
    """A still (one frame seen T times, read-only) is pasted into one working frame whose pasted
    regions are put back after each frame: the same frames as pasting into T separate copies."""
    s = RenderSettings(size=48, frames=5, codec="png")
    rng = np.random.default_rng(4)
    background = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    centres = np.array([[10.0 + 6 * t, 20.0 + 3 * t] for t in range(5)])
    trajectory = Trajectory(centres=centres, sizes=np.full((5, 2), 14.0), angles=np.arange(5) * 9.0)
    sprite = premultiply_rgba(rng.integers(0, 256, (20, 20, 4), dtype=np.uint8))
    overlays = Overlays([sprite], [trajectory], [None], [{"kind": "object"}])
    still = render_frames(repeated(background, 5), overlays, s)
    copies = render_frames(np.repeat(background[None], 5, axis=0), overlays, s)
    assert still == copies
