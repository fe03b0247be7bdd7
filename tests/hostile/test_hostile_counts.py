"""Every count in every settings dataclass is bounded at start, naming the setting: an audit
of all integer fields, and the CLI cases a shared config could carry."""

from __future__ import annotations

import dataclasses

import pytest

from smile_data.config import apply_overrides
from smile_data.objects.settings import (
    BuildSettings,
    ImportSettings,
    PhotoSettings,
    validate_build,
    validate_import,
    validate_segmentation,
)
from smile_data.render.settings import (
    PackSettings,
    RenderSettings,
    check_pack_settings,
    check_render_settings,
)
from smile_data.shards.preview import PreviewSettings, check_preview_settings
from smile_train.data.sources import SourceSettings, check_source
from smile_train.settings.checks import check_settings
from smile_train.settings.finetune import EvalSettings, FinetuneSettings, ProbeSettings
from smile_train.settings.pretrain import PretrainSettings
from tests.hostile.test_hostile_settings import TINY, sets

HUGE = 10**19  # past every bound, 64-bit seeds included
CHECKS = [
    (RenderSettings, check_render_settings), (PackSettings, check_pack_settings),
    (PreviewSettings, check_preview_settings), (BuildSettings, validate_build),
    (PhotoSettings, validate_segmentation), (ImportSettings, validate_import),
    (PretrainSettings, check_settings), (FinetuneSettings, check_settings),
    (EvalSettings, check_settings), (ProbeSettings, check_settings),
    (SourceSettings, lambda s: check_source(dataclasses.replace(s, shards="a.tar"), "sources[1]")),
]


def integer_fields(cls) -> list[str]:
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    return [name for name, hint in hints.items() if hint in ("int", int)]


@pytest.mark.parametrize("cls, check", CHECKS, ids=[cls.__name__ for cls, _ in CHECKS])
def test_every_integer_setting_is_bounded_by_its_check(cls, check):
    fields = integer_fields(cls)
    assert fields, f"{cls.__name__} has no integer settings?"
    check(cls())  # the defaults pass
    for name in fields:
        settings = apply_overrides(cls(), {name: HUGE})
        with pytest.raises(ValueError, match=name) as raised:
            check(settings)
        assert str(HUGE) in str(raised.value) or "pixels" in str(raised.value), str(raised.value)


def test_render_refuses_a_hundred_million_objects_at_start(case):
    outcome = case.run("smile-data", "render", "--bg", "noise", "--overlay", "patches",
                       "--size", "32", "--frames", "2", "--clips", "1",
                       "--set", "objects=100000000", "--out", "out/data", timeout=30)
    outcome.refused("setting 'objects' must be in [0, 64], got 100000000")
    assert not case.out.exists()


def test_loader_overlays_refuse_a_hundred_million_objects_at_start(case):
    config = case.input / "shared.yaml"
    config.write_text("overlay: patches\noverlay_settings: {objects: 100000000}\n")
    outcome = case.run("smile-train", "pretrain", "--config", str(config),
                       *sets(*TINY, "shards=input/none.tar", "out_dir=out/run"), timeout=30)
    outcome.refused("overlay_settings", "setting 'objects' must be in [0, 64]")


@pytest.mark.parametrize("program, args, message", [
    ("smile-train", ("finetune", *sets("num_classes=1000000000", "shards=input/none.tar")),
     "setting 'num_classes' must be in [1, 100000]"),
    ("smile-train", ("pretrain", *sets(*TINY, "mask_repeats=100000000", "shards=x.tar")),
     "setting 'mask_repeats' must be in [1, 64]"),
    ("smile-data", ("preview", "input", "--clips", "100000000", "--out", "out/p.png"),
     "setting 'clips' must be in [1, 1000]"),
    ("smile-data", ("preview", "input", "--clips", "1000", "--frames", "100", "--cell-size", "1024",
                    "--out", "out/p.png"), "more than 100000000"),
    ("smile-data", ("validate", "input", "--workers", "100000000"), "--workers"),
    ("smile-data", ("fetch", "input", "--out", "out/m", "--workers", "100000000"), "--workers"),
])
def test_counts_on_the_command_line_are_refused_at_start(case, program, args, message):
    outcome = case.run(program, *args, timeout=30)
    outcome.refused(message)
