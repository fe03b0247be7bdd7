"""Finetuning augmentation: random resized crop, clip-consistent RandAugment, mixup / cutmix."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smile_train.data import expand_urls
from smile_train.finetune_data import (
    OP_NAMES, RAND_AUGMENT_OPS, FinetuneClips, apply_rand_augment, augment_clip, draw_rand_augment,
    mix_batch, random_resized_crop_box, smoothed_one_hot, soft_cross_entropy,
)
from smile_train.finetune_settings import FinetuneSettings
from tests.conftest import write_test_shards

STATISTICS_OPS = {"AutoContrast", "Equalize", "Contrast"}  # computed over the whole clip



def photo_like_clip(frames: int, seed: int, height: int = 24, width: int = 32) -> np.ndarray:
    """(T, H, W, 3) uint8 with smooth structure and a range inside [30, 200]."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    clip = []
    for t in range(frames):
        phase = rng.uniform(0, 2 * np.pi, 3)
        channels = [115 + 85 * np.sin(xs / (4 + c) + ys / 5 + phase[c] + t) for c in range(3)]
        clip.append(np.stack(channels, axis=-1))
    return np.clip(clip, 30, 200).astype(np.uint8)


def test_random_resized_crop_stays_in_frame_with_its_scale_and_aspect():
    rng = np.random.default_rng(0)
    for _ in range(300):
        x0, y0, w, h = random_resized_crop_box(rng, 120, 160, (0.08, 1.0), (0.75, 1.3333))
        assert 0 <= x0 and 0 <= y0 and x0 + w <= 160 and y0 + h <= 120
        if (w, h) != (160, 120):  # not the fall-back box
            assert 0.08 * 0.9 <= w * h / (120 * 160) <= 1.0
            assert 0.75 * 0.9 <= w / h <= 1.3333 / 0.9
    # Nothing can fit a 3:1 aspect inside a square: the centred fall-back keeps the aspect bound.
    assert random_resized_crop_box(rng, 100, 100, (0.9, 1.0), (3.0, 3.0)) == (0, 33, 100, 33)


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_operation_changes_the_clip_and_treats_frames_alike(name):
    operation, level_to_argument = RAND_AUGMENT_OPS[name]
    argument = level_to_argument(9.0, np.random.default_rng(1))
    frame = photo_like_clip(1, seed=3)
    repeated = np.repeat(frame, 4, axis=0)
    out = operation(repeated, argument)
    assert out.shape == repeated.shape and out.dtype == np.uint8
    assert all(np.array_equal(out[0], out[t]) for t in range(1, 4))
    assert np.array_equal(out[:1], operation(frame, argument))
    assert not np.array_equal(out, repeated), f"{name} at magnitude 9 left the clip unchanged"


def test_one_plan_is_applied_to_every_frame():
    clip = photo_like_clip(6, seed=4)
    for seed in range(40):
        plan = draw_rand_augment(np.random.default_rng(seed), 2, 9.0, 0.5, 0.5)
        out = apply_rand_augment(clip, plan)
        if not {name for name, _ in plan} & STATISTICS_OPS:
            per_frame = np.concatenate([apply_rand_augment(clip[t : t + 1], plan) for t in range(6)])
            assert np.array_equal(out, per_frame)
    # The whole per-clip pipeline (crop, flip, RandAugment) keeps identical frames identical.
    settings = FinetuneSettings(input_size=16)
    still = np.repeat(photo_like_clip(1, seed=5), 5, axis=0)
    for seed in range(20):
        out = augment_clip(still, np.random.default_rng(seed), settings)
        assert out.shape == (5, 16, 16, 3)
        assert all(np.array_equal(out[0], out[t]) for t in range(1, 5))


def test_plans_follow_the_magnitude_and_probability_settings():
    rng = np.random.default_rng(0)
    plans = [draw_rand_augment(rng, 2, 9.0, 0.5, 0.5) for _ in range(3000)]
    assert 0.45 < sum(len(p) for p in plans) / (2 * len(plans)) < 0.55  # each op kept with p = 0.5
    rotations = [arg for plan in plans for name, arg in plan if name == "Rotate"]
    assert 25.5 < np.mean(np.abs(rotations)) < 28.5  # 30 degrees x 9 / 10, magnitude std 0.5
    assert 0.35 < np.mean(np.array(rotations) < 0) < 0.65
    assert draw_rand_augment(np.random.default_rng(5), 2, 9, 0.5, 0.5) == \
        draw_rand_augment(np.random.default_rng(5), 2, 9, 0.5, 0.5)


def mixing(**changes) -> SimpleNamespace:
    values = dict(mixup=0.8, cutmix=1.0, mixup_prob=1.0, mixup_switch_prob=0.5, label_smoothing=0.1, num_classes=5)
    return SimpleNamespace(**{**values, **changes})


def test_mixup_and_cutmix_targets_sum_to_one_and_match_the_pixels():
    videos = torch.rand(4, 3, 2, 16, 16)
    labels = torch.tensor([0, 1, 2, 3])
    for seed in range(30):
        mixed, targets, lam = mix_batch(videos, labels, mixing(), np.random.default_rng(seed))
        assert torch.allclose(targets.sum(dim=1), torch.ones(4))
        from_self = (mixed == videos).float().mean().item()
        if torch.allclose(mixed, videos * lam + videos.flip(0) * (1 - lam)):
            continue  # mixup
        # cutmix: one box in every frame; lambda is the share of pixels kept from the clip itself
        assert math.isclose(from_self, lam, abs_tol=1e-6)
        assert torch.equal((mixed == videos)[:, :, 0], (mixed == videos)[:, :, 1])
    smooth = smoothed_one_hot(labels, 5, 0.1)
    assert torch.allclose(smooth[0], torch.tensor([0.92, 0.02, 0.02, 0.02, 0.02]))
    unmixed, targets, lam = mix_batch(videos, labels, mixing(mixup_prob=0.0), np.random.default_rng(0))
    assert lam == 1.0 and torch.equal(unmixed, videos) and torch.equal(targets, smooth)


def test_soft_cross_entropy_matches_label_smoothing():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = F.cross_entropy(logits, labels, label_smoothing=0.1)
    assert torch.allclose(soft_cross_entropy(logits, smoothed_one_hot(labels, 5, 0.1)), expected)


def test_labelled_stream_yields_augmented_clips_and_refuses_unlabelled_shards(tmp_path):
    labelled = tmp_path / "labelled"
    write_test_shards(labelled, clips=4, frames=4, size=32, per_shard=4, label_count=3)
    settings = FinetuneSettings(shards=str(labelled / "*.tar"), num_classes=3, input_size=16, frames=4,
                                shuffle_buffer=1, num_workers=0)
    samples = [s for _, s in zip(range(4), FinetuneClips(expand_urls(settings.shards), settings))]
    assert all(s["video"].shape == (4, 16, 16, 3) and s["video"].dtype == torch.uint8 for s in samples)
    assert {int(s["label"]) for s in samples} <= {0, 1, 2}
    again = [s for _, s in zip(range(4), FinetuneClips(expand_urls(settings.shards), settings))]
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(samples, again))
    unlabelled = tmp_path / "unlabelled"
    write_test_shards(unlabelled, clips=2, frames=4, size=32, per_shard=2)
    strict = FinetuneSettings(shards=str(unlabelled / "*.tar"), num_classes=3, input_size=16, frames=4,
                              num_workers=0, max_corrupt_samples=0)
    with pytest.raises(RuntimeError, match="no label"):
        next(iter(FinetuneClips(expand_urls(strict.shards), strict)))
