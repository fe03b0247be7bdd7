"""preview: contact sheet size and content, GIFs, determinism, the CLI."""

from __future__ import annotations

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.shards.preview import (
    KEY_COLUMN_WIDTH,
    PreviewSettings,
    frame_indices,
    make_preview,
    object_colour,
)


def test_contact_sheet_size_boxes_and_determinism(dataset, tmp_path):
    settings = PreviewSettings(clips=3, frames=2, cell_size=64)
    first = make_preview(dataset, tmp_path / "a.png", settings)
    second = make_preview(dataset, tmp_path / "b.png", settings)
    assert first == [tmp_path / "a.png"]
    assert (tmp_path / "a.png").read_bytes() == second[0].read_bytes()
    sheet = np.asarray(Image.open(first[0]).convert("RGB"))
    assert sheet.shape == (3 * 64, KEY_COLUMN_WIDTH + 2 * 64, 3)
    # the first object's box colour appears in every row
    colour = np.array(object_colour(0))
    for row in range(3):
        cells = sheet[row * 64:(row + 1) * 64, KEY_COLUMN_WIDTH:]
        assert (np.abs(cells.astype(int) - colour).sum(-1) < 30).any()


def test_gifs_and_cli(dataset, tmp_path):
    out = tmp_path / "sheet.png"
    result = CliRunner().invoke(app, ["preview", str(dataset), "--out", str(out), "--clips", "2",
                                      "--gif", "--set", "cell_size=32"])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (KEY_COLUMN_WIDTH + 8 * 32, 2 * 32)
    gifs = sorted(tmp_path.glob("sheet-*.gif"))
    assert [g.name for g in gifs] == ["sheet-0000000000.gif", "sheet-0000000001.gif"]
    with Image.open(gifs[0]) as gif:
        assert gif.size == (32, 32) and gif.n_frames == 4
    bad = CliRunner().invoke(app, ["preview", str(dataset), "--set", "clip=2"])
    assert bad.exit_code == 2 and "unknown setting clip (did you mean clips?)" in bad.stderr


def test_frame_indices_are_evenly_spaced():
    assert frame_indices(16, 4) == [0, 5, 10, 15]
    assert frame_indices(3, 8) == [0, 1, 2]
    assert object_colour(0) != object_colour(1)
