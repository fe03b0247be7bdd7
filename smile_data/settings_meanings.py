"""The one-line meaning of every setting of the `smile-data` commands (`smile-data settings`).

One table per settings dataclass; smile_data/settings_listing.py adds key, type and default from
the dataclass, and tests/test_settings_listing.py checks that every field has a meaning.
"""

from __future__ import annotations

from smile_data.objects.settings import (
    DTYPES, SEGMENTER_NAMES, BuildSettings, ImportSettings, PhotoSettings,
)
from smile_data.render.direction import DIRECTION_NAMES
from smile_data.render.settings import (
    LABELS, MAX_KEYFRAME_JITTER, MOTIONS, OVERLAY_MODES, PACK_STORES, TRAJECTORY_SAMPLERS,
    X264_CRF_RANGE, X264_PRESETS, PackSettings, RenderSettings,
)
from smile_data.sampling import CROP_OFFSET_MODES
from smile_data.settings_listing import Listing, Meaning
from smile_data.shards.layout import BACKGROUND_KINDS, FRAME_CODECS, MAX_FRAMES
from smile_data.shards.preview import PreviewSettings

SHARD_OUTPUT = {
    "codec": Meaning("how frames are stored in the shards", FRAME_CODECS),
    "quality": Meaning("JPEG quality of the frames", allowed="1..100"),
    "png_compression": "PNG compression level (0 fastest, 9 smallest; the bytes differ, not the pixels)",
    "prefix": "shard name prefix: PREFIX-000000.tar, ...",
    "shard_size": "samples (clips or videos) per shard at most",
    "shard_bytes": "bytes per shard at most (1073741824 = 1 GiB)",
}
CLIP_GEOMETRY = {
    "frames": Meaning("frames per clip", allowed=f"1..{MAX_FRAMES}"),
    "stride": Meaning("frames between two sampled frames of a source video", allowed="at least 1"),
    "seed": "base seed: clip i draws everything from a generator seeded with [seed, i]",
    "videos": "videos: a folder (searched recursively), a file list or a VideoMAE-style CSV",
    "video_root": "folder that relative paths of a video list resolve against (\"\": the list's folder)",
}
RENDER = {
    **SHARD_OUTPUT, **CLIP_GEOMETRY,
    "clips": Meaning("clips in all", allowed="at least 1"),
    "variants": Meaning("clips per source: a video is decoded once and rendered this many times",
                        allowed="at least 1"),
    "backgrounds": Meaning(f"background kinds, each KIND or KIND:WEIGHT, KIND one of "
                           f"{', '.join(BACKGROUND_KINDS)} (--bg, repeatable)"),
    "images": "still images for the image background: a folder or a file list",
    "overlay": Meaning("what moves over the background: bank objects, patches cut from the clip, "
                       "or nothing", OVERLAY_MODES),
    "bank": "object bank folder (overlay objects)",
    "balanced_classes": "draw objects uniformly over classes rather than over objects",
    "size": Meaning("clip height and width in pixels", allowed="at least 8"),
    "crop_scales": Meaning("multi-scale crop: side fractions of the short side (docs/method.md §4)",
                           allowed="fractions in (0, 1]"),
    "crop_max_distort": Meaning("multi-scale crop: |i - j| at most between the scale indices of "
                                "width and height", allowed="0..len(crop_scales) - 1"),
    "crop_offsets": Meaning("multi-scale crop positions: the released 13 fixed offsets, 5 corners, "
                            "or anywhere", CROP_OFFSET_MODES),
    "flip": "random horizontal flip (the released pretraining never flips; SSv2 labels must not be)",
    "decode_short_side": "decoded frames larger than this are downscaled first (0 keeps every pixel)",
    "source_retries": Meaning("sources (or bank objects) tried after one that cannot be read",
                              allowed="at least 0"),
    "objects": Meaning("overlays per clip (--label motion-direction: 1)", allowed="at least 0"),
    "motion": Meaning("path of an overlay's centre: smoothed Gaussian noise or piecewise linear",
                      MOTIONS),
    "box_sides": "initial box sides in pixels of a reference_size clip, drawn uniformly",
    "box_aspects": "initial box aspect ratios (width / height), drawn uniformly",
    "box_jitter": Meaning("each of width and height times exp(u), u ~ U[-box_jitter, box_jitter]",
                          allowed="at least 0"),
    "inner_keyframe_probs": Meaning("probabilities of 0, 1 and 2 key frames between the first and last",
                                    allowed="3 values summing to 1"),
    "keyframe_jitter": Meaning("key-frame jitter, a fraction of the key-frame spacing",
                               allowed=f"0..{MAX_KEYFRAME_JITTER}"),
    "interpolation_probs": Meaning("probabilities of linear, accelerating and decelerating segments "
                                   "between key frames", allowed="3 values summing to 1"),
    "gaussian_points": Meaning("points of the Gaussian path before smoothing", allowed="at least 2"),
    "gaussian_sigma": "smoothing of the Gaussian path (points)",
    "gaussian_extent_min": "smallest extent of the Gaussian path in pixels (reference_size clip)",
    "gaussian_extent_max": "largest extent of the Gaussian path in pixels (reference_size clip)",
    "linear_max_shift": Meaning("linear motion: pixels per frame per axis at most (reference_size "
                                "clip)", allowed="at least 0"),
    "scale_step": Meaning("log size change per frame at most", allowed="at least 0; x (frames - 1) "
                          "at most 20"),
    "rotation_step": Meaning("rotation per frame at most, in degrees", allowed="at least 0"),
    "rotation": "rotate overlays along their path",
    "trajectory_sampler": Meaning("the authors' released sampler (docs/method.md §9) or one that "
                                  "keeps every frame within the per-frame bounds", TRAJECTORY_SAMPLERS),
    "clip_sizes": "released sampler: clip every box side to the frame (the released code clips "
                  "only the initial box)",
    "reference_size": Meaning("clip side that box sides, extents and shifts are given for; other "
                              "sizes scale them", allowed="at least 1"),
    "patch_shape_probs": Meaning("overlay patches: probabilities of rectangle, ellipse and rhombus",
                                 allowed="3 values summing to 1"),
    "patch_soft_edge_prob": Meaning("probability that a patch gets a blurred edge", allowed="0..1"),
    "patch_soft_edge_fraction": "blur sigma of a soft edge, a fraction of the patch's short side",
    "patch_opacity_min": Meaning("lowest patch opacity", allowed="0 <= min <= max <= 1"),
    "patch_opacity_max": Meaning("highest patch opacity", allowed="0 <= min <= max <= 1"),
    "label": Meaning("none, or one object per clip labelled with the direction it moves in", LABELS),
    "direction_classes": Meaning("motion-direction classes: right, down, left, up (4), with the "
                                 "diagonals (8)", tuple(str(n) for n in DIRECTION_NAMES)),
    "direction_travel_min": "motion-direction: shortest travel, a fraction of the frame side",
    "direction_travel_max": "motion-direction: longest travel, a fraction of the frame side",
    "direction_jitter": "motion-direction: sideways wander off the straight path, a fraction of the side",
    "sprite_cache_mb": "decoded bank objects kept per worker, in MiB",
}
PACK = {
    **SHARD_OUTPUT, **CLIP_GEOMETRY,
    "videos": "a VideoMAE-style CSV or list (`path label` per line) or a folder of videos (--csv / --videos)",
    "seed": "seed recorded in each sample's metadata",
    "store": Meaning("clips cut into JPEG/PNG frames, or one sample per whole video", PACK_STORES),
    "clips_per_video": Meaning("clips per video, evenly spaced (store clips)", allowed="at least 1"),
    "short_side": "frames resized so their short side is this (store video: 0 keeps the size)",
    "reencode": "store video: re-encode with H.264, or keep the source bytes as they are",
    "keyframe_interval": Meaning("store video: frames between key frames of the re-encoded video",
                                 allowed="at least 1"),
    "crf": Meaning("store video: x264 quality (lower: better and larger)",
                   allowed=f"{X264_CRF_RANGE[0]}..{X264_CRF_RANGE[1]}"),
    "preset": Meaning("store video: x264 speed preset", X264_PRESETS),
}
SEGMENTATION = {
    "segmenters": Meaning("foreground extraction; with several, per image the cut-out CLIP scores "
                          "best", SEGMENTER_NAMES),
    "clipseg_model": "CLIPSeg model folder or hub id (segmenter clipseg)",
    "clipseg_threshold": "CLIPSeg probability above which a pixel is foreground",
    "border_fraction": "width of the image border that samples the background, a fraction of the side",
    "min_contrast": "Lab distance below which a pixel always counts as background",
    "contrast_sigmas": "robust sigmas of the background residual that mark foreground",
    "grabcut_iterations": "GrabCut iterations",
    "work_side": "images longer than this are segmented at this side, then refined at full size",
    "refine_band_px": "width in pixels of the band around the upscaled mask's edge that is refined",
    "refine_iterations": "GrabCut iterations of the refinement",
    "feather_px": "width in pixels of the soft alpha ramp across the mask edge",
    "segment_workers": "threads segmenting a batch's images (0: one per CPU core)",
    "min_area_fraction": Meaning("smallest mask area, a fraction of the image",
                                 allowed="0 <= min < max <= 1"),
    "max_area_fraction": Meaning("largest mask area, a fraction of the image",
                                 allowed="0 <= min < max <= 1"),
    "min_side_px": "smallest side of a cut-out in pixels",
    "clip_model": "CLIP model folder or hub id for the CLIP floor (\"\": no CLIP filter)",
    "clip_text_template": "text CLIP scores a cut-out against ({name}: the class name)",
    "clip_floor_cap": "highest CLIP floor: floor = min(cap, best score of the class - margin)",
    "clip_floor_margin": "how far below its class's best CLIP score a cut-out may score",
    "device": Meaning("where the models run (auto: cuda when available)", ("auto", "cpu", "cuda", "cuda:N")),
}
BUILD = {
    **SEGMENTATION,
    "model": "Stable Diffusion model: a diffusers folder or hub id",
    "prompt_template": "prompt of each image ({name}: the class name, underscores as spaces)",
    "candidates_per_class": Meaning("images generated per class", allowed="at least 1"),
    "accepted_per_class": Meaning("cut-outs kept per class at most", allowed="at least 1"),
    "steps": Meaning("denoising steps", allowed="at least 1"),
    "guidance": "classifier-free guidance scale",
    "resolution": Meaning("image side in pixels", allowed="a positive multiple of 8"),
    "scheduler": "diffusers scheduler class name (\"\": the model's own)",
    "dtype": Meaning("weights' type (auto: float16 on cuda, float32 on cpu)", DTYPES),
    "batch_size": Meaning("images per pipeline call", allowed="at least 1"),
    "seed": "base seed: candidate c of class k is generated from (seed, k, c)",
    "classes": "LVIS ids or names to build ([]: all 1203)",
    "safety_checker": "keep the model's safety checker when it ships one",
}
PHOTOS = {**SEGMENTATION, "photo_margin": "context kept around each hint box, a fraction of its side"}
IMPORT = {
    "max_pixels": "largest width x height accepted, read from the PNG header before decoding",
    "link": "hard-link files that are already tight-cropped RGBA instead of copying them",
    "strict": "fail on any bad file (false: fail only when nothing is imported)",
    "workers": "decoding processes",
    "chunk_size": "files per journal record (the unit of resume)",
    "license": "the objects' licence, recorded in bank.json and in the README of rendered datasets",
}
PREVIEW = {
    "clips": "rows of the contact sheet: the first clips of the dataset",
    "frames": "evenly spaced frames per row",
    "cell_size": "pixels per frame cell (each frame is scaled to fit)",
    "gif": "also write one animated GIF per clip",
    "gif_frame_ms": "display time of one GIF frame in milliseconds",
}
PHOTOS_NOTE = ("--source photos generates nothing: the generation keys of --source diffusion "
               "(model ... safety_checker) are not used.")


def listings() -> dict[str, list[Listing]]:
    """command -> the listings of its settings."""
    return {
        "build-objects": [
            Listing("build-objects (--source diffusion, the default): BuildSettings", BuildSettings, BUILD),
            Listing("build-objects --source photos: PhotoSettings", PhotoSettings, PHOTOS,
                    note=PHOTOS_NOTE)],
        "import-objects": [Listing("import-objects: ImportSettings", ImportSettings, IMPORT)],
        "render": [Listing("render: RenderSettings", RenderSettings, RENDER)],
        "pack": [Listing("pack: PackSettings", PackSettings, PACK)],
        "preview": [Listing("preview: PreviewSettings", PreviewSettings, PREVIEW)],
    }

