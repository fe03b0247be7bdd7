"""A Matroska / WebM file's element headers, checked before FFmpeg opens it.

Each element is an ID and a declared size (EBML variable-length integers). FFmpeg allocates
an element's declared size before reading it (up to 256 MB a binary element), so each size is
held to its parent and to the file here; only a Segment or Cluster may leave its size open
(live recordings do). The walk reads headers only and descends into the elements that hold
tracks and blocks, so it costs time proportional to the file's bytes. Also checked: at most
MAX_TRACKS tracks, a video track's declared frame size within the limits, and no track stored
compressed with zlib, bzip2 or lzo (FFmpeg would inflate every block; header stripping, which
only prepends bytes, is allowed).
"""

from __future__ import annotations

from smile_data.video.container_header import MAX_DEPTH, MAX_HEADER_NODES, MAX_TRACKS
from smile_data.video.limits import VideoError, VideoLimits

SEGMENT, CLUSTER = 0x18538067, 0x1F43B675
TRACKS, TRACK_ENTRY, TRACK_TYPE, VIDEO = 0x1654AE6B, 0xAE, 0x83, 0xE0
PIXEL_WIDTH, PIXEL_HEIGHT = 0xB0, 0xBA
CONTENT_ENCODINGS, CONTENT_ENCODING, CONTENT_COMPRESSION, COMPRESSION_ALGORITHM = (
    0x6D80, 0x6240, 0x5034, 0x4254)
BLOCK_GROUP = 0xA0
HEADER_STRIPPING = 3  # the one ContentCompAlgo that inflates nothing
VIDEO_TRACK_TYPE = 1
# Children of a Segment: an open-sized Cluster ends where the next of these begins.
SEGMENT_CHILDREN = frozenset({CLUSTER, 0x114D9B74, 0x1549A966, TRACKS, 0x1C53BB6B, 0x1941A469,
                              0x1043A770, 0x1254C367, 0xEC, 0xBF})
DESCENDED = frozenset({SEGMENT, CLUSTER, TRACKS, TRACK_ENTRY, VIDEO, CONTENT_ENCODINGS,
                       CONTENT_ENCODING, CONTENT_COMPRESSION, BLOCK_GROUP})
OPEN_SIZE_ALLOWED = frozenset({SEGMENT, CLUSTER})
MAX_ID_BYTES, MAX_SIZE_BYTES = 4, 8
MAX_UINT_BYTES = 8


def _vint(data: bytes, position: int, max_bytes: int, keep_marker: bool) -> tuple[int, int, bool]:
    """(value, bytes used, all value bits set) of the EBML variable-length integer at `position`."""
    if position >= len(data):
        raise VideoError(f"an element header at byte {position} is cut off")
    first = data[position]
    length = 1
    while length <= max_bytes and not first & (0x80 >> (length - 1)):
        length += 1
    if length > max_bytes or position + length > len(data):
        raise VideoError(f"an invalid element header at byte {position}")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in data[position + 1:position + length]:
        value = value << 8 | byte
    all_ones = (first & (0xFF >> length)) == (0xFF >> length) and all(
        b == 0xFF for b in data[position + 1:position + length])
    return value, length, all_ones


class _Walk:
    """One pass over the elements; collects what the checks need."""

    def __init__(self, data: bytes, limits: VideoLimits):
        self.data, self.limits, self.nodes, self.tracks, self.depth = data, limits, 0, 0, 0
        self.track: dict[int, int] = {}

    def elements(self, start: int, end: int, open_ended: bool = False) -> int:
        """Walk the elements in [start, end); returns where the walk stopped (an open-sized
        Cluster stops before the next Segment child)."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise VideoError(f"elements nested more than {MAX_DEPTH} deep")
        try:
            return self._walk(start, end, open_ended)
        finally:
            self.depth -= 1

    def _walk(self, start: int, end: int, open_ended: bool) -> int:
        position = start
        while position < end:
            self.nodes += 1
            if self.nodes > MAX_HEADER_NODES:
                raise VideoError(f"more than {MAX_HEADER_NODES} elements in the container")
            element, id_bytes, _ = _vint(self.data, position, MAX_ID_BYTES, keep_marker=True)
            if open_ended and element in SEGMENT_CHILDREN:
                return position
            size, size_bytes, unknown = _vint(self.data, position + id_bytes, MAX_SIZE_BYTES, False)
            body = position + id_bytes + size_bytes
            if unknown:
                if element not in OPEN_SIZE_ALLOWED:
                    raise VideoError(f"element {element:#x} at byte {position} leaves its size open")
                position = self.elements(body, end, open_ended=element == CLUSTER)
                continue
            if size > end - body:
                raise VideoError(f"element {element:#x} at byte {position} declares {size} bytes, "
                                 f"{end - body} are left")
            self.visit(element, body, body + size)
            position = body + size
        return position

    def visit(self, element: int, start: int, end: int) -> None:
        if element == TRACK_ENTRY:
            self.tracks += 1
            if self.tracks > MAX_TRACKS:
                raise VideoError(f"more than {MAX_TRACKS} tracks")
            self.track = {}
            self.elements(start, end)
            self._check_track()
        elif element in DESCENDED:
            self.elements(start, end)
        elif element in (TRACK_TYPE, PIXEL_WIDTH, PIXEL_HEIGHT, COMPRESSION_ALGORITHM):
            if end - start > MAX_UINT_BYTES:
                raise VideoError(f"element {element:#x} holds {end - start} bytes for an integer")
            self.track[element] = int.from_bytes(self.data[start:end], "big")
        if element == CONTENT_COMPRESSION:
            self.track.setdefault(COMPRESSION_ALGORITHM, 0)  # absent means zlib

    def _check_track(self) -> None:
        algorithm = self.track.get(COMPRESSION_ALGORITHM, HEADER_STRIPPING)
        if algorithm != HEADER_STRIPPING:
            raise VideoError(f"a track is stored compressed (ContentCompAlgo {algorithm})")
        if self.track.get(TRACK_TYPE) == VIDEO_TRACK_TYPE:
            width, height = self.track.get(PIXEL_WIDTH, 0), self.track.get(PIXEL_HEIGHT, 0)
            if width > self.limits.max_width or height > self.limits.max_height:
                raise VideoError(f"the video track declares {width}x{height} pixels, more than "
                                 f"{self.limits.max_width}x{self.limits.max_height}")


def check_matroska_header(data: bytes, limits: VideoLimits) -> None:
    """Raise VideoError if an element of the file declares more than the file holds (see the
    module docstring)."""
    _Walk(data, limits).elements(0, len(data))
