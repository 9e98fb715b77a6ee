"""End to end: wall time and peak memory of the default `python -m minids r1zero` run.

Runs `minids.r1zero.run_r1zero` in this process with the default settings (seed 0; pretraining
3000 steps, GRPO 100 steps unless told otherwise) into a temporary folder, and splits its time:

  pretraining       `summary["timings"]["pretrain_s"]` (includes its periodic evaluations)
  rollouts          sum of the GRPO history's `time/rollout` (`generate` for 64 rows per step)
  policy updates    GRPO time minus rollouts; itself split into the per-step rest (rewards,
                    log-prob forward, backward, AdamW: sum of `time/step` minus rollouts) and
                    GRPO's own greedy evaluations + checkpoints (GRPO time minus sum of `time/step`)
  evaluation etc.   the rest: base and final evaluations, the report

Memory: peak resident set size (`resource.getrusage(RUSAGE_SELF).ru_maxrss`, this whole process,
so the interpreter, torch and the benchmark's own imports are in it: the RSS before the run is
printed too) after pretraining and at the end; on cuda also `torch.cuda.max_memory_allocated`
per phase (the peak is reset before each phase). The phase boundaries are read by wrapping
`minids.r1zero.pretrain` and `minids.r1zero.grpo_train` (nothing in minids is changed).

The full default run takes minutes (~6-7 on a laptop CPU). For a quick check use small numbers,
e.g. `--pretrain-steps 200 --grpo-steps 10`; such a base fails the working-accuracy gate, so
the gate is bypassed (`force=True`) whenever --pretrain-steps is below the default (or with
--force), and the run then measures time, not learning.

    python bench/r1zero.py                                  # the full default run, CPU
    python bench/r1zero.py --pretrain-steps 200 --grpo-steps 10
    python bench/r1zero.py --device cuda                    # minids' own bf16 autocast on CUDA
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import resource
import sys
import tempfile
import time
from dataclasses import replace

import torch

import minids.r1zero as R
from minids.grpo import GRPOConfig
from minids.train import TrainConfig


def rss_mib() -> float:
    """Peak RSS of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], threads=0)  # as `python -m minids r1zero`: torch's default
    p.add_argument("--pretrain-steps", type=int, default=TrainConfig().steps)
    p.add_argument("--grpo-steps", type=int, default=GRPOConfig().steps)
    p.add_argument("--force", action="store_true",
                   help="bypass the gate (automatic when --pretrain-steps is below the default)")
    p.add_argument("--out", default=None, help="keep the run's folder here (default: a temporary one)")
    p.add_argument("--progress", action="store_true", help="show minids' progress bars")
    args = p.parse_args(argv)
    device = C.setup(args)
    if args.bf16:
        print("note: --bf16 is not used here; minids' TrainConfig/GRPOConfig bf16=True already "
              "autocasts on CUDA")

    force = args.force or args.pretrain_steps < TrainConfig().steps
    settings = R.R1ZeroSettings(seed=args.seed, device=str(device), force=force)
    settings = replace(settings, pretrain=replace(settings.pretrain, steps=args.pretrain_steps),
                       grpo=replace(settings.grpo, steps=args.grpo_steps))

    marks = {}
    orig_pretrain, orig_grpo = R.pretrain, R.grpo_train

    def reset_cuda():
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def cuda_peak():
        if device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2 ** 20
        return None

    def pretrain(*a, **k):
        reset_cuda()
        res = orig_pretrain(*a, **k)
        marks["pretrain"] = {"rss_peak_mib": rss_mib(), "cuda_peak_mib": cuda_peak()}
        reset_cuda()
        return res

    def grpo_train(*a, **k):
        marks["eval_base"] = {"rss_peak_mib": rss_mib(), "cuda_peak_mib": cuda_peak()}
        reset_cuda()
        res = orig_grpo(*a, **k)
        marks["grpo"] = {"rss_peak_mib": rss_mib(), "cuda_peak_mib": cuda_peak()}
        reset_cuda()
        return res

    R.pretrain, R.grpo_train = pretrain, grpo_train
    rss_before = rss_mib()
    print(f"r1zero end to end: pretrain {args.pretrain_steps} steps, GRPO {args.grpo_steps} steps, "
          f"device {device}, threads {torch.get_num_threads()}" + (" (gate bypassed)" if force else ""),
          flush=True)
    tmp = None
    out = args.out
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-r1zero-")
        out = tmp.name
    try:
        t0 = time.perf_counter()
        summary = R.run_r1zero(out, settings, progress=args.progress, log=lambda *a: print(*a, flush=True))
        C.sync(device)
        total = time.perf_counter() - t0
        history = R.read_history(f"{out}/history.jsonl")
    finally:
        R.pretrain, R.grpo_train = orig_pretrain, orig_grpo
        if tmp is not None:
            tmp.cleanup()
    marks["end"] = {"rss_peak_mib": rss_mib(), "cuda_peak_mib": cuda_peak()}

    t = summary["timings"]
    rollout = t["rollout_s"]
    steps_total = sum(r["time/step"] for r in history)
    updates = t["grpo_s"] - rollout
    per_step_rest = steps_total - rollout
    grpo_eval = t["grpo_s"] - steps_total
    other = total - t["pretrain_s"] - t["grpo_s"]
    rows = [
        ["pretraining", t["pretrain_s"], t["pretrain_s"] / total, f"{args.pretrain_steps} steps, "
         f"{t['pretrain_s'] / max(1, args.pretrain_steps) * 1e3:.1f} ms/step incl. evals"],
        ["GRPO rollouts", rollout, rollout / total,
         f"{rollout / max(1, len(history)) * 1e3:.0f} ms/step"],
        ["GRPO policy updates (GRPO - rollouts)", updates, updates / total, ""],
        ["  of which per-step rest", per_step_rest, per_step_rest / total,
         "rewards, log-prob fwd, bwd, AdamW"],
        ["  of which GRPO evals + checkpoints", grpo_eval, grpo_eval / total, ""],
        ["evaluation before/after, report", other, other / total, ""],
        ["total", total, 1.0, ""],
    ]
    print(C.table(rows, ["phase", "seconds", "share", "note"]))
    mem_rows = [["before the run", rss_before, "-"]]
    for phase in ("pretrain", "eval_base", "grpo", "end"):
        if phase in marks:
            m = marks[phase]
            mem_rows.append([f"after {phase}", m["rss_peak_mib"],
                             "-" if m["cuda_peak_mib"] is None else m["cuda_peak_mib"]])
    print(C.table(mem_rows, ["point", "peak RSS MiB (so far)", "cuda max allocated MiB (this phase)"]))
    acc = (summary["before"]["sampled_accuracy"], summary["after"]["sampled_accuracy"])
    print(f"sampled accuracy {acc[0]:.2f} -> {acc[1]:.2f} (a sanity check, not a benchmark)")
    C.write_json(args.json, {
        "benchmark": "r1zero", "pretrain_steps": args.pretrain_steps, "grpo_steps": args.grpo_steps,
        "forced": force, "environment": C.environment(args, device),
        "seconds": {"total": total, "pretrain": t["pretrain_s"], "grpo": t["grpo_s"], "rollouts": rollout,
                    "policy_updates": updates, "grpo_per_step_rest": per_step_rest,
                    "grpo_evals_checkpoints": grpo_eval, "other": other},
        "memory_mib": {"rss_before": rss_before, **marks},
        "accuracy": {"before": acc[0], "after": acc[1]},
    })


if __name__ == "__main__":
    main()
