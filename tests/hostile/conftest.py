"""Hostile-input cases run the real CLI in a child process under a time and memory limit.

A payload that hangs or blows up memory then fails its test instead of taking the machine
down. Each case builds its own input (configs, banks, dataset folders, checkpoints, CSV lists)
in a fresh folder laid out as

    case/            the working directory of the command
    case/input/      what the hostile lab ships
    case/out/        the only folder the command may write to
    case/marker      the file a payload tries to create

and `run_cli` reports what the command printed and every file that appeared outside `out/`.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# torch reserves ~1.8 GB of address space for a tiny CPU run (VmPeak of `smile-train pretrain`);
# 4 GiB leaves room for that and still stops the multi-gigabyte blow-ups these cases provoke.
ADDRESS_SPACE_LIMIT = 4 << 30
TIME_LIMIT_SECONDS = 60
CLI_MODULES = {"smile-data": "smile_data.cli", "smile-train": "smile_train.cli"}


@dataclass
class Outcome:
    returncode: int
    output: str  # stdout and stderr together
    written_outside: list[str]  # files that appeared outside out/ (besides the inputs)
    marker_exists: bool  # a payload ran
    seconds: float = 0.0  # wall time of the command
    peak_rss_mb: float = 0.0  # the command's peak resident memory (VmHWM at exit; NaN if killed)

    def refused(self, *fragments: str) -> None:
        """Exit status 2 with a message holding every fragment, and nothing written elsewhere."""
        assert self.returncode == 2, f"exit {self.returncode}:\n{self.output[-3000:]}"
        assert "Traceback" not in self.output, self.output[-3000:]
        for fragment in fragments:
            assert fragment in self.output, f"{fragment!r} not in:\n{self.output[-3000:]}"
        assert not self.written_outside, self.written_outside
        assert not self.marker_exists, "a payload ran: the marker file exists"


def _limit_resources() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE_LIMIT, ADDRESS_SPACE_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


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

    def run(self, program: str, *args: str, timeout: float = TIME_LIMIT_SECONDS) -> Outcome:
        before = _files(self.root)
        returncode, output, seconds, peak = _run_measured(program, args, self.root, timeout)
        if returncode is None:
            pytest.fail(f"{program} {' '.join(args)}: still running after {timeout} s")
        after = _files(self.root)
        outside = sorted(p for p in after - before if not p.startswith("out/") and p != "out")
        return Outcome(returncode, output, outside, self.marker.exists(), seconds, peak)


# The command runs under this wrapper, which writes the process's peak resident memory (VmHWM)
# at exit: the ru_maxrss of wait4 would also count the test process's memory, which the child
# held between fork and exec.
PEAK_FILE_VARIABLE = "SMILE_TEST_PEAK_RSS_FILE"
MEASURED_MAIN = f"""
import atexit, os
def _write_peak():
    with open("/proc/self/status") as status:
        peak = next((line.split()[1] for line in status if line.startswith("VmHWM:")), "nan")
    with open(os.environ["{PEAK_FILE_VARIABLE}"], "w") as out:
        out.write(peak)
atexit.register(_write_peak)
from {{module}} import main
main()
"""


def _run_measured(program: str, args: tuple[str, ...], cwd: Path,
                  timeout: float) -> tuple[int | None, str, float, float]:
    """(exit status or None after a timeout, stdout + stderr, seconds, peak RSS MiB or NaN)
    of the CLI command under the case's limits."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak_kib"
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               PEAK_FILE_VARIABLE: str(peak_file)}
        command = [sys.executable, "-c", MEASURED_MAIN.format(module=CLI_MODULES[program]), *args]
        started = time.monotonic()
        try:
            done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                                  timeout=timeout, preexec_fn=_limit_resources)
        except subprocess.TimeoutExpired:
            return None, "", timeout, float("nan")
        seconds = time.monotonic() - started
        peak = float(peak_file.read_text()) / 1024 if peak_file.is_file() else float("nan")
    return done.returncode, done.stdout + done.stderr, seconds, peak


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
