"""pass@k, gold-chain share and accuracy per operand count, base vs RL, for an r1zero run folder.

    python bench/r1zero_passk.py RUN [RUN ...] [--problems 32] [--samples 64] [--device cuda]

For each RUN (an output folder of `python -m minids r1zero`) it loads the last base checkpoint
(`summary["pretraining"]["stages"][-1]["checkpoint"]`, base.pt when no extra pretraining ran)
and rl.pt, samples `--samples` completions (temperature 1) for `--problems` problems of each
operand count from 2 to the task's max_operands (evaluation seed 7, apart from training), and
writes RUN/passk.json: per model and operand count, pass@k (unbiased estimator,
`minids.evaluate.pass_at_k`) for k = 1, 2, 4, ..., samples, the accuracy, and the share of
samples that are exactly the gold chain. Because an answer mod m is guessed right 1 time in m,
pass@k at large k is mostly guessing (chance: 1 - (1 - 1/m)^k, stored as "chance"); so it also
stores "pass_at_k_gold", where a sample counts only if it is right *and* writes the gold chain.

    python bench/r1zero_passk.py --shipped OUT.json   # the shipped r1zero-base / r1zero-rl, default task
"""

from __future__ import annotations

import _common as C  # noqa: I001  (puts the repo root on sys.path)

import json
import random
from dataclasses import asdict
from pathlib import Path

from minids.checkpoint import load_checkpoint
from minids.evaluate import pass_at_k_curve, rollout_stats
from minids.tasks import TaskConfig, sample_problem


def evaluate_run(run: Path, problems: int, samples: int, device: str) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    base = summary.get("pretraining", {}).get("stages", [{"checkpoint": "base.pt"}])[-1]["checkpoint"]
    out = evaluate({"base": load_checkpoint(run / base, device), "rl": load_checkpoint(run / "rl.pt", device)},
                   TaskConfig(**summary["settings"]["task"]), summary["settings"]["grpo"]["max_completion_length"],
                   problems, samples, run.name)
    (run / "passk.json").write_text(json.dumps(out, indent=1))
    return out


def evaluate(models: dict, task: TaskConfig, cap: int, problems: int, samples: int, label: str) -> dict:
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k <= samples]
    m = task.modulus or 0
    out = {"task": asdict(task), "samples": samples, "problems": problems, "ks": ks, "models": {},
           "chance": {str(k): 1 - (1 - 1 / m) ** k if m else 0.0 for k in ks}}
    for name, ck in models.items():
        rows = {}
        for n in range(task.min_operands, task.max_operands + 1):
            rng = random.Random(7 * 1000 + n)
            probs = [sample_problem(rng, task, n_operands=n) for _ in range(problems)]
            st = rollout_stats(ck.model, ck.tokenizer, probs, temperature=1.0, samples=samples,
                               max_new_tokens=cap, seed=n)
            per = [st["correct"][i * samples:(i + 1) * samples] for i in range(problems)]
            both = [c and g for c, g in zip(st["correct"], st["gold"])]
            per_gold = [both[i * samples:(i + 1) * samples] for i in range(problems)]
            rows[n] = {"accuracy": st["accuracy"], "gold_chain": sum(st["gold"]) / len(st["gold"]),
                       "think_length": st["think_length"],
                       "pass_at_k": {str(k): v for k, v in pass_at_k_curve(per, ks).items()},
                       "pass_at_k_gold": {str(k): v for k, v in pass_at_k_curve(per_gold, ks).items()}}
            print(f"{label} {name} n={n}: acc {st['accuracy']:.3f} gold {rows[n]['gold_chain']:.3f} "
                  f"pass@{ks[-1]} {rows[n]['pass_at_k'][str(ks[-1])]:.3f} "
                  f"gold pass@{ks[-1]} {rows[n]['pass_at_k_gold'][str(ks[-1])]:.3f}", flush=True)
        out["models"][name] = rows
    return out


def main(argv=None):
    p = C.base_parser(__doc__.splitlines()[0], threads=2)
    p.add_argument("runs", nargs="*")
    p.add_argument("--shipped", default=None, help="evaluate the shipped checkpoints instead; write this file")
    p.add_argument("--problems", type=int, default=32)
    p.add_argument("--samples", type=int, default=64)
    args = p.parse_args(argv)
    device = C.setup(args)
    if args.shipped:
        from minids.checkpoint import load_pretrained
        models = {m: load_pretrained(f"r1zero-{m}") for m in ("base", "rl")}
        for ck in models.values():
            ck.model.to(device)
        out = evaluate(models, TaskConfig(), 64, args.problems, args.samples, "shipped")
        out["made_by"] = f"python bench/r1zero_passk.py --shipped {args.shipped} --problems {args.problems} " \
                         f"--samples {args.samples}"
        Path(args.shipped).write_text(json.dumps(out, indent=1))
    for run in args.runs:
        evaluate_run(Path(run), args.problems, args.samples, str(device))


if __name__ == "__main__":
    main()
