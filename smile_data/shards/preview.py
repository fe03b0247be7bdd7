"""Contact sheets and GIFs of the first clips of a dataset, with every object's box drawn.
A video sample (pack --store video) shows frames evenly spaced over the whole video. A rendered
dataset of several background kinds shows the first clips of each kind in turn (its manifest
says which clip has which): the first clips alone would all come from one source when each
source gives `--variants` clips.

Sheet layout: one row per clip, the key (and background kind) in a column at the row start,
then `frames` evenly spaced frames, each scaled to fit a `cell_size` square; each object's box
is drawn in its own colour with its class name. The output depends only on the shards and the
settings.
"""

from __future__ import annotations

import colorsys
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFont

from smile_data.config import SettingsError, check_bounds
from smile_data.io import write_bytes_atomic
from smile_data.shards import layout, remote
from smile_data.shards.dataset import CARD_FILE, MANIFEST_FILE, load_card
from smile_data.shards.manifest import checked_manifest, read_manifest_table
from smile_data.shards.integrity import IntegritySettings
from smile_data.shards.reader import ClipSample, decode_sample, read_shard_files
from smile_data.shards.video_sample import is_video_sample, video_preview_clip

KEY_COLUMN_WIDTH = 96     # px at the row start for the sample key
SHEET_BACKGROUND = (32, 32, 32)
KEY_TEXT_COLOUR = (235, 235, 235)
BOX_LINE_WIDTH = 2        # px
TEXT_MARGIN = 3           # px between a box corner (or cell corner) and its text
GOLDEN_RATIO_CONJUGATE = 0.618033988749895  # hue step: neighbouring objects get distant hues
BOX_SATURATION, BOX_VALUE = 0.85, 1.0
KEY_COLUMN, BACKGROUND_COLUMN = "key", "background"  # manifest columns (render writes both)


PREVIEW_BOUNDS = {
    "clips": (1, 1000),  # rows of the sheet, each a decoded clip held until the sheet is drawn
    "frames": (1, layout.MAX_FRAMES),
    "cell_size": (1, 1024),
    "gif_frame_ms": (1, 60_000),
}
MAX_SHEET_PIXELS = 100_000_000  # a 10,000 x 10,000 contact sheet


@dataclass
class PreviewSettings:
    clips: int = 8            # rows of the contact sheet
    frames: int = 8           # evenly spaced frames per row
    cell_size: int = 128      # px; each frame is scaled to fit a square of this side
    gif: bool = False         # also write one animated GIF per clip
    gif_frame_ms: int = 125   # display time of one GIF frame


def object_colour(index: int) -> tuple[int, int, int]:
    """A distinct, bright colour for the `index`-th object of a clip."""
    hue = (index * GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, BOX_SATURATION, BOX_VALUE)
    return round(red * 255), round(green * 255), round(blue * 255)


def frame_indices(frame_count: int, wanted: int) -> list[int]:
    """`wanted` evenly spaced frame indices (fewer if the clip is shorter), first and last kept."""
    count = min(wanted, frame_count)
    return [int(i) for i in np.linspace(0, frame_count - 1, count).round()]


def shard_paths(source: str | Path, card_sha256: str | None = None) -> list[str | Path]:
    """The shards of a dataset folder or dataset URL in card order (a local folder without a
    card: sorted), or one tar (path or URL). Card names are checked plain file names
    (load_card), joined under the folder or URL only."""
    if remote.is_url(source):
        remote.check_url(str(source))
        if layout.SHARD_NAME_PATTERN.fullmatch(str(source).rsplit("/", 1)[-1]):
            return [str(source)]
        return [remote.join(source, s["name"]) for s in load_card(source, card_sha256)["shards"]]
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such dataset folder or shard")
    if (source / CARD_FILE).is_file():
        return [source / shard["name"] for shard in load_card(source, card_sha256)["shards"]]
    found = sorted(p for p in source.iterdir() if layout.SHARD_NAME_PATTERN.fullmatch(p.name))
    if not found:
        raise FileNotFoundError(f"{source}: holds no shards")
    return found


def _dataset_folder(source: str | Path) -> str | Path | None:
    """The dataset folder or URL `source` names, None for one shard or a folder without a card."""
    if remote.is_url(source):
        return None if layout.SHARD_NAME_PATTERN.fullmatch(str(source).rsplit("/", 1)[-1]) else source
    return source if (Path(source) / CARD_FILE).is_file() else None


def first_of_each_kind(kinds: list[str], count: int) -> list[int]:
    """Row numbers of the first rows of each kind taken in turn (each kind's first, then each
    kind's second, ...), `count` in all, in row order."""
    rows_by_kind: dict[str, list[int]] = {}
    for number, kind in enumerate(kinds):
        if len(rows_by_kind.setdefault(kind, [])) < count:
            rows_by_kind[kind].append(number)
    rounds = zip(*(rows + [None] * (count - len(rows)) for rows in rows_by_kind.values()))
    chosen = [number for turn in rounds for number in turn if number is not None]
    return sorted(chosen[:count])


def keys_of_each_background(source: str | Path, count: int, card_sha256: str | None) -> list[str] | None:
    """Keys of the first clips of each background kind of a dataset whose manifest records
    several kinds (first_of_each_kind), None otherwise (the first clips are shown)."""
    folder = _dataset_folder(source)
    if folder is None:
        return None
    card = load_card(folder, card_sha256)
    with checked_manifest(folder, card) as handle:
        if BACKGROUND_COLUMN not in pq.ParquetFile(handle).schema_arrow.names:
            return None
        handle.seek(0)
        table = read_manifest_table(handle, card, remote.join(folder, MANIFEST_FILE),
                                    columns=[KEY_COLUMN, BACKGROUND_COLUMN])
    kinds = [str(kind) for kind in table.column(BACKGROUND_COLUMN).to_pylist()]
    if len(set(kinds)) < 2:
        return None
    keys = table.column(KEY_COLUMN).to_pylist()
    return [keys[number] for number in first_of_each_kind(kinds, count)]


def draw_frame(sample: ClipSample, t: int, scale: float) -> Image.Image:
    """Frame `t` scaled by `scale`, with each object's box and class name drawn on it."""
    frame = Image.fromarray(sample.frames[t])
    if scale != 1.0:
        size = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
        frame = frame.resize(size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(frame)
    font = ImageFont.load_default()
    boxes = layout.boxes_array(sample.metadata) * scale  # (T, N, 4)
    for i, obj in enumerate(sample.metadata.get("objects", [])):
        colour = object_colour(i)
        x0, y0, x1, y1 = (float(v) for v in boxes[t, i])
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=BOX_LINE_WIDTH)
        draw.text((x0 + TEXT_MARGIN, y0 + TEXT_MARGIN), str(obj.get("name") or obj["kind"]),
                  fill=colour, font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return frame


def background_kind(sample: ClipSample) -> str:
    background = sample.metadata.get("background")
    return str(background.get("kind") or "") if isinstance(background, dict) else ""


def contact_sheet(samples: list[ClipSample], settings: PreviewSettings) -> Image.Image:
    cell = settings.cell_size
    sheet = Image.new("RGB", (KEY_COLUMN_WIDTH + settings.frames * cell,
                              max(1, len(samples)) * cell), SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row, sample in enumerate(samples):
        top = row * cell
        label = "\n".join(filter(None, (sample.key, background_kind(sample))))
        draw.multiline_text((TEXT_MARGIN, top + TEXT_MARGIN), label, fill=KEY_TEXT_COLOUR, font=font)
        count, height, width = sample.frames.shape[:3]
        scale = cell / max(height, width)
        for column, t in enumerate(frame_indices(count, settings.frames)):
            image = draw_frame(sample, t, scale)
            left = KEY_COLUMN_WIDTH + column * cell + (cell - image.width) // 2
            sheet.paste(image, (left, top + (cell - image.height) // 2))
    return sheet


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def clip_gif(sample: ClipSample, frame_ms: int) -> bytes:
    frames = [draw_frame(sample, t, 1.0) for t in range(sample.frames.shape[0])]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:],
                   duration=frame_ms, loop=0)
    return buffer.getvalue()


def check_preview_settings(settings: PreviewSettings) -> None:
    """Each count within PREVIEW_BOUNDS and the sheet within MAX_SHEET_PIXELS (SettingsError)."""
    check_bounds(settings, PREVIEW_BOUNDS, "preview settings")
    cell = settings.cell_size
    pixels = settings.clips * cell * (KEY_COLUMN_WIDTH + settings.frames * cell)
    if pixels > MAX_SHEET_PIXELS:
        raise SettingsError(f"preview settings: clips {settings.clips} x frames {settings.frames} "
                            f"of {cell} px make a sheet of {pixels} pixels, more than "
                            f"{MAX_SHEET_PIXELS}")


def preview_samples(source: str | Path, settings: PreviewSettings,
                    card_sha256: str | None = None) -> list[ClipSample]:
    """The clips to show: the first of each background kind (keys_of_each_background), or the
    first `settings.clips`; each checked against the card beside its shard first."""
    integrity = IntegritySettings(card_sha256=card_sha256 or "")

    def decode(raw: dict) -> ClipSample:  # a video sample shows `frames` frames of the video
        return video_preview_clip(raw, settings.frames) if is_video_sample(raw) else decode_sample(raw)

    wanted = keys_of_each_background(source, settings.clips, card_sha256)
    keep = None if wanted is None else set(wanted).__contains__
    samples: list[ClipSample] = []
    for sample in read_shard_files(shard_paths(source, card_sha256), integrity, decode, keep):
        samples.append(sample)
        if len(samples) == settings.clips or (wanted is not None and len(samples) == len(wanted)):
            break
    return samples if wanted is None else sorted(samples, key=lambda s: wanted.index(s.key))


def make_preview(source: str | Path, out: str | Path,
                 settings: PreviewSettings = PreviewSettings(),
                 card_sha256: str | None = None) -> list[Path]:
    """Write the contact sheet `out` (PNG) and, with settings.gif, `<out stem>-<key>.gif`
    next to it for every clip; return the written paths. `source` is a dataset folder or URL
    or one shard; samples are checked against the card beside their shard (if any) first."""
    check_preview_settings(settings)
    out = Path(out)
    samples = preview_samples(source, settings, card_sha256)
    if not samples:
        raise ValueError(f"{source}: the shards hold no samples")
    write_bytes_atomic(out, _png_bytes(contact_sheet(samples, settings)))
    written = [out]
    if settings.gif:
        for sample in samples:
            path = out.with_name(f"{out.stem}-{sample.key}.gif")
            write_bytes_atomic(path, clip_gif(sample, settings.gif_frame_ms))
            written.append(path)
    return written
