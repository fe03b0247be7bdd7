"""Finetuning end to end: a tiny model learns an easy labelled set written in the shard layout
that `smile-data pack` writes (several clips per source video, `.cls` labels), resumes exactly,
starts from authors-format weights, and the CLI commands run on the result."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from smile_data.config import load_settings
from smile_data.shards import layout
from smile_train.cli import app
from smile_train.interop.checkpoint import load_checkpoint, save_checkpoint
from smile_train.interop.checkpoint_keys import pretrain_state_to_classifier
from smile_train.loop import runtime as rt
from smile_train.loop.finetune import build_model, run_finetune, schedule
from smile_train.loop.train_loop import load_initial_weights, update_ema
from smile_train.model.vit import SIZES, PretrainModel
from smile_train.settings.finetune import FinetuneSettings
from tests.conftest import write_clip_shard, write_test_card

SIZE, WIDTH, HEIGHT, FRAMES = 32, 40, 32, 8  # packed frames are wider than tall, like videos
TINTS = ((200, 40, 40), (40, 200, 40))  # class 0 reddish, class 1 greenish
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "finetune"
CPU = rt.Runtime(0, 1, 0, torch.device("cpu"), torch.float32)



def labelled_clip(rng: np.random.Generator, label: int) -> np.ndarray:
    """(T, H, W, 3) RGB: noise tinted by the class colour with a bright square moving across."""
    tint = np.asarray(TINTS[label], np.float32)
    base = rng.uniform(0.5, 1.0, (1, HEIGHT, WIDTH, 1)) * tint
    clip = np.repeat(base, FRAMES, axis=0).astype(np.uint8)
    x0, y0 = rng.integers(0, WIDTH - 10), rng.integers(0, HEIGHT - 10)
    for t in range(FRAMES):
        x = min(WIDTH - 10, x0 + t)
        clip[t, y0 : y0 + 10, x : x + 10] = 255
    return clip


def write_labelled_shards(folder: Path, videos: int, clips_per_video: int, seed: int,
                          per_shard: int = 8, classes: int = 2) -> Path:
    """Shards as `smile-data pack` lays them out: clip i of video v has key v*clips + i,
    background {"kind": "natural", "source": "video<v>.mp4", "frame_indices": [...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples = []
    for video in range(videos):
        label = video % classes
        for j in range(clips_per_video):
            index = video * clips_per_video + j
            key = layout.sample_key(index)
            frames = labelled_clip(rng, label)
            metadata = {
                "schema_version": layout.SCHEMA_VERSION, "key": key, "seed": seed, "frames": FRAMES,
                "height": HEIGHT, "width": WIDTH, "codec": "png", "objects": [], "label": label,
                "background": {"kind": "natural", "source": f"video{video:03d}.mp4",
                               "frame_indices": list(range(j * 4, j * 4 + FRAMES))},
            }
            members = {layout.frame_extension(t, "png"): cv2.imencode(".png", f[..., ::-1])[1].tobytes()
                       for t, f in enumerate(frames)}
            members["json"] = layout.encode_metadata(metadata)
            members["cls"] = layout.encode_label(label)
            samples.append((key, members))
    shards = [write_clip_shard(folder / layout.shard_name("clips", first // per_shard),
                               samples[first : first + per_shard], tarfile.USTAR_FORMAT)
              for first in range(0, len(samples), per_shard)]
    write_test_card(folder, shards)
    return folder


def tiny_finetune(train: Path, out_dir: Path, **changes) -> dict:
    settings = dict(
        shards=str(train / "*.tar"), out_dir=str(out_dir), model="tiny", num_classes=2,
        input_size=SIZE, frames=FRAMES, batch_size=8, base_lr=0.05, epochs=6, warmup_epochs=1,
        num_workers=0, shuffle_buffer=16, save_every_steps=10, log_every_steps=5, device="cpu",
        test_clips=2, test_crops=3, drop_path=0.0,
    )
    return {**settings, **changes}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("labelled")
    return {"train": write_labelled_shards(root / "train", videos=16, clips_per_video=4, seed=1),
            "val": write_labelled_shards(root / "val", videos=8, clips_per_video=3, seed=2)}


@pytest.fixture(scope="module")
def finetuned(labelled, tmp_path_factory) -> Path:
    """One CLI finetuning run (48 steps, RandAugment and mixup / cutmix on) with a final test."""
    out_dir = tmp_path_factory.mktemp("finetune")
    overrides = tiny_finetune(labelled["train"], out_dir, val_shards=str(labelled["val"] / "*.tar"))
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]
    result = CliRunner().invoke(app, ["finetune", *sets])
    assert result.exit_code == 0, result.output
    return out_dir


def test_finetuning_learns_an_easy_set_and_tests_it(finetuned):
    report = json.loads((finetuned / "eval.json").read_text())
    assert report["videos"] == 8 and report["clips"] == 16  # 2 of 3 clips per video
    assert report["views"] == 8 * 2 * 3
    assert report["top1"] >= 0.85  # chance is 0.5
    assert {p["class"] for p in report["per_class"]} == {0, 1}
    state = load_checkpoint(finetuned / "checkpoints" / "final.pt")
    assert state["step"] == 48 and state["stage"] == "finetune"
    assert state["model"]["head.weight"].shape == (2, SIZES["tiny"].width)
    assert (finetuned / "settings.json").is_file() and (finetuned / "loss_curve.png").is_file()


def test_resume_continues_exactly(labelled, tmp_path):
    """Weights and their running average alike."""
    overrides = tiny_finetune(labelled["train"], tmp_path / "full", max_steps=6, save_every_steps=3,
                              epochs=2, model_ema=True, model_ema_decay=0.5)
    full = run_finetune(None, overrides, resume=False)
    part = dict(overrides, out_dir=str(tmp_path / "part"))
    run_finetune(None, part, resume=False)
    checkpoints = tmp_path / "part" / "checkpoints"
    for name in ("final.pt", "step-000000006.pt"):  # as if killed right after step 3
        (checkpoints / name).unlink()
    with pytest.raises(ValueError, match="--resume"):
        run_finetune(None, part, resume=False)
    resumed = run_finetune(None, part, resume=True)
    a, b = load_checkpoint(full), load_checkpoint(resumed)
    for weights in ("model", "model_ema"):
        assert all(torch.equal(a[weights][k], b[weights][k]) for k in a[weights])
    assert any(not torch.equal(a["model"][k], a["model_ema"][k]) for k in a["model"])


@pytest.mark.parametrize("config", ["smile_vitb_k400", "smile_vitb_ssv2"])
def test_layer_decay_groups_have_the_expected_learning_rates(config):
    decay = load_settings(FinetuneSettings, str(CONFIGS / f"{config}.yaml"), {}).layer_decay
    assert decay == {"smile_vitb_k400": 0.75, "smile_vitb_ssv2": 0.7}[config]  # the released scripts
    model = build_model(FinetuneSettings(model="tiny", num_classes=2, input_size=SIZE, frames=FRAMES))
    depth, lr = model.depth, 1e-3
    groups = rt.layer_decay_groups(model.named_parameters(), 0.05, model.no_weight_decay(),
                                   model.layer_id, depth + 2, decay)
    optimizer = torch.optim.AdamW(groups, lr=lr)
    rt.apply_lr(optimizer, lr)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    expected = {"head.weight": (lr, 0.05), "head.bias": (lr, 0.0), "fc_norm.weight": (lr, 0.0),
                f"blocks.{depth - 1}.attn.qkv.weight": (lr * decay, 0.05),
                f"blocks.{depth - 1}.attn.q_bias": (lr * decay, 0.0),
                "blocks.0.mlp.fc1.weight": (lr * decay ** depth, 0.05),
                "patch_embed.proj.weight": (lr * decay ** (depth + 1), 0.05),
                "patch_embed.proj.bias": (lr * decay ** (depth + 1), 0.0)}
    for name, (want_lr, want_decay) in expected.items():
        got_lr, got_decay = rate[id(named[name])]
        assert got_lr == pytest.approx(want_lr) and got_decay == want_decay, name
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_released_recipes_and_their_test_views():
    """Values of the authors' scripts: SMILE K400 7 x 3 and SSv2 2 x 3 views, one sample per
    video; VideoMAE's UCF101 script (also used for HMDB51): 2 samples per video, 5 x 3 views."""
    expected = {
        "smile_vitb_k400": dict(num_classes=400, test_clips=7, test_crops=3, repeated_augment=1, batch_size=16),
        "smile_vitb_ssv2": dict(num_classes=174, test_clips=2, test_crops=3, repeated_augment=1, batch_size=32,
                                temporal="segments"),
        "smile_vitb_ucf101": dict(num_classes=101, test_clips=5, test_crops=3, repeated_augment=2, batch_size=128,
                                  layer_decay=0.7, drop_path=0.2, head_drop=0.5, base_lr=5e-4),
        "smile_vitb_hmdb51": dict(num_classes=51, test_clips=5, test_crops=3, repeated_augment=2, batch_size=128,
                                  layer_decay=0.7, drop_path=0.2, head_drop=0.5, base_lr=5e-4),
    }
    for config, values in expected.items():
        s = load_settings(FinetuneSettings, str(CONFIGS / f"{config}.yaml"), {})
        assert {key: getattr(s, key) for key in values} == values, config
        assert (s.rand_augment_ops, s.rand_augment_magnitude, s.crop_scale, s.erase_prob) == (4, 7.0, (0.25, 1.0), 0.25)
    # min_lr scales with the batch like base_lr: 1e-5 x 128 / 256
    ucf101 = load_settings(FinetuneSettings, str(CONFIGS / "smile_vitb_ucf101.yaml"), {"clips_per_epoch": 128})
    assert schedule(ucf101, ucf101.clips_per_epoch)[1].floor == pytest.approx(5e-6)


def test_per_step_lr_is_the_released_cosine_scheduler():
    """utils.cosine_scheduler of the released finetuning, written out: a linspace from warmup_lr
    to the peak over the warm-up steps, then the cosine from the peak towards min_lr over the
    remaining steps (index i / their count); warmup_lr, min_lr and the peak scale with batch/256."""
    s = FinetuneSettings(batch_size=64, base_lr=1e-3, min_lr=1e-6, warmup_lr=1e-6, epochs=5, warmup_epochs=1,
                         clips_per_epoch=8 * 64)
    total, warmup, peak = 40, 8, 1e-3 * 64 / 256
    start, floor = 1e-6 * 64 / 256, 1e-6 * 64 / 256
    released = list(np.linspace(start, peak, warmup)) + [
        floor + 0.5 * (peak - floor) * (1 + np.cos(np.pi * i / (total - warmup))) for i in range(total - warmup)]
    steps, lrs = schedule(s, s.clips_per_epoch)
    assert (steps, lrs.warmup_steps, lrs.peak) == (total, warmup, peak)
    ours = [lrs.lr(step) for step in range(total)]
    np.testing.assert_allclose(ours, released, rtol=1e-12, atol=0)
    assert ours[0] == pytest.approx(2.5e-7) and ours[warmup - 1] == pytest.approx(peak) and ours[-1] > floor


@pytest.mark.parametrize("config", ["smile_vitb_k400", "smile_vitb_ssv2", "smile_vitb_ucf101", "smile_vitb_hmdb51"])
def test_released_warm_up_starts_at_zero(config):
    """The released run_class_finetuning.py scales --warmup_lr with the batch but calls
    cosine_scheduler without a start value, whose default is 0: the warm-up is
    linspace(0, peak, W). Hand values for W = 5 warm-up steps of 20: step k reads peak x k / 4."""
    s = load_settings(FinetuneSettings, str(CONFIGS / f"{config}.yaml"), {"epochs": 4, "warmup_epochs": 1})
    s.clips_per_epoch = 5 * s.batch_size
    assert s.warmup_lr == 0.0
    peak = s.base_lr * s.batch_size / 256  # K400: 6.25e-5; UCF101 / HMDB51: 2.5e-4
    steps, lrs = schedule(s, s.clips_per_epoch)
    assert (steps, lrs.warmup_steps) == (20, 5)
    ours = [lrs.lr(step) for step in range(5)]
    assert ours == pytest.approx([0.0, peak / 4, peak / 2, 3 * peak / 4, peak], rel=1e-12, abs=0)


def test_ema_update_is_timms_formula():
    model, ema = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    update_ema(ema, model, 0.9)
    for key, value in ema.state_dict().items():
        assert torch.allclose(value, 0.9 * before[key] + 0.1 * model.state_dict()[key])


def test_ema_and_repeated_augmentation_in_a_run(labelled, tmp_path):
    """Decay 0 makes the average the last weights; two augmented copies per clip train fine."""
    overrides = tiny_finetune(labelled["train"], tmp_path, max_steps=3, model_ema=True, model_ema_decay=0.0,
                              repeated_augment=2, batch_size=4, val_shards=str(labelled["val"] / "*.tar"),
                              test_clips=1, test_crops=1)
    state = load_checkpoint(run_finetune(None, overrides, resume=False))
    assert set(state["model_ema"]) == set(state["model"])
    assert all(torch.equal(state["model_ema"][k], state["model"][k]) for k in state["model"])
    plain, averaged = (json.loads((tmp_path / name).read_text()) for name in ("eval.json", "eval_ema.json"))
    assert averaged["weights"] == "model_ema" and averaged["top1"] == plain["top1"]


def authors_state(width: int, depth: int, finetuned_classes: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the key names of the released VideoMAE / SMILE files (docs/method.md §7)."""
    g = torch.Generator().manual_seed(0)
    prefix = "" if finetuned_classes else "encoder."
    shapes = {f"{prefix}patch_embed.proj.weight": (width, 3, 2, 16, 16), f"{prefix}patch_embed.proj.bias": (width,)}
    for i in range(depth):
        b = f"{prefix}blocks.{i}."
        shapes |= {b + "norm1.weight": (width,), b + "norm1.bias": (width,),
                   b + "attn.qkv.weight": (3 * width, width), b + "attn.q_bias": (width,),
                   b + "attn.v_bias": (width,), b + "attn.proj.weight": (width, width),
                   b + "attn.proj.bias": (width,), b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                   b + "mlp.fc1.weight": (4 * width, width), b + "mlp.fc1.bias": (4 * width,),
                   b + "mlp.fc2.weight": (width, 4 * width), b + "mlp.fc2.bias": (width,)}
    if finetuned_classes:
        shapes |= {"fc_norm.weight": (width,), "fc_norm.bias": (width,),
                   "head.weight": (finetuned_classes, width), "head.bias": (finetuned_classes,)}
    else:
        shapes |= {"encoder.norm.weight": (width,), "encoder.norm.bias": (width,),
                   "encoder_to_decoder.weight": (96, width), "mask_token": (1, 1, 96),
                   "decoder.blocks.0.norm1.weight": (96,), "decoder.norm.weight": (96,),
                   "decoder.head.weight": (1536, 96), "decoder.head.bias": (1536,)}
    return {k: torch.randn(shape, generator=g) for k, shape in shapes.items()}


@pytest.mark.parametrize("variant", ["pretraining", "finetuned-same-classes", "finetuned-other-classes"])
def test_init_loads_authors_files_with_no_missing_encoder_keys(variant, tmp_path):
    spec = SIZES["tiny"]
    classes = {"pretraining": 0, "finetuned-same-classes": 2, "finetuned-other-classes": 5}[variant]
    state = authors_state(spec.width, spec.depth, classes)
    path = tmp_path / "authors.pth"
    torch.save({"module" if classes else "model": state, "epoch": 10}, path)
    model = build_model(FinetuneSettings(model="tiny", num_classes=2, input_size=SIZE, frames=FRAMES))
    report = load_initial_weights(model, str(path), CPU, pretrain_state_to_classifier)
    own = model.state_dict()
    backbone = [k for k in own if k.startswith(("patch_embed.", "blocks."))]
    prefix = "" if classes else "encoder."
    assert all(torch.equal(own[k], state[prefix + k]) for k in backbone)
    assert not [k for k in report.fresh if k.startswith(("patch_embed.", "blocks."))]
    expected_fresh = {0: {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"},
                      2: set(), 5: {"head.weight", "head.bias"}}[classes]
    assert set(report.fresh) == expected_fresh
    if classes == 0:
        assert "norm.weight" in report.dropped and "decoder.head.weight" in report.dropped


def test_init_loads_this_projects_pretraining_checkpoint(tmp_path):
    pretrained = PretrainModel("tiny", 1536, img_size=SIZE, frames=FRAMES)
    optimizer = torch.optim.AdamW(pretrained.parameters())
    save_checkpoint(tmp_path / "final.pt", {"model": pretrained.state_dict(), "optimizer": optimizer.state_dict(),
                                            "step": 10, "settings": {"model": "tiny"}})
    model = build_model(FinetuneSettings(model="tiny", num_classes=2, input_size=SIZE, frames=FRAMES))
    report = load_initial_weights(model, str(tmp_path / "final.pt"), CPU, pretrain_state_to_classifier)
    assert report.layout == "pretrain" and torch.equal(
        model.state_dict()["blocks.3.attn.q_bias"], pretrained.state_dict()["encoder.blocks.3.attn.q_bias"])


def test_init_refuses_a_file_that_matches_nothing(tmp_path):
    path = tmp_path / "other.pth"
    save_checkpoint(path, {"model": {"conv1.weight": torch.zeros(3)}})
    model = build_model(FinetuneSettings(model="tiny", num_classes=2, input_size=SIZE, frames=FRAMES))
    with pytest.raises(ValueError, match="no known layout"):
        load_initial_weights(model, str(path), CPU, pretrain_state_to_classifier)


def test_cli_evaluate_probe_export_and_import_on_the_finetuned_run(finetuned, labelled, tmp_path):
    runner = CliRunner()
    final = finetuned / "checkpoints" / "final.pt"
    val = str(labelled["val"] / "*.tar")
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(final), "--shards", val, "--out", str(out),
                                 "--clips", "1", "--crops", "1", "--set", "num_workers=0", "--set", "device=cpu"])
    assert result.exit_code == 0, result.output
    single = json.loads(out.read_text())
    assert single["views"] == 8 and single["top1"] >= 0.75
    probe_args = ["linear-probe", "--checkpoint", str(final), "--shards", str(labelled["train"] / "*.tar"),
                  "--val-shards", val, "--num-classes", "2", "--epochs", "20", "--out", str(tmp_path / "probe"),
                  "--set", "num_workers=0", "--set", "device=cpu", "--set", "test_clips=2", "--set", "batch_size=16"]
    result = runner.invoke(app, probe_args)
    assert result.exit_code == 0, result.output
    probe = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert probe["top1"] >= 0.75 and probe["views"] == 8 * 2 * 3
    assert len(list((tmp_path / "probe" / "features").glob("*.safetensors"))) == 2
    result = runner.invoke(app, probe_args)  # second run: features come from the cache
    assert result.exit_code == 0 and "features from cache" in result.output
    result = runner.invoke(app, ["export", "--format", "hf", "--checkpoint", str(final), "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"]) == 2


def test_the_make_finetune_recipe_learns_an_easy_set(labelled, tmp_path):
    """configs/finetune/embedded.yaml as `make finetune` runs it, only the data, geometry and
    length changed, from scratch: the training loss must end well below chance (ln 2), so a
    change of the recipe's defaults that stops learning fails here, not in a 10-minute demo."""
    out_dir = tmp_path / "recipe"
    overrides = {"shards": str(labelled["train"] / "*.tar"), "val_shards": "", "init_from": "",
                 "class_names": "", "num_classes": 2, "input_size": SIZE, "frames": FRAMES,
                 "max_steps": 40, "num_workers": 0, "out_dir": str(out_dir), "device": "cpu"}
    run_finetune(str(CONFIGS / "embedded.yaml"), overrides, resume=False)
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 40
    assert rows[-1]["loss"] < 0.4 * np.log(2), [round(r["loss"], 3) for r in rows]
