"""Hugging Face interchange: export to transformers, import the authors' files (both read
through checkpoint.read_checkpoint).

- `export_hf`: a folder that `transformers.VideoMAEModel.from_pretrained` loads (pretraining
  checkpoints: `use_mean_pooling` false, the encoder's final norm as `layernorm`, so
  `last_hidden_state` equals this project's encoder output) or that
  `VideoMAEForVideoClassification.from_pretrained` loads (finetuned: `use_mean_pooling` true,
  `fc_norm` + `classifier`, id2label). Blocks use LayerNorm eps 1e-6 through the config.
  Note: transformers builds the classifier's `fc_norm` with its default eps (1e-5), a fixed
  difference of that library, negligible for trained features.
- `import_authors`: an authors' file -> this project's checkpoint (`model` + `settings`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from smile_data.io import sha256_file, write_json_atomic
from smile_train.interop.checkpoint import CheckpointInfo, read_checkpoint, save_checkpoint
from smile_train.model.targets import IMAGENET_MEAN, IMAGENET_STD
from smile_train.model.vit import LAYER_NORM_EPS, MLP_RATIO, ClassifierModel, PretrainModel, size_spec

EXPORT_MARKER = "smile_export.json"
DECODER_BLOCK_PATTERN = re.compile(r"^decoder\.blocks\.(\d+)\.")
HF_LINEAR = {  # this project's block parameter -> transformers' VideoMAELayer parameter
    "norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
}


# --- transformers export -----------------------------------------------------------------------


def hf_config(info: CheckpointInfo, class_names: list[str]):
    from transformers import VideoMAEConfig

    spec = size_spec(info.size)
    classifier = info.layout == "classifier"
    options: dict[str, Any] = {}
    if classifier:
        names = class_names or [str(i) for i in range(info.num_classes)]
        options = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    return VideoMAEConfig(
        image_size=info.input_size, patch_size=info.patch, num_channels=3, num_frames=info.frames,
        tubelet_size=info.tubelet, hidden_size=spec.width, num_hidden_layers=spec.depth,
        num_attention_heads=spec.heads, intermediate_size=spec.width * MLP_RATIO, hidden_act="gelu",
        layer_norm_eps=LAYER_NORM_EPS, qv_bias=True, use_mean_pooling=classifier,
        decoder_hidden_size=spec.decoder_width, decoder_num_hidden_layers=spec.decoder_depth,
        decoder_num_attention_heads=spec.decoder_heads,
        decoder_intermediate_size=spec.decoder_width * MLP_RATIO, **options,
    )


def hf_state_dict(info: CheckpointInfo, hf_keys: set[str], base: str) -> dict[str, torch.Tensor]:
    """This project's weights under transformers' names; `base` is "" or "videomae.".

    qkv is split into query / key / value rows; the q and v biases go where the installed
    transformers keeps them (`query.bias` / `value.bias`, or `q_bias` / `v_bias` in older ones).
    """
    prefix = info.encoder_prefix
    state = {k[len(prefix):]: v for k, v in info.state.items() if k.startswith(prefix)}
    legacy_bias = any(k.endswith("attention.attention.q_bias") for k in hf_keys)
    out = {f"{base}embeddings.patch_embeddings.projection.{p}": state[f"patch_embed.proj.{p}"]
           for p in ("weight", "bias")}
    for index in range(size_spec(info.size).depth):
        ours, theirs = f"blocks.{index}.", f"{base}encoder.layer.{index}."
        query, key, value = state[ours + "attn.qkv.weight"].chunk(3, dim=0)
        attention = theirs + "attention.attention."
        out.update({attention + "query.weight": query, attention + "key.weight": key,
                    attention + "value.weight": value})
        q_name, v_name = ("q_bias", "v_bias") if legacy_bias else ("query.bias", "value.bias")
        out[attention + q_name] = state[ours + "attn.q_bias"]
        out[attention + v_name] = state[ours + "attn.v_bias"]
        for mine, hf_name in HF_LINEAR.items():
            for p in ("weight", "bias"):
                out[f"{theirs}{hf_name}.{p}"] = state[f"{ours}{mine}.{p}"]
    if info.layout == "classifier":
        for p in ("weight", "bias"):
            out[f"fc_norm.{p}"] = state[f"fc_norm.{p}"]
            out[f"classifier.{p}"] = state[f"head.{p}"]
    else:
        for p in ("weight", "bias"):
            out[f"{base}layernorm.{p}"] = state[f"norm.{p}"]
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def export_hf(checkpoint: str | Path, out_dir: str | Path, class_names: list[str] | None = None) -> Path:
    """Write a transformers folder (config.json, model.safetensors, preprocessor_config.json).

    An existing folder is only replaced when it holds an earlier export (its marker file).
    """
    from transformers import VideoMAEForVideoClassification, VideoMAEModel

    info = read_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / EXPORT_MARKER).is_file():
        raise ValueError(f"{out_dir}: exists and is not an earlier export; choose another --out")
    names = class_names or info.class_names
    if names and len(names) != info.num_classes:
        raise ValueError(f"{len(names)} class names for a {info.num_classes}-class model")
    config = hf_config(info, names)
    classifier = info.layout == "classifier"
    model = VideoMAEForVideoClassification(config) if classifier else VideoMAEModel(config)
    hf_keys = set(model.state_dict())
    mapped = hf_state_dict(info, hf_keys, "videomae." if classifier else "")
    if set(mapped) != hf_keys:
        raise ValueError(f"export does not line up with the installed transformers: missing "
                         f"{sorted(hf_keys - set(mapped))[:5]}, unexpected {sorted(set(mapped) - hf_keys)[:5]}")
    model.load_state_dict(mapped, strict=True)
    staging = out_dir.with_name(f"{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    write_json_atomic(staging / "preprocessor_config.json", preprocessor_config(info.input_size))
    write_json_atomic(staging / EXPORT_MARKER, {
        "source": str(checkpoint), "source_sha256": sha256_file(checkpoint), "layout": info.layout,
        "model": info.size, "class": type(model).__name__, "settings": info.settings,
    })
    _replace_folder(staging, out_dir)
    return out_dir


def preprocessor_config(size: int) -> dict[str, Any]:
    """VideoMAEImageProcessor settings: short side to `size`, centre crop, ImageNet statistics."""
    return {
        "image_processor_type": "VideoMAEImageProcessor", "do_resize": True,
        "size": {"shortest_edge": size}, "resample": 2, "do_center_crop": True,
        "crop_size": {"height": size, "width": size}, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD),
    }


def _replace_folder(staging: Path, target: Path) -> None:
    """Swap a finished folder into place; the previous export is removed only afterwards."""
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


# --- authors' files -> this project's checkpoints ------------------------------------------------


def import_authors(source: str | Path, out: str | Path, input_size: int = 0, frames: int = 0,
                   class_names: list[str] | None = None) -> dict[str, Any]:
    """Convert a VideoMAE / SMILE release file into this project's checkpoint format.

    The weights are loaded strictly into the matching model (PretrainModel for pretraining
    files, ClassifierModel for finetuned ones), so nothing is silently dropped or left fresh
    except the position tables, which this project rebuilds. Returns a summary.
    """
    info = read_checkpoint(source, input_size, frames)
    geometry = info.geometry
    settings: dict[str, Any] = {"model": info.size, "input_size": info.input_size, "frames": info.frames}
    if info.layout == "pretrain":
        target_dim = int(info.state["decoder.head.weight"].shape[0])
        depth = len({m.group(1) for k in info.state if (m := DECODER_BLOCK_PATTERN.match(k))})
        model = PretrainModel(info.size, target_dim, decoder_depth=depth, **geometry)
        pixel_dim = info.tubelet * info.patch * info.patch * 3
        settings["target"] = "pixel" if target_dim == pixel_dim else "clip"
    elif info.layout == "classifier" and info.num_classes:
        if any(k.startswith("norm.") for k in info.state):
            raise ValueError(f"{source}: a class-token classifier (`norm.*` without mean pooling) "
                             "is not supported; this project pools tokens (fc_norm)")
        model = ClassifierModel(info.size, info.num_classes, **geometry)
        settings["num_classes"] = info.num_classes
    else:
        raise ValueError(f"{source}: neither a pretraining file (`encoder.*` + decoder) nor a "
                         "finetuned one (`blocks.*` + `head.*`)")
    try:
        model.load_state_dict(info.state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{source}: does not fit a {info.size} {info.layout} model: {error}") from None
    names = class_names or info.class_names
    save_checkpoint(Path(out), {
        "model": model.state_dict(), "step": 0, "stage": "imported", "settings": settings,
        "class_names": list(names), "source": {"path": str(source), "sha256": sha256_file(source)},
    })
    return {"checkpoint": str(out), "layout": info.layout, "model": info.size,
            "tensors": len(info.state), "settings": settings}
