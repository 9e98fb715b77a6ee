"""The done-when table of the robust-pretraining sweep: `python bench/r1zero_robust_table.py DIR`.

DIR holds r1zero output folders named VARIANT_sSEED (bench/r1zero_robust.sh). Per run
(`minids.r1zero.gate_row`): the working accuracy after the default 3000-step schedule alone
("before"), the skill-onset step (first periodic eval with working accuracy >= 0.8), the
pretraining steps the run used with its extra chunks, the gate, and accuracy and think length
before -> after RL. Then, per variant, the onset-step distribution.
"""

import _common as C  # noqa: F401  (puts the repo root on sys.path)

import statistics
import sys
from collections import defaultdict
from pathlib import Path

from minids.r1zero import gate_row, read_run


def fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def main(root):
    rows = [gate_row(read_run(p)) for p in sorted(Path(root).iterdir()) if p.is_dir()]
    print("| variant | seed | working acc at 3000 | onset step | pretraining steps used | gate "
          "| sampled acc before → after | think before → after |")
    print("|---|---|---|---|---|---|---|---|")
    onsets = defaultdict(list)
    for r in rows:
        onsets[r["variant"]].append(r["onset_step"])
        acc = f"{r['accuracy'][0]:.2f} → {r['accuracy'][1]:.2f}" if "accuracy" in r else "-"
        think = f"{r['think'][0]:.1f} → {r['think'][1]:.1f}" if "think" in r else "-"
        gate = ("pass" if r["gate_passed"] else "FAIL") + (f" ({r['working']:.2f})" if "working" in r else "")
        print(f"| {r['variant']} | {r['seed']} | {fmt(r['working_at_default'])} | {r['onset_step'] or 'never'} "
              f"| {r['steps_used'] or '-'} | {gate} | {acc} | {think} |")
    print("\n| variant | onset steps | median | by 3000 (before) | by the budget (after) |")
    print("|---|---|---|---|---|")
    for v, os_ in sorted(onsets.items()):
        got = [o for o in os_ if o is not None]
        print(f"| {v} | {', '.join(str(o) if o else 'never' for o in os_)} | "
              f"{statistics.median(got) if got else '-'} | {sum(o <= 3000 for o in got)}/{len(os_)} "
              f"| {len(got)}/{len(os_)} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/robust")
