"""`RenderTask`: task t renders clips t*variants .. t*variants+variants-1.

A task picks one background kind (weighted by --bg) and, for video and image kinds, one source;
a video is decoded once for all the task's clips. Both are pure functions of (seed, task index):
the kind from a generator seeded with [seed, task, KIND_STREAM], the source from a seeded
permutation of the source list per pass over it (epoch), so every source is used once before
any is used twice. When a source cannot be read the task reports it and moves on to the next
source of the permutation (at most `source_retries` times); each clip keeps its own draws.

The task carries its inputs: the settings, the source lists and the object bank listed when the
run started, so every worker renders from the same inputs the fingerprint describes.
write_dataset pickles it once per worker process; what it builds while running (decoded
sprites, source permutations) stays on the instance in that process and is never pickled.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from smile_data.images import resize_short_side
from smile_data.objects.bank import BankObject, ObjectBank
from smile_data.render import backgrounds as bg
from smile_data.render.clip import clip_metadata, clip_rng, draw_overlays, render_frames, sample_members
from smile_data.render.picker import ObjectPicker
from smile_data.render.settings import RenderSettings, parse_backgrounds
from smile_data.render.trajectory import draw_index
from smile_data.render.sources import (
    Source, SourceError, failure_reason, prepare_process, read_image, read_video_frames,
)
from smile_data.shards import layout
from smile_data.shards.runner import ShardSample, TaskResult

KIND_STREAM = 1
PERMUTATION_STREAM = 2
SOURCE_GROUPS = {"natural": 0, "frame": 0, "image": 1}  # natural and frame share the video order


@dataclass
class Background:
    clips: list[np.ndarray]  # per clip (T, S, S, 3) BGR uint8 (read-only for still kinds)
    descriptions: list[dict[str, Any]]  # per clip metadata["background"]
    source: Source | None


@dataclass
class RenderTask:
    """Callable run_task for write_dataset (see the module docstring)."""

    settings: RenderSettings
    videos: list[Source] = field(default_factory=list)
    images: list[Source] = field(default_factory=list)
    bank: ObjectBank | None = None  # opened when overlay == "objects"

    def __post_init__(self) -> None:
        s = self.settings
        self._kinds, self._weights = parse_backgrounds(s.backgrounds)
        self._picker = ObjectPicker(self.bank, s) if self.bank is not None else None
        self._orders: dict[tuple[int, int], np.ndarray] = {}  # (source group, epoch) -> order

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings, "videos": self.videos, "images": self.images,
                "bank": self.bank}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state)

    @property
    def task_count(self) -> int:
        return math.ceil(self.settings.clips / self.settings.variants)

    def clip_indices(self, task_index: int) -> range:
        first = task_index * self.settings.variants
        return range(first, min(first + self.settings.variants, self.settings.clips))

    def background_kind(self, task_index: int) -> str:
        rng = np.random.default_rng([self.settings.seed, task_index, KIND_STREAM])
        return self._kinds[draw_index(rng, self._weights)]

    def candidate_sources(self, kind: str, task_index: int) -> list[Source]:
        """The task's source, then the fallbacks tried when it cannot be read."""
        pool = self.images if kind == "image" else self.videos
        if not pool:
            raise ValueError(f"background {kind!r} needs {'--images' if kind == 'image' else '--videos'}")
        tries = min(len(pool), 1 + self.settings.source_retries)
        return [pool[self._source_index(kind, task_index + k, len(pool))] for k in range(tries)]

    def _source_index(self, kind: str, position: int, count: int) -> int:
        epoch, offset = divmod(position, count)
        key = (SOURCE_GROUPS[kind], epoch)
        orders = self._orders
        if key not in orders:
            if len(orders) > 2:
                orders.clear()  # a task only ever needs this epoch and the next
            seed = [self.settings.seed, PERMUTATION_STREAM, SOURCE_GROUPS[kind], epoch]
            orders[key] = np.random.default_rng(seed).permutation(count)
        return int(orders[key][offset])

    def __call__(self, task_index: int) -> TaskResult:
        prepare_process()
        s = self.settings
        indices = self.clip_indices(task_index)
        rngs = [clip_rng(s.seed, i) for i in indices]
        draws = [bg.draw_background(rng) for rng in rngs]
        kind = self.background_kind(task_index)
        skipped: list[dict[str, str]] = []
        background = self._background(kind, task_index, draws, rngs, skipped)
        if background is None:
            return TaskResult(samples=[], skipped=skipped)
        samples = [
            self._render_clip(index, rng, clip, description, background.source, kind, skipped)
            for index, rng, clip, description in zip(indices, rngs, background.clips, background.descriptions)
        ]
        return TaskResult(samples=samples, skipped=skipped)

    def _background(self, kind: str, task_index: int, draws: list[bg.BackgroundDraw],
                    rngs: list[np.random.Generator], skipped: list[dict[str, str]]) -> Background | None:
        s = self.settings
        if kind in ("black", "noise"):
            clips = [bg.black_clip(s) if kind == "black" else bg.noise_clip(rng, s) for rng in rngs]
            described = [{"kind": kind, "source": None, "frame_indices": None} for _ in rngs]
            return Background(clips, described, None)
        for source in self.candidate_sources(kind, task_index):
            try:
                return self._from_source(kind, source, draws)
            except (SourceError, cv2.error) as error:
                skipped.append({"source": source.name, "reason": failure_reason(error)})
        return None

    def _from_source(self, kind: str, source: Source, draws: list[bg.BackgroundDraw]) -> Background:
        s = self.settings
        shrink = functools.partial(resize_short_side, short_side=s.decode_short_side)
        if kind == "image":
            image = shrink(read_image(source.path))
            made = [bg.still_clip(image, draw, s) for draw in draws]
            return _described(made, kind, source, [None] * len(draws))

        def frame_plan(length: int) -> list[list[int]]:
            if kind == "natural":
                return [bg.natural_indices(d, length, s) for d in draws]
            return [bg.single_frame_indices(d.position, length, s.frames) for d in draws]

        decoded, length = read_video_frames(
            source.path, lambda length: sorted({i for plan in frame_plan(length) for i in plan}), shrink)
        plans = frame_plan(length)
        if kind == "natural":
            made = [bg.natural_clip(decoded, length, draw, s) for draw in draws]
        else:
            made = [bg.still_clip(decoded[plan[0]], draw, s) for plan, draw in zip(plans, draws)]
        return _described(made, kind, source, plans)

    def _render_clip(self, clip_index: int, rng: np.random.Generator, clip: np.ndarray,
                     background: dict[str, Any], source: Source | None, kind: str,
                     skipped: list[dict[str, str]]) -> ShardSample:
        s = self.settings
        overlays = draw_overlays(rng, s, clip, lambda r: self._pick_object(r, skipped))
        objects, frames = render_frames(clip, overlays, s)
        metadata = clip_metadata(clip_index, s.seed, clip, s.codec, background, objects,
                                 label=overlays.label)
        row = {
            "clip_index": clip_index, "seed": s.seed, "background": kind,
            "source": source.name if source else None, "objects": len(objects),
            "object_names": "|".join(o["name"] or o["kind"] for o in objects),
            "label": overlays.label,
        }
        return ShardSample(key=layout.sample_key(clip_index), members=sample_members(frames, metadata),
                           row=row)

    def _pick_object(self, rng: np.random.Generator,
                     skipped: list[dict[str, str]]) -> tuple[BankObject, np.ndarray]:
        """A bank object and its sprite; an undecodable object is reported and redrawn."""
        return self._picker.pick(rng, skipped)


def _described(made: list[tuple[np.ndarray, dict]], kind: str, source: Source,
               plans: list[list[int] | None]) -> Background:
    clips = [clip for clip, _ in made]
    descriptions = [
        {"kind": kind, "source": source.name, "frame_indices": plan, **geometry}
        for (_, geometry), plan in zip(made, plans)
    ]
    return Background(clips, descriptions, source)
