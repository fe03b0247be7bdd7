"""Learning-rate schedules: linear warm-up, then half a cosine, per optimiser step.

Ours, not torch.optim.lr_scheduler: the released pace (below) is none of its built-in schedules, and a
pure function of the step resumes exactly without scheduler state.

`LrSchedule` serves pretraining (pretrain.schedule) and finetuning (finetune.schedule, the
released finetuning's cosine_scheduler: warm-up from `start`, the cosine ending where training
stops); `cosine_lr` is the linear probe's. Rates are given per 256 samples (`per_batch`).

Two things the released SMILE / VideoMAE scripts do are settings here (docs/method.md §9):

- The cosine's horizon (`schedule_epochs`) is separate from the stopping point (`epochs`): the
  released scripts build the curve over 801 epochs and stop each stage at epoch 150, so the
  learning rate never anneals. `schedule_epochs: 0` ends the cosine where training stops.
- The pace at which the schedule is read (`schedule_pace`). With "step" the schedule index is
  the optimiser step. With "pass" it is the released engine's: a pass over the clips with R
  masks per clip takes R x steps_per_epoch steps, the index of a pass starts at
  pass x steps_per_epoch and runs on through the pass, so the schedule advances one epoch per
  R effective epochs (and steps back a little at each new pass). With R = 1 the two agree.

Units: an epoch of the schedule is `steps_per_epoch` = clips_per_epoch / batch_size steps
(batch sizes count masked samples, R per clip), i.e. one effective epoch of steps; a pass over
the clips takes R x steps_per_epoch steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULE_PACES = ("step", "pass")
IMAGENET_BATCH_REFERENCE = 256  # learning rates are given per 256 samples (lr = base_lr x batch / 256)


def per_batch(rate: float, batch_size: int) -> float:
    """A rate given per 256 samples, at `batch_size` samples per step."""
    return rate * batch_size / IMAGENET_BATCH_REFERENCE


def run_length(clips_per_epoch: int, batch_size: int, epochs: int, max_steps: int) -> tuple[int, int]:
    """(steps per epoch, steps of the run): `max_steps` when set, else `epochs` epochs."""
    steps_per_epoch = max(1, clips_per_epoch // batch_size)
    return steps_per_epoch, max_steps or epochs * steps_per_epoch


def warmup_share(total_steps: int, warmup_epochs: int, epochs: int) -> int:
    """Warm-up steps of a cosine that ends where training stops: warmup_epochs / epochs of them."""
    return round(total_steps * warmup_epochs / epochs) if epochs else 0


@dataclass(frozen=True)
class LrSchedule:
    """lr(step) of one stage; see the module docstring for the two paces."""

    peak: float
    floor: float
    warmup_steps: int  # schedule indices of the linear warm-up
    horizon_steps: int  # schedule indices of warm-up + cosine
    steps_per_epoch: int
    steps_per_pass: int  # optimiser steps per pass over the clips (R x steps_per_epoch)
    pace: str = "step"
    start: float = 0.0  # the warm-up's first rate

    def index(self, step: int) -> int:
        """The schedule index the learning rate of optimiser step `step` (0-based) is read at."""
        if self.pace == "step":
            return step
        passes, within = divmod(step, self.steps_per_pass)
        return passes * self.steps_per_epoch + within

    def lr(self, step: int) -> float:
        """Warm-up as numpy.linspace(start, peak, warmup_steps) (start at index 0, peak at the
        last warm-up index), then floor + (peak - floor) x (1 + cos(pi x i / cosine length)) / 2 for
        the i-th index after the warm-up; past the horizon the floor."""
        index = self.index(step)
        if index < self.warmup_steps:
            return self.start + (self.peak - self.start) * index / max(self.warmup_steps - 1, 1)
        progress = (index - self.warmup_steps) / max(self.horizon_steps - self.warmup_steps, 1)
        return self.floor + 0.5 * (self.peak - self.floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def cosine_lr(step: int, total_steps: int, warmup_steps: int, peak: float, floor: float) -> float:
    """The linear probe's: warm-up to `peak` reaching it at step warmup_steps - 1, then half a
    cosine down to `floor` (per step)."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * min(1.0, progress)))
