"""Synthetic clips (a coloured block moving over a smooth noise field) for tests and benchmarks.

`SyntheticClips` is a picklable, deterministic `run_task` for `write_dataset`: it exercises the
shard writer, reader, validator and preview without an object bank or videos. `fail_task` and
`delay_s` exist for the error and kill tests. Imported as `tests.shards.synthetic_clips` (the
repository root on the path), also by `benchmarks/bench_reader.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from smile_data.render.clip import encode_frame as encode_bgr_frame
from smile_data.shards import layout
from smile_data.shards.runner import ShardSample, TaskResult

BACKGROUND_GRID = 8        # the noise field is this many cells across, then smoothly upscaled
BLOCK_FRACTION = 0.3       # block side / clip side
LABEL_COUNT = 10
OBJECT_NAME = "synthetic_block"


@dataclass(frozen=True)
class SyntheticClips:
    """`run_task(i)` -> the clips `i * samples_per_task ...` (see module docstring)."""

    samples_per_task: int = 2  # clips per task
    frames: int = 4
    height: int = 32           # clip size in pixels
    width: int = 32
    codec: str = "jpg"         # or "png"
    seed: int = 0
    skip_every: int = 0        # every skip_every-th task drops its last clip as "skipped"
    labelled: bool = True
    delay_s: float = 0.0       # sleep per task, so that a run can be interrupted in tests
    fail_task: int = -1        # this task raises RuntimeError (tests of error handling)
    jpeg_quality: int = 90

    def clip(self, clip_index: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Frames (T, H, W, 3) uint8 RGB and the schema-1 metadata of clip `clip_index`."""
        rng = np.random.default_rng([self.seed, clip_index])
        grid = rng.integers(0, 256, (BACKGROUND_GRID, BACKGROUND_GRID, 3), dtype=np.uint8)
        background = cv2.resize(grid, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        side_y = max(1, int(self.height * BLOCK_FRACTION))
        side_x = max(1, int(self.width * BLOCK_FRACTION))
        start = rng.uniform([0, 0], [self.width - side_x, self.height - side_y])
        end = rng.uniform([0, 0], [self.width - side_x, self.height - side_y])
        colour = rng.integers(0, 256, 3).tolist()
        frames = np.repeat(background[None], self.frames, axis=0)  # (T, H, W, 3)
        boxes = []
        for t in range(self.frames):
            x0, y0 = np.round(start + (end - start) * t / max(1, self.frames - 1)).astype(int)
            frames[t, y0:y0 + side_y, x0:x0 + side_x] = colour
            boxes.append([int(x0), int(y0), int(x0 + side_x), int(y0 + side_y)])
        label = clip_index % LABEL_COUNT if self.labelled else None
        metadata = {
            "schema_version": layout.SCHEMA_VERSION, "key": layout.sample_key(clip_index),
            "seed": int(clip_index), "frames": self.frames, "height": self.height,
            "width": self.width, "codec": self.codec,
            "background": {"kind": "noise", "source": None, "frame_indices": None},
            "objects": [{"kind": "object", "bank_path": None, "lvis_id": None,
                         "name": OBJECT_NAME, "boxes": boxes, "angles": [0.0] * self.frames}],
            "label": label,
        }
        return frames, metadata

    def encode_frame(self, frame: np.ndarray) -> bytes:
        bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality] if self.codec == "jpg" else []
        return encode_bgr_frame(bgr, self.codec, params)

    def sample(self, clip_index: int) -> ShardSample:
        frames, metadata = self.clip(clip_index)
        members = {layout.frame_extension(t, self.codec): self.encode_frame(frame)
                   for t, frame in enumerate(frames)}
        members[layout.METADATA_EXTENSION] = layout.encode_metadata(metadata)
        if metadata["label"] is not None:
            members[layout.LABEL_EXTENSION] = layout.encode_label(metadata["label"])
        row = {"source": f"synthetic:{clip_index}", "seed": metadata["seed"],
               "label": metadata["label"], "background": "noise"}
        return ShardSample(metadata["key"], members, row)

    def __call__(self, task_index: int) -> TaskResult:
        if self.delay_s:
            time.sleep(self.delay_s)
        if task_index == self.fail_task:
            raise RuntimeError(f"synthetic failure in task {task_index}")
        clips = range(task_index * self.samples_per_task, (task_index + 1) * self.samples_per_task)
        skipped = []
        if self.skip_every and task_index % self.skip_every == self.skip_every - 1:
            skipped = [{"source": f"synthetic:{clips[-1]}", "reason": "dropped by skip_every"}]
            clips = clips[:-1]
        return TaskResult([self.sample(i) for i in clips], skipped)
