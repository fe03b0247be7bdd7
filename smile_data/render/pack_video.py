"""`PackVideoTask`: one sample per listed video, holding the whole video (`pack --store video`).

Task t is video t of the list and its sample key is `sample_key(t)`. The video is read into
memory, probed and decoded with the trainer's safe decoder (smile_data.video) within
`VideoLimits`, then either re-encoded (short side, fixed keyframe interval, deterministic
libx264; smile_data.video.encode) or, with `reencode: false`, stored as the source bytes after
its first and last frames decoded. The metadata records the stored video's frame index
(`frame_index`), which spares the loader reading the packets. A video that fails is skipped
with the reason in the card.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smile_data.render.pack import VideoListTask
from smile_data.shards import layout
from smile_data.shards.runner import ShardSample, TaskResult
from smile_data.video import OpenVideo, VideoError, VideoInfo, VideoLimits
from smile_data.video.decode import MATROSKA_MAGIC
from smile_data.video.encode import EncodeSettings, reencode_video

DURATION_DECIMALS = 6  # seconds in the metadata: microseconds


def _read_source(path: str, limits: VideoLimits) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise VideoError("file not found")
    size = file.stat().st_size
    if size > limits.max_bytes:
        raise VideoError(f"{size} bytes is more than the {limits.max_bytes} allowed")
    return file.read_bytes()


def _copied(data: bytes, limits: VideoLimits) -> tuple[bytes, VideoInfo, str]:
    """The source bytes as they are, once its first and last frames decode."""
    with OpenVideo(data, limits) as video:
        video.frames([0, video.info.frames - 1])
    return data, video.info, "mkv" if data[:4] == MATROSKA_MAGIC else "mp4"


def video_metadata(key: str, source: str, info: VideoInfo, keyframe_interval: int | None,
                   label: int | None) -> dict[str, Any]:
    """Schema-v1 metadata of a video sample (see smile_data.shards.layout). The frame index is
    recorded unless the header counts other frames than the index holds (frames an edit list
    cuts): the loader would refuse that record."""
    recorded = {layout.FRAME_INDEX_FIELD: info.index.record()} if info.declared_frames in (0, info.frames) else {}
    return {**recorded,
        "schema_version": layout.SCHEMA_VERSION, "key": key, "kind": layout.VIDEO_KIND,
        "source": source, "fps": info.fps, "frames": info.frames,
        "duration": round(info.duration, DURATION_DECIMALS), "width": info.width,
        "height": info.height, "codec": info.codec, "keyframe_interval": keyframe_interval,
        "label": label,
    }


class PackVideoTask(VideoListTask):
    """Task t stores video t of the list whole, as one sample."""

    def _stored(self, data: bytes) -> tuple[bytes, VideoInfo, str]:
        s, limits = self.settings, VideoLimits()
        if not s.reencode:
            return _copied(data, limits)
        encoding = EncodeSettings(s.short_side, s.keyframe_interval, s.crf, s.preset)
        encoded, info = reencode_video(data, encoding, limits)
        return encoded, info, "mp4"

    def __call__(self, task_index: int) -> TaskResult:
        source = self.videos[task_index]
        try:
            data, info, extension = self._stored(_read_source(source.path, VideoLimits()))
        except VideoError as error:
            return TaskResult(samples=[], skipped=[{"source": source.name, "reason": str(error)}])
        key = layout.sample_key(task_index)
        interval = self.settings.keyframe_interval if self.settings.reencode else None
        metadata = video_metadata(key, source.name, info, interval, source.label)
        members = {extension: data, layout.METADATA_EXTENSION: layout.encode_metadata(metadata)}
        if source.label is not None:
            members[layout.LABEL_EXTENSION] = layout.encode_label(source.label)
        row = {"video_index": task_index, "source": source.name, "label": source.label,
               "frames": info.frames, "fps": info.fps, "width": info.width, "height": info.height}
        return TaskResult(samples=[ShardSample(key=key, members=members, row=row)], skipped=[])
