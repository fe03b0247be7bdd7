"""Candidate images from a diffusers text-to-image pipeline, one seeded generator per image.

Every candidate's seed is a pure function of (base seed, LVIS class id, candidate index), and
each image gets its own CPU `torch.Generator` seeded with it, so an image does not depend on the
batch it was generated in, on the device, or on what ran before it.
"""

from __future__ import annotations

import numpy as np
import torch

from smile_data.objects.settings import BuildSettings
from smile_data.vocabulary import LvisClass

SEED_BITS = 63  # torch seeds are 64-bit; staying below 2**63 keeps them valid everywhere
PIXEL_MAX = 255.0
DTYPE_BY_NAME = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def candidate_seed(base_seed: int, class_id: int, candidate: int) -> int:
    """Seed of one candidate image: a hash of (base seed, class id, candidate index)."""
    words = np.random.SeedSequence([base_seed, class_id, candidate]).generate_state(2, np.uint32)
    return ((int(words[0]) << 32) | int(words[1])) & ((1 << SEED_BITS) - 1)


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_dtype(name: str, device: str) -> torch.dtype:
    """"auto": half precision on GPUs, full precision elsewhere."""
    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return DTYPE_BY_NAME[name]


def prompt_for(settings: BuildSettings, lvis_class: LvisClass) -> str:
    return settings.prompt_template.format(name=lvis_class.prompt_name)


def load_pipeline(settings: BuildSettings, device: str, dtype: torch.dtype):
    """The text-to-image pipeline of `settings.model` (a folder or hub id), ready on `device`."""
    import diffusers
    from diffusers.utils import deprecation_utils

    extra = {} if settings.safety_checker else {"safety_checker": None, "requires_safety_checker": False}
    # diffusers renamed `torch_dtype` to `dtype`; the helper that resolves both marks the change.
    dtype_key = "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    try:
        pipeline = diffusers.AutoPipelineForText2Image.from_pretrained(
            settings.model, **{dtype_key: dtype}, **extra
        )
    except (OSError, ValueError, EnvironmentError) as error:
        raise ValueError(f"{settings.model}: cannot load a text-to-image pipeline: {error}") from None
    if settings.scheduler:
        scheduler_class = getattr(diffusers, settings.scheduler, None)
        if scheduler_class is None or not hasattr(scheduler_class, "from_config"):
            raise ValueError(f"scheduler {settings.scheduler!r}: not a diffusers scheduler class")
        pipeline.scheduler = scheduler_class.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def generate_images(pipeline, prompt: str, seeds: list[int], settings: BuildSettings) -> np.ndarray:
    """(N, R, R, 3) uint8 images of `prompt`, image i drawn from its own generator seeded seeds[i]."""
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
    output = pipeline(
        prompt=[prompt] * len(seeds),
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance,
        height=settings.resolution,
        width=settings.resolution,
        generator=generators,
        output_type="np",
    )
    images = np.asarray(output.images, dtype=np.float32)  # (N, R, R, 3) in [0, 1]
    return np.round(np.clip(images, 0.0, 1.0) * PIXEL_MAX).astype(np.uint8)
