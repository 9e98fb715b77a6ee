"""How long each notebook takes, from one source: `minids/data/times.json`.

The README's notebook table and every notebook's opening cell state the same figures;
`tests/test_times.py` checks that both say what the file says. Each measurement records how it
was taken (in JupyterLab with the page open in a browser, or executed headless), on what machine
and under what load, and with which version of the code, because all of these move the number:
a live chart redrawn in a browser, or one other busy program on a 2-core laptop, can double it.

    python -m minids.times      # print the README cells and the notebook sentences
"""

from __future__ import annotations

import json
from importlib import resources


def notebook_times() -> dict:
    """The parsed times file: {"machine", "notes", "notebooks": {name: {"summary", "measured": [...]}}}."""
    return json.loads(resources.files("minids.data").joinpath("times.json").read_text())


def _measurement(m: dict) -> str:
    s = m["seconds"]
    shown = f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
    return f"{shown} {m['how']}, {m['load']}, {m['code']}"


def time_sentence(name: str, times: dict | None = None) -> str:
    """The sentence a notebook's opening cell carries, e.g. '**Time, full setting:** under 2 minutes on a
    2-core CPU (measured: 140 s in JupyterLab with the page open, quiet; ...).'"""
    entry = (times or notebook_times())["notebooks"][name]
    measured = "; ".join(_measurement(m) for m in entry["measured"])
    said = f"measured: {measured}" if measured else "an estimate, not measured in the full setting yet"
    return (f"**Time, full setting:** {entry['summary']} on a 2-core laptop CPU ({said}; "
            f"see `minids/data/times.json` for the machine and how).")


def readme_cell(name: str, times: dict | None = None) -> str:
    """What the README's table says for a notebook: its summary."""
    return (times or notebook_times())["notebooks"][name]["summary"]


if __name__ == "__main__":
    for nb in notebook_times()["notebooks"]:
        print(f"{nb}\n  README: {readme_cell(nb)}\n  notebook: {time_sentence(nb)}\n")
