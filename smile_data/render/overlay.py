"""Compositing RGBA overlays onto clips along their trajectories (docs/method.md §3).

Overlays are held as *sprites*: BGRA uint8 with the colour premultiplied by alpha, so resizing
and rotating never bleed the colour of transparent pixels into the edge, and blending is
`out = sprite + background * (255 - alpha) / 255`.

Each paste is one cv2.warpAffine that scales the sprite to the box, rotates it about the box
centre with expanded bounds (no corner is cut) and writes only the part of its rotated bounds
that lies inside the frame; the blend then touches that region only (saturating uint8 ops).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from smile_data.render.trajectory import Trajectory

ALPHA_MAX = 255
_EDGE_MARGIN = 1  # pixels around the rotated bounds that bilinear sampling may touch


def premultiply(four_channels: np.ndarray) -> np.ndarray:
    """(h, w, 4) uint8 with alpha last -> the same channel order, colour premultiplied by alpha
    (each colour channel alike, rounding v*a/255)."""
    return cv2.cvtColor(np.ascontiguousarray(four_channels), cv2.COLOR_RGBA2mRGBA)


def premultiply_rgba(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) RGBA uint8 -> (h, w, 4) BGRA uint8 with colour premultiplied by alpha."""
    return cv2.cvtColor(premultiply(rgba), cv2.COLOR_RGBA2BGRA)


def shrink_to(sprite: np.ndarray, max_width: float, max_height: float) -> np.ndarray:
    """Downscale a sprite to at most (ceil(max_width), ceil(max_height)); never upscale.

    Large reductions go bilinear to twice the target, then through an exact 2x2 area average:
    about the quality of a plain area filter at a small fraction of its cost.
    """
    height, width = sprite.shape[:2]
    target_w = min(width, max(1, math.ceil(max_width)))
    target_h = min(height, max(1, math.ceil(max_height)))
    if (target_w, target_h) == (width, height):
        return sprite
    if width >= 2 * target_w and height >= 2 * target_h:
        double = (2 * target_w, 2 * target_h)
        if double != (width, height):
            sprite = cv2.resize(sprite, double, interpolation=cv2.INTER_LINEAR)
        return cv2.resize(sprite, (target_w, target_h), interpolation=cv2.INTER_AREA)
    return cv2.resize(sprite, (target_w, target_h), interpolation=cv2.INTER_LINEAR)


@dataclass
class Layer:
    """One overlay ready to paste: its sprite shrunk for its trajectory, per-frame placement."""

    sprite: np.ndarray  # (h, w, 4) premultiplied BGRA
    centres: list[tuple[float, float]]
    sizes: list[tuple[float, float]]
    angles: list[float]
    opacities: list[float] | None


Region = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the pixels a paste wrote


def paste(
    frame: np.ndarray, sprite: np.ndarray, centre: tuple[float, float],
    size: tuple[float, float], angle: float, opacity: float = 1.0,
) -> Region | None:
    """Blend `sprite` (premultiplied BGRA) into `frame` (H, W, 3) uint8 in place; returns the
    region written (None when the sprite lies wholly outside the frame).

    The sprite is resized to `size` (w, h), rotated by `angle` degrees counter-clockwise about
    its centre and centred on `centre` (x, y), all in continuous pixel coordinates.
    """
    frame_h, frame_w = frame.shape[:2]
    sprite_h, sprite_w = sprite.shape[:2]
    w, h = size
    cx, cy = centre
    cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    half_w = (abs(w * cos) + abs(h * sin)) / 2
    half_h = (abs(w * sin) + abs(h * cos)) / 2
    x0 = max(0, math.floor(cx - half_w) - _EDGE_MARGIN)
    y0 = max(0, math.floor(cy - half_h) - _EDGE_MARGIN)
    x1 = min(frame_w, math.ceil(cx + half_w) + _EDGE_MARGIN)
    y1 = min(frame_h, math.ceil(cy + half_h) + _EDGE_MARGIN)
    if x1 <= x0 or y1 <= y0:
        return None  # entirely outside the frame
    # Inverse map: region pixel index -> sprite pixel index (pixel centres at +0.5).
    sx, sy = sprite_w / w, sprite_h / h
    dx, dy = x0 + 0.5 - cx, y0 + 0.5 - cy
    inverse = np.array([
        [sx * cos, -sx * sin, sx * (cos * dx - sin * dy) + sprite_w / 2 - 0.5],
        [sy * sin, sy * cos, sy * (sin * dx + cos * dy) + sprite_h / 2 - 0.5],
    ])
    warped = cv2.warpAffine(
        sprite, inverse, (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0),
    )  # (rh, rw, 4)
    blend_region(frame[y0:y1, x0:x1], warped, opacity)
    return x0, y0, x1, y1


def blend_region(region: np.ndarray, warped: np.ndarray, opacity: float = 1.0) -> None:
    """region (h, w, 3) uint8 view <- warped premultiplied BGRA (h, w, 4) over it.

    OpenCV's saturating uint8 arithmetic keeps this to a few passes over the region only, the
    last two writing into buffers that already exist (the frame itself at the end).
    """
    if opacity < 1.0:
        warped = cv2.convertScaleAbs(warped, alpha=opacity)  # scales colour and alpha alike
    colour = cv2.cvtColor(warped, cv2.COLOR_BGRA2BGR)
    keep = cv2.cvtColor(cv2.bitwise_not(cv2.extractChannel(warped, 3)), cv2.COLOR_GRAY2BGR)
    cv2.multiply(region, keep, dst=keep, scale=1.0 / ALPHA_MAX)  # share that stays visible
    cv2.add(keep, colour, dst=region)


def paste_order(trajectories: list[Trajectory]) -> list[int]:
    """Indices of trajectories by decreasing mean_area (mean width x mean height): larger objects
    are pasted first. Equal areas go last index first, as the released reversed ascending sort."""
    areas = [t.mean_area for t in trajectories]
    return sorted(range(len(trajectories)), key=lambda i: (-areas[i], -i))


def make_layers(
    sprites: list[np.ndarray], trajectories: list[Trajectory],
    opacities: list[np.ndarray | None] | None = None,
) -> tuple[list[int], list[Layer]]:
    """The paste order and the layers in that order (opacities: per sprite None or (T,))."""
    order = paste_order(trajectories)
    layers = []
    for index in order:
        trajectory = trajectories[index]
        max_w, max_h = trajectory.sizes.max(axis=0)
        levels = None if opacities is None or opacities[index] is None else opacities[index].tolist()
        layers.append(Layer(shrink_to(sprites[index], max_w, max_h), trajectory.centres.tolist(),
                            trajectory.sizes.tolist(), trajectory.angles.tolist(), levels))
    return order, layers


def paste_layers(frame: np.ndarray, layers: list[Layer], t: int) -> list[Region]:
    """Paste every layer's frame-t placement into frame (H, W, 3) uint8, in layer order;
    returns the regions written."""
    regions = []
    for layer in layers:
        opacity = 1.0 if layer.opacities is None else layer.opacities[t]
        region = paste(frame, layer.sprite, layer.centres[t], layer.sizes[t], layer.angles[t], opacity)
        if region is not None:
            regions.append(region)
    return regions


def composite(
    clip: np.ndarray, sprites: list[np.ndarray], trajectories: list[Trajectory],
    opacities: list[np.ndarray | None] | None = None,
) -> list[int]:
    """Paste every sprite along its trajectory into clip (T, H, W, 3) uint8 in place.

    opacities, per sprite, is None or (T,) values in [0, 1]. Returns the paste order.
    """
    order, layers = make_layers(sprites, trajectories, opacities)
    for t in range(clip.shape[0]):
        paste_layers(clip[t], layers, t)
    return order


class SpriteCache:
    """Least-recently-used sprites by key, bounded in bytes so memory stays flat for any bank."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[object, np.ndarray] = OrderedDict()
        self._bytes = 0

    def get(self, key: object, load: Callable[[], np.ndarray]) -> np.ndarray:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        sprite = load()
        if sprite.nbytes <= self.max_bytes:
            self._items[key] = sprite
            self._bytes += sprite.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
        return sprite

    def __len__(self) -> int:
        return len(self._items)
