"""Settings of `smile-data render` and `smile-data pack`, with the reference defaults of docs/method.md.

Every number of docs/method.md §3 (overlays) and §4 (backgrounds, crop, flip) is a field here. The CLI
flags, a YAML file (`--config`) and `--set key=value` all land in these dataclasses, and the
resolved settings are written into the dataset card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smile_data.config import SettingsError, check_bounds
from smile_data.render.direction import check_direction_settings
from smile_data.sampling import CROP_OFFSET_MODES, MultiScaleCrop
from smile_data.shards.layout import BACKGROUND_KINDS, FRAME_CODECS

OVERLAY_MODES = ("objects", "patches", "none")
LABELS = ("none", "motion-direction")
MOTIONS = ("gaussian", "linear")
TRAJECTORY_SAMPLERS = ("released", "bounded")
VIDEO_BACKGROUNDS = ("natural", "frame")
IMAGE_BACKGROUNDS = ("image",)
PROBABILITY_SUM_TOLERANCE = 1e-6  # the draws normalise, so a rounded list is fine
PACK_STORES = ("clips", "video")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow",
                "slower", "veryslow")
X264_CRF_RANGE = (0, 51)
MAX_KEYFRAME_JITTER = 1.0  # at most a whole spacing: the released key frames stay in the clip
# scale_step x (frames - 1): a box grows or shrinks at most e^20-fold over a clip, so its size
# stays finite (the released sampler does not clip sizes to the frame)
MAX_LOG_SIZE_CHANGE = 20.0
MAX_SIDE = 4096  # pixels: the reader's largest frame side (reader.MAX_FRAME_PIXELS)
# Bounds of the counts that size a loop or an allocation (config.check_bounds), each with why.
OUTPUT_BOUNDS = {
    "quality": (1, 100),  # JPEG quality
    "png_compression": (0, 9),  # zlib levels
    "shard_size": (1, 1_000_000),  # a shard's manifest rows are held until it is cut
    "shard_bytes": (1, 1 << 40),  # 1 TiB: one file per shard
}
RENDER_BOUNDS = {
    **OUTPUT_BOUNDS,
    "clips": (1, 10**9),  # a billion clips: 4,000 times Kinetics-400
    "variants": (1, 1000),  # renders of one decoded source, held until its task is written
    "seed": (0, (1 << 63) - 1),
    "stride": (1, 1000),  # frames between sampled frames (K400 4): a window of a minute at 16
    "decode_short_side": (0, MAX_SIDE),
    "source_retries": (0, 100),  # other sources tried for a task whose source is unreadable
    "objects": (0, 64),  # overlays per clip, each pasted on every frame (reference: 2)
    "gaussian_points": (2, 10_000),  # control points of one Gaussian trajectory (reference: 48)
    "reference_size": (1, MAX_SIDE),
    "sprite_cache_mb": (0, 1 << 16),  # 64 GB of decoded objects per worker
    "direction_classes": (4, 8),  # motion-direction labels: 4 or 8 (direction.py)
}
PACK_BOUNDS = {
    **OUTPUT_BOUNDS,
    "clips_per_video": (1, 1000),  # clips of one decoded video, held until its task is written
    "seed": (0, (1 << 63) - 1),
    "stride": (1, 1000),
    "short_side": (0, MAX_SIDE),
    "keyframe_interval": (1, 10_000),  # frames between key frames (docs/data.md: 32)
    "crf": X264_CRF_RANGE,
}
MAX_LIST_ENTRIES = 64  # crop_scales, box_sides, box_aspects: a few values each (reference: 4-7)


@dataclass
class ShardOutputSettings:
    """How clips are encoded and grouped into shards: the same fields in render and pack."""

    codec: str = "jpg"
    quality: int = 90
    png_compression: int = 3
    prefix: str = "clips"
    shard_size: int = 1000
    shard_bytes: int = 1 << 30


@dataclass
class RenderSettings(MultiScaleCrop, ShardOutputSettings):
    """Everything that decides the bytes of a rendered dataset (not workers or ranks); the
    output fields come from ShardOutputSettings, the crop's draws (crop_scales,
    crop_max_distort, crop_offsets) from MultiScaleCrop, the trainer's loader's too."""

    # What to render.
    clips: int = 1000
    variants: int = 1  # clips per source: a video is decoded once and rendered this many times
    seed: int = 0
    backgrounds: list[str] = field(default_factory=lambda: ["natural"])  # "kind" or "kind:weight"
    videos: str = ""  # folder, file list or VideoMAE-style CSV
    video_root: str = ""  # folder that relative paths of a list are resolved against
    images: str = ""  # folder (or list) of still images
    overlay: str = "objects"  # objects | patches | none
    bank: str = ""  # object bank folder (overlay = objects)
    balanced_classes: bool = False  # sample objects uniformly over classes, not over objects

    # Clip geometry (docs/method.md §4): the window, (multi-scale) crop and flip the trainer's
    # loader draws (sampling.py).
    frames: int = 16
    stride: int = 4
    size: int = 224
    flip: bool = False  # the released pretraining never flips; SSv2 labels must not be flipped
    decode_short_side: int = 320  # decoded frames larger than this are downscaled; 0 keeps all
    source_retries: int = 3  # a task whose source is unreadable tries up to this many others

    # Objects and trajectories (docs/method.md §3).
    objects: int = 2
    motion: str = "gaussian"
    box_sides: list[float] = field(default_factory=lambda: [32, 48, 56, 64, 96, 128])
    box_aspects: list[float] = field(default_factory=lambda: [0.5, 0.67, 0.75, 1, 1.33, 1.5, 2])
    box_jitter: float = 0.18  # each of w, h times exp(u), u ~ U[-box_jitter, box_jitter]
    inner_keyframe_probs: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])
    keyframe_jitter: float = 1 / 3  # fraction of the key-frame spacing
    interpolation_probs: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    gaussian_points: int = 48
    gaussian_sigma: float = 8.0
    gaussian_extent_min: float = 40.0
    gaussian_extent_max: float = 180.0
    linear_max_shift: float = 12.0  # px per frame per axis
    scale_step: float = 0.025  # log size change per frame
    rotation_step: float = 6.0  # degrees per frame
    rotation: bool = True
    # "released" (the authors' sampler, docs/method.md §9) or "bounded" (every frame within the per-frame
    # bounds above); see render/trajectory.py
    trajectory_sampler: str = "released"
    # Released sampler: whether box sides are clipped to the frame (side - 1). The released code
    # clips only the initial box, so about 1 in 75 trajectories grows past the frame (false).
    clip_sizes: bool = False
    # Box sides, Gaussian extents and linear shifts are pixels of a clip this size (docs/method.md §3 gives
    # them for 224 px); a clip of another size scales them by min(W, H) / reference_size.
    reference_size: int = 224

    # Patch mode (docs/method.md §3, the tubelet baseline).
    patch_shape_probs: list[float] = field(default_factory=lambda: [0.5, 0.35, 0.15])
    patch_soft_edge_prob: float = 0.5
    patch_soft_edge_fraction: float = 0.15  # blur sigma as a fraction of the patch's short side
    patch_opacity_min: float = 0.8
    patch_opacity_max: float = 1.0

    # Labels (beyond the method, docs/method.md §3): "none", or "motion-direction": one overlay crosses the clip and
    # the direction of its motion is the class (render/direction.py). The label mode's centre
    # path replaces `motion`; size and rotation changes stay those above.
    label: str = "none"
    direction_classes: int = 4  # 4: right, down, left, up; 8: with the diagonals between
    direction_travel_min: float = 0.3  # first-to-last-frame distance, fraction of the frame side
    direction_travel_max: float = 0.7
    direction_jitter: float = 0.04  # sideways wander off the straight path, fraction of the side

    # Memory.
    sprite_cache_mb: int = 256  # decoded objects kept per worker (bounded, whatever the bank)


@dataclass
class PackSettings(ShardOutputSettings):
    """Natural (optionally labelled) clips without overlays, or whole videos: `smile-data pack`;
    the output fields come from ShardOutputSettings."""

    videos: str = ""  # VideoMAE-style CSV / list (`path label`) or a folder of videos
    video_root: str = ""
    store: str = "clips"  # clips: cut into JPEG/PNG clips | video: one sample per whole video
    clips_per_video: int = 1
    seed: int = 0
    frames: int = 16
    stride: int = 4
    short_side: int = 256

    # store = video: re-encoded to short_side (0 keeps the size) with H.264 (libx264, one
    # thread: deterministic), or stored as the source bytes (reencode = false).
    reencode: bool = True
    keyframe_interval: int = 32  # frames; docs/data.md has the measurements behind it
    crf: int = 23  # x264 quality (lower: better, larger); 23 is x264's own default
    preset: str = "veryfast"  # x264 speed preset


def parse_backgrounds(specs: list[str]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """`["natural:3", "noise"]` -> (("natural", "noise"), (0.75, 0.25)); weights default to 1."""
    kinds: list[str] = []
    weights: list[float] = []
    for spec in specs:
        kind, _, weight_text = str(spec).partition(":")
        kind = kind.strip()
        if kind not in BACKGROUND_KINDS:
            raise ValueError(f"background {spec!r}: kind must be one of {', '.join(BACKGROUND_KINDS)}")
        if kind in kinds:
            raise ValueError(f"background {kind!r} given twice")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(f"background {spec!r}: weight {weight_text!r} is not a number") from None
        if not weight > 0:
            raise ValueError(f"background {spec!r}: weight must be positive")
        kinds.append(kind)
        weights.append(weight)
    if not kinds:
        raise ValueError("at least one background kind is needed (--bg)")
    total = sum(weights)
    return tuple(kinds), tuple(w / total for w in weights)


def _check_probabilities(name: str, values: list[float], count: int) -> None:
    if (len(values) != count or any(v < 0 for v in values)
            or abs(sum(values) - 1) > PROBABILITY_SUM_TOLERANCE):
        raise ValueError(f"setting {name}: expected {count} non-negative values summing to 1")


def _check_non_negative(s: RenderSettings, names: tuple[str, ...]) -> None:
    for name in names:
        if not getattr(s, name) >= 0:
            raise ValueError(f"setting {name}: must be >= 0, got {getattr(s, name)}")


def _check_list_lengths(s: RenderSettings, names: tuple[str, ...]) -> None:
    for name in names:
        if len(getattr(s, name)) > MAX_LIST_ENTRIES:
            raise SettingsError(f"render settings: setting {name!r} holds {len(getattr(s, name))} "
                                f"values, at most {MAX_LIST_ENTRIES}")


def check_render_settings(s: RenderSettings, source: str = "render settings") -> None:
    """Refuse settings that cannot render, with the setting's name in the message (bounds
    name `source`, where the settings came from)."""
    _check_list_lengths(s, ("crop_scales", "box_sides", "box_aspects", "backgrounds"))
    parse_backgrounds(s.backgrounds)
    _check_clip_geometry(s.frames, s.stride, s.codec, s.quality)
    if s.clips < 1 or s.variants < 1:
        raise ValueError("clips and variants must be at least 1")
    if s.size < 8:
        raise ValueError(f"size {s.size} is too small (at least 8)")
    _check_reader_limits(s.frames, s.size, "size")
    if s.overlay not in OVERLAY_MODES:
        raise ValueError(f"overlay {s.overlay!r} must be one of {', '.join(OVERLAY_MODES)}")
    if s.motion not in MOTIONS:
        raise ValueError(f"motion {s.motion!r} must be one of {', '.join(MOTIONS)}")
    if s.trajectory_sampler not in TRAJECTORY_SAMPLERS:
        raise ValueError(f"trajectory_sampler {s.trajectory_sampler!r} must be one of "
                         f"{', '.join(TRAJECTORY_SAMPLERS)}")
    if s.reference_size < 1:
        raise ValueError(f"setting reference_size: must be >= 1, got {s.reference_size}")
    if s.objects < 0:
        raise ValueError("objects must be >= 0")
    if not s.crop_scales or any(not 0 < c <= 1 for c in s.crop_scales):
        raise ValueError("crop_scales must be fractions in (0, 1]")
    if not 0 <= s.crop_max_distort < len(s.crop_scales):
        raise ValueError(f"setting crop_max_distort: must be within 0..{len(s.crop_scales) - 1} "
                         f"(an index distance within crop_scales), got {s.crop_max_distort}")
    if s.crop_offsets not in CROP_OFFSET_MODES:
        raise ValueError(f"crop_offsets {s.crop_offsets!r} must be one of {', '.join(CROP_OFFSET_MODES)}")
    if not s.box_sides or not s.box_aspects or min(s.box_sides) <= 0 or min(s.box_aspects) <= 0:
        raise ValueError("box_sides and box_aspects must be positive and non-empty")
    if s.gaussian_points < 2 or not 0 < s.gaussian_extent_min <= s.gaussian_extent_max:
        raise ValueError("gaussian_points >= 2 and 0 < gaussian_extent_min <= gaussian_extent_max")
    _check_non_negative(s, ("box_jitter", "scale_step", "rotation_step", "linear_max_shift",
                            "keyframe_jitter", "source_retries"))
    if s.scale_step * (s.frames - 1) > MAX_LOG_SIZE_CHANGE:
        raise ValueError(f"setting scale_step: scale_step x (frames - 1) must be at most "
                         f"{MAX_LOG_SIZE_CHANGE}, got {s.scale_step} x {s.frames - 1}")
    if s.keyframe_jitter > MAX_KEYFRAME_JITTER:
        raise ValueError(f"setting keyframe_jitter: must be within [0, {MAX_KEYFRAME_JITTER}] (a fraction "
                         f"of the key-frame spacing), got {s.keyframe_jitter}")
    if not 0 <= s.patch_opacity_min <= s.patch_opacity_max <= 1:
        raise ValueError("patch opacity must satisfy 0 <= min <= max <= 1")
    if not 0 <= s.patch_soft_edge_prob <= 1:
        raise ValueError(f"setting patch_soft_edge_prob: must be within [0, 1], got "
                         f"{s.patch_soft_edge_prob}")
    _check_probabilities("inner_keyframe_probs", s.inner_keyframe_probs, 3)
    _check_probabilities("interpolation_probs", s.interpolation_probs, 3)
    _check_probabilities("patch_shape_probs", s.patch_shape_probs, 3)
    if s.label not in LABELS:
        raise ValueError(f"label {s.label!r} must be one of {', '.join(LABELS)}")
    if s.label == "motion-direction":
        check_direction_settings(s)
    check_bounds(s, RENDER_BOUNDS, source)


def check_pack_settings(s: PackSettings) -> None:
    check_bounds(s, PACK_BOUNDS, "pack settings")
    if s.store not in PACK_STORES:
        raise ValueError(f"store {s.store!r} must be one of {', '.join(PACK_STORES)}")
    if s.store == "video":
        _check_video_store(s)
        return
    _check_clip_geometry(s.frames, s.stride, s.codec, s.quality)
    if s.clips_per_video < 1:
        raise ValueError("clips_per_video must be at least 1")
    if s.short_side < 8:
        raise ValueError(f"short_side {s.short_side} is too small (at least 8)")
    _check_reader_limits(s.frames, s.short_side, "short_side")  # a square video: the least it can be


def _check_video_store(s: PackSettings) -> None:
    if s.short_side != 0 and s.short_side < 8:
        raise ValueError(f"short_side {s.short_side} is too small (at least 8, or 0 to keep the size)")
    if s.keyframe_interval < 1:
        raise ValueError("keyframe_interval must be at least 1")
    if not X264_CRF_RANGE[0] <= s.crf <= X264_CRF_RANGE[1]:
        raise ValueError(f"crf {s.crf} must be within {X264_CRF_RANGE[0]}..{X264_CRF_RANGE[1]}")
    if s.preset not in X264_PRESETS:
        raise ValueError(f"preset {s.preset!r} must be one of {', '.join(X264_PRESETS)}")


def _check_reader_limits(frames: int, side: int, name: str) -> None:
    """Refuse a clip geometry whose shards the reader (and so validate) would refuse."""
    from smile_data.shards.reader import MAX_CLIP_PIXELS, MAX_FRAME_PIXELS

    if side * side > MAX_FRAME_PIXELS or frames * side * side > MAX_CLIP_PIXELS:
        raise ValueError(f"setting {name}: {frames} frames of {side}x{side} pixels are over the "
                         f"reader's limits ({MAX_FRAME_PIXELS} pixels a frame, {MAX_CLIP_PIXELS} "
                         f"a clip): validate and the trainer would refuse every clip")


def _check_clip_geometry(frames: int, stride: int, codec: str, quality: int) -> None:
    from smile_data.shards.layout import MAX_FRAMES

    if not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames {frames} must be within 1..{MAX_FRAMES}")
    if stride < 1:
        raise ValueError("stride must be at least 1")
    if codec not in FRAME_CODECS:
        raise ValueError(f"codec {codec!r} must be one of {', '.join(FRAME_CODECS)}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality {quality} must be within 1..100")
