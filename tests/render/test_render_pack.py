"""`smile-data pack`: labelled natural clips from a VideoMAE-style CSV, bad videos skipped."""

from __future__ import annotations

import tarfile

import cv2
import numpy as np

from smile_data.render.pack import packed_clip_indices
from smile_data.render.settings import PackSettings
from smile_data.images import resize_short_side
from smile_data.shards import layout
from smile_data.shards.reader import read_samples
from tests.render.data_runs import run_for_card, videos_with_a_corrupt_one

CARPHONE_FRAMES = 120


def _pack(*args: str) -> dict:
    return run_for_card("pack", *args)


def test_clip_starts_are_evenly_spaced_and_clamped_for_short_videos():
    s = PackSettings(frames=4, stride=2, clips_per_video=3)
    plans = packed_clip_indices(100, s)  # usable starts 0..93, centres of three segments
    assert [p[0] for p in plans] == [16, 47, 78] and all(np.diff(p).tolist() == [2, 2, 2] for p in plans)
    assert packed_clip_indices(5, s) == [[0, 2, 4, 4]] * 3


def test_pack_csv_writes_labels_resizes_and_skips_bad_videos(tmp_path, sample_videos):
    root = videos_with_a_corrupt_one(tmp_path, sample_videos)
    csv = tmp_path / "train.csv"
    csv.write_text("carphone_pristine.mp4 3\nmissing.mp4 1\nbikes.mp4 5\ncorrupt.mp4 2\n")
    out = tmp_path / "out"
    card = _pack("--csv", str(csv), "--root", str(root), "--out", str(out), "--clips-per-video", "2",
                 "--frames", "8", "--stride", "4", "--short-side", "64", "--codec", "png")
    assert card["command"] == "pack" and card["counts"] == {"samples": 4, "shards": 1, "skipped": 2}
    assert {s["source"]: s["reason"] for s in card["skipped"]} == {
        "missing.mp4": "file not found",
        "corrupt.mp4": "cannot open as a video (corrupt or unsupported)"}
    clips = {c.key: c for c in read_samples(str(out / "clips-000000.tar"))}
    # Video i of the list owns keys i*2 and i*2+1; videos 1 and 3 were skipped.
    assert sorted(clips) == [layout.sample_key(i) for i in (0, 1, 4, 5)]
    expected = {0: (3, (64, 78)), 4: (5, (64, 151))}  # 176x144 and 640x272, short side 64
    for first, (label, (height, width)) in expected.items():
        for key in (layout.sample_key(first), layout.sample_key(first + 1)):
            clip = clips[key]
            assert clip.label == label and clip.metadata["label"] == label
            assert clip.frames.shape == (8, height, width, 3) and clip.metadata["objects"] == []
            assert clip.metadata["background"]["kind"] == "natural"
    with tarfile.open(out / "clips-000000.tar") as tar:
        assert tar.extractfile(f"{layout.sample_key(4)}.cls").read() == b"5"


def test_packed_frames_are_the_videos_frames(tmp_path, sample_videos):
    root = videos_with_a_corrupt_one(tmp_path, sample_videos)
    out = tmp_path / "out"
    _pack("--videos", str(root), "--out", str(out), "--frames", "4", "--stride", "3",
          "--short-side", "72", "--codec", "png")
    clips = list(read_samples(str(out / "clips-000000.tar")))
    carphone = next(c for c in clips if c.metadata["background"]["source"] == "carphone_pristine.mp4")
    indices = carphone.metadata["background"]["frame_indices"]
    assert indices == packed_clip_indices(CARPHONE_FRAMES, PackSettings(frames=4, stride=3))[0]
    assert carphone.label is None and carphone.metadata["label"] is None
    capture = cv2.VideoCapture(str(root / "carphone_pristine.mp4"))
    reference = {}
    for index in range(max(indices) + 1):
        ok, frame = capture.read()
        if index in indices:
            reference[index] = resize_short_side(frame, 72, upscale=True)[..., ::-1]  # RGB
    capture.release()
    assert np.array_equal(carphone.frames, np.stack([reference[i] for i in indices]))


def test_pack_is_deterministic(tmp_path, sample_videos):
    root = videos_with_a_corrupt_one(tmp_path, sample_videos)
    args = ["--videos", str(root), "--frames", "4", "--short-side", "48"]
    _pack(*args, "--out", str(tmp_path / "a"))
    _pack(*args, "--out", str(tmp_path / "b"), "--workers", "2")
    assert (tmp_path / "a" / "clips-000000.tar").read_bytes() == (tmp_path / "b" / "clips-000000.tar").read_bytes()
