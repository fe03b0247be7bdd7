"""The video ViT family: shapes, sizes, checkpoint names, masking consistency, key mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smile_train.interop.checkpoint_keys import encoder_state_from_foreign, pretrain_state_to_classifier
from smile_train.model.vit import (
    SIZES,
    PretrainModel,
    VideoViTEncoder,
    build_classifier,
    build_pretrain_model,
    gather_tokens,
    set_attention_impl,
    sincos_table,
)

SMALL_CLIP = dict(img_size=32, frames=4)  # grid (2, 2, 2): 8 tokens, fast on CPU
BLOCK_KEYS = ("norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.q_bias", "attn.v_bias",
              "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
              "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias")


def block_shapes(prefix: str, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of one VideoMAE block (MLP ratio 4, qkv weight without bias, q/v biases)."""
    hidden = 4 * width
    shapes = [(width,), (width,), (3 * width, width), (width,), (width,), (width, width), (width,),
              (width,), (width,), (hidden, width), (hidden,), (width, hidden), (width,)]
    return {f"{prefix}{key}": shape for key, shape in zip(BLOCK_KEYS, shapes)}


def official_pretrain_shapes(size: str, target_dim: int, tubelet=2, patch=16) -> dict:
    """Key -> shape of a VideoMAE / SMILE pretraining file's `model` dict (no position table)."""
    spec = SIZES[size]
    shapes = {"encoder.patch_embed.proj.weight": (spec.width, 3, tubelet, patch, patch),
              "encoder.patch_embed.proj.bias": (spec.width,),
              "encoder.norm.weight": (spec.width,), "encoder.norm.bias": (spec.width,),
              "encoder_to_decoder.weight": (spec.decoder_width, spec.width),
              "mask_token": (1, 1, spec.decoder_width),
              "decoder.norm.weight": (spec.decoder_width,),
              "decoder.norm.bias": (spec.decoder_width,),
              "decoder.head.weight": (target_dim, spec.decoder_width),
              "decoder.head.bias": (target_dim,)}
    for i in range(spec.depth):
        shapes.update(block_shapes(f"encoder.blocks.{i}.", spec.width))
    for i in range(spec.decoder_depth):
        shapes.update(block_shapes(f"decoder.blocks.{i}.", spec.decoder_width))
    return shapes


def random_state(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=generator) for k, s in shapes.items()}


def videos_for(model, batch=2, seed=0) -> torch.Tensor:
    encoder = model.encoder if isinstance(model, PretrainModel) else model
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, 3, encoder.frames, encoder.img_size, encoder.img_size)
    return torch.randn(shape, generator=generator)


def seeded_small_model(target_dim: int) -> PretrainModel:
    """A tiny PretrainModel on SMALL_CLIP, drawn after torch.manual_seed(0), in eval mode."""
    torch.manual_seed(0)
    return PretrainModel("tiny", target_dim, **SMALL_CLIP).eval()


def random_mask(batch: int, tokens: int, masked: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    mask = np.zeros((batch, tokens), bool)
    for row in mask:
        row[rng.choice(tokens, masked, replace=False)] = True
    return torch.from_numpy(mask)


@pytest.mark.parametrize("target,dim", [("clip", 768), ("pixel", 1536)])
def test_pretrain_predicts_every_masked_token(target, dim):
    torch.manual_seed(0)
    model = build_pretrain_model("tiny", target).eval()
    assert model.grid == (8, 14, 14)
    mask = random_mask(1, 1568, 1248)
    with torch.no_grad():
        out = model(videos_for(model, batch=1), mask)
    assert out.shape == (1, 1248, dim)


def test_encoder_parameter_counts_match_vit_s_and_b():
    with torch.device("meta"):
        counts = {size: sum(p.numel() for p in PretrainModel(size, 1536).encoder.parameters())
                  for size in ("small", "base")}
    assert abs(counts["small"] - 22e6) / 22e6 < 0.01
    assert abs(counts["base"] - 87e6) / 87e6 < 0.01


@pytest.mark.parametrize("size,target_dim", [("tiny", 768), ("small", 1536)])
def test_official_pretrain_names_load_strictly(size, target_dim):
    model = PretrainModel(size, target_dim)
    official = random_state(official_pretrain_shapes(size, target_dim))
    model.load_state_dict(official, strict=True)
    loaded = model.state_dict()
    assert set(loaded) == set(official)
    key = "encoder.blocks.1.attn.v_bias"
    assert torch.equal(loaded[key], official[key])


def test_classifier_keys_follow_finetuned_layout():
    model = build_classifier("tiny", 7)
    expected = {"patch_embed.proj.weight", "patch_embed.proj.bias", "fc_norm.weight",
                "fc_norm.bias", "head.weight", "head.bias"}
    for i in range(SIZES["tiny"].depth):
        expected |= set(block_shapes(f"blocks.{i}.", 192))
    assert set(model.state_dict()) == expected
    assert model.state_dict()["head.weight"].shape == (7, 192)


def test_position_tables_are_fixed_sincos_and_not_saved():
    table = sincos_table(5, 6).numpy()
    pos, channel = np.arange(5)[:, None], np.arange(6)[None]
    angles = pos / np.power(10000.0, 2 * (channel // 2) / 6)
    expected = np.where(channel % 2 == 0, np.sin(angles), np.cos(angles))
    np.testing.assert_allclose(table, expected, atol=1e-7)
    model = PretrainModel("tiny", 768, **SMALL_CLIP)
    assert not any("pos_embed" in key for key in model.state_dict())
    assert model.encoder.pos_embed.shape == (1, 8, 192)


def test_encoder_on_visible_tokens_matches_manual_gather():
    torch.manual_seed(0)
    encoder = VideoViTEncoder(64, 2, 2, **SMALL_CLIP).eval()
    videos = videos_for(encoder)
    visible = ~random_mask(2, 8, 5)
    with torch.no_grad():
        out = encoder(videos, visible)
        tokens = encoder.patch_embed(videos) + encoder.pos_embed
        manual = tokens[visible].reshape(2, 3, 64)
        for block in encoder.blocks:
            manual = block(manual)
        manual = encoder.norm(manual)
        everything = encoder(videos, torch.ones(2, 8, dtype=torch.bool))
    torch.testing.assert_close(out, manual)
    torch.testing.assert_close(everything, encoder(videos))


def test_masked_pixels_do_not_reach_the_predictions():
    model = seeded_small_model(1536)
    videos = videos_for(model, batch=1)
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, [1, 6]] = True  # token 1: slice 0, row 0, col 1 -> frames 0-1, x 16..31
    changed = videos.clone()
    changed[:, :, 0:2, 0:16, 16:32] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(model(videos, mask), model(changed, mask))
        unmasked = ~mask
        assert not torch.allclose(model(videos, unmasked), model(changed, unmasked))


def test_predictions_come_in_token_order():
    """Decoding all tokens in token order and picking the masked ones gives the same output."""
    model = seeded_small_model(1536)
    videos = videos_for(model, batch=2)
    mask = random_mask(2, 8, 5, seed=3)
    with torch.no_grad():
        out = model(videos, mask)
        latent = model.encoder_to_decoder(model.encoder(videos, ~mask))  # (B, 3, D)
        full = model.mask_token.expand(2, 8, -1).clone()
        full[~mask] = latent.reshape(-1, latent.shape[-1])
        full = full + model.decoder_pos_embed
        decoded = model.decoder(full, 8)  # predictions for every token, in token order
    torch.testing.assert_close(out, decoded[mask].reshape(2, 5, -1), atol=1e-5, rtol=1e-5)


def test_sdpa_and_explicit_attention_agree():
    model = seeded_small_model(768)
    for param in model.parameters():  # nonzero q/v biases too
        param.data.normal_(0, 0.05)
    videos, mask = videos_for(model), random_mask(2, 8, 4)
    with torch.no_grad():
        fast = model(videos, mask)
        set_attention_impl(model, "explicit")
        reference = model(videos, mask)
    assert (fast - reference).abs().max() < 1e-5
    with pytest.raises(ValueError, match="attention_impl"):
        set_attention_impl(model, "flash")


def test_grad_checkpointing_gives_the_same_gradients():
    videos, mask = None, random_mask(2, 8, 6)
    grads = []
    for enabled in (False, True):
        torch.manual_seed(0)
        model = PretrainModel("tiny", 96, grad_checkpointing=enabled, **SMALL_CLIP)
        videos = videos_for(model) if videos is None else videos
        model(videos, mask).square().mean().backward()
        grads.append(model.encoder.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_no_weight_decay_lists_norms_biases_and_mask_token():
    model = PretrainModel("tiny", 768, **SMALL_CLIP)
    names = model.no_weight_decay()
    for name, param in model.named_parameters():
        one_dim = name.endswith(("bias", "norm1.weight", "norm2.weight", "norm.weight"))
        assert (name in names) == (one_dim or name == "mask_token"), name
    assert {"encoder.blocks.0.attn.q_bias", "encoder.norm.weight", "mask_token"} <= names
    classifier = build_classifier("tiny", 3, **SMALL_CLIP)
    assert "fc_norm.weight" in classifier.no_weight_decay()
    assert "head.weight" not in classifier.no_weight_decay()


def test_classifier_forward_and_layer_ids():
    torch.manual_seed(0)
    model = build_classifier("tiny", 5, **SMALL_CLIP)
    assert type(model.blocks[-1].drop_path).__name__ == "DropPath"  # default drop path 0.1
    assert isinstance(model.blocks[0].drop_path, torch.nn.Identity)  # linspace starts at 0
    assert model.head.weight.abs().max() < 1e-3  # scaled-down fresh head
    model.eval()
    videos = videos_for(model)
    with torch.no_grad():
        tokens = model.forward_features(videos)
        assert tokens.shape == (2, 8, 192)
        assert model(videos).shape == (2, 5)
        assert model.forward_head(tokens, pre_logits=True).shape == (2, 192)
    assert [model.layer_id(n) for n in ("patch_embed.proj.weight", "blocks.2.mlp.fc1.bias",
                                        "fc_norm.weight", "head.bias")] == [0, 3, 5, 5]


def test_bad_inputs_are_refused():
    encoder = VideoViTEncoder(64, 1, 2, **SMALL_CLIP)
    with pytest.raises(ValueError, match="videos must be"):
        encoder(torch.zeros(1, 3, 4, 64, 64))
    uneven = torch.tensor([[True] * 4 + [False] * 4, [True] * 3 + [False] * 5])
    with pytest.raises(ValueError, match="same number"):
        gather_tokens(torch.zeros(2, 8, 4), uneven)
    with pytest.raises(ValueError, match="unknown model size"):
        PretrainModel("giant", 768)
    with pytest.raises(ValueError, match="unknown target"):
        build_pretrain_model("tiny", "dino")
    with pytest.raises(ValueError, match="bool"):
        PretrainModel("tiny", 768, **SMALL_CLIP)(torch.zeros(1, 3, 4, 32, 32), torch.zeros(1, 8))


# --- foreign checkpoints -------------------------------------------------------------------


def test_pretraining_file_gives_encoder_state():
    official = random_state(official_pretrain_shapes("tiny", 1536))
    state, report = encoder_state_from_foreign({"model": official, "epoch": 799})
    assert report.layout == "pretrain"
    assert "mask_token" in report.dropped and "decoder.head.weight" in report.dropped
    encoder = VideoViTEncoder(192, 4, 3)
    encoder.load_state_dict(state, strict=True)
    assert torch.equal(encoder.blocks[3].mlp.fc2.weight,
                       official["encoder.blocks.3.mlp.fc2.weight"])


def test_finetuned_file_keeps_head_separately():
    finetuned = {f"module.{k}": v for k, v in build_classifier("tiny", 4).state_dict().items()}
    state, report = encoder_state_from_foreign({"module": finetuned})
    assert report.layout == "classifier"
    assert set(report.head) == {"head.weight", "head.bias"}
    assert "fc_norm.weight" in state and not any(k.startswith("head.") for k in state)


def test_pretrain_state_to_classifier_loads_backbone_and_keeps_fresh_head():
    torch.manual_seed(0)
    pretrained = PretrainModel("tiny", 768)
    classifier = build_classifier("tiny", 10)
    fresh_head = classifier.head.weight.clone()
    state, report = pretrain_state_to_classifier(pretrained.state_dict(), classifier)
    classifier.load_state_dict(state, strict=True)
    assert torch.equal(classifier.blocks[2].attn.qkv.weight,
                       pretrained.encoder.blocks[2].attn.qkv.weight)
    assert torch.equal(classifier.head.weight, fresh_head)
    assert set(report.fresh) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert "norm.weight" in report.dropped


def test_finetuned_state_restores_a_classifier_completely():
    source = build_classifier("tiny", 6)
    target = build_classifier("tiny", 6)
    state, report = pretrain_state_to_classifier({"_orig_mod." + k: v for k, v in
                                                  source.state_dict().items()}, target)
    target.load_state_dict(state, strict=True)
    assert report.fresh == []
    assert torch.equal(target.head.weight, source.head.weight)


def test_mismatched_or_unknown_checkpoints_are_refused():
    with pytest.raises(ValueError, match="does not fit"):
        pretrain_state_to_classifier(PretrainModel("tiny", 768).state_dict(),
                                     build_classifier("small", 10))
    with pytest.raises(ValueError, match="no known layout"):
        encoder_state_from_foreign({"conv1.weight": torch.zeros(1), "fc.bias": torch.zeros(1)})
    with pytest.raises(ValueError, match="non-tensor"):
        encoder_state_from_foreign({"patch_embed.proj.weight": [1, 2]})


def test_pretrain_forward_compiles_to_one_graph():
    """Index gathers with a host-known count: no graph break, no device sync per step."""
    import numpy as np

    from smile_train.data import masking

    model = build_pretrain_model("tiny", "pixel", img_size=32, frames=4)
    rng = np.random.default_rng(0)
    mask = torch.from_numpy(np.stack([masking.tube_mask(rng, (2, 2, 2), 0.5) for _ in range(2)]))
    videos = torch.randn(2, 3, 4, 32, 32)
    explanation = torch._dynamo.explain(model)(videos, mask, int(mask[0].sum()))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
    torch.testing.assert_close(model(videos, mask), model(videos, mask, int(mask[0].sum())))
