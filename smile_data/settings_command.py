"""The `settings` command that `smile-data` and `smile-train` both register: it lists every
setting of one of their commands (settings_listing.py formats the listings)."""

from __future__ import annotations

import importlib

import typer

from smile_data import settings_listing


def register_settings_command(app: typer.Typer, program: str, meanings_module: str) -> None:
    """Add `program settings [COMMAND]` to `app`. `meanings_module` names the module whose
    `listings()` gives the program's listings; it is imported only when the command runs
    (smile-train's imports torch)."""

    @app.command()
    def settings(
        command: str = settings_listing.command_argument(program),
        as_json: bool = settings_listing.JSON_OPTION,
    ) -> None:
        """List every setting of a command: key, type, default, allowed values and meaning (what
        --config FILE.yaml and --set KEY=VALUE take)."""
        listings = importlib.import_module(meanings_module).listings()
        settings_listing.print_listings(program, listings, command, as_json)
