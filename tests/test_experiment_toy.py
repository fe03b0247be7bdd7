"""Smoke test of experiments/motion_direction.py at a tiny budget: every arm runs the project's
real render / pretrain / probe / finetune path, the table is written, reruns skip finished
steps, and a folder made with other settings is refused."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from smile_train.interop import checkpoint as ckpt
from tests.conftest import write_plain_bank

ROOT = Path(__file__).resolve().parents[1]
SMOKE_ARGS = ["--seeds", "3", "--budget", "0.01", "--set", "size=64", "--set", "workers=1"]


def load_experiment():
    spec = importlib.util.spec_from_file_location("motion_direction", ROOT / "experiments" / "motion_direction.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, monkeypatch_module):
    experiment = load_experiment()
    base = tmp_path_factory.mktemp("toy")
    monkeypatch_module.chdir(ROOT)  # the default config paths are relative to the repository
    bank = write_plain_bank(base / "bank", ("apple", "dog"), seed=11)
    out = base / "toy"
    args = SMOKE_ARGS + ["--bank", str(bank), "--out", str(out)]
    experiment.main(args)
    return experiment, out, args


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def settings_of(folder: Path) -> dict:
    return json.loads((folder / "settings.json").read_text())


def test_every_arm_is_pretrained_probed_and_finetuned_with_one_budget(smoke_run):
    _, out, _ = smoke_run
    results = json.loads((out / "results.json").read_text())
    assert [run["arm"] for run in results["runs"]] == ["objects", "plain", "scratch"]
    assert results["classes"] == 4 and results["chance"] == 0.25
    for run in results["runs"]:
        assert run["seed"] == 3
        assert 0.0 <= run["probe_top1"] <= 1.0 and 0.0 <= run["finetune_top1"] <= 1.0
        assert run["val_videos"] == 8  # every val clip is a test item of its own
    arm = out / "seed-3"
    objects, plain = settings_of(arm / "objects" / "pretrain"), settings_of(arm / "plain" / "pretrain")
    assert (objects["mask"], plain["mask"]) == ("trajectory", "tube")
    assert "pretrain_objects" in objects["shards"] and "pretrain_plain" in plain["shards"]
    same = ("max_steps", "batch_size", "base_lr", "seed", "input_size", "frames")
    assert {k: objects[k] for k in same} == {k: plain[k] for k in same}
    tuned = [settings_of(arm / name / "finetune") for name in ("objects", "plain", "scratch")]
    assert len({(t["max_steps"], t["batch_size"], t["shards"], t["seed"]) for t in tuned}) == 1
    assert not any(t["flip"] for t in tuned)
    assert tuned[2]["init_from"].endswith("init.pt")


def test_no_pretraining_arm_starts_from_the_pretraining_arms_initial_weights(smoke_run):
    _, out, _ = smoke_run
    init = ckpt.load_checkpoint(out / "seed-3" / "scratch" / "pretrain" / "checkpoints" / "init.pt")["model"]
    trained = ckpt.load_checkpoint(out / "seed-3" / "objects" / "pretrain" / "checkpoints" / "final.pt")["model"]
    assert init.keys() == trained.keys()
    assert any(not (init[k] == trained[k]).all() for k in init)  # pretraining moved the weights


def test_table_lists_the_arms_and_chance(smoke_run):
    experiment, out, _ = smoke_run
    text = (out / "results.md").read_text()
    assert "| arm | seed | probe top-1 | finetune top-1 | chance |" in text
    for label in experiment.ARM_LABELS.values():
        assert label in text
    assert "0.250" in text and "Budget 0.01" in text


def test_rerun_skips_finished_steps_and_gives_the_same_numbers(smoke_run):
    experiment, out, args = smoke_run
    before = json.loads((out / "results.json").read_text())
    final = out / "seed-3" / "objects" / "finetune" / "checkpoints" / "final.pt"
    stamp = final.stat().st_mtime_ns
    experiment.main(args)
    after = json.loads((out / "results.json").read_text())
    assert final.stat().st_mtime_ns == stamp
    assert [(r["probe_top1"], r["finetune_top1"]) for r in after["runs"]] == \
        [(r["probe_top1"], r["finetune_top1"]) for r in before["runs"]]


def test_folder_with_other_settings_is_refused(smoke_run, capsys):
    experiment, out, args = smoke_run
    with pytest.raises(SystemExit) as exit_info:
        experiment.main(args + ["--set", "finetune_steps=7"])
    assert exit_info.value.code == 2
    assert "finetune_steps" in capsys.readouterr().err
