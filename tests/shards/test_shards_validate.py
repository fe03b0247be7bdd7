"""validate: a clean dataset passes; damaged, foreign and unsafe shards are caught by name."""

from __future__ import annotations

import json
import tarfile

import pytest
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.shards.validate import validate_dataset

SHARD = "clips-000001.tar"


def run_validate(*args):
    return CliRunner().invoke(app, ["validate", *map(str, args)])


def test_clean_dataset_passes(dataset):
    result = run_validate(dataset)
    assert result.exit_code == 0, result.output
    assert "OK: 4 shards, 12 samples, 0 problems" in result.output
    assert validate_dataset(dataset, workers=2).ok


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_shard_is_caught(dataset, damage):
    path = dataset / SHARD
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:len(data) // 2]
    else:
        data[700] ^= 0x01  # inside the first frame's JPEG data
    path.write_bytes(bytes(data))
    for quick in (True, False):
        report = validate_dataset(dataset, quick=quick)
        assert not report.ok
        assert all(SHARD in problem for problem in report.problems)
    result = run_validate(dataset, "--quick")
    assert result.exit_code == 1
    expected = "bytes, dataset.json says" if damage == "truncate" else "sha256 differs"
    assert f"{SHARD}: " in result.output and expected in result.output
    if damage == "truncate":
        assert any("unreadable tar" in p for p in validate_dataset(dataset).problems)


def test_pickle_and_pyd_members_are_flagged_and_never_unpickled(tmp_path, dataset, rewrite_shard,
                                                                make_member, make_pickle):
    marker = tmp_path / "pwned"
    payload = make_pickle(marker)
    extra = [make_member("0000000003.pyd", payload), make_member("0000000003.pickle", payload)]
    rewrite_shard(dataset, SHARD, extra, after_member=5)
    report = validate_dataset(dataset)
    assert report.problems == [
        f"{SHARD}: member '0000000003.pyd': extension 'pyd' is not allowed in a shard",
        f"{SHARD}: member '0000000003.pickle': extension 'pickle' is not allowed in a shard",
    ]
    assert not marker.exists()


def test_links_and_escaping_paths_are_flagged(dataset, rewrite_shard, make_member):
    link = tarfile.TarInfo("0000000003.05.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    folder = tarfile.TarInfo("0000000003.06.jpg")
    folder.type = tarfile.DIRTYPE
    extra = [make_member("../evil", b"x"), make_member("/abs.json", b"{}"), (link, None),
             (folder, None), make_member("0000000003.sh", b"echo")]
    rewrite_shard(dataset, SHARD, extra, after_member=5)
    problems = validate_dataset(dataset).problems
    assert problems == [
        f"{SHARD}: member '../evil': absolute or '..' member path",
        f"{SHARD}: member '/abs.json': absolute or '..' member path",
        f"{SHARD}: member '0000000003.05.jpg': symlink members are not allowed",
        f"{SHARD}: member '0000000003.06.jpg': directory members are not allowed",
        f"{SHARD}: member '0000000003.sh': extension 'sh' is not allowed in a shard",
    ]


def test_bad_sample_and_manifest_mismatch(dataset, rewrite_shard, make_member):
    # a sample whose metadata breaks the schema, unknown to the manifest
    metadata = json.dumps({"schema_version": 1, "key": "0000009999", "frames": 4}).encode()
    rewrite_shard(dataset, SHARD, [make_member("0000009999.json", metadata)], after_member=17)
    problems = validate_dataset(dataset).problems
    assert any(p.startswith(f"{SHARD}: sample 0000009999: member 0000009999.json:")
               for p in problems)
    assert any(p.startswith(f"{SHARD}: holds keys that differ from the manifest.parquet")
               for p in problems)


def test_shards_missing_or_unlisted(dataset):
    (dataset / "clips-000002.tar").rename(dataset / "clips-000099.tar")
    problems = validate_dataset(dataset, quick=True).problems
    assert "clips-000099.tar: on disk but not in dataset.json" in problems
    assert "clips-000002.tar: listed in dataset.json but missing on disk" in problems


def test_duplicate_keys_across_shards(dataset, rewrite_shard):
    with tarfile.open(dataset / "clips-000000.tar") as archive:
        first = [(info, archive.extractfile(info).read()) for info in archive.getmembers()[:6]]
    rewrite_shard(dataset, SHARD, first, after_member=17)
    problems = validate_dataset(dataset).problems
    assert f"{SHARD}: sample key '0000000000' is also in clips-000000.tar" in problems
