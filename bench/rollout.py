"""Rollout throughput: sampled tokens/s for one GRPO-sized batch of generations.

The batch is what one default GRPO step samples: 8 task prompts (minids.tasks.sample_problem)
x 8 samples each = 64 rows, left-padded, 64 new tokens per row, temperature 1, no top-k/top-p,
and no early stop, so every side samples exactly 64 x 64 = 4096 tokens. All sides get the same
token ids (already encoded) and random-weight models of the matched configs; measured
interleaved in one process:

  minids cached     `minids.generate.generate(..., stop=())`: the KV-cached loop GRPO uses
                    (on a GPU its decoding step replays a recorded CUDA graph; a second case,
                    "no CUDA graph", launches it op by op)
  minids no cache   the same with `use_cache=False` (re-reads the whole sequence every step)
  HF generate()     transformers' `DeepseekV3ForCausalLM.generate(do_sample=True, top_k=0,
                    top_p=1.0, temperature=1.0, max_new_tokens=64, min_new_tokens=64,
                    use_cache=True)` with the left-padded ids and their attention_mask
                    (its MLA cache stores the compressed latent and re-expands it every step)

    python bench/rollout.py
    python bench/rollout.py --device cuda --bf16
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import random

import torch

from minids.generate import generate, left_pad
from minids.model import Transformer
from minids.tasks import TaskConfig, sample_problem
from minids.tokenizer import default_tokenizer


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--samples", type=int, default=8, help="samples per prompt (GRPO's num_generations)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (one full batch each)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--no-uncached", action="store_true", help="skip minids use_cache=False")
    p.add_argument("--hf-experts", default="grouped_mm",
                   help="comma list of transformers experts implementations ('' for none)")
    args = p.parse_args(argv)
    device = C.setup(args)

    tok = default_tokenizer()
    mc = C.minids_config(vocab_size=tok.vocab_size)
    rng = random.Random(args.seed)
    problems = [sample_problem(rng, TaskConfig()) for _ in range(args.prompts)]
    prompts = [tok.encode(pr.prompt, allowed_special="all") for pr in problems for _ in range(args.samples)]
    ids, mask = left_pad(prompts, tok.pad_id, device)
    n_rows, L = len(prompts), args.new_tokens
    eos = tok.encode("<|eos|>", allowed_special="all")[0]

    torch.manual_seed(args.seed)
    model = Transformer(mc).to(device).eval()
    counter = iter(range(1 << 62))
    cases, info = {}, {}

    def minids_case(use_cache, cuda_graph=True):
        def run():
            with C.autocast(device, args.bf16):
                out = generate(model, tok, prompts, L, temperature=1.0, stop=(), seed=next(counter),
                               use_cache=use_cache, cuda_graph=cuda_graph)
            assert out.ids.shape == (n_rows, L), out.ids.shape
        return run

    cases["minids cached"] = minids_case(True)
    info["minids cached"] = model.num_params()
    if device.type == "cuda":
        cases["minids cached, no CUDA graph"] = minids_case(True, cuda_graph=False)
        info["minids cached, no CUDA graph"] = model.num_params()
    if not args.no_uncached:
        cases["minids no cache"] = minids_case(False)
        info["minids no cache"] = model.num_params()

    for impl in [s.strip() for s in args.hf_experts.split(",") if s.strip()]:
        name = f"HF generate() ({impl})"
        h = C.build_hf(mc, device, impl).eval()

        def run(h=h):
            with torch.no_grad(), C.autocast(device, args.bf16):
                out = h.generate(input_ids=ids, attention_mask=mask.long(), do_sample=True, top_k=0, top_p=1.0,
                                 temperature=1.0, max_new_tokens=L, min_new_tokens=L, use_cache=True,
                                 pad_token_id=tok.pad_id, eos_token_id=eos)
            assert out.shape == (n_rows, ids.shape[1] + L), out.shape
        cases[name] = run
        info[name] = {"total": C.n_params(h), "active": C.hf_active_params(h, mc),
                      "experts_implementation": h.config._experts_implementation}

    print(f"rollout: {args.prompts} prompts x {args.samples} samples = {n_rows} rows, prompt width "
          f"{ids.shape[1]}, {L} new tokens, device {device}, threads {torch.get_num_threads()}, "
          f"{args.rounds} interleaved rounds")
    wall, cpu = C.interleave(cases, device, args.rounds, 1, warmup=args.warmup)

    ref = "minids cached"
    results = C.summarize(wall, cpu, n_rows * L, device)
    rows = []
    for name, r in results.items():
        r.update(info[name])
        r["ms_per_decode_step_wall"] = r["wall_s_median"] / L * 1e3
        row = [name, r["wall_s_median"], r["rate_wall"], r["ms_per_decode_step_wall"],
               C.paired_ratio(wall[name], wall[ref]), r["spread_wall"]]
        if device.type == "cpu":
            row += [r["cpu_s_median"], r["rate_cpu"], C.paired_ratio(cpu[name], cpu[ref])]
        rows.append(row)
    header = ["generator", "wall s", "tokens/s", "ms/step", "time/minids cached", "spread"]
    if device.type == "cpu":
        header += ["CPU s", "tokens/CPU-s", "CPU time/minids cached"]
    print(C.table(rows, header))
    ratios = {f"minids cached tokens/s / {name} tokens/s": C.ratio_pair(wall, cpu, name, ref, device)
              for name in results if name != ref}
    for k, v in ratios.items():
        print(f"{k}: {C.fmt_ratio(v)}")
    C.write_json(args.json, {"benchmark": "rollout", "rows": n_rows, "new_tokens": L,
                             "prompt_width": ids.shape[1], "environment": C.environment(args, device),
                             "results": results, "ratios": ratios})

if __name__ == "__main__":
    main()
