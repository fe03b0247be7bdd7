"""Progress on a terminal is a tqdm bar; redirected to a file it is a plain line every
LOG_INTERVAL_SECONDS and one at the end, never carriage returns."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from tqdm import tqdm

from smile_data.progress_bar import LOG_INTERVAL_SECONDS, LogProgress, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_redirected_output_gets_one_plain_line_per_interval_and_one_at_the_end():
    stream, clock = io.StringIO(), FakeClock()
    with progress_bar(total=100, initial=10, desc="pretrain", unit="step", file=stream,
                      clock=clock) as bar:
        assert isinstance(bar, LogProgress)
        for _ in range(90):  # a step every 1.5 s: 135 s in all
            clock.now += 1.5
            bar.update(1)
            bar.set_postfix(loss="0.5000")
        assert stream.getvalue().count("\n") == int(90 * 1.5 // LOG_INTERVAL_SECONDS)
    lines = stream.getvalue().splitlines()
    assert len(lines) == int(90 * 1.5 // LOG_INTERVAL_SECONDS) + 1
    assert "\r" not in stream.getvalue()
    # the first line came at the first update at least LOG_INTERVAL_SECONDS in: step 20, 30 s
    assert lines[0] == ("pretrain: 30/100 step (30.0%), 0.67 step/s, elapsed 00:30, left 01:45, "
                        "loss=0.5000")
    assert lines[-1] == "pretrain: 100/100 step (100.0%), 0.67 step/s, elapsed 02:15, loss=0.5000"
    bar.close()  # closing twice prints nothing more
    assert len(stream.getvalue().splitlines()) == len(lines)


def test_plain_lines_scale_bytes_follow_a_changing_total_and_honour_the_interval():
    stream, clock = io.StringIO(), FakeClock()
    bar = progress_bar(total=4_000_000, desc="fetch", unit="B", unit_scale=True, file=stream,
                       clock=clock, interval=10)
    clock.now += 9
    bar.update(1_000_000)
    assert stream.getvalue() == ""  # not yet due
    bar.total -= 2_000_000  # runner.py shrinks the total when sources are skipped
    clock.now += 1
    bar.refresh()
    assert stream.getvalue() == "fetch: 1.00MB/2.00MB (50.0%), 100kB/s, elapsed 00:10, left 00:10\n"


def test_a_terminal_gets_tqdm_and_disable_gets_a_silent_bar():
    main_fd, terminal_fd = pty.openpty()
    try:
        with os.fdopen(terminal_fd, "w", closefd=False) as terminal:
            bar = progress_bar(total=3, desc="render", unit="clip", file=terminal)
            assert isinstance(bar, tqdm) and not bar.disable
            bar.update(3)
            bar.close()
        assert b"\r" in os.read(main_fd, 4096)  # tqdm redraws in place there
    finally:
        os.close(main_fd)
        os.close(terminal_fd)
    stream = io.StringIO()
    with progress_bar(total=3, disable=True, file=stream) as bar:
        bar.update(3)
        bar.set_postfix(loss=1)
    assert stream.getvalue() == ""


def test_cli_output_to_a_file_has_plain_progress_lines(tmp_path: Path):
    """`smile-data render ... 2> file` (as under a scheduler): a final line, no carriage return."""
    log = tmp_path / "render.log"
    command = [sys.executable, "-m", "smile_data.cli", "render", "--out", str(tmp_path / "out"),
               "--bg", "noise", "--overlay", "none", "--clips", "4", "--size", "32", "--frames", "4"]
    with log.open("w") as sink:
        subprocess.run(command, stdout=sink, stderr=sink, check=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    text = log.read_text()
    assert "\r" not in text
    assert "out rank 0: 4/4 clips (100.0%)" in text
