"""ImageNet normalisation, VideoMAE's normalised-pixel target, and token standardisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smile_train.model.targets import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    normalize,
    pixel_targets,
    standardize_tokens,
    unnormalize,
)


def random_uint8_videos(shape=(2, 4, 32, 48, 3), seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=shape, dtype=np.uint8))


def test_normalize_uint8_and_float_agree_and_channels_move_first():
    raw = random_uint8_videos()
    out = normalize(raw)
    assert out.shape == (2, 3, 4, 32, 48) and out.dtype == torch.float32
    value = raw[1, 2, 5, 7, 1].item() / 255.0
    assert out[1, 1, 2, 5, 7].item() == pytest.approx((value - IMAGENET_MEAN[1]) / IMAGENET_STD[1])
    torch.testing.assert_close(normalize(raw.float() / 255.0), out)
    torch.testing.assert_close(unnormalize(out), raw.permute(0, 4, 1, 2, 3).float() / 255.0)
    with pytest.raises(ValueError, match=r"\(B, T, H, W, 3\)"):
        normalize(torch.zeros(2, 3, 4, 8, 8))


def test_pixel_targets_match_a_tube_normalised_by_hand():
    videos = normalize(random_uint8_videos(shape=(2, 4, 32, 48, 3), seed=1))
    targets = pixel_targets(videos)
    assert targets.shape == (2, 2 * 2 * 3, 1536)  # grid (2, 2, 3)
    batch, t, h, w = 1, 1, 0, 2
    token = (t * 2 + h) * 3 + w
    pixels = unnormalize(videos)[batch, :, 2 * t:2 * t + 2, 16 * h:16 * h + 16, 16 * w:16 * w + 16]
    values = pixels.permute(1, 2, 3, 0).reshape(512, 3).double().numpy()  # (f, r, c) x channel
    expected = (values - values.mean(0)) / (values.std(0, ddof=1) + 1e-6)
    np.testing.assert_allclose(targets[batch, token].numpy(), expected.reshape(-1), atol=1e-4)
    raw = pixel_targets(videos, per_tube=False)  # pixel_norm: false, the [0, 1] pixels in that order
    np.testing.assert_allclose(raw[batch, token].numpy(), values.reshape(-1), atol=1e-6)


def test_pixel_targets_are_per_tube_and_channel_normalised():
    targets = pixel_targets(normalize(random_uint8_videos(seed=2)))
    per_channel = targets.reshape(2, -1, 512, 3)
    torch.testing.assert_close(per_channel.mean(2), torch.zeros(2, 12, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(2), torch.ones(2, 12, 3), atol=1e-4, rtol=0)
    flat = torch.zeros(1, 3, 2, 16, 16)  # a constant tube stays finite thanks to the eps
    assert torch.isfinite(pixel_targets(flat)).all()
    with pytest.raises(ValueError, match="tubes"):
        pixel_targets(torch.zeros(1, 3, 3, 16, 16))


def test_standardize_tokens_per_clip_and_channel():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 50, 8, generator=generator) * 4 + torch.arange(8.0)
    features[1] *= 10  # clips are standardised independently
    out = standardize_tokens(features)
    torch.testing.assert_close(out.mean(1), torch.zeros(3, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(1, unbiased=False), torch.ones(3, 8), atol=1e-4, rtol=0)
    np.testing.assert_allclose(out[2, :, 3].numpy(), ((features[2, :, 3] - features[2, :, 3].mean())
                               / features[2, :, 3].std(unbiased=False)).numpy(), atol=1e-4)
