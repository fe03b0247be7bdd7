"""`PackTask`: natural clips of real (optionally labelled) videos, without overlays.

Task t is video t of the list: it is decoded once and cut into `clips_per_video` clips whose
starts are evenly spaced (the centres of equal segments of the usable range), so the output is
deterministic without any random draw. Frames are resized so their short side is `short_side`
(aspect kept) and the trainer can still crop. Short videos follow the same VideoMAE rule as
render: indices past the end are clamped to the last frame. The task carries the video list
the run started with (write_dataset pickles it once per worker process).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from smile_data.images import resize_short_side
from smile_data.render.clip import clip_metadata, encode_frames, sample_members
from smile_data.render.settings import PackSettings
from smile_data.render.sources import (
    Source, SourceError, failure_reason, prepare_process, read_video_frames,
)
from smile_data.shards import layout
from smile_data.shards.runner import ShardSample, TaskResult


def packed_clip_indices(length: int, s: PackSettings) -> list[list[int]]:
    """Frame indices of each of the video's clips: evenly spaced starts, clamped at the end."""
    span = (s.frames - 1) * s.stride + 1
    room = max(length - span, 0)
    plans = []
    for j in range(s.clips_per_video):
        start = int(np.floor(room * (j + 0.5) / s.clips_per_video + 0.5)) if room else 0
        plans.append(np.minimum(start + np.arange(s.frames) * s.stride, length - 1).tolist())
    return plans


@dataclass
class VideoListTask:
    """A run_task for write_dataset over a list of videos: task t handles video t."""

    settings: PackSettings
    videos: list[Source]

    @property
    def task_count(self) -> int:
        return len(self.videos)


class PackTask(VideoListTask):
    """Task t packs video t of the list as `clips_per_video` clips of frames."""

    def __call__(self, task_index: int) -> TaskResult:
        prepare_process()
        s = self.settings
        source = self.videos[task_index]
        try:
            decoded, length = read_video_frames(
                source.path,
                lambda length: sorted({i for plan in packed_clip_indices(length, s) for i in plan}),
                lambda frame: resize_short_side(frame, s.short_side, upscale=True),
            )
        except (SourceError, cv2.error) as error:
            return TaskResult(samples=[], skipped=[{"source": source.name, "reason": failure_reason(error)}])
        samples = []
        for j, indices in enumerate(packed_clip_indices(length, s)):
            clip_index = task_index * s.clips_per_video + j
            clip = np.stack([decoded[i] for i in indices])  # (T, h, w, 3) BGR
            background = {"kind": "natural", "source": source.name, "frame_indices": indices}
            metadata = clip_metadata(clip_index, s.seed, clip, s.codec, background, [], source.label)
            row = {"clip_index": clip_index, "seed": s.seed, "background": "natural",
                   "source": source.name, "label": source.label, "objects": 0}
            members = sample_members(encode_frames(clip, s.codec, s.quality, s.png_compression), metadata)
            samples.append(ShardSample(key=layout.sample_key(clip_index), members=members, row=row))
        return TaskResult(samples=samples, skipped=[])
