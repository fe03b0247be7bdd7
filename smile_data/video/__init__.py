"""Videos as untrusted bytes: safe probing and decoding from memory (`decode`)."""

from smile_data.video.decode import (
    VideoError, VideoInfo, VideoLimits, decode_frames, probe_video,
)

__all__ = ["VideoError", "VideoInfo", "VideoLimits", "decode_frames", "probe_video"]
