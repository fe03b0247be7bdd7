"""What every training run is told besides its data, model and optimiser: where it writes, what
it starts from, its seed, device and precision, and how often it logs and checkpoints.
Pretraining and finetuning settings inherit these fields."""

from __future__ import annotations

from dataclasses import dataclass


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
