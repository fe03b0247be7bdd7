"""A file swapped for a link between its check and its opening is not followed (the swap is
simulated at the exact moment: right after the check looked at the file)."""

from __future__ import annotations

import os

import pytest

from smile_data import safe_files
from smile_data.safe_files import UnsafeFile, open_inside, read_inside


@pytest.fixture
def layout(tmp_path):
    """(root, outside, target): a bank root holding spoon/0.png (the target), and a private folder
    outside it holding its own 0.png."""
    root = tmp_path / "bank"
    (root / "spoon").mkdir(parents=True)
    (root / "spoon" / "0.png").write_bytes(b"inside")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "0.png").write_bytes(b"SECRET")
    return root, outside, root / "spoon" / "0.png"


def swap_after_check(monkeypatch, target, root, swap):
    """Run `swap()` right after the check's last look at `target`: the check (outside_problem)
    is first run alone to count its lstat calls on the target, so the swap lands after the
    last of them whatever the implementation of realpath."""
    real_lstat = os.lstat
    seen = []

    def lstat(path, *args, **kwargs):
        result = real_lstat(path, *args, **kwargs)
        if os.fspath(path) == os.fspath(target):
            seen.append(True)
            if len(seen) == looks and swapped is not None:
                swapped.append(True)
                swap()
        return result

    looks, swapped = 0, None
    monkeypatch.setattr(safe_files.os, "lstat", lstat)
    assert safe_files.outside_problem(target, root) is None
    looks, swapped = len(seen), []
    seen.clear()
    return swapped


def test_a_file_swapped_for_a_link_is_not_followed(layout, monkeypatch):
    root, outside, target = layout

    def swap():
        target.unlink()
        target.symlink_to(outside / "0.png")

    done = swap_after_check(monkeypatch, target, root, swap)
    with pytest.raises(UnsafeFile, match="0.png: "):
        read_inside(target, root, 1 << 20)
    assert done and target.is_symlink()


def test_a_folder_swapped_for_a_link_on_the_way_is_caught(layout, monkeypatch):
    root, outside, target = layout

    def swap():
        (root / "spoon").rename(root / "old")
        (root / "spoon").symlink_to(outside)

    done = swap_after_check(monkeypatch, target, root, swap)
    with pytest.raises(UnsafeFile, match="0.png: a link was swapped in since its check"):
        open_inside(target, root)
    assert done


def test_an_unchanged_file_is_read(layout):
    root, _, target = layout
    assert read_inside(target, root, 100) == b"inside"
    with open_inside(target, root) as handle:
        assert handle.name == target or str(handle.name).endswith("0.png")
