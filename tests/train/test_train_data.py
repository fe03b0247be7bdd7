"""The pretraining data pipeline: URLs, crops and flips with boxes, corrupt samples, resume skip."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch

from smile_data.sampling import crop_resize_clip, hflip
from smile_data.shards.sample_count import count_samples
from smile_train.data.loader import (
    PretrainClips,
    StreamStart,
    TooManyCorruptSamples,
    expand_urls,
)
from smile_train.settings.pretrain import PretrainSettings


def small_settings(**changes) -> PretrainSettings:
    base = dict(input_size=64, frames=16, num_workers=0, shuffle_buffer=4, mask="trajectory")
    return PretrainSettings(**{**base, **changes})


def test_expand_urls_globs_braces_and_errors(tiny_shards):
    by_glob = expand_urls(str(tiny_shards / "clips-*.tar"))
    by_brace = expand_urls(str(tiny_shards / "clips-{000000..000002}.tar"))
    assert by_glob == by_brace and len(by_glob) == 3
    assert count_samples(by_glob).total == 12
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        expand_urls(str(tiny_shards / "nothing-*.tar"))
    with pytest.raises(FileNotFoundError, match="clips-000003.tar"):
        expand_urls(str(tiny_shards / "clips-{000000..000009}.tar"))
    assert expand_urls("pipe:cat a.tar, https://host/b.tar") == ["pipe:cat a.tar", "https://host/b.tar"]


def test_crop_resize_and_flip_move_boxes_with_pixels():
    frames = np.zeros((2, 100, 200, 3), np.uint8)
    frames[:, 20:40, 120:160] = 255  # a white box at x 120..160, y 20..40
    boxes = np.array([[[120, 20, 160, 40]]] * 2, np.float32)  # (T, K, 4)
    out, moved = crop_resize_clip(frames, boxes, (100, 0, 100, 100), 50)  # right half, halved
    np.testing.assert_allclose(moved[0, 0], [10, 10, 30, 20])
    assert out[0, 12:18, 12:28].min() == 255 and out[0, 30:, :].max() == 0
    flipped, flipped_boxes = hflip(out, moved)
    np.testing.assert_allclose(flipped_boxes[0, 0], [20, 10, 40, 20])
    assert flipped[0, 12:18, 22:38].min() == 255


def test_pipeline_yields_clips_with_exact_mask_counts(tiny_shards):
    settings = small_settings(shards=str(tiny_shards / "*.tar"), second_mask="own")
    dataset = PretrainClips(expand_urls(settings.shards), settings)
    first = [s for _, s in zip(range(5), dataset)]
    assert first[0]["video"].shape == (16, 64, 64, 3) and first[0]["video"].dtype == torch.uint8
    masks = first[0]["masks"]  # (R, N): two independent masks, 8 x 4 x 4 tokens
    assert masks.shape == (2, 128)
    expected = 8 * int(0.8 * 16)
    assert all(int(m.sum()) == expected for s in first for m in s["masks"])
    again = [s for _, s in zip(range(5), PretrainClips(expand_urls(settings.shards), settings))]
    assert all(torch.equal(a["masks"], b["masks"]) for a, b in zip(first, again))


def test_skipping_resumes_the_exact_stream(tiny_shards):
    settings = small_settings(shards=str(tiny_shards / "*.tar"))
    urls = expand_urls(settings.shards)
    full = [s for _, s in zip(range(6), PretrainClips(urls, settings))]
    resumed = PretrainClips(urls, settings, start=StreamStart(batches=2, batch_size=2))
    tail = [s for _, s in zip(range(2), resumed)]
    for a, b in zip(full[4:], tail):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["masks"], b["masks"])
    # round-robin DataLoader workers: 5 batches over 2 workers -> 3 from worker 0, 2 from worker 1;
    # the resumed loader asks its worker 0 first, which runs stream 1
    start = StreamStart(batches=5, batch_size=3)
    assert (start.samples_before(0, 2), start.samples_before(1, 2)) == (9, 6)
    assert (start.stream_of(0, 2), start.stream_of(1, 2)) == (1, 0)


def _corrupt_copy(source, target):
    """Copy a shard, replacing one frame of its first sample by garbage bytes."""
    with tarfile.open(source) as src, tarfile.open(target, "w", format=tarfile.USTAR_FORMAT) as dst:
        for index, member in enumerate(src.getmembers()):
            payload = src.extractfile(member).read()
            if index == 0:
                payload = b"not a png at all"
            info = tarfile.TarInfo(member.name)
            info.size = len(payload)
            dst.addfile(info, io.BytesIO(payload))


def test_corrupt_samples_are_skipped_counted_and_bounded(tiny_shards, tmp_path):
    bad = tmp_path / "clips-000000.tar"
    _corrupt_copy(tiny_shards / "clips-000000.tar", bad)
    settings = small_settings(shards=str(bad), shuffle_buffer=1)
    samples = [s for _, s in zip(range(3), PretrainClips([str(bad)], settings))]
    assert len(samples) == 3
    assert sum(int(s["corrupt"]) for s in samples) == 1
    strict = small_settings(shards=str(bad), shuffle_buffer=1, max_corrupt_samples=0)
    with pytest.raises(TooManyCorruptSamples, match="corrupt samples"):
        next(iter(PretrainClips([str(bad)], strict)))



def test_masks_follow_the_rotated_footprint():
    from smile_data.shards.layout import footprint_boxes

    metadata = {"frames": 2, "objects": [{"boxes": [[0, 0, 40, 10]] * 2, "angles": [0.0, 90.0]}]}
    boxes = footprint_boxes(metadata)  # (T, N, 4)
    np.testing.assert_allclose(boxes[0, 0], [0, 0, 40, 10], atol=1e-4)
    np.testing.assert_allclose(boxes[1, 0], [15, -15, 25, 25], atol=1e-4)


class _Marker:
    """Unpickling this would create a file: proof that nothing in the loader unpickles."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_loader_never_unpickles_shard_members(tiny_shards, tmp_path):
    import pickle

    marker = tmp_path / "unpickled"
    evil = tmp_path / "clips-000000.tar"
    with tarfile.open(tiny_shards / "clips-000000.tar") as src, tarfile.open(evil, "w", format=tarfile.USTAR_FORMAT) as dst:
        for member in src.getmembers():
            payload = src.extractfile(member).read()
            if member.name.endswith(".json"):  # every sample also carries a pickle
                extra = pickle.dumps(_Marker(str(marker)))
                info = tarfile.TarInfo(member.name.replace(".json", ".pickle"))
                info.size = len(extra)
                dst.addfile(info, io.BytesIO(extra))
            info = tarfile.TarInfo(member.name)
            info.size = len(payload)
            dst.addfile(info, io.BytesIO(payload))
    settings = small_settings(shards=str(evil), shuffle_buffer=1, max_corrupt_samples=50)
    for _ in zip(range(4), PretrainClips([str(evil)], settings)):
        pass
    assert not marker.exists()
