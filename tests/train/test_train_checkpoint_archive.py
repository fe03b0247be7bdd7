"""Checkpoint archives are checked record by record before torch.load reads them."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch

from smile_train.interop.checkpoint import load_checkpoint
from smile_train.interop.checkpoint_archive import MAX_CHECKPOINT_BYTES, check_archive
from smile_train.model.vit import SIZES, build_classifier, build_pretrain_model
from smile_train.settings.checks import MAX_CLASSES
from tests.hostile.inflating import write_inflating_checkpoint

FLOAT32_BYTES = 4
OPTIMIZER_MOMENTS = 2  # AdamW's exp_avg and exp_avg_sq


def state_bytes(model: torch.nn.Module) -> int:
    return sum(t.numel() for t in model.state_dict().values()) * FLOAT32_BYTES


def test_the_size_bound_holds_the_largest_training_state_the_project_writes():
    largest = max(SIZES, key=lambda s: SIZES[s].width * SIZES[s].depth)
    with torch.device("meta"):
        classifier = state_bytes(build_classifier(largest, MAX_CLASSES))
        pretrain = state_bytes(build_pretrain_model(largest, "pixel"))
    finetuning = classifier * (1 + OPTIMIZER_MOMENTS + 1)  # weights, moments, EMA copy
    pretraining = pretrain * (1 + OPTIMIZER_MOMENTS)
    assert max(finetuning, pretraining) <= MAX_CHECKPOINT_BYTES < 2 * max(finetuning, pretraining)


def rezip(source, target, method):
    """Copy a zip record by record with another compression."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", method) as new:
        for info in old.infolist():
            new.writestr(info.filename, old.read(info), compress_type=method)
    return target


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "ok.pt"
    torch.save({"model": {"w": torch.arange(1000.0), "empty": torch.zeros(0), "view": torch.arange(10.0)[2:5]},
                "step": 3}, path)
    return path


def test_a_torch_save_file_passes_and_loads(saved):
    check_archive(saved)
    assert load_checkpoint(saved)["model"]["w"][999] == 999


def test_a_deflated_record_is_refused_before_it_is_inflated(tmp_path, saved):
    deflated = rezip(saved, tmp_path / "deflated.pt", zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"deflated.pt: record '.*data.pkl' is compressed"):
        load_checkpoint(deflated)
    big = write_inflating_checkpoint(tmp_path / "inflating.pt", 64 << 20)
    with pytest.raises(ValueError, match=r"record 'archive/data/0' is compressed \(zip method 8\)"):
        check_archive(big)


def rewrite_with_torch(source, target, replace):
    """The records of a torch.save file written again by torch's own zip writer (records
    aligned as torch.save aligns them), some replaced."""
    writer = torch._C.PyTorchFileWriter(str(target))
    with zipfile.ZipFile(source) as old:
        for info in old.infolist():
            name = info.filename.split("/", 1)[1]
            if name not in (".data/serialization_id", "version", ".data/version"):
                data = replace.get(name, old.read(info))
                writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return target


def test_a_record_smaller_than_its_tensor_is_refused(tmp_path, saved):
    with zipfile.ZipFile(saved) as archive:
        key = next(i.filename.split("/", 1)[1] for i in archive.infolist()
                   if i.file_size == 4000)  # the storage of `w`
    cut = rewrite_with_torch(saved, tmp_path / "cut.pt", {key: b"\0" * 40})
    with pytest.raises(ValueError, match=r"cut.pt: tensor model.w declares a storage of 4000 bytes, "
                                         r"but the file holds a record of 40 bytes for it"):
        check_archive(cut)


def test_a_view_larger_than_its_storage_is_refused(tmp_path):
    path = tmp_path / "expanded.pt"
    torch.save({"model": {"w": torch.zeros(1).expand(10**6)}}, path)
    with pytest.raises(ValueError, match=r"tensor model.w of shape \(1000000,\) views more bytes"):
        check_archive(path)


def test_other_formats_and_damage_are_refused(tmp_path, saved):
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(3)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(ValueError, match="legacy.pt: not a zip checkpoint"):
        check_archive(legacy)
    data = saved.read_bytes()
    (tmp_path / "short.pt").write_bytes(data[: len(data) // 2] + data[-200:])
    with pytest.raises(ValueError, match="short.pt: "):
        check_archive(tmp_path / "short.pt")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x/version", b"3\n")
    (tmp_path / "nopickle.pt").write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match="nopickle.pt: 0 data.pkl records"):
        check_archive(tmp_path / "nopickle.pt")
