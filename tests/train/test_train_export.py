"""Export to the installed transformers and import of the authors' files.

A tiny model with random weights (biases and norms included) is exported, loaded back through
transformers' own from_pretrained, and must give this project's outputs within 1e-4.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import VideoMAEForVideoClassification, VideoMAEModel
from typer.testing import CliRunner

from smile_train.cli import app
from smile_train.interop.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from smile_train.interop.export import export_hf, import_authors
from smile_train.model.vit import ClassifierModel, PretrainModel

SIZE, FRAMES = 32, 4
TOLERANCE = 1e-4



def randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm weights around 1), so no mapping mistake can hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1 + 0.2 * noise)
            else:
                parameter.copy_(0.1 * noise)
    return model.eval()


def random_clips(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, FRAMES, SIZE, SIZE, generator=torch.Generator().manual_seed(7))


def settings(**extra) -> dict:
    return {"model": "tiny", "input_size": SIZE, "frames": FRAMES, **extra}


def test_pretraining_checkpoint_exports_to_videomae_model(tmp_path):
    model = randomized(PretrainModel("tiny", 1536, img_size=SIZE, frames=FRAMES), 0)
    save_checkpoint(tmp_path / "pre.pt", {"model": model.state_dict(), "settings": settings(target="pixel")})
    export_hf(tmp_path / "pre.pt", tmp_path / "hf")
    hf = VideoMAEModel.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.layer_norm_eps == 1e-6 and not hf.config.use_mean_pooling
    videos = random_clips()
    with torch.no_grad():
        ours = model.encoder(videos)  # (B, N, width), after the encoder's final norm
        theirs = hf(pixel_values=videos.permute(0, 2, 1, 3, 4)).last_hidden_state
    assert theirs.shape == ours.shape
    assert torch.allclose(theirs, ours, atol=TOLERANCE, rtol=0)


def test_finetuned_checkpoint_exports_to_video_classification(tmp_path):
    model = randomized(ClassifierModel("tiny", 3, img_size=SIZE, frames=FRAMES), 1)
    save_checkpoint(tmp_path / "ft.pt", {"model": model.state_dict(), "settings": settings(num_classes=3),
                                         "class_names": ["archery", "bowling", "cooking egg"]})
    export_hf(tmp_path / "ft.pt", tmp_path / "hf")
    hf = VideoMAEForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.id2label == {0: "archery", 1: "bowling", 2: "cooking egg"}
    assert hf.config.use_mean_pooling and hf.videomae.layernorm is None
    videos = random_clips()
    with torch.no_grad():
        ours = model(videos)
        theirs = hf(pixel_values=videos.permute(0, 2, 1, 3, 4)).logits
        features = hf.videomae(pixel_values=videos.permute(0, 2, 1, 3, 4)).last_hidden_state
    assert torch.allclose(features, model.forward_features(videos), atol=TOLERANCE, rtol=0)
    assert torch.allclose(theirs, ours, atol=TOLERANCE, rtol=0)
    assert json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())["crop_size"]["height"] == SIZE


def test_export_replaces_only_an_earlier_export(tmp_path):
    model = ClassifierModel("tiny", 2, img_size=SIZE, frames=FRAMES)
    save_checkpoint(tmp_path / "ft.pt", {"model": model.state_dict(), "settings": settings()})
    export_hf(tmp_path / "ft.pt", tmp_path / "hf")
    export_hf(tmp_path / "ft.pt", tmp_path / "hf")  # a rerun replaces its own output
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier export"):
        export_hf(tmp_path / "ft.pt", tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


def test_import_converts_authors_pretraining_and_finetuned_files(tmp_path):
    pre = randomized(PretrainModel("tiny", 768, img_size=SIZE, frames=FRAMES), 2)
    authors_pre = {"model": {**pre.state_dict(), "encoder.pos_embed": torch.zeros(1, 8, 192)}, "epoch": 799}
    torch.save(authors_pre, tmp_path / "checkpoint-799.pth")
    summary = import_authors(tmp_path / "checkpoint-799.pth", tmp_path / "pre.pt", SIZE, FRAMES)
    assert summary["layout"] == "pretrain" and summary["settings"]["target"] == "clip"
    state = load_checkpoint(tmp_path / "pre.pt")
    assert state["settings"]["model"] == "tiny" and "encoder.pos_embed" not in state["model"]
    assert all(torch.equal(state["model"][k], v) for k, v in pre.state_dict().items())
    info = read_checkpoint(tmp_path / "pre.pt")
    assert (info.layout, info.input_size, info.frames) == ("pretrain", SIZE, FRAMES)

    fine = randomized(ClassifierModel("tiny", 5, img_size=SIZE, frames=FRAMES), 3)
    torch.save({"module": fine.state_dict()}, tmp_path / "finetuned.pth")
    result = CliRunner().invoke(app, ["import", "--checkpoint", str(tmp_path / "finetuned.pth"),
                                      "--out", str(tmp_path / "ft.pt"), "--input-size", str(SIZE),
                                      "--frames", str(FRAMES)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["settings"]["num_classes"] == 5
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(tmp_path / "ft.pt"), "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    hf = VideoMAEForVideoClassification.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert torch.allclose(hf(pixel_values=random_clips().permute(0, 2, 1, 3, 4)).logits,
                              fine(random_clips()), atol=TOLERANCE, rtol=0)


def test_import_refuses_files_it_cannot_convert(tmp_path):
    torch.save({"model": {"backbone.conv1.weight": torch.zeros(2)}}, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match="no known layout"):
        import_authors(tmp_path / "resnet.pth", tmp_path / "out.pt")
    wide = {"model": {"encoder.patch_embed.proj.weight": torch.zeros(100, 3, 2, 16, 16),
                      "encoder.blocks.0.norm1.weight": torch.zeros(100)}}
    torch.save(wide, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="not a known size"):
        import_authors(tmp_path / "odd.pth", tmp_path / "out.pt")
    for kernel in ({}, {"encoder.patch_embed.proj.weight": torch.zeros(100, 3, 16, 16)}):  # none / 2-D
        odd = {"model": {"encoder.patch_embed.proj.bias": torch.zeros(100), **kernel,
                         "encoder.blocks.0.norm1.weight": torch.zeros(100)}}
        torch.save(odd, tmp_path / "odd.pth")
        with pytest.raises(ValueError, match=r"odd\.pth: encoder\.patch_embed\.proj\.weight is"):
            import_authors(tmp_path / "odd.pth", tmp_path / "out.pt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # not weights only
    with pytest.raises(ValueError, match=r"pickled\.pth: not a readable checkpoint: not a file of tensors "
                       r"and plain containers \(Unsupported global"):
        import_authors(tmp_path / "pickled.pth", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
