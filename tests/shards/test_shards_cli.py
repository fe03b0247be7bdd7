"""merge-shards: ranks finished on different machines are merged into one dataset folder."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from smile_data.cli import app
from smile_data.jobs import WorkShare
from smile_data.shards.dataset import finalize_dataset


def test_merge_shards_after_copying_rank_outputs(tmp_path, write_synthetic, folder_bytes):
    single = tmp_path / "single"
    write_synthetic(single, work_share=WorkShare(0, 2))
    write_synthetic(single, work_share=WorkShare(1, 2))
    machines = [tmp_path / "machine0", tmp_path / "machine1"]
    for rank, folder in enumerate(machines):
        summary = write_synthetic(folder, work_share=WorkShare(rank, 2))
        assert summary["complete"] is False
    merged = tmp_path / "merged"
    shutil.copytree(machines[0], merged)
    with pytest.raises(FileNotFoundError, match=r"rank\(s\) 1 of 2 have not finished"):
        finalize_dataset(merged)
    shutil.copytree(machines[1], merged, dirs_exist_ok=True)
    result = CliRunner().invoke(app, ["merge-shards", str(merged)])
    assert result.exit_code == 0, result.output
    assert "5 shards, 12 samples, 2 skipped sources" in result.output
    assert folder_bytes(merged) == folder_bytes(single)
    assert CliRunner().invoke(app, ["validate", str(merged)]).exit_code == 0
