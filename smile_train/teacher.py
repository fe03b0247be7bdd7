"""Frozen CLIP image encoder that gives SMILE's feature targets (SPEC §6).

Reference teacher: CLIP ViT-B/16, `openai/clip-vit-base-patch16` on the model hub or a local
folder holding it (CLIPVisionModel.from_pretrained reads the vision half of a full CLIP folder).
Per clip, frames 0, 2, ..., T-2 each give 196 patch tokens of the last layer after CLIP's final
LayerNorm (`post_layernorm`), CLS dropped, no 512-d projection: 8 x 196 = 1568 targets of 768
channels, in the student's token order (slice k <-> frame 2k, patches row-major), standardised
per clip and channel over the tokens.

The teacher receives the same ImageNet-normalised pixels as the student (SPEC §6), not CLIP's
own mean/std: the frames are fed to CLIP exactly as given.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPVisionModel

from smile_train.targets import standardize_tokens

REFERENCE_TEACHER = "openai/clip-vit-base-patch16"
TUBELET = 2
STUDENT_PATCH = 16
LOCAL_PATH_PREFIXES = ("/", ".", "~")


class TeacherLoadError(FileNotFoundError):
    """The CLIP teacher could not be loaded from the given folder or hub id."""


def _looks_local(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return (isinstance(name_or_path, Path) or text.startswith(LOCAL_PATH_PREFIXES)
            or Path(text).exists())


def _load_vision_model(name_or_path: str | Path) -> CLIPVisionModel:
    local = _looks_local(name_or_path)
    if local and not Path(name_or_path).expanduser().is_dir():
        raise TeacherLoadError(f"CLIP teacher {str(name_or_path)!r}: no such folder (expected a "
                               f"folder saved by save_pretrained, e.g. of {REFERENCE_TEACHER})")
    source = str(Path(name_or_path).expanduser()) if local else str(name_or_path)
    try:
        model, info = CLIPVisionModel.from_pretrained(source, output_loading_info=True)
    except (OSError, ValueError, KeyError) as error:
        raise TeacherLoadError(f"CLIP teacher {source!r} could not be loaded: {error}") from None
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise TeacherLoadError(f"CLIP teacher {source!r} lacks {len(missing)} weights of a CLIP "
                               f"vision model, e.g. {missing[:3]}: not a CLIP checkpoint?")
    return model


class ClipTeacher:
    """Callable: ImageNet-normalised videos (B, 3, T, H, W) -> targets (B, T/2 * P, D)."""

    def __init__(self, model: CLIPVisionModel, dtype: torch.dtype, frame_stride: int = TUBELET):
        self.model = model.eval().requires_grad_(False)
        self.dtype = dtype
        self.frame_stride = frame_stride
        config = model.config
        if config.patch_size != STUDENT_PATCH:
            raise ValueError(f"CLIP teacher has {config.patch_size}px patches; its tokens line up "
                             f"with the student's only for {STUDENT_PATCH}px patches")
        self.image_size = config.image_size
        self.out_dim = config.hidden_size
        # transformers 5 keeps the final LayerNorm on the model, 4.x on model.vision_model.
        self.post_layernorm = getattr(model, "vision_model", model).post_layernorm

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device,
                        dtype: torch.dtype | None = None) -> "ClipTeacher":
        """Load a frozen teacher; bf16 on CUDA and float32 elsewhere unless `dtype` says otherwise.

        Raises TeacherLoadError (a FileNotFoundError) naming the path if nothing loadable is there.
        """
        device = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = _load_vision_model(name_or_path)
        return cls(model.to(device=device, dtype=dtype), dtype)

    def frames_of(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> the frames CLIP sees, (B * T/stride, 3, H, W), clip-major."""
        batch, channels, frames, height, width = videos.shape
        if frames % self.frame_stride or (height, width) != (self.image_size, self.image_size):
            raise ValueError(f"videos {tuple(videos.shape)}: the teacher needs a multiple of "
                             f"{self.frame_stride} frames of {self.image_size}x{self.image_size}")
        picked = videos[:, :, :: self.frame_stride]  # frames 0, 2, ..., T-2
        return picked.transpose(1, 2).reshape(-1, channels, height, width)

    @torch.no_grad()
    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """Raw patch tokens after post_layernorm, (B, T/stride * P, D) float32, not standardised."""
        frames = self.frames_of(videos).to(self.dtype)
        hidden = self.model(pixel_values=frames).last_hidden_state  # (B * T', 1 + P, D)
        tokens = self.post_layernorm(hidden[:, 1:])  # drop CLS
        return tokens.reshape(videos.shape[0], -1, tokens.shape[-1]).float()

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """Targets (B, T/stride * P, D): `features` standardised per clip and channel (eps 1e-6)."""
        return standardize_tokens(self.features(videos))
