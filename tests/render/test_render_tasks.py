"""RenderTask: pure functions of (seed, task), pickling with its inputs, source order."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
from PIL import Image

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


def test_a_pickled_task_renders_the_same_and_carries_no_decoded_state(tmp_path, tiny_bank):
    images = _photos(tmp_path / "photos", 3)
    settings = RenderSettings(backgrounds=["image", "noise"], images=str(images), bank=str(tiny_bank),
                              clips=6, variants=2, size=48, frames=4)
    task, _, _ = build_render_task(settings)
    payload = pickle.dumps(task)
    expected = [s.members for t in range(3) for s in task(t).samples]
    assert len(task._picker.sprites) > 0 and task._orders  # decoded objects and source orders ...
    assert pickle.dumps(task) == payload  # ... stay in this process: a worker starts empty
    copy = pickle.loads(payload)
    assert len(copy._picker.sprites) == 0 and not copy._orders
    assert [s.members for t in range(3) for s in copy(t).samples] == expected


def test_workers_use_the_sources_listed_when_the_run_started(tmp_path):
    images = _photos(tmp_path / "photos", 3)
    task, _, card = build_render_task(RenderSettings(backgrounds=["image"], images=str(images),
                                                     clips=9, **SMALL))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "new.png")
    copy = pickle.loads(pickle.dumps(task))
    used = {copy(t).samples[0].row["source"] for t in range(9)}
    assert used == {"0.png", "1.png", "2.png"} and card["inputs"]["images"]["count"] == 3


def test_a_clip_is_the_same_whatever_task_size_surrounds_it(tmp_path):
    """Clip i draws from [seed, i] only: the noise of a clip does not depend on its neighbours."""
    one, _, _ = build_render_task(RenderSettings(backgrounds=["noise"], clips=8, variants=1, **SMALL))
    four, _, _ = build_render_task(RenderSettings(backgrounds=["noise"], clips=8, variants=4, **SMALL))
    assert one(5).samples[0].members == four(1).samples[1].members
