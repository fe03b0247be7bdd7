"""Where a stage's clips come from: one or more sources, each with its own sampling settings.

A source is a set of shards. Each sample is one of two kinds, told apart by its members:
    clip    `<key>.NN.jpg|png` frames + `<key>.json` (`smile-data render` / `pack`): T frames
            already decoded to the clip's size, maybe with objects and their boxes;
    video   `<key>.mp4` + `<key>.json` (`smile-data pack --store video`, or video2dataset's
            layout with a `.txt` caption): only the T frames the temporal draw picks are
            decoded, from memory, within `VideoLimits`.
Every sample then goes through the same steps, each drawing from the sample's own generator in
this order: temporal draw (videos), crop, flip, overlays. A sample that cannot be read raises
ValueError (the stream counts it as corrupt and goes on).

A stage lists its sources in `sources:`, each entry holding only what differs from the stage's
own data settings (which alone make the single source of a stage without a list):

    overlay: objects            # stage-wide defaults
    bank: work/bank
    sources:
      - {shards: "work/shards/noise/*.tar", weight: 1, overlay: none, crop: none}
      - {shards: "work/shards/videos/*.tar", weight: 1, stride: 2}
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from smile_data.config import SettingsError, apply_overrides, inherited_values
from smile_data.images import FLIP_PROBABILITY
from smile_data.sampling import (
    MultiScaleCrop,
    VideoSampling,
    center_square_box,
    crop_flip_boxes,
    decode_crop_flip,
    hflip,
    multiscale_crop_box,
    training_indices,
)
from smile_data.shards import layout, reader
from smile_data.shards.video_sample import VideoSample, decode_video_sample, is_video_sample, open_video_sample
from smile_data.video import VideoLimits
from smile_train.data.augment_device import check_frame_size
from smile_train.data.overlays import LoaderOverlays, loader_render_settings
from smile_train.settings.checks import check_settings

MAX_SOURCES = 64  # each source keeps its own shard stream and shuffle buffer in every worker
MAX_WEIGHT = 1e6


@dataclass
class SourceSampling(MultiScaleCrop, VideoSampling):
    """What a source's samples go through: the temporal draw (videos), crop, flip, overlays.

    A pretraining stage's own data settings (PretrainSettings derives from this class); a
    `sources:` entry overrides any of them for its source. Defaults: docs/method.md §4's K400
    values (temporal window at stride 4, multi-scale crop scales and offsets).
    """

    crop: str = "none"  # multiscale (docs/method.md §4) | none (centre square resized to input_size)
    flip: bool = True  # Kinetics yes, SSv2 no
    overlay: str = "none"  # objects | patches | none: drawn in the loader after the crop
    bank: str = ""  # object bank folder (overlay objects)
    overlay_settings: dict[str, Any] = field(default_factory=dict)  # any `smile-data render` setting


@dataclass
class SourceSettings(SourceSampling):
    """One source of clips: its shards, its share of the stage's clips and its sampling."""

    shards: str = ""  # paths, globs, brace patterns or URLs, comma-separated
    weight: float = 1.0  # share of the stage's clips drawn from this source (normalised)


def check_source(s: SourceSettings, where: str) -> None:
    """A source entry's values, by the rules the stage's own settings pass (smile_train/settings/checks.py)."""
    check_settings(s, where)  # temporal, stride, crop, crop_scales, ...: an entry may override them
    if not s.shards:
        raise SettingsError(f"{where}: no shards given")
    if not 0 < s.weight <= MAX_WEIGHT:
        raise SettingsError(f"{where}: weight {s.weight} must be > 0 and at most {MAX_WEIGHT}")


def base_source(settings: VideoSampling, shards: str) -> SourceSettings:
    """The source a command's own data settings describe: a pretraining stage's every sampling
    setting (SourceSampling), finetuning's video sampling (the crop and flip are its own)."""
    part = SourceSampling if isinstance(settings, SourceSampling) else VideoSampling
    return SourceSettings(shards=shards, **inherited_values(settings, part))


def stage_sources(settings: Any) -> list[SourceSettings]:
    """The sources of a pretraining stage: its `sources` list over its own data settings."""
    base = base_source(settings, settings.shards)
    entries = settings.sources or [{}]
    if len(entries) > MAX_SOURCES:
        raise SettingsError(f"sources: {len(entries)} entries, at most {MAX_SOURCES}")
    sources = []
    for number, entry in enumerate(entries, start=1):
        where = f"sources[{number}]" if settings.sources else "data settings"
        if not isinstance(entry, dict):
            raise SettingsError(f"{where}: expected a mapping of source settings, got {entry!r}")
        source = apply_overrides(base, entry, source=where)
        check_source(source, where)
        loader_render_settings(source.overlay, source.bank, source.overlay_settings,
                               settings.input_size, settings.frames, where)
        sources.append(source)
    return sources


@dataclass
class Clip:
    """One sample ready for masking: frames (T, S, S, 3) uint8 RGB, boxes (T, K, 4) of every
    object (from the shard and from the loader's overlays) in clip pixels, label or None.

    With the crop left to the training device (`augment_device: device`), frames are the
    sample's whole decoded frames (T, H, W, 3) and `device_crop` / `device_flip` what the device
    does to them (augment_device.crop_flip_batch); the boxes are already where they will land."""

    key: str
    frames: np.ndarray
    boxes: np.ndarray
    label: int | None
    device_crop: tuple[int, int, int, int] | None = None  # x0, y0, w, h in the frames
    device_flip: bool = False


def object_boxes(metadata: dict[str, Any], object_cells: str) -> np.ndarray:
    """(T, K, 4) boxes the trajectory mask is built from: the shards store each object's
    unrotated box and its angle per frame; "rotated" turns the box into its rotated bounds."""
    return layout.footprint_boxes(metadata) if object_cells == "rotated" else layout.boxes_array(metadata)


def mask_boxes(frames: int, objects: list[dict[str, Any]], object_cells: str) -> np.ndarray:
    """object_boxes of a clip's objects (a shard's or the loader's overlays), float32."""
    return object_boxes({"frames": frames, "objects": objects}, object_cells).astype(np.float32)


@contextlib.contextmanager
def errors_named(video: VideoSample, raw: dict[str, Any]) -> Iterator[None]:
    """Decoder errors (VideoError is a ValueError) name the shard (when the loader recorded
    it), the sample and its video member."""
    try:
        yield
    except ValueError as error:
        shard = raw.get(layout.SHARD_FIELD)
        where = f"shard {shard}: " if shard else ""
        raise ValueError(f"{where}sample {video.key}: member {video.key}.{video.extension}: {error}") from None


class SourceSampler:
    """Turns raw samples of one source into Clips; one instance per loader worker."""

    def __init__(self, source: SourceSettings, input_size: int, frames: int,
                 object_cells: str = "released", limits: VideoLimits | None = None, crop_on_device: bool = False):
        self.source, self.input_size, self.frames = source, input_size, frames
        self.object_cells = object_cells  # which boxes of an object the masks use (masking.py)
        # clip samples without loader overlays leave their crop and flip to the training device
        self.crop_on_device = crop_on_device
        self.limits = limits or VideoLimits()
        render = loader_render_settings(source.overlay, source.bank, source.overlay_settings,
                                        input_size, frames, "source")
        self.overlays = LoaderOverlays(render)

    def decode(self, raw: dict[str, Any], rng: np.random.Generator) -> tuple[str, np.ndarray, list, int | None]:
        """(key, frames (T, H, W, 3), objects already in the clip, label) of a raw sample."""
        if not is_video_sample(raw):
            clip = reader.decode_sample(raw)
            if clip.frames.shape[0] != self.frames:
                raise ValueError(f"sample {clip.key}: {clip.frames.shape[0]} frames, settings say {self.frames}")
            return clip.key, clip.frames, list(clip.metadata.get("objects", [])), clip.label
        video = decode_video_sample(raw, self.source.label_field)
        with errors_named(video, raw), open_video_sample(video, self.limits) as opened:
            frames = opened.frames(self._frame_indices(rng, opened.info.frames))
        return video.key, frames, [], video.label

    def _frame_indices(self, rng: np.random.Generator, length: int) -> np.ndarray:
        return training_indices(rng, self.source.temporal, length, self.frames, self.source.stride)

    def _crop_box(self, rng: np.random.Generator, height: int, width: int) -> tuple[int, int, int, int]:
        s = self.source
        if s.crop == "multiscale":
            return multiscale_crop_box(rng, height, width, self.input_size, tuple(s.crop_scales),
                                       s.crop_max_distort, s.crop_offsets)
        return center_square_box(height, width)

    def _cropped_video(self, raw: dict[str, Any], rng: np.random.Generator) -> Clip:
        """A video sample's clip, frames (T, S, S, 3): the temporal draw, then
        the crop drawn on the video's frame size, decoded and converted for the crop only, then
        the flip."""
        video = decode_video_sample(raw, self.source.label_field)
        with errors_named(video, raw), open_video_sample(video, self.limits) as opened:
            indices = self._frame_indices(rng, opened.info.frames)
            box = self._crop_box(rng, opened.info.height, opened.info.width)
            frames = opened.frames(indices, crop=box, size=self.input_size)
        boxes = mask_boxes(frames.shape[0], [], self.object_cells)
        if self.source.flip and rng.random() < FLIP_PROBABILITY:
            frames, boxes = hflip(frames, boxes, in_place=frames.flags.writeable)  # ours alone
        return Clip(video.key, frames, boxes, video.label)

    def _clip_sample(self, raw: dict[str, Any], rng: np.random.Generator) -> Clip:
        """A clip sample's crop and flip drawn from its frame size (nothing else is drawn before
        them), then each frame decoded straight into its cropped, resized, mirrored place; or,
        with the crop on the device, decoded whole (the same pixels once the device crops)."""
        clip = reader.open_sample(raw)
        if len(clip.frames) != self.frames:
            raise ValueError(f"sample {clip.key}: {len(clip.frames)} frames, settings say {self.frames}")
        boxes = mask_boxes(self.frames, list(clip.metadata.get("objects", [])), self.object_cells)
        box = self._crop_box(rng, clip.height, clip.width)
        flip = self.source.flip and rng.random() < FLIP_PROBABILITY
        if self.crop_on_device and not self.overlays.active:
            check_frame_size(clip.key, clip.height, clip.width)
            boxes = crop_flip_boxes(boxes, box, clip.height, clip.width, self.input_size, flip)
            return Clip(clip.key, clip.decode_all(), boxes, clip.label, box, flip)
        frames, boxes = decode_crop_flip(clip, boxes, box, self.input_size, flip)
        return Clip(clip.key, frames, boxes, clip.label)

    def __call__(self, raw: dict[str, Any], rng: np.random.Generator) -> Clip:
        clip = self._cropped_video(raw, rng) if is_video_sample(raw) else self._clip_sample(raw, rng)
        if self.overlays.active:
            frames = np.ascontiguousarray(clip.frames) if clip.frames.flags.writeable else clip.frames.copy()
            drawn = self.overlays(rng, frames)
            boxes = np.concatenate([clip.boxes, mask_boxes(frames.shape[0], drawn, self.object_cells)], axis=1)
            return Clip(clip.key, frames, boxes, clip.label)
        return clip
