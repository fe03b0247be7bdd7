"""A sample key that could name a path is refused by every reader path: the tar reader (from the
member name), decode_sample, decode_webdataset_sample and decode_video_sample (from a raw dict,
as webdataset or a caller hands it over: the member check never saw it)."""

from __future__ import annotations

import json

import pytest

from smile_data.shards.reader import decode_sample, decode_webdataset_sample, iter_tar_samples
from smile_data.shards.video_sample import decode_video_sample
from tests.hostile.conftest import clip_members, write_shard

BAD_KEYS = ["a/b", "../up", "/abs", "a\\b", "key\n", "", "k" * 129, "a.b"]


def raw_clip(key: str) -> dict:
    """A valid clip sample whose key (and metadata key) is `key`."""
    members = clip_members("000000")
    metadata = json.loads(members["000000.json"])
    metadata["key"] = key
    raw = {name.split(".", 1)[1]: data for name, data in members.items()}
    raw["json"] = json.dumps(metadata).encode()
    return {"__key__": key, **raw}


def test_the_raw_sample_is_valid_with_a_plain_key():
    assert decode_sample(raw_clip("plain_key-1")).key == "plain_key-1"
    assert decode_video_sample({"__key__": "v1", "mp4": b"x"}).key == "v1"


@pytest.mark.parametrize("key", BAD_KEYS)
def test_decoders_refuse_a_key_that_is_no_plain_name(key):
    with pytest.raises(ValueError, match="does not match"):
        decode_sample(raw_clip(key))
    with pytest.raises(ValueError, match="does not match"):
        decode_webdataset_sample(raw_clip(key))
    with pytest.raises(ValueError, match="does not match"):
        decode_video_sample({"__key__": key, "mp4": b"x"})


@pytest.mark.parametrize("name", ["a/b.json", "../up.json", "/abs.json", "a\\b.json", "key\n.json"])
def test_the_tar_reader_never_groups_such_a_member(tmp_path, name):
    members = {**clip_members("000000"), name: b"{}"}
    shard = write_shard(tmp_path / "clips-000000.tar", members)
    refused = []
    samples = list(iter_tar_samples(shard, on_refused=lambda info, reason: refused.append(info.name)))
    assert [s["__key__"] for s in samples] == ["000000"]
    assert refused == [name]
