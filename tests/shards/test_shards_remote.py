"""Datasets read from real servers on 127.0.0.1: HTTP with ranges, and S3 (moto) through s3://.

validate, preview and the loader read the card, manifest and shards through fsspec; per-sample
digests catch a shard altered on the server at its first bad sample.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.shards import dataset as dataset_module
from smile_data.shards.integrity import IntegrityError, IntegritySettings
from smile_data.shards.preview import make_preview
from smile_data.shards.sample_count import count_samples
from smile_data.shards.validate import validate_dataset
from smile_train.data.loader import CorruptSampleCounter, expand_urls, tar_samples
from tests.loopback import http_server, s3_bucket


def alter_sample(shard: Path, sample_number: int) -> str:
    """Flip one byte of a frame of the `sample_number`-th sample (size unchanged); its key."""
    with tarfile.open(shard) as archive:
        members = archive.getmembers()
    keys = list(dict.fromkeys(m.name.split(".", 1)[0] for m in members))
    key = keys[sample_number]
    frame = next(m for m in members if m.name.startswith(f"{key}.") and m.name.endswith((".jpg", ".png")))
    data = bytearray(shard.read_bytes())
    data[frame.offset_data + frame.size // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    return key


def loader_keys(url: str, checks: IntegritySettings) -> tuple[list[str], CorruptSampleCounter]:
    counter = CorruptSampleCounter(limit=100)
    keys = [raw["__key__"] for raw in tar_samples(iter([{"url": url}]), counter, checks)]
    return keys, counter


def test_validate_and_preview_over_http(dataset, tmp_path):
    with http_server(dataset) as server:
        url = f"{server.url}/"
        report = validate_dataset(url)
        assert report.ok, report.problems
        assert (report.shards, report.samples) == (4, 12)
        written = make_preview(url, tmp_path / "sheet.png")
        assert written == [tmp_path / "sheet.png"] and written[0].stat().st_size > 0
        assert any(r for r in server.requests if r[2] is not None), "no range request was made"
        result = CliRunner().invoke(app, ["validate", "--quick", url])
        assert result.exit_code == 0, result.output


def test_card_pin_and_unsupported_scheme(dataset):
    pin = hashlib.sha256((dataset / "dataset.json").read_bytes()).hexdigest()
    with http_server(dataset) as server:
        assert validate_dataset(server.url, quick=True, card_sha256=pin).ok
        with pytest.raises(ValueError, match="is not the pinned"):
            validate_dataset(server.url, quick=True, card_sha256="0" * 64)
    with pytest.raises(ValueError, match="unsupported URL scheme 'ftp://'"):
        validate_dataset("ftp://127.0.0.1/data")
    with pytest.raises(ValueError, match="unsupported URL scheme"):
        expand_urls("ftp://127.0.0.1/data/")


def test_altered_shard_is_caught_at_its_first_bad_sample(dataset):
    key = alter_sample(dataset / "clips-000001.tar", 1)
    with http_server(dataset) as server:
        urls = expand_urls(server.url)
        assert len(urls) == 4 and count_samples(urls).total == 12
        with pytest.raises(IntegrityError) as caught:
            keys, _ = [], loader_keys(urls[1], IntegritySettings())
        message = str(caught.value)
        assert server.url in message and "clips-000001.tar" in message and key in message
        # skip: the altered sample is left out and counted; the others are used
        keys, counter = loader_keys(urls[1], IntegritySettings(on_mismatch="skip"))
        assert key not in keys and len(keys) == 2 and counter.total == 1
        # shard: the shard's sha256 is checked at its end, after its samples were yielded
        keys, counter = loader_keys(urls[1], IntegritySettings(mode="shard", on_mismatch="skip"))
        assert key in keys and counter.total == 1
        assert loader_keys(urls[1], IntegritySettings(mode="off"))[1].total == 0
        problems = validate_dataset(server.url).problems
        assert f"clips-000001.tar: sample {key}: sha256 differs from manifest.parquet" in problems
        assert "clips-000001.tar: sha256 differs from dataset.json" in problems


def test_first_bad_sample_stops_before_it_is_yielded(dataset):
    key = alter_sample(dataset / "clips-000000.tar", 2)
    with http_server(dataset) as server:
        counter = CorruptSampleCounter(limit=100)
        seen = []
        with pytest.raises(IntegrityError, match=key):
            for raw in tar_samples(iter([{"url": f"{server.url}/clips-000000.tar"}]), counter):
                seen.append(raw["__key__"])
        assert len(seen) == 2 and key not in seen


def test_a_shard_cut_short_is_caught_at_its_end(dataset):
    shard = dataset / "clips-000000.tar"
    with tarfile.open(shard) as archive:
        last = [m for m in archive.getmembers() if m.name.startswith(archive.getmembers()[-1].name.split(".")[0])]
    shard.write_bytes(shard.read_bytes()[:last[0].offset] + bytes(1024))  # drop the last sample
    keys, counter = loader_keys(str(shard), IntegritySettings(on_mismatch="skip"))
    assert len(keys) == 2 and counter.total == 1
    with pytest.raises(IntegrityError, match="clips-000000.tar: 2 samples read, dataset.json says 3"):
        loader_keys(str(shard), IntegritySettings())


def test_schema_versions_newer_refused_older_read(dataset):
    card = json.loads((dataset / "dataset.json").read_text())
    newer = dataset_module.CARD_SCHEMA_VERSION + 1
    (dataset / "dataset.json").write_text(json.dumps({**card, "schema_version": newer}))
    with pytest.raises(ValueError) as caught:
        dataset_module.load_card(dataset)
    assert f"schema_version {newer}" in str(caught.value)
    assert f"up to {dataset_module.CARD_SCHEMA_VERSION}" in str(caught.value)
    assert "upgrade" in str(caught.value)
    # schema 1: no manifest digest in the card and no sample digests; read and verified by shard
    older = {key: value for key, value in card.items() if key != "manifest"}
    (dataset / "dataset.json").write_text(json.dumps({**older, "schema_version": 1}))
    assert validate_dataset(dataset).ok
    keys, counter = loader_keys(str(dataset / "clips-000000.tar"), IntegritySettings())
    assert len(keys) == 3 and counter.total == 0


def test_newer_sample_metadata_names_both_versions():
    from smile_data.shards import layout

    problems = layout.metadata_problems({"schema_version": layout.SCHEMA_VERSION + 1})
    assert problems[0] == (f"schema_version {layout.SCHEMA_VERSION + 1} is newer than this smile "
                           f"reads (up to {layout.SCHEMA_VERSION}): upgrade smile "
                           "(pip install -U smile)")


def test_dataset_over_s3(dataset, tmp_path):
    with s3_bucket("labdata") as (fs, _):
        fs.put(str(dataset) + "/", "labdata/clips/", recursive=True)
        url = "s3://labdata/clips"
        report = validate_dataset(url, workers=1)
        assert report.ok, report.problems
        (tmp_path / "extra").mkdir()
        shutil.copy(dataset / "clips-000000.tar", tmp_path / "extra" / "clips-000009.tar")
        fs.put(str(tmp_path / "extra" / "clips-000009.tar"), "labdata/clips/clips-000009.tar")
        assert validate_dataset(url, quick=True).problems == [
            "clips-000009.tar: on disk but not in dataset.json"]
        urls = expand_urls(url)
        assert urls[0] == "s3://labdata/clips/clips-000000.tar" and count_samples(urls).total == 12
        keys, counter = loader_keys(urls[0], IntegritySettings())
        assert len(keys) == 3 and counter.total == 0


def test_a_scheme_whose_extra_is_missing_says_what_to_install():
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"pip install 'smile\[gcs\]'"):
            expand_urls("gs://bucket/dataset")
    else:
        pytest.skip("gcsfs is installed here")


def test_cli_refuses_an_unsupported_scheme_with_status_2(monkeypatch, capsys):
    from smile_data.cli import main

    monkeypatch.setattr("sys.argv", ["smile-data", "validate", "ftp://127.0.0.1/data"])
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    assert "unsupported URL scheme 'ftp://'" in capsys.readouterr().err
