"""`smile-train`: pretraining, finetuning, evaluation, linear probing and export.

The commands that take settings (pretrain, show-batch, finetune, evaluate, linear-probe) take
`--config FILE.yaml` (differences from the settings dataclass) and repeatable `--set key=value`;
multi-stage pretraining configs also accept `--set stage.key=value`; `smile-train settings
COMMAND` lists every key (smile_data/settings_listing.py).
Settings resolve as: defaults, then the file, then `--set`, then the explicit flags (the flags
of finetune, evaluate and linear-probe are derived from their settings: smile_data/cli_options.py).
`--out` is always where the command writes; `--init-from` the weights it starts from.
Launch under torchrun for several processes or nodes; the commands read RANK / WORLD_SIZE.
"""

from __future__ import annotations

import typer

from smile_data.cli_options import (
    SettingFlag, command_settings, config_option, make_app, set_option, setting_flags,
)
from smile_data.config import command_line_overrides, parse_set_options
from smile_data.settings_listing import settings_command
from smile_train.finetune_settings import EvalSettings, FinetuneSettings, ProbeSettings

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

FINETUNE_FLAGS = {
    "shards": "Labelled training shards (from `smile-data pack`).",
    "val_shards": "Labelled shards tested with multi-view testing at the end.",
    "num_classes": "Classes of the new head.",
    "model": "tiny | small | base.",
    "out": SettingFlag("Run folder to write: checkpoints/, metrics.jsonl, settings.json, eval.json.",
                       field="out_dir", metavar="DIR"),
    "init_from": SettingFlag(INIT_FROM_HELP, metavar="FILE"),
    "init": SettingFlag("Old spelling of --init-from.", field="init_from", deprecated=True),
}
EVALUATE_FLAGS = {
    "checkpoint": SettingFlag("A finetuned checkpoint.", metavar="FILE"),
    "shards": "Labelled test shards.",
    "out": SettingFlag("JSON report file to write.", metavar="FILE.json"),
    "clips": SettingFlag("Temporal views per video (K400 7, SSv2 2, UCF / HMDB 5).", field="test_clips"),
    "crops": SettingFlag("Spatial views per clip.", field="test_crops"),
    "class_names": SettingFlag(CLASS_NAMES_HELP, metavar="FILE"),
}
PROBE_FLAGS = {
    "checkpoint": SettingFlag("Pretraining or finetuning checkpoint (frozen).", metavar="FILE"),
    "shards": "Labelled training shards.",
    "val_shards": "Labelled test shards.",
    "num_classes": "Classes of the linear head.",
    "epochs": "Epochs of training the head.",
    "out": SettingFlag("Folder to write: probe.pt, probe.json, settings.json and the feature cache.",
                       field="out_dir", metavar="DIR"),
}


@app.callback()
def callback() -> None:
    """SMILE trainer."""


@app.command()
def pretrain(
    config: str = CONFIG_OPTION,
    set_: list[str] = STAGE_SET_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of each stage."),
    init_from: str = typer.Option(None, "--init-from", metavar="FILE",
                                  help=INIT_FROM_HELP + " Starts the first stage."),
    allow_commands: bool = COMMANDS_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    world_size: int = WORLD_SIZE_OPTION,
) -> None:
    """Masked video pretraining (SMILE: CLIP targets + trajectory masks; or VideoMAE pixels)."""
    from smile_train.settings import load_pretrain_stages

    overrides = parse_set_options(set_)
    load_pretrain_stages(config, overrides, allow_commands)  # refused before the slow imports
    from smile_train.pretrain import plan_pretrain, run_pretrain

    if dry_run:
        typer.echo(plan_pretrain(config, overrides, init_from, allow_commands, world_size))
        return
    run_pretrain(config, overrides, resume, init_from, allow_commands)


@app.command("show-batch")
def show_batch(
    config: str = CONFIG_OPTION,
    set_: list[str] = STAGE_SET_OPTION,
    stage: str = typer.Option(None, "--stage", help="Stage name (default: the first)."),
    epoch: int = typer.Option(0, "--epoch", help="Epoch whose first clips to show (0-based)."),
    clips: int = typer.Option(8, "--clips", help="How many clips."),
    out: str = typer.Option(..., "--out", metavar="DIR",
                            help="Folder to write: the contact sheet (.png) and arrays (.npz)."),
) -> None:
    """The first clips of an epoch as the trainer gets them: boxes drawn, masked tokens shaded."""
    import json

    from smile_train.show_batch import show_batch as write_sheet

    typer.echo(json.dumps(write_sheet(config, parse_set_options(set_), stage, epoch, out, clips)))


@app.command()
@setting_flags(FinetuneSettings, FINETUNE_FLAGS)
def finetune(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    given_flags: dict = None,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    allow_commands: bool = COMMANDS_OPTION,
    dry_run: bool = DRY_RUN_OPTION,
    world_size: int = WORLD_SIZE_OPTION,
) -> None:
    """Finetune a classifier (mean pool, fc_norm, linear head) on labelled clips (docs/method.md §7)."""
    from smile_train.finetune import plan_finetune, run_finetune  # both check the settings first

    overrides = command_line_overrides(set_, given_flags)

    if dry_run:
        typer.echo(plan_finetune(config, overrides, allow_commands=allow_commands, world_size=world_size))
        return
    typer.echo(str(run_finetune(config, overrides, resume, allow_commands=allow_commands)))


def _run_evaluate(settings: EvalSettings) -> dict:
    from smile_train.evaluate import run_evaluate

    return run_evaluate(settings)


def _run_probe(settings: ProbeSettings) -> dict:
    from smile_train.probe import run_probe

    return run_probe(settings)


def _report_command(cls: type, table: dict[str, SettingFlag], run, headline: tuple[str, ...],
                    summary: str):
    """A command that resolves `cls`, runs `run(settings)` and prints the report's headline."""
    def command(
        config: str = CONFIG_OPTION,
        set_: list[str] = SET_OPTION,
        given_flags: dict = None,
        allow_commands: bool = COMMANDS_OPTION,
    ) -> None:
        import json

        from smile_train.settings_check import check_settings

        settings = check_settings(command_settings(cls, config, set_, given_flags, allow_commands))
        report = run(settings)  # the slow imports happen once the settings are known to be good
        typer.echo(json.dumps({name: report[name] for name in headline if name in report}))

    command.__doc__ = summary
    return setting_flags(cls, table)(command)


app.command("evaluate")(_report_command(
    EvalSettings, EVALUATE_FLAGS, _run_evaluate, ("top1", "top5", "mean_class_accuracy", "videos", "views"),
    "Multi-view test: softmax averaged over clips x crops; top-1, top-5, per-class accuracy."))
app.command("linear-probe")(_report_command(
    ProbeSettings, PROBE_FLAGS, _run_probe, ("train_top1", "top1", "top5", "videos"),
    "Linear probing: frozen encoder, cached mean-pooled features, a linear head."))


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
    from smile_train.export import export_hf
    from smile_train.finetune_settings import read_class_names

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

    from smile_train.export import import_authors
    from smile_train.finetune_settings import read_class_names

    summary = import_authors(checkpoint, out, input_size, frames, read_class_names(class_names or ""))
    typer.echo(json.dumps(summary, sort_keys=True))


app.command("settings")(settings_command("smile-train", "smile_train.settings_meanings"))


def main() -> None:
    """Run the CLI; bad input ends with `error: ...` and status 2 (cli_options.AppGroup)."""
    app()


if __name__ == "__main__":
    main()
