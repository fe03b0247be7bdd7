"""Brace patterns in shared configs are counted before they expand, and refused over the bound."""

from __future__ import annotations

import pytest

from tests.hostile.test_hostile_settings import TINY, sets

HUGE = "clips-{000000000..099999999}.tar"
NESTED = "{a,b,c,d}{0..999}{0..999}-{0..9}.tar"


@pytest.mark.parametrize("pattern, count", [(HUGE, 100_000_000), (NESTED, 40_000_000)])
def test_a_pattern_in_a_config_is_refused_naming_the_setting(case, pattern, count):
    config = case.input / "shared.yaml"
    config.write_text(f"shards: input/{pattern}\n")
    outcome = case.run("smile-train", "pretrain", "--config", str(config),
                       *sets(*TINY, "out_dir=out/run"), timeout=30)
    outcome.refused("shards: ", f"expands to {count} names", "more than the 1000000")


def test_finetuning_refuses_a_val_shards_pattern_before_training(case):
    (case.input / "a.tar").write_bytes(b"")
    outcome = case.run("smile-train", "finetune", "--shards", "input/a.tar",
                       *sets("model=tiny", "device=cpu", f"val_shards=input/{HUGE}",
                             "out_dir=out/ft"), timeout=30)
    outcome.refused("val_shards: ", "expands to 100000000 names")
