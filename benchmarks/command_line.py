"""The command line of a benchmark script, declared as data: the script's description (its
docstring, or the docstring's first line) and one `Option` per flag, in the order `--help`
lists them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Option:
    """`--flag VALUE`, the value of the default's type (int, float or str), or a bare `--flag`
    when the default is False."""

    flag: str
    default: int | float | str | bool
    help: str | None = None
    choices: tuple[str, ...] | None = None


def benchmark_parser(description: str, options: Sequence[Option]) -> argparse.ArgumentParser:
    """The script's parser: `description` shown with its own line breaks, then the options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for option in options:
        if isinstance(option.default, bool):
            parser.add_argument(option.flag, action="store_true", help=option.help)
        else:
            parser.add_argument(option.flag, type=type(option.default), default=option.default,
                                choices=option.choices, help=option.help)
    return parser
