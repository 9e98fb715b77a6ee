"""Pretraining seconds per step at a given torch thread count, optionally with busy programs beside it.

What a laptop sees while a notebook trains: the browser, an editor, a video call keep a core busy.
OpenMP worker threads that wait at a barrier for a peer the OS has descheduled spin and stall, so a
thread count equal to the number of cores can collapse when one core is taken. This script runs
`minids.train.pretrain` (the default model, real packed batches, no evaluation) for `--steps` steps
with `torch.set_num_threads(--threads)`, while `--busy` spinning processes (`while True: pass`, the
worst case of "another program is busy") run beside it, and prints seconds per step.

Compare thread counts pair by pair on the same machine of the moment (the machine's speed drifts):

    farm-bench -n 5 --timeout 600 -- python bench/threads.py --threads 2 --busy 1 \\
        --vs 'python bench/threads.py --threads 1 --busy 1'

`minids.device.cpu_threads()` is the choice this measurement informs.
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import subprocess
import sys
import time

import torch

from minids.model import Transformer
from minids.tasks import TaskConfig
from minids.tokenizer import default_tokenizer
from minids.train import TrainConfig, pretrain


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], threads=0)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--busy", type=int, default=0, help="spinning processes run beside the training")
    args = p.parse_args(argv)
    device = C.setup(args)
    tok = default_tokenizer()
    model = Transformer(C.minids_config())
    config = TrainConfig(steps=args.steps, eval_every=0, device=str(device))
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        t0 = time.perf_counter()
        pretrain(model, tok, TaskConfig(), config, progress=False)
        dt = time.perf_counter() - t0
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    print(f"threads {torch.get_num_threads()}, busy {args.busy}: {dt / args.steps:.4f} s a step "
          f"({args.steps} steps, {dt:.1f} s)")
    C.write_json(args.json, {"benchmark": "threads", "steps": args.steps, "busy": args.busy, "seconds": dt,
                             "seconds_per_step": dt / args.steps, "environment": C.environment(args, device)})


if __name__ == "__main__":
    main()
