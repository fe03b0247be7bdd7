"""What the pretraining and finetuning loops share, in the order a loop uses it.

Both loops (pretrain.pretrain_stage, finetune.finetune) read top to bottom:

    finished, existing = start_run(...)          rank 0 decides: done already? resume from?
    model, optimiser, scaler                     (loop-specific; load_initial_weights)
    step, saved = resume_training(...)           the newest step checkpoint, if any
    model = wrap_model(...)                      torch.compile, then DistributedDataParallel
    log = TrainingLog(...)                       progress bar, metrics.jsonl, divergence check
    while step < total_steps:
        seed_step, lr, train_step (forward, backward, optimiser), log.step, checkpoint
    finish_run(...)                              same weights on every rank? final.pt, plot

No host sync per step: a step's loss and gradient norm stay on the device. `TrainingLog` reads
them (one all-reduce, one transfer) at log steps and before a checkpoint is written, so a
non-finite loss stops the run before it reaches a checkpoint.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch.nn.parallel import DistributedDataParallel

from smile_data.config import settings_to_dict
from smile_data.progress_bar import progress_bar
from smile_train import checkpoint as ckpt
from smile_train import runtime as rt
from smile_train.checkpoint_keys import KeyReport

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


def start_run(name: str, checkpoints: ckpt.RunCheckpoints, resume: bool,
              runtime: rt.Runtime) -> tuple[bool, list[Path]]:
    """(finished already, step checkpoints to resume from); rank 0 decides (the checkpoint
    folder must be on a file system every rank sees)."""
    finished, existing = rt.broadcast_object((checkpoints.final.is_file(), checkpoints.resumable(resume)), runtime)
    if finished and runtime.is_main:
        print(f"[{name}] already finished: {checkpoints.final}")
    return finished, existing


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


def resume_training(name: str, existing: list[Path], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, runtime: rt.Runtime) -> tuple[int, dict[str, Any]]:
    """(step, checkpoint) of the newest step checkpoint, its state restored; (0, {}) if none."""
    if not existing:
        return 0, {}
    saved = ckpt.load_checkpoint(existing[-1])
    step = rt.restore_training_state(saved, model, optimizer, scaler, str(existing[-1]))
    if runtime.is_main:
        print(f"[{name}] resuming from {existing[-1]} at step {step}")
    return step, saved


def wrap_model(model: torch.nn.Module, compile_model: bool, runtime: rt.Runtime) -> torch.nn.Module:
    """The module the loop calls: compiled when asked, DDP-wrapped across processes.
    Checkpoints keep the plain module's keys, so loops hold on to the unwrapped one too."""
    if compile_model:
        model = torch.compile(model)
    if runtime.distributed:
        model = DistributedDataParallel(model, device_ids=[runtime.local_rank] if runtime.device.type == "cuda" else None)
    return model


def training_state(raw_model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   step: int, stage: str, settings: Any, **extra: Any) -> dict[str, Any]:
    """A step checkpoint's content: everything `resume_training` restores, plus `extra`."""
    return {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "step": step, "stage": stage, "settings": settings_to_dict(settings), **extra}


def train_step(model: torch.nn.Module, raw_model: torch.nn.Module, batches: Iterator[dict], accumulation: int,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, lr: float, clip_grad: float,
               runtime: rt.Runtime, micro_loss: Callable[[dict, int], torch.Tensor],
               ) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """One optimiser step at rate `lr` over `accumulation` micro-batches.

    `micro_loss(batch, micro_step)` is a micro-batch's mean loss. Returns the step's loss and
    gradient norm (on the device, not synchronised), the corrupt samples the loader skipped and
    the seconds spent waiting for data.
    """
    rt.apply_lr(optimizer, lr)
    step_loss, corrupt, waited = torch.zeros((), device=runtime.device), 0, 0.0
    for micro_step in range(accumulation):
        asked = time.perf_counter()
        batch = next(batches)
        waited += time.perf_counter() - asked
        corrupt += int(batch["corrupt"].sum())  # a CPU tensor from the loader: no device sync
        if runtime.distributed:  # sync gradients on the last micro-step only
            model.require_backward_grad_sync = micro_step == accumulation - 1
        loss = micro_loss(batch, micro_step) / accumulation
        scaler.scale(loss).backward()
        step_loss += loss.detach()
    grad_norm = rt.optimizer_step(raw_model.parameters(), optimizer, scaler, clip_grad)
    return step_loss, grad_norm, corrupt, waited


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


def finish_run(raw_model: torch.nn.Module, checkpoints: ckpt.RunCheckpoints, step: int, state: dict[str, Any],
               log: TrainingLog, title: str, runtime: rt.Runtime) -> Path:
    """Check the ranks agree, write final.pt, wait for every rank (they read it next), close."""
    log.bar.close()
    verify_ranks_agree(raw_model, runtime)
    checkpoints.save_final(step, state)
    rt.wait_for_all(runtime)
    log.close(title)
    return checkpoints.final
