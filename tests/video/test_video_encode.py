"""Re-encoding for `pack --store video`: sizes, keyframes, B-frames no window must decode, and
the same bytes every time."""

from __future__ import annotations

import io

import av

from smile_data.samples import sample_videos
from smile_data.video import decode_frames, probe_video
from smile_data.video.encode import EncodeSettings, even_size, reencode_video
from tests.video.video_files import encode_video, read_counter


def test_even_size_keeps_the_aspect_and_rounds_to_even():
    assert even_size(640, 272, 320) == (752, 320)
    assert even_size(176, 144, 64) == (78, 64)
    assert even_size(272, 640, 100) == (100, 236)
    assert even_size(175, 143, 0) == (176, 144)  # 0 keeps the size, made even


def test_reencoding_keeps_every_frame_in_place_with_fixed_keyframes():
    source = encode_video(40, keyframe_interval=40, b_frames=0)
    encoded, info = reencode_video(source, EncodeSettings(0, 8, 18, "veryfast"))
    assert (info.width, info.height, info.frames, info.fps) == (160, 64, 40, 25.0)
    assert info.keyframes == (0, 8, 16, 24, 32)
    assert [read_counter(f) for f in decode_frames(encoded, range(40), info=info)] == list(range(40))
    with av.open(io.BytesIO(encoded)) as container:  # I and P frames: every fourth or so
        kinds = [av.video.frame.PictureType(frame.pict_type).name for frame in container.decode(video=0)]
    assert len(kinds) == 40 and kinds.count("B") >= 40 * 3 / 4 - 5


def test_the_same_input_gives_the_same_bytes_every_time():
    source = next(p for p in sample_videos() if p.name == "carphone_pristine.mp4").read_bytes()
    settings = EncodeSettings(48, 16, 23, "veryfast")
    outputs = {reencode_video(source, settings)[0] for _ in range(4)}
    assert len(outputs) == 1
    assert probe_video(outputs.pop()).height == 48
