"""Behaviours at their boundaries, each a test that fails when the rule changes: the learning
rates' batch scaling away from 256, the crop-side snap at exactly SNAP_PIXELS, the crop offset
modes through the loader (corners: 5 positions; uniform: anywhere), the precision modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smile_data.config import SettingsError
from smile_data.sampling import CORNER_OFFSETS, MORE_OFFSETS, SNAP_PIXELS, crop_sides
from smile_data.shards import layout
from smile_train.data.sources import SourceSampler, SourceSettings
from smile_train.loop import runtime as rt
from smile_train.loop.finetune import schedule as finetune_schedule
from smile_train.loop.pretrain import schedule as pretrain_schedule
from smile_train.settings.finetune import FinetuneSettings
from smile_train.settings.pretrain import PretrainSettings
from tests.conftest import png_members


@pytest.mark.parametrize("batch", [64, 512, 2048])
def test_pretraining_rates_scale_with_the_batch(batch):
    s = PretrainSettings(batch_size=batch, base_lr=1.5e-4, min_lr=1e-5, epochs=4, warmup_epochs=1)
    total, lrs = pretrain_schedule(s, clips_per_epoch=batch * 8)
    assert lrs.peak == pytest.approx(1.5e-4 * batch / 256, rel=1e-12)
    assert lrs.floor == pytest.approx(1e-5 * batch / 256, rel=1e-12)
    assert lrs.lr(lrs.horizon_steps + 3) == pytest.approx(1e-5 * batch / 256, rel=1e-12)


@pytest.mark.parametrize("batch", [32, 512])
def test_finetuning_rates_scale_with_the_batch(batch):
    s = FinetuneSettings(batch_size=batch, base_lr=1e-3, min_lr=1e-6, warmup_lr=2e-6, epochs=3,
                         warmup_epochs=1, clips_per_epoch=batch * 4)
    total, lrs = finetune_schedule(s, s.clips_per_epoch)
    assert (lrs.peak, lrs.floor, lrs.start) == pytest.approx(
        (1e-3 * batch / 256, 1e-6 * batch / 256, 2e-6 * batch / 256), rel=1e-12)
    assert lrs.lr(total + 5) == pytest.approx(1e-6 * batch / 256, rel=1e-12)


def test_a_crop_side_exactly_snap_pixels_away_is_kept():
    assert SNAP_PIXELS == 3
    assert crop_sides(227, 224, (1.0,)) == [227]  # 3 px over: kept
    assert crop_sides(226, 224, (1.0,)) == [224]  # 2 px over: snapped
    assert crop_sides(221, 224, (1.0,)) == [221]  # 3 px under: kept
    assert crop_sides(222, 224, (1.0,)) == [224]  # 2 px under: snapped


SIDE = 240  # the source frames; R holds x and G holds y of each pixel
SIDES = (240, 210, 180, 158)  # int(240 x {1, .875, .75, .66})


def coordinate_sample(key: str = "000000", frames: int = 2) -> dict:
    """A clip whose pixels say where they come from: R = x, G = y."""
    y, x = np.mgrid[0:SIDE, 0:SIDE]
    frame = np.stack([x, y, np.zeros_like(x)], -1).astype(np.uint8)
    metadata = {"schema_version": layout.SCHEMA_VERSION, "key": key, "seed": 0, "frames": frames,
                "height": SIDE, "width": SIDE, "codec": "png",
                "background": {"kind": "noise", "source": None, "frame_indices": None},
                "objects": [], "label": None}
    members = png_members(np.stack([frame] * frames), metadata)
    return {"__key__": key, **members}


def crop_units(offsets: str, draws: int = 300) -> set[tuple[int, int]]:
    """The grid positions (in steps of the free room / 4) of the loader's crops, read back from
    the pixels of its output."""
    source = SourceSettings(shards="x.tar", crop="multiscale", crop_offsets=offsets, flip=False)
    sampler = SourceSampler(source, input_size=224, frames=2)
    raw, rng, units = coordinate_sample(), np.random.default_rng(0), set()
    for _ in range(draws):
        out = sampler(dict(raw), rng).frames[0].astype(int)  # (224, 224, 3)
        x0, y0 = out[0, 0, 0], out[0, 0, 1]
        w = min(SIDES, key=lambda side: abs(side - (out[0, -1, 0] - x0 + 1)))
        h = min(SIDES, key=lambda side: abs(side - (out[-1, 0, 1] - y0 + 1)))
        if w == SIDE or h == SIDE:  # no free room on an axis: every position is 0 there
            continue
        step_x, step_y = (SIDE - w) // 4, (SIDE - h) // 4
        units.add((x0 / step_x, y0 / step_y))
    return units


def test_corners_mode_crops_at_the_five_corner_positions_only():
    assert crop_units("corners") == {(float(ux), float(uy)) for ux, uy in CORNER_OFFSETS}


def test_grid_mode_crops_at_all_thirteen_and_uniform_anywhere():
    assert crop_units("grid") == {(float(ux), float(uy)) for ux, uy in CORNER_OFFSETS + MORE_OFFSETS}
    uniform = crop_units("uniform", draws=100)
    assert len(uniform) > 50 and any(ux % 1 or uy % 1 for ux, uy in uniform)


@pytest.mark.parametrize("precision, dtype, scaled", [
    ("fp32", torch.float32, False), ("bf16", torch.bfloat16, False), ("fp16", torch.float16, True),
    ("auto", torch.float32, False)])
def test_precision_modes_on_cpu(precision, dtype, scaled):
    runtime = rt.setup("cpu", precision)
    assert runtime.dtype == dtype
    assert rt.grad_scaler(runtime).is_enabled() == scaled
    with rt.autocast(runtime):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == dtype  # a matmul runs in the chosen precision
    assert rt.resolve_precision("auto", use_cuda=True) == torch.bfloat16


def test_device_modes():
    assert rt.setup("cpu").device.type == "cpu"
    assert rt.setup("auto").device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert rt.setup("cuda").device.type == "cuda"
    else:
        with pytest.raises(SettingsError, match="'device' is 'cuda', but torch .* sees no CUDA"):
            rt.setup("cuda")
