"""Videos as untrusted bytes: safe opening, probing and decoding from memory (`decode`)."""

from smile_data.video.decode import OpenVideo, VideoInfo, decode_frames, probe_video
from smile_data.video.frame_index import FrameIndex, index_from_record
from smile_data.video.limits import VideoError, VideoLimits

__all__ = ["FrameIndex", "OpenVideo", "VideoError", "VideoInfo", "VideoLimits", "decode_frames",
           "index_from_record", "probe_video"]
