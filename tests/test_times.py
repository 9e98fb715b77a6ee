"""One source for how long each notebook takes: minids/data/times.json, stated by the README and the notebooks."""

import json
import re
from pathlib import Path

import pytest

from minids.times import notebook_times, readme_cell, time_sentence

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


def _readme_rows() -> dict[str, str]:
    """notebook name -> the time column of the README's notebook table."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\| `(\d\d[a-z]?_\w+)` \|.*\| ([^|]+) \|$", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_every_notebook_has_times_and_every_measurement_says_how():
    times = notebook_times()
    assert set(times["notebooks"]) == {p.stem for p in NOTEBOOKS}
    assert "2 cores" in times["machine"]
    for name, entry in times["notebooks"].items():
        assert entry["summary"].strip(), name
        for m in entry["measured"]:
            assert m["seconds"] > 0 and m["how"] and m["load"] and m["code"], (name, m)


def test_readme_table_states_the_times_file():
    rows = _readme_rows()
    assert set(rows) == {p.stem for p in NOTEBOOKS}
    for name, cell in rows.items():
        assert cell == readme_cell(name), f"README says {cell!r} for {name}; times.json says {readme_cell(name)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_header_states_the_times_file(path):
    first = json.loads(path.read_text())["cells"][0]
    text = "".join(first["source"])
    assert first["cell_type"] == "markdown" and time_sentence(path.stem) in text, \
        f"{path.name}'s first cell must say, verbatim: {time_sentence(path.stem)}"
    assert "Loading widget" in text  # and that widgets come back when the notebook is run


def test_time_sentence_by_hand():
    times = {"notebooks": {"x": {"summary": "under a minute", "measured": [
        {"seconds": 42, "how": "in JupyterLab with the page open", "load": "quiet", "code": "now"},
        {"seconds": 150, "how": "executed headless", "load": "one busy program beside it", "code": "older code"}]}}}
    assert time_sentence("x", times) == (
        "**Time, full setting:** under a minute on a 2-core laptop CPU (measured: 42 s in JupyterLab with the page "
        "open, quiet, now; 2.5 min executed headless, one busy program beside it, older code; see "
        "`minids/data/times.json` for the machine and how).")
    assert "not measured" in time_sentence("x", {"notebooks": {"x": {"summary": "s", "measured": []}}})


def test_overview_map_states_the_times_file():
    cells = json.loads((ROOT / "notebooks" / "00_overview.ipynb").read_text())["cells"]
    text = next("".join(c["source"]) for c in cells if "".join(c["source"]).startswith("## The map of the course"))
    found = {}
    for line in text.splitlines():
        m = re.match(r"^\| \*\*(\d\d[a-z]?) .*\| ([^|]+) \|$", line)
        if m:
            found[m.group(1)] = m.group(2).strip()
    assert found == {name.split("_")[0]: readme_cell(name) for name in notebook_times()["notebooks"]}
