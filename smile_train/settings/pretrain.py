"""Trainer settings: one flat dataclass per command, defaults = the reference defaults of docs/method.md.

YAML configs in configs/ hold only differences. A pretraining config may list `stages`, each a
mapping of differences applied on top of the shared settings (stage 1: overlaid clips with
trajectory masks; stage 2: natural clips with tube masks, initialised from stage 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from smile_data.config import SettingsError, apply_overrides, did_you_mean, plain_name, read_yaml
from smile_train.data.sources import SourceSampling
from smile_train.settings.checks import check_settings
from smile_train.settings.run import RunSettings


@dataclass
class PretrainSettings(SourceSampling, RunSettings):
    """A stage's settings. The data sampling (temporal draw of video shards, crop, flip, overlays
    drawn in the loader) is SourceSampling's (sources.py) and the run's (output, start, seed,
    device, checkpoints) RunSettings', inherited: flat keys like the rest."""

    # --- data (shards written by `smile-data render` or `smile-data pack`) ---
    shards: str = ""  # paths, globs, brace patterns or URLs (pipe:, http), comma-separated
    clips_per_epoch: int = 0  # 0: the sample count in the shards' dataset.json cards
    input_size: int = 224
    frames: int = 16
    # Several sources in one stage: each entry holds what differs from the stage's sampling
    # settings, plus `shards` and `weight` (share of the clips); see smile_train/data/sources.py.
    sources: list[dict[str, Any]] = field(default_factory=list)
    shuffle_buffer: int = 1000
    num_workers: int = 4
    max_corrupt_samples: int = 100  # per loader worker; past it the run stops
    # Checks against each dataset's card (smile_data/shards/integrity.py): "sample" verifies
    # every sample before use, "shard" each shard's sha256 at its end, "off" nothing.
    integrity: str = "sample"
    on_integrity_mismatch: str = "stop"  # "stop" the run, or "skip" and count as corrupt
    card_sha256: str = ""  # pinned dataset.json sha256(s), comma-separated; "" trusts the card
    # --- masking (docs/method.md §5) ---
    mask: str = "trajectory"  # "trajectory" (stage 1) or "tube" (stage 2)
    mask_ratio: float = 0.8
    # Object token cells (masking.OBJECT_CELLS): "released" = per tube slice the enclosing box
    # of the two frames' unrotated boxes; "per_frame" = each frame's box; "rotated" = each
    # frame's rotated bounds (the shards store unrotated boxes and angles).
    object_cells: str = "released"
    traj_unmask_ratio: float = 0.1  # released code: the generator's 0.1 (scripts pass 0.2, unused)
    mask_repeats: int = 2  # multiple sampling: masks per loaded clip
    # "shuffled" (released engine): copies after the first take another clip's mask, a random
    # permutation of the micro-batch's masks; "own": every copy draws its own mask
    second_mask: str = "shuffled"
    # --- model and target (docs/method.md §6) ---
    model: str = "base"  # tiny | small | base
    target: str = "clip"  # "clip" (SMILE) or "pixel" (VideoMAE)
    teacher: str = "openai/clip-vit-base-patch16"  # folder or hub id, used when target == clip
    pixel_norm: bool = True  # pixel target: each tube normalised by its own mean and std (VideoMAE's default)
    drop_path: float = 0.0
    attention: str = "sdpa"  # "sdpa" or "explicit" (reference softmax attention)
    grad_checkpointing: bool = False
    compile: bool = False
    # --- optimisation (docs/method.md §6) ---
    epochs: int = 300  # effective epochs (clips x mask_repeats): K400 300 + 300, SSv2 400 + 400
    # The cosine's horizon in epochs of steps_per_epoch steps; 0: it ends where training stops.
    # Released scripts: 801, read at the "pass" pace, stopped at epochs 300 (lr_schedule.py).
    schedule_epochs: int = 0
    schedule_pace: str = "step"  # "step" or "pass" (released engine with multiple sampling)
    warmup_epochs: int = 40  # epochs of the schedule (of `epochs` when schedule_epochs is 0)
    # Batch sizes count masked samples (clips x mask_repeats), as the reference recipes do:
    # 256 = 128 loaded clips x 2 masks per optimiser step, all processes together.
    batch_size: int = 256
    micro_batch_size: int = 0  # samples per process per micro-step; 0: batch_size / world size
    base_lr: float = 1.5e-4  # per 256 samples
    min_lr: float = 1e-5  # per 256 samples, as base_lr
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    clip_grad: float = 0.0  # 0: no clipping
    max_steps: int = 0  # 0: epochs x steps per epoch; a smaller value stops early (smoke runs)
    out_dir: str = "runs/pretrain"  # this command's default; the other run fields: RunSettings


def split_stage_overrides(overrides: dict[str, Any], stage_names: list[str]) -> tuple[dict, dict]:
    """`--set key=v` applies to every stage, `--set stage.key=v` to one stage."""
    shared, per_stage = {}, {name: {} for name in stage_names}
    for key, value in overrides.items():
        stage, dot, rest = key.partition(".")
        if dot and stage in per_stage:
            per_stage[stage][rest] = value
        elif dot:
            raise SettingsError(f"--set {key}: no stage named {stage!r}{did_you_mean(stage, stage_names)}; "
                                f"stages: {', '.join(stage_names)}")
        else:
            shared[key] = value
    return shared, per_stage


def load_pretrain_stages(
    config: str | None, overrides: dict[str, Any], allow_commands: bool = False
) -> list[tuple[str, PretrainSettings]]:
    """The stages of a pretraining config as (name, settings); one unnamed stage if none listed.

    A stage name becomes a folder inside out_dir, so it must be a plain name.
    """
    data = read_yaml(config, allow_commands) if config else {}
    stages = data.pop("stages", None) or [{"name": "pretrain"}]
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        raise SettingsError(f"{config}: `stages` must be a list of mappings")
    names = [plain_name(s.get("name", f"stage{i + 1}"), f"{config}: stage name") for i, s in enumerate(stages)]
    if len(set(names)) != len(names):
        raise SettingsError(f"{config}: stage names must be unique, got {names}")
    shared_cli, stage_cli = split_stage_overrides(overrides, names)
    base = apply_overrides(PretrainSettings(), data, source=str(config))
    resolved = []
    for name, stage in zip(names, stages):
        stage = {k: v for k, v in stage.items() if k != "name"}
        settings = apply_overrides(base, stage, source=f"{config} stage {name}")
        settings = apply_overrides(settings, {**shared_cli, **stage_cli[name]}, source="--set")
        check_settings(settings, f"{config or 'settings'} stage {name}")
        resolved.append((name, settings))
    return resolved
