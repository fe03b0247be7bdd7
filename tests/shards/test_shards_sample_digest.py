"""The per-sample digest is a fixed function of a sample's members: the value of one fixed
sample is written down here, so a change of the rule that writer and reader share (member
order, length prefixes, name or byte encoding) fails this test even though both sides would
still agree with each other."""

from __future__ import annotations

import hashlib

import pyarrow.parquet as pq

from smile_data.shards.dataset import MANIFEST_FILE, SAMPLE_DIGEST_COLUMN
from smile_data.shards.integrity import raw_sample_digest, sample_digest
from smile_data.shards.reader import iter_tar_samples
from smile_data.shards.runner import ShardSample, TaskResult, write_dataset
from tests.hostile.conftest import write_shard

KEY = "000042"
MEMBERS = {"json": b'{"key":"000042"}', "00.jpg": b"\xff\xd8frame0", "01.jpg": b"\xff\xd8frame1",
           "cls": b"7"}
EXPECTED = "37a08122cc8f213eb47c2241c6501870bfec7bb010b95b190932e807701aaf09"


def by_the_documented_rule(key: str, members: dict[str, bytes]) -> str:
    """docs/FORMAT.md, `manifest.parquet`: members in sorted extension order, each as the
    8-byte big-endian length of `<key>.<extension>`, that name, the 8-byte big-endian length
    of its bytes, and the bytes."""
    digest = hashlib.sha256()
    for extension in sorted(members):
        name = f"{key}.{extension}".encode()
        digest.update(len(name).to_bytes(8, "big") + name)
        digest.update(len(members[extension]).to_bytes(8, "big") + members[extension])
    return digest.hexdigest()


def test_the_digest_of_a_fixed_sample():
    assert sample_digest(KEY, MEMBERS) == EXPECTED
    assert by_the_documented_rule(KEY, MEMBERS) == EXPECTED
    assert sample_digest(KEY, dict(reversed(MEMBERS.items()))) == EXPECTED  # order given: no matter


def test_the_reader_computes_it_from_the_tar(tmp_path):
    shard = write_shard(tmp_path / "clips-000000.tar",
                        {f"{KEY}.{extension}": data for extension, data in MEMBERS.items()})
    raw = next(iter_tar_samples(shard))
    assert raw_sample_digest(raw) == EXPECTED


class OneSample:
    def __call__(self, index: int) -> TaskResult:
        return TaskResult([ShardSample(KEY, dict(MEMBERS))])


def test_the_writer_records_it_in_the_manifest(tmp_path):
    write_dataset(tmp_path / "ds", run_task=OneSample(), task_count=1, samples_per_task=1,
                  fingerprint={"test": "digest"}, card={})
    rows = pq.read_table(tmp_path / "ds" / MANIFEST_FILE).to_pylist()
    assert [(row["key"], row[SAMPLE_DIGEST_COLUMN]) for row in rows] == [(KEY, EXPECTED)]
