"""`smile-data render` and `smile-data pack`.

Settings resolve as: RenderSettings / PackSettings defaults (the SPEC's), then the defaults of
the chosen label mode (LABEL_DEFAULTS: motion-direction moves one object), then `--config FILE`,
then `--set key=value`, then the explicit flags. Workers, rank and --overwrite decide how the work
is run, not what is written, so they are not settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from smile_data.config import apply_overrides, load_settings, parse_set_options, read_yaml
from smile_data.distributed import resolve_work_share

_WORKERS_HELP = "Processes rendering in parallel on this machine (one core each)."
# Settings a label mode changes from the SPEC defaults unless the command sets them itself.
LABEL_DEFAULTS = {"motion-direction": {"objects": 1}}


def _resolve(cls: type, config: Path | None, set_options: list[str] | None, flags: dict[str, Any]):
    overrides = parse_set_options(set_options)
    overrides.update({name: value for name, value in flags.items() if value is not None})
    settings = load_settings(cls, config, overrides)
    label_defaults = LABEL_DEFAULTS.get(getattr(settings, "label", None))
    if not label_defaults:
        return settings
    settings = apply_overrides(cls(), label_defaults, source=f"label {settings.label}")
    if config is not None:
        settings = apply_overrides(settings, read_yaml(config), source=str(config))
    return apply_overrides(settings, overrides, source="--set")


def _report(out: Path, card: dict[str, Any], what: str = "clips") -> None:
    if card.get("complete") is False:
        typer.echo(f"{out}: rank {card['rank']} done ({card['samples']} {what}); waiting for ranks "
                   f"{card['waiting_for_ranks']}; the last rank to finish writes dataset.json")
        return
    counts = card["counts"]
    typer.echo(f"{out}: {counts['samples']} {what} in {counts['shards']} shards, "
               f"{counts['skipped']} skipped sources")
    for skipped in card.get("skipped", [])[:10]:
        typer.echo(f"  skipped {skipped['source']}: {skipped['reason']}", err=True)


def render_command(
    out: Path = typer.Option(..., "--out", "-o",
        help="Dataset folder (shards, manifest.parquet, dataset.json)."),
    bg: list[str] = typer.Option(None, "--bg",
        help="Background kind[:weight]: natural, frame, image, black, noise (repeatable) (default: natural)."),
    videos: str = typer.Option(None, "--videos",
        help="Videos: a folder, a file list or a VideoMAE-style CSV (`path label`)."),
    root: str = typer.Option(None, "--root",
        help="Folder that relative paths of a video list are resolved against (default: the list's folder)."),
    images: str = typer.Option(None, "--images", help="Still images: a folder or a file list."),
    overlay: str = typer.Option(None, "--overlay", help="objects | patches | none (default: objects)."),
    bank: str = typer.Option(None, "--bank", help="Object bank folder (for --overlay objects)."),
    objects: int = typer.Option(None, "--objects", help="Overlays per clip (default: 2)."),
    motion: str = typer.Option(None, "--motion", help="gaussian | linear (default: gaussian)."),
    label: str = typer.Option(None, "--label",
        help="none | motion-direction: one object per clip, labelled with the direction it moves in "
             "(right, down, left, up; --set direction_classes=8 adds the diagonals) (default: none)."),
    clips: int = typer.Option(None, "--clips", help="Clips in total (default: 1000)."),
    variants: int = typer.Option(None, "--variants", help="Clips per source: decode once, render many (default: 1)."),
    frames: int = typer.Option(None, "--frames", help="Frames per clip (default: 16)."),
    stride: int = typer.Option(None, "--stride", help="Temporal stride of natural backgrounds (default: 4)."),
    size: int = typer.Option(None, "--size", help="Clip height and width in pixels (default: 224)."),
    seed: int = typer.Option(None, "--seed", help="Base seed: clip i is drawn from [seed, i] (default: 0)."),
    codec: str = typer.Option(None, "--codec", help="jpg | png (default: jpg)."),
    quality: int = typer.Option(None, "--quality", help="JPEG quality (default: 90)."),
    prefix: str = typer.Option(None, "--prefix", help="Shard name prefix (default: clips)."),
    shard_size: int = typer.Option(None, "--shard-size",
        help="Samples (clips or videos) per shard at most (default: 1000)."),
    shard_bytes: int = typer.Option(None, "--shard-bytes", help="Bytes per shard at most (default: 1 GiB)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help=_WORKERS_HELP),
    rank: int = typer.Option(None, "--rank", help="This process's rank (default: RANK / SLURM_PROCID / 0)."),
    world_size: int = typer.Option(None, "--world-size",
        help="Ranks in all (default: WORLD_SIZE / SLURM_NTASKS / 1)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset made with other settings."),
    config: Path = typer.Option(None, "--config", help="YAML file of RenderSettings (differences only)."),
    set_options: list[str] = typer.Option(None, "--set",
        help="key=value override of any RenderSettings field (repeatable)."),
) -> None:
    """Render clips of objects (or patches) moving over natural, frame, image, black or noise backgrounds."""
    from smile_data.render.run import render_dataset
    from smile_data.render.settings import RenderSettings

    flags = {
        "backgrounds": list(bg) if bg else None, "videos": videos, "video_root": root,
        "images": images, "overlay": overlay, "bank": bank, "objects": objects, "motion": motion,
        "label": label, "clips": clips, "variants": variants, "frames": frames, "stride": stride,
        "size": size, "seed": seed, "codec": codec, "quality": quality, "prefix": prefix,
        "shard_size": shard_size, "shard_bytes": shard_bytes,
    }
    settings = _resolve(RenderSettings, config, set_options, flags)
    share = resolve_work_share(rank, world_size)
    card = render_dataset(settings, out, workers=workers, work_share=share, overwrite=overwrite)
    _report(out, card)


def pack_command(
    out: Path = typer.Option(..., "--out", "-o",
        help="Dataset folder (shards, manifest.parquet, dataset.json)."),
    csv: str = typer.Option(None, "--csv", help="VideoMAE-style annotation file: `path label` per line."),
    videos: str = typer.Option(None, "--videos", help="A folder of videos (no labels) instead of --csv."),
    root: str = typer.Option(None, "--root",
        help="Folder that relative paths in --csv are resolved against (default: the CSV's folder)."),
    clips_per_video: int = typer.Option(None, "--clips-per-video",
        help="Clips per video, evenly spaced (default: 1)."),
    store: str = typer.Option(None, "--store",
        help="clips: cut into JPEG/PNG clips | video: one sample per whole video (default: clips)."),
    short_side: int = typer.Option(None, "--short-side",
        help="Resize frames so the short side is this (default: 256; --store video: 0 keeps it)."),
    keyframe_interval: int = typer.Option(None, "--keyframe-interval",
        help="--store video: frames between keyframes of the re-encoded video (default: 32)."),
    reencode: bool = typer.Option(None, "--reencode/--copy",
        help="--store video: re-encode (default) or store the source bytes as they are."),
    frames: int = typer.Option(None, "--frames", help="Frames per clip (default: 16)."),
    stride: int = typer.Option(None, "--stride", help="Temporal stride (default: 4)."),
    seed: int = typer.Option(None, "--seed", help="Seed recorded in the metadata (default: 0)."),
    codec: str = typer.Option(None, "--codec", help="jpg | png (default: jpg)."),
    quality: int = typer.Option(None, "--quality", help="JPEG quality (default: 90)."),
    prefix: str = typer.Option(None, "--prefix", help="Shard name prefix (default: clips)."),
    shard_size: int = typer.Option(None, "--shard-size",
        help="Samples (clips or videos) per shard at most (default: 1000)."),
    shard_bytes: int = typer.Option(None, "--shard-bytes", help="Bytes per shard at most (default: 1 GiB)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1, help=_WORKERS_HELP),
    rank: int = typer.Option(None, "--rank", help="This process's rank (default: RANK / SLURM_PROCID / 0)."),
    world_size: int = typer.Option(None, "--world-size",
        help="Ranks in all (default: WORLD_SIZE / SLURM_NTASKS / 1)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a dataset made with other settings."),
    config: Path = typer.Option(None, "--config", help="YAML file of PackSettings (differences only)."),
    set_options: list[str] = typer.Option(None, "--set",
        help="key=value override of any PackSettings field (repeatable)."),
) -> None:
    """Pack natural clips of real videos (labelled from a CSV, or a plain folder) into shards,
    or with --store video the whole videos, for the trainer to sample from every epoch."""
    from smile_data.render.run import pack_dataset
    from smile_data.render.settings import PackSettings

    if csv and videos:
        raise ValueError("give either --csv or --videos, not both")
    flags = {
        "videos": csv or videos, "video_root": root, "clips_per_video": clips_per_video,
        "store": store, "short_side": short_side, "keyframe_interval": keyframe_interval,
        "reencode": reencode, "frames": frames, "stride": stride, "seed": seed,
        "codec": codec, "quality": quality, "prefix": prefix, "shard_size": shard_size,
        "shard_bytes": shard_bytes,
    }
    settings = _resolve(PackSettings, config, set_options, flags)
    share = resolve_work_share(rank, world_size)
    card = pack_dataset(settings, out, workers=workers, work_share=share, overwrite=overwrite)
    _report(out, card, "videos" if settings.store == "video" else "clips")


def register(app: typer.Typer) -> None:
    app.command("render")(render_command)
    app.command("pack")(pack_command)
