"""Background sources: listing videos and stills, and decoding only the frames a task needs.

Lists: a folder (searched recursively, sorted), or a text file with one source per line in the
VideoMAE style — `path`, `path label` or `path num_frames label`, separated by commas (CSV
quoting allowed) or spaces; blank lines and `#` comments are ignored. Numbers are read from the
right, so a path may hold spaces or commas (`my clip, take 2.mp4,3`). A first line of words only
(`path,label`) is a header, and is logged as one; any other line that cannot be read is an error
naming its line, never dropped. Relative paths are resolved against `root` (by default the
list's folder).

Folders and lists may come from elsewhere: a file in a folder that is a link out of it, a FIFO,
a socket or a device is skipped with a warning (as in object banks), a relative list entry
that leads out of its root is an error naming its line, and a source that is not a regular
file is refused before it is opened.

Videos are decoded with OpenCV from the first frame on with sequential grab() calls (seeking
by CAP_PROP_POS_FRAMES is unreliable for many codecs) and only the wanted frames are retrieved.
The frame count comes from the container; when decoding ends early the real count is used and
the wanted frames are planned again.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from smile_data.safe_files import outside_problem
from smile_data.shards.layout import MAX_LABEL

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp"})
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
LIST_NUMBERS = 2  # path | path label | path num_frames label: up to two numbers on the right
HEADER_PATTERN = re.compile(r"[A-Za-z_ ]+")  # header fields are words: no digits, dots or slashes
DECODE_THREADS = 1  # one core per worker: parallelism comes from --workers

log = logging.getLogger(__name__)


def prepare_process() -> None:
    """One core per worker (parallelism comes from --workers) and quiet OpenCV warnings."""
    cv2.setNumThreads(DECODE_THREADS)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def failure_reason(error: Exception) -> str:
    """The reason recorded for a skipped source."""
    if isinstance(error, cv2.error):
        return f"OpenCV error while decoding: {str(error).strip().splitlines()[-1]}"
    return str(error)


class SourceError(Exception):
    """A background source that cannot be used; the message is the reason for the report."""


@dataclass(frozen=True)
class Source:
    name: str  # as listed: relative to the root (or absolute); written into the metadata
    path: str  # resolved path
    label: int | None = None


def sources_sha256(sources: list[Source]) -> str:
    """Identifies a source list in the dataset card: names and labels in order."""
    text = "\n".join(f"{s.name}\t{'' if s.label is None else s.label}" for s in sources)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _parse_label(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def _fields(line: str) -> list[str]:
    """A line's fields: CSV when it holds a comma (quotes allowed), else whitespace-separated."""
    if "," in line:
        return [field.strip() for field in next(csv.reader([line], skipinitialspace=True, strict=True))]
    return line.split()


def _split_numbers(fields: list[str]) -> tuple[list[str], list[int]]:
    """(path fields, trailing integers): up to LIST_NUMBERS integers read from the right,
    always leaving at least one field for the path."""
    numbers: list[int] = []
    while len(numbers) < LIST_NUMBERS and len(fields) > 1 and _parse_label(fields[-1]) is not None:
        numbers.insert(0, int(fields[-1]))
        fields = fields[:-1]
    return fields, numbers


def _is_header(fields: list[str]) -> bool:
    return all(HEADER_PATTERN.fullmatch(field) for field in fields)


def _resolve(name: str, root: Path) -> Path:
    return Path(name) if Path(name).is_absolute() else root / name


def _leads_out(path: Path, root: Path) -> bool:
    return not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root))


def _folder_files(folder: Path, extensions: frozenset[str]) -> list[Path]:
    """Regular files with `extensions` under `folder`, sorted; links out of it and special
    files are skipped with a warning, never opened."""
    files = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in extensions or path.is_dir():
            continue
        problem = outside_problem(path, folder)
        if problem:
            log.warning("%s: skipped: %s", path, problem)
        else:
            files.append(path)
    return files


def parse_line(line: str, root: Path, where: str) -> Source:
    """One list line (stripped, not blank, not a comment) -> a Source; ValueError naming `where`."""
    fields = _fields(line)
    path_fields, numbers = _split_numbers(fields)
    separator = "," if "," in line else " "
    name = separator.join(path_fields).strip() if numbers or len(path_fields) == 1 else line
    if len(path_fields) > 1 and not numbers and not _resolve(name, root).is_file():
        # `b.mp4 dog`: a label that is not a number, unless the whole line names a file
        raise ValueError(f"{where}: label {fields[-1]!r} is not an integer "
                         f"(and {line!r} is not a file under {root})")
    if not name:
        raise ValueError(f"{where}: no path before the numbers")
    if numbers and not 0 <= numbers[-1] <= MAX_LABEL:
        raise ValueError(f"{where}: label {numbers[-1]} is outside 0..{MAX_LABEL}")
    if not Path(name).is_absolute() and _leads_out(_resolve(name, root), root):
        raise ValueError(f"{where}: {name} leads to {os.path.realpath(_resolve(name, root))}, "
                         f"outside {root}")
    return Source(name=name, path=str(_resolve(name, root)), label=numbers[-1] if numbers else None)


def parse_list(list_path: Path, root: Path) -> list[Source]:
    """Sources of a VideoMAE-style annotation or file list (see the module docstring)."""
    try:
        text = list_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{list_path}: not UTF-8 text ({error})") from None
    sources, seen_data = [], False
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{list_path}:{number}"
        try:
            if not seen_data and _is_header(_fields(line)):
                log.info("%s: %r taken as a header line", where, line)
            else:
                sources.append(parse_line(line, root, where))
        except csv.Error as error:
            raise ValueError(f"{where}: {error}") from None
        seen_data = True
    return sources


def list_sources(spec: str, root: str, extensions: frozenset[str], what: str) -> list[Source]:
    """Sources from a folder (files with `extensions`) or from a list file."""
    location = Path(spec)
    if location.is_dir():
        files = _folder_files(location, extensions)
        return [Source(name=p.relative_to(location).as_posix(), path=str(p)) for p in files]
    if location.is_file():
        return parse_list(location, Path(root) if root else location.parent)
    raise FileNotFoundError(f"{spec}: {what} folder or list not found")


def _check_file(path: str) -> None:
    """Refuse what is not a regular file before anything opens it (a FIFO would hang)."""
    try:
        status = os.stat(path)
    except OSError:
        raise SourceError("file not found") from None
    if not stat.S_ISREG(status.st_mode):
        raise SourceError(outside_problem(path, os.path.dirname(os.path.realpath(path))) or "not a regular file")
    if status.st_size == 0:
        raise SourceError("empty file")


def _open_video(path: str) -> cv2.VideoCapture:
    _check_file(path)
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, DECODE_THREADS])
    if not capture.isOpened():
        raise SourceError("cannot open as a video (corrupt or unsupported)")
    return capture


def _count_frames(path: str) -> int:
    capture = _open_video(path)
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


def _read_wanted(
    path: str, wanted: set[int], transform: Callable[[np.ndarray], np.ndarray]
) -> tuple[dict[int, np.ndarray], int | None]:
    """Frames at `wanted` indices; plus the real length if the video ended before the last one."""
    capture = _open_video(path)
    frames: dict[int, np.ndarray] = {}
    last = max(wanted)
    try:
        for index in range(last + 1):
            if not capture.grab():
                return frames, index
            if index in wanted:
                ok, frame = capture.retrieve()
                if not ok or frame is None:
                    return frames, index
                frames[index] = transform(frame)
    finally:
        capture.release()
    return frames, None


def read_video_frames(
    path: str, plan: Callable[[int], list[int]],
    transform: Callable[[np.ndarray], np.ndarray] = lambda frame: frame,
) -> tuple[dict[int, np.ndarray], int]:
    """Decode the frames `plan(length)` asks for; returns {index: (h, w, 3) BGR} and the length.

    Raises SourceError if the file is missing, empty, unreadable or has no decodable frame.
    """
    capture = _open_video(path)
    length = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if length <= 0:
        length = _count_frames(path)
    for _attempt in range(2):
        if length <= 0:
            raise SourceError("no decodable frames")
        frames, real_length = _read_wanted(path, set(plan(length)), transform)
        if real_length is None:
            return frames, length
        length = real_length  # the container over-reported its length: plan again
    raise SourceError("frame count keeps changing while decoding")


def read_image(path: str) -> np.ndarray:
    """(h, w, 3) BGR uint8 of a still image; SourceError if it cannot be decoded."""
    _check_file(path)
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise SourceError("cannot decode as an image")
    return image
