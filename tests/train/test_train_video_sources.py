"""Video samples in the loader: the frames a temporal draw picks are the frames decoded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from smile_data.sampling import VideoSampling, segment_indices, window_indices
from smile_train.data.sources import SourceSampler, SourceSettings
from tests.video.video_files import encode_video, read_counter

FRAMES = 100


@pytest.fixture(scope="module")
def counter_mp4() -> bytes:
    return encode_video(FRAMES, keyframe_interval=8)  # frame i shows i; 160 x 64


def raw_video(data: bytes, key: str = "video0", **metadata) -> dict:
    return {"__key__": key, "mp4": data, "json": json.dumps(metadata).encode()}


@pytest.mark.parametrize("temporal", ["window", "segments"])
def test_the_drawn_frames_are_the_decoded_frames(counter_mp4, temporal):
    sampler = SourceSampler(SourceSettings(shards="x", temporal=temporal, stride=4), 64, 16)
    key, frames, objects, label = sampler.decode({**raw_video(counter_mp4), "cls": b"3"}, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    expected = window_indices(rng, FRAMES, 16, 4) if temporal == "window" else segment_indices(rng, FRAMES, 16)
    assert [read_counter(frame) for frame in frames] == expected.tolist()
    assert (key, objects, label) == ("video0", [], 3)


def test_video_clips_are_cropped_flipped_and_overlaid_at_the_input_size(counter_mp4):
    source = SourceSettings(shards="x", crop="multiscale", overlay="patches", overlay_settings={"objects": 2})
    sampler = SourceSampler(source, 64, 16)
    clip = sampler(raw_video(counter_mp4), np.random.default_rng(0))
    assert clip.frames.shape == (16, 64, 64, 3) and clip.boxes.shape == (16, 2, 4)
    again = sampler(raw_video(counter_mp4), np.random.default_rng(0))
    assert np.array_equal(clip.frames, again.frames)


def test_labels_come_from_cls_or_the_named_json_field(counter_mp4):
    sampler = SourceSampler(SourceSettings(shards="x", label_field="class_id"), 64, 16)
    raw = raw_video(counter_mp4, class_id=7, caption="a counter")
    assert sampler.decode(raw, np.random.default_rng(0))[3] == 7
    assert sampler.decode({**raw, "cls": b"2"}, np.random.default_rng(0))[3] == 2
    with pytest.raises(ValueError, match="class_id 'seven' is not an integer"):
        sampler.decode(raw_video(counter_mp4, class_id="seven"), np.random.default_rng(0))


def test_a_broken_video_is_an_error_naming_the_sample(counter_mp4):
    sampler = SourceSampler(SourceSettings(shards="x"), 64, 16)
    for broken in (counter_mp4[: len(counter_mp4) // 3], b"\x00" * 2000, b""):
        with pytest.raises(ValueError, match=r"sample video0: member video0\.mp4"):
            sampler(raw_video(broken), np.random.default_rng(0))


def low_counter_bits(frame: np.ndarray, bits: int = 4) -> int:
    """The low bits of the index a counter frame shows, from its leftmost 16-px blocks."""
    return sum(int(frame[2:14, 16 * b + 2 : 16 * b + 14].mean() > 127) << b for b in range(bits))


@pytest.mark.parametrize("temporal", ["window", "segments"])
def test_test_views_of_a_video_are_the_formula_frames_with_their_crops(counter_mp4, temporal):
    from smile_data.sampling import test_indices
    from smile_train.loop.evaluate import VideoViews, ViewClips

    dataset = ViewClips([], 64, 3, 16, videos=VideoViews(clips=3, sampling=VideoSampling(temporal=temporal, stride=4)))
    items = dataset._video_items({**raw_video(counter_mp4), "cls": b"1"})
    assert [item["key"] for item in items] == ["video0#000", "video0#001", "video0#002"]
    assert {item["source"] for item in items} == {"video:video0"} and items[0]["label"] == 1
    for view, item in enumerate(items):
        assert item["start"] == view and item["views"].shape == (3, 16, 64, 64, 3)
        left_crop = item["views"][0].numpy()  # x 0..64 of the 160 x 64 frames: counter bits 0-3
        expected = test_indices(temporal, FRAMES, 16, 4, view, 3)
        assert [low_counter_bits(f) for f in left_crop] == [int(i) % 16 for i in expected]
    with pytest.raises(ValueError, match="no label"):
        dataset._video_items(raw_video(counter_mp4))


def write_video2dataset_shard(folder, video: bytes, count: int = 4):
    """A shard as video2dataset writes it: <key>.mp4, <key>.json (its own fields), <key>.txt."""
    import webdataset

    folder.mkdir(parents=True, exist_ok=True)
    with webdataset.TarWriter(str(folder / "00000.tar")) as sink:
        for index in range(count):
            key = f"{index:09d}"
            fields = {"url": f"https://example.org/{key}.mp4", "key": key, "status": "success",
                      "caption": f"video {index}", "class_id": index % 2}
            sink.write({"__key__": key, "mp4": video, "json": json.dumps(fields).encode(),
                        "txt": f"video {index}".encode()})
    return folder / "00000.tar"


def test_a_video2dataset_shard_trains_without_repacking(counter_mp4, tmp_path):
    from smile_train.data.finetune_loader import FinetuneClips
    from smile_train.data.loader import PretrainClips, resolve_sources
    from smile_train.loop.pretrain import run_pretrain
    from smile_train.settings.finetune import FinetuneSettings
    from smile_train.settings.pretrain import PretrainSettings

    shard = write_video2dataset_shard(tmp_path / "v2d", counter_mp4)
    # No dataset.json and no clips_per_epoch: an epoch is the 4 videos, counted from tar headers.
    overrides = dict(shards=str(shard), out_dir=str(tmp_path / "run"), model="tiny",
                     target="pixel", input_size=32, frames=16, batch_size=4, num_workers=0,
                     shuffle_buffer=2, max_steps=2, epochs=2, warmup_epochs=0, save_every_steps=2,
                     log_every_steps=1, device="cpu", stride=4, crop="multiscale", mask="tube")
    del overrides["max_steps"]  # 2 epochs of 4 samples at batch 4: 2 steps
    final = run_pretrain(None, overrides, resume=False)[0]
    assert final.is_file() and json.loads((tmp_path / "run" / "settings.json").read_text())["clips_per_epoch"] == 0
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    # Epochs differ, reruns repeat: four videos come round every 4 samples with new windows.
    s = PretrainSettings(**{k: v for k, v in overrides.items() if k in PretrainSettings.__dataclass_fields__})
    first = [x for _, x in zip(range(8), PretrainClips(resolve_sources(s), s))]
    again = [x for _, x in zip(range(8), PretrainClips(resolve_sources(s), s))]
    assert all(a["video"].equal(b["video"]) for a, b in zip(first, again))
    by_key: dict[str, list] = {}
    for sample in first:
        by_key.setdefault(sample["key"], []).append(sample["video"])
    assert any(len(v) > 1 for v in by_key.values())
    assert all(not v[0].equal(v[1]) for v in by_key.values() if len(v) > 1)
    # Finetuning reads the labels from the JSON field it is told.
    f = FinetuneSettings(shards=str(shard), num_classes=2, input_size=32, frames=16, num_workers=0,
                         shuffle_buffer=2, label_field="class_id", rand_augment=False)
    labels = [int(x["label"][0]) for _, x in zip(range(4), FinetuneClips([str(shard)], f))]
    assert set(labels) <= {0, 1} and len(labels) == 4


def test_unreadable_videos_in_a_shard_are_skipped_and_counted(counter_mp4, tmp_path):
    import webdataset

    from smile_train.data.loader import PretrainClips
    from smile_train.settings.pretrain import PretrainSettings

    shard = tmp_path / "mixed.tar"
    members = [counter_mp4, counter_mp4[: len(counter_mp4) // 2], b"\x00" * 4096, counter_mp4]
    with webdataset.TarWriter(str(shard)) as sink:
        for index, video in enumerate(members):
            sink.write({"__key__": f"v{index}", "mp4": video, "cls": b"0"})
    s = PretrainSettings(shards=str(shard), input_size=32, frames=16, num_workers=0, shuffle_buffer=0,
                         mask="tube", max_corrupt_samples=10)
    samples = [x for _, x in zip(range(4), PretrainClips([str(shard)], s))]
    assert {x["key"] for x in samples} <= {"v0", "v3"} and sum(x["corrupt"] for x in samples) >= 2


def test_the_k400_configs_run_unmodified_on_a_video2dataset_shard(counter_mp4, tmp_path, tiny_bank):
    """The shipped K400 SMILE pretraining config, with only size, shard and bank overrides, on a
    folder of video2dataset shards (no dataset.json): stage 1 pastes objects drawn in the
    loader, both stages draw other clips in epoch 1 than in epoch 0 (show-batch); the K400
    finetuning config trains and tests on the same shard."""
    from smile_train.data.show_batch import show_batch
    from smile_train.loop.finetune import run_finetune

    configs = Path(__file__).resolve().parents[2] / "configs"
    shard = write_video2dataset_shard(tmp_path / "v2d", counter_mp4, count=8)
    size = {"model": "tiny", "target": "pixel", "input_size": 32, "batch_size": 8, "num_workers": 1,
            "shuffle_buffer": 4}
    overrides = {**size, "shards": str(shard), "bank": str(tiny_bank), "out_dir": str(tmp_path / "pretrain")}
    for stage in ("stage1", "stage2"):
        arrays = []
        for epoch in (0, 1):
            written = show_batch(str(configs / "pretrain" / "smile_vitb_k400.yaml"), overrides, stage, epoch,
                                 tmp_path / "sheets", 4)
            arrays.append(np.load(written["arrays"]))
        objects = [np.isfinite(a["boxes"][..., 0]).any(axis=(1, 2)) for a in arrays]
        assert all(o.all() for o in objects) if stage == "stage1" else not any(o.any() for o in objects)
        assert not np.array_equal(arrays[0]["clips"], arrays[1]["clips"])
    finetune = {**size, "shards": str(shard), "val_shards": str(shard), "label_field": "class_id",
                "num_classes": 2, "init_from": "", "max_steps": 2, "test_clips": 2, "test_crops": 1,
                "out_dir": str(tmp_path / "finetune"), "device": "cpu"}
    del finetune["target"]
    run_finetune(str(configs / "finetune" / "smile_vitb_k400.yaml"), finetune, resume=False)
    report = json.loads((tmp_path / "finetune" / "eval.json").read_text())
    assert report["videos"] == 8 and report["views"] == 8 * 2 * 1
    # A linear probe on the same videos: one view per training video, test_clips per test video,
    # of the probe's own temporal mode.
    from smile_train.loop.probe import run_probe
    from smile_train.settings.finetune import ProbeSettings

    probe = run_probe(ProbeSettings(
        checkpoint=str(tmp_path / "finetune" / "checkpoints" / "final.pt"), shards=str(shard),
        val_shards=str(shard), num_classes=2, label_field="class_id", temporal="segments", test_clips=2,
        test_crops=1, epochs=2, num_workers=0, device="cpu", out_dir=str(tmp_path / "probe")))
    assert probe["train_samples"] == 8 and probe["videos"] == 8 and probe["views"] == 8 * 2 * 1
@pytest.mark.parametrize("crop, offsets", [("multiscale", "grid"), ("multiscale", "uniform"), ("none", "grid")])
def test_crops_converted_from_the_planes_equal_the_crops_of_whole_decoded_frames(crop, offsets):
    """The loader converts only the crop of each frame; the same draws on whole frames, cropped
    and resized afterwards (the way every clip sample goes), give the same pixels."""
    from smile_data.samples import sample_videos
    from smile_data.sampling import crop_resize_clip

    bikes = next(p for p in sample_videos() if p.name == "bikes.mp4").read_bytes()  # 640 x 272
    source = SourceSettings(shards="x", crop=crop, crop_offsets=offsets, flip=False)
    sampler = SourceSampler(source, 112, 16)
    for seed in range(3):
        clip = sampler(raw_video(bikes), np.random.default_rng(seed))
        rng = np.random.default_rng(seed)
        _, frames, _, _ = sampler.decode(raw_video(bikes), rng)  # the same temporal draw
        box = sampler._crop_box(rng, *frames.shape[1:3])         # then the same crop draw
        expected, _ = crop_resize_clip(frames, np.zeros((16, 0, 4), np.float32), box, 112)
        np.testing.assert_array_equal(clip.frames, expected)


def test_the_packed_frame_index_is_used_and_a_false_one_refused(counter_mp4):
    from smile_data.render.pack_video import video_metadata
    from smile_data.video import probe_video

    info = probe_video(counter_mp4)
    metadata = video_metadata("video0", "counter.mp4", info, 8, None)
    assert metadata["frame_index"]["keyframes"] == list(range(0, FRAMES, 8))
    sampler = SourceSampler(SourceSettings(shards="x"), 64, 16)

    def own(fields: dict) -> dict:
        return {"__key__": "video0", "mp4": counter_mp4, "json": json.dumps(fields).encode()}

    _, frames, _, _ = sampler.decode(own(metadata), np.random.default_rng(5))
    _, without, _, _ = sampler.decode(raw_video(counter_mp4), np.random.default_rng(5))  # older shards
    np.testing.assert_array_equal(frames, without)
    lying = {**metadata, "frame_index": {**metadata["frame_index"], "time_base": [1, 25]}}
    raw = {**own(lying), "__url__": "shards/videos-000003.tar"}
    with pytest.raises(ValueError, match=r"shard shards/videos-000003.tar: sample video0: member "
                                         r"video0.mp4: the recorded frame index does not match"):
        sampler(raw, np.random.default_rng(0))


def test_a_video_sample_is_opened_once_and_its_recorded_index_spares_the_packet_pass(counter_mp4, monkeypatch):
    import smile_data.video.decode as decode
    from smile_data.render.pack_video import video_metadata
    from smile_data.video import probe_video

    metadata = video_metadata("video0", "counter.mp4", probe_video(counter_mp4), 8, None)
    raw = {"__key__": "video0", "mp4": counter_mp4, "json": json.dumps(metadata).encode()}
    opens, packet_passes = [], []
    real_open, real_index = decode.av.open, decode.index_from_packets
    monkeypatch.setattr(decode.av, "open", lambda *a, **k: opens.append(1) or real_open(*a, **k))
    monkeypatch.setattr(decode, "index_from_packets", lambda *a: packet_passes.append(1) or real_index(*a))
    sampler = SourceSampler(SourceSettings(shards="x", crop="multiscale"), 64, 16)
    sampler(raw, np.random.default_rng(0))
    assert (len(opens), len(packet_passes)) == (1, 0)
    sampler(raw_video(counter_mp4), np.random.default_rng(0))  # no record: one open, one packet pass
    assert (len(opens), len(packet_passes)) == (2, 1)


def test_a_skipped_sample_names_its_shard_once():
    from smile_train.data.loader import CorruptSampleCounter, TooManyCorruptSamples

    raw = {"__url__": "shards/videos-000003.tar"}
    for error in (ValueError("sample video0: bad"), ValueError("shard shards/videos-000003.tar: sample video0: bad")):
        with pytest.raises(TooManyCorruptSamples) as refused:
            CorruptSampleCounter(0).bad_sample(raw, error)
        assert str(refused.value).count("shards/videos-000003.tar") == 1
