"""The SMILE pretraining loop, read top to bottom: settings, processes, teacher, data, model,
optimiser, resume, then the step body (train_loop.run_steps) with its micro-loss, masked_loss.

One stage = one run of this loop. `run_pretrain` runs the stages of a config in order: stage 1
on overlaid clips with trajectory masks, stage 2 on natural clips with tube masks, initialised
from stage 1's final weights (docs/method.md §6, progressive pretraining).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from smile_data.shards.sample_count import count_samples
from smile_train.data.augment_device import collate_padded, crop_flip_batch
from smile_train.data.loader import build_loader, epoch_clips, epoch_summary, resolve_sources, stage_epoch_clips
from smile_train.data.masking import tokens_to_mask
from smile_train.interop import checkpoint as ckpt
from smile_train.interop.checkpoint_keys import pretrain_state_to_pretrain
from smile_train.loop import plan
from smile_train.loop import runtime as rt
from smile_train.loop import train_loop as loop
from smile_train.loop.lr_schedule import LrSchedule, per_batch, run_length, warmup_share
from smile_train.model.geometry import token_grid
from smile_train.model.targets import normalize, pixel_targets
from smile_train.model.teacher import FeatureTeacher
from smile_train.model.vit import build_pretrain_model, mask_order, masked_count, take_tokens
from smile_train.settings.pretrain import PretrainSettings, load_pretrain_stages


def schedule(s: PretrainSettings, clips_per_epoch: int) -> tuple[int, LrSchedule]:
    """(total steps, learning-rate schedule) of a stage.

    Epochs are effective epochs (docs/method.md §5): a clip seen with R masks counts R times, so an epoch
    of clips_per_epoch masked samples takes clips_per_epoch / batch_size steps. Training stops
    after `epochs` (or `max_steps`); the cosine spans `schedule_epochs` (lr_schedule.py), or,
    when that is 0, ends where training stops with warm-up taking its share of the steps.
    Learning rates are given per 256 samples (lr = base_lr x batch / 256, min_lr likewise).
    """
    steps_per_epoch, total_steps = run_length(clips_per_epoch, s.batch_size, s.epochs, s.max_steps)
    if s.schedule_epochs:
        warmup_steps, horizon_steps = s.warmup_epochs * steps_per_epoch, s.schedule_epochs * steps_per_epoch
    else:
        warmup_steps, horizon_steps = warmup_share(total_steps, s.warmup_epochs, s.epochs), total_steps
    return total_steps, LrSchedule(
        peak=per_batch(s.base_lr, s.batch_size), floor=per_batch(s.min_lr, s.batch_size), warmup_steps=warmup_steps,
        horizon_steps=horizon_steps, steps_per_epoch=steps_per_epoch,
        steps_per_pass=steps_per_epoch * s.mask_repeats, pace=s.schedule_pace,
    )


def second_masks(masks: torch.Tensor, repeats: int, mode: str) -> torch.Tensor:
    """(B, R, N) masks of the R copies of each clip (multiple sampling) from the loader's.

    "own": the loader drew R masks per clip; they are used as they are. "shuffled" (the released
    engine): copy 1 keeps the clip's own mask, every further copy takes the first mask of another
    clip of the micro-batch, by a random permutation drawn from torch's generator (seeded per
    step by rt.seed_step, so a resumed run draws the same permutations).
    """
    if mode == "own":
        return masks
    first = masks[:, 0]  # (B, N)
    copies = [first] + [first[torch.randperm(first.shape[0])] for _ in range(repeats - 1)]
    return torch.stack(copies, dim=1)  # (B, R, N)


def masked_loss(model, teacher, videos_uint8, masks, runtime: rt.Runtime, pixel_norm: bool = True) -> torch.Tensor:
    """MSE between predictions and targets of the masked tokens (docs/method.md §6).

    videos_uint8: (B, T, H, W, 3); masks: (B, R, N) bool, R masks per clip (multiple sampling).
    Targets are computed once per clip and shared by its R masked copies.
    """
    clips, repeats, tokens = masks.shape
    num_masked = masked_count(masks.reshape(clips * repeats, tokens))  # checked on the host
    videos = normalize(videos_uint8.to(runtime.device, non_blocking=True))  # (B, 3, T, H, W)
    with torch.no_grad():
        targets = teacher(videos) if teacher is not None else pixel_targets(videos, per_tube=pixel_norm)  # (B, N, D)
    videos = videos.repeat_interleave(repeats, dim=0)  # (B*R, 3, T, H, W)
    targets = targets.repeat_interleave(repeats, dim=0)
    mask = masks.to(runtime.device, non_blocking=True).reshape(clips * repeats, tokens)  # (B*R, N)
    with rt.autocast(runtime):
        predictions = model(videos, mask, num_masked)  # (B*R, M, D)
    expected = take_tokens(targets, mask_order(mask, num_masked)[1])  # (B*R, M, D)
    return F.mse_loss(predictions.float(), expected.float())


def pretrain_stage(name: str, s: PretrainSettings, runtime: rt.Runtime, out_dir: Path, resume: bool) -> Path:
    """Run one stage to its end and return the path of its final checkpoint."""
    checkpoints, existing = loop.start_run(name, out_dir, s, resume, runtime)
    if existing is None:  # finished before
        return checkpoints.final

    # A teacher that cannot be loaded is an error before any data is read.
    teacher = FeatureTeacher.from_pretrained(s.teacher, runtime.device, runtime.dtype) if s.target == "clip" else None
    sources = resolve_sources(s)
    clips_per_epoch, counted_from = stage_epoch_clips(s, sources)
    micro, accumulation = loop.micro_batch_plan(s.batch_size, s.micro_batch_size, runtime.world_size, s.mask_repeats)
    total_steps, lr_schedule = schedule(s, clips_per_epoch)
    if runtime.is_main:
        print(f"[{name}] {epoch_summary(s, clips_per_epoch, total_steps, counted_from)}")

    torch.manual_seed(s.seed)  # the same initial weights on every rank
    model = build_pretrain_model(
        s.model, s.target, target_dim=teacher.out_dim if teacher else None, img_size=s.input_size,
        frames=s.frames, drop_path=s.drop_path, attention_impl=s.attention,
        grad_checkpointing=s.grad_checkpointing,
    ).to(runtime.device)
    if s.init_from:  # stage 2 from stage 1: every encoder tensor must load
        loop.load_initial_weights(model, s.init_from, runtime, pretrain_state_to_pretrain)
    groups = rt.weight_decay_groups(model.named_parameters(), s.weight_decay, set(model.no_weight_decay()))
    optimizer = rt.adamw(groups, lr_schedule.peak, s.betas, runtime.device, s.fused_adamw)
    run = loop.Run(name, f"{name}: {s.model} / {s.target} target", out_dir, s, runtime, checkpoints, model,
                   optimizer, loop.StepPlan(micro, accumulation, total_steps, lr_schedule))

    crop_on_device = s.augment_device == "device"  # the batch holds whole frames, crop boxes and flips

    def micro_loss(model: torch.nn.Module, batch: dict, step: int, micro_step: int) -> torch.Tensor:
        masks = second_masks(batch["masks"], s.mask_repeats, s.second_mask)
        videos = crop_flip_batch(batch, s.input_size, runtime.device) if crop_on_device else batch["video"]
        return masked_loss(model, teacher, videos, masks, runtime, s.pixel_norm)

    collate = collate_padded if crop_on_device else None
    return loop.run_steps(run, existing, partial(build_loader, s, sources, collate=collate), micro_loss)


def stage_runs(stages: list[tuple[str, PretrainSettings]],
               init_from: str | None = None) -> list[tuple[str, PretrainSettings, Path]]:
    """The stages of a config (load_pretrain_stages) as (name, settings, run folder), in order:
    `init_from` starts the first stage from another run's weights, and stage k > 1 starts from
    stage k-1's final weights unless it names its own `init_from`."""
    runs, previous_final = [], None
    for name, settings in stages:
        out_dir = Path(settings.out_dir) / name if len(stages) > 1 else Path(settings.out_dir)
        if previous_final is None and init_from:
            settings.init_from = init_from
        elif previous_final is not None and not settings.init_from:
            settings.init_from = str(previous_final)
        runs.append((name, settings, out_dir))
        previous_final = out_dir / "checkpoints" / ckpt.FINAL_NAME
    return runs


def run_pretrain(config: str | None, overrides: dict, resume: bool, init_from: str | None = None,
                 allow_commands: bool = False) -> list[Path]:
    """Run every stage of a config in order (run_stages); `allow_commands` lets the config's
    shard URLs run `pipe:` commands."""
    return run_stages(load_pretrain_stages(config, overrides, allow_commands), resume, init_from)


def run_stages(stages: list[tuple[str, PretrainSettings]], resume: bool,
               init_from: str | None = None) -> list[Path]:
    """Run the loaded stages of a config in order (stage_runs)."""
    runs = stage_runs(stages, init_from)
    runtime = rt.setup(runs[0][1].device, runs[0][1].precision)
    finals: list[Path] = []
    with rt.process_group(runtime):
        for name, settings, out_dir in runs:
            finals.append(pretrain_stage(name, settings, runtime, out_dir, resume))
            if runtime.is_main:
                print(json.dumps({"stage": name, "checkpoint": str(finals[-1]),
                                  "metrics": str(out_dir / "metrics.jsonl"),
                                  "loss_curve": str(out_dir / "loss_curve.png")}))
    return finals


def stage_plan(name: str, s: PretrainSettings, out_dir: Path, world_size: int) -> plan.StagePlan:
    """What pretrain_stage will do, resolved as it resolves it (plan.py)."""
    sources = resolve_sources(s)
    counts = [count_samples(source.urls) for source in sources]  # once: tar headers may be read
    clips_per_epoch, counted_from = epoch_clips(
        s.clips_per_epoch, [(source.settings.shards, source.urls) for source in sources], counts)
    total_steps, lr_schedule = schedule(s, clips_per_epoch)
    steps_per_epoch = lr_schedule.steps_per_epoch
    target = s.target if s.target == "clip" else f"pixel ({'each tube normalised' if s.pixel_norm else 'raw values'})"
    stage = plan.StagePlan(name, total_steps, steps_per_epoch, [plan.model_line(s.model, target, s.teacher)])
    for source, count in zip(sources, counts):
        weight = source.settings.weight if len(sources) > 1 else None
        stage.lines.append(plan.data_line(source.settings.shards, count, source.settings, weight))
        if source.settings.overlay == "objects":
            stage.lines.append(plan.bank_line(source.settings.bank))
    if s.augment_device == "device":
        stage.lines.append("crop and flip of clip samples without loader overlays: on the training device "
                           "(augment_device: device)")
    passes = f" (a pass over the sources is {s.mask_repeats} epochs: {s.mask_repeats} masks per clip)" \
        if s.mask_repeats > 1 else ""
    stop = f", stopped at max_steps {s.max_steps:,}" if s.max_steps else ""
    stage.lines += [
        f"epoch: {clips_per_epoch:,} samples ({counted_from}) = {steps_per_epoch:,} steps{passes}; "
        f"{s.epochs} epochs{stop} = {total_steps:,} steps",
        plan.batch_line(s.batch_size, s.micro_batch_size, world_size, s.mask_repeats, "masked samples"),
        *plan.lr_lines(lr_schedule, total_steps),
        mask_line(s),
        plan.checkpoint_line(out_dir, s.save_every_steps, s.keep_checkpoints, s.init_from),
    ]
    return stage


def mask_line(s: PretrainSettings) -> str:
    frames, height, width = token_grid(s.frames, s.input_size)
    text = (f"masks: {s.mask}, {tokens_to_mask((frames, height, width), s.mask_ratio):,} of "
            f"{frames * height * width:,} tokens masked; {s.mask_repeats} per clip")
    if s.mask_repeats > 1:
        text += f" (second mask: {s.second_mask})"
    if s.mask == "trajectory":
        text += f"; object cells {s.object_cells}, {s.traj_unmask_ratio:g} of trajectory tokens visible"
    return text


def plan_pretrain(config: str | None, overrides: dict, init_from: str | None = None,
                  allow_commands: bool = False, world_size: int | None = None) -> str:
    """`smile-train pretrain --dry-run`: every stage's plan, nothing trained."""
    return plan_stages(config, load_pretrain_stages(config, overrides, allow_commands), init_from, world_size)


def plan_stages(config: str | None, stages: list[tuple[str, PretrainSettings]],
                init_from: str | None = None, world_size: int | None = None) -> str:
    """plan_pretrain of the loaded stages of `config`."""
    processes = plan.planned_world_size(world_size)
    plans = [stage_plan(name, settings, out_dir, processes)
             for name, settings, out_dir in stage_runs(stages, init_from)]
    return plan.format_plan(f"pretraining plan for {config or 'the default settings'}", plans)
