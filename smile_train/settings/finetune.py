"""Settings of finetuning, evaluation and linear probing: flat dataclasses.

The finetuning defaults are the released SMILE Kinetics-400 recipe (docs/method.md §7 and §9: the authors'
`scripts/finetune/finetune_k400_vitb.sh` and the defaults of their `run_class_finetuning.py`):
100 epochs, batch 16, flip, RandAugment rand-m7-n4-mstd0.5-inc1 before the crop, crop area
(0.25, 1), random erasing 0.25 (pixel), one sample per video, no EMA, 7 x 3 test views.
configs/finetune/ holds the other datasets' differences. YAML files hold only differences;
`--set key=value` works on every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from smile_data.sampling import VideoSampling
from smile_train.settings.run import RunSettings

KINETICS_TEST_CLIPS = 7  # the released SMILE K400 script: --test_num_segment 7
TEST_CROPS = 3
MAX_TEST_CLIPS = 64  # temporal views a video sample is decoded into (K400 7, SSv2 2)
MAX_CROPS = 16  # spatial views per clip: each is a clip-sized array (3-crop test)
# Bounds of the augmentation settings (checked in settings/checks.py)
MAX_REPEATED_AUGMENT = 16
MAX_RAND_AUGMENT_OPS = 16
RAND_AUGMENT_LEVEL_MAX = 10.0  # timm's magnitude scale
ERASE_MODES = ("pixel", "rand", "const")


@dataclass
class FinetuneSettings(VideoSampling, RunSettings):
    """Finetuning; video shards (`<key>.mp4`) take a new temporal draw every epoch (`temporal`,
    `stride`, `label_field`: VideoSampling's, inherited; the run's fields are RunSettings')."""

    # --- data: labelled shards written by `smile-data pack` ---
    shards: str = ""  # paths, globs, brace patterns or URLs, comma-separated
    val_shards: str = ""  # evaluated with multi-view testing after the last step ("" = skip)
    clips_per_epoch: int = 0  # 0: the sample count in the shards' dataset.json cards
    num_classes: int = 400
    class_names: str = ""  # text file, one class name per line in label order ("" = numbers)
    input_size: int = 224
    frames: int = 16
    crop_scale: tuple[float, float] = (0.25, 1.0)  # random resized crop: area fraction (SMILE's; VideoMAE 0.08)
    crop_ratio: tuple[float, float] = (0.75, 1.3333)  # random resized crop: aspect w / h
    flip: bool = True  # Kinetics yes, SSv2 no (left/right carries the label there)
    # RandAugment before the crop, timm's rand-m7-n4-mstd0.5-inc1 (smile_train/data/augment.py)
    rand_augment: bool = True
    rand_augment_ops: int = 4  # operations drawn per clip (n4)
    rand_augment_magnitude: float = 7.0  # of 10 (m7)
    rand_augment_magnitude_std: float = 0.5  # (mstd0.5)
    rand_augment_prob: float = 0.5  # each drawn operation is applied with this probability
    rand_augment_increasing: bool = True  # timm's "increasing" operation set (inc1)
    erase_prob: float = 0.25  # random erasing (--reprob); 0 switches it off
    erase_mode: str = "pixel"  # pixel | rand | const (--remode)
    repeated_augment: int = 1  # augmented copies of each loaded clip per step (--num_sample)
    mixup: float = 0.8  # Beta(alpha, alpha) of mixup; 0 switches it off
    cutmix: float = 1.0  # Beta(alpha, alpha) of cutmix; 0 switches it off
    mixup_prob: float = 1.0  # probability that a batch is mixed at all
    mixup_switch_prob: float = 0.5  # probability of cutmix rather than mixup when both are on
    label_smoothing: float = 0.1
    shuffle_buffer: int = 1000
    num_workers: int = 4
    max_corrupt_samples: int = 100  # per loader worker; past it the run stops
    # --- model ---
    model: str = "base"  # tiny | small | base
    drop_path: float = 0.1
    head_drop: float = 0.0
    head_init_scale: float = 0.001
    attention: str = "sdpa"
    grad_checkpointing: bool = False
    compile: bool = False
    # --- optimisation ---
    epochs: int = 100
    warmup_epochs: int = 5
    batch_size: int = 16  # clips per optimiser step, all processes together
    micro_batch_size: int = 0  # clips per process per micro-step; 0: batch_size / world size
    base_lr: float = 1e-3  # per 256 clips: lr = base_lr x batch_size / 256
    min_lr: float = 1e-6  # per 256 clips, like base_lr
    # The warm-up starts here (per 256 clips, like base_lr). Released: 0, because the authors'
    # scripts scale --warmup_lr but never hand it to their cosine_scheduler (start value 0).
    warmup_lr: float = 0.0
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad: float = 0.0  # 0: no clipping
    model_ema: bool = False  # keep an exponential moving average of the weights
    model_ema_decay: float = 0.9999  # ema = decay x ema + (1 - decay) x weights, after every step
    max_steps: int = 0  # 0: epochs x steps per epoch; a smaller value stops early
    # --- testing after training (docs/method.md §7, §9 views) ---
    test_clips: int = KINETICS_TEST_CLIPS
    test_crops: int = TEST_CROPS
    out_dir: str = "runs/finetune"  # this command's default; the other run fields: RunSettings


@dataclass
class EvalSettings(VideoSampling):
    """Multi-view testing; a video's test clips are `test_clips` views of VideoSampling's
    `temporal` mode (window: evenly spaced over the video; segments: TSN offsets)."""

    checkpoint: str = ""  # a finetuned checkpoint (this project's or the authors')
    shards: str = ""
    out: str = "eval.json"
    class_names: str = ""  # overrides the names stored in the checkpoint
    test_clips: int = KINETICS_TEST_CLIPS  # temporal views: clips of one source video
    test_crops: int = TEST_CROPS  # spatial views along the long side
    input_size: int = 0  # 0: the checkpoint's
    frames: int = 0  # 0: the checkpoint's
    batch_size: int = 8  # clips per forward pass (each with test_crops views)
    num_workers: int = 4
    max_corrupt_samples: int = 0  # evaluation counts every clip: any corrupt one is an error
    device: str = "auto"
    precision: str = "auto"


@dataclass
class ProbeSettings(VideoSampling):
    """Linear probing; with video shards a training video gives one temporal view (the centre
    window, or TSN offset 0) and a test video `test_clips` views, of VideoSampling's mode."""

    checkpoint: str = ""  # pretraining or finetuning checkpoint whose encoder stays frozen
    shards: str = ""  # labelled training shards
    val_shards: str = ""  # labelled test shards ("" = train only)
    num_classes: int = 400
    class_names: str = ""
    epochs: int = 30  # K400 30, SSv2 50, UCF / HMDB / GYM / EPIC 100
    warmup_epochs: int = 0
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    train_crops: int = 1  # views per training clip, each a training sample (1: centre)
    test_clips: int = KINETICS_TEST_CLIPS
    test_crops: int = TEST_CROPS
    input_size: int = 0  # 0: the checkpoint's
    frames: int = 0
    feature_batch_size: int = 8
    num_workers: int = 4
    max_corrupt_samples: int = 0
    cache_dir: str = ""  # "" = <out_dir>/features
    out_dir: str = "runs/probe"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"


def read_class_names(path: str, count: int | None = None) -> list[str]:
    """Class names from a text file, one per line in label order; [] when `path` is empty."""
    if not path:
        return []
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: class-name file not found")
    names = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if count is not None and len(names) != count:
        raise ValueError(f"{file}: {len(names)} class names, but the model has {count} classes")
    return names
