"""Every shipped pretraining config loads and resolves against PretrainSettings."""

from pathlib import Path

import pytest

from smile_train.data.sources import stage_sources
from smile_train.settings.pretrain import PretrainSettings, load_pretrain_stages

PRETRAIN_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "pretrain"
CONFIGS = sorted(PRETRAIN_CONFIGS.glob("*.yaml"))


def test_configs_exist():
    assert len(CONFIGS) >= 4  # SMILE ViT-B K400 and SSv2, ViT-S K400, VideoMAE ViT-B K400


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_pretrain_config_resolves(config):
    stages = load_pretrain_stages(str(config), {})
    assert stages and all(isinstance(s, PretrainSettings) for _, s in stages)
    for _, settings in stages:
        assert all(source.shards for source in stage_sources(settings)) and settings.epochs > 0
        assert settings.batch_size % settings.mask_repeats == 0


def test_videomae_baseline_is_videomae_recipe():
    (_, s), = load_pretrain_stages(str(PRETRAIN_CONFIGS / "videomae_vitb_k400.yaml"), {})
    assert (s.target, s.mask, s.mask_ratio, s.mask_repeats, s.epochs) == ("pixel", "tube", 0.9, 1, 800)
    assert (s.batch_size, s.schedule_epochs, s.warmup_epochs, s.flip) == (2048, 801, 40, False)


def test_trajectory_tokens_stay_visible_at_the_released_share():
    assert PretrainSettings().traj_unmask_ratio == 0.1
    for config in ("smile_vitb_k400", "smile_vitb_ssv2", "smile_vits_k400"):
        stage1 = load_pretrain_stages(str(PRETRAIN_CONFIGS / f"{config}.yaml"), {})[0][1]
        assert stage1.mask == "trajectory" and stage1.traj_unmask_ratio == 0.1
