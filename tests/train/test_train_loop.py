"""The pretraining loop: it learns, resumes exactly, runs two stages and two processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from smile_train.data import masking
from smile_train.interop.checkpoint import load_checkpoint
from smile_train.loop import runtime as rt
from smile_train.loop.pretrain import masked_loss, run_pretrain
from smile_train.loop.train_loop import TrainingLog, micro_batch_plan
from smile_train.model.vit import build_pretrain_model
from smile_train.settings.pretrain import load_pretrain_stages

REPO = Path(__file__).resolve().parents[2]


def tiny_overrides(shards: Path, out_dir: Path, **changes) -> dict:
    settings = dict(
        shards=str(shards / "*.tar"), out_dir=str(out_dir), model="tiny", target="pixel",
        input_size=64, frames=16, batch_size=2, num_workers=0, shuffle_buffer=4,
        max_steps=4, epochs=10, warmup_epochs=1, base_lr=0.02, save_every_steps=2,
        log_every_steps=1, device="cpu",
    )
    return {**settings, **changes}


def metrics(folder: Path) -> dict[int, float]:
    rows = [json.loads(l) for l in (folder / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows}


def test_overfits_a_fixed_batch():
    # Smooth, learnable clips: colour ramps that drift over time.
    ramp = torch.linspace(0, 1, 64)
    t = torch.linspace(0, 1, 16)[:, None, None]
    red = (ramp[None, None, :] + t) % 1.0
    green = ramp[None, :, None].expand(16, 64, 64)
    clip = torch.stack([red.expand(16, 64, 64), green, 1 - green], dim=-1)  # (T, H, W, 3)
    videos = (torch.stack([clip, clip.flip(2)]) * 255).to(torch.uint8)  # (2, T, H, W, 3)
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(np.stack([[masking.tube_mask(rng, (8, 4, 4)) for _ in range(2)] for _ in range(2)]))
    runtime = rt.Runtime(0, 1, 0, torch.device("cpu"), torch.float32)
    torch.manual_seed(0)
    model = build_pretrain_model("tiny", "pixel", img_size=64, frames=16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        loss = masked_loss(model, None, videos, masks, runtime)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses


def test_resume_reproduces_the_next_steps(tiny_shards, tmp_path):
    run_pretrain(None, tiny_overrides(tiny_shards, tmp_path / "a"), resume=False)
    reference = metrics(tmp_path / "a")
    assert sorted(reference) == [1, 2, 3, 4]
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "checkpoints" / "step-000000002.pt", tmp_path / "b" / "checkpoints")
    with pytest.raises(ValueError, match="--resume"):
        run_pretrain(None, tiny_overrides(tiny_shards, tmp_path / "b"), resume=False)
    run_pretrain(None, tiny_overrides(tiny_shards, tmp_path / "b"), resume=True)
    resumed = metrics(tmp_path / "b")
    assert sorted(resumed) == [3, 4]
    for step in (3, 4):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5)
    final = load_checkpoint(tmp_path / "b" / "checkpoints" / "final.pt")
    assert final["step"] == 4 and "encoder.blocks.0.attn.qkv.weight" in final["model"]
    saved = load_checkpoint(tmp_path / "a" / "checkpoints" / "step-000000002.pt")
    for step, message in ((10**12, r"step 1000000000000 is outside this run's 0..4"),
                          (-1, r"step -1 is outside"), (2.5, r"its step 2.5 is not an integer")):
        copied = tmp_path / f"c{step}" / "checkpoints" / "step-000000002.pt"
        copied.parent.mkdir(parents=True)
        torch.save({**saved, "step": step}, copied)
        with pytest.raises(ValueError, match=message):  # it would size the loader's skip
            run_pretrain(None, tiny_overrides(tiny_shards, tmp_path / f"c{step}"), resume=True)


def test_two_stages_chain_and_write_logs(tiny_shards, tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text(
        "stages:\n  - name: stage1\n    mask: trajectory\n  - name: stage2\n    mask: tube\n    crop: multiscale\n"
    )
    overrides = tiny_overrides(tiny_shards, tmp_path / "run", max_steps=3)
    overrides["stage2.max_steps"] = 2
    finals = run_pretrain(str(config), overrides, resume=False)
    assert [p.parent.parent.name for p in finals] == ["stage1", "stage2"]
    stage2 = load_pretrain_stages(str(config), overrides)[1][1]
    assert stage2.mask == "tube" and stage2.max_steps == 2 and stage2.crop == "multiscale"
    assert (tmp_path / "run" / "stage1" / "loss_curve.png").stat().st_size > 0
    settings = json.loads((tmp_path / "run" / "stage2" / "settings.json").read_text())
    assert settings["init_from"].endswith("stage1/checkpoints/final.pt")
    rows = [json.loads(l) for l in (tmp_path / "run" / "stage2" / "metrics.jsonl").read_text().splitlines()]
    assert {"loss", "lr", "grad_norm", "clips_per_s", "data_wait_fraction"} <= set(rows[-1])
    # rerunning a finished config does nothing and returns the same checkpoints
    assert run_pretrain(str(config), overrides, resume=True) == finals


def test_diverging_loss_stops_with_a_clear_message(tiny_shards, tmp_path):
    overrides = tiny_overrides(tiny_shards, tmp_path / "nan", base_lr=1e32, max_steps=4, warmup_epochs=0)
    with pytest.raises(FloatingPointError, match="loss is"):
        run_pretrain(None, overrides, resume=False)


def test_missing_teacher_and_missing_shards_fail_at_start(tiny_shards, tmp_path):
    overrides = tiny_overrides(tiny_shards, tmp_path / "t", target="clip", teacher=str(tmp_path / "no-teacher"))
    with pytest.raises((ValueError, OSError), match="no-teacher"):
        run_pretrain(None, overrides, resume=False)
    overrides = {**tiny_overrides(tiny_shards, tmp_path / "s"), "shards": str(tmp_path / "none-*.tar")}
    with pytest.raises(FileNotFoundError):
        run_pretrain(None, overrides, resume=False)


def test_weight_decay_spares_norms_biases_and_the_named_parameters():
    model = build_pretrain_model("tiny", "pixel", img_size=64, frames=16)
    skip = set(model.no_weight_decay())
    decayed, spared = rt.weight_decay_groups(model.named_parameters(), 0.05, skip)
    assert (decayed["weight_decay"], spared["weight_decay"]) == (0.05, 0.0)
    by_id = {id(p): name for name, p in model.named_parameters()}
    assert all(p.ndim > 1 and by_id[id(p)] not in skip for p in decayed["params"])
    assert all(p.ndim <= 1 or by_id[id(p)] in skip for p in spared["params"])
    assert len(decayed["params"]) + len(spared["params"]) == len(by_id) and skip


def test_micro_batch_plan_counts_masked_samples():
    assert micro_batch_plan(256, 0, 8, repeats=2) == (16, 1)  # 32 samples = 16 clips x 2 masks
    assert micro_batch_plan(256, 16, 4, repeats=2) == (8, 4)
    assert micro_batch_plan(256, 0, 1, repeats=1) == (256, 1)
    with pytest.raises(ValueError, match="multiple"):
        micro_batch_plan(256, 48, 2, repeats=2)
    with pytest.raises(ValueError, match="mask_repeats"):
        micro_batch_plan(6, 3, 2, repeats=2)
    with pytest.raises(ValueError, match="batch_size 16 is smaller than the 64 processes"):
        micro_batch_plan(16, 0, 64)  # the finetuning recipe's batch on 64 GPUs


def pretrain_command(sets: dict) -> list[str]:
    command = ["-m", "smile_train.cli", "pretrain"]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    return command


def test_two_processes_under_torchrun_or_srun_train_alike(tiny_shards, tmp_path):
    """torchrun's variables and SLURM's (srun without torchrun) give the same process group:
    the same ranks, the same gradient sync, the same losses and final weights."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "MASTER_", "RANK", "WORLD_SIZE"))}
    env["OMP_NUM_THREADS"] = "1"
    sets = tiny_overrides(tiny_shards, tmp_path / "torchrun", batch_size=4, max_steps=3)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *pretrain_command(sets)]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters identical on 2 ranks" in result.stdout + result.stderr
    # The same run as `srun --ntasks 2 python -m smile_train.cli pretrain ...` starts it.
    port = free_port()
    sets["out_dir"] = str(tmp_path / "srun")
    ranks = [subprocess.Popen([sys.executable, *pretrain_command(sets)], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**env, "SLURM_PROCID": str(rank), "SLURM_NTASKS": "2", "SLURM_LOCALID": str(rank),
                                   "SLURM_JOB_NODELIST": "localhost", "MASTER_PORT": str(port)})
             for rank in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in ranks]
    assert [process.returncode for process in ranks] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "parameters identical on 2 ranks" in outputs[0]
    assert metrics(tmp_path / "srun") == metrics(tmp_path / "torchrun")
    weights = [torch.load(tmp_path / run / "checkpoints" / "final.pt", weights_only=True)["model"]
               for run in ("torchrun", "srun")]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_log_reads_the_device_once_per_log_line_and_names_a_diverged_step(tmp_path, monkeypatch):
    reads = []
    monkeypatch.setattr(rt, "mean_across_ranks", lambda value, runtime: reads.append(len(value)) or value)
    cpu = rt.Runtime(0, 1, 0, torch.device("cpu"), torch.float32)
    log = TrainingLog("stage", tmp_path, cpu, total_steps=7, step=0, log_every_steps=3, clips_per_step=4,
                      checkpoint_folder=tmp_path / "checkpoints")
    losses = [1.0, 2.0, 4.0, 0.5, 0.25, 0.125, 8.0]
    for step, loss in enumerate(losses, start=1):
        log.step(step, torch.tensor(loss), torch.tensor(10.0 * step), lr=0.1, corrupt=1, waited=0.0)
        if step == 5:
            log.settle(step)  # before a checkpoint: read, but the window stays open
    log.close("stage")
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert reads == [3, 2, 1, 1]  # steps 1-3 at the first log line, 4-5 at the checkpoint, 6, 7
    assert [(r["step"], r["loss"], r["grad_norm"], r["corrupt_samples"]) for r in rows] == [
        (3, 7 / 3, 30.0, 3), (6, 0.875 / 3, 60.0, 6), (7, 8.0, 70.0, 7)]

    diverged = TrainingLog("stage", tmp_path / "nan", cpu, total_steps=9, step=0, log_every_steps=3,
                           clips_per_step=4, checkpoint_folder=tmp_path / "checkpoints")
    diverged.step(1, torch.tensor(1.0), torch.tensor(1.0), lr=0.1, corrupt=0, waited=0.0)
    diverged.step(2, torch.tensor(float("nan")), torch.tensor(1.0), lr=0.1, corrupt=0, waited=0.0)
    with pytest.raises(FloatingPointError, match="loss is nan at step 2;.*checkpoints"):
        diverged.step(3, torch.tensor(1.0), torch.tensor(1.0), lr=0.1, corrupt=0, waited=0.0)
