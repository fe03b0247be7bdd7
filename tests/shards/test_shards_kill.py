"""Kill -9 in the middle of a run, rerun the same command: byte-identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from smile_data.jobs import WorkShare
from smile_data.shards.progress import journal_path

SCRIPT = """
import sys
from smile_data.shards.runner import write_dataset
from tests.shards.synthetic_clips import SyntheticClips

if __name__ == "__main__":
    out, delay, workers = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    write_dataset(out, run_task=SyntheticClips(samples_per_task=2, skip_every=3, delay_s=delay),
                  task_count=40, samples_per_task=2, fingerprint={"tasks": 40}, card={},
                  shard_size=3, workers=workers)
"""
REPO = Path(__file__).resolve().parents[2]  # the script imports the tests' synthetic clips
JOURNAL_LINES_BEFORE_KILL = 2
WAIT_LIMIT_S = 60.0
POLL_S = 0.02


def run_script(script: Path, out: Path, delay: float, workers: int) -> subprocess.Popen:
    # A session of its own, so that the kill reaches the worker processes too.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.Popen([sys.executable, str(script), str(out), str(delay), str(workers)],
                            start_new_session=True, env=env)


def journal_lines(out: Path) -> int:
    path = journal_path(out, WorkShare())
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def kill_after_shards(process: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while journal_lines(out) < JOURNAL_LINES_BEFORE_KILL:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no shard was finished in time"
        time.sleep(POLL_S)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_kill_minus_nine_then_rerun_is_byte_identical(tmp_path, folder_bytes):
    script = tmp_path / "write.py"
    script.write_text(SCRIPT)
    reference = tmp_path / "reference"
    assert run_script(script, reference, 0.0, 1).wait() == 0
    out = tmp_path / "killed"
    kill_after_shards(run_script(script, out, 0.05, 2), out)
    assert not (out / "dataset.json").exists()
    assert 0 < len(list(out.glob("clips-*.tar"))) < len(list(reference.glob("clips-*.tar")))
    assert run_script(script, out, 0.0, 1).wait() == 0
    assert folder_bytes(out) == folder_bytes(reference)
    assert not list(out.rglob("*.tmp-*"))
