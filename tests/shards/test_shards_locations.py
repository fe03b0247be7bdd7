"""One idea of where a shard is (remote.is_url / is_pipe / is_local) and one way to open it,
shared by the trainer's loader and `read_samples`; one card reader with one or several pins."""

from __future__ import annotations

import hashlib
import os

import pytest

from smile_data.safe_files import UnsafeFile
from smile_data.shards import remote
from smile_data.shards.dataset import CARD_FILE, CardPinError, load_card, read_card
from smile_data.shards.reader import read_samples


def test_each_location_is_exactly_one_kind():
    kinds = {"pipe:curl -s https://host/a.tar": "pipe", "https://host/a.tar": "url",
             "s3://bucket/a.tar": "url", "data/a.tar": "local", "/data/a.tar": "local"}
    for location, kind in kinds.items():
        found = [name for name, test in (("pipe", remote.is_pipe), ("url", remote.is_url),
                                         ("local", remote.is_local)) if test(location)]
        assert found == [kind], location


def test_read_samples_opens_shards_as_the_trainer_does(tmp_path, dataset):
    shard = sorted(dataset.glob("*.tar"))[0]
    by_path = [s.key for s in read_samples(str(shard))]
    assert by_path and [s.key for s in read_samples(f"pipe:cat {shard}")] == by_path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(shard, elsewhere / "out.tar")  # a link out of its folder, refused like the loader
    with pytest.raises(UnsafeFile):
        list(read_samples(str(elsewhere / "out.tar")))


def test_a_card_may_be_pinned_by_any_of_several_sha256(dataset):
    data, card = read_card(dataset)
    actual = hashlib.sha256(data).hexdigest()
    other = "0" * 64
    assert data == (dataset / CARD_FILE).read_bytes() and card == load_card(dataset)
    assert load_card(dataset, f"{other}, {actual.upper()}") == card
    with pytest.raises(CardPinError, match=f"is not the pinned {other}"):
        load_card(dataset, other)
