"""Bank objects for overlays: drawn from a generator, decoded once per process, shrunk to the
largest box a trajectory can reach. `smile-data render` and the trainer's on-the-fly overlays
both draw their objects here.
"""

from __future__ import annotations

import numpy as np

from smile_data.objects.bank import BankObject, ObjectBank
from smile_data.render.clip import largest_box_side
from smile_data.render.overlay import SpriteCache, premultiply, shrink_to
from smile_data.render.settings import RenderSettings

BYTES_PER_MB = 1 << 20
CHANNEL_ORDERS = ("bgr", "rgb")  # the renderer composites BGR frames, the trainer RGB ones


class ObjectPicker:
    """pick(rng, skipped) -> (entry, premultiplied sprite in the frames' channel order + alpha)."""

    def __init__(self, bank: ObjectBank, s: RenderSettings, channel_order: str = "bgr"):
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel order {channel_order!r} must be one of {CHANNEL_ORDERS}")
        self.bank, self.settings, self.rgb = bank, s, channel_order == "rgb"
        self.side = largest_box_side(s)
        self.sprites = SpriteCache(s.sprite_cache_mb * BYTES_PER_MB)  # this process's decodes

    def _sprite(self, index: int) -> np.ndarray:
        """Premultiplied, in the frames' channel order, shrunk to the largest box side."""
        return shrink_to(premultiply(self.bank.load_rgba(index, bgra=not self.rgb)), self.side, self.side)

    def pick(self, rng: np.random.Generator, skipped: list[dict[str, str]]) -> tuple[BankObject, np.ndarray]:
        """A bank object and its sprite; an undecodable object is reported in `skipped` and redrawn."""
        s = self.settings
        for _ in range(1 + s.source_retries):
            index = self.bank.sample(rng, balanced=s.balanced_classes)
            try:
                return self.bank.entry(index), self.sprites.get(index, lambda: self._sprite(index))
            except ValueError as error:
                skipped.append({"source": self.bank.entry(index).path, "reason": str(error)})
        raise ValueError(f"{s.bank}: {1 + s.source_retries} objects in a row could not be decoded; "
                         "check the bank")
