"""Stable Diffusion candidate generation speed: images/s per batch size and dtype (a table).

    .venv/bin/python benchmarks/bench_generation.py [--batch-sizes 1,4,8,16] \
        [--dtypes float16,bfloat16] [--steps 50] [--images 16]
    .venv/bin/python benchmarks/bench_generation.py --tiny     # a CPU smoke run of the script

Builds the Stable Diffusion 1.5 architecture from its configuration with random weights (UNet
with 320/640/1280/1280 blocks and 768-d cross-attention, a VAE with 4 latent channels, a CLIP
ViT-L/14 text encoder; no download, so a character-level tokenizer stands in for CLIP's BPE) and
times `smile_data.objects.generate.generate_images` — the build's own path, one seeded generator
per image — at 512x512. Random weights cost the same FLOPs as trained ones; the images are
noise (and may hold NaNs in half precision), which does not change the timing. Needs CUDA;
`--tiny` shrinks every part so the script can be checked on a CPU.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from command_line import Option, benchmark_parser  # this script's folder

from smile_data.objects.generate import DTYPE_BY_NAME, candidate_seed, generate_images
from smile_data.objects.settings import BuildSettings

TOKEN_LENGTH = 77
SD15 = {
    "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768,
                 attention_head_dim=8, norm_num_groups=32,
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=512,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
    "text": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                 num_attention_heads=12, max_position_embeddings=TOKEN_LENGTH,
                 hidden_act="quick_gelu", projection_dim=768),
    "resolution": 512,
}
TINY = {
    "unet": dict(SD15["unet"], sample_size=8, block_out_channels=(32, 64, 64, 64), layers_per_block=1,
                 cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8),
    "vae": dict(SD15["vae"], block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=8,
                sample_size=64),
    "text": dict(SD15["text"], hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, projection_dim=32),
    "resolution": 64,
}


def write_character_tokenizer(folder: Path):
    """A CLIP tokenizer over single bytes (no merges): same interface as CLIP's, no download."""
    from transformers import CLIPTokenizer

    printable = [b for b in range(256) if chr(b).isprintable() and not chr(b).isspace()]
    others = [b for b in range(256) if b not in printable]
    characters = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    tokens = ["<|startoftext|>", "<|endoftext|>"] + [characters[b] for b in range(256)]
    tokens += [characters[b] + "</w>" for b in range(256)]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer.from_pretrained(folder, model_max_length=TOKEN_LENGTH)


def build_pipeline(config: dict, device: str):
    """A StableDiffusionPipeline with the given architecture and random weights on `device`."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    with torch.device(device):  # initialise on the device: much faster than on the CPU
        unet = UNet2DConditionModel(**config["unet"])
        vae = AutoencoderKL(**config["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**config["text"]))
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = write_character_tokenizer(Path(folder))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder,
                                       tokenizer=tokenizer, scheduler=scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def time_generation(pipeline, settings: BuildSettings, batch_size: int,
                    images: int) -> tuple[float, float]:
    """(images per second, peak GPU GiB) for `images` images in calls of `batch_size`."""
    prompt = "a photo of a single cat"
    calls = math.ceil(images / batch_size)
    generate_images(pipeline, prompt, [candidate_seed(0, 1, i) for i in range(batch_size)], settings)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for call in range(calls):
        seeds = [candidate_seed(0, 1, call * batch_size + i) for i in range(batch_size)]
        generate_images(pipeline, prompt, seeds, settings)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return calls * batch_size / elapsed, peak


def main() -> None:
    args = benchmark_parser(__doc__.splitlines()[0], [
        Option("--batch-sizes", "1,4,8,16"),
        Option("--dtypes", "float16,bfloat16"),
        Option("--steps", 50),
        Option("--images", 16, "images timed per row"),
        Option("--tiny", False, "tiny architecture on the CPU (smoke run)"),
    ]).parse_args()
    if not args.tiny and not torch.cuda.is_available():
        print("bench_generation needs a CUDA GPU for the Stable Diffusion 1.5 architecture; "
              "run with --tiny for a CPU smoke run of the script.")
        sys.exit(0)
    device = "cpu" if args.tiny else "cuda"
    config = TINY if args.tiny else SD15
    dtypes = ["float32"] if args.tiny else args.dtypes.split(",")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    name = "tiny CPU" if args.tiny else torch.cuda.get_device_name()
    print(f"{name}: {'tiny' if args.tiny else 'SD 1.5'} architecture, random weights, "
          f"{config['resolution']}x{config['resolution']}, {args.steps} steps, guidance 7.5\n")
    print("| dtype    | batch | images/s | s/image | peak GiB |")
    print("|----------|-------|----------|---------|----------|")
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # NaN casts from random fp16 weights
    base = build_pipeline(config, device)
    for dtype in dtypes:
        pipeline = base.to(device, DTYPE_BY_NAME[dtype])
        settings = BuildSettings(steps=args.steps, resolution=config["resolution"], dtype=dtype)
        for batch_size in batch_sizes:
            try:
                rate, peak = time_generation(pipeline, settings, batch_size, args.images)
            except torch.OutOfMemoryError:
                print(f"| {dtype:8s} | {batch_size:5d} | out of memory")
                torch.cuda.empty_cache()
                continue
            print(f"| {dtype:8s} | {batch_size:5d} | {rate:8.2f} | {1 / rate:7.3f} | {peak:8.2f} |")


if __name__ == "__main__":
    main()
