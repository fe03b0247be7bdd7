"""Pretraining data: shard URLs -> raw samples -> decoded clips -> crop/flip -> masks.

Stages are small generator functions over iterators of sample dicts (webdataset style), run
inside DataLoader workers. Decoding goes through the project's safe reader (no unpickling).

Determinism: shard order and shuffling use a generator seeded from (seed, rank, worker); the
crop, flip and masks of a sample use one seeded from (seed, rank, worker, sample number), so a
resumed run can skip already-seen samples without decoding them and then continue exactly.

Shard resampling and the shuffle buffer are ours: webdataset's ResampledShards and shuffle draw
from a random.Random by other rules (another order, so every run's clips would change).
"""

from __future__ import annotations

import itertools
import logging
import os
import tarfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from smile_data.render.trajectory import draw_index
from smile_data.shards import integrity, layout, reader, remote
from smile_data.shards.dataset import load_card
from smile_data.shards.patterns import MAX_SHARD_NAMES, PatternTooLarge, split_list
from smile_data.shards.sample_count import SampleCount, count_samples
from smile_train.data import masking
from smile_train.data.allocator import keep_freed_memory
from smile_train.data.sources import (  # noqa: F401 (object_boxes re-exported)
    Clip,
    SourceSampler,
    SourceSettings,
    base_source,
    object_boxes,
    stage_sources,
)
from smile_train.model.geometry import PATCH, TUBELET, token_grid
from smile_train.settings.checks import check_settings

log = logging.getLogger(__name__)

PREFETCH_BATCHES_PER_WORKER = 4
SHARD_STREAM, SOURCE_CHOICE_STREAM = 1, 2  # generator streams of a worker besides its samples


# --- shard lists ---------------------------------------------------------------------------


def expand_urls(spec: str, card_sha256: str = "", setting: str = "shards") -> list[str]:
    """Comma-separated (outside braces) paths, globs, brace patterns, URLs and datasets -> the list of shard URLs.

    A dataset (a local folder or a URL, https:// s3:// gs:// hf://, holding dataset.json)
    stands for the shards its card lists, named under it only; `card_sha256` pins its card.
    Unsupported URL schemes, missing local shards and more than MAX_SHARD_NAMES shards (a
    pattern is counted before it is expanded) are errors at start naming `setting`, before
    any loader worker runs.
    """
    parts = split_list(spec)
    urls: list[str] = []
    for part in parts:
        if remote.is_url(part):
            remote.check_url(part)
        if _is_dataset(part):
            card = load_card(part, card_sha256 or None)
            urls += [str(remote.join(part, shard["name"])) for shard in card["shards"]]
        else:
            urls += reader.expand_urls([part], setting)
        if len(urls) > MAX_SHARD_NAMES:
            raise PatternTooLarge(f"{setting}: {len(urls)} shards, more than the "
                                  f"{MAX_SHARD_NAMES} a shard list may hold")
    if not urls:
        raise ValueError(f"{setting}: {spec!r} names no shard")
    for url in urls:
        if remote.is_local(url) and not os.path.isfile(url):
            raise FileNotFoundError(f"{setting}: {url} not found")
    return urls


def _is_dataset(part: str) -> bool:
    """A dataset folder or URL, rather than shards (a .tar name, a pattern, pipe:)."""
    if remote.is_pipe(part) or any(c in part for c in "{*?["):
        return False
    if remote.is_url(part):
        return not part.rstrip("/").endswith(".tar")
    return os.path.isdir(part)


def shard_stream(urls: list[str], rng: np.random.Generator) -> Iterator[dict[str, str]]:
    """Endless resampled shard URLs (each node and worker draws its own sequence)."""
    while True:
        yield {"url": urls[int(rng.integers(len(urls)))]}


def integrity_settings(settings: Any) -> integrity.IntegritySettings:
    """The loader's integrity checks from a settings object (defaults where it has none)."""
    defaults = integrity.IntegritySettings()
    return integrity.IntegritySettings(
        mode=getattr(settings, "integrity", defaults.mode),
        on_mismatch=getattr(settings, "on_integrity_mismatch", defaults.on_mismatch),
        card_sha256=getattr(settings, "card_sha256", defaults.card_sha256))


def tar_samples(shards: Iterator[dict[str, str]], on_error: Callable[[Exception], Any],
                checks: integrity.IntegritySettings = integrity.IntegritySettings()) -> Iterator[dict]:
    """Raw samples of each shard, read by the project's reader: plain tar only, every member's
    name, type and size checked before its bytes are read, and each sample verified against
    its dataset's card as `checks` says (integrity.checked_samples). An unreadable shard is
    reported to `on_error` and the stream goes on with the next one; an integrity mismatch
    stops the stream (IntegrityError) or is reported to `on_error`, as `checks` says."""
    for shard in shards:
        url = shard["url"]
        try:
            with remote.open_shard(url) as stream:
                if remote.is_pipe(url):
                    samples = reader.iter_tar_samples(stream)
                else:
                    samples = integrity.checked_samples(url, stream, checks, on_error,
                                                        reader.iter_tar_samples)
                for raw in samples:
                    raw[layout.SHARD_FIELD] = url  # a sample found corrupt later names its shard
                    yield raw
        except TooManyCorruptSamples:
            raise  # on_error's own verdict, not another unreadable shard
        except (OSError, ValueError, tarfile.TarError) as error:
            on_error(ValueError(f"shard {url}: {error}"))


def shuffle(samples: Iterator[dict], buffer_size: int, rng: np.random.Generator) -> Iterator[dict]:
    """Reservoir-style shuffle with the source's seeded generator: once the buffer holds
    `buffer_size` samples, each new one takes the place of a random one, which is yielded."""
    if buffer_size <= 0:
        yield from samples
        return
    buffer: list[dict] = []
    for sample in samples:
        if len(buffer) < buffer_size:
            buffer.append(sample)
            continue
        index = int(rng.integers(buffer_size))
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


# --- the dataset -----------------------------------------------------------------------------


class TooManyCorruptSamples(ValueError):
    """A loader worker met more unreadable samples than max_corrupt_samples allows."""


class CorruptSampleCounter:
    """Counts samples (and shards) a worker could not read; raises TooManyCorruptSamples past
    the configured limit."""

    def __init__(self, limit: int):
        self.limit, self.total, self.pending = limit, 0, 0

    def __call__(self, error: Exception) -> bool:
        self.total += 1
        self.pending += 1
        log.warning("skipping unreadable sample or shard: %s", error)
        if self.total > self.limit:
            raise TooManyCorruptSamples(
                f"more than {self.limit} corrupt samples in one loader worker (last: {error}); "
                "run `smile-data validate` on the shards, or raise max_corrupt_samples"
            )
        return True

    def bad_sample(self, raw: dict[str, Any], error: Exception) -> None:
        """Count a sample of `tar_samples` that could not be prepared, naming its shard (once:
        a video's decoder errors name it already, sources.errors_named)."""
        named = f"shard {raw.get(layout.SHARD_FIELD, '?')}: "
        self(error if str(error).startswith(named) else ValueError(f"{named}{error}"))

    def take_pending(self) -> int:
        pending, self.pending = self.pending, 0
        return pending


@dataclass
class StageSource:
    """A source's settings and the shard URLs they name."""

    settings: SourceSettings
    urls: list[str]


def resolve_sources(settings: Any) -> list[StageSource]:
    """The stage's sources with their shard lists; a missing local shard is an error now."""
    return [StageSource(source, expand_urls(source.shards)) for source in stage_sources(settings)]


def epoch_clips(clips_per_epoch: int, shard_lists: list[tuple[str, list[str]]],
                counts: list[SampleCount | None] | None = None) -> tuple[int, str]:
    """(samples in one epoch, where that number came from): `clips_per_epoch` when set, else
    the samples of every (setting, shard URLs) pair counted once (sample_count.py: cards,
    video2dataset stats files or tar headers; a video shard holds one sample per video, so an
    epoch is a pass over the videos). `counts`: those pairs' counts when the caller has them."""
    if clips_per_epoch:
        return clips_per_epoch, "clips_per_epoch"
    counts = counts if counts is not None else [count_samples(urls) for _, urls in shard_lists]
    unknown = [shards for (shards, _), count in zip(shard_lists, counts) if count is None]
    if unknown:
        raise ValueError(f"shards {unknown[0]!r}: neither a dataset.json, video2dataset stats files nor "
                         "local tar headers give their size; set clips_per_epoch")
    return sum(c.total for c in counts), "; ".join(c.describe() for c in counts)


def stage_epoch_clips(settings: Any, sources: list[StageSource]) -> tuple[int, str]:
    """epoch_clips of a pretraining stage's sources."""
    return epoch_clips(settings.clips_per_epoch, [(source.settings.shards, source.urls) for source in sources])


def epoch_summary(settings: Any, clips_per_epoch: int, total_steps: int, counted_from: str = "") -> str:
    """The line printed at the start of a stage: what an epoch is and how many steps it takes."""
    steps = max(1, clips_per_epoch // settings.batch_size)
    repeats = getattr(settings, "mask_repeats", 1)
    text = (f"one epoch = {clips_per_epoch} samples{f' ({counted_from})' if counted_from else ''} = "
            f"{steps} steps of {settings.batch_size} (masked samples); {total_steps} steps in all")
    if repeats > 1:
        text += f"; each clip carries {repeats} masks, so a pass over the sources takes {repeats} epochs"
    return text


@dataclass(frozen=True)
class StreamStart:
    """Where the loader's sample streams start: after the first `batches` batches of `batch_size`
    clips (a resumed run; show-batch's epoch), or at the beginning.

    A DataLoader takes batch b from its worker b mod W, each worker running one stream. Stream w
    of W made ceil((batches - w) / W) of the first `batches` batches: it passes over their
    samples without decoding them. The DataLoader asks its worker 0 first, so worker j of a
    loader started after `batches` batches runs stream (j + batches) mod W.
    """

    batches: int = 0
    batch_size: int = 0

    def stream_of(self, loader_worker: int, workers: int) -> int:
        return (loader_worker + self.batches) % workers

    def samples_before(self, stream: int, workers: int) -> int:
        return max(0, -(-(self.batches - stream) // workers)) * self.batch_size


class PretrainClips(IterableDataset):
    """Endless stream of {"video": (T, S, S, 3) uint8, "masks": (R, N) bool, "key": str,
    "corrupt": int}; R = mask_repeats, or 1 when second_mask is "shuffled".

    `sources`: the stage's sources, or a plain list of shard URLs read with the stage's own
    data settings. Each sample picks its source by weight, then takes that source's next raw
    sample (sources.py turns it into a clip: temporal draw, crop, flip, overlays). `start`
    positions the streams (StreamStart).
    """

    def __init__(self, sources: list[StageSource] | list[str], settings: Any, rank: int = 0,
                 start: StreamStart = StreamStart()):
        super().__init__()
        if all(isinstance(url, str) for url in sources):
            base = check_settings(base_source(settings, settings.shards), "settings")
            sources = [StageSource(base, list(sources))]
        self.sources, self.settings, self.rank, self.start = list(sources), settings, rank, start

    def _grid(self) -> tuple[int, int, int]:
        return token_grid(self.settings.frames, self.settings.input_size)

    def _make_masks(self, rng: np.random.Generator, boxes: np.ndarray, count: int) -> np.ndarray:
        s = self.settings
        settings = masking.MaskSettings(s.mask, s.mask_ratio, s.traj_unmask_ratio, s.object_cells)
        return masking.sample_masks(rng, settings, count, self._grid(), boxes, PATCH, TUBELET)

    def _prepare(self, sampler: SourceSampler, raw: dict, rng: np.random.Generator) -> dict[str, Any]:
        return self._masked(sampler(raw, rng), rng)

    def _masked(self, clip: Clip, rng: np.random.Generator) -> dict[str, Any]:
        """A clip and its masks; with second_mask "shuffled" the loop gives the further copies
        other clips' masks."""
        s = self.settings
        repeats = 1 if s.second_mask == "shuffled" else s.mask_repeats
        masks = self._make_masks(rng, clip.boxes, repeats)
        sample = {"video": torch.from_numpy(clip.frames), "masks": torch.from_numpy(masks), "key": clip.key}
        if s.augment_device == "device":  # what the device does to the frames (a crop of all of them if done)
            height, width = clip.frames.shape[1:3]
            sample["crop"] = torch.tensor(clip.device_crop or (0, 0, width, height), dtype=torch.int64)
            sample["flip"] = torch.tensor(clip.device_flip)
        return sample

    def _shards(self, urls: list[str], rng: np.random.Generator) -> Iterator[dict[str, str]]:
        """The shards a source's stream reads: resampled with replacement, endlessly."""
        return shard_stream(urls, rng)

    def _raw_streams(self, seed: list[int], counter: CorruptSampleCounter) -> list[Iterator[dict]]:
        """Per source: resampled shards, read and shuffled with the source's own generator."""
        streams = []
        for index, source in enumerate(self.sources):
            stream_rng = np.random.default_rng([*seed, SHARD_STREAM, index])
            raw = tar_samples(self._shards(source.urls, stream_rng), counter, integrity_settings(self.settings))
            streams.append(shuffle(raw, self.settings.shuffle_buffer, stream_rng))
        return streams

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()  # in a loader worker; None in the main process
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return self.stream(self.start.stream_of(worker, workers), workers)

    def stream(self, worker: int, workers: int) -> Iterator[dict[str, Any]]:
        """Stream `worker` of `workers` (each loader worker runs one), from `start` on."""
        keep_freed_memory()  # runs in the loader worker
        s = self.settings
        seed = [s.seed, self.rank, worker]
        counter = CorruptSampleCounter(s.max_corrupt_samples)
        streams = self._raw_streams(seed, counter)
        samplers = [SourceSampler(source.settings, s.input_size, s.frames, getattr(s, "object_cells", "released"),
                                  crop_on_device=s.augment_device == "device") for source in self.sources]
        weights = [source.settings.weight for source in self.sources]
        choice_rng = np.random.default_rng([*seed, SOURCE_CHOICE_STREAM])
        to_skip = self.start.samples_before(worker, workers)
        for number in itertools.count():
            index = draw_index(choice_rng, weights) if len(weights) > 1 else 0
            sample = next(streams[index])
            if number < to_skip:
                continue  # a resumed run passes over what it has seen without decoding it
            rng = np.random.default_rng([*seed, number])
            try:
                prepared = self._prepare(samplers[index], sample, rng)
            except ValueError as error:
                counter.bad_sample(sample, error)
                continue
            prepared["corrupt"] = counter.take_pending()
            yield prepared


def build_loader(settings: Any, sources: list[StageSource] | list[str], micro_batch: int, rank: int,
                 resume_batches: int = 0, dataset_class: type[PretrainClips] = PretrainClips,
                 pin_memory: bool = False, collate: Callable[[list], Any] | None = None) -> DataLoader:
    """A DataLoader over `dataset_class`; `resume_batches` fast-forwards a resumed run;
    `collate` replaces the default batching."""
    checks = integrity_settings(settings)
    checks.check()
    urls = [url for source in sources for url in ([source] if isinstance(source, str) else source.urls)]
    if checks.mode != "off":  # card errors now, not in a worker; forked workers inherit these
        for url in urls:
            if not remote.is_pipe(url):
                integrity.index_for_shard(url, checks.pins)
    dataset = dataset_class(sources, settings, rank, StreamStart(resume_batches, micro_batch))
    workers = settings.num_workers
    return DataLoader(
        dataset,
        batch_size=micro_batch,
        num_workers=workers,
        pin_memory=pin_memory,
        collate_fn=collate,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers > 0 else None,
    )
