"""Pretraining data: shard URLs -> raw samples -> decoded clips -> crop/flip -> masks.

Stages are small generator functions over iterators of sample dicts (webdataset style), run
inside DataLoader workers. Decoding goes through the project's safe reader (no unpickling).

Determinism: shard order and shuffling use a generator seeded from (seed, rank, worker); the
crop, flip and masks of a sample use one seeded from (seed, rank, worker, sample number), so a
resumed run can skip already-seen samples without decoding them and then continue exactly.
"""

from __future__ import annotations

import logging
import os
import tarfile
from typing import Any, Callable, Iterator

import cv2
import numpy as np
import torch
from webdataset.gopen import gopen
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from smile_data.shards.layout import boxes_array, footprint_boxes
from smile_data.shards import integrity, reader, remote
from smile_data.shards.dataset import CARD_FILE, load_card
from smile_train import masking
from smile_train.sampling import multiscale_crop_box

log = logging.getLogger(__name__)

REMOTE_PREFIXES = ("pipe:", *(f"{scheme}://" for scheme in remote.SCHEME_EXTRAS))
TOKEN_PATCH = 16  # spatial patch side of the student (SPEC §6)
TOKEN_TUBELET = 2  # frames per token
FLIP_PROBABILITY = 0.5
PREFETCH_BATCHES_PER_WORKER = 4


# --- shard lists ---------------------------------------------------------------------------


def expand_urls(spec: str, card_sha256: str = "") -> list[str]:
    """Comma-separated paths, globs, brace patterns, URLs and datasets -> the list of shard URLs.

    A dataset (a local folder or a URL, https:// s3:// gs:// hf://, holding dataset.json)
    stands for the shards its card lists, named under it only; `card_sha256` pins its card.
    Unsupported URL schemes and missing local shards are errors at start, before any loader
    worker runs.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    urls = []
    for part in parts:
        if remote.is_url(part) and not part.startswith("pipe:"):
            remote.check_url(part)
        if _is_dataset(part):
            card = load_card(part, card_sha256 or None)
            urls += [str(remote.join(part, shard["name"])) for shard in card["shards"]]
        else:
            urls += reader.expand_urls([part])
    if not urls:
        raise ValueError(f"shards: {spec!r} names no shard")
    for url in urls:
        if not url.startswith(REMOTE_PREFIXES) and not os.path.isfile(url):
            raise FileNotFoundError(f"shards: {url} not found")
    return urls


def _is_dataset(part: str) -> bool:
    """A dataset folder or URL, rather than shards (a .tar name, a pattern, pipe:)."""
    if part.startswith("pipe:") or any(c in part for c in "{*?["):
        return False
    if remote.is_url(part):
        return not part.rstrip("/").endswith(".tar")
    return os.path.isdir(part)


def count_samples(urls: list[str]) -> int:
    """Samples in the given shards, read from the dataset.json beside them (0 if unknown)."""
    cards: dict[str, dict[str, int]] = {}
    total = 0
    for url in urls:
        if url.startswith("pipe:"):
            return 0
        folder, name = integrity.split_shard_location(url)
        if str(folder) not in cards:
            card = load_card(folder) if remote.exists(remote.join(folder, CARD_FILE)) else {}
            cards[str(folder)] = {s["name"]: int(s["samples"]) for s in card.get("shards", [])}
        if name not in cards[str(folder)]:
            return 0
        total += cards[str(folder)][name]
    return total


def shard_stream(urls: list[str], rng: np.random.Generator) -> Iterator[dict[str, str]]:
    """Endless resampled shard URLs (each node and worker draws its own sequence)."""
    while True:
        yield {"url": urls[int(rng.integers(len(urls)))]}


def open_shard(url: str):
    """A binary stream of one shard: local files directly, the user's `pipe:` commands through
    webdataset, URLs through fsspec (remote.open_binary)."""
    if url.startswith("pipe:"):
        return gopen(url, "rb")
    return remote.open_binary(url)


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
            with open_shard(url) as stream:
                if url.startswith("pipe:"):
                    yield from reader.iter_tar_samples(stream)
                else:
                    yield from integrity.checked_samples(url, stream, checks, on_error,
                                                         reader.iter_tar_samples)
        except (OSError, ValueError, tarfile.TarError) as error:
            on_error(ValueError(f"shard {url}: {error}"))


def shuffle(samples: Iterator[dict], buffer_size: int, rng: np.random.Generator) -> Iterator[dict]:
    """Reservoir-style shuffle with a seeded generator (webdataset's uses global state)."""
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


# --- spatial augmentation (SPEC §4) ---------------------------------------------------------


def center_square_box(height: int, width: int) -> tuple[int, int, int, int]:
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def crop_resize(
    frames: np.ndarray, boxes: np.ndarray, box: tuple[int, int, int, int], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Crop (T, H, W, 3) frames to `box` and resize to size x size; boxes (T, K, 4) follow."""
    x0, y0, w, h = box
    if (x0, y0, w, h) == (0, 0, frames.shape[2], frames.shape[1]) and w == h == size:
        return frames, boxes
    out = np.empty((frames.shape[0], size, size, 3), np.uint8)
    for t, frame in enumerate(frames):
        out[t] = cv2.resize(frame[y0 : y0 + h, x0 : x0 + w], (size, size), interpolation=cv2.INTER_LINEAR)
    scale = np.array([size / w, size / h, size / w, size / h], np.float32)
    moved = (boxes - np.array([x0, y0, x0, y0], np.float32)) * scale
    return out, np.clip(moved, 0, size).astype(np.float32)


def hflip(frames: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror (T, H, W, 3) frames left-right; boxes (T, K, 4) follow."""
    width = frames.shape[2]
    flipped = boxes.copy()
    flipped[..., 0], flipped[..., 2] = width - boxes[..., 2], width - boxes[..., 0]
    out = np.empty_like(frames)
    for t, frame in enumerate(frames):  # OpenCV's flip is ~10x faster than a strided numpy copy
        cv2.flip(frame, 1, dst=out[t])
    return out, flipped


# --- the dataset -----------------------------------------------------------------------------


def object_boxes(metadata: dict[str, Any], object_cells: str) -> np.ndarray:
    """(T, K, 4) boxes the trajectory mask is built from: the shards store each object's
    unrotated box and its angle per frame; "rotated" turns the box into its rotated bounds."""
    return footprint_boxes(metadata) if object_cells == "rotated" else boxes_array(metadata)


class CorruptSampleCounter:
    """Counts samples (and shards) a worker could not read; raises past the configured limit."""

    def __init__(self, limit: int):
        self.limit, self.total, self.pending = limit, 0, 0

    def __call__(self, error: Exception) -> bool:
        self.total += 1
        self.pending += 1
        log.warning("skipping unreadable sample or shard: %s", error)
        if self.total > self.limit:
            raise RuntimeError(
                f"more than {self.limit} corrupt samples in one loader worker (last: {error}); "
                "run `smile-data validate` on the shards, or raise max_corrupt_samples"
            )
        return True

    def take_pending(self) -> int:
        pending, self.pending = self.pending, 0
        return pending


class PretrainClips(IterableDataset):
    """Endless stream of {"video": (T, S, S, 3) uint8, "masks": (R, N) bool, "corrupt": int};
    R = mask_repeats, or 1 when second_mask is "shuffled"."""

    def __init__(self, urls: list[str], settings: Any, rank: int = 0, skip_samples: Callable[[int, int], int] | None = None):
        super().__init__()
        self.urls, self.settings, self.rank = urls, settings, rank
        self.skip_samples = skip_samples or (lambda worker, workers: 0)

    def _grid(self) -> tuple[int, int, int]:
        s = self.settings
        return s.frames // TOKEN_TUBELET, s.input_size // TOKEN_PATCH, s.input_size // TOKEN_PATCH

    def _make_mask(self, rng: np.random.Generator, boxes: np.ndarray) -> np.ndarray:
        s = self.settings
        settings = masking.MaskSettings(s.mask, s.mask_ratio, s.traj_unmask_ratio, s.object_cells)
        return masking.sample_mask(rng, settings, self._grid(), boxes, TOKEN_PATCH, TOKEN_TUBELET)

    def _prepare(self, clip, rng: np.random.Generator) -> dict[str, Any]:
        s = self.settings
        frames, boxes = clip.frames, object_boxes(clip.metadata, s.object_cells)
        if frames.shape[0] != s.frames:
            raise ValueError(f"sample {clip.key}: {frames.shape[0]} frames, settings say {s.frames}")
        height, width = frames.shape[1:3]
        if s.crop == "multiscale":
            box = multiscale_crop_box(rng, height, width, s.input_size, tuple(s.crop_scales),
                                      s.crop_max_distort, s.crop_offsets)
        else:
            box = center_square_box(height, width)
        frames, boxes = crop_resize(frames, boxes, box, s.input_size)
        if s.flip and rng.random() < FLIP_PROBABILITY:
            frames, boxes = hflip(frames, boxes)
        # With second_mask "shuffled" the loop gives the further copies other clips' masks.
        repeats = 1 if s.second_mask == "shuffled" else s.mask_repeats
        masks = np.stack([self._make_mask(rng, boxes) for _ in range(repeats)])
        return {"video": torch.from_numpy(frames), "masks": torch.from_numpy(masks)}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        seed = [self.settings.seed, self.rank, worker]
        stream_rng = np.random.default_rng(seed)
        counter = CorruptSampleCounter(self.settings.max_corrupt_samples)
        raw = tar_samples(shard_stream(self.urls, stream_rng), counter, integrity_settings(self.settings))
        raw = shuffle(raw, self.settings.shuffle_buffer, stream_rng)
        to_skip = self.skip_samples(worker, workers)
        for number, sample in enumerate(raw):
            if number < to_skip:
                continue
            rng = np.random.default_rng([*seed, number])
            try:
                prepared = self._prepare(reader.decode_sample(sample), rng)
            except ValueError as error:
                counter(error)
                continue
            prepared["corrupt"] = counter.take_pending()
            yield prepared


def batches_skipped_per_worker(batches: int, workers: int) -> Callable[[int, int], int]:
    """How many batches each loader worker produced among the first `batches` (round robin)."""

    def count(worker: int, num_workers: int) -> int:
        num_workers = max(num_workers, 1)
        return max(0, -(-(batches - worker) // num_workers))

    return count


def build_loader(settings: Any, urls: list[str], micro_batch: int, rank: int, resume_batches: int = 0,
                 dataset_class: type[PretrainClips] = PretrainClips, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over `dataset_class`; `resume_batches` fast-forwards a resumed run."""
    checks = integrity_settings(settings)
    checks.check()
    if checks.mode != "off":  # card errors now, not in a worker; forked workers inherit these
        for url in urls:
            if not url.startswith("pipe:"):
                integrity.index_for_shard(url, checks.pins)
    per_worker = batches_skipped_per_worker(resume_batches, settings.num_workers)
    dataset = dataset_class(urls, settings, rank, lambda w, n: per_worker(w, n) * micro_batch)
    workers = settings.num_workers
    return DataLoader(
        dataset,
        batch_size=micro_batch,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers > 0 else None,
    )
