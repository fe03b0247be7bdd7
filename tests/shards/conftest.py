"""Shared fixtures of the shard tests: small synthetic datasets and folder snapshots."""

from __future__ import annotations

import io
import json
import pathlib
import pickle
import tarfile
from pathlib import Path
from typing import Any, Callable

import pytest

from smile_data.io import sha256_file
from smile_data.shards.runner import write_dataset
from tests.shards.synthetic_clips import SyntheticClips

TASKS = 7
SAMPLES_PER_TASK = 2


def _write(out: Path, task: SyntheticClips | None = None, **kwargs: Any) -> dict[str, Any]:
    settings = {"run_task": task or SyntheticClips(samples_per_task=SAMPLES_PER_TASK, skip_every=3),
                "task_count": TASKS, "samples_per_task": SAMPLES_PER_TASK,
                "fingerprint": {"seed": 0, "frames": 4}, "card": {"settings": {"seed": 0}},
                "shard_size": 3}
    settings.update(kwargs)
    return write_dataset(out, **settings)


@pytest.fixture
def write_synthetic() -> Callable[..., dict[str, Any]]:
    """write_synthetic(out, task=None, **write_dataset overrides) -> the card."""
    return _write


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A finished dataset: 7 tasks x 2 clips, every 3rd task skips a clip, 3 clips a shard."""
    out = tmp_path / "dataset"
    _write(out)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    """Bytes of the dataset files of `folder` (shards, card, manifest; not progress/)."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def folder_bytes() -> Callable[[Path], dict[str, bytes]]:
    return snapshot


def _rewrite_shard(folder: Path, name: str,
                   extra: list[tuple[tarfile.TarInfo, bytes | None]], after_member: int) -> None:
    """Insert `extra` members after member number `after_member` and update dataset.json, so
    that only the inserted members (not the hash) make the shard invalid."""
    path = folder / name
    with tarfile.open(path) as source:
        members = [(info, source.extractfile(info).read()) for info in source.getmembers()]
    members[after_member + 1:after_member + 1] = extra
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as target:
        for info, data in members:
            target.addfile(info, None if data is None else io.BytesIO(data))
    card_path = folder / "dataset.json"
    card = json.loads(card_path.read_text())
    for shard in card["shards"]:
        if shard["name"] == name:
            shard["sha256"], shard["bytes"] = sha256_file(path), path.stat().st_size
    card_path.write_text(json.dumps(card))


@pytest.fixture
def rewrite_shard() -> Callable[..., None]:
    return _rewrite_shard


def regular_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


@pytest.fixture
def make_member() -> Callable[[str, bytes], tuple[tarfile.TarInfo, bytes]]:
    return regular_member


class _TouchOnUnpickle:
    """Pickles to a payload whose unpickling creates the file `marker`."""

    def __init__(self, marker: Path):
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def pickle_payload(marker: Path) -> bytes:
    return pickle.dumps(_TouchOnUnpickle(marker))


@pytest.fixture
def make_pickle() -> Callable[[Path], bytes]:
    """make_pickle(marker) -> bytes that would create `marker` if anything unpickled them."""
    return pickle_payload
