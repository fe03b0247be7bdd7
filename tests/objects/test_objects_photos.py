"""The embedded photo bank: built from scikit-image's photos without weights, opened by ObjectBank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from smile_data.objects.bank import ObjectBank
from smile_data.objects.photos import PHOTO_OBJECTS, load_photo, photo_path
from smile_data.vocabulary import load_vocabulary

MIN_OBJECTS = 6


@pytest.fixture(scope="module")
def photo_bank(tmp_path_factory) -> Path:
    from smile_data.cli import app
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("photos") / "bank"
    result = CliRunner().invoke(app, ["build-objects", "--source", "photos", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_every_photo_object_is_an_lvis_class_in_an_installed_photo():
    vocabulary = load_vocabulary()
    for item in PHOTO_OBJECTS:
        assert vocabulary.by_name(item.lvis_name) is not None, item
        photo = load_photo(item.photo)
        x0, y0, x1, y1 = item.box
        assert photo.ndim == 3 and 0 <= x0 < x1 <= photo.shape[1] and 0 <= y0 < y1 <= photo.shape[0]
    with pytest.raises(FileNotFoundError):
        photo_path("no_such_photo.png")


def test_photo_bank_opens_with_object_bank(photo_bank):
    bank = ObjectBank(photo_bank)
    assert len(bank) >= MIN_OBJECTS
    assert {"cat", "coin", "cup", "horse"} <= set(bank.classes)
    vocabulary = load_vocabulary()
    for index in range(len(bank)):
        entry = bank.entry(index)
        assert vocabulary.by_id(entry.lvis_id).name == entry.name
        rgba = bank.load_rgba(index)
        assert rgba.ndim == 3 and rgba.shape[2] == 4 and min(rgba.shape[:2]) >= 32
        alpha = rgba[..., 3]
        assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        assert 0.05 < (alpha >= 128).mean() <= 1.0 and (alpha == 0).any()
    draws = [bank.sample(np.random.default_rng(11)) for _ in range(2)]
    assert draws[0] == draws[1]
    balanced = [bank.sample(np.random.default_rng([3, i]), balanced=True) for i in range(20)]
    assert balanced == [bank.sample(np.random.default_rng([3, i]), balanced=True) for i in range(20)]


def test_photo_bank_card_and_manifest(photo_bank):
    card = json.loads((photo_bank / "bank.json").read_text())
    rows = pq.read_table(photo_bank / "objects.parquet").to_pylist()
    assert card["source"] == "photos" and "small" in card["description"]
    assert card["counts"]["candidates"] == len(PHOTO_OBJECTS) == len(rows)
    assert all(r["source"].startswith("skimage/data/") for r in rows)
    assert card["settings"]["min_area_fraction"] == 0.05


def test_photo_bank_rebuild_gives_the_same_bytes(photo_bank, invoke, snapshot, tmp_path):
    again = tmp_path / "again"
    assert invoke("build-objects", "--source", "photos", "--out", again).exit_code == 0
    assert snapshot(again) == snapshot(photo_bank)
