"""Loader throughput from a loopback HTTP server vs local disk, with integrity checks on/off.

The same synthetic JPEG shards (16 x 224x224 clips, written by the project's writer, so the
card and manifest carry shard and sample digests) are read through the trainer's shard stage
(`smile_train.data.tar_samples`: open, tar parse, verification) and decoded
(`reader.decode_sample`), from the local folder and from a range-request HTTP server on
127.0.0.1 in its own process (tests/loopback.py). Rows: integrity off, shard (sha256 of each
shard at its end) and sample (each sample against the manifest before it is yielded).
Best of `--repeats` passes over all shards; the reading process is pinned to one core.

    python benchmarks/bench_remote.py [--clips 96] [--repeats 3]
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))

from bench_reader import write_shards  # noqa: E402
from command_line import Option, benchmark_parser  # noqa: E402
from one_core import pin_to_one_core  # noqa: E402

from smile_data.shards import reader  # noqa: E402
from smile_data.shards.integrity import IntegritySettings  # noqa: E402
from smile_train.data.loader import CorruptSampleCounter, expand_urls, tar_samples  # noqa: E402

MODES = ("off", "shard", "sample")
SERVER_START_SECONDS = 30


def serve(folder: str, started, stop) -> None:
    from tests.loopback import http_server

    with http_server(Path(folder)) as server:
        started.put(server.url)
        stop.wait()


def one_pass(urls: list[str], mode: str, decode: bool) -> int:
    counter = CorruptSampleCounter(limit=0)
    checks = IntegritySettings(mode=mode)
    count = 0
    for raw in tar_samples(iter({"url": u} for u in urls), counter, checks):
        if decode:
            reader.decode_sample(raw)
        count += 1
    return count


def best_rate(urls: list[str], mode: str, decode: bool, repeats: int) -> float:
    best = float("inf")
    count = 0
    for _ in range(repeats):
        start = time.perf_counter()
        count = one_pass(urls, mode, decode)
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    args = benchmark_parser(__doc__, [
        Option("--clips", 96, "clips in the shards"),
        Option("--repeats", 3, "passes per row (best kept)"),
    ]).parse_args()
    with tempfile.TemporaryDirectory() as folder:
        write_shards(Path(folder), args.clips, frames=16, size=224, codec="jpg")
        context = multiprocessing.get_context("spawn")
        started, stop = context.Queue(), context.Event()
        server = context.Process(target=serve, args=(folder, started, stop), daemon=True)
        server.start()
        try:
            base = started.get(timeout=SERVER_START_SECONDS)
            pinned = pin_to_one_core()  # only now: the server process keeps the other cores
            sources = {"local disk": expand_urls(folder), "loopback HTTP": expand_urls(f"{base}/")}
            rows = []
            for source, urls in sources.items():
                for mode in MODES:
                    raw = best_rate(urls, mode, False, args.repeats)
                    decoded = best_rate(urls, mode, True, args.repeats)
                    rows.append((source, mode, raw, decoded))
        finally:
            stop.set()
            server.join(timeout=10)
    print(f"shard stage + decode, one reader ({pinned}), {args.clips} clips of 16 x 224x224 JPEG, "
          f"best of {args.repeats}")
    print(f"{'source':<15}{'integrity':<11}{'read clips/s':>14}{'read+decode clips/s':>22}")
    for source, mode, raw, decoded in rows:
        print(f"{source:<15}{mode:<11}{raw:>14.1f}{decoded:>22.1f}")


if __name__ == "__main__":
    main()
