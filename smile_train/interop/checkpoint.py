"""Checkpoints: written atomically, the last K kept, loaded without unpickling, described.

A checkpoint is a dict that `torch.load(..., weights_only=True)` reads: tensors, numbers,
strings, lists and dicts only. `model` holds the state dict with VideoMAE / SMILE key names, so
the authors' code reads it as `checkpoint["model"]`.

`read_checkpoint` describes any supported file, this project's pretraining / finetuning
checkpoints and the authors' VideoMAE / SMILE files (docs/method.md §7), as a `CheckpointInfo` (layout,
model size, geometry, classes); evaluation, probing and finetuning build their models from it.
The key names of foreign files are mapped in checkpoint_keys.py.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from smile_data.io import atomic_path, remove_stale_temporaries
from smile_data.processes import hold_until_exit
from smile_train.interop.checkpoint_archive import check_archive, load_problem
from smile_train.interop.checkpoint_keys import POSITION_TABLES, detect_layout, unwrap_state
from smile_train.model.geometry import FRAMES, IMG_SIZE
from smile_train.model.vit import SIZES, ClassifierModel, VideoViTEncoder, size_spec
from smile_train.settings.checks import MAX_FRAMES, MAX_INPUT_SIZE

FORMAT = "smile-train-checkpoint"
FORMAT_VERSION = 1
STEP_PATTERN = re.compile(r"^step-(\d{9})\.pt\Z")
FINAL_NAME = "final.pt"
MAX_TOKENS = 32 * 1568  # tokens per clip; 32x the reference 8 x 14 x 14 (position tables grow with it)
BLOCK_PATTERN = re.compile(r"^blocks\.(\d+)\.")
# Where torch.load's refusal of an unsafe object says why, and where its advice starts.


def step_path(folder: Path, step: int) -> Path:
    return folder / f"step-{step:09d}.pt"


def list_step_checkpoints(folder: Path) -> list[Path]:
    """Step checkpoints in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if STEP_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(STEP_PATTERN.match(p.name).group(1)))


class CheckpointWriteError(OSError):
    """A checkpoint that could not be written (a full disk, most often); the message names the
    file and the bytes it needs."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary name and rename: a kill or a full disk leaves the previous
    checkpoints intact. A disk without room for the tensors is refused before writing, and a
    write that fails says what it needed (CheckpointWriteError) instead of torch's message."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    needed = tensor_bytes(payload)
    free = shutil.disk_usage(path.parent).free
    if needed > free:
        raise CheckpointWriteError(f"{path}: the disk is full: the checkpoint needs {needed} bytes "
                                   f"of tensors, {free} bytes are free there; the earlier "
                                   "checkpoints are kept")
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except (OSError, RuntimeError) as error:  # torch reports a failed write as a RuntimeError
        free = shutil.disk_usage(path.parent).free
        reason = " ".join(str(error).split())[:200]
        raise CheckpointWriteError(f"{path}: the checkpoint ({needed} bytes of tensors) could not "
                                   f"be written, {free} bytes are free there ({reason}); the "
                                   "earlier checkpoints are kept") from None


def tensor_bytes(tree: Any) -> int:
    """Bytes of the tensors in nested dicts, lists and tuples (each storage counted once)."""
    storages: dict[int, int] = {}
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storages[item.untyped_storage().data_ptr()] = item.untyped_storage().nbytes()
        elif isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, (list, tuple)):
            stack += item
    return sum(storages.values())


def prune_checkpoints(folder: Path, keep: int) -> None:
    for old in list_step_checkpoints(folder)[: max(0, len(list_step_checkpoints(folder)) - keep)]:
        old.unlink()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load any checkpoint safely: its zip records checked first (checkpoint_archive.py), then
    only tensors and plain containers are accepted."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    check_archive(path)  # records that could inflate inside torch.load are refused first
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a readable checkpoint: {load_problem(error)}") from None


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


# --- reading: what a checkpoint holds, and the models built from it -------------------------------


@dataclass
class CheckpointInfo:
    """What a checkpoint holds, independent of who wrote it."""

    path: str
    layout: str  # "pretrain" (encoder.* + decoder), "classifier" (blocks.* + head), "encoder"
    size: str  # key of smile_train.model.SIZES
    state: dict[str, torch.Tensor]  # unwrapped tensors, position tables removed
    input_size: int
    frames: int
    tubelet: int
    patch: int
    num_classes: int = 0  # classifier head outputs (0: no head)
    class_names: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)  # the training settings, when stored

    @property
    def encoder_prefix(self) -> str:
        return "encoder." if self.layout == "pretrain" else ""

    @property
    def geometry(self) -> dict[str, int]:
        """The clip geometry as model constructor arguments."""
        return {"img_size": self.input_size, "frames": self.frames, "tubelet": self.tubelet, "patch": self.patch}


def infer_size(state: dict[str, torch.Tensor], prefix: str, declared: str | None, where: str) -> str:
    """The SIZES entry whose width and depth the weights have (the declared one when it fits)."""
    width = state[f"{prefix}patch_embed.proj.weight"].shape[0]
    depth = len({m.group(1) for k in state if (m := BLOCK_PATTERN.match(k[len(prefix):]))})
    fits = [name for name, spec in SIZES.items() if (spec.width, spec.depth) == (width, depth)]
    if declared in fits:
        return declared
    if not fits:
        known = ", ".join(f"{n} ({s.width} wide, {s.depth} deep)" for n, s in SIZES.items())
        raise ValueError(f"{where}: a {width}-wide, {depth}-deep ViT is not a known size ({known})")
    return fits[0]


def read_checkpoint(path: str | Path, input_size: int = 0, frames: int = 0) -> CheckpointInfo:
    """Read a checkpoint safely (weights only) and describe it; ValueError if it fits no layout.

    Clip geometry: the arguments when > 0, else the stored settings, else 224 px x 16 frames
    (the authors' files store none; position tables are rebuilt, never read from files).
    """
    raw = load_checkpoint(path)
    try:
        state = unwrap_state(raw)
        layout = detect_layout(set(state))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    state = {k: v for k, v in state.items() if k.split(".")[-1] not in POSITION_TABLES}
    settings = raw.get("settings") if isinstance(raw.get("settings"), dict) else {}
    prefix = "encoder." if layout == "pretrain" else ""
    kernel = patch_kernel_shape(state, prefix, path)
    size = infer_size(state, prefix, settings.get("model"), str(path))
    head = state.get("head.weight")
    names = raw.get("class_names") if isinstance(raw.get("class_names"), list) else []
    info = CheckpointInfo(
        path=str(path), layout=layout, size=size, state=state,
        input_size=input_size or _stored_number(settings, "input_size", IMG_SIZE, path),
        frames=frames or _stored_number(settings, "frames", FRAMES, path),
        tubelet=int(kernel[2]), patch=int(kernel[3]),
        num_classes=int(head.shape[0]) if head is not None else 0,
        class_names=[str(n) for n in names], settings=settings,
    )
    check_geometry(info)
    return info


def patch_kernel_shape(state: dict[str, torch.Tensor], prefix: str, path: str | Path) -> torch.Size:
    """(width, 3, tubelet, patch, patch) of the patch embedding; ValueError naming the file when a
    file of a known layout lacks it or holds another shape."""
    kernel = state.get(f"{prefix}patch_embed.proj.weight")
    if kernel is None or kernel.dim() != 5:
        found = "missing" if kernel is None else f"of shape {tuple(kernel.shape)}"
        raise ValueError(f"{path}: {prefix}patch_embed.proj.weight is {found}, expected a "
                         "(width, 3, tubelet, patch, patch) video patch kernel")
    return kernel.shape


def _stored_number(settings: dict[str, Any], name: str, default: int, path: str | Path) -> int:
    value = settings.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{path}: stored setting {name!r} is {value!r}, not an integer")
    return value


def check_geometry(info: CheckpointInfo) -> None:
    """Refuse, before any model is allocated, a clip geometry no model of this project has.

    The geometry comes from the file's stored settings (or the command line): a stored
    input_size of 100000 would otherwise allocate a position table of many gigabytes.
    """
    where = f"{info.path}: input_size {info.input_size} x frames {info.frames}"
    if not (0 < info.input_size <= MAX_INPUT_SIZE and 0 < info.frames <= MAX_FRAMES):
        raise ValueError(f"{where} is outside 1..{MAX_INPUT_SIZE} px x 1..{MAX_FRAMES} frames")
    if info.patch < 1 or info.tubelet < 1 or info.input_size % info.patch or info.frames % info.tubelet:
        raise ValueError(f"{where} does not split into {info.tubelet}x{info.patch}x{info.patch} tubelets")
    tokens = (info.input_size // info.patch) ** 2 * (info.frames // info.tubelet)
    if tokens > MAX_TOKENS:
        raise ValueError(f"{where} with {info.patch}-px patches makes {tokens} tokens, over {MAX_TOKENS}")


def classifier_from_checkpoint(info: CheckpointInfo, **options) -> ClassifierModel:
    """The finetuned ClassifierModel of a classifier checkpoint, weights loaded strictly."""
    if info.layout != "classifier" or not info.num_classes:
        raise ValueError(f"{info.path}: holds a {info.layout} model without a classification head; "
                         "finetune it first (`smile-train finetune --init-from`), or use linear-probe")
    model = ClassifierModel(info.size, info.num_classes, **info.geometry, **options)
    model.load_state_dict(info.state, strict=True)
    return model


def feature_encoder_from_checkpoint(info: CheckpointInfo) -> torch.nn.Module:
    """The frozen backbone of any checkpoint: videos (B, 3, T, H, W) -> pooled features (B, C).

    Pretraining checkpoints: mean over the encoder's normalised tokens. Finetuned ones: the
    classifier's pre-logits (mean pool, then fc_norm).
    """
    if info.layout == "classifier":
        state = {k: v for k, v in info.state.items() if not k.startswith("head.")}
        model = ClassifierModel(info.size, 0, **info.geometry)  # no head: it returns its pre-logits
        model.load_state_dict(state, strict=True)
        return model.eval()
    spec = size_spec(info.size)
    encoder = VideoViTEncoder(spec.width, spec.depth, spec.heads, info.input_size, info.frames,
                              info.tubelet, info.patch)
    prefix = info.encoder_prefix
    encoder.load_state_dict({k[len(prefix):]: v for k, v in info.state.items() if k.startswith(prefix)
                             and k[len(prefix):].startswith(("patch_embed.", "blocks.", "norm."))}, strict=True)
    return _MeanTokens(encoder).eval()


class _MeanTokens(torch.nn.Module):
    def __init__(self, encoder: VideoViTEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, videos: torch.Tensor) -> torch.Tensor:
        return self.encoder(videos).mean(dim=1)  # (B, width)
