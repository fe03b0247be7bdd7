"""Vocabulary, settings loading, atomic writes, work shares and the `classes` command."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.config import SettingsError, load_settings, parse_set_options
from smile_data.distributed import resolve_work_share
from smile_data.io import TMP_MARK, atomic_path, remove_stale_temporaries, write_json_atomic
from smile_data.jobs import WorkShare
from smile_data.vocabulary import load_released_objects, load_vocabulary


def test_vocabulary_and_released_list_ship_with_the_package():
    vocabulary = load_vocabulary()
    assert len(vocabulary) == 1203
    monitor = vocabulary.by_id(698)
    assert monitor.name == "monitor_(computer_equipment) computer_monitor"
    assert vocabulary.by_name(monitor.name) is monitor
    assert vocabulary.by_id(1).prompt_name == "aerosol can"
    released = load_released_objects()
    assert len(released) == 60687
    names = {path.split("/")[0] for path in released}
    assert len(names) == 1203 and names <= {c.name for c in vocabulary}


def test_search_by_name_synonym_and_frequency():
    vocabulary = load_vocabulary()
    assert [c.name for c in vocabulary.search("spray can")] == ["aerosol_can"]  # a synonym
    rare = vocabulary.search("", frequency="r")
    assert rare and all(c.frequency == "r" for c in rare)
    assert len(vocabulary.search("")) == 1203


def test_classes_command():
    runner = CliRunner()
    result = runner.invoke(app, ["classes", "computer monitor"])
    assert result.exit_code == 0 and "698" in result.stdout
    result = runner.invoke(app, ["classes", "--frequency", "x"])
    assert result.exit_code != 0


def test_samples_command_prints_the_shipped_files_and_their_folder():
    runner = CliRunner()
    videos = runner.invoke(app, ["samples", "videos"], catch_exceptions=False).stdout.split()
    folder = runner.invoke(app, ["samples", "video-folder"], catch_exceptions=False).stdout.strip()
    assert videos and all(path.endswith(".mp4") and path.startswith(folder + "/") for path in videos)
    photos = runner.invoke(app, ["samples", "photos"], catch_exceptions=False).stdout.split()
    assert photos and all(path.endswith((".png", ".jpg")) for path in photos)
    assert runner.invoke(app, ["samples", "music"]).exit_code == 2


@dataclasses.dataclass
class Example:
    ratio: float = 0.8
    steps: int = 50
    name: str = "a"
    flag: bool = True
    sizes: tuple[int, ...] = (1, 2)


def test_settings_from_defaults_yaml_and_overrides(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("steps: 10\nsizes: [4, 5]\n")
    settings = load_settings(Example, config, parse_set_options(["ratio=0.5", "flag=false"]))
    assert settings == Example(ratio=0.5, steps=10, name="a", flag=False, sizes=(4, 5))


@pytest.mark.parametrize("overrides,message", [
    ({"stpes": 3}, "unknown setting"), ({"steps": "many"}, "expected int"),
    ({"steps": 2.5}, "expected int"), ({"flag": "maybe"}, "true/false"),
])
def test_bad_settings_are_refused_with_the_key(overrides, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(Example, None, overrides)


def test_bad_settings_files(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(Example, tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("- a list\n")
    with pytest.raises(SettingsError, match="broken.yaml"):
        load_settings(Example, broken)
    with pytest.raises(SettingsError, match="key=value"):
        parse_set_options(["novalue"])


def test_atomic_writes_leave_nothing_half_written(tmp_path):
    target = tmp_path / "out" / "card.json"
    write_json_atomic(target, {"b": 1, "a": 2})
    assert target.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text().startswith("{")  # the old file survives a failed write



def test_stale_temporaries_are_removed_only_where_and_as_asked(tmp_path):
    out = tmp_path / "out"
    (out / "nested").mkdir(parents=True)
    for name in (f"card.json{TMP_MARK}123", f"shard.tar{TMP_MARK}7", f"notes{TMP_MARK}draft.txt"):
        (out / name).write_text("x")
    (out / "nested" / f"card.json{TMP_MARK}9").write_text("someone else's")
    assert remove_stale_temporaries(out, lambda name: name == "card.json") == 1
    assert not (out / f"card.json{TMP_MARK}123").exists()
    assert remove_stale_temporaries(out) == 1  # <name>.tmp-<pid> only, never below the folder
    assert sorted(p.name for p in out.iterdir()) == ["nested", f"notes{TMP_MARK}draft.txt"]
    assert (out / "nested" / f"card.json{TMP_MARK}9").exists()
    assert remove_stale_temporaries(tmp_path / "missing") == 0


def test_work_share_from_flags_and_launchers(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_PROCID", "2")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert resolve_work_share() == WorkShare(2, 4)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert resolve_work_share() == WorkShare(1, 3)
    assert resolve_work_share(0, 1) == WorkShare(0, 1)
    assert [list(WorkShare(rank, 3).tasks(8)) for rank in range(3)] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert WorkShare(1, 3).tasks(0) == range(0) and list(WorkShare(2, 3).tasks(2)) == [1]
    with pytest.raises(ValueError):
        WorkShare(3, 3)


def test_a_launcher_rank_outside_its_world_names_the_variables():
    from smile_train.loop.runtime import launch_from_environment

    assert launch_from_environment({"RANK": "1", "WORLD_SIZE": "2"}).rank == 1
    with pytest.raises(ValueError, match="launcher variables .*RANK.*rank 2 is not within world size 2"):
        launch_from_environment({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="launcher variables .*SLURM_PROCID.*invalid literal"):
        launch_from_environment({"SLURM_PROCID": "x", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n1"})
