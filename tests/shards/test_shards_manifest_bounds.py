"""A dataset's manifest is read within what its card can hold: streamed, counted, bounded."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smile_data.shards.dataset import (
    MANIFEST_FIXED_BYTES, MAX_MANIFEST_ROW_BYTES, manifest_byte_limit, parse_card,
)
from smile_data.shards.manifest import checked_manifest, read_manifest_table
from smile_data.shards.remote_stream import TIMEOUT_VARIABLE, timeout_seconds
from tests.conftest import write_test_shards


@pytest.fixture
def small(tmp_path):
    write_test_shards(tmp_path / "ds", clips=3, per_shard=2, frames=2, size=16)
    return tmp_path / "ds"


def test_the_bound_follows_the_card_sample_count(small):
    card = json.loads((small / "dataset.json").read_text())
    assert manifest_byte_limit(card) == MANIFEST_FIXED_BYTES + 3 * MAX_MANIFEST_ROW_BYTES
    card["manifest"]["bytes"] = manifest_byte_limit(card)
    parse_card(json.dumps(card).encode(), "card")  # at the bound: accepted
    card["manifest"]["bytes"] += 1
    with pytest.raises(ValueError, match="card: manifest.bytes .* of its 3 samples"):
        parse_card(json.dumps(card).encode(), "card")


def test_a_manifest_of_many_rows_is_refused_from_its_footer(small):
    """One repeated value compresses a billion rows into a small file: the row count is read
    from the footer and compared with the card before any column is decoded."""
    card = json.loads((small / "dataset.json").read_text())
    rows = pa.table({"shard": pa.array(["clips-000000.tar"] * 200_000),
                     "key": pa.array(["k"] * 200_000)})
    buffer = io.BytesIO()
    pq.write_table(rows, buffer)
    assert buffer.tell() < 10_000
    buffer.seek(0)
    with pytest.raises(ValueError, match="m.parquet: 200000 rows, the shards in dataset.json hold 3"):
        read_manifest_table(buffer, card, "m.parquet", exact=False)


def test_the_checked_manifest_is_the_card_one(small):
    card = json.loads((small / "dataset.json").read_text())
    with checked_manifest(small, card) as handle:
        table = read_manifest_table(handle, card, "m")
    assert table.num_rows == 3 and set(table.column("shard").to_pylist()) == {
        "clips-000000.tar", "clips-000001.tar"}


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf"])
def test_a_bad_remote_timeout_is_named(monkeypatch, value):
    monkeypatch.setenv(TIMEOUT_VARIABLE, value)
    with pytest.raises(ValueError, match=f"{TIMEOUT_VARIABLE}="):
        timeout_seconds()
    monkeypatch.setenv(TIMEOUT_VARIABLE, "2.5")
    assert timeout_seconds() == 2.5
