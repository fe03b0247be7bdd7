"""The finetuning loop, read top to bottom: settings, processes, data, model, --init weights,
layer-decay optimiser, resume, compile, wrap, loop, checkpoints, final multi-view test.

Shares the pretraining machinery: runtime.py (processes, autocast, scaler, AdamW, cosine
schedule, logs), checkpoint.py (atomic step checkpoints, weights-only loading), data.py (shard
stream, seeding, resume skipping, corrupt-sample limit) and pretrain.micro_batch_plan.

Iteration: resampled shards like pretraining (each process and worker draws shards with
replacement); an epoch is `clips_per_epoch` clips (default: the shards' dataset.json count), so
the schedule is counted in steps = epochs x clips_per_epoch / batch_size, and resuming is exact.
`batch_size` counts loaded clips, as the released scripts do (the lr scales with it); with
repeated augmentation each step trains on batch_size x repeated_augment augmented copies.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from smile_data.config import load_settings, settings_to_dict
from smile_data.io import write_json_atomic
from smile_data.progress_bar import progress_bar
from smile_train import checkpoint as ckpt
from smile_train import runtime as rt
from smile_train.augment import erase_boxes
from smile_train.checkpoint_keys import pretrain_state_to_classifier
from smile_train.data import count_samples, expand_urls
from smile_train.evaluate import evaluate_model
from smile_train.finetune_data import build_finetune_loader, mix_batch, soft_cross_entropy
from smile_train.finetune_settings import EvalSettings, FinetuneSettings, check_finetune_settings, read_class_names
from smile_train.model import ClassifierModel, build_classifier
from smile_train.pretrain import PROGRESS_SECONDS, micro_batch_plan, verify_ranks_agree
from smile_train.settings import IMAGENET_BATCH_REFERENCE
from smile_train.settings_check import check_settings
from smile_train.targets import normalize

STAGE = "finetune"
SEED_BITS = 62  # the erasing noise generator's seed is drawn from the step's generator


def build_model(s: FinetuneSettings) -> ClassifierModel:
    return build_classifier(
        s.model, s.num_classes, drop_path=s.drop_path, head_drop=s.head_drop, img_size=s.input_size,
        frames=s.frames, attention_impl=s.attention, grad_checkpointing=s.grad_checkpointing,
        head_init_scale=s.head_init_scale,
    )


def load_init_weights(model: ClassifierModel, path: str, runtime: rt.Runtime) -> dict[str, Any]:
    """--init: this project's pretraining / finetuning checkpoints or the authors' files.

    Backbone tensors must all be present (else ValueError naming them); fc_norm and the head are
    taken when their shapes fit and left fresh otherwise. Returns the key report as a dict.
    """
    state = ckpt.load_checkpoint(path)
    try:
        merged, report = pretrain_state_to_classifier(state, model)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    model.load_state_dict(merged, strict=True)
    if runtime.is_main:
        print(f"init from {path}: {report.summary()}")
    return {"path": path, "layout": report.layout, "loaded": len(report.kept),
            "dropped": report.dropped, "fresh": report.fresh}


def classification_loss(model, batch: dict[str, torch.Tensor], s: FinetuneSettings,
                        rng: np.random.Generator, runtime: rt.Runtime) -> torch.Tensor:
    """Soft-target cross entropy of one micro-batch after random erasing, mixup / cutmix and
    label smoothing; the R augmented copies of each clip are samples of their own."""
    videos = normalize(batch["video"].flatten(0, 1).to(runtime.device, non_blocking=True))  # (B*R, 3, T, S, S)
    labels = batch["label"].flatten().to(runtime.device)
    noise = torch.Generator(device=runtime.device).manual_seed(int(rng.integers(2**SEED_BITS)))
    videos = erase_boxes(videos, batch["erase"].flatten(0, 1), s.erase_mode, noise)
    videos, targets, _ = mix_batch(videos, labels, s, rng)
    with rt.autocast(runtime):
        logits = model(videos)  # (B, classes)
    return soft_cross_entropy(logits, targets)


def schedule(s: FinetuneSettings, urls: list[str]) -> tuple[int, int, float]:
    """(total steps, warm-up steps, peak lr) of a run."""
    clips_per_epoch = s.clips_per_epoch or count_samples(urls)
    if clips_per_epoch < 1:
        raise ValueError(f"shards {s.shards!r}: no dataset.json gives their size; set clips_per_epoch")
    steps_per_epoch = max(1, clips_per_epoch // s.batch_size)
    total = s.max_steps or s.epochs * steps_per_epoch
    warmup = round(total * s.warmup_epochs / s.epochs) if s.epochs else 0
    return total, min(warmup, total), s.base_lr * s.batch_size / IMAGENET_BATCH_REFERENCE


def lr_floor(s: FinetuneSettings) -> float:
    """The cosine's floor: min_lr is per 256 clips, like base_lr (the released scripts scale both)."""
    return s.min_lr * s.batch_size / IMAGENET_BATCH_REFERENCE


def finetune_lr(step: int, total: int, warmup: int, peak: float, s: FinetuneSettings) -> float:
    """The released finetuning schedule (utils.cosine_scheduler) at optimiser step `step`:
    numpy.linspace(warmup_lr, peak, warmup) over the warm-up steps, then
    floor + (peak - floor) x (1 + cos(pi x i / (total - warmup))) / 2 for the i-th step after it;
    warmup_lr and the floor (min_lr) scale with the batch like base_lr. The released run starts
    the warm-up at 0 (warmup_lr 0, the default): its --warmup_lr never reaches the scheduler."""
    start = s.warmup_lr * s.batch_size / IMAGENET_BATCH_REFERENCE
    if step < warmup:
        return start + (peak - start) * step / max(warmup - 1, 1)
    progress = (step - warmup) / max(total - warmup, 1)
    floor = lr_floor(s)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_optimisation(s: FinetuneSettings, runtime: rt.Runtime, peak_lr: float):
    """Model (with --init weights), layer-decay AdamW and scaler; plus the init key report."""
    torch.manual_seed(s.seed)
    model = build_model(s).to(runtime.device)
    init_report = load_init_weights(model, s.init_from, runtime) if s.init_from else None
    groups = rt.layer_decay_groups(model.named_parameters(), s.weight_decay, model.no_weight_decay(),
                                   model.layer_id, model.depth + 2, s.layer_decay)
    optimizer = rt.adamw(groups, peak_lr, s.betas, runtime.device, s.fused_adamw)
    return model, optimizer, rt.grad_scaler(runtime), init_report


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """timm's ModelEma: every floating state entry becomes decay x ema + (1 - decay) x model."""
    current = model.state_dict()
    for key, value in ema.state_dict().items():
        if value.is_floating_point():
            value.mul_(decay).add_(current[key].detach().to(value.dtype), alpha=1.0 - decay)
        else:
            value.copy_(current[key])


def train_step(model, raw_model, batches, optimizer, scaler, s: FinetuneSettings,
               runtime: rt.Runtime, step: int, accumulation: int) -> tuple[float, float, int, float]:
    """One optimiser step over `accumulation` micro-batches:
    (mean loss, grad norm, corrupt samples, seconds spent waiting for data)."""
    step_loss = torch.zeros((), device=runtime.device)
    corrupt, wait = 0, 0.0
    for micro_step in range(accumulation):
        waited = time.perf_counter()
        batch = next(batches)
        wait += time.perf_counter() - waited
        corrupt += int(batch["corrupt"].sum())
        if runtime.distributed:  # sync gradients on the last micro-step only
            model.require_backward_grad_sync = micro_step == accumulation - 1
        # Mixing draws come from (seed, rank, step, micro-step): identical after a resume.
        rng = np.random.default_rng([s.seed, runtime.rank, step, micro_step])
        loss = classification_loss(model, batch, s, rng, runtime) / accumulation
        scaler.scale(loss).backward()
        step_loss += loss.detach()
    grad_norm = rt.optimizer_step(raw_model.parameters(), optimizer, scaler, s.clip_grad)
    loss_value = float(rt.mean_across_ranks(step_loss, runtime))
    if not np.isfinite(loss_value):
        raise FloatingPointError(f"[{STAGE}] loss is {loss_value} at step {step + 1}; lower base_lr or "
                                 f"enable clip_grad, then resume from {Path(s.out_dir) / 'checkpoints'}")
    return loss_value, grad_norm, corrupt, wait


def finetune(s: FinetuneSettings, runtime: rt.Runtime, resume: bool) -> Path:
    """Run finetuning to its end and return the final checkpoint's path."""
    out_dir = Path(s.out_dir)
    checkpoints = ckpt.RunCheckpoints(out_dir / "checkpoints", s.keep_checkpoints, runtime.is_main)
    # Rank 0 decides (the checkpoint folder must be on a file system every rank sees).
    finished, existing = rt.broadcast_object((checkpoints.final.is_file(), checkpoints.resumable(resume)), runtime)
    if finished:
        if runtime.is_main:
            print(f"[{STAGE}] already finished: {checkpoints.final}")
        return checkpoints.final
    if not s.shards:
        raise ValueError("finetune needs shards (--shards or `shards:` in the config)")
    check_finetune_settings(s)
    class_names = read_class_names(s.class_names, s.num_classes)
    urls = expand_urls(s.shards)
    total_steps, warmup_steps, peak_lr = schedule(s, urls)
    micro, accumulation = micro_batch_plan(s.batch_size, s.micro_batch_size, runtime.world_size)
    if runtime.is_main:
        write_json_atomic(out_dir / "settings.json", {"stage": STAGE, **settings_to_dict(s)})

    model, optimizer, scaler, init_report = build_optimisation(s, runtime, peak_lr)
    step, ema = 0, copy.deepcopy(model).requires_grad_(False) if s.model_ema else None
    if existing:
        saved = ckpt.load_checkpoint(existing[-1])
        step = rt.restore_training_state(saved, model, optimizer, scaler, str(existing[-1]))
        if ema is not None:
            ema.load_state_dict(saved["model_ema"] if "model_ema" in saved else model.state_dict())
        if runtime.is_main:
            print(f"[{STAGE}] resuming from {existing[-1]} at step {step}")
    raw_model = model  # checkpoints hold the plain module's keys
    if s.compile:
        model = torch.compile(model)
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None)

    batches = iter(build_finetune_loader(s, urls, micro, runtime.rank, resume_batches=step * accumulation,
                                         pin_memory=runtime.device.type == "cuda"))
    log = rt.MetricsLog(out_dir, runtime.is_main)
    bar = progress_bar(total=total_steps, initial=step, desc=STAGE, unit="step", disable=not runtime.is_main,
               mininterval=PROGRESS_SECONDS)
    corrupt, window = 0, rt.LogWindow()

    def state() -> dict:
        return {
            "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "stage": STAGE, "class_names": class_names,
            "settings": settings_to_dict(s),
            "init": json.dumps(init_report) if init_report else "",
            **({"model_ema": ema.state_dict()} if ema is not None else {}),
        }

    model.train()
    while step < total_steps:
        rt.seed_step(s.seed, runtime.rank, step)
        lr = finetune_lr(step, total_steps, warmup_steps, peak_lr, s)
        rt.apply_lr(optimizer, lr)
        loss, grad_norm, bad, waited = train_step(model, raw_model, batches, optimizer, scaler, s, runtime,
                                                  step, accumulation)
        if ema is not None:
            update_ema(ema, raw_model, s.model_ema_decay)
        step, corrupt = step + 1, corrupt + bad
        window.add(loss, waited)
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        if step % s.log_every_steps == 0 or step == total_steps:
            log.write(step, {**window.metrics(s.batch_size), "lr": lr, "grad_norm": grad_norm,
                             "corrupt_samples": corrupt})
            window.reset()
        if step % s.save_every_steps == 0 and step < total_steps:
            checkpoints.save_step(step, state())
    bar.close()
    verify_ranks_agree(raw_model, runtime)
    checkpoints.save_final(step, state())
    if runtime.is_main:
        log.plot_loss(f"{STAGE}: {s.model}, {s.num_classes} classes")
    log.close()
    rt.wait_for_all(runtime)  # every rank reads the final checkpoint next (final_test)
    return checkpoints.final


def final_test(s: FinetuneSettings, final_path: Path, runtime: rt.Runtime) -> dict[str, Any] | None:
    """Multi-view test of the final weights on val_shards, written to <out_dir>/eval.json; with
    model_ema, the averaged weights are tested too (<out_dir>/eval_ema.json)."""
    if not s.val_shards:
        return None
    info = ckpt.read_checkpoint(final_path)
    model = ckpt.classifier_from_checkpoint(info).to(runtime.device)
    settings = EvalSettings(checkpoint=str(final_path), shards=s.val_shards, test_clips=s.test_clips,
                            test_crops=s.test_crops, num_workers=s.num_workers, device=s.device,
                            precision=s.precision, temporal=s.temporal, stride=s.stride,
                            label_field=s.label_field)
    weights = {"eval.json": None}
    if s.model_ema:
        weights["eval_ema.json"] = ckpt.load_checkpoint(final_path)["model_ema"]
    reports = {}
    for name, state in weights.items():
        if state is not None:
            model.load_state_dict(state, strict=True)
        report = evaluate_model(model, expand_urls(s.val_shards), settings, runtime, s.num_classes, info.class_names)
        if runtime.is_main:
            write_json_atomic(Path(s.out_dir) / name, {**report, "checkpoint": str(final_path),
                                                       "weights": "model_ema" if state is not None else "model"})
            print(json.dumps({"weights": name, "top1": report["top1"], "top5": report["top5"],
                              "videos": report["videos"]}))
        reports[name] = report
    return reports["eval.json"]


def run_finetune(config: str | None, overrides: dict[str, Any], resume: bool,
                 init_from: str | None = None, allow_commands: bool = False) -> Path:
    """`smile-train finetune`: settings from config + overrides, train, then test on val_shards."""
    s = check_settings(load_settings(FinetuneSettings, config, overrides, allow_commands), str(config or "settings"))
    if init_from:
        s.init_from = init_from
    runtime = rt.setup(s.device, s.precision)
    with rt.process_group(runtime):
        final_path = finetune(s, runtime, resume)
        final_test(s, final_path, runtime)
    return final_path
