"""`smile-train show-batch`: the first clips of an epoch exactly as the trainer gets them.

The stage's dataset is built as `pretrain` builds it, positioned at the first step of the epoch
(the resume path: earlier samples are passed over without decoding), and each loader worker's
stream is run in this process in the order the DataLoader takes batches from the workers (batch
b comes from worker b mod num_workers). So the clips, crops, flips, overlays and masks are the
trainer's own, for any num_workers, and the same (config, epoch) always gives the same files.

Written (atomically) into the output folder:
    <stage>_epoch<E>.png   contact sheet: a legend on top (visible tokens bright, masked tokens
                           dimmed, object boxes), then one row per clip: its label (key, shard,
                           epoch) and one column per frame, each object's box (the one its
                           trajectory mask uses) drawn, masked tokens dimmed (the clip's first mask)
    <stage>_epoch<E>.npz   clips (N, T, S, S, 3) uint8 RGB, masks (N, R, tokens) bool (the loader's:
                           R = 1 when second_mask is "shuffled"), boxes
                           (N, T, K, 4) float32 padded with NaN, keys (N,) str
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from smile_data.config import did_you_mean
from smile_data.io import write_bytes_atomic
from smile_data.shards.layout import SHARD_FIELD
from smile_train.data.loader import PretrainClips, StreamStart, resolve_sources, stage_epoch_clips
from smile_train.data.sources import SourceSampler
from smile_train.loop.train_loop import micro_batch_plan
from smile_train.model.geometry import PATCH, TUBELET
from smile_train.settings.checks import MAX_EPOCHS
from smile_train.settings.pretrain import load_pretrain_stages

BOX_COLOUR = (0, 255, 0)  # RGB
MASK_SHADE = 0.55  # masked tokens keep this share of their brightness
GAP = 2  # pixels between frames and rows of the sheet
LABEL_WIDTH = 160  # pixels left of each row for its key, shard and epoch
LEGEND_HEIGHT = 40  # pixels above the rows: the title and the legend
LEGEND_LINE = 16  # pixels from the title to the legend's swatches
LEGEND_SPACING = 24  # pixels between two legend entries
SWATCH = 12  # side of a legend swatch
SWATCH_GREY = (200, 200, 200)  # a visible token's brightness in the legend
TEXT_MARGIN = 4
TEXT_COLOUR = (0, 0, 0)
MAX_SHOWN_CLIPS = 256  # rows of the sheet, each a loaded clip with its masks


def pick_stage(config: str | None, overrides: dict[str, Any], stage: str | None):
    stages = load_pretrain_stages(config, overrides)
    names = [name for name, _ in stages]
    if stage is None:
        return stages[0]
    if stage not in names:
        raise ValueError(f"--stage {stage}: {config or 'the settings'} have no stage of that name"
                         f"{did_you_mean(stage, names)}; stages: {', '.join(names)}")
    return stages[names.index(stage)]


class ShownClips(PretrainClips):
    """The trainer's clips with what the sheet draws: the boxes of each clip's objects (those
    its trajectory mask uses; (T, K, 4), K differs between clips) and its shard."""

    def _prepare(self, sampler: SourceSampler, raw: dict, rng: np.random.Generator) -> dict[str, Any]:
        clip = sampler(raw, rng)
        return {**self._masked(clip, rng), "boxes": clip.boxes, "shard": raw.get(SHARD_FIELD, "")}


def first_clips(settings: Any, epoch: int, count: int) -> list[dict[str, Any]]:
    """The first `count` clips of `epoch` on rank 0, in the order the trainer receives them."""
    settings = replace(settings, augment_device="loader")  # the same pixels, cropped in the worker
    sources = resolve_sources(settings)
    clips_per_epoch, _ = stage_epoch_clips(settings, sources)
    micro, accumulation = micro_batch_plan(settings.batch_size, settings.micro_batch_size, 1,
                                           settings.mask_repeats)
    steps_per_epoch = max(1, clips_per_epoch // settings.batch_size)
    start_batch = epoch * steps_per_epoch * accumulation
    workers = max(settings.num_workers, 1)
    dataset = ShownClips(sources, settings, 0, StreamStart(start_batch, micro))
    streams = [dataset.stream(worker, workers) for worker in range(workers)]
    clips: list[dict[str, Any]] = []
    batch = start_batch
    while len(clips) < count:
        stream = streams[batch % workers]  # the DataLoader takes batch b from worker b mod W
        clips.extend(next(stream) for _ in range(micro))
        batch += 1
    return clips[:count]


def shade_masked(frames: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Darken the pixels of masked tokens; frames (T, S, S, 3), mask (tokens,) bool."""
    slices, side = frames.shape[0] // TUBELET, frames.shape[1] // PATCH
    cells = mask.reshape(slices, side, side)
    pixels = np.kron(cells, np.ones((PATCH, PATCH), bool))  # (slices, S, S)
    pixels = np.repeat(pixels, TUBELET, axis=0)[..., None]  # (T, S, S, 1)
    return np.where(pixels, (frames * MASK_SHADE).astype(np.uint8), frames)


def clip_strip(clip: dict[str, Any]) -> np.ndarray:
    """One clip's frames side by side with boxes and dimmed masked tokens, RGB uint8."""
    frames, side = clip["video"].shape[0], clip["video"].shape[1]
    strip = np.full((side, frames * (side + GAP) - GAP, 3), 255, np.uint8)
    shaded = shade_masked(clip["video"].numpy(), clip["masks"][0].numpy())
    for t in range(frames):
        frame = np.ascontiguousarray(shaded[t])
        for x0, y0, x1, y1 in clip["boxes"][t]:
            cv2.rectangle(frame, (int(x0), int(y0)), (int(np.ceil(x1)) - 1, int(np.ceil(y1)) - 1),
                          BOX_COLOUR, 1)
        strip[:, t * (side + GAP) : t * (side + GAP) + side] = frame
    return strip


def row_label(clip: dict[str, Any], epoch: int) -> str:
    """Key, shard (its folder and name) and epoch of one clip."""
    shard = "/".join(str(clip.get("shard", "")).replace("\\", "/").split("/")[-2:])
    return f"{clip['key']}\n{shard}\nepoch {epoch}"


LEGEND = ((SWATCH_GREY, "visible token"),
          (tuple(int(v * MASK_SHADE) for v in SWATCH_GREY), "masked token (dimmed)"),
          (None, "object box (its trajectory mask)"))  # swatch (None: a box outline), text


def _legend_width(draw: ImageDraw.ImageDraw, font: Any) -> int:
    return sum(SWATCH + 2 * TEXT_MARGIN + round(draw.textlength(text, font=font)) + LEGEND_SPACING
               for _, text in LEGEND)


def _draw_legend(draw: ImageDraw.ImageDraw, font: Any, title: str) -> None:
    draw.text((TEXT_MARGIN, TEXT_MARGIN), title, fill=TEXT_COLOUR, font=font)
    top, left = TEXT_MARGIN + LEGEND_LINE, TEXT_MARGIN
    for swatch, text in LEGEND:
        box = (left, top, left + SWATCH - 1, top + SWATCH - 1)
        if swatch is None:
            draw.rectangle(box, outline=BOX_COLOUR, width=1)
        else:
            draw.rectangle(box, fill=swatch)
        draw.text((left + SWATCH + TEXT_MARGIN, top), text, fill=TEXT_COLOUR, font=font)
        left += SWATCH + 2 * TEXT_MARGIN + round(draw.textlength(text, font=font)) + LEGEND_SPACING


def contact_sheet(clips: list[dict[str, Any]], epoch: int, title: str) -> np.ndarray:
    """The title and legend, then per clip a row: its label (key, shard, epoch) and its frames
    (clip_strip), RGB uint8."""
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    labels = [row_label(clip, epoch) for clip in clips]
    label_height = max(measure.multiline_textbbox((0, 0), text, font=font)[3] for text in labels)
    strips = [clip_strip(clip) for clip in clips]
    pitch = max(strips[0].shape[0], label_height + 2 * TEXT_MARGIN) + GAP
    width = max(LABEL_WIDTH + strips[0].shape[1], _legend_width(measure, font),
                round(measure.textlength(title, font=font)) + 2 * TEXT_MARGIN)
    sheet = Image.new("RGB", (width, LEGEND_HEIGHT + len(clips) * pitch), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    _draw_legend(draw, font, title)
    for row, (label, strip) in enumerate(zip(labels, strips)):
        top = LEGEND_HEIGHT + row * pitch
        draw.multiline_text((TEXT_MARGIN, top + TEXT_MARGIN), label, fill=TEXT_COLOUR, font=font)
        sheet.paste(Image.fromarray(strip), (LABEL_WIDTH, top))
    return np.asarray(sheet)


def padded_boxes(clips: list[dict[str, Any]]) -> np.ndarray:
    most = max(clip["boxes"].shape[1] for clip in clips)
    frames = clips[0]["boxes"].shape[0]
    out = np.full((len(clips), frames, most, 4), np.nan, np.float32)
    for index, clip in enumerate(clips):
        out[index, :, : clip["boxes"].shape[1]] = clip["boxes"]
    return out


def show_batch(config: str | None, overrides: dict[str, Any], stage: str | None, epoch: int,
               out: str | Path, count: int) -> dict[str, str]:
    """Write the contact sheet and the arrays of the first `count` clips of `epoch`."""
    if not 0 <= epoch <= MAX_EPOCHS or not 1 <= count <= MAX_SHOWN_CLIPS:
        raise ValueError(f"--epoch must be in 0..{MAX_EPOCHS} and --clips in 1..{MAX_SHOWN_CLIPS} "
                         f"(got {epoch}, {count})")
    name, settings = pick_stage(config, overrides, stage)
    clips = first_clips(settings, epoch, count)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"{name}_epoch{epoch}"
    title = (f"{name}, epoch {epoch}: the first {len(clips)} clips as the trainer gets them "
             f"(mask {settings.mask}, ratio {settings.mask_ratio})")
    ok, png = cv2.imencode(".png", cv2.cvtColor(contact_sheet(clips, epoch, title), cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("could not encode the contact sheet")
    write_bytes_atomic(stem.with_suffix(".png"), png.tobytes())
    arrays = io.BytesIO()
    np.savez_compressed(arrays, clips=np.stack([c["video"].numpy() for c in clips]),
                        masks=np.stack([c["masks"].numpy() for c in clips]), boxes=padded_boxes(clips),
                        keys=np.array([c["key"] for c in clips]))
    write_bytes_atomic(stem.with_suffix(".npz"), arrays.getvalue())
    return {"sheet": str(stem.with_suffix(".png")), "arrays": str(stem.with_suffix(".npz"))}
