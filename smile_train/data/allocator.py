"""Keep freed memory in a loader worker for the next clip instead of handing it back.

Each clip allocates a few arrays of megabytes (decoded frames, the crop, the masks). glibc
serves blocks that large with fresh mmap pages and returns them on free, so every clip pays
for the kernel zeroing and faulting those pages in again: on 16 x 224^2 clips that cost more
than the crop and flip together (benchmarks/bench_loader.py). Raising glibc's mmap and trim
thresholds keeps such blocks in the heap for reuse; the worker then holds on to about its peak
working set (plus at most TRIM_THRESHOLD free) instead of returning it between clips.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20   # glibc's largest allowed value: clip-sized blocks come from the heap
TRIM_THRESHOLD = 256 << 20  # free heap kept before memory goes back to the system


def keep_freed_memory() -> bool:
    """Tune glibc's allocator for this process; False (and nothing done) elsewhere."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): its allocator stays as it is
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
