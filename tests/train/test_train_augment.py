"""Finetuning augmentation as the released code runs it: RandAugment rand-m7-n4-mstd0.5-inc1
before the crop, random resized crop, random erasing (pixel mode), repeated augmentation;
then mixup / cutmix per batch."""

from __future__ import annotations

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smile_train.data.augment import (
    NO_BOX,
    OP_NAMES,
    RandAugmentPolicy,
    augment_clip,
    augmented_copies,
    draw_erase_box,
    draw_rand_augment,
    erase_boxes,
    level_to_argument,
    random_resized_crop_box,
)
from smile_train.data.finetune_loader import FinetuneClips, mix_batch, smoothed_one_hot, soft_cross_entropy
from smile_train.data.loader import TooManyCorruptSamples, expand_urls
from smile_train.data.rand_augment import apply_rand_augment
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import FinetuneSettings
from tests.conftest import write_test_shards

REFERENCE = RandAugmentPolicy()  # rand-m7-n4-mstd0.5-inc1
NO_NOISE = np.random.default_rng(0)  # for level functions that draw only a sign


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


def test_reference_settings_are_the_released_recipe():
    s = FinetuneSettings()
    assert (s.rand_augment_ops, s.rand_augment_magnitude, s.rand_augment_magnitude_std) == (4, 7.0, 0.5)
    assert s.rand_augment_increasing and s.rand_augment_prob == 0.5
    assert s.crop_scale == (0.25, 1.0) and (s.erase_prob, s.erase_mode) == (0.25, "pixel")
    assert s.repeated_augment == 1 and not s.model_ema and s.model_ema_decay == 0.9999
    assert (s.test_clips, s.test_crops) == (7, 3)
    check_settings(s)
    for key, value in [("repeated_augment", 0), ("erase_mode", "box"), ("rand_augment_magnitude", 11.0),
                       ("model_ema_decay", 1.0), ("crop_scale", (0.0, 1.0))]:
        with pytest.raises(ValueError, match=key):
            check_settings(FinetuneSettings(**{key: value}))


def test_random_resized_crop_stays_in_frame_with_its_scale_and_aspect():
    rng = np.random.default_rng(0)
    for _ in range(300):
        x0, y0, w, h = random_resized_crop_box(rng, 120, 160, (0.25, 1.0), (0.75, 1.3333))
        assert 0 <= x0 and 0 <= y0 and x0 + w <= 160 and y0 + h <= 120
        if (w, h) != (160, 120):  # not the fall-back box
            assert 0.25 * 0.9 <= w * h / (120 * 160) <= 1.0
            assert 0.75 * 0.9 <= w / h <= 1.3333 / 0.9
    # Nothing can fit a 3:1 aspect inside a square: the centred fall-back keeps the aspect bound.
    assert random_resized_crop_box(rng, 100, 100, (0.9, 1.0), (3.0, 3.0)) == (0, 33, 100, 33)


def test_magnitude_seven_maps_to_timms_arguments():
    """timm's level functions at level 7 of 10, worked out by hand (sign ignored)."""
    increasing = {
        "Rotate": 21.0,  # 30 degrees x 0.7
        "ShearX": 0.21, "ShearY": 0.21,  # 0.3 x 0.7
        "TranslateX": 0.315, "TranslateY": 0.315,  # 0.45 x 0.7 of the frame side
        "Posterize": 2.0,  # keep 4 - int(4 x 0.7) = 2 bits
        "Solarize": 77.0,  # threshold 256 - int(256 x 0.7) = 256 - 179
        "SolarizeAdd": 77.0,  # int(110 x 0.7)
        "Color": 0.63, "Contrast": 0.63, "Brightness": 0.63, "Sharpness": 0.63,  # 1 +- 0.9 x 0.7
        "AutoContrast": 0.0, "Equalize": 0.0, "Invert": 0.0,
    }
    assert set(increasing) == set(OP_NAMES) and len(OP_NAMES) == 15
    for name, expected in increasing.items():
        argument = level_to_argument(name, 7.0, True, NO_NOISE)
        offset = 1.0 if name in ("Color", "Contrast", "Brightness", "Sharpness") else 0.0
        assert abs(argument - offset) == pytest.approx(expected), name
    # the plain (inc0) variants: posterize keeps int(4 x 0.7) = 2 bits, solarize at 179,
    # enhance factor 0.1 + 1.8 x 0.7 = 1.36 (no sign)
    assert level_to_argument("Posterize", 7.0, False, NO_NOISE) == 2.0
    assert level_to_argument("Solarize", 7.0, False, NO_NOISE) == 179.0
    assert level_to_argument("Color", 7.0, False, NO_NOISE) == pytest.approx(1.36)
    signs = {np.sign(level_to_argument("Rotate", 7.0, True, np.random.default_rng(i))) for i in range(20)}
    assert signs == {-1.0, 1.0}


def test_operations_match_their_definitions_on_every_frame():
    clip = photo_like_clip(3, seed=1)
    wide = clip.astype(np.int32)
    expected = {
        ("Invert", 0.0): 255 - wide,
        ("Posterize", 2.0): wide & 0b11000000,
        ("Solarize", 77.0): np.where(wide >= 77, 255 - wide, wide),
        ("SolarizeAdd", 77.0): np.where(wide < 128, np.minimum(wide + 77, 255), wide),
        ("Brightness", 1.0): wide,
    }
    for (name, argument), want in expected.items():
        assert np.array_equal(apply_rand_augment(clip, [(name, argument)]), want.astype(np.uint8)), name
    # A translation by 0.25 of a 32-px-wide frame moves every frame 8 px left, grey (128) moves in.
    moved = apply_rand_augment(clip, [("TranslateX", 0.25)])
    assert np.array_equal(moved[:, :, :24], clip[:, :, 8:]) and (moved[:, :, 24:] == 128).all()
    # Image statistics are each frame's own, as the released per-frame PIL operations: a dark
    # frame and a bright frame are each stretched to 0..255 by AutoContrast.
    two = np.stack([clip[0] // 4, clip[0] // 4 + 150])
    stretched = apply_rand_augment(two, [("AutoContrast", 0.0)])
    assert [int(f.min()) for f in stretched] == [0, 0] and min(int(f.max()) for f in stretched) >= 254
    assert all(np.array_equal(stretched[t], apply_rand_augment(two[t : t + 1], [("AutoContrast", 0.0)])[0])
               for t in range(2))


@pytest.mark.parametrize("name, argument", [("Rotate", 21.0), ("Rotate", -21.0), ("ShearX", 0.21),
                                            ("ShearY", -0.21), ("TranslateX", 0.315), ("TranslateY", -0.315)])
def test_geometric_operations_sample_where_pils_do(name, argument):
    """timm's operations are PIL's rotate and AFFINE transform; ours warp in OpenCV with PIL's
    geometry, so away from the borders only the cubic kernel differs (a level or so)."""
    from PIL import Image

    frame = photo_like_clip(1, seed=8, height=96, width=128)[0]
    image = Image.fromarray(frame)
    if name == "Rotate":
        reference = image.rotate(argument, resample=Image.BICUBIC, fillcolor=(128, 128, 128))
    else:
        coefficients = {"ShearX": (1, argument, 0, 0, 1, 0), "ShearY": (1, 0, 0, argument, 1, 0),
                        "TranslateX": (1, 0, argument * 128, 0, 1, 0), "TranslateY": (1, 0, 0, 0, 1, argument * 96)}
        reference = image.transform(image.size, Image.AFFINE, coefficients[name], resample=Image.BICUBIC,
                                    fillcolor=(128, 128, 128))
    ours = apply_rand_augment(frame[None], [(name, argument)])[0].astype(int)
    difference = np.abs(ours - np.asarray(reference).astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 90) <= 3


@pytest.mark.parametrize("name", OP_NAMES)
def test_every_operation_changes_the_clip_and_treats_identical_frames_alike(name):
    argument = level_to_argument(name, 7.0, True, np.random.default_rng(1))
    repeated = np.repeat(photo_like_clip(1, seed=3), 4, axis=0)
    out = apply_rand_augment(repeated, [(name, argument)])
    assert out.shape == repeated.shape and out.dtype == np.uint8
    assert all(np.array_equal(out[0], out[t]) for t in range(1, 4))
    assert not np.array_equal(out, repeated), f"{name} at magnitude 7 left the clip unchanged"


def test_plans_follow_the_reference_policy():
    rng = np.random.default_rng(0)
    plans = [draw_rand_augment(rng, REFERENCE) for _ in range(3000)]
    assert 1.9 < np.mean([len(p) for p in plans]) < 2.1  # 4 drawn, each kept with p = 0.5
    rotations = [arg for plan in plans for name, arg in plan if name == "Rotate"]
    assert 20.5 < np.mean(np.abs(rotations)) < 21.5  # 30 degrees x 7 / 10, magnitude std 0.5
    assert 0.0 < np.std(np.abs(rotations)) < 2.0  # 30 x 0.5 / 10 = 1.5 degrees
    assert 0.4 < np.mean(np.array(rotations) < 0) < 0.6
    names = [name for plan in plans for name, _ in plan]
    assert set(names) == set(OP_NAMES)  # drawn with replacement over all 15
    assert draw_rand_augment(np.random.default_rng(5), REFERENCE) == draw_rand_augment(np.random.default_rng(5), REFERENCE)


def test_the_per_clip_pipeline_keeps_identical_frames_identical():
    settings = FinetuneSettings(input_size=16)
    still = np.repeat(photo_like_clip(1, seed=5), 5, axis=0)
    for seed in range(20):
        out = augment_clip(still, np.random.default_rng(seed), settings)
        assert out.shape == (5, 16, 16, 3)
        assert all(np.array_equal(out[0], out[t]) for t in range(1, 5))


def test_randaugment_runs_on_the_frames_before_the_crop():
    """With the crop covering the whole frame, the pipeline is RandAugment on the loaded frames
    (translations in units of the loaded width), then a resize to the input size."""
    clip = photo_like_clip(2, seed=6, height=32, width=32)
    settings = FinetuneSettings(input_size=16, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip=False)
    for seed in range(10):
        plan = draw_rand_augment(np.random.default_rng(seed), REFERENCE)
        want = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_LINEAR)
                         for f in apply_rand_augment(clip, plan)])
        assert np.array_equal(augment_clip(clip, np.random.default_rng(seed), settings), want)


def test_erase_boxes_respect_timms_area_and_aspect_bounds():
    rng = np.random.default_rng(0)
    boxes = [draw_erase_box(rng, 224, 224, 0.25) for _ in range(4000)]
    erased = [b for b in boxes if b != NO_BOX]
    assert 0.23 < len(erased) / len(boxes) < 0.27
    for top, left, h, w in erased:
        assert 0 <= top and top + h <= 224 and 0 <= left and left + w <= 224 and h < 224 and w < 224
        # sides are rounded from area in [0.02, 1/3] x 224^2 and h / w in [0.3, 1 / 0.3]
        assert 0.02 * 224 ** 2 * 0.9 <= h * w <= 224 ** 2 / 3 * 1.1
        assert 0.3 * 0.9 <= h / w <= 1 / 0.3 * 1.1
    assert draw_erase_box(rng, 224, 224, 0.0) == NO_BOX


def test_pixel_mode_fills_the_same_box_in_every_frame_with_fresh_normal_noise():
    videos = torch.full((2, 3, 4, 32, 32), 7.0)
    boxes = torch.tensor([[4, 6, 10, 12], list(NO_BOX)])
    out = erase_boxes(videos, boxes, "pixel", torch.Generator().manual_seed(0))
    assert torch.equal(out[1], videos[1])  # no box: untouched
    inside = out[0, :, :, 4:14, 6:18]
    assert not (inside == 7.0).any() and abs(float(inside.mean())) < 0.15 and 0.85 < float(inside.std()) < 1.15
    assert not torch.equal(inside[:, 0], inside[:, 1])  # new values in every frame
    outside = out[0].clone()
    outside[:, :, 4:14, 6:18] = 7.0
    assert torch.equal(outside, videos[0])
    assert (erase_boxes(videos, boxes, "const", torch.Generator())[0, :, :, 4:14, 6:18] == 0).all()
    per_channel = erase_boxes(videos, boxes, "rand", torch.Generator().manual_seed(0))[0, :, :, 4:14, 6:18]
    assert torch.equal(per_channel, per_channel[..., :1, :1].expand_as(per_channel))


def test_repeated_augmentation_gives_distinct_copies_of_one_clip():
    clip = photo_like_clip(4, seed=7)
    settings = FinetuneSettings(input_size=16, repeated_augment=3, erase_prob=1.0)
    videos, boxes = augmented_copies(clip, np.random.default_rng(0), settings)
    assert videos.shape == (3, 4, 16, 16, 3) and boxes.shape == (3, 4)
    assert all(not np.array_equal(videos[i], videos[j]) for i in range(3) for j in range(i + 1, 3))
    assert len({tuple(b) for b in boxes.tolist()}) == 3 and (boxes[:, 2:] > 0).all()


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


@pytest.mark.parametrize("seed", range(20))
def test_soft_cross_entropy_keeps_the_written_out_formulas_bits(seed):
    """Losses and gradients bit for bit as -sum(targets x log_softmax) per clip, then the mean."""
    generator = torch.Generator().manual_seed(seed)
    clips, classes = (int(n) for n in torch.randint(1, 64, (2,), generator=generator))
    logits = (torch.randn(clips, classes + 1, generator=generator) * 4).requires_grad_()
    targets = torch.softmax(torch.randn(clips, classes + 1, generator=generator), dim=-1)
    written = logits.detach().clone().requires_grad_()
    ours = soft_cross_entropy(logits, targets)
    expected = torch.sum(-targets * torch.log_softmax(written, dim=-1), dim=-1).mean()
    ours.backward()
    expected.backward()
    assert torch.equal(ours, expected) and torch.equal(logits.grad, written.grad)


def test_labelled_stream_yields_augmented_clips_and_refuses_unlabelled_shards(tmp_path):
    labelled = tmp_path / "labelled"
    write_test_shards(labelled, clips=4, frames=4, size=32, per_shard=4, label_count=3)
    settings = FinetuneSettings(shards=str(labelled / "*.tar"), num_classes=3, input_size=16, frames=4,
                                shuffle_buffer=1, num_workers=0)
    samples = [s for _, s in zip(range(4), FinetuneClips(expand_urls(settings.shards), settings))]
    assert all(s["video"].shape == (1, 4, 16, 16, 3) and s["video"].dtype == torch.uint8 for s in samples)
    assert all(s["erase"].shape == (1, 4) for s in samples)
    assert {int(s["label"]) for s in samples} <= {0, 1, 2}
    twice = FinetuneSettings(**{**vars(settings), "repeated_augment": 2})
    pair = next(iter(FinetuneClips(expand_urls(twice.shards), twice)))
    assert pair["video"].shape == (2, 4, 16, 16, 3) and pair["label"][0] == pair["label"][1]
    again = [s for _, s in zip(range(4), FinetuneClips(expand_urls(settings.shards), settings))]
    assert all(torch.equal(a["video"], b["video"]) for a, b in zip(samples, again))
    unlabelled = tmp_path / "unlabelled"
    write_test_shards(unlabelled, clips=2, frames=4, size=32, per_shard=2)
    strict = FinetuneSettings(shards=str(unlabelled / "*.tar"), num_classes=3, input_size=16, frames=4,
                              num_workers=0, max_corrupt_samples=0)
    with pytest.raises(TooManyCorruptSamples, match="no label"):
        next(iter(FinetuneClips(expand_urls(strict.shards), strict)))
