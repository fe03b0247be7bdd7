"""A YAML config is data: it runs nothing, writes nowhere but out_dir, and cannot blow up."""

from __future__ import annotations

from pathlib import Path

import pytest

from smile_data.config import SettingsError, load_settings
from smile_train.settings.pretrain import PretrainSettings, load_pretrain_stages

TINY_RUN = """\
model: tiny
target: pixel
input_size: 64
batch_size: 2
num_workers: 0
max_steps: 1
device: cpu
"""

BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi")
)


def _config_file(folder: Path, name: str, text: str) -> Path:
    """folder/name, holding `text`."""
    config = folder / name
    config.write_text(text)
    return config


def _pretrain_refuses(case, name: str, text: str, *reasons: str) -> None:
    """`smile-train pretrain --config NAME` (TINY_RUN + text) stops, naming the file and `reasons`."""
    config = _config_file(case.input, name, TINY_RUN + text)
    outcome = case.run("smile-train", "pretrain", "--config", str(config))
    outcome.refused(str(config), *reasons)


def test_a_pipe_url_in_a_config_runs_nothing(case):
    _pretrain_refuses(case, "recipe.yaml", 'shards: "pipe:touch ../marker"\nout_dir: out/run\n',
                      "'shards'", "pipe:", "--allow-commands")


def test_the_command_line_can_opt_in_to_pipe_urls(tmp_path):
    config = _config_file(tmp_path, "recipe.yaml", 'shards: "pipe:cat a.tar"\n')
    with pytest.raises(SettingsError, match="--allow-commands"):
        load_settings(PretrainSettings, config)
    assert load_settings(PretrainSettings, config, allow_commands=True).shards == "pipe:cat a.tar"
    assert load_pretrain_stages(str(config), {}, allow_commands=True)[0][1].shards == "pipe:cat a.tar"


def test_a_stage_name_stays_inside_out_dir(case):
    _pretrain_refuses(case, "stages.yaml", "out_dir: out\nstages:\n  - name: ../../escape\n",
                      "stage name", "plain name")


@pytest.mark.parametrize("stage", ["/tmp/escape", "..", "a/b", 3, ""])
def test_stage_names_are_plain_names(tmp_path, stage):
    config = _config_file(tmp_path, "stages.yaml", f"stages:\n  - name: {stage!r}\n")
    with pytest.raises(SettingsError, match="stage name"):
        load_pretrain_stages(str(config), {})


def test_the_alias_bomb_fails_fast_in_a_limited_child(case):
    config = _config_file(case.input, "laughs.yaml", BILLION_LAUGHS)
    outcome = case.run("smile-data", "render", "--config", str(config), "--out", "out/x", timeout=30)
    outcome.refused(str(config), "aliases are expanded")


@pytest.mark.parametrize("text, problem", [
    (BILLION_LAUGHS, "aliases are expanded"),
    ("shards: " + "[" * 200 + "]" * 200 + "\n", "nested deeper than"),
    ("x: &x [*x]\n", "aliases are expanded"),
    ("shards: [a.tar, b.tar]\n", "setting 'shards': expected str"),
    ("seed: [1]\n", "setting 'seed': expected int"),
    ("max_steps: true\n", "setting 'max_steps': expected int"),
    ("base_lr: .nan\n", "setting 'base_lr': expected a finite number"),
    ("crop_scales: {a: 1}\n", "setting 'crop_scales': expected a list"),
    ("!!python/object/apply:os.system [touch marker]\n", "not valid YAML"),
])
def test_a_hostile_config_is_refused(tmp_path, text, problem):
    config = _config_file(tmp_path, "recipe.yaml", text)
    with pytest.raises(SettingsError) as refused:
        load_pretrain_stages(str(config), {})
    assert str(config) in str(refused.value) and problem in str(refused.value)


def test_an_oversized_config_is_refused_before_parsing(case):
    config = _config_file(case.input, "huge.yaml", "# padding\n" * 200_000)
    outcome = case.run("smile-data", "render", "--config", str(config), "--out", "out/x", timeout=30)
    outcome.refused(str(config), "larger than")
