"""Hostile-input cases run the real CLI in a child process under a time and memory limit.

A payload that hangs or blows up memory then fails its test instead of taking the machine
down. Each case builds its own input (configs, banks, dataset folders, checkpoints, CSV lists)
in a fresh folder laid out as

    case/            the working directory of the command
    case/input/      what the hostile lab ships
    case/out/        the only folder the command may write to
    case/marker      the file a payload tries to create

and `Case.run` reports what the command printed, every file that appeared outside `out/`, and the
command's wall time and peak resident memory (its own high-water mark, written by the child). With SMILE_HOSTILE_LOG=<file>, each run appends a
JSON line (test, command, seconds, peak RSS) to that file: the table of cases in a report.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# torch reserves ~1.8 GB of address space for a tiny CPU run (VmPeak of `smile-train pretrain`);
# 4 GiB leaves room for that and still stops the multi-gigabyte blow-ups these cases provoke.
ADDRESS_SPACE_LIMIT = 4 << 30
TIME_LIMIT_SECONDS = 60
# What a refusal may cost: the whole command, torch and the CLI included (about 0.5 GB).
PEAK_RSS_LIMIT_MB = 1536
LOG_VARIABLE = "SMILE_HOSTILE_LOG"
PEAK_VARIABLE = "SMILE_HOSTILE_PEAK_FILE"
# Run in the child before the CLI: at exit it writes its own peak resident memory (VmHWM, kB).
# wait4's ru_maxrss would also count the pages the child inherited from this (large) test
# process when it was forked, since Linux carries that high-water mark across exec.
PEAK_REPORT = f"""import atexit, os
def _report_peak():
    with open('/proc/self/status') as status, open(os.environ['{PEAK_VARIABLE}'], 'w') as out:
        out.write(next(line for line in status if line.startswith('VmHWM:')).split()[1])
atexit.register(_report_peak)
"""
CLI_MODULES = {"smile-data": "smile_data.cli", "smile-train": "smile_train.cli"}


@dataclass
class Outcome:
    returncode: int
    output: str  # stdout and stderr together
    written_outside: list[str]  # files that appeared outside out/ (besides the inputs)
    marker_exists: bool  # a payload ran
    seconds: float = 0.0  # wall time of the command
    peak_rss_mb: float = 0.0  # the command's peak resident memory (its own process)

    def refused(self, *fragments: str) -> None:
        """Exit status 2 with a message holding every fragment, and nothing written elsewhere."""
        assert self.returncode == 2, f"exit {self.returncode}:\n{self.output[-3000:]}"
        assert "Traceback" not in self.output, self.output[-3000:]
        for fragment in fragments:
            assert fragment in self.output, f"{fragment!r} not in:\n{self.output[-3000:]}"
        assert not self.written_outside, self.written_outside
        assert not self.marker_exists, "a payload ran: the marker file exists"
        assert self.peak_rss_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {self.peak_rss_mb:.0f} MB"


def _limit_resources(file_size_limit: int | None = None) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if file_size_limit is not None:  # writes past it fail (EFBIG) instead of killing the child
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


class Case:
    """One hostile case in its own folder (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = root
        self.input = root / "input"
        self.out = root / "out"
        self.marker = root / "marker"
        self.input.mkdir(parents=True)

    def run(self, program: str, *args: str, timeout: float = TIME_LIMIT_SECONDS,
            prefix: tuple[str, ...] = (), file_size_limit: int | None = None) -> Outcome:
        """Run the CLI in a child; `prefix` runs it through another command (which must end
        by exec-ing its arguments), `file_size_limit` caps every file it writes."""
        before = _files(self.root)
        peak_file = self.root.parent / f"peak-{time.monotonic_ns()}.kb"  # outside the case folder
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               PEAK_VARIABLE: str(peak_file)}
        code = f"{PEAK_REPORT}from {CLI_MODULES[program]} import main; main()"
        command = [*prefix, sys.executable, "-c", code, *args]
        returncode, output, seconds, peak_rss_mb = _run_measured(command, self.root, env, timeout,
                                                                 file_size_limit)
        if peak_file.is_file():
            peak_rss_mb = int(peak_file.read_text()) / 1024
            peak_file.unlink()
        if returncode is None:
            pytest.fail(f"{program} {' '.join(args)}: still running after {timeout} s")
        _log_run(program, args, seconds, peak_rss_mb, returncode)
        after = _files(self.root)
        outside = sorted(p for p in after - before if not p.startswith("out/") and p != "out")
        return Outcome(returncode, output, outside, self.marker.exists(), seconds, peak_rss_mb)


def _run_measured(command: list[str], cwd: Path, env: dict[str, str], timeout: float,
                  file_size_limit: int | None = None) -> tuple[int | None, str, float, float]:
    """(exit status or None when killed at `timeout`, stdout and stderr, seconds, peak RSS in
    MB from wait4: an upper bound, see PEAK_REPORT). The child is reaped with wait4."""
    start = time.monotonic()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT,
                             preexec_fn=lambda: _limit_resources(file_size_limit))
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(child.stdout.read()), daemon=True)
    reader.start()
    killed = threading.Event()

    def kill() -> None:
        killed.set()
        child.kill()

    timer = threading.Timer(timeout, kill)
    timer.start()
    _, status, usage = os.wait4(child.pid, 0)
    timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    reader.join()
    child.stdout.close()
    output = b"".join(chunks).decode("utf-8", "replace")
    returncode = None if killed.is_set() else child.returncode
    return returncode, output, time.monotonic() - start, usage.ru_maxrss / 1024  # KiB on Linux


def _log_run(program: str, args: tuple[str, ...], seconds: float, peak_rss_mb: float,
             returncode: int) -> None:
    log = os.environ.get(LOG_VARIABLE)
    if not log:
        return
    record = {"test": os.environ.get("PYTEST_CURRENT_TEST", "").removesuffix(" (call)"),
              "command": " ".join([program, *args])[:200], "exit": returncode,
              "seconds": round(seconds, 2), "peak_rss_mb": round(peak_rss_mb)}
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


@pytest.fixture
def case(tmp_path) -> Case:
    return Case(tmp_path / "case")


def clip_members(key: str = "000000", frames: int = 2, size: int = 16, **changes) -> dict[str, bytes]:
    """The members of one valid sample (PNG frames + JSON), with metadata fields replaced by
    `changes`; a `json` entry in `changes` replaces the metadata bytes whole."""
    import cv2
    import numpy as np

    from smile_data.shards import layout

    metadata = {
        "schema_version": layout.SCHEMA_VERSION, "key": key, "seed": 0, "frames": frames,
        "height": size, "width": size, "codec": "png",
        "background": {"kind": "noise", "source": None, "frame_indices": None},
        "objects": [{"kind": "patch", "bank_path": None, "lvis_id": None, "name": None,
                     "boxes": [[1.0, 1.0, 8.0, 8.0]] * frames, "angles": [0.0] * frames}],
        "label": 0,
    }
    raw_json = changes.pop("json", None)
    metadata.update(changes)
    frame = cv2.imencode(".png", np.zeros((size, size, 3), np.uint8))[1].tobytes()
    members = {f"{key}.{layout.frame_extension(t, 'png')}": frame for t in range(frames)}
    members[f"{key}.json"] = raw_json if raw_json is not None else json.dumps(metadata).encode()
    return members


def write_shard(path: Path, members: dict[str, bytes]) -> Path:
    """A plain tar holding `members` in order (no dataset card beside it)."""
    import io
    import tarfile

    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path
