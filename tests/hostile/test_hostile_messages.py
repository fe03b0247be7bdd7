"""Errors name what is wrong: the shard and sample of a bad video in `preview`."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import write_shard

NOT_A_VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"\xff" * 4000  # an mp4 signature, then nothing


@pytest.mark.parametrize("video", [NOT_A_VIDEO, b""])
def test_preview_of_a_bad_video_names_the_shard_and_the_sample(case, video):
    shard = write_shard(case.input / "videos-000000.tar",
                        {"000000.mp4": video, "000000.json": b"{}"})
    outcome = case.run("smile-data", "preview", str(shard), "--out", "out/p.png")
    outcome.refused("videos-000000.tar: sample 000000: member 000000.mp4: ")
