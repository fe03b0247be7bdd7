"""Pixel normalisation and the reconstruction targets of docs/method.md §6.

Clips enter the model ImageNet-normalised as (B, 3, T, H, W) float; targets are (B, N, D) in the
student's token order (t, h, w), so `targets[mask].reshape(B, -1, D)` lines up with predictions.
"""

from __future__ import annotations

import torch

from smile_train.model.geometry import PATCH, TUBELET

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
UINT8_MAX = 255.0
TARGET_EPS = 1e-6
CHANNELS = 3


def _channel_stats(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(IMAGENET_MEAN, dtype=like.dtype, device=like.device)
    std = torch.tensor(IMAGENET_STD, dtype=like.dtype, device=like.device)
    return mean, std


def normalize(videos: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Channels-last clips (B, T, H, W, 3) -> ImageNet-normalised (B, 3, T, H, W).

    uint8 input is read as 0..255; float input as already scaled to [0, 1].
    """
    if videos.ndim != 5 or videos.shape[-1] != CHANNELS:
        raise ValueError(f"videos must be (B, T, H, W, 3), got {tuple(videos.shape)}")
    if videos.dtype == torch.uint8:
        pixels = videos.to(dtype) / UINT8_MAX
    elif videos.is_floating_point():
        pixels = videos.to(dtype)
    else:
        raise ValueError(f"videos must be uint8 or float, got {videos.dtype}")
    mean, std = _channel_stats(pixels)
    return ((pixels - mean) / std).permute(0, 4, 1, 2, 3).contiguous()


def unnormalize(videos: torch.Tensor) -> torch.Tensor:
    """ImageNet-normalised (B, 3, T, H, W) -> pixels in [0, 1], same layout."""
    mean, std = _channel_stats(videos)
    return videos * std[:, None, None, None] + mean[:, None, None, None]


def pixel_targets(videos: torch.Tensor, tubelet: int = TUBELET, patch: int = PATCH,
                  per_tube: bool = True) -> torch.Tensor:
    """VideoMAE's pixel target: (B, 3, T, H, W) normalised -> (B, N, tubelet*patch^2*3).

    As VideoMAE's pretraining engine does: undo the ImageNet normalisation (pixels in [0, 1]);
    cut each tube into (tubelet * patch * patch, 3) values ordered (frame, row, column) x channel;
    with `per_tube` (VideoMAE's default, its --normlize_target) per tube and channel subtract the
    mean and divide by (unbiased std + 1e-6), else keep the [0, 1] pixels; then flatten with
    the channel fastest: index = ((f * patch + r) * patch + c) * 3 + channel. Computed in float32.
    """
    batch, channels, frames, height, width = videos.shape
    if channels != CHANNELS or frames % tubelet or height % patch or width % patch:
        raise ValueError(f"videos {tuple(videos.shape)} do not split into "
                         f"{tubelet}x{patch}x{patch} tubes of 3 channels")
    pixels = unnormalize(videos.float())
    grid = (frames // tubelet, height // patch, width // patch)
    tubes = pixels.reshape(batch, channels, grid[0], tubelet, grid[1], patch, grid[2], patch)
    tubes = tubes.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, t, h, w, tubelet, patch, patch, 3)
    tubes = tubes.reshape(batch, grid[0] * grid[1] * grid[2], tubelet * patch * patch, channels)
    if not per_tube:
        return tubes.flatten(2)
    mean = tubes.mean(dim=2, keepdim=True)
    std = tubes.var(dim=2, unbiased=True, keepdim=True).sqrt()
    return ((tubes - mean) / (std + TARGET_EPS)).flatten(2)  # (B, N, tubelet * patch^2 * 3)


def standardize_tokens(features: torch.Tensor, eps: float = TARGET_EPS) -> torch.Tensor:
    """Per clip and channel over the token axis: (x - mean) / sqrt(var + eps), on (B, N, D).

    The variance is the biased (population) one, as in a normalisation layer; float32 result.
    """
    if features.ndim != 3:
        raise ValueError(f"features must be (B, N, D), got {tuple(features.shape)}")
    features = features.float()
    mean = features.mean(dim=1, keepdim=True)
    var = features.var(dim=1, unbiased=False, keepdim=True)
    return (features - mean) * torch.rsqrt(var + eps)
