"""A checkpoint save that cannot be written says so, naming the file and the bytes it needs,
and the earlier checkpoints stay: a real full disk (a small tmpfs in the child's own mount
namespace) and a write that fails halfway (a file-size limit on the child)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import write_test_shards
from tests.hostile.test_hostile_settings import TINY, sets

FULL_DISK_BYTES = 1 << 20  # the tmpfs: room for the run's logs, not for a tiny model's state
FILE_SIZE_LIMIT = 1 << 20  # per file written by the child: less than one checkpoint


def private_tmpfs(folder) -> tuple[str, ...]:
    """Run the command with a tmpfs of FULL_DISK_BYTES on `folder`, mounted in a user and mount
    namespace of its own (unshare -rm: no privileges needed, nothing seen outside)."""
    unshare = shutil.which("unshare")
    assert unshare, "util-linux's unshare is needed to give the child a full disk"
    probe = subprocess.run([unshare, "-rm", "true"], capture_output=True, text=True)
    assert probe.returncode == 0, f"unshare -rm is not allowed here: {probe.stderr}"
    script = f'mount -t tmpfs -o size={FULL_DISK_BYTES} tmpfs "{folder}" && exec "$@"'
    return (unshare, "-rm", "sh", "-c", script, "sh")


@pytest.fixture
def run_args(case) -> list[str]:
    write_test_shards(case.input / "shards", clips=4, frames=4, size=64)
    return ["pretrain", *sets(*TINY, "frames=4", f"shards={case.input}/shards/*.tar",
                              "out_dir=out/run", "max_steps=2", "save_every_steps=1")]


def test_a_full_disk_is_named_with_the_bytes_needed(case, run_args):
    case.out.mkdir()
    outcome = case.run("smile-train", *run_args, prefix=private_tmpfs(case.out))
    outcome.refused("checkpoints/step-000000001.pt: the disk is full: the checkpoint needs",
                    "bytes of tensors", "bytes are free there")


def test_a_write_that_fails_halfway_keeps_the_earlier_checkpoints(case, run_args):
    outcome = case.run("smile-train", *run_args, file_size_limit=FILE_SIZE_LIMIT)
    outcome.refused("checkpoints/step-000000001.pt: the checkpoint (", "bytes of tensors) could not "
                    "be written", "the earlier checkpoints are kept")
    leftovers = list((case.out / "run" / "checkpoints").iterdir())
    assert not [p for p in leftovers if ".tmp-" in p.name], leftovers
