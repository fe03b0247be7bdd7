"""Teachers through the real from_pretrained path: tiny random CLIP, ViT (DINO), DINOv2 and
DINOv2-with-registers models saved with save_pretrained and loaded back by path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    Dinov2Config,
    Dinov2Model,
    Dinov2WithRegistersConfig,
    Dinov2WithRegistersModel,
    ViTConfig,
    ViTMAEConfig,
    ViTMAEModel,
    ViTModel,
)
from typer.testing import CliRunner

from smile_train.cli import app
from smile_train.interop.checkpoint import load_checkpoint
from smile_train.model.teacher import FeatureTeacher, TeacherLoadError

IMAGE = 64  # 4 x 4 student patches of 16 px per frame
PATCHES = 16
HIDDEN = 32
REGISTERS = 3
SMALL = dict(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)


def final_norm_of(model) -> torch.nn.LayerNorm:
    """The model's own final LayerNorm, found by hand for each family."""
    if isinstance(model, CLIPVisionModel):
        return getattr(model, "vision_model", model).post_layernorm
    return model.layernorm


def build(family: str):
    """(model, tokens before the patches, frame side the model sees for 64-px clips)."""
    if family == "clip":
        return CLIPVisionModel(CLIPVisionConfig(**SMALL, image_size=IMAGE, patch_size=16)), 1, IMAGE
    if family == "vit":
        return ViTModel(ViTConfig(**SMALL, image_size=IMAGE, patch_size=16), add_pooling_layer=False), 1, IMAGE
    if family == "dinov2":  # 14-px patches: 64-px clips are shown at 4 x 14 = 56 px
        return Dinov2Model(Dinov2Config(**SMALL, image_size=98, patch_size=14)), 1, 56
    config = Dinov2WithRegistersConfig(**SMALL, image_size=98, patch_size=14, num_register_tokens=REGISTERS)
    return Dinov2WithRegistersModel(config), 1 + REGISTERS, 56


FAMILIES = ["clip", "vit", "dinov2", "dinov2_with_registers"]


@pytest.fixture(scope="module", params=FAMILIES)
def saved(request, tmp_path_factory):
    """A saved tiny model whose final LayerNorm has non-trivial weights."""
    torch.manual_seed(0)
    model, prefix, side = build(request.param)
    norm = final_norm_of(model)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(HIDDEN) * 2 + 0.5)
        norm.bias.copy_(torch.randn(HIDDEN))
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    return folder, prefix, side


@pytest.fixture(scope="module")
def clip_teacher(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("clip-only")
    CLIPVisionModel(CLIPVisionConfig(**SMALL, image_size=IMAGE, patch_size=16)).save_pretrained(folder)
    return FeatureTeacher.from_pretrained(folder, device="cpu")


def clip_videos(batch=2, frames=8, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, IMAGE, IMAGE, generator=generator)


def test_targets_are_final_layernorm_patch_tokens_of_frames_0_2_4(saved):
    """Slice k of the teacher's output is frame 2k's last hidden state put through the model's
    own final LayerNorm, the CLS (and register) tokens dropped; DINOv2 frames resized to
    (64 / 16) x 14 = 56 px first."""
    folder, prefix, side = saved
    teacher = FeatureTeacher.from_pretrained(folder, device="cpu")
    videos = clip_videos(batch=2)
    raw = teacher.features(videos)
    assert raw.shape == (2, 4 * PATCHES, HIDDEN) and teacher.out_dim == HIDDEN
    assert not any(p.requires_grad for p in teacher.model.parameters()) and not teacher.model.training
    norm = final_norm_of(teacher.model)
    assert not torch.allclose(norm.weight, torch.ones(HIDDEN))  # the saved weights came back
    for k in range(4):
        frame = videos[:, :, 2 * k]
        if side != IMAGE:
            frame = F.interpolate(frame, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():
            last = teacher.model(pixel_values=frame, output_hidden_states=True).hidden_states[-1]
        expected = F.layer_norm(last, (HIDDEN,), norm.weight, norm.bias, norm.eps)[:, prefix:]
        torch.testing.assert_close(raw[:, k * PATCHES : (k + 1) * PATCHES], expected, atol=1e-5, rtol=1e-5)
    targets = teacher(videos)  # standardised per clip and channel over the tokens
    torch.testing.assert_close(targets.mean(1), torch.zeros(2, HIDDEN), atol=1e-5, rtol=0)
    torch.testing.assert_close(targets.var(1, unbiased=False), torch.ones(2, HIDDEN), atol=1e-3, rtol=0)


def test_changing_frame_2k_changes_only_slice_k(clip_teacher):
    videos = clip_videos(batch=1, seed=1)
    base = clip_teacher.features(videos).reshape(1, 4, PATCHES, HIDDEN)
    even, odd = videos.clone(), videos.clone()
    even[:, :, 2] += 1.0  # frame 2 -> slice 1
    odd[:, :, 5] += 1.0  # odd frames are not shown to the teacher
    changed = clip_teacher.features(even).reshape(1, 4, PATCHES, HIDDEN)
    differs = (changed - base).abs().amax(dim=(0, 2, 3)) > 1e-6
    assert differs.tolist() == [False, True, False, False]
    torch.testing.assert_close(clip_teacher.features(odd), clip_teacher.features(videos))


def test_token_order_is_row_major_within_a_frame(clip_teacher):
    videos = clip_videos(batch=1, seed=2)
    shifted = videos.clone()
    shifted[:, :, 0, 16:32, 48:64] += 3.0  # patch row 1, column 3 of frame 0 -> token 7
    delta = (clip_teacher.features(shifted) - clip_teacher.features(videos)).abs().amax(dim=-1)[0, :PATCHES]
    assert int(delta.argmax()) == 1 * 4 + 3


def test_missing_or_wrong_teacher_raises_a_clear_error(tmp_path, clip_teacher):
    missing = tmp_path / "no-clip-here"
    with pytest.raises(FileNotFoundError, match="no-clip-here"):
        FeatureTeacher.from_pretrained(missing, device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TeacherLoadError, match="empty"):
        FeatureTeacher.from_pretrained(str(empty), device="cpu")
    with pytest.raises(ValueError, match="64x64"):
        clip_teacher(torch.zeros(1, 3, 8, 32, 32))


def test_unsupported_models_are_refused_naming_the_model_and_why(tmp_path):
    mae = tmp_path / "vit-mae"
    ViTMAEModel(ViTMAEConfig(**SMALL, image_size=IMAGE, patch_size=16)).save_pretrained(mae)
    with pytest.raises(TeacherLoadError, match=r"vit-mae.*'vit_mae' is not supported.*clip, clip_vision_model, vit"):
        FeatureTeacher.from_pretrained(mae, device="cpu")
    patch8 = tmp_path / "dino-vits8"
    ViTModel(ViTConfig(**SMALL, image_size=IMAGE, patch_size=8), add_pooling_layer=False).save_pretrained(patch8)
    with pytest.raises(ValueError, match="8px patches.*16px"):
        FeatureTeacher.from_pretrained(patch8, device="cpu")
    clip_weights = tmp_path / "clip-vision"
    CLIPVisionModel(CLIPVisionConfig(**SMALL, image_size=IMAGE, patch_size=16)).save_pretrained(clip_weights)
    config = ViTConfig.from_pretrained(tmp_path / "dino-vits8")
    config.patch_size = 16
    config.save_pretrained(clip_weights)  # a ViT config over CLIP weights: nothing of a ViT loads
    with pytest.raises(TeacherLoadError, match="not a ViT / DINO checkpoint"):
        FeatureTeacher.from_pretrained(clip_weights, device="cpu")


def test_full_clip_folder_loads_its_vision_half(tmp_path):
    """The reference teacher ships as a full CLIPModel; its vision weights must all be used."""
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=64)
    vision = dict(SMALL, num_hidden_layers=1, image_size=IMAGE, patch_size=16)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    clip.save_pretrained(tmp_path)
    loaded = FeatureTeacher.from_pretrained(tmp_path, device="cpu")
    torch.testing.assert_close(final_norm_of(loaded.model).weight, clip.vision_model.post_layernorm.weight)
    assert loaded(clip_videos(batch=1)).shape == (1, 4 * PATCHES, HIDDEN)


def test_pretraining_runs_with_a_dino_teacher_from_the_cli(tiny_shards, tmp_path):
    """`smile-train pretrain --set target=clip --set teacher=<DINO folder>`: the decoder predicts
    the teacher's width (here 32) and the loss is finite."""
    torch.manual_seed(0)
    folder = tmp_path / "dino-vit"
    ViTModel(ViTConfig(**SMALL, image_size=IMAGE, patch_size=16), add_pooling_layer=False).save_pretrained(folder)
    overrides = dict(shards=str(tiny_shards / "*.tar"), out_dir=str(tmp_path / "run"), model="tiny", target="clip",
                     teacher=str(folder), input_size=IMAGE, frames=16, batch_size=2, num_workers=0,
                     shuffle_buffer=4, max_steps=2, epochs=10, warmup_epochs=1, save_every_steps=2, device="cpu")
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(app, ["pretrain", *sets])
    assert result.exit_code == 0, result.output
    final = load_checkpoint(tmp_path / "run" / "checkpoints" / "final.pt")
    head = [v for k, v in final["model"].items() if k.startswith("decoder") and k.endswith("head.weight")]
    assert head and head[0].shape[0] == HIDDEN
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert losses and all(np.isfinite(losses))
