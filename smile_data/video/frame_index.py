"""A video's frame index: each frame's presentation timestamp and the frames decoding can start at.

Frame i is the i-th frame in presentation order: the i-th smallest packet timestamp. The index
comes from one of two places:
- the packets, demuxed (not decoded) once: any video;
- the record `smile-data pack --store video` keeps in the sample's metadata (`frame_index`),
  which spares that pass:
      {"time_base": [num, den], "first_pts": int, "pts_steps": [[count, step], ...],
       "keyframes": [frame, ...]}
  frame 0 has first_pts and each run adds `step` to the previous timestamp `count` times, so a
  constant-rate video is one run. A record is untrusted: its sizes are bounded by
  `VideoLimits.max_frames` before any array is built, and decode.py checks it against the
  container's header when it opens the video and against every frame it decodes.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from smile_data.video.limits import VideoError, VideoLimits

RECORD_FIELDS = ("first_pts", "keyframes", "pts_steps", "time_base")
MAX_TIMESTAMP = 1 << 62  # int64 timestamps with room for a sum
MAX_TIME_BASE_TERM = (1 << 31) - 1  # FFmpeg's time bases are fractions of 32-bit ints


@dataclass(frozen=True)
class FrameIndex:
    time_base: Fraction
    pts: tuple[int, ...]        # frame i is shown at pts[i] (ascending, all different)
    keyframes: tuple[int, ...]  # frame indices decoding can start at (ascending, from 0)

    @property
    def frames(self) -> int:
        return len(self.pts)

    def keyframe_before(self, frame: int) -> int:
        """The last keyframe at or before `frame`."""
        return self.keyframes[bisect.bisect_right(self.keyframes, frame) - 1]

    def record(self) -> dict[str, Any]:
        """The JSON form of the index (module docstring)."""
        runs: list[list[int]] = []
        for previous, current in zip(self.pts, self.pts[1:]):
            step = current - previous
            if runs and runs[-1][1] == step:
                runs[-1][0] += 1
            else:
                runs.append([1, step])
        return {"time_base": [self.time_base.numerator, self.time_base.denominator],
                "first_pts": self.pts[0], "pts_steps": runs, "keyframes": list(self.keyframes)}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked(index: FrameIndex) -> FrameIndex:
    if not index.pts:
        raise VideoError("the video has no frames")
    if not index.keyframes or index.keyframes[0] != 0:
        raise VideoError("the video does not start with a keyframe")
    return index


def index_from_record(record: Any, limits: VideoLimits) -> FrameIndex:
    """The index a `frame_index` record describes; VideoError saying what is wrong with it."""
    if not isinstance(record, dict) or sorted(record) != sorted(RECORD_FIELDS):
        raise VideoError(f"frame_index must be an object with exactly {', '.join(RECORD_FIELDS)}")
    base, first, runs, keyframes = (record[name] for name in ("time_base", "first_pts", "pts_steps", "keyframes"))
    if not (isinstance(base, list) and len(base) == 2 and all(_is_int(t) and 0 < t <= MAX_TIME_BASE_TERM
                                                               for t in base)):
        raise VideoError("frame_index.time_base must be two positive 32-bit integers")
    if not (_is_int(first) and abs(first) <= MAX_TIMESTAMP):
        raise VideoError("frame_index.first_pts must be an integer")
    if not (isinstance(runs, list) and len(runs) < limits.max_frames and all(
            isinstance(r, list) and len(r) == 2 and all(_is_int(v) and v > 0 for v in r) for r in runs)):
        raise VideoError("frame_index.pts_steps must be a list of [count, step] pairs of positive integers")
    frames = 1 + sum(count for count, _ in runs)
    if frames > limits.max_frames:
        raise VideoError(f"frame_index holds {frames} frames, more than the {limits.max_frames} allowed")
    if first + sum(count * step for count, step in runs) > MAX_TIMESTAMP:
        raise VideoError("frame_index timestamps overflow")
    if not (isinstance(keyframes, list) and len(keyframes) <= frames and all(_is_int(k) for k in keyframes)
            and keyframes == sorted(set(keyframes)) and keyframes and 0 <= keyframes[0]
            and keyframes[-1] < frames):
        raise VideoError(f"frame_index.keyframes must be ascending frame indices within 0..{frames - 1}")
    pts = [first]
    for count, step in runs:
        for _ in range(count):
            pts.append(pts[-1] + step)
    return _checked(FrameIndex(Fraction(*base), tuple(pts), tuple(keyframes)))


def index_from_packets(container: av.container.InputContainer, stream: av.VideoStream,
                       limits: VideoLimits) -> FrameIndex:
    """The index read from the packets (demuxing only); stops with VideoError past
    `limits.max_frames` packets or when the header's frame count does not match."""
    timestamps: list[int] = []
    keyframe_pts: list[int] = []
    packets = 0
    for packet in container.demux(stream):
        if packet.size == 0:
            continue  # the end-of-stream marker
        packets += 1
        if packet.is_discard:
            continue  # a frame an edit list cuts
        if packet.pts is None:
            raise VideoError("a video packet has no timestamp")
        timestamps.append(packet.pts)
        if packet.is_keyframe:
            keyframe_pts.append(packet.pts)
        if len(timestamps) > limits.max_frames:
            raise VideoError(f"more than the {limits.max_frames} frames allowed")
    if stream.frames and packets != stream.frames:
        raise VideoError(f"the header declares {stream.frames} frames, the file holds {packets} "
                         "(truncated?)")
    timestamps.sort()
    if len(set(timestamps)) != len(timestamps):
        raise VideoError("two frames share a timestamp")
    position = {pts: i for i, pts in enumerate(timestamps)}
    keyframes = tuple(sorted(position[pts] for pts in keyframe_pts))
    return _checked(FrameIndex(Fraction(stream.time_base), tuple(timestamps), keyframes))
