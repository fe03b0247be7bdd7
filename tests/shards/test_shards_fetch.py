"""`smile-data fetch` from a loopback HTTP server: killed mid-download and resumed with a range
request, verified against the card, atomic, and a subset of shards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.shards.fetch import fetch_dataset, select_shards
from smile_data.shards.validate import validate_dataset
from tests.conftest import write_test_shards
from tests.loopback import http_server
from tests.shards.test_shards_remote import alter_sample

REPO = Path(__file__).resolve().parents[2]
SLOW_BYTES_PER_SECOND = 2_000_000  # a shard of a few MB takes seconds
WAIT_SECONDS = 60


def wait_for_partial(folder: Path, process: subprocess.Popen) -> Path:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        partials = [p for p in folder.glob("*.partial") if p.stat().st_size > 0]
        if partials:
            return partials[0]
        time.sleep(0.05)
    raise AssertionError(f"no partial file appeared (fetch exited with {process.poll()})")


def test_fetch_killed_then_resumed(tmp_path):
    dataset = tmp_path / "served"
    write_test_shards(dataset, clips=8, size=128)  # 2 shards of ~3 MB: several range blocks
    out = tmp_path / "mirror"
    with http_server(dataset, bytes_per_second=SLOW_BYTES_PER_SECOND) as server:
        command = [sys.executable, "-m", "smile_data.cli", "fetch", server.url, "--out", str(out),
                   "--workers", "1"]
        process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO)},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            partial = wait_for_partial(out, process)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        kept = partial.stat().st_size
        name = partial.name.removesuffix(".partial")
        assert not (out / name).exists() and not (out / "dataset.json").exists()
        server.bytes_per_second = 0
        result = CliRunner().invoke(app, ["fetch", server.url, "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert "(1 resumed)" in result.output
        ranges = [r for _, path, r in server.requests if path.endswith(name) and r]
        assert any(r.startswith(f"bytes={kept}-") for r in ranges), ranges
    assert not list(out.glob("*.partial"))
    assert validate_dataset(out).ok
    assert (out / "dataset.json").read_bytes() == (dataset / "dataset.json").read_bytes()


def test_fetch_subset_pin_and_altered_shard(dataset, tmp_path):
    pin = hashlib.sha256((dataset / "dataset.json").read_bytes()).hexdigest()
    key = alter_sample(dataset / "clips-000002.tar", 0)
    with http_server(dataset) as server:
        with pytest.raises(ValueError, match="is not the pinned"):
            fetch_dataset(server.url, tmp_path / "pinned", card_sha256="1" * 64, show_progress=False)
        report = fetch_dataset(server.url, tmp_path / "subset", shards="0-1,3", card_sha256=pin,
                               show_progress=False)
        assert report.downloaded == ["clips-000000.tar", "clips-000001.tar", "clips-000003.tar"]
        again = fetch_dataset(server.url, tmp_path / "subset", shards="0-1", show_progress=False)
        assert again.downloaded == [] and len(again.already_present) == 2
        with pytest.raises(ValueError, match="clips-000002.tar: .* sha256 that is not"):
            fetch_dataset(server.url, tmp_path / "all", show_progress=False)
    assert key and not (tmp_path / "all" / "clips-000002.tar").exists()
    assert not list((tmp_path / "all").glob("*.partial"))
    assert not (tmp_path / "all" / "dataset.json").exists()
    with pytest.raises(ValueError, match="outside 0-3"):
        select_shards("2-7", 4)


def test_fetch_card_with_a_huge_manifest_size_is_refused(dataset, tmp_path):
    """The card's manifest size must fit its sample count; within it, the bytes must match."""
    card = json.loads((dataset / "dataset.json").read_text())
    card["manifest"]["bytes"] = 10**15
    (dataset / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="manifest.bytes 1000000000000000 is more than a "
                                         "manifest of its 12 samples can take"):
        fetch_dataset(dataset, tmp_path / "mirror", show_progress=False)
    card["manifest"]["bytes"] += 1 - 10**15 + (dataset / "manifest.parquet").stat().st_size
    (dataset / "dataset.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="manifest.parquet: differs from the sha256 and size"):
        fetch_dataset(dataset, tmp_path / "mirror", show_progress=False)
    assert not list((tmp_path / "mirror").glob("manifest.parquet*"))
