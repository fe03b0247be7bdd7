"""Render settings and run identity: value checks, rounded probability lists, one-frame clips,
and a fingerprint that identifies inputs by content, not by where they lie."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from smile_data.render.patches import make_patch
from smile_data.render.run import build_render_task, render_dataset
from smile_data.render.settings import RenderSettings, check_render_settings
from smile_data.render.sources import parse_list
from smile_data.render.trajectory import generate_trajectory

SMALL = dict(size=32, frames=4, clips=3, backgrounds=["noise"])
ROUNDED = [0.5, 0.35, 0.1499995]  # sums to 1 within the check's tolerance, not numpy's


@pytest.mark.parametrize("name,value,message", [
    ("box_jitter", -0.1, "box_jitter: must be >= 0"),
    ("scale_step", -0.01, "scale_step: must be >= 0"),
    ("rotation_step", -1.0, "rotation_step: must be >= 0"),
    ("linear_max_shift", -2.0, "linear_max_shift: must be >= 0"),
    ("source_retries", -1, "source_retries: must be >= 0"),
    ("patch_soft_edge_prob", 1.5, r"patch_soft_edge_prob: must be within \[0, 1\]"),
    ("patch_soft_edge_prob", -0.1, r"patch_soft_edge_prob: must be within \[0, 1\]"),
])
def test_out_of_range_values_are_refused_by_name(name, value, message):
    with pytest.raises(ValueError, match=message):
        check_render_settings(dataclasses.replace(RenderSettings(), **{name: value}))


def test_probability_lists_rounded_within_the_tolerance_render(tiny_bank):
    settings = RenderSettings(**SMALL, overlay="patches", patch_shape_probs=ROUNDED,
                              inner_keyframe_probs=ROUNDED, interpolation_probs=ROUNDED[::-1])
    check_render_settings(settings)
    task, _, _ = build_render_task(settings)
    assert len(task(0).samples) == 1
    weighted = RenderSettings(**{**SMALL, "backgrounds": ["noise:1", "black:2"]}, overlay="none")
    task, _, _ = build_render_task(weighted)
    assert {task.background_kind(t) for t in range(30)} == {"noise", "black"}


@pytest.mark.parametrize("overlay", ["objects", "patches"])
def test_one_frame_clips_render_with_overlays(tiny_bank, overlay):
    settings = RenderSettings(**{**SMALL, "frames": 1}, overlay=overlay, bank=str(tiny_bank))
    task, _, _ = build_render_task(settings)
    (sample,) = task(0).samples
    assert set(sample.members) == {"00.jpg", "json"}
    clip = np.zeros((1, 32, 32, 3), np.uint8)
    trajectory = generate_trajectory(np.random.default_rng(0), settings, 1, 32, 32)
    assert make_patch(np.random.default_rng(1), settings, clip, trajectory).opacity.shape == (1,)


def test_a_moved_bank_is_the_same_input(tmp_path, tiny_bank):
    settings = RenderSettings(**SMALL, bank=str(tiny_bank))
    out = tmp_path / "out"
    first = render_dataset(settings, out)
    moved = shutil.move(str(tiny_bank), str(tmp_path / "elsewhere"))
    again = render_dataset(dataclasses.replace(settings, bank=moved), out)  # resumes: done
    assert again["shards"] == first["shards"]
    _, fingerprint, card = build_render_task(dataclasses.replace(settings, bank=moved))
    assert "bank" not in fingerprint["settings"] and card["settings"]["bank"] == moved
    assert card["inputs"]["object_bank"]["sha256"] == first["inputs"]["object_bank"]["sha256"]


def test_the_bank_hash_covers_its_objects(tiny_bank):
    (tiny_bank / "bank.json").write_text('{"source": "test"}\n')  # the same card throughout
    _, _, card = build_render_task(RenderSettings(**SMALL, bank=str(tiny_bank)))
    extra = tiny_bank / "dog" / "2.png"
    shutil.copyfile(tiny_bank / "dog" / "0.png", extra)
    _, _, grown = build_render_task(RenderSettings(**SMALL, bank=str(tiny_bank)))
    assert grown["inputs"]["object_bank"]["sha256"] != card["inputs"]["object_bank"]["sha256"]


def test_a_list_that_is_not_utf8_is_named(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_bytes(b"a.mp4 1\n\xff\xfe.mp4 2\n")
    with pytest.raises(ValueError, match=r"train\.csv: not UTF-8 text"):
        parse_list(listing, tmp_path)
