"""The one-line meaning of every setting of the `smile-train` commands (`smile-train settings`).

One table per settings dataclass; smile_data/settings_listing.py adds key, type and default from
the dataclass and the allowed values from checks.RULES (the checks every run passes), and
tests/test_settings_listing.py checks that every field has a meaning.
"""

from __future__ import annotations

from smile_data.render.settings import OVERLAY_MODES
from smile_data.settings_listing import Listing, Meaning
from smile_train.settings.checks import DEVICES, RULES
from smile_train.settings.finetune import EvalSettings, FinetuneSettings, ProbeSettings
from smile_train.settings.pretrain import PretrainSettings

DEVICE = Meaning("where the run computes (auto: cuda when available)", (*DEVICES, "cuda:N"))
RUN = {
    "seed": "base seed of every random draw (data order, crops, masks, initial weights)",
    "device": DEVICE,
    "precision": "autocast precision (auto: bf16 on CUDA, fp32 on CPU)",
    "fused_adamw": "use the fused AdamW kernel on CUDA",
    "save_every_steps": "steps between checkpoints (a rerun with --resume continues from the last)",
    "keep_checkpoints": "step checkpoints kept (final.pt is always kept)",
    "log_every_steps": "steps between lines of metrics.jsonl",
    "init_from": "checkpoint whose model weights start the run (this project's or an authors' file)",
}
LOADER = {
    "shards": "shard paths, globs, brace patterns or dataset URLs, comma-separated",
    "clips_per_epoch": "clips that make an epoch (0: the sample count in the shards' dataset.json cards)",
    "shuffle_buffer": "samples held per loader worker for shuffling (0: no shuffle)",
    "num_workers": "loader processes per rank (0: load in the training process)",
    "max_corrupt_samples": "unreadable samples a loader worker skips before the run stops",
}
VIDEO_SAMPLING = {  # smile_data.sampling.VideoSampling
    "temporal": "video samples: a window of frames at `stride` (K400), or TSN segments (SSv2)",
    "stride": "video samples: frames between two sampled frames (K400 4, SSv2 2)",
    "label_field": "video samples without a .cls member: the JSON field holding the label",
}
MODEL = {
    "model": "ViT size",
    "drop_path": "stochastic depth: the last block's rate (0 at the first block, rising linearly)",
    "attention": "attention implementation: PyTorch's fused SDPA or the reference softmax",
    "grad_checkpointing": "recompute activations in the backward pass (less memory, slower)",
    "compile": "torch.compile the model",
}
OPTIMISATION = {
    "min_lr": "learning rate at the end of the cosine, per 256 samples like base_lr",
    "weight_decay": "AdamW weight decay",
    "betas": "AdamW betas",
    "clip_grad": "gradient norm clipping (0: none)",
    "max_steps": "stop after this many steps (0: epochs x steps per epoch; smoke runs)",
}
PRETRAIN = {
    **LOADER, **VIDEO_SAMPLING, **MODEL, **OPTIMISATION, **RUN,
    "input_size": "clip side the model sees, in pixels",
    "frames": "frames per clip",
    "crop": "multi-scale crop (docs/method.md §4), or none for clips already at input_size",
    "augment_device": "where clip shards' crop and flip run: loader workers, or batched on the training device",
    "crop_scales": "multi-scale crop: side fractions of the short side",
    "crop_max_distort": "multi-scale crop: |i - j| at most between the scale indices of height and width",
    "crop_offsets": "multi-scale crop positions: the released 13 fixed offsets, 5 corners, or anywhere",
    "flip": "random horizontal flip (Kinetics yes, SSv2 no)",
    "overlay": Meaning("objects or patches drawn in the loader after the crop", OVERLAY_MODES),
    "bank": "object bank folder (overlay objects)",
    "overlay_settings": "`smile-data render` settings of the loader's overlays (`smile-data settings render`)",
    "sources": "several sources in one stage: each entry what differs from these keys, plus weight",
    "integrity": "checks against each dataset's card: every sample, each shard at its end, or none",
    "on_integrity_mismatch": "on a sample or shard that differs from its card: stop the run, or skip it",
    "card_sha256": "pinned dataset.json sha256s, comma-separated (\"\": trust the card as found)",
    "mask": "trajectory masks over moving objects (stage 1) or tube masks (stage 2)",
    "mask_ratio": "share of tokens masked",
    "object_cells": "object token cells: the released enclosing box per tube slice, per frame, or rotated",
    "traj_unmask_ratio": "share of an object's tokens left visible (the released generator's 0.1)",
    "mask_repeats": "masks per loaded clip (multiple sampling): each is one masked sample",
    "second_mask": "copies after the first take another clip's mask (released), or draw their own",
    "target": "reconstruct the teacher's CLIP features (SMILE) or normalised pixels (VideoMAE)",
    "teacher": "teacher model folder or hub id (target clip): CLIP, DINO or DINOv2",
    "pixel_norm": "pixel target: each tube normalised by its own mean and std (VideoMAE's default); false keeps the [0, 1] pixels",
    "epochs": "effective epochs (clips x mask_repeats): K400 300 + 300, SSv2 400 + 400",
    "schedule_epochs": "cosine horizon in epochs (0: it ends where training stops; released 801)",
    "schedule_pace": "read the schedule per step, or per pass like the released engine",
    "warmup_epochs": "linear warm-up in epochs of the schedule",
    "batch_size": "masked samples per optimiser step, all processes together (256 = 128 clips x 2 masks)",
    "micro_batch_size": "masked samples per process per micro-step (0: batch_size / world size); "
                        "gradient accumulation makes up the rest",
    "base_lr": "peak learning rate per 256 samples (lr = base_lr x batch_size / 256)",
    "out_dir": "run folder: per stage checkpoints/, metrics.jsonl, loss_curve.png, settings.json",
}
FINETUNE = {
    **LOADER, **VIDEO_SAMPLING, **MODEL, **OPTIMISATION, **RUN,
    "shards": "labelled training shards: paths, globs, brace patterns or URLs, comma-separated",
    "val_shards": "labelled shards tested with multi-view testing after the last step (\"\": none)",
    "num_classes": "classes of the new head",
    "class_names": "text file: one class name per line in label order (\"\": numbers)",
    "input_size": "clip side the model sees, in pixels",
    "frames": "frames per clip",
    "crop_scale": "random resized crop: area fraction (SMILE's; VideoMAE 0.08)",
    "crop_ratio": "random resized crop: aspect ratio width / height",
    "flip": "random horizontal flip (Kinetics yes, SSv2 no: left and right carry the label there)",
    "rand_augment": "RandAugment before the crop (timm's rand-m7-n4-mstd0.5-inc1)",
    "rand_augment_ops": "RandAugment operations drawn per clip (n4)",
    "rand_augment_magnitude": "RandAugment magnitude, of 10 (m7)",
    "rand_augment_magnitude_std": "RandAugment magnitude noise (mstd0.5)",
    "rand_augment_prob": "probability that each drawn operation is applied",
    "rand_augment_increasing": "timm's increasing operation set (inc1)",
    "erase_prob": "random erasing probability (0: off)",
    "erase_mode": "random erasing fill: per-pixel noise, one random colour per channel, or zeros",
    "repeated_augment": "augmented copies of each loaded clip per step (--num_sample)",
    "augment_device": "where RandAugment, crop, flip run: loader workers, or batched on the training device",
    "mixup": "mixup Beta(alpha, alpha) (0: off)",
    "cutmix": "cutmix Beta(alpha, alpha) (0: off)",
    "mixup_prob": "probability that a batch is mixed at all",
    "mixup_switch_prob": "probability of cutmix rather than mixup when both are on",
    "label_smoothing": "label smoothing of the targets",
    "head_drop": "dropout before the head",
    "head_init_scale": "the new head's initial weights are scaled by this",
    "epochs": "epochs of training",
    "warmup_epochs": "linear warm-up in epochs",
    "batch_size": "clips per optimiser step, all processes together",
    "micro_batch_size": "clips per process per micro-step (0: batch_size / world size)",
    "base_lr": "peak learning rate per 256 clips (lr = base_lr x batch_size / 256)",
    "min_lr": "learning rate at the end of the cosine, per 256 clips",
    "warmup_lr": "learning rate the warm-up starts from, per 256 clips (released: 0)",
    "layer_decay": "layer-wise learning-rate decay per block from the head down",
    "model_ema": "keep an exponential moving average of the weights",
    "model_ema_decay": "ema = decay x ema + (1 - decay) x weights, after every step",
    "test_clips": "multi-view test after training: temporal views per video (K400 7, SSv2 2)",
    "test_crops": "multi-view test after training: spatial views per clip",
    "out_dir": "run folder: checkpoints/, metrics.jsonl, loss_curve.png, settings.json, eval.json",
}
TESTING = {
    "checkpoint": "a finetuned checkpoint (this project's or an authors' file)",
    "shards": "labelled test shards: paths, globs, brace patterns or URLs, comma-separated",
    "class_names": "text file: one class name per line (overrides the checkpoint's names)",
    "test_clips": "temporal views per video (K400 7, SSv2 2, UCF / HMDB 5)",
    "test_crops": "spatial views per clip, along its long side",
    "input_size": "clip side in pixels (0: the checkpoint's)",
    "frames": "frames per clip (0: the checkpoint's)",
    "num_workers": "loader processes (0: load in this process)",
    "max_corrupt_samples": "unreadable samples skipped before the run stops (0: any is an error)",
    "device": DEVICE,
    "precision": RUN["precision"],
}
EVALUATE = {
    **TESTING, **VIDEO_SAMPLING,
    "out": "JSON report file to write",
    "batch_size": "clips per forward pass (each with test_crops views)",
}
PROBE = {
    **TESTING, **VIDEO_SAMPLING,
    "checkpoint": "pretraining or finetuning checkpoint whose encoder stays frozen",
    "shards": "labelled training shards: paths, globs, brace patterns or URLs, comma-separated",
    "val_shards": "labelled test shards (\"\": train only)",
    "num_classes": "classes of the linear head",
    "class_names": "text file: one class name per line in label order",
    "epochs": "epochs of training the head (K400 30, SSv2 50, UCF / HMDB / GYM / EPIC 100)",
    "warmup_epochs": "linear warm-up in epochs",
    "batch_size": "clips per step of training the head",
    "lr": "peak learning rate of the head",
    "min_lr": "learning rate at the end of the cosine",
    "weight_decay": OPTIMISATION["weight_decay"],
    "betas": OPTIMISATION["betas"],
    "train_crops": "views per training clip, each a training sample (1: the centre)",
    "feature_batch_size": "clips per forward pass of the frozen encoder",
    "cache_dir": "feature cache folder (\"\": OUT_DIR/features)",
    "out_dir": "folder: probe.pt, probe.json, settings.json and the feature cache",
    "seed": RUN["seed"],
}
STAGES_NOTE = """\
Stages: a config may list `stages:`, each a mapping of a `name` (a plain name, the folder inside
out_dir) and any keys above that differ in that stage; stage k > 1 starts from stage k-1's weights.
On the command line `--set KEY=VALUE` sets a key in every stage and `--set STAGE.KEY=VALUE` in one
stage (e.g. `--set stage1.epochs=300 --set stage2.mask=tube`, stages of
configs/pretrain/smile_vitb_k400.yaml)."""


def allowed_by_check(name: str) -> str:
    """What settings/checks.py accepts for a field, in its own words ("at least 1", "one of ...")."""
    return RULES[name][1] if name in RULES else ""


def listings() -> dict[str, list[Listing]]:
    """command -> the listings of its settings."""
    pretrain = Listing("pretrain: PretrainSettings (each stage's)", PretrainSettings, PRETRAIN,
                       allowed_by_check, STAGES_NOTE)
    return {
        "pretrain": [pretrain],
        "show-batch": [pretrain],
        "finetune": [Listing("finetune: FinetuneSettings", FinetuneSettings, FINETUNE, allowed_by_check)],
        "evaluate": [Listing("evaluate: EvalSettings", EvalSettings, EVALUATE, allowed_by_check)],
        "linear-probe": [Listing("linear-probe: ProbeSettings", ProbeSettings, PROBE, allowed_by_check)],
    }
