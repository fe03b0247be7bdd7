"""The one resumable-job mechanism: rank blocks of task numbers and the journal of finished work."""

from __future__ import annotations

import json

import pytest

from smile_data import jobs
from smile_data.jobs import Journal, WorkShare


@pytest.mark.parametrize("task_count, world_size", [(0, 1), (1, 3), (7, 2), (10, 3), (1203, 8)])
def test_rank_blocks_cover_every_task_once_in_order(task_count, world_size):
    blocks = [WorkShare(rank, world_size).tasks(task_count) for rank in range(world_size)]
    assert [task for block in blocks for task in block] == list(range(task_count))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_a_torn_last_line_is_ignored_and_cut_before_appending(tmp_path):
    journal = Journal(tmp_path / "progress" / "rank-00000.jsonl")
    journal.append({"a": 1}, {"a": 2})
    with open(journal.path, "ab") as handle:
        handle.write(b'{"a": 3, "unfinished')
    assert list(journal.records()) == [{"a": 1}, {"a": 2}]
    assert journal.keep_leading() == [{"a": 1}, {"a": 2}]
    journal.append({"a": 4})
    assert list(journal.records()) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert journal.path.read_bytes() == b'{"a":1}\n{"a":2}\n{"a":4}\n'


@pytest.mark.parametrize("bad_line", [b"not json\n", b"[1, 2]\n", b"[" * 100_000 + b"\n",
                                      b'{"a": 3}'])  # the last one lacks its newline: torn
def test_reading_stops_at_the_first_line_that_is_not_a_record(tmp_path, bad_line):
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a":1}\n' + bad_line + b'{"a":2}\n')
    journal = Journal(path)
    assert list(journal.records()) == [{"a": 1}]
    journal.keep_leading()  # what follows a damaged line would be invisible: the owner cuts it
    assert path.read_bytes() == b'{"a":1}\n'


def test_a_line_longer_than_the_bound_is_not_read_into_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "MAX_RECORD_BYTES", 64)
    path = tmp_path / "j.jsonl"
    path.write_bytes(b'{"a":1}\n' + json.dumps({"b": "x" * 100}).encode() + b"\n{\"a\":2}\n")
    assert list(Journal(path).records()) == [{"a": 1}]


def test_keep_leading_keeps_what_the_check_accepts_and_cuts_the_rest(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append({"n": 1}, {"n": 2}, {"n": "three"}, {"n": 4})

    def counted(record):
        if not isinstance(record["n"], int):
            raise ValueError("not a count")
        return record["n"]

    assert journal.keep_leading(counted) == [1, 2]
    assert list(journal.records()) == [{"n": 1}, {"n": 2}]
    assert Journal(tmp_path / "missing.jsonl").keep_leading() == []


def test_journals_written_before_one_format_still_read(tmp_path):
    """Object journals used to be written with spaces and raw UTF-8; they read the same."""
    old = {"kind": "batch", "lvis_id": 3, "rows": [{"source": "ä/0.png", "score": 1.5}]}
    path = tmp_path / "rank-00000.jsonl"
    path.write_bytes(json.dumps(old, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    assert list(Journal(path).records()) == [old]


def test_any_file_name_round_trips(tmp_path):
    name = b"caf\xe9.png".decode("utf-8", "surrogateescape")  # a Latin-1 name on a UTF-8 system
    journal = Journal(tmp_path / "j.jsonl")
    journal.append({"source": name})
    assert list(journal.records()) == [{"source": name}]
