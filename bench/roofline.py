"""Roofline: the machine's matmul throughput at the model's GEMM shapes, and the training step's MFU.

Part 1, GEMMs. For every distinct matrix multiply of one minids training step (default model,
N = batch x seq = 32 x 64 = 2048 tokens) it times the forward GEMM and the two backward GEMMs
autograd runs for an `nn.Linear` y = x W^T, x (M, K), W (Nout, K):
    fwd    y  = x  @ W^T      (M, K) x (K, Nout)
    bwd dX dX = dY @ W        (M, Nout) x (Nout, K)
    bwd dW dW = dY^T @ x      (Nout, M) x (M, K)
each 2*M*K*Nout FLOPs, and reports GFLOP/s. The shapes:
    attention projections wq/wk/wv/wo   (N, 128) x (128, 128)     4 per layer
    dense FFN w1, w3 / w2               (N, 128) x (128, 256) / (N, 256) x (256, 128)
    shared expert w1, w3 / w2           (N, 128) x (128, 64)  / (N, 64) x (64, 128)
    one routed expert w1, w3 / w2       (N*K/E, 128) x (128, 64) / (N*K/E, 64) x (64, 128)
                                        (N*K/E = 512 rows when the load is balanced; 8 per layer)
    gate                                (N, 128) x (128, 8)
    attention scores / values (bmm)     (B*H) x (T, D) x (D, T) / (B*H) x (T, T) x (T, D)
    vocabulary head                     (N, 128) x (128, 512)
plus one large square GEMM (default 1024^3 on CPU, 8192^3 on CUDA) as the matmul peak.

Part 2, MFU. The step's model FLOPs, as in PaLM (Chowdhery et al. 2022, appendix B):
    FLOPs = 6 * N_active * tokens  +  12 * n_layers * dim * seq * tokens
  * 6 * N_active * tokens: every weight that touches a token costs one multiply-add (2 FLOPs)
    in the forward pass and twice that in the backward (dX and dW), so 2 + 4 = 6 FLOPs per
    weight per token. N_active counts the weights one token uses: all attention, dense FFN,
    shared-expert, gate and head weights, plus only K of the E routed experts per MoE layer
    (`Transformer.num_params()["active"]`), minus the embedding table (a lookup, not a matmul).
  * 12 * L * C * T per token: attention's QK^T and AV are each 2*T*C FLOPs per token per layer
    forward (T keys, C = H*D), so 4*T*C forward and 3x that with the backward. The full T x T
    square is counted (the masked SDPA here computes all of it, and it is PaLM's convention).
The same total is also summed from the GEMM list above (a cross-check; it differs only by the
norms and elementwise work that the 6N rule counts as weights).

Then
    MFU           = FLOPs / step time / (peak GFLOP/s of the large square GEMM)
    GEMM-bound    = sum over the step's GEMMs of their measured times (at the model's shapes)
    shape MFU     = GEMM-bound time / step time: the fraction of the step spent doing the
                    matmuls it must do, at the speed this machine does them at these shapes;
                    1 - shape MFU is overhead (elementwise ops, indexing, Python, optimiser).
GEMM timings and training steps are interleaved round by round; medians are reported.

    python bench/roofline.py
    python bench/roofline.py --device cuda --bf16
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import sys

import torch
import torch.nn.functional as F

from minids.model import Transformer
from minids.train import make_optimizer, make_train_step


def gemm_list(mc, B, T):
    """[(name, M, K, Nout, count per step, kind)] for one forward of the minids model; kind
    'linear' (fwd + 2 bwd GEMMs measured) or 'bmm' (attention; batched)."""
    N, Cdim, H, D = B * T, mc.dim, mc.n_heads, mc.head_dim
    rows_expert = max(1, N * mc.n_activated_experts // mc.n_routed_experts)
    L, Ld, Lm = mc.n_layers, mc.n_dense_layers, mc.n_moe_layers
    shared = mc.n_shared_experts * mc.moe_inter_dim
    g = [("attn proj wq/wk/wv/wo", N, Cdim, Cdim, 4 * L, "linear")]
    if Ld:
        g += [("dense FFN w1/w3", N, Cdim, mc.inter_dim, 2 * Ld, "linear"),
              ("dense FFN w2", N, mc.inter_dim, Cdim, Ld, "linear")]
    if Lm:
        if shared:
            g += [("shared expert w1/w3", N, Cdim, shared, 2 * Lm, "linear"),
                  ("shared expert w2", N, shared, Cdim, Lm, "linear")]
        g += [("routed expert w1/w3", rows_expert, Cdim, mc.moe_inter_dim, 2 * Lm * mc.n_routed_experts, "linear"),
              ("routed expert w2", rows_expert, mc.moe_inter_dim, Cdim, Lm * mc.n_routed_experts, "linear"),
              ("gate", N, Cdim, mc.n_routed_experts, Lm, "linear")]
    g += [("attn scores q k^T (bmm)", T, D, T, L, ("bmm", B * H)),
          ("attn values p v (bmm)", T, T, D, L, ("bmm", B * H)),
          ("head", N, Cdim, mc.vocab_size, 1, "linear")]
    return g


def make_gemm_fns(M, K, Nout, kind, device, dtype):
    """{'fwd'|'bwd dX'|'bwd dW': (fn, flops)} for one shape."""
    def r(*s):
        return torch.randn(*s, device=device, dtype=dtype)
    fl = 2 * M * K * Nout
    if kind == "linear":
        x, w, dy = r(M, K), r(Nout, K), r(M, Nout)
        return {"fwd": (lambda: F.linear(x, w), fl),
                "bwd dX": (lambda: dy @ w, fl),
                "bwd dW": (lambda: dy.t() @ x, fl)}
    nb = kind[1]
    a, b, dy = r(nb, M, K), r(nb, K, Nout), r(nb, M, Nout)
    return {"fwd": (lambda: torch.bmm(a, b), nb * fl),
            "bwd dX": (lambda: torch.bmm(dy, b.transpose(1, 2)), nb * fl),
            "bwd dW": (lambda: torch.bmm(a.transpose(1, 2), dy), nb * fl)}


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--gemm-reps", type=int, default=20, help="calls per GEMM timing (its mean is one sample)")
    p.add_argument("--steps-per-round", type=int, default=2)
    p.add_argument("--peak-size", type=int, default=None,
                   help="side of the square GEMM used as the peak (default 1024 on cpu, 8192 on cuda)")
    args = p.parse_args(argv)
    device = C.setup(args)
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    mc = C.minids_config()
    B, T = args.batch, args.seq
    gemms = gemm_list(mc, B, T)
    cases, meta = {}, {}
    for name, M, K, Nout, count, kind in gemms:
        for part, (fn, fl) in make_gemm_fns(M, K, Nout, kind, device, dtype).items():
            key = f"{name} | {part}"
            cases[key] = fn
            meta[key] = {"name": name, "part": part, "M": M, "K": K, "N": Nout, "count": count, "flops": fl,
                         "batch": kind[1] if isinstance(kind, tuple) else 1}
    S = args.peak_size or (8192 if device.type == "cuda" else 1024)
    pa, pb = torch.randn(S, S, device=device, dtype=dtype), torch.randn(S, S, device=device, dtype=dtype)
    cases["peak"] = lambda: pa @ pb
    peak_flops = 2 * S ** 3

    # the real step, as in bench/train_step.py (on CUDA replayed from a CUDA graph, as pretrain runs it)
    torch.manual_seed(args.seed)
    model = Transformer(mc).to(device).train()
    opt = make_optimizer(model, 1e-3, 0.1)
    batch = torch.randint(0, mc.vocab_size, (B, T + 1), device=device)
    graph = device.type == "cuda"
    run_step = make_train_step(model, opt, grad_clip=1.0, bf16=args.bf16, cuda_graph=graph)
    fed = batch.cpu() if graph else batch  # pretrain feeds a graph CPU batches
    ones = torch.ones(B, T, dtype=torch.bool) if graph else None  # a graph always takes masks

    def step():
        run_step(fed[:, :-1], fed[:, 1:], ones, None if ones is None else ones.long())

    for fn in cases.values():
        fn()
    for _ in range(2):
        step()
    gemm_t = {k: [] for k in cases}  # (wall, cpu) seconds per call, one per round
    step_t = []
    print(f"roofline: batch {B} x {T}, device {device}, dtype {dtype}, threads {torch.get_num_threads()}, "
          f"{args.rounds} rounds")
    for r in range(args.rounds):
        for k, fn in cases.items():
            reps = max(1, args.gemm_reps // 10) if k == "peak" else args.gemm_reps
            gemm_t[k].append(C.timed(fn, device, reps))
        step_t.append(C.timed(step, device, args.steps_per_round))
        print(f"  round {r + 1}/{args.rounds}: step {step_t[-1][0] * 1e3:.1f} ms, "
              f"peak {peak_flops / gemm_t['peak'][-1][0] / 1e9:.1f} GFLOP/s", file=sys.stderr, flush=True)

    clocks = ("wall", "cpu") if device.type == "cpu" else ("wall",)
    col = {"wall": 0, "cpu": 1}

    def med(samples, clock):
        return C.median([s[col[clock]] for s in samples])

    peak = {c: peak_flops / med(gemm_t["peak"], c) / 1e9 for c in clocks}
    gemm_rows, by_name = [], {}
    gemm_total_s = {c: 0.0 for c in clocks}
    gemm_total_flops = 0
    for key, m in meta.items():
        row = {**m}
        for c in clocks:
            t = med(gemm_t[key], c)
            row[f"{c}_s_median"] = t
            row[f"gflops_{c}"] = m["flops"] / t / 1e9
            gemm_total_s[c] += m["count"] * t
        gemm_total_flops += m["count"] * m["flops"]
        gemm_rows.append(row)
        by_name.setdefault(m["name"], {"M": m["M"], "K": m["K"], "N": m["N"], "count": m["count"],
                                        "batch": m["batch"]})[m["part"]] = row
    main_clock = clocks[-1]  # CPU time on CPU (robust on a shared machine), wall time on GPU
    rows = []
    for name, d in by_name.items():
        shape = f"{d['M']}x{d['K']} @ {d['K']}x{d['N']}" + (f" (x{d['batch']})" if d["batch"] > 1 else "")
        rows.append([name, shape, d["count"]] + [d[part][f"gflops_{c}"] for part in ("fwd", "bwd dX", "bwd dW")
                                                for c in clocks])
    rows.append([f"peak: square {S}^3", f"{S}x{S} @ {S}x{S}", "-"] + [peak[c] for c in clocks] +
                ["-"] * (2 * len(clocks)))
    unit = {"wall": "GFLOP/s", "cpu": "GFLOP/CPU-s"}
    print("GFLOP/CPU-s: FLOPs per second of process CPU time (all threads), steady on a shared machine"
          if device.type == "cpu" else "")
    print(C.table(rows, ["GEMM", "shape", "per step"] + [f"{part} {unit[c]}" for part in ("fwd", "bwd dX", "bwd dW")
                                                          for c in clocks]))

    n = model.num_params()
    active_nonembed = n["active"] - mc.vocab_size * mc.dim
    tokens = B * T
    flops_6n = 6 * active_nonembed * tokens
    flops_attn = 12 * mc.n_layers * mc.dim * T * tokens
    flops = flops_6n + flops_attn
    summary = {"active_params_nonembedding": active_nonembed, "tokens": tokens,
               "flops_6N": flops_6n, "flops_attention": flops_attn, "flops_step": flops,
               "flops_step_from_gemm_list": gemm_total_flops, "step_samples_wall_cpu": step_t}
    qrows = [["model FLOPs / step (6*N_active*tok + 12*L*C*T*tok)", f"{flops / 1e9:.2f} GFLOP "
              f"(= {flops_6n / 1e9:.2f} + {flops_attn / 1e9:.2f}; GEMM list: {gemm_total_flops / 1e9:.2f})", ""]]
    for c in clocks:
        step_s = med(step_t, c)
        achieved = flops / step_s / 1e9
        summary[c] = {"step_s_median": step_s, "achieved_gflops": achieved, "peak_gflops": peak[c],
                      "mfu": achieved / peak[c], "gemm_bound_s": gemm_total_s[c],
                      "gemm_gflops_at_model_shapes": gemm_total_flops / gemm_total_s[c] / 1e9,
                      "shape_mfu": gemm_total_s[c] / step_s}
    s_ = summary
    qrows += [
        ["training step (median)"] + [f"{s_[c]['step_s_median'] * 1e3:.1f} ms -> {s_[c]['achieved_gflops']:.1f} "
                                      f"{unit[c]}" for c in clocks],
        ["matmul peak (square GEMM)"] + [f"{peak[c]:.1f} {unit[c]}" for c in clocks],
        ["MFU vs peak"] + [f"{s_[c]['mfu']:.1%}" for c in clocks],
        ["step's GEMMs at model shapes"] + [f"{s_[c]['gemm_bound_s'] * 1e3:.1f} ms "
                                            f"({s_[c]['gemm_gflops_at_model_shapes']:.1f} {unit[c]})" for c in clocks],
        ["shape MFU (GEMM time / step time)"] + [f"{s_[c]['shape_mfu']:.1%}" for c in clocks],
    ]
    qrows[0] = qrows[0][:1 + len(clocks)]
    print()
    print(C.table(qrows, ["quantity"] + [f"by {c} time" for c in clocks]))
    summary["main_clock"] = main_clock
    C.write_json(args.json, {"benchmark": "roofline", "batch": B, "seq": T, "dtype": str(dtype),
                             "environment": C.environment(args, device), "gemms": gemm_rows,
                             "peak": {"size": S, "samples_wall_cpu": gemm_t["peak"], "gflops": peak}, "summary": summary})


if __name__ == "__main__":
    main()
