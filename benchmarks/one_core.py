"""Timing on one core, as the benchmark scripts do it: the command line parsed and the process
pinned to one core before anything else (`start_on_one_core`), the load average printed with
each table (other work on a shared machine shows there), and rows that take turns item by item
so that such load slows every row alike.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Iterator, Sequence

import cv2

from command_line import Option, benchmark_parser


def pin_to_one_core() -> str:
    """Pins this process (and OpenCV's and torch's threads) to one core; which core, in words.
    A thread pool larger than one spins its waiting threads on that core: CPU time not spent
    on the work."""
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "unpinned"


def start_on_one_core(description: str, options: Sequence[Option]) -> tuple[argparse.Namespace, str]:
    """How a one-core benchmark begins: its command line parsed (see command_line.py), then this
    process pinned; the options' values and the core, in words."""
    args = benchmark_parser(description, options).parse_args()
    return args, pin_to_one_core()


def load_figures() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. `0.52 0.61 0.70`."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def load_average() -> str:
    """The load averages with their name and the machine's core count."""
    return f"load average {load_figures()} on {os.cpu_count()} cores"


def cpu_seconds_in_turn(streams: dict[str, Iterator], items: int, warm_up: int = 1) -> dict[str, float]:
    """Each stream's next item in turn, `items` times; the CPU seconds of this process spent in
    each stream. The first `warm_up` items of each (libraries, a first shard, filled buffers)
    are drawn before, untimed."""
    for stream in streams.values():
        for _ in range(warm_up):
            next(stream)
    seconds = dict.fromkeys(streams, 0.0)
    for _ in range(items):
        for name, stream in streams.items():
            start = time.process_time()
            next(stream)
            seconds[name] += time.process_time() - start
    return seconds
