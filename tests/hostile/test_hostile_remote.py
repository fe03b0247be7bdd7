"""Remote datasets that lie or fail: an unpinned card sizing the manifest read, endless or cut
bodies, a server sending one byte a second, 503s, a shard listed twice, two fetches into one
folder. Servers run on 127.0.0.1 in the test process; the CLI runs in a limited child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import write_test_shards
from tests.hostile.conftest import REPO
from tests.hostile.test_hostile_settings import TINY, sets
from tests.loopback import Faults, http_server

CLAIMED_MANIFEST_BYTES = 10**12
FAST_TIMEOUT = "1"  # SMILE_REMOTE_TIMEOUT of the child: a stall is seen within seconds


@pytest.fixture
def served(case) -> Path:
    folder = case.input / "served"
    write_test_shards(folder, clips=6, per_shard=2, frames=4, size=32)
    return folder


def edit_card(folder: Path, change) -> None:
    card = json.loads((folder / "dataset.json").read_text())
    change(card)
    (folder / "dataset.json").write_text(json.dumps(card))


def commands(url: str) -> dict[str, tuple[str, ...]]:
    return {
        "fetch": ("smile-data", "fetch", url, "--out", "out/mirror"),
        "validate": ("smile-data", "validate", url),
        "pretrain": ("smile-train", "pretrain", *sets(*TINY, f"shards={url}", "out_dir=out/run")),
    }


@pytest.mark.parametrize("command", ["fetch", "validate", "pretrain"])
def test_an_unpinned_card_cannot_size_the_manifest_read(case, served, command):
    edit_card(served, lambda card: card["manifest"].update(bytes=CLAIMED_MANIFEST_BYTES))
    with http_server(served, faults=Faults(endless={"manifest.parquet"})) as server:
        outcome = case.run(*commands(f"{server.url}/")[command], timeout=60)
    outcome.refused("dataset.json: manifest.bytes 1000000000000", "of its 6 samples can take")


@pytest.mark.parametrize("command", ["fetch", "validate"])
def test_an_endless_manifest_within_the_bound_stops_at_the_card_size(case, served, command):
    edit_card(served, lambda card: card.pop("manifest"))  # schema 1: no size recorded
    edit_card(served, lambda card: card.update(schema_version=1))
    with http_server(served, faults=Faults(endless={"manifest.parquet"})) as server:
        outcome = case.run(*commands(f"{server.url}/")[command], timeout=60)
    if command == "validate":  # a report, not a refusal: the manifest is one of its problems
        assert outcome.returncode == 1 and "manifest.parquet: more than the" in outcome.output
        assert outcome.peak_rss_mb < 1536
    else:
        outcome.refused("manifest.parquet: more than the", "6 samples can take")


def test_a_body_cut_short_is_retried_then_named(case, served):
    with http_server(served, faults=Faults(cut_short={"clips-000001.tar"})) as server:
        outcome = case.run("smile-data", "fetch", f"{server.url}/", "--out", "out/mirror")
        tries = [path for _, path, _ in server.requests if path.endswith("clips-000001.tar")]
    outcome.refused("clips-000001.tar: reading failed 4 times",
                    "ended before the announced Content-Length")
    assert len(tries) == 4 and not (case.out / "mirror" / "clips-000001.tar").exists()
    assert not (case.out / "mirror" / "dataset.json").exists()


def test_a_server_sending_one_byte_a_second_times_out_with_a_message(case, served, monkeypatch):
    monkeypatch.setenv("SMILE_REMOTE_TIMEOUT", FAST_TIMEOUT)
    with http_server(served, bytes_per_second=1) as server:
        outcome = case.run("smile-data", "fetch", f"{server.url}/", "--out", "out/mirror")
    outcome.refused(f"{server.url}/dataset.json: reading failed 4 times", "SMILE_REMOTE_TIMEOUT")
    assert "too slow" in outcome.output or "no answer within 1 s" in outcome.output
    assert outcome.seconds < 30


def test_a_server_that_is_unavailable_twice_is_retried(case, served):
    faults = Faults(unavailable={"dataset.json": 2, "clips-000000.tar": 3})
    with http_server(served, faults=faults) as server:
        outcome = case.run("smile-data", "fetch", f"{server.url}/", "--out", "out/mirror")
    assert outcome.returncode == 0, outcome.output[-3000:]
    assert (case.out / "mirror" / "clips-000000.tar").read_bytes() == \
        (served / "clips-000000.tar").read_bytes()


def test_a_shard_listed_twice_is_refused(case, served):
    edit_card(served, lambda card: card["shards"].append(dict(card["shards"][0])))
    with http_server(served) as server:
        for name, command in commands(f"{server.url}/").items():
            outcome = case.run(*command)
            outcome.refused("dataset.json: shards[3]: name clips-000000.tar is also shards[0]")
    assert not (case.out / "mirror").exists()


def test_a_corrupt_partial_file_is_never_renamed(case, served):
    """A partial file whose first bytes are not the shard's: the download continues after
    them, and the whole file on disk is checked before the rename."""
    mirror = case.out / "mirror"
    mirror.mkdir(parents=True)
    (mirror / "clips-000000.tar.partial").write_bytes(b"\xff" * 1000)
    with http_server(served) as server:
        outcome = case.run("smile-data", "fetch", f"{server.url}/", "--out", str(mirror))
    outcome.refused("clips-000000.tar: ", "sha256 that is not the dataset.json's")
    assert not (mirror / "clips-000000.tar").exists()
    assert not (mirror / "clips-000000.tar.partial").exists()


def test_a_second_fetch_into_the_same_folder_is_refused(case, served):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with http_server(served, bytes_per_second=20_000) as server:
        first = subprocess.Popen(
            [sys.executable, "-m", "smile_data.cli", "fetch", f"{server.url}/", "--out", "out/mirror",
             "--workers", "1"], cwd=case.root, env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not list((case.out / "mirror").glob("*.partial")) and time.monotonic() < deadline:
                time.sleep(0.05)
            second = case.run("smile-data", "fetch", f"{server.url}/", "--out", "out/mirror")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
    second.refused("out/mirror: another command is writing into this folder", ".lock-fetch")
