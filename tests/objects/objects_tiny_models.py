"""Tiny random-weight models saved with `save_pretrained`, so tests load them by path.

Nothing is downloaded: a Stable Diffusion pipeline (UNet, VAE, CLIP text encoder, a CLIP
tokenizer made from a vocab.json + merges.txt written here, a scheduler, no safety checker),
a CLIP model + processor for scoring, and a CLIPSeg model + processor.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_WIDTH = 32
TOKEN_LENGTH = 77
VOCAB_SIZE = 1000
TEXT_CONFIG = dict(
    bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=TINY_WIDTH, intermediate_size=37,
    num_attention_heads=4, num_hidden_layers=2, vocab_size=VOCAB_SIZE,
    max_position_embeddings=TOKEN_LENGTH, projection_dim=16,
)


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2 / CLIP scheme)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    characters, extra = [], 0
    for byte in range(256):
        if byte in keep:
            characters.append(chr(byte))
        else:
            characters.append(chr(256 + extra))
            extra += 1
    return characters


def write_tokenizer(folder: Path) -> Path:
    """A character-level CLIP tokenizer: every byte, alone and word-final, and no merges."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    characters = _byte_characters()
    tokens = ["<|startoftext|>", "<|pad|>", "<|endoftext|>"] + characters + [c + "</w>" for c in characters]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=TOKEN_LENGTH)
    tokenizer.save_pretrained(folder)
    return folder


def build_tiny_pipeline(folder: Path) -> Path:
    """A Stable-Diffusion-shaped pipeline with random weights, saved to `folder`."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TINY_WIDTH,
        attention_head_dim=4, norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(4, 8, 8, 8), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=4, sample_size=64,
    )
    text_config = {k: v for k, v in TEXT_CONFIG.items() if k != "projection_dim"}
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer(folder / "_tokenizer_source"))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    pipeline.save_pretrained(folder / "pipeline")
    return folder / "pipeline"


def build_tiny_clip(folder: Path) -> Path:
    """A CLIPModel + CLIPProcessor (32 px images) with random weights, saved to `folder`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(1)
    vision = dict(hidden_size=TINY_WIDTH, intermediate_size=37, num_attention_heads=4,
                  num_hidden_layers=2, image_size=32, patch_size=8, projection_dim=16)
    text = {k: v for k, v in TEXT_CONFIG.items()}
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer(folder / "_tokenizer_source"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(folder / "clip")
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder / "clip")
    return folder / "clip"


def build_tiny_clipseg(folder: Path) -> Path:
    """A CLIPSegForImageSegmentation + CLIPSegProcessor (32 px) with random weights."""
    from transformers import (CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor,
                              CLIPTokenizer, ViTImageProcessor)

    torch.manual_seed(2)
    vision = dict(hidden_size=TINY_WIDTH, intermediate_size=37, num_attention_heads=4,
                  num_hidden_layers=2, image_size=32, patch_size=8)
    text = {k: v for k, v in TEXT_CONFIG.items() if k != "projection_dim"}
    config = CLIPSegConfig(text_config=text, vision_config=vision, projection_dim=16,
                           reduce_dim=8, extract_layers=[0, 1], decoder_num_attention_heads=2,
                           decoder_intermediate_size=16)
    model = CLIPSegForImageSegmentation(config)
    tokenizer = CLIPTokenizer.from_pretrained(write_tokenizer(folder / "_tokenizer_source"))
    images = ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(folder / "clipseg")
    CLIPSegProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder / "clipseg")
    return folder / "clipseg"
