"""Loading a transformers model with its processor (CLIP for scores, CLIPSeg for masks)."""

from __future__ import annotations

from typing import Any


def load_model_and_processor(model_class: Any, processor_class: Any, name: str, device: str,
                             kind: str) -> tuple[Any, Any]:
    """`model_class` in eval mode on `device` and `processor_class`, both from `name` (a local
    folder or a hub id); a name that does not load is a ValueError naming it and the `kind`."""
    try:
        processor = processor_class.from_pretrained(name)
        model = model_class.from_pretrained(name).to(device).eval()
    except OSError as error:
        raise ValueError(f"{name}: cannot load a {kind} model and processor: {error}") from None
    return model, processor
