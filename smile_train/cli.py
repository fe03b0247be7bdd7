"""`smile-train`: pretraining, finetuning, evaluation, linear probing and export.

Every command takes `--config FILE.yaml` (differences from the settings dataclass) and
repeatable `--set key=value`; multi-stage pretraining configs also accept `--set stage.key=value`.
Launch under torchrun for several processes or nodes; the commands read RANK / WORLD_SIZE.
"""

from __future__ import annotations

import sys

import typer

from smile_data.config import SettingsError, parse_set_options
from smile_data.shards.integrity import IntegrityError

app = typer.Typer(
    help="SMILE trainer: pretrain, finetune, evaluate, linear-probe, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich markup would eat "[seed, i]" and "[8]"
)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML file of settings (differences only).")
SET_OPTION = typer.Option(None, "--set", help="Override a setting: key=value (repeatable).")
COMMANDS_OPTION = typer.Option(
    False, "--allow-commands",
    help="Let the config file's shard URLs run `pipe:` commands (refused without this flag).")


@app.callback()
def callback() -> None:
    """SMILE trainer."""


@app.command()
def pretrain(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of each stage."),
    init_from: str = typer.Option(None, "--init-from", help="Start (the first stage) from this checkpoint's weights."),
    allow_commands: bool = COMMANDS_OPTION,
) -> None:
    """Masked video pretraining (SMILE: CLIP targets + trajectory masks; or VideoMAE pixels)."""
    from smile_train.settings import load_pretrain_stages

    overrides = parse_set_options(set_)
    load_pretrain_stages(config, overrides, allow_commands)  # refused before the slow imports
    from smile_train.pretrain import run_pretrain

    run_pretrain(config, overrides, resume, init_from, allow_commands)


@app.command("show-batch")
def show_batch(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    stage: str = typer.Option(None, "--stage", help="Stage name (default: the first)."),
    epoch: int = typer.Option(0, "--epoch", help="Epoch whose first clips to show (0-based)."),
    clips: int = typer.Option(8, "--clips", help="How many clips."),
    out: str = typer.Option(..., "--out", help="Folder for the contact sheet (.png) and arrays (.npz)."),
) -> None:
    """The first clips of an epoch as the trainer gets them: boxes drawn, masked tokens shaded."""
    import json

    from smile_train.show_batch import show_batch as write_sheet

    typer.echo(json.dumps(write_sheet(config, parse_set_options(set_), stage, epoch, out, clips)))


def _flags(**values) -> dict:
    """Flags given on the command line (None = not given) as settings overrides."""
    return {key: value for key, value in values.items() if value is not None}


@app.command()
def finetune(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    shards: str = typer.Option(None, "--shards", help="Labelled training shards (from `smile-data pack`)."),
    val_shards: str = typer.Option(None, "--val-shards", help="Labelled shards tested with multi-view testing at the end."),
    num_classes: int = typer.Option(None, "--num-classes", help="Classes of the new head."),
    model: str = typer.Option(None, "--model", help="tiny | small | base"),
    out_dir: str = typer.Option(None, "--out", help="Run folder (checkpoints, metrics, eval.json)."),
    init: str = typer.Option(None, "--init", help="Start from a pretraining / finetuning checkpoint or an authors' file."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    allow_commands: bool = COMMANDS_OPTION,
) -> None:
    """Finetune a classifier (mean pool, fc_norm, linear head) on labelled clips (SPEC §7)."""
    from smile_data.config import load_settings
    from smile_train.finetune_settings import FinetuneSettings
    from smile_train.settings_check import check_settings

    overrides = _flags(shards=shards, val_shards=val_shards, num_classes=num_classes, model=model,
                       out_dir=out_dir, init_from=init) | parse_set_options(set_)
    check_settings(load_settings(FinetuneSettings, config, overrides, allow_commands))  # before slow imports
    from smile_train.finetune import run_finetune

    typer.echo(str(run_finetune(config, overrides, resume, allow_commands=allow_commands)))


@app.command()
def evaluate(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    checkpoint: str = typer.Option(None, "--checkpoint", help="A finetuned checkpoint."),
    shards: str = typer.Option(None, "--shards", help="Labelled test shards."),
    out: str = typer.Option(None, "--out", help="JSON report to write (default eval.json)."),
    clips: int = typer.Option(None, "--clips", help="Temporal views per video (K400 7, SSv2 2, UCF / HMDB 5)."),
    crops: int = typer.Option(None, "--crops", help="Spatial views per clip (3)."),
    class_names: str = typer.Option(None, "--class-names", help="Text file: one class name per line."),
    allow_commands: bool = COMMANDS_OPTION,
) -> None:
    """Multi-view test: softmax averaged over clips x crops; top-1, top-5, per-class accuracy."""
    import json

    from smile_data.config import load_settings
    from smile_train.finetune_settings import EvalSettings
    from smile_train.settings_check import check_settings

    overrides = _flags(checkpoint=checkpoint, shards=shards, out=out, test_clips=clips,
                       test_crops=crops, class_names=class_names) | parse_set_options(set_)
    settings = check_settings(load_settings(EvalSettings, config, overrides, allow_commands))
    from smile_train.evaluate import run_evaluate

    report = run_evaluate(settings)
    typer.echo(json.dumps({k: report[k] for k in ("top1", "top5", "mean_class_accuracy", "videos", "views")}))


@app.command("linear-probe")
def linear_probe(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    checkpoint: str = typer.Option(None, "--checkpoint", help="Pretraining or finetuning checkpoint (frozen)."),
    shards: str = typer.Option(None, "--shards", help="Labelled training shards."),
    val_shards: str = typer.Option(None, "--val-shards", help="Labelled test shards."),
    num_classes: int = typer.Option(None, "--num-classes"),
    epochs: int = typer.Option(None, "--epochs"),
    out_dir: str = typer.Option(None, "--out", help="Folder for probe.pt, probe.json and the feature cache."),
    allow_commands: bool = COMMANDS_OPTION,
) -> None:
    """Linear probing: frozen encoder, cached mean-pooled features, a linear head."""
    import json

    from smile_data.config import load_settings
    from smile_train.finetune_settings import ProbeSettings
    from smile_train.settings_check import check_settings

    overrides = _flags(checkpoint=checkpoint, shards=shards, val_shards=val_shards, num_classes=num_classes,
                       epochs=epochs, out_dir=out_dir) | parse_set_options(set_)
    settings = check_settings(load_settings(ProbeSettings, config, overrides, allow_commands))
    from smile_train.probe import run_probe

    report = run_probe(settings)
    typer.echo(json.dumps({k: v for k, v in report.items() if k in ("train_top1", "top1", "top5", "videos")}))


@app.command()
def export(
    checkpoint: str = typer.Option(..., "--checkpoint", help="This project's checkpoint or an authors' file."),
    out: str = typer.Option(..., "--out", help="Folder to write."),
    format_: str = typer.Option("hf", "--format", help="hf: a transformers VideoMAE folder."),
    class_names: str = typer.Option(None, "--class-names", help="Text file: one class name per line (id2label)."),
) -> None:
    """Export for transformers: VideoMAEModel (pretraining) or VideoMAEForVideoClassification (finetuned)."""
    from smile_train.export import export_hf
    from smile_train.finetune_settings import read_class_names

    if format_ != "hf":
        raise ValueError(f"--format {format_!r}: only hf is supported")
    typer.echo(str(export_hf(checkpoint, out, read_class_names(class_names or ""))))


@app.command("import")
def import_checkpoint(
    checkpoint: str = typer.Option(..., "--checkpoint", help="An authors' VideoMAE / SMILE file."),
    out: str = typer.Option(..., "--out", help="This project's checkpoint to write (.pt)."),
    input_size: int = typer.Option(0, "--input-size", help="Clip side the model was trained at (0: 224)."),
    frames: int = typer.Option(0, "--frames", help="Frames per clip (0: 16)."),
    class_names: str = typer.Option(None, "--class-names", help="Text file: one class name per line."),
) -> None:
    """Convert an authors' pretraining or finetuned file into this project's checkpoint format."""
    import json

    from smile_train.export import import_authors
    from smile_train.finetune_settings import read_class_names

    summary = import_authors(checkpoint, out, input_size, frames, read_class_names(class_names or ""))
    typer.echo(json.dumps(summary, sort_keys=True))


def main() -> None:
    try:
        app()
    except (SettingsError, FileNotFoundError, ValueError, FloatingPointError, IntegrityError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
