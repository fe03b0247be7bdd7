"""What a video may be before it is decoded, and the error every refusal raises."""

from __future__ import annotations

from dataclasses import dataclass


class VideoError(ValueError):
    """A video that must not or cannot be decoded: over a limit, corrupt, truncated, empty."""


@dataclass(frozen=True)
class VideoLimits:
    """Bounds a video must meet before any of it is decoded.

    The defaults admit any ordinary dataset video (Kinetics clips are 10 s at <= 1080p; a 4K
    source fits) while keeping one worker's memory and time bounded: a 4096 x 4096 RGB frame is
    48 MiB, and `max_decoded_pixels` (frames decoded x their pixels, for one request) is about
    500 frames of 1080p, 8,000 of 320 x 427: a few seconds of one core. A window of a 1080p
    video with x264's default 250-frame keyframe interval needs at most about 310 frames.
    """

    max_bytes: int = 64 << 20          # the encoded video (one shard member)
    max_width: int = 4096
    max_height: int = 4096
    max_frames: int = 100_000          # about 55 min at 30 fps
    max_duration: float = 3600.0       # seconds
    max_output_pixels: int = 256 << 20  # frames x height x width of one decode_frames result
    max_decoded_pixels: int = 1 << 30  # frames decoded x height x width for one request
    strict: bool = True  # any bitstream error rejects the video (else FFmpeg conceals it)
