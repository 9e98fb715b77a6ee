"""The done-when table of the robust-pretraining sweep: `python bench/r1zero_robust_table.py DIR`.

DIR holds r1zero output folders named VARIANT_sSEED (bench/r1zero_robust.sh). Per run: the gate
and skill onset with the default 3000-step schedule alone ("before"), the pretraining steps the
run used with the extra chunks, the gate after them, accuracy and think length before -> after
RL. Then, per variant, the onset-step distribution. A run that stopped at the gate (no
summary.json) is read from its log and pretrain_history.jsonl.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def history(run: Path) -> list[dict]:
    f = run / "pretrain_history.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def onset(h, threshold=0.8):
    return next((r["step"] for r in h if r.get("eval/working_accuracy", -1) >= threshold), None)


def main(root):
    root = Path(root)
    onsets = defaultdict(list)
    print("| variant | seed | gate at 3000 (working acc) | onset step | pretraining steps used | gate after "
          "| sampled acc before → after | think before → after |")
    print("|---|---|---|---|---|---|---|---|")
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        variant, seed = run.name.rsplit("_s", 1)
        h = history(run)
        at3000 = next((r["eval/working_accuracy"] for r in h if r["step"] == 3000 and "eval/working_accuracy" in r),
                      float("nan"))
        o = onset(h)
        onsets[variant].append(o)
        if (run / "summary.json").exists():
            s = json.loads((run / "summary.json").read_text())
            b, a, pre = s["before"], s["after"], s["pretraining"]
            print(f"| {variant} | {seed} | {at3000:.2f} | {o} | {pre['steps_used']} | "
                  f"{'pass' if s['gate_passed'] else 'FAIL'} ({b['working_accuracy']:.2f}) | "
                  f"{b['sampled_accuracy']:.2f} → {a['sampled_accuracy']:.2f} | "
                  f"{b['think_length']:.1f} → {a['think_length']:.1f} |")
        else:
            log = (root / f"{run.name}.log").read_text() if (root / f"{run.name}.log").exists() else ""
            why = "gate refused" if "refusing" in log else "unfinished"
            print(f"| {variant} | {seed} | {at3000:.2f} | {o} | {h[-1]['step'] if h else '-'} | FAIL ({why}) | - | - |")
    print("\n| variant | onset steps (gate ≥ 0.8 in the periodic eval) | median | within 3000 | within budget |")
    print("|---|---|---|---|---|")
    for v, os_ in sorted(onsets.items()):
        got = [o for o in os_ if o is not None]
        med = statistics.median(got) if got else "-"
        print(f"| {v} | {', '.join(str(o) if o else 'never' for o in os_)} | {med} | "
              f"{sum(o <= 3000 for o in got)}/{len(os_)} | {len(got)}/{len(os_)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/robust")
