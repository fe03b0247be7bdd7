"""What a video container declares, checked from its own bytes before FFmpeg opens it.

FFmpeg's MP4 demuxer builds one index entry per sample the header declares, at open time: a
17 KB file whose sample-size table says "50 million samples of 1 byte each" makes it allocate
gigabytes before any limit of ours can look at the stream. So the header is read here first,
by a walk over box (MP4) or element (Matroska/WebM) headers that costs time proportional to
the bytes, and every count that would size FFmpeg's work is held to what the bytes can hold:

MP4 / QuickTime, per track of the `moov` box and per fragment (`moof`/`traf`/`trun`):
- every table's entries fit in its box (a table cannot declare more rows than it stores);
- the samples a track declares fit in the file (count x sample size <= file bytes) and number
  at most MAX_TRACK_SAMPLES (the video track: `VideoLimits.max_frames`);
- the counts the other tables add up to (time-to-sample, composition offsets, sync samples,
  samples per chunk over the chunks) do not exceed the track's sample count.
Matroska / WebM: every element's declared size fits in its parent and in the file (only a
Segment or Cluster may leave its size open), tracks are few, a video track's declared frame
size is within the limits, and no track is stored compressed (zlib, bzip2, lzo: FFmpeg would
inflate each block).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator

from smile_data.video.limits import VideoError

MAX_HEADER_NODES = 1 << 20  # boxes or elements walked in one file: each is >= 2 bytes of it
MAX_TRACKS = 16  # FFmpeg allocates a stream and a decoder context per track
MAX_DEPTH = 12  # boxes or elements inside each other (a track's tables are 5 deep)
# Samples one track may declare: an hour of AAC audio holds about 170,000, 10 s of 48 kHz PCM
# 480,000 (the video track is held to VideoLimits.max_frames).
MAX_TRACK_SAMPLES = 2_000_000
MP4_BOX_HEADER, MP4_LARGE_BOX_HEADER, MP4_FULL_BOX_HEADER = 8, 16, 4
# Boxes FFmpeg descends into (and so do we): their payload is a list of boxes.
MP4_CONTAINER_BOXES = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"mvex",
                                 b"moof", b"traf", b"dinf"})
VIDEO_HANDLER = b"vide"
# A track's sample tables, by the kind FFmpeg keeps one of: it takes the last copy it reads, so a
# second copy could declare what the first one was checked against. stsz and stz2 are one kind.
SAMPLE_TABLE_KINDS = {b"stsz": b"stsz", b"stz2": b"stsz", b"stts": b"stts", b"ctts": b"ctts",
                      b"stss": b"stss", b"stsc": b"stsc", b"stco": b"stco", b"co64": b"stco",
                      b"elst": b"elst"}


@dataclass
class _Box:
    kind: bytes
    start: int  # first payload byte
    end: int    # one past the last payload byte


def _mp4_boxes(data: bytes, start: int, end: int, budget: list[int]) -> Iterator[_Box]:
    """The boxes between `start` and `end`, each checked to lie inside them."""
    position = start
    while position < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise VideoError(f"more than {MAX_HEADER_NODES} boxes in the container")
        if end - position < MP4_BOX_HEADER:
            raise VideoError(f"a box header at byte {position} is cut off")
        size, kind = struct.unpack_from(">I4s", data, position)
        header = MP4_BOX_HEADER
        if size == 1:
            if end - position < MP4_LARGE_BOX_HEADER:
                raise VideoError(f"a box header at byte {position} is cut off")
            size, header = struct.unpack_from(">Q", data, position + MP4_BOX_HEADER)[0], MP4_LARGE_BOX_HEADER
        elif size == 0:
            size = end - position  # "to the end of the file"
        if size < header or size > end - position:
            raise VideoError(f"box {kind!r} at byte {position} declares {size} bytes, "
                             f"{end - position} are left")
        yield _Box(kind, position + header, position + size)
        position += size


def _uint(data: bytes, box: _Box, offset: int, fmt: str = ">I") -> int:
    if box.start + offset + struct.calcsize(fmt) > box.end:
        raise VideoError(f"box {box.kind!r} is too short for its fields")
    return struct.unpack_from(fmt, data, box.start + offset)[0]


def _table(data: bytes, box: _Box, row_bytes: int, first_row: int = MP4_FULL_BOX_HEADER + 4) -> int:
    """Rows of a full box's table (count at `first_row - 4`), checked to fit in the box."""
    rows = _uint(data, box, first_row - 4)
    if rows * row_bytes > box.end - box.start - first_row:
        raise VideoError(f"box {box.kind!r} declares {rows} entries, its {box.end - box.start} "
                         "bytes hold fewer")
    return rows


def _column_sum(data: bytes, box: _Box, rows: int, row_bytes: int, first_row: int = 8) -> int:
    """Sum of the first 32-bit field of each row (the sample counts of stts / ctts)."""
    return sum(struct.unpack_from(">I", data, box.start + first_row + row * row_bytes)[0]
               for row in range(rows))


def _stsc_samples(data: bytes, stsc: _Box, chunks: int) -> int:
    """Samples the sample-to-chunk table assigns over `chunks` chunks."""
    rows = _table(data, stsc, 12)
    total = 0
    for row in range(rows):
        first, per_chunk = struct.unpack_from(">II", data, stsc.start + 8 + row * 12)
        following = (struct.unpack_from(">I", data, stsc.start + 8 + (row + 1) * 12)[0]
                     if row + 1 < rows else chunks + 1)
        total += max(0, min(following, chunks + 1) - first) * per_chunk
    return total


def _sample_table(data: bytes, stbl: _Box, budget: list[int]) -> dict[bytes, _Box]:
    return {box.kind: box for box in _mp4_boxes(data, stbl.start, stbl.end, budget)}


def _check_track(data: bytes, trak: _Box, max_samples: int, budget: list[int]) -> None:
    """One `trak`: its tables fit their boxes and declare no more than the samples there are."""
    boxes: dict[bytes, _Box] = {}
    tables: set[bytes] = set()
    handler = b""

    def walk(parent: _Box, depth: int) -> None:
        nonlocal handler
        if depth > MAX_DEPTH:
            raise VideoError(f"boxes nested more than {MAX_DEPTH} deep")
        for box in _mp4_boxes(data, parent.start, parent.end, budget):
            if box.kind == b"hdlr" and not handler:  # the media handler; QuickTime's data handler follows
                handler = data[box.start + 8:box.start + 12] if box.end - box.start >= 12 else b"?"
            table = SAMPLE_TABLE_KINDS.get(box.kind)
            if table is not None:
                if table in tables:
                    raise VideoError(f"a track holds a second {box.kind.decode()} table "
                                     f"({table.decode()} kind); FFmpeg would use the unchecked copy")
                tables.add(table)
            if box.kind in MP4_CONTAINER_BOXES:
                walk(box, depth + 1)
            else:
                boxes.setdefault(box.kind, box)

    walk(trak, 0)
    limit = max_samples if handler == VIDEO_HANDLER else MAX_TRACK_SAMPLES
    samples = 0
    if b"stsz" in boxes:
        size, samples = _uint(data, boxes[b"stsz"], 4), _uint(data, boxes[b"stsz"], 8)
        if size == 0:
            _table(data, boxes[b"stsz"], 4, first_row=12)
    elif b"stz2" in boxes:
        field_bits = _uint(data, boxes[b"stz2"], 4) & 0xFF
        size, samples = 0, _table(data, boxes[b"stz2"], 0, first_row=12)
        if samples * max(field_bits, 4) // 8 > boxes[b"stz2"].end - boxes[b"stz2"].start - 12:
            raise VideoError("box b'stz2' declares more sample sizes than it holds")
    kind = "video track" if handler == VIDEO_HANDLER else f"track ({handler.decode('latin-1')!r})"
    if samples > limit:
        raise VideoError(f"the {kind} declares {samples} samples, more than the {limit} allowed")
    if samples * max(size, 1) > len(data):
        raise VideoError(f"the {kind} declares {samples} samples of {size} bytes, more than the "
                         f"{len(data)}-byte file holds")
    declared = {}
    for name, row_bytes in ((b"stts", 8), (b"ctts", 8)):
        if name in boxes:
            declared[name] = _column_sum(data, boxes[name], _table(data, boxes[name], row_bytes), row_bytes)
    if b"stss" in boxes:
        declared[b"stss"] = _table(data, boxes[b"stss"], 4)
    chunk_box = boxes.get(b"stco") or boxes.get(b"co64")
    if chunk_box is not None:
        chunks = _table(data, chunk_box, 4 if chunk_box.kind == b"stco" else 8)
        if b"stsc" in boxes:
            declared[b"stsc"] = _stsc_samples(data, boxes[b"stsc"], chunks)
    if b"elst" in boxes:
        version = data[boxes[b"elst"].start]
        _table(data, boxes[b"elst"], 20 if version == 1 else 12)
    for name, count in declared.items():
        if count > samples:
            raise VideoError(f"the {kind}'s {name.decode()} table declares {count} samples, the "
                             f"track has {samples}")


def _check_fragment(data: bytes, moof: _Box, totals: dict[int, int], budget: list[int]) -> None:
    """A movie fragment: each run's samples fit in the file; per-track totals are summed."""
    for traf in _mp4_boxes(data, moof.start, moof.end, budget):
        if traf.kind != b"traf":
            continue
        track, default_size = 0, 0
        for box in _mp4_boxes(data, traf.start, traf.end, budget):
            if box.kind == b"tfhd":
                flags, track = _uint(data, box, 0) & 0xFFFFFF, _uint(data, box, 4)
                offset = 8 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0) + (4 if flags & 0x8 else 0)
                default_size = _uint(data, box, offset) if flags & 0x10 else 0
            elif box.kind == b"trun":
                flags, samples = _uint(data, box, 0) & 0xFFFFFF, _uint(data, box, 4)
                row_bytes = 4 * bin(flags & 0xF00).count("1")  # duration, size, flags, offset
                header = 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
                if samples * row_bytes > box.end - box.start - header:
                    raise VideoError(f"a fragment run declares {samples} samples, its box holds fewer")
                if samples * max(default_size if not flags & 0x200 else 1, 1) > len(data):
                    raise VideoError(f"a fragment run declares {samples} samples, more than the "
                                     f"{len(data)}-byte file holds")
                totals[track] = totals.get(track, 0) + samples


def check_mp4_header(data: bytes, max_frames: int) -> None:
    """Raise VideoError if the MP4's header declares more than its bytes can hold (see the
    module docstring); `max_frames` bounds the video track."""
    budget = [MAX_HEADER_NODES]
    movies, tracks, fragment_totals = 0, 0, {}
    for box in _mp4_boxes(data, 0, len(data), budget):
        if box.kind == b"moov":
            movies += 1
            if movies > 1:
                raise VideoError("the container holds more than one movie header (moov)")
            for child in _mp4_boxes(data, box.start, box.end, budget):
                if child.kind == b"trak":
                    tracks += 1
                    if tracks > MAX_TRACKS:
                        raise VideoError(f"more than {MAX_TRACKS} tracks")
                    _check_track(data, child, max_frames, budget)
        elif box.kind == b"moof":
            _check_fragment(data, box, fragment_totals, budget)
    for track, total in fragment_totals.items():
        if total > max(max_frames, MAX_TRACK_SAMPLES):
            raise VideoError(f"the fragments of track {track} declare {total} samples, more than "
                             f"the {max(max_frames, MAX_TRACK_SAMPLES)} allowed")
