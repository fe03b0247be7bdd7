"""show-batch: the trainer's own clips of an epoch, drawn and saved with a legend and row labels;
epochs differ, reruns match."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from smile_train.cli import app
from smile_train.data.loader import build_loader, resolve_sources
from smile_train.data.show_batch import (
    BOX_COLOUR,
    LABEL_WIDTH,
    LEGEND_HEIGHT,
    MASK_SHADE,
    SWATCH,
    SWATCH_GREY,
    contact_sheet,
    first_clips,
    pick_stage,
    row_label,
)


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


def test_the_sheet_has_a_legend_and_labels_its_rows(tiny_shards, tmp_path):
    _, settings = pick_stage(write_config(tmp_path, tiny_shards), {}, "stage1")
    clips = first_clips(settings, epoch=1, count=2)
    shard = Path(clips[0]["shard"])
    assert shard.parent == tiny_shards and shard.suffix == ".tar"
    assert row_label(clips[0], 1) == f"{clips[0]['key']}\n{tiny_shards.name}/{shard.name}\nepoch 1"
    sheet = contact_sheet(clips, 1, "stage1, epoch 1")
    legend = sheet[:LEGEND_HEIGHT]
    dimmed = tuple(int(v * MASK_SHADE) for v in SWATCH_GREY)
    for colour in (SWATCH_GREY, dimmed, BOX_COLOUR):  # visible, masked, box swatches
        assert (legend == colour).all(-1).sum() >= SWATCH - 2, colour
    labels = sheet[LEGEND_HEIGHT:, :LABEL_WIDTH]
    assert (labels.max(-1) < 128).sum() > 100  # text drawn beside the rows
    frames = sheet[LEGEND_HEIGHT:, LABEL_WIDTH:]
    assert (frames != 255).any(-1).sum() >= 2 * 16 * 64 * 64 * 0.9  # both clips' frames
