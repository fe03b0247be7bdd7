"""Videos that ask the decoder for unbounded work: refused or bounded in every command.

Each case is a small file: a header that declares tens of millions of frames (FFmpeg would
build an index of that size when it opens the file), a Matroska block that declares 200 MB,
and a 4096 x 4096 video of one keyframe and 3,000 predicted frames (100 KB, minutes to decode
whole). validate, preview, pretraining and evaluation each run in a child under the time and
address-space limits of conftest.py; a case's sample is refused or skipped with its shard and
key named, and the run's peak memory stays far below 1.5 GB.
"""

from __future__ import annotations

import io
import json
import re

import av
import numpy as np
import pytest

from tests.conftest import write_test_card
from tests.hostile.conftest import write_shard
from tests.video.video_files import encode_video, patch_sample_table

PEAK_RSS_LIMIT_MB = 1536
TRAINING_TIME_LIMIT = 180  # seconds: torch's import and a tiny model's step on a shared machine
SHARD = "videos-000000.tar"
HUGE = 50_000_000
BIG_SIDE, PREDICTED_FRAMES = 4096, 3000


def _element(element_id: int, payload: bytes, size: int | None = None) -> bytes:
    """An EBML element with an 8-byte size field (`size` overrides the declared size)."""
    declared = len(payload) if size is None else size
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + (1 << 56 | declared).to_bytes(8, "big") + payload


def _matroska_block_lie() -> bytes:
    """A WebM whose one block declares 200 MB inside an open-sized cluster (FFmpeg allocates a
    block's declared size before reading it)."""
    open_size = (1 << 56) - 1
    video = _element(0xE0, _element(0xB0, (64).to_bytes(2, "big")) + _element(0xBA, (64).to_bytes(2, "big")))
    track = _element(0xAE, _element(0xD7, b"\x01") + _element(0x83, b"\x01") + _element(0x86, b"V_VP9") + video)
    cluster = _element(0x1F43B675, _element(0xE7, b"\x00") + _element(0xA3, b"\x81\x00\x00\x80", size=200 << 20),
                       size=open_size)
    return (_element(0x1A45DFA3, _element(0x4282, b"webm"))
            + _element(0x18538067, _element(0x1654AE6B, track) + cluster, size=open_size))


def _one_keyframe_many_predicted() -> bytes:
    """4096 x 4096 H.264: a keyframe, then the same predicted frame 2,999 times (remuxed, so
    the file is made in a second; decoding it whole takes minutes)."""
    encoded = io.BytesIO()
    with av.open(encoded, mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=25)
        stream.width = stream.height = BIG_SIDE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "threads": "1", "x264-params": "bframes=0:scenecut=0:keyint=1000"}
        planes = np.full((BIG_SIDE * 3 // 2, BIG_SIDE), 128, np.uint8)
        planes[:BIG_SIDE] = np.arange(BIG_SIDE, dtype=np.uint16)[None, :] // 16 % 256
        for _ in range(2):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        output.mux(stream.encode())
    with av.open(io.BytesIO(encoded.getvalue())) as source:
        keyframe, predicted = [p for p in source.demux(video=0) if p.size]
        stretched = io.BytesIO()
        with av.open(stretched, mode="w", format="mp4") as output:
            stream = output.add_stream_from_template(source.streams.video[0])
            step = predicted.pts - keyframe.pts
            for index in range(PREDICTED_FRAMES):
                packet = av.Packet(bytes(keyframe if index == 0 else predicted))
                packet.pts = packet.dts = index * step
                packet.time_base, packet.is_keyframe, packet.stream = keyframe.time_base, index == 0, stream
                output.mux(packet)
    return stretched.getvalue()


@pytest.fixture(scope="module")
def hostile_videos() -> dict[str, tuple[str, bytes, str]]:
    """key -> (extension, bytes, what the refusal says: a regular expression)."""
    mp4 = encode_video(16)
    constant_size = patch_sample_table(mp4, "stsz", 4, 1)
    return {
        "declares-50m-frames": ("mp4", patch_sample_table(constant_size, "stsz", 8, HUGE),
                                f"declares {HUGE} samples, more than the 100000 allowed"),
        "chunks-declare-50m": ("mp4", patch_sample_table(mp4, "stsc", 12, HUGE),
                               f"stsc table declares {HUGE} samples"),
        "block-declares-200mb": ("webm", _matroska_block_lie(), f"declares {200 << 20} bytes, [0-9]+ are left"),
        # decoding work over the bound; a request for many frames is over the output bound first
        "one-keyframe-4096": ("mp4", _one_keyframe_many_predicted(),
                              f"frames of ({BIG_SIDE}x{BIG_SIDE}, more than the 1073741824 pixels|"
                              f"{BIG_SIDE * BIG_SIDE} pixels are more than the 268435456 pixels)"),
    }


def _members(key: str, extension: str, video: bytes) -> dict[str, bytes]:
    metadata = {"schema_version": 1, "key": key, "kind": "video", "source": f"{key}.{extension}",
                "fps": 25.0, "frames": 16, "duration": 0.64, "width": 160, "height": 64,
                "codec": "h264", "keyframe_interval": None, "label": 0}
    return {f"{key}.{extension}": video, f"{key}.json": json.dumps(metadata).encode(), f"{key}.cls": b"0"}


def _dataset(folder, videos: dict[str, tuple[str, bytes, str]]):
    """A dataset (shard, card, manifest) holding the videos, then one good one."""
    members = {}
    for key, (extension, video, _) in videos.items():
        members.update(_members(key, extension, video))
    members.update(_members("good", "mp4", encode_video(16)))
    write_test_card(folder, [write_shard(folder / SHARD, members)])
    return folder


def _bounded(outcome, name: str) -> None:
    print(f"\n{name}: {outcome.seconds:.1f} s, peak RSS {outcome.peak_rss_mb:.0f} MB")
    assert outcome.peak_rss_mb < PEAK_RSS_LIMIT_MB, (outcome.peak_rss_mb, outcome.output[-2000:])
    assert "Traceback" not in outcome.output, outcome.output[-3000:]


@pytest.mark.parametrize("key", ["declares-50m-frames", "chunks-declare-50m", "block-declares-200mb",
                                 "one-keyframe-4096"])
def test_validate_names_the_sample_and_stays_bounded(case, hostile_videos, key):
    extension, _, message = hostile_videos[key]
    folder = _dataset(case.input / "data", {key: hostile_videos[key]})
    outcome = case.run("smile-data", "validate", str(folder))
    _bounded(outcome, f"validate {key}")
    assert outcome.returncode == 1, outcome.output[-3000:]
    assert f"{SHARD}: sample {key}: member {key}.{extension}: " in outcome.output
    assert re.search(message, outcome.output), outcome.output[-3000:]
    assert "1 problems" in outcome.output  # the good video passes


def _each_skipped_as(outcome, videos: dict, lead: str) -> None:
    """The command succeeded and says, for each video, `lead` then its sample, member and reason."""
    assert outcome.returncode == 0, outcome.output[-3000:]
    for key, (extension, _, message) in videos.items():
        assert f"{lead}sample {key}: member {key}.{extension}: " in outcome.output
        assert re.search(message, outcome.output), outcome.output[-3000:]


def test_preview_skips_each_and_counts_them(case, hostile_videos):
    folder = _dataset(case.input / "data", hostile_videos)
    outcome = case.run("smile-data", "preview", str(folder), "--out", "out/p.png")
    _bounded(outcome, "preview, all cases")
    _each_skipped_as(outcome, hostile_videos, f"{SHARD}: sample skipped: ")
    assert f"{len(hostile_videos)} samples skipped" in outcome.output
    assert (case.out / "p.png").is_file()


TINY = ["model=tiny", "target=pixel", "input_size=32", "frames=4", "stride=4", "num_workers=0",
        "device=cpu", "shuffle_buffer=0", "max_corrupt_samples=10"]


def _sets(*pairs: str) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def test_pretraining_skips_each_and_counts_them_with_their_shard(case, hostile_videos):
    folder = _dataset(case.input / "data", hostile_videos)
    outcome = case.run("smile-train", "pretrain", *_sets(
        *TINY, f"shards={folder}/{SHARD}", "out_dir=out/run", "batch_size=2", "mask=tube",
        "max_steps=1", "clips_per_epoch=2", "log_every_steps=1", "save_every_steps=1"),
        timeout=TRAINING_TIME_LIMIT)
    _bounded(outcome, "pretrain, all cases")
    _each_skipped_as(outcome, hostile_videos, f"shard {folder}/{SHARD}: ")


def test_evaluation_skips_each_and_counts_them_with_their_shard(case, hostile_videos):
    from smile_train.interop.checkpoint import save_checkpoint
    from smile_train.model.vit import ClassifierModel

    folder = _dataset(case.input / "data", hostile_videos)
    model = ClassifierModel("tiny", 2, img_size=32, frames=4)
    save_checkpoint(case.input / "ft.pt", {"model": model.state_dict(),
                                           "settings": {"model": "tiny", "input_size": 32, "frames": 4}})
    outcome = case.run("smile-train", "evaluate", "--checkpoint", str(case.input / "ft.pt"),
                       "--shards", f"{folder}/{SHARD}", "--out", "out/eval.json",
                       *_sets("num_workers=0", "device=cpu", "max_corrupt_samples=10", "stride=4"),
                       timeout=TRAINING_TIME_LIMIT)
    _bounded(outcome, "evaluate, all cases")
    _each_skipped_as(outcome, hostile_videos, f"shard {folder}/{SHARD}: ")
    assert json.loads((case.out / "eval.json").read_text())["videos"] == 1
