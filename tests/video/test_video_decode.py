"""probe_video / decode_frames on real mp4s: the sample videos and counter videos encoded here."""

from __future__ import annotations

import io

import av
import cv2
import numpy as np
import pytest

from smile_data.samples import sample_videos
from smile_data.video import VideoError, VideoLimits, decode_frames, probe_video
from tests.video.video_files import counter_frame, encode_video, read_counter


@pytest.fixture(scope="module")
def counter_mp4() -> bytes:
    return encode_video(40, keyframe_interval=8, b_frames=2)


def _sample(name: str) -> bytes:
    return next(p for p in sample_videos() if p.name == name).read_bytes()


def test_probe_reads_the_sample_videos_headers():
    info = probe_video(_sample("bikes.mp4"))
    assert (info.width, info.height, info.frames, info.fps) == (640, 272, 250, 25.0)
    assert info.duration == pytest.approx(10.0)
    assert info.keyframes[0] == 0 and len(info.keyframes) > 1


def test_decoded_sample_frames_equal_a_plain_sequential_decode():
    data = _sample("bikes.mp4")
    with av.open(io.BytesIO(data)) as container:  # every frame's planes, converted as ours are
        everything = [cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)
                      for frame in container.decode(video=0)]
    info = probe_video(data)
    indices = [249, 3, 140, 140, 0, 77, 31]  # unsorted, repeated, across several keyframes
    frames = decode_frames(data, indices, info=info)
    assert frames.shape == (len(indices), 272, 640, 3) and frames.dtype == np.uint8
    for got, index in zip(frames, indices):
        np.testing.assert_array_equal(got, everything[index])


@pytest.mark.parametrize("container", ["mp4", "matroska"])
def test_exactly_the_asked_frames_come_back(container):
    data = encode_video(40, keyframe_interval=8, b_frames=2, container=container)
    info = probe_video(data)
    assert info.frames == 40 and info.keyframes == (0, 8, 16, 24, 32)
    indices = [39, 3, 3, 17, 0, 25, 8, 7]
    assert [read_counter(f) for f in decode_frames(data, indices, info=info)] == indices
    # without a probe result, and one frame at a time
    assert [read_counter(decode_frames(data, [i])[0]) for i in (0, 15, 39)] == [0, 15, 39]


def test_decoded_pixels_match_what_was_encoded(counter_mp4):
    frame = decode_frames(counter_mp4, [21])[0].astype(int)
    assert np.abs(frame - counter_frame(21)).mean() < 3  # lossy, but close


def test_no_indices_gives_an_empty_batch(counter_mp4):
    assert decode_frames(counter_mp4, []).shape == (0, 64, 160, 3)


def test_indices_outside_the_video_are_refused(counter_mp4):
    for bad in ([40], [-1]):
        with pytest.raises(VideoError, match="outside 0..39"):
            decode_frames(counter_mp4, bad)


@pytest.mark.parametrize("limits, message", [
    (VideoLimits(max_bytes=1000), "bytes is more than"),
    (VideoLimits(max_width=100), "frame size 160x64"),
    (VideoLimits(max_height=32), "frame size 160x64"),
    (VideoLimits(max_frames=39), "more than the 39"),
    (VideoLimits(max_duration=1.0), "longer than"),
    (VideoLimits(max_output_pixels=160 * 64), "pixels allowed per call"),
])
def test_limits_are_checked_before_decoding(counter_mp4, limits, message):
    with pytest.raises(VideoError, match=message):
        decode_frames(counter_mp4, [0, 1], limits)


def test_truncated_corrupt_empty_and_foreign_data_raise(counter_mp4):
    mdat = counter_mp4.find(b"mdat")
    damaged = bytearray(counter_mp4)
    damaged[mdat + 2000:mdat + 2600] = bytes(600)  # zeros in the middle of the coded frames
    cases = {
        "truncated": counter_mp4[: len(counter_mp4) // 2],
        "header only": counter_mp4[:100],
        "corrupt": bytes(damaged),
        "empty": b"",
        "garbage after a valid box type": counter_mp4[:8] + bytes(range(256)) * 8,
        "png": b"\x89PNG\r\n\x1a\n" + bytes(100),
        "zero frames": _zero_frame_mp4(),
    }
    for name, data in cases.items():
        with pytest.raises(VideoError):
            decode_frames(data, list(range(40)))
            pytest.fail(f"{name} decoded")


def _zero_frame_mp4() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        output.start_encoding()
    return buffer.getvalue()


def test_a_larger_than_declared_frame_is_refused_by_the_decoder(counter_mp4):
    # the header passes the limits but the decoder's own pixel bound is below the frame size
    info = probe_video(counter_mp4)
    with pytest.raises(VideoError):
        decode_frames(counter_mp4, [0], VideoLimits(max_width=160, max_height=32), info=info)
