"""Source lists, video decoding of real files, bad sources, frame sampling and the crop."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from smile_data.images import resize_short_side
from smile_data.render.backgrounds import (
    BackgroundDraw,
    crop_and_flip,
    draw_background,
    natural_clip,
    natural_indices,
    sampling_rng,
    single_frame_indices,
    still_clip,
)
from smile_data.render.settings import RenderSettings, parse_backgrounds
from smile_data.render.sources import (
    VIDEO_EXTENSIONS,
    SourceError,
    list_sources,
    parse_list,
    read_image,
    read_video_frames,
)
from smile_data.sampling import crop_pairs, crop_sides, grid_offsets, multiscale_crop_box, window_indices

CARPHONE_FRAMES = 120


def _write_video(path: Path, frames: int, size=(64, 48)) -> None:
    """An MJPEG AVI whose frame i is filled with the grey level 8*i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 8 * i, np.uint8))
    writer.release()


def test_lists_accept_videomae_csv_spaces_commas_headers_and_comments(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("path,label\n# a comment\nclips/a.mp4,3\n\n/abs/b.mp4 , 7\n")
    sources = parse_list(listing, tmp_path / "root")
    assert [(s.name, s.label) for s in sources] == [("clips/a.mp4", 3), ("/abs/b.mp4", 7)]
    assert sources[0].path == str(tmp_path / "root" / "clips/a.mp4")
    assert sources[1].path == "/abs/b.mp4"
    spaced = tmp_path / "val.txt"
    spaced.write_text("x.avi 12\ny.avi 300 4\nz.avi\n")
    assert [(s.name, s.label) for s in parse_list(spaced, tmp_path)] == [
        ("x.avi", 12), ("y.avi", 4), ("z.avi", None)]


def test_a_bad_label_names_the_file_and_line(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("a.mp4 1\nb.mp4 dog\n")
    with pytest.raises(ValueError, match=r"train.csv:2: label 'dog'"):
        parse_list(listing, tmp_path)


def test_folders_are_listed_recursively_by_extension(tmp_path):
    (tmp_path / "v" / "sub").mkdir(parents=True)
    for name in ("v/b.mp4", "v/sub/a.AVI", "v/notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    sources = list_sources(str(tmp_path / "v"), "", VIDEO_EXTENSIONS, "videos")
    assert [s.name for s in sources] == ["b.mp4", "sub/a.AVI"]
    with pytest.raises(FileNotFoundError, match="videos folder or list not found"):
        list_sources(str(tmp_path / "nowhere"), "", VIDEO_EXTENSIONS, "videos")


def test_reads_exactly_the_wanted_frames_of_a_real_video(sample_videos):
    path = str(sample_videos["carphone_pristine.mp4"])
    wanted = [0, 7, 64, CARPHONE_FRAMES - 1]
    frames, length = read_video_frames(path, lambda n: wanted)
    assert length == CARPHONE_FRAMES and sorted(frames) == wanted
    capture = cv2.VideoCapture(path)
    for index in range(CARPHONE_FRAMES):
        ok, reference = capture.read()
        assert ok
        if index in frames:
            assert np.array_equal(frames[index], reference)
    capture.release()


def test_decoded_frames_can_be_transformed(sample_videos):
    frames, _ = read_video_frames(str(sample_videos["bikes.mp4"]), lambda n: [3],
                                  lambda f: resize_short_side(f, 68))
    assert frames[3].shape == (68, 160, 3)  # 640x272 -> short side 68


@pytest.mark.parametrize("content,reason", [
    (None, "file not found"), (b"", "empty file"),
    (np.random.default_rng(0).bytes(4096), "cannot open as a video"),
])
def test_bad_videos_raise_a_source_error_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=reason):
        read_video_frames(str(path), lambda n: [0])


def test_an_over_reported_length_is_replanned_from_the_decodable_frames(tmp_path):
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    _write_video(whole, 30)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])  # the container still says 30 frames
    asked = []
    frames, length = read_video_frames(str(cut), lambda n: asked.append(n) or [n - 1])
    assert asked[0] == 30 and 0 < length < 30 and list(frames) == [length - 1]


def test_short_videos_follow_the_released_window_rule(tmp_path):
    s = dataclasses.replace(RenderSettings(), frames=8, stride=4)
    for seed in range(20):  # 10 frames < 8 x 4: start 0, advance only while below length - 1
        assert natural_indices(BackgroundDraw(0.5, seed), 10, s) == [0, 4, 8, 8, 8, 8, 8, 8]
    s = dataclasses.replace(s, frames=4)
    starts = {natural_indices(BackgroundDraw(0.5, seed), 100, s)[0] for seed in range(400)}
    assert min(starts) == 0 and max(starts) == 100 - 4 * 4  # start uniform in [0, n - T x stride]
    assert single_frame_indices(0.5, 7, 3) == [3, 3, 3]
    path = tmp_path / "short.avi"
    _write_video(path, 5)
    s = dataclasses.replace(s, stride=2)
    frames, length = read_video_frames(str(path), lambda n: sorted(set(natural_indices(BackgroundDraw(0.3, 1), n, s))))
    assert length == 5 and sorted(frames) == [0, 2]


def test_render_draws_the_window_crop_and_flip_the_loader_draws():
    """A natural background takes sampling.window_indices, then sampling.multiscale_crop_box,
    then the flip, from one generator, in the loader's order (smile_train/data/sources.py)."""
    s = dataclasses.replace(RenderSettings(), frames=4, stride=3, size=32, flip=True)
    height, width, length = 48, 64, 40
    decoded = {i: np.full((height, width, 3), i, np.uint8) for i in range(length)}
    decoded[0][:, :8] = 255  # a marked left edge shows where the crop and flip took the frame from
    for seed in range(30):
        draw = BackgroundDraw(0.0, seed)
        clip, geometry = natural_clip(decoded, length, draw, s)
        rng = np.random.default_rng(seed)
        indices = window_indices(rng, length, s.frames, s.stride)
        box = multiscale_crop_box(rng, height, width, s.size, tuple(s.crop_scales), s.crop_max_distort, "grid")
        flip = bool(rng.random() < 0.5)
        assert geometry["crop"] == list(box) and geometry["flip"] == flip
        assert natural_indices(draw, length, s) == indices.tolist()
        assert [int(frame[0, 0, 1]) for frame in clip[1:]] == indices[1:].tolist()  # grey level = index


def test_crops_are_group_multiscale_crops_of_the_short_side():
    s = RenderSettings()
    image = np.zeros((240, 320, 3), np.uint8)
    sides = crop_sides(240, s.size, tuple(s.crop_scales))
    pairs = set(crop_pairs(sides, 1))
    seen = set()
    for seed in range(300):
        _, geometry = still_clip(image, BackgroundDraw(0.0, seed), s)
        x, y, w, h = geometry["crop"]
        assert (w, h) in pairs and (x, y) in grid_offsets(320, 240, w, h)
        seen.add((w, h))
    assert seen == pairs and all(abs(w / h - 1) < 0.25 for w, h in seen)  # never stretched more
    assert geometry["flip"] is False  # render's default: no flip, as released


def test_flip_is_drawn_only_when_enabled():
    no_flip = RenderSettings()
    assert no_flip.flip is False
    assert not any(crop_and_flip(np.random.default_rng(i), 240, 320, no_flip)[1] for i in range(50))
    flipping = dataclasses.replace(no_flip, flip=True)
    flips = [crop_and_flip(np.random.default_rng(i), 240, 320, flipping)[1] for i in range(400)]
    assert 0.4 < np.mean(flips) < 0.6
    draws = [draw_background(np.random.default_rng(i)) for i in range(3)]
    assert len({d.sampling_seed for d in draws}) == 3
    assert sampling_rng(draws[0]).random() == sampling_rng(draws[0]).random()


def test_background_weights_are_parsed_and_checked():
    assert parse_backgrounds(["natural:3", "noise"]) == (("natural", "noise"), (0.75, 0.25))
    for bad in (["mud"], ["noise:0"], ["noise:x"], ["noise", "noise"], []):
        with pytest.raises(ValueError):
            parse_backgrounds(bad)


def test_images_read_as_bgr_and_bad_images_are_source_errors(sample_photos, tmp_path):
    astronaut = read_image(str(sample_photos / "astronaut.png"))
    assert astronaut.shape == (512, 512, 3)
    camera = read_image(str(sample_photos / "camera.png"))  # greyscale becomes 3 channels
    assert camera.ndim == 3 and np.array_equal(camera[..., 0], camera[..., 2])
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(SourceError, match="cannot decode"):
        read_image(str(broken))
