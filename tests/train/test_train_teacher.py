"""CLIP teacher through the real from_pretrained path, with a tiny random CLIP saved to disk."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    ViTConfig,
    ViTModel,
)

from smile_train.teacher import ClipTeacher, TeacherLoadError

IMAGE = 64  # 4 x 4 patches of 16 px per frame
PATCHES = 16
HIDDEN = 32


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, image_size=IMAGE, patch_size=16)
    folder = tmp_path_factory.mktemp("clip")
    CLIPVisionModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teacher(clip_folder):
    return ClipTeacher.from_pretrained(clip_folder, device="cpu")


def clip_videos(batch=2, frames=8, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, frames, IMAGE, IMAGE, generator=generator)


def test_targets_have_one_token_per_student_token(teacher):
    targets = teacher(clip_videos())
    assert targets.shape == (2, 4 * PATCHES, HIDDEN) and targets.dtype == torch.float32
    assert teacher.out_dim == HIDDEN and teacher.dtype == torch.float32
    assert not any(p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training


def test_slice_k_comes_from_frame_2k_after_post_layernorm(teacher):
    videos = clip_videos(batch=1)
    raw = teacher.features(videos)
    with torch.no_grad():
        hidden = teacher.model(pixel_values=videos[:, :, 4]).last_hidden_state
        expected = teacher.post_layernorm(hidden)[:, 1:]  # frame 4 -> slice 2, CLS dropped
    torch.testing.assert_close(raw[:, 2 * PATCHES:3 * PATCHES], expected)


def test_changing_frame_2k_changes_only_slice_k(teacher):
    videos = clip_videos(batch=1, seed=1)
    base = teacher.features(videos).reshape(1, 4, PATCHES, HIDDEN)
    even, odd = videos.clone(), videos.clone()
    even[:, :, 2] += 1.0  # frame 2 -> slice 1
    odd[:, :, 5] += 1.0  # odd frames are not shown to the teacher
    changed = teacher.features(even).reshape(1, 4, PATCHES, HIDDEN)
    differs = (changed - base).abs().amax(dim=(0, 2, 3)) > 1e-6
    assert differs.tolist() == [False, True, False, False]
    torch.testing.assert_close(teacher.features(odd), teacher.features(videos))


def test_token_order_is_row_major_within_a_frame(teacher):
    videos = clip_videos(batch=1, seed=2)
    shifted = videos.clone()
    shifted[:, :, 0, 16:32, 48:64] += 3.0  # patch row 1, column 3 of frame 0 -> token 7
    delta = (teacher.features(shifted) - teacher.features(videos)).abs().amax(dim=-1)[0, :PATCHES]
    assert int(delta.argmax()) == 1 * 4 + 3


def test_targets_are_standardised_per_clip_and_channel(teacher):
    targets = teacher(clip_videos(seed=3))
    torch.testing.assert_close(targets.mean(1), torch.zeros(2, HIDDEN), atol=1e-5, rtol=0)
    torch.testing.assert_close(targets.var(1, unbiased=False), torch.ones(2, HIDDEN),
                               atol=1e-3, rtol=0)


def test_missing_or_wrong_teacher_raises_a_clear_error(tmp_path, teacher):
    missing = tmp_path / "no-clip-here"
    with pytest.raises(FileNotFoundError, match="no-clip-here"):
        ClipTeacher.from_pretrained(missing, device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TeacherLoadError, match="empty"):
        ClipTeacher.from_pretrained(str(empty), device="cpu")
    with pytest.raises(ValueError, match="64x64"):
        teacher(torch.zeros(1, 3, 8, 32, 32))


def test_full_clip_folder_loads_its_vision_half(tmp_path):
    """The reference teacher ships as a full CLIPModel; its vision weights must all be used."""
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                vocab_size=64)
    vision = dict(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64, image_size=IMAGE, patch_size=16)
    clip = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    clip.save_pretrained(tmp_path)
    loaded = ClipTeacher.from_pretrained(tmp_path, device="cpu")
    expected = clip.vision_model.post_layernorm.weight
    torch.testing.assert_close(loaded.post_layernorm.weight, expected)
    assert loaded(clip_videos(batch=1)).shape == (1, 4 * PATCHES, HIDDEN)


def test_a_non_clip_folder_is_refused(tmp_path):
    config = ViTConfig(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, image_size=IMAGE, patch_size=16)
    ViTModel(config).save_pretrained(tmp_path)
    with pytest.raises(TeacherLoadError, match="not a CLIP checkpoint"):
        ClipTeacher.from_pretrained(tmp_path, device="cpu")
