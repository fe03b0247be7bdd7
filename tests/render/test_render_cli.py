"""`smile-data render` end to end: every background kind on real videos and photos, bad
sources, determinism across runs and workers, refusal of another command, resume after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from smile_data.shards import layout
from smile_data.shards.reader import read_samples
from tests.render.data_runs import run_for_card

SMALL = ["--size", "64", "--frames", "8", "--stride", "4"]
FOOTPRINT_MARGIN = 2  # pixels around an object's rotated box that bilinear edges may touch


def _render(*args: str) -> dict:
    return run_for_card("render", *args)


def _clips(folder: Path) -> list:
    return list(read_samples(sorted(str(p) for p in folder.glob("*.tar"))))


def _shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.tar"))}


def _video_list(tmp_path: Path, videos: dict[str, Path], bad: bool) -> Path:
    lines = [f"{videos['carphone_pristine.mp4']} 0", f"{videos['bikes.mp4']} 1"]
    if bad:
        (tmp_path / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
        (tmp_path / "empty.mp4").write_bytes(b"")
        lines += ["missing.mp4 2", "corrupt.mp4 3", "empty.mp4 4"]
    listing = tmp_path / "videos.csv"
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _footprint(objects: list[dict], t: int, size: int) -> np.ndarray:
    """(size, size) bool: pixels any object's rotated box may touch in frame t."""
    mask = np.zeros((size, size), bool)
    for obj in objects:
        x0, y0, x1, y1 = obj["boxes"][t]
        angle = np.radians(obj["angles"][t])
        half_w = (abs((x1 - x0) * np.cos(angle)) + abs((y1 - y0) * np.sin(angle))) / 2
        half_h = (abs((x1 - x0) * np.sin(angle)) + abs((y1 - y0) * np.cos(angle))) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        mask[max(0, int(cy - half_h) - FOOTPRINT_MARGIN): max(0, int(np.ceil(cy + half_h)) + FOOTPRINT_MARGIN),
             max(0, int(cx - half_w) - FOOTPRINT_MARGIN): max(0, int(np.ceil(cx + half_w)) + FOOTPRINT_MARGIN)] = True
    return mask


def test_every_background_kind_end_to_end(tmp_path, sample_videos, sample_photos, tiny_bank):
    out = tmp_path / "out"
    card = _render(
        "--out", str(out), *SMALL, "--clips", "24", "--variants", "2", "--codec", "png",
        "--bg", "natural", "--bg", "frame", "--bg", "image", "--bg", "black", "--bg", "noise",
        "--videos", str(_video_list(tmp_path, sample_videos, bad=False)),
        "--images", str(sample_photos), "--bank", str(tiny_bank), "--seed", "3",
        "--set", "box_sides=[8, 12]", "--set", "gaussian_extent_min=4",
        "--set", "gaussian_extent_max=8")  # small, slow objects leave background to check
    assert card["counts"] == {"samples": 24, "shards": 1, "skipped": 0}
    assert card["settings"]["frames"] == 8 and card["inputs"]["object_bank"]["objects"] == 6
    clips = _clips(out)
    assert {c.metadata["background"]["kind"] for c in clips} == set(layout.BACKGROUND_KINDS)
    for clip in clips:
        meta, frames = clip.metadata, clip.frames
        assert layout.metadata_problems(meta) == [] and frames.shape == (8, 64, 64, 3)
        assert len(meta["objects"]) == 2 and all(o["name"] in ("dog", "apple", "traffic_light") for o in meta["objects"])
        assert all(o["bank_path"].endswith(".png") and len(o["boxes"]) == 8 for o in meta["objects"])
        background = meta["background"]
        free = ~np.any([_footprint(meta["objects"], t, 64) for t in range(8)], axis=0)  # (64, 64)
        assert free.sum() > 1000
        if background["kind"] == "natural":
            indices = background["frame_indices"]
            assert np.all(np.diff(indices) == 4) and background["source"].endswith(".mp4")
        elif background["kind"] == "frame":
            assert len(set(background["frame_indices"])) == 1
        if background["kind"] == "black":
            assert not frames[:, free].any()
        if background["kind"] in ("frame", "image", "black", "noise"):
            assert (frames[:, free] == frames[0, free]).all()  # one still, repeated
        if background["kind"] == "noise":
            assert frames[0, free].std() > 50


def test_bad_sources_are_skipped_and_reported(tmp_path, sample_videos, tiny_bank):
    out = tmp_path / "out"
    card = _render("--out", str(out), *SMALL, "--clips", "6", "--bg", "natural",
                   "--videos", str(_video_list(tmp_path, sample_videos, bad=True)), "--bank", str(tiny_bank))
    reasons = {s["source"]: s["reason"] for s in card["skipped"]}
    assert reasons["missing.mp4"] == "file not found"
    assert reasons["empty.mp4"] == "empty file"
    assert reasons["corrupt.mp4"].startswith("cannot open as a video")
    assert card["counts"]["samples"] == 6  # every task fell back to a readable video
    assert {c.metadata["background"]["source"] for c in _clips(out)} <= {
        str(sample_videos["carphone_pristine.mp4"]), str(sample_videos["bikes.mp4"])}


def test_patch_mode_and_linear_motion(tmp_path):
    out = tmp_path / "out"
    card = _render("--out", str(out), *SMALL, "--clips", "4", "--bg", "noise",
                   "--overlay", "patches", "--motion", "linear", "--objects", "3")
    assert card["inputs"]["object_bank"] is None
    for clip in _clips(out):
        objects = clip.metadata["objects"]
        assert [o["kind"] for o in objects] == ["patch"] * 3
        assert all(o["bank_path"] is None and o["shape"] in ("rectangle", "ellipse", "rhombus") for o in objects)


def test_same_command_same_bytes_with_one_or_two_workers(tmp_path, sample_photos, tiny_bank):
    args = [*SMALL, "--clips", "12", "--variants", "3", "--shard-size", "5", "--bg", "image:2",
            "--bg", "noise", "--images", str(sample_photos), "--bank", str(tiny_bank), "--seed", "11"]
    _render("--out", str(tmp_path / "a"), *args)
    _render("--out", str(tmp_path / "b"), *args)
    _render("--out", str(tmp_path / "c"), *args, "--workers", "2")
    reference = _shard_bytes(tmp_path / "a")
    assert len(reference) == 3
    assert _shard_bytes(tmp_path / "b") == reference and _shard_bytes(tmp_path / "c") == reference
    manifests = [(tmp_path / d / "manifest.parquet").read_bytes() for d in "abc"]
    assert manifests[0] == manifests[1] == manifests[2]
    other = _render("--out", str(tmp_path / "d"), *args[:-1], "12")
    assert _shard_bytes(tmp_path / "d") != reference and other["counts"]["samples"] == 12


def test_another_command_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "out"
    args = ["--out", str(out), *SMALL, "--clips", "2", "--bg", "black", "--overlay", "none"]
    _render(*args)
    # smile_data.cli has no __main__ guard: call its entry point the way the console script does.
    refused = subprocess.run(
        [sys.executable, "-c", "from smile_data.cli import main; main()", "render", *args, "--seed", "5"],
        capture_output=True, text=True)
    assert refused.returncode == 2 and "other settings" in refused.stderr
    card = _render(*args, "--seed", "5", "--overwrite")
    assert card["settings"]["seed"] == 5


def test_inputs_are_checked_before_any_work(tmp_path):
    from smile_data.render.run import build_render_task
    from smile_data.render.settings import RenderSettings

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images found"):
        build_render_task(RenderSettings(backgrounds=["image"], images=str(empty), overlay="none"))
    with pytest.raises(ValueError, match="--bank is required"):
        build_render_task(RenderSettings(backgrounds=["noise"]))
    with pytest.raises(ValueError, match="no objects found"):
        build_render_task(RenderSettings(backgrounds=["noise"], bank=str(empty)))
    with pytest.raises(ValueError, match="--videos is required"):
        build_render_task(RenderSettings(backgrounds=["natural"], overlay="none"))
    assert not any(tmp_path.glob("**/*.tar"))


def test_kill_9_mid_render_then_rerun_gives_the_same_bytes(tmp_path, tiny_bank):
    args = ["render", *SMALL, "--clips", "400", "--shard-size", "10", "--bg", "noise",
            "--bank", str(tiny_bank), "--seed", "2"]
    command = [sys.executable, "-c", "from smile_data.cli import main; main()"]
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, *args, "--out", str(killed)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(list(killed.glob("*.tar"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "dataset.json").exists(), "the run ended before it could be killed"
    subprocess.run([*command, *args, "--out", str(killed)], check=True, capture_output=True)
    _render(*args[1:], "--out", str(tmp_path / "clean"))
    assert _shard_bytes(killed) == _shard_bytes(tmp_path / "clean")
    assert len(_shard_bytes(killed)) == 40


def test_shipped_presets_load_and_check():
    from smile_data.config import load_settings
    from smile_data.render.settings import RenderSettings, check_render_settings

    presets = sorted((Path(__file__).parents[2] / "configs" / "render").glob("*.yaml"))
    assert presets
    for preset in presets:
        settings = load_settings(RenderSettings, preset)
        check_render_settings(settings)
        assert settings != RenderSettings(), f"{preset.name} changes nothing"


def test_metadata_boxes_match_the_visible_object(tmp_path):
    from PIL import Image

    bank = tmp_path / "bank" / "apple"
    bank.mkdir(parents=True)
    Image.fromarray(np.full((30, 20, 4), (250, 120, 40, 255), np.uint8), "RGBA").save(bank / "0.png")
    out = tmp_path / "out"
    _render("--out", str(out), *SMALL, "--clips", "6", "--bg", "black", "--objects", "1",
            "--motion", "linear", "--codec", "png", "--bank", str(tmp_path / "bank"),
            "--set", "rotation=false", "--set", "box_sides=[16, 24]")
    for clip in _clips(out):
        (obj,) = clip.metadata["objects"]
        assert obj["bank_path"] == "apple/0.png" and obj["lvis_id"] > 0 and obj["name"] == "apple"
        for t in range(8):
            ys, xs = np.nonzero(clip.frames[t].max(axis=-1) > 127)  # pixels at least half covered
            x0, y0, x1, y1 = obj["boxes"][t]
            assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1
            assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1
