"""ObjectBank on untrusted banks: manifest paths, columns and ids are checked and named; plain
folders keep LVIS classes only; the bank tools remove only their own stale temporaries."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from smile_data.objects.bank import ObjectBank
from smile_data.objects.manifest import empty_row, manifest_bytes, remove_bank_temporaries


def _object(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 5, 4), 200, np.uint8), "RGBA").save(path)


def _bank(root: Path, rows: list[dict]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "objects.parquet").write_bytes(manifest_bytes(rows))
    return root


def _row(path: str | None, name: str = "cat", lvis_id: int | None = 225, accepted: bool = True):
    return empty_row(path=path, lvis_id=lvis_id, name=name, accepted=accepted, candidate=0)


def _assert_manifest_refused(root: Path, problem: str) -> None:
    """Opening the bank at `root` fails with an error naming objects.parquet, then `problem`
    (a regular expression)."""
    with pytest.raises(ValueError, match=rf"objects\.parquet: {problem}"):
        ObjectBank(root)


def test_a_good_manifest_opens(tmp_path):
    root = tmp_path / "bank"
    _object(root / "objects/cat/0.png")
    bank = ObjectBank(_bank(root, [_row("objects/cat/0.png"), _row(None, accepted=False)]))
    assert len(bank) == 1 and bank.load_rgba(0).shape == (6, 5, 4)


@pytest.mark.parametrize("row,problem", [
    (_row("../../etc/passwd"), "path must be objects/<its name>/<number>.png"),
    (_row("/etc/passwd"), "path must be objects/<its name>/<number>.png"),
    (_row("objects/cat/../../../secret/0.png"), "path must be objects/<its name>/<number>.png"),
    (_row("objects/dog/0.png"), "path must be objects/<its name>/<number>.png"),
    (_row("objects/../0.png", name=".."), "path must be objects/<its name>/<number>.png"),
    (_row("objects/cat/a.png"), "path must be objects/<its name>/<number>.png"),
    (_row("objects/cat/0.png", lvis_id=None), "lvis_id is null"),
])
def test_bad_manifest_rows_are_refused_by_file_and_row(tmp_path, row, problem):
    root = _bank(tmp_path / "bank", [row])
    _assert_manifest_refused(root, rf"row 0 .*: {problem}")


def test_a_path_that_resolves_outside_the_bank_is_refused(tmp_path):
    outside = tmp_path / "secret.png"
    _object(outside)
    root = tmp_path / "bank"
    (root / "objects/cat").mkdir(parents=True)
    (root / "objects/cat/0.png").symlink_to(outside)
    _assert_manifest_refused(_bank(root, [_row("objects/cat/0.png")]), r"row 0 .*resolves outside the bank")


def test_missing_columns_and_unreadable_manifests_name_the_file(tmp_path):
    root = tmp_path / "bank"
    root.mkdir()
    pq.write_table(pa.table({"path": ["objects/cat/0.png"], "name": ["cat"]}), root / "objects.parquet")
    _assert_manifest_refused(root, r"column\(s\) lvis_id, accepted missing")
    (root / "objects.parquet").write_bytes(b"PAR1 not really")
    _assert_manifest_refused(root, r"not a readable parquet manifest")


def test_plain_folders_keep_lvis_classes_only(tmp_path, caplog):
    root = tmp_path / "plain"
    for name in ("cat/0.png", "cat/1.png", "my_gadget/0.png", "Cat/0.png"):
        _object(root / name)
    with caplog.at_level(logging.WARNING, logger="smile_data.objects.bank"):
        bank = ObjectBank(root)
    assert [bank.entry(i).path for i in range(len(bank))] == ["cat/0.png", "cat/1.png"]
    assert {bank.entry(i).lvis_id for i in range(len(bank))} == {225}
    assert "skipped 2 objects in 2 folders that are not LVIS class names (Cat, my_gadget)" in caplog.text
    only_unknown = tmp_path / "unknown"
    _object(only_unknown / "my_gadget" / "0.png")
    with pytest.raises(ValueError, match="no objects found"):
        ObjectBank(only_unknown)


def test_bank_tools_remove_only_their_own_temporaries(tmp_path):
    root = tmp_path / "bank"
    own = [root / "objects.parquet.tmp-1", root / "bank.json.tmp-2", root / "report.json.tmp-3",
           root / "objects/cat/4.png.tmp-4", root / "progress/import.jsonl.tmp-5"]
    foreign = [root / "notes.txt.tmp-6", root / "objects/cat/readme.txt.tmp-7",
               root / "extra/deep/objects.parquet.tmp-8", root / "objects/cat/sub/0.png.tmp-9"]
    for path in own + foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert remove_bank_temporaries(root, ("report.json",)) == len(own)
    assert not any(p.exists() for p in own) and all(p.exists() for p in foreign)


def test_a_bank_card_linked_out_of_the_bank_is_never_read(tmp_path):
    """bank.json is hashed into dataset cards and quoted in their README: a link out of the
    bank (here to a private file) is refused, naming the file, and the README leaves it out."""
    from smile_data.shards.card_readme import read_bank_card

    root = tmp_path / "bank"
    _object(root / "objects/cat/0.png")
    (tmp_path / "private.json").write_text('{"source": "photos"}')
    (root / "bank.json").symlink_to(tmp_path / "private.json")
    bank = ObjectBank(_bank(root, [_row("objects/cat/0.png")]))
    with pytest.raises(ValueError, match=r"bank\.json: a link to .*private\.json, outside"):
        bank.content_sha256
    assert read_bank_card({"inputs": {"object_bank": {"path": str(root)}}}) is None
