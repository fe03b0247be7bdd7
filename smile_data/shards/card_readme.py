"""`README.md` beside `dataset.json`: the dataset card people read (Hugging Face card style).

YAML front matter (license, task categories, size category, tags), then prose: what the
dataset is, the exact command, settings and versions that made it, the object bank's hash and
where its objects came from with their licences, counts and skipped sources, a preview image,
and how to load it. Everything comes from the card (and the bank's own card, when the bank is
still where the render read it); it holds no timestamps, so the same dataset and versions give
the same bytes. The writer writes it after the card (`write_readme`), and so does `merge-shards`.
"""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path
from typing import Any

import yaml

from smile_data import installed_version
from smile_data.io import write_bytes_atomic
from smile_data.shards.preview import PreviewSettings, make_preview

README_FILE = "README.md"
PREVIEW_FILE = "preview.png"
README_PREVIEW_CLIPS, README_PREVIEW_FRAMES = 4, 8  # the README's contact sheet
PACKAGE = "smile"
VERSIONED_PACKAGES = ("smile", "torch", "numpy", "opencv-python-headless", "pillow", "pyarrow")
MAX_SKIPPED_LISTED = 20   # longer lists are summarised
SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                   (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
                   (100_000_000, "10M<n<100M"))
log = logging.getLogger(__name__)
# Licences of object sources this project builds (the bank card's `source`).
SD_V1_LICENCE = "CreativeML OpenRAIL-M"
PHOTOS_LICENCE = ("scikit-image sample photographs: the package is BSD-3-Clause; each "
                  "photograph's own terms (public domain or CC0 for most) are stated in the "
                  "docstring of its loader in `skimage.data`")


def size_category(samples: int) -> str:
    for bound, name in SIZE_CATEGORIES:
        if samples < bound:
            return name
    return "n>100M"


def _plain(text: Any) -> str:
    """Untrusted text (file names, declared licences) as one line without markdown code marks."""
    return " ".join(str(text).replace("`", "'").split())[:300]


def read_bank_card(card: dict[str, Any]) -> dict[str, Any] | None:
    """The bank's own card, if the bank is where the render read it and still the same bank."""
    bank = (card.get("inputs") or {}).get("object_bank")
    if not isinstance(bank, dict) or not bank.get("path"):
        return None
    from smile_data.objects.bank import read_card_bytes  # OpenCV and PIL: only when needed

    try:
        bank_card = json.loads(read_card_bytes(str(bank["path"])).decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # UnsafeFile and UnicodeDecodeError included
        return None
    return bank_card if isinstance(bank_card, dict) else None


def object_source_licence(bank_card: dict[str, Any]) -> tuple[str, str]:
    """(where the bank's objects came from, under which licence) from its card."""
    source = bank_card.get("source")
    declared = bank_card.get("license")
    if source == "stable-diffusion":
        model = _plain(bank_card.get("model", "an unrecorded model"))
        licence = (SD_V1_LICENCE if "stable-diffusion-v1" in model
                   else f"the licence on the model card of {model}")
        return f"Stable Diffusion outputs ({model})", _plain(declared) if declared else licence
    if source == "photos":
        version = _plain(bank_card.get("photos_version", "unknown"))
        return f"photographs packaged with scikit-image {version}", PHOTOS_LICENCE
    if source == "import":
        origin = _plain(bank_card.get("imported_from", "an unrecorded folder"))
        licence = _plain(declared) if declared else "not declared at import time"
        return f"imported from {origin}", licence
    return f"source {_plain(source)}", _plain(declared) if declared else "not recorded"


def _front_matter(card: dict[str, Any]) -> str:
    tags = ["video", "self-supervised-learning", "smile", "webdataset"]
    if card.get("command") == "render":
        tags.append("synthetic")
    meta = {"license": "other", "license_name": "mixed, see Object sources and licences",
            "task_categories": ["video-classification"], "tags": tags,
            "size_categories": [size_category(card.get("counts", {}).get("samples", 0))],
            "pretty_name": f"smile {card.get('command', 'dataset')} clips"}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _summary(card: dict[str, Any]) -> str:
    settings, counts = card.get("settings") or {}, card.get("counts", {})
    geometry = (f"{settings.get('frames', '?')} frames of {settings.get('size', '?')} px"
                if "frames" in settings else "")
    if card.get("command") == "render":
        what = (f"Clips with overlaid object motion for SMILE pretraining (backgrounds: "
                f"{', '.join(card.get('inputs', {}).get('backgrounds', {}) or ['?'])}; overlay: "
                f"{settings.get('overlay', '?')}).")
    elif card.get("command") == "pack":
        what = "Natural clips cut from a list of videos, for finetuning or stage-2 pretraining."
    else:
        what = f"Clips written by `smile-data {_plain(card.get('command', '?'))}`."
    return (f"{what} {counts.get('samples', 0)} clips in {counts.get('shards', 0)} webdataset "
            f"shards{'; ' + geometry if geometry else ''}. Format: `smile-clip-shards`, "
            f"dataset schema {card.get('schema_version')} (see the project's docs/FORMAT.md).")


def _provenance(card: dict[str, Any]) -> list[str]:
    settings = card.get("settings") or {}
    lines = ["## How it was made", "",
             f"Command (with the resolved settings below saved as `settings.yaml`):", "",
             "```sh", f"smile-data {_plain(card.get('command', '?'))} --config settings.yaml "
             "--out DATASET", "```", "", "```yaml",
             yaml.safe_dump(settings, sort_keys=True).rstrip(), "```", "",
             "Versions that wrote this card:", ""]
    lines += [f"- {name} {installed_version(name, missing='not installed')}" for name in VERSIONED_PACKAGES]
    lines += [f"- python {platform.python_version()}", ""]
    return lines


def _objects(card: dict[str, Any], bank_card: dict[str, Any] | None) -> list[str]:
    bank = (card.get("inputs") or {}).get("object_bank")
    lines = ["## Object sources and licences", ""]
    if not bank:
        lines += ["No object bank: the clips hold no pasted objects. The background videos "
                  "and images keep their own licences (not recorded in the card).", ""]
        return lines
    lines += [f"Object bank sha256 `{_plain(bank.get('sha256'))}`: {bank.get('objects')} "
              f"objects of {bank.get('classes')} classes.", ""]
    if bank_card is None:
        lines += ["The bank's own card was not readable when this README was written, so its "
                  "sources are not listed: see `bank.json` of the bank with this sha256.", ""]
        return lines
    origin, licence = object_source_licence(bank_card)
    lines += ["| objects from | licence |", "| --- | --- |", f"| {origin} | {licence} |", "",
              "Background videos and images keep their own licences (not recorded in the card).",
              ""]
    return lines


def _counts(card: dict[str, Any]) -> list[str]:
    counts, skipped = card.get("counts", {}), card.get("skipped", [])
    lines = ["## Counts", "", f"- clips: {counts.get('samples')}",
             f"- shards: {counts.get('shards')}", f"- skipped sources: {counts.get('skipped')}"]
    for entry in skipped[:MAX_SKIPPED_LISTED]:
        lines.append(f"  - `{_plain(entry.get('source'))}`: {_plain(entry.get('reason'))}")
    if len(skipped) > MAX_SKIPPED_LISTED:
        lines.append(f"  - and {len(skipped) - MAX_SKIPPED_LISTED} more (see `dataset.json`)")
    return lines + [""]


LOADING = """## How to load it

With this project's trainer (the folder or its URL; every sample is checked against the
manifest before use):

```sh
smile-train pretrain --set shards=DATASET_FOLDER_OR_URL --set card_sha256=SHA256_OF_dataset.json
```

With webdataset, without its default decoders (nothing is unpickled); decode with
`smile_data.shards.reader.decode_webdataset_sample`:

```python
import webdataset as wds
dataset = wds.WebDataset("DATASET/clips-{000000..000009}.tar", shardshuffle=False)
```

The manifest (one row per clip) with pyarrow or duckdb:

```python
import pyarrow.parquet as pq
rows = pq.read_table("DATASET/manifest.parquet")
```

```sql
SELECT shard, count(*) FROM 'DATASET/manifest.parquet' GROUP BY shard;
```
"""


def render_readme(card: dict[str, Any], bank_card: dict[str, Any] | None,
                  preview: str | None) -> str:
    """The README text of a dataset card; `preview` is the preview image's file name."""
    lines = [_front_matter(card).rstrip("\n"), "",
             f"# smile {_plain(card.get('command', 'dataset'))} clips", "", _summary(card), ""]
    if preview:
        lines += [f"![first clips, every object's box drawn]({preview})", ""]
    lines += _provenance(card) + _objects(card, bank_card) + _counts(card)
    return "\n".join(lines) + "\n" + LOADING


def write_readme(out_dir: Path, card: dict[str, Any]) -> None:
    """The README beside a finished dataset's card, with its preview image."""
    preview = None
    settings = PreviewSettings(clips=README_PREVIEW_CLIPS, frames=README_PREVIEW_FRAMES)
    try:
        make_preview(out_dir, out_dir / PREVIEW_FILE, settings)
        preview = PREVIEW_FILE
    except (ValueError, OSError) as error:  # the card is written; `validate` tells what is wrong
        log.warning("%s: no preview image for README.md: %s", out_dir, error)
    text = render_readme(card, read_bank_card(card), preview)
    write_bytes_atomic(out_dir / README_FILE, text.encode("utf-8"))
