"""The plan of a run, printed before it starts (`smile-train pretrain --dry-run`, `finetune --dry-run`).

A plan resolves what the run itself resolves first (settings, shard lists, the cards' sample
counts) and computes what the loops compute from them (steps, micro-batches, the learning-rate
curve), without loading a teacher, building a model or reading a sample. Per stage it says:
data (samples per source and where the count came from, temporal draw, crop, flip, overlays),
epochs and steps, batch and accumulation, the learning-rate landmarks (warm-up end, peak, the
last step's rate), masks, model and target, and where checkpoints go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smile_data.shards.sample_count import SampleCount
from smile_train.loop.lr_schedule import LrSchedule
from smile_train.loop.runtime import launch_from_environment
from smile_train.loop.train_loop import micro_batch_plan
from smile_train.model.vit import SIZES


@dataclass
class StagePlan:
    """One stage (or a finetuning run) as numbers and lines of text."""

    name: str
    total_steps: int
    steps_per_epoch: int
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join([f"[{self.name}]", *(f"  {line}" for line in self.lines)])


def planned_world_size(world_size: int | None) -> int:
    """Processes the plan assumes: the given number, else the launcher's (torchrun, SLURM), else 1."""
    return world_size or launch_from_environment().world_size


def warmup_end_step(schedule: LrSchedule) -> int | None:
    """The first optimiser step whose rate is the peak (the last warm-up index), or None when
    there is no warm-up. With the released "pass" pace the index of pass p starts at
    p x steps_per_epoch, so the peak is reached in the first pass whose indices cover it."""
    last = schedule.warmup_steps - 1
    if last < 0:
        return None
    if schedule.pace == "step":
        return last
    passes = 0
    while last - passes * schedule.steps_per_epoch >= schedule.steps_per_pass:
        passes += 1
    return passes * schedule.steps_per_pass + last - passes * schedule.steps_per_epoch


def lr_lines(schedule: LrSchedule, total_steps: int) -> list[str]:
    peak_step = warmup_end_step(schedule)
    last = total_steps - 1
    warmup = (f"warm-up from {schedule.start:.3g} to the peak {schedule.peak:.3g} at step {peak_step:,}"
              if peak_step is not None else f"no warm-up, peak {schedule.peak:.3g}")
    horizon = (f"the cosine spans {schedule.horizon_steps:,} schedule steps"
               + (" (longer than the run: it never anneals)" if schedule.index(last) < schedule.horizon_steps - 1
                  else ""))
    return [f"learning rate: {warmup}; {horizon}; pace {schedule.pace}",
            f"  step 0: {schedule.lr(0):.3g}, last step ({last:,}): {schedule.lr(last):.3g}, "
            f"floor {schedule.floor:.3g}"]


def batch_line(batch_size: int, micro_batch_size: int, world_size: int, repeats: int, unit: str) -> str:
    micro, accumulation = micro_batch_plan(batch_size, micro_batch_size, world_size, repeats)
    clips = f" ({batch_size // repeats} clips x {repeats} masks)" if repeats > 1 else ""
    return (f"batch: {batch_size} {unit}{clips} per step = {world_size} process(es) x {accumulation} "
            f"micro-step(s) x {micro * repeats}")


def model_line(size: str, target: str = "", teacher: str = "") -> str:
    spec = SIZES[size]
    text = f"model: {size} ({spec.width} wide, {spec.depth} blocks, {spec.heads} heads)"
    if target:
        text += f"; target {target}" + (f" from teacher {teacher}" if target == "clip" else "")
    return text


def samples_text(count: SampleCount | None) -> str:
    """`240,436 samples (8 shards from dataset.json)`, or why the number is unknown."""
    if count is None:
        return "samples not countable (pipe: or a remote tar without card or stats; set clips_per_epoch)"
    return f"{count.total:,} samples ({count.describe()})"


def data_line(setting: str, count: SampleCount | None, source: Any, weight: float | None = None) -> str:
    share = f", weight {weight:g}" if weight is not None else ""
    overlay = f", overlays {source.overlay}" + (f" from {source.bank}" if source.overlay == "objects" else "") \
        if getattr(source, "overlay", "none") != "none" else ""
    stride = f" at stride {source.stride}" if source.temporal == "window" else ""
    crop = getattr(source, "crop", "random resized")
    return (f"data: {setting} -> {samples_text(count)}{share}; frames of a video: "
            f"{source.temporal}{stride}; crop {crop}, flip {'on' if source.flip else 'off'}{overlay}")


def bank_line(folder: str) -> str:
    """The object bank a source pastes from, opened as the loader workers open it."""
    from smile_data.objects.bank import ObjectBank

    bank = ObjectBank(folder)
    return f"  bank {folder}: {len(bank):,} objects of {len(bank.classes):,} classes"


def checkpoint_line(out_dir: Path, save_every: int, keep: int, init_from: str) -> str:
    missing = "" if not init_from or Path(init_from).exists() else " (not there yet)"
    start = f"; starts from {init_from}{missing}" if init_from else "; starts from scratch"
    return f"checkpoints: {out_dir / 'checkpoints'} every {save_every:,} steps (last {keep} kept), final.pt{start}"


def format_plan(title: str, stages: list[StagePlan]) -> str:
    total = sum(stage.total_steps for stage in stages)
    body = "\n".join(stage.text() for stage in stages)
    return f"{title}\n{body}\n{len(stages)} stage(s), {total:,} optimiser steps in all; nothing was trained (--dry-run)"
