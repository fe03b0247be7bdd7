"""`render --label motion-direction`: balanced classes, every clip's motion inside its class's
sector (in the metadata and in the pixels), labels in .cls / metadata / manifest, the card's
class names, settings checks, validation and byte-identical reruns."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.render.clip import clip_rng, draw_overlays
from smile_data.render.direction import (
    DIRECTION_NAMES, check_direction_settings, direction_label, direction_vector,
)
from smile_data.render.settings import RenderSettings
from smile_data.render.trajectory import generate_trajectory
from smile_data.shards.reader import read_samples
from smile_data.shards.validate import validate_dataset
from tests.render.data_runs import run_for_card

SMALL = ["--size", "64", "--frames", "8"]
DIRECTED = RenderSettings(label="motion-direction", objects=1)


def _render(*args: str) -> dict:
    return run_for_card("render", *args)


def _displacement(boxes) -> np.ndarray:
    """Centre of the last box minus centre of the first: (dx, dy)."""
    boxes = np.asarray(boxes, np.float64)
    return (boxes[-1, :2] + boxes[-1, 2:]) / 2 - (boxes[0, :2] + boxes[0, 2:]) / 2


def _angle_off(displacement: np.ndarray, label: int, classes: int) -> float:
    """Degrees between a displacement and the direction of class `label`."""
    angle = math.degrees(math.atan2(displacement[1], displacement[0]))
    return abs((angle - label * 360 / classes + 180) % 360 - 180)


def test_class_directions_run_clockwise_on_screen_from_right():
    assert DIRECTION_NAMES[4] == ("right", "down", "left", "up")
    assert np.allclose(direction_vector(1, 4), [0, 1])  # image y grows downwards
    assert np.allclose(direction_vector(7, 8), [math.sqrt(0.5), -math.sqrt(0.5)])  # up_right
    assert DIRECTION_NAMES[8][7] == "up_right"
    assert [direction_label(direction_vector(k, 8) * 5, 8) for k in range(8)] == list(range(8))


@pytest.mark.parametrize("classes", [4, 8])
def test_every_path_points_into_its_class_sector_and_stays_in_the_frame(classes):
    s = dataclasses.replace(DIRECTED, direction_classes=classes)
    side = 96
    for i in range(300):
        rng = np.random.default_rng([3, i])
        label = i % classes
        trajectory = generate_trajectory(rng, s, 12, side, side, direction=label)
        moved = _displacement(trajectory.boxes)
        assert _angle_off(moved, label, classes) < 180 / classes
        shortest = (s.direction_travel_min - 2 * s.direction_jitter) * side
        assert np.hypot(*moved) >= shortest
        assert trajectory.centres.min() >= 0 and trajectory.centres.max() <= side
        largest = trajectory.sizes.max(axis=0)
        if (largest + s.direction_travel_max * side < side).all():  # room for the whole path
            boxes = trajectory.boxes
            assert boxes[:, :2].min() >= -1e-9 and boxes[:, 2:].max() <= side + 1e-9


@pytest.mark.parametrize("classes", [4, 8])
def test_labels_are_balanced_over_many_clips(classes):
    s = dataclasses.replace(DIRECTED, overlay="patches", direction_classes=classes, frames=4, size=32)
    clip = np.zeros((4, 32, 32, 3), np.uint8)
    labels = Counter(draw_overlays(clip_rng(0, i), s, clip, None).label for i in range(1600))
    assert sorted(labels) == list(range(classes))
    expected = 1600 / classes
    assert all(abs(count - expected) < 0.25 * expected for count in labels.values())


def test_settings_that_could_blur_the_label_are_refused():
    check_direction_settings(DIRECTED)
    check_direction_settings(dataclasses.replace(DIRECTED, direction_classes=8))
    refused = {
        "objects=1": dict(objects=2),
        "overlay objects or patches": dict(overlay="none"),
        "must be one of": dict(direction_classes=6),
        "too large": dict(direction_classes=8, direction_jitter=0.07),
        "must be at most 1": dict(direction_travel_max=0.9, direction_jitter=0.06),
        "0 < direction_travel_min": dict(direction_travel_min=0.0),
        "at least 2 frames": dict(frames=1),
    }
    for message, changes in refused.items():
        with pytest.raises(ValueError, match=message):
            check_direction_settings(dataclasses.replace(DIRECTED, **changes))


def test_motion_direction_end_to_end(tmp_path, tiny_bank, sample_photos):
    args = [*SMALL, "--label", "motion-direction", "--clips", "24", "--variants", "2",
            "--bg", "noise", "--bg", "black", "--bg", "image", "--images", str(sample_photos),
            "--bank", str(tiny_bank), "--set", "direction_classes=8", "--seed", "5"]
    card = _render("--out", str(tmp_path / "a"), *args)
    assert card["classes"] == list(DIRECTION_NAMES[8])
    assert card["settings"]["objects"] == 1 and card["settings"]["label"] == "motion-direction"
    clips = list(read_samples(sorted(str(p) for p in (tmp_path / "a").glob("*.tar"))))
    assert len(clips) == 24
    for clip in clips:
        (obj,) = clip.metadata["objects"]
        assert obj["kind"] == "object" and clip.label == clip.metadata["label"]
        assert 0 <= clip.label < 8
        assert _angle_off(_displacement(obj["boxes"]), clip.label, 8) < 180 / 8
    manifest = pq.read_table(tmp_path / "a" / "manifest.parquet").to_pylist()
    assert [row["label"] for row in manifest] == [clip.label for clip in clips]
    assert validate_dataset(tmp_path / "a").ok
    _render("--out", str(tmp_path / "b"), *args)
    for name in ("clips-000000.tar", "manifest.parquet", "dataset.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_pixels_move_in_the_labelled_direction(tmp_path):
    bank = tmp_path / "bank" / "apple"
    bank.mkdir(parents=True)
    Image.fromarray(np.full((20, 20, 4), 255, np.uint8), "RGBA").save(bank / "0.png")
    out = tmp_path / "out"
    _render("--out", str(out), "--size", "96", "--frames", "6", "--clips", "16", "--bg", "black",
            "--label", "motion-direction", "--bank", str(tmp_path / "bank"), "--codec", "png",
            "--set", "box_sides=[12, 16]", "--set", "rotation=false")
    for clip in read_samples(str(out / "clips-000000.tar")):
        lit = clip.frames.max(axis=-1) > 127  # (T, H, W) pixels of the white object
        centroids = [np.argwhere(frame).mean(axis=0)[::-1] for frame in lit]  # x, y
        assert _angle_off(centroids[-1] - centroids[0], clip.label, 4) < 45


def test_the_label_mode_moves_one_object_unless_told_otherwise(tmp_path, tiny_bank):
    base = ["render", "--out", str(tmp_path / "a"), *SMALL, "--clips", "2", "--bg", "black",
            "--bank", str(tiny_bank), "--label", "motion-direction"]
    result = CliRunner().invoke(app, [*base, "--objects", "2"])
    assert result.exit_code == 2 and "objects=1" in result.stderr
    config = tmp_path / "direction.yaml"
    config.write_text("label: motion-direction\ndirection_classes: 8\n")
    card = _render("--out", str(tmp_path / "b"), *SMALL, "--clips", "2", "--bg", "black",
                   "--bank", str(tiny_bank), "--config", str(config))
    assert card["settings"]["objects"] == 1 and len(card["classes"]) == 8
    plain = _render("--out", str(tmp_path / "c"), *SMALL, "--clips", "2", "--bg", "black",
                    "--bank", str(tiny_bank))
    assert plain["settings"]["objects"] == 2 and "classes" not in plain
    assert all(clip.label is None for clip in read_samples(str(tmp_path / "c" / "clips-000000.tar")))
