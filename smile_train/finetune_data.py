"""Labelled clips for finetuning: random resized crop, flip, RandAugment, then mixup / cutmix.

Per clip (in a DataLoader worker, from the clip's own seeded generator, in this order): a random
resized crop (area scale (0.08, 1), aspect (3/4, 4/3), as VideoMAE's finetuning) resized to the
input size, a horizontal flip with probability 0.5 when `flip` is on, then RandAugment, whose
operations and magnitudes are drawn once per clip and applied to every frame (statistics such
as the auto-contrast range are taken over the whole clip, so frames do not flicker).
RandAugment runs after the crop, on input-size frames: the same operations on fewer pixels.

Per batch (in the training loop, on the device): mixup or cutmix (timm's "batch" mode: one
lambda per batch, each clip mixed with the batch reversed; one cutmix box for all frames) and
label smoothing give soft targets that sum to 1.

Iteration shares the pretraining stream (smile_train.data): resampled shards, seeded shuffle,
per-sample generators seeded from (seed, rank, worker, sample number), resume by skipping.
"""

from __future__ import annotations

import math
from typing import Any, Collection

import numpy as np
import torch
from torch.utils.data import DataLoader

from smile_train.data import PretrainClips, build_loader, crop_resize, hflip

FLIP_PROBABILITY = 0.5
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes, then falls back to centre
LEVEL_MAX = 10.0  # RandAugment magnitudes are out of 10
FILL = (124, 116, 104)  # ImageNet mean in uint8: what geometric operations move in
ROTATE_MAX_DEGREES = 30.0
SHEAR_MAX = 0.3
TRANSLATE_MAX_FRACTION = 0.45
ENHANCE_MAX = 0.9  # colour / contrast / brightness / sharpness factor 1 +- 0.9
POSTERIZE_MAX_DROP = 4  # bits removed at full magnitude (of the 8 a channel has)
SOLARIZE_ADD_MAX = 110
SOLARIZE_ADD_THRESHOLD = 128
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's "L" conversion
SMOOTH_KERNEL = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], np.float32) / 13.0  # PIL SMOOTH


# --- random resized crop ---------------------------------------------------------------------


def random_resized_crop_box(rng: np.random.Generator, height: int, width: int,
                            scale: tuple[float, float], ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(x0, y0, w, h): area fraction from `scale`, log-uniform aspect w/h from `ratio`; after
    CROP_ATTEMPTS boxes that do not fit, the largest centred box within the aspect range."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_ATTEMPTS):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(width - w + 1)), int(rng.integers(height - h + 1)), w, h
    aspect = width / height
    if aspect < min(ratio):
        w, h = width, round(width / min(ratio))
    elif aspect > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


# --- RandAugment over a whole clip -----------------------------------------------------------


def _lut(clip: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Apply a (256,) or per-channel (3, 256) lookup table to (T, H, W, 3) uint8."""
    if table.ndim == 1:
        return table.astype(np.uint8)[clip]
    out = np.empty_like(clip)
    for channel in range(3):
        out[..., channel] = table[channel].astype(np.uint8)[clip[..., channel]]
    return out


def _blend(degenerate: np.ndarray, clip: np.ndarray, factor: float) -> np.ndarray:
    mixed = degenerate.astype(np.float32) + factor * (clip.astype(np.float32) - degenerate)
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


def _gray(clip: np.ndarray) -> np.ndarray:
    return clip.astype(np.float32) @ np.asarray(LUMA, np.float32)  # (T, H, W)


def _auto_contrast(clip: np.ndarray, _: float) -> np.ndarray:
    table = np.tile(np.arange(256, dtype=np.float32), (3, 1))
    for channel in range(3):
        low, high = int(clip[..., channel].min()), int(clip[..., channel].max())
        if high > low:
            table[channel] = np.clip((table[channel] - low) * (255.0 / (high - low)), 0, 255)
    return _lut(clip, np.rint(table))


def _equalize(clip: np.ndarray, _: float) -> np.ndarray:
    """Per-channel histogram equalisation over the whole clip (PIL's rule, with an exact step,
    so a clip of repeated frames maps like its single frame)."""
    table = np.tile(np.arange(256, dtype=np.int64), (3, 1))
    for channel in range(3):
        histogram = np.bincount(clip[..., channel].ravel(), minlength=256).astype(np.int64)
        spread = histogram.sum() - histogram[np.nonzero(histogram)[0][-1]]  # 255 x PIL's step
        if spread:
            cumulative = np.concatenate([[0], np.cumsum(histogram)[:-1]])
            table[channel] = np.minimum((510 * cumulative + spread) // (2 * spread), 255)
    return _lut(clip, table)


def _invert(clip: np.ndarray, _: float) -> np.ndarray:
    return 255 - clip


def _posterize(clip: np.ndarray, bits: float) -> np.ndarray:
    bits = int(bits)
    return clip if bits >= 8 else clip & np.uint8((0xFF << (8 - bits)) & 0xFF)


def _solarize(clip: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(clip >= threshold, 255 - clip, clip)


def _solarize_add(clip: np.ndarray, add: float) -> np.ndarray:
    raised = np.minimum(clip.astype(np.int16) + int(add), 255).astype(np.uint8)
    return np.where(clip < SOLARIZE_ADD_THRESHOLD, raised, clip)


def _color(clip: np.ndarray, factor: float) -> np.ndarray:
    return _blend(np.repeat(_gray(clip)[..., None], 3, axis=-1), clip, factor)


def _contrast(clip: np.ndarray, factor: float) -> np.ndarray:
    mean = float(np.floor(_gray(clip).mean() + 0.5))
    return _blend(np.full(clip.shape, mean, np.float32), clip, factor)


def _brightness(clip: np.ndarray, factor: float) -> np.ndarray:
    return _blend(np.zeros(clip.shape, np.float32), clip, factor)


def _sharpness(clip: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    smooth = clip.astype(np.float32)
    for t, frame in enumerate(clip):
        inner = cv2.filter2D(frame.astype(np.float32), -1, SMOOTH_KERNEL)
        smooth[t, 1:-1, 1:-1] = inner[1:-1, 1:-1]  # PIL keeps the border pixels
    return _blend(np.rint(smooth), clip, factor)


def _affine(clip: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Warp every frame with the output -> input map `matrix` (2, 3), filling with FILL."""
    import cv2

    height, width = clip.shape[1:3]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return np.stack([cv2.warpAffine(f, matrix, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                    borderValue=FILL) for f in clip])


def _rotate(clip: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    height, width = clip.shape[1:3]
    forward = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), degrees, 1.0)
    return _affine(clip, cv2.invertAffineTransform(forward))


def _shear_x(clip: np.ndarray, shear: float) -> np.ndarray:
    return _affine(clip, np.array([[1, shear, 0], [0, 1, 0]], np.float64))


def _shear_y(clip: np.ndarray, shear: float) -> np.ndarray:
    return _affine(clip, np.array([[1, 0, 0], [shear, 1, 0]], np.float64))


def _translate_x(clip: np.ndarray, fraction: float) -> np.ndarray:
    return _affine(clip, np.array([[1, 0, fraction * clip.shape[2]], [0, 1, 0]], np.float64))


def _translate_y(clip: np.ndarray, fraction: float) -> np.ndarray:
    return _affine(clip, np.array([[1, 0, 0], [0, 1, fraction * clip.shape[1]]], np.float64))


def _signed(scale: float):
    return lambda level, rng: (level / LEVEL_MAX) * scale * (-1 if rng.random() < 0.5 else 1)


def _enhance(level: float, rng: np.random.Generator) -> float:
    return 1.0 + _signed(ENHANCE_MAX)(level, rng)


# name -> (operation on a clip, magnitude level -> operation argument); timm's "increasing" set.
RAND_AUGMENT_OPS = {
    "AutoContrast": (_auto_contrast, lambda level, rng: 0.0),
    "Equalize": (_equalize, lambda level, rng: 0.0),
    "Invert": (_invert, lambda level, rng: 0.0),
    "Rotate": (_rotate, _signed(ROTATE_MAX_DEGREES)),
    "Posterize": (_posterize, lambda level, rng: 8 - POSTERIZE_MAX_DROP - int(level / LEVEL_MAX * POSTERIZE_MAX_DROP)),
    "Solarize": (_solarize, lambda level, rng: 256 - int(level / LEVEL_MAX * 256)),
    "SolarizeAdd": (_solarize_add, lambda level, rng: int(level / LEVEL_MAX * SOLARIZE_ADD_MAX)),
    "Color": (_color, _enhance),
    "Contrast": (_contrast, _enhance),
    "Brightness": (_brightness, _enhance),
    "Sharpness": (_sharpness, _enhance),
    "ShearX": (_shear_x, _signed(SHEAR_MAX)),
    "ShearY": (_shear_y, _signed(SHEAR_MAX)),
    "TranslateX": (_translate_x, _signed(TRANSLATE_MAX_FRACTION)),
    "TranslateY": (_translate_y, _signed(TRANSLATE_MAX_FRACTION)),
}
OP_NAMES = tuple(RAND_AUGMENT_OPS)


def draw_rand_augment(rng: np.random.Generator, ops: int, magnitude: float, magnitude_std: float,
                      prob: float) -> list[tuple[str, float]]:
    """One clip's plan: `ops` operations drawn with replacement, each kept with probability
    `prob`, magnitude ~ N(magnitude, std) clipped to [0, 10]; [(name, argument), ...]."""
    plan = []
    for index in rng.integers(len(OP_NAMES), size=ops):
        keep = rng.random() < prob
        level = float(np.clip(rng.normal(magnitude, magnitude_std) if magnitude_std > 0 else magnitude, 0, LEVEL_MAX))
        name = OP_NAMES[int(index)]
        argument = float(RAND_AUGMENT_OPS[name][1](level, rng))
        if keep:
            plan.append((name, argument))
    return plan


def apply_rand_augment(clip: np.ndarray, plan: list[tuple[str, float]]) -> np.ndarray:
    """Apply a plan to every frame of a (T, H, W, 3) uint8 clip."""
    for name, argument in plan:
        clip = RAND_AUGMENT_OPS[name][0](clip, argument)
    return np.ascontiguousarray(clip)


# --- per-clip pipeline -----------------------------------------------------------------------


def augment_clip(frames: np.ndarray, rng: np.random.Generator, s: Any,
                 keep_ops: Collection[str] | None = None) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, S, S, 3) uint8: crop, flip, RandAugment (in that order).

    `keep_ops` applies only those RandAugment operations (the plan is drawn the same way).
    """
    height, width = frames.shape[1:3]
    box = random_resized_crop_box(rng, height, width, tuple(s.crop_scale), tuple(s.crop_ratio))
    no_boxes = np.zeros((frames.shape[0], 0, 4), np.float32)
    frames, _ = crop_resize(frames, no_boxes, box, s.input_size)
    if s.flip and rng.random() < FLIP_PROBABILITY:
        frames, _ = hflip(frames, no_boxes)
    if s.rand_augment:
        plan = draw_rand_augment(rng, s.rand_augment_ops, s.rand_augment_magnitude,
                                 s.rand_augment_magnitude_std, s.rand_augment_prob)
        frames = apply_rand_augment(frames, [op for op in plan if keep_ops is None or op[0] in keep_ops])
    return frames


class FinetuneClips(PretrainClips):
    """Endless stream of {"video": (T, S, S, 3) uint8, "label": int64, "corrupt": int}.

    The pretraining stream with a labelled-clip `_prepare`: shard sampling, shuffling, seeding,
    resume skipping and the corrupt-sample limit are the pretraining pipeline's own.
    """

    def _prepare(self, clip, rng: np.random.Generator) -> dict[str, Any]:
        s = self.settings
        if clip.label is None:
            raise ValueError(f"sample {clip.key}: no label; finetuning needs labelled shards "
                             "(`smile-data pack --csv LIST`)")
        if not 0 <= clip.label < s.num_classes:
            raise ValueError(f"sample {clip.key}: label {clip.label} outside 0..{s.num_classes - 1}")
        if clip.frames.shape[0] != s.frames:
            raise ValueError(f"sample {clip.key}: {clip.frames.shape[0]} frames, settings say {s.frames}")
        frames = augment_clip(clip.frames, rng, s)
        return {"video": torch.from_numpy(frames), "label": torch.tensor(clip.label, dtype=torch.int64)}


def build_finetune_loader(settings: Any, urls: list[str], micro_batch: int, rank: int,
                          resume_batches: int = 0, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `FinetuneClips`; `resume_batches` fast-forwards a resumed run."""
    return build_loader(settings, urls, micro_batch, rank, resume_batches, FinetuneClips, pin_memory)


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
    """Mean over the batch of -sum(targets * log_softmax(logits)); (B, C) each."""
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()
