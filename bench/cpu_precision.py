"""CPU matmul backends and precision: fp32 through MKL, fp32 through oneDNN, bf16; and the training step.

Two questions, measured in one process, interleaved:

1. **GEMMs alone**, at the linear-layer shapes of a minids training step (`roofline.gemm_list`),
   each as its forward and both backward GEMMs, in GFLOP/s:
     fp32 (MKL)        `F.linear` / `@` on fp32 tensors: what PyTorch runs on a CPU by default
     fp32 (oneDNN)     `torch.ops.mkldnn._linear_pointwise`, the forward-only oneDNN fp32 linear
                       that `torch.compile`'s CPU backend calls on frozen weights (inference;
                       no autograd), so forward only
     bf16              `F.linear` / `@` on bf16 tensors (oneDNN; native on CPUs with AVX512-BF16
                       or AMX, emulated elsewhere)
2. **Shapes seen for the first time.** A routed expert's row count changes every step, and so
   does a packed batch's shape. oneDNN makes (JIT-compiles) a kernel for each new GEMM shape and
   caches it; MKL does not. Timed: `F.linear` over rows 1000..1000+n-1, each shape new, then the
   same shapes again, in fp32 and bf16 (ms per call).
3. **The training step** (forward, backward, clip, AdamW, as `minids.train.train_step` runs it)
   on identical 32 x 64 batches, in fp32 and under bf16 autocast with attention and the loss
   kept in fp32 (the matmuls of the linear layers in bf16, the weights and the optimiser in
   fp32), and that bf16 step again with `MoE.impl = "dense"` (every expert on every token: 4x the
   expert FLOPs, but GEMM shapes fixed). `torch.profiler` then gives each variant's time in `aten::mm` and in dtype casts.

It also prints the CPU's capability as torch sees it (`torch.backends.cpu.get_cpu_capability()`)
and whether /proc/cpuinfo lists avx512_bf16 / amx_bf16.

    python bench/cpu_precision.py --threads 2
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import contextlib
from pathlib import Path

import torch
import torch.nn.functional as F

from minids import attention as attention_module
from minids.model import Transformer
from minids.train import make_optimizer, train_step
from roofline import gemm_list


def cpu_flags() -> dict:
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    return {"model": model, "capability": torch.backends.cpu.get_cpu_capability(),
            **{f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")}}


def gemm_cases(M, K, Nout):
    """{backend: {kind: fn}} for one linear shape."""
    x, w, dy = torch.randn(M, K), torch.randn(Nout, K), torch.randn(M, Nout)
    xb, wb, dyb = x.bfloat16(), w.bfloat16(), dy.bfloat16()
    out = {"fp32 (MKL)": {"fwd": lambda: F.linear(x, w), "bwd dX": lambda: dy @ w, "bwd dW": lambda: dy.t() @ x},
           "bf16": {"fwd": lambda: F.linear(xb, wb), "bwd dX": lambda: dyb @ wb, "bwd dW": lambda: dyb.t() @ xb}}
    try:
        op = torch.ops.mkldnn._linear_pointwise
        op(x, w, None, "none", [], "")
        out["fp32 (oneDNN)"] = {"fwd": lambda: op(x, w, None, "none", [], "")}
    except (RuntimeError, AttributeError):
        pass
    return out


_sdpa = F.scaled_dot_product_attention


def _sdpa_fp32(q, k, v, attn_mask=None, **kw):
    """Attention outside autocast, in fp32."""
    with torch.autocast("cpu", enabled=False):
        return _sdpa(q.float(), k.float(), v.float(), attn_mask=attn_mask, **kw).type_as(q)


def step_case(mc, batches, bf16: bool, seed: int, impl: str = "auto"):
    torch.manual_seed(seed)
    model = Transformer(mc).train()
    for moe in model.moe_layers:
        moe.impl = impl
    opt = make_optimizer(model, 1e-3, 0.1)
    it = iter(range(1 << 62))

    def step():
        b = batches[next(it) % len(batches)]
        attention_module.F.scaled_dot_product_attention = _sdpa_fp32 if bf16 else _sdpa
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:  # train_step's own autocast is CUDA-only (bf16=True is ignored on a CPU)
            out = train_step(model, opt, b[:, :-1], b[:, 1:], None, None, grad_clip=1.0)
        attention_module.F.scaled_dot_product_attention = _sdpa
        return out
    return step


def new_shapes(n: int, seed: int) -> dict:
    """ms per F.linear call on shapes never seen before, and on the same shapes seen once already."""
    import time
    out = {}
    for dt in (torch.float32, torch.bfloat16):
        w = torch.randn(64, 128, dtype=dt)
        xs = [torch.randn(1000 + 7 * seed + i, 128, dtype=dt) for i in range(n)]
        for label in ("first time", "again"):
            t = time.perf_counter()
            for x in xs:
                F.linear(x, w)
            out[f"{str(dt)[6:]} {label}"] = (time.perf_counter() - t) / n * 1e3
    return out


def profile_share(step, n=3) -> dict:
    from torch.profiler import profile
    with profile() as p:
        for _ in range(n):
            step()
    ev = {e.key: e.self_cpu_time_total for e in p.key_averages()}
    total = sum(ev.values())
    casts = ev.get("aten::copy_", 0) + ev.get("aten::_to_copy", 0)
    return {"mm_share": ev.get("aten::mm", 0) / total, "mm_ms_per_step": ev.get("aten::mm", 0) / 1e3 / n,
            "cast_copy_share": casts / total, "total_ms_per_step": total / 1e3 / n}


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--gemm-reps", type=int, default=20)
    p.add_argument("--steps-per-round", type=int, default=3)
    args = p.parse_args(argv)
    device = C.setup(args)
    if device.type != "cpu":
        raise SystemExit("cpu_precision.py measures the CPU only")
    flags = cpu_flags()
    print(f"CPU: {flags}, threads {torch.get_num_threads()}")
    mc = C.minids_config()
    B, T = args.batch, args.seq

    shapes = [(name, M, K, Nout) for name, M, K, Nout, _, kind in gemm_list(mc, B, T) if kind == "linear"]
    gemm = {}
    for name, M, K, Nout in shapes:
        cases = {f"{be} {kind}": fn for be, kinds in gemm_cases(M, K, Nout).items() for kind, fn in kinds.items()}
        wall, _ = C.interleave(cases, device, args.rounds, args.gemm_reps, warmup=3, progress=False)
        fl = 2 * M * K * Nout
        gemm[name] = {"shape": [M, K, Nout], **{k: fl / C.median(v) / 1e9 for k, v in wall.items()}}
    cols = ["fp32 (MKL) fwd", "fp32 (oneDNN) fwd", "bf16 fwd", "fp32 (MKL) bwd dX", "bf16 bwd dX",
            "fp32 (MKL) bwd dW", "bf16 bwd dW"]
    print("GFLOP/s at the step's linear shapes (median of rounds):")
    print(C.table([[n, "x".join(map(str, g["shape"]))] + [g.get(c, float("nan")) for c in cols]
                   for n, g in gemm.items()], ["GEMM", "M x K x N"] + cols))

    fresh = new_shapes(20, args.seed)
    print("F.linear (M x 128 -> 64), ms per call, M never seen before vs seen once: " +
          ", ".join(f"{k} {v:.3f}" for k, v in fresh.items()))

    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, mc.vocab_size, (B, T + 1), generator=g) for _ in range(4)]
    steps = {"fp32": step_case(mc, batches, False, args.seed),
             "bf16 autocast (attention, loss fp32)": step_case(mc, batches, True, args.seed),
             "bf16 autocast, dense MoE dispatch": step_case(mc, batches, True, args.seed, impl="dense")}
    wall, cpu = C.interleave(steps, device, args.rounds, args.steps_per_round, warmup=2)
    results = C.summarize(wall, cpu, B * T, device)
    for name, fn in steps.items():
        results[name].update(profile_share(fn))
    print(C.table([[n, r["wall_s_median"] * 1e3, r["rate_wall"], C.paired_ratio(wall[n], wall["fp32"]),
                    r["mm_share"], r["mm_ms_per_step"], r["cast_copy_share"]] for n, r in results.items()],
                  ["training step", "wall ms", "tokens/s", "time/fp32", "aten::mm share", "mm ms/step",
                   "cast+copy share"]))
    ratio = C.ratio_pair(wall, cpu, "fp32", "bf16 autocast (attention, loss fp32)", device)
    print(f"bf16 step speed-up over fp32: {C.fmt_ratio(ratio)}")
    ratio_dense = C.ratio_pair(wall, cpu, "fp32", "bf16 autocast, dense MoE dispatch", device)
    print(f"bf16 with the dense MoE dispatch (fixed GEMM shapes, 4x expert FLOPs) over fp32: {C.fmt_ratio(ratio_dense)}")
    C.write_json(args.json, {"benchmark": "cpu_precision", "cpu": flags, "gemm_gflops": gemm, "new_shapes_ms": fresh,
                             "environment": C.environment(args, device), "results": results,
                             "ratios": {"fp32 step time / bf16 step time": ratio,
                                        "fp32 step time / bf16 dense-dispatch step time": ratio_dense}})


if __name__ == "__main__":
    main()
