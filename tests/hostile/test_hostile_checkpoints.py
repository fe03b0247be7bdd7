"""Checkpoints that inflate inside torch.load are refused from their zip records, by every
command that reads one: import, evaluate, export, init-from and resume."""

from __future__ import annotations

import pytest

from tests.conftest import write_test_shards
from tests.hostile.inflating import write_inflating_checkpoint
from tests.hostile.test_hostile_settings import TINY, sets

EXPANDED_BYTES = 2 << 30  # what the 2 MB file would become inside torch.load
REFUSAL = "record 'archive/data/0' is compressed (zip method 8)"


def commands(checkpoint: str) -> dict[str, tuple[str, ...]]:
    return {
        "import": ("import", "--checkpoint", checkpoint, "--out", "out/x.pt"),
        "evaluate": ("evaluate", "--checkpoint", checkpoint, "--shards", "input/shards",
                     *sets("device=cpu", "out=out/eval.json")),
        "export": ("export", "--checkpoint", checkpoint, "--out", "out/hf"),
        "init-from": ("pretrain", *sets(*TINY, "frames=4", "shards=input/shards",
                                        "out_dir=out/run", f"init_from={checkpoint}")),
    }


@pytest.mark.parametrize("command", ["import", "evaluate", "export", "init-from"])
def test_a_deflated_tensor_record_is_refused_before_loading(case, command):
    checkpoint = write_inflating_checkpoint(case.input / "evil.pt", EXPANDED_BYTES)
    assert checkpoint.stat().st_size < 3 << 20
    write_test_shards(case.input / "shards", clips=4, frames=4, size=64)
    outcome = case.run("smile-train", *commands(str(checkpoint))[command])
    outcome.refused(str(checkpoint), REFUSAL)


def test_resume_refuses_an_inflating_step_checkpoint(case):
    write_test_shards(case.input / "shards", clips=4, frames=4, size=64)
    checkpoints = case.out / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    write_inflating_checkpoint(checkpoints / "step-000000001.pt", EXPANDED_BYTES)
    outcome = case.run("smile-train", "pretrain", "--resume",
                       *sets(*TINY, "frames=4", f"shards={case.input}/shards/*.tar", "out_dir=out/run"))
    outcome.refused("step-000000001.pt", REFUSAL)
