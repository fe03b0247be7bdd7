"""CSV and file lists from others: no row dropped silently, odd paths work or fail by line."""

from __future__ import annotations

import pytest

from smile_data.render.sources import parse_list


def names_and_labels(listing, root):
    return [(s.name, s.label) for s in parse_list(listing, root)]


@pytest.mark.parametrize("existing, listing_name, text, expected", [
    pytest.param("a,b.mp4", "list.csv", "a,b.mp4\nc.mp4\n", [("a,b.mp4", None), ("c.mp4", None)],
                 id="a first row with a comma in its path is not a header"),
    pytest.param("my clip.mp4", "list.txt", "my clip.mp4\n", [("my clip.mp4", None)],
                 id="a path with a space and no label works when the file exists"),
])
def test_an_existing_file_is_read_as_a_whole_path(tmp_path, existing, listing_name, text, expected):
    (tmp_path / existing).write_bytes(b"x")
    listing = tmp_path / listing_name
    listing.write_text(text)
    assert names_and_labels(listing, tmp_path) == expected


def test_paths_with_spaces_and_commas_keep_their_labels(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text('path,label\n"my clip, take 2.mp4",3\nplain.mp4,4\n')
    assert names_and_labels(listing, tmp_path) == [("my clip, take 2.mp4", 3), ("plain.mp4", 4)]
    spaced = tmp_path / "list.txt"
    spaced.write_text("my clip.mp4 3\nother clip.mp4 120 5\n")
    assert names_and_labels(spaced, tmp_path) == [("my clip.mp4", 3), ("other clip.mp4", 5)]


@pytest.mark.parametrize("text, line, problem", [
    ("a.mp4 1\nmy clip.mp4\n", 2, "label 'clip.mp4' is not an integer"),
    ("a.mp4,1\nb.mp4,-4\n", 2, "label -4 is outside"),
    ("a.mp4,1\nb.mp4,99999999999\n", 2, "outside 0.."),
    ('a.mp4,1\n"unclosed,3\n', 2, ""),
    ("path,label\n,3\n", 2, "no path"),
])
def test_a_bad_row_fails_with_its_line_number(tmp_path, text, line, problem):
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(ValueError, match=rf"list\.csv:{line}: .*{problem}"):
        parse_list(listing, tmp_path)
