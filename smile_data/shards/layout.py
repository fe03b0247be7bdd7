"""The one definition of a shard sample: member names, allowed extensions, metadata schema.

A sample is one clip or one whole video. Its tar members share the key and differ by extension.
A clip:
    <key>.00.jpg ... <key>.15.jpg   frames (or .png), zero-padded to two digits
    <key>.json                      metadata, clip schema below
    <key>.cls                       integer label as ASCII text (labelled clips only)
A video (`smile-data pack --store video`, or video2dataset's layout):
    <key>.mp4 (or .webm, .mkv)      the encoded video, exactly one
    <key>.json                      metadata: the video schema below for our own shards; any JSON
                                    object for other tools' shards (e.g. video2dataset's)
    <key>.cls                       integer label (optional)
    <key>.txt                       UTF-8 caption (optional; video2dataset writes one)
Keys hold only letters, digits, '_' and '-' (no dots), so the first dot splits key and extension.
Each extension has its own byte limit (MEMBER_BYTE_LIMITS), checked from the tar header before a
member is read. The writer, the validator and the reader all import this module.

Metadata (`<key>.json`), schema version 1:
    schema_version  int, == SCHEMA_VERSION
    key             str, the sample key
    seed            int, the seed the clip was rendered from
    frames, height, width   int, clip geometry (T, H, W)
    codec           "jpg" | "png"
    background      {"kind": one of BACKGROUND_KINDS, "source": str | null,
                     "frame_indices": [int] | null}
    objects         list, one entry per overlaid object, in paste order:
                    {"kind": "object" | "patch", "bank_path": str | null, "lvis_id": int | null,
                     "name": str | null, "boxes": T x [x0, y0, x1, y1] (final-clip pixels),
                     "angles": T x degrees}
    label           int | null

Video metadata (`<key>.json` next to `<key>.mp4`), schema version 1:
    schema_version  int, == SCHEMA_VERSION
    key             str, the sample key
    kind            "video"
    source          str, the video as listed when packing
    fps             float > 0;  frames int >= 1;  duration float seconds (frames / fps)
    width, height   int, frame size of the stored video
    codec           str, e.g. "h264"
    keyframe_interval  int (frames between keyframes) | null (video stored as the source was)
    label           int | null
    frame_index     optional (written since the record was added; older shards lack it): each
                    frame's timestamp and the keyframes, so the loader need not read the
                    packets: {"time_base": [num, den], "first_pts": int,
                    "pts_steps": [[count, step], ...], "keyframes": [frame, ...]}
                    (smile_data/video/frame_index.py; checked against the video when read)
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

import numpy as np

SCHEMA_VERSION = 1
FRAME_CODECS = ("jpg", "png")
BACKGROUND_KINDS = ("natural", "frame", "image", "black", "noise")
OVERLAY_KINDS = ("object", "patch")
METADATA_EXTENSION = "json"
LABEL_EXTENSION = "cls"
CAPTION_EXTENSION = "txt"
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv")
VIDEO_KIND = "video"
MAX_FRAMES = 100  # two-digit frame numbers
MAX_LABEL = 10**9 - 1  # nine digits, as decode_label reads them
MAX_SOURCE_FRAME = 10**8  # a frame index into a source video (about 38 days at 30 fps)
BOX_REACH = 8  # box coordinates stay within 8 frame sides of the frame (objects may leave it)
MAX_TEXT = 4096  # characters of a source name, bank path or class name

# Bytes one member may hold, by extension (frames: FRAME_MEMBER_BYTES), read from its tar header.
VIDEO_MEMBER_BYTES = 64 << 20      # a 10 s 320p clip is ~1 MB; an hour of 720p still fits
FRAME_MEMBER_BYTES = 64 << 20      # no frame is anywhere near this
MEMBER_BYTE_LIMITS = {
    METADATA_EXTENSION: 4 << 20,   # video2dataset's JSON carries YouTube metadata: ~100 kB
    LABEL_EXTENSION: 64,
    CAPTION_EXTENSION: 1 << 20,
    **{extension: VIDEO_MEMBER_BYTES for extension in VIDEO_EXTENSIONS},
}

KEY_FIELD = "__key__"  # the key of a grouped sample, under webdataset's name for it
SHARD_FIELD = "__url__"  # the shard a loader read the sample from (webdataset's name), for messages
FRAME_INDEX_FIELD = "frame_index"  # video metadata: the frame index record (optional)
# Patterns end in \Z, not $: `$` also matches before a final newline ("key\n" is no key).
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")
FRAME_EXTENSION_PATTERN = re.compile(r"^(\d{2})\.(jpg|png)\Z")
SHARD_NAME_PATTERN = re.compile(r"^(?P<prefix>[A-Za-z0-9_-]+)-(?P<index>\d{6,})\.tar\Z")


def shard_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def sample_key(index: int) -> str:
    """The key of clip `index` of a dataset: zero-padded so keys sort in clip order."""
    return f"{index:010d}"


def frame_extension(frame: int, codec: str) -> str:
    return f"{frame:02d}.{codec}"


def split_member_name(name: str) -> tuple[str, str]:
    """`abc.03.jpg` -> ("abc", "03.jpg"). Raises ValueError for names without a dot."""
    if "." not in name:
        raise ValueError(f"member {name!r} has no extension")
    key, extension = name.split(".", 1)
    return key, extension


def is_allowed_extension(extension: str) -> bool:
    """Only frames, videos, metadata, labels and captions may be in a shard."""
    return extension in MEMBER_BYTE_LIMITS or FRAME_EXTENSION_PATTERN.match(extension) is not None


def member_byte_limit(extension: str) -> int:
    """The most bytes a member with this (allowed) extension may hold."""
    return MEMBER_BYTE_LIMITS.get(extension, FRAME_MEMBER_BYTES)


def video_extension(members: Any) -> str | None:
    """The extension of the sample's video member (None for a clip); ValueError if several."""
    found = [extension for extension in VIDEO_EXTENSIONS if extension in members]
    if len(found) > 1:
        raise ValueError(f"a sample holds more than one video ({', '.join(found)})")
    return found[0] if found else None


def check_key(key: str) -> None:
    if not KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} must match {KEY_PATTERN.pattern}")


def encode_metadata(metadata: dict[str, Any]) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace variance, so output is reproducible."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def encode_label(label: int) -> bytes:
    return str(int(label)).encode("ascii")


def decode_label(data: bytes) -> int:
    text = data.decode("ascii").strip()
    if not re.fullmatch(r"-?\d{1,9}", text):
        raise ValueError(f"label {text[:20]!r} is not an integer")
    return int(text)


def member_label(raw: dict[str, Any], key: str, json_label: int | None) -> int | None:
    """The label of sample `key`'s .cls member (None without one); where its JSON gives a label
    too (`json_label`), the two must agree."""
    if LABEL_EXTENSION not in raw:
        return None
    try:
        label = decode_label(raw[LABEL_EXTENSION])
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"sample {key}: member {key}.cls: {error}") from None
    if json_label is not None and json_label != label:
        raise ValueError(f"sample {key}: member {key}.cls says {label}, the JSON {json_label}")
    return label


def boxes_array(metadata: dict[str, Any]) -> np.ndarray:
    """Boxes of every object in every frame as float32 (T, N, 4) in final-clip pixels."""
    frames = int(metadata["frames"])
    objects = metadata.get("objects", [])
    if not objects:
        return np.zeros((frames, 0, 4), np.float32)
    return np.asarray([o["boxes"] for o in objects], np.float32).transpose(1, 0, 2)


def footprint_boxes(metadata: dict[str, Any]) -> np.ndarray:
    """What each object covers on screen: its box turned by its angle, as the axis-aligned
    bounding box, float32 (T, N, 4). Trajectory masks are built from these."""
    boxes = boxes_array(metadata)  # (T, N, 4) unrotated
    objects = metadata.get("objects", [])
    if not objects:
        return boxes
    angles = np.radians(np.asarray([o["angles"] for o in objects], np.float32).T)  # (T, N)
    centre_x, centre_y = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
    width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    cos, sin = np.abs(np.cos(angles)), np.abs(np.sin(angles))
    half_w, half_h = (width * cos + height * sin) / 2, (width * sin + height * cos) / 2
    return np.stack([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h], -1)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _schema_version_problems(metadata: dict) -> list[str]:
    version = metadata.get("schema_version")
    if _is_int(version) and version > SCHEMA_VERSION:
        return [f"schema_version {version} is newer than this smile reads (up to "
                f"{SCHEMA_VERSION}): upgrade smile (pip install -U smile)"]
    return [] if version == SCHEMA_VERSION else [f"schema_version {version!r} != {SCHEMA_VERSION}"]


def _json_object_problems(metadata: Any, field_problems: Callable[[dict, list[str]], list[str]]) -> list[str]:
    """Metadata must be a JSON object (else nothing more is checked) of this schema version;
    `field_problems` adds the problems of its fields to the version's."""
    if not isinstance(metadata, dict):
        return ["metadata is not a JSON object"]
    return field_problems(metadata, _schema_version_problems(metadata))


def metadata_problems(metadata: Any) -> list[str]:
    """Everything wrong with a sample's metadata against schema version 1 (empty if valid)."""
    return _json_object_problems(metadata, _clip_field_problems)


def _clip_field_problems(metadata: dict, problems: list[str]) -> list[str]:
    for field in ("seed", "frames", "height", "width"):
        if not _is_int(metadata.get(field)):
            problems.append(f"{field} must be an integer")
    if problems:
        return problems
    frames = metadata["frames"]
    if not 1 <= frames <= MAX_FRAMES:
        problems.append(f"frames {frames} outside 1..{MAX_FRAMES}")
    if metadata["height"] < 1 or metadata["width"] < 1:
        problems.append(f"frame size {metadata['width']}x{metadata['height']} is not positive")
    if metadata.get("codec") not in FRAME_CODECS:
        problems.append(f"codec {metadata.get('codec')!r} not in {FRAME_CODECS}")
    problems += _background_problems(metadata.get("background"))
    label = metadata.get("label")
    if label is not None and not (_is_int(label) and 0 <= label <= MAX_LABEL):
        problems.append(f"label must be an integer in 0..{MAX_LABEL} or null")
    objects = metadata.get("objects")
    if not isinstance(objects, list):
        return problems + ["objects must be a list"]
    reach = BOX_REACH * max(metadata["height"], metadata["width"])
    for i, obj in enumerate(objects):
        problems += [f"objects[{i}]: {p}" for p in _object_problems(obj, frames, reach)]
    return problems


def video_metadata_problems(metadata: Any) -> list[str]:
    """Everything wrong with the metadata of one of our own video samples (empty if valid)."""
    return _json_object_problems(metadata, _video_field_problems)


def _video_field_problems(metadata: dict, problems: list[str]) -> list[str]:
    if metadata.get("kind") != VIDEO_KIND:
        problems.append(f"kind {metadata.get('kind')!r} != {VIDEO_KIND!r}")
    for field in ("frames", "width", "height"):
        if not _is_int(metadata.get(field)) or metadata[field] < 1:
            problems.append(f"{field} must be a positive integer")
    for field in ("fps", "duration"):
        value = metadata.get(field)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            problems.append(f"{field} must be a positive number")
    if not isinstance(metadata.get("source"), str) or not isinstance(metadata.get("codec"), str):
        problems.append("source and codec must be strings")
    interval = metadata.get("keyframe_interval")
    if interval is not None and (not _is_int(interval) or interval < 1):
        problems.append("keyframe_interval must be a positive integer or null")
    label = metadata.get("label")
    if label is not None and not (_is_int(label) and 0 <= label <= MAX_LABEL):
        problems.append(f"label must be an integer in 0..{MAX_LABEL} or null")
    if FRAME_INDEX_FIELD in metadata and not isinstance(metadata[FRAME_INDEX_FIELD], dict):
        problems.append(f"{FRAME_INDEX_FIELD} must be an object (its fields are checked when the video is read)")
    return problems


def _is_text_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, str) and len(value) <= MAX_TEXT)


def _background_problems(background: Any) -> list[str]:
    if not isinstance(background, dict) or background.get("kind") not in BACKGROUND_KINDS:
        return [f"background.kind must be one of {BACKGROUND_KINDS}"]
    problems = []
    if not _is_text_or_null(background.get("source")):
        problems.append(f"background.source must be a string of at most {MAX_TEXT} characters or null")
    indices = background.get("frame_indices")
    if indices is not None and not (isinstance(indices, list) and indices and all(
            _is_int(i) and 0 <= i <= MAX_SOURCE_FRAME for i in indices)):
        problems.append(f"background.frame_indices must be null or a list of integers in 0..{MAX_SOURCE_FRAME}")
    return problems


def _object_problems(obj: Any, frames: int, reach: float) -> list[str]:
    if not isinstance(obj, dict):
        return ["not a JSON object"]
    problems = []
    if obj.get("kind") not in OVERLAY_KINDS:
        problems.append(f"kind must be one of {OVERLAY_KINDS}")
    if not (_is_text_or_null(obj.get("name")) and _is_text_or_null(obj.get("bank_path"))):
        problems.append(f"name and bank_path must be strings of at most {MAX_TEXT} characters or null")
    if obj.get("lvis_id") is not None and not _is_int(obj.get("lvis_id")):
        problems.append("lvis_id must be an integer or null")
    boxes, angles = obj.get("boxes"), obj.get("angles")
    try:
        box_array = np.asarray(boxes, dtype=np.float64)
        angle_array = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError):
        return problems + ["boxes and angles must be numeric arrays"]
    if box_array.shape != (frames, 4):
        problems.append(f"boxes shape {box_array.shape} != ({frames}, 4)")
    elif not np.isfinite(box_array).all():
        problems.append("boxes hold non-finite values")
    elif np.abs(box_array).max(initial=0) > reach:
        problems.append(f"a box coordinate lies more than {BOX_REACH} frame sides away ({reach:g} px)")
    elif (box_array[:, 2] < box_array[:, 0]).any() or (box_array[:, 3] < box_array[:, 1]).any():
        problems.append("a box has x1 < x0 or y1 < y0")
    if angle_array.shape != (frames,):
        problems.append(f"angles shape {angle_array.shape} != ({frames},)")
    elif not all(math.isfinite(a) for a in angle_array):
        problems.append("angles hold non-finite values")
    return problems
