"""Video folders and lists from elsewhere: no link followed out of the root, no FIFO opened."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from smile_data.render.sources import SourceError, list_sources, read_video_frames, VIDEO_EXTENSIONS


@pytest.fixture
def hostile_folder(tmp_path):
    elsewhere = tmp_path / "private.mp4"
    elsewhere.write_bytes(b"not yours")
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "kept.mp4").write_bytes(b"a video")
    (folder / "out.mp4").symlink_to(elsewhere)
    (folder / "inside.mp4").symlink_to(folder / "sub" / "kept.mp4")  # a link within: fine
    if sys.platform.startswith("linux"):
        os.mkfifo(folder / "pipe.mp4")
    return folder


def test_a_video_folder_skips_links_out_and_special_files(hostile_folder, caplog):
    with caplog.at_level(logging.WARNING):
        sources = list_sources(str(hostile_folder), "", VIDEO_EXTENSIONS, "videos")
    assert [s.name for s in sources] == ["inside.mp4", "sub/kept.mp4"]
    assert "out.mp4: skipped: a link to" in caplog.text
    if sys.platform.startswith("linux"):
        assert "pipe.mp4: skipped: a FIFO" in caplog.text


@pytest.mark.parametrize("lines, problem", [
    ("sub/kept.mp4 1\nout.mp4 2\n", r"list.txt:2: out.mp4 leads to .*private.mp4, outside"),
    ("../private.mp4 2\n", r"list.txt:1: ../private.mp4 leads to"),
])
def test_a_video_list_entry_leading_out_of_its_root_names_its_line(hostile_folder, lines, problem):
    listing = hostile_folder / "list.txt"
    listing.write_text(lines)
    with pytest.raises(ValueError, match=problem):
        list_sources(str(listing), "", VIDEO_EXTENSIONS, "videos")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mkfifo")
def test_a_fifo_listed_as_a_video_is_refused_before_opening(hostile_folder):
    with pytest.raises(SourceError, match="a FIFO, not a regular file"):
        read_video_frames(str(hostile_folder / "pipe.mp4"), lambda length: [0])
