"""Every YAML under configs/ loads into its command's settings and passes that command's checks.

A config is matched to its command by folder (and, in configs/toy/, by name); a YAML that no
rule matches fails the test, so a new config cannot ship untested.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from smile_data.config import load_settings
from smile_data.render.settings import RenderSettings, check_render_settings
from smile_train.data.masking import MaskSettings
from smile_train.loop.train_loop import micro_batch_plan
from smile_train.settings.finetune import FinetuneSettings, ProbeSettings, read_class_names
from smile_train.settings.pretrain import load_pretrain_stages

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


def check_pretrain(path: Path) -> None:
    stages = load_pretrain_stages(str(path), {})
    assert stages
    for name, s in stages:
        MaskSettings(s.mask, s.mask_ratio, s.traj_unmask_ratio)  # valid mask kind and ratios
        micro_batch_plan(s.batch_size, s.micro_batch_size, 1, s.mask_repeats)
        assert s.target in ("pixel", "clip") and s.crop in ("none", "multiscale"), name
        assert s.epochs > 0 and 0 <= s.warmup_epochs <= s.epochs and s.base_lr > 0, name


def check_finetune(path: Path) -> None:
    s = load_settings(FinetuneSettings, path)
    micro_batch_plan(s.batch_size, s.micro_batch_size, 1)
    assert s.num_classes >= 2 and s.epochs > 0 and s.base_lr > 0
    if s.class_names:  # a relative path names a file of the repository
        assert len(read_class_names(str(REPO / s.class_names), s.num_classes)) == s.num_classes


def check_probe(path: Path) -> None:
    s = load_settings(ProbeSettings, path)
    assert s.epochs > 0 and s.batch_size > 0


def check_render(path: Path) -> None:
    check_render_settings(load_settings(RenderSettings, path))


RULES: list[tuple[Callable[[Path], bool], Callable[[Path], None]]] = [
    (lambda p: p.parent.name == "pretrain" or p.name == "pretrain.yaml", check_pretrain),
    (lambda p: p.parent.name == "finetune" or p.name == "finetune.yaml", check_finetune),
    (lambda p: p.parent.name == "probe" or p.name == "probe.yaml", check_probe),
    (lambda p: p.parent.name == "render" or p.name.startswith("render_"), check_render),
]


def test_configs_are_found():
    folders = {p.parent.name for p in CONFIGS}
    assert {"pretrain", "finetune", "probe", "render", "toy"} <= folders


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO / "configs")) for p in CONFIGS])
def test_config_loads_and_resolves(path):
    checks = [check for matches, check in RULES if matches(path)]
    assert len(checks) == 1, f"{path}: no rule says which command reads it; add one to RULES"
    checks[0](path)
