"""`smile-train`: pretraining, finetuning, evaluation, linear probing and export.

Every command takes `--config FILE.yaml` (differences from the settings dataclass) and
repeatable `--set key=value`; multi-stage pretraining configs also accept `--set stage.key=value`.
Launch under torchrun for several processes or nodes; the commands read RANK / WORLD_SIZE.
"""

from __future__ import annotations

import sys

import typer

from smile_data.config import SettingsError, parse_set_options

app = typer.Typer(
    help="SMILE trainer: pretrain, finetune, evaluate, linear-probe, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="YAML file of settings (differences only).")
SET_OPTION = typer.Option(None, "--set", help="Override a setting: key=value (repeatable).")


@app.callback()
def callback() -> None:
    """SMILE trainer."""


@app.command()
def pretrain(
    config: str = CONFIG_OPTION,
    set_: list[str] = SET_OPTION,
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint of each stage."),
    init_from: str = typer.Option(None, "--init-from", help="Start (the first stage) from this checkpoint's weights."),
) -> None:
    """Masked video pretraining (SMILE: CLIP targets + trajectory masks; or VideoMAE pixels)."""
    from smile_train.pretrain import run_pretrain

    run_pretrain(config, parse_set_options(set_), resume, init_from)


def main() -> None:
    try:
        app()
    except (SettingsError, FileNotFoundError, ValueError, FloatingPointError) as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
