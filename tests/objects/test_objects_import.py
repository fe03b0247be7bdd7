"""import-objects on a folder mixing good files with every kind of bad one."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from smile_data.jobs import Journal
from smile_data.objects.bank import ObjectBank
from smile_data.objects.importer import read_png_header

MONITOR = "monitor_(computer_equipment) computer_monitor"  # LVIS id 698


def object_rgba(height: int, width: int, pad: int = 0) -> np.ndarray:
    rgba = np.zeros((height + 2 * pad, width + 2 * pad, 4), np.uint8)
    rgba[pad : pad + height, pad : pad + width] = (200, 60, 30, 255)
    return rgba


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring a huge RGBA image, and no pixel data."""
    fields = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = b"IHDR" + fields
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(fields)) + chunk + struct.pack(">I", zlib.crc32(chunk))


@pytest.fixture()
def source(tmp_path) -> Path:
    src = tmp_path / "released"
    for folder in ("cat", MONITOR, "not_a_lvis_class"):
        (src / folder).mkdir(parents=True)
    Image.fromarray(object_rgba(20, 30)).save(src / "cat" / "0.png")  # tight already
    Image.fromarray(object_rgba(20, 30, pad=6)).save(src / "cat" / "1.png")  # needs a crop
    good = (src / "cat" / "0.png").read_bytes()
    (src / "cat" / "2.png").write_bytes(good[: len(good) // 2 + 10])  # corrupt: truncated data
    Image.fromarray(object_rgba(20, 30)[..., :3]).save(src / "cat" / "3.png")  # RGB, no alpha
    Image.fromarray(np.zeros((12, 12, 4), np.uint8)).save(src / "cat" / "4.png")  # transparent
    (src / "cat" / "5.png").write_bytes(png_claiming(100_000, 100_000))  # a bomb by its header
    (src / "cat" / "6.png").write_bytes(b"this is not an image at all")
    Image.fromarray(object_rgba(20, 30)).save(src / "cat" / "extra.png")  # good, but not numbered
    Image.fromarray(object_rgba(16, 16, pad=2)).save(src / MONITOR / "0.png")
    Image.fromarray(object_rgba(16, 16)).save(src / "not_a_lvis_class" / "0.png")
    return src


EXPECTED_REASONS = {
    "cat/2.png": "corrupt", "cat/3.png": "no_alpha", "cat/4.png": "empty_alpha",
    "cat/5.png": "too_large", "cat/6.png": "not_png", "cat/extra.png": "not_numbered",
    "not_a_lvis_class/0.png": "unknown_class",
}


def test_import_keeps_good_files_and_reports_each_bad_one(source, invoke, tmp_path):
    out = tmp_path / "bank"
    result = invoke("import-objects", source, "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "import_report.json").read_text())
    assert {b["file"]: b["reason"] for b in report["bad"]} == EXPECTED_REASONS
    assert report["imported"] == 3 and report["files"] == 10
    assert report["unknown_classes"] == ["not_a_lvis_class"]
    comparison = report["released_comparison"]
    assert comparison["matched"] == 3 and comparison["released"] == 60687
    assert comparison["missing_count"] == 60684 and comparison["extra_count"] == 0
    assert "skipped too_large: 1" in result.output and "60684 missing" in result.output

    bank = ObjectBank(out)
    assert len(bank) == 3 and bank.classes == ["cat", MONITOR]
    shapes = {bank.entry(i).path: bank.load_rgba(i).shape for i in range(len(bank))}
    assert shapes == {"objects/cat/0.png": (20, 30, 4), "objects/cat/1.png": (20, 30, 4),
                      f"objects/{MONITOR}/0.png": (16, 16, 4)}
    assert bank.entry(2).lvis_id == 698
    rows = pq.read_table(out / "objects.parquet").to_pylist()
    assert len(rows) == 10 and sum(r["accepted"] for r in rows) == 3
    card = json.loads((out / "bank.json").read_text())
    assert card["source"] == "import" and card["counts"]["accepted"] == 3


def test_import_copies_or_hard_links_tight_files(source, invoke, tmp_path):
    copied, linked = tmp_path / "copied", tmp_path / "linked"
    assert invoke("import-objects", source, "--out", copied, "--no-progress").exit_code == 0
    assert invoke("import-objects", source, "--out", linked, "--link", "--no-progress").exit_code == 0
    original = source / "cat" / "0.png"
    assert (copied / "objects/cat/0.png").read_bytes() == original.read_bytes()
    assert not (copied / "objects/cat/0.png").samefile(original)
    assert (linked / "objects/cat/0.png").samefile(original)  # hard link: same inode
    assert not (linked / "objects/cat/1.png").samefile(source / "cat" / "1.png")  # was cropped


def test_strict_mode_and_empty_imports_fail(source, invoke, tmp_path):
    result = invoke("import-objects", source, "--out", tmp_path / "strict", "--strict", "--no-progress")
    assert result.exit_code == 1
    only_bad = tmp_path / "only_bad"
    (only_bad / "cat").mkdir(parents=True)
    (only_bad / "cat" / "0.png").write_bytes(png_claiming(100_000, 100_000))
    assert invoke("import-objects", only_bad, "--out", tmp_path / "none", "--no-progress").exit_code == 1
    missing = invoke("import-objects", tmp_path / "nowhere", "--out", tmp_path / "x", "--no-progress")
    assert missing.exit_code == 2 and "not found" in missing.output


def test_rerun_resumes_from_the_journal_and_redoes_changed_files(source, invoke, tmp_path):
    out = tmp_path / "bank"
    assert invoke("import-objects", source, "--out", out, "--no-progress").exit_code == 0
    first = (out / "objects.parquet").read_bytes()
    journal = out / "progress" / "import.jsonl"
    assert len(list(Journal(journal).records())) == 1
    assert invoke("import-objects", source, "--out", out, "--no-progress").exit_code == 0
    assert (out / "objects.parquet").read_bytes() == first
    assert len(list(Journal(journal).records())) == 1  # nothing was redone
    Image.fromarray(object_rgba(20, 30)).save(source / "cat" / "3.png")  # repaired: now RGBA
    assert invoke("import-objects", source, "--out", out, "--no-progress").exit_code == 0
    assert [len(r["rows"]) for r in Journal(journal).records()] == [10, 1]
    report = json.loads((out / "import_report.json").read_text())
    assert report["imported"] == 4 and "cat/3.png" not in {b["file"] for b in report["bad"]}


def test_a_journal_row_pointing_outside_the_objects_folder_is_refused(source, invoke, tmp_path):
    out = tmp_path / "bank"
    assert invoke("import-objects", source, "--out", out, "--no-progress").exit_code == 0
    journal = out / "progress" / "import.jsonl"
    record = json.loads(journal.read_text())
    record["rows"][0]["path"] = "../../outside.png"
    journal.write_text(json.dumps(record) + "\n")
    result = invoke("import-objects", source, "--out", out, "--no-progress")
    assert result.exit_code == 2
    assert "import.jsonl: record 0 is not an import-objects record" in result.output


def test_a_rerun_removes_its_own_stale_temporaries_only(source, invoke, tmp_path):
    out = tmp_path / "bank"
    own = [out / "objects" / "cat" / "0.png.tmp-41", out / "objects.parquet.tmp-42",
           out / "import_report.json.tmp-43"]
    foreign = [out / "notes" / "draft.md.tmp-44", out / "objects" / "cat" / "sketch.psd.tmp-45"]
    for path in own + foreign:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
    assert invoke("import-objects", source, "--out", out, "--no-progress").exit_code == 0
    assert not any(p.exists() for p in own) and all(p.exists() for p in foreign)


def test_header_is_read_without_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(100_000, 99_999))
    assert read_png_header(path) == (100_000, 99_999, 8, 6)


def test_workers_give_the_same_bank(source, invoke, snapshot, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke("import-objects", source, "--out", one, "--no-progress").exit_code == 0
    assert invoke("import-objects", source, "--out", two, "--workers", 2, "--no-progress").exit_code == 0
    cards = [json.loads(snap.pop("bank.json")) for snap in (snapshot(one), snapshot(two))]
    assert snapshot(one) | {"bank.json": b""} == snapshot(two) | {"bank.json": b""}
    assert cards[1]["settings"].pop("workers") == 2 and cards[0]["settings"].pop("workers") == 1
    assert cards[0] == cards[1]
