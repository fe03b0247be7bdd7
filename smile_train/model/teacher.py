"""Frozen image encoder that gives SMILE's feature targets (docs/method.md §6): CLIP, ViT / DINO, DINOv2.

Reference teacher: CLIP ViT-B/16, `openai/clip-vit-base-patch16` on the model hub or a local
folder holding it; the authors also trained with DINO ViT-S/16 and ViT-B/16
(`facebook/dino-vits16`, `facebook/dino-vitb16`: transformers `ViTModel`s). Any folder or hub id
whose config is one of these `transformers` vision backbones is accepted:

| model_type | loaded as | tokens before the patches |
| --- | --- | --- |
| `clip`, `clip_vision_model` | `CLIPVisionModel` (the vision half of a full CLIP folder) | CLS |
| `vit` (ViT, DINO) | `ViTModel` without pooler | CLS |
| `dinov2` | `Dinov2Model` | CLS |
| `dinov2_with_registers` | `Dinov2WithRegistersModel` | CLS + registers |

Per clip, frames 0, 2, ..., T-2 each give their patch tokens of the last layer after the model's
final LayerNorm (CLIP's `post_layernorm`, ViT's and DINOv2's `layernorm`), the tokens before the
patches dropped, no projection: T/2 x (H/16)^2 targets in the student's token order (slice k <->
frame 2k, patches row-major), standardised per clip and channel over the tokens.

Patch sizes: CLIP and ViT teachers must have the student's 16-px patches and take the clip at
their own image size (their position tables are not interpolated). DINOv2 (14-px patches, any
image size: it interpolates its position table) sees each frame resized (bilinear, antialiased)
to (H/16) x 14 px, so its token grid is the student's, e.g. 224 -> 196 px, 14 x 14 tokens.

The teacher receives the same ImageNet-normalised pixels as the student (docs/method.md §6), not its own
preprocessing: the frames are fed exactly as given (resized for DINOv2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import (
    AutoConfig,
    CLIPVisionModel,
    Dinov2Model,
    Dinov2WithRegistersModel,
    PreTrainedModel,
    ViTModel,
)

from smile_train.model.geometry import PATCH as STUDENT_PATCH
from smile_train.model.geometry import TUBELET
from smile_train.model.targets import standardize_tokens

REFERENCE_TEACHER = "openai/clip-vit-base-patch16"
LOCAL_PATH_PREFIXES = ("/", ".", "~")


class TeacherLoadError(FileNotFoundError):
    """The teacher could not be loaded from the given folder or hub id, or is not supported."""


@dataclass(frozen=True)
class Family:
    """How one kind of transformers backbone gives its final patch tokens."""

    name: str
    model_class: type[PreTrainedModel]
    load_options: tuple[tuple[str, object], ...] = ()
    output_is_normalised: bool = True  # last_hidden_state is already after the final LayerNorm
    resizes: bool = False  # interpolates its own position table: frames are resized to its patch


CLIP = Family("CLIP", CLIPVisionModel, output_is_normalised=False)
FAMILIES = {
    "clip": CLIP,
    "clip_vision_model": CLIP,
    "vit": Family("ViT / DINO", ViTModel, (("add_pooling_layer", False),)),
    "dinov2": Family("DINOv2", Dinov2Model, resizes=True),
    "dinov2_with_registers": Family("DINOv2 with registers", Dinov2WithRegistersModel, resizes=True),
}
SUPPORTED = ", ".join(FAMILIES)


def _looks_local(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return (isinstance(name_or_path, Path) or text.startswith(LOCAL_PATH_PREFIXES)
            or Path(text).exists())


def family_of(model_type: str, source: str) -> Family:
    """The Family of a config's model_type; TeacherLoadError naming the model otherwise."""
    if model_type not in FAMILIES:
        raise TeacherLoadError(
            f"teacher {source!r}: model type {model_type!r} is not supported. A teacher is a vision "
            f"backbone whose last layer's patch tokens, after its final LayerNorm, line up with the "
            f"student's 16-px patches; supported model types: {SUPPORTED}")
    return FAMILIES[model_type]


def _load_model(name_or_path: str | Path) -> PreTrainedModel:
    local = _looks_local(name_or_path)
    if local and not Path(name_or_path).expanduser().is_dir():
        raise TeacherLoadError(f"teacher {str(name_or_path)!r}: no such folder (expected a folder saved "
                               f"by save_pretrained, e.g. of {REFERENCE_TEACHER})")
    source = str(Path(name_or_path).expanduser()) if local else str(name_or_path)
    try:
        model_type = AutoConfig.from_pretrained(source).model_type
    except (OSError, ValueError, KeyError) as error:
        raise TeacherLoadError(f"teacher {source!r} could not be loaded: {error}") from None
    family = family_of(model_type, source)
    try:
        model, info = family.model_class.from_pretrained(source, output_loading_info=True,
                                                         **dict(family.load_options))
    except (OSError, ValueError, KeyError) as error:
        raise TeacherLoadError(f"teacher {source!r} ({family.name}) could not be loaded: {error}") from None
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise TeacherLoadError(f"teacher {source!r} lacks {len(missing)} weights of a {family.name} model, "
                               f"e.g. {missing[:3]}: not a {family.name} checkpoint?")
    return model


class FeatureTeacher:
    """Callable: ImageNet-normalised videos (B, 3, T, H, W) -> targets (B, T/2 * P, D)."""

    def __init__(self, model: PreTrainedModel, dtype: torch.dtype, frame_stride: int = TUBELET):
        config = model.config
        self.family = family_of(config.model_type, type(model).__name__)
        self.model = model.eval().requires_grad_(False)
        self.dtype = dtype
        self.frame_stride = frame_stride
        self.patch = config.patch_size
        if self.patch != STUDENT_PATCH and not self.family.resizes:
            raise ValueError(f"{self.family.name} teacher has {self.patch}px patches; its tokens line up "
                             f"with the student's only for {STUDENT_PATCH}px patches")
        self.image_size = None if self.family.resizes else config.image_size
        self.out_dim = config.hidden_size
        self.prefix_tokens = 1 + getattr(config, "num_register_tokens", 0)  # CLS (+ registers)
        # CLIP's final LayerNorm is applied here: transformers 5 keeps it on the model, 4.x on
        # model.vision_model. The other families apply theirs inside the model.
        self.final_norm = (torch.nn.Identity() if self.family.output_is_normalised
                           else getattr(model, "vision_model", model).post_layernorm)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device,
                        dtype: torch.dtype | None = None) -> "FeatureTeacher":
        """Load a frozen teacher; bf16 on CUDA and float32 elsewhere unless `dtype` says otherwise.

        Raises TeacherLoadError (a FileNotFoundError) naming the path if nothing loadable is
        there or the model is not a supported backbone.
        """
        device = torch.device(device)
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        model = _load_model(name_or_path)
        return cls(model.to(device=device, dtype=dtype), dtype)

    def frames_of(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> the frames the teacher sees, (B * T/stride, 3, S, S), clip-major."""
        batch, channels, frames, height, width = videos.shape
        native = self.image_size is None or (height, width) == (self.image_size, self.image_size)
        if frames % self.frame_stride or height != width or height % STUDENT_PATCH or not native:
            size = f"{self.image_size}x{self.image_size}" if self.image_size else f"square, a multiple of {STUDENT_PATCH} px,"
            raise ValueError(f"videos {tuple(videos.shape)}: the {self.family.name} teacher needs a "
                             f"multiple of {self.frame_stride} frames of {size}")
        picked = videos[:, :, :: self.frame_stride]  # frames 0, 2, ..., T-2
        picked = picked.transpose(1, 2).reshape(-1, channels, height, width)
        side = height // STUDENT_PATCH * self.patch
        if side != height:  # DINOv2: the student's grid in the teacher's patches
            picked = F.interpolate(picked.float(), size=(side, side), mode="bilinear", align_corners=False,
                                   antialias=True)
        return picked

    @torch.no_grad()
    def features(self, videos: torch.Tensor) -> torch.Tensor:
        """Raw patch tokens after the final LayerNorm, (B, T/stride * P, D) float32, not standardised."""
        frames = self.frames_of(videos).to(self.dtype)
        hidden = self.model(pixel_values=frames).last_hidden_state  # (B * T', prefix + P, D)
        tokens = self.final_norm(hidden)[:, self.prefix_tokens :]
        return tokens.reshape(videos.shape[0], -1, tokens.shape[-1]).float()

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> torch.Tensor:
        """Targets (B, T/stride * P, D): `features` standardised per clip and channel (eps 1e-6)."""
        return standardize_tokens(self.features(videos))

