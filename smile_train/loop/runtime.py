"""What every trainer command shares: processes, device, precision, optimiser, metrics files.

The parameter groups are ours: timm's (param_groups_weight_decay / _layer_decay) would bring timm
and torchvision for forty lines.

Distributed training touches four visible places in a loop: `setup` here, the DDP wrap, the
gradient sync on the last micro-step, and `teardown`. `is_main` gates all output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist

from smile_data.config import SettingsError
from smile_data.io import write_bytes_atomic
from smile_data.jobs import WorkShare

SEED_MASK = (1 << 63) - 1  # torch seeds are 64-bit
DEFAULT_MASTER_PORT = 29500  # torchrun's default; srun jobs may set MASTER_PORT
# A SLURM node list starts with a host name, then maybe a bracketed range list: `gpu[03-05,09]`
SLURM_NODELIST_HEAD = re.compile(r"([^,\[]+)(?:\[([^\]]+)\])?")


@dataclass
class Runtime:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    dtype: torch.dtype  # autocast dtype; float32 means no autocast

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclass(frozen=True)
class Launch(WorkShare):
    """Where this process sits among the run's processes, as its launcher says: its rank of
    world_size (checked), its rank on this node, and rank 0's address where needed."""

    local_rank: int = 0
    master: str = ""  # host:port of rank 0, for a launcher that does not rendezvous itself
    launcher: str = "single process"


def launch_from_environment(env: dict[str, str] | None = None) -> Launch:
    """torchrun (RANK, WORLD_SIZE, LOCAL_RANK; it also runs the rendezvous), else SLURM's `srun`
    without torchrun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; rank 0 listens on the first
    host of SLURM_JOB_NODELIST at MASTER_PORT, default 29500), else one process."""
    env = os.environ if env is None else env
    try:
        if "RANK" in env:
            return Launch(int(env["RANK"]), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
                          launcher="torchrun")
        tasks = int(env.get("SLURM_NTASKS", 1))
        if "SLURM_PROCID" in env and tasks > 1:
            nodes = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST", "")
            host = env.get("MASTER_ADDR") or first_host(nodes)
            return Launch(int(env["SLURM_PROCID"]), tasks, int(env.get("SLURM_LOCALID", 0)),
                          f"{host}:{int(env.get('MASTER_PORT', DEFAULT_MASTER_PORT))}", "SLURM")
    except ValueError as error:
        raise ValueError(f"launcher variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_PORT or SLURM_PROCID, "
                         f"SLURM_NTASKS, SLURM_LOCALID): {error}") from None
    return Launch()


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: `gpu[03-05,09],cpu1` -> `gpu03` (what `scontrol show
    hostnames` would print first; no command is run)."""
    match = SLURM_NODELIST_HEAD.match(nodelist.strip())
    if not match:
        raise ValueError(f"SLURM node list {nodelist!r}: cannot find the first host; set MASTER_ADDR")
    prefix, ranges = match.group(1), match.group(2)
    return prefix + ranges.split(",")[0].split("-")[0] if ranges else prefix


def setup(device: str = "auto", precision: str = "auto") -> Runtime:
    """Join the process group when launched by torchrun or srun (gloo on CPU, NCCL on CUDA)."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise SettingsError(f"setting 'device' is {device!r}, but torch {torch.__version__} sees no "
                            "CUDA device on this machine; use device=auto or device=cpu")
    launch = launch_from_environment()
    torch_device = torch.device("cuda", launch.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:  # before the process group, so NCCL binds each rank to its own GPU
        torch.cuda.set_device(launch.local_rank)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if launch.world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                init_method=f"tcp://{launch.master}" if launch.master else None,
                                rank=launch.rank, world_size=launch.world_size,
                                device_id=torch_device if use_cuda else None)
    return Runtime(launch.rank, launch.world_size, launch.local_rank, torch_device,
                   resolve_precision(precision, use_cuda))


def resolve_precision(precision: str, use_cuda: bool) -> torch.dtype:
    choices = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if precision == "auto":
        return torch.bfloat16 if use_cuda else torch.float32
    if precision not in choices:
        raise ValueError(f"precision must be auto, bf16, fp16 or fp32, got {precision!r}")
    return choices[precision]


def autocast(runtime: Runtime):
    """bf16/fp16 autocast on the device, or nothing for fp32 (keeps the loop free of branches)."""
    if runtime.dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=runtime.device.type, dtype=runtime.dtype)


def grad_scaler(runtime: Runtime) -> torch.amp.GradScaler:
    """A scaler that is simply disabled unless training in fp16."""
    return torch.amp.GradScaler(runtime.device.type, enabled=runtime.dtype == torch.float16)


def teardown(runtime: Runtime, failed: bool = False) -> None:
    """Leave the process group; after a failure without a barrier, since the other ranks may
    be waiting in a different collective (torchrun then stops them)."""
    if runtime.distributed and dist.is_initialized():
        if not failed:
            dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def process_group(runtime: Runtime):
    """`with process_group(runtime):` around a command's work: teardown on success or failure."""
    try:
        yield runtime
    except BaseException:
        teardown(runtime, failed=True)
        raise
    teardown(runtime)


def seed_step(seed: int, rank: int, step: int) -> None:
    """Seed torch (CPU and CUDA) for one optimiser step from (seed, rank, step).

    Drop path and other in-model randomness then differ between ranks and are a pure function
    of the step, so a resumed run continues exactly without carrying RNG state.
    """
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode(), digest_size=8).digest()
    torch.manual_seed(int.from_bytes(digest, "little") & SEED_MASK)


def wait_for_all(runtime: Runtime) -> None:
    """A barrier: e.g. after rank 0 wrote a file that every rank reads next."""
    if runtime.distributed and dist.is_initialized():
        dist.barrier()


def mean_across_ranks(value: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    if runtime.distributed:
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= runtime.world_size
    return value


def broadcast_object(obj: Any, runtime: Runtime) -> Any:
    if not runtime.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# --- optimiser: parameter groups (weight decay, layer decay), AdamW, rates, restoring -------


def layer_decay_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    weight_decay: float,
    skip: set[str],
    layer_id: Callable[[str], int],
    num_layers: int,
    layer_decay: float,
) -> list[dict[str, Any]]:
    """Parameter groups per (layer, decay or not), each with `lr_scale` = layer_decay^(num_layers-1-id).

    No weight decay on 1-D parameters (norms, biases), the mask token and names in `skip`.
    `layer_id` maps a parameter name to 0 (patch embedding) ... num_layers - 1 (norm and head),
    so the head trains at the full rate and every layer below it at `layer_decay` times the
    rate of the layer above (BEiT / VideoMAE finetuning).
    """
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        no_decay = parameter.ndim <= 1 or name in skip or name.endswith(".bias")
        layer = layer_id(name)
        if not 0 <= layer < num_layers:
            raise ValueError(f"parameter {name}: layer id {layer} outside 0..{num_layers - 1}")
        group = groups.setdefault((layer, no_decay), {
            "params": [], "weight_decay": 0.0 if no_decay else weight_decay,
            "lr_scale": layer_decay ** (num_layers - 1 - layer), "layer": layer,
        })
        group["params"].append(parameter)
    return [groups[key] for key in sorted(groups)]


def weight_decay_groups(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    weight_decay: float,
    skip: set[str],
) -> list[dict[str, Any]]:
    """The groups of `layer_decay_groups` without layers: decayed parameters, then the others."""
    return layer_decay_groups(named_parameters, weight_decay, skip, lambda name: 0, 1, 1.0)


def adamw(groups: list[dict[str, Any]], lr: float, betas: tuple[float, float], device: torch.device, fused: bool):
    """AdamW, fused on CUDA when asked (the reference-style baseline passes fused=False)."""
    use_fused = fused and device.type == "cuda"
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=use_fused or None)


def apply_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to `lr` times its `lr_scale` (1 when the group has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def restore_training_state(
    state: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    source: str = "checkpoint",
) -> int:
    """Load model, optimiser and scaler state of a step checkpoint; return its step."""
    check_same_model(state, model, source)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise ValueError(f"{source}: its step {step!r} is not an integer")
    return step


GEOMETRY_SETTINGS = ("model", "target", "input_size", "frames", "num_classes")


def check_same_model(state: dict[str, Any], model: torch.nn.Module, source: str) -> None:
    """Refuse, naming the settings that differ, a checkpoint whose tensors do not fit `model`."""
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        raise ValueError(f"{source}: holds no model weights")
    own = model.state_dict()
    misfits = sorted(k for k in own if k not in weights or tuple(weights[k].shape) != tuple(own[k].shape))
    if not misfits:
        return
    stored = state.get("settings") if isinstance(state.get("settings"), dict) else {}
    differences = [f"{name} {stored[name]!r}" for name in GEOMETRY_SETTINGS if name in stored]
    raise ValueError(
        f"{source}: a checkpoint of another model ({len(misfits)} tensors missing or of another "
        f"shape, e.g. {misfits[0]}); it was written with {', '.join(differences) or 'unknown settings'}: "
        f"set 'model', 'input_size' and 'frames' to match it, or start a fresh run in another out_dir"
    )


# --- logs --------------------------------------------------------------------------------------


class MetricsLog:
    """JSON lines of metrics, TensorBoard when installed, and a loss-curve PNG at the end."""

    def __init__(self, folder: Path, enabled: bool):
        self.folder, self.enabled = folder, enabled
        self.path = folder / "metrics.jsonl"
        self.tensorboard = None
        self.trimmed = False  # rows of steps a resumed run repeats are dropped at its first write
        if enabled:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(folder / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tensorboard = None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        if not self.trimmed:
            self.drop_rows_from(step)
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tensorboard:
            for key, value in metrics.items():
                self.tensorboard.add_scalar(key, value, step)

    def read(self) -> list[dict[str, float]]:
        """The rows of the file; a line cut short by a kill is skipped."""
        if not self.path.is_file():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
        return rows

    def drop_rows_from(self, step: int) -> None:
        """Keep only rows before `step`: a run resumed from an earlier checkpoint after a kill
        logs those steps again, and the file must hold each step once."""
        self.trimmed = True
        text = "".join(json.dumps(row) + "\n" for row in self.read() if row["step"] < step)
        if self.path.is_file() and self.path.read_text() != text:
            write_bytes_atomic(self.path, text.encode())

    def plot_loss(self, title: str) -> Path | None:
        """Draw loss against step into loss_curve.png."""
        rows = [r for r in self.read() if "loss" in r]
        if not self.enabled or not rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
        axis.plot([r["step"] for r in rows], [r["loss"] for r in rows])
        axis.set_xlabel("step")
        axis.set_ylabel("loss")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        figure.tight_layout()
        path = self.folder / "loss_curve.png"
        tmp = path.with_suffix(".tmp.png")
        figure.savefig(tmp)
        plt.close(figure)
        write_bytes_atomic(path, tmp.read_bytes())
        tmp.unlink()
        return path

    def close(self) -> None:
        if self.tensorboard:
            self.tensorboard.close()
