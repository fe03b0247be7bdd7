"""Container headers are held to their bytes before FFmpeg opens them (container_header.py,
matroska_header.py): each lie below once made FFmpeg build an index of its declared size."""

from __future__ import annotations

import pytest

from smile_data.samples import sample_videos
from smile_data.video import VideoError, VideoLimits, probe_video
from smile_data.video.container_header import MAX_DEPTH, MAX_TRACKS, check_mp4_header
from smile_data.video.matroska_header import check_matroska_header
from tests.video.video_files import SAMPLE_TABLE, encode_video, mp4_box, patch_sample_table

MANY = 50_000_000


@pytest.fixture(scope="module")
def mp4() -> bytes:
    return encode_video(16, keyframe_interval=8, b_frames=2)


def test_real_videos_pass(mp4):
    for path in sample_videos():
        check_mp4_header(path.read_bytes(), VideoLimits().max_frames)
    check_mp4_header(mp4, 16)
    check_matroska_header(encode_video(16, container="matroska"), VideoLimits())


CONSTANT_SIZE = ("stsz", 4, 1)  # every sample 1 byte: the sizes table is no longer read


@pytest.mark.parametrize("patches, message", [
    ([CONSTANT_SIZE], None),  # still fits: nothing declared beyond the file
    ([CONSTANT_SIZE, ("stsz", 8, MANY)], "the video track declares 50000000 samples, more than the 100000"),
    ([("stsz", 8, MANY)], "box b'stsz' declares 50000000 entries"),
    ([("stts", 8, MANY)], "stts table declares 50000000 samples, the track has 16"),
    ([("stsc", 12, MANY)], "stsc table declares 50000000 samples, the track has 16"),
    ([("ctts", 8, MANY)], "ctts table declares"),
    ([("stss", 4, MANY)], "box b'stss' declares 50000000 entries"),
    ([("stco", 4, MANY)], "box b'stco' declares 50000000 entries"),
])
def test_mp4_tables_that_declare_more_than_they_hold_are_refused(mp4, patches, message):
    lying = mp4
    for box, offset, value in patches:
        lying = patch_sample_table(lying, box, offset, value)
    if message is None:
        check_mp4_header(lying, VideoLimits().max_frames)
        return
    with pytest.raises(VideoError, match=message):
        check_mp4_header(lying, VideoLimits().max_frames)
    with pytest.raises(VideoError, match=message):  # and so the decoder refuses it, unopened
        probe_video(lying)


def test_constant_sample_sizes_must_fit_in_the_file(mp4):
    lying = patch_sample_table(patch_sample_table(mp4, "stsz", 4, 4096), "stsz", 8, 90_000)
    with pytest.raises(VideoError, match="90000 samples of 4096 bytes, more than the"):
        check_mp4_header(lying, VideoLimits().max_frames)


def _box(kind: bytes, payload: bytes) -> bytes:
    return (8 + len(payload)).to_bytes(4, "big") + kind + payload


def _with_moov(mp4: bytes, payload: bytes) -> bytes:
    start, end = mp4_box(mp4, "moov")
    return mp4[:start - 8] + _box(b"moov", payload) + mp4[end:]


def test_mp4_structure_lies_are_refused(mp4):
    moov_start, moov_end = mp4_box(mp4, "moov")
    trak_start, trak_end = mp4_box(mp4, "moov", "trak")
    trak = mp4[trak_start - 8:trak_end]
    many_tracks = _with_moov(mp4, mp4[moov_start:moov_end] + trak * MAX_TRACKS)
    with pytest.raises(VideoError, match=f"more than {MAX_TRACKS} tracks"):
        check_mp4_header(many_tracks, VideoLimits().max_frames)
    nested = b""
    for _ in range(MAX_DEPTH + 2):
        nested = _box(b"trak", _box(b"edts", nested))
    with pytest.raises(VideoError, match="nested more than"):
        check_mp4_header(_with_moov(mp4, mp4[moov_start:moov_end] + nested), VideoLimits().max_frames)
    oversized = mp4[:moov_start - 8] + (10**9).to_bytes(4, "big") + mp4[moov_start - 4:]
    with pytest.raises(VideoError, match="box b'moov' at byte .* declares 1000000000 bytes"):
        check_mp4_header(oversized, VideoLimits().max_frames)
    with pytest.raises(VideoError, match="more than one movie header"):
        check_mp4_header(mp4 + mp4[moov_start - 8:moov_end], VideoLimits().max_frames)


def _with_box_in_sample_table(mp4: bytes, box: bytes) -> bytes:
    """The MP4 with `box` appended to its first track's sample table (every enclosing box grown)."""
    grown = bytearray(mp4)
    for depth in range(1, len(SAMPLE_TABLE) + 1):
        start, end = mp4_box(mp4, *SAMPLE_TABLE[:depth])
        grown[start - 8:start - 4] = (end - start + 8 + len(box)).to_bytes(4, "big")
    _, table_end = mp4_box(mp4, *SAMPLE_TABLE)
    return bytes(grown[:table_end]) + box + bytes(grown[table_end:])


@pytest.mark.parametrize("second", [
    _box(b"stsz", bytes(4) + (1).to_bytes(4, "big") + MANY.to_bytes(4, "big")),  # FFmpeg keeps the last
    _box(b"stz2", bytes(4) + (16).to_bytes(4, "big") + MANY.to_bytes(4, "big")),
], ids=["stsz", "stz2"])
def test_a_second_sample_table_of_a_kind_is_refused(mp4, second):
    with pytest.raises(VideoError, match="a track holds a second .* table"):
        check_mp4_header(_with_box_in_sample_table(mp4, second), VideoLimits().max_frames)


def test_a_quicktime_data_handler_does_not_hide_the_video_track(mp4):
    data_handler = _box(b"hdlr", bytes(8) + b"alis" + bytes(12))  # minf's, after mdia's own
    lying = _with_box_in_sample_table(mp4, data_handler)
    lying = patch_sample_table(patch_sample_table(lying, *CONSTANT_SIZE), "stsz", 8, 200_000)
    with pytest.raises(VideoError, match="the video track declares 200000 samples"):
        check_mp4_header(lying, VideoLimits().max_frames)


def test_fragment_runs_without_per_sample_rows_must_fit_in_the_file(mp4):
    tfhd = _box(b"tfhd", (0x10).to_bytes(4, "big") + (1).to_bytes(4, "big") + (1000).to_bytes(4, "big"))
    trun = _box(b"trun", (0).to_bytes(4, "big") + MANY.to_bytes(4, "big"))
    moof = _box(b"moof", _box(b"mfhd", bytes(8)) + _box(b"traf", tfhd + trun))
    with pytest.raises(VideoError, match="a fragment run declares 50000000 samples, more than"):
        check_mp4_header(mp4 + moof, VideoLimits().max_frames)


# --- Matroska -----------------------------------------------------------------------------------


def _element(element_id: int, payload: bytes, size: int | None = None) -> bytes:
    """An EBML element with an 8-byte size field (`size` overrides the declared size)."""
    declared = len(payload) if size is None else size
    identifier = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return identifier + (0x01 << 56 | declared).to_bytes(8, "big") + payload


def _mkv(*track_children: bytes, tracks: int = 1) -> bytes:
    header = _element(0x1A45DFA3, _element(0x4282, b"webm"))
    track = _element(0xAE, b"".join(track_children))
    return header + _element(0x18538067, _element(0x1654AE6B, track * tracks))


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(4, "big"))


@pytest.mark.parametrize("data, message", [
    (_mkv(_uint(0x83, 1), _element(0xE0, _uint(0xB0, 100_000) + _uint(0xBA, 10))),
     "declares 100000x10 pixels"),
    (_mkv(_uint(0x83, 1), _element(0x6D80, _element(0x6240, _element(0x5034, b"")))),
     r"stored compressed \(ContentCompAlgo 0\)"),
    (_mkv(_uint(0x83, 1), _element(0x63A2, b"codec private", size=10**9)), "declares 1000000000 bytes"),
    (_mkv(_uint(0x83, 1), _element(0x63A2, b"", size=(1 << 56) - 1)), "leaves its size open"),
    (_mkv(_uint(0x83, 2), tracks=MAX_TRACKS + 1), f"more than {MAX_TRACKS} tracks"),
])
def test_matroska_elements_that_declare_more_than_they_hold_are_refused(data, message):
    with pytest.raises(VideoError, match=message):
        check_matroska_header(data, VideoLimits())


def test_matroska_nesting_is_bounded():
    nested = b""
    for _ in range(MAX_DEPTH + 2):
        nested = _element(0x1654AE6B, nested)
    with pytest.raises(VideoError, match="nested more than"):
        check_matroska_header(_element(0x18538067, nested), VideoLimits())
