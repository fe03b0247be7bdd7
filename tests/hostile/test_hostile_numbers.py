"""Numbers from untrusted files are bounded before they drive a loop or an allocation."""

from __future__ import annotations

import json

import pytest
import torch

from smile_data.shards import layout
from smile_data.shards.reader import decode_sample, iter_tar_samples
from tests.hostile.conftest import clip_members, write_shard

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_a_corrupt_sample_not_a_crash(case, tmp_path):
    shard = write_shard(case.input / "data" / "clips-000000.tar", clip_members(json=DEEP_JSON))
    raw = next(iter_tar_samples(shard))
    with pytest.raises(ValueError, match="json is nested too deeply"):
        decode_sample(raw)  # what validate, preview and the training loader count as corrupt
    outcome = case.run("smile-data", "preview", str(shard), "--out", "out/p.png")
    outcome.refused("000000.json is nested too deeply")


@pytest.mark.parametrize("change, problem", [
    ({"label": -1}, "label must be an integer in 0.."),
    ({"label": 10**12}, "label must be an integer in 0.."),
    ({"background": {"kind": "frame", "source": "v.mp4", "frame_indices": "abc"}}, "frame_indices"),
    ({"background": {"kind": "frame", "source": ["v"], "frame_indices": None}}, "background.source"),
    ({"background": {"kind": "frame", "source": None, "frame_indices": [-5, 3]}}, "frame_indices"),
    ({"objects": [{"kind": "patch", "bank_path": None, "lvis_id": None, "name": None,
                   "boxes": [[0, 0, 1e30, 1e30]] * 2, "angles": [0, 0]}]}, "frame sides away"),
    ({"objects": [{"kind": "patch", "bank_path": None, "lvis_id": "x", "name": {"a": 1},
                   "boxes": [[0, 0, 1, 1]] * 2, "angles": [0, 0]}]}, "name and bank_path"),
])
def test_metadata_numbers_out_of_bounds_are_refused(change, problem):
    metadata = json.loads(clip_members(**change)["000000.json"])
    problems = layout.metadata_problems(metadata)
    assert any(problem in p for p in problems), problems


def test_a_checkpoint_geometry_is_bounded_before_allocation(case):
    from smile_train.model.vit import build_pretrain_model

    torch.manual_seed(0)
    model = build_pretrain_model("tiny", "pixel", img_size=32, frames=4)
    path = case.input / "evil.pt"
    torch.save({"model": model.state_dict(), "step": 0,
                "settings": {"model": "tiny", "input_size": 160_000, "frames": 4}}, path)
    outcome = case.run("smile-train", "import", "--checkpoint", str(path), "--out", "out/x.pt")
    outcome.refused(str(path), "input_size 160000", "outside")


def test_a_world_size_in_a_progress_file_is_bounded(case):
    folder = case.input / "dataset"
    (folder / "progress").mkdir(parents=True)
    (folder / "progress" / "identity.json").write_text(json.dumps(
        {"fingerprint": {}, "writer": {"world_size": 10**15}}))
    outcome = case.run("smile-data", "merge-shards", str(folder), timeout=30)
    outcome.refused("identity.json", "world_size", "1..99999")


def test_render_refuses_at_start_a_size_the_reader_would_refuse(case):
    outcome = case.run("smile-data", "render", "--bg", "noise", "--overlay", "patches",
                       "--size", "5000", "--frames", "4", "--out", "out/data", timeout=30)
    outcome.refused("setting size", "reader's limits")
    assert not case.out.exists()


def test_an_oversized_pax_header_is_refused_before_it_is_read(case):
    import tarfile

    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 3 << 30  # tarfile would read all of it into memory
    shard = case.input / "clips-000000.tar"
    shard.write_bytes(header.tobuf(format=tarfile.USTAR_FORMAT) + b"x" * 4096)
    outcome = case.run("smile-data", "preview", str(shard), "--out", "out/p.png", timeout=30)
    outcome.refused("clips-000000.tar", "header extension")
