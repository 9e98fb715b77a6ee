"""Peak memory of training: minids against transformers' matched DeepseekV3ForCausalLM, one fresh process each.

Each peer runs in its own process (a process's peak RSS cannot be split between two models
living in it): import torch and transformers, build the model and AdamW, take `--steps` training
steps on identical 32 x 64 random batches (the step of `train_step.py`), and report its peak
resident memory (`ru_maxrss`) before the first step and after the last. The difference is what
training itself holds at its peak (activations, gradients, optimiser state); both include the same
libraries. On CUDA it also reports `torch.cuda.max_memory_allocated`.

    python bench/memory.py --threads 1
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import multiprocessing as mp
import resource

import torch
import torch.nn.functional as F


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _peer(name: str, args, queue):
    device = C.setup(args)
    import transformers  # noqa: F401  (both processes hold the same libraries)

    from minids.model import Transformer
    from minids.train import make_optimizer, make_train_step
    mc = C.minids_config()
    g = torch.Generator().manual_seed(args.seed)
    batches = [torch.randint(0, mc.vocab_size, (args.batch, args.seq + 1), generator=g).to(device) for _ in range(2)]
    if name == "minids MoE":
        model = Transformer(mc).to(device).train()
        step_fn = make_train_step(model, make_optimizer(model, 1e-3, 0.1), grad_clip=1.0,
                                  cuda_graph=device.type == "cuda")

        def step(b):
            mask = torch.ones_like(b[:, :-1], dtype=torch.bool)
            step_fn(b[:, :-1], b[:, 1:], mask, mask.long())
    else:
        model = C.build_hf(mc, device).train()
        decay = [q for q in model.parameters() if q.dim() >= 2]
        no_decay = [q for q in model.parameters() if q.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-3, betas=(0.9, 0.95))

        def step(b):
            logits = model(input_ids=b[:, :-1], use_cache=False).logits
            loss = F.cross_entropy(logits.flatten(0, 1).float(), b[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    before = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.steps):
        step(batches[i % len(batches)])
    C.sync(device)
    out = {"params": C.n_params(model), "rss_before_mib": before, "rss_peak_mib": _rss_mib()}
    if device.type == "cuda":
        out["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    queue.put(out)


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    args = p.parse_args(argv)
    device = C.setup(args)
    ctx = mp.get_context("spawn")
    results = {}
    for name in ("minids MoE", "HF DeepseekV3"):
        q = ctx.Queue()
        proc = ctx.Process(target=_peer, args=(name, args, q))
        proc.start()
        results[name] = q.get()
        proc.join()
    rows = [[n, r["params"], r["rss_before_mib"], r["rss_peak_mib"], r["rss_peak_mib"] - r["rss_before_mib"]]
            + ([r["cuda_max_allocated_mib"]] if "cuda_max_allocated_mib" in r else []) for n, r in results.items()]
    header = ["model", "params", "RSS before MiB", "peak RSS MiB", "training adds MiB"]
    if device.type == "cuda":
        header.append("cuda max allocated MiB")
    print(f"peak memory: batch {args.batch} x {args.seq}, {args.steps} steps, device {device}")
    print(C.table(rows, header))
    m, h = results["minids MoE"], results["HF DeepseekV3"]
    ratio = m["rss_peak_mib"] / h["rss_peak_mib"]
    print(f"minids peak RSS / transformers peak RSS: {ratio:.2f}x")
    C.write_json(args.json, {"benchmark": "memory", "batch": args.batch, "seq": args.seq, "steps": args.steps,
                             "environment": C.environment(args, device), "results": results,
                             "ratios": {"minids peak RSS / HF peak RSS": ratio}})


if __name__ == "__main__":
    main()
