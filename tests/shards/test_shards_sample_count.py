"""Epoch lengths without a card: video2dataset's stats files and tar headers."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from smile_data.shards.sample_count import count_samples, header_count, stats_count


def write_tar(path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def video2dataset_folder(folder, samples_per_shard=(3, 2), stats=True):
    """Shards `00000.tar`, `00001.tar` with <key>.mp4 / .json / .txt members, and (stats) the
    `<shard>_stats.json` files video2dataset writes beside them."""
    folder.mkdir()
    for shard, count in enumerate(samples_per_shard):
        members = []
        for index in range(count):
            key = f"{shard:05d}{index:04d}"
            members += [(f"{key}.mp4", b"\0" * 700), (f"{key}.json", b"{}"), (f"{key}.txt", b"a video")]
        write_tar(folder / f"{shard:05d}.tar", members)
        if stats:
            (folder / f"{shard:05d}_stats.json").write_text(json.dumps(
                {"count": count + 1, "successes": count, "failed_to_download": 1, "status_dict": {}}))
    return [str(folder / f"{shard:05d}.tar") for shard in range(len(samples_per_shard))]


def test_video2dataset_stats_give_the_count(tmp_path):
    urls = video2dataset_folder(tmp_path / "v2d")
    counted = count_samples(urls)
    assert counted.total == 5 and counted.describe() == "2 shards from video2dataset _stats.json"


def test_tar_headers_give_the_count_when_there_is_no_stats_file(tmp_path):
    urls = video2dataset_folder(tmp_path / "v2d", stats=False)
    counted = count_samples(urls)
    assert counted.total == 5 and counted.describe() == "2 shards from tar headers"
    assert header_count(urls[0]) == 3


def test_refused_members_are_not_counted(tmp_path):
    write_tar(tmp_path / "odd.tar", [("a.mp4", b"x"), ("a.json", b"{}"), ("b.exe", b"x"),
                                     ("../c.mp4", b"x"), ("d.mp4", b"x")])
    assert header_count(tmp_path / "odd.tar") == 2


def one_shard_and_its_stats(tmp_path) -> tuple[str, Path]:
    """A video2dataset folder of one 1-sample shard: (the shard's url, its stats file)."""
    urls = video2dataset_folder(tmp_path / "v2d", samples_per_shard=(1,))
    return urls[0], tmp_path / "v2d" / "00000_stats.json"


@pytest.mark.parametrize("stats_text, problem", [
    (json.dumps({"successes": 10**12}), r"00000_stats.json: successes 1000000000000 .* 00000.tar"),
    *[(bad, "00000_stats.json")
      for bad in ('{"successes": -1}', '{"successes": "7"}', '{"successes": true}', '[1]', 'not json')],
])
def test_a_stats_count_the_shard_cannot_hold_is_refused(tmp_path, stats_text, problem):
    url, stats = one_shard_and_its_stats(tmp_path)
    stats.write_text(stats_text)
    with pytest.raises(ValueError, match=problem):
        stats_count(url)


def test_a_stats_file_linked_out_of_the_folder_is_not_read(tmp_path):
    url, stats = one_shard_and_its_stats(tmp_path)
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"successes": 1}))
    stats.unlink()
    stats.symlink_to(outside)
    with pytest.raises(ValueError, match="outside"):
        stats_count(url)


def test_cards_win_and_pipes_cannot_be_counted(tiny_shards):
    urls = sorted(str(p) for p in tiny_shards.glob("clips-*.tar"))
    counted = count_samples(urls)
    assert counted.total == 12 and counted.describe() == "3 shards from dataset.json"
    assert count_samples([f"pipe:cat {urls[0]}"]) is None


def test_a_damaged_tar_is_named(tmp_path):
    (tmp_path / "bad.tar").write_bytes(b"\x01" * 1024)
    with pytest.raises(ValueError, match="bad.tar: not a readable uncompressed tar"):
        count_samples([str(tmp_path / "bad.tar")])
