"""The finetuning loop, read top to bottom: settings, processes, data, model, --init-from weights,
layer-decay optimiser, resume, then the step body with its micro-loss, final multi-view test.

Shares the pretraining machinery: train_loop.py (the step body: seed, learning rate, gradient
accumulation, optimiser step, weight average, logs, checkpoints), runtime.py (processes,
autocast, scaler, AdamW), lr_schedule.py (the cosine), checkpoint.py (atomic step checkpoints,
weights-only loading) and data/loader.py (shard stream, seeding, resume skipping, corrupt-sample
limit).

Iteration: resampled shards like pretraining (each process and worker draws shards with
replacement); an epoch is `clips_per_epoch` clips (default: the shards' sample count, loader.epoch_clips), so
the schedule is counted in steps = epochs x clips_per_epoch / batch_size, and resuming is exact.
`batch_size` counts loaded clips, as the released scripts do (the lr scales with it); with
repeated augmentation each step trains on batch_size x repeated_augment augmented copies.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smile_data.config import inherited_values, load_settings
from smile_data.io import write_json_atomic
from smile_data.sampling import VideoSampling
from smile_train.data.augment import erase_boxes
from smile_train.data.augment_device import augment_batch
from smile_train.data.finetune_loader import build_finetune_loader, mix_batch, soft_cross_entropy
from smile_data.shards.sample_count import count_samples
from smile_train.data.loader import epoch_clips, expand_urls
from smile_train.interop import checkpoint as ckpt
from smile_train.interop.checkpoint_keys import pretrain_state_to_classifier
from smile_train.loop import plan
from smile_train.loop import runtime as rt
from smile_train.loop import train_loop as loop
from smile_train.loop.evaluate import evaluate_model
from smile_train.loop.lr_schedule import LrSchedule, per_batch, run_length, warmup_share
from smile_train.model.targets import normalize
from smile_train.model.vit import ClassifierModel, build_classifier
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import EvalSettings, FinetuneSettings, read_class_names

STAGE = "finetune"
SEED_BITS = 62  # the erasing noise generator's seed is drawn from the step's generator


def build_model(s: FinetuneSettings) -> ClassifierModel:
    return build_classifier(
        s.model, s.num_classes, drop_path=s.drop_path, head_drop=s.head_drop, img_size=s.input_size,
        frames=s.frames, attention_impl=s.attention, grad_checkpointing=s.grad_checkpointing,
        head_init_scale=s.head_init_scale,
    )


def classification_loss(model, batch: dict[str, torch.Tensor], s: FinetuneSettings,
                        rng: np.random.Generator, runtime: rt.Runtime) -> torch.Tensor:
    """Soft-target cross entropy of one micro-batch after random erasing, mixup / cutmix and
    label smoothing; the R augmented copies of each clip are samples of their own. With
    `augment_device: device` the batch holds decoded clips and their draws, augmented here."""
    if s.augment_device == "device":
        clips = augment_batch(batch, s.input_size, runtime.device)  # (B*R, T, S, S, 3) uint8
    else:
        clips = batch["video"].flatten(0, 1).to(runtime.device, non_blocking=True)
    videos = normalize(clips)  # (B*R, 3, T, S, S)
    labels = batch["label"].flatten().to(runtime.device)
    noise = torch.Generator(device=runtime.device).manual_seed(int(rng.integers(2**SEED_BITS)))
    videos = erase_boxes(videos, batch["erase"].flatten(0, 1), s.erase_mode, noise)
    videos, targets, _ = mix_batch(videos, labels, s, rng)
    with rt.autocast(runtime):
        logits = model(videos)  # (B, classes)
    return soft_cross_entropy(logits, targets)


def schedule(s: FinetuneSettings, clips_per_epoch: int) -> tuple[int, LrSchedule]:
    """(total steps, learning-rate schedule) of a run: the released finetuning scheduler
    (utils.cosine_scheduler), numpy.linspace(warmup_lr, peak, W) over the W warm-up steps, then
    the cosine from the peak to min_lr ending where training stops. warmup_lr, min_lr and the
    peak scale with the batch (per 256 clips). The released run starts the warm-up at 0
    (warmup_lr 0, the default): its --warmup_lr never reaches the scheduler."""
    steps_per_epoch, total_steps = run_length(clips_per_epoch, s.batch_size, s.epochs, s.max_steps)
    warmup_steps = min(warmup_share(total_steps, s.warmup_epochs, s.epochs), total_steps)
    return total_steps, LrSchedule(
        peak=per_batch(s.base_lr, s.batch_size), floor=per_batch(s.min_lr, s.batch_size),
        start=per_batch(s.warmup_lr, s.batch_size), warmup_steps=warmup_steps, horizon_steps=total_steps,
        steps_per_epoch=steps_per_epoch, steps_per_pass=steps_per_epoch,
    )


def build_optimisation(s: FinetuneSettings, runtime: rt.Runtime, peak_lr: float):
    """Model (with --init-from weights) and layer-decay AdamW; plus the init key report."""
    torch.manual_seed(s.seed)
    model = build_model(s).to(runtime.device)
    init_report = None
    if s.init_from:  # backbone tensors must all load; fc_norm and head when their shapes fit
        report = loop.load_initial_weights(model, s.init_from, runtime, pretrain_state_to_classifier)
        init_report = {"path": s.init_from, **report.record()}
    groups = rt.layer_decay_groups(model.named_parameters(), s.weight_decay, model.no_weight_decay(),
                                   model.layer_id, model.depth + 2, s.layer_decay)
    return model, rt.adamw(groups, peak_lr, s.betas, runtime.device, s.fused_adamw), init_report


def finetune(s: FinetuneSettings, runtime: rt.Runtime, resume: bool) -> Path:
    """Run finetuning to its end and return the final checkpoint's path; `s` as
    load_finetune_settings returns them."""
    out_dir = Path(s.out_dir)
    checkpoints, existing = loop.start_run(STAGE, out_dir, s, resume, runtime)
    if existing is None:  # finished before
        return checkpoints.final
    class_names = read_class_names(s.class_names, s.num_classes)
    urls = expand_urls(s.shards)
    if s.val_shards:  # tested after training: a list that cannot work is refused now
        expand_urls(s.val_shards, setting="val_shards")
    total_steps, lr_schedule = schedule(s, epoch_clips(s.clips_per_epoch, [(s.shards, urls)])[0])
    micro, accumulation = loop.micro_batch_plan(s.batch_size, s.micro_batch_size, runtime.world_size)

    model, optimizer, init_report = build_optimisation(s, runtime, lr_schedule.peak)
    run = loop.Run(STAGE, f"{STAGE}: {s.model}, {s.num_classes} classes", out_dir, s, runtime, checkpoints, model,
                   optimizer, loop.StepPlan(micro, accumulation, total_steps, lr_schedule),
                   ema_decay=s.model_ema_decay if s.model_ema else None,
                   extra_state={"class_names": class_names, "init": json.dumps(init_report) if init_report else ""})

    def micro_loss(model: torch.nn.Module, batch: dict, step: int, micro_step: int) -> torch.Tensor:
        # Mixing draws come from (seed, rank, step, micro-step): identical after a resume.
        rng = np.random.default_rng([s.seed, runtime.rank, step, micro_step])
        return classification_loss(model, batch, s, rng, runtime)

    return loop.run_steps(run, existing, partial(build_finetune_loader, s, urls), micro_loss)


def final_test(s: FinetuneSettings, final_path: Path, runtime: rt.Runtime) -> dict[str, Any] | None:
    """Multi-view test of the final weights on val_shards, written to <out_dir>/eval.json; with
    model_ema, the averaged weights are tested too (<out_dir>/eval_ema.json)."""
    if not s.val_shards:
        return None
    info = ckpt.read_checkpoint(final_path)
    model = ckpt.classifier_from_checkpoint(info).to(runtime.device)
    settings = EvalSettings(checkpoint=str(final_path), shards=s.val_shards, test_clips=s.test_clips,
                            test_crops=s.test_crops, num_workers=s.num_workers, device=s.device,
                            precision=s.precision, **inherited_values(s, VideoSampling))
    urls = expand_urls(s.val_shards, setting="val_shards")
    weights = {"eval.json": None}
    if s.model_ema:
        weights["eval_ema.json"] = ckpt.load_checkpoint(final_path)["model_ema"]
    reports = {}
    for name, state in weights.items():
        if state is not None:
            model.load_state_dict(state, strict=True)
        report = evaluate_model(model, urls, settings, runtime, s.num_classes, info.class_names)
        if runtime.is_main:
            write_json_atomic(Path(s.out_dir) / name, {**report, "checkpoint": str(final_path),
                                                       "weights": "model_ema" if state is not None else "model"})
            print(json.dumps({"weights": name, "top1": report["top1"], "top5": report["top5"],
                              "videos": report["videos"]}))
        reports[name] = report
    return reports["eval.json"]


def plan_finetune(config: str | None, overrides: dict[str, Any], init_from: str | None = None,
                  allow_commands: bool = False, world_size: int | None = None) -> str:
    """`smile-train finetune --dry-run`: the run's plan (plan.py), nothing trained."""
    s = load_finetune_settings(config, overrides, init_from, allow_commands)
    urls = expand_urls(s.shards)
    count = count_samples(urls)  # once: a folder of tars without cards is counted from headers
    clips_per_epoch, _ = epoch_clips(s.clips_per_epoch, [(s.shards, urls)], [count])
    total_steps, lr_schedule = schedule(s, clips_per_epoch)
    stage = plan.StagePlan(STAGE, total_steps, lr_schedule.steps_per_epoch,
                           [plan.model_line(s.model) + f"; {s.num_classes} classes, drop path {s.drop_path:g}"])
    stage.lines += [
        plan.data_line(s.shards, count, s),
        f"  augmentation: {augmentation_summary(s)}",
        f"test: {test_summary(s)}",
        f"epoch: {clips_per_epoch:,} clips = {lr_schedule.steps_per_epoch:,} steps; {s.epochs} epochs"
        f"{f', stopped at max_steps {s.max_steps:,}' if s.max_steps else ''} = {total_steps:,} steps",
        plan.batch_line(s.batch_size, s.micro_batch_size, plan.planned_world_size(world_size), 1, "clips"),
        *plan.lr_lines(lr_schedule, total_steps),
        f"  layer decay {s.layer_decay:g}, weight decay {s.weight_decay:g}",
        plan.checkpoint_line(Path(s.out_dir), s.save_every_steps, s.keep_checkpoints, s.init_from),
    ]
    return plan.format_plan(f"finetuning plan for {config or 'the default settings'}", [stage])


def augmentation_summary(s: FinetuneSettings) -> str:
    parts = [f"random resized crop {tuple(s.crop_scale)}"]
    if s.rand_augment:
        parts.insert(0, f"RandAugment n{s.rand_augment_ops} m{s.rand_augment_magnitude:g} before the crop")
    parts += [f"erasing {s.erase_prob:g}", f"mixup {s.mixup:g} / cutmix {s.cutmix:g}",
              f"label smoothing {s.label_smoothing:g}", f"repeated augmentation {s.repeated_augment}"]
    where = "the training device" if s.augment_device == "device" else "loader workers"
    return ", ".join(parts) + f"; RandAugment, crop and flip in {where} (augment_device: {s.augment_device})"


def test_summary(s: FinetuneSettings) -> str:
    if not s.val_shards:
        return "none (no val_shards)"
    count = count_samples(expand_urls(s.val_shards, setting="val_shards"))
    return (f"{s.val_shards} -> {plan.samples_text(count)}, {s.test_clips} clips x {s.test_crops} "
            f"crops per video, after the last step")


def load_finetune_settings(config: str | None, overrides: dict[str, Any], init_from: str | None = None,
                           allow_commands: bool = False) -> FinetuneSettings:
    """The run's settings from config + overrides, checked (the one place they are)."""
    s = check_settings(load_settings(FinetuneSettings, config, overrides, allow_commands), str(config or "settings"))
    if init_from:
        s.init_from = init_from
    if not s.shards:
        raise ValueError("finetune needs shards (--shards or `shards:` in the config)")
    return s


def run_finetune(config: str | None, overrides: dict[str, Any], resume: bool,
                 init_from: str | None = None, allow_commands: bool = False) -> Path:
    """`smile-train finetune`: settings from config + overrides, train, then test on val_shards."""
    s = load_finetune_settings(config, overrides, init_from, allow_commands)
    runtime = rt.setup(s.device, s.precision)
    with rt.process_group(runtime):
        final_path = finetune(s, runtime, resume)
        final_test(s, final_path, runtime)
    return final_path
