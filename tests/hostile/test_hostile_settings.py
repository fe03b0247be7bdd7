"""Settings that cannot work are refused at start, naming the setting; resumes stay clean."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from smile_data.config import SettingsError, apply_overrides
from smile_train.interop.checkpoint import load_checkpoint
from smile_train.loop import runtime as rt
from smile_train.model.vit import build_pretrain_model
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import FinetuneSettings
from smile_train.settings.pretrain import load_pretrain_stages
from tests.conftest import write_test_shards
from tests.hostile.conftest import REPO

TINY = ["model=tiny", "target=pixel", "input_size=64", "batch_size=2", "num_workers=0",
        "device=cpu", "log_every_steps=1"]


def sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.mark.parametrize("setting, value", [
    ("mask_repeats", 0), ("save_every_steps", 0), ("mask_ratio", 1.5), ("crop_scales", []),
    ("max_steps", -1), ("seed", -3), ("input_size", 100000), ("frames", 3), ("model", "huge"),
    ("log_every_steps", 0), ("batch_size", 0), ("betas", [0.9]),
])
def test_pretraining_settings_that_cannot_work(setting, value):
    with pytest.raises(SettingsError, match=f"stage pretrain: setting '{setting}' must be"):
        load_pretrain_stages(None, {setting: value})


@pytest.mark.parametrize("setting, value", [("test_clips", 0), ("layer_decay", 0), ("frames", 3),
                                            ("crop_scale", [0.9, 0.1])])
def test_finetuning_settings_that_cannot_work(setting, value):
    settings = apply_overrides(FinetuneSettings(), {setting: value})
    with pytest.raises(SettingsError, match=f"setting '{setting}' must be"):
        check_settings(settings)


def test_the_cli_refuses_them_at_start(case):
    outcome = case.run("smile-train", "pretrain", *sets(*TINY, "shards=none.tar", "out_dir=out/run",
                                                       "mask_repeats=0"))
    outcome.refused("setting 'mask_repeats' must be in [1, 64], got 0")
    assert not case.out.exists()


def metrics_steps(run) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def saved_from_step(folder, step: int) -> bool:
    return any(int(p.stem.split("-")[1]) >= step for p in folder.glob("step-*.pt"))


def test_kill_then_resume_leaves_each_step_once(case):
    """kill -9 mid-run, then --resume: no repeated metrics rows, no temporary checkpoint; and
    resuming with another model size is refused naming the settings, before anything loads."""
    write_test_shards(case.input / "shards", clips=8)
    run = case.out / "run"
    args = ["pretrain", *sets(*TINY, f"shards={case.input}/shards/*.tar", f"out_dir={run}",
                              "max_steps=400", "save_every_steps=1", "keep_checkpoints=1")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-c", "from smile_train.cli import main; main()", *args],
                             cwd=case.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not saved_from_step(run / "checkpoints", 2):
        time.sleep(0.05)  # older step checkpoints are pruned: look for any from step 2 on
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (run / "checkpoints" / "final.pt").exists(), "the run ended before the kill"
    logged = metrics_steps(run)
    assert logged[-1] >= 2
    # A checkpoint being written at the kill leaves a temporary file (made by hand: a real
    # kill lands there only by chance).
    (run / "checkpoints" / "step-000000099.pt.tmp-999999").write_bytes(b"half a checkpoint")

    latest = sorted((run / "checkpoints").glob("step-*.pt"))[-1]
    with pytest.raises(ValueError, match=rf"{latest.name}: a checkpoint of another model.*model 'tiny'"):
        rt.restore_training_state(load_checkpoint(latest), build_pretrain_model("small", "pixel", img_size=64),
                                  None, None, str(latest))

    resumed = case.run("smile-train", *args[:1], "--resume", *args[1:], *sets(f"max_steps={logged[-1] + 1}"))
    assert resumed.returncode == 0, resumed.output[-3000:]
    steps = metrics_steps(run)
    assert steps == list(range(1, logged[-1] + 2))
    assert not [p.name for p in (run / "checkpoints").iterdir() if ".tmp-" in p.name]
