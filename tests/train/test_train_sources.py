"""Sources of a stage: overlays drawn in the loader, weighted sources, per-sample determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smile_data.config import SettingsError
from smile_data.shards.reader import iter_tar_samples
from smile_train.data.loader import PretrainClips, masking, resolve_sources
from smile_train.data.sources import SourceSampler, stage_sources
from smile_train.settings.pretrain import PretrainSettings


def settings(**changes) -> PretrainSettings:
    base = dict(input_size=64, frames=16, num_workers=0, shuffle_buffer=4, mask="trajectory",
                traj_unmask_ratio=0.1)
    return PretrainSettings(**{**base, **changes})


def take(dataset, count: int) -> list[dict]:
    return [sample for _, sample in zip(range(count), dataset)]


def test_overlays_drawn_in_the_loader_are_masked_as_trajectories(tiny_shards, tiny_bank):
    bank = tiny_bank
    s = settings(shards=str(tiny_shards / "*.tar"), overlay="objects", bank=str(bank), crop="multiscale",
                 overlay_settings={"box_sides": [16, 24], "gaussian_extent_min": 10, "gaussian_extent_max": 40})
    source = stage_sources(s)[0]
    sampler = SourceSampler(source, s.input_size, s.frames)
    raw = next(iter_tar_samples(str(sorted(tiny_shards.glob("*.tar"))[0])))
    clip = sampler(raw, np.random.default_rng(3))
    assert clip.frames.shape == (16, 64, 64, 3) and clip.boxes.shape == (16, 3, 4)  # 1 + 2 objects
    again = sampler(raw, np.random.default_rng(3))
    assert np.array_equal(clip.frames, again.frames) and np.array_equal(clip.boxes, again.boxes)
    other = sampler(raw, np.random.default_rng(4))
    assert not np.array_equal(clip.frames, other.frames)
    # The trajectory mask hides the object tokens of the drawn boxes, bar the visible share.
    grid = (8, 4, 4)
    objects = masking.trajectory_tokens(clip.boxes, grid, 16, 2)
    mask = masking.sample_mask(np.random.default_rng(0), masking.MaskSettings("trajectory", 0.8, 0.1),
                               grid, clip.boxes, 16, 2)
    assert objects.sum() > 0 and mask[objects].mean() >= 0.8


def test_loader_overlays_are_fresh_per_sample_and_reproducible(tiny_shards):
    s = settings(shards=str(tiny_shards / "*.tar"), overlay="patches", crop="multiscale")
    first = take(PretrainClips(resolve_sources(s), s), 30)
    again = take(PretrainClips(resolve_sources(s), s), 30)
    assert all(a["key"] == b["key"] and a["video"].equal(b["video"]) and a["masks"].equal(b["masks"])
               for a, b in zip(first, again))
    by_key: dict[str, list] = {}
    for sample in first:
        by_key.setdefault(sample["key"], []).append(sample["video"])
    repeats = [views for views in by_key.values() if len(views) > 1]
    assert repeats and all(not views[0].equal(views[1]) for views in repeats)


def test_weighted_sources_each_keep_their_settings(tiny_shards, tmp_path):
    s = settings(shards=str(tiny_shards / "*.tar"), sources=[
        {"weight": 3},
        {"weight": 1, "overlay": "patches", "overlay_settings": {"objects": 1}},
    ])
    sources = resolve_sources(s)
    assert [x.settings.overlay for x in sources] == ["none", "patches"]
    dataset = PretrainClips(sources, s)
    counts = [0, 0]
    original = dataset._prepare

    def spy(sampler, raw, rng):
        counts[dataset.sources.index(next(x for x in dataset.sources if x.settings is sampler.source))] += 1
        return original(sampler, raw, rng)

    dataset._prepare = spy
    take(dataset, 80)
    assert 45 < counts[0] < 75 and counts[0] + counts[1] == 80


def test_source_entries_are_checked_against_the_settings(tiny_shards):
    with pytest.raises(SettingsError, match=r"sources\[2\].*unknown setting.*strides"):
        stage_sources(settings(shards="x", sources=[{"shards": "a"}, {"strides": 2}]))
    with pytest.raises(SettingsError, match=r"sources\[1\]: setting 'temporal' must be one of window, segments, got 'frames'"):
        stage_sources(settings(shards="x", sources=[{"temporal": "frames"}]))
    with pytest.raises(SettingsError, match="overlay objects needs a bank"):
        stage_sources(settings(shards="x", overlay="objects"))
    with pytest.raises(SettingsError, match="may not set size"):
        stage_sources(settings(shards="x", overlay="patches", overlay_settings={"size": 32}))


def test_a_resumed_loader_continues_with_the_uninterrupted_batches(tiny_shards):
    """Two loader workers, two sources with overlays drawn in the loader, resumed mid-epoch after
    an odd number of batches (the worker asked next is worker 1, not the DataLoader's first)."""
    from smile_train.data.loader import build_loader

    s = settings(shards=str(tiny_shards / "*.tar"), num_workers=2, crop="multiscale", sources=[
        {"weight": 1}, {"weight": 1, "overlay": "patches"}])
    sources = resolve_sources(s)

    def batches(resume: int, count: int) -> list[dict]:
        loader = build_loader(s, sources, 2, 0, resume_batches=resume)
        return [batch for _, batch in zip(range(count), loader)]

    full = batches(0, 6)
    for resume in (3, 4):
        for expected, got in zip(full[resume:], batches(resume, 6 - resume)):
            assert expected["key"] == got["key"] and torch.equal(expected["video"], got["video"])
            assert torch.equal(expected["masks"], got["masks"])


def test_source_numbers_are_bounded():
    with pytest.raises(SettingsError, match=r"data settings: setting 'stride' must be in \[1, 64\], got 0"):
        stage_sources(settings(shards="x", stride=0))
    with pytest.raises(SettingsError, match="weight -1.0 must be > 0"):
        stage_sources(settings(shards="x", sources=[{"weight": -1}]))
    with pytest.raises(SettingsError, match="at most 64"):
        stage_sources(settings(shards="x", sources=[{}] * 65))
    # no crop pair to draw from: every sample would be counted as corrupt
    for entry in ({"crop_scales": []}, {"crop_max_distort": -1}):
        with pytest.raises(SettingsError, match=rf"sources\[1\]: setting '{next(iter(entry))}' must be"):
            stage_sources(settings(shards="x", crop="multiscale", sources=[entry]))
