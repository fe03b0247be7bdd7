"""The CLIP teacher's targets recomputed by hand from the model's hidden states, and a short
pretraining run with target=clip on a tiny CLIP saved to disk.

The saved CLIP has LayerNorms with non-trivial weights and a large bias, so a teacher that
applies the wrong LayerNorm (CLIP's pre-LayerNorm, a fresh one, or none) gives other tokens, and
a run whose targets are not standardised starts with a loss far above 1.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel

from smile_train.loop.pretrain import run_pretrain
from smile_train.model.teacher import FeatureTeacher

IMAGE, PATCH, HIDDEN = 64, 16, 32
PATCHES = (IMAGE // PATCH) ** 2
LAYERNORM_BIAS = 3.0  # raw tokens far from zero mean: standardisation must remove it


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    torch.manual_seed(1)
    config = CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=IMAGE, patch_size=PATCH)
    model = CLIPVisionModel(config)
    with torch.no_grad():
        vision = getattr(model, "vision_model", model)  # transformers 4.x nests it, 5 does not
        for norm in (vision.pre_layrnorm, vision.post_layernorm):
            norm.weight.copy_(torch.rand(HIDDEN) * 2 + 0.5)
            norm.bias.copy_(torch.randn(HIDDEN) + LAYERNORM_BIAS)
    folder = tmp_path_factory.mktemp("clip_ln")
    model.save_pretrained(folder)
    return folder


def _layer_norm_by_hand(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight + bias


def targets_by_hand(folder, videos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(raw tokens, standardised targets), (B, T/2 * P, D): frames 0, 2, ...; each frame's
    last-layer patch tokens (CLS dropped) through the final LayerNorm; then per clip and
    channel (x - mean) / sqrt(population var + 1e-6) over all tokens of the clip."""
    model = CLIPVisionModel.from_pretrained(str(folder)).eval()
    norm = getattr(model, "vision_model", model).post_layernorm
    eps = model.config.layer_norm_eps
    clips = []
    with torch.no_grad():
        for video in videos:  # (3, T, H, W)
            frames = video[:, ::2].transpose(0, 1)  # (T/2, 3, H, W)
            hidden = model(pixel_values=frames, output_hidden_states=True).hidden_states[-1]
            tokens = _layer_norm_by_hand(hidden[:, 1:], norm.weight, norm.bias, eps)  # (T/2, P, D)
            clips.append(tokens.reshape(-1, HIDDEN))
    raw = torch.stack(clips)
    mean = raw.mean(dim=1, keepdim=True)
    var = ((raw - mean) ** 2).mean(dim=1, keepdim=True)
    return raw, (raw - mean) / torch.sqrt(var + 1e-6)


def test_teacher_tokens_are_the_final_layernorm_of_the_last_hidden_states(clip_folder):
    videos = torch.randn(2, 3, 6, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
    teacher = FeatureTeacher.from_pretrained(clip_folder, device="cpu")
    raw, expected = targets_by_hand(clip_folder, videos)
    assert raw.mean().abs() > 1.0  # the bias shows in the raw tokens
    torch.testing.assert_close(teacher.features(videos), raw, atol=1e-4, rtol=1e-4)
    targets = teacher(videos)
    assert targets.shape == (2, 3 * PATCHES, HIDDEN)
    torch.testing.assert_close(targets, expected, atol=1e-4, rtol=1e-4)


def test_pretraining_with_a_clip_target_runs_and_learns_standardised_targets(clip_folder, tiny_shards, tmp_path):
    out = tmp_path / "clip_run"
    overrides = dict(
        shards=str(tiny_shards / "*.tar"), out_dir=str(out), model="tiny", target="clip",
        teacher=str(clip_folder), input_size=IMAGE, frames=16, batch_size=2, num_workers=0,
        shuffle_buffer=4, max_steps=3, epochs=10, warmup_epochs=1, base_lr=0.02,
        save_every_steps=100, log_every_steps=1, device="cpu",
    )
    final = run_pretrain(None, overrides, resume=False)[-1]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    # Standardised targets have unit variance: the untrained decoder starts near a loss of 3
    # (measured 2.8); raw tokens, ~3 away from zero on every channel, start near 13.
    assert rows[0]["loss"] < 5.0, rows[0]
    assert rows[-1]["loss"] < rows[0]["loss"]
    state = torch.load(final, map_location="cpu", weights_only=True)
    head = [v for k, v in state["model"].items() if k.startswith("decoder") and v.ndim == 2][-1]
    assert head.shape[0] == HIDDEN  # the decoder predicts CLIP's 32 channels per token
    assert json.loads((out / "settings.json").read_text())["target"] == "clip"
