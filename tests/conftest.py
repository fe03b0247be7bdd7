"""Fixtures shared across test folders: small shards written straight from the layout module."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from smile_data.shards import layout

# Tiny models run fastest on one thread; more threads only fight the test runner for 2 cores.
torch.set_num_threads(1)


def _moving_square_clip(rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, list]:
    """A noise background with one bright square sliding across: (T, S, S, 3) uint8 + boxes."""
    clip = np.repeat(rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8), frames, axis=0)
    side = size // 4
    start = rng.integers(0, size - side, 2)
    velocity = rng.integers(-2, 3, 2)
    boxes = []
    for t in range(frames):
        x0, y0 = np.clip(start + velocity * t, 0, size - side)
        clip[t, y0 : y0 + side, x0 : x0 + side] = (250, 40, 40)
        boxes.append([float(x0), float(y0), float(x0 + side), float(y0 + side)])
    return clip, boxes


def _moving_square_sample(rng: np.random.Generator, index: int, frames: int, size: int,
                          label_count: int) -> tuple[str, dict[str, bytes]]:
    """(key, members) of sample `index`: PNG frames, metadata and, with label_count, a label."""
    frames_array, boxes = _moving_square_clip(rng, frames, size)
    key = layout.sample_key(index)
    label = index % label_count if label_count else None
    metadata = {
        "schema_version": layout.SCHEMA_VERSION, "key": key, "seed": index,
        "frames": frames, "height": size, "width": size, "codec": "png",
        "background": {"kind": "noise", "source": None, "frame_indices": None},
        "objects": [{"kind": "patch", "bank_path": None, "lvis_id": None, "name": None,
                     "boxes": boxes, "angles": [0.0] * frames}],
        "label": label,
    }
    members = {layout.frame_extension(t, "png"): cv2.imencode(".png", f[..., ::-1])[1].tobytes()
               for t, f in enumerate(frames_array)}
    members["json"] = layout.encode_metadata(metadata)
    if label is not None:
        members["cls"] = layout.encode_label(label)
    return key, members


def write_test_shards(folder: Path, clips: int, frames: int = 16, size: int = 64,
                      per_shard: int = 4, seed: int = 0, label_count: int = 0) -> list[Path]:
    """Shards in the project's layout with a dataset.json listing per-shard sample counts."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shards = []
    for first in range(0, clips, per_shard):
        path = folder / layout.shard_name("clips", first // per_shard)
        indices = range(first, first + min(per_shard, clips - first))
        samples = (_moving_square_sample(rng, index, frames, size, label_count) for index in indices)
        shards.append(write_clip_shard(path, samples, tarfile.USTAR_FORMAT))
    write_test_card(folder, shards)
    return shards


def write_test_card(folder: Path, shards: list[Path]) -> dict:
    """A real dataset card and manifest (sizes, sha256s, per-sample digests) for `shards`."""
    from smile_data.io import sha256_file
    from smile_data.shards import dataset
    from smile_data.shards.integrity import raw_sample_digest
    from smile_data.shards.reader import iter_tar_samples

    entries, rows = [], []
    for path in shards:
        raws = list(iter_tar_samples(path))
        rows += [{"shard": path.name, "key": raw["__key__"],
                  dataset.SAMPLE_DIGEST_COLUMN: raw_sample_digest(raw)} for raw in raws]
        entries.append({"name": path.name, "sha256": sha256_file(path),
                        "bytes": path.stat().st_size, "samples": len(raws)})
    dataset.write_parquet_atomic(folder / dataset.MANIFEST_FILE, dataset.rows_table(rows))
    manifest = folder / dataset.MANIFEST_FILE
    card = {"format": dataset.FORMAT_NAME, "schema_version": dataset.CARD_SCHEMA_VERSION,
            "counts": {"samples": len(rows), "shards": len(entries), "skipped": 0},
            "skipped": [], "shards": entries,
            "manifest": {"name": manifest.name, "bytes": manifest.stat().st_size,
                         "sha256": sha256_file(manifest)}}
    (folder / dataset.CARD_FILE).write_text(json.dumps(card))
    return card


def session_folder(name: str, fill: Callable[[Path], Any], doc: str):
    """A session-scoped fixture `name`: `fill(folder)` of a fresh temporary folder, computed once
    per test session (slow-to-make inputs that tests only read); `doc` describes it."""

    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Any:
        return fill(tmp_path_factory.mktemp(name))

    fixture.__doc__ = doc
    return pytest.fixture(scope="session", name=name)(fixture)


def shards_filler(**options: Any) -> Callable[[Path], Path]:
    """A session_folder fill: write_test_shards(folder, **options), then the folder."""

    def fill(folder: Path) -> Path:
        write_test_shards(folder, **options)
        return folder

    return fill


tiny_shards = session_folder("tiny_shards", shards_filler(clips=12),
                             "12 clips of 16 x 64x64 in 3 shards; the folder.")


def write_clip_shard(path: Path, samples: Iterable[tuple[str, dict[str, bytes]]],
                     tar_format: int = tarfile.GNU_FORMAT) -> Path:
    """A tar of (key, {extension: bytes}) samples, members in the given order: lets a test craft
    any shard, valid or not, without going through the project's writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tar_format) as tar:
        for key, members in samples:
            for extension, payload in members.items():
                info = tarfile.TarInfo(f"{key}.{extension}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


def png_members(frames: np.ndarray, metadata: dict) -> dict[str, bytes]:
    """Members of one valid sample: (T, H, W, 3) RGB frames as PNG plus its metadata."""
    members = {layout.frame_extension(t, "png"): cv2.imencode(".png", f[..., ::-1])[1].tobytes()
               for t, f in enumerate(frames)}
    members[layout.METADATA_EXTENSION] = layout.encode_metadata(metadata)
    return members


@pytest.fixture(scope="session")
def craft_shard():
    """write_clip_shard, for tests in any folder."""
    return write_clip_shard


@pytest.fixture(scope="session")
def sample_members():
    """png_members, for tests in any folder."""
    return png_members


labelled_tiny_shards = session_folder("labelled_tiny_shards", shards_filler(clips=16, label_count=2),
                                      "16 labelled clips (2 classes) of 16 x 64x64 in 4 shards; the folder.")


def write_rgba(path: Path, rgba: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(path)


def write_plain_bank(root: Path, classes: tuple[str, ...] = ("dog", "apple", "traffic_light"),
                     seed: int = 7) -> Path:
    """A plain bank: <lvis_name>/<i>.png, two per class, one colour each, opaque centres and
    transparent edges; returns `root`."""
    rng = np.random.default_rng(seed)
    for name in classes:
        for index in range(2):
            h, w = 24 + 8 * index, 18 + 6 * index
            rgba = np.zeros((h, w, 4), np.uint8)
            rgba[..., :3] = rng.integers(0, 256, size=3, dtype=np.uint8)
            rgba[2:-2, 2:-2, 3] = 255
            write_rgba(root / name / f"{index}.png", rgba)
    return root


@pytest.fixture
def tiny_bank(tmp_path: Path) -> Path:
    """Three classes of two cut-outs (write_plain_bank)."""
    return write_plain_bank(tmp_path / "bank")
