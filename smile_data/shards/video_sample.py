"""Video samples of a shard: one whole encoded video per sample, ours or another tool's.

Our own (`smile-data pack --store video`) hold `<key>.mp4`, `<key>.json` in the video schema of
layout.py and `<key>.cls` when labelled. Other tools' shards are read without repacking; the
video2dataset layout is `<key>.mp4` + `<key>.json` (its own fields) + `<key>.txt` (caption).
The label is, in order: the `.cls` member; the `label` of our own metadata; the JSON field the
caller names (`label_field`), an integer or a class name looked up in `class_names`.

Decoding is smile_data.video's, within its VideoLimits: `open_video_sample` opens the video
once, with the frame index our own metadata records (`frame_index`, checked against the
container) or, for other samples, the one read from the packets. The raw sample's members were
size-checked by the reader (layout.member_byte_limit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from smile_data.shards import layout
from smile_data.shards.reader import ClipSample
from smile_data.video import FrameIndex, OpenVideo, VideoError, VideoLimits, index_from_record


@dataclass
class VideoSample:
    key: str
    video: bytes              # the encoded video member, undecoded
    extension: str            # "mp4", "webm" or "mkv"
    metadata: dict[str, Any]  # the JSON member ({} if none): our video schema or a foreign one
    label: int | None
    caption: str | None


def is_video_sample(raw: dict[str, Any]) -> bool:
    """Whether a raw sample (reader.iter_tar_samples) holds a video rather than clip frames."""
    return layout.video_extension(raw) is not None


def is_own_video_metadata(metadata: dict[str, Any]) -> bool:
    return metadata.get("kind") == layout.VIDEO_KIND and "schema_version" in metadata


def _metadata(raw: dict[str, Any], key: str) -> dict[str, Any]:
    if layout.METADATA_EXTENSION not in raw:
        return {}
    try:
        metadata = json.loads(raw[layout.METADATA_EXTENSION])
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"sample {key}: member {key}.json is not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"sample {key}: member {key}.json is not a JSON object")
    if is_own_video_metadata(metadata):
        problems = layout.video_metadata_problems(metadata)
        if not problems and metadata.get("key") != key:
            problems = [f"key {metadata.get('key')!r} != the member key"]
        if problems:
            raise ValueError(f"sample {key}: member {key}.json: {'; '.join(problems)}")
    return metadata


def _field_label(value: Any, field: str, class_names: Sequence[str], where: str) -> int:
    """An integer label, or a class name's position in `class_names`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return layout.decode_label(value.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            pass
        if value in class_names:
            return list(class_names).index(value)
        raise ValueError(f"{where}: {field} {value[:80]!r} is not an integer nor one of the "
                         f"{len(class_names)} class names given")
    raise ValueError(f"{where}: {field} must be an integer or a class name, got "
                     f"{type(value).__name__}")


def _label(raw: dict[str, Any], key: str, metadata: dict[str, Any], label_field: str,
           class_names: Sequence[str]) -> int | None:
    if layout.LABEL_EXTENSION in raw:
        own = metadata.get("label") if is_own_video_metadata(metadata) else None
        return layout.member_label(raw, key, own)
    if is_own_video_metadata(metadata):
        return metadata.get("label")
    if label_field and metadata.get(label_field) is not None:
        return _field_label(metadata[label_field], label_field, class_names,
                            f"sample {key}: member {key}.json")
    return None


def decode_video_sample(raw: dict[str, Any], label_field: str = "",
                        class_names: Sequence[str] = ()) -> VideoSample:
    """The members of a raw video sample, checked; the video itself stays encoded.

    Raises ValueError naming the key and member: no or several video members, bad JSON or
    metadata, a bad label or caption. A sample with no label anywhere has label None.
    """
    key = raw.get(layout.KEY_FIELD)
    if not isinstance(key, str) or not layout.KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} does not match {layout.KEY_PATTERN.pattern}")
    try:
        extension = layout.video_extension(raw)
    except ValueError as error:
        raise ValueError(f"sample {key}: {error}") from None
    if extension is None:
        raise ValueError(f"sample {key}: no video member ({', '.join(layout.VIDEO_EXTENSIONS)})")
    frames = sorted(name for name in raw if layout.FRAME_EXTENSION_PATTERN.match(name))
    if frames:
        raise ValueError(f"sample {key}: member {key}.{frames[0]}: a video sample holds no frames")
    metadata = _metadata(raw, key)
    caption = None
    if layout.CAPTION_EXTENSION in raw:
        try:
            caption = raw[layout.CAPTION_EXTENSION].decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"sample {key}: member {key}.txt is not UTF-8 ({error})") from None
    label = _label(raw, key, metadata, label_field, class_names)
    return VideoSample(key, raw[extension], extension, metadata, label, caption)


def open_video_sample(sample: VideoSample, limits: VideoLimits = VideoLimits()) -> OpenVideo:
    """The sample's video opened once, with the frame index our metadata records (checked
    against the container; none recorded: read from the packets). VideoError if it cannot be
    opened, is over a limit, or its record is malformed or does not match."""
    record = sample.metadata.get(layout.FRAME_INDEX_FIELD) if is_own_video_metadata(sample.metadata) else None
    index = None if record is None else index_from_record(record, limits)
    if index is not None and index.frames != sample.metadata["frames"]:
        raise VideoError(f"the frame index holds {index.frames} frames, the metadata says "
                         f"{sample.metadata['frames']}")
    return OpenVideo(sample.video, limits, index)


def video_preview_clip(raw: dict[str, Any], frames: int,
                       limits: VideoLimits = VideoLimits()) -> ClipSample:
    """`frames` evenly spaced frames of a video sample as a clip without objects (for
    contact sheets); ValueError naming the sample if the video cannot be decoded."""
    sample = decode_video_sample(raw)
    try:
        with open_video_sample(sample, limits) as video:
            count = video.info.frames
            indices = np.linspace(0, count - 1, min(frames, count)).round().astype(int).tolist()
            clip = video.frames(indices)
    except VideoError as error:
        raise VideoError(f"sample {sample.key}: member {sample.key}.{sample.extension}: {error}") from None
    metadata = {**sample.metadata, "frames": len(indices), "objects": [], "frame_indices": indices}
    return ClipSample(sample.key, clip, metadata, sample.label)


def _record_problems(sample: VideoSample, found: FrameIndex, limits: VideoLimits) -> list[str]:
    """Our metadata's frame index record (if any) against the one read from the packets."""
    record = sample.metadata.get(layout.FRAME_INDEX_FIELD)
    if record is None:
        return []
    try:
        recorded = index_from_record(record, limits)
    except VideoError as error:
        return [str(error)]
    if recorded != found:
        return [f"{layout.FRAME_INDEX_FIELD} does not match the video's packets"]
    return []


def video_sample_problems(raw: dict[str, Any], limits: VideoLimits = VideoLimits()) -> list[str]:
    """What `validate` finds wrong with a video sample: its members, a safe open (limits before
    decoding, the frame index read from the packets), its first and last frames decoded, and
    our metadata (geometry, frame index record) against what was found."""
    try:
        sample = decode_video_sample(raw)
    except ValueError as error:
        return [str(error)]
    where = f"sample {sample.key}: member {sample.key}.{sample.extension}"
    try:
        with OpenVideo(sample.video, limits) as video:
            info = video.info
            video.frames([0, info.frames - 1])
    except VideoError as error:
        return [f"{where}: {error}"]
    if not is_own_video_metadata(sample.metadata):
        return [f"sample {sample.key}: member {sample.key}.json: not video metadata of schema "
                f"version {layout.SCHEMA_VERSION}"]
    found = {"frames": info.frames, "width": info.width, "height": info.height}
    problems = [f"{name} is {value}, the metadata says {sample.metadata[name]}"
                for name, value in found.items() if sample.metadata[name] != value]
    return [f"{where}: {problem}" for problem in problems + _record_problems(sample, info.index, limits)]
