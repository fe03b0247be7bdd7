"""`smile-data render` and `smile-data pack`.

Their flags are derived from RenderSettings / PackSettings (smile_data/cli_options.py): the
tables below give each flag's help text, and its type and default come from the dataclass.
Settings resolve as: the dataclass defaults (docs/method.md's reference values), then the defaults of the chosen label
mode (LABEL_DEFAULTS: motion-direction moves one object), then `--config FILE`, then
`--set key=value`, then the explicit flags. Workers, rank and --overwrite decide how the work
is run, not what is written, so they are not settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from smile_data.cli_options import (
    SettingFlag, config_option, rank_option, set_option, setting_flags, world_size_option,
)
from smile_data.config import (
    apply_overrides, apply_sources, command_line_overrides, load_settings, settings_sources,
)
from smile_data.distributed import resolve_work_share
from smile_data.processes import MAX_WORKERS
from smile_data.render.settings import PackSettings, RenderSettings

# Settings a label mode changes from the reference defaults unless the command sets them itself.
LABEL_DEFAULTS = {"motion-direction": {"objects": 1}}
DATASET_HELP = "Dataset folder to write (shards, manifest.parquet, dataset.json)."

# Flags of the shard output, the same in render and pack.
OUTPUT_FLAGS = {
    "codec": "jpg | png.",
    "quality": "JPEG quality.",
    "prefix": "Shard name prefix.",
    "shard_size": "Samples (clips or videos) per shard at most.",
    "shard_bytes": SettingFlag("Bytes per shard at most.", default="1073741824, i.e. 1 GiB", metavar="BYTES"),
}
RENDER_FLAGS = {
    "bg": SettingFlag("Background kind[:weight]: natural, frame, image, black, noise (repeatable).",
                      field="backgrounds", metavar="KIND[:WEIGHT]"),
    "videos": SettingFlag("Videos: a folder, a file list or a VideoMAE-style CSV (`path label`).",
                          metavar="PATH"),
    "root": SettingFlag("Folder that relative paths of a video list are resolved against "
                        "(default: the list's folder).", field="video_root", metavar="DIR"),
    "images": SettingFlag("Still images: a folder or a file list.", metavar="PATH"),
    "overlay": "objects | patches | none.",
    "bank": SettingFlag("Object bank folder (for --overlay objects).", metavar="DIR"),
    "objects": "Overlays per clip (default: 2; --label motion-direction: 1).",
    "motion": "gaussian | linear.",
    "label": ("none | motion-direction: one object per clip, labelled with the direction it moves in "
              "(right, down, left, up; --set direction_classes=8 adds the diagonals)."),
    "clips": "Clips in total.",
    "variants": "Clips per source: decode once, render many.",
    "frames": "Frames per clip.",
    "stride": "Temporal stride of natural backgrounds.",
    "size": "Clip height and width in pixels.",
    "seed": "Base seed: clip i is drawn from [seed, i].",
    **OUTPUT_FLAGS,
}
PACK_FLAGS = {
    "csv": SettingFlag("VideoMAE-style annotation file: `path label` per line.", field="videos",
                       metavar="FILE"),
    "videos": SettingFlag("A folder of videos (no labels) instead of --csv.", metavar="DIR"),
    "root": SettingFlag("Folder that relative paths in --csv are resolved against "
                        "(default: the CSV's folder).", field="video_root", metavar="DIR"),
    "clips_per_video": "Clips per video, evenly spaced.",
    "store": "clips: cut into JPEG/PNG clips | video: one sample per whole video.",
    "short_side": "Resize frames so the short side is this (default: 256; --store video: 0 keeps it).",
    "keyframe_interval": "--store video: frames between keyframes of the re-encoded video.",
    "reencode": SettingFlag("--store video: re-encode (default) or store the source bytes as they are.",
                            names=("--reencode/--copy",)),
    "frames": "Frames per clip.",
    "stride": "Temporal stride.",
    "seed": "Seed recorded in the metadata.",
    **OUTPUT_FLAGS,
}


WORKERS_OPTION = typer.Option(1, "--workers", "-w", min=1, max=MAX_WORKERS,
                              help="Processes rendering in parallel on this machine (one core each).")
OVERWRITE_OPTION = typer.Option(False, "--overwrite", help="Replace a dataset made with other settings.")


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


def pack_settings(config: Path | None, overrides: dict[str, Any]) -> PackSettings:
    return load_settings(PackSettings, config, overrides)


def _write_render(settings: RenderSettings, out: Path, **run: Any) -> dict[str, Any]:
    from smile_data.render.run import render_dataset

    return render_dataset(settings, out, **run)


def _write_pack(settings: PackSettings, out: Path, **run: Any) -> dict[str, Any]:
    from smile_data.render.run import pack_dataset

    return pack_dataset(settings, out, **run)


def _dataset_command(cls: type, table: dict[str, SettingFlag], resolve, write, summary: str):
    """A command that resolves `cls` from its command line and writes a dataset with `write`."""
    def command(
        out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help=DATASET_HELP),
        given_flags: dict = None,
        workers: int = WORKERS_OPTION,
        rank: int = rank_option(),
        world_size: int = world_size_option(),
        overwrite: bool = OVERWRITE_OPTION,
        config: Path = config_option(cls.__name__),
        set_options: list[str] = set_option(f"{cls.__name__} field"),
    ) -> None:
        settings = resolve(config, command_line_overrides(set_options, given_flags))
        share = resolve_work_share(rank, world_size)
        card = write(settings, out, workers=workers, work_share=share, overwrite=overwrite)
        _report(out, card, "videos" if getattr(settings, "store", "") == "video" else "clips")

    command.__doc__ = summary
    return setting_flags(cls, table)(command)


render_command = _dataset_command(
    RenderSettings, RENDER_FLAGS, render_settings, _write_render,
    "Render clips of objects (or patches) moving over natural, frame, image, black or noise backgrounds.")
pack_command = _dataset_command(
    PackSettings, PACK_FLAGS, pack_settings, _write_pack,
    """Pack natural clips of real videos (labelled from a CSV, or a plain folder) into shards,
    or with --store video the whole videos, for the trainer to sample from every epoch.""")


def register(app: typer.Typer) -> None:
    app.command("render")(render_command)
    app.command("pack")(pack_command)
