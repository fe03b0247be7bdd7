"""`smile-data publish DIR URL` to a local folder and to moto's S3 server, then `fetch` and
`validate` of what arrived: only the dataset's own files go up, the card last; a rerun (after a
kill mid-upload, too) sends only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.shards.publish import publish_dataset
from smile_data.shards.validate import validate_dataset
from tests.loopback import s3_bucket, throttled_relay

REPO = Path(__file__).resolve().parents[2]
DATASET_FILES = {"clips-000000.tar", "clips-000001.tar", "clips-000002.tar", "clips-000003.tar",
                 "manifest.parquet", "README.md", "preview.png", "dataset.json"}
UPLOAD_BYTES_PER_SECOND = 20_000  # through the relay: a 40 kB shard takes about 2 s
WAIT_SECONDS = 60


def card_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "dataset.json").read_bytes()).hexdigest()


def publish_cli(*args: str) -> tuple[str, str]:
    """Run `smile-data publish ARGS` in-process; (stdout: the fetch line, stderr)."""
    result = CliRunner().invoke(app, ["publish", *args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return result.stdout.strip(), result.stderr


def fetch_and_validate(fetch_line: str, out: Path, source: Path) -> None:
    """Run the printed fetch line (with its --out replaced by `out`), then validate the mirror."""
    words = shlex.split(fetch_line)
    assert words[:2] == ["smile-data", "fetch"] and words[words.index("--card-sha256") + 1] == card_sha256(source)
    words[words.index("--out") + 1] = str(out)
    result = CliRunner().invoke(app, words[1:])
    assert result.exit_code == 0, result.output
    report = validate_dataset(out)
    assert report.ok and report.samples == 12, report.problems
    assert (out / "dataset.json").read_bytes() == (source / "dataset.json").read_bytes()


def test_publish_to_a_folder_then_fetch_and_validate(dataset, tmp_path):
    assert (dataset / "progress").is_dir() and list(dataset.glob(".lock-*"))
    (dataset / "clips-000004.tar.partial").write_bytes(b"a download in progress")
    sent = tmp_path / "sent"
    fetch_line, summary = publish_cli(str(dataset), str(sent))
    assert f"{sent}: 8 files uploaded" in summary
    assert {p.name for p in sent.iterdir()} == DATASET_FILES  # no progress/, locks or .partial
    assert fetch_line == f"smile-data fetch {sent} --out dataset --card-sha256 {card_sha256(dataset)}"
    fetch_and_validate(fetch_line, tmp_path / "received", dataset)
    # a rerun sends nothing; a file that differs at the destination is sent again
    (sent / "clips-000002.tar").write_bytes(b"cut short")
    (sent / "clips-000001.tar.tmp-99999").write_bytes(b"left by a killed run")
    report = publish_dataset(dataset, sent, quick=True, show_progress=False)
    assert report.uploaded == ["clips-000002.tar"] and len(report.already_there) == 7
    assert {p.name for p in sent.iterdir()} == DATASET_FILES
    assert validate_dataset(sent).ok


def test_publish_to_s3_then_fetch_and_validate(dataset, tmp_path):
    with s3_bucket("published") as (store, _):
        fetch_line, _ = publish_cli(str(dataset), "s3://published/clips", "--quick")
        assert {key.rsplit("/", 1)[-1] for key in store.find("published")} == DATASET_FILES
        assert fetch_line.startswith("smile-data fetch s3://published/clips --out dataset ")
        assert validate_dataset("s3://published/clips", card_sha256=card_sha256(dataset)).ok
        fetch_and_validate(fetch_line, tmp_path / "received", dataset)


def _wait_for_object(store, key: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        store.invalidate_cache()
        if store.exists(key):
            return
        time.sleep(0.05)
    raise AssertionError(f"{key} did not appear (publish exited with {process.poll()})")


def test_a_publish_killed_mid_upload_resumes(dataset, tmp_path):
    with s3_bucket("resumed") as (store, endpoint):
        with throttled_relay(endpoint, UPLOAD_BYTES_PER_SECOND) as slow_endpoint:
            command = [sys.executable, "-m", "smile_data.cli", "publish", str(dataset),
                       "s3://resumed/clips", "--quick", "--workers", "1", "--no-progress"]
            environment = {**os.environ, "PYTHONPATH": str(REPO), "AWS_ENDPOINT_URL": slow_endpoint}
            process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            try:
                _wait_for_object(store, "resumed/clips/clips-000000.tar", process)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait()
        store.invalidate_cache()
        arrived = {key.rsplit("/", 1)[-1] for key in store.find("resumed")}
        assert "clips-000000.tar" in arrived and "clips-000003.tar" not in arrived
        assert "dataset.json" not in arrived  # a lab cannot fetch a part
        report = publish_dataset(dataset, "s3://resumed/clips", quick=True, show_progress=False)
        assert set(report.already_there) == arrived
        assert set(report.uploaded) == DATASET_FILES - arrived and report.uploaded[-1] == "dataset.json"
        fetch_and_validate(report.fetch_command, tmp_path / "received", dataset)


def test_refusals(dataset, tmp_path, write_synthetic):
    other = tmp_path / "other"
    write_synthetic(other, card={"settings": {"seed": 1}})
    sent = tmp_path / "sent"
    publish_dataset(other, sent, quick=True, show_progress=False)
    with pytest.raises(ValueError, match=r"sent/dataset\.json: holds another dataset's card"):
        publish_dataset(dataset, sent, quick=True, show_progress=False)
    card = json.loads((dataset / "dataset.json").read_text())
    (dataset / card["shards"][1]["name"]).write_bytes(b"damaged")
    with pytest.raises(ValueError, match=r"not published, 1 problem\(s\) found by validation "
                                         r"\(clips-000001.tar: 7 bytes, dataset.json says"):
        publish_dataset(dataset, tmp_path / "elsewhere", quick=True, show_progress=False)
    assert not (tmp_path / "elsewhere").exists()
    result = CliRunner().invoke(app, ["publish", str(tmp_path / "nothing"), str(tmp_path / "x")])
    assert result.exit_code == 2 and "nothing: no such folder" in result.stderr
