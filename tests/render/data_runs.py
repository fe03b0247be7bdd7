"""What the render and pack tests share: a smile-data command run as a user runs it, and a folder
of sample videos with a corrupt one among them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from smile_data.cli import app

CORRUPT_VIDEO_BYTES = 3000  # random bytes after the header: no decoder can read them


def run_for_card(*words: str) -> dict:
    """Runs `smile-data WORDS` in this process, asserts it succeeded and returns the dataset card
    it wrote in its --out folder."""
    result = CliRunner().invoke(app, list(words), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads((Path(words[words.index("--out") + 1]) / "dataset.json").read_text())


def videos_with_a_corrupt_one(tmp_path: Path, sample_videos: dict[str, Path],
                              corrupt_header: bytes = b"") -> Path:
    """tmp_path/videos: carphone_pristine.mp4 and bikes.mp4, and corrupt.mp4 (`corrupt_header`
    followed by random bytes)."""
    root = tmp_path / "videos"
    root.mkdir()
    for name in ("carphone_pristine.mp4", "bikes.mp4"):
        shutil.copy(sample_videos[name], root / name)
    noise = np.random.default_rng(1).bytes(CORRUPT_VIDEO_BYTES)
    (root / "corrupt.mp4").write_bytes(corrupt_header + noise)
    return root
