"""How many samples a list of shards holds, found without decoding any of them.

An epoch is one pass over the samples, so the trainer needs their number before it starts.
Each shard's count comes from the first of these that has it:

    card     the `dataset.json` beside the shard (smile-data render / pack, or a fetched dataset)
    stats    video2dataset's `<shard>_stats.json` beside `<shard>.tar`: its `successes`, the
             samples that shard received, bounded by what the shard's bytes can hold
    headers  a local tar's member headers, read one by one while the data is seeked over, the
             samples counted by key as the reader groups them (time proportional to the
             number of members, memory constant)

A shard none of these can count (a `pipe:` command, a remote tar without a card or stats file)
leaves the total unknown: the caller then asks for `clips_per_epoch`.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from smile_data.safe_files import open_inside, read_inside
from smile_data.shards import remote
from smile_data.shards.integrity import split_shard_location
from smile_data.shards.dataset import CARD_FILE, load_card
from smile_data.shards.layout import split_member_name
from smile_data.shards.reader import _BoundedTarInfo, member_problem

STATS_SUFFIX = "_stats.json"  # video2dataset: `00012.tar` is counted in `00012_stats.json`
STATS_COUNT_FIELD = "successes"
MAX_STATS_BYTES = 1 << 20  # a stats file holds a few counters and a status table
TAR_BLOCK_BYTES = 512  # every tar member takes a header block: a shard holds at most size / 512 samples
HOW = ("card", "stats", "headers")


@dataclass
class SampleCount:
    """Samples in a list of shards and how many shards were counted each way (HOW)."""

    total: int = 0
    shards_by: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        """E.g. `2 shards from dataset.json, 1 from video2dataset _stats.json`."""
        names = {"card": CARD_FILE, "stats": f"video2dataset {STATS_SUFFIX}", "headers": "tar headers"}
        parts = [f"{self.shards_by[how]} from {names[how]}" for how in HOW if self.shards_by[how]]
        if parts:
            first_count, rest = parts[0].split(" ", 1)
            parts[0] = f"{first_count} shard{'s' if first_count != '1' else ''} {rest}"
        return ", ".join(parts)


class _Cards:
    """The sample count of every shard a dataset folder's card lists, read once per folder."""

    def __init__(self) -> None:
        self.folders: dict[str, dict[str, int]] = {}

    def count(self, folder: str | Path, name: str) -> int | None:
        if str(folder) not in self.folders:
            card = load_card(folder) if remote.exists(remote.join(folder, CARD_FILE)) else {}
            self.folders[str(folder)] = {s["name"]: int(s["samples"]) for s in card.get("shards", [])}
        return self.folders[str(folder)].get(name)


def stats_count(location: str | Path) -> int | None:
    """`successes` of video2dataset's stats file beside the tar `location`, or None if there
    is none. A count the shard's bytes cannot hold, or a malformed file, is a ValueError."""
    folder, name = split_shard_location(location)
    if not name.endswith(".tar"):
        return None
    stats = remote.join(folder, name[: -len(".tar")] + STATS_SUFFIX)
    if not remote.exists(stats):
        return None
    data = read_inside(stats, folder, MAX_STATS_BYTES) if remote.is_local(stats) else \
        remote.read_bytes(stats, MAX_STATS_BYTES)
    try:
        count = json.loads(data)[STATS_COUNT_FIELD]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{stats}: not a video2dataset stats file (no integer {STATS_COUNT_FIELD!r})") from None
    most = remote.size(location) // TAR_BLOCK_BYTES
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= most:
        raise ValueError(f"{stats}: {STATS_COUNT_FIELD} {count!r} is not a sample count the "
                         f"{remote.size(location)} bytes of {name} can hold (0..{most})")
    return count


def header_count(path: str | Path) -> int:
    """Samples in a local tar, counted from its member headers (data seeked over); members the
    reader would refuse are not counted. An unreadable tar is a ValueError naming it."""
    keys, last = 0, None
    with open_inside(path, Path(path).parent) as handle:
        try:
            with tarfile.open(fileobj=handle, mode="r:", tarinfo=_BoundedTarInfo) as archive:
                while (info := archive.next()) is not None:
                    archive.members.clear()  # tarfile would keep every header
                    if member_problem(info):
                        continue
                    key = split_member_name(info.name)[0]
                    keys, last = keys + (key != last), key
        except (tarfile.TarError, EOFError) as error:
            raise ValueError(f"{path}: not a readable uncompressed tar ({type(error).__name__}: {error})") from None
    return keys


def count_samples(urls: list[str]) -> SampleCount | None:
    """The samples of `urls` (see the module docstring), or None if some shard cannot be counted."""
    counted, cards = SampleCount(), _Cards()
    for url in urls:
        if remote.is_pipe(url):
            return None
        folder, name = split_shard_location(url)
        count, how = cards.count(folder, name), "card"
        if count is None:
            count, how = stats_count(url), "stats"
        if count is None and remote.is_local(url):
            count, how = header_count(url), "headers"
        if count is None:
            return None
        counted.total += count
        counted.shards_by[how] += 1
    return counted

