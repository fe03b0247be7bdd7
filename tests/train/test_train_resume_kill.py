"""Resume under real conditions: a pretraining and a finetuning run with two loader workers and
gradient accumulation are killed with SIGKILL mid-run, resumed with --resume, and must end
bit-identical to an uninterrupted run. The loss of an accumulated step must equal the loss and
gradient of the same samples in one micro-batch (the division by the accumulation steps)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from smile_train.interop.checkpoint import load_checkpoint
from smile_train.loop.finetune import run_finetune
from smile_train.loop.pretrain import run_pretrain

REPO = Path(__file__).resolve().parents[2]
KILL_AFTER = "step-000000002.pt"  # the run is killed as soon as this checkpoint is written
START_TIMEOUT_S = 240


def pretrain_settings(shards: Path, out_dir: Path, **changes) -> dict:
    settings = dict(
        shards=str(shards / "*.tar"), out_dir=str(out_dir), model="tiny", target="pixel",
        input_size=64, frames=16, crop="multiscale", flip=True, mask="trajectory",
        batch_size=4, micro_batch_size=2,  # 4 masked samples = 2 micro-steps of 1 clip x 2 masks
        num_workers=2, shuffle_buffer=4, max_steps=6, epochs=10, warmup_epochs=1, base_lr=0.02,
        save_every_steps=2, log_every_steps=1, device="cpu",
    )
    return {**settings, **changes}


def finetune_settings(shards: Path, out_dir: Path, **changes) -> dict:
    settings = dict(
        shards=str(shards / "*.tar"), out_dir=str(out_dir), model="tiny", num_classes=2,
        input_size=64, frames=16, batch_size=4, micro_batch_size=2, num_workers=2,
        shuffle_buffer=8, max_steps=6, epochs=6, warmup_epochs=1, base_lr=0.05,
        save_every_steps=2, log_every_steps=1, device="cpu", drop_path=0.1,
    )
    return {**settings, **changes}


def run_and_kill(command: str, settings: dict) -> None:
    """Start `smile-train COMMAND` in its own process group; SIGKILL the group (the trainer and
    its loader workers) once the step-2 checkpoint exists, before the run can finish."""
    sets = [arg for key, value in settings.items() for arg in ("--set", f"{key}={value}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "smile_train.cli", command, *sets], cwd=REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    checkpoints = Path(settings["out_dir"]) / "checkpoints"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not (checkpoints / KILL_AFTER).is_file():
            if process.poll() is not None:
                pytest.fail(f"{command} ended before it could be killed: {process.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{command} wrote no {KILL_AFTER} within {START_TIMEOUT_S} s")
            time.sleep(0.02)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _wait_until_gone(process.pid)
    assert process.returncode == -signal.SIGKILL
    assert not (checkpoints / "final.pt").exists()  # killed mid-run


def _wait_until_gone(group: int) -> None:
    """Until every process of the killed group (the loader workers too) has exited: they share
    the run's folder lock, which a resume takes next."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    pytest.fail(f"processes of group {group} still alive after SIGKILL")


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first["step"] == second["step"]
    assert first["model"].keys() == second["model"].keys()
    different = [k for k in first["model"] if not torch.equal(first["model"][k], second["model"][k])]
    assert different == [], f"{len(different)} tensors differ, e.g. {different[:3]}"


def metrics(folder: Path) -> dict[int, dict]:
    return {r["step"]: r for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())}


def test_pretraining_killed_and_resumed_ends_bit_identical(tiny_shards, tmp_path):
    reference = run_pretrain(None, pretrain_settings(tiny_shards, tmp_path / "whole"), resume=False)[-1]
    killed = pretrain_settings(tiny_shards, tmp_path / "killed")
    run_and_kill("pretrain", killed)
    resumed = run_pretrain(None, killed, resume=True)[-1]
    assert_same_weights(reference, resumed)
    whole, after = metrics(tmp_path / "whole"), metrics(tmp_path / "killed")
    assert after[6]["loss"] == whole[6]["loss"]


def test_finetuning_killed_and_resumed_ends_bit_identical(labelled_tiny_shards, tmp_path):
    reference = run_finetune(None, finetune_settings(labelled_tiny_shards, tmp_path / "whole"), resume=False)
    killed = finetune_settings(labelled_tiny_shards, tmp_path / "killed")
    run_and_kill("finetune", killed)
    resumed = run_finetune(None, killed, resume=True)
    assert_same_weights(reference, resumed)


# stage: (shards fixture, settings, run, changes that make a step a pure function of its clips)
ACCUMULATED = {
    "pretrain": ("tiny_shards", pretrain_settings, run_pretrain, dict(second_mask="own", crop="none")),
    "finetune": ("labelled_tiny_shards", finetune_settings, run_finetune,
                 dict(mixup=0.0, cutmix=0.0, rand_augment=False, drop_path=0.0)),
}


@pytest.mark.parametrize("stage", ACCUMULATED)
def test_accumulation_divides_the_loss(stage, request, tmp_path):
    """The same clips as one micro-batch or as 2 accumulated ones: same loss, same gradient."""
    shards, settings_of, run, changes = ACCUMULATED[stage]
    runs = {}
    for micro in (4, 2):
        out = tmp_path / f"micro{micro}"
        run(None, settings_of(request.getfixturevalue(shards), out, micro_batch_size=micro, num_workers=0,
                              max_steps=1, **changes), resume=False)
        runs[micro] = metrics(out)[1]
    assert runs[2]["loss"] == pytest.approx(runs[4]["loss"], rel=1e-5)
    assert runs[2]["grad_norm"] == pytest.approx(runs[4]["grad_norm"], rel=1e-4)
