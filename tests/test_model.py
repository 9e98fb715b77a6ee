"""The tiny DeepSeek-V3-style model: config checks, attention, the MoE gate and balancing."""

import dataclasses
import random

import pytest
import torch

from minids.model import ModelConfig, MoE, Transformer
from minids.tasks import sample_document
from minids.train import TrainConfig, make_batch, pretrain


def with_(config, **changes):
    return dataclasses.replace(config, **changes)


def random_idx(config, B=2, T=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, config.vocab_size, (B, T), generator=g)


# ----------------------------------------------------------------------------- config validation

@pytest.mark.parametrize("changes, field", [
    (dict(dim=30, n_heads=4), "dim"),
    (dict(n_activated_experts=5, n_routed_experts=4), "n_activated_experts"),
    (dict(balance="foo"), "balance"),
    (dict(dim=0), "dim"),
    (dict(dim=-32), "dim"),
    (dict(n_layers=0), "n_layers"),
    (dict(n_heads=0), "n_heads"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(max_seq_len=-1), "max_seq_len"),
    (dict(inter_dim=0), "inter_dim"),
    (dict(moe_inter_dim=-4), "moe_inter_dim"),
    (dict(n_routed_experts=0), "n_routed_experts"),
    (dict(n_activated_experts=0), "n_activated_experts"),
    (dict(n_dense_layers=-1), "n_dense_layers"),
    (dict(n_shared_experts=-1), "n_shared_experts"),
    (dict(n_dense_layers=3, n_layers=2), "n_dense_layers"),
    (dict(route_scale=0.0), "route_scale"),
    (dict(bias_update_speed=-0.1), "bias_update_speed"),
])
def test_config_rejects_bad_field(tiny_config, changes, field):
    """Each invalid setting raises ValueError naming the offending field."""
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        with_(tiny_config, **changes)


def test_config_round_trips_through_dict(tiny_config):
    """to_dict/from_dict is lossless; unknown keys are rejected."""
    assert ModelConfig.from_dict(tiny_config.to_dict()) == tiny_config
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**tiny_config.to_dict(), "bogus": 1})


# ----------------------------------------------------------------------------- input checks

def test_rejects_token_ids_out_of_range(tiny_model, tiny_config):
    """Ids >= vocab_size or < 0 raise a ValueError that states the valid range."""
    V = tiny_config.vocab_size
    with pytest.raises(ValueError, match=rf"\[0, {V}\)"):
        tiny_model(torch.tensor([[1, 2, V]]))
    with pytest.raises(ValueError, match="token ids"):
        tiny_model(torch.tensor([[-1, 2, 3]]))


def test_rejects_sequence_longer_than_context(tiny_model, tiny_config):
    """More than max_seq_len tokens raise a ValueError naming max_seq_len; exactly max_seq_len is fine."""
    L = tiny_config.max_seq_len
    tiny_model(torch.zeros(1, L, dtype=torch.long))
    with pytest.raises(ValueError, match=f"max_seq_len={L}"):
        tiny_model(torch.zeros(1, L + 1, dtype=torch.long))


# ----------------------------------------------------------------------------- attention

@torch.no_grad()
def test_causal(tiny_model, tiny_config):
    """Changing token t leaves logits before t unchanged and changes later ones."""
    idx = random_idx(tiny_config, B=2, T=16)
    t = 9
    changed = idx.clone()
    changed[:, t] = (changed[:, t] + 1) % tiny_config.vocab_size
    a, b = tiny_model(idx).logits, tiny_model(changed).logits
    torch.testing.assert_close(a[:, :t], b[:, :t], atol=1e-5, rtol=0)
    assert (a[:, t:] - b[:, t:]).abs().max() > 1e-4


@torch.no_grad()
@pytest.mark.parametrize("padded", [False, True])
def test_explicit_attention_matches_sdpa(tiny_model, tiny_config, padded):
    """return_attention=True (the explicit softmax path) gives the same logits as SDPA."""
    idx = random_idx(tiny_config, B=2, T=10)
    key_mask = None
    if padded:
        key_mask = torch.ones_like(idx, dtype=torch.bool)
        key_mask[0, :3] = False  # left padding on row 0
    fast = tiny_model(idx, key_mask=key_mask)
    slow = tiny_model(idx, key_mask=key_mask, return_attention=True)
    assert fast.attentions is None and fast.qkv is None
    torch.testing.assert_close(slow.logits, fast.logits, atol=1e-5, rtol=1e-5)
    if padded:  # no real token attends to a padding key
        for att in slow.attentions:
            assert att[0, :, 3:, :3].abs().max() == 0


@torch.no_grad()
def test_attention_probabilities_and_qkv(tiny_model, tiny_config):
    """Per layer: (B,H,T,T) causal probabilities (rows sum to 1, zero above the diagonal) and q,k,v."""
    B, T = 3, 11
    c = tiny_config
    out = tiny_model(random_idx(c, B=B, T=T), return_attention=True)
    assert len(out.attentions) == c.n_layers and len(out.qkv) == c.n_layers
    for att, qkv in zip(out.attentions, out.qkv):
        assert att.shape == (B, c.n_heads, T, T)
        torch.testing.assert_close(att.sum(-1), torch.ones(B, c.n_heads, T))
        assert (att >= 0).all()
        assert att.triu(diagonal=1).abs().max() == 0
        assert set(qkv) == {"q", "k", "v"}
        for name in "qkv":
            assert qkv[name].shape == (B, c.n_heads, T, c.head_dim)


@torch.no_grad()
def test_attentions_fit_bertviz(tiny_model, tok):
    """With batch 1 each attention is a (1,H,T,T) tensor, which bertviz.head_view renders."""
    text = "<|bos|>Q:7+5-9=?"
    ids = tok.encode(text, allowed_special="all")
    out = tiny_model(torch.tensor([ids]), return_attention=True)
    for att in out.attentions:
        assert isinstance(att, torch.Tensor) and att.shape == (1, tiny_model.config.n_heads, len(ids), len(ids))
    bertviz = pytest.importorskip("bertviz")
    html = bertviz.head_view(out.attentions, tok.pieces(ids), html_action="return")
    assert "<script" in html.data


# ----------------------------------------------------------------------------- the gate

@torch.no_grad()
def test_gate_weights_sum_to_route_scale_over_distinct_experts(tiny_config):
    """Each token gets K distinct experts whose weights sum to route_scale."""
    torch.manual_seed(0)
    c = with_(tiny_config, route_scale=2.5)
    model = Transformer(c).eval()
    B, T = 2, 13
    out = model(random_idx(c, B=B, T=T))
    assert len(out.routing) == c.n_moe_layers
    for trace in out.routing:
        K = c.n_activated_experts
        assert trace.experts.shape == (B, T, K) and trace.weights.shape == (B, T, K)
        assert trace.scores.shape == (B, T, c.n_routed_experts)
        for row in trace.experts.reshape(-1, K).tolist():
            assert len(set(row)) == K
        torch.testing.assert_close(trace.weights.sum(-1), torch.full((B, T), 2.5))
        assert (trace.weights > 0).all()
        assert trace.load.sum() == B * T * K


@torch.no_grad()
def test_load_counts_only_real_tokens(tiny_model, tiny_config):
    """With key_mask False on padding, the expert load sums to (real tokens) * K."""
    idx = random_idx(tiny_config, B=2, T=10)
    key_mask = torch.ones_like(idx, dtype=torch.bool)
    key_mask[0, :4] = False
    key_mask[1, :1] = False
    out = tiny_model(idx, key_mask=key_mask)
    n_real = int(key_mask.sum())
    for trace in out.routing:
        assert trace.load.sum() == n_real * tiny_config.n_activated_experts
        # and the load is exactly the count of real tokens choosing each expert
        expected = torch.bincount(trace.experts[key_mask].flatten(), minlength=tiny_config.n_routed_experts)
        assert torch.equal(trace.load, expected)


@torch.no_grad()
def test_bias_steers_choice_not_weights(tiny_model, tiny_config):
    """A large aux-free bias on one expert makes every token choose it, but the
    weights are still computed from the *unbiased* scores."""
    moe = tiny_model.moe_layers[0]
    favoured = 2
    moe.gate.bias[favoured] = 10.0
    out = tiny_model(random_idx(tiny_config, B=2, T=12))
    trace = out.routing[0]
    assert (trace.experts == favoured).any(-1).all()
    assert trace.bias[favoured] == 10.0
    chosen = trace.scores.gather(-1, trace.experts)  # unbiased affinities of the chosen experts
    expected = chosen / chosen.sum(-1, keepdim=True) * tiny_config.route_scale
    torch.testing.assert_close(trace.weights, expected)
    # the bias really did override the scores: the favoured expert is not always a top-K by score
    top_by_score = trace.scores.topk(tiny_config.n_activated_experts, -1).indices
    assert not (top_by_score == favoured).any(-1).all()


def test_update_balance_bias_hand_step(tiny_model, tiny_config):
    """One nudge: bias += speed * sign(mean load - load)."""
    speed = tiny_config.bias_update_speed
    tiny_model(random_idx(tiny_config))
    moe = tiny_model.moe_layers[0]
    moe.last_trace.load = torch.tensor([5, 1, 2, 0])  # mean 2
    moe.gate.bias.fill_(0.5)
    tiny_model.update_balance_bias()
    expected = 0.5 + speed * torch.tensor([-1.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(moe.gate.bias, expected)


@pytest.mark.parametrize("balance", ["none", "aux_loss"])
def test_update_balance_bias_is_noop_without_aux_free(tiny_config, balance):
    """For balance='none' / 'aux_loss' the bias never moves (and never steers)."""
    torch.manual_seed(0)
    model = Transformer(with_(tiny_config, balance=balance))
    model(random_idx(tiny_config))
    moe = model.moe_layers[0]
    moe.last_trace.load = torch.tensor([5, 1, 2, 0])
    model.update_balance_bias()
    assert torch.equal(moe.gate.bias, torch.zeros(tiny_config.n_routed_experts))


def _late_load(balance, seed, tok, tiny_config):
    """Pretrain briefly and return the mean load fractions of the first MoE layer over the last 10 steps."""
    torch.manual_seed(seed)
    model = Transformer(with_(tiny_config, balance=balance, bias_update_speed=0.05))
    config = TrainConfig(steps=50, batch_size=16, lr=1e-2, min_lr=1e-3, warmup_steps=5, eval_every=0, seed=seed)
    result = pretrain(model, tok, config=config, progress=False)
    return torch.tensor([h["load"][0] for h in result.history[-10:]]).mean(0)  # (E,)


def test_aux_free_keeps_loads_flatter_than_none(tok, tiny_config):
    """Same seed and data: 'none' routing collapses, aux-free bias keeps experts near-evenly loaded."""
    free = _late_load("aux_free", 1, tok, tiny_config)
    none = _late_load("none", 1, tok, tiny_config)
    cv = lambda load: (load.std() / load.mean()).item()  # noqa: E731
    # (measured over seeds 0-5: aux_free max 0.27-0.36, cv <= 0.33; none max 0.5, cv >= 0.79)
    assert free.max() < 0.4
    assert none.max() > 0.45  # K=2 of 4 experts: 0.5 means one expert takes every token
    assert cv(free) < 0.5 * cv(none)


# ----------------------------------------------------------------------------- aux loss

def test_aux_loss_in_training_mode_only(tiny_config):
    """balance='aux_loss': a positive scalar with a gradient into the gate in train mode; None in eval."""
    torch.manual_seed(0)
    model = Transformer(with_(tiny_config, balance="aux_loss", aux_loss_alpha=0.1)).train()
    idx = random_idx(tiny_config)
    out = model(idx, idx)
    assert out.aux_loss is not None and out.aux_loss.dim() == 0 and out.aux_loss.item() > 0
    torch.testing.assert_close(out.loss, out.ce_loss + out.aux_loss)
    out.aux_loss.backward()
    grad = model.moe_layers[0].gate.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(idx, idx)
    assert out.aux_loss is None
    torch.testing.assert_close(out.loss, out.ce_loss)


@pytest.mark.parametrize("balance", ["aux_free", "none"])
def test_no_aux_loss_for_other_modes(tiny_config, balance):
    """Only balance='aux_loss' produces an aux loss, even in training mode."""
    torch.manual_seed(0)
    model = Transformer(with_(tiny_config, balance=balance)).train()
    idx = random_idx(tiny_config)
    assert model(idx, idx).aux_loss is None


# ----------------------------------------------------------------------------- MoE dispatch

@torch.no_grad()
def test_dispatch_matches_per_token_loop(tiny_config):
    """The sorted, batched dispatch equals a naive loop: sum_k w_k * expert_k(x) + shared(x)."""
    torch.manual_seed(0)
    c = with_(tiny_config, n_routed_experts=6, n_activated_experts=3, route_scale=1.7)
    moe = MoE(c)
    torch.nn.init.normal_(moe.gate.weight, std=0.5)  # spread routing so every expert gets tokens
    x = torch.randn(3, 7, c.dim)
    y = moe(x)
    weights, indices = moe.last_trace.weights, moe.last_trace.experts
    assert len(indices.unique()) == c.n_routed_experts
    expected = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            xt = x[b, t]
            acc = moe.shared_experts(xt)
            for w, e in zip(weights[b, t], indices[b, t]):
                acc = acc + w * moe.experts[int(e)](xt)
            expected[b, t] = acc
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- learning and size

def test_overfits_one_batch(tok, tiny_config):
    """The model can memorise a tiny batch: loss < 0.1 within 200 steps."""
    torch.manual_seed(0)
    model = Transformer(tiny_config).train()
    rng = random.Random(0)
    idx, targets, mask = make_batch(tok, [sample_document(rng) for _ in range(2)], mask_question=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = None
    for step in range(200):
        out = model(idx, targets, loss_mask=mask)
        first = first if first is not None else out.loss.item()
        if out.loss.item() < 0.1:
            break
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.update_balance_bias()
    assert first > 3.0
    assert out.loss.item() < 0.1, f"loss {out.loss.item():.3f} after {step} steps"


def test_num_params(tiny_config):
    """total = sum of numel; active leaves out the (E - K) idle routed experts of each MoE layer."""
    c = with_(tiny_config, n_routed_experts=5, n_activated_experts=2, n_shared_experts=2, n_layers=3)
    model = Transformer(c)
    C, V = c.dim, c.vocab_size
    expert = 3 * C * c.moe_inter_dim  # w1, w2, w3
    attn_block = 4 * C * C + 2 * C  # wq wk wv wo + two RMSNorm gains
    dense = attn_block + 3 * C * c.inter_dim
    shared = 3 * C * c.n_shared_experts * c.moe_inter_dim  # the shared experts form one wider MLP
    moe = attn_block + c.n_routed_experts * C + c.n_routed_experts * expert + shared  # gate + experts
    total = 2 * V * C + C + c.n_dense_layers * dense + c.n_moe_layers * moe
    counts = model.num_params()
    assert counts["total"] == total == sum(p.numel() for p in model.parameters())
    assert counts["active"] == total - c.n_moe_layers * (c.n_routed_experts - c.n_activated_experts) * expert


# ----------------------------------------------------------------------------- faster paths equal the readable ones

def test_rope_is_the_pairwise_rotation():
    """apply_rope (one complex multiply) equals the rotation written out pair by pair, and keeps norms."""
    from minids.model import apply_rope, rope_tables
    cos, sin = rope_tables(8, 16, 10000.0)
    x = torch.randn(2, 3, 16, 8)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    expected = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    torch.testing.assert_close(apply_rope(x, cos, sin), expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))
    q, k = torch.randn(8), torch.randn(8)  # q_t . k_s depends only on t - s
    def score(t, s):
        return apply_rope(q[None], cos[t:t + 1], sin[t:t + 1]) @ apply_rope(k[None], cos[s:s + 1], sin[s:s + 1]).T
    torch.testing.assert_close(score(5, 2), score(12, 9))


def test_dense_dispatch_equals_sorted_dispatch(tiny_config):
    """MoE.impl="dense" (no host syncs, for GPUs) gives the sorted dispatch's outputs and gradients."""
    torch.manual_seed(0)
    c = with_(tiny_config, n_routed_experts=6, n_activated_experts=3, route_scale=1.7)
    results = []
    for impl in ("sorted", "dense"):
        torch.manual_seed(0)
        moe = MoE(c)
        moe.impl = impl
        torch.nn.init.normal_(moe.gate.weight, std=0.5)
        x = torch.randn(3, 7, c.dim, requires_grad=True)
        y = moe(x)
        y.square().sum().backward()
        results.append((y, x.grad, {n: p.grad for n, p in moe.named_parameters()}))
    (y1, gx1, gp1), (y2, gx2, gp2) = results
    torch.testing.assert_close(y2, y1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gx2, gx1, atol=1e-6, rtol=1e-5)
    assert gp1.keys() == gp2.keys()
    for name in gp1:
        torch.testing.assert_close(gp2[name], gp1[name], atol=1e-6, rtol=1e-5, msg=name)


def test_whole_model_same_with_either_dispatch(tiny_model, tiny_config):
    idx = random_idx(tiny_config, B=3, T=20)
    outs = []
    for impl in ("sorted", "dense", "auto"):
        for m in tiny_model.moe_layers:
            m.impl = impl
        outs.append(tiny_model(idx).logits)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(outs[2], outs[0])  # auto is sorted on a CPU
    tiny_model.moe_layers[0].impl = "fast"
    with pytest.raises(ValueError, match="MoE.impl"):
        tiny_model(idx)


def test_loss_only_gives_the_same_loss_and_gradients(tiny_model, tiny_config):
    """forward(loss_only=True) runs the head only where loss_mask is set: the same loss, the same gradients."""
    idx = random_idx(tiny_config, B=3, T=20)
    targets = idx.roll(-1, dims=1)
    loss_mask = torch.rand(3, 20, generator=torch.Generator().manual_seed(1)) < 0.5
    tiny_model.train()
    results = []
    for loss_only in (False, True):
        tiny_model.zero_grad()
        out = tiny_model(idx, targets, loss_mask=loss_mask, loss_only=loss_only)
        out.loss.backward()
        results.append((out, {n: p.grad.clone() for n, p in tiny_model.named_parameters() if p.grad is not None}))
    (full, g_full), (only, g_only) = results
    assert only.logits is None and full.logits.shape == (3, 20, tiny_config.vocab_size)
    torch.testing.assert_close(only.loss, full.loss, atol=1e-6, rtol=1e-6)
    assert g_full.keys() == g_only.keys()
    for name in g_full:
        torch.testing.assert_close(g_only[name], g_full[name], atol=1e-6, rtol=1e-5, msg=name)
    assert [t.load.tolist() for t in only.routing] == [t.load.tolist() for t in full.routing]
    # with no mask every position carries loss
    torch.testing.assert_close(tiny_model(idx, targets, loss_only=True).loss, tiny_model(idx, targets).loss)
