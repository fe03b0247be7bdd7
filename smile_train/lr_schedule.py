"""The pretraining learning-rate schedule: linear warm-up, then half a cosine, per step.

Two things the released SMILE / VideoMAE scripts do are settings here (SPEC §9):

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

    def index(self, step: int) -> int:
        """The schedule index the learning rate of optimiser step `step` (0-based) is read at."""
        if self.pace == "step":
            return step
        passes, within = divmod(step, self.steps_per_pass)
        return passes * self.steps_per_epoch + within

    def lr(self, step: int) -> float:
        """Warm-up as numpy.linspace(0, peak, warmup_steps) (0 at index 0, peak at the last
        warm-up index), then floor + (peak - floor) x (1 + cos(pi x i / cosine length)) / 2 for
        the i-th index after the warm-up; past the horizon the floor."""
        index = self.index(step)
        if index < self.warmup_steps:
            return self.peak * index / max(self.warmup_steps - 1, 1)
        progress = (index - self.warmup_steps) / max(self.horizon_steps - self.warmup_steps, 1)
        return self.floor + 0.5 * (self.peak - self.floor) * (1 + math.cos(math.pi * min(progress, 1.0)))

