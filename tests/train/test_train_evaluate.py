"""Multi-view testing: the crops, the grouping of clips into videos, the averaging, the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smile_data.config import SettingsError
from smile_train.cli import app
from smile_train.interop.checkpoint import save_checkpoint
from smile_train.loop.evaluate import ClipOutput, accuracy_report, select_clips, spatial_views, video_scores
from smile_train.model.vit import ClassifierModel, PretrainModel
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import EvalSettings
from tests.conftest import write_test_shards


def coordinate_frames(height: int, width: int, frames: int = 2) -> np.ndarray:
    """(T, H, W, 3): channel 0 = column, channel 1 = row, so a crop shows where it came from."""
    ys, xs = np.mgrid[0:height, 0:width]
    frame = np.stack([xs, ys, np.zeros_like(xs)], axis=-1).astype(np.uint8)
    return np.repeat(frame[None], frames, axis=0)


def test_three_crops_are_left_centre_right_or_top_centre_bottom():
    wide = spatial_views(coordinate_frames(16, 40), size=16, crops=3)  # already at the short side
    assert wide.shape == (3, 2, 16, 16, 3)
    assert [int(v[0, 0, 0, 0]) for v in wide] == [0, 12, 24]  # first column of each crop
    tall = spatial_views(coordinate_frames(40, 16), size=16, crops=3)
    assert [int(v[0, 0, 0, 1]) for v in tall] == [0, 12, 24]  # first row of each crop
    centre = spatial_views(coordinate_frames(16, 40), size=16, crops=1)
    assert int(centre[0, 0, 0, 0, 0]) == 12
    resized = spatial_views(coordinate_frames(32, 80), size=16, crops=3)  # short side 32 -> 16
    assert resized.shape == (3, 2, 16, 16, 3)


def clip(key: str, source: str, label: int, start: int, views: list[list[float]]) -> ClipOutput:
    return ClipOutput(key, source, label, start, np.asarray(views, np.float64))


def test_softmax_is_averaged_over_every_view_of_a_video():
    # Video "a" (label 1): two clips x three crops. Majority vote over views says class 0
    # (4 of 6 views), the average of the probabilities says class 1, as testing must.
    clips = [
        clip("k0", "a", 1, 0, [[0.6, 0.4], [0.55, 0.45], [0.1, 0.9]]),
        clip("k1", "a", 1, 8, [[0.6, 0.4], [0.55, 0.45], [0.2, 0.8]]),
        clip("k2", "b", 0, 0, [[0.7, 0.3], [0.8, 0.2], [0.9, 0.1]]),
    ]
    videos = video_scores(clips, test_clips=5)
    assert [v["source"] for v in videos] == ["a", "b"]
    a, b = videos
    # (0.6 + 0.55 + 0.1 + 0.6 + 0.55 + 0.2) / 6 = 0.4333..., so class 1 gets 0.5666...
    assert np.allclose(a["scores"], [2.6 / 6, 3.4 / 6]) and (a["clips"], a["views"]) == (2, 6)
    assert np.allclose(b["scores"], [0.8, 0.2]) and b["views"] == 3
    report = accuracy_report(videos, num_classes=2)
    assert report["top1"] == 1.0 and report["top5"] == 1.0 and report["views"] == 9
    assert [p["top1"] for p in report["per_class"]] == [1.0, 1.0]


def test_per_class_and_mean_class_accuracy():
    scores = {0: [0.9, 0.1, 0.0], 1: [0.2, 0.7, 0.1], 2: [0.3, 0.3, 0.4]}
    labels_and_predictions = [(0, 0), (0, 0), (0, 1), (1, 1), (2, 0)]
    videos = [{"source": f"v{i}", "label": label, "clips": 1, "views": 1, "scores": np.array(scores[guess])}
              for i, (label, guess) in enumerate(labels_and_predictions)]
    report = accuracy_report(videos, num_classes=3, class_names=["run", "jump", "swim"])
    assert report["top1"] == pytest.approx(3 / 5)
    assert [(p["name"], p["videos"], p["top1"]) for p in report["per_class"]] == \
        [("run", 3, pytest.approx(2 / 3)), ("jump", 1, 1.0), ("swim", 1, 0.0)]
    assert report["mean_class_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert report["top5"] == 1.0  # three classes: the true one is always among the top five


def test_extra_clips_are_thinned_evenly_and_labels_must_agree():
    many = [clip(f"k{i}", "v", 0, start, [[1.0, 0.0]]) for i, start in enumerate([40, 0, 10, 30, 20])]
    assert [c.start for c in select_clips(many, 3)] == [0, 20, 40]
    assert [c.start for c in select_clips(many, 0)] == [0, 10, 20, 30, 40]
    with pytest.raises(ValueError, match="different labels"):
        video_scores([clip("k0", "v", 0, 0, [[1.0]]), clip("k1", "v", 1, 4, [[1.0]])], 5)


@pytest.fixture(scope="module")
def labelled_shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval_shards")
    write_test_shards(folder, clips=6, frames=4, size=32, per_shard=3, label_count=3)
    return folder


def test_cli_evaluate_writes_the_report_and_refuses_a_pretraining_checkpoint(labelled_shards, tmp_path):
    torch.manual_seed(0)
    model = ClassifierModel("tiny", 3, img_size=32, frames=4)
    with torch.no_grad():  # a model that always says class 1: right on exactly 2 of the 6 clips
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    save_checkpoint(tmp_path / "ft.pt", {"model": model.state_dict(),
                                         "settings": {"model": "tiny", "input_size": 32, "frames": 4}})
    runner = CliRunner()
    out = tmp_path / "report" / "eval.json"
    args = ["evaluate", "--checkpoint", str(tmp_path / "ft.pt"), "--shards", str(labelled_shards / "*.tar"),
            "--out", str(out), "--set", "num_workers=0", "--set", "device=cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # The test shards carry no source video: every clip is a video of its own.
    assert (report["videos"], report["clips"], report["views"]) == (6, 6, 18)
    assert report["settings"]["test_crops"] == 3 and report["top1"] == pytest.approx(2 / 6)
    assert [(p["videos"], p["top1"]) for p in report["per_class"]] == [(2, 0.0), (2, 1.0), (2, 0.0)]

    pretrain = PretrainModel("tiny", 1536, img_size=32, frames=4)
    save_checkpoint(tmp_path / "pre.pt", {"model": pretrain.state_dict(), "settings": {"model": "tiny"}})
    result = runner.invoke(app, [*args[:2], str(tmp_path / "pre.pt"), *args[3:]])
    assert result.exit_code == 2 and "linear-probe" in result.stderr


@pytest.mark.parametrize("setting, value", [("stride", 0), ("stride", -2), ("temporal", "frames"),
                                            ("test_clips", 10**6), ("test_crops", 10**6), ("num_workers", 10**6)])
def test_view_and_loader_settings_are_bounded_at_start(setting, value):
    # a stride of 0 or below would surface as ZeroDivisionError / IndexError in a loader worker;
    # a million views (or loader workers) would be a million clip-sized arrays (or processes)
    with pytest.raises(SettingsError, match=f"setting '{setting}' must be"):
        check_settings(EvalSettings(checkpoint="c.pt", shards="s.tar", **{setting: value}))
