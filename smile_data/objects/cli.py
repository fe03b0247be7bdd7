"""`smile-data build-objects`, `import-objects` and `merge-bank`.

Settings come from the dataclass defaults (SPEC §2), then `--config FILE.yaml`, then repeated
`--set key=value`, then the explicit flags (`command_settings` in smile_data/cli_options.py).
Heavy imports (torch, diffusers) happen inside the commands so `smile-data --help` stays fast.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Optional

import typer

from smile_data.cli_options import (
    SettingFlag, command_settings, config_option, progress_option, set_option, setting_flags,
)
from smile_data.config import SettingsError
from smile_data.objects.settings import ImportSettings
from smile_data.processes import folder_lock

SUMMARY_EXAMPLES = 5
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

CONFIG_OPTION = config_option("settings")
SET_OPTION = set_option("setting")
PROGRESS_OPTION = progress_option()


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
    """Bad input ends the command with its message and exit code 2, not a traceback."""
    try:
        yield
    except (SettingsError, FileNotFoundError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _split(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _echo_counts(card: dict, out: Path) -> None:
    counts = card["counts"]
    typer.echo(f"{out}: {counts['accepted']} objects in {counts['classes_with_objects']} classes "
               f"({counts['candidates']} candidates, {counts['rejected']} rejected)")
    for reason, number in counts["rejected_by_reason"].items():
        typer.echo(f"  rejected {reason}: {number}")


def _option(text: str):
    """An optional flag whose absence leaves the setting to the defaults / config / --set."""
    return typer.Option(None, help=text)


GENERATION_FLAGS = ("model", "classes", "candidates", "accepted", "steps", "guidance", "resolution",
                    "scheduler", "dtype", "batch_size", "seed", "rank", "world_size")


def build_objects(
    out: Path = typer.Option(..., "--out", help="Bank folder to create or resume."),
    source: str = typer.Option("diffusion", help="diffusion (Stable Diffusion) or photos "
                               "(the embedded bank: no weights, no network)."),
    model: Optional[str] = _option("Diffusers text-to-image model, folder or hub id "
                                   "(default stable-diffusion-v1-5/stable-diffusion-v1-5)."),
    clip_model: Optional[str] = _option("CLIP model + processor (folder or hub id) for the CLIP floor."),
    clipseg_model: Optional[str] = _option("CLIPSeg model (folder or hub id) for segmenter 'clipseg'."),
    segmenters: Optional[str] = _option("Comma list of classical, clipseg (default classical)."),
    classes: Optional[str] = _option("Comma list of LVIS ids or names (default: all 1203)."),
    candidates: Optional[int] = _option("Candidates generated per class (default 100)."),
    accepted: Optional[int] = _option("Objects kept per class at most (default 60)."),
    steps: Optional[int] = _option("Denoising steps (default 50)."),
    guidance: Optional[float] = _option("Classifier-free guidance scale (default 7.5)."),
    resolution: Optional[int] = _option("Image side in pixels (default 512)."),
    scheduler: Optional[str] = _option("Diffusers scheduler class name (default: the model's)."),
    dtype: Optional[str] = _option("auto, float32, float16 or bfloat16 (auto: float16 on GPU)."),
    device: Optional[str] = _option("auto, cpu, cuda or cuda:N."),
    batch_size: Optional[int] = _option("Images per pipeline call (default 8)."),
    seed: Optional[int] = _option("Base seed (default 0)."),
    rank: Optional[int] = _option("This process's rank (default RANK or SLURM_PROCID, else 0)."),
    world_size: Optional[int] = _option("Processes (default WORLD_SIZE or SLURM_NTASKS, else 1)."),
    config: Optional[Path] = CONFIG_OPTION,
    sets: Optional[list[str]] = SET_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Build an object bank: Stable Diffusion candidates (or the embedded photos), segmented,
    filtered and tight-cropped. Resumable; split over ranks with --rank/--world-size."""
    flags = dict(locals())
    with _reported_errors():
        segmentation = {"clip_model": clip_model, "clipseg_model": clipseg_model,
                        "segmenters": _split(segmenters), "device": device}
        if source == "photos":
            given = sorted(f"--{k.replace('_', '-')}" for k in GENERATION_FLAGS if flags[k] is not None)
            if given:
                raise ValueError(f"{', '.join(given)}: not used with --source photos")
            _build_photos(out, config, sets, segmentation)
        elif source == "diffusion":
            generation = {"model": model, "classes": _split(classes), "candidates_per_class": candidates,
                          "accepted_per_class": accepted, "steps": steps, "guidance": guidance,
                          "resolution": resolution, "scheduler": scheduler, "dtype": dtype,
                          "batch_size": batch_size, "seed": seed}
            _build_diffusion(out, config, sets, {**segmentation, **generation}, rank, world_size,
                             progress)
        else:
            raise ValueError(f"--source {source!r}: choose diffusion or photos")


def _build_photos(out: Path, config, sets, flags: dict[str, Any]) -> None:
    from smile_data.objects.photos import build_photo_bank
    from smile_data.objects.settings import PhotoSettings

    settings = command_settings(PhotoSettings, config, sets, flags)
    with folder_lock(out, "rank-00000"):  # a second build into the folder refuses
        card = build_photo_bank(out, settings)
    _echo_counts(card, out)


def _build_diffusion(out: Path, config, sets, flags: dict[str, Any], rank, world_size,
                     progress: bool) -> None:
    from smile_data.distributed import resolve_work_share
    from smile_data.objects.build import BankBuilder
    from smile_data.objects.settings import BuildSettings

    settings = command_settings(BuildSettings, config, sets, flags)
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


IMPORT_FLAGS = {
    "link": SettingFlag("Hard-link files that are already tight-cropped 8-bit RGBA (a copy where hard "
                        "links are impossible, e.g. across file systems).", names=("--link/--copy",),
                        default="--copy"),
    "strict": SettingFlag("Fail on any bad file.", names=("--strict/--lenient",),
                          default="--lenient: fail only when nothing is imported"),
    "workers": "Decoding processes.",
    "max_pixels": "Largest width x height accepted, read from the PNG header.",
}


@setting_flags(ImportSettings, IMPORT_FLAGS)
def import_objects(
    src: Path = typer.Argument(..., help="Folder of RGBA PNGs laid out as <lvis_name>/<i>.png."),
    out: Path = typer.Option(..., "--out", help="Bank folder to create or resume."),
    given_flags: dict = None,
    config: Optional[Path] = CONFIG_OPTION,
    sets: Optional[list[str]] = SET_OPTION,
    progress: bool = PROGRESS_OPTION,
) -> None:
    """Import a folder of RGBA PNG cut-outs (e.g. the released 60,687-object set) as a bank."""
    from smile_data.objects.importer import REPORT_FILE, import_objects as run_import

    with _reported_errors():
        settings = command_settings(ImportSettings, config, sets, given_flags)
        with folder_lock(out, "import"):  # a second import into the folder refuses
            report = run_import(src, out, settings, show_progress=progress)
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

    with _reported_errors():
        _echo_counts(run_merge(bank), bank)


def register(app: typer.Typer) -> None:
    """Add the object-bank commands to the `smile-data` app."""
    app.command("build-objects")(build_objects)
    app.command("import-objects")(import_objects)
    app.command("merge-bank")(merge_bank)
