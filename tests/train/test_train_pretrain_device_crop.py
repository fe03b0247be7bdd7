"""`augment_device: device` in pretraining: clip shards' samples travel whole and the training
device crops, resizes and flips them (augment_device.crop_flip_batch) into the loader
placement's pixels exactly, with the same masks; samples with loader overlays crop in the worker."""

from __future__ import annotations

import json

import torch

from smile_train.data.augment_device import collate_padded, crop_flip_batch
from smile_train.data.loader import PretrainClips, resolve_sources
from smile_train.loop.pretrain import run_pretrain
from smile_train.settings.checks import check_settings
from smile_train.settings.pretrain import PretrainSettings
from tests.train.test_train_loop import tiny_overrides

CPU = torch.device("cpu")
SIZE = 48  # the 64-px clips of tiny_shards, cropped at several scales and resized


def first_samples(settings: PretrainSettings, count: int) -> list[dict]:
    return [sample for _, sample in zip(range(count), PretrainClips(resolve_sources(settings), settings))]


def test_the_device_crop_gives_the_loaders_clips_and_masks(tiny_shards):
    common = dict(shards=str(tiny_shards / "*.tar"), input_size=SIZE, frames=16, crop="multiscale",
                  num_workers=0, shuffle_buffer=4, sources=[{}, {"overlay": "patches"}])
    on_loader = first_samples(check_settings(PretrainSettings(**common)), 8)
    on_device = first_samples(check_settings(PretrainSettings(**common, augment_device="device")), 8)
    batch = collate_padded(on_device)
    assert {tuple(s["video"].shape[1:3]) for s in on_device} == {(64, 64), (SIZE, SIZE)}  # whole / overlaid
    assert bool(batch["flip"].any()) and not bool(batch["flip"].all())
    assert any(tuple(crop) not in ((0, 0, 64, 64), (0, 0, SIZE, SIZE)) for crop in batch["crop"].tolist())
    assert torch.equal(crop_flip_batch(batch, SIZE, CPU), torch.stack([s["video"] for s in on_loader]))
    assert all(torch.equal(a["masks"], b["masks"]) and a["key"] == b["key"] for a, b in zip(on_loader, on_device))


def test_a_device_crop_run_has_the_loader_runs_losses(tiny_shards, tmp_path):
    losses = {}
    for placement in ("loader", "device"):
        out = tmp_path / placement
        run_pretrain(None, tiny_overrides(tiny_shards, out, input_size=SIZE, crop="multiscale",
                                          augment_device=placement), resume=False)
        losses[placement] = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses["loader"]) == 4 and losses["device"] == losses["loader"]
