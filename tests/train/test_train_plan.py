"""`--dry-run`: the plan of every shipped config, with the released step counts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from smile_data.config import read_yaml
from smile_train.loop.finetune import plan_finetune
from smile_train.loop.plan import warmup_end_step
from smile_train.loop.pretrain import plan_pretrain, schedule
from smile_train.settings.pretrain import PretrainSettings

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
K400_TRAIN_VIDEOS = 240_436  # the released K400 training list
SSV2_TRAIN_VIDEOS = 168_913
UCF101_TRAIN_VIDEOS = 9_537  # split 1
HMDB51_TRAIN_VIDEOS = 3_570  # split 1


def fake_video_dataset(folder: Path, videos: int, shards: int = 8) -> Path:
    """A dataset folder whose card lists `videos` samples over `shards` (empty) shard files:
    enough for a plan, which reads cards and checks the shards exist, but reads no sample."""
    folder.mkdir(parents=True)
    entries = []
    for index in range(shards):
        name = f"clips-{index:06d}.tar"
        (folder / name).write_bytes(b"")
        samples = videos // shards + (1 if index < videos % shards else 0)
        entries.append({"name": name, "bytes": 0, "samples": samples, "sha256": "0" * 64})
    card = {"format": "smile-clip-shards", "schema_version": 2, "shards": entries,
            "counts": {"samples": videos, "shards": shards}, "skipped": []}
    (folder / "dataset.json").write_text(json.dumps(card))
    return folder


def stage_steps(text: str) -> dict[str, int]:
    """{stage: steps} from a plan's `epoch: ... = N steps` lines."""
    steps, stage = {}, None
    for line in text.splitlines():
        if line.startswith("["):
            stage = line.strip("[]")
        elif line.strip().startswith("epoch:"):
            steps[stage] = int(line.rsplit("= ", 1)[1].split()[0].replace(",", ""))
    return steps


PLANNERS = {"pretrain": plan_pretrain, "finetune": plan_finetune}


def shipped_plan(kind: str, config: str, data: dict[str, Path], **options: Any) -> str:
    """The plan of configs/KIND/CONFIG with its data settings pointing at the `data` folders."""
    return PLANNERS[kind](str(CONFIGS / kind / config), {k: str(v) for k, v in data.items()}, **options)


@pytest.fixture
def datasets(tmp_path, tiny_bank):
    return {"k400": fake_video_dataset(tmp_path / "k400", K400_TRAIN_VIDEOS),
            "ssv2": fake_video_dataset(tmp_path / "ssv2", SSV2_TRAIN_VIDEOS),
            "ucf101": fake_video_dataset(tmp_path / "ucf101", UCF101_TRAIN_VIDEOS),
            "hmdb51": fake_video_dataset(tmp_path / "hmdb51", HMDB51_TRAIN_VIDEOS),
            "val": fake_video_dataset(tmp_path / "val", 100, shards=2), "bank": tiny_bank}


# (config, dataset, {stage: released steps}): 240,436 // 256 = 939 steps an effective epoch.
PRETRAIN_PLANS = [
    ("smile_vitb_k400.yaml", "k400", {"stage1": 939 * 300, "stage2": 939 * 300}),
    ("smile_vits_k400.yaml", "k400", {"stage1": 939 * 400, "stage2": 939 * 400}),
    ("smile_vitb_ssv2.yaml", "ssv2", {"stage1": 659 * 400, "stage2": 659 * 400}),
    ("videomae_vitb_k400.yaml", "k400", {"pretrain": 117 * 800}),
]


@pytest.mark.parametrize("config, dataset, expected", PRETRAIN_PLANS)
def test_pretraining_plans_give_the_released_steps(config, dataset, expected, datasets):
    text = shipped_plan("pretrain", config, {"shards": datasets[dataset], "bank": datasets["bank"]}, world_size=8)
    assert stage_steps(text) == expected
    assert "nothing was trained" in text and f"{sum(expected.values()):,} optimiser steps" in text


# (config, dataset, steps): epochs x (videos // batch clips).
FINETUNE_PLANS = [
    ("smile_vitb_k400.yaml", "k400", 100 * (K400_TRAIN_VIDEOS // 16)),
    ("smile_vits_k400.yaml", "k400", 100 * (K400_TRAIN_VIDEOS // 16)),
    ("smile_vitb_ssv2.yaml", "ssv2", 40 * (SSV2_TRAIN_VIDEOS // 32)),
    ("smile_vitb_ucf101.yaml", "ucf101", 100 * (UCF101_TRAIN_VIDEOS // 128)),
    ("smile_vitb_hmdb51.yaml", "hmdb51", 100 * (HMDB51_TRAIN_VIDEOS // 128)),
]


@pytest.mark.parametrize("config, dataset, expected", FINETUNE_PLANS)
def test_finetuning_plans_give_the_released_steps(config, dataset, expected, datasets):
    text = shipped_plan("finetune", config, {"shards": datasets[dataset], "val_shards": datasets["val"]},
                        world_size=4)
    assert stage_steps(text) == {"finetune": expected}
    temporal = "segments" if "ssv2" in config else "window at stride 4"
    assert f"frames of a video: {temporal}" in text and "100 samples (2 shards from dataset.json)" in text
    assert "(not there yet)" in text  # the pretrained weights a shipped config starts from
    assert "RandAugment, crop and flip in loader workers (augment_device: loader)" in text


def test_every_shipped_training_config_has_a_plan_test():
    planned = {f"pretrain/{c}" for c, _, _ in PRETRAIN_PLANS} | {f"finetune/{c}" for c, _, _ in FINETUNE_PLANS}
    shipped = {f"{p.parent.name}/{p.name}" for kind in ("pretrain", "finetune")
               for p in (CONFIGS / kind).glob("*.yaml") if p.name != "embedded.yaml"}
    assert planned == shipped


def test_the_k400_plan_says_what_each_stage_does(datasets):
    text = shipped_plan("pretrain", "smile_vitb_k400.yaml", {"shards": datasets["k400"], "bank": datasets["bank"]},
                        world_size=16)
    stage1, stage2 = text.split("[stage2]")
    assert "240,436 samples (8 shards from dataset.json)" in stage1
    assert "frames of a video: window at stride 4; crop multiscale, flip off, overlays objects" in stage1
    assert "6 objects of 3 classes" in stage1 and "overlays" not in stage2
    assert "batch: 256 masked samples (128 clips x 2 masks) per step = 16 process(es) x 1 micro-step(s) x 16" in stage1
    assert "masks: trajectory, 1,248 of 1,568 tokens masked; 2 per clip (second mask: shuffled)" in stage1
    assert "masks: tube, 1,248 of 1,568" in stage2
    assert "teacher openai/clip-vit-base-patch16" in stage1
    # The released curve: peak 1.5e-4 reached at the end of the 39th pass, ~1.43e-4 at the last step, never annealed.
    assert "peak 0.00015 at step 73,241" in stage1 and "last step (281,699): 0.000143" in stage1
    assert "it never anneals" in stage1
    assert "starts from scratch" in stage1 and "stage1/checkpoints/final.pt" in stage2
    assert "on the training device" not in text
    on_device = plan_pretrain(str(CONFIGS / "pretrain" / "smile_vitb_k400.yaml"),
                              {"shards": str(datasets["k400"]), "bank": str(datasets["bank"]),
                               "augment_device": "device"}, world_size=16)
    assert on_device.count("crop and flip of clip samples without loader overlays: on the training device") == 2


def test_warmup_end_matches_the_schedule():
    for pace, repeats in (("step", 2), ("pass", 2), ("pass", 1)):
        s = PretrainSettings(batch_size=16, epochs=20, warmup_epochs=3, schedule_epochs=30 if pace == "pass" else 0,
                             schedule_pace=pace, mask_repeats=repeats)
        total, lr = schedule(s, 160)
        peak = warmup_end_step(lr)
        rates = [lr.lr(step) for step in range(total)]
        assert rates.index(max(rates)) == peak and rates[peak] == pytest.approx(lr.peak)


def test_the_cli_prints_the_plan_and_trains_nothing(datasets, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "smile_train.cli", "pretrain", "--config", str(CONFIGS / "pretrain" / "smile_vitb_k400.yaml"),
         "--set", f"shards={datasets['k400']}", "--set", f"bank={datasets['bank']}", "--set", f"out_dir={out}",
         "--dry-run", "--world-size", "8"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert stage_steps(result.stdout) == {"stage1": 281_700, "stage2": 281_700} and not out.exists()


def test_a_plan_stops_at_a_missing_shard_or_bank(tmp_path, datasets):
    (datasets["k400"] / "clips-000003.tar").unlink()
    with pytest.raises(FileNotFoundError, match="clips-000003.tar"):
        shipped_plan("pretrain", "smile_vitb_k400.yaml", {"shards": datasets["k400"], "bank": datasets["bank"]})


def test_the_pretrain_command_reads_its_config_once(datasets, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from smile_train.cli import app
    from smile_train.settings import pretrain as settings

    reads = []
    monkeypatch.setattr(settings, "read_yaml", lambda *args: reads.append(args) or read_yaml(*args))
    result = CliRunner().invoke(app, [
        "pretrain", "--config", str(CONFIGS / "pretrain" / "smile_vitb_k400.yaml"),
        "--set", f"shards={datasets['k400']}", "--set", f"bank={datasets['bank']}", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "[stage2]" in result.stdout and len(reads) == 1


def test_a_plan_of_shards_that_cannot_be_counted_needs_clips_per_epoch(datasets):
    config = str(CONFIGS / "pretrain" / "smile_vitb_k400.yaml")
    piped = {"shards": "pipe:cat data/k400-000000.tar", "bank": str(datasets["bank"])}
    with pytest.raises(ValueError, match="set clips_per_epoch"):
        plan_pretrain(config, piped)
    text = plan_pretrain(config, {**piped, "clips_per_epoch": 2560})
    assert "samples not countable" in text and stage_steps(text) == {"stage1": 3000, "stage2": 3000}
