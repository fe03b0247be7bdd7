"""Settings that cannot work are refused at start, with the name of the setting.

`load_settings` checks types; this module checks values: a `mask_repeats` of 0 or a `mask_ratio`
of 1.5 would otherwise surface much later as a ZeroDivisionError, a traceback deep in the loader
or a blame on "corrupt samples". One table of rules per field name serves every trainer
settings dataclass (pretraining, finetuning, evaluation, probing): a rule applies to a dataclass
when it has a field of that name; a rule on a combination of fields, when it has all of them.
Every check of a trainer setting lives here.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from smile_data.config import SettingsError
from smile_data.sampling import CROP_MODES, CROP_OFFSET_MODES, MAX_STRIDE, TEMPORAL_MODES
from smile_data.shards.dataset import SHA256_PATTERN
from smile_data.shards.integrity import INTEGRITY_MODES, MISMATCH_POLICIES
from smile_train.data.masking import MASK_KINDS, OBJECT_CELLS
from smile_train.loop.lr_schedule import SCHEDULE_PACES
from smile_train.model.geometry import PATCH, TUBELET
from smile_train.model.vit import ATTENTION_IMPLS, SIZES, TARGETS
from smile_train.settings.finetune import (
    ERASE_MODES,
    MAX_CROPS,
    MAX_RAND_AUGMENT_OPS,
    MAX_REPEATED_AUGMENT,
    MAX_TEST_CLIPS,
    RAND_AUGMENT_LEVEL_MAX,
)
from smile_train.settings.run import AUGMENT_PLACEMENTS

MAX_INPUT_SIZE = 1024  # pixels per side; 4.6x the reference 224, far past any recipe
MAX_FRAMES = 128  # frames per clip; 8x the reference 16
MAX_SEED = (1 << 63) - 1  # torch seeds are 64-bit
MAX_LOADER_WORKERS = 256  # processes per rank; each keeps its own shard streams and buffers
MAX_SHUFFLE_BUFFER = 100_000  # raw samples held per source and worker; 100x the reference 1000
MAX_CLASSES = 100_000  # classifier outputs: 4x ImageNet-21k's 21,843 (each a row of the head)
MAX_BATCH = 1 << 16  # samples per step or forward pass, allocated at once: 256x the reference 256
MAX_EPOCHS = 100_000  # 100x the longest recipe (800)
MAX_STEPS = 10**9  # optimiser steps: decades at ten a second
MAX_CLIPS_PER_EPOCH = 10**10  # 40,000 times Kinetics-400
MAX_MASK_REPEATS = 64  # masked copies of each loaded clip in a batch (reference: 2)
MAX_KEPT_CHECKPOINTS = 10_000
MAX_CROP_SCALES = 16  # the multi-scale crop pairs every two of them (reference: 4)
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
SECOND_MASKS = ("own", "shuffled")  # pretrain.second_masks

# field -> (test, what the value must be)
Rule = tuple[Callable[[Any], bool], str]


def _at_least(low: int) -> Rule:
    return (lambda v: v >= low), f"at least {low}"


def _between(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Rule:
    def test(v: float) -> bool:
        return (low < v if open_low else low <= v) and (v < high if open_high else v <= high)
    return test, f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"


def _one_of(choices) -> Rule:
    return (lambda v: v in choices), f"one of {', '.join(choices)}"


def _geometry(step: int, high: int) -> Rule:
    """0 (the checkpoint's, where allowed by the dataclass default) or a multiple of `step`."""
    return (lambda v: 0 <= v <= high and v % step == 0), f"a multiple of {step} up to {high}"


def _fractions(*, open_low: bool, count: int | None = None, most: int | None = None) -> Rule:
    def test(values) -> bool:
        in_range = all((0 < v if open_low else 0 <= v) and v <= 1 for v in values)
        sized = len(values) == count if count else 0 < len(values) <= (most or len(values))
        return sized and in_range
    size = f"{count} " if count else f"1 to {most} " if most else "one or more "
    return test, f"{size}numbers in {'(' if open_low else '['}0, 1]"


def _ordered_pair(test_item: Callable[[float], bool], what: str) -> Rule:
    return (lambda v: len(v) == 2 and v[0] <= v[1] and all(test_item(x) for x in v)), what


# Counts: each sizes a loop, a buffer or an allocation, so each has a ceiling (lowest, highest).
COUNTS = {
    "batch_size": (1, MAX_BATCH), "feature_batch_size": (1, MAX_BATCH),
    "micro_batch_size": (0, MAX_BATCH), "epochs": (1, MAX_EPOCHS),
    "warmup_epochs": (0, MAX_EPOCHS), "schedule_epochs": (0, MAX_EPOCHS),
    "max_steps": (0, MAX_STEPS), "save_every_steps": (1, MAX_STEPS),
    "log_every_steps": (1, MAX_STEPS), "max_corrupt_samples": (0, MAX_STEPS),
    "clips_per_epoch": (0, MAX_CLIPS_PER_EPOCH), "mask_repeats": (1, MAX_MASK_REPEATS),
    "keep_checkpoints": (1, MAX_KEPT_CHECKPOINTS), "num_classes": (1, MAX_CLASSES),
    "crop_max_distort": (0, MAX_CROP_SCALES),
}
NON_NEGATIVE = ("base_lr", "lr", "min_lr", "weight_decay", "clip_grad", "mixup", "cutmix",
                "rand_augment_magnitude_std")
FRACTIONS = ("traj_unmask_ratio", "drop_path", "head_drop", "rand_augment_prob", "mixup_prob",
             "mixup_switch_prob", "label_smoothing", "erase_prob")

RULES: dict[str, Rule] = {
    **{name: _between(low, high) for name, (low, high) in COUNTS.items()},
    **{name: _at_least(0) for name in NON_NEGATIVE},
    **{name: _between(0, 1) for name in FRACTIONS},
    "seed": _between(0, MAX_SEED),
    "num_workers": _between(0, MAX_LOADER_WORKERS),
    "shuffle_buffer": _between(0, MAX_SHUFFLE_BUFFER),
    "test_clips": _between(1, MAX_TEST_CLIPS),
    "test_crops": _between(1, MAX_CROPS),
    "train_crops": _between(1, MAX_CROPS),
    "mask_ratio": _between(0, 1, open_low=True, open_high=True),
    "layer_decay": _between(0, 1, open_low=True),
    "model_ema_decay": _between(0, 1, open_high=True),
    "repeated_augment": _between(1, MAX_REPEATED_AUGMENT),
    "rand_augment_ops": _between(0, MAX_RAND_AUGMENT_OPS),
    "rand_augment_magnitude": _between(0, RAND_AUGMENT_LEVEL_MAX),
    "betas": ((lambda v: len(v) == 2 and all(0 <= b < 1 for b in v)), "two numbers in [0, 1)"),
    "crop_scales": _fractions(open_low=True, most=MAX_CROP_SCALES),
    "crop_scale": _ordered_pair(lambda x: 0 < x <= 1, "two increasing numbers in (0, 1]"),
    "crop_ratio": _ordered_pair(lambda x: 0 < x, "two increasing positive numbers"),
    "input_size": _geometry(PATCH, MAX_INPUT_SIZE),
    "frames": _geometry(TUBELET, MAX_FRAMES),
    "model": _one_of(tuple(SIZES)),
    "target": _one_of(TARGETS),
    "mask": _one_of(MASK_KINDS),
    "object_cells": _one_of(OBJECT_CELLS),
    "second_mask": _one_of(SECOND_MASKS),
    "schedule_pace": _one_of(SCHEDULE_PACES),
    "erase_mode": _one_of(ERASE_MODES),
    "augment_device": _one_of(AUGMENT_PLACEMENTS),
    "attention": _one_of(ATTENTION_IMPLS),
    "precision": _one_of(PRECISIONS),
    "crop": _one_of(CROP_MODES),
    "crop_offsets": _one_of(CROP_OFFSET_MODES),
    "temporal": _one_of(TEMPORAL_MODES),
    "stride": _between(1, MAX_STRIDE),
    "integrity": _one_of(INTEGRITY_MODES),
    "on_integrity_mismatch": _one_of(MISMATCH_POLICIES),
    "card_sha256": ((lambda v: all(SHA256_PATTERN.fullmatch(p.strip().lower())
                                   for p in v.split(",") if p.strip())),
                    "empty or comma-separated sha256s (64 hex digits)"),
}
# Zero means "the checkpoint's" only where the dataclass default is zero (evaluate, probe).
ZERO_MEANS_DEFAULT = ("input_size", "frames")
# (fields, test on the settings, what is wrong): checked when a dataclass has every field.
COMBINATIONS: list[tuple[tuple[str, ...], Callable[[Any], bool], Callable[[Any], str]]] = [
    (("schedule_pace", "schedule_epochs"), lambda s: s.schedule_pace != "pass" or s.schedule_epochs > 0,
     lambda s: "schedule_pace pass reads a schedule of its own length; set schedule_epochs"),
    (("warmup_epochs", "schedule_epochs"), lambda s: not s.schedule_epochs or s.warmup_epochs <= s.schedule_epochs,
     lambda s: f"warmup_epochs {s.warmup_epochs} exceeds schedule_epochs {s.schedule_epochs}"),
]


def check_settings(settings: Any, source: str = "settings") -> Any:
    """Return `settings` if every value can work; else SettingsError naming the first bad one."""
    defaults = {f.name: f.default for f in dataclasses.fields(settings)}
    for name, (test, expected) in RULES.items():
        if name not in defaults:
            continue
        value = getattr(settings, name)
        if name in ZERO_MEANS_DEFAULT and value == 0 and defaults[name] != 0:
            raise SettingsError(f"{source}: setting {name!r} must be {expected} (not 0), got {value!r}")
        if not _holds(test, value):
            raise SettingsError(f"{source}: setting {name!r} must be {expected}, got {value!r}")
    _check_device(settings, source)
    for names, test, problem in COMBINATIONS:
        if all(name in defaults for name in names) and not test(settings):
            raise SettingsError(f"{source}: {problem(settings)}")
    return settings


def _holds(test: Callable[[Any], bool], value: Any) -> bool:
    try:
        numbers = value if isinstance(value, (list, tuple)) else [value]
        finite = all(math.isfinite(v) for v in numbers if isinstance(v, float))
        return finite and bool(test(value))
    except TypeError:
        return False


def _check_device(settings: Any, source: str) -> None:
    device = getattr(settings, "device", "auto")
    if device.split(":")[0] not in DEVICES:
        raise SettingsError(f"{source}: setting 'device' must be auto, cpu, cuda or cuda:N, got {device!r}")
