"""`build-objects` from Stable Diffusion: generate, segment, filter, number, merge — resumably.

Work is split by class: the selected classes (in LVIS id order) are the tasks, and each rank
owns one contiguous block of them (`smile_data.jobs.WorkShare.tasks`), so a class's CLIP floor
and object numbering never leave one process. For each owned class, candidates are generated in
batches; after a batch, its passing cut-outs are staged
(`progress/staging/<lvis_id>/<candidate>.png`, written atomically) and only then is the batch
recorded in the rank's journal (`progress/rank-NNNNN.jsonl`, a `smile_data.jobs.Journal`). When
all of a class's candidates are recorded, the class is decided (filters.decide_class), staged
files are renamed to `objects/<name>/<i>.png`, and a class record is journaled. A rerun skips
what any rank's journal records (so a run resumed with another rank count, or one started before
ranks took contiguous blocks, redoes nothing), and a kill -9 loses at most the batch in flight.
When every selected class has a class record, `objects.parquet` and `bank.json` are written from
the journals (by whichever rank finishes last, or by `smile-data merge-bank`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch

from smile_data.config import apply_overrides, settings_to_dict
from smile_data.io import remove_stale_temporaries, write_bytes_atomic, write_json_atomic
from smile_data.jobs import Journal, WorkShare
from smile_data.objects import generate
from smile_data.objects.extract import Extractor, png_bytes
from smile_data.objects.filters import decide_class
from smile_data.objects.manifest import PROGRESS_DIR, empty_row, object_path, write_bank_files
from smile_data.objects.settings import RUN_ONLY_SETTINGS, BuildSettings, validate_build
from smile_data.progress_bar import progress_bar
from smile_data.vocabulary import LvisClass, load_vocabulary

STAGING_DIR = "staging"
RUN_SETTINGS_FILE = "settings.json"
BATCH_RECORD = "batch"
CLASS_RECORD = "class"
MAX_JOURNAL_NUMBER = 1 << 31  # LVIS ids and candidate numbers read back from a journal
DESCRIPTION = (
    "Objects generated with a text-to-image diffusion pipeline (X-Paste recipe), segmented, "
    "filtered (mask area, minimum side, CLIP floor when a CLIP model was given) and tight-cropped."
)


def select_classes(settings: BuildSettings) -> list[LvisClass]:
    """The classes to build, in id order: all 1203, or the `classes` subset (ids or names)."""
    vocabulary = load_vocabulary()
    if not settings.classes:
        return list(vocabulary)
    chosen, unknown = {}, []
    for item in settings.classes:
        text = str(item).strip()
        found = vocabulary.by_name(text)
        if found is None and text.isdigit():
            try:
                found = vocabulary.by_id(int(text))
            except KeyError:
                found = None
        if found is None:
            unknown.append(text)
        else:
            chosen[found.id] = found
    if unknown:
        raise ValueError(f"classes: not LVIS ids or names: {', '.join(unknown)}")
    return [chosen[i] for i in sorted(chosen)]


def progress_dir(root: Path) -> Path:
    return root / PROGRESS_DIR


def journal_path(root: Path, rank: int) -> Path:
    return progress_dir(root) / f"rank-{rank:05d}.jsonl"


def staged_path(root: Path, lvis_id: int, candidate: int) -> Path:
    return progress_dir(root) / STAGING_DIR / str(lvis_id) / f"{candidate}.png"


def _comparable(settings_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings_dict.items() if k not in RUN_ONLY_SETTINGS}


def fix_run_settings(root: Path, settings: BuildSettings) -> BuildSettings:
    """Record the settings of a new build, or check a resumed one against the recorded ones.

    Returns the recorded settings (what the bank card reports), so ranks and resumed runs that
    differ only in run-only settings (batch size) write the same card.
    """
    path = progress_dir(root) / RUN_SETTINGS_FILE
    wanted = settings_to_dict(settings)
    if not path.is_file():
        write_json_atomic(path, wanted)
        return settings
    recorded = load_run_settings(root)
    before, now = _comparable(settings_to_dict(recorded)), _comparable(wanted)
    changed = sorted(k for k in now if before.get(k) != now[k])
    if changed:
        raise ValueError(
            f"{root}: this bank was started with other settings ({', '.join(changed)} differ; "
            f"see {path}); use a new --out folder or the recorded settings"
        )
    return recorded


def load_run_settings(root: Path) -> BuildSettings:
    path = progress_dir(root) / RUN_SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a bank being built by build-objects (no settings)")
    return apply_overrides(BuildSettings(), json.loads(path.read_text()), source=str(path))


def _is_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_JOURNAL_NUMBER


def _record_problem(record: dict[str, Any]) -> str | None:
    """Why a journal record is not one this module writes (None if it is one). Candidate numbers
    name staged files, so they must be plain integers."""
    if record.get("kind") not in (BATCH_RECORD, CLASS_RECORD):
        return f"kind {record.get('kind')!r} is neither {BATCH_RECORD!r} nor {CLASS_RECORD!r}"
    if not _is_number(record.get("lvis_id")):
        return f"lvis_id {record.get('lvis_id')!r} is not an integer in 0..{MAX_JOURNAL_NUMBER}"
    rows = record.get("rows")
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        return "rows is not a list of objects"
    if record["kind"] == BATCH_RECORD and not all(_is_number(row.get("candidate")) for row in rows):
        return f"a candidate is not an integer in 0..{MAX_JOURNAL_NUMBER}"
    return None


def read_progress(root: Path) -> tuple[dict[int, dict[int, dict]], dict[int, list[dict]]]:
    """From every rank's journal: candidate rows by class and candidate; decided classes' rows.

    A bank folder may come from elsewhere: a record that is not one this module writes is an
    error naming its journal."""
    candidates: dict[int, dict[int, dict]] = {}
    decided: dict[int, list[dict]] = {}
    for path in sorted(progress_dir(root).glob("rank-*.jsonl")):
        for number, record in enumerate(Journal(path).records()):
            problem = _record_problem(record)
            if problem is not None:
                raise ValueError(f"{path}: record {number} is not a build-objects record "
                                 f"({problem}); delete {progress_dir(root)} to build the bank anew")
            lvis_id = record["lvis_id"]
            if record["kind"] == BATCH_RECORD:
                for row in record["rows"]:
                    candidates.setdefault(lvis_id, {})[row["candidate"]] = row
            else:
                decided[lvis_id] = record["rows"]
    return candidates, decided


def finalize_class(root: Path, lvis_class: LvisClass, rows: list[dict],
                   settings: BuildSettings) -> list[dict]:
    """Decide a class, move accepted cut-outs into objects/, drop the rest; return manifest rows."""
    manifest_rows = []
    for row in decide_class(rows, settings, settings.accepted_per_class):
        staged = staged_path(root, lvis_class.id, row["candidate"])
        path = object_path(lvis_class.name, row["index"]) if row["accepted"] else None
        if path is not None:
            if staged.is_file():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, root / path)
            elif not (root / path).is_file():  # a rerun after a kill mid-move finds it moved
                raise ValueError(f"{staged}: staged cut-out missing; delete {root} and rebuild")
        elif staged.is_file():
            staged.unlink()
        manifest_rows.append(empty_row(
            path=path, lvis_id=lvis_class.id, name=lvis_class.name, accepted=row["accepted"],
            reason=row["reason"], candidate=row["candidate"], seed=row["seed"],
            area_fraction=row["area_fraction"], clip_score=row["clip_score"], width=row["width"],
            height=row["height"], segmenter=row["segmenter"],
        ))
    with contextlib.suppress(OSError):  # an empty staging folder has served its purpose
        staged_path(root, lvis_class.id, 0).parent.rmdir()
    return manifest_rows


def merge_bank(root: str | Path) -> dict:
    """Write objects.parquet and bank.json from the journals of all ranks; return the card."""
    root = Path(root)
    settings = load_run_settings(root)
    _, decided = read_progress(root)
    missing = [c.name for c in select_classes(settings) if c.id not in decided]
    if missing:
        raise ValueError(
            f"{root}: {len(missing)} class(es) not finished yet (e.g. {', '.join(missing[:5])}); "
            "run build-objects again (all ranks) to finish them"
        )
    rows = [row for class_id in sorted(decided) for row in decided[class_id]]
    return write_bank_files(root, rows, source="stable-diffusion", command="build-objects",
                            settings=settings, description=DESCRIPTION, model=settings.model,
                            prompt_template=settings.prompt_template)


def _device_for(settings: BuildSettings) -> str:
    device = generate.resolve_device(settings.device)
    local_rank = os.environ.get("LOCAL_RANK")  # torchrun: one GPU per process on a node
    if device == "cuda" and local_rank is not None and torch.cuda.device_count() > 1:
        device = f"cuda:{int(local_rank) % torch.cuda.device_count()}"
    return device


class BankBuilder:
    """One rank's share of a build; `run()` does it and merges when the last class is done."""

    def __init__(self, settings: BuildSettings, root: str | Path, share: WorkShare,
                 show_progress: bool = True):
        validate_build(settings)
        self.root = Path(root)
        self.share = share
        self.show_progress = show_progress
        self.root.mkdir(parents=True, exist_ok=True)
        recorded = fix_run_settings(self.root, settings)
        # The recorded settings, except those that only change speed: this run's own.
        self.settings = dataclasses.replace(
            recorded, **{key: getattr(settings, key) for key in RUN_ONLY_SETTINGS})
        classes = select_classes(self.settings)
        self.owned = [classes[task] for task in share.tasks(len(classes))]
        self.journal = Journal(journal_path(self.root, share.rank))
        self.journal.keep_leading()  # a line torn by a kill must not hide what comes after it
        self._pipeline = self._extractor = None

    def _models(self) -> tuple[Any, Extractor]:
        """The pipeline and extractor, loaded on first use (a finished rank loads nothing)."""
        if self._pipeline is None:
            device = _device_for(self.settings)
            dtype = generate.resolve_dtype(self.settings.dtype, device)
            self._pipeline = generate.load_pipeline(self.settings, device, dtype)
            self._extractor = Extractor(self.settings, device)
        return self._pipeline, self._extractor

    def _clean_owned_temporaries(self) -> None:
        """Drop leftovers of interrupted writes in this rank's folders (never another rank's:
        its writes may be in flight)."""
        for lvis_class in self.owned:
            staging = staged_path(self.root, lvis_class.id, 0).parent
            objects = (self.root / object_path(lvis_class.name, 0)).parent
            for folder in (staging, objects):
                if folder.is_dir():
                    remove_stale_temporaries(folder)

    def _run_batch(self, lvis_class: LvisClass, candidates: list[int]) -> list[dict]:
        pipeline, extractor = self._models()
        seeds = [generate.candidate_seed(self.settings.seed, lvis_class.id, c) for c in candidates]
        prompt = generate.prompt_for(self.settings, lvis_class)
        images = generate.generate_images(pipeline, prompt, seeds, self.settings)  # (N, R, R, 3)
        rows = []
        results = extractor.extract_batch(images, lvis_class)
        for candidate, seed, result in zip(candidates, seeds, results):
            if result.reason is None:
                staged = staged_path(self.root, lvis_class.id, candidate)
                write_bytes_atomic(staged, png_bytes(result.rgba))
            rows.append({"candidate": candidate, "seed": seed, "reason": result.reason,
                         "area_fraction": result.area_fraction, "clip_score": result.clip_score,
                         "width": result.width, "height": result.height,
                         "segmenter": result.segmenter})
        self.journal.append({"kind": BATCH_RECORD, "lvis_id": lvis_class.id, "rows": rows})
        return rows

    def run(self) -> dict[str, Any]:
        """Build this rank's classes; merge if every selected class is now decided."""
        self._clean_owned_temporaries()
        done_candidates, decided = read_progress(self.root)
        todo = [c for c in self.owned if c.id not in decided]
        remaining = {c.id: [i for i in range(self.settings.candidates_per_class)
                            if i not in done_candidates.get(c.id, {})] for c in todo}
        total = sum(len(v) for v in remaining.values())
        bar = progress_bar(total=total, unit="img", disable=not self.show_progress, dynamic_ncols=True,
                   desc=f"rank {self.share.rank}/{self.share.world_size}")
        with bar:
            for lvis_class in todo:
                rows = dict(done_candidates.get(lvis_class.id, {}))
                pending = remaining[lvis_class.id]
                for start in range(0, len(pending), self.settings.batch_size):
                    batch = pending[start : start + self.settings.batch_size]
                    rows.update({r["candidate"]: r for r in self._run_batch(lvis_class, batch)})
                    bar.update(len(batch))
                manifest_rows = finalize_class(self.root, lvis_class, list(rows.values()), self.settings)
                self.journal.append({"kind": CLASS_RECORD, "lvis_id": lvis_class.id,
                                     "rows": manifest_rows})
        _, decided = read_progress(self.root)
        complete = all(c.id in decided for c in select_classes(self.settings))
        card = merge_bank(self.root) if complete else None
        return {"rank": self.share.rank, "world_size": self.share.world_size,
                "classes": len(self.owned), "generated": total, "merged": complete, "card": card}
