"""Per-candidate filters, the per-class CLIP floor and cap, seeds, CLIP scoring."""

from __future__ import annotations

import numpy as np
import pytest

from smile_data.objects import filters
from smile_data.objects.clip_score import ClipModelScorer, white_composite
from smile_data.objects.generate import candidate_seed
from smile_data.objects.settings import BuildSettings, SegmentationSettings

SETTINGS = SegmentationSettings(min_side_px=10)


@pytest.mark.parametrize("area, width, height, reason", [
    (0.0, 0, 0, filters.NO_FOREGROUND),
    (0.04, 50, 50, filters.AREA_TOO_SMALL),
    (0.96, 50, 50, filters.AREA_TOO_LARGE),
    (0.5, 9, 50, filters.SIDE_TOO_SMALL),
    (0.05, 10, 10, None),
    (0.95, 60, 40, None),
])
def test_candidate_filters(area, width, height, reason):
    assert filters.candidate_reason(area, width, height, SETTINGS) == reason


def rows(scores, reasons=None):
    reasons = reasons or [None] * len(scores)
    return [{"candidate": i, "clip_score": s, "reason": r} for i, (s, r) in enumerate(zip(scores, reasons))]


def test_clip_floor_is_capped_at_21_and_follows_the_best_score():
    assert filters.clip_floor([30.0, 25.0], SETTINGS) == 21.0
    assert filters.clip_floor([18.0, 15.0], SETTINGS) == 17.0
    assert filters.clip_floor([], SETTINGS) is None


def test_decide_class_applies_floor_then_keeps_the_best_numbered_in_candidate_order():
    scores = [22.0, 15.0, 30.0, 25.0, 26.0, 40.0]
    reasons = [None, None, None, None, None, filters.AREA_TOO_LARGE]
    decided = filters.decide_class(list(reversed(rows(scores, reasons))), SETTINGS, cap=2)
    assert [d["candidate"] for d in decided] == list(range(6))
    # The rejected candidate 5 (score 40) does not set the floor: best passing is 30 -> floor 21.
    assert [d["reason"] for d in decided] == [filters.OVER_CAP, filters.CLIP_BELOW_FLOOR, None,
                                              filters.OVER_CAP, None, filters.AREA_TOO_LARGE]
    assert [d["index"] for d in decided] == [None, None, 0, None, 1, None]


def test_decide_class_without_clip_keeps_the_first_ones():
    decided = filters.decide_class(rows([None] * 4, [filters.AREA_TOO_SMALL, None, None, None]),
                                   SETTINGS, cap=2)
    assert [d["accepted"] for d in decided] == [False, True, True, False]
    assert [d["index"] for d in decided] == [None, 0, 1, None]
    assert decided[3]["reason"] == filters.OVER_CAP


def test_candidate_seed_is_a_pure_function_of_base_class_and_index():
    seeds = {candidate_seed(0, c, i) for c in range(1, 30) for i in range(100)}
    assert len(seeds) == 29 * 100
    assert candidate_seed(0, 5, 7) == candidate_seed(0, 5, 7) != candidate_seed(1, 5, 7)
    assert all(0 <= s < 2**63 for s in seeds)


def test_settings_defaults_follow_the_spec():
    settings = BuildSettings()
    assert settings.prompt_template == "a photo of a single {name}"
    assert (settings.candidates_per_class, settings.accepted_per_class) == (100, 60)
    assert (settings.steps, settings.guidance, settings.resolution) == (50, 7.5, 512)
    assert (settings.min_area_fraction, settings.max_area_fraction) == (0.05, 0.95)
    assert (settings.clip_floor_cap, settings.clip_floor_margin) == (21.0, 1.0)


def clip_score_by_hand(folder, rgba: np.ndarray, text: str) -> float:
    """100 x cosine of CLIP's projected image and text embeddings, the image composited over
    white with PIL (not the project's code)."""
    import torch
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model, processor = CLIPModel.from_pretrained(str(folder)).eval(), CLIPProcessor.from_pretrained(str(folder))
    white = Image.new("RGBA", (rgba.shape[1], rgba.shape[0]), (255, 255, 255, 255))
    image = Image.alpha_composite(white, Image.fromarray(rgba, "RGBA")).convert("RGB")
    with torch.no_grad():
        pixels = processor(images=[image], return_tensors="pt")["pixel_values"]
        image_embedding = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        tokens = processor(text=[text], return_tensors="pt", padding=True)
        text_embedding = model.text_projection(model.text_model(**tokens).pooler_output)
    cosine = torch.nn.functional.cosine_similarity(image_embedding, text_embedding)
    return 100.0 * float(cosine[0])


def test_white_composite_and_clip_scores(tiny_clip):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[2:6, 2:6, 3] = 255
    white = white_composite(rgba)
    assert (white[0, 0] == 255).all() and tuple(white[3, 3]) == (200, 0, 0)
    scorer = ClipModelScorer(str(tiny_clip))
    scores = scorer.score([rgba, rgba[:, ::-1].copy()], "a photo of cat")
    assert scores == pytest.approx([clip_score_by_hand(tiny_clip, c, "a photo of cat")
                                    for c in (rgba, rgba[:, ::-1].copy())], abs=1e-3)
    assert scorer.score([rgba], "a photo of cat")[0] == pytest.approx(scores[0], abs=1e-4)
    assert scorer.score([rgba], "a photo of dog")[0] != pytest.approx(scores[0], abs=1e-4)
