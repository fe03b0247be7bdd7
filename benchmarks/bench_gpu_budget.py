"""How many loader cores a GPU needs: clips/s per core a GPU consumes, next to clips/s per core
measured here.

Needed: the matmul FLOPs of one loaded clip, from the model sizes in smile_train/model/vit.py and the
reference geometry (16 frames of 224 px: 8 x 14 x 14 tokens), training = forward + backward =
3 x forward; per transformer block on n tokens of width d, 24 n d^2 (qkv, projection, MLP) +
4 n^2 d (attention scores and values):

    pretraining (SMILE)  2 masked samples per loaded clip (mask_repeats), each: patch embedding
                         of all tokens, the encoder on the visible 20 %, the decoder on all
                         tokens, the head on the masked ones; plus the teacher's forward pass
                         on every second frame (CLIP ViT-B/16: a ViT-B on 197 tokens a frame)
    finetuning           the encoder on all tokens and the classifier head

A GPU at UTILISATION of its dense bf16 peak then consumes peak x UTILISATION / FLOPs clips/s;
spread over CORES_PER_GPU loader cores that is the clips/s each core must give.
Measured (process CPU time of this one pinned process, every clip a new decode):
    clip shards      the pretraining worker on pre-rendered JPEG clips (trajectory mask,
                     multi-scale crop, flip, 2 masks; bench_loader.py's input), with the crop
                     and flip in the worker, and the worker's share with them on the device
    finetuning       FinetuneClips over `pack --store video` shards of K400-like videos, packed
                     at the packing default's short side (256 px), with the augmentation on the
                     loader, and the worker's share with it on the device (bench_augment.py's
                     input; its --short-side 320 gives the dataset guides' shards)
The video-shard pretraining worker is measured by bench_video_loader.py; its figure can be
given with --video-pretrain CLIPS_PER_S to appear in the table.

    python benchmarks/bench_gpu_budget.py [--clips 48] [--video-pretrain 63.5]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_augment import pack_k400_like  # noqa: E402
from bench_loader import pretrain_stream  # noqa: E402
from bench_reader import write_shards  # noqa: E402
from command_line import Option  # noqa: E402
from one_core import load_figures, start_on_one_core  # noqa: E402

from smile_train.data.masking import tokens_to_mask  # noqa: E402
from smile_train.model.geometry import DEFAULT_GRID, FRAMES, IMG_SIZE, PATCH, TUBELET  # noqa: E402
from smile_train.model.vit import SIZES, ViTSize  # noqa: E402

GPUS = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak, FLOP/s (SXM)
UTILISATION = 0.4  # share of the peak a well-fed training run reaches
CORES_PER_GPU = 14  # GPU nodes come with 12-16 cores per GPU
MASK_RATIO = 0.8  # the reference mask ratio
MASKS_PER_CLIP = 2  # mask_repeats: masked samples per loaded clip
TRAINING_PASSES = 3  # forward + backward
TEACHER = SIZES["base"]  # CLIP ViT-B/16: the ViT-B geometry on single frames
CLS_TOKENS = 1
TEACHER_TARGET_WIDTH = TEACHER.width  # the head predicts the teacher's features
PATCH_INPUTS = 3 * TUBELET * PATCH * PATCH  # a student token's pixels


def blocks_flops(depth: int, width: int, tokens: int) -> float:
    return depth * (24 * tokens * width**2 + 4 * tokens**2 * width)


def pretraining_flops(size: ViTSize) -> float:
    """One loaded clip of SMILE pretraining: two masked samples trained, the teacher's pass."""
    tokens = DEFAULT_GRID[0] * DEFAULT_GRID[1] * DEFAULT_GRID[2]
    masked = tokens_to_mask(DEFAULT_GRID, MASK_RATIO)
    visible = tokens - masked
    student = (2 * PATCH_INPUTS * size.width * tokens + blocks_flops(size.depth, size.width, visible)
               + 2 * size.width * size.decoder_width * visible
               + blocks_flops(size.decoder_depth, size.decoder_width, tokens)
               + 2 * size.decoder_width * TEACHER_TARGET_WIDTH * masked)
    frame_tokens = DEFAULT_GRID[1] * DEFAULT_GRID[2]
    teacher_frame = 2 * 3 * PATCH * PATCH * TEACHER.width * frame_tokens + blocks_flops(
        TEACHER.depth, TEACHER.width, frame_tokens + CLS_TOKENS)
    return MASKS_PER_CLIP * TRAINING_PASSES * student + FRAMES // TUBELET * teacher_frame


def finetuning_flops(size: ViTSize, classes: int = 400) -> float:
    tokens = DEFAULT_GRID[0] * DEFAULT_GRID[1] * DEFAULT_GRID[2]
    forward = 2 * PATCH_INPUTS * size.width * tokens + blocks_flops(size.depth, size.width, tokens)
    return TRAINING_PASSES * (forward + 2 * size.width * classes)


def per_core(clips: int, stream) -> float:
    """Clips per CPU second of this process over `clips` new clips of `stream`."""
    next(stream)  # opens a shard, fills buffers
    start = time.process_time()
    for _ in islice(stream, clips):
        pass
    return clips / (time.process_time() - start)


def measure(clips: int) -> dict[str, float]:
    from smile_train.data.finetune_loader import FinetuneClips
    from smile_train.data.loader import expand_urls
    from smile_train.settings.finetune import FinetuneSettings

    with tempfile.TemporaryDirectory() as folder:
        urls = write_shards(Path(folder) / "clips", clips + 64, frames=FRAMES, size=IMG_SIZE, codec="jpg")
        measured = {"clip shards": per_core(clips, pretrain_stream(urls, "trajectory", "multiscale")),
                    "clip shards, crop on the device": per_core(clips, pretrain_stream(urls, "trajectory",
                                                                                       "multiscale", "device"))}
        shards = pack_k400_like(Path(folder) / "videos")
        base = FinetuneSettings(shards=shards, num_classes=len(os.listdir(Path(folder) / "videos" / "sources")),
                                num_workers=0, shuffle_buffer=8)
        video_urls = expand_urls(base.shards)
        measured["finetuning, augmentation on the loader"] = per_core(clips, iter(FinetuneClips(video_urls, base)))
        device = replace(base, augment_device="device")
        measured["finetuning, augmentation on the device"] = per_core(clips, iter(FinetuneClips(video_urls, device)))
    return measured


def main() -> None:
    args, pinned = start_on_one_core(__doc__, [
        Option("--clips", 48, "clips timed per measured loader"),
        Option("--video-pretrain", 0.0,
               "clips/s per core of the video-shard pretraining worker (bench_video_loader.py)"),
    ])
    load_before = load_figures()
    measured = measure(args.clips)
    if args.video_pretrain:
        measured["video shards (given)"] = args.video_pretrain
    runs = {"pretraining": ("clip shards", "clip shards, crop on the device", "video shards (given)"),
            "finetuning": ("finetuning, augmentation on the loader", "finetuning, augmentation on the device")}
    print(f"GPU budget: {UTILISATION:.0%} of the dense bf16 peak, {CORES_PER_GPU} loader cores per GPU; "
          f"measured on one core ({pinned}), process CPU time; load average {load_before} -> "
          f"{load_figures()}")
    print("| run | model | GPU | TFLOP per clip | clips/s per GPU | needed per core | loader | "
          "measured per core | cores per GPU |")
    print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for run, loaders in runs.items():
        for model in ("small", "base"):
            flops = (pretraining_flops if run == "pretraining" else finetuning_flops)(SIZES[model])
            for gpu, peak in GPUS.items():
                per_gpu = peak * UTILISATION / flops
                for loader in loaders:
                    if loader not in measured:
                        continue
                    rate = measured[loader]
                    print(f"| {run} | ViT-{model[0].upper()} | {gpu} | {flops / 1e12:.2f} | {per_gpu:.0f} | "
                          f"{per_gpu / CORES_PER_GPU:.1f} | {loader} | {rate:.1f} | {per_gpu / rate:.1f} |")


if __name__ == "__main__":
    main()
