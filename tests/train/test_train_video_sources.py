"""Video samples in the loader: the frames a temporal draw picks are the frames decoded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from smile_train.sampling import segment_indices, window_indices
from smile_train.sources import SourceSampler, SourceSettings
from tests.video.video_files import encode_video, read_counter

FRAMES = 100


@pytest.fixture(scope="module")
def counter_mp4() -> bytes:
    return encode_video(FRAMES, keyframe_interval=8)  # frame i shows i; 160 x 64


def raw_video(data: bytes, key: str = "video0", **metadata) -> dict:
    return {"__key__": key, "mp4": data, "json": json.dumps(metadata).encode()}


@pytest.mark.parametrize("temporal", ["window", "segments"])
def test_the_drawn_frames_are_the_decoded_frames(counter_mp4, temporal):
    sampler = SourceSampler(SourceSettings(shards="x", temporal=temporal, stride=4), 64, 16)
    key, frames, objects, label = sampler.decode(raw_video(counter_mp4, label=3), np.random.default_rng(5))
    rng = np.random.default_rng(5)
    expected = window_indices(rng, FRAMES, 16, 4) if temporal == "window" else segment_indices(rng, FRAMES, 16)
    assert [read_counter(frame) for frame in frames] == expected.tolist()
    assert (key, objects, label) == ("video0", [], 3)


def test_video_clips_are_cropped_flipped_and_overlaid_at_the_input_size(counter_mp4):
    source = SourceSettings(shards="x", crop="multiscale", overlay="patches", overlay_settings={"objects": 2})
    sampler = SourceSampler(source, 64, 16)
    clip = sampler(raw_video(counter_mp4), np.random.default_rng(0))
    assert clip.frames.shape == (16, 64, 64, 3) and clip.boxes.shape == (16, 2, 4)
    again = sampler(raw_video(counter_mp4), np.random.default_rng(0))
    assert np.array_equal(clip.frames, again.frames)


def test_labels_come_from_cls_or_the_named_json_field(counter_mp4):
    sampler = SourceSampler(SourceSettings(shards="x", label_field="class_id"), 64, 16)
    raw = raw_video(counter_mp4, class_id=7, caption="a counter")
    assert sampler.decode(raw, np.random.default_rng(0))[3] == 7
    assert sampler.decode({**raw, "cls": b"2"}, np.random.default_rng(0))[3] == 2
    with pytest.raises(ValueError, match="class_id.*not an integer"):
        sampler.decode(raw_video(counter_mp4, class_id="seven"), np.random.default_rng(0))


def test_a_broken_video_is_an_error_naming_the_sample(counter_mp4):
    sampler = SourceSampler(SourceSettings(shards="x"), 64, 16)
    for broken in (counter_mp4[: len(counter_mp4) // 3], b"\x00" * 2000, b""):
        with pytest.raises(ValueError, match=r"sample video0: member video0\.mp4"):
            sampler(raw_video(broken), np.random.default_rng(0))


def low_counter_bits(frame: np.ndarray, bits: int = 4) -> int:
    """The low bits of the index a counter frame shows, from its leftmost 16-px blocks."""
    return sum(int(frame[2:14, 16 * b + 2 : 16 * b + 14].mean() > 127) << b for b in range(bits))


@pytest.mark.parametrize("temporal", ["window", "segments"])
def test_test_views_of_a_video_are_the_formula_frames_with_their_crops(counter_mp4, temporal):
    from smile_train.evaluate import VideoViews, ViewClips
    from smile_train.sampling import test_indices

    dataset = ViewClips([], 64, 3, 16, videos=VideoViews(clips=3, temporal=temporal, stride=4))
    items = dataset._video_items({**raw_video(counter_mp4), "cls": b"1"})
    assert [item["key"] for item in items] == ["video0#000", "video0#001", "video0#002"]
    assert {item["source"] for item in items} == {"video:video0"} and items[0]["label"] == 1
    for view, item in enumerate(items):
        assert item["start"] == view and item["views"].shape == (3, 16, 64, 64, 3)
        left_crop = item["views"][0].numpy()  # x 0..64 of the 160 x 64 frames: counter bits 0-3
        expected = test_indices(temporal, FRAMES, 16, 4, view, 3)
        assert [low_counter_bits(f) for f in left_crop] == [int(i) % 16 for i in expected]
    with pytest.raises(ValueError, match="no label"):
        dataset._video_items(raw_video(counter_mp4))
