"""Print a markdown table of R1-Zero run summaries: `python bench/r1zero_table.py DIR [DIR ...]`.

Each DIR is an output folder of `python -m minids r1zero` (or a folder of such folders).
"""

import json
import sys
from pathlib import Path


def rows(paths):
    for p in map(Path, paths):
        for summary in ([p / "summary.json"] if (p / "summary.json").exists() else sorted(p.glob("*/summary.json"))):
            yield summary.parent.name, json.loads(summary.read_text())


def main(paths):
    print("| run | device | sampled acc | greedy acc | think tokens | growth | base working acc | pretrain s | GRPO s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, s in rows(paths):
        b, a, t = s["before"], s["after"], s["timings"]
        print(f"| {name} | {s['device']} | {b['sampled_accuracy']:.2f} → {a['sampled_accuracy']:.2f} "
              f"| {b['greedy_accuracy']:.2f} → {a['greedy_accuracy']:.2f} "
              f"| {b['think_length']:.1f} → {a['think_length']:.1f} | ×{s['think_growth']:.2f} "
              f"| {b['working_accuracy']:.2f} | {t['pretrain_s']:.0f} | {t['grpo_s']:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["bench/results"])
