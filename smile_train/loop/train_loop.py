"""The training step both loops run, and what surrounds it, in the order a loop uses it.

Both loops (pretrain.pretrain_stage, finetune.finetune) read top to bottom:

    checkpoints, existing = start_run(...)       rank 0 decides: done already? resume from?
    model, optimiser                             (loop-specific; load_initial_weights)
    run = Run(...)                               what it trains, how it steps, where it writes
    return run_steps(run, existing, loader_at, micro_loss)

`run_steps` resumes, positions the loader, and then runs the whole step in one place: seed,
learning rate, forward and backward over the micro-batches, optimiser step, weight average, log,
checkpoint; then final.pt. A loop brings only its loader and its
`micro_loss(model, batch, step, micro_step)`.

No host sync per step: a step's loss and gradient norm stay on the device. `TrainingLog` reads
them (one all-reduce, one transfer) at log steps and before a checkpoint is written, so a
non-finite loss stops the run before it reaches a checkpoint.

The weight average is timm's ModelEma by hand: torch's AveragedModel copies the weights at its
first update and lerps (other numbers), and keys its state "module.*" (other checkpoints).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
from torch.nn.parallel import DistributedDataParallel

from smile_data.config import settings_to_dict
from smile_data.io import write_json_atomic
from smile_data.progress_bar import progress_bar
from smile_train.interop import checkpoint as ckpt
from smile_train.interop.checkpoint_keys import KeyReport
from smile_train.loop import runtime as rt
from smile_train.loop.lr_schedule import LrSchedule

PROGRESS_SECONDS = 2.0  # terminal progress-bar refresh interval (log files: progress_bar.py)

# micro_loss(model, batch, step, micro_step): a micro-batch's mean loss, `model` the wrapped one
MicroLoss = Callable[[torch.nn.Module, dict, int, int], torch.Tensor]


def micro_batch_plan(batch_size: int, micro_batch_size: int, world_size: int, repeats: int = 1) -> tuple[int, int]:
    """(clips per process per micro-step, micro-steps per optimiser step) reaching batch_size.

    Batch sizes count masked samples, clips x `repeats` masks, as in the reference recipes:
    batch 256 with 2 masks per clip loads 128 clips per step.
    """
    micro = micro_batch_size or batch_size // world_size
    if micro == 0:
        raise ValueError(f"batch_size {batch_size} is smaller than the {world_size} processes: give each process "
                         f"at least {repeats} (batch_size {world_size * repeats} or more) or run fewer processes")
    if micro < repeats or micro % repeats or batch_size % (micro * world_size):
        raise ValueError(
            f"batch_size {batch_size} must be a multiple of micro_batch_size {micro} x {world_size} "
            f"processes, and micro_batch_size a multiple of mask_repeats {repeats}"
        )
    return micro // repeats, batch_size // (micro * world_size)


def start_run(name: str, out_dir: Path, settings: Any, resume: bool,
              runtime: rt.Runtime) -> tuple[ckpt.RunCheckpoints, list[Path] | None]:
    """The run's checkpoint folder, and the step checkpoints to resume from (None: the run has
    finished already). Rank 0 decides (the folder must be on a file system every rank sees);
    a run to do records its settings."""
    checkpoints = ckpt.RunCheckpoints(out_dir / "checkpoints", settings.keep_checkpoints, runtime.is_main)
    finished, existing = rt.broadcast_object((checkpoints.final.is_file(), checkpoints.resumable(resume)), runtime)
    if finished:
        if runtime.is_main:
            print(f"[{name}] already finished: {checkpoints.final}")
        return checkpoints, None
    if runtime.is_main:
        write_json_atomic(out_dir / "settings.json", {"stage": name, **settings_to_dict(settings)})
    return checkpoints, existing


def load_initial_weights(model: torch.nn.Module, path: str, runtime: rt.Runtime,
                         fit: Callable[[dict, torch.nn.Module], tuple[dict, KeyReport]]) -> KeyReport:
    """Start from another run's (or the authors') weights; the optimiser starts fresh.

    `fit(checkpoint, model)` maps the file's tensors onto the model (checkpoint_keys.py) and
    raises ValueError for a file that does not fit; the error names the file.
    """
    try:
        state, report = fit(ckpt.load_checkpoint(path), model)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    model.load_state_dict(state, strict=True)
    if runtime.is_main:
        print(f"init from {path}: {report.summary()}")
    return report


@dataclass(frozen=True)
class StepPlan:
    """How a run steps: clips per micro-batch and process, micro-batches per optimiser step
    (micro_batch_plan), optimiser steps, and the learning rate of each."""

    micro: int
    accumulation: int
    total_steps: int
    lr_schedule: LrSchedule


class LoaderAt(Protocol):
    """Builds a run's loader of `micro_batch` clips for `rank`, positioned after the first
    `resume_batches` batches (loader.build_loader, finetune_loader.build_finetune_loader)."""

    def __call__(self, micro_batch: int, rank: int, resume_batches: int = 0,
                 pin_memory: bool = False) -> Iterable[dict]: ...


@dataclass
class Run:
    """One run as the step body sees it: what it trains, how many steps, where it writes."""

    name: str  # the stage: messages, metrics and checkpoints carry it
    title: str  # the loss curve's
    out_dir: Path
    settings: Any  # PretrainSettings or FinetuneSettings: seed, clip_grad, compile, intervals
    runtime: rt.Runtime
    checkpoints: ckpt.RunCheckpoints
    model: torch.nn.Module  # the plain module: checkpoints hold its keys, never a compiled or DDP wrapper
    optimizer: torch.optim.Optimizer
    steps: StepPlan
    ema_decay: float | None = None  # keep `ema`, an average of the weights updated after every step
    extra_state: dict[str, Any] = field(default_factory=dict)  # saved in every checkpoint

    def __post_init__(self) -> None:
        self.scaler = rt.grad_scaler(self.runtime)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if self.ema_decay is not None else None

    def resume(self, existing: list[Path]) -> int:
        """Restore the newest of the step checkpoints `existing` (weights, optimiser, scaler and
        the average) and return its step; 0 when there is none."""
        if not existing:
            return 0
        saved = ckpt.load_checkpoint(existing[-1])
        step = rt.restore_training_state(saved, self.model, self.optimizer, self.scaler, str(existing[-1]))
        if not 0 <= step <= self.steps.total_steps:  # it sizes the loader's skip and the step loop
            raise ValueError(f"{existing[-1]}: step {step} is outside this run's 0..{self.steps.total_steps} "
                             "(were the settings changed since it was written?)")
        if self.ema is not None:  # a run that starts averaging on resume starts from the weights
            self.ema.load_state_dict(saved["model_ema"] if "model_ema" in saved else self.model.state_dict())
        if self.runtime.is_main:
            print(f"[{self.name}] resuming from {existing[-1]} at step {step}")
        return step

    def state(self, step: int) -> dict[str, Any]:
        """A step checkpoint's content: everything `resume` restores, plus `extra_state`."""
        averaged = {"model_ema": self.ema.state_dict()} if self.ema is not None else {}
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "step": step, "stage": self.name,
                "settings": settings_to_dict(self.settings), **self.extra_state, **averaged}


def wrap_model(model: torch.nn.Module, compile_model: bool, runtime: rt.Runtime) -> torch.nn.Module:
    """The module the loop calls: compiled when asked, DDP-wrapped across processes."""
    if compile_model:
        model = torch.compile(model)
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None)
    return model


def run_steps(run: Run, existing: list[Path], loader_at: LoaderAt, micro_loss: MicroLoss) -> Path:
    """Resume from the newest of the step checkpoints `existing`, train to the last step, write
    final.pt and return its path.

    Each optimiser step averages `accumulation` micro-batches; `micro_loss` gives a micro-batch's
    mean loss. The torch seed, the learning rate and (in micro_loss) any other draw are
    functions of the step, and the loader starts where the resumed step left it, so a resumed
    run continues exactly.
    """
    s, runtime, optimizer, scaler, plan = run.settings, run.runtime, run.optimizer, run.scaler, run.steps
    step = run.resume(existing)
    loader = loader_at(plan.micro, runtime.rank, resume_batches=step * plan.accumulation,
                       pin_memory=runtime.device.type == "cuda")
    model = wrap_model(run.model, s.compile, runtime)
    model.train()
    batches = iter(loader)
    log = TrainingLog(run.name, run.out_dir, runtime, plan.total_steps, step, s.log_every_steps,
                      plan.micro * plan.accumulation * runtime.world_size, run.checkpoints.folder)
    while step < plan.total_steps:
        rt.seed_step(s.seed, runtime.rank, step)  # drop path and other in-model draws
        lr = plan.lr_schedule.lr(step)
        rt.apply_lr(optimizer, lr)
        loss, corrupt, waited = torch.zeros((), device=runtime.device), 0, 0.0
        for micro_step in range(plan.accumulation):
            asked = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - asked
            corrupt += int(batch["corrupt"].sum())  # a CPU tensor from the loader: no device sync
            if runtime.distributed:  # sync gradients on the last micro-step only
                model.require_backward_grad_sync = micro_step == plan.accumulation - 1
            micro = micro_loss(model, batch, step, micro_step) / plan.accumulation
            scaler.scale(micro).backward()
            loss += micro.detach()
        scaler.unscale_(optimizer)
        max_norm = s.clip_grad if s.clip_grad > 0 else math.inf  # 0: not clipped, still measured
        grad_norm = torch.nn.utils.clip_grad_norm_(list(run.model.parameters()), max_norm)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if run.ema is not None:
            update_ema(run.ema, run.model, run.ema_decay)
        step += 1
        log.step(step, loss, grad_norm, lr, corrupt, waited)
        if step % s.save_every_steps == 0 and step < plan.total_steps:
            log.settle(step)  # a diverged run stops before it writes a checkpoint
            run.checkpoints.save_step(step, run.state(step))
    return finish_run(run, step, log)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """timm's ModelEma: every floating state entry becomes decay x ema + (1 - decay) x model."""
    current = model.state_dict()
    for key, value in ema.state_dict().items():
        if value.is_floating_point():
            value.mul_(decay).add_(current[key].detach().to(value.dtype), alpha=1.0 - decay)
        else:
            value.copy_(current[key])


class TrainingLog:
    """A run's progress bar and metrics.jsonl; the one place a loop reads values off the device.

    Step losses queue on the device; `settle` brings them to the host in one all-reduce and one
    transfer (at log steps and before checkpoints) and stops the run at a non-finite one.
    """

    def __init__(self, name: str, out_dir: Path, runtime: rt.Runtime, total_steps: int, step: int,
                 log_every_steps: int, clips_per_step: int, checkpoint_folder: Path):
        self.name, self.runtime, self.total_steps = name, runtime, total_steps
        self.log_every_steps, self.clips_per_step = log_every_steps, clips_per_step
        self.checkpoint_folder = checkpoint_folder
        self.metrics = rt.MetricsLog(out_dir, runtime.is_main)
        self.bar = progress_bar(total=total_steps, initial=step, desc=name, unit="step",
                                disable=not runtime.is_main, mininterval=PROGRESS_SECONDS)
        self.window, self.corrupt = LogWindow(), 0
        self.pending: list[torch.Tensor] = []  # step losses not yet read, on the device
        self.grad_norm, self.grad_norm_value = torch.zeros(()), 0.0  # the last step's, on the device / read

    def step(self, step: int, loss: torch.Tensor, grad_norm: torch.Tensor, lr: float, corrupt: int,
             waited: float) -> None:
        """Record optimiser step `step` (1-based); write a log line when one is due."""
        self.pending.append(loss)
        self.grad_norm, self.corrupt = grad_norm, self.corrupt + corrupt
        self.window.add_step(waited)
        self.bar.update(1)
        if step % self.log_every_steps == 0 or step == self.total_steps:
            self.settle(step)
            metrics = self.window.metrics(self.clips_per_step)
            self.metrics.write(step, {**metrics, "lr": lr, "grad_norm": self.grad_norm_value,
                                      "corrupt_samples": self.corrupt})
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
            self.window.reset()

    def settle(self, step: int) -> None:
        """Read the queued losses (mean over ranks) into the window and the last gradient norm;
        FloatingPointError at a non-finite loss. `step` is the last queued step."""
        if not self.pending:
            return
        losses = rt.mean_across_ranks(torch.stack(self.pending), self.runtime)
        *step_losses, self.grad_norm_value = torch.cat([losses, self.grad_norm.reshape(1).to(losses)]).tolist()
        first = step - len(self.pending) + 1
        self.pending.clear()
        for offset, value in enumerate(step_losses):
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"[{self.name}] loss is {value} at step {first + offset}; lower base_lr or enable "
                    f"clip_grad, then resume from the last checkpoint in {self.checkpoint_folder}")
            self.window.add_loss(value)

    def close(self, title: str) -> None:
        """Draw the loss curve (main process) and close the files."""
        if self.runtime.is_main:
            self.metrics.plot_loss(title)
        self.metrics.close()


class LogWindow:
    """Means over the steps between two log lines: loss, clips/s, share of time spent waiting."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.start, self.steps, self.loss, self.wait = time.perf_counter(), 0, 0.0, 0.0

    def add_step(self, data_wait_seconds: float) -> None:
        self.steps += 1
        self.wait += data_wait_seconds

    def add_loss(self, loss: float) -> None:
        self.loss += loss

    def metrics(self, clips_per_step: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.start
        return {
            "loss": self.loss / max(self.steps, 1),
            "clips_per_s": self.steps * clips_per_step / elapsed,
            "data_wait_fraction": self.wait / elapsed,
        }


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


def finish_run(run: Run, step: int, log: TrainingLog) -> Path:
    """Check the ranks agree, write final.pt, wait for every rank (they read it next), close."""
    log.bar.close()
    verify_ranks_agree(run.model, run.runtime)
    run.checkpoints.save_final(step, run.state(step))
    rt.wait_for_all(run.runtime)
    log.close(run.title)
    return run.checkpoints.final
