"""Brace patterns of shard names (`clips-{000000..000099}.tar`, `{a,b}-{0..9}.tar`), counted
before they are expanded.

braceexpand builds every alternative list whole before it yields a name (itertools.product
holds each one), so a single `{000000000..099999999}` in a shared config would allocate
gigabytes, and nested patterns multiply. `count_names` walks braceexpand's grammar (the same
rules for ranges, comma lists, escapes and braces that are neither) without expanding
anything; `expand_braces` refuses a pattern whose names would pass MAX_SHARD_NAMES, naming the
setting it came from.
"""

from __future__ import annotations

import re
import string
from typing import Iterator

import braceexpand

# A million shards of 1,000 clips are a billion clips, past any video dataset.
MAX_SHARD_NAMES = 1_000_000
MAX_BRACE_DEPTH = 16  # nesting of braces (a shard pattern needs one or two)
ESCAPE = "\\"
ALPHABET = string.ascii_uppercase + string.ascii_lowercase  # braceexpand's character ranges
INT_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.-?(\d+))?$")
CHAR_RANGE = re.compile(r"^([A-Za-z])\.\.([A-Za-z])(?:\.\.-?(\d+))?$")


class PatternTooLarge(ValueError):
    """A brace pattern that would expand to more names than allowed."""


def _step(text: str | None) -> int:
    return (int(text) or 1) if text else 1


def _range_count(expression: str) -> int | None:
    """Names of `{a..b}` / `{a..b..step}` (numbers or letters); None if it is not a range."""
    match = INT_RANGE.match(expression)
    if match:
        start, end, step = int(match[1]), int(match[2]), _step(match[3])
        return abs(end - start) // step + 1
    match = CHAR_RANGE.match(expression)
    if match:
        start, end = ALPHABET.index(match[1]), ALPHABET.index(match[2])
        step = _step(match[3])
        if start < end:
            return len(ALPHABET[start:end + 1:step])
        return len(ALPHABET[start:(end or -len(ALPHABET)) - 1:-step])
    return None


def split_list(spec: str) -> list[str]:
    """The non-empty entries of a comma-separated shard list; a comma inside braces belongs
    to its pattern (`a-{0,1}.tar,b.tar` is two entries)."""
    parts = _comma_parts(spec) or [spec]
    return [part.strip() for part in parts if part.strip()]


def _unescaped(text: str) -> Iterator[tuple[int, str]]:
    """(position, character) of each character that no backslash escapes."""
    position = 0
    while position < len(text):
        if text[position] == ESCAPE:
            position += 2
            continue
        yield position, text[position]
        position += 1


def _comma_parts(expression: str) -> list[str] | None:
    """The parts of a comma list at brace depth 0; None when it is not one."""
    parts, start, depth = [], 0, 0
    for position, character in _unescaped(expression):
        if character == "{":
            depth += 1
        elif character == "}":
            depth -= 1
        elif character == "," and depth == 0:
            parts.append(expression[start:position])
            start = position + 1
    if depth != 0 or not parts:
        return None
    return [*parts, expression[start:]]


def _expression_count(expression: str, depth: int) -> int:
    """Names of the inside of one `{...}`: a range, a comma list, or a literal brace pair."""
    count = _range_count(expression)
    if count is not None:
        return count
    parts = _comma_parts(expression)
    if parts is None:  # braces that are neither: kept as text around the expanded inside
        return count_names(expression, depth + 1)
    return sum(count_names(part, depth + 1) for part in parts)


def count_names(pattern: str, depth: int = 0) -> int:
    """How many names `braceexpand(pattern)` yields, computed without expanding any.
    ValueError for unbalanced or too deeply nested braces."""
    if depth > MAX_BRACE_DEPTH:
        raise ValueError(f"braces nested deeper than {MAX_BRACE_DEPTH} levels")
    total, start, level = 1, 0, 0
    for position, character in _unescaped(pattern):
        if character == "{":
            if level == 0:
                start = position
            level += 1
        elif character == "}":
            level -= 1
            if level == 0:
                total *= _expression_count(pattern[start + 1:position], depth)
                start = position + 1
    if level != 0:
        raise ValueError("unbalanced braces")
    return total


def expand_braces(pattern: str, setting: str, already: int = 0) -> list[str]:
    """The names of a brace pattern, refused (PatternTooLarge naming `setting`) when they and
    the `already` names expanded for the same setting would pass MAX_SHARD_NAMES."""
    try:
        count = count_names(pattern)
    except ValueError as error:
        raise ValueError(f"{setting}: {_shown(pattern)}: {error}") from None
    if already + count > MAX_SHARD_NAMES:
        raise PatternTooLarge(
            f"{setting}: {_shown(pattern)} expands to {count} names"
            f"{f' (after {already} others)' if already else ''}, more than the "
            f"{MAX_SHARD_NAMES} a shard list may hold")
    return list(braceexpand.braceexpand(pattern))


def _shown(pattern: str, limit: int = 120) -> str:
    return repr(pattern if len(pattern) <= limit else pattern[:limit] + "...")
