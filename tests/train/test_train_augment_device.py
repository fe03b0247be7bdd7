"""Both placements of finetuning augmentation give the same clips for the same draws.

`augment_device: loader` augments each copy in the worker (smile_train/data/rand_augment.py, OpenCV);
`augment_device: device` ships decoded frames and draws and augments the batch with tensor
operations (smile_train/data/augment_device.py), here on the CPU. Stated tolerance: the crop, the
flip and the table, statistics and Sharpness operations agree exactly; warps (grid_sample's
float weights against OpenCV's 1/32-pixel positions) and Color (PIL's grey levels against
OpenCV's) differ by a level on a few values in a thousand: fewer than 1 % of values differ at
all and fewer than 0.05 % by more than one level.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smile_train.data.augment import OP_NAMES, CopyDraws, apply_copy, draw_copies, level_to_argument
from smile_train.data.augment_device import augment_batch, collate_padded, pack_draws
from smile_train.data.finetune_loader import FinetuneClips, build_finetune_loader
from smile_train.data.loader import TooManyCorruptSamples, expand_urls
from smile_train.loop.finetune import run_finetune
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import FinetuneSettings
from tests.train.test_train_augment import photo_like_clip
from tests.train.test_train_finetune import tiny_finetune, write_labelled_shards

CPU = torch.device("cpu")
EXACT_OPS = ("AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "SolarizeAdd", "Contrast",
             "Brightness", "Sharpness")
MAX_SHARE_DIFFERENT, MAX_SHARE_OVER_ONE = 0.01, 0.0005


def raw_sample(frames: np.ndarray, copies: list[CopyDraws], max_ops: int = 4) -> dict:
    return {"video": torch.from_numpy(frames), "frame_size": torch.tensor(frames.shape[1:3]),
            **pack_draws(copies, max_ops)}


def both_placements(clips: list[np.ndarray], copies: list[list[CopyDraws]], size: int):
    loader = np.stack([apply_copy(c, d, size) for c, ds in zip(clips, copies) for d in ds])
    batch = collate_padded([raw_sample(c, ds) for c, ds in zip(clips, copies)])
    return loader.astype(int), augment_batch(batch, size, CPU).numpy().astype(int)


def mixed_clips(seed: int) -> list[np.ndarray]:
    """Two clips of different frame sizes (padded in the batch): smooth, and uniform noise."""
    noise = np.random.default_rng(seed).integers(0, 256, (3, 48, 44, 3), dtype=np.uint8)
    return [photo_like_clip(3, seed=seed, height=40, width=56), noise]


@pytest.mark.parametrize("box", [(0, 0, 56, 40), (5, 3, 30, 33), (11, 7, 45, 20), (20, 0, 36, 40)])
def test_crop_and_flip_alone_agree_exactly(box):
    clips = [photo_like_clip(2, seed=1, height=40, width=56)]
    for flip in (False, True):
        loader, device = both_placements(clips, [[CopyDraws((), box, flip, (0, 0, 0, 0))]], 24)
        assert np.array_equal(loader, device), (box, flip)


@pytest.mark.parametrize("name", OP_NAMES)
def test_each_operation_agrees(name):
    clips = mixed_clips(2)
    argument = level_to_argument(name, 7.0, True, np.random.default_rng(3))
    copies = [[CopyDraws(((name, argument),), (4, 2, 40, 36), False, (0, 0, 0, 0))] for _ in clips]
    loader, device = both_placements(clips, copies, 32)
    difference = np.abs(loader - device)
    if name in EXACT_OPS:
        assert difference.max() == 0
    else:
        assert np.mean(difference > 0) < MAX_SHARE_DIFFERENT and np.mean(difference > 1) < MAX_SHARE_OVER_ONE


def test_drawn_plans_agree_within_the_stated_tolerance():
    s = FinetuneSettings(input_size=32, repeated_augment=2, rand_augment_prob=0.9)
    differences = []
    for trial in range(12):
        clips = mixed_clips(trial)
        copies = [draw_copies(np.random.default_rng([trial, i]), s, *c.shape[1:3]) for i, c in enumerate(clips)]
        loader, device = both_placements(clips, copies, s.input_size)
        differences.append(np.abs(loader - device).ravel())
    difference = np.concatenate(differences)
    assert np.mean(difference > 0) < MAX_SHARE_DIFFERENT and np.mean(difference > 1) < MAX_SHARE_OVER_ONE


def test_the_stream_draws_alike_in_both_placements(tmp_path):
    """Same seed, same shards: the device placement's raw frames and draws, augmented in the
    step, give the loader placement's clips; labels and erase boxes are identical."""
    shards = write_labelled_shards(tmp_path / "train", videos=4, clips_per_video=2, seed=5)
    common = dict(shards=str(shards / "*.tar"), num_classes=2, input_size=16, frames=8, shuffle_buffer=4,
                  num_workers=0, repeated_augment=2, erase_prob=0.5)
    streams = {}
    for placement in ("loader", "device"):
        settings = check_settings(FinetuneSettings(**common, augment_device=placement))
        loader = build_finetune_loader(settings, expand_urls(settings.shards), micro_batch=3, rank=0)
        streams[placement] = [batch for _, batch in zip(range(2), loader)]
    for on_loader, on_device in zip(streams["loader"], streams["device"]):
        assert torch.equal(on_loader["label"], on_device["label"]) and torch.equal(on_loader["erase"], on_device["erase"])
        augmented = augment_batch(on_device, 16, CPU)
        difference = (augmented.int() - on_loader["video"].flatten(0, 1).int()).abs()
        assert augmented.shape == (6, 8, 16, 16, 3) and float((difference > 1).float().mean()) < MAX_SHARE_OVER_ONE


def test_frames_too_large_for_the_device_are_skipped_and_counted(tmp_path, monkeypatch):
    import smile_train.data.augment_device as augment_device

    shards = write_labelled_shards(tmp_path / "train", videos=2, clips_per_video=1, seed=5)
    monkeypatch.setattr(augment_device, "MAX_DEVICE_FRAME_PIXELS", 16 * 16 - 1)
    settings = check_settings(FinetuneSettings(shards=str(shards / "*.tar"), num_classes=2, input_size=16, frames=8,
                                               num_workers=0, augment_device="device", max_corrupt_samples=1))
    with pytest.raises(TooManyCorruptSamples, match="frames are over augment_device: device's 255 pixels"):
        next(iter(FinetuneClips(expand_urls(settings.shards), settings)))
    augment_device.check_frame_size("fits", 15, 17)


def test_a_device_placement_run_trains_and_resumes_exactly(tmp_path):
    shards = write_labelled_shards(tmp_path / "train", videos=8, clips_per_video=2, seed=6)
    overrides = tiny_finetune(shards, tmp_path / "full", max_steps=4, save_every_steps=2, epochs=2,
                              augment_device="device", batch_size=4)
    full = torch.load(run_finetune(None, overrides, resume=False), weights_only=True)["model"]
    part = dict(overrides, out_dir=str(tmp_path / "part"))
    checkpoints = run_finetune(None, part, resume=False).parent
    for name in ("final.pt", "step-000000004.pt"):  # as if killed right after step 2
        (checkpoints / name).unlink(missing_ok=True)
    resumed = torch.load(run_finetune(None, part, resume=True), weights_only=True)["model"]
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_placement_is_a_checked_setting():
    with pytest.raises(ValueError, match="augment_device"):
        check_settings(FinetuneSettings(augment_device="gpu"))
