"""Multi-view testing (docs/method.md §7): clips x crops per video, softmax averaged over all views.

Temporal views are the clips of one source video in the shards (`smile-data pack` writes
`clips_per_video` clips per video, evenly spaced; the metadata's background.source names the
video; clips without a source, and rendered clips with overlays, are videos of their own). When a video has more clips than
`test_clips`, evenly spaced ones are used. A whole-video sample (`<key>.mp4`, video shards) gives
its own `test_clips` temporal views, decoded here: `temporal: window` takes clips of T frames at
`stride` evenly spaced over the whole video (K400), `segments` the TSN offsets (SSv2: views 2 =
offsets 0 and 1/2 of a segment); smile_data/sampling.py has the formulas. Spatial views: the frames' short side is resized to
the input size, then `test_crops` squares are cut along the long side (3: left / centre / right,
or top / centre / bottom), as VideoMAE's test-time 3-crop.

Scores are collected per clip, then grouped in sorted order, so the result does not depend on
the number of processes or loader workers. Output: top-1, top-5, per-class and mean-class
accuracy, written as JSON atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from smile_data.config import settings_to_dict
from smile_data.images import resize_short_side
from smile_data.io import write_json_atomic
from smile_data.sampling import VideoSampling, test_indices
from smile_data.shards.reader import decode_sample
from smile_data.shards.video_sample import decode_video_sample, is_video_sample, open_video_sample
from smile_data.video import VideoLimits
from smile_train.data.loader import CorruptSampleCounter, expand_urls, tar_samples
from smile_train.data.sources import errors_named
from smile_train.interop.checkpoint import CheckpointInfo, classifier_from_checkpoint, read_checkpoint
from smile_train.loop import runtime as rt
from smile_train.model.targets import normalize
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import KINETICS_TEST_CLIPS, EvalSettings, read_class_names

TOP_K = 5


# --- views -------------------------------------------------------------------------------------


def spatial_views(frames: np.ndarray, size: int, crops: int) -> np.ndarray:
    """(T, H, W, 3) -> (crops, T, size, size, 3): squares evenly spaced along the long side of
    the frames scaled (bilinearly, up or down) to a short side of `size`."""
    if min(frames.shape[1:3]) != size:
        frames = np.stack([resize_short_side(f, size, upscale=True, interpolation=cv2.INTER_LINEAR)
                           for f in frames])
    height, width = frames.shape[1:3]
    room = max(height, width) - size
    starts = [room // 2] if crops == 1 else [int(k * room / (crops - 1)) for k in range(crops)]
    if height >= width:
        return np.stack([frames[:, s : s + size, :size] for s in starts])
    return np.stack([frames[:, :size, s : s + size] for s in starts])


# --- the clip stream ----------------------------------------------------------------------------


@dataclass
class VideoViews:
    """How a whole-video sample becomes test clips: `clips` temporal views of `sampling`'s mode
    (window: evenly spaced over the video; segments: TSN offsets; smile_data/sampling.py)."""

    clips: int = KINETICS_TEST_CLIPS
    sampling: VideoSampling = field(default_factory=VideoSampling)
    limits: VideoLimits = field(default_factory=VideoLimits)


class ViewClips(IterableDataset):
    """Every clip of the shards once: {"key", "source", "label", "start", "views" (V, T, S, S, 3)}.

    Shards are split between processes and loader workers (no resampling, no shuffling).
    """

    def __init__(self, urls: list[str], size: int, crops: int, frames: int, rank: int = 0,
                 world_size: int = 1, max_corrupt_samples: int = 0, videos: VideoViews | None = None):
        super().__init__()
        self.urls, self.size, self.crops, self.frames = urls, size, crops, frames
        self.rank, self.world_size, self.max_corrupt = rank, world_size, max_corrupt_samples
        self.videos = videos or VideoViews()

    def _clip_item(self, raw: dict[str, Any]) -> dict[str, Any]:
        clip = decode_sample(raw)
        if clip.label is None:
            raise ValueError(f"sample {clip.key}: no label (.cls); evaluation needs labelled shards")
        if clip.frames.shape[0] != self.frames:
            raise ValueError(f"sample {clip.key}: {clip.frames.shape[0]} frames, the model takes {self.frames}")
        background = clip.metadata.get("background") or {}
        indices = background.get("frame_indices") or [0]
        # Rendered clips with overlays are each a test item of their own, even when several
        # share a background video: their labels come from the overlay, not the video.
        source = None if clip.metadata.get("objects") else background.get("source")
        return {"key": clip.key, "source": source or f"clip:{clip.key}", "label": clip.label,
                "start": int(indices[0]), "views": torch.from_numpy(spatial_views(clip.frames, self.size, self.crops))}

    def _video_items(self, raw: dict[str, Any]) -> list[dict[str, Any]]:
        """A video sample's test clips (`videos.clips` temporal views), each with its crops."""
        v, sampling = self.videos, self.videos.sampling
        video = decode_video_sample(raw, sampling.label_field)
        if video.label is None:
            raise ValueError(f"sample {video.key}: no label (.cls or {sampling.label_field or 'label'}); "
                             "evaluation needs labelled shards")
        with errors_named(video, raw), open_video_sample(video, v.limits) as opened:
            plans = [test_indices(sampling.temporal, opened.info.frames, self.frames, sampling.stride, view, v.clips)
                     for view in range(v.clips)]
            wanted = sorted({int(i) for plan in plans for i in plan})
            decoded = opened.frames(wanted)  # (len(wanted), H, W, 3)
        position = {index: row for row, index in enumerate(wanted)}
        return [{"key": f"{video.key}#{view:03d}", "source": f"video:{video.key}", "label": video.label,
                 "start": view, "views": torch.from_numpy(spatial_views(
                     decoded[[position[int(i)] for i in plan]], self.size, self.crops))}
                for view, plan in enumerate(plans)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        part, parts = self.rank * workers + worker, self.world_size * workers
        counter = CorruptSampleCounter(self.max_corrupt)
        urls = [{"url": url} for url in self.urls[part::parts]]
        for raw in tar_samples(iter(urls), counter):
            try:
                items = self._video_items(raw) if is_video_sample(raw) else [self._clip_item(raw)]
            except ValueError as error:
                counter.bad_sample(raw, error)
                continue
            yield from items


def view_loader(urls: list[str], size: int, crops: int, frames: int, batch_size: int,
                num_workers: int, runtime: rt.Runtime, max_corrupt: int,
                videos: VideoViews | None = None) -> DataLoader:
    dataset = ViewClips(urls, size, crops, frames, runtime.rank, runtime.world_size, max_corrupt, videos)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                      pin_memory=runtime.device.type == "cuda")


@dataclass
class ClipOutput:
    key: str
    source: str
    label: int
    start: int
    outputs: np.ndarray  # (V, D): one row per spatial view


@torch.no_grad()
def collect_outputs(forward: Callable[[torch.Tensor], torch.Tensor], loader: DataLoader,
                    runtime: rt.Runtime) -> list[ClipOutput]:
    """Run `forward` ((N, 3, T, S, S) -> (N, D)) on every view; all processes' clips, by key."""
    clips: list[ClipOutput] = []
    for batch in loader:
        views = batch["views"]  # (B, V, T, S, S, 3) uint8
        count, per_clip = views.shape[:2]
        videos = normalize(views.flatten(0, 1).to(runtime.device, non_blocking=True))
        with rt.autocast(runtime):
            outputs = forward(videos).float().reshape(count, per_clip, -1).cpu().numpy()
        for i in range(count):
            clips.append(ClipOutput(batch["key"][i], batch["source"][i], int(batch["label"][i]),
                                    int(batch["start"][i]), outputs[i]))
    if runtime.distributed:
        gathered: list[list[ClipOutput]] = [[] for _ in range(runtime.world_size)]
        dist.all_gather_object(gathered, clips)  # between this run's own processes only
        clips = [clip for part in gathered for clip in part]
    keys = [c.key for c in clips]
    if len(set(keys)) != len(keys):
        raise ValueError("the shards hold a sample key twice; evaluate each dataset separately")
    return sorted(clips, key=lambda c: c.key)


# --- grouping and scores --------------------------------------------------------------------------


def select_clips(clips: list[ClipOutput], test_clips: int) -> list[ClipOutput]:
    """The video's clips in time order; `test_clips` evenly spaced ones when there are more."""
    ordered = sorted(clips, key=lambda c: (c.start, c.key))
    if test_clips <= 0 or len(ordered) <= test_clips:
        return ordered
    picks = np.linspace(0, len(ordered) - 1, test_clips).round().astype(int)
    return [ordered[i] for i in picks]


def video_scores(clips: list[ClipOutput], test_clips: int) -> list[dict[str, Any]]:
    """Group clip outputs by source video: mean over every view of the selected clips.

    Returns [{"source", "label", "clips", "views", "scores" (D,)}] sorted by source.
    """
    by_source: dict[str, list[ClipOutput]] = {}
    for clip in clips:
        by_source.setdefault(clip.source, []).append(clip)
    videos = []
    for source in sorted(by_source):
        chosen = select_clips(by_source[source], test_clips)
        labels = {c.label for c in chosen}
        if len(labels) != 1:
            raise ValueError(f"video {source}: its clips carry different labels {sorted(labels)}")
        views = np.concatenate([c.outputs for c in chosen])  # (clips x crops, D)
        videos.append({"source": source, "label": labels.pop(), "clips": len(chosen),
                       "views": int(views.shape[0]), "scores": views.mean(axis=0)})
    return videos


def accuracy_report(videos: list[dict[str, Any]], num_classes: int,
                    class_names: list[str] | None = None) -> dict[str, Any]:
    """Top-1, top-5, per-class top-1 (videos of that class) and their mean, from video scores."""
    if not videos:
        raise ValueError("no labelled clip was read; nothing to evaluate")
    scores = np.stack([v["scores"] for v in videos])  # (videos, classes)
    labels = np.array([v["label"] for v in videos])
    if labels.max() >= num_classes or labels.min() < 0:
        raise ValueError(f"labels {labels.min()}..{labels.max()} do not fit a {num_classes}-class model")
    order = np.argsort(-scores, axis=1, kind="stable")
    top1 = order[:, 0] == labels
    top5 = (order[:, : min(TOP_K, num_classes)] == labels[:, None]).any(axis=1)
    names = class_names or [str(i) for i in range(num_classes)]
    per_class = []
    for c in range(num_classes):
        members = labels == c
        if members.any():
            per_class.append({"class": c, "name": names[c], "videos": int(members.sum()),
                              "top1": float(top1[members].mean())})
    return {
        "top1": float(top1.mean()), "top5": float(top5.mean()),
        "mean_class_accuracy": float(np.mean([p["top1"] for p in per_class])),
        "videos": len(videos), "clips": int(sum(v["clips"] for v in videos)),
        "views": int(sum(v["views"] for v in videos)),
        "views_per_video": {"min": int(min(v["views"] for v in videos)), "max": int(max(v["views"] for v in videos))},
        "per_class": per_class,
        "predictions": [{"source": v["source"], "label": int(v["label"]), "top5": order[i, :TOP_K].tolist()}
                        for i, v in enumerate(videos)],
    }


def softmax_forward(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda videos: torch.softmax(model(videos).float(), dim=-1)


def evaluate_model(model: torch.nn.Module, urls: list[str], s: EvalSettings, runtime: rt.Runtime,
                   num_classes: int, class_names: list[str]) -> dict[str, Any]:
    """Multi-view accuracy of a classifier on labelled shards (every process takes part)."""
    model.eval()
    size, frames = model.img_size, model.frames
    videos = VideoViews(s.test_clips, sampling=s)  # EvalSettings is a VideoSampling
    loader = view_loader(urls, size, s.test_crops, frames, s.batch_size, s.num_workers, runtime,
                         s.max_corrupt_samples, videos)
    clips = collect_outputs(softmax_forward(model), loader, runtime)
    report = accuracy_report(video_scores(clips, s.test_clips), num_classes, class_names)
    return {**report, "test_clips": s.test_clips, "test_crops": s.test_crops}


def checked_checkpoint(s: Any, command: str) -> CheckpointInfo:
    """The checkpoint `evaluate` or `linear-probe` reads, once its settings are known to work."""
    if not s.checkpoint or not s.shards:
        raise ValueError(f"{command} needs --checkpoint and --shards")
    check_settings(s)
    return read_checkpoint(s.checkpoint, s.input_size, s.frames)


def run_evaluate(s: EvalSettings) -> dict[str, Any]:
    """`smile-train evaluate`: load a finetuned checkpoint, test it, write the JSON report."""
    info = checked_checkpoint(s, "evaluate")
    names = read_class_names(s.class_names, info.num_classes) or info.class_names
    urls = expand_urls(s.shards)
    runtime = rt.setup(s.device, s.precision)
    with rt.process_group(runtime):
        model = classifier_from_checkpoint(info).to(runtime.device)
        report = evaluate_model(model, urls, s, runtime, info.num_classes, names)
        report = {**report, "checkpoint": s.checkpoint, "shards": urls, "settings": settings_to_dict(s)}
        if runtime.is_main:
            write_json_atomic(Path(s.out), report)
    return report
