"""The SMILE pretraining loop, read top to bottom: settings, processes, teacher, data, model,
optimiser, resume, compile, wrap, loop, checkpoints, teardown.

One stage = one run of this loop. `run_pretrain` runs the stages of a config in order: stage 1
on overlaid clips with trajectory masks, stage 2 on natural clips with tube masks, initialised
from stage 1's final weights (SPEC §6, progressive pretraining).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from smile_data.config import settings_to_dict
from smile_data.io import write_json_atomic
from smile_data.progress_bar import progress_bar
from smile_train import checkpoint as ckpt
from smile_train import runtime as rt
from smile_train.checkpoint_keys import unwrap_state
from smile_train.data import build_loader, epoch_clips, epoch_summary, resolve_sources
from smile_train.lr_schedule import LrSchedule
from smile_train.model import build_pretrain_model, mask_order, masked_count, take_tokens
from smile_train.settings import IMAGENET_BATCH_REFERENCE, PretrainSettings, load_pretrain_stages
from smile_train.targets import normalize, pixel_targets
from smile_train.teacher import FeatureTeacher

PROGRESS_SECONDS = 2.0  # terminal progress-bar refresh interval (log files: progress_bar.py)


def micro_batch_plan(batch_size: int, micro_batch_size: int, world_size: int, repeats: int = 1) -> tuple[int, int]:
    """(clips per process per micro-step, micro-steps per optimiser step) reaching batch_size.

    Batch sizes count masked samples, clips x `repeats` masks, as in the reference recipes:
    batch 256 with 2 masks per clip loads 128 clips per step.
    """
    micro = micro_batch_size or batch_size // world_size
    if micro < repeats or micro % repeats or batch_size % (micro * world_size):
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of micro_batch_size {micro} x {world_size} "
            f"processes, and micro_batch_size a multiple of mask_repeats {repeats}"
        )
    return micro // repeats, batch_size // (micro * world_size)


def schedule(s: PretrainSettings, clips_per_epoch: int) -> tuple[int, LrSchedule]:
    """(total steps, learning-rate schedule) of a stage.

    Epochs are effective epochs (SPEC §5): a clip seen with R masks counts R times, so an epoch
    of clips_per_epoch masked samples takes clips_per_epoch / batch_size steps. Training stops
    after `epochs` (or `max_steps`); the cosine spans `schedule_epochs` (lr_schedule.py), or,
    when that is 0, ends where training stops with warm-up taking its share of the steps.
    Learning rates are given per 256 samples (lr = base_lr x batch / 256, min_lr likewise).
    """
    steps_per_epoch = max(1, clips_per_epoch // s.batch_size)
    total_steps = s.max_steps or s.epochs * steps_per_epoch
    if s.schedule_epochs:
        warmup_steps, horizon_steps = s.warmup_epochs * steps_per_epoch, s.schedule_epochs * steps_per_epoch
    else:
        warmup_steps, horizon_steps = round(total_steps * s.warmup_epochs / max(s.epochs, 1)), total_steps
    scale = s.batch_size / IMAGENET_BATCH_REFERENCE
    return total_steps, LrSchedule(
        peak=s.base_lr * scale, floor=s.min_lr * scale, warmup_steps=warmup_steps,
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


def masked_loss(model, teacher, videos_uint8, masks, runtime: rt.Runtime) -> torch.Tensor:
    """MSE between predictions and targets of the masked tokens (SPEC §6).

    videos_uint8: (B, T, H, W, 3); masks: (B, R, N) bool, R masks per clip (multiple sampling).
    Targets are computed once per clip and shared by its R masked copies.
    """
    clips, repeats, tokens = masks.shape
    num_masked = masked_count(masks.reshape(clips * repeats, tokens))  # checked on the host
    videos = normalize(videos_uint8.to(runtime.device, non_blocking=True))  # (B, 3, T, H, W)
    with torch.no_grad():
        targets = teacher(videos) if teacher is not None else pixel_targets(videos)  # (B, N, D)
    videos = videos.repeat_interleave(repeats, dim=0)  # (B*R, 3, T, H, W)
    targets = targets.repeat_interleave(repeats, dim=0)
    mask = masks.to(runtime.device, non_blocking=True).reshape(clips * repeats, tokens)  # (B*R, N)
    with rt.autocast(runtime):
        predictions = model(videos, mask, num_masked)  # (B*R, M, D)
    expected = take_tokens(targets, mask_order(mask, num_masked)[1])  # (B*R, M, D)
    return F.mse_loss(predictions.float(), expected.float())


def pretrain_stage(name: str, s: PretrainSettings, runtime: rt.Runtime, out_dir: Path, resume: bool) -> Path:
    """Run one stage to its end and return the path of its final checkpoint."""
    checkpoints = ckpt.RunCheckpoints(out_dir / "checkpoints", s.keep_checkpoints, runtime.is_main)
    # Rank 0 decides (the checkpoint folder must be on a file system every rank sees).
    finished, existing = rt.broadcast_object((checkpoints.final.is_file(), checkpoints.resumable(resume)), runtime)
    if finished:
        if runtime.is_main:
            print(f"[{name}] already finished: {checkpoints.final}")
        return checkpoints.final
    if runtime.is_main:
        write_json_atomic(out_dir / "settings.json", {"stage": name, **settings_to_dict(s)})

    # A teacher that cannot be loaded is an error before any data is read.
    teacher = FeatureTeacher.from_pretrained(s.teacher, runtime.device, runtime.dtype) if s.target == "clip" else None
    sources = resolve_sources(s)
    clips_per_epoch = epoch_clips(s, sources)
    micro, accumulation = micro_batch_plan(s.batch_size, s.micro_batch_size, runtime.world_size, s.mask_repeats)
    total_steps, lr_schedule = schedule(s, clips_per_epoch)
    if runtime.is_main:
        print(f"[{name}] {epoch_summary(s, clips_per_epoch, total_steps)}")

    torch.manual_seed(s.seed)  # the same initial weights on every rank
    model = build_pretrain_model(
        s.model, s.target, target_dim=teacher.out_dim if teacher else None, img_size=s.input_size,
        frames=s.frames, drop_path=s.drop_path, attention_impl=s.attention,
        grad_checkpointing=s.grad_checkpointing,
    ).to(runtime.device)
    if s.init_from:
        load_initial_weights(model, s.init_from, runtime)
    groups = rt.weight_decay_groups(model.named_parameters(), s.weight_decay, set(model.no_weight_decay()))
    optimizer = rt.adamw(groups, lr_schedule.peak, s.betas, runtime.device, s.fused_adamw)
    scaler = rt.grad_scaler(runtime)
    step = 0
    if existing:
        step = rt.restore_training_state(ckpt.load_checkpoint(existing[-1]), model, optimizer, scaler,
                                         str(existing[-1]))
        if runtime.is_main:
            print(f"[{name}] resuming from {existing[-1]} at step {step}")
    raw_model = model  # checkpoints hold the plain module's keys, never compiled or DDP wrappers
    if s.compile:
        model = torch.compile(model)
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None)

    loader = build_loader(s, sources, micro, runtime.rank, resume_batches=step * accumulation,
                          pin_memory=runtime.device.type == "cuda")
    batches = iter(loader)
    log = rt.MetricsLog(out_dir, runtime.is_main)
    bar = progress_bar(total=total_steps, initial=step, desc=name, unit="step", disable=not runtime.is_main,
               mininterval=PROGRESS_SECONDS)
    corrupt, window = 0, rt.LogWindow()

    def state() -> dict:
        return {
            "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "step": step, "stage": name,
            "settings": settings_to_dict(s),
        }

    while step < total_steps:
        rt.seed_step(s.seed, runtime.rank, step)
        lr = lr_schedule.lr(step)
        rt.apply_lr(optimizer, lr)
        step_loss, waited = torch.zeros((), device=runtime.device), 0.0
        for micro_step in range(accumulation):
            asked = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - asked
            corrupt += int(batch["corrupt"].sum())
            if runtime.distributed:  # sync gradients on the last micro-step only
                model.require_backward_grad_sync = micro_step == accumulation - 1
            masks = second_masks(batch["masks"], s.mask_repeats, s.second_mask)
            loss = masked_loss(model, teacher, batch["video"], masks, runtime) / accumulation
            scaler.scale(loss).backward()
            step_loss += loss.detach()
        grad_norm = rt.optimizer_step(raw_model.parameters(), optimizer, scaler, s.clip_grad)
        step += 1

        loss_value = float(rt.mean_across_ranks(step_loss, runtime))
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"[{name}] loss is {loss_value} at step {step}; lower base_lr, enable clip_grad, "
                f"or resume from the last checkpoint in {checkpoints.folder}"
            )
        window.add(loss_value, waited)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}")
        if step % s.log_every_steps == 0 or step == total_steps:
            log.write(step, {**window.metrics(s.batch_size // s.mask_repeats), "lr": lr, "grad_norm": grad_norm,
                             "corrupt_samples": corrupt})
            window.reset()
        if step % s.save_every_steps == 0 and step < total_steps:
            checkpoints.save_step(step, state())
    bar.close()
    verify_ranks_agree(raw_model, runtime)
    checkpoints.save_final(step, state())
    rt.wait_for_all(runtime)  # every rank reads final.pt next (stage 2 starts from it)
    if runtime.is_main:
        log.plot_loss(f"{name}: {s.model} / {s.target} target")
    log.close()
    return checkpoints.final


def verify_ranks_agree(model: torch.nn.Module, runtime: rt.Runtime) -> None:
    """Every process must end with the same weights; a difference means a broken gradient sync."""
    if not runtime.distributed:
        return
    fingerprint = torch.stack([p.detach().double().sum() for p in model.parameters()])
    gathered = [torch.empty_like(fingerprint) for _ in range(runtime.world_size)]
    torch.distributed.all_gather(gathered, fingerprint)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError("parameters differ between ranks at the end of training")
    if runtime.is_main:
        print(f"parameters identical on {runtime.world_size} ranks")


def load_initial_weights(model: torch.nn.Module, path: str, runtime: rt.Runtime) -> None:
    """Start from another run's weights (stage 1 -> stage 2); the optimiser starts fresh.

    Every encoder tensor must load; decoder tensors of another shape (another target) start fresh.
    """
    weights = unwrap_state(ckpt.load_checkpoint(path))
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    missing = sorted(k for k in own if k.startswith("encoder.") and k not in usable)
    if missing:
        raise ValueError(f"{path}: does not hold this model's encoder ({len(missing)} tensors missing "
                         f"or of another shape, e.g. {missing[:3]}); is it a pretraining checkpoint of the same size?")
    model.load_state_dict(usable, strict=False)
    if runtime.is_main:
        fresh = sorted(set(own) - set(usable))
        print(f"initialised {len(usable)} tensors from {path}" + (f"; kept fresh: {fresh}" if fresh else ""))


def run_pretrain(config: str | None, overrides: dict, resume: bool, init_from: str | None = None,
                 allow_commands: bool = False) -> list[Path]:
    """Run every stage of a config in order; stage k > 1 starts from stage k-1's final weights.

    `init_from` starts the first stage from another run's weights (e.g. stage 2 run alone);
    `allow_commands` lets the config's shard URLs run `pipe:` commands.
    """
    stages = load_pretrain_stages(config, overrides, allow_commands)
    if init_from:
        stages[0][1].init_from = init_from
    runtime = rt.setup(stages[0][1].device, stages[0][1].precision)
    finals: list[Path] = []
    with rt.process_group(runtime):
        for name, settings in stages:
            out_dir = Path(settings.out_dir) / name if len(stages) > 1 else Path(settings.out_dir)
            if finals and not settings.init_from:
                settings.init_from = str(finals[-1])
            finals.append(pretrain_stage(name, settings, runtime, out_dir, resume))
            if runtime.is_main:
                print(json.dumps({"stage": name, "checkpoint": str(finals[-1]),
                                  "metrics": str(out_dir / "metrics.jsonl"),
                                  "loss_curve": str(out_dir / "loss_curve.png")}))
    return finals
