"""`smile-data build-objects`, `import-objects` and `merge-bank`.

Settings come from the dataclass defaults (docs/method.md §2), then `--config FILE.yaml`, then repeated
`--set key=value`, then the explicit flags (`command_settings` in smile_data/cli_options.py).
Heavy imports (torch, diffusers) happen inside the commands so `smile-data --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, Optional, TypeVar

import typer

from smile_data.cli_options import (
    command_settings, config_option, given_flag_spellings, given_flags, progress_option, rank_option,
    set_option, setting_option, with_shared_options, world_size_option,
)
from smile_data.objects.settings import BuildSettings, ImportSettings, PhotoSettings, SegmentationSettings
from smile_data.processes import folder_lock

T = TypeVar("T")
SUMMARY_EXAMPLES = 5
EXIT_FAILED = 1

BANK_OUT_OPTION = typer.Option(..., "--out", metavar="DIR", help="Bank folder to create or resume.")


def _echo_counts(card: dict, out: Path) -> None:
    counts = card["counts"]
    typer.echo(f"{out}: {counts['accepted']} objects in {counts['classes_with_objects']} classes "
               f"({counts['candidates']} candidates, {counts['rejected']} rejected)")
    for reason, number in counts["rejected_by_reason"].items():
        typer.echo(f"  rejected {reason}: {number}")


# A setting flag is one line in its command's signature: BUILD(field, help, ...) (cli_options.py).
BUILD = functools.partial(setting_option, BuildSettings)
IMPORT = functools.partial(setting_option, ImportSettings)
# What --source photos uses: the segmentation settings (PhotoSettings), not the generation ones.
SEGMENTATION_FIELDS = {f.name for f in dataclasses.fields(SegmentationSettings)}


@dataclasses.dataclass(frozen=True)
class BankRun:
    """The flags build-objects and import-objects share: where the settings come from, and
    whether a progress bar shows."""

    config: Optional[Path]
    set_options: Optional[list[str]]
    progress: bool

    def settings(self, cls: type[T], flags: dict[str, Any]) -> T:
        """Settings of class `cls`: defaults <- --config <- --set <- the flags given."""
        return command_settings(cls, self.config, self.set_options, flags)


# Decorator: --config, --set and --progress after the command's own flags, as `run: BankRun`.
bank_command = with_shared_options(BankRun, after={
    "config": (Optional[Path], config_option("settings")),
    "set_options": (Optional[list[str]], set_option("setting")),
    "progress": (bool, progress_option()),
})


@bank_command
def build_objects(
    ctx: typer.Context,
    out: Path = BANK_OUT_OPTION,
    source: str = typer.Option("diffusion", metavar="diffusion|photos",
                               help="diffusion (Stable Diffusion) or photos "
                               "(the embedded bank: no weights, no network)."),
    model: str = BUILD("model", "Diffusers text-to-image model, folder or hub id."),
    clip_model: str = BUILD("clip_model", "CLIP model + processor (folder or hub id) for the CLIP floor."),
    clipseg_model: str = BUILD("clipseg_model", "CLIPSeg model (folder or hub id) for segmenter 'clipseg'."),
    segmenters: str = BUILD("segmenters", "Comma list of classical, clipseg.", comma_list=True),
    classes: str = BUILD("classes", "Comma list of LVIS ids or names (default: all 1203).", comma_list=True),
    candidates: int = BUILD("candidates_per_class", "Candidates generated per class."),
    accepted: int = BUILD("accepted_per_class", "Objects kept per class at most."),
    steps: int = BUILD("steps", "Denoising steps."),
    guidance: float = BUILD("guidance", "Classifier-free guidance scale."),
    resolution: int = BUILD("resolution", "Image side in pixels."),
    scheduler: str = BUILD("scheduler", "Diffusers scheduler class name (default: the model's)."),
    dtype: str = BUILD("dtype", "auto (float16 on GPU, else float32), float32, float16 or bfloat16."),
    device: str = BUILD("device", "auto, cpu, cuda or cuda:N."),
    batch_size: int = BUILD("batch_size", "Images per pipeline call."),
    seed: int = BUILD("seed", "Base seed."),
    rank: Optional[int] = rank_option(),
    world_size: Optional[int] = world_size_option(),
    *, run: BankRun,
) -> None:
    """Build an object bank: Stable Diffusion candidates (or the embedded photos), segmented,
    filtered and tight-cropped. Resumable; split over ranks with --rank/--world-size."""
    if source == "photos":
        _refuse_generation_flags(given_flag_spellings(ctx), rank, world_size)
        _build_photos(out, run.settings(PhotoSettings, given_flags(ctx)))
    elif source == "diffusion":
        _build_diffusion(out, run.settings(BuildSettings, given_flags(ctx)), rank, world_size, run.progress)
    else:
        raise ValueError(f"--source {source!r}: choose diffusion or photos")


def _refuse_generation_flags(spellings: dict[str, str], rank, world_size) -> None:
    """--source photos generates nothing: a generation flag there is a mistake, not ignored."""
    used = [spelling for field, spelling in spellings.items() if field not in SEGMENTATION_FIELDS]
    used += [name for name, value in (("--rank", rank), ("--world-size", world_size)) if value is not None]
    if used:
        raise ValueError(f"{', '.join(sorted(used))}: not used with --source photos")


def _build_photos(out: Path, settings: PhotoSettings) -> None:
    from smile_data.objects.photos import build_photo_bank

    with folder_lock(out, "rank-00000"):  # a second build into the folder refuses
        card = build_photo_bank(out, settings)
    _echo_counts(card, out)


def _build_diffusion(out: Path, settings: BuildSettings, rank, world_size, progress: bool) -> None:
    from smile_data.distributed import resolve_work_share
    from smile_data.objects.build import BankBuilder

    share = resolve_work_share(rank, world_size)
    with folder_lock(out, f"rank-{share.rank:05d}"):  # a second build of this rank refuses
        result = BankBuilder(settings, out, share, show_progress=progress).run()
    typer.echo(f"rank {share.rank}/{share.world_size}: {result['classes']} classes, "
               f"{result['generated']} images generated this run")
    if result["card"] is not None:
        _echo_counts(result["card"], out)
    else:
        typer.echo(f"{out}: other ranks still working; the last one to finish merges "
                   "(or run smile-data merge-bank)")


@bank_command
def import_objects(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="Folder of RGBA PNGs laid out as <lvis_name>/<i>.png."),
    out: Path = BANK_OUT_OPTION,
    link: bool = IMPORT("link", "Hard-link files that are already tight-cropped 8-bit RGBA (a copy where "
                        "hard links are impossible, e.g. across file systems).", "--link/--copy",
                        shown_default="--copy"),
    strict: bool = IMPORT("strict", "Fail on any bad file.", "--strict/--lenient",
                          shown_default="--lenient: fail only when nothing is imported"),
    workers: int = IMPORT("workers", "Decoding processes."),
    max_pixels: int = IMPORT("max_pixels", "Largest width x height accepted, read from the PNG header."),
    *, run: BankRun,
) -> None:
    """Import a folder of RGBA PNG cut-outs (e.g. the released 60,687-object set) as a bank."""
    from smile_data.objects.importer import REPORT_FILE, import_objects as run_import

    settings = run.settings(ImportSettings, given_flags(ctx))
    with folder_lock(out, "import"):  # a second import into the folder refuses
        report = run_import(src, out, settings, show_progress=run.progress)
    _echo_import_report(report, out / REPORT_FILE)
    if report["imported"] == 0 or (settings.strict and report["bad"]):
        raise typer.Exit(EXIT_FAILED)


def _echo_import_report(report: dict, report_path: Path) -> None:
    typer.echo(f"{report['imported']} of {report['files']} files imported; report: {report_path}")
    for reason, number in report["bad_by_reason"].items():
        examples = [b["file"] for b in report["bad"] if b["reason"] == reason][:SUMMARY_EXAMPLES]
        typer.echo(f"  skipped {reason}: {number} (e.g. {', '.join(examples)})")
    if report["unknown_classes"]:
        typer.echo(f"  unknown class folders: {', '.join(report['unknown_classes'])}")
    released = report["released_comparison"]
    typer.echo(f"  released list: {released['matched']} of {released['released']} present, "
               f"{released['missing_count']} missing, {released['extra_count']} extra")
    for kind in ("missing", "extra"):
        if released[kind]:
            typer.echo(f"    {kind}, e.g.: {', '.join(released[kind][:SUMMARY_EXAMPLES])}")


def merge_bank(
    bank: Path = typer.Argument(..., help="Bank folder built by build-objects (any number of ranks)."),
) -> None:
    """Merge the per-rank journals of a finished build into objects.parquet and bank.json."""
    from smile_data.objects.build import merge_bank as run_merge

    _echo_counts(run_merge(bank), bank)


def register(app: typer.Typer) -> None:
    """Add the object-bank commands to the `smile-data` app (typer names a command after its
    function: build_objects -> build-objects)."""
    for command in (build_objects, import_objects, merge_bank):
        app.command()(command)
