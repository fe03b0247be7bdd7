"""Foreign checkpoint keys -> this project's models (docs/method.md §7), outside the model classes.

Accepted layouts (after unwrapping a file's `model` / `module` / `state_dict` entry and
stripping DDP `module.` or torch.compile `_orig_mod.` prefixes):

- "pretrain":   VideoMAE / SMILE pretraining files and this project's PretrainModel:
                `encoder.*`, `encoder_to_decoder.weight`, `mask_token`, `decoder.*`.
- "classifier": finetuned VideoMAE / SMILE files and this project's ClassifierModel:
                `patch_embed.*`, `blocks.*`, `fc_norm.*`, `head.*`.
- "encoder":    a bare VideoViTEncoder: `patch_embed.*`, `blocks.*`, `norm.*`.

Position tables are never taken from a file (they are fixed sin-cos buffers here).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn

CONTAINER_KEYS = ("model", "module", "state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
ENCODER_PREFIX = "encoder."
HEAD_PREFIX = "head."
CLASSIFIER_ONLY_PREFIXES = ("fc_norm.", HEAD_PREFIX)
FRESH_IN_CLASSIFIER = ("fc_norm.", HEAD_PREFIX)  # may be missing from a file: freshly initialised
POSITION_TABLES = ("pos_embed", "decoder_pos_embed")
KEY_SAMPLE = 5


@dataclass
class KeyReport:
    """What a key mapping took, dropped and left freshly initialised."""

    layout: str  # "pretrain", "classifier" or "encoder"
    kept: list[str] = field(default_factory=list)  # keys of the returned state
    dropped: list[str] = field(default_factory=list)  # keys of the file not carried over
    head: dict[str, torch.Tensor] = field(default_factory=dict)  # a classifier's head.* tensors
    fresh: list[str] = field(default_factory=list)  # model keys left at their initial values

    def record(self) -> dict[str, Any]:
        """The report as plain values (finetuning checkpoints store it)."""
        return {"layout": self.layout, "loaded": len(self.kept), "dropped": self.dropped, "fresh": self.fresh}

    def summary(self) -> str:
        parts = [f"layout {self.layout}: {len(self.kept)} tensors loaded"]
        if self.dropped:
            parts.append(f"dropped {len(self.dropped)} ({_sample(self.dropped)})")
        if self.fresh:
            parts.append(f"freshly initialised {_sample(self.fresh)}")
        return "; ".join(parts)


def _sample(keys: list[str]) -> str:
    more = f", ... {len(keys) - KEY_SAMPLE} more" if len(keys) > KEY_SAMPLE else ""
    return ", ".join(keys[:KEY_SAMPLE]) + more


def unwrap_state(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint object, with wrapper prefixes removed."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint must be a dict, got {type(obj).__name__}")
    for key in CONTAINER_KEYS:
        if isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    state = dict(obj)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"checkpoint state holds non-tensor entries: {_sample(bad)}")
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def detect_layout(keys: set[str]) -> str:
    if any(k.startswith(ENCODER_PREFIX + "patch_embed.") for k in keys):
        return "pretrain"
    if "patch_embed.proj.weight" in keys and any(k.startswith("blocks.") for k in keys):
        classifier = any(k.startswith(CLASSIFIER_ONLY_PREFIXES) for k in keys)
        return "classifier" if classifier else "encoder"
    raise ValueError("checkpoint matches no known layout (VideoMAE/SMILE pretraining `encoder.*`, "
                     "finetuned `patch_embed.*`/`blocks.*`/`head.*`, or a bare encoder); "
                     f"first keys: {_sample(sorted(keys))}")


def encoder_state_from_foreign(
    state_dict: Mapping[str, Any],
) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """Encoder weights under VideoViTEncoder / ClassifierModel names, plus a report.

    Pretraining files: `encoder.` stripped; decoder, mask_token and encoder_to_decoder dropped.
    Finetuned files: kept as they are (including `fc_norm.*`), except `head.*`, which goes to
    `report.head`. Raises ValueError for a dict that matches no layout.
    """
    state = unwrap_state(state_dict)
    layout = detect_layout(set(state))
    report = KeyReport(layout)
    encoder_state: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        name = key[len(ENCODER_PREFIX):] if layout == "pretrain" else key
        if (layout == "pretrain" and not key.startswith(ENCODER_PREFIX)) or name in POSITION_TABLES:
            report.dropped.append(key)
        elif name.startswith(HEAD_PREFIX):
            report.head[name] = tensor
        else:
            encoder_state[name] = tensor
    report.kept = sorted(encoder_state)
    return encoder_state, report


def pretrain_state_to_classifier(state_dict: Mapping[str, Any],
                                 model: nn.Module) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """A complete state for `model.load_state_dict(state, strict=True)` (finetune --init-from).

    Backbone tensors (patch_embed, blocks) must all be in the file with the model's shapes, or
    ValueError names what is missing or mismatched. `fc_norm` and `head` come from the file when
    it has them with matching shapes (a finetuned file for the same classes) and otherwise keep
    the model's fresh values. A pretraining file's final `norm` is dropped, as VideoMAE's
    finetuning does: the classifier normalises after pooling (fc_norm) instead.
    """
    encoder_state, report = encoder_state_from_foreign(state_dict)
    available = {**encoder_state, **report.head}
    merged: dict[str, torch.Tensor] = {}
    missing, mismatched, report.kept = [], [], []
    for key, current in model.state_dict().items():
        source = available.get(key)
        if source is not None and source.shape == current.shape:
            merged[key] = source
            report.kept.append(key)
        elif key.startswith(FRESH_IN_CLASSIFIER):
            merged[key] = current
            report.fresh.append(key)
        elif source is None:
            missing.append(key)
        else:
            mismatched.append(f"{key} {tuple(source.shape)} vs {tuple(current.shape)}")
    if missing or mismatched:
        raise ValueError(f"checkpoint ({report.layout} layout) does not fit the model: "
                         f"missing {_sample(missing) or 'none'}; "
                         f"shape mismatch {_sample(mismatched) or 'none'}")
    report.dropped += sorted(k for k in available if k not in merged)
    return merged, report


def pretrain_state_to_pretrain(state_dict: Mapping[str, Any],
                               model: nn.Module) -> tuple[dict[str, torch.Tensor], KeyReport]:
    """A complete state for a PretrainModel from another pretraining run (stage 1 -> stage 2).

    Every encoder tensor must be in the file with the model's shape, or ValueError; the other
    tensors (decoder, mask token) are taken when their shapes fit and otherwise keep the model's
    fresh values (another target, e.g. pixels after CLIP features).
    """
    weights = unwrap_state(state_dict)
    own = model.state_dict()
    usable = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    missing = sorted(k for k in own if k.startswith(ENCODER_PREFIX) and k not in usable)
    if missing:
        raise ValueError(f"does not hold this model's encoder ({len(missing)} tensors missing or of another "
                         f"shape, e.g. {missing[:3]}); is it a pretraining checkpoint of the same size?")
    report = KeyReport("pretrain", kept=sorted(usable), dropped=sorted(set(weights) - set(usable)),
                       fresh=sorted(set(own) - set(usable)))
    return {key: usable.get(key, value) for key, value in own.items()}, report
