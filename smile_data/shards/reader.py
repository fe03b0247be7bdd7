"""Safe reading of clip shards: own decoders only, never unpickling, never extracting to disk.

Ours, not webdataset's tar iterator: that reads every member whole before any check of it.

Shards are exchanged between labs and are untrusted input. The tar is read as a plain
(uncompressed) stream (tar_stream.py: plain members parsed directly, anything else by tarfile);
each member's type, name and size are checked from its header before a byte of it is read, and only regular files named `<key>.<allowed extension>`
(layout.is_allowed_extension) of at most their extension's byte limit
(layout.member_byte_limit) are read into memory, at most MAX_SAMPLE_BYTES per sample. Tar header extensions (long names, pax records) over
MAX_HEADER_EXTENSION_BYTES are refused before tarfile reads them. Frames are decoded as JPEG or
PNG after their size was read from the image header and checked against the metadata, and a
clip is decoded only if it holds at most MAX_CLIP_PIXELS pixels.
"""

from __future__ import annotations

import glob
import json
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import simplejpeg

from smile_data.shards import layout, remote
from smile_data.shards.image_header import image_size
from smile_data.shards.layout import KEY_FIELD
from smile_data.shards.patterns import MAX_SHARD_NAMES, PatternTooLarge, expand_braces
from smile_data.shards.tar_stream import (  # noqa: F401 (UnreadableShard re-exported)
    UnreadableShard, bounded_tarinfo, tar_members,
)

log = logging.getLogger(__name__)

MAX_SAMPLE_BYTES = 256 << 20     # all members of one sample together
MAX_HEADER_EXTENSION_BYTES = 1 << 20  # a GNU long name or pax record block: names, not data
MAX_FRAME_PIXELS = 4096 * 4096   # declared frame size bound: refuse giant allocations
MAX_CLIP_PIXELS = 100 * 1024 * 1024  # frames x height x width of one decoded clip
# Frames are stored upright: an EXIF orientation tag must not turn them on decoding.
FRAME_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
IMAGE_FORMATS = {"jpg": "JPEG", "png": "PNG"}  # frame extension -> format name in messages
GLOB_CHARACTERS = "*?["
PLAIN_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)

_BoundedTarInfo = bounded_tarinfo(MAX_HEADER_EXTENSION_BYTES)  # tarfile headers, extensions bounded
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
    if info.type not in PLAIN_FILE_TYPES:
        kind = ("symlink" if info.issym() else "hard link" if info.islnk() else
                "directory" if info.isdir() else "device, sparse or special file")
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
    limit = layout.member_byte_limit(extension)
    if info.size > limit:
        return f"{info.size} bytes is more than the {limit} allowed for a .{extension} member"
    return None


def iter_tar_samples(path_or_fileobj: str | Path | IO[bytes],
                     on_refused: RefusedMember | None = None) -> Iterator[dict[str, Any]]:
    """Group a tar's allowed members by key: {"__key__": key, extension: bytes, ...}.

    `path_or_fileobj` is a local path or a readable binary stream (an open file, or what
    webdataset's gopen returns for a URL); it is read front to back once, never decompressed.
    Links, devices, folders, absolute or '..' names, disallowed extensions and oversized
    members are skipped and never read; each is reported to `on_refused(member, reason)`
    (default: a logged warning). Raises UnreadableShard (a ValueError) when the stream is not
    a readable uncompressed tar, and ValueError when a key's members are not contiguous, an
    extension repeats within a sample or a sample holds more than MAX_SAMPLE_BYTES.
    """
    if isinstance(path_or_fileobj, (str, Path)):
        with open(path_or_fileobj, "rb") as handle:
            yield from _iter_stream(handle, str(path_or_fileobj), on_refused)
    else:
        label = str(getattr(path_or_fileobj, "name", "<stream>"))
        yield from _iter_stream(path_or_fileobj, label, on_refused)


def _iter_stream(handle: IO[bytes], label: str,
                 on_refused: RefusedMember | None) -> Iterator[dict[str, Any]]:
    sample: dict[str, Any] | None = None
    sample_bytes = 0
    finished_keys: set[str] = set()
    for info, read in tar_members(handle, label, MAX_HEADER_EXTENSION_BYTES):
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
            sample, sample_bytes = {KEY_FIELD: key}, 0
        if extension in sample:
            raise ValueError(f"{label}: sample {key!r} holds {extension!r} twice")
        sample_bytes += info.size
        if sample_bytes > MAX_SAMPLE_BYTES:
            raise ValueError(f"{label}: sample {key!r}: member {info.name!r} brings the sample to "
                             f"{sample_bytes} bytes, over the {MAX_SAMPLE_BYTES} allowed")
        sample[extension] = read()
    if sample is not None:
        yield sample


def _frame_size(data: bytes, codec: str, where: str) -> tuple[int, int]:
    """(width, height) from the image header, checking the format matches the extension."""
    try:
        return image_size(data, codec)
    except ValueError as error:
        raise ValueError(f"{where}: not a readable {IMAGE_FORMATS[codec]} image ({error})") from None


def _decode_frame(data: bytes, codec: str, where: str, out: np.ndarray) -> None:
    """Decode into `out` (H, W, 3) RGB; the size was checked against the header before.

    JPEG goes straight into `out` through simplejpeg (libjpeg-turbo, the same pixels as
    OpenCV's decoder, a third faster and without a BGR copy); a JPEG simplejpeg refuses (CMYK,
    or damage it will not conceal) and PNG go through OpenCV."""
    if codec == "jpg":
        try:
            simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)
            return
        except ValueError:
            pass  # OpenCV decides below
    image = cv2.imdecode(np.frombuffer(data, np.uint8), FRAME_DECODE_FLAGS)
    if image is None or image.shape != out.shape:
        raise ValueError(f"{where}: the image data does not decode to its header's size")
    cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out)


def _decode_metadata(raw: dict[str, Any], key: str) -> dict[str, Any]:
    if layout.METADATA_EXTENSION not in raw:
        raise ValueError(f"sample {key}: member {key}.json is missing")
    try:
        metadata = json.loads(raw[layout.METADATA_EXTENSION])
    except RecursionError:  # nesting deeper than Python's stack: a corrupt sample, not a crash
        raise ValueError(f"sample {key}: member {key}.json is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"sample {key}: member {key}.json is not valid JSON ({error})") from None
    problems = layout.metadata_problems(metadata)
    if not problems and metadata.get("key") != key:
        problems = [f"key {metadata.get('key')!r} != the member key"]
    if not problems:
        problems = _size_problems(metadata["frames"], metadata["height"], metadata["width"])
    if problems:
        raise ValueError(f"sample {key}: member {key}.json: {'; '.join(problems)}")
    return metadata


def _size_problems(frames: int, height: int, width: int) -> list[str]:
    """Refuse sizes whose decoding would allocate more than the limits allow."""
    if height * width > MAX_FRAME_PIXELS:
        return [f"frame size {width}x{height} is over the limit of {MAX_FRAME_PIXELS} pixels"]
    if frames * height * width > MAX_CLIP_PIXELS:
        return [f"a clip of {frames} frames of {width}x{height} is over the limit of "
                f"{MAX_CLIP_PIXELS} pixels"]
    return []


def _decode_label(raw: dict[str, Any], key: str, metadata: dict[str, Any]) -> int | None:
    label = metadata.get("label")
    cls_label = layout.member_label(raw, key, label)
    return label if cls_label is None else cls_label


@dataclass
class EncodedClip:
    """A clip sample whose every member passed the checks that come before decoding: key and
    metadata valid, the label consistent, exactly its frames present, each frame's header
    size the metadata's (`open_sample`). Frames are decoded one at a time (`decode_into`)."""

    key: str
    metadata: dict[str, Any]
    label: int | None
    frames: list[bytes]  # encoded, in order
    codec: str
    height: int
    width: int

    def decode_into(self, t: int, out: np.ndarray) -> None:
        """Decode frame `t` into `out`, a (height, width, 3) uint8 array."""
        where = f"sample {self.key}: member {self.key}.{layout.frame_extension(t, self.codec)}"
        _decode_frame(self.frames[t], self.codec, where, out)

    def decode_all(self) -> np.ndarray:
        """Every frame: (T, height, width, 3) uint8."""
        frames = np.empty((len(self.frames), self.height, self.width, 3), np.uint8)
        for t in range(len(self.frames)):
            self.decode_into(t, frames[t])
        return frames


def open_sample(raw: dict[str, Any]) -> EncodedClip:
    """Check a raw sample dict (from iter_tar_samples) before any frame is decoded.

    Raises ValueError naming the key and member on any problem: missing, extra or unreadable
    frame headers, a frame of the wrong size, bad JSON or metadata, a bad label.
    """
    key = raw.get(KEY_FIELD)
    if not isinstance(key, str) or not layout.KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} does not match {layout.KEY_PATTERN.pattern}")
    video = next((e for e in layout.VIDEO_EXTENSIONS if e in raw), None)
    if video:
        raise ValueError(f"sample {key}: member {key}.{video}: a video sample, not clip frames "
                         "(read it with shards.video_sample.decode_video_sample)")
    metadata = _decode_metadata(raw, key)
    count, height, width, codec = (metadata[f] for f in ("frames", "height", "width", "codec"))
    expected = [layout.frame_extension(t, codec) for t in range(count)]
    extra = sorted(ext for ext in raw if layout.FRAME_EXTENSION_PATTERN.match(ext)
                   and ext not in expected)
    if extra:
        raise ValueError(f"sample {key}: member {key}.{extra[0]} is not one of its {count} "
                         f"{codec} frames")
    frames = []
    for extension in expected:
        where = f"sample {key}: member {key}.{extension}"
        if extension not in raw:
            raise ValueError(f"{where} is missing")
        size = _frame_size(raw[extension], codec, where)
        if size != (width, height):
            raise ValueError(f"{where} is {size[0]}x{size[1]}, the metadata says {width}x{height}")
        frames.append(raw[extension])
    label = _decode_label(raw, key, metadata)
    return EncodedClip(key, metadata, label, frames, codec, height, width)


def decode_sample(raw: dict[str, Any]) -> ClipSample:
    """Decode a raw sample dict (from iter_tar_samples) with the project's own decoders,
    after every check of `open_sample`; ValueError names the key and member of a problem."""
    clip = open_sample(raw)
    return ClipSample(clip.key, clip.decode_all(), clip.metadata, clip.label)


def decode_webdataset_sample(sample: dict[str, Any]) -> ClipSample:
    """Decode a raw sample of `webdataset.WebDataset(urls)` (built without a webdataset decode stage).

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


def expand_urls(urls: str | Sequence[str], setting: str = "shards") -> list[str]:
    """Brace patterns ({000000..000009}) and globs expanded; `pipe:` and URLs kept as is.
    More than MAX_SHARD_NAMES names in all is refused (PatternTooLarge naming `setting`),
    a pattern before it is expanded (patterns.py)."""
    expanded = []
    for url in [urls] if isinstance(urls, (str, Path)) else urls:
        for item in expand_braces(str(url), setting, already=len(expanded)):
            if not remote.is_local(item) or not any(c in item for c in GLOB_CHARACTERS):
                expanded.append(item)
            else:
                matches = sorted(glob.glob(item))
                if not matches:
                    raise FileNotFoundError(f"no shard matches {item}")
                expanded += matches
        if len(expanded) > MAX_SHARD_NAMES:  # globs: counted once matched
            raise PatternTooLarge(f"{setting}: {len(expanded)} shards, more than the "
                                  f"{MAX_SHARD_NAMES} a shard list may hold")
    return expanded


def read_samples(urls: str | Sequence[str]) -> Iterator[ClipSample]:
    """Decoded clips of the shards `urls` (paths, globs, brace patterns, pipe:, URLs), each
    opened as the trainer opens its shards (remote.open_shard).

    The urls are the caller's own: a `pipe:` url runs its command. Shard names read from a
    dataset folder's card go through `read_shard_files`, which opens files only.
    """
    for url in expand_urls(urls):
        with remote.open_shard(url) as stream:
            for raw in iter_tar_samples(stream):
                yield decode_sample(raw)


def read_shard_files(locations: Sequence[str | Path], integrity: Any = None,
                     decode: Callable[[dict[str, Any]], ClipSample] | None = None,
                     keep: Callable[[str], bool] | None = None) -> Iterator[ClipSample]:
    """Decoded clips of local shard files or shard URLs named by a card (remote.join), each
    opened as a plain file or through fsspec: never a pattern, `pipe:` or webdataset's opener.
    With `integrity` (integrity.IntegritySettings), samples are first checked against the card
    beside their shard (integrity.checked_samples). `decode` replaces decode_sample (preview
    passes one that also takes video samples); a sample it refuses is a ValueError naming the
    shard and the sample. With `keep`, samples whose key it refuses are passed over undecoded."""
    from smile_data.shards import integrity as checks

    indexes: checks.IndexCache = {}  # this call's own: the folders may be rewritten later
    for location in locations:
        with remote.open_binary(location) as stream:
            if integrity is None:
                raws = iter_tar_samples(stream)
            else:
                raws = checks.checked_samples(location, stream, integrity, _raise,
                                              iter_tar_samples, indexes)
            for raw in raws:
                if keep is not None and not keep(raw[KEY_FIELD]):
                    continue
                try:
                    sample = (decode or decode_sample)(raw)
                except ValueError as error:  # the sample is named; name its shard too
                    raise ValueError(f"{location}: {error}") from None
                yield sample


def _raise(error: Exception) -> None:
    raise error
