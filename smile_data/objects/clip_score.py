"""CLIP score of a cut-out against a text: 100 x cosine of the image and text embeddings.

The cut-out is composited on white first (as X-Paste scores its masks), so what CLIP sees is
the object alone. The model is a transformers `CLIPModel` with its processor, loaded from a
local folder or a hub id.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from smile_data.objects.pretrained import load_model_and_processor

SCORE_SCALE = 100.0
WHITE = 255.0


def white_composite(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 4) uint8 -> (h, w, 3) uint8 composited over white."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + WHITE * (1.0 - alpha)
    return np.round(rgb).astype(np.uint8)


class ClipModelScorer:
    """Scores RGBA cut-outs against texts with one CLIP model."""

    def __init__(self, model: str, device: str = "cpu"):
        from transformers import CLIPModel, CLIPProcessor

        self.model, self.processor = load_model_and_processor(
            CLIPModel, CLIPProcessor, model, device, "CLIP")
        self.device = device
        self._text_embedding = functools.lru_cache(maxsize=64)(self._embed_text)

    @torch.inference_mode()
    def _embed_text(self, text: str) -> torch.Tensor:
        tokens = self.processor(text=[text], return_tensors="pt", padding=True).to(self.device)
        features = self.model.get_text_features(**tokens)
        features = getattr(features, "pooler_output", features)  # (1, D)
        return torch.nn.functional.normalize(features.float(), dim=-1)

    @torch.inference_mode()
    def score(self, cutouts: list[np.ndarray], text: str) -> list[float]:
        """CLIP scores of (h, w, 4) uint8 cut-outs against `text`."""
        if not cutouts:
            return []
        images = [white_composite(c) for c in cutouts]
        pixels = self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)
        features = self.model.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)  # (N, D)
        image_embeddings = torch.nn.functional.normalize(features.float(), dim=-1)
        cosine = image_embeddings @ self._text_embedding(text).T  # (N, 1)
        return [float(SCORE_SCALE * c) for c in cosine[:, 0].cpu()]
