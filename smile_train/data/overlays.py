"""Overlays drawn in the loader, as the authors' loader does: after the crop, at the input size.

The renderer's own code draws them (smile_data.render: `draw_overlays` for the trajectories,
objects or patches, `composite` for the pasting, `ObjectPicker` for bank objects), with a
`RenderSettings` built from the defaults, the source's `overlay_settings` (any render setting),
then the clip geometry of the trainer (`size` = input size, `frames` = T). So an overlay drawn
here and one in a rendered shard follow one definition; only the background differs (the
trainer's frames are RGB, so bank sprites are kept in RGB order).

The boxes the trajectory masks are built from come from the same object metadata a rendered
shard stores (per object: per-frame unrotated boxes and angles in clip pixels).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from smile_data.config import SettingsError, apply_overrides
from smile_data.objects.bank import ObjectBank
from smile_data.render.clip import draw_overlays
from smile_data.render.overlay import composite
from smile_data.render.picker import ObjectPicker
from smile_data.render.settings import OVERLAY_MODES, RenderSettings, check_render_settings

GEOMETRY_KEYS = ("size", "frames", "overlay", "bank")  # set by the trainer, not by overlay_settings


def loader_render_settings(mode: str, bank: str, overrides: dict[str, Any], input_size: int,
                           frames: int, where: str) -> RenderSettings:
    """RenderSettings for on-the-fly overlays; unknown or conflicting keys name `where`."""
    if mode not in OVERLAY_MODES:
        raise SettingsError(f"{where}: overlay {mode!r} must be one of {', '.join(OVERLAY_MODES)}")
    fixed = sorted(set(overrides) & set(GEOMETRY_KEYS))
    if fixed:
        raise SettingsError(f"{where}: overlay_settings may not set {', '.join(fixed)} (the trainer's "
                            "input_size, frames, overlay and bank decide them)")
    s = apply_overrides(RenderSettings(), dict(overrides), source=f"{where} overlay_settings")
    s = apply_overrides(s, {"size": input_size, "frames": frames, "overlay": mode, "bank": bank},
                        source=where)
    try:
        check_render_settings(s, "overlay_settings")
    except ValueError as error:
        raise SettingsError(f"{where}: {error}") from None
    if mode == "objects" and not bank:
        raise SettingsError(f"{where}: overlay objects needs a bank (bank: PATH)")
    return s


class LoaderOverlays:
    """Paste fresh overlays into clips; one instance per loader worker (its sprite cache)."""

    def __init__(self, settings: RenderSettings):
        self.settings = settings
        self.picker = None
        if settings.overlay == "objects":
            self.picker = ObjectPicker(ObjectBank(settings.bank), settings, channel_order="rgb")

    @property
    def active(self) -> bool:
        return self.settings.overlay != "none" and self.settings.objects > 0

    def __call__(self, rng: np.random.Generator, frames: np.ndarray) -> list[dict[str, Any]]:
        """Composite overlays into `frames` (T, S, S, 3) uint8 RGB in place; return their
        metadata in paste order: kind, name, per-frame "boxes" (T, 4) and "angles" (T,)."""
        skipped: list[dict[str, str]] = []
        pick = (lambda r: self.picker.pick(r, skipped)) if self.picker else None
        overlays = draw_overlays(rng, self.settings, frames, pick)
        order = composite(frames, overlays.sprites, overlays.trajectories, overlays.opacities)
        objects = []
        for index in order:
            trajectory = overlays.trajectories[index]
            objects.append({**overlays.descriptions[index], "boxes": trajectory.boxes,
                            "angles": trajectory.angles})
        return objects
