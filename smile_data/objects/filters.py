"""Quality filters of docs/method.md §2 and the per-class acceptance decision.

Per candidate (as soon as it is segmented): a foreground exists, its area is between
`min_area_fraction` and `max_area_fraction` of the image, and the tight crop is at least
`min_side_px` on each side. Per class (once all its candidates are scored): CLIP score at least
`min(clip_floor_cap, best score of the class - clip_floor_margin)`, the best being taken over
the candidates that passed the per-candidate filters; then at most `accepted_per_class` are
kept — the best-scoring ones when CLIP scores exist, else the first ones — numbered 0, 1, 2, ...
in candidate order.
"""

from __future__ import annotations

from typing import Any

from smile_data.objects.settings import SegmentationSettings

NO_FOREGROUND = "no_foreground"
AREA_TOO_SMALL = "area_too_small"
AREA_TOO_LARGE = "area_too_large"
SIDE_TOO_SMALL = "side_too_small"
CLIP_BELOW_FLOOR = "clip_below_floor"
OVER_CAP = "over_cap"


def candidate_reason(
    area_fraction: float, width: int, height: int, settings: SegmentationSettings
) -> str | None:
    """Why a segmented candidate fails the per-candidate filters, or None when it passes."""
    if area_fraction <= 0 or width == 0 or height == 0:
        return NO_FOREGROUND
    if area_fraction < settings.min_area_fraction:
        return AREA_TOO_SMALL
    if area_fraction > settings.max_area_fraction:
        return AREA_TOO_LARGE
    if min(width, height) < settings.min_side_px:
        return SIDE_TOO_SMALL
    return None


def clip_floor(scores: list[float], settings: SegmentationSettings) -> float | None:
    """The class's CLIP floor, or None when no candidate has a score."""
    if not scores:
        return None
    return min(settings.clip_floor_cap, max(scores) - settings.clip_floor_margin)


def decide_class(rows: list[dict[str, Any]], settings: SegmentationSettings, cap: int) -> list[dict]:
    """Final `accepted` / `reason` / `index` for the candidate rows of one class.

    rows: dicts with `candidate`, `reason` (None when the per-candidate filters passed) and
    `clip_score` (None without CLIP). Returns new dicts, in candidate order, with `index` set
    for accepted rows (None otherwise).
    """
    ordered = sorted(rows, key=lambda r: r["candidate"])
    passing = [r for r in ordered if r["reason"] is None]
    scores = [r["clip_score"] for r in passing if r["clip_score"] is not None]
    floor = clip_floor(scores, settings)
    reasons = {}
    for row in passing:
        if floor is not None and row["clip_score"] is not None and row["clip_score"] < floor:
            reasons[row["candidate"]] = CLIP_BELOW_FLOOR
    survivors = [r for r in passing if r["candidate"] not in reasons]
    if scores:
        survivors.sort(key=lambda r: (-(r["clip_score"] or 0.0), r["candidate"]))
    kept = {r["candidate"] for r in survivors[:cap]}
    reasons.update({r["candidate"]: OVER_CAP for r in survivors[cap:]})
    decided, index = [], 0
    for row in ordered:
        accepted = row["candidate"] in kept
        reason = row["reason"] if row["reason"] is not None else reasons.get(row["candidate"])
        decided.append({**row, "accepted": accepted, "reason": None if accepted else reason,
                        "index": index if accepted else None})
        index += accepted
    return decided
