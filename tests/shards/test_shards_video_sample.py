"""Video samples in shards other tools write (video2dataset's layout) and in our own."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
import webdataset

from smile_data.shards import layout
from smile_data.shards.reader import decode_sample, iter_tar_samples
from smile_data.shards.video_sample import decode_video_sample, is_video_sample, video_preview_clip
from smile_data.video import decode_frames
from tests.video.video_files import encode_video, read_counter


@pytest.fixture(scope="module")
def video() -> bytes:
    return encode_video(20, keyframe_interval=5)


def _video2dataset_shard(path, video: bytes) -> None:
    """What video2dataset writes: <key>.mp4, <key>.json (its own fields) and <key>.txt."""
    with webdataset.TarWriter(str(path)) as sink:
        for index, (caption, label) in enumerate([("a dog runs", "dog"), ("a cat sits", "cat")]):
            key = f"00000{index:04d}"
            info = {"url": f"https://example.org/{index}.mp4", "key": key, "status": "success",
                    "error_message": None, "caption": caption, "label": label,
                    "duration": 0.8, "yt_meta_dict": {"title": caption}}
            sink.write({"__key__": key, "mp4": video, "json": json.dumps(info).encode(),
                        "txt": caption.encode()})


def test_a_video2dataset_shard_reads_without_repacking(tmp_path, video):
    shard = tmp_path / "00000.tar"
    _video2dataset_shard(shard, video)
    raws = list(iter_tar_samples(shard))
    assert all(is_video_sample(raw) for raw in raws)
    samples = [decode_video_sample(raw, label_field="label", class_names=["cat", "dog"])
               for raw in raws]
    assert [(s.key, s.label, s.caption) for s in samples] == [
        ("000000000", 1, "a dog runs"), ("000000001", 0, "a cat sits")]
    assert samples[0].extension == "mp4" and samples[0].metadata["status"] == "success"
    assert [read_counter(f) for f in decode_frames(samples[1].video, [19, 4])] == [19, 4]
    assert decode_video_sample(raws[0]).label is None  # no label field named: unlabelled


def _raw(**members) -> dict:
    return {"__key__": "k1", **members}


def test_labels_come_from_cls_then_our_metadata_then_the_named_field(video):
    own = {"schema_version": 1, "key": "k1", "kind": "video", "source": "a.mp4", "fps": 25.0,
           "frames": 20, "duration": 0.8, "width": 160, "height": 64, "codec": "h264",
           "keyframe_interval": 5, "label": 4}
    assert decode_video_sample(_raw(mp4=video, json=json.dumps(own).encode())).label == 4
    assert decode_video_sample(_raw(mp4=video, json=json.dumps(own).encode(), cls=b"4")).label == 4
    foreign = json.dumps({"label": 7, "class": "9"}).encode()
    assert decode_video_sample(_raw(mp4=video, json=foreign, cls=b"2"), "label").label == 2
    assert decode_video_sample(_raw(mp4=video, json=foreign), "label").label == 7
    assert decode_video_sample(_raw(mp4=video, json=foreign), "class").label == 9
    assert decode_video_sample(_raw(webm=video)).extension == "webm"


@pytest.mark.parametrize("members, field, message", [
    ({"mp4": b"x", "webm": b"x"}, "", "more than one video"),
    ({"json": b"{}"}, "", "no video member"),
    ({"mp4": b"x", "00.jpg": b"x"}, "", "holds no frames"),
    ({"mp4": b"x", "json": b"{not json"}, "", "not valid JSON"),
    ({"mp4": b"x", "json": b"[1]"}, "", "not a JSON object"),
    ({"mp4": b"x", "json": b'{"kind": "video", "schema_version": 1}'}, "", "must be a positive"),
    ({"mp4": b"x", "json": b'{"label": "horse"}'}, "label", "class names"),
    ({"mp4": b"x", "json": b'{"label": [1]}'}, "label", "integer or a class name"),
    ({"mp4": b"x", "cls": b"three"}, "", "k1.cls"),
    ({"mp4": b"x", "txt": b"\xff\xfe"}, "", "not UTF-8"),
])
def test_bad_video_samples_name_the_member(members, field, message):
    with pytest.raises(ValueError, match=message):
        decode_video_sample(_raw(**members), field, ["cat"])


def test_oversized_members_are_refused_before_reading(tmp_path, video):
    shard = tmp_path / "big.tar"
    limit = layout.member_byte_limit("txt")
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [("k1.mp4", video), ("k1.txt", b"a" * (limit + 1))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    refused = []
    raws = list(iter_tar_samples(shard, on_refused=lambda info, why: refused.append((info.name, why))))
    assert [sorted(raw) for raw in raws] == [["__key__", "mp4"]]
    assert refused == [("k1.txt", f"{limit + 1} bytes is more than the {limit} allowed for a .txt member")]


def test_the_clip_decoder_refuses_a_video_sample(video):
    with pytest.raises(ValueError, match="k1.mp4: a video sample"):
        decode_sample(_raw(mp4=video))


def test_a_preview_clip_spans_the_whole_video(video):
    clip = video_preview_clip(_raw(mp4=video, cls=b"3"), frames=5)
    assert [read_counter(f) for f in clip.frames] == [0, 5, 10, 14, 19]
    assert clip.label == 3 and clip.metadata["objects"] == [] and clip.metadata["frames"] == 5


def test_validate_checks_the_frame_index_record_against_the_packets(video):
    from smile_data.render.pack_video import video_metadata
    from smile_data.shards.video_sample import video_sample_problems
    from smile_data.video import probe_video

    metadata = video_metadata("k1", "a.mp4", probe_video(video), 5, None)
    assert metadata["frame_index"]["keyframes"] == [0, 5, 10, 15]
    assert video_sample_problems(_raw(mp4=video, json=json.dumps(metadata).encode())) == []
    older = {k: v for k, v in metadata.items() if k != "frame_index"}  # shards packed before the record
    assert video_sample_problems(_raw(mp4=video, json=json.dumps(older).encode())) == []
    for record, message in [({**metadata["frame_index"], "keyframes": [0, 5, 10]}, "does not match the video's packets"),
                            ({**metadata["frame_index"], "first_pts": "0"}, "first_pts must be an integer"),
                            ([1, 2], "frame_index must be an object")]:
        raw = _raw(mp4=video, json=json.dumps({**metadata, "frame_index": record}).encode())
        problems = video_sample_problems(raw)
        assert len(problems) == 1 and message in problems[0] and "sample k1" in problems[0], problems
