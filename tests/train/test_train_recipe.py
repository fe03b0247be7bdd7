"""The released pretraining recipe: learning-rate curve of both stages, shuffled second masks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from smile_data.config import SettingsError
from smile_train.data.loader import PretrainClips, expand_urls
from smile_train.loop.pretrain import run_pretrain, schedule, second_masks
from smile_train.settings.pretrain import PretrainSettings, load_pretrain_stages

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
CLIPS = 1024  # with batch 256 (128 clips x 2 masks): 4 steps per effective epoch, 8 per pass


def released_curve(peak: float, floor: float, epochs: int, warmup: int, n: int, stop: int) -> list[float]:
    """The released engine, written as it runs: a cosine table over `epochs` x n indices (warm-up
    numpy.linspace(0, peak, warmup x n)), then `stop` loader epochs of 2n steps each, the step
    of loader epoch e at position j reading index e x n + j."""
    warm = [peak * i / (warmup * n - 1) for i in range(warmup * n)]
    length = epochs * n - warmup * n
    table = warm + [floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * i / length)) for i in range(length)]
    return [table[e * n + j] for e in range(stop) for j in range(2 * n)]


@pytest.mark.parametrize("config", ["smile_vitb_k400", "smile_vits_k400", "smile_vitb_ssv2"])
def test_smile_configs_follow_the_released_curve_in_both_stages(config):
    stages = load_pretrain_stages(str(CONFIGS / f"{config}.yaml"), {})
    assert [name for name, _ in stages] == ["stage1", "stage2"]
    for _, s in stages:
        total, lrs = schedule(s, CLIPS)
        passes = s.epochs // 2  # K400 ViT-B: 300 effective epochs = 150 passes of the released run
        assert total == s.epochs * 4 and (s.schedule_epochs, s.warmup_epochs) == (801, 40)
        expected = released_curve(1.5e-4, 1e-5, 801, 40, 4, passes)
        assert [lrs.lr(step) for step in range(total)] == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_released_curve_hand_computed_values():
    # Stage 1 and stage 2 of the ViT-B K400 recipe each start from index 0 (stage 2 is a new run
    # that only loads stage 1's weights), so both read the same values. n = 4, warm-up W = 160
    # indices, horizon 3204; step g reads index (g // 8) x 4 + g % 8.
    for _, s in load_pretrain_stages(str(CONFIGS / "smile_vitb_k400.yaml"), {}):
        total, lrs = schedule(s, CLIPS)
        assert total == 1200
        assert lrs.lr(0) == 0.0
        assert lrs.lr(7) == pytest.approx(1.5e-4 * 7 / 159)  # 6.604e-6
        assert lrs.lr(8) == pytest.approx(1.5e-4 * 4 / 159)  # the next pass steps back to index 4
        assert lrs.lr(311) == pytest.approx(1.5e-4)  # index 159, the warm-up's end: ~78 effective epochs
        assert lrs.lr(312) == pytest.approx(1.4716981e-4)  # index 156
        # last step 1199: index 603, cosine 443 / 3044 of the way: 1e-5 + 7e-5 (1 + cos(0.4572))
        assert lrs.lr(1199) == pytest.approx(1.4281035e-4)


def test_default_schedule_ends_where_training_stops():
    s = PretrainSettings(epochs=10, warmup_epochs=2, batch_size=256)
    total, lrs = schedule(s, CLIPS)  # 40 steps, 8 of warm-up
    assert (total, lrs.warmup_steps, lrs.horizon_steps) == (40, 8, 40)
    assert lrs.lr(7) == pytest.approx(1.5e-4) and lrs.lr(39) == pytest.approx(1e-5 + 7e-5 * (1 + math.cos(math.pi * 31 / 32)))


@pytest.mark.parametrize("setting, value, problem", [
    ("schedule_pace", "epoch", "schedule_pace"),
    ("schedule_pace", "pass", "set schedule_epochs"),
    ("second_mask", "random", "second_mask"),
    ("object_cells", "rounded", "object_cells"),
])
def test_schedule_settings_are_checked(setting, value, problem):
    with pytest.raises(SettingsError, match=problem):
        load_pretrain_stages(None, {setting: value})


def test_shuffled_second_mask_is_another_clips_mask():
    first = torch.zeros(6, 1, 10, dtype=torch.bool)
    for clip in range(6):
        first[clip, 0, clip] = True  # each clip's mask tells which clip it is
    torch.manual_seed(3)
    masks = second_masks(first, 2, "shuffled")
    torch.manual_seed(3)
    permutation = torch.randperm(6)
    assert masks.shape == (6, 2, 10)
    assert torch.equal(masks[:, 0], first[:, 0]) and torch.equal(masks[:, 1], first[permutation, 0])
    torch.manual_seed(3)
    assert torch.equal(second_masks(first, 2, "shuffled"), masks)  # the seeded RNG decides
    own = torch.rand(6, 2, 10) > 0.5
    assert second_masks(own, 2, "own") is own


def test_loader_draws_one_mask_per_clip_when_shuffled(tiny_shards):
    base = dict(shards=str(tiny_shards / "*.tar"), input_size=64, num_workers=0, shuffle_buffer=4)
    shuffled = next(iter(PretrainClips(expand_urls(base["shards"]), PretrainSettings(**base))))
    own = next(iter(PretrainClips(expand_urls(base["shards"]), PretrainSettings(**base, second_mask="own"))))
    assert shuffled["masks"].shape == (1, 128) and own["masks"].shape == (2, 128)


def test_loop_applies_the_released_pace(tiny_shards, tmp_path):
    # 12 clips, batch 4 (2 clips x 2 masks): 3 steps per epoch, 6 per pass; 9 steps in all.
    overrides = dict(
        shards=str(tiny_shards / "*.tar"), out_dir=str(tmp_path), model="tiny", target="pixel",
        input_size=64, batch_size=4, num_workers=0, shuffle_buffer=4, epochs=3,
        schedule_epochs=10, warmup_epochs=2, schedule_pace="pass", base_lr=0.0256,
        log_every_steps=1, save_every_steps=100, device="cpu",
    )
    run_pretrain(None, overrides, resume=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    peak = 0.0256 * 4 / 256  # 4e-4; warm-up: 6 indices, linspace(0, peak, 6)
    indices = [0, 1, 2, 3, 4, 5, 3, 4, 5]  # steps 0..8; pass 2 starts at index 3
    assert [r["lr"] for r in rows] == pytest.approx([peak * i / 5 for i in indices])
