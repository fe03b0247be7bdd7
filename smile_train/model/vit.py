"""Video ViT family: the SMILE / VideoMAE student, its masked decoder, the finetuning classifier.

Tokens are 2x16x16 tubes in (t, h, w) order: 8 x 14 x 14 = 1568 per 16-frame 224px clip (docs/method.md §5).
Parameter names follow the VideoMAE / SMILE checkpoints (docs/method.md §7), so their files load as they are:

    PretrainModel:   encoder.patch_embed.proj.*, encoder.blocks.N.{norm1, attn.qkv.weight,
                     attn.q_bias, attn.v_bias, attn.proj, norm2, mlp.fc1, mlp.fc2}, encoder.norm,
                     encoder_to_decoder.weight, mask_token, decoder.blocks.N.*, decoder.norm,
                     decoder.head
    ClassifierModel: patch_embed.*, blocks.N.*, fc_norm, head

The sin-cos position tables are non-persistent buffers: no checkpoint holds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from smile_train.model.geometry import FRAMES, IMG_SIZE, PATCH, TUBELET

LAYER_NORM_EPS = 1e-6
MLP_RATIO = 4
IN_CHANNELS = 3
SIN_COS_BASE = 10000.0
CLIP_FEATURE_DIM = 768  # CLIP ViT-B/16 patch tokens after the final LayerNorm (docs/method.md §6)
MASK_TOKEN_INIT_STD = 0.02  # VideoMAE initialises the mask token with trunc_normal(std=.02)
HEAD_INIT_STD = 0.02
HEAD_INIT_SCALE = 1e-3  # VideoMAE finetuning scales the fresh head down (--init_scale 0.001)
ATTENTION_IMPLS = ("sdpa", "explicit")
TARGETS = ("clip", "pixel")


@dataclass(frozen=True)
class ViTSize:
    width: int
    depth: int
    heads: int
    decoder_width: int
    decoder_depth: int
    decoder_heads: int


SIZES = {
    "tiny": ViTSize(192, 4, 3, 96, 2, 3),  # tests and the CPU default
    "small": ViTSize(384, 12, 6, 192, 4, 3),  # ViT-S: 22M encoder parameters
    "base": ViTSize(768, 12, 12, 384, 4, 6),  # ViT-B: 87M encoder parameters
}


def size_spec(size: str) -> ViTSize:
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; known: {', '.join(SIZES)}")
    return SIZES[size]


def sincos_table(positions: int, dim: int) -> torch.Tensor:
    """Fixed 1-D sin-cos table (positions, dim): channel 2i sin, 2i+1 cos of pos / base^(2i/dim).

    Computed in float64 and rounded once to float32, as the VideoMAE checkpoints expect.
    """
    pos = torch.arange(positions, dtype=torch.float64)[:, None]
    pair = torch.div(torch.arange(dim, dtype=torch.float64), 2, rounding_mode="floor")
    angles = pos / SIN_COS_BASE ** (2 * pair / dim)  # (positions, dim)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class PatchEmbed3d(nn.Module):
    """(B, 3, T, H, W) -> (B, N, width) with one Conv3d whose kernel equals its stride."""

    def __init__(self, width: int, patch: int = PATCH, tubelet: int = TUBELET):
        super().__init__()
        size = (tubelet, patch, patch)
        self.proj = nn.Conv3d(IN_CHANNELS, width, kernel_size=size, stride=size)

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.proj(videos).flatten(2).transpose(1, 2)  # (B, N, width), N in (t, h, w) order


class Attention(nn.Module):
    """Multi-head self-attention; qkv without bias plus learned q and v biases (k has none)."""

    def __init__(self, dim: int, heads: int, attention_impl: str = "sdpa"):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.impl = check_attention_impl(attention_impl)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias)  # (B, N, 3 * dim)
        q, k, v = qkv.reshape(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, head_dim)
        else:
            out = explicit_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


def explicit_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Reference softmax(q k^T / sqrt(d)) v, materialising the (N, N) weights; for benchmarks."""
    weights = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, heads, N, N)
    return weights.softmax(dim=-1) @ v


def check_attention_impl(impl: str) -> str:
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention_impl {impl!r} not in {ATTENTION_IMPLS}")
    return impl


def set_attention_impl(model: nn.Module, impl: str) -> None:
    """Switch every Attention block of `model` to `impl` ("sdpa" or "explicit")."""
    check_attention_impl(impl)
    for module in model.modules():
        if isinstance(module, Attention):
            module.impl = impl


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch of whole samples with probability `rate`."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        return x * x.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, heads: int, drop_path: float = 0.0, attention_impl: str = "sdpa"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, heads, attention_impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, dim * MLP_RATIO)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def make_blocks(width: int, depth: int, heads: int, drop_path: float, impl: str) -> nn.ModuleList:
    rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()  # linear decay rule
    return nn.ModuleList(Block(width, heads, rate, impl) for rate in rates)


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, grad_checkpointing: bool) -> torch.Tensor:
    recompute = grad_checkpointing and torch.is_grad_enabled()
    for block in blocks:
        x = checkpoint(block, x, use_reentrant=False) if recompute else block(x)
    return x


def gather_tokens(tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, N, C) tokens where `keep` (B, N) is True -> (B, n, C), in token order.

    Every clip of the batch must keep the same number of tokens.
    """
    if keep.dtype != torch.bool or keep.shape != tokens.shape[:2]:
        raise ValueError(f"token mask must be bool {tuple(tokens.shape[:2])}, got "
                         f"{keep.dtype} {tuple(keep.shape)}")
    counts = keep.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"every clip must keep the same number of tokens, got {counts.tolist()}")
    return tokens[keep].reshape(tokens.shape[0], -1, tokens.shape[2])


def mask_order(mask: torch.Tensor, num_masked: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index tensors (B, N - M) of visible and (B, M) of masked tokens, each in token order.

    `mask` (B, N) bool must hide exactly `num_masked` tokens in every clip. Shapes depend on
    the Python int only, so there is no host sync and torch.compile sees a static graph.
    """
    order = torch.argsort(mask.to(torch.uint8), dim=1, stable=True)  # visible first, order kept
    split = mask.shape[1] - num_masked
    return order[:, :split], order[:, split:]


def take_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, N, C) tokens at (B, n) indices -> (B, n, C)."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def masked_count(mask: torch.Tensor) -> int:
    """The number of masked tokens per clip; every clip must mask the same number."""
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {mask.dtype}")
    counts = mask.sum(dim=1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"every clip must keep the same number of tokens, got {counts.tolist()}")
    return int(counts[0])


def no_decay_names(module: nn.Module) -> set[str]:
    """Norm weights, biases, q/v biases and other 1-D parameters: excluded from weight decay."""
    return {name for name, param in module.named_parameters() if param.ndim <= 1}


def init_pretrain_weights(module: nn.Module) -> None:
    """VideoMAE pretraining init: xavier-uniform Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VideoViTEncoder(nn.Module):
    """ViT over 2x16x16 tubes with a fixed sin-cos position table; sees only the visible tokens."""

    def __init__(self, width: int, depth: int, heads: int, img_size: int = IMG_SIZE,
                 frames: int = FRAMES, tubelet: int = TUBELET, patch: int = PATCH,
                 drop_path: float = 0.0, attention_impl: str = "sdpa",
                 grad_checkpointing: bool = False, final_norm: bool = True):
        super().__init__()
        if img_size % patch or frames % tubelet:
            raise ValueError(f"clip {frames}x{img_size}px does not split into "
                             f"{tubelet}x{patch}x{patch} tubes")
        self.width, self.depth = width, depth
        self.img_size, self.frames, self.tubelet, self.patch = img_size, frames, tubelet, patch
        self.grad_checkpointing = grad_checkpointing
        self.patch_embed = PatchEmbed3d(width, patch, tubelet)
        self.register_buffer("pos_embed", sincos_table(self.num_tokens, width)[None],
                             persistent=False)  # (1, N, width)
        self.blocks = make_blocks(width, depth, heads, drop_path, attention_impl)
        # The classifier pools then normalises (fc_norm) instead: finetuned files have no `norm`.
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS) if final_norm else nn.Identity()
        self.apply(init_pretrain_weights)

    @property
    def grid(self) -> tuple[int, int, int]:
        side = self.img_size // self.patch
        return (self.frames // self.tubelet, side, side)

    @property
    def num_tokens(self) -> int:
        return math.prod(self.grid)

    def check_videos(self, videos: torch.Tensor) -> None:
        expected = (IN_CHANNELS, self.frames, self.img_size, self.img_size)
        if videos.ndim != 5 or tuple(videos.shape[1:]) != expected:
            raise ValueError(f"videos must be (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(videos.shape)}")

    def forward_tokens(self, videos: torch.Tensor,
                       visible: torch.Tensor | None = None) -> torch.Tensor:
        """videos (B, 3, T, H, W), visible (B, N) bool, (B, n) token indices, or None
        -> (B, N_visible, width)."""
        self.check_videos(videos)
        tokens = self.patch_embed(videos)
        tokens = tokens + self.pos_embed.type_as(tokens)  # (B, N, width)
        if visible is not None and visible.dtype == torch.bool:
            tokens = gather_tokens(tokens, visible)
        elif visible is not None:
            tokens = take_tokens(tokens, visible)
        tokens = run_blocks(self.blocks, tokens, self.grad_checkpointing and self.training)
        return self.norm(tokens)

    def forward(self, videos: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_tokens(videos, visible)

    def no_weight_decay(self) -> set[str]:
        return no_decay_names(self)

    def layer_id(self, name: str) -> int:
        """Layer-wise lr decay depth: patch_embed 0, blocks.i i + 1, anything after depth + 1."""
        if name.startswith(("patch_embed.", "pos_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.depth + 1


class MaskedDecoder(nn.Module):
    """Transformer over [visible latents, mask tokens]; predicts targets for the last n tokens."""

    def __init__(self, width: int, depth: int, heads: int, out_dim: int, drop_path: float = 0.0,
                 attention_impl: str = "sdpa", grad_checkpointing: bool = False):
        super().__init__()
        self.grad_checkpointing = grad_checkpointing
        self.blocks = make_blocks(width, depth, heads, drop_path, attention_impl)
        self.norm = nn.LayerNorm(width, eps=LAYER_NORM_EPS)
        self.head = nn.Linear(width, out_dim)
        self.apply(init_pretrain_weights)

    def forward(self, tokens: torch.Tensor, num_predicted: int) -> torch.Tensor:
        tokens = run_blocks(self.blocks, tokens, self.grad_checkpointing and self.training)
        return self.head(self.norm(tokens[:, -num_predicted:]))  # (B, num_predicted, out_dim)


class PretrainModel(nn.Module):
    """Masked video model: encoder on visible tokens -> decoder predicts every masked token."""

    def __init__(self, size: str, target_dim: int, img_size: int = IMG_SIZE,
                 frames: int = FRAMES, tubelet: int = TUBELET, patch: int = PATCH,
                 drop_path: float = 0.0, attention_impl: str = "sdpa",
                 grad_checkpointing: bool = False, decoder_depth: int | None = None):
        super().__init__()
        spec = size_spec(size)
        self.size, self.target_dim = size, target_dim
        self.encoder = VideoViTEncoder(spec.width, spec.depth, spec.heads, img_size, frames,
                                       tubelet, patch, drop_path, attention_impl,
                                       grad_checkpointing)
        self.encoder_to_decoder = nn.Linear(spec.width, spec.decoder_width, bias=False)
        nn.init.xavier_uniform_(self.encoder_to_decoder.weight)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, spec.decoder_width))
        nn.init.trunc_normal_(self.mask_token, std=MASK_TOKEN_INIT_STD,
                              a=-MASK_TOKEN_INIT_STD, b=MASK_TOKEN_INIT_STD)
        self.decoder = MaskedDecoder(spec.decoder_width, decoder_depth or spec.decoder_depth,
                                     spec.decoder_heads, target_dim, drop_path, attention_impl,
                                     grad_checkpointing)
        self.register_buffer("decoder_pos_embed",
                             sincos_table(self.encoder.num_tokens, spec.decoder_width)[None],
                             persistent=False)  # (1, N, decoder_width)

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.encoder.grid

    def forward(self, videos: torch.Tensor, mask: torch.Tensor, num_masked: int | None = None) -> torch.Tensor:
        """videos (B, 3, T, H, W), mask (B, N) bool, True = masked -> (B, N_masked, target_dim).

        Predictions come in token order, so they line up with `targets[mask].reshape(B, -1, D)`.
        Pass `num_masked` (known on the host from the loader's masks) to avoid a device sync.
        """
        if num_masked is None or mask.dtype != torch.bool:
            num_masked = masked_count(mask)
        visible_index, masked_index = mask_order(mask, num_masked)
        latent = self.encoder_to_decoder(self.encoder(videos, visible_index))  # (B, N_vis, D)
        batch = latent.shape[0]
        pos = self.decoder_pos_embed.type_as(latent).expand(batch, -1, -1)  # (B, N, D)
        pos_visible, pos_masked = take_tokens(pos, visible_index), take_tokens(pos, masked_index)
        tokens = torch.cat([latent + pos_visible, self.mask_token.type_as(latent) + pos_masked], 1)
        return self.decoder(tokens, num_masked)

    def no_weight_decay(self) -> set[str]:
        return no_decay_names(self) | {"mask_token"}


class ClassifierModel(VideoViTEncoder):
    """Finetuning model: all tokens -> mean pool -> fc_norm -> dropout -> head (docs/method.md §7).

    Subclasses the encoder so its keys come out as in finetuned VideoMAE files (no `encoder.`).
    """

    def __init__(self, size: str, num_classes: int, drop_path: float = 0.1,
                 head_drop: float = 0.0, img_size: int = IMG_SIZE, frames: int = FRAMES,
                 tubelet: int = TUBELET, patch: int = PATCH, attention_impl: str = "sdpa",
                 grad_checkpointing: bool = False, head_init_scale: float = HEAD_INIT_SCALE):
        spec = size_spec(size)
        super().__init__(spec.width, spec.depth, spec.heads, img_size, frames, tubelet, patch,
                         drop_path, attention_impl, grad_checkpointing, final_norm=False)
        self.size, self.num_classes = size, num_classes
        self.fc_norm = nn.LayerNorm(spec.width, eps=LAYER_NORM_EPS)
        self.head_drop = nn.Dropout(head_drop) if head_drop > 0 else nn.Identity()
        self.head = nn.Linear(spec.width, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=HEAD_INIT_STD)
            with torch.no_grad():
                self.head.weight.mul_(head_init_scale)
            nn.init.zeros_(self.head.bias)

    def forward_features(self, videos: torch.Tensor) -> torch.Tensor:
        """videos (B, 3, T, H, W) -> every token (B, N, width)."""
        return self.forward_tokens(videos)

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """tokens (B, N, width) -> logits (B, num_classes), or pooled features (B, width)."""
        pooled = self.fc_norm(tokens.mean(dim=1))
        return pooled if pre_logits else self.head(self.head_drop(pooled))

    def forward(self, videos: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.forward_head(self.forward_features(videos))


def target_dim_for(target: str, tubelet: int = TUBELET, patch: int = PATCH) -> int:
    """768 for the CLIP target; tubelet * patch * patch * 3 (1536) for the pixel target."""
    if target == "clip":
        return CLIP_FEATURE_DIM
    if target == "pixel":
        return tubelet * patch * patch * IN_CHANNELS
    raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGETS)}")


def build_pretrain_model(size: str, target: str, target_dim: int | None = None,
                         **overrides) -> PretrainModel:
    """PretrainModel for `target` in {"clip", "pixel"}; `target_dim` overrides the teacher width."""
    dim = target_dim_for(target, overrides.get("tubelet", TUBELET), overrides.get("patch", PATCH))
    return PretrainModel(size, target_dim or dim, **overrides)


def build_classifier(size: str, num_classes: int, **overrides) -> ClassifierModel:
    return ClassifierModel(size, num_classes, **overrides)
