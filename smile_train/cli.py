"""`smile-train`: pretraining, finetuning, evaluation, linear probing and export.

The commands that take settings (pretrain, show-batch, finetune, evaluate, linear-probe) take
`--config FILE.yaml` (differences from the settings dataclass) and repeatable `--set key=value`;
multi-stage pretraining configs also accept `--set stage.key=value`; `smile-train settings
COMMAND` lists every key (smile_data/settings_listing.py).
Settings resolve as: defaults, then the file, then `--set`, then the explicit flags (the flags
of finetune, evaluate and linear-probe are settings fields: `setting_option`, one line each, in
smile_data/cli_options.py). The flags the commands share (--config, --set, --allow-commands,
--dry-run, --world-size) come from `trainer_command`, before or after each command's own.
`--out` is always where the command writes; `--init-from` the weights it starts from.
Launch under torchrun for several processes or nodes; the commands read RANK / WORLD_SIZE.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import typer

from smile_data.cli_options import (
    command_settings,
    config_option,
    given_flags,
    make_app,
    set_option,
    setting_option,
    with_shared_options,
)
from smile_data.config import command_line_overrides, parse_set_options
from smile_data.settings_command import register_settings_command
from smile_train.settings.finetune import EvalSettings, FinetuneSettings, ProbeSettings

app = make_app("SMILE trainer: pretrain, finetune, evaluate, linear-probe, export.")

CONFIG_OPTION = config_option("settings", "-c")
SET_OPTION = set_option("setting", "smile-train")
STAGE_SET_OPTION = set_option("setting; a stage's as stage.key=value", "smile-train")
COMMANDS_OPTION = typer.Option(
    False, "--allow-commands",
    help="Let the config file's shard URLs run `pipe:` commands (refused without this flag).")
DRY_RUN_OPTION = typer.Option(
    False, "--dry-run", help="Print the plan (data, epochs, steps, batch, learning rate, masks, "
    "checkpoints per stage) and exit without training.")
WORLD_SIZE_OPTION = typer.Option(
    None, "--world-size", help="With --dry-run: plan for this many processes (default: the launcher's, else 1).")
INIT_FROM_HELP = ("Start from this checkpoint's weights: this project's pretraining or finetuning "
                  "checkpoint, or an authors' file.")
CLASS_NAMES_HELP = "Text file: one class name per line."

# A setting flag is one line in its command's signature: FINETUNE(field, help, ...) (cli_options.py).
FINETUNE = functools.partial(setting_option, FinetuneSettings)
EVALUATE = functools.partial(setting_option, EvalSettings)
PROBE = functools.partial(setting_option, ProbeSettings)
EVALUATE_HEADLINE = ("top1", "top5", "mean_class_accuracy", "videos", "views")
PROBE_HEADLINE = ("train_top1", "top1", "top5", "videos")


@dataclasses.dataclass(frozen=True)
class TrainingRun:
    """Where a trainer command's settings come from and how it runs: the flags the commands share
    (a command without --allow-commands, --dry-run or --world-size keeps their defaults)."""

    config: str | None
    set_options: list[str] | None
    allow_commands: bool = False
    dry_run: bool = False
    world_size: int | None = None


def trainer_command(set_flag: Any = SET_OPTION, allow_commands: bool = False,
                    dry_run: bool = False) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: --config and --set (`set_flag`) before the command's own flags; after them
    --allow-commands if `allow_commands`, --dry-run and --world-size if `dry_run`. The command
    takes them as one keyword-only parameter, `run: TrainingRun`."""
    after = {"allow_commands": (bool, COMMANDS_OPTION)} if allow_commands else {}
    if dry_run:
        after |= {"dry_run": (bool, DRY_RUN_OPTION), "world_size": (int, WORLD_SIZE_OPTION)}
    return with_shared_options(TrainingRun, before={"config": (str, CONFIG_OPTION),
                                                    "set_options": (list[str], set_flag)}, after=after)


@app.callback()
def callback() -> None:
    """SMILE trainer."""


@app.command()
@trainer_command(STAGE_SET_OPTION, allow_commands=True, dry_run=True)
def pretrain(
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of each stage."),
    init_from: str = typer.Option(None, "--init-from", metavar="FILE",
                                  help=INIT_FROM_HELP + " Starts the first stage."),
    *, run: TrainingRun,
) -> None:
    """Masked video pretraining (SMILE: CLIP targets + trajectory masks; or VideoMAE pixels)."""
    from smile_train.settings.pretrain import load_pretrain_stages

    stages = load_pretrain_stages(run.config, parse_set_options(run.set_options),  # before the slow imports
                                  run.allow_commands)
    from smile_train.loop.pretrain import plan_stages, run_stages

    if run.dry_run:
        typer.echo(plan_stages(run.config, stages, init_from, run.world_size))
        return
    run_stages(stages, resume, init_from)


@app.command("show-batch")
@trainer_command(STAGE_SET_OPTION)
def show_batch(
    stage: str = typer.Option(None, "--stage", help="Stage name (default: the first)."),
    epoch: int = typer.Option(0, "--epoch", help="Epoch whose first clips to show (0-based)."),
    clips: int = typer.Option(8, "--clips", help="How many clips."),
    out: str = typer.Option(..., "--out", metavar="DIR",
                            help="Folder to write: the contact sheet (.png) and arrays (.npz)."),
    *, run: TrainingRun,
) -> None:
    """The first clips of an epoch as the trainer gets them: boxes drawn, masked tokens shaded."""
    import json

    from smile_train.data.show_batch import show_batch as write_sheet

    typer.echo(json.dumps(write_sheet(run.config, parse_set_options(run.set_options), stage, epoch, out, clips)))


@app.command()
@trainer_command(allow_commands=True, dry_run=True)
def finetune(
    ctx: typer.Context,
    shards: str = FINETUNE("shards", "Labelled training shards (from `smile-data pack`)."),
    val_shards: str = FINETUNE("val_shards", "Labelled shards tested with multi-view testing at the end."),
    num_classes: int = FINETUNE("num_classes", "Classes of the new head."),
    model: str = FINETUNE("model", "tiny | small | base."),
    out: str = FINETUNE("out_dir", "Run folder to write: checkpoints/, metrics.jsonl, settings.json, "
                        "eval.json.", metavar="DIR"),
    init_from: str = FINETUNE("init_from", INIT_FROM_HELP, metavar="FILE"),
    init: str = FINETUNE("init_from", "Old spelling of --init-from.", deprecated=True),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    *, run: TrainingRun,
) -> None:
    """Finetune a classifier (mean pool, fc_norm, linear head) on labelled clips (docs/method.md §7)."""
    from smile_train.loop.finetune import plan_finetune, run_finetune  # both check the settings first

    overrides = command_line_overrides(run.set_options, given_flags(ctx))

    if run.dry_run:
        typer.echo(plan_finetune(run.config, overrides, allow_commands=run.allow_commands,
                                 world_size=run.world_size))
        return
    typer.echo(str(run_finetune(run.config, overrides, resume, allow_commands=run.allow_commands)))


@app.command()
@trainer_command(allow_commands=True)
def evaluate(
    ctx: typer.Context,
    checkpoint: str = EVALUATE("checkpoint", "A finetuned checkpoint.", metavar="FILE"),
    shards: str = EVALUATE("shards", "Labelled test shards."),
    out: str = EVALUATE("out", "JSON report file to write.", metavar="FILE.json"),
    clips: int = EVALUATE("test_clips", "Temporal views per video (K400 7, SSv2 2, UCF / HMDB 5)."),
    crops: int = EVALUATE("test_crops", "Spatial views per clip."),
    class_names: str = EVALUATE("class_names", CLASS_NAMES_HELP, metavar="FILE"),
    *, run: TrainingRun,
) -> None:
    """Multi-view test: softmax averaged over clips x crops; top-1, top-5, per-class accuracy."""
    from smile_train.loop.evaluate import run_evaluate  # the slow imports, only now

    run_report_command(ctx, EvalSettings, run, run_evaluate, EVALUATE_HEADLINE)


@app.command("linear-probe")
@trainer_command(allow_commands=True)
def linear_probe(
    ctx: typer.Context,
    checkpoint: str = PROBE("checkpoint", "Pretraining or finetuning checkpoint (frozen).", metavar="FILE"),
    shards: str = PROBE("shards", "Labelled training shards."),
    val_shards: str = PROBE("val_shards", "Labelled test shards."),
    num_classes: int = PROBE("num_classes", "Classes of the linear head."),
    epochs: int = PROBE("epochs", "Epochs of training the head."),
    out: str = PROBE("out_dir", "Folder to write: probe.pt, probe.json, settings.json and the feature "
                     "cache.", metavar="DIR"),
    *, run: TrainingRun,
) -> None:
    """Linear probing: frozen encoder, cached mean-pooled features, a linear head."""
    from smile_train.loop.probe import run_probe  # the slow imports, only now

    run_report_command(ctx, ProbeSettings, run, run_probe, PROBE_HEADLINE)


def run_report_command(ctx: typer.Context, cls: type, run: TrainingRun, runner: Callable[[Any], dict],
                       headline: tuple[str, ...]) -> None:
    """Check the command's settings of class `cls` (command_settings; refused if a value cannot
    work), then run them with `runner` and print the report's `headline` numbers as one JSON line."""
    import json

    from smile_train.settings.checks import check_settings

    settings = check_settings(command_settings(cls, run.config, run.set_options, given_flags(ctx), run.allow_commands))
    report = runner(settings)
    typer.echo(json.dumps({name: report[name] for name in headline if name in report}))


@app.command()
def export(
    checkpoint: str = typer.Option(..., "--checkpoint", metavar="FILE",
                                   help="This project's checkpoint or an authors' file."),
    out: str = typer.Option(..., "--out", metavar="DIR", help="Folder to write: config.json, model.safetensors, "
                            "preprocessor_config.json."),
    format_: str = typer.Option("hf", "--format", help="hf: a transformers VideoMAE folder."),
    class_names: str = typer.Option(None, "--class-names", metavar="FILE",
                                    help="Text file: one class name per line (id2label)."),
) -> None:
    """Export for transformers: VideoMAEModel (pretraining) or VideoMAEForVideoClassification (finetuned)."""
    from smile_train.interop.export import export_hf
    from smile_train.settings.finetune import read_class_names

    if format_ != "hf":
        raise ValueError(f"--format {format_!r}: only hf is supported")
    typer.echo(str(export_hf(checkpoint, out, read_class_names(class_names or ""))))


@app.command("import")
def import_checkpoint(
    checkpoint: str = typer.Option(..., "--checkpoint", metavar="FILE", help="An authors' VideoMAE / SMILE file."),
    out: str = typer.Option(..., "--out", metavar="FILE.pt",
                            help="Checkpoint file to write (.pt), in this project's format."),
    input_size: int = typer.Option(0, "--input-size", help="Clip side the model was trained at (0: 224)."),
    frames: int = typer.Option(0, "--frames", help="Frames per clip (0: 16)."),
    class_names: str = typer.Option(None, "--class-names", metavar="FILE", help=CLASS_NAMES_HELP),
) -> None:
    """Convert an authors' pretraining or finetuned file into this project's checkpoint format."""
    import json

    from smile_train.interop.export import import_authors
    from smile_train.settings.finetune import read_class_names

    summary = import_authors(checkpoint, out, input_size, frames, read_class_names(class_names or ""))
    typer.echo(json.dumps(summary, sort_keys=True))


register_settings_command(app, "smile-train", "smile_train.settings.meanings")


def main() -> None:
    """Run the CLI; bad input ends with `error: ...` and status 2 (cli_options.AppGroup)."""
    app()


if __name__ == "__main__":
    main()
