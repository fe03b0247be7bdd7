"""GPU check: SMILE pretraining step throughput, peak memory and MFU on one GPU.

ViT-B student with a full-size CLIP ViT-B/16 teacher (random weights: the cost does not depend on
them), synthetic clips already on the device (this measures the model step, not the loader).
Variants, side by side:
  smile            sdpa attention, bf16 autocast, fused AdamW
  smile+compile    the same under torch.compile
  reference-style  explicit softmax attention, fp16 autocast + GradScaler, unfused AdamW
Goal: smile >= 1.5x reference-style clips/s.
Then finetuning augmentation on the device (`augment_device: device`): `augment_batch` on a batch
of decoded K400-size clips (16 frames of 320 x 427, two frame sizes padded together) with the
released RandAugment draws: ms per batch and clips/s, next to the finetuning step it rides on.
And pretraining's crop on the device (`augment_device: device`, clip shards): `crop_flip_batch`
on a batch of clips with multi-scale crop boxes and flips.

    python benchmarks/gpu_check.py            # on a CUDA machine (make gpu-check)
    python benchmarks/gpu_check.py --smoke    # tiny shapes on the CPU, to check the script runs
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from command_line import Option, benchmark_parser  # this script's folder

from smile_train.data import masking
from smile_train.data.augment import draw_copies
from smile_data.sampling import multiscale_crop_box
from smile_train.data.augment_device import augment_batch, collate_padded, crop_flip_batch, pack_draws
from smile_train.loop import runtime as rt
from smile_train.loop.pretrain import masked_loss
from smile_train.model.teacher import FeatureTeacher
from smile_train.model.vit import build_pretrain_model, set_attention_impl
from smile_train.settings.finetune import FinetuneSettings
from smile_train.settings.pretrain import PretrainSettings

# Dense bf16/fp16 tensor-core peaks (FLOP/s), for MFU; the most specific name that matches wins.
PEAK_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H100": 989e12, "H200": 989e12, "A100": 312e12}


def make_teacher(device: torch.device, dtype: torch.dtype, image_size: int, tiny: bool) -> FeatureTeacher:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if tiny:
        config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=2, image_size=image_size, patch_size=16)
    else:  # CLIP ViT-B/16
        config = CLIPVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                  num_attention_heads=12, image_size=image_size, patch_size=16)
    return FeatureTeacher(CLIPVisionModel(config).to(device=device, dtype=dtype), dtype)


def step_flops(model: torch.nn.Module, teacher: FeatureTeacher, clips: int, repeats: int,
               tokens: int, visible: int, frames: int) -> float:
    """Matmul FLOPs of one step: student forward+backward (3x forward) + teacher forward."""
    encoder = sum(p.numel() for n, p in model.named_parameters() if n.startswith("encoder.blocks"))
    decoder = sum(p.numel() for n, p in model.named_parameters() if n.startswith("decoder."))
    width_e, width_d = model.encoder.patch_embed.proj.out_channels, model.mask_token.shape[-1]
    depth_e, depth_d = len(model.encoder.blocks), len(model.decoder.blocks)
    student = 2 * encoder * visible + 4 * depth_e * visible**2 * width_e
    student += 2 * decoder * tokens + 4 * depth_d * tokens**2 * width_d
    t_params = sum(p.numel() for p in teacher.model.parameters())
    t_tokens = tokens // (frames // 2) + 1
    t_width, t_depth = teacher.out_dim, teacher.model.config.num_hidden_layers
    teacher_flops = (frames // 2) * (2 * t_params * t_tokens + 4 * t_depth * t_tokens**2 * t_width)
    return clips * repeats * 3 * student + clips * teacher_flops


def seconds_per_step(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Wall seconds per call of `step`, over `steps` calls and the device work they queued."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()  # CUDA runs asynchronously: wait for the queued work
    return (time.perf_counter() - start) / max(steps, 1)


def run_variant(name: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    reference = name == "reference-style"
    precision = "fp16" if reference else ("bf16" if device.type == "cuda" else "fp32")
    runtime = rt.Runtime(0, 1, 0, device, rt.resolve_precision(precision, device.type == "cuda"))
    teacher_dtype = torch.float16 if reference else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    teacher = make_teacher(device, teacher_dtype, args.size, args.smoke)
    model = build_pretrain_model(args.model, "clip", target_dim=teacher.out_dim, img_size=args.size,
                                 frames=args.frames).to(device)
    set_attention_impl(model, "explicit" if reference else "sdpa")
    groups = rt.weight_decay_groups(model.named_parameters(), 0.05, set(model.no_weight_decay()))
    optimizer = rt.adamw(groups, 1e-4, (0.9, 0.95), device, fused=not reference)
    scaler = rt.grad_scaler(runtime)
    step_model = torch.compile(model) if name.endswith("compile") else model
    rng = np.random.default_rng(0)
    grid = model.grid
    masks = torch.from_numpy(np.stack([[masking.tube_mask(rng, grid) for _ in range(2)]
                                       for _ in range(args.batch)])).to(device)
    videos = torch.randint(0, 256, (args.batch, args.frames, args.size, args.size, 3),
                           dtype=torch.uint8, device=device)

    def one_step() -> None:
        loss = masked_loss(step_model, teacher, videos, masks, runtime)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    seconds_per_step(one_step, args.warmup, device)  # warm-up, not kept
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = seconds_per_step(one_step, args.steps, device)
    tokens = int(np.prod(grid))
    visible = tokens - int(masks[0, 0].sum())
    flops = step_flops(model, teacher, args.batch, 2, tokens, visible, args.frames)
    card = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in sorted(PEAK_FLOPS.items(), key=lambda kv: -len(kv[0])) if k in card), float("nan"))
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    del model, teacher, optimizer
    return {"variant": name, "clips/s": args.batch / seconds, "step ms": seconds * 1e3,
            "peak GiB": memory, "MFU %": 100 * flops / seconds / peak}


AUGMENT_FRAME_SIZES = ((320, 427), (320, 569))  # K400-like 4:3 and 16:9 frames at a 320-px short side


def augment_row(args, device: torch.device) -> dict:
    """Device-side finetuning augmentation of one batch: ms per batch and clips/s."""
    settings = FinetuneSettings(input_size=args.size, frames=args.frames)
    rng = np.random.default_rng(0)
    sizes = [(max(args.size, h * args.size // 224), max(args.size, w * args.size // 224))
             for h, w in AUGMENT_FRAME_SIZES]
    samples = []
    for i in range(args.batch):
        height, width = sizes[i % len(sizes)]
        frames = torch.from_numpy(rng.integers(0, 256, (args.frames, height, width, 3), dtype=np.uint8))
        copies = draw_copies(np.random.default_rng(i), settings, height, width)
        samples.append({"video": frames, "frame_size": torch.tensor([height, width]),
                        **pack_draws(copies, settings.rand_augment_ops)})
    return batch_row(collate_padded(samples), augment_batch, args, device)


def crop_row(args, device: torch.device) -> dict:
    """Pretraining's device crop of one batch of clip-shard clips: ms per batch and clips/s."""
    s = PretrainSettings(input_size=args.size, frames=args.frames)
    rng = np.random.default_rng(0)
    boxes = [multiscale_crop_box(rng, args.size, args.size, args.size, tuple(s.crop_scales), s.crop_max_distort,
                                 s.crop_offsets) for _ in range(args.batch)]
    batch = {"video": torch.from_numpy(rng.integers(0, 256, (args.batch, args.frames, args.size, args.size, 3),
                                                    dtype=np.uint8)),
             "crop": torch.tensor(boxes, dtype=torch.int64), "flip": torch.from_numpy(rng.random(args.batch) < 0.5)}
    return batch_row(batch, crop_flip_batch, args, device)


def batch_row(batch: dict, pixel_work: Callable[[dict, int, torch.device], torch.Tensor], args,
              device: torch.device) -> dict:
    """ms per batch and clips/s of `pixel_work(batch, size, device)`, the frames pinned on CUDA
    so the host-to-device copy is timed as a loader would deliver it."""
    if device.type == "cuda":
        batch["video"] = batch["video"].pin_memory()
    seconds_per_step(lambda: pixel_work(batch, args.size, device), args.warmup, device)  # warm-up, not kept
    seconds = seconds_per_step(lambda: pixel_work(batch, args.size, device), args.steps, device)
    return {"batch ms": seconds * 1e3, "clips/s": args.batch / seconds}


def main() -> None:
    args = benchmark_parser(__doc__, [
        Option("--batch", 32, "clips per step (x2 masks)"),
        Option("--steps", 20),
        Option("--warmup", 5),
        Option("--model", "base"),
        Option("--size", 224),
        Option("--frames", 16),
        Option("--smoke", False, "tiny shapes on the CPU"),
        Option("--variants", "reference-style,smile,smile+compile"),
    ]).parse_args()
    if args.smoke:
        args.batch, args.steps, args.warmup, args.model, args.size, args.frames = 2, 2, 1, "tiny", 32, 4
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu" and not args.smoke:
        print("gpu_check: no CUDA device here; run it on a GPU machine (or pass --smoke).")
        return
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}, "
          f"model {args.model}, batch {args.batch} clips x 2 masks, {args.frames}x{args.size}^2")
    rows = [run_variant(name, args, device) for name in args.variants.split(",")]
    print(f"{'variant':<18}{'clips/s':>10}{'step ms':>10}{'peak GiB':>10}{'MFU %':>8}{'vs ref':>8}")
    base = rows[0]["clips/s"]
    for row in rows:
        print(f"{row['variant']:<18}{row['clips/s']:>10.1f}{row['step ms']:>10.1f}"
              f"{row['peak GiB']:>10.2f}{row['MFU %']:>8.1f}{row['clips/s'] / base:>7.2f}x")
    augment = augment_row(args, device)
    print(f"\nfinetuning augmentation on the device (RandAugment m7-n4, crop, flip; raw frames "
          f"{AUGMENT_FRAME_SIZES} padded): {augment['batch ms']:.1f} ms per batch of {args.batch}, "
          f"{augment['clips/s']:.0f} clips/s (includes the host-to-device copy of the frames)")
    crop = crop_row(args, device)
    print(f"pretraining crop on the device (multi-scale crop, flip; clip-shard frames {args.size}^2): "
          f"{crop['batch ms']:.1f} ms per batch of {args.batch}, {crop['clips/s']:.0f} clips/s (with the copy)")


if __name__ == "__main__":
    main()
