"""Untrusted dataset folders: a card that names a command, a path or a bad shard entry is
refused before anything is opened; preview and validate open only files of the folder."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from smile_data import cli
from smile_data.shards.dataset import load_card
from smile_data.shards.preview import PreviewSettings, make_preview
from smile_data.shards.validate import validate_dataset

PIPE_NAME = "pipe:echo PWNED > marker"


def _edit_first_shard(folder, **changes) -> None:
    card_path = folder / "dataset.json"
    card = json.loads(card_path.read_text())
    card["shards"][0].update(changes)
    card_path.write_text(json.dumps(card))


def test_a_card_naming_a_command_is_refused_and_nothing_runs(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(dataset)  # `smile-data preview .`: "." / name is the bare name
    _edit_first_shard(dataset, name=PIPE_NAME)
    with pytest.raises(ValueError, match=r"dataset\.json: shards\[0\]: name 'pipe:echo"):
        make_preview(".", tmp_path / "sheet.png", PreviewSettings(clips=2))
    for quick in (False, True):
        with pytest.raises(ValueError, match=r"dataset\.json: shards\[0\]"):
            validate_dataset(".", quick=quick)
    for command in (["preview", ".", "--out", str(tmp_path / "s.png")], ["validate", "."]):
        result = CliRunner().invoke(cli.app, command)
        assert result.exit_code == 2 and "shards[0]: name 'pipe:echo" in result.stderr
    assert not (dataset / "marker").exists() and not (tmp_path / "marker").exists()
    assert not (tmp_path / "sheet.png").exists()


@pytest.mark.parametrize("changes,message", [
    ({"name": "../clips-000000.tar"}, "is not a shard file name"),
    ({"name": "/etc/passwd"}, "is not a shard file name"),
    ({"name": "clips-000000.tar\n"}, "is not a shard file name"),
    ({"name": 7}, "is not a shard file name"),
    ({"bytes": "40960"}, "bytes and samples must be non-negative integers"),
    ({"samples": -1}, "bytes and samples must be non-negative integers"),
    ({"samples": True}, "bytes and samples must be non-negative integers"),
    ({"sha256": "abc"}, "sha256 must be 64 lower-case hex digits"),
])
def test_malformed_shard_entries_are_refused_by_name(dataset, changes, message):
    _edit_first_shard(dataset, **changes)
    with pytest.raises(ValueError, match=rf"dataset\.json: shards\[0\]: .*{message}"):
        load_card(dataset)


def test_a_card_without_a_shard_list_is_refused(dataset):
    card = json.loads((dataset / "dataset.json").read_text())
    card["shards"] = {"name": "clips-000000.tar"}
    (dataset / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=r"dataset\.json: shards must be a list"):
        load_card(dataset)


def test_preview_names_a_shard_that_is_not_a_tar(tmp_path):
    shard = tmp_path / "clips-000000.tar"
    shard.write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(ValueError, match=r"clips-000000\.tar: not a readable uncompressed tar"):
        make_preview(shard, tmp_path / "sheet.png")


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["smile-data", *args])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    return exited.value.code, capsys.readouterr().err


def test_main_reports_file_and_tar_errors_with_status_2(dataset, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, err = _main(monkeypatch, capsys, "preview", str(dataset), "--out",
                      str(blocker / "sheet.png"))
    assert code == 2 and err.startswith("error: ") and "a_file" in err
    not_tar = tmp_path / "clips-000000.tar"
    not_tar.write_bytes(b"\x00" * 100 + b"garbage")
    code, err = _main(monkeypatch, capsys, "preview", str(not_tar), "--out", str(tmp_path / "s.png"))
    assert code == 2 and "clips-000000.tar" in err
    broken_yaml = tmp_path / "settings.yaml"
    broken_yaml.write_bytes(b"clips: \xff\xfe\n")
    code, err = _main(monkeypatch, capsys, "preview", str(dataset), "--config", str(broken_yaml))
    assert code == 2 and "settings.yaml: not UTF-8 text" in err


def test_validate_reports_a_shard_that_is_not_a_tar(dataset):
    card = json.loads((dataset / "dataset.json").read_text())
    shard = dataset / card["shards"][1]["name"]
    shard.write_bytes(b"\x01" * shard.stat().st_size)
    problems = [p for p in validate_dataset(dataset).problems if "unreadable tar" in p]
    assert problems and problems[0].startswith(f"{shard.name}: unreadable tar (")
