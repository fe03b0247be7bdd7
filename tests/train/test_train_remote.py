"""A short pretraining run that reads its dataset from a loopback HTTP server (range requests),
in a loader worker process, with every sample verified against the served card."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from smile_train.loop.pretrain import run_pretrain
from tests.loopback import http_server


def test_pretraining_reads_a_dataset_url(tiny_shards, tmp_path):
    served = tmp_path / "served"
    shutil.copytree(tiny_shards, served)
    pin = hashlib.sha256((served / "dataset.json").read_bytes()).hexdigest()
    with http_server(served) as server:
        overrides = dict(
            shards=f"{server.url}/", card_sha256=pin, out_dir=str(tmp_path / "run"),
            model="tiny", target="pixel", input_size=64, frames=16, batch_size=2,
            num_workers=1, shuffle_buffer=4, max_steps=2, epochs=10, warmup_epochs=1,
            save_every_steps=2, log_every_steps=1, device="cpu")
        run_pretrain(None, overrides, resume=False)
        assert any(path.endswith(".tar") for _, path, _ in server.requests)
        with pytest.raises(Exception, match="is not the pinned"):
            run_pretrain(None, {**overrides, "card_sha256": "f" * 64,
                                "out_dir": str(tmp_path / "pinned")}, resume=False)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    assert sum(row.get("corrupt_samples", 0) for row in rows) == 0


def test_integrity_settings_are_checked_at_start():
    from smile_data.config import SettingsError
    from smile_train.settings.checks import check_settings
    from smile_train.settings.pretrain import PretrainSettings

    check_settings(PretrainSettings(integrity="shard", on_integrity_mismatch="skip",
                                    card_sha256="a" * 64))
    for bad in ({"integrity": "all"}, {"on_integrity_mismatch": "ignore"}, {"card_sha256": "abc"}):
        with pytest.raises(SettingsError, match=next(iter(bad))):
            check_settings(PretrainSettings(**bad))


def test_a_local_dataset_folder_stands_for_its_card_shards(tiny_shards):
    from smile_data.shards.sample_count import count_samples
    from smile_train.data.loader import expand_urls

    urls = expand_urls(str(tiny_shards))
    assert urls == [str(tiny_shards / f"clips-00000{i}.tar") for i in range(3)]
    assert count_samples(urls).total == 12
