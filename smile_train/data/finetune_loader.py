"""Labelled clips for finetuning: per-clip augmentation, then mixup / cutmix per batch.

Per clip (in a DataLoader worker, from the clip's own seeded generator): `smile_train.data.augment`
draws `repeated_augment` independent copies of each loaded clip (RandAugment, random resized
crop, flip) and one random-erasing box per copy; the boxes are filled after normalisation, on
the device (`augment.erase_boxes`). Where the pixel work runs is `augment_device`: `loader`
(the worker ships the augmented copies) or `device` (the worker ships the decoded frames and
the draws; `augment_device.augment_batch` does the pixel work in the training step). Both give
the same clips for the same draws (tests/train/test_train_augment_device.py).

Per batch (in the training loop, on the device): mixup or cutmix (timm's "batch" mode: one
lambda per batch, each clip mixed with the batch reversed; one cutmix box for all frames) and
label smoothing give soft targets that sum to 1.

Iteration shares the pretraining stream (smile_train.data.loader): resampled shards, seeded shuffle,
per-sample generators seeded from (seed, rank, worker, sample number), resume by skipping. Video
shards (`<key>.mp4`) give a new temporal draw every time a video comes round (`temporal`:
window at `stride` for K400, TSN segments for SSv2; smile_data/sampling.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from smile_train.data.augment import apply_copy, draw_copies
from smile_train.data.augment_device import check_frame_size, collate_padded, pack_draws
from smile_train.data.loader import PretrainClips, build_loader
from smile_train.data.sources import SourceSampler


class FinetuneClips(PretrainClips):
    """Endless stream of {"video": (R, T, S, S, 3) uint8, "label": (R,) int64, "erase": (R, 4)
    int64, "corrupt": int}: R = `repeated_augment` augmented copies of each loaded clip. With
    `augment_device: device`, "video" is the decoded (T, H, W, 3) clip and the copies' draws
    come with it (`augment_device.pack_draws`, plus "frame_size" (2,) = H, W).

    The pretraining stream with a labelled-clip `_prepare`: shard sampling, shuffling, seeding,
    resume skipping and the corrupt-sample limit are the pretraining pipeline's own.
    """

    def _prepare(self, sampler: SourceSampler, raw: dict, rng: np.random.Generator) -> dict[str, Any]:
        s = self.settings
        key, frames, _, label = sampler.decode(raw, rng)  # a video's frames: a new draw per epoch
        if label is None:
            raise ValueError(f"sample {key}: no label; finetuning needs labelled shards "
                             "(`smile-data pack --csv LIST`)")
        if not 0 <= label < s.num_classes:
            raise ValueError(f"sample {key}: label {label} outside 0..{s.num_classes - 1}")
        copies = draw_copies(rng, s, *frames.shape[1:3])
        labels = torch.full((len(copies),), label, dtype=torch.int64)
        erase = torch.tensor([copy.erase for copy in copies], dtype=torch.int64)
        if s.augment_device == "device":
            check_frame_size(key, *frames.shape[1:3])
            raw = torch.from_numpy(np.ascontiguousarray(frames))
            return {"video": raw, "frame_size": torch.tensor(frames.shape[1:3]), "label": labels, "erase": erase,
                    **pack_draws(copies, s.rand_augment_ops)}
        videos = np.stack([apply_copy(frames, copy, s.input_size) for copy in copies])
        return {"video": torch.from_numpy(videos), "label": labels, "erase": erase}


def build_finetune_loader(settings: Any, urls: list[str], micro_batch: int, rank: int,
                          resume_batches: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `FinetuneClips`; `resume_batches` fast-forwards a resumed run. With
    `augment_device: device` a batch's decoded clips are padded to one frame size."""
    collate = collate_padded if settings.augment_device == "device" else None
    return build_loader(settings, urls, micro_batch, rank, resume_batches, FinetuneClips, pin_memory, collate)


# --- mixup / cutmix (per batch, on the device) ---------------------------------------------------


def smoothed_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """(B,) int -> (B, C): 1 - smoothing + smoothing / C on the label, smoothing / C elsewhere."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels[:, None], 1.0 - smoothing + off)


def cutmix_box(rng: np.random.Generator, height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a box with area about (1 - lam) of the frame, centre uniform, clipped."""
    side = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * side), int(width * side)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(y0), int(y1), int(x0), int(x1)


def mix_batch(videos: torch.Tensor, labels: torch.Tensor, s: Any,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, float]:
    """videos (B, 3, T, H, W) float, labels (B,) -> mixed videos, soft targets (B, C), lambda.

    With probability mixup_prob the batch is mixed with itself reversed: cutmix (probability
    mixup_switch_prob when both are on) pastes one box into every frame and lambda becomes the
    kept area; mixup blends whole clips. Targets: lam * y + (1 - lam) * y_reversed, smoothed.
    """
    lam = 1.0
    use_mix = (s.mixup > 0 or s.cutmix > 0) and rng.random() < s.mixup_prob
    if use_mix:
        use_cutmix = s.cutmix > 0 and (s.mixup <= 0 or rng.random() < s.mixup_switch_prob)
        lam = float(rng.beta(s.cutmix, s.cutmix) if use_cutmix else rng.beta(s.mixup, s.mixup))
        reversed_videos = videos.flip(0)
        if use_cutmix:
            y0, y1, x0, x1 = cutmix_box(rng, videos.shape[3], videos.shape[4], lam)
            videos = videos.clone()
            videos[..., y0:y1, x0:x1] = reversed_videos[..., y0:y1, x0:x1]
            lam = 1.0 - (y1 - y0) * (x1 - x0) / (videos.shape[3] * videos.shape[4])
        else:
            videos = videos * lam + reversed_videos * (1.0 - lam)
    targets = smoothed_one_hot(labels, s.num_classes, s.label_smoothing)
    return videos, lam * targets + (1.0 - lam) * targets.flip(0), lam


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum(targets * log_softmax(logits)); (B, C) each. The mean of the
    per-clip losses: F.cross_entropy's own mean sums the batch in another order (other last bits)."""
    return F.cross_entropy(logits.float(), targets, reduction="none").mean()
