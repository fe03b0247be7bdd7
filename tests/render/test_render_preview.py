"""preview of a rendered dataset of several background kinds, each source giving --variants
clips: the sheet shows the first clips of each kind, not only the first source's."""

from __future__ import annotations

from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.shards.preview import PreviewSettings, first_of_each_kind, preview_samples


def test_first_of_each_kind_takes_the_kinds_in_turn():
    kinds = ["noise"] * 4 + ["black"] * 4 + ["noise"] * 4 + ["image"] * 2
    assert first_of_each_kind(kinds, 6) == [0, 1, 4, 5, 12, 13]
    assert first_of_each_kind(kinds, 4) == [0, 1, 4, 12]
    assert first_of_each_kind(["noise"] * 3, 2) == [0, 1]


def test_preview_of_a_variants_set_shows_each_background_kind(tiny_bank, tmp_path):
    out = tmp_path / "clips"
    result = CliRunner().invoke(app, ["render", "--bank", str(tiny_bank), "--bg", "noise", "--bg", "black",
                                      "--clips", "16", "--variants", "4", "--size", "32", "--frames", "2",
                                      "--shard-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown, skipped = preview_samples(out, PreviewSettings(clips=4, frames=2))
    assert skipped == []
    kinds = [sample.metadata["background"]["kind"] for sample in shown]
    assert sorted(set(kinds)) == ["black", "noise"] and kinds.count("noise") == 2
    keys = [sample.key for sample in shown]
    assert keys == sorted(keys)  # in dataset order
    first, _ = preview_samples(out / "clips-000000.tar", PreviewSettings(clips=4, frames=2))
    assert {s.metadata["background"]["kind"] for s in first} == {kinds[0]}  # one shard: its first clips
