"""Linear probing (docs/method.md §7): frozen encoder, mean-pooled features, a linear head.

Features are extracted once per (checkpoint, shards, clip geometry, views) and cached as
safetensors (no pickle). Training clips give `train_crops` views each, every view a sample;
test videos are scored like `evaluate` (softmax averaged over clips x crops). Features are
standardised with the training set's per-channel mean and std, stored with the head: a
frozen, affine-free batch norm, as MAE-style probes use, without batch noise.
Optimiser: AdamW, lr 1e-3 (not scaled by batch), weight decay 0.05, batch 128, cosine.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from smile_data.config import settings_to_dict
from smile_data.io import atomic_path, sha256_file, write_json_atomic
from smile_data.shards import remote
from smile_train.data.loader import expand_urls
from smile_train.interop import checkpoint as ckpt
from smile_train.interop.checkpoint import CheckpointInfo, feature_encoder_from_checkpoint
from smile_train.loop import runtime as rt
from smile_train.loop.evaluate import (
    ClipOutput,
    VideoViews,
    accuracy_report,
    checked_checkpoint,
    collect_outputs,
    video_scores,
    view_loader,
)
from smile_train.loop.lr_schedule import cosine_lr
from smile_train.settings.finetune import ProbeSettings, read_class_names

CACHE_VERSION = 1
STD_FLOOR = 1e-6


# --- feature cache ---------------------------------------------------------------------------------


def shard_fingerprint(url: str) -> list[Any]:
    """A local shard by name, size and modification time; a remote one by URL."""
    if not remote.is_local(url):
        return [url]
    stat = os.stat(url)
    return [os.path.abspath(url), stat.st_size, stat.st_mtime_ns]


def cache_key(checkpoint_sha256: str, urls: list[str], size: int, frames: int, crops: int,
              videos: VideoViews) -> str:
    description = {"version": CACHE_VERSION, "checkpoint": checkpoint_sha256, "size": size,
                   "frames": frames, "crops": crops, "shards": [shard_fingerprint(u) for u in urls],
                   "video_views": [videos.clips, videos.sampling.temporal, videos.sampling.stride,
                                   videos.sampling.label_field]}
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def save_features(path: Path, clips: list[ClipOutput]) -> None:
    from safetensors.torch import save_file

    tensors = {
        "features": torch.from_numpy(np.stack([c.outputs for c in clips]).astype(np.float32)),  # (N, V, D)
        "labels": torch.tensor([c.label for c in clips], dtype=torch.int64),
        "starts": torch.tensor([c.start for c in clips], dtype=torch.int64),
    }
    metadata = {"keys": json.dumps([c.key for c in clips]), "sources": json.dumps([c.source for c in clips])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_features(path: Path) -> list[ClipOutput]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
        features, labels, starts = (handle.get_tensor(n) for n in ("features", "labels", "starts"))
    keys, sources = json.loads(metadata["keys"]), json.loads(metadata["sources"])
    return [ClipOutput(k, s, int(l), int(t), f) for k, s, l, t, f in
            zip(keys, sources, labels.tolist(), starts.tolist(), features.numpy())]


def extract_features(info: CheckpointInfo, checkpoint_sha256: str, shards: str, crops: int,
                     videos: VideoViews, s: ProbeSettings, runtime: rt.Runtime,
                     cache_dir: Path) -> list[ClipOutput]:
    """Pooled features (V, D) of every clip, from the cache when it has them; a video sample
    gives `videos.clips` temporal views."""
    urls = expand_urls(shards)
    key = cache_key(checkpoint_sha256, urls, info.input_size, info.frames, crops, videos)
    path = cache_dir / f"features-{key[:24]}.safetensors"
    if path.is_file():
        if runtime.is_main:
            print(f"features from cache {path}")
        return load_features(path)
    encoder = feature_encoder_from_checkpoint(info).to(runtime.device)
    loader = view_loader(urls, info.input_size, crops, info.frames, s.feature_batch_size,
                         s.num_workers, runtime, s.max_corrupt_samples, videos)
    clips = collect_outputs(encoder, loader, runtime)
    if not clips:
        raise ValueError(f"shards {shards!r}: no labelled clip was read")
    if runtime.is_main:
        save_features(path, clips)
    return clips


# --- the linear head -----------------------------------------------------------------------------


def train_head(features: torch.Tensor, labels: torch.Tensor, num_classes: int, s: ProbeSettings,
               device: torch.device, log: rt.MetricsLog) -> dict[str, torch.Tensor]:
    """AdamW + cosine on standardised features (N, D); returns the head and the statistics."""
    mean, std = features.mean(dim=0), features.std(dim=0).clamp_min(STD_FLOOR)
    inputs = ((features - mean) / std).to(device)
    targets = labels.to(device)
    generator = torch.Generator().manual_seed(s.seed)
    head = torch.nn.Linear(features.shape[1], num_classes).to(device)
    torch.nn.init.zeros_(head.bias)
    torch.nn.init.trunc_normal_(head.weight, std=0.01, generator=generator)
    groups = rt.weight_decay_groups(head.named_parameters(), s.weight_decay, set())
    optimizer = rt.adamw(groups, s.lr, s.betas, device, fused=False)
    steps_per_epoch = max(1, -(-len(inputs) // s.batch_size))
    total, warmup = s.epochs * steps_per_epoch, s.warmup_epochs * steps_per_epoch
    step = 0
    for epoch in range(s.epochs):
        order = torch.randperm(len(inputs), generator=generator).to(device)
        epoch_loss = 0.0
        for first in range(0, len(inputs), s.batch_size):
            batch = order[first : first + s.batch_size]
            rt.apply_lr(optimizer, cosine_lr(step, total, warmup, s.lr, s.min_lr))
            loss = F.cross_entropy(head(inputs[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            epoch_loss += float(loss.detach()) * len(batch)
            step += 1
        log.write(step, {"epoch": epoch + 1, "loss": epoch_loss / len(inputs)})
    return {"weight": head.weight.detach().cpu(), "bias": head.bias.detach().cpu(),
            "mean": mean.cpu(), "std": std.cpu()}


def probe_logits(head: dict[str, torch.Tensor], features: torch.Tensor) -> torch.Tensor:
    """(..., D) features -> (..., C) logits of a trained probe."""
    return F.linear((features - head["mean"]) / head["std"], head["weight"], head["bias"])


def score_clips(head: dict[str, torch.Tensor], clips: list[ClipOutput]) -> list[ClipOutput]:
    """Per-view softmax probabilities of the probe, in place of the features."""
    scored = []
    for clip in clips:
        probs = torch.softmax(probe_logits(head, torch.from_numpy(clip.outputs)), dim=-1)
        scored.append(ClipOutput(clip.key, clip.source, clip.label, clip.start, probs.numpy()))
    return scored


def run_probe(s: ProbeSettings) -> dict[str, Any]:
    """`smile-train linear-probe`: features -> head -> report (probe.json) and head (probe.pt)."""
    info = checked_checkpoint(s, "linear-probe")
    out_dir = Path(s.out_dir)
    names = read_class_names(s.class_names, s.num_classes)
    if s.val_shards:  # read after the training features: a list that cannot work is refused now
        expand_urls(s.val_shards, setting="val_shards")
    digest = sha256_file(s.checkpoint)
    cache_dir = Path(s.cache_dir) if s.cache_dir else out_dir / "features"
    runtime = rt.setup(s.device, s.precision)
    with rt.process_group(runtime):
        train = extract_features(info, digest, s.shards, s.train_crops, VideoViews(1, sampling=s), s,
                                 runtime, cache_dir)  # ProbeSettings is a VideoSampling
        test = extract_features(info, digest, s.val_shards, s.test_crops, VideoViews(s.test_clips, sampling=s),
                                s, runtime, cache_dir) if s.val_shards else []
        if not runtime.is_main:
            return {}
        write_json_atomic(out_dir / "settings.json", settings_to_dict(s))
        features = torch.from_numpy(np.concatenate([c.outputs for c in train]))  # (N x V, D)
        labels = torch.tensor([c.label for c in train for _ in range(c.outputs.shape[0])])
        if int(labels.max()) >= s.num_classes or int(labels.min()) < 0:
            raise ValueError(f"labels {int(labels.min())}..{int(labels.max())} do not fit num_classes {s.num_classes}")
        log = rt.MetricsLog(out_dir, True)
        torch.manual_seed(s.seed)
        head = train_head(features, labels, s.num_classes, s, runtime.device, log)
        log.plot_loss("linear probe")
        log.close()
        train_top1 = float((probe_logits(head, features).argmax(-1) == labels).float().mean())
        report: dict[str, Any] = {"train_top1": train_top1, "train_samples": int(len(labels)),
                                  "checkpoint": s.checkpoint, "feature_dim": int(features.shape[1])}
        if test:
            report |= accuracy_report(video_scores(score_clips(head, test), s.test_clips), s.num_classes, names)
            report |= {"test_clips": s.test_clips, "test_crops": s.test_crops}
        ckpt.save_checkpoint(out_dir / "probe.pt", {"head": head, "settings": settings_to_dict(s),
                                                   "class_names": names, "checkpoint_sha256": digest})
        write_json_atomic(out_dir / "probe.json", report)
        return report
