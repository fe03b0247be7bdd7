"""Which share of the work this process does: rank and world size from flags or the launcher."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkShare:
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not within world size {self.world_size}")

    def owns(self, index: int) -> bool:
        """Round-robin split: item `index` belongs to exactly one rank."""
        return index % self.world_size == self.rank


def resolve_work_share(rank: int | None = None, world_size: int | None = None) -> WorkShare:
    """Explicit flags win; else torchrun (RANK/WORLD_SIZE); else SLURM; else a single process."""
    env = os.environ
    if rank is None:
        rank = int(env.get("RANK", env.get("SLURM_PROCID", 0)))
    if world_size is None:
        world_size = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", 1)))
    return WorkShare(rank=rank, world_size=world_size)
