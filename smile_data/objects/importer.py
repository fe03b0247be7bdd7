"""`import-objects`: turn a folder of RGBA PNGs (`<lvis_name>/<i>.png`) into a bank.

Every file is checked before it is trusted: its folder must be an LVIS class name, its PNG
header must declare a size within `max_pixels` (read from the header, before any decoding, so a
decompression bomb is refused unopened), it must decode, carry an alpha channel, and have some
non-transparent pixel. Good files are cropped to their alpha box and re-encoded; files already
tight-cropped 8-bit RGBA are copied byte for byte, or with `link` hard-linked (the bank and the
source then share the file; where a hard link is impossible, e.g. across file systems, it is
copied). Bad files are skipped with a per-file reason.
Progress is journaled per chunk of files, so a rerun skips files already imported.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from smile_data.config import settings_to_dict
from smile_data.io import atomic_path, write_bytes_atomic, write_json_atomic
from smile_data.jobs import Journal
from smile_data.objects.bank import (
    OBJECT_PATH_PATTERN, OBJECTS_DIR, UNKNOWN_CLASS_ID, natural_order, object_number, objects_base,
)
from smile_data.objects.extract import ALPHA_MAX, png_bytes
from smile_data.objects.manifest import empty_row, remove_bank_temporaries, write_bank_files
from smile_data.objects.segment import alpha_box
from smile_data.processes import exit_with_parent
from smile_data.safe_files import outside_problem
from smile_data.objects.settings import ImportSettings, validate_import
from smile_data.progress_bar import progress_bar
from smile_data.shards.image_header import PNG_HEADER_BYTES, PngHeader, png_header
from smile_data.vocabulary import load_released_objects, load_vocabulary

RGBA_COLOUR_TYPE = 6
EIGHT_BITS = 8
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
ALPHA_SOLID = ALPHA_MAX // 2
POOL_CHUNK = 16  # files handed to a worker process at a time
JOURNAL_FILE = "progress/import.jsonl"
REPORT_FILE = "import_report.json"
OWN_FILES = (REPORT_FILE,)  # written at the bank root besides the manifest and card
DESCRIPTION = (
    "Objects imported from an existing folder of RGBA PNGs laid out as <lvis_name>/<i>.png; each "
    "file verified (PNG header size, decodes, alpha present and not empty, LVIS class folder) "
    "and cropped to its alpha box."
)

UNKNOWN_CLASS = "unknown_class"
NOT_NUMBERED = "not_numbered"
NOT_PNG = "not_png"
TOO_LARGE = "too_large"
CORRUPT = "corrupt"
NO_ALPHA = "no_alpha"
EMPTY_ALPHA = "empty_alpha"
UNREADABLE = "unreadable"
NOT_REGULAR = "link_or_special"  # a link out of the source folder, a FIFO, socket or device


class BadFile(Exception):
    """A source file that cannot be imported; `reason` is one of the constants above."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def read_png_header(path: Path) -> PngHeader:
    """Size, bit depth and colour type from the file's PNG signature and IHDR chunk."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(PNG_HEADER_BYTES)
    except OSError as error:
        raise BadFile(UNREADABLE, f"cannot read: {error}") from None
    try:
        return png_header(head)
    except ValueError as error:
        raise BadFile(NOT_PNG, f"no PNG signature and header ({error})") from None


def source_files(src: Path) -> list[str]:
    """`<class>/<file>.png` paths below `src` (or its objects/ folder), in natural order."""
    base = objects_base(src)
    files = [p.relative_to(base) for p in base.glob("*/*.png") if not p.is_dir()]
    return [rel.as_posix() for rel in sorted(files, key=natural_order)]


def _decode_rgba(path: Path, settings: ImportSettings) -> tuple[np.ndarray, bool]:
    """(h, w, 4) uint8 and whether the file itself is 8-bit RGBA (copyable as it is)."""
    width, height, depth, colour = read_png_header(path)
    if width * height > settings.max_pixels:
        raise BadFile(TOO_LARGE, f"header says {width}x{height}, over {settings.max_pixels} pixels")
    try:
        with Image.open(path, formats=["PNG"]) as image:
            image.load()
            has_alpha = image.mode in ALPHA_MODES or "transparency" in image.info
            rgba = np.asarray(image.convert("RGBA"))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise BadFile(CORRUPT, f"cannot decode: {error}") from None
    if not has_alpha:
        raise BadFile(NO_ALPHA, f"no alpha channel (mode {image.mode})")
    return rgba, colour == RGBA_COLOUR_TYPE and depth == EIGHT_BITS


def _place(source: Path, dest: Path, data: bytes | None, link: bool) -> None:
    """Write `data` to `dest`, or (data None) hard-link / copy `source` there, atomically."""
    if data is not None:
        write_bytes_atomic(dest, data)
        return
    with atomic_path(dest) as tmp:
        try:
            if not link:
                raise OSError("copy requested")
            os.link(source, tmp)
        except OSError:  # no hard links across file systems: copy instead
            shutil.copyfile(source, tmp)


def import_file(task: tuple[str, str, str, dict]) -> dict[str, Any]:
    """Check and import one `<class>/<file>.png`; return its manifest row (worker entry point)."""
    src_base, rel, out, settings_dict = task
    settings = ImportSettings(**settings_dict)
    class_name, file_name = rel.split("/")[-2:] if "/" in rel else ("", rel)
    number = object_number(Path(file_name).stem)
    row = empty_row(lvis_id=UNKNOWN_CLASS_ID, name=class_name, accepted=False, source=rel,
                    candidate=number)
    lvis_class = load_vocabulary().by_name(class_name)
    try:
        if lvis_class is None:
            raise BadFile(UNKNOWN_CLASS, f"folder {class_name!r} is not an LVIS class name")
        row["lvis_id"] = lvis_class.id
        if number is None:
            raise BadFile(NOT_NUMBERED, f"{file_name!r} is not named <number>.png")
        source = Path(src_base) / rel
        problem = outside_problem(source, src_base)
        if problem:  # never opened: a FIFO would hang the import, a link would leak a file
            raise BadFile(NOT_REGULAR, problem)
        rgba, copyable = _decode_rgba(source, settings)
        box = alpha_box(rgba[..., 3])
        if box is None:
            raise BadFile(EMPTY_ALPHA, "alpha is zero everywhere")
    except BadFile as bad:
        return {**row, "reason": bad.reason, "detail": str(bad)}
    y0, y1, x0, x1 = box
    tight = (y0, x0) == (0, 0) and (y1, x1) == rgba.shape[:2]
    path = f"{OBJECTS_DIR}/{class_name}/{file_name}"
    _place(source, Path(out) / path, None if tight and copyable else png_bytes(rgba[y0:y1, x0:x1]),
           settings.link)
    return {**row, "path": path, "accepted": True, "width": x1 - x0, "height": y1 - y0,
            "area_fraction": float((rgba[..., 3] > ALPHA_SOLID).mean())}


def _file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _is_import_record(record: dict[str, Any]) -> bool:
    """Whether a journal record is one `import_objects` writes: rows naming a source file and an
    object path (or none), and a [size, mtime] stamp for each."""
    rows, stamps = record.get("rows"), record.get("stamps")
    if not isinstance(rows, list) or not isinstance(stamps, list) or len(rows) != len(stamps):
        return False
    rows_ok = all(isinstance(row, dict) and isinstance(row.get("source"), str)
                  and (row.get("path") is None or OBJECT_PATH_PATTERN.fullmatch(str(row["path"])))
                  for row in rows)
    stamps_ok = all(isinstance(stamp, list) and len(stamp) == 2
                    and all(isinstance(n, int) and not isinstance(n, bool) for n in stamp)
                    for stamp in stamps)
    return rows_ok and stamps_ok


def _journaled_rows(journal: Journal, base: Path, out: Path, context: dict) -> dict[str, dict]:
    """Rows of files imported by an earlier run of the same import whose source is unchanged."""
    rows = {}
    for number, record in enumerate(journal.records()):
        if record.get("context") != context:
            continue
        if not _is_import_record(record):
            raise ValueError(f"{journal.path}: record {number} is not an import-objects record; "
                             "delete it to import anew")
        for row, stamp in zip(record["rows"], record["stamps"]):
            source = base / row["source"]
            fresh = source.is_file() and _file_stamp(source) == stamp
            if fresh and (row["path"] is None or (out / row["path"]).is_file()):
                rows[row["source"]] = row
    return rows


def compare_with_released(imported: list[str]) -> dict[str, Any]:
    """Missing and extra `<class>/<i>.png` relative to the released 60,687-object list."""
    released = set(load_released_objects())
    present = set(imported)
    missing, extra = sorted(released - present), sorted(present - released)
    return {"released": len(released), "matched": len(released & present),
            "missing_count": len(missing), "extra_count": len(extra),
            "missing": missing, "extra": extra}


def _map_files(tasks: list[tuple], pool: ProcessPoolExecutor | None) -> list[dict]:
    if pool is None:
        return [import_file(task) for task in tasks]
    return list(pool.map(import_file, tasks, chunksize=POOL_CHUNK))


def import_objects(src: str | Path, out: str | Path, settings: ImportSettings | None = None,
                   show_progress: bool = True) -> dict[str, Any]:
    """Import `src` into the bank `out`; write manifest, card and `import_report.json`.

    Returns the report (counts, bad files with reasons, unknown class names, comparison with
    the released list). Raises only for a missing source folder; bad files are data.
    """
    settings = settings or ImportSettings()
    validate_import(settings)
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source folder not found")
    base = objects_base(src)
    out.mkdir(parents=True, exist_ok=True)
    remove_bank_temporaries(out, OWN_FILES)
    files = source_files(src)
    context = {"source": str(base.resolve()), "settings": settings_to_dict(settings)}
    for run_only in ("workers", "chunk_size"):
        context["settings"].pop(run_only)
    journal = Journal(out / JOURNAL_FILE)
    journal.keep_leading()  # a line torn by a kill must not hide the chunks journaled after it
    rows_by_source = _journaled_rows(journal, base, out, context)
    pending = [rel for rel in files if rel not in rows_by_source]
    settings_dict = settings_to_dict(settings)
    tasks = [(str(base), rel, str(out), settings_dict) for rel in pending]
    pool = (ProcessPoolExecutor(settings.workers, initializer=exit_with_parent, initargs=(os.getpid(),))
            if settings.workers > 1 and tasks else None)  # workers die with a killed import
    bar = progress_bar(total=len(tasks), unit="file", disable=not show_progress, dynamic_ncols=True,
               desc="import")
    with bar, pool or contextlib.nullcontext():
        for start in range(0, len(tasks), settings.chunk_size):
            chunk = tasks[start : start + settings.chunk_size]
            rows = _map_files(chunk, pool)
            stamps = [_file_stamp(base / row["source"]) for row in rows]
            journal.append({"context": context, "rows": rows, "stamps": stamps})
            rows_by_source.update({row["source"]: row for row in rows})
            bar.update(len(chunk))
    rows = [rows_by_source[rel] for rel in files]
    report = _report(src, rows)
    manifest_rows = [{k: v for k, v in row.items() if k != "detail"} for row in rows]
    write_bank_files(out, manifest_rows, source="import", command="import-objects",
                     settings=settings, description=DESCRIPTION, imported_from=str(src),
                     **({"license": settings.license} if settings.license else {}))
    write_json_atomic(out / REPORT_FILE, report)
    return report


def _report(src: Path, rows: list[dict]) -> dict[str, Any]:
    bad = [{"file": r["source"], "reason": r["reason"], "detail": r.get("detail")}
           for r in rows if not r["accepted"]]
    by_reason: dict[str, int] = {}
    for item in bad:
        by_reason[item["reason"]] = by_reason.get(item["reason"], 0) + 1
    unknown = sorted({r["name"] for r in rows if r["reason"] == UNKNOWN_CLASS})
    imported = [r["source"] for r in rows if r["accepted"]]
    return {"source": str(src), "files": len(rows), "imported": len(imported), "bad": bad,
            "bad_by_reason": dict(sorted(by_reason.items())), "unknown_classes": unknown,
            "released_comparison": compare_with_released(imported)}
