"""What every training run is told besides its data, model and optimiser: where it writes, what
it starts from, its seed, device and precision, how often it logs and checkpoints, and where
the pixel work runs.
Pretraining and finetuning settings inherit these fields."""

from __future__ import annotations

from dataclasses import dataclass

AUGMENT_PLACEMENTS = ("loader", "device")  # where a run's pixel work runs (augment_device)


@dataclass
class RunSettings:
    out_dir: str = "runs/train"  # pretraining and finetuning each set their own default
    init_from: str = ""  # checkpoint whose model weights start this run (ours or an authors' file)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp16 | fp32
    fused_adamw: bool = True
    save_every_steps: int = 500
    keep_checkpoints: int = 3
    log_every_steps: int = 10
    # Where the pixel work runs (smile_train/data/augment_device.py). loader: in the loader
    # workers. device: workers decode and draw, and the training device does the pixel work
    # batched, with the same pixels: finetuning's RandAugment, crop and flip; pretraining's crop
    # and flip of clip samples (those with loader overlays, and videos, crop in the worker).
    augment_device: str = "loader"
