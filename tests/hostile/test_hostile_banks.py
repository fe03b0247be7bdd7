"""Banks and imported folders from others: links out of the folder, FIFOs and devices are never
opened, and an invisible object is never pasted."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from smile_data.objects.bank import ObjectBank
from smile_data.safe_files import UnsafeFile, read_inside


def png(alpha: int = 255) -> bytes:
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[2:10, 2:10] = (200, 30, 30, alpha)
    return cv2.imencode(".png", rgba)[1].tobytes()


def hostile_bank(folder, outside):
    """spoon/0.png a real object; 1 a link to /dev/zero; 2 a link to a file outside the bank;
    3 a FIFO; 4 wholly transparent."""
    spoon = folder / "spoon"
    spoon.mkdir(parents=True)
    (spoon / "0.png").write_bytes(png())
    os.symlink("/dev/zero", spoon / "1.png")
    outside.write_bytes(png())
    os.symlink(outside, spoon / "2.png")
    os.mkfifo(spoon / "3.png")
    (spoon / "4.png").write_bytes(png(alpha=0))
    return folder


def test_a_plain_folder_bank_skips_links_out_and_special_files(tmp_path):
    bank = ObjectBank(hostile_bank(tmp_path / "bank", tmp_path / "secret.png"))
    assert [entry.path for entry in bank.entries] == ["spoon/0.png", "spoon/4.png"]
    assert bank.load_rgba(0).shape == (12, 12, 4)
    with pytest.raises(ValueError, match="4.png: alpha is zero everywhere"):
        bank.load_rgba(1)


@pytest.mark.parametrize("name, problem", [("1.png", "outside"), ("2.png", "outside"),
                                           ("3.png", "a FIFO, not a regular file")])
def test_reading_inside_a_folder_refuses_before_opening(tmp_path, name, problem):
    root = hostile_bank(tmp_path / "bank", tmp_path / "secret.png")
    with pytest.raises(UnsafeFile, match=problem):
        read_inside(root / "spoon" / name, root, 1 << 20)


def test_render_with_a_hostile_bank_finishes_and_pastes_only_visible_objects(case):
    hostile_bank(case.input / "bank", case.input / "secret.png")
    outcome = case.run("smile-data", "render", "--out", "out/data", "--bg", "noise", "--bank",
                       str(case.input / "bank"), "--clips", "6", "--frames", "4", "--size", "32",
                       "--codec", "png", timeout=90)
    assert outcome.returncode == 0, outcome.output[-3000:]
    assert not outcome.written_outside
    card = json.loads((case.out / "data" / "dataset.json").read_text())
    assert {s["reason"].split(": ", 1)[-1] for s in card["skipped"]} <= {"alpha is zero everywhere (an invisible object)"}
    rows = pq.read_table(case.out / "data" / "manifest.parquet").to_pylist()
    assert all(row["objects"] == 0 or set(row["object_names"].split("|")) == {"spoon"} for row in rows)


def test_import_reports_links_out_and_special_files_without_opening_them(case):
    hostile_bank(case.input / "src", case.input / "secret.png")
    outcome = case.run("smile-data", "import-objects", str(case.input / "src"), "--out", "out/bank",
                       "--no-progress", timeout=60)
    assert outcome.returncode == 0, outcome.output[-3000:]
    rows = {r["source"]: r for r in pq.read_table(case.out / "bank" / "objects.parquet").to_pylist()}
    assert rows["spoon/0.png"]["accepted"]
    for name in ("spoon/1.png", "spoon/2.png", "spoon/3.png"):
        assert not rows[name]["accepted"] and rows[name]["reason"] == "link_or_special"
    assert rows["spoon/4.png"]["reason"] == "empty_alpha"


@pytest.mark.parametrize("kind", ["link out", "fifo"])
def test_a_shard_linked_from_elsewhere_or_a_fifo_is_refused(case, kind):
    from tests.hostile.conftest import clip_members, write_shard

    shard = case.input / "data" / "clips-000000.tar"
    shard.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(shard)
    else:
        os.symlink(write_shard(case.input / "elsewhere" / "clips-000000.tar", clip_members()), shard)
    outcome = case.run("smile-data", "preview", str(shard), "--out", "out/p.png", timeout=30)
    outcome.refused("clips-000000.tar", "outside" if kind == "link out" else "no such dataset folder or shard")


def build_journal(bank, *records) -> None:
    """A bank being built by build-objects whose rank 0 journal holds `records`."""
    from smile_data.config import settings_to_dict
    from smile_data.objects.settings import BuildSettings

    progress = bank / "progress"
    progress.mkdir(parents=True)
    (progress / "settings.json").write_text(json.dumps(settings_to_dict(BuildSettings())))
    (progress / "rank-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


GOOD_BATCH = {"kind": "batch", "lvis_id": 3, "rows": [{"candidate": 0}]}


@pytest.mark.parametrize("record, problem", [
    ({"kind": "batch", "lvis_id": 3, "rows": [{"candidate": "../../../../tmp/x"}]},
     "a candidate is not an integer"),
    ({"kind": "class", "lvis_id": "3", "rows": []}, "lvis_id '3' is not an integer"),
    ({"kind": "batch", "lvis_id": 3, "rows": "x"}, "rows is not a list of objects"),
    ({"kind": "shell", "lvis_id": 3, "rows": []}, "kind 'shell' is neither"),
])
def test_a_build_journal_from_elsewhere_is_checked_before_use(tmp_path, record, problem):
    from smile_data.objects.build import read_progress

    build_journal(tmp_path / "bank", GOOD_BATCH, record)
    with pytest.raises(ValueError, match=f"rank-00000.jsonl: record 1 .*{problem}"):
        read_progress(tmp_path / "bank")


def test_merge_bank_refuses_a_hostile_build_journal(case):
    case.out.mkdir()
    build_journal(case.out / "bank", {"kind": "batch", "lvis_id": 3, "rows": [{"candidate": "../x"}]})
    outcome = case.run("smile-data", "merge-bank", "out/bank")
    outcome.refused("rank-00000.jsonl: record 0 is not a build-objects record",
                    "a candidate is not an integer")
