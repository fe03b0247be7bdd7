"""One clip: overlays drawn and composited onto a background, frames encoded, metadata built.

Everything a clip draws comes from its own generator, seeded from [seed, clip_index], in a fixed
order: background draws, then the label (motion-direction only), then per overlay its
trajectory, then its object or patch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np

from smile_data.objects.bank import BankObject
from smile_data.render.overlay import make_layers, paste_layers
from smile_data.render.patches import make_patch
from smile_data.render.settings import RenderSettings
from smile_data.render.trajectory import Trajectory, generate_trajectory, size_scale
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
    label: int | None = None  # the clip's class (motion-direction), else None


def clip_rng(seed: int, clip_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, clip_index])


def largest_box_side(s: RenderSettings) -> float:
    """The longest box side any trajectory can reach: objects never need more pixels."""
    longest = max(s.box_sides) * size_scale(s, s.size, s.size) * math.sqrt(
        max(max(s.box_aspects), 1 / min(s.box_aspects)))
    grown = longest * math.exp(s.box_jitter) * math.exp(s.scale_step * (s.frames - 1))
    return min(grown, float(s.size - 1))


def _rounded(values: np.ndarray) -> list:
    return (np.round(values, COORDINATE_DECIMALS) + 0.0).tolist()  # + 0.0 turns -0.0 into 0.0


def draw_overlays(
    rng: np.random.Generator, s: RenderSettings, clip: np.ndarray, pick_object: ObjectPicker | None
) -> Overlays:
    """Trajectories and sprites of the clip's overlays (none when overlay == "none"), and with
    label motion-direction the clip's class, which the (single) overlay's path follows."""
    overlays = Overlays([], [], [], [])
    if s.overlay == "none":
        return overlays
    if s.label == "motion-direction":
        overlays.label = int(rng.integers(s.direction_classes))
    for _ in range(s.objects):
        trajectory = generate_trajectory(rng, s, s.frames, s.size, s.size, direction=overlays.label)
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


def encode_frame(frame: np.ndarray, codec: str, params: list[int]) -> bytes:
    """(H, W, 3) BGR uint8 -> JPEG or PNG bytes; OpenCV's encoders are deterministic."""
    ok, data = cv2.imencode(f".{codec}", frame, params)
    if not ok:
        raise RuntimeError(f"could not encode a frame as {codec}")
    return data.tobytes()


def encoder_params(codec: str, quality: int, png_compression: int) -> list[int]:
    if codec == "jpg":
        return [cv2.IMWRITE_JPEG_QUALITY, quality]
    return [cv2.IMWRITE_PNG_COMPRESSION, png_compression]


def encode_frames(clip: np.ndarray, codec: str, quality: int, png_compression: int) -> dict[str, bytes]:
    """clip (T, H, W, 3) BGR uint8 -> {"00.jpg": bytes, ...}; deterministic for equal pixels."""
    params = encoder_params(codec, quality, png_compression)
    return {layout.frame_extension(t, codec): encode_frame(frame, codec, params)
            for t, frame in enumerate(clip)}


def render_frames(
    clip: np.ndarray, overlays: Overlays, s: RenderSettings
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Composite the overlays onto clip (T, H, W, 3) frame by frame and encode each frame.

    A writable clip (natural backgrounds) is pasted into in place; a read-only one is pasted
    into a working frame. For a still (one frame seen T times) the working frame is copied once
    and after each frame only the regions pasted into are put back. Returns the objects'
    metadata in paste order and the frame members {"00.jpg": bytes, ...}.
    """
    order, layers = make_layers(overlays.sprites, overlays.trajectories, overlays.opacities)
    params = encoder_params(s.codec, s.quality, s.png_compression)
    in_place = clip.flags.writeable or not layers
    still = clip.strides[0] == 0  # np.broadcast_to of one frame
    work = None if in_place else clip[0].copy()
    members = {}
    for t in range(clip.shape[0]):
        if not in_place and not still:
            np.copyto(work, clip[t])
        frame = clip[t] if in_place else work
        pasted = paste_layers(frame, layers, t)
        members[layout.frame_extension(t, s.codec)] = encode_frame(frame, s.codec, params)
        if not in_place and still:
            for x0, y0, x1, y1 in pasted:
                work[y0:y1, x0:x1] = clip[t, y0:y1, x0:x1]
    return _objects_metadata(overlays, order), members


def _objects_metadata(overlays: Overlays, order: list[int]) -> list[dict[str, Any]]:
    objects = []
    for index in order:
        trajectory = overlays.trajectories[index]
        description = dict(overlays.descriptions[index])
        description["boxes"] = _rounded(trajectory.boxes)
        description["angles"] = _rounded(trajectory.angles)
        objects.append(description)
    return objects


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


def sample_members(frames: dict[str, bytes], metadata: dict[str, Any]) -> dict[str, bytes]:
    """All tar members of a clip: its encoded frames, metadata and, if labelled, the label."""
    members = dict(frames)
    members[layout.METADATA_EXTENSION] = layout.encode_metadata(metadata)
    if metadata.get("label") is not None:
        members[layout.LABEL_EXTENSION] = layout.encode_label(metadata["label"])
    return members
