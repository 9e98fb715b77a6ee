"""Training throughput: tokens/s of one optimiser step (forward + backward + AdamW step).

Peers, measured interleaved in one process on the same random token batches
(B x T, default 32 x 64), the same thread count and device:

  minids MoE      minids' default model, `ModelConfig(vocab_size=512)`: dim 128, 4 layers,
                  4 heads, 1 dense layer (inter_dim 256) + 3 MoE layers (8 routed experts of
                  width 64, 1 shared, top-2). Its step is the one `minids.train.pretrain` takes:
                  cross-entropy, backward, grad-norm clip 1.0, AdamW (minids' `make_optimizer`),
                  then `update_balance_bias()`.
  minids dense    a dense minids model with the same *active* parameters: every layer a dense
                  SwiGLU FFN, inter_dim chosen so its total parameter count ~= the MoE model's
                  active count. moe/dense step time is the "MoE overhead ratio".
  HF DeepseekV3   transformers' `DeepseekV3ForCausalLM`, built offline from a matched
                  `DeepseekV3Config` with random weights (see `_common.hf_config` for how MLA is
                  set as close to plain MHA as it allows). Same loss (cross-entropy on the same
                  targets), same clip, same AdamW settings. Its experts run with the
                  implementation transformers picks by default ("grouped_mm"); `--hf-experts`
                  adds others ("eager", "batched_mm").

No padding masks on any side (pure causal LM batches); `--masks` instead gives every side an
all-true padding mask (minids: loss_mask and segments, as `pretrain` passes them; transformers:
attention_mask), which is what the real pretraining loop pays for.

On a GPU, "minids MoE" and "minids dense" replay each step as a recorded CUDA graph, as
`pretrain` does there (`TrainConfig.cuda_graph`, `minids.graphs.GraphedTrainStep`, fed CPU
batches as pretrain feeds it); "minids MoE, no CUDA graph" is the same step launched op by op.

    python bench/train_step.py                    # CPU, 2 threads
    python bench/train_step.py --device cuda --bf16
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import torch
import torch.nn.functional as F

from minids.model import Transformer
from minids.train import make_optimizer, make_train_step


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    p.add_argument("--steps-per-round", type=int, default=3, help="optimiser steps timed per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per side first")
    p.add_argument("--hf-experts", default="grouped_mm",
                   help="comma list of transformers experts implementations to measure "
                        "(grouped_mm = transformers' default, eager, batched_mm); '' for none")
    p.add_argument("--no-dense", action="store_true", help="skip the dense same-active model")
    p.add_argument("--masks", action="store_true", help="all-true padding masks on every side (see doc)")
    args = p.parse_args(argv)
    device = C.setup(args)

    mc = C.minids_config()
    B, T = args.batch, args.seq
    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, mc.vocab_size, (B, T + 1), generator=g).to(device) for _ in range(4)]

    models, steps, info = {}, {}, {}

    def minids_step(model, opt, graph=False):
        it = iter(range(1 << 62))
        # as pretrain runs it: on a GPU replayed from a CUDA graph (which always takes masks)
        fn = make_train_step(model, opt, grad_clip=1.0, bf16=args.bf16, cuda_graph=graph)
        source = [b.cpu() for b in batches] if graph else batches  # pretrain feeds a graph CPU batches

        def step():
            b = source[next(it) % len(source)]
            idx, tgt = b[:, :-1], b[:, 1:]
            mask = torch.ones_like(idx, dtype=torch.bool) if args.masks or graph else None
            fn(idx, tgt, mask, None if mask is None else mask.long())  # one document a row, no padding
        return step

    def hf_step(model, opt):
        it = iter(range(1 << 62))

        def step():
            b = batches[next(it) % len(batches)]
            idx, tgt = b[:, :-1], b[:, 1:]
            kw = {"attention_mask": torch.ones_like(idx)} if args.masks else {}
            with C.autocast(device, args.bf16):
                logits = model(input_ids=idx, use_cache=False, **kw).logits
                loss = F.cross_entropy(logits.flatten(0, 1).float(), tgt.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        return step

    graph = device.type == "cuda"  # what pretrain does there (TrainConfig.cuda_graph)
    variants = [("minids MoE", mc, graph)]
    if graph:
        variants.append(("minids MoE, no CUDA graph", mc, False))
    if not args.no_dense:
        variants.append(("minids dense", C.dense_same_active_config(mc), graph))
    for name, config, g in variants:
        torch.manual_seed(args.seed)
        m = Transformer(config).to(device).train()
        models[name] = m
        steps[name] = minids_step(m, make_optimizer(m, 1e-3, 0.1), graph=g)
        info[name] = {**m.num_params(), "inter_dim": config.inter_dim, "cuda_graph": g}
    for impl in [s.strip() for s in args.hf_experts.split(",") if s.strip()]:
        name = f"HF DeepseekV3 ({impl})"
        h = C.build_hf(mc, device, impl).train()
        models[name] = h
        # the same AdamW as minids' make_optimizer: decay on matrices only
        decay = [q for q in h.parameters() if q.dim() >= 2]
        no_decay = [q for q in h.parameters() if q.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, betas=(0.9, 0.95))
        steps[name] = hf_step(h, opt)
        info[name] = {"total": C.n_params(h), "active": C.hf_active_params(h, mc),
                      "experts_implementation": h.config._experts_implementation,
                      "attn_implementation": h.config._attn_implementation}

    print(f"train step: batch {B} x {T} = {B * T} tokens, device {device}, threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved rounds x {args.steps_per_round} steps")
    wall, cpu = C.interleave(steps, device, args.rounds, args.steps_per_round, warmup=args.warmup)

    results = C.summarize(wall, cpu, B * T, device)
    rows = []
    for name, r in results.items():
        r.update(info[name])
        row = [name, info[name]["total"], info[name]["active"], r["wall_s_median"] * 1e3, r["rate_wall"],
               C.paired_ratio(wall[name], wall["minids MoE"]), r["spread_wall"]]
        if device.type == "cpu":
            row += [r["cpu_s_median"] * 1e3, r["rate_cpu"], C.paired_ratio(cpu[name], cpu["minids MoE"])]
        rows.append(row)
    header = ["model", "params", "active", "wall ms", "tokens/s", "time/minids MoE", "spread"]
    if device.type == "cpu":
        header += ["CPU ms", "tokens/CPU-s", "CPU time/minids MoE"]
    print(C.table(rows, header))
    ratios = {}
    for name in results:
        if name.startswith("HF"):
            # tokens/s of minids over tokens/s of the peer = the peer's step time over minids'
            ratios[f"minids MoE tokens/s / {name} tokens/s"] = C.ratio_pair(wall, cpu, name, "minids MoE", device)
    if "minids dense" in results:
        ratios["MoE overhead: minids MoE step time / minids dense step time"] = C.ratio_pair(
            wall, cpu, "minids MoE", "minids dense", device)
    for k, v in ratios.items():
        print(f"{k}: {C.fmt_ratio(v)}")
    C.write_json(args.json, {"benchmark": "train_step", "batch": B, "seq": T, "masks": args.masks,
                             "environment": C.environment(args, device), "results": results, "ratios": ratios})

if __name__ == "__main__":
    main()
