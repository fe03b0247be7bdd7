"""Safe, in-memory video decoding: probe a video's geometry and decode only the frames asked for.

Videos come from shards other people wrote, so every byte is untrusted:
- the member size is checked before anything else;
- only two container families are opened (MP4/QuickTime and Matroska/WebM, recognised by
  their first bytes and handed to that one demuxer, never to FFmpeg's format guessing), and
  any attempt of the demuxer to open another file or URL is refused;
- only the codecs in ALLOWED_CODECS are decoded;
- width, height, frame rate, frame count and duration come from the container and the packet
  index (demuxing, not decoding) and are checked against `VideoLimits` before a frame is
  decoded; the decoder itself refuses frames over the pixel limit (FFmpeg's `max_pixels`), and
  every decoded frame must have the probed size.
Everything is read from the bytes in memory (io.BytesIO into PyAV); nothing touches the disk.

Frame index i is the i-th frame in presentation order: the i-th smallest packet timestamp.
`probe_video` collects the timestamps of all packets once, so `decode_frames` can seek straight
to the keyframe at or before the first wanted frame, decode forward and stop after the last.
"""

from __future__ import annotations

import bisect
import contextlib
import io
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import av
import cv2
import numpy as np

DECODE_THREADS = 1  # one core per loader worker: parallelism comes from the workers
# First bytes of the containers we open, and the FFmpeg demuxer each goes to.
MP4_BOX_TYPES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")
MATROSKA_MAGIC = b"\x1a\x45\xdf\xa3"
MP4_DEMUXER, MATROSKA_DEMUXER = "mp4", "matroska"
ALLOWED_CODECS = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "libdav1d", "mpeg4"})
MAX_FPS = 1000.0  # a larger declared rate is a corrupt header, not a video
# The decoder stops at the first damaged bit of a strict decode instead of concealing it.
STRICT_ERROR_DETECTION = "crccheck+bitstream+buffer+explode"
# What FFmpeg and PyAV raise on a damaged file; all of it becomes VideoError.
DECODING_ERRORS = (av.FFmpegError, OSError, ValueError, IndexError, EOFError)


I420_FORMAT = "yuv420p"  # what H.264 and VP9 decoders give for ordinary 8-bit video


class VideoError(ValueError):
    """A video that must not or cannot be decoded: over a limit, corrupt, truncated, empty."""


@dataclass(frozen=True)
class VideoLimits:
    """Bounds a video must meet before any of it is decoded.

    The defaults admit any ordinary dataset video (Kinetics clips are 10 s at <= 1080p; a 4K
    source fits) while keeping one worker's memory bounded: a 4096 x 4096 RGB frame is 48 MiB.
    """

    max_bytes: int = 64 << 20          # the encoded video (one shard member)
    max_width: int = 4096
    max_height: int = 4096
    max_frames: int = 100_000          # about 55 min at 30 fps
    max_duration: float = 3600.0       # seconds
    max_output_pixels: int = 256 << 20  # frames x height x width of one decode_frames result
    strict: bool = True  # any bitstream error rejects the video (else FFmpeg conceals it)


@dataclass(frozen=True)
class VideoInfo:
    """What probe_video found. `frame_pts` are the presentation timestamps of all frames in
    order (frame i has frame_pts[i]) and `keyframes` the frame indices decoding can start at."""

    width: int
    height: int
    frames: int
    fps: float
    duration: float  # seconds
    codec: str
    frame_pts: tuple[int, ...]
    keyframes: tuple[int, ...]


def _demuxer(data: bytes) -> str:
    """The one demuxer this container may go to, from its first bytes."""
    if data[4:8] in MP4_BOX_TYPES:
        return MP4_DEMUXER
    if data[:4] == MATROSKA_MAGIC:
        return MATROSKA_DEMUXER
    raise VideoError("not an MP4/QuickTime or Matroska/WebM container "
                     f"(first bytes {data[:8].hex()})")


@contextlib.contextmanager
def _as_video_error(what: str) -> Iterator[None]:
    """FFmpeg's and PyAV's errors on damaged input become VideoError saying `what` failed."""
    try:
        yield
    except VideoError:
        raise
    except DECODING_ERRORS as error:
        raise VideoError(f"{what} ({type(error).__name__}: {str(error)[:200]})") from None


def _refuse_nested_open(url: str, flags: int, options: dict) -> Any:
    """The demuxer asked for another file (an MP4 data reference, a playlist entry): refuse."""
    raise PermissionError(f"a video may not refer to other files ({url[:80]!r})")


def _open(data: bytes, limits: VideoLimits) -> tuple[av.container.InputContainer, av.VideoStream]:
    if len(data) > limits.max_bytes:
        raise VideoError(f"{len(data)} bytes is more than the {limits.max_bytes} allowed")
    if len(data) == 0:
        raise VideoError("empty video")
    options = {"max_pixels": str(limits.max_width * limits.max_height)}
    if limits.strict:
        options["err_detect"] = STRICT_ERROR_DETECTION
    with _as_video_error("cannot open the container"):
        container = av.open(io.BytesIO(data), mode="r", format=_demuxer(data), options=options,
                            io_open=_refuse_nested_open)
    if not container.streams.video:
        container.close()
        raise VideoError("the container holds no video stream")
    stream = container.streams.video[0]
    stream.codec_context.thread_count = DECODE_THREADS
    stream.codec_context.options = options
    return container, stream


def _check_geometry(stream: av.VideoStream, limits: VideoLimits) -> tuple[int, int, float, str]:
    """Width, height, frame rate and codec from the headers, against the limits."""
    context = stream.codec_context
    codec = context.name
    if codec not in ALLOWED_CODECS:
        raise VideoError(f"codec {codec!r} is not one of {', '.join(sorted(ALLOWED_CODECS))}")
    width, height = context.width, context.height
    if not (0 < width <= limits.max_width and 0 < height <= limits.max_height):
        raise VideoError(f"frame size {width}x{height} is outside 1x1..{limits.max_width}x"
                         f"{limits.max_height}")
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0
    if not 0 < fps <= MAX_FPS:
        raise VideoError(f"frame rate {fps} is outside (0, {MAX_FPS}]")
    return width, height, fps, codec


def _check_declared_length(stream: av.VideoStream, fps: float, limits: VideoLimits) -> None:
    """The frame count and duration the headers declare, before reading the packets."""
    if stream.frames > limits.max_frames:
        raise VideoError(f"{stream.frames} frames declared, more than the {limits.max_frames} allowed")
    if stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds > limits.max_duration:
            raise VideoError(f"{seconds:.1f} s declared, longer than the {limits.max_duration} s allowed")


def _packet_index(container: av.container.InputContainer, stream: av.VideoStream,
                  limits: VideoLimits) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Presentation timestamps of all frames, sorted, and the indices of the keyframes.

    Demuxing only (no decoding); stops with VideoError past `limits.max_frames` packets."""
    timestamps: list[int] = []
    keyframe_pts: list[int] = []
    packets = 0
    with _as_video_error("cannot read the packets"):
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
    return tuple(timestamps), tuple(sorted(position[pts] for pts in keyframe_pts))


def probe_video(data: bytes, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Geometry and frame index of an encoded video, checked against `limits`; decodes nothing.

    Raises VideoError for an oversized, corrupt, truncated or empty video, or one whose size,
    frame count or duration is over the limits.
    """
    container, stream = _open(data, limits)
    with container, _as_video_error("cannot read the headers"):
        width, height, fps, codec = _check_geometry(stream, limits)
        _check_declared_length(stream, fps, limits)
        frame_pts, keyframes = _packet_index(container, stream, limits)
    if not frame_pts:
        raise VideoError("the video has no frames")
    if not keyframes or keyframes[0] != 0:
        raise VideoError("the video does not start with a keyframe")
    duration = len(frame_pts) / fps
    if duration > limits.max_duration:
        raise VideoError(f"{duration:.1f} s of frames, longer than the {limits.max_duration} s allowed")
    return VideoInfo(width, height, len(frame_pts), fps, duration, codec, frame_pts, keyframes)


def _check_indices(indices: Sequence[int], info: VideoInfo, limits: VideoLimits) -> list[int]:
    wanted = [int(i) for i in indices]
    bad = [i for i in wanted if not 0 <= i < info.frames]
    if bad:
        raise VideoError(f"frame index {bad[0]} is outside 0..{info.frames - 1}")
    pixels = len(wanted) * info.width * info.height
    if pixels > limits.max_output_pixels:
        raise VideoError(f"{len(wanted)} frames of {info.width}x{info.height} are more than the "
                         f"{limits.max_output_pixels} pixels allowed per call")
    return wanted


def _decoded_frames(container: av.container.InputContainer, stream: av.VideoStream,
                    info: VideoInfo, start: int,
                    wanted: set[int] | None = None) -> Iterator[tuple[int, av.VideoFrame]]:
    """(frame index, frame) from keyframe `start` on, in presentation order. With `wanted`,
    frames no other frame refers to are not even decoded unless wanted (FFmpeg's skip_frame),
    so they never come out."""
    position = {pts: i for i, pts in enumerate(info.frame_pts)}
    context = stream.codec_context
    if start > 0:
        container.seek(info.frame_pts[start], stream=stream, backward=True, any_frame=False)
    for packet in container.demux(stream):
        if wanted is not None:
            needed = packet.pts is None or position.get(packet.pts) in wanted
            context.skip_frame = "DEFAULT" if needed else "NONREF"
        for frame in packet.decode():
            index = position.get(frame.pts)
            if index is None:
                raise VideoError(f"a decoded frame has a timestamp ({frame.pts}) the index lacks")
            if frame.width != info.width or frame.height != info.height:
                raise VideoError(f"frame {index} is {frame.width}x{frame.height}, the stream "
                                 f"{info.width}x{info.height}")
            yield index, frame


def _to_rgb(frame: av.VideoFrame, out: np.ndarray) -> None:
    """Write the frame into `out` (H, W, 3) uint8 RGB. 8-bit 4:2:0 frames (nearly all) are
    converted by OpenCV from the exact planes, which is deterministic and about three times
    faster than swscale; other formats go through swscale."""
    if frame.format.name == I420_FORMAT and frame.width % 2 == 0 and frame.height % 2 == 0:
        cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420, dst=out)  # planes: (3H/2, W)
    else:
        out[...] = frame.to_ndarray(format="rgb24")


def iter_frames(data: bytes, limits: VideoLimits = VideoLimits(),
                info: VideoInfo | None = None) -> Iterator[np.ndarray]:
    """Every frame in order as (H, W, 3) uint8 RGB, one at a time (for re-encoding a video
    without holding it whole). Raises VideoError like decode_frames, also for a missing frame."""
    info = info or probe_video(data, limits)
    container, stream = _open(data, limits)
    expected = 0
    with container, _as_video_error("cannot decode"):
        for index, frame in _decoded_frames(container, stream, info, 0):
            if index != expected:
                raise VideoError(f"frame {expected} does not decode (corrupt)")
            expected += 1
            rgb = np.empty((info.height, info.width, 3), np.uint8)
            _to_rgb(frame, rgb)
            yield rgb
    if expected != info.frames:
        raise VideoError(f"the video ends before frame {expected} (truncated or corrupt)")


def decode_frames(data: bytes, indices: Sequence[int], limits: VideoLimits = VideoLimits(),
                  info: VideoInfo | None = None) -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of the video as (len(indices), H, W, 3)
    uint8 RGB.

    Decoding starts at the last keyframe at or before the smallest index and stops once the
    largest is decoded. `info` is probe_video's result for the same bytes (probed here if None).
    Raises VideoError if the video is over a limit, corrupt or ends before a wanted frame.
    """
    info = info or probe_video(data, limits)
    wanted = _check_indices(indices, info, limits)
    out = np.empty((len(wanted), info.height, info.width, 3), np.uint8)  # (N, H, W, 3)
    if not wanted:
        return out
    slots: dict[int, list[int]] = {}
    for slot, index in enumerate(wanted):
        slots.setdefault(index, []).append(slot)
    start = info.keyframes[bisect.bisect_right(info.keyframes, min(wanted)) - 1]
    container, stream = _open(data, limits)
    with container, _as_video_error("cannot decode"):
        for index, frame in _decoded_frames(container, stream, info, start, set(slots)):
            if index not in slots:
                continue
            first, *others = slots.pop(index)
            _to_rgb(frame, out[first])
            for slot in others:
                out[slot] = out[first]
            if not slots:
                return out
    raise VideoError(f"the video ends before frame {min(slots)} (truncated or corrupt)")
