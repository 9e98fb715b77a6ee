"""Copy the targets table of bench/RESULTS.md into README.md, so the README's speed figures are never typed twice.

RESULTS.md holds the one table of speed targets, each row with its measured value, the machine
and the command that reproduces it, between the markers

    <!-- speed-table:start -->  ...  <!-- speed-table:end -->

README.md has the same markers; `python bench/speed_table.py` rewrites what lies between them in
README.md with the block from RESULTS.md (`--check` only reports whether they differ). A unit test
(`tests/test_bench.py`) fails when they differ, so an edited RESULTS.md forces a regenerated README.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- speed-table:start -->", "<!-- speed-table:end -->"


def block(text: str, where: str) -> str:
    """The text between the markers (exclusive)."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{where} must contain one {START} ... {END} block")
    return text[text.index(START) + len(START):text.index(END)]


def render(results: str, readme: str) -> str:
    """README text with its marked block replaced by the one in RESULTS."""
    table = block(results, "bench/RESULTS.md")
    block(readme, "README.md")
    return readme[:readme.index(START) + len(START)] + table + readme[readme.index(END):]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = p.parse_args(argv)
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    new = render(results, readme)
    if args.check:
        print("README.md speed table is up to date" if new == readme else "README.md speed table differs")
        return 0 if new == readme else 1
    readme_path.write_text(new)
    print("README.md speed table rewritten from bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
