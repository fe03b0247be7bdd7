"""show-batch: the trainer's own clips of an epoch, drawn and saved; epochs differ, reruns match."""

from __future__ import annotations

import numpy as np
import torch
from typer.testing import CliRunner

from smile_train.cli import app
from smile_train.data import build_loader, resolve_sources
from smile_train.show_batch import first_clips, pick_stage


def write_config(tmp_path, tiny_shards) -> str:
    config = tmp_path / "stage.yaml"
    config.write_text(
        "model: tiny\ninput_size: 64\nframes: 16\nbatch_size: 4\nnum_workers: 2\nshuffle_buffer: 4\n"
        "traj_unmask_ratio: 0.1\n"
        f"stages:\n  - name: stage1\n    shards: {tiny_shards}/*.tar\n    mask: trajectory\n"
        "    crop: multiscale\n    overlay: patches\n")
    return str(config)


def test_show_batch_gives_the_clips_the_loader_gives(tiny_shards, tmp_path):
    config = write_config(tmp_path, tiny_shards)
    _, settings = pick_stage(config, {}, "stage1")
    shown = first_clips(settings, epoch=1, count=6)
    # 12 clips per epoch, batch 4 masked samples = 2 clips x 2 masks: 3 steps per epoch.
    loader = build_loader(settings, resolve_sources(settings), 2, 0, resume_batches=3)
    from_loader = []
    for batch in loader:
        from_loader.extend(zip(batch["video"], batch["masks"]))
        if len(from_loader) >= 6:
            break
    assert all(torch.equal(s["video"], v) and torch.equal(s["masks"], m) for s, (v, m) in zip(shown, from_loader))


def test_show_batch_cli_is_deterministic_and_epochs_differ(tiny_shards, tmp_path):
    config = write_config(tmp_path, tiny_shards)
    runner = CliRunner()
    for folder, epoch in (("a", "0"), ("b", "0"), ("c", "1")):
        result = runner.invoke(app, ["show-batch", "--config", config, "--epoch", epoch, "--clips", "3",
                                     "--set", "num_workers=1", "--out", str(tmp_path / folder)])
        assert result.exit_code == 0, result.output
    a, b = (tmp_path / "a" / "stage1_epoch0.png").read_bytes(), (tmp_path / "b" / "stage1_epoch0.png").read_bytes()
    assert a == b
    arrays = np.load(tmp_path / "a" / "stage1_epoch0.npz")
    later = np.load(tmp_path / "c" / "stage1_epoch1.npz")
    assert arrays["clips"].shape == (3, 16, 64, 64, 3) and arrays["masks"].shape == (3, 1, 128)  # second masks: shuffled in the loop
    assert arrays["boxes"].shape[:3] == (3, 16, 3)  # the shard's object + 2 patches per clip
    assert not np.array_equal(arrays["clips"], later["clips"])
    result = runner.invoke(app, ["show-batch", "--config", config, "--stage", "nope", "--out", str(tmp_path)])
    assert result.exit_code != 0
