"""OpenVideo: one open per video, a given frame index checked against the container, crops
converted from the planes, and the decoding work of a request bounded."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from smile_data.images import crop_resize
from smile_data.samples import sample_videos
from smile_data.video import FrameIndex, OpenVideo, VideoError, VideoLimits, index_from_record
from smile_data.video.decode import decode_runs
from tests.video.video_files import encode_video, read_counter

FRAMES, INTERVAL = 40, 8


@pytest.fixture(scope="module")
def counter_mp4() -> bytes:
    return encode_video(FRAMES, keyframe_interval=INTERVAL, b_frames=2)


@pytest.fixture(scope="module")
def probed(counter_mp4) -> FrameIndex:
    with OpenVideo(counter_mp4) as video:
        return video.info.index


def test_the_index_record_round_trips_and_opens_without_reading_packets(counter_mp4, probed):
    record = probed.record()
    assert record["pts_steps"] == [[FRAMES - 1, probed.pts[1] - probed.pts[0]]]  # one run: constant rate
    assert record["keyframes"] == list(range(0, FRAMES, INTERVAL))
    index = index_from_record(record, VideoLimits())
    assert index == probed
    with OpenVideo(counter_mp4, index=index) as video:
        indices = [39, 3, 3, 17, 0, 25]
        assert [read_counter(f) for f in video.frames(indices)] == indices
        assert [read_counter(f) for f in video.frames([8, 9])] == [8, 9]  # a second request, same open


@pytest.mark.parametrize("change, message", [
    ({"time_base": [1, 0]}, "time_base must be two positive"),
    ({"first_pts": "0"}, "first_pts must be an integer"),
    ({"pts_steps": [[0, 512]]}, "pairs of positive integers"),
    ({"pts_steps": [[10**9, 1]]}, "more than the 100000 allowed"),
    ({"keyframes": [8, 0]}, "must be ascending"),
    ({"keyframes": [0, 40]}, r"within 0..39"),
    ({"keyframes": [1]}, "does not start with a keyframe"),
    ({"extra": 1}, "exactly first_pts"),
])
def test_malformed_records_are_refused_before_any_array_is_built(probed, change, message):
    with pytest.raises(VideoError, match=message):
        index_from_record({**probed.record(), **change}, VideoLimits())


@pytest.mark.parametrize("change, message", [
    ({"time_base": [1, 1000]}, "time base"),
    ({"pts_steps": [[FRAMES, 512]]}, "frame count 41 != 40"),
    ({"first_pts": 7}, "first timestamp 7 != 0"),
])
def test_a_record_that_does_not_match_the_container_is_refused(counter_mp4, probed, change, message):
    index = index_from_record({**probed.record(), **change}, VideoLimits())
    with pytest.raises(VideoError, match=f"does not match the container.*{message}"):
        OpenVideo(counter_mp4, index=index)


def test_a_record_with_other_timestamps_fails_on_the_first_decoded_frame(counter_mp4, probed):
    step = probed.pts[1] - probed.pts[0]
    record = {**probed.record(), "pts_steps": [[FRAMES // 2, step], [FRAMES // 2 - 1, 2 * step]]}
    with OpenVideo(counter_mp4, index=index_from_record(record, VideoLimits())) as video:
        with pytest.raises(VideoError, match="timestamp .* the frame index lacks"):
            video.frames([30])


def test_a_record_naming_a_frame_that_is_no_keyframe_still_decodes_the_right_frames(counter_mp4, probed):
    record = {**probed.record(), "keyframes": [0, 5, 8, 13, 16, 24, 32]}
    with OpenVideo(counter_mp4, index=index_from_record(record, VideoLimits())) as video:
        assert [read_counter(f) for f in video.frames([6, 14, 14])] == [6, 14, 14]


def test_crops_are_the_crops_of_the_whole_frames(counter_mp4):
    data = next(p for p in sample_videos() if p.name == "bikes.mp4").read_bytes()
    with OpenVideo(data) as video:
        whole = video.frames([0, 100, 249])
        for crop in [(0, 0, 640, 272), (1, 3, 211, 180), (37, 0, 272, 272), (428, 91, 211, 181)]:
            cropped = video.frames([0, 100, 249], crop=crop, size=112)
            for got, frame in zip(cropped, whole):
                np.testing.assert_array_equal(got, crop_resize(frame, crop, 112))


def test_each_wanted_frame_decodes_from_its_own_keyframe_unless_continuing_is_shorter(probed):
    assert decode_runs(probed, [0, 39]) == [(0, [0]), (32, [39])]
    assert decode_runs(probed, [3, 9, 12, 30]) == [(0, [3]), (8, [9, 12]), (24, [30])]


def test_the_decoding_work_of_a_request_is_bounded_before_decoding(counter_mp4):
    frame_pixels = 160 * 64
    limits = VideoLimits(max_decoded_pixels=9 * frame_pixels)
    with OpenVideo(counter_mp4, limits) as video:
        # first and last frame: 1 frame from keyframe 0 and 8 from keyframe 32
        assert [read_counter(f) for f in video.frames([0, 39])] == [0, 39]
        with pytest.raises(VideoError, match="takes 10 frames of 160x64, more than the 92160 pixels"):
            video.frames([17, 31])  # 16..17 and 24..31


def test_a_given_index_over_the_frame_limit_is_refused(counter_mp4):
    index = FrameIndex(Fraction(1, 12800), tuple(range(0, 512 * FRAMES, 512)), (0,))
    with pytest.raises(VideoError, match="more than the 39 allowed"):
        OpenVideo(counter_mp4, VideoLimits(max_frames=39), index=index)
