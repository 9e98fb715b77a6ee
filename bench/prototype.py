"""Prototypes of proposed minids speed-ups, measured side by side with stock minids.

Nothing in minids is changed: each proposal is applied to one model *instance* (methods bound
onto its modules; parameter names and the state dict are untouched, so shipped checkpoints load
into either), and stock and patched models with the same weights are timed interleaved.
It also checks that the patched model computes the same thing (max |difference| of the loss,
the logits and the gradients against stock; for rollouts, whether greedy decoding gives the
same tokens).

Proposals (`--only a,b` measures each alone; the default measures stock vs the helpful ones
together, marked *). Three earlier proposals measured here are now part of minids itself and
were removed from this file: RoPE as one complex multiply (`minids.model.apply_rope`),
index_select gathers with one weighted index_add combine (`MoE.dispatch`) and inverse-CDF sampling
(`minids.generate.sample`). Fused AdamW is what minids uses on CUDA (on a CPU it uses the
bit-identical foreach AdamW), and decode_moe's idea became `MoE.dispatch_dense`, the GPU path:
  fused_adamw*   torch.optim.AdamW(..., fused=True) on the groups of minids.train.make_optimizer
                 (one fused kernel over all parameters)
  decode_attn*   (rollout) Attention for one new token (T == 1 with a cache): the explicit
                 softmax(q k^T / sqrt(D)) v path instead of the CPU flash-attention kernel, which
                 is slower for a single query row
  fused_w13      MLP.forward: w1 and w3 as one GEMM over cat([w1.weight, w3.weight])
  fused_qkv      Attention.forward: wq, wk, wv as one GEMM over the concatenated weights
  decode_moe     (rollout) for few tokens, `MoE.dispatch_dense` (every expert on every token,
                 4x the expert FLOPs, 3 GEMMs instead of 3E); measured 0.96-1.0x on a CPU

    python bench/prototype.py train                 # stock vs the * training proposals
    python bench/prototype.py train --only fused_adamw,fused_w13
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
from minids.train import make_optimizer, train_step

TRAIN_PROPOSALS = ("fused_adamw",)
ROLLOUT_PROPOSALS = ("decode_attn",)


# ----------------------------------------------------------------------------- the proposals

def dispatch_dense_small(self, x, weights, indices, threshold=256):
    """decode_moe: for few tokens, every expert on every token (`MoE.dispatch_dense`)."""
    if indices.numel() > threshold:
        return MoE.dispatch(self, x, weights, indices)
    return MoE.dispatch_dense(self, x, weights, indices)


def mlp_fused(self, x):
    """fused_w13: w2(silu(w1 x) * w3 x) with w1 and w3 as one GEMM."""
    a, b = F.linear(x, torch.cat([self.w1.weight, self.w3.weight])).chunk(2, dim=-1)
    return self.w2(F.silu(a) * b)


def make_attention_forward(proposals):
    """Attention.forward with the chosen proposals (the explicit return_attention path is stock)."""
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
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
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
        if isinstance(m, MLP) and "fused_w13" in proposals:
            m.forward = types.MethodType(mlp_fused, m)
        if isinstance(m, Attention) and {"fused_qkv", "decode_attn"} & set(proposals):
            m.forward = types.MethodType(make_attention_forward(tuple(proposals)), m)
    return model


def optimizer(model, proposals):
    opt = make_optimizer(model, 1e-3, 0.1)
    if "fused_adamw" not in proposals:
        return opt
    groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups]
    return torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95), fused=True)


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


def chosen(args, default) -> dict[str, tuple]:
    """{variant name: proposals}: stock, then each of --only alone, or the default set together."""
    variants = {"stock": ()}
    if args.only:
        variants.update({f"+{p}": (p,) for p in args.only.split(",")})
    else:
        variants["all proposals"] = default
    return variants


def run_train(args, device):
    mc = C.minids_config()
    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, mc.vocab_size, (B, T + 1), generator=g).to(device) for _ in range(4)]
    torch.manual_seed(args.seed)
    base = Transformer(mc).to(device).train()
    variants = chosen(args, TRAIN_PROPOSALS)
    steps, diffs = {}, {}
    for name, props in variants.items():
        m = patch(copy.deepcopy(base), props)
        if props:
            diffs[name] = check_train(base, m, batches[0], device)
        opt = optimizer(m, props)
        it = iter(range(1 << 62))

        def step(m=m, opt=opt, it=it):
            b = batches[next(it) % len(batches)]
            train_step(m, opt, b[:, :-1], b[:, 1:], None, None, grad_clip=1.0, bf16=args.bf16)
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
    variants = chosen(args, ROLLOUT_PROPOSALS)
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
