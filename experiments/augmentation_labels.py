"""Do finetuning's augmentations change motion-direction labels? A measurement, not a proof.

A horizontal flip turns "right" into "left", so direction finetuning runs with flip off. The
other per-clip augmentations (RandAugment with rotations, shears and translations, then the
random resized crop) are affine maps applied identically to every frame: they move the object's whole
path, stretch it (the crop's aspect ratio) or turn it (rotate, shear). A turn larger than half a
class sector (45 degrees with 4 classes) would move the motion into the next class, and a small
crop can leave the object outside the view for most of the clip.

This script measures both with the project's own code: trajectories from the renderer
(`generate_trajectory` with a direction class, render settings from a YAML file) drawn as a small
white disk on black, augmented by finetuning's `augment_clip` (colour operations left out, so the disk stays
the brightest thing in the frame). The disk's centroid in the first and last frame where it is
visible gives the motion the model sees; its class is compared with the label.

    .venv/bin/python experiments/augmentation_labels.py --render-config configs/toy/render_112.yaml \
        --set direction_travel_min=0.5 --set direction_travel_max=0.9 --crop-scale 0.08 --crop-scale 0.5
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from smile_data.config import load_settings, parse_set_options
from smile_data.render.direction import direction_label
from smile_data.render.settings import RenderSettings, check_render_settings
from smile_data.render.trajectory import generate_trajectory
from smile_train.data.augment import augment_clip
from smile_train.settings.finetune import FinetuneSettings

GEOMETRIC_OPS = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
MARKER_RADIUS = 2  # px in the rendered clip: small, so a partly visible marker barely moves its centroid
MARKER_THRESHOLD = 200  # the marker is white; the affine fill colour is the ImageNet mean (< 130)
MIN_VISIBLE_FRAMES = 2  # fewer frames with the marker in view show no motion at all


def marker_clip(centres: np.ndarray, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8: black frames with a white disk at each (x, y) centre."""
    clip = np.zeros((len(centres), size, size, 3), np.uint8)
    for frame, (x, y) in zip(clip, centres):
        cv2.circle(frame, (int(round(x)), int(round(y))), MARKER_RADIUS, (255, 255, 255), -1, cv2.LINE_AA)
    return clip


def augment_geometry(clip: np.ndarray, rng: np.random.Generator, s: FinetuneSettings) -> np.ndarray:
    """Finetuning's RandAugment, crop and flip in its order, keeping only the geometric operations."""
    return augment_clip(clip, rng, s, keep_ops=GEOMETRIC_OPS)


def seen_motion(clip: np.ndarray) -> np.ndarray | None:
    """(2,) centroid displacement between the first and last frame showing the marker, or None."""
    bright = clip[..., 0] >= MARKER_THRESHOLD  # (T, S, S)
    visible = np.flatnonzero(bright.reshape(len(clip), -1).any(axis=1))
    if len(visible) < MIN_VISIBLE_FRAMES:
        return None
    first, last = (np.argwhere(bright[t]).mean(axis=0)[::-1] for t in (visible[0], visible[-1]))
    return last - first


def measure(render: RenderSettings, finetune: FinetuneSettings, clips: int, seed: int) -> dict:
    """Fractions of clips whose motion leaves the view or lands in another class."""
    hidden = changed = 0
    for index in range(clips):
        rng = np.random.default_rng([seed, index])
        label = int(rng.integers(render.direction_classes))
        path = generate_trajectory(rng, render, render.frames, render.size, render.size, direction=label)
        motion = seen_motion(augment_geometry(marker_clip(path.centres, render.size), rng, finetune))
        if motion is None:
            hidden += 1
        elif direction_label(tuple(motion), render.direction_classes) != label:
            changed += 1
    return {"clips": clips, "hidden": hidden / clips, "label_changed": changed / clips}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--render-config", help="YAML of RenderSettings (differences), e.g. configs/toy/render_112.yaml")
    parser.add_argument("--finetune-config", help="YAML of FinetuneSettings (differences)")
    parser.add_argument("--crop-scale", type=float, action="append",
                        help="lower bound of the crop's area fraction to try (repeatable; default: the config's)")
    parser.add_argument("--size", type=int, default=112, help="clip side in pixels (default: 112)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip (default: 16)")
    parser.add_argument("--set", action="append", dest="set_options", metavar="KEY=VALUE",
                        help="override a RenderSettings field, e.g. direction_travel_min=0.5 (repeatable)")
    parser.add_argument("--clips", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    overrides = {"label": "motion-direction", "objects": 1, "size": args.size, "frames": args.frames,
                 **parse_set_options(args.set_options)}
    render = load_settings(RenderSettings, args.render_config, overrides)
    check_render_settings(render)
    finetune = load_settings(FinetuneSettings, args.finetune_config, {"input_size": render.size})
    lows = args.crop_scale or [finetune.crop_scale[0]]
    # Every crop with and without RandAugment, flip off; then flip on as the control that the
    # measurement sees a label change (it should change about half of the left / right clips).
    variants = [(low, rand_augment, False) for low in lows for rand_augment in (False, True)]
    variants.append((lows[0], True, True))
    rows = []
    print("| crop area | RandAugment geometry | flip | motion out of view | label changed |")
    print("| --- | --- | --- | --- | --- |")
    for low, rand_augment, flip in variants:
        settings = replace(finetune, crop_scale=(low, finetune.crop_scale[1]), rand_augment=rand_augment, flip=flip)
        row = {"crop_scale": list(settings.crop_scale), "rand_augment": rand_augment, "flip": flip,
               **measure(render, settings, args.clips, args.seed)}
        rows.append(row)
        print(f"| {low:g}-{settings.crop_scale[1]:g} | {'on' if rand_augment else 'off'} | "
              f"{'on' if flip else 'off'} | {row['hidden']:.1%} | {row['label_changed']:.1%} |")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
