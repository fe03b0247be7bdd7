"""`smile-data pack --store video`: one sample per whole video, re-encoded or copied; validate."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import av
import cv2
import numpy as np

from smile_data.shards import card_readme, layout
from smile_data.shards.reader import iter_tar_samples
from smile_data.shards.validate import validate_dataset
from smile_data.shards.video_sample import decode_video_sample
from smile_data.video import decode_frames, probe_video
from tests.render.data_runs import run_for_card, videos_with_a_corrupt_one


def _pack(*args: str) -> dict:
    return run_for_card("pack", "--store", "video", *args)


def _list(tmp_path: Path, sample_videos: dict[str, Path]) -> list[str]:
    """--csv and --root arguments: two sample videos, a missing and a corrupt one."""
    root = videos_with_a_corrupt_one(tmp_path, sample_videos, corrupt_header=b"\x00\x00\x00\x18ftypisom")
    csv = tmp_path / "train.csv"
    csv.write_text("carphone_pristine.mp4 3\nmissing.mp4 1\nbikes.mp4 5\ncorrupt.mp4 2\n")
    return ["--csv", str(csv), "--root", str(root)]


def _samples(folder: Path) -> dict[str, dict]:
    return {raw["__key__"]: raw for shard in sorted(folder.glob("*.tar")) for raw in iter_tar_samples(shard)}


def test_pack_reencodes_whole_videos_with_labels_and_skips_bad_ones(tmp_path, sample_videos):
    listed = _list(tmp_path, sample_videos)
    out = tmp_path / "out"
    card = _pack(*listed, "--out", str(out), "--short-side", "64",
                 "--keyframe-interval", "8")
    assert card["counts"] == {"samples": 2, "shards": 1, "skipped": 2}
    reasons = {s["source"]: s["reason"] for s in card["skipped"]}
    assert reasons["missing.mp4"] == "file not found" and "corrupt.mp4" in reasons
    samples = _samples(out)
    assert sorted(samples) == [layout.sample_key(0), layout.sample_key(2)]  # key = list position
    expected = {layout.sample_key(0): ("carphone_pristine.mp4", 3, 120, (78, 64)),
                layout.sample_key(2): ("bikes.mp4", 5, 250, (150, 64))}
    for key, (source, label, frames, (width, height)) in expected.items():
        raw = samples[key]
        assert set(raw) == {"__key__", "mp4", "json", "cls"} and raw["cls"] == str(label).encode()
        sample = decode_video_sample(raw)
        info = probe_video(sample.video)
        assert (info.frames, info.width, info.height) == (frames, width, height)
        assert info.keyframes == tuple(range(0, frames, 8))
        assert sample.label == label and sample.metadata["source"] == source
        assert {k: sample.metadata[k] for k in ("frames", "width", "height", "keyframe_interval")} \
            == {"frames": frames, "width": width, "height": height, "keyframe_interval": 8}
        assert sample.metadata["duration"] == round(frames / sample.metadata["fps"], 6)
    assert validate_dataset(out).ok


def test_packed_frames_are_the_sources_frames_at_the_same_index(tmp_path, sample_videos):
    root = tmp_path / "videos"
    root.mkdir()
    shutil.copy(sample_videos["bikes.mp4"], root / "bikes.mp4")
    out = tmp_path / "out"
    _pack("--videos", str(root), "--out", str(out), "--short-side", "64", "--set", "crf=12")
    video = decode_video_sample(_samples(out)[layout.sample_key(0)]).video
    indices = [0, 61, 62, 249]
    packed = decode_frames(video, indices).astype(float)
    with av.open(str(root / "bikes.mp4")) as container:
        source = [cv2.resize(f.to_ndarray(format="rgb24"), (150, 64), interpolation=cv2.INTER_AREA)
                  for f in container.decode(video=0)]
    for got, index in zip(packed, indices):
        assert np.abs(got - source[index]).mean() < 4  # the same frame, re-encoded
        assert np.abs(got - source[index + (3 if index < 200 else -3)]).mean() > 6  # not a neighbour


def test_pack_video_is_deterministic_and_a_rerun_changes_nothing(tmp_path, sample_videos):
    listed = _list(tmp_path, sample_videos)
    args = [*listed, "--short-side", "48"]
    _pack(*args, "--out", str(tmp_path / "a"))
    _pack(*args, "--out", str(tmp_path / "b"), "--workers", "2")
    first = (tmp_path / "a" / "clips-000000.tar").read_bytes()
    assert first == (tmp_path / "b" / "clips-000000.tar").read_bytes()
    _pack(*args, "--out", str(tmp_path / "a"))  # resumes a finished run: nothing to do
    assert (tmp_path / "a" / "clips-000000.tar").read_bytes() == first
    assert not [p for p in tmp_path.rglob("*") if ".tmp-" in p.name]


def test_copy_stores_the_source_bytes(tmp_path, sample_videos):
    listed = _list(tmp_path, sample_videos)
    out = tmp_path / "out"
    card = _pack(*listed, "--out", str(out), "--copy")
    assert card["counts"]["samples"] == 2 and card["counts"]["skipped"] == 2
    raw = _samples(out)[layout.sample_key(2)]
    assert raw["mp4"] == sample_videos["bikes.mp4"].read_bytes()
    assert json.loads(raw["json"])["keyframe_interval"] is None
    assert validate_dataset(out).ok
    assert (out / card_readme.PREVIEW_FILE).is_file()  # the card's contact sheet shows videos too


def test_validate_reports_a_damaged_video_member(tmp_path, sample_videos):
    listed = _list(tmp_path, sample_videos)
    out = tmp_path / "out"
    _pack(*listed, "--out", str(out), "--short-side", "48")
    shard = out / "clips-000000.tar"
    members = [(info, data) for info, data in _tar_members(shard)]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            if info.name.endswith(".mp4") and info.name.startswith(layout.sample_key(2)):
                data = data[: len(data) // 2]
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    problems = validate_dataset(out).problems
    assert any(f"member {layout.sample_key(2)}.mp4" in p for p in problems), problems


def _tar_members(path: Path) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(path) as tar:
        return [(info, tar.extractfile(info).read()) for info in tar.getmembers()]
