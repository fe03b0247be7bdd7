"""A user's mistake ends the real CLI (run in a child process) with one line, `error: ...`, that
names the file, key or value at fault, and exit status 2: no traceback."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from smile_data.config import SettingsError
from smile_train.settings.pretrain import load_pretrain_stages
from tests.conftest import write_test_card, write_test_shards
from tests.hostile.conftest import Case, Outcome


@pytest.fixture
def case(tmp_path) -> Case:
    """A folder to run the CLI in (tests/hostile/conftest.py: inputs, out/, what was written)."""
    return Case(tmp_path / "case")


def refused_in_one_line(outcome: Outcome, *fragments: str) -> str:
    """The one `error:` line of a refused command, holding every fragment."""
    outcome.refused(*fragments)
    errors = [line for line in outcome.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, outcome.output[-3000:]
    assert all(fragment in errors[0] for fragment in fragments), errors[0]
    return errors[0]


def test_a_missing_dataset_folder_is_named_as_missing(case: Case):
    outcome = case.run("smile-data", "validate", "no/such/folder")
    line = refused_in_one_line(outcome, "no/such/folder: no such folder")
    assert "merge-shards" not in line
    case.input.joinpath("empty").mkdir()
    outcome = case.run("smile-data", "validate", "input/empty")
    refused_in_one_line(outcome, "input/empty: not a dataset folder (no dataset.json)")


def test_a_yaml_syntax_error_names_the_file_line_and_column(case: Case):
    broken = case.input / "broken.yaml"
    broken.write_text("model: tiny\nbatch_size: 4\nmask:\n  - a\n   b: c\n")
    outcome = case.run("smile-data", "render", "--out", "out/x", "--config", "input/broken.yaml")
    line = refused_in_one_line(outcome, "input/broken.yaml, line 5, column 5: not valid YAML")
    assert "<unicode string>" not in line


def test_an_unknown_key_suggests_the_near_one_first(case: Case):
    outcome = case.run("smile-train", "pretrain", "--set", "batch_sise=8")
    line = refused_in_one_line(outcome, "unknown setting batch_sise (did you mean batch_size?)")
    assert line.index("did you mean") < line.index("known:")
    config = case.input / "render.yaml"
    config.write_text("clip: 4\n")
    outcome = case.run("smile-data", "render", "--config", "input/render.yaml", "--out", "out/x")
    refused_in_one_line(outcome, "input/render.yaml: unknown setting clip (did you mean clips?)")
    staged = case.input / "staged.yaml"
    staged.write_text("stages:\n  - name: stage1\n  - name: stage2\n")
    with pytest.raises(SettingsError, match=r"no stage named 'stag1' \(did you mean stage1\?\)"):
        load_pretrain_stages(str(staged), {"stag1.epochs": 3})


def test_cuda_asked_for_on_a_machine_without_it(case: Case):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    outcome = case.run("smile-train", "pretrain", "--set", "device=cuda", "--set", "model=tiny")
    refused_in_one_line(outcome, "setting 'device' is 'cuda'", "no CUDA device", "device=cpu")


def _corrupt_first_frame(shard: Path) -> None:
    """Replace the first member (a frame) of `shard` by bytes that are no image."""
    with tarfile.open(shard) as source:
        members = [(info, source.extractfile(info).read()) for info in source.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as target:
        for index, (info, payload) in enumerate(members):
            payload = b"not an image" if index == 0 else payload
            info.size = len(payload)
            target.addfile(info, io.BytesIO(payload))


def test_reaching_max_corrupt_samples_in_a_loader_worker(case: Case):
    folder = case.input / "data"
    shards = write_test_shards(folder, clips=4, frames=4, size=32, per_shard=4)
    _corrupt_first_frame(shards[0])
    write_test_card(folder, shards)  # the card agrees: the sample is corrupt, not altered
    settings = ["shards=input/data", "model=tiny", "target=pixel", "mask=tube", "input_size=32",
                "frames=4", "batch_size=2", "max_steps=1", "num_workers=1", "shuffle_buffer=0",
                "max_corrupt_samples=0", "device=cpu", "out_dir=out/run"]
    outcome = case.run("smile-train", "pretrain", *(arg for s in settings for arg in ("--set", s)),
                       timeout=120)
    line = refused_in_one_line(outcome, "more than 0 corrupt samples in one loader worker",
                               "clips-000000.tar", "max_corrupt_samples")
    assert "Original Traceback" not in outcome.output and line.count("corrupt samples in") == 1


def test_a_file_that_is_no_checkpoint(case: Case):
    (case.input / "weights.pt").write_bytes(b"\x80\x07 not a checkpoint" * 8)
    outcome = case.run("smile-train", "export", "--checkpoint", "input/weights.pt", "--out", "out/hf")
    line = refused_in_one_line(outcome, "input/weights.pt: not a zip checkpoint")
    assert "weights_only" not in line and "arbitrary code" not in line


def test_a_stage_that_does_not_exist(case: Case):
    outcome = case.run("smile-train", "show-batch", "--stage", "stage3", "--out", "out/sheet")
    refused_in_one_line(outcome, "--stage stage3", "stages: pretrain")


def test_an_object_store_that_cannot_be_reached(case: Case, monkeypatch):
    closed_port = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x",
                   "AWS_SECRET_ACCESS_KEY": "x", "AWS_MAX_ATTEMPTS": "1"}
    for name, value in closed_port.items():
        monkeypatch.setenv(name, value)
    outcome = case.run("smile-data", "validate", "s3://bucket/data")
    refused_in_one_line(outcome, "Could not connect to the endpoint URL", "(EndpointConnectionError)")


def test_a_bank_whose_objects_do_not_decode(case: Case):
    for index in range(3):
        (case.input / "bank" / "dog").mkdir(parents=True, exist_ok=True)
        (case.input / "bank" / "dog" / f"{index}.png").write_bytes(b"not a png")
    outcome = case.run("smile-data", "render", "--bank", "input/bank", "--bg", "noise", "--clips", "2",
                       "--size", "32", "--frames", "2", "--workers", "2", "--out", "out/clips")
    refused_in_one_line(outcome, "input/bank: 4 objects in a row could not be decoded")


def test_a_reader_that_stops_early_is_no_error():
    """`smile-data samples photos | head -1`: the closed pipe ends the command quietly."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-m", "smile_data.cli", "samples", "photos"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # the reader is gone before the command writes (it is still starting)
    error = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1 and error == ""


def test_a_broken_pipe_that_is_not_stdout_is_an_error():
    from typer.testing import CliRunner

    from smile_data.cli_options import make_app

    app = make_app("test")

    @app.command()
    def send() -> None:
        raise BrokenPipeError(32, "Broken pipe")  # a worker's or a store's connection, not stdout

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["send"])
    assert result.exit_code == 2 and "error: " in result.output and "Broken pipe" in result.output
