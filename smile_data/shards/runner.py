"""`write_dataset`: run numbered tasks in worker processes and write their samples as shards.

The shard is the unit of work, retry and resume. Workers compute tasks (a task yields the
samples of consecutive clips); the calling process takes finished tasks *in task order* and
streams their samples into shards (writer.py), so the bytes do not depend on the number of
workers. Each finished shard is renamed into place, then recorded in this rank's journal
(progress.py, a `smile_data.jobs.Journal`); a rerun of the same command resumes after the last
recorded shard and gives the same bytes as an uninterrupted run. Ranks take contiguous blocks of
tasks (`WorkShare.tasks`); the last rank to finish merges every rank's part into
`manifest.parquet` and `dataset.json` (dataset.py).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import multiprocessing
import os
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


from smile_data.io import remove_stale_temporaries, temporary_target
from smile_data.jobs import Journal, WorkShare
from smile_data.processes import MAX_WORKERS, WORKER_START_METHOD, exit_with_parent, folder_lock
from smile_data.progress_bar import ProgressBar, progress_bar
from smile_data.shards import layout
from smile_data.shards.dataset import (
    CARD_FILE,
    MANIFEST_FILE,
    RESERVED_CARD_FIELDS,
    SAMPLE_DIGEST_COLUMN,
    concat_row_tables,
    finalize_dataset,
    load_card,
    missing_ranks,
    rows_table,
    write_rank_part,
)
from smile_data.shards.card_readme import PREVIEW_FILE, README_FILE, write_readme
from smile_data.shards.integrity import sample_digest
from smile_data.shards.progress import (
    JournalEntry,
    Position,
    card_part_path,
    entry_rows,
    first_difference,
    load_entries,
    normalise_json,
    progress_dir,
    rank_journal,
    rank_stem,
    read_identity,
    write_identity,
)
from smile_data.shards.writer import ShardRecord, ShardWriter, encode_sample

__all__ = ["ShardSample", "TaskResult", "TaskFailed", "TaskInputRefused", "write_dataset", "finalize_dataset"]

# Finished-but-unconsumed task results held per worker: keeps workers busy, bounds memory.
TASKS_IN_FLIGHT_PER_WORKER = 2
ROW_VALUE_TYPES = (str, int, float, bool, type(None))
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]+")  # the prefix part of layout.SHARD_NAME_PATTERN


@dataclass
class ShardSample:
    key: str                    # layout.sample_key(clip_index)
    members: dict[str, bytes]   # extension -> payload: {"00.jpg": b"...", "json": b"...", "cls": b"..."}
    row: dict[str, Any] = field(default_factory=dict)  # extra manifest columns (JSON scalars)


@dataclass
class TaskResult:
    samples: list[ShardSample]      # the samples of this task, in clip order
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"source": ..., "reason": ...}


class TaskFailed(RuntimeError):
    """A task raised: a bug, not a bad source. Finished shards are kept; a rerun resumes."""


class TaskInputRefused(ValueError):
    """A task found an input it cannot use (a ValueError or OSError naming it, e.g. a bank whose
    objects do not decode): the user's to fix, not a bug. Finished shards are kept."""


def _check_arguments(prefix: str, task_count: int, samples_per_task: int, workers: int,
                     card: dict[str, Any]) -> None:
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"shard prefix {prefix!r} may hold only letters, digits, '_' and '-'")
    if task_count < 0 or samples_per_task < 1 or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"need task_count >= 0 ({task_count}), samples_per_task >= 1 "
                         f"({samples_per_task}) and workers in 1..{MAX_WORKERS} ({workers})")
    reserved = sorted(set(card) & set(RESERVED_CARD_FIELDS))
    if reserved:
        raise ValueError(f"card field(s) {', '.join(reserved)} are set by the writer")


def _is_dataset_name(name: str) -> bool:
    """A file name this writer puts at the top of a dataset folder: a shard, card, manifest,
    README or its preview."""
    return name in (CARD_FILE, MANIFEST_FILE, README_FILE, PREVIEW_FILE) or layout.SHARD_NAME_PATTERN.fullmatch(name) is not None


def _is_dataset_file(path: Path) -> bool:
    """A dataset file, or the temporary of one."""
    return _is_dataset_name(temporary_target(path.name) or path.name)


def _clear_dataset(out_dir: Path) -> None:
    """Remove a previous dataset's files (shards, card, manifest, progress) and nothing else."""
    shutil.rmtree(progress_dir(out_dir), ignore_errors=True)
    for path in out_dir.iterdir():
        if path.is_file() and _is_dataset_file(path):
            path.unlink()


def _identity_of_files(out_dir: Path) -> dict[str, Any] | None:
    """The identity of a dataset whose progress/ is gone: from its card, if it has one."""
    if (out_dir / CARD_FILE).is_file():
        try:
            card = load_card(out_dir)
            return {"fingerprint": card.get("fingerprint"), "writer": card.get("writer")}
        except ValueError:
            pass
    if any(_is_dataset_file(path) for path in out_dir.iterdir()):
        return {"unknown": "shards or a dataset card without progress/identity.json"}
    return None


def _prepare_folder(out_dir: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Store the run identity on a fresh folder; refuse (or clear) one made with other settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        stored = read_identity(out_dir)
    except ValueError:
        if not overwrite:
            raise
        stored = {"unreadable": True}
    if stored is None:
        stored = _identity_of_files(out_dir)
    difference = None if stored is None else first_difference(stored, identity)
    if difference is not None:
        if not overwrite:
            raise ValueError(f"{out_dir} already holds a dataset made with other settings "
                             f"({difference}); choose another folder or pass --overwrite")
        _clear_dataset(out_dir)
    if stored is None or difference is not None:
        write_identity(out_dir, identity)


def _finished_card(out_dir: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The card of a finished dataset made with these settings whose progress/ was deleted."""
    if read_identity(out_dir) is not None or not (out_dir / CARD_FILE).is_file():
        return None
    card = load_card(out_dir)
    same = {"fingerprint": card.get("fingerprint"), "writer": card.get("writer")} == identity
    return card if same else None


def _remove_own_temporaries(out_dir: Path, share: WorkShare, indices: range) -> None:
    """Leftovers of a killed run of this rank; other ranks may be writing theirs right now."""
    if share.world_size == 1:
        remove_stale_temporaries(out_dir, _is_dataset_name)
        remove_stale_temporaries(progress_dir(out_dir))
        return

    def is_own_shard(name: str) -> bool:
        match = layout.SHARD_NAME_PATTERN.fullmatch(name)
        return match is not None and int(match["index"]) in indices

    remove_stale_temporaries(out_dir, is_own_shard)
    stem = rank_stem(share.rank, share.world_size)
    remove_stale_temporaries(progress_dir(out_dir), lambda name: name.startswith(f"{stem}."))


# The run_task of this worker process, installed once when the process starts (_install_task).
_WORKER_TASK: Callable[[int], TaskResult] | None = None


def _install_task(run_task: Callable[[int], TaskResult], parent_pid: int) -> None:
    """Worker initializer: die with the parent (no orphans after a kill), and keep the
    run_task the pool sent once, when this process started."""
    global _WORKER_TASK
    exit_with_parent(parent_pid)
    _WORKER_TASK = run_task


def _run_installed_task(index: int) -> TaskResult:
    if _WORKER_TASK is None:
        raise RuntimeError("worker process started without a task (no initializer ran)")
    return _WORKER_TASK(index)


def _task_failed(index: int, error: BaseException) -> TaskFailed | TaskInputRefused:
    kept = "the shards finished so far are kept, rerun the same command to resume"
    if isinstance(error, (ValueError, OSError)):
        return TaskInputRefused(f"task {index}: {error}; {kept}")
    return TaskFailed(f"task {index} raised {type(error).__name__}: {error}; {kept}")


def _check_picklable(run_task: Callable[[int], TaskResult], workers: int) -> None:
    """Fail before any process starts, with a message that says what to change."""
    try:
        pickle.dumps(run_task, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise ValueError(f"run_task must be picklable to run in {workers} worker processes "
                         f"(a module-level function or object): {error}") from None


def _task_results(run_task: Callable[[int], TaskResult], indices: range,
                  workers: int) -> Iterator[tuple[int, TaskResult]]:
    """(index, result) in task order; at most a few finished results wait in memory.

    With several workers, run_task travels to each worker process once, when it starts (the
    pool's initializer stores it); afterwards only task indices and results cross processes.
    """
    if workers == 1 or len(indices) <= 1:
        for index in indices:
            try:
                result = run_task(index)
            except Exception as error:
                raise _task_failed(index, error) from error
            yield index, result
        return
    _check_picklable(run_task, workers)
    pool = concurrent.futures.ProcessPoolExecutor(
        min(workers, len(indices)), mp_context=multiprocessing.get_context(WORKER_START_METHOD),
        initializer=_install_task, initargs=(run_task, os.getpid()))
    pending: collections.deque = collections.deque()
    upcoming = iter(indices)
    try:
        for index in itertools.islice(upcoming, workers * TASKS_IN_FLIGHT_PER_WORKER):
            pending.append((index, pool.submit(_run_installed_task, index)))
        while pending:
            index, future = pending.popleft()
            try:
                result = future.result()
            except Exception as error:  # the worker's traceback is chained (error.__cause__)
                raise _task_failed(index, error) from error
            next_index = next(upcoming, None)
            if next_index is not None:
                pending.append((next_index, pool.submit(_run_installed_task, next_index)))
            yield index, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _checked_samples(result: Any, index: int, samples_per_task: int) -> TaskResult:
    if not isinstance(result, TaskResult):
        raise ValueError(f"task {index} returned {type(result).__name__}, not a TaskResult")
    if len(result.samples) > samples_per_task:
        raise ValueError(f"task {index} yielded {len(result.samples)} samples, more than "
                         f"samples_per_task={samples_per_task}")
    for sample in result.samples:
        bad = [name for name, value in sample.row.items()
               if name in ("shard", "key", SAMPLE_DIGEST_COLUMN) or not isinstance(value, ROW_VALUE_TYPES)]
        if bad:
            raise ValueError(f"task {index}, sample {sample.key}: manifest column(s) {bad} are "
                             "reserved or not JSON scalars")
    for skipped in result.skipped:
        if not isinstance(skipped, dict) or not {"source", "reason"} <= set(skipped):
            raise ValueError(f"task {index}: skipped entry {skipped!r} needs a source and a reason")
    return result


class _RankWriter:
    """Streams one rank's samples into shards and journals every finished shard."""

    def __init__(self, journal: Journal, writer: ShardWriter, entries: list[JournalEntry],
                 bar: ProgressBar):
        self.journal, self.writer, self.bar = journal, writer, bar
        self.entries = list(entries)
        self.open_rows: list[dict[str, Any]] = []   # rows of the samples in the open shard
        self.unrecorded_skipped: list[dict[str, str]] = []  # of finished tasks, not journaled

    def _record(self, shard: ShardRecord | None, next_position: Position) -> None:
        if shard is None:
            return
        entry = JournalEntry(shard.name, shard.index, shard.sha256, shard.bytes, len(shard.keys),
                             [{"shard": shard.name, **row} for row in self.open_rows],
                             self.unrecorded_skipped, next_position)
        self.journal.append(entry.to_record())
        self.entries.append(dataclasses.replace(entry, rows=[]))  # the rows stay on disk
        self.open_rows, self.unrecorded_skipped = [], []

    def add_task(self, index: int, result: TaskResult, first_offset: int,
                 samples_per_task: int) -> None:
        if first_offset > len(result.samples):
            raise ValueError(f"task {index} now yields {len(result.samples)} samples but the "
                             f"journal recorded {first_offset}: the task is not deterministic")
        for offset in range(first_offset, len(result.samples)):
            sample = result.samples[offset]
            encoded = encode_sample(sample.key, sample.members)
            self._record(self.writer.add(sample.key, encoded), Position(index, offset))
            self.open_rows.append({"key": sample.key, **sample.row,
                                   SAMPLE_DIGEST_COLUMN: sample_digest(sample.key, sample.members)})
            self.bar.update(1)
        self.unrecorded_skipped += [{"source": str(s["source"]), "reason": str(s["reason"])}
                                    for s in result.skipped]
        self.bar.total -= samples_per_task - len(result.samples)  # skipped clips: exact ETA
        self.bar.refresh()

    def close(self, end: Position) -> None:
        self._record(self.writer.close(), end)


def _run_rank(out_dir: Path, run_task: Callable[[int], TaskResult], tasks: range,
              samples_per_task: int, workers: int, share: WorkShare, writer_args: dict,
              progress_label: str) -> tuple[list[JournalEntry], list[dict[str, str]]]:
    """Write (or finish writing) this rank's shards; return journal entries and trailing skips."""
    journal = rank_journal(out_dir, share)
    entries = load_entries(out_dir, journal)
    first_index = tasks.start * samples_per_task
    _remove_own_temporaries(out_dir, share, range(first_index, tasks.stop * samples_per_task))
    start = entries[-1].next if entries else Position(tasks.start, 0)
    done = sum(entry.samples for entry in entries)
    total = done + (tasks.stop - start.task) * samples_per_task - start.offset
    writer = ShardWriter(out_dir, first_index=entries[-1].index + 1 if entries else first_index,
                         **writer_args)
    with progress_bar(total=total, initial=done, unit=progress_label, dynamic_ncols=True,
              disable=None, desc=f"{out_dir.name} rank {share.rank}") as bar:
        rank_writer = _RankWriter(journal, writer, entries, bar)
        try:
            results = _task_results(run_task, range(start.task, tasks.stop), workers)
            with contextlib.closing(results):  # on an error, stop the workers right away
                for index, result in results:
                    result = _checked_samples(result, index, samples_per_task)
                    first_offset = start.offset if index == start.task else 0
                    rank_writer.add_task(index, result, first_offset, samples_per_task)
            rank_writer.close(Position(tasks.stop, 0))
        except BaseException:
            writer.abandon()
            raise
    return rank_writer.entries, rank_writer.unrecorded_skipped


def write_dataset(
    out_dir: str | Path,
    *,
    run_task: Callable[[int], TaskResult],
    task_count: int,
    samples_per_task: int,
    fingerprint: dict[str, Any],
    card: dict[str, Any],
    prefix: str = "clips",
    shard_size: int = 1000,
    shard_bytes: int = 1 << 30,
    workers: int = 1,
    work_share: WorkShare = WorkShare(),
    overwrite: bool = False,
    progress_label: str = "clips",
) -> dict[str, Any]:
    """Run tasks `work_share.tasks(task_count)` and write their samples as shards.

    `run_task(i)` must be deterministic and, for workers > 1, picklable: it is pickled once
    and installed in each worker process when that process starts, so state it builds lazily
    (open files, caches) lives on in the worker for all the tasks it runs. It reports bad
    sources as `skipped`; an exception from it stops the run keeping every finished shard:
    TaskInputRefused for an input it cannot use (a ValueError or OSError), else TaskFailed, with
    the worker's traceback chained.
    Returns the dataset card, or this rank's summary while other ranks are still running.
    """
    out = Path(out_dir)
    _check_arguments(prefix, task_count, samples_per_task, workers, card)
    writer_settings = {"prefix": prefix, "shard_size": shard_size, "shard_bytes": shard_bytes,
                       "task_count": task_count, "samples_per_task": samples_per_task,
                       "world_size": work_share.world_size}
    identity = normalise_json({"fingerprint": fingerprint, "writer": writer_settings})
    card = normalise_json(card)
    if out.is_dir() and (finished := _finished_card(out, identity)) is not None:
        return finished
    with folder_lock(out, f"rank-{work_share.rank:05d}"):  # a second command of this rank refuses
        _prepare_folder(out, identity, overwrite)
        tasks = work_share.tasks(task_count)
        if not card_part_path(out, work_share.rank, work_share.world_size).is_file():
            entries, trailing_skipped = _run_rank(
                out, run_task, tasks, samples_per_task, workers, work_share,
                {"prefix": prefix, "shard_size": shard_size, "shard_bytes": shard_bytes},
                progress_label)
            _write_part(out, work_share, tasks, identity, card, entries, trailing_skipped)
        return _finish(out, work_share)


def _write_part(out: Path, share: WorkShare, tasks: range, identity: dict[str, Any],
                card: dict[str, Any], entries: list[JournalEntry],
                trailing_skipped: list[dict[str, str]]) -> None:
    journal = rank_journal(out, share)
    rows = concat_row_tables([rows_table(shard_rows) for shard_rows in entry_rows(journal)])
    part = {
        "rank": share.rank, "world_size": share.world_size, "tasks": [tasks.start, tasks.stop],
        "identity": identity, "card": card, "samples": rows.num_rows,
        "shards": [{"name": e.shard, "sha256": e.sha256, "bytes": e.bytes, "samples": e.samples}
                   for e in entries],
        "skipped": [s for entry in entries for s in entry.skipped] + trailing_skipped,
    }
    write_rank_part(out, part, rows)


def _finish(out: Path, share: WorkShare) -> dict[str, Any]:
    waiting = missing_ranks(out, share.world_size)
    if not waiting:
        card = finalize_dataset(out)
        write_readme(out, card)
        return card
    part = json.loads(card_part_path(out, share.rank, share.world_size).read_text())
    return {"complete": False, "rank": share.rank, "world_size": share.world_size,
            "waiting_for_ranks": waiting, "samples": part["samples"],
            "shards": len(part["shards"]), "skipped": len(part["skipped"])}
