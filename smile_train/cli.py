"""`smile-train`: pretraining, finetuning, evaluation, linear probing and export."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="SMILE trainer: pretrain, finetune, evaluate, linear-probe, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def callback() -> None:
    """SMILE trainer."""


def main() -> None:
    app()
