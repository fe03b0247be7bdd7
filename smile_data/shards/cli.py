"""Command registration for this stage (filled in by the stage's implementation)."""

import typer


def register(app: typer.Typer) -> None:
    return None
