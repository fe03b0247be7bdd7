"""Atomic writes: a failed write leaves the old file and no temporary; a good one leaves only
the final file, complete. Stale temporaries are counted; file hashes cover every chunk."""

from __future__ import annotations

import hashlib
import os

import pytest

from smile_data.io import (TMP_MARK, atomic_path, remove_stale_temporaries, sha256_file, temporary_target,
                           write_bytes_atomic, write_json_atomic)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "card.json"
    write_json_atomic(target, {"old": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half a card")
            raise RuntimeError("disk full")
    assert _names(tmp_path) == ["card.json"]
    assert target.read_text() == '{\n  "old": 1\n}\n'


def test_a_failure_before_anything_is_written_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "shard.tar"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target):
            raise KeyboardInterrupt
    assert _names(tmp_path / "sub") == []


def test_a_successful_write_leaves_only_the_final_file(tmp_path):
    target = tmp_path / "a.bin"
    with atomic_path(target) as tmp:
        assert TMP_MARK in tmp.name and tmp.parent == tmp_path and temporary_target(tmp.name) == "a.bin"
        tmp.write_bytes(b"first")
        assert not target.exists()  # nothing under the final name until the write is done
    write_bytes_atomic(target, b"second")
    assert _names(tmp_path) == ["a.bin"] and target.read_bytes() == b"second"


def test_json_is_written_whole_and_canonical(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"b": [1, 2], "a": "é"})
    assert (tmp_path / "x.json").read_text(encoding="utf-8") == '{\n  "a": "é",\n  "b": [\n    1,\n    2\n  ]\n}\n'


def test_sha256_file_hashes_every_chunk(tmp_path):
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one default chunk
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
    assert sha256_file(tmp_path / "blob", chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_stale_temporaries_are_all_counted(tmp_path):
    for name in ("a.json", "b.tar", "c.parquet"):
        (tmp_path / f"{name}{TMP_MARK}{os.getpid() + 1}").write_text("left by a killed run")
    (tmp_path / "keep.json").write_text("{}")
    assert remove_stale_temporaries(tmp_path) == 3
    assert _names(tmp_path) == ["keep.json"]
