"""Where the time goes: torch.profiler over one training step or one rollout of the default model.

Prints the operators with the most self time (CPU, and CUDA on a GPU), and per step the number of
operator calls, kernel launches and host syncs (`aten::_local_scalar_dense` is `.item()`,
`.tolist()`, `int(tensor)`, `bool(tensor)`: each makes the host wait until the device is done).
At this model's size a GPU is bound by launches and syncs, so these counts predict its speed
better than FLOPs do.

    python bench/profile_ops.py train                  # one pretraining step (32 documents, packed)
    python bench/profile_ops.py rollout                # one GRPO rollout: 8 prompts x 8 samples
    python bench/profile_ops.py rollout --device cuda --bf16
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import random

from torch.profiler import ProfilerActivity, profile

from minids.generate import generate
from minids.model import Transformer
from minids.tasks import TaskConfig, sample_document, sample_problem
from minids.tokenizer import default_tokenizer
from minids.train import make_optimizer, pack_batch, train_step


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], threads=0)
    p.add_argument("what", choices=["train", "rollout"])
    p.add_argument("--rows", type=int, default=20, help="operators to list")
    p.add_argument("--new-tokens", type=int, default=64)
    args = p.parse_args(argv)
    device = C.setup(args)
    tok = default_tokenizer()
    model = Transformer(C.minids_config(vocab_size=tok.vocab_size)).to(device)
    rng = random.Random(args.seed)

    if args.what == "train":
        opt = make_optimizer(model, 1e-3, 0.1)
        batch = [t.to(device) for t in pack_batch(tok, [sample_document(rng) for _ in range(32)])]

        def step():  # what pretrain does, launched op by op (on a GPU pretrain replays it as one CUDA graph)
            return train_step(model, opt, *batch, grad_clip=1.0, bf16=args.bf16).loss.item()
        idx = batch[0]
        n_tokens = idx.numel()
    else:
        problems = [sample_problem(rng, TaskConfig()) for _ in range(8)]
        prompts = [pr.prompt for pr in problems for _ in range(8)]

        def step():
            with C.autocast(device, args.bf16):
                return generate(model, tok, prompts, args.new_tokens, stop=(), seed=0)
        n_tokens = len(prompts) * args.new_tokens

    for _ in range(3):
        step()
    C.sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step()
        C.sync(device)
    events = prof.key_averages()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=args.rows))
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    syncs = sum(e.count for e in events if e.key == "aten::_local_scalar_dense")
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    per = f" ({args.new_tokens} decode steps)" if args.what == "rollout" else ""
    print(f"{args.what} on {device}{per}, {n_tokens} tokens: {ops} aten calls, {launches} kernel launches, "
          f"{syncs} host syncs")


if __name__ == "__main__":
    main()
