"""build-objects killed with SIGKILL mid-run, then rerun, equals an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from smile_data.objects.build import BATCH_RECORD, journal_path
from smile_data.jobs import Journal

CLASSES = "cat,698,cup"
CANDIDATES = 4
TOTAL_BATCHES = 3 * CANDIDATES  # batch size 1
POLL_SECONDS = 0.05
START_TIMEOUT_SECONDS = 120


def kill_args(tiny_sd: Path, tiny_clipseg: Path, out: Path) -> list[str]:
    return ["build-objects", "--out", str(out), "--model", str(tiny_sd), "--classes", CLASSES,
            "--candidates", str(CANDIDATES), "--accepted", "3", "--steps", "6",
            "--resolution", "64", "--batch-size", "1", "--segmenters", "clipseg",
            "--clipseg-model", str(tiny_clipseg), "--set", "min_side_px=8", "--no-progress"]


def batches_done(out: Path) -> int:
    return sum(r["kind"] == BATCH_RECORD for r in Journal(journal_path(out, 0)).records())


@pytest.mark.slow
def test_kill_then_rerun_equals_uninterrupted_run(tiny_sd, tiny_clipseg, invoke, snapshot, tmp_path):
    reference = tmp_path / "reference"
    assert invoke(*kill_args(tiny_sd, tiny_clipseg, reference)).exit_code == 0
    assert any((reference / "objects").rglob("*.png")), "the test needs accepted objects"

    out = tmp_path / "killed"
    command = [str(Path(sys.executable).with_name("smile-data")), *kill_args(tiny_sd, tiny_clipseg, out)]
    # CPU kernels may sum in a different order with another thread count: match this process's.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while batches_done(out) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done = batches_done(out)
    assert process.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    assert 1 <= done < TOTAL_BATCHES and not (out / "objects.parquet").exists()

    result = invoke(*kill_args(tiny_sd, tiny_clipseg, out))
    assert result.exit_code == 0, result.output
    assert f"{TOTAL_BATCHES - done} images generated" in result.output
    assert snapshot(out) == snapshot(reference)
    assert not list(out.rglob("*.tmp-*"))
