"""build-objects end to end with a tiny random-weight Stable Diffusion pipeline loaded by path:
determinism, manifest and card contents, two ranks, settings checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from smile_data.objects.bank import ObjectBank
from smile_data.objects.build import journal_path
from smile_data.objects.generate import candidate_seed
from smile_data.objects.manifest import COLUMNS
from smile_data.jobs import Journal

# Three classes, among them id 698 whose folder name holds a space and parentheses.
CLASSES = "cat,698,cup"
MONITOR = "monitor_(computer_equipment) computer_monitor"
CANDIDATES = 4


def build_args(tiny_sd: Path, tiny_clip: Path, tiny_clipseg: Path, out: Path, *extra: str) -> list[str]:
    """Random-weight images are noise to the classical segmenter; the random CLIPSeg finds blobs,
    and with two segmenters the CLIP score picks per image (the X-Paste path)."""
    return ["build-objects", "--out", out, "--model", tiny_sd, "--clip-model", tiny_clip,
            "--segmenters", "classical,clipseg", "--clipseg-model", tiny_clipseg,
            "--classes", CLASSES, "--candidates", CANDIDATES, "--accepted", 3, "--steps", 2,
            "--resolution", 64, "--batch-size", 2, "--seed", 7, "--no-progress",
            "--set", "min_side_px=8", *extra]


@pytest.fixture(scope="module")
def reference_bank(tiny_sd, tiny_clip, tiny_clipseg, invoke, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "bank"
    result = invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, out))
    assert result.exit_code == 0, result.output
    return out


def test_same_command_gives_same_bytes(reference_bank, tiny_sd, tiny_clip, tiny_clipseg, invoke, snapshot, tmp_path):
    again = tmp_path / "again"
    assert invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, again)).exit_code == 0
    assert snapshot(again) == snapshot(reference_bank)


def test_manifest_has_every_candidate_and_matching_files(reference_bank):
    rows = pq.read_table(reference_bank / "objects.parquet").to_pylist()
    assert set(COLUMNS) <= set(rows[0])
    assert len(rows) == 3 * CANDIDATES
    assert {r["name"] for r in rows} == {"cat", "cup", MONITOR}
    for row in rows:
        assert row["seed"] == candidate_seed(7, row["lvis_id"], row["candidate"])
        assert row["clip_score"] is None or -100 <= row["clip_score"] <= 100
        if row["accepted"]:
            assert row["reason"] is None
            image = np.asarray(__import__("PIL.Image").Image.open(reference_bank / row["path"]))
            assert image.shape == (row["height"], row["width"], 4)
            alpha = image[..., 3]  # tight crop: every border row and column has some alpha
            assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        else:
            assert row["path"] is None and row["reason"]
    for name in {r["name"] for r in rows}:
        paths = sorted(r["path"] for r in rows if r["accepted"] and r["name"] == name)
        assert paths == sorted(f"objects/{name}/{i}.png" for i in range(len(paths)))
        assert len(paths) <= 3
    assert not list((reference_bank / "progress" / "staging").rglob("*.png"))


def test_card_records_settings_and_counts(reference_bank):
    card = json.loads((reference_bank / "bank.json").read_text())
    rows = pq.read_table(reference_bank / "objects.parquet").to_pylist()
    assert card["source"] == "stable-diffusion"
    assert card["prompt_template"] == "a photo of a single {name}"
    assert card["settings"]["steps"] == 2 and card["settings"]["guidance"] == 7.5
    assert card["counts"]["candidates"] == len(rows)
    assert card["counts"]["accepted"] == sum(r["accepted"] for r in rows)
    assert card["counts"]["per_class"][MONITOR] == sum(r["accepted"] for r in rows if r["lvis_id"] == 698)
    bank = ObjectBank(reference_bank)
    assert len(bank) == card["counts"]["accepted"]


def test_ranks_split_classes_and_merge_to_the_one_rank_bank(
        reference_bank, tiny_sd, tiny_clip, tiny_clipseg, invoke, snapshot, tmp_path):
    out = tmp_path / "ranks"
    first = invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, out, "--rank", 0, "--world-size", 2))
    assert first.exit_code == 0 and "other ranks" in first.output
    assert not (out / "objects.parquet").exists()
    # The rest with another rank count, as after a move to another cluster: ranks skip what any
    # rank's journal records, whichever split wrote it.
    for rank in (2, 1):
        later = invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, out, "--rank", rank, "--world-size", 3))
        assert later.exit_code == 0, later.output
    owned = [{r["lvis_id"] for r in Journal(journal_path(out, rank)).records()} for rank in (0, 1, 2)]
    assert owned == [{225}, {344}, {698}]  # contiguous blocks of the classes in id order
    assert snapshot(out) == snapshot(reference_bank)
    (out / "objects.parquet").unlink()
    assert invoke("merge-bank", out).exit_code == 0
    assert snapshot(out) == snapshot(reference_bank)


def test_rerun_of_a_finished_bank_generates_nothing(reference_bank, tiny_sd, tiny_clip, tiny_clipseg, invoke, snapshot):
    before = snapshot(reference_bank)
    result = invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, reference_bank))
    assert result.exit_code == 0 and "0 images generated" in result.output
    assert snapshot(reference_bank) == before


def test_resuming_with_other_settings_is_refused(reference_bank, tiny_sd, tiny_clip, tiny_clipseg, invoke):
    result = invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, reference_bank, "--set", "guidance=3"))
    assert result.exit_code == 2
    assert "guidance" in result.output and "other settings" in result.output


def test_merge_of_an_unfinished_bank_names_what_is_missing(tiny_sd, tiny_clip, tiny_clipseg, invoke, tmp_path):
    out = tmp_path / "half"
    assert invoke(*build_args(tiny_sd, tiny_clip, tiny_clipseg, out, "--rank", 1, "--world-size", 2)).exit_code == 0
    result = invoke("merge-bank", out)
    assert result.exit_code == 2 and "not finished" in result.output


def test_bad_options_are_reported(invoke, tmp_path):
    assert invoke("build-objects", "--out", tmp_path / "b", "--classes", "no_such_class").exit_code == 2
    result = invoke("build-objects", "--out", tmp_path / "b", "--source", "photos", "--steps", 3)
    assert result.exit_code == 2 and "--steps" in result.output
    result = invoke("build-objects", "--out", tmp_path / "b", "--set", "resolution=60")
    assert result.exit_code == 2 and "multiple of 8" in result.output
