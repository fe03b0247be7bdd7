"""`render_dataset` and `pack_dataset`: check the inputs, then hand the tasks to write_dataset.

Everything that can be checked before work starts is: the settings, that each source list and
the object bank yield something. The fingerprint (what makes two runs the same run) holds the
settings except the input paths, the bank's content hash and a hash of each source list, so a
moved bank or list with the same content is the same input; the dataset card holds the resolved
settings (paths included) and a description of the inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smile_data.config import settings_to_dict
from smile_data.jobs import WorkShare
from smile_data.objects.bank import ObjectBank
from smile_data.render.direction import direction_names
from smile_data.render.pack import PackTask
from smile_data.render.pack_video import PackVideoTask
from smile_data.render.settings import (
    IMAGE_BACKGROUNDS, VIDEO_BACKGROUNDS, PackSettings, RenderSettings, check_pack_settings,
    check_render_settings, parse_backgrounds,
)
from smile_data.render.sources import (
    IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, Source, list_sources, sources_sha256,
)
from smile_data.render.tasks import RenderTask
from smile_data.shards.runner import write_dataset

# Settings that change how a run uses memory, never its bytes: a resume may change them.
RUNTIME_ONLY_SETTINGS = ("sprite_cache_mb",)
# Where the inputs lie: the fingerprint identifies them by content hashes instead.
INPUT_PATH_SETTINGS = ("bank", "videos", "images", "video_root")


def _required_sources(spec: str, root: str, extensions: frozenset[str], what: str, flag: str) -> list[Source]:
    if not spec:
        raise ValueError(f"{flag} is required for the chosen backgrounds")
    sources = list_sources(spec, root, extensions, what)
    if not sources:
        raise ValueError(f"{spec}: no {what} found")
    return sources


def build_render_task(s: RenderSettings) -> tuple[RenderTask, dict[str, Any], dict[str, Any]]:
    """The task plus the run's fingerprint and card; raises before any work on bad inputs."""
    check_render_settings(s)
    kinds, weights = parse_backgrounds(s.backgrounds)
    videos = images = []
    if set(kinds) & set(VIDEO_BACKGROUNDS):
        videos = _required_sources(s.videos, s.video_root, VIDEO_EXTENSIONS, "videos", "--videos")
    if set(kinds) & set(IMAGE_BACKGROUNDS):
        images = _required_sources(s.images, "", IMAGE_EXTENSIONS, "images", "--images")
    bank = bank_card = None
    if s.overlay == "objects" and s.objects > 0:
        if not s.bank:
            raise ValueError("--bank is required for --overlay objects")
        bank = ObjectBank(s.bank)
        bank_card = {"path": str(Path(s.bank)), "sha256": bank.content_sha256,
                     "objects": len(bank), "classes": len(bank.classes)}
    inputs = {
        "backgrounds": dict(zip(kinds, weights)),
        "videos": {"count": len(videos), "sha256": sources_sha256(videos)} if videos else None,
        "images": {"count": len(images), "sha256": sources_sha256(images)} if images else None,
        "object_bank": bank_card,
    }
    settings = settings_to_dict(s)
    identifying = _identifying(settings, RUNTIME_ONLY_SETTINGS + INPUT_PATH_SETTINGS)
    fingerprint = {"command": "render", "settings": identifying, "inputs": _input_identity(inputs)}
    card = {"command": "render", "settings": settings, "inputs": inputs}
    if s.label == "motion-direction":
        card["classes"] = list(direction_names(s.direction_classes))  # label k is classes[k]
    return RenderTask(s, videos, images, bank), fingerprint, card


def _identifying(settings: dict[str, Any], left_out: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k not in left_out}


def _input_identity(inputs: dict[str, Any]) -> dict[str, Any]:
    """Hashes only: a moved bank or list with the same content is the same input."""
    bank = inputs["object_bank"]
    return {**inputs, "object_bank": bank and bank["sha256"]}


def render_dataset(
    s: RenderSettings, out_dir: str | Path, *, workers: int = 1, work_share: WorkShare = WorkShare(),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Render `s.clips` clips into shards under `out_dir`; returns the dataset card."""
    task, fingerprint, card = build_render_task(s)
    return write_dataset(
        out_dir, run_task=task, task_count=task.task_count, samples_per_task=s.variants,
        fingerprint=fingerprint, card=card, prefix=s.prefix, shard_size=s.shard_size,
        shard_bytes=s.shard_bytes, workers=workers, work_share=work_share, overwrite=overwrite,
        progress_label="clips",
    )


def build_pack_task(s: PackSettings) -> tuple[PackTask | PackVideoTask, dict[str, Any], dict[str, Any]]:
    check_pack_settings(s)
    videos = _required_sources(s.videos, s.video_root, VIDEO_EXTENSIONS, "videos", "--csv or --videos")
    labelled = sum(v.label is not None for v in videos)
    inputs = {"videos": {"count": len(videos), "labelled": labelled, "sha256": sources_sha256(videos)}}
    settings = settings_to_dict(s)
    fingerprint = {"command": "pack", "settings": _identifying(settings, INPUT_PATH_SETTINGS),
                   "inputs": inputs}
    card = {"command": "pack", "settings": settings, "inputs": inputs}
    task = PackVideoTask(s, videos) if s.store == "video" else PackTask(s, videos)
    return task, fingerprint, card


def pack_dataset(
    s: PackSettings, out_dir: str | Path, *, workers: int = 1, work_share: WorkShare = WorkShare(),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Pack `s.clips_per_video` natural clips of every listed video, or (store = video) every
    video whole; returns the dataset card."""
    task, fingerprint, card = build_pack_task(s)
    videos_only = s.store == "video"
    return write_dataset(
        out_dir, run_task=task, task_count=task.task_count,
        samples_per_task=1 if videos_only else s.clips_per_video, fingerprint=fingerprint,
        card=card, prefix=s.prefix, shard_size=s.shard_size, shard_bytes=s.shard_bytes,
        workers=workers, work_share=work_share, overwrite=overwrite,
        progress_label="videos" if videos_only else "clips",
    )
