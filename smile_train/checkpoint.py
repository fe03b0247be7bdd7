"""Checkpoints: written atomically, the last K kept, loaded without unpickling.

A checkpoint is a dict that `torch.load(..., weights_only=True)` reads: tensors, numbers,
strings, lists and dicts only. `model` holds the state dict with VideoMAE / SMILE key names, so
the authors' code reads it as `checkpoint["model"]`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from smile_data.io import atomic_path, remove_stale_temporaries
from smile_data.processes import hold_until_exit

FORMAT = "smile-train-checkpoint"
FORMAT_VERSION = 1
STEP_PATTERN = re.compile(r"^step-(\d{9})\.pt$")
FINAL_NAME = "final.pt"


def step_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}.pt"


def list_step_checkpoints(folder: Path) -> list[Path]:
    """Step checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if STEP_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_PATTERN.match(p.name).group(1)))


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary name and rename: a kill leaves the previous checkpoints intact."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def prune_checkpoints(folder: Path, keep: int) -> None:
    for old in list_step_checkpoints(folder)[: max(0, len(list_step_checkpoints(folder)) - keep)]:
        old.unlink()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load any checkpoint safely: only tensors and plain containers are accepted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a readable checkpoint (weights only): {error}") from None


class RunCheckpoints:
    """A run's checkpoint folder: step-N.pt every few steps (the last `keep` kept) and final.pt.

    Only the main process writes; every process may read.
    """

    def __init__(self, folder: Path, keep: int, is_main: bool):
        self.folder, self.keep, self.is_main = folder, keep, is_main
        self.final = folder / FINAL_NAME

    def resumable(self, resume: bool) -> list[Path]:
        """Step checkpoints to resume from; refuse to start over them without --resume.

        A checkpoint being written when the run was killed left a temporary file: removed here.
        The main process locks the folder first: a second run into it refuses (FolderBusy).
        """
        if self.is_main:
            hold_until_exit(self.folder, "run")
            remove_stale_temporaries(self.folder, is_own=lambda name: bool(STEP_PATTERN.match(name))
                                     or name == FINAL_NAME)
        existing = list_step_checkpoints(self.folder)
        if existing and not resume:
            raise ValueError(f"{self.folder}: holds checkpoints of an earlier run; pass --resume to continue it")
        return existing

    def save_step(self, step: int, state: dict[str, Any]) -> None:
        if self.is_main:
            save_checkpoint(step_path(self.folder, step), state)
            prune_checkpoints(self.folder, self.keep)

    def save_final(self, step: int, state: dict[str, Any]) -> None:
        """The last step's checkpoint, and the same file as final.pt (the run's done marker)."""
        if self.is_main:
            last = step_path(self.folder, step)
            save_checkpoint(last, state)
            with atomic_path(self.final) as tmp:  # a hard link: written once, survives pruning
                os.link(last, tmp)
            prune_checkpoints(self.folder, self.keep)
