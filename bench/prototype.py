"""Prototypes of proposed minids speed-ups, measured side by side with stock minids.

Nothing in minids is changed: each proposal is applied to one model *instance* (methods bound
onto its modules; parameter names and the state dict are untouched, so shipped checkpoints load
into either), and stock and patched models with the same weights are timed interleaved.
It also checks that the patched model computes the same thing (max |difference| of the loss,
the logits and the gradients against stock; for rollouts, whether greedy decoding gives the
same tokens).

Proposals (`--only a,b` measures each alone; the default measures stock vs the helpful ones
together, marked *). Since measured here, rope_complex, moe_gather and sample_cdf are part of
minids itself (so against today's stock they measure ~1.00), fused AdamW is used on CUDA, and
decode_moe's idea (every expert on every token) became `MoE.dispatch_dense`, the GPU path; on a
CPU it measured 0.96x for decoding and is not used there:
  rope_complex*  apply_rope as one complex multiply, as DeepSeek-V3's reference
                 `apply_rotary_emb` does: view_as_complex(x.float().reshape(..., D/2, 2)) *
                 complex(cos, sin), view_as_real, flatten. Bit-identical results; the stock
                 version's strided slices of the permuted q/k views plus torch.stack cost ~5x more
                 (forward and backward).
  moe_gather*    MoE.dispatch: gather tokens with index_select (backward: index_add) instead of
                 x[order // K] (backward: index_put with accumulate, which sorts); put the expert
                 outputs back with an index_select by the inverse permutation instead of
                 `out[order] = ys`; and combine with (out * weights[..., None]).sum(1) instead of
                 einsum("nkc,nk->nc") (a bmm of N batches of (1 x K) @ (K x C), ~4x slower
                 forward + backward on CPU). The forward is the same arithmetic.
  fused_adamw*   minids.train.make_optimizer: torch.optim.AdamW(..., fused=True) (one fused
                 kernel over all parameters instead of a Python loop of per-tensor ops on CPU)
  decode_attn*   (rollout) Attention for one new token (T == 1 with a cache): the explicit
                 softmax(q k^T / sqrt(D)) v path instead of the CPU flash-attention kernel, which
                 is slower for a single query row
  sample_cdf     (rollout) draw the next token by inverse CDF (one uniform per row + searchsorted
                 on the cumulative probabilities) instead of torch.multinomial (an exponential per
                 vocabulary entry). Same distribution, but a different random stream: seeded
                 rollouts (and so shipped GRPO histories) would change, hence not in the default set
  moe_combine    MoE.dispatch: gather with index_select and combine with one weighted index_add
  fused_w13      MLP.forward: w1 and w3 as one GEMM over cat([w1.weight, w3.weight])
  fused_qkv      Attention.forward: wq, wk, wv as one GEMM over the concatenated weights
  decode_moe     (rollout) for few tokens, every expert on every token as two GEMMs over stacked
                 weights, weighted by dense routing weights (4x the expert FLOPs, 2 calls not 3E)

    python bench/prototype.py train                 # stock vs the * training proposals
    python bench/prototype.py train --only rope_complex,moe_gather,fused_adamw
    python bench/prototype.py rollout
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import copy
import random
import types

import torch
import torch.nn.functional as F
from einops import rearrange

from minids import generate as G
from minids.model import MLP, Attention, MoE, Transformer, apply_rope
from minids.tasks import TaskConfig, sample_problem
from minids.tokenizer import default_tokenizer
from minids.train import make_optimizer

TRAIN_PROPOSALS = ("rope_complex", "moe_gather", "fused_adamw")
ROLLOUT_PROPOSALS = ("rope_complex", "moe_gather", "decode_attn")


# ----------------------------------------------------------------------------- the proposals

def apply_rope_complex(x, cos, sin):
    """rope_complex: the same rotation as minids.model.apply_rope, as one complex multiply."""
    xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))  # (B, H, T, D/2)
    return torch.view_as_real(xc * torch.complex(cos, sin)).flatten(-2).type_as(x)  # (B, H, T, D)


def dispatch_gather(self, x, weights, indices):
    """moe_gather: MoE.dispatch with index_select gathers and a mul-sum combine."""
    N, K = indices.shape
    flat = indices.flatten()  # (N*K,)
    order = flat.argsort(stable=True)  # pairs grouped by expert
    counts = torch.bincount(flat, minlength=self.n_routed_experts).tolist()
    xs = x.index_select(0, order // K)  # (N*K, C): token of each pair, grouped by expert
    ys = torch.cat([expert(chunk) for expert, chunk in zip(self.experts, xs.split(counts))])
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    out = ys.index_select(0, inverse).view(N, K, -1)  # (N, K, C) back in (token, slot) order
    return (out * weights[..., None]).sum(1)  # (N, C)


def dispatch_combine(self, x, weights, indices):
    """moe_combine: as MoE.dispatch, gathering with index_select and combining with index_add."""
    N, K = indices.shape
    flat = indices.flatten()  # (N*K,)
    order = flat.argsort(stable=True)  # pairs grouped by expert
    counts = torch.bincount(flat, minlength=self.n_routed_experts).tolist()
    token = order // K  # (N*K,) the token of each sorted pair
    xs = x.index_select(0, token)  # (N*K, C)
    ys = torch.cat([expert(chunk) for expert, chunk in zip(self.experts, xs.split(counts))])
    w = weights.flatten().index_select(0, order)[:, None]  # (N*K, 1) gate weight of each pair
    return torch.zeros_like(x).index_add(0, token, ys * w)  # (N, C)


def dispatch_dense_small(self, x, weights, indices, threshold=256):
    """decode_moe: for few tokens, every expert on every token (two GEMMs), weighted densely."""
    N, K = indices.shape
    if N * K > threshold:
        return dispatch_gather(self, x, weights, indices)
    E = self.n_routed_experts
    w13 = torch.cat([torch.cat([e.w1.weight, e.w3.weight]) for e in self.experts])  # (E*2I, C)
    h = F.linear(x, w13).view(N, E, 2, -1)  # (N, E, 2, I)
    g = F.silu(h[:, :, 0]) * h[:, :, 1]  # (N, E, I)
    w2 = torch.stack([e.w2.weight for e in self.experts])  # (E, C, I)
    y = torch.bmm(g.transpose(0, 1), w2.transpose(1, 2))  # (E, N, C)
    dense = torch.zeros(N, E, dtype=x.dtype, device=x.device).scatter(1, indices, weights)  # (N, E)
    return torch.einsum("enc,ne->nc", y, dense)


def mlp_fused(self, x):
    """fused_w13: w2(silu(w1 x) * w3 x) with w1 and w3 as one GEMM."""
    a, b = F.linear(x, torch.cat([self.w1.weight, self.w3.weight])).chunk(2, dim=-1)
    return self.w2(F.silu(a) * b)


def make_attention_forward(proposals):
    """Attention.forward with the chosen proposals (the explicit return_attention path is stock)."""
    rope = apply_rope_complex if "rope_complex" in proposals else apply_rope

    def forward(self, x, cos, sin, mask, cache=None, layer=0, return_attention=False):
        if return_attention:
            return Attention.forward(self, x, cos, sin, mask, cache, layer, return_attention)
        H = self.n_heads
        if "fused_qkv" in proposals:
            qkv = F.linear(x, torch.cat([self.wq.weight, self.wk.weight, self.wv.weight]))  # (B, T, 3C)
            q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=H)
        else:
            q = rearrange(self.wq(x), "b t (h d) -> b h t d", h=H)
            k = rearrange(self.wk(x), "b t (h d) -> b h t d", h=H)
            v = rearrange(self.wv(x), "b t (h d) -> b h t d", h=H)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(layer, k, v)
        if "decode_attn" in proposals and q.shape[2] == 1:
            att = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5  # (B, H, 1, S)
            y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v  # (B, H, 1, D)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(rearrange(y, "b h t d -> b t (h d)")), None
    return forward


def patch(model: Transformer, proposals) -> Transformer:
    """Bind the chosen proposals onto this instance's modules (parameters untouched)."""
    for m in model.modules():
        if isinstance(m, MoE):
            if "decode_moe" in proposals:
                m.dispatch = types.MethodType(dispatch_dense_small, m)
            elif "moe_gather" in proposals:
                m.dispatch = types.MethodType(dispatch_gather, m)
            elif "moe_combine" in proposals:
                m.dispatch = types.MethodType(dispatch_combine, m)
        if isinstance(m, MLP) and "fused_w13" in proposals:
            m.forward = types.MethodType(mlp_fused, m)
        if isinstance(m, Attention) and {"fused_qkv", "rope_complex", "decode_attn"} & set(proposals):
            m.forward = types.MethodType(make_attention_forward(tuple(proposals)), m)
    return model


def optimizer(model, proposals):
    if "fused_adamw" not in proposals:
        return make_optimizer(model, 1e-3, 0.1)
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=1e-3, betas=(0.9, 0.95), fused=True)


@torch.no_grad()
def generate_cdf(model, tokenizer, prompts, max_new_tokens=64, *, temperature=1.0, stop=(), seed=None,
                 use_cache=True):
    """sample_cdf: minids.generate.generate's loop (no top-k/top-p) drawing by inverse CDF."""
    encoded = [list(p) for p in prompts]
    device = model.device
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    stop_ids = torch.tensor(G.stop_ids_for(tokenizer, stop), dtype=torch.long, device=device)
    prompt_ids, prompt_mask = G.left_pad(encoded, tokenizer.pad_id, device)
    B = len(encoded)
    cache = G.KVCache(model.config, B, prompt_ids.shape[1] + max_new_tokens, device=device)
    out_ids, out_logp, alive_steps = [], [], []
    alive = torch.ones(B, dtype=torch.bool, device=device)
    logits = model(prompt_ids, key_mask=prompt_mask, cache=cache).logits[:, -1]
    for _ in range(max_new_tokens):
        logp_all = (logits.float() / temperature).log_softmax(-1)
        cdf = logp_all.exp().cumsum(-1)  # (B, V)
        u = torch.rand(B, 1, generator=gen, device=device) * cdf[:, -1:]
        nxt = torch.searchsorted(cdf, u).squeeze(1).clamp_(max=logits.shape[-1] - 1)
        nxt = torch.where(alive, nxt, tokenizer.pad_id)
        out_ids.append(nxt)
        out_logp.append(logp_all.gather(1, nxt[:, None]).squeeze(1) * alive)
        alive_steps.append(alive)
        alive = alive & ~torch.isin(nxt, stop_ids)
        if not alive.any() or len(out_ids) == max_new_tokens:
            break
        logits = model(nxt[:, None], cache=cache).logits[:, -1]
    model.train(was_training)
    return torch.stack(out_ids, 1), torch.stack(out_logp, 1)


# ----------------------------------------------------------------------------- measurements

def check_train(stock, patched, batch, device):
    idx, tgt = batch[:, :-1], batch[:, 1:]
    outs = []
    for m in (stock, patched):
        m.zero_grad(set_to_none=True)
        o = m(idx, tgt)
        o.loss.backward()
        outs.append((o.loss.detach(), o.logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters()}))
    (l0, g0, gr0), (l1, g1, gr1) = outs
    for m in (stock, patched):
        m.zero_grad(set_to_none=True)
    return {"loss": float((l0 - l1).abs()), "logits": float((g0 - g1).abs().max()),
            "grads": max(float((gr0[n] - gr1[n]).abs().max()) for n in gr0)}


def run_train(args, device):
    mc = C.minids_config()
    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, mc.vocab_size, (B, T + 1), generator=g).to(device) for _ in range(4)]
    torch.manual_seed(args.seed)
    base = Transformer(mc).to(device).train()
    variants = {"stock": ()}
    if args.only:
        for p in args.only.split(","):
            variants[f"+{p}"] = (p,)
    else:
        variants["all proposals"] = TRAIN_PROPOSALS
    steps, diffs = {}, {}
    for name, props in variants.items():
        m = patch(copy.deepcopy(base), props)
        if props:
            diffs[name] = check_train(base, m, batches[0], device)
        opt = optimizer(m, props)
        it = iter(range(1 << 62))

        def step(m=m, opt=opt, it=it):
            b = batches[next(it) % len(batches)]
            with C.autocast(device, args.bf16):
                out = m(b[:, :-1], b[:, 1:])
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            m.update_balance_bias()
        steps[name] = step
    print(f"prototype train: batch {B} x {T}, device {device}, threads {torch.get_num_threads()}")
    wall, cpu = C.interleave(steps, device, args.rounds, args.per_round, warmup=2)
    return report(wall, cpu, diffs, B * T, device)


def run_rollout(args, device):
    tok = default_tokenizer()
    mc = C.minids_config(vocab_size=tok.vocab_size)
    rng = random.Random(args.seed)
    problems = [sample_problem(rng, TaskConfig()) for _ in range(8)]
    prompts = [tok.encode(p.prompt, allowed_special="all") for p in problems for _ in range(8)]
    torch.manual_seed(args.seed)
    base = Transformer(mc).to(device).eval()
    variants = {"stock": ()}
    if args.only:
        for p in args.only.split(","):
            variants[f"+{p}"] = (p,)
    else:
        variants["all proposals"] = ROLLOUT_PROPOSALS
    cases, diffs = {}, {}
    counter = iter(range(1 << 62))
    for name, props in variants.items():
        m = patch(copy.deepcopy(base), props)
        if props:  # the same greedy continuation, and the same logits of a batch
            with torch.no_grad():
                ids, mask = G.left_pad(prompts, tok.pad_id, device)
                a = base(ids, key_mask=mask).logits
                b = m(ids, key_mask=mask).logits
            ga = G.generate(base, tok, prompts, 16, temperature=0, stop=()).ids
            gb = G.generate(m, tok, prompts, 16, temperature=0, stop=()).ids
            diffs[name] = {"logits": float((a - b).abs().max()), "greedy_tokens_equal": bool((ga == gb).all())}
        if "sample_cdf" in props:
            def run(m=m):
                with C.autocast(device, args.bf16):
                    generate_cdf(m, tok, prompts, 64, stop=(), seed=next(counter))
        else:
            def run(m=m):
                with C.autocast(device, args.bf16):
                    G.generate(m, tok, prompts, 64, temperature=1.0, stop=(), seed=next(counter))
        cases[name] = run
    print(f"prototype rollout: 64 rows x 64 new tokens, device {device}, threads {torch.get_num_threads()}")
    wall, cpu = C.interleave(cases, device, args.rounds, args.per_round, warmup=1)
    return report(wall, cpu, diffs, 64 * 64, device)


def report(wall, cpu, diffs, tokens, device):
    results = C.summarize(wall, cpu, tokens, device)
    rows = []
    for name, r in results.items():
        d = diffs.get(name, {})
        r["max_abs_diff_vs_stock"] = d
        r["speedup_wall"] = C.paired_ratio(wall["stock"], wall[name])
        row = [name, r["wall_s_median"] * 1e3, r["rate_wall"], r["speedup_wall"], r["spread_wall"]]
        if device.type == "cpu":
            r["speedup_cpu"] = C.paired_ratio(cpu["stock"], cpu[name])
            row += [r["cpu_s_median"] * 1e3, r["speedup_cpu"]]
        row.append(", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k} {v}" for k, v in d.items()) or "-")
        rows.append(row)
    header = ["variant", "wall ms", "tokens/s", "speed-up", "spread"]
    if device.type == "cpu":
        header += ["CPU ms", "speed-up (CPU time)"]
    print(C.table(rows, header + ["vs stock (max |diff|)"]))
    return results


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("what", choices=["train", "rollout"])
    p.add_argument("--only", default="", help="comma list: measure each proposal alone instead of all together")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--per-round", type=int, default=2)
    args = p.parse_args(argv)
    device = C.setup(args)
    results = run_train(args, device) if args.what == "train" else run_rollout(args, device)
    C.write_json(args.json, {"benchmark": f"prototype_{args.what}", "only": args.only,
                             "environment": C.environment(args, device), "results": results})


if __name__ == "__main__":
    main()
