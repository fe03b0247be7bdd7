"""One clip: overlays drawn and composited onto a background, frames encoded, metadata built.

Everything a clip draws comes from its own generator, seeded from [seed, clip_index], in a fixed
order: background draws, then (per overlay) trajectory, then object or patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from smile_data.objects.bank import BankObject
from smile_data.render.overlay import composite
from smile_data.render.patches import make_patch
from smile_data.render.settings import RenderSettings
from smile_data.render.trajectory import Trajectory, generate_trajectory
from smile_data.shards import layout

COORDINATE_DECIMALS = 2  # boxes and angles in the metadata: 1/100 px and 1/100 degree

# Draws one bank object for a clip: returns its entry and its premultiplied BGRA sprite.
ObjectPicker = Callable[[np.random.Generator], tuple[BankObject, np.ndarray]]


@dataclass
class Overlays:
    sprites: list[np.ndarray]
    trajectories: list[Trajectory]
    opacities: list[np.ndarray | None]
    descriptions: list[dict[str, Any]]  # metadata of each overlay, minus boxes and angles


def clip_rng(seed: int, clip_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, clip_index])


def largest_box_side(s: RenderSettings) -> float:
    """The longest box side any trajectory can reach: objects never need more pixels."""
    longest = max(s.box_sides) * math.sqrt(max(max(s.box_aspects), 1 / min(s.box_aspects)))
    grown = longest * math.exp(s.box_jitter) * math.exp(s.scale_step * (s.frames - 1))
    return min(grown, float(s.size - 1))


def _rounded(values: np.ndarray) -> list:
    return (np.round(values, COORDINATE_DECIMALS) + 0.0).tolist()  # + 0.0 turns -0.0 into 0.0


def draw_overlays(
    rng: np.random.Generator, s: RenderSettings, clip: np.ndarray, pick_object: ObjectPicker | None
) -> Overlays:
    """Trajectories and sprites of the clip's overlays (none when overlay == "none")."""
    overlays = Overlays([], [], [], [])
    if s.overlay == "none":
        return overlays
    for _ in range(s.objects):
        trajectory = generate_trajectory(rng, s, s.frames, s.size, s.size)
        overlays.trajectories.append(trajectory)
        if s.overlay == "patches":
            patch = make_patch(rng, s, clip, trajectory)
            overlays.sprites.append(patch.sprite)
            overlays.opacities.append(patch.opacity)
            overlays.descriptions.append({
                "kind": "patch", "bank_path": None, "lvis_id": None, "name": None,
                "shape": patch.shape, "soft_edges": patch.soft_edges,
                "source_frame": patch.source_frame, "crop": list(patch.crop),
                "opacity": _rounded(patch.opacity),
            })
        else:
            entry, sprite = pick_object(rng)
            overlays.sprites.append(sprite)
            overlays.opacities.append(None)
            overlays.descriptions.append({
                "kind": "object", "bank_path": entry.path, "lvis_id": entry.lvis_id, "name": entry.name,
            })
    return overlays


def apply_overlays(clip: np.ndarray, overlays: Overlays) -> list[dict[str, Any]]:
    """Composite in place; return the objects' metadata in paste order."""
    order = composite(clip, overlays.sprites, overlays.trajectories, overlays.opacities)
    objects = []
    for index in order:
        trajectory = overlays.trajectories[index]
        description = dict(overlays.descriptions[index])
        description["boxes"] = _rounded(trajectory.boxes)
        description["angles"] = _rounded(trajectory.angles)
        objects.append(description)
    return objects


def encode_frames(clip: np.ndarray, codec: str, quality: int, png_compression: int) -> dict[str, bytes]:
    """clip (T, H, W, 3) BGR uint8 -> {"00.jpg": bytes, ...}; deterministic for equal pixels."""
    if codec == "jpg":
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression]
    members = {}
    for t, frame in enumerate(clip):
        ok, data = cv2.imencode(f".{codec}", frame, params)
        if not ok:
            raise RuntimeError(f"could not encode frame {t} as {codec}")
        members[layout.frame_extension(t, codec)] = data.tobytes()
    return members


def clip_metadata(
    clip_index: int, seed: int, clip: np.ndarray, codec: str, background: dict[str, Any],
    objects: list[dict[str, Any]], label: int | None = None,
) -> dict[str, Any]:
    """Schema-v1 metadata of a clip (see smile_data.shards.layout)."""
    frames, height, width = clip.shape[:3]
    return {
        "schema_version": layout.SCHEMA_VERSION,
        "key": layout.sample_key(clip_index),
        "clip_index": clip_index,
        "seed": seed,
        "frames": int(frames),
        "height": int(height),
        "width": int(width),
        "codec": codec,
        "background": background,
        "objects": objects,
        "label": label,
    }


def sample_members(
    clip: np.ndarray, metadata: dict[str, Any], codec: str, quality: int, png_compression: int
) -> dict[str, bytes]:
    """All tar members of a clip: frames, metadata and, for labelled clips, the label."""
    members = encode_frames(clip, codec, quality, png_compression)
    members[layout.METADATA_EXTENSION] = layout.encode_metadata(metadata)
    if metadata.get("label") is not None:
        members[layout.LABEL_EXTENSION] = layout.encode_label(metadata["label"])
    return members
