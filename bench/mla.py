"""MLA vs MHA at equal parameters (rollout speed, KV cache memory), and MTP self-speculative decoding.

Part 1, rollout: the default multi-head model against its MLA twin of (as nearly as a whole
rank allows) the same parameters (`minids.mla.matched_mla_config`: heads of the MHA head dim,
kv_lora_rank solved for), random weights, one GRPO-sized batch (prompts x samples rows,
left-padded, `--new-tokens` new tokens each, temperature 1, no early stop), measured interleaved
in one process. MLA decodes with its default "absorb" path (attention on the cached latents);
"MLA naive" re-expands the latents into per-head keys and values at every step. Cache
memory is the KV cache's tensors (`KVCache.nbytes`) for that batch, and bytes per token.

Part 2, MTP (skipped with --mtp-steps 0): a default model with mtp_depth=1 pretrained for
`--mtp-steps` steps (saved to `--mtp-checkpoint` and reused when it exists), then `--problems`
held-out task prompts decoded greedily one at a time: plain `generate(temperature=0)` against
`minids.mtp.speculative_generate` (the MTP module drafts, the main model verifies), interleaved.
Both must give the same tokens (checked). Prints the acceptance rate, tokens per main-model
pass and the speed-up.

    python bench/mla.py
    python bench/mla.py --device cuda
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import random
from pathlib import Path

import torch

from minids.checkpoint import load_checkpoint
from minids.generate import generate
from minids.kvcache import KVCache
from minids.mla import MLA, matched_mla_config
from minids.model import Transformer
from minids.mtp import speculative_generate
from minids.tasks import TaskConfig, eval_problems, sample_problem
from minids.tokenizer import default_tokenizer
from minids.train import TrainConfig, pretrain


def rollout(args, device, tok) -> dict:
    mha = C.minids_config(vocab_size=tok.vocab_size)
    mla = matched_mla_config(mha)
    rng = random.Random(args.seed)
    problems = [sample_problem(rng, TaskConfig()) for _ in range(args.prompts)]
    prompts = [tok.encode(pr.prompt, allowed_special="all") for pr in problems for _ in range(args.samples)]
    n_rows, L = len(prompts), args.new_tokens
    width = max(len(p) for p in prompts) + L
    models, info, cases = {}, {}, {}
    counter = iter(range(1 << 62))
    for name, config, impl in (("MHA", mha, None), ("MLA absorb", mla, "absorb"), ("MLA naive", mla, "naive")):
        torch.manual_seed(args.seed)
        model = models.get(config.attention) or Transformer(config).to(device).eval()
        models[config.attention] = model
        cache = KVCache(config, n_rows, width)
        info[name] = {**model.num_params(), "kv_cache_bytes_per_token": model.kv_cache_bytes_per_token(),
                      "kv_cache_bytes_batch": cache.nbytes, "kv_lora_rank": config.kv_lora_rank
                      if config.attention == "mla" else None}

        def run(model=model, impl=impl):
            MLA.impl = impl or "auto"
            with C.autocast(device, args.bf16):
                out = generate(model, tok, prompts, L, temperature=1.0, stop=(), seed=next(counter))
            MLA.impl = "auto"
            assert out.ids.shape == (n_rows, L), out.ids.shape
        cases[name] = run
    print(f"rollout: {n_rows} rows, {L} new tokens, device {device}, threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved rounds; MLA kv_lora_rank {mla.kv_lora_rank}, qk_nope/rope/v "
          f"{mla.qk_nope_head_dim}/{mla.qk_rope_head_dim}/{mla.v_head_dim}")
    wall, cpu = C.interleave(cases, device, args.rounds, 1, warmup=args.warmup)
    results = C.summarize(wall, cpu, n_rows * L, device)
    ref = "MHA"
    rows = []
    for name, r in results.items():
        r.update(info[name])
        rows.append([name, r["total"], r["kv_cache_bytes_per_token"], r["kv_cache_bytes_batch"] / 1e6,
                     r["rate_wall"], C.paired_ratio(wall[name], wall[ref])]
                    + ([r["rate_cpu"], C.paired_ratio(cpu[name], cpu[ref])] if device.type == "cpu" else []))
    header = ["attention", "params", "cache B/token", "cache MB (batch)", "tokens/s", "time/MHA"]
    header += ["tokens/CPU-s", "CPU time/MHA"] if device.type == "cpu" else []
    print(C.table(rows, header))
    ratios = {f"MHA cache / {n} cache": info[ref]["kv_cache_bytes_per_token"] / info[n]["kv_cache_bytes_per_token"]
              for n in results if n != ref}
    ratios.update({f"{n} tokens/s / MHA tokens/s": C.ratio_pair(wall, cpu, ref, n, device) for n in results
                   if n != ref})
    for k, v in ratios.items():
        print(f"{k}: {C.fmt_ratio(v) if isinstance(v, dict) else f'{v:.2f}x'}")
    return {"results": results, "ratios": ratios}


def mtp(args, device, tok) -> dict:
    if args.mtp_checkpoint and Path(args.mtp_checkpoint).exists():  # made by an earlier run, on any device
        ckpt = load_checkpoint(args.mtp_checkpoint, device)
        model, history = ckpt.model, ckpt.state["history"]
        args.mtp_steps = ckpt.state["step"]
    else:
        config = C.minids_config(vocab_size=tok.vocab_size, mtp_depth=1)
        torch.manual_seed(args.seed)
        model = Transformer(config)
        train = TrainConfig(steps=args.mtp_steps, eval_every=0, seed=args.seed, device=str(device))
        history = pretrain(model, tok, TaskConfig(), train, checkpoint=args.mtp_checkpoint, progress=False).history
    model.eval()
    problems = [p.prompt for p in eval_problems(args.problems, seed=99)]
    spec = [speculative_generate(model, tok, p, args.max_new_tokens) for p in problems]
    plain = [generate(model, tok, [p], args.max_new_tokens, temperature=0) for p in problems]
    same = sum(s.ids == g.ids[0][g.mask[0]].tolist() for s, g in zip(spec, plain))
    drafts = sum(len(s.accepted) for s in spec)
    accepted = sum(sum(s.accepted) for s in spec)
    tokens = sum(len(s.ids) for s in spec)
    passes = sum(s.main_passes for s in spec)

    def plain_all(graph=True):
        for p in problems:
            generate(model, tok, [p], args.max_new_tokens, temperature=0, cuda_graph=graph)

    cases = {"plain greedy": plain_all,
             "speculative (MTP draft)": lambda: [speculative_generate(model, tok, p, args.max_new_tokens)
                                                 for p in problems]}
    if device.type == "cuda":
        cases["plain greedy, no CUDA graph"] = lambda: plain_all(False)
    wall, cpu = C.interleave(cases, device, args.rounds, 1, warmup=1)
    results = C.summarize(wall, cpu, tokens, device)
    ref = "plain greedy"
    print(f"\nMTP: {args.mtp_steps} pretraining steps (final loss {history[-1]['loss']:.3f}, mtp_loss "
          f"{history[-1]['mtp_loss']:.3f}), {len(problems)} prompts, greedy, one at a time")
    print(f"identical to plain greedy: {same}/{len(problems)}; drafts accepted {accepted}/{drafts} = "
          f"{accepted / max(1, drafts):.2f}; tokens per main-model pass {tokens / passes:.2f}")
    rows = [[n, r["wall_s_median"], r["rate_wall"], C.paired_ratio(wall[ref], wall[n])]
            + ([C.paired_ratio(cpu[ref], cpu[n])] if device.type == "cpu" else []) for n, r in results.items()]
    print(C.table(rows, ["decoding", "wall s", "tokens/s", "speed-up vs plain"]
                  + (["CPU-time speed-up"] if device.type == "cpu" else [])))
    return {"results": results, "acceptance_rate": accepted / max(1, drafts), "tokens_per_pass": tokens / passes,
            "identical": same, "problems": len(problems), "pretrain_steps": args.mtp_steps,
            "final_loss": history[-1]["loss"], "final_mtp_loss": history[-1]["mtp_loss"]}


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], threads=1)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--mtp-steps", type=int, default=1500, help="pretraining steps of the MTP model (0: skip part 2)")
    p.add_argument("--mtp-checkpoint", default=None, help="save the MTP model here; an existing one is reused "
                   "as it is (its steps, whatever device made it)")
    p.add_argument("--problems", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=64)
    args = p.parse_args(argv)
    device = C.setup(args)
    tok = default_tokenizer()
    out = {"benchmark": "mla", "environment": C.environment(args, device), "rollout": rollout(args, device, tok)}
    if args.mtp_steps:
        out["mtp"] = mtp(args, device, tok)
    C.write_json(args.json, out)


if __name__ == "__main__":
    main()
