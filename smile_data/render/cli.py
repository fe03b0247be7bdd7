"""`smile-data render` and `smile-data pack`.

Their setting flags are fields of RenderSettings / PackSettings, one `setting_option` line each
in the commands' signatures (smile_data/cli_options.py): help text there, default from the
dataclass.
Settings resolve as: the dataclass defaults (docs/method.md's reference values), then the defaults of the chosen label
mode (LABEL_DEFAULTS: motion-direction moves one object), then `--config FILE`, then
`--set key=value`, then the explicit flags. Workers, rank and --overwrite decide how the work
is run, not what is written, so they are not settings.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Callable

import typer

from smile_data.cli_options import (
    command_settings, config_option, given_flags, rank_option, set_option, setting_option, with_shared_options,
    workers_option, world_size_option,
)
from smile_data.config import (
    apply_overrides, apply_sources, command_line_overrides, settings_sources,
)
from smile_data.distributed import resolve_work_share
from smile_data.processes import MAX_WORKERS
from smile_data.render.settings import PackSettings, RenderSettings, ShardOutputSettings

# Settings a label mode changes from the reference defaults unless the command sets them itself.
LABEL_DEFAULTS = {"motion-direction": {"objects": 1}}
DATASET_HELP = "Dataset folder to write (shards, manifest.parquet, dataset.json)."

# A setting flag is one line in its command's signature: RENDER(field, help, ...) (cli_options.py).
RENDER = functools.partial(setting_option, RenderSettings)
PACK = functools.partial(setting_option, PackSettings)
# Flags of the shard output, the same in render and pack (ShardOutputSettings).
CODEC_OPTION = setting_option(ShardOutputSettings, "codec", "jpg | png.")
QUALITY_OPTION = setting_option(ShardOutputSettings, "quality", "JPEG quality.")
PREFIX_OPTION = setting_option(ShardOutputSettings, "prefix", "Shard name prefix.")
SHARD_SIZE_OPTION = setting_option(ShardOutputSettings, "shard_size", "Samples (clips or videos) per shard at most.")
SHARD_BYTES_OPTION = setting_option(ShardOutputSettings, "shard_bytes", "Bytes per shard at most.",
                                    shown_default="1073741824, i.e. 1 GiB", metavar="BYTES")
WORKERS_OPTION = workers_option(1, MAX_WORKERS,
                                "Processes rendering in parallel on this machine (one core each).")
OVERWRITE_OPTION = typer.Option(False, "--overwrite", help="Replace a dataset made with other settings.")
OUT_OPTION = typer.Option(..., "--out", "-o", metavar="DIR", help=DATASET_HELP)


@dataclasses.dataclass(frozen=True)
class DatasetRun:
    """How a dataset command runs and where its settings come from: flags render and pack share."""

    workers: int
    rank: int | None
    world_size: int | None
    overwrite: bool
    config: Path | None
    set_options: list[str] | None

    def write(self, write_dataset: Callable[..., dict[str, Any]], settings: Any, out: Path) -> dict[str, Any]:
        """The card of `write_dataset` (render_dataset or pack_dataset) run as these flags say."""
        return write_dataset(settings, out, workers=self.workers, overwrite=self.overwrite,
                             work_share=resolve_work_share(self.rank, self.world_size))


def dataset_command(settings_name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: add the flags render and pack share after the command's own ones, namely the
    shard output settings, --workers, --rank, --world-size, --overwrite, and --config / --set of
    the settings class `settings_name`. The command takes them as one keyword-only parameter,
    `run: DatasetRun`; the shard output flags reach it through `given_flags(ctx)` like its own."""
    return with_shared_options(DatasetRun, after={
        "codec": (str, CODEC_OPTION),
        "quality": (int, QUALITY_OPTION),
        "prefix": (str, PREFIX_OPTION),
        "shard_size": (int, SHARD_SIZE_OPTION),
        "shard_bytes": (int, SHARD_BYTES_OPTION),
        "workers": (int, WORKERS_OPTION),
        "rank": (int, rank_option()),
        "world_size": (int, world_size_option()),
        "overwrite": (bool, OVERWRITE_OPTION),
        "config": (Path, config_option(settings_name)),
        "set_options": (list[str], set_option(f"{settings_name} field")),
    })


def render_settings(config: Path | None, overrides: dict[str, Any]) -> RenderSettings:
    """RenderSettings of a command line; the label mode it ends up with picks the defaults."""
    sources = settings_sources(config, overrides)
    label = next((values["label"] for _, values in reversed(sources) if "label" in values),
                 RenderSettings.label)
    base = apply_overrides(RenderSettings(), LABEL_DEFAULTS.get(str(label), {}), source=f"label {label}")
    return apply_sources(base, sources)


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


@dataset_command("RenderSettings")
def render(
    ctx: typer.Context,
    out: Path = OUT_OPTION,
    bg: list[str] = RENDER("backgrounds", "Background kind[:weight]: natural, frame, image, black, noise "
                           "(repeatable).", "--bg", metavar="KIND[:WEIGHT]"),
    videos: str = RENDER("videos", "Videos: a folder, a file list or a VideoMAE-style CSV (`path label`).",
                         metavar="PATH"),
    root: str = RENDER("video_root", "Folder that relative paths of a video list are resolved against "
                       "(default: the list's folder).", metavar="DIR"),
    images: str = RENDER("images", "Still images: a folder or a file list.", metavar="PATH"),
    overlay: str = RENDER("overlay", "objects | patches | none."),
    bank: str = RENDER("bank", "Object bank folder (for --overlay objects).", metavar="DIR"),
    objects: int = RENDER("objects", "Overlays per clip (default: 2; --label motion-direction: 1)."),
    motion: str = RENDER("motion", "gaussian | linear."),
    label: str = RENDER("label", "none | motion-direction: one object per clip, labelled with the direction "
                        "it moves in (right, down, left, up; --set direction_classes=8 adds the diagonals)."),
    clips: int = RENDER("clips", "Clips in total."),
    variants: int = RENDER("variants", "Clips per source: decode once, render many."),
    frames: int = RENDER("frames", "Frames per clip."),
    stride: int = RENDER("stride", "Temporal stride of natural backgrounds."),
    size: int = RENDER("size", "Clip height and width in pixels."),
    seed: int = RENDER("seed", "Base seed: clip i is drawn from [seed, i]."),
    *, run: DatasetRun,
) -> None:
    """Render clips of objects (or patches) moving over natural, frame, image, black or noise backgrounds."""
    from smile_data.render.run import render_dataset

    settings = render_settings(run.config, command_line_overrides(run.set_options, given_flags(ctx)))
    _report(out, run.write(render_dataset, settings, out), "clips")


@dataset_command("PackSettings")
def pack(
    ctx: typer.Context,
    out: Path = OUT_OPTION,
    csv: str = PACK("videos", "VideoMAE-style annotation file: `path label` per line.", metavar="FILE"),
    videos: str = PACK("videos", "A folder of videos (no labels) instead of --csv.", metavar="DIR"),
    root: str = PACK("video_root", "Folder that relative paths in --csv are resolved against "
                     "(default: the CSV's folder).", metavar="DIR"),
    clips_per_video: int = PACK("clips_per_video", "Clips per video, evenly spaced."),
    store: str = PACK("store", "clips: cut into JPEG/PNG clips | video: one sample per whole video."),
    short_side: int = PACK("short_side", "Resize frames so the short side is this (default: 256; --store "
                           "video: 0 keeps it)."),
    keyframe_interval: int = PACK("keyframe_interval", "--store video: frames between keyframes of the "
                                  "re-encoded video."),
    reencode: bool = PACK("reencode", "--store video: re-encode (default) or store the source bytes as "
                          "they are.", "--reencode/--copy"),
    frames: int = PACK("frames", "Frames per clip."),
    stride: int = PACK("stride", "Temporal stride."),
    seed: int = PACK("seed", "Seed recorded in the metadata."),
    *, run: DatasetRun,
) -> None:
    """Pack natural clips of real videos (labelled from a CSV, or a plain folder) into shards,
    or with --store video the whole videos, for the trainer to sample from every epoch."""
    from smile_data.render.run import pack_dataset

    settings = command_settings(PackSettings, run.config, run.set_options, given_flags(ctx))
    _report(out, run.write(pack_dataset, settings, out), "videos" if settings.store == "video" else "clips")


def register(app: typer.Typer) -> None:
    """Add render and pack to the `smile-data` app (typer names a command after its function)."""
    for command in (render, pack):
        app.command()(command)
