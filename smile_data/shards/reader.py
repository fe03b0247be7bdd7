"""Safe reading of clip shards: own decoders only, never unpickling, never extracting to disk.

Shards are exchanged between labs and are untrusted input. The tar is read as a stream;
only regular files whose names are `<key>.<allowed extension>` (layout.is_allowed_extension)
are read into memory, and only up to MAX_MEMBER_BYTES each. Frames are decoded as JPEG or
PNG after their size was read from the image header and checked against the metadata.
"""

from __future__ import annotations

import glob
import json
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

import braceexpand
import cv2
import numpy as np

from smile_data.shards import layout
from smile_data.shards.image_header import image_size

log = logging.getLogger(__name__)

MAX_MEMBER_BYTES = 64 << 20      # no frame, metadata or label is anywhere near this
MAX_FRAME_PIXELS = 4096 * 4096   # declared frame size bound: refuse giant allocations
IMAGE_FORMATS = {"jpg": "JPEG", "png": "PNG"}  # frame extension -> format name in messages
KEY_FIELD = "__key__"
GLOB_CHARACTERS = "*?["

RefusedMember = Callable[[tarfile.TarInfo, str], None]  # called with the member and the reason


@dataclass
class ClipSample:
    key: str
    frames: np.ndarray            # (T, H, W, 3) uint8 RGB
    metadata: dict[str, Any]
    label: int | None


def member_problem(info: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be read (None if it is a regular, allowed sample member)."""
    name = info.name
    if not info.isreg():
        kind = ("symlink" if info.issym() else "hard link" if info.islnk() else
                "directory" if info.isdir() else "device or special file")
        return f"{kind} members are not allowed"
    if name.startswith("/") or ".." in name.split("/"):
        return "absolute or '..' member path"
    if "/" in name:
        return "member paths may not hold folders"
    if "." not in name:
        return "member name has no extension"
    key, extension = layout.split_member_name(name)
    if not layout.KEY_PATTERN.match(key):
        return f"key {key!r} does not match {layout.KEY_PATTERN.pattern}"
    if not layout.is_allowed_extension(extension):
        return f"extension {extension!r} is not allowed in a shard"
    if info.size > MAX_MEMBER_BYTES:
        return f"{info.size} bytes is more than the {MAX_MEMBER_BYTES} allowed per member"
    return None


def iter_tar_samples(source: str | Path | IO[bytes],
                     on_refused: RefusedMember | None = None) -> Iterator[dict[str, Any]]:
    """Group a tar's allowed members by key: {"__key__": key, extension: bytes, ...}.

    Links, devices, folders, absolute or '..' names, disallowed extensions and oversized
    members are skipped and never read; each is reported to `on_refused(member, reason)`
    (default: a logged warning). Raises ValueError when a key's members are not contiguous
    or an extension repeats within a sample.
    """
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield from _iter_stream(handle, str(source), on_refused)
    else:
        yield from _iter_stream(source, str(getattr(source, "name", "<stream>")), on_refused)


def _iter_stream(handle: IO[bytes], label: str,
                 on_refused: RefusedMember | None) -> Iterator[dict[str, Any]]:
    sample: dict[str, Any] | None = None
    finished_keys: set[str] = set()
    with tarfile.open(fileobj=handle, mode="r|") as archive:
        for info in archive:
            problem = member_problem(info)
            if problem:
                if on_refused is None:
                    log.warning("%s: skipping member %r: %s", label, info.name, problem)
                else:
                    on_refused(info, problem)
                continue
            key, extension = layout.split_member_name(info.name)
            if sample is None or sample[KEY_FIELD] != key:
                if sample is not None:
                    finished_keys.add(sample[KEY_FIELD])
                    yield sample
                if key in finished_keys:
                    raise ValueError(f"{label}: members of sample {key!r} are not contiguous")
                sample = {KEY_FIELD: key}
            if extension in sample:
                raise ValueError(f"{label}: sample {key!r} holds {extension!r} twice")
            sample[extension] = archive.extractfile(info).read()
    if sample is not None:
        yield sample


def _frame_size(data: bytes, codec: str, where: str) -> tuple[int, int]:
    """(width, height) from the image header, checking the format matches the extension."""
    try:
        return image_size(data, codec)
    except ValueError as error:
        raise ValueError(f"{where}: not a readable {IMAGE_FORMATS[codec]} image ({error})") from None


def _decode_frame(data: bytes, where: str, out: np.ndarray) -> None:
    """Decode into `out` (H, W, 3) RGB; the size was checked against the header before."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.shape != out.shape:
        raise ValueError(f"{where}: the image data does not decode to its header's size")
    cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out)


def _decode_metadata(raw: dict[str, Any], key: str) -> dict[str, Any]:
    if layout.METADATA_EXTENSION not in raw:
        raise ValueError(f"sample {key}: member {key}.json is missing")
    try:
        metadata = json.loads(raw[layout.METADATA_EXTENSION])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"sample {key}: member {key}.json is not valid JSON ({error})") from None
    problems = layout.metadata_problems(metadata)
    if not problems and metadata.get("key") != key:
        problems = [f"key {metadata.get('key')!r} != the member key"]
    if not problems and metadata["height"] * metadata["width"] > MAX_FRAME_PIXELS:
        problems = [f"frame size {metadata['width']}x{metadata['height']} is over the limit"]
    if problems:
        raise ValueError(f"sample {key}: member {key}.json: {'; '.join(problems)}")
    return metadata


def _decode_label(raw: dict[str, Any], key: str, metadata: dict[str, Any]) -> int | None:
    label = metadata.get("label")
    if layout.LABEL_EXTENSION not in raw:
        return label
    try:
        cls_label = layout.decode_label(raw[layout.LABEL_EXTENSION])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"sample {key}: member {key}.cls: {error}") from None
    if label is not None and label != cls_label:
        raise ValueError(f"sample {key}: member {key}.cls says {cls_label}, the JSON {label}")
    return cls_label


def decode_sample(raw: dict[str, Any]) -> ClipSample:
    """Decode a raw sample dict (from iter_tar_samples) with the project's own decoders.

    Raises ValueError naming the key and member on any problem: missing, extra or
    undecodable frames, a frame of the wrong size, bad JSON or metadata, a bad label.
    """
    key = raw.get(KEY_FIELD)
    if not isinstance(key, str) or not layout.KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} does not match {layout.KEY_PATTERN.pattern}")
    metadata = _decode_metadata(raw, key)
    count, height, width, codec = (metadata[f] for f in ("frames", "height", "width", "codec"))
    expected = [layout.frame_extension(t, codec) for t in range(count)]
    extra = sorted(ext for ext in raw if layout.FRAME_EXTENSION_PATTERN.match(ext)
                   and ext not in expected)
    if extra:
        raise ValueError(f"sample {key}: member {key}.{extra[0]} is not one of its {count} "
                         f"{codec} frames")
    frames = np.empty((count, height, width, 3), np.uint8)  # (T, H, W, 3)
    for t, extension in enumerate(expected):
        where = f"sample {key}: member {key}.{extension}"
        if extension not in raw:
            raise ValueError(f"{where} is missing")
        data = raw[extension]
        size = _frame_size(data, codec, where)
        if size != (width, height):
            raise ValueError(f"{where} is {size[0]}x{size[1]}, the metadata says {width}x{height}")
        _decode_frame(data, where, frames[t])
    return ClipSample(key, frames, metadata, _decode_label(raw, key, metadata))


def decode_webdataset_sample(sample: dict[str, Any]) -> ClipSample:
    """Decode a raw sample of `webdataset.WebDataset(urls)` (built WITHOUT `.decode()`).

    Fields named `__...__` (key, url, ...) are ignored; any member extension that a shard may
    not hold is refused with ValueError before anything is decoded.
    """
    key = sample.get(KEY_FIELD)
    members = {name: value for name, value in sample.items()
               if not (name.startswith("__") and name.endswith("__"))}
    refused = sorted(name for name in members if not layout.is_allowed_extension(name))
    if refused:
        raise ValueError(f"sample {key}: member {key}.{refused[0]} is not allowed in a shard")
    return decode_sample({KEY_FIELD: key, **members})


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Brace patterns ({000000..000009}) and globs expanded; `pipe:` and URLs kept as is."""
    expanded = []
    for url in [urls] if isinstance(urls, (str, Path)) else urls:
        for item in braceexpand.braceexpand(str(url)):
            if "://" in item or item.startswith("pipe:") or not any(c in item for c in GLOB_CHARACTERS):
                expanded.append(item)
            else:
                matches = sorted(glob.glob(item))
                if not matches:
                    raise FileNotFoundError(f"no shard matches {item}")
                expanded += matches
    return expanded


def _open_url(url: str) -> IO[bytes]:
    if "://" in url or url.startswith("pipe:"):
        from webdataset.gopen import gopen

        return gopen(url, "rb")
    if not Path(url).is_file():
        raise FileNotFoundError(f"shard {url} not found")
    return open(url, "rb")


def read_samples(urls: str | Sequence[str]) -> Iterator[ClipSample]:
    """Decoded clips of the shards `urls` (paths, globs, brace patterns, pipe:, http(s)://)."""
    for url in expand_urls(urls):
        with _open_url(url) as stream:
            for raw in iter_tar_samples(stream):
                yield decode_sample(raw)
