"""Every rule of docs/FORMAT.md broken by one crafted shard, read three ways: the reader, the
trainer's loader and `validate`. Each must refuse what breaks the rule, by name.

A case takes the members of a good shard (3 clips of 4 JPEG frames, 32 x 32, labelled) and
breaks one rule. "refused" cases are members the reader skips (the rest of the shard reads);
"error" cases make a sample, or the whole shard, unreadable with an error that names it.
"""

from __future__ import annotations

import io
import itertools
import json
import re
import tarfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from smile_data.io import sha256_file
from smile_data.shards import layout, reader
from smile_data.shards.validate import validate_dataset
from smile_train.data.loader import PretrainClips, TooManyCorruptSamples
from smile_train.settings.pretrain import PretrainSettings

SHARD = "clips-000000.tar"
Members = list[tuple[tarfile.TarInfo, bytes]]


def _member(name: str, data: bytes, kind: bytes = tarfile.REGTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.type = (len(data) if kind == tarfile.REGTYPE else 0), kind
    return info, data


def _keys(members: Members) -> list[str]:
    return list(dict.fromkeys(info.name.split(".", 1)[0] for info, _ in members))


def _find(members: Members, key: str, extension: str) -> int:
    return next(i for i, (info, _) in enumerate(members) if info.name == f"{key}.{extension}")


def _edit_json(members: Members, change: Callable[[dict], None], sample: int = 1) -> Members:
    key = _keys(members)[sample]
    index = _find(members, key, "json")
    metadata = json.loads(members[index][1])
    change(metadata)
    members[index] = _member(f"{key}.json", json.dumps(metadata).encode())
    return members


def _replace(members: Members, extension: str, data: bytes, sample: int = 1) -> Members:
    key = _keys(members)[sample]
    members[_find(members, key, extension)] = _member(f"{key}.{extension}", data)
    return members


def _jpeg(height: int, width: int) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def _png(height: int, width: int) -> bytes:
    return cv2.imencode(".png", np.full((height, width, 3), 90, np.uint8))[1].tobytes()


def _rename_sample(members: Members, new_key: str, sample: int = 1) -> Members:
    key = _keys(members)[sample]
    return [(_member(new_key + info.name[len(key):], data)[0], data) if info.name.startswith(key + ".")
            else (info, data) for info, data in members]


def _after_sample(members: Members, sample: int, extra: Members) -> Members:
    key = _keys(members)[sample]
    last = max(i for i, (info, _) in enumerate(members) if info.name.startswith(key + "."))
    return members[:last + 1] + extra + members[last + 1:]


def _move_label_after_next_sample(members: Members) -> Members:
    """Sample 0 stays complete without its .cls (the label is in its JSON too); the .cls comes
    back after sample 1, so the reader meets key 0 again."""
    label = members.pop(_find(members, _keys(members)[0], "cls"))
    return _after_sample(members, 1, [label])


def _duplicate(members: Members, extension: str) -> Members:
    index = _find(members, _keys(members)[1], extension)
    members.insert(index + 1, members[index])
    return members


def _oversized(extension: str) -> Callable[[Members], Members]:
    """Sample 1's member of this extension one byte over the extension's limit."""
    def breaker(members: Members) -> Members:
        key = _keys(members)[1]
        index = _find(members, key, extension)
        members[index] = _member(f"{key}.{extension}", b"1" * (layout.member_byte_limit(extension) + 1))
        return members
    return breaker


def _oversized_long_name(members: Members) -> Members:
    info = tarfile.TarInfo("././@LongLink")
    info.type, info.size = tarfile.GNUTYPE_LONGNAME, reader.MAX_HEADER_EXTENSION_BYTES + 1
    return members[:6] + [(info, b"")] + members[6:]  # the header alone: its data is never read


def _giant_clip(metadata: dict) -> None:
    metadata.update(frames=100, height=1024, width=1025, objects=[])


# (id, breaker, "refused" | "error", what the reader, loader and validate must say)
CASES = [
    ("key-pattern", lambda m: _rename_sample(m, "bad key"), "refused", r"does not match"),
    ("key-too-long", lambda m: _rename_sample(m, "k" * 129), "refused", r"does not match"),
    ("metadata-key", lambda m: _edit_json(m, lambda d: d.update(key="0000000099")), "error",
     r"!= the member key"),
    ("frame-member-size", _oversized("03.jpg"), "error", r"03\.jpg is missing"),
    ("json-member-size", _oversized("json"), "error", r"\.json is missing"),
    ("cls-member-size", _oversized("cls"), "refused", r"more than the 64 allowed for a \.cls member"),
    ("frame-size", lambda m: _edit_json(m, lambda d: d.update(height=4097, width=4096)), "error",
     r"frame size 4096x4097 is over the limit"),
    ("clip-size", lambda m: _edit_json(m, _giant_clip), "error", r"a clip of 100 frames .* over the limit"),
    ("not-contiguous", _move_label_after_next_sample, "error", r"are not contiguous"),
    ("repeated-extension", lambda m: _duplicate(m, "01.jpg"), "error", r"holds '01\.jpg' twice"),
    ("header-extension", _oversized_long_name, "error", r"header extension of \d+ bytes"),
    ("disallowed-extension", lambda m: m + [_member("0000000001.npy", b"\x93NUMPY")], "refused",
     r"extension 'npy' is not allowed"),
    ("folder-path", lambda m: m + [_member("sub/0000000001.json", b"{}")], "refused", r"folders"),
    ("dot-dot-path", lambda m: m + [_member("../0000000001.json", b"{}")], "refused", r"'\.\.'"),
    ("symlink", lambda m: m + [_member("0000000001.00.jpg", b"", tarfile.SYMTYPE)], "refused",
     r"symlink"),
    ("directory", lambda m: m + [_member("0000000001.json", b"", tarfile.DIRTYPE)], "refused",
     r"directory"),
    ("frame-not-its-size", lambda m: _replace(m, "02.jpg", _jpeg(31, 32)), "error",
     r"02\.jpg is 32x31, the metadata says 32x32"),
    ("frame-not-jpeg", lambda m: _replace(m, "02.jpg", _png(32, 32)), "error",
     r"02\.jpg: not a readable JPEG"),
    ("extra-frame", lambda m: _after_sample(m, 1, [_member("0000000001.04.jpg", _jpeg(32, 32))]), "error", r"04\.jpg is not one of its 4 jpg frames"),
    ("missing-json", lambda m: [x for x in m if x[0].name != f"{_keys(m)[1]}.json"], "error",
     r"\.json is missing"),
    ("label-not-integer", lambda m: _replace(m, "cls", b"seven"), "error", r"\.cls: label 'seven'"),
    ("label-disagrees", lambda m: _replace(m, "cls", b"7"), "error", r"\.cls says 7, the JSON 1"),
    ("schema-version", lambda m: _edit_json(m, lambda d: d.update(schema_version=2)), "error",
     r"schema_version 2 is newer"),
    ("frames-over-100", lambda m: _edit_json(m, lambda d: d.update(frames=101)), "error",
     r"frames 101 outside 1\.\.100"),
    ("codec", lambda m: _edit_json(m, lambda d: d.update(codec="gif")), "error", r"codec 'gif'"),
    ("box-not-finite", lambda m: _edit_json(m, lambda d: d["objects"][0]["boxes"][0].__setitem__(0, float("nan"))),
     "error", r"boxes hold non-finite values"),
    ("box-inverted", lambda m: _edit_json(m, lambda d: d["objects"][0]["boxes"][1].__setitem__(2, -5)),
     "error", r"x1 < x0"),
    ("angles-length", lambda m: _edit_json(m, lambda d: d["objects"][0]["angles"].pop()), "error",
     r"angles shape \(3,\) != \(4,\)"),
]


@pytest.fixture(scope="module")
def good_dataset(tmp_path_factory) -> Path:
    from smile_data.shards.runner import write_dataset
    from tests.shards.synthetic_clips import SyntheticClips

    out = tmp_path_factory.mktemp("format_rules") / "dataset"
    write_dataset(out, run_task=SyntheticClips(samples_per_task=3), task_count=2, samples_per_task=3,
                  fingerprint={"seed": 0}, card={"settings": {"seed": 0}}, shard_size=3)
    return out


def broken_dataset(good: Path, target: Path, breaker: Callable[[Members], Members]) -> Path:
    """A copy of `good` whose first shard went through `breaker`, listed in the card with its
    new hash and size (so only the broken rule is wrong, not the card)."""
    target.mkdir()
    for path in good.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    with tarfile.open(good / SHARD) as source:
        members = [(info, source.extractfile(info).read()) for info in source.getmembers()]
    with tarfile.open(target / SHARD, "w", format=tarfile.GNU_FORMAT) as shard:
        for info, data in breaker(members):
            shard.addfile(info, io.BytesIO(data) if info.type == tarfile.REGTYPE else None)
    card = json.loads((target / "dataset.json").read_text())
    entry = next(s for s in card["shards"] if s["name"] == SHARD)
    entry["sha256"], entry["bytes"] = sha256_file(target / SHARD), (target / SHARD).stat().st_size
    (target / "dataset.json").write_text(json.dumps(card))
    return target


def read_with_reader(shard: Path) -> tuple[list[str], list[str]]:
    """(keys decoded, reasons of refused members); raises ValueError like the reader does."""
    refused: list[str] = []
    keys = [reader.decode_sample(raw).key
            for raw in reader.iter_tar_samples(shard, on_refused=lambda info, why: refused.append(why))]
    return keys, refused


def loader_draws(shard: Path, draws: int = 6) -> list[dict]:
    settings = PretrainSettings(input_size=32, frames=4, crop="none", flip=False, num_workers=0,
                                shuffle_buffer=0, mask="tube", mask_repeats=1, max_corrupt_samples=0,
                                integrity="off")  # the card's sample hashes would stop it first
    return list(itertools.islice(iter(PretrainClips([str(shard)], settings)), draws))


def test_the_good_shard_reads_three_ways(good_dataset):
    keys, refused = read_with_reader(good_dataset / SHARD)
    assert len(keys) == 3 and refused == []
    assert all(int(d["corrupt"]) == 0 for d in loader_draws(good_dataset / SHARD))
    assert validate_dataset(good_dataset).ok


@pytest.mark.parametrize("case, breaker, kind, message", CASES, ids=[c[0] for c in CASES])
def test_a_broken_rule_is_refused_by_reader_loader_and_validate(good_dataset, tmp_path, case, breaker,
                                                               kind, message):
    folder = broken_dataset(good_dataset, tmp_path / case, breaker)
    shard = folder / SHARD
    if kind == "refused":
        keys, refused = read_with_reader(shard)
        assert any(re.search(message, why) for why in refused), refused
        assert len(keys) >= 2  # the good samples still read
        assert all(int(d["corrupt"]) == 0 for d in loader_draws(shard))
    else:
        with pytest.raises(ValueError, match=message):
            read_with_reader(shard)
        with pytest.raises(TooManyCorruptSamples, match=message):  # max_corrupt_samples=0: the first one stops
            loader_draws(shard)
    report = validate_dataset(folder)
    assert not report.ok
    named = [p for p in report.problems if p.startswith(f"{SHARD}: ") and re.search(message, p)]
    assert named, report.problems
