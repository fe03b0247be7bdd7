"""Which share of the work this process does: rank and world size from flags or the launcher."""

from __future__ import annotations

import os

from smile_data.jobs import WorkShare


def resolve_work_share(rank: int | None = None, world_size: int | None = None) -> WorkShare:
    """Explicit flags win; else torchrun (RANK/WORLD_SIZE); else SLURM; else a single process."""
    env = os.environ
    if rank is None:
        rank = int(env.get("RANK", env.get("SLURM_PROCID", 0)))
    if world_size is None:
        world_size = int(env.get("WORLD_SIZE", env.get("SLURM_NTASKS", 1)))
    return WorkShare(rank=rank, world_size=world_size)
