"""RenderTask: pure functions of (seed, task), light pickling, per-process state, source order."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from smile_data.render import worker_state
from smile_data.render.run import build_render_task
from smile_data.render.settings import RenderSettings

SMALL = dict(size=48, frames=4, overlay="none")


def _photos(folder, count: int):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_each_source_is_used_once_per_pass_over_the_list(tmp_path):
    images = _photos(tmp_path / "photos", 5)
    task, _, _ = build_render_task(RenderSettings(backgrounds=["image"], images=str(images), clips=15, **SMALL))
    used = [task(t).samples[0].row["source"] for t in range(15)]
    for epoch in range(3):
        assert sorted(used[5 * epoch: 5 * epoch + 5]) == [f"{i}.png" for i in range(5)]
    assert used[:5] != used[5:10] or used[5:10] != used[10:15]  # each pass is reshuffled


def test_background_kinds_follow_their_weights_and_the_seed(tmp_path):
    settings = RenderSettings(backgrounds=["black:3", "noise:1"], clips=4000, **SMALL)
    task, _, _ = build_render_task(settings)
    kinds = Counter(task.background_kind(t) for t in range(4000))
    assert abs(kinds["black"] / 4000 - 0.75) < 0.03
    again, _, _ = build_render_task(settings)
    assert [again.background_kind(t) for t in range(50)] == [task.background_kind(t) for t in range(50)]


def test_a_task_pickles_light_and_renders_the_same_in_a_fresh_process(tmp_path, tiny_bank):
    images = _photos(tmp_path / "photos", 3)
    settings = RenderSettings(backgrounds=["image", "noise"], images=str(images), bank=str(tiny_bank),
                              clips=6, variants=2, size=48, frames=4)
    task, _, _ = build_render_task(settings)
    expected = [s.members for t in range(3) for s in task(t).samples]
    payload = pickle.dumps(task)
    assert len(payload) < 4096  # settings and hashes only
    worker_state.clear_process_states()  # as in a newly spawned worker
    copy = pickle.loads(payload)
    assert [s.members for t in range(3) for s in copy(t).samples] == expected


def test_a_worker_refuses_a_source_list_that_changed(tmp_path):
    images = _photos(tmp_path / "photos", 3)
    task, _, _ = build_render_task(RenderSettings(backgrounds=["image"], images=str(images), **SMALL))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "new.png")
    worker_state.clear_process_states()
    with pytest.raises(ValueError, match="changed after the run started"):
        pickle.loads(pickle.dumps(task))(0)


def test_a_clip_is_the_same_whatever_task_size_surrounds_it(tmp_path):
    """Clip i draws from [seed, i] only: the noise of a clip does not depend on its neighbours."""
    one, _, _ = build_render_task(RenderSettings(backgrounds=["noise"], clips=8, variants=1, **SMALL))
    four, _, _ = build_render_task(RenderSettings(backgrounds=["noise"], clips=8, variants=4, **SMALL))
    assert one(5).samples[0].members == four(1).samples[1].members
