"""Multi-head Latent Attention: both decoding paths compute the same thing, the cache is the latent."""

import dataclasses
import random

import pytest
import torch

from minids.generate import generate, left_pad
from minids.kvcache import KVCache, kv_cache_numbers_per_token
from minids.mla import MLA, matched_mla_config, mla_params_per_layer
from minids.model import ModelConfig, Transformer
from minids.tasks import sample_document
from minids.train import make_batch

PROMPTS = ["<|bos|>Q:7+5=?", "<|bos|>Q:1+2-3+4-5+6=?<think>1+2=3", "<|bos|>Q:9=?"]


@pytest.fixture(scope="module")
def mla_config(tiny_config):
    return dataclasses.replace(tiny_config, attention="mla", kv_lora_rank=12, qk_nope_head_dim=8,
                               qk_rope_head_dim=4, v_head_dim=12)


@pytest.fixture(params=[0, 10], ids=["full-rank-q", "low-rank-q"])
def mla_model(request, mla_config):
    torch.manual_seed(0)
    return Transformer(dataclasses.replace(mla_config, q_lora_rank=request.param)).eval()


@pytest.fixture
def impl():
    """Set MLA.impl for one test, and put it back."""
    def use(name):
        MLA.impl = name
    yield use
    MLA.impl = "auto"


def test_config_checks_mla_fields(mla_config):
    for changes, field in [(dict(attention="gqa"), "attention"), (dict(kv_lora_rank=0), "kv_lora_rank"),
                           (dict(qk_rope_head_dim=3), "qk_rope_head_dim"), (dict(q_lora_rank=-1), "q_lora_rank"),
                           (dict(v_head_dim=1.5), "v_head_dim"), (dict(mtp_depth=-1), "mtp_depth"),
                           (dict(mtp_loss_weight=float("nan")), "mtp_loss_weight")]:
        with pytest.raises(ValueError, match=rf"\b{field}\b"):
            dataclasses.replace(mla_config, **changes)


def test_old_checkpoint_configs_still_load(tiny_config):
    """A config dict saved before MLA/MTP existed gives a multi-head model without MTP."""
    old = {k: v for k, v in tiny_config.to_dict().items()
           if k not in ("attention", "q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
                        "v_head_dim", "mtp_depth", "mtp_loss_weight")}
    c = ModelConfig.from_dict(old)
    assert c.attention == "mha" and c.mtp_depth == 0 and c == tiny_config


def test_layer_has_v3_names_and_counted_params(mla_model):
    attn = mla_model.layers[0].attn
    names = {n.split(".")[0] for n, _ in attn.named_parameters()}
    q = {"wq"} if attn.q_lora_rank == 0 else {"wq_a", "q_norm", "wq_b"}
    assert names == q | {"wkv_a", "kv_norm", "wkv_b", "wo"}
    assert sum(p.numel() for p in attn.parameters()) == mla_params_per_layer(mla_model.config)


@torch.no_grad()
@pytest.mark.parametrize("path", ["naive", "absorb"])
def test_cached_decoding_equals_uncached(mla_model, tok, impl, path):
    """Left-padded prompts then one token at a time through the latent cache == the full sequence at once."""
    impl(path)
    ids, mask = left_pad([tok.encode(p, allowed_special="all") for p in PROMPTS], tok.pad_id, "cpu")
    B, P = ids.shape
    extra = torch.randint(0, 100, (B, 6))
    full = mla_model(torch.cat([ids, extra], 1), key_mask=torch.cat([mask, torch.ones_like(extra, dtype=torch.bool)], 1))
    cache = KVCache(mla_model.config, B, P + 6)
    steps = [mla_model(ids, key_mask=mask, cache=cache).logits]
    steps += [mla_model(extra[:, t:t + 1], cache=cache).logits for t in range(6)]
    real = torch.cat([mask, torch.ones_like(extra, dtype=torch.bool)], 1)
    torch.testing.assert_close(torch.cat(steps, 1)[real], full.logits[real], atol=2e-5, rtol=1e-4)


@torch.no_grad()
def test_naive_and_absorb_agree(mla_model, tok, impl):
    """Re-expanding the latent and folding wkv_b into query and output give the same logits,
    attention probabilities and greedy tokens; the attention comes per head either way."""
    idx = torch.randint(0, tok.vocab_size, (2, 20))
    outs = {}
    for path in ("naive", "absorb"):
        impl(path)
        outs[path] = mla_model(idx, return_attention=True)
        torch.testing.assert_close(mla_model(idx).logits, outs[path].logits, atol=1e-5, rtol=1e-5)  # sdpa
    H = mla_model.config.n_heads
    torch.testing.assert_close(outs["absorb"].logits, outs["naive"].logits, atol=1e-5, rtol=1e-4)
    for a, n in zip(outs["absorb"].attentions, outs["naive"].attentions):
        assert a.shape == n.shape == (2, H, 20, 20)
        torch.testing.assert_close(a, n, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.sum(-1), torch.ones(2, H, 20))
    # the absorbed path attends to the latent, one "head" all query heads share
    assert outs["absorb"].qkv[0]["k"].shape == (2, 1, 20, 12 + 4)
    tokens = {}
    for path in ("naive", "absorb"):
        impl(path)
        tokens[path] = generate(mla_model, tok, PROMPTS, 12, temperature=0, stop=()).ids
    assert torch.equal(tokens["naive"], tokens["absorb"])


@torch.no_grad()
def test_rope_key_is_shared_and_position_only_in_it(mla_config):
    """Shifting a whole sequence by some positions leaves the logits unchanged (relative positions),
    and the cache holds one RoPE key per token, not one per head."""
    torch.manual_seed(0)
    model = Transformer(mla_config).eval()
    ids = torch.randint(3, 100, (1, 10))
    cache = KVCache(mla_config, 1, 20)
    model(ids, cache=cache)
    assert cache.k.shape == (mla_config.n_layers, 1, 1, 20, mla_config.qk_rope_head_dim)
    assert cache.v.shape == (mla_config.n_layers, 1, 1, 20, mla_config.kv_lora_rank)
    shifted = KVCache(mla_config, 1, 20)
    pad = torch.zeros(1, 5, dtype=torch.long)
    a = model(torch.cat([pad, ids], 1), key_mask=torch.cat([pad.bool(), torch.ones_like(ids).bool()], 1),
              cache=shifted).logits[:, 5:]
    torch.testing.assert_close(a, model(ids).logits, atol=2e-5, rtol=1e-4)


def test_bytes_per_token_match_the_cache_tensors(tiny_config, mla_config):
    for config in (tiny_config, mla_config, dataclasses.replace(mla_config, mtp_depth=1)):
        model = Transformer(config)
        cache = KVCache(config, 3, 40)
        assert model.kv_cache_bytes_per_token() == cache.bytes_per_token() == cache.nbytes // (3 * 40)
        assert model.kv_cache_bytes_per_token(torch.bfloat16) * 2 == model.kv_cache_bytes_per_token()
    L, H, D = tiny_config.n_layers, tiny_config.n_heads, tiny_config.head_dim
    assert Transformer(tiny_config).kv_cache_bytes_per_token() == 4 * L * 2 * H * D
    r, R = mla_config.kv_lora_rank, mla_config.qk_rope_head_dim
    assert Transformer(mla_config).kv_cache_bytes_per_token() == 4 * L * (r + R)


def test_cache_formulas_for_v3():
    """DeepSeek-V3: 61 layers, 128 heads of 128; MLA caches 512 + 64 numbers per layer."""
    assert kv_cache_numbers_per_token("mla", 61, 128, 128, kv_lora_rank=512, qk_rope_head_dim=64) == 61 * 576
    assert kv_cache_numbers_per_token("mha", 61, 128, 128) == 61 * 32768
    assert kv_cache_numbers_per_token("gqa", 61, 128, 128, n_kv_heads=8) == 61 * 2 * 8 * 128
    assert kv_cache_numbers_per_token("mqa", 61, 128, 128) == 61 * 256
    with pytest.raises(ValueError, match="n_kv_heads"):
        kv_cache_numbers_per_token("gqa", 61, 128, 128, n_kv_heads=3)
    with pytest.raises(ValueError, match="kind"):
        kv_cache_numbers_per_token("mxa", 61, 128, 128)


def test_empty_cache_memory_is_never_read(mla_config, tiny_config, tok):
    """The growing cache is torch.empty: poison it with NaN and decoding is unchanged."""
    torch.manual_seed(0)
    for config in (tiny_config, mla_config):
        model = Transformer(config).eval()
        ids, mask = left_pad([tok.encode(p, allowed_special="all") for p in PROMPTS], tok.pad_id, "cpu")
        clean, poisoned = KVCache(config, 3, 30), KVCache(config, 3, 30)
        clean.k.zero_(), clean.v.zero_(), poisoned.k.fill_(float("nan")), poisoned.v.fill_(float("nan"))
        with torch.no_grad():
            a = model(ids, key_mask=mask, cache=clean).logits
            b = model(ids, key_mask=mask, cache=poisoned).logits
        assert torch.equal(a, b) and not b.isnan().any()


def test_matched_config_has_mha_parameters(tiny_config):
    mla = matched_mla_config(tiny_config)
    a, b = Transformer(tiny_config).num_params()["total"], Transformer(mla).num_params()["total"]
    assert mla.attention == "mla" and b <= a
    step = mla_params_per_layer(dataclasses.replace(mla, kv_lora_rank=mla.kv_lora_rank + 1)) - \
        mla_params_per_layer(mla)
    assert a - b < step * mla.n_layers  # one more rank would overshoot


def test_mla_trains(tok, mla_config):
    """Loss falls within a few steps of AdamW on a small batch."""
    torch.manual_seed(0)
    model = Transformer(mla_config).train()
    rng = random.Random(0)
    idx, targets, mask = make_batch(tok, [sample_document(rng) for _ in range(4)], mask_question=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        out = model(idx, targets, loss_mask=mask)
        losses.append(out.loss.item())
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert losses[-1] < 0.6 * losses[0], losses


def test_cli_flags_build_the_model(tok):
    from minids.__main__ import _model_config, build_parser
    args = build_parser().parse_args(["pretrain", "--attention", "mla", "--mtp-depth", "1"])
    config = _model_config(args, tok.vocab_size)
    assert config.attention == "mla" and config.mtp_depth == 1 and config.kv_lora_rank > 0
    args = build_parser().parse_args(["r1zero", "--attention", "mla", "--kv-lora-rank", "24"])
    assert _model_config(args, tok.vocab_size).kv_lora_rank == 24
    assert _model_config(build_parser().parse_args(["pretrain"]), tok.vocab_size).attention == "mha"


# ----------------------------------------------------------------------------- on a GPU: CUDA graphs

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
@pytest.mark.parametrize("bf16", [False, True])
def test_graphed_mla_generation_equals_eager(mla_config, tok, bf16):
    """The recorded decoding step reads the static latent cache as the eager loop reads the growing one."""
    import contextlib
    torch.manual_seed(0)
    model = Transformer(mla_config).cuda().eval()
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    with ctx():
        graphed = generate(model, tok, PROMPTS, 16, temperature=0, stop=())
        eager = generate(model, tok, PROMPTS, 16, temperature=0, stop=(), cuda_graph=False)
    same = (graphed.ids == eager.ids).float().mean()
    assert same == 1 if not bf16 else same > 0.9  # bf16 rounding may split a near-tie


@cuda
def test_graphed_pretraining_with_mla_and_mtp(mla_config, tok):
    """Graphed training steps of an MLA + MTP model track the eager ones, mtp_loss included."""
    from minids.tasks import TaskConfig
    from minids.train import TrainConfig, pretrain
    runs = []
    for graph in (True, False):
        torch.manual_seed(0)
        config = TrainConfig(steps=15, batch_size=8, eval_every=0, warmup_steps=3, device="cuda",
                             cuda_graph=graph, bf16=False)
        runs.append(pretrain(Transformer(dataclasses.replace(mla_config, mtp_depth=1)), tok, TaskConfig(), config,
                             progress=False).history)
    for key in ("loss", "mtp_loss"):
        assert [r[key] for r in runs[0]] == pytest.approx([r[key] for r in runs[1]], abs=2e-3)
