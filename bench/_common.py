"""Shared helpers for the benchmarks in bench/ (not a benchmark itself).

Every benchmark measures its peers side by side in one process, interleaved
(A, B, A, B, ...), and reports medians and ratios: on a shared machine the
absolute numbers drift with the load, the ratios much less.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python bench/x.py` puts bench/, not the repo root, on sys.path
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402


def base_parser(description: str, threads: int = 2) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--threads", type=int, default=threads,
                   help="torch.set_num_threads for every side (the same N for all); 0 keeps torch's default")
    p.add_argument("--bf16", action="store_true",
                   help="bf16 autocast on every side (meant for cuda; on cpu it works too, but is not "
                        "what minids does there: its training and GRPO autocast on CUDA only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")
    return p


def setup(args) -> torch.device:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for but torch.cuda.is_available() is False")
    torch.manual_seed(args.seed)
    return device


def autocast(device: torch.device, bf16: bool):
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    import contextlib
    return contextlib.nullcontext()


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, n: int = 1) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call of fn(), averaged over n back-to-back calls
    (device synchronised around). CPU time counts every thread of this process: on a shared
    machine it is far less disturbed by other jobs than wall time (with 1 thread it is nearly
    immune; with more, OpenMP threads spinning while they wait for a descheduled peer add to it)."""
    sync(device)
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n


def interleave(cases: dict, device: torch.device, rounds: int, per_round: int = 1, warmup: int = 1,
               progress: bool = True) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """cases {name: fn}: warm each up, then `rounds` rounds of A, B, C, ... each timed over
    `per_round` calls. Returns ({name: [wall s per call, one per round]}, {name: [CPU s ...]})."""
    for name, fn in cases.items():
        for _ in range(warmup):
            fn()
    sync(device)
    wall = {name: [] for name in cases}
    cpu = {name: [] for name in cases}
    for r in range(rounds):
        for name, fn in cases.items():
            w, c = timed(fn, device, per_round)
            wall[name].append(w)
            cpu[name].append(c)
        if progress:
            print(f"  round {r + 1}/{rounds}: " +
                  ", ".join(f"{k} {v[-1] * 1e3:.1f} ms" for k, v in wall.items()), file=sys.stderr, flush=True)
    return wall, cpu


def median(xs):
    return statistics.median(xs)


def spread(xs) -> float:
    """(max - min) / median: how noisy the rounds were."""
    m = statistics.median(xs)
    return (max(xs) - min(xs)) / m if m else float("nan")


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[r] / b[r]: interleaved neighbours share the machine's load of the
    moment, so their ratio is steadier than the ratio of the two medians."""
    return statistics.median(x / y for x, y in zip(a, b))


def summarize(wall: dict, cpu: dict, work: float, device: torch.device) -> dict:
    """Per case: medians, rates (work per second) and spreads of the wall and CPU times."""
    out = {}
    for name in wall:
        w, c = median(wall[name]), median(cpu[name])
        out[name] = {"wall_s_median": w, "wall_s_all": wall[name], "rate_wall": work / w,
                     "spread_wall": spread(wall[name])}
        if device.type == "cpu":
            out[name].update({"cpu_s_median": c, "cpu_s_all": cpu[name], "rate_cpu": work / c,
                              "spread_cpu": spread(cpu[name])})
    return out


def ratio_pair(wall: dict, cpu: dict, a: str, b: str, device: torch.device) -> dict:
    """time(a) / time(b), paired by round, by wall time and (on CPU) by CPU time."""
    r = {"wall": paired_ratio(wall[a], wall[b])}
    if device.type == "cpu":
        r["cpu"] = paired_ratio(cpu[a], cpu[b])
    return r


def fmt_ratio(r: dict) -> str:
    return f"{r['wall']:.2f}x by wall time" + (f", {r['cpu']:.2f}x by CPU time" if "cpu" in r else "")


def table(rows: list[list], header: list[str]) -> str:
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for j, r in enumerate(cells):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(c) -> str:
    if isinstance(c, float):
        if c != c:
            return "-"
        if abs(c) >= 1000:
            return f"{c:,.0f}"
        if abs(c) >= 10:
            return f"{c:.1f}"
        return f"{c:.3g}" if abs(c) < 0.01 else f"{c:.2f}"
    if isinstance(c, int):
        return f"{c:,}"
    return str(c)


def environment(args, device) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
           "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "bf16": bool(getattr(args, "bf16", False))}
    try:
        env["loadavg_start"] = os.getloadavg()
    except OSError:
        pass
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import transformers
        env["transformers"] = transformers.__version__
    except ImportError:
        pass
    return env


def write_json(path, payload: dict):
    if not path:
        return
    try:
        payload.setdefault("environment", {})["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")


# ----------------------------------------------------------------------------- models

def minids_config(**overrides):
    """minids' default model (ModelConfig(vocab_size=512) is the default)."""
    from minids.model import ModelConfig
    return ModelConfig(**{"vocab_size": 512, **overrides})


def dense_same_active_config(moe_config):
    """A dense minids model (every layer a dense FFN) whose *total* parameter count is as close
    as possible to the MoE model's *active* parameter count: the inter_dim that minimises the gap."""
    from dataclasses import replace

    from minids.model import Transformer
    target = Transformer(moe_config).num_params()["active"]
    c = moe_config
    fixed = (2 * c.vocab_size * c.dim + c.n_layers * (4 * c.dim * c.dim + 2 * c.dim) + c.dim)
    inter = max(1, round((target - fixed) / (c.n_layers * 3 * c.dim)))
    return replace(moe_config, n_dense_layers=moe_config.n_layers, inter_dim=inter)


def hf_config(mc, experts_implementation: str | None = None, kv_lora_rank: int | None = None):
    """transformers' DeepseekV3Config matched to a minids ModelConfig: the same parameters.

    MLA cannot be plain multi-head attention, so it is set as close as the config allows to
    MHA with head dim D = dim / n_heads:
      * q_lora_rank=None: queries come from one full-rank (C, H*D) projection, like wq;
      * qk_nope_head_dim + qk_rope_head_dim = D (half each; MLA's rope part is one key shared
        across heads, so qk_nope_head_dim=0 would make the keys single-headed), v_head_dim=D,
        so the attention scores and the weighted values cost what minids' cost;
      * kv_lora_rank r: keys and values come from a rank-r latent (kv_a: C -> r + rope,
        kv_b: r -> H*(nope + D)). r is chosen (`matched_kv_lora_rank`) so that the whole model
        has as many parameters as minids (r = 96 for the default model: 4C^2 of wq/wk/wv/wo
        against 2C^2 + C(r + rope) + r + r*H*(nope + D)), hence also the same matmul FLOPs per
        token. (r = dim, no compression, would make it ~5.8% larger.)
      * n_group=topk_group=1 (no group-limited routing), routed_scaling_factor=route_scale,
        norm_topk_prob=True (minids normalises the chosen K weights too).
    Both parameter counts are printed by the benchmarks.
    """
    from transformers import DeepseekV3Config
    D = mc.dim // mc.n_heads
    rope = D // 2 if (D // 2) % 2 == 0 else D // 2 + 1
    if kv_lora_rank is None:
        kv_lora_rank = matched_kv_lora_rank(mc)
    kw = dict(
        vocab_size=mc.vocab_size, hidden_size=mc.dim, num_hidden_layers=mc.n_layers,
        num_attention_heads=mc.n_heads, num_key_value_heads=mc.n_heads,
        first_k_dense_replace=mc.n_dense_layers, intermediate_size=mc.inter_dim,
        n_routed_experts=mc.n_routed_experts, n_shared_experts=mc.n_shared_experts,
        num_experts_per_tok=mc.n_activated_experts, moe_intermediate_size=mc.moe_inter_dim,
        n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=mc.route_scale,
        q_lora_rank=None, kv_lora_rank=kv_lora_rank, qk_rope_head_dim=rope, qk_nope_head_dim=D - rope,
        v_head_dim=D, max_position_embeddings=mc.max_seq_len, rms_norm_eps=mc.norm_eps,
        tie_word_embeddings=False, attention_dropout=0.0,
        rope_parameters={"rope_type": "default", "rope_theta": mc.rope_theta},
        pad_token_id=None, bos_token_id=None, eos_token_id=None,
    )
    config = DeepseekV3Config(**kw)
    if experts_implementation is not None:
        config._experts_implementation = experts_implementation
    return config


def matched_kv_lora_rank(mc) -> int:
    """The kv_lora_rank whose DeepseekV3 has the parameter count nearest minids' (counted in closed form)."""
    C_, H, D = mc.dim, mc.n_heads, mc.dim // mc.n_heads
    rope = D // 2 if (D // 2) % 2 == 0 else D // 2 + 1
    target_attn = 4 * C_ * C_  # minids: wq, wk, wv, wo
    # MLA: q_proj C*H*D + kv_a C*(r + rope) + kv_a_layernorm r + kv_b r*H*(nope + D) + o_proj H*D*C
    per_r = C_ + 1 + H * ((D - rope) + D)
    r = round((target_attn - 2 * C_ * H * D - C_ * rope) / per_r)
    return max(1, r)


def build_hf(mc, device, experts_implementation: str | None = None):
    """A randomly initialised DeepseekV3ForCausalLM, built offline from the config (no hub)."""
    from transformers import DeepseekV3ForCausalLM
    model = DeepseekV3ForCausalLM(hf_config(mc, experts_implementation)).to(device)
    return model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def hf_active_params(model, mc) -> int:
    idle = mc.n_moe_layers * (mc.n_routed_experts - mc.n_activated_experts) * 3 * mc.dim * mc.moe_inter_dim
    return n_params(model) - idle
