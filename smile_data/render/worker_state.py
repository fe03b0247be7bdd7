"""What a task keeps per process: source lists, the object bank, decoded sprites.

write_dataset sends the task object along with every call to a worker process, so a task holds
only its settings and the hashes of its source lists. Each process builds the heavy state once
(listing the sources and checking them against those hashes, opening the bank) and keeps it
here, keyed by the task's settings, for all the tasks it runs.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from typing import Any, Callable, TypeVar

from smile_data.config import settings_to_dict
from smile_data.render.sources import Source, list_sources

T = TypeVar("T")
MAX_STATES = 4  # distinct task settings kept per process (a test may run several renders)
_STATES: OrderedDict[str, Any] = OrderedDict()


def settings_key(kind: str, settings: Any) -> str:
    return kind + json.dumps(settings_to_dict(settings), sort_keys=True)


def process_state(key: str, build: Callable[[], T]) -> T:
    """The state stored under `key` in this process, built on first use."""
    if key not in _STATES:
        _STATES[key] = build()
        while len(_STATES) > MAX_STATES:
            _STATES.popitem(last=False)
    _STATES.move_to_end(key)
    return _STATES[key]


def remember_state(key: str, state: Any) -> None:
    """Store state already built in this process (the parent lists sources before the run)."""
    process_state(key, lambda: state)


def clear_process_states() -> None:
    """Forget every state, as a freshly started worker process would have none."""
    _STATES.clear()


def sources_sha256(sources: list[Source]) -> str:
    """Identifies a source list: names and labels in order."""
    text = "\n".join(f"{s.name}\t{'' if s.label is None else s.label}" for s in sources)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def checked_sources(spec: str, root: str, extensions: frozenset[str], what: str,
                    expected_sha256: str) -> list[Source]:
    """List the sources again in a worker and make sure they are the ones the run started with."""
    sources = list_sources(spec, root, extensions, what)
    if sources_sha256(sources) != expected_sha256:
        raise ValueError(f"{spec}: the {what} changed after the run started; rerun the command")
    return sources
