"""Settings of the object-bank commands, with the docs/method.md §2 reference defaults.

`SegmentationSettings` holds what every bank source shares (segmenters, filters, optional CLIP
scoring); `BuildSettings` adds the Stable Diffusion generation recipe (X-Paste), `PhotoSettings`
is the embedded photo bank, `ImportSettings` the import of an existing set of RGBA PNGs.
All are flat: `dataclasses.asdict` gives one level of key: value, as `--set` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smile_data.config import check_bounds
from smile_data.objects.bank import MAX_OBJECT_PIXELS

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
SOURCES = ("diffusion", "photos")
SEGMENTER_NAMES = ("classical", "clipseg")
DTYPES = ("auto", "float32", "float16", "bfloat16")
MAX_WORKERS = 256  # processes or threads on one machine
MAX_SIDE = 4096  # pixels of an image side (the bank's objects are at most 4096 x 4096)
# Bounds of the counts that size a loop, a pool or an allocation (config.check_bounds).
SEGMENTATION_BOUNDS = {
    "grabcut_iterations": (0, 100),
    "work_side": (8, MAX_SIDE),
    "refine_band_px": (0, 256),
    "refine_iterations": (0, 100),
    "segment_workers": (0, MAX_WORKERS),
    "min_side_px": (1, MAX_SIDE),
}
BUILD_BOUNDS = {
    **SEGMENTATION_BOUNDS,
    "candidates_per_class": (1, 10_000),  # images generated per class (reference: 100)
    "accepted_per_class": (1, 10_000),
    "steps": (1, 1000),  # diffusion steps per image (reference: 50)
    "resolution": (8, 2048),  # generated image side (reference: 512)
    "batch_size": (1, 1024),  # images generated at once
    "seed": (0, (1 << 63) - 1),
}
IMPORT_BOUNDS = {
    "max_pixels": (1, MAX_OBJECT_PIXELS),
    "workers": (1, MAX_WORKERS),
    "chunk_size": (1, 100_000),  # files per journal record
}


@dataclass
class SegmentationSettings:
    # Foreground extraction; several segmenters -> per image the cut-out CLIP scores best (X-Paste).
    segmenters: list[str] = field(default_factory=lambda: ["classical"])
    clipseg_model: str = ""  # folder or hub id of a CLIPSeg model; needed by "clipseg"
    clipseg_threshold: float = 0.4  # sigmoid probability above which a pixel is foreground
    border_fraction: float = 0.03  # width of the image border that samples the background
    min_contrast: float = 12.0  # Lab distance below which a pixel always looks like background
    contrast_sigmas: float = 4.0  # robust sigmas of the background residual that mark foreground
    grabcut_iterations: int = 5
    # Images longer than work_side are segmented at that side; the upscaled mask's edge is then
    # refined at full resolution (GrabCut in a band of refine_band_px): ~2x faster at 512 px.
    work_side: int = 256
    refine_band_px: int = 6
    refine_iterations: int = 1
    feather_px: float = 2.0  # width of the soft alpha ramp across the mask edge
    segment_workers: int = 0  # threads segmenting a batch's images; 0: one per CPU core
    # Filters (docs/method.md §2): mask area between 5% and 95% of the image, a minimum cut-out side
    # (the smallest overlay box of docs/method.md §3 is 32 px), and the CLIP floor when a model is given.
    min_area_fraction: float = 0.05
    max_area_fraction: float = 0.95
    min_side_px: int = 32
    clip_model: str = ""  # folder or hub id of a CLIPModel + processor; empty: no CLIP filter
    clip_text_template: str = "a photo of {name}"
    clip_floor_cap: float = 21.0  # floor = min(cap, best score of the class - margin)
    clip_floor_margin: float = 1.0
    device: str = "auto"  # "auto": cuda when available, else cpu


@dataclass
class BuildSettings(SegmentationSettings):
    """`smile-data build-objects`: Stable Diffusion candidates -> segmented, filtered cut-outs."""

    model: str = DEFAULT_MODEL
    prompt_template: str = "a photo of a single {name}"
    candidates_per_class: int = 100
    accepted_per_class: int = 60
    steps: int = 50
    guidance: float = 7.5
    resolution: int = 512
    scheduler: str = ""  # a diffusers scheduler class name; empty keeps the model's own
    dtype: str = "auto"  # "auto": float16 on cuda, float32 on cpu
    batch_size: int = 8
    seed: int = 0
    classes: list[str] = field(default_factory=list)  # LVIS ids or names; empty: all 1203
    safety_checker: bool = True  # keep the model's safety checker when it ships one


@dataclass
class PhotoSettings(SegmentationSettings):
    """`smile-data build-objects --source photos`: the small bank cut from scikit-image photos."""

    photo_margin: float = 0.08  # context kept around each hint box, as a fraction of its side


@dataclass
class ImportSettings:
    """`smile-data import-objects`: verify and copy (or link) an existing set of RGBA PNGs."""

    max_pixels: int = MAX_OBJECT_PIXELS  # refused from the PNG header, before any decoding
    link: bool = False  # hard-link files that are already tight-cropped RGBA instead of copying
    strict: bool = False  # fail on any bad file (default: fail only when nothing imported)
    workers: int = 1  # decoding processes
    chunk_size: int = 256  # files per journal record (the unit of resume)
    # The objects' licence as the importer declares it; recorded in bank.json and listed in
    # the README of every dataset rendered with the bank.
    license: str = ""


# Settings that change how fast a build runs but not what it writes; a resumed build may differ.
RUN_ONLY_SETTINGS = ("batch_size", "segment_workers")


def validate_import(settings: ImportSettings) -> None:
    check_bounds(settings, IMPORT_BOUNDS, "import settings")


def validate_segmentation(settings: SegmentationSettings) -> None:
    unknown = sorted(set(settings.segmenters) - set(SEGMENTER_NAMES))
    if unknown or not settings.segmenters:
        raise ValueError(
            f"segmenters {settings.segmenters}: choose one or more of {', '.join(SEGMENTER_NAMES)}"
        )
    if "clipseg" in settings.segmenters and not settings.clipseg_model:
        raise ValueError("segmenter 'clipseg' needs clipseg_model (a folder or hub id)")
    if not 0 <= settings.min_area_fraction < settings.max_area_fraction <= 1:
        raise ValueError("need 0 <= min_area_fraction < max_area_fraction <= 1")
    check_bounds(settings, SEGMENTATION_BOUNDS, "segmentation settings")


def validate_build(settings: BuildSettings) -> None:
    """Refuse settings that cannot produce a bank, with the reason."""
    validate_segmentation(settings)
    if settings.candidates_per_class < 1 or settings.accepted_per_class < 1:
        raise ValueError("candidates_per_class and accepted_per_class must be at least 1")
    if settings.batch_size < 1 or settings.steps < 1:
        raise ValueError("batch_size and steps must be at least 1")
    if settings.resolution < 8 or settings.resolution % 8:
        raise ValueError(f"resolution {settings.resolution}: must be a positive multiple of 8")
    if settings.dtype not in DTYPES:
        raise ValueError(f"dtype {settings.dtype!r}: choose one of {', '.join(DTYPES)}")
    if "{name}" not in settings.prompt_template:
        raise ValueError(f"prompt_template {settings.prompt_template!r} must contain {{name}}")
    check_bounds(settings, BUILD_BOUNDS, "build settings")
