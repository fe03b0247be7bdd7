"""A learned, text-prompted segmenter: CLIPSeg through transformers.

Loaded from a local folder or a hub id (`clipseg_model`); the object name is the prompt. Its
low-resolution probability map is scaled to the image, thresholded, and goes through the same
clean-up and feathering as the classical segmenter's mask.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from smile_data.objects.pretrained import load_model_and_processor
from smile_data.objects.segment import finish_alpha
from smile_data.objects.settings import SegmentationSettings


class ClipSegSegmenter:
    """Segmenter protocol over a transformers CLIPSeg model and processor."""

    name = "clipseg"

    def __init__(self, settings: SegmentationSettings, device: str = "cpu"):
        from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

        self.model, self.processor = load_model_and_processor(
            CLIPSegForImageSegmentation, CLIPSegProcessor, settings.clipseg_model, device, "CLIPSeg")
        self.settings = settings
        self.device = device

    @torch.inference_mode()
    def probability(self, rgb: np.ndarray, prompt: str) -> np.ndarray:
        """(H, W) float32 foreground probability of `prompt` in the (H, W, 3) uint8 image."""
        inputs = self.processor(text=[prompt or "object"], images=[rgb], return_tensors="pt",
                                padding=True).to(self.device)
        logits = self.model(**inputs).logits
        low = torch.sigmoid(logits.float()).reshape(logits.shape[-2:]).cpu().numpy()
        return cv2.resize(low, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)

    def segment(self, rgb: np.ndarray, prompt: str = "", hint: np.ndarray | None = None) -> np.ndarray:
        """alpha (H, W) float32; with a (H, W) bool `hint`, nothing outside it."""
        mask = self.probability(rgb, prompt) >= self.settings.clipseg_threshold
        return finish_alpha(mask, self.settings.feather_px, hint)
