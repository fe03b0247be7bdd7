"""write_dataset: determinism, shard cutting, ranks, fingerprints, errors and resume."""

from __future__ import annotations

import json
import os
import shutil
import traceback
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from smile_data.jobs import WorkShare
from smile_data.shards import dataset as dataset_module, layout
from smile_data.shards.integrity import raw_sample_digest
from smile_data.shards.progress import journal_path
from smile_data.shards.reader import iter_tar_samples
from smile_data.shards.runner import ShardSample, TaskFailed, TaskResult
from smile_data.shards.validate import validate_dataset
from smile_data.shards.writer import archive_size, encode_sample
from tests.shards.synthetic_clips import SyntheticClips

SYNTHETIC = SyntheticClips(samples_per_task=2, skip_every=3)


def raw_samples(folder: Path) -> dict[str, dict]:
    """key -> {extension: bytes} over every shard of the folder."""
    samples = {}
    for shard in sorted(folder.glob("*.tar")):
        for raw in iter_tar_samples(shard):
            samples[raw.pop("__key__")] = raw
    return samples


def test_workers_do_not_change_bytes(tmp_path, write_synthetic, folder_bytes):
    one = tmp_path / "one"
    two = tmp_path / "two"
    card = write_synthetic(one, workers=1)
    write_synthetic(two, workers=2)
    assert folder_bytes(one) == folder_bytes(two)
    # 7 tasks x 2 clips, tasks 2 and 5 drop one: 12 samples, 3 per shard
    assert card["counts"] == {"samples": 12, "shards": 4, "skipped": 2}
    assert [s["name"] for s in card["shards"]] == [layout.shard_name("clips", i) for i in range(4)]
    assert [s["source"] for s in card["skipped"]] == ["synthetic:5", "synthetic:11"]
    assert card["schema_version"] == dataset_module.CARD_SCHEMA_VERSION
    assert card["settings"] == {"seed": 0}
    manifest = pq.read_table(one / "manifest.parquet").to_pylist()
    assert [row["key"] for row in manifest] == sorted(raw_samples(one))
    digest = manifest[0].pop("sample_sha256")
    assert manifest[0] == {"shard": "clips-000000.tar", "key": "0000000000", "background": "noise",
                           "label": 0, "seed": 0, "source": "synthetic:0"}
    first = next(iter_tar_samples(one / "clips-000000.tar"))
    assert digest == raw_sample_digest(first)


def test_rerun_of_a_finished_dataset_changes_nothing(dataset, write_synthetic, folder_bytes):
    before = folder_bytes(dataset)
    card = write_synthetic(dataset)
    assert folder_bytes(dataset) == before
    assert card == json.loads((dataset / "dataset.json").read_text())
    shutil.rmtree(dataset / "progress")  # the resume state may be deleted once finished
    assert write_synthetic(dataset) == card
    assert folder_bytes(dataset) == before
    with pytest.raises(ValueError, match="fingerprint.seed was 0, now 2"):
        write_synthetic(dataset, fingerprint={"seed": 2, "frames": 4})


class FixedSizeTask:
    """One sample per task whose JSON member has a chosen size, to test the byte cut."""

    def __init__(self, sizes: list[int]):
        self.sizes = sizes

    def __call__(self, index: int) -> TaskResult:
        member = {"json": b"x" * self.sizes[index]}
        return TaskResult([ShardSample(layout.sample_key(index), member, {})])


def test_shards_are_cut_by_bytes(tmp_path, write_synthetic):
    # Each 1000-byte sample takes 512 (header) + 1024 (padded payload) = 1536 tar bytes; a
    # 10240-byte shard (one record, 1024 of it the end-of-archive blocks) holds six of them.
    sizes = [1000] * 8 + [20000] + [1000] * 2
    card = write_synthetic(tmp_path / "d", task=FixedSizeTask(sizes), task_count=len(sizes),
                           samples_per_task=1, shard_size=100, shard_bytes=10240)
    assert [s["samples"] for s in card["shards"]] == [6, 2, 1, 2]
    assert archive_size(len(encode_sample("k", {"json": b"x" * 1000}))) == 10240
    assert card["shards"][2]["bytes"] > 10240  # a sample bigger than a shard gets its own
    assert all(s["bytes"] <= 10240 for i, s in enumerate(card["shards"]) if i != 2)


def test_shards_are_cut_by_count(tmp_path, write_synthetic):
    card = write_synthetic(tmp_path / "d", shard_size=5)
    assert [s["samples"] for s in card["shards"]] == [5, 5, 2]


def test_two_ranks_match_one_rank(tmp_path, write_synthetic):
    single = write_synthetic(tmp_path / "single")
    ranks = tmp_path / "ranks"
    first = write_synthetic(ranks, work_share=WorkShare(0, 2))
    assert first["complete"] is False and first["waiting_for_ranks"] == [1]
    merged = write_synthetic(ranks, work_share=WorkShare(1, 2))
    # rank 1 runs tasks 3..6, so its shards are numbered from 3 x 2 = 6
    assert WorkShare(1, 2).tasks(7) == range(3, 7)
    names = [s["name"] for s in merged["shards"]]
    assert names == ["clips-000000.tar", "clips-000001.tar", "clips-000006.tar",
                     "clips-000007.tar", "clips-000008.tar"]
    assert merged["counts"]["samples"] == single["counts"]["samples"]
    assert merged["skipped"] == single["skipped"]
    assert raw_samples(ranks) == raw_samples(tmp_path / "single")
    rows = pq.read_table(ranks / "manifest.parquet").to_pylist()
    single_rows = pq.read_table(tmp_path / "single" / "manifest.parquet").to_pylist()
    assert [{k: v for k, v in r.items() if k != "shard"} for r in rows] == \
           [{k: v for k, v in r.items() if k != "shard"} for r in single_rows]


def test_other_settings_are_refused_and_overwrite_replaces(dataset, write_synthetic):
    with pytest.raises(ValueError, match=r"dataset.*fingerprint\.seed was 0, now 1"):
        write_synthetic(dataset, fingerprint={"seed": 1, "frames": 4})
    with pytest.raises(ValueError, match=r"writer\.shard_size was 3, now 4"):
        write_synthetic(dataset, shard_size=4)
    card = write_synthetic(dataset, fingerprint={"seed": 1, "frames": 4}, shard_size=100,
                           overwrite=True)
    assert card["fingerprint"]["seed"] == 1
    assert sorted(p.name for p in dataset.glob("*.tar")) == ["clips-000000.tar"]


def test_unrelated_files_are_kept_and_unknown_shards_refused(tmp_path, write_synthetic):
    out = tmp_path / "d"
    out.mkdir()
    (out / "render.yaml").write_text("seed: 0\n")
    write_synthetic(out)
    assert (out / "render.yaml").is_file()
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "clips-000000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="stray"):
        write_synthetic(stray)


@pytest.mark.parametrize("workers", [1, 2])
def test_task_error_stops_and_keeps_finished_shards(tmp_path, write_synthetic, workers):
    out = tmp_path / "d"
    with pytest.raises(TaskFailed, match="task 4 raised RuntimeError") as raised:
        write_synthetic(out, task=SyntheticClips(samples_per_task=2, skip_every=3, fail_task=4),
                        workers=workers)
    assert "synthetic failure" in str(raised.value.__cause__)
    # The traceback of the failing task (from the worker process when there are workers)
    # travels with the error, down to the line that raised.
    printed = "".join(traceback.format_exception(raised.value))
    assert 'synthetic_clips.py", line' in printed and "in __call__" in printed
    journal = journal_path(out, WorkShare()).read_text().splitlines()
    assert len(journal) == 2  # tasks 0-3 give 7 samples: two full shards are finished
    assert sorted(p.name for p in out.glob("clips-*")) == ["clips-000000.tar", "clips-000001.tar"]
    assert not (out / "dataset.json").exists()


def _reference_and_a_run_failed_at(tmp_path: Path, write_synthetic, fail_task: int) -> tuple[Path, Path]:
    """An uninterrupted run in tmp_path/reference; tmp_path/d: a run stopped by task `fail_task`'s error."""
    reference = tmp_path / "reference"
    write_synthetic(reference)
    out = tmp_path / "d"
    with pytest.raises(TaskFailed):
        write_synthetic(out, task=SyntheticClips(samples_per_task=2, skip_every=3, fail_task=fail_task))
    return reference, out


def test_resume_after_error_truncated_journal_and_stale_files(tmp_path, write_synthetic,
                                                              folder_bytes):
    reference, out = _reference_and_a_run_failed_at(tmp_path, write_synthetic, fail_task=5)
    journal = journal_path(out, WorkShare())
    with open(journal, "ab") as handle:  # as if killed in the middle of an append
        handle.write(b'{"bytes":40960,"index":2,"next":[5,')
    (out / "clips-000002.tar.tmp-99999").write_bytes(b"half a shard")
    write_synthetic(out)
    assert folder_bytes(out) == folder_bytes(reference)


def test_resume_redoes_a_damaged_shard(tmp_path, write_synthetic, folder_bytes):
    reference, out = _reference_and_a_run_failed_at(tmp_path, write_synthetic, fail_task=6)
    shard = out / "clips-000001.tar"
    shard.write_bytes(shard.read_bytes()[:1000])  # its journal line no longer matches
    write_synthetic(out)
    assert folder_bytes(out) == folder_bytes(reference)


def test_bad_task_output_is_refused(tmp_path, write_synthetic):
    class PickleMember:
        def __call__(self, index):
            return TaskResult([ShardSample(layout.sample_key(index), {"pickle": b"x"})])

    with pytest.raises(ValueError, match="'pickle' is not allowed"):
        write_synthetic(tmp_path / "a", task=PickleMember(), task_count=1, samples_per_task=1)

    class TooMany:
        def __call__(self, index):
            return TaskResult([ShardSample(layout.sample_key(i), {"json": b"{}"}) for i in range(3)])

    with pytest.raises(ValueError, match="more than samples_per_task=2"):
        write_synthetic(tmp_path / "b", task=TooMany(), task_count=1)


class RecordsUnpickling:
    """The synthetic task; every unpickling appends the unpickling process's id to `log`."""

    def __init__(self, log: Path):
        self.log = log

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        with open(self.log, "a") as handle:
            handle.write(f"{os.getpid()}\n")

    def __call__(self, index: int) -> TaskResult:
        return SYNTHETIC(index)


def test_the_task_travels_once_to_each_worker(tmp_path, write_synthetic, folder_bytes):
    log = tmp_path / "unpickled.txt"
    write_synthetic(tmp_path / "one", task=RecordsUnpickling(log), workers=1, task_count=40)
    assert not log.exists()  # one process: the task is called in place, never copied
    write_synthetic(tmp_path / "two", task=RecordsUnpickling(log), workers=2, task_count=40)
    pids = log.read_text().split()
    assert 1 <= len(pids) <= 2 and len(set(pids)) == len(pids)  # 40 tasks, one copy per worker
    assert str(os.getpid()) not in pids
    assert folder_bytes(tmp_path / "one") == folder_bytes(tmp_path / "two")


def test_unpicklable_task_is_refused_before_starting_workers(tmp_path, write_synthetic):
    with pytest.raises(ValueError, match="run_task must be picklable"):
        write_synthetic(tmp_path / "d", task=lambda index: TaskResult([]), workers=2)


def test_manifest_parts_with_null_and_mixed_number_columns_merge():
    from smile_data.shards.dataset import concat_row_tables, rows_table

    parts = [rows_table([{"shard": "a.tar", "key": "1", "label": None, "score": 1}]),
             rows_table([{"shard": "b.tar", "key": "2", "label": 3, "score": 0.5, "extra": "x"}])]
    table = concat_row_tables(parts)
    assert table.column_names == ["shard", "key", "extra", "label", "score"]
    assert table.to_pylist()[0] == {"shard": "a.tar", "key": "1", "extra": None, "label": None,
                                    "score": 1.0}
    with pytest.raises(ValueError, match="label"):
        rows_table([{"shard": "a", "key": "1", "label": 1}, {"shard": "a", "key": "2", "label": "x"}])


MILLION = 1_000_000


class SparseClips:
    """Two synthetic clips per task, numbered as if each task held a million."""

    def __call__(self, index: int) -> TaskResult:
        return TaskResult([SYNTHETIC.sample(index * MILLION + k) for k in range(2)])


def test_shard_numbers_past_six_digits(tmp_path, write_synthetic):
    out = tmp_path / "d"
    options = {"task": SparseClips(), "task_count": 2, "samples_per_task": MILLION}
    assert write_synthetic(out, work_share=WorkShare(0, 2), **options)["complete"] is False
    (out / "clips-1000000.tar.tmp-4242").write_bytes(b"half a shard of a killed rank 1")
    card = write_synthetic(out, work_share=WorkShare(1, 2), **options)
    assert not (out / "clips-1000000.tar.tmp-4242").exists()  # rank 1's own leftover
    assert [s["name"] for s in card["shards"]] == ["clips-000000.tar", "clips-1000000.tar"]
    report = validate_dataset(out)
    assert report.ok, report.problems
    assert report.samples == 4
    (out / "clips-1000007.tar").write_bytes(b"")
    assert "clips-1000007.tar: on disk but not in dataset.json" in validate_dataset(out).problems
    write_synthetic(out, overwrite=True)  # other settings: the previous dataset's files go
    assert not (out / "clips-1000000.tar").exists() and not (out / "clips-1000007.tar").exists()


def test_stale_cleanup_touches_only_the_writers_own_files(tmp_path, write_synthetic, folder_bytes):
    # a run that stopped half-way, as after a kill
    reference, out = _reference_and_a_run_failed_at(tmp_path, write_synthetic, fail_task=5)
    foreign = [out / "notes.txt.tmp-1", out / "clips-000000.tar.tmp-draft",
               out / "previews" / "clips-000000.tar.tmp-12"]
    own = [out / "clips-000003.tar.tmp-77", out / "dataset.json.tmp-78",
           out / "progress" / "identity.json.tmp-79"]
    for path in foreign + own:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
    write_synthetic(out)
    assert all(path.exists() for path in foreign) and not any(path.exists() for path in own)
    for path in foreign:
        path.unlink()
    assert folder_bytes(out) == folder_bytes(reference)
