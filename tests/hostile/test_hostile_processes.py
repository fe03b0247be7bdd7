"""Shared output folders and killed parents: a second writer refuses, workers do not linger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smile_data.processes import FolderBusy, folder_lock
from smile_train.interop.checkpoint import RunCheckpoints
from tests.hostile.conftest import REPO

RENDER = ["render", "--bg", "noise", "--overlay", "patches", "--frames", "4", "--size", "32",
          "--codec", "png"]


def test_a_second_render_into_a_busy_folder_refuses(case):
    with folder_lock(case.out / "data", "rank-00000"):  # as a render running in this process
        outcome = case.run("smile-data", *RENDER, "--clips", "4", "--out", "out/data")
    outcome.refused("out/data: another command", ".lock-rank-00000",
                    "choose another output folder")
    assert not (case.out / "data" / "progress").exists()


def test_a_second_training_run_into_a_busy_folder_refuses(tmp_path):
    with folder_lock(tmp_path / "checkpoints", "run"):
        with pytest.raises(FolderBusy, match="is writing into this folder"):
            RunCheckpoints(tmp_path / "checkpoints", 3, is_main=True).resumable(False)
    assert RunCheckpoints(tmp_path / "checkpoints", 3, is_main=True).resumable(False) == []


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.name.isdigit() and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_and_find_lingering(parent: subprocess.Popen, workers: list[int]) -> list[int]:
    """SIGKILL the parent, give its workers 20 s to follow, kill and return any still alive."""
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    lingering = [pid for pid in workers if alive(pid)]
    for pid in lingering:
        os.kill(pid, signal.SIGKILL)
    return lingering


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_render_workers_exit_when_the_parent_is_killed(case):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-c", "from smile_data.cli import main; main()", *RENDER,
         "--clips", "100000", "--workers", "2", "--out", str(case.out / "data")],
        cwd=case.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any((case.out / "data").glob("clips-*.tar*")):
        time.sleep(0.2)  # a shard being written: the workers are up and rendering
    workers = children_of(parent.pid)
    assert workers, "no worker process started"
    lingering = kill_and_find_lingering(parent, workers)
    assert not lingering, f"workers {lingering} outlived their killed parent"


HOLD_AND_FORK = """
import os, sys, time
from smile_data.processes import hold_until_exit
hold_until_exit(sys.argv[1], "run")
if os.fork() == 0:         # a loader worker that outlives its parent for a while
    print(os.getpid(), flush=True)  # after the fork hooks ran in this child
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and flock")
def test_a_forked_worker_does_not_keep_a_killed_runs_lock(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", HOLD_AND_FORK, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True, env=env)
    child = int(parent.stdout.readline())
    try:
        with pytest.raises(FolderBusy):  # the run holds its folder while it lives
            with folder_lock(tmp_path, "run"):
                pass
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert alive(child)
        with folder_lock(tmp_path, "run"):  # free at once, though the worker still runs
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def inspect_slowly(path: str) -> None:
    """Stands in for inspect_shard in a validate worker: says it started, then takes long."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(60)


VALIDATE_SLOWLY = """
import sys
from smile_data.shards import validate
from tests.hostile.test_hostile_processes import inspect_slowly
validate.inspect_shard = inspect_slowly
validate._inspect_all([sys.argv[1] + "/a", sys.argv[1] + "/b"], 2)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_validate_workers_exit_when_the_parent_is_killed(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen([sys.executable, "-c", VALIDATE_SLOWLY, str(tmp_path)],
                              cwd=REPO, env=env)
    markers = [tmp_path / "a", tmp_path / "b"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(m.exists() and m.read_text() for m in markers):
        time.sleep(0.2)
    workers = [int(m.read_text()) for m in markers]
    lingering = kill_and_find_lingering(parent, workers)
    assert not lingering, f"validate workers {lingering} outlived their killed parent"


@pytest.mark.parametrize("lock, command", [
    ("import", ["import-objects", "input", "--out", "out/bank"]),
    ("rank-00000", ["build-objects", "--source", "photos", "--out", "out/bank"]),
    ("rank-00000", ["build-objects", "--model", "input/no-model", "--out", "out/bank"]),
    ("merge", ["merge-shards", "out/bank"]),
])
def test_bank_and_merge_commands_refuse_a_busy_folder(case, lock, command):
    (case.out / "bank" / "progress").mkdir(parents=True)  # a render folder, for merge-shards
    (case.out / "bank" / "progress" / "identity.json").write_text(json.dumps(
        {"fingerprint": {}, "writer": {"world_size": 1}}))
    with folder_lock(case.out / "bank", lock):  # as the same command running in this process
        outcome = case.run("smile-data", *command)
    outcome.refused("out/bank: another command", f".lock-{lock}", "choose another output folder")
    assert sorted(p.name for p in (case.out / "bank").rglob("*")) == [
        f".lock-{lock}", "identity.json", "progress"]
