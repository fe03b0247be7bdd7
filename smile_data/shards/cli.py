"""`smile-data validate`, `preview`, `merge-shards`, `fetch` and `publish`: check, look at, finish,
receive and send datasets."""

from __future__ import annotations

from pathlib import Path

import typer

from smile_data.cli_options import (
    command_settings, config_option, progress_option, set_option, workers_option,
)
from smile_data.processes import MAX_WORKERS
from smile_data.shards.fetch import MAX_FETCH_WORKERS

CARD_SHA256_OPTION = typer.Option(
    None, "--card-sha256", metavar="SHA256",
    help="Refuse the dataset unless dataset.json has this sha256 (your root of trust).")


def validate(
    folder: str = typer.Argument(..., help="Dataset folder or URL (https://, s3://, gs://, hf://) "
                                 "holding shards + dataset.json + manifest.parquet."),
    quick: bool = typer.Option(False, "--quick", help="Only hashes, sizes and counts; no decoding."),
    workers: int = workers_option(1, MAX_WORKERS, "Processes reading shards."),
    card_sha256: str = CARD_SHA256_OPTION,
) -> None:
    """Check every shard against dataset.json and the manifest, and every sample against the layout."""
    from smile_data.shards.validate import validate_dataset

    report = validate_dataset(folder, quick=quick, workers=workers, card_sha256=card_sha256)
    for problem in report.problems:
        typer.echo(problem)
    typer.echo(report.summary(), err=True)
    if not report.ok:
        raise typer.Exit(1)


def preview(
    folder: str = typer.Argument(..., help="Dataset folder or URL, or a single shard."),
    out: Path = typer.Option(Path("preview.png"), "--out", "-o", metavar="FILE.png",
                             help="Contact sheet PNG to write."),
    clips: int = typer.Option(None, "--clips", help="Rows: the first N clips (default: 8)."),
    frames: int = typer.Option(None, "--frames", help="Evenly spaced frames per clip (default: 8)."),
    cell_size: int = typer.Option(None, "--cell-size", help="Pixels per frame cell (default: 128)."),
    gif: bool = typer.Option(None, "--gif/--no-gif", help="Also write <out>-<key>.gif per clip."),
    config: Path = config_option("PreviewSettings"),
    set_options: list[str] = set_option("PreviewSettings field"),
    card_sha256: str = CARD_SHA256_OPTION,
) -> None:
    """Contact sheet (and GIFs) of the first clips, with every object's box and class name."""
    from smile_data.shards.preview import PreviewSettings, make_preview

    flags = {"clips": clips, "frames": frames, "cell_size": cell_size, "gif": gif}
    settings = command_settings(PreviewSettings, config, set_options, flags)
    for path in make_preview(folder, out, settings, card_sha256):
        typer.echo(str(path))


def merge_shards(
    folder: Path = typer.Argument(..., help="Dataset folder holding every rank's shards and progress/."),
) -> None:
    """Merge the ranks' parts into manifest.parquet and dataset.json (ranks run on other machines)."""
    from smile_data.shards.card_readme import write_readme
    from smile_data.shards.dataset import finalize_dataset

    card = finalize_dataset(folder)
    write_readme(folder, card)
    counts = card["counts"]
    typer.echo(f"{folder}: {counts['shards']} shards, {counts['samples']} samples, "
               f"{counts['skipped']} skipped sources")


def fetch(
    url: str = typer.Argument(..., help="Dataset URL (https://, s3://, gs://, hf://) or folder."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="Local folder to mirror the dataset into."),
    shards: str = typer.Option(None, "--shards", metavar="RANGES",
                               help="Card positions to fetch, e.g. 0-9,12 (default: all)."),
    workers: int = workers_option(4, MAX_FETCH_WORKERS, "Parallel downloads."),
    card_sha256: str = CARD_SHA256_OPTION,
) -> None:
    """Mirror a dataset to local disk: parallel, resumable, every shard verified before it is kept."""
    from smile_data.shards.fetch import fetch_dataset

    report = fetch_dataset(url, out, shards=shards, workers=workers, card_sha256=card_sha256)
    typer.echo(f"{out}: {len(report.downloaded)} shards fetched ({len(report.resumed)} resumed), "
               f"{len(report.already_present)} already present, {report.bytes_read} bytes read")


def publish(
    folder: Path = typer.Argument(..., help="Finished dataset folder (shards + manifest.parquet + dataset.json)."),
    url: str = typer.Argument(..., help="Where to: a folder, s3://BUCKET/PATH, gs://BUCKET/PATH or "
                              "hf://datasets/ORG/NAME."),
    quick: bool = typer.Option(False, "--quick", help="Validate only hashes, sizes and counts; no decoding."),
    workers: int = workers_option(4, MAX_FETCH_WORKERS, "Parallel uploads and validating processes."),
    progress: bool = progress_option(),
) -> None:
    """Validate a dataset, upload its own files (shards, manifest, README, the card last; a rerun
    resumes) and print the line the receiving lab runs."""
    from smile_data.shards.publish import publish_dataset

    report = publish_dataset(folder, url, quick=quick, workers=workers, show_progress=progress)
    typer.echo(f"{url}: {len(report.uploaded)} files uploaded ({report.bytes_sent} bytes), "
               f"{len(report.already_there)} already there. The receiving lab runs:", err=True)
    typer.echo(report.fetch_command)


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("preview")(preview)
    app.command("merge-shards")(merge_shards)
    app.command("fetch")(fetch)
    app.command("publish")(publish)
