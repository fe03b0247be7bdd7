"""Safe, in-memory video decoding: open a video once, then decode only the frames asked for.

Ours, not decord or torchvision.io: neither bounds a container's counts or a request's work before decoding.

Videos come from shards other people wrote, so every byte is untrusted:
- the member size is checked before anything else;
- only two container families are opened (MP4/QuickTime and Matroska/WebM, recognised by
  their first bytes and handed to that one demuxer, never to FFmpeg's format guessing), their
  headers are read first so that no declared count makes FFmpeg's own index outgrow the bytes
  (container_header.py, matroska_header.py), and any attempt of the demuxer to open another
  file or URL is refused;
- only the codecs in ALLOWED_CODECS are decoded;
- width, height, frame rate, frame count and duration come from the container and the frame
  index and are checked against `VideoLimits` before a frame is decoded; the decoder itself
  refuses frames over the pixel limit (FFmpeg's `max_pixels`), and every decoded frame must
  have the probed size;
- the work of one request (frames decoded x their pixels) is bounded before decoding starts,
  from the index, and counted while decoding (`VideoLimits.max_decoded_pixels`).
Everything is read from the bytes in memory (io.BytesIO into PyAV); nothing touches the disk.

`OpenVideo` opens a video once; its frame index (frame_index.py) is read from the packets, or
given (the record `pack --store video` keeps with the sample), then checked against the
container. `frames()` decodes each wanted frame from the last keyframe before it (continuing
instead when that is closer), skips frames no other frame refers to unless they are wanted,
and converts only the crop it is asked for from the decoder's YUV planes (conversion.py).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Sequence

import av
import numpy as np

from smile_data.closing import ClosedOnExit
from smile_data.video.container_header import MAX_TRACKS, check_mp4_header
from smile_data.video.conversion import Box, write_rgb
from smile_data.video.frame_index import FrameIndex, index_from_packets
from smile_data.video.limits import VideoError, VideoLimits
from smile_data.video.matroska_header import check_matroska_header

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
# Packets a run may read past its last frame before the decoder gives that frame out: H.264
# and HEVC reorder at most 16 frames.
REORDER_SLACK = 16


@dataclass(frozen=True)
class VideoInfo:
    """What opening a video found. `frame_pts` are the presentation timestamps of all frames in
    order (frame i has frame_pts[i]) and `keyframes` the frame indices decoding can start at."""

    width: int
    height: int
    frames: int
    fps: float
    duration: float  # seconds
    codec: str
    frame_pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction = Fraction(1)
    declared_frames: int = 0  # the frame count the container's header gives (0: none)

    @property
    def index(self) -> FrameIndex:
        return FrameIndex(self.time_base, self.frame_pts, self.keyframes)


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
    demuxer = _demuxer(data)
    if demuxer == MP4_DEMUXER:
        check_mp4_header(data, limits.max_frames)
    else:
        check_matroska_header(data, limits)
    options = {"max_pixels": str(limits.max_width * limits.max_height), "max_streams": str(MAX_TRACKS)}
    if limits.strict:
        options["err_detect"] = STRICT_ERROR_DETECTION
    with _as_video_error("cannot open the container"):
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, options=options,
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


def _check_declared_length(stream: av.VideoStream, limits: VideoLimits) -> None:
    """The frame count and duration the headers declare, before reading the packets."""
    if stream.frames > limits.max_frames:
        raise VideoError(f"{stream.frames} frames declared, more than the {limits.max_frames} allowed")
    if stream.duration is not None and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds > limits.max_duration:
            raise VideoError(f"{seconds:.1f} s declared, longer than the {limits.max_duration} s allowed")


def _check_given_index(index: FrameIndex, stream: av.VideoStream, limits: VideoLimits) -> None:
    """A frame index from elsewhere (a record) against what the container's header says."""
    if index.frames > limits.max_frames:
        raise VideoError(f"the frame index holds {index.frames} frames, more than the "
                         f"{limits.max_frames} allowed")
    found = {"time base": (index.time_base, Fraction(stream.time_base)),
             "frame count": (index.frames, stream.frames or index.frames),
             "first timestamp": (index.pts[0], index.pts[0] if stream.start_time is None else stream.start_time)}
    wrong = [f"{name} {given} != {actual}" for name, (given, actual) in found.items() if given != actual]
    if wrong:
        raise VideoError(f"the recorded frame index does not match the container ({'; '.join(wrong)})")


def _check_indices(indices: Sequence[int], info: VideoInfo, limits: VideoLimits,
                   frame_pixels: int) -> list[int]:
    wanted = [int(i) for i in indices]
    bad = [i for i in wanted if not 0 <= i < info.frames]
    if bad:
        raise VideoError(f"frame index {bad[0]} is outside 0..{info.frames - 1}")
    if len(wanted) * frame_pixels > limits.max_output_pixels:
        raise VideoError(f"{len(wanted)} frames of {frame_pixels} pixels are more than the "
                         f"{limits.max_output_pixels} pixels allowed per call")
    return wanted


def decode_runs(index: FrameIndex, targets: Sequence[int]) -> list[tuple[int, list[int]]]:
    """(keyframe, frames) runs that decode the sorted `targets`: a run starts at the last
    keyframe before its first frame; a later frame joins it unless a keyframe lies after the
    run's last frame and at or before it (seeking there decodes less)."""
    runs: list[tuple[int, list[int]]] = []
    for target in targets:
        keyframe = index.keyframe_before(target)
        if runs and keyframe <= runs[-1][1][-1]:
            runs[-1][1].append(target)
        else:
            runs.append((keyframe, [target]))
    return runs


def _work_limit_error(frames: int, info: VideoInfo, limits: VideoLimits) -> VideoError:
    return VideoError(f"decoding these frames takes {frames} frames of {info.width}x{info.height}, "
                      f"more than the {limits.max_decoded_pixels} pixels of decoding allowed per request")


class OpenVideo(ClosedOnExit):
    """A video opened once (limits checked, frame index read or given and checked); any of its
    frames decoded on request. Use as a context manager, or call close()."""

    def __init__(self, data: bytes, limits: VideoLimits = VideoLimits(), index: FrameIndex | None = None):
        self.limits = limits
        given = index is not None
        self._container, self._stream = _open(data, limits)
        try:
            with _as_video_error("cannot read the headers"):
                width, height, fps, codec = _check_geometry(self._stream, limits)
                _check_declared_length(self._stream, limits)
                if index is None:
                    index = index_from_packets(self._container, self._stream, limits)
                else:
                    _check_given_index(index, self._stream, limits)
            duration = index.frames / fps
            if duration > limits.max_duration:
                raise VideoError(f"{duration:.1f} s of frames, longer than the {limits.max_duration} s allowed")
        except BaseException:
            self._container.close()
            raise
        self.info = VideoInfo(width, height, index.frames, fps, duration, codec, index.pts,
                              index.keyframes, index.time_base, self._stream.frames)
        self._position = {pts: i for i, pts in enumerate(index.pts)}
        self._at_start = given  # nothing demuxed yet: decoding from frame 0 needs no seek

    def close(self) -> None:
        self._container.close()

    def frames(self, indices: Sequence[int], crop: Box | None = None, size: int | None = None) -> np.ndarray:
        """Frames `indices` (any order, repeats allowed) as (len(indices), H, W, 3) uint8 RGB;
        with `crop` (x, y, width, height) and `size`, each frame's crop resized to size x size
        (bilinear: smile_data.images.crop_resize of the whole RGB frame, exactly), converted
        from the crop's YUV planes only. Raises VideoError when the request is over a limit or
        the video is corrupt or ends before a wanted frame."""
        info = self.info
        height, width = (size, size) if crop is not None else (info.height, info.width)
        wanted = _check_indices(indices, info, self.limits, max(height * width, info.height * info.width))
        out = np.empty((len(wanted), height, width, 3), np.uint8)  # (N, H, W, 3)
        slots: dict[int, list[int]] = {}
        for slot, index in enumerate(wanted):
            slots.setdefault(index, []).append(slot)
        runs = decode_runs(info.index, sorted(slots))
        planned = sum(frames[-1] - keyframe + 1 for keyframe, frames in runs)
        if planned * info.width * info.height > self.limits.max_decoded_pixels:
            raise _work_limit_error(planned, info, self.limits)
        budget = [self.limits.max_decoded_pixels // (info.width * info.height) + REORDER_SLACK * len(runs)]
        with _as_video_error("cannot decode"):
            for keyframe, targets in runs:
                for index, frame in self._decoded(keyframe, set(targets), targets[-1], budget):
                    if index in slots:
                        first, *others = slots.pop(index)
                        write_rgb(frame, out[first], crop, size)
                        for slot in others:
                            out[slot] = out[first]
        if slots:
            raise VideoError(f"frame {min(slots)} does not decode (corrupt)")
        return out

    def _decoded(self, keyframe: int, wanted: set[int], last: int,
                 budget: list[int]) -> Iterator[tuple[int, av.VideoFrame]]:
        """(frame index, frame) from `keyframe` to `last` in presentation order; frames no other
        frame refers to are not decoded unless wanted (FFmpeg's skip_frame). Each packet read
        takes one from `budget`; VideoError when it runs out or a frame is not in the index."""
        info, context = self.info, self._stream.codec_context
        if not (self._at_start and keyframe == 0):
            self._container.seek(info.frame_pts[keyframe], stream=self._stream, backward=True, any_frame=False)
        self._at_start = False
        for packet in self._container.demux(self._stream):
            needed = packet.pts is None or self._position.get(packet.pts) in wanted
            context.skip_frame = "DEFAULT" if needed else "NONREF"
            budget[0] -= 1
            if budget[0] < 0:
                raise VideoError(f"decoding frame {last} reads more packets than planned: more than "
                                 f"the {self.limits.max_decoded_pixels} pixels of decoding allowed per request")
            for frame in packet.decode():
                index = self._position.get(frame.pts)
                if index is None:
                    raise VideoError(f"a decoded frame has a timestamp ({frame.pts}) the frame index lacks")
                if index < keyframe:
                    continue  # shown before the keyframe: an open GOP's leading frames, or the
                    # index named a keyframe that is none and the seek went to an earlier one
                if frame.width != info.width or frame.height != info.height:
                    raise VideoError(f"frame {index} is {frame.width}x{frame.height}, the stream "
                                     f"{info.width}x{info.height}")
                yield index, frame
                if index >= last:
                    return
        raise VideoError(f"the video ends before frame {last} (truncated or corrupt)")

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Every frame in order as (H, W, 3) uint8 RGB, one at a time (for re-encoding a video
        without holding it whole); VideoError also for a frame that does not decode."""
        info = self.info
        expected = 0
        budget = [self.limits.max_frames + REORDER_SLACK]  # a whole pass: bounded by the frame count
        with _as_video_error("cannot decode"):
            for index, frame in self._decoded(0, set(range(info.frames)), info.frames - 1, budget):
                if index != expected:
                    raise VideoError(f"frame {expected} does not decode (corrupt)")
                expected += 1
                rgb = np.empty((info.height, info.width, 3), np.uint8)
                write_rgb(frame, rgb)
                yield rgb


def probe_video(data: bytes, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """Geometry and frame index of an encoded video, checked against `limits`; decodes nothing.

    Raises VideoError for an oversized, corrupt, truncated or empty video, or one whose size,
    frame count or duration is over the limits.
    """
    with OpenVideo(data, limits) as video:
        return video.info


def decode_frames(data: bytes, indices: Sequence[int], limits: VideoLimits = VideoLimits(),
                  info: VideoInfo | None = None) -> np.ndarray:
    """Frames `indices` (any order, repeats allowed) of the video as (len(indices), H, W, 3)
    uint8 RGB (OpenVideo.frames). `info`: probe_video's result for the same bytes, whose frame
    index then spares reading the packets again."""
    with OpenVideo(data, limits, info.index if info else None) as video:
        return video.frames(indices)
