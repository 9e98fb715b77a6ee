"""Classroom delivery without a browser: finding notebooks, errors, the book's order, figures and notes.

The browser half (Voila serving, the book opened from file://) is tests/test_browser_classroom.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest

from minids.__main__ import main
from minids.book import extract_figures, index_html, nav_html, page_name, strip_notes
from minids.classroom import (DATA, NOTES_TAG, TEMPLATE, chapters, list_notebooks, resolve_notebook,
                              voila_command)

REPO = Path(__file__).resolve().parent.parent


def _nb(path: Path, title: str, cells=()):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nThe **first** paragraph, `code`.\n\nMore.")]
    nb.cells += list(cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def course(tmp_path):
    """Three notebooks written out of order, a Chinese edition of one, and a file that is not a chapter."""
    root = tmp_path / "notebooks"
    for name, title in (("04_moe_routing", "4 · Routing"), ("00_overview", "0 · Overview"),
                        ("10_late", "10 · Late")):
        _nb(root / f"{name}.ipynb", title)
    _nb(root / "zh" / "04_moe_routing.ipynb", "4 · 路由")
    (root / "scratch.ipynb").write_text("{}")
    return root


def test_resolve_by_number_name_and_path(course):
    assert resolve_notebook("04", notebooks=course).name == "04_moe_routing.ipynb"
    assert resolve_notebook("4", notebooks=course).name == "04_moe_routing.ipynb"
    assert resolve_notebook("04_moe_routing", notebooks=course).name == "04_moe_routing.ipynb"
    assert resolve_notebook("04_moe_routing.ipynb", notebooks=course).name == "04_moe_routing.ipynb"
    path = course / "00_overview.ipynb"
    assert resolve_notebook(str(path), notebooks=course) == path
    assert resolve_notebook("10", notebooks=course).name == "10_late.ipynb"


def test_resolve_chinese_edition(course):
    assert resolve_notebook("04", lang="zh", notebooks=course) == course / "zh" / "04_moe_routing.ipynb"
    assert resolve_notebook(str(course / "04_moe_routing.ipynb"), lang="zh", notebooks=course) == \
        course / "zh" / "04_moe_routing.ipynb"
    with pytest.raises(FileNotFoundError, match=r"no 中文 \(zh\) edition of 00_overview.ipynb.*zh editions: 04_moe"):
        resolve_notebook("00", lang="zh", notebooks=course)


def test_resolve_errors_name_what_exists(course):
    with pytest.raises(FileNotFoundError, match="no notebook '09'; the notebooks are: 00_overview, 04_moe_routing"):
        resolve_notebook("09", notebooks=course)
    with pytest.raises(FileNotFoundError, match="no notebook 'routing'"):
        resolve_notebook("routing", notebooks=course)
    with pytest.raises(ValueError, match="unknown language 'fr'"):
        resolve_notebook("04", lang="fr", notebooks=course)
    with pytest.raises(ValueError, match="name a notebook"):
        resolve_notebook(" ", notebooks=course)
    with pytest.raises(FileNotFoundError, match="none"):
        resolve_notebook("00", notebooks=course / "missing")


def test_cli_errors_are_one_line(course, capsys):
    for argv, expected in ((["present", "09", "--notebooks", str(course)], "no notebook '09'"),
                           (["present", "00", "--lang", "zh", "--notebooks", str(course)], "no 中文 (zh) edition"),
                           (["book", "--only", "00,77", "--notebooks", str(course)], "--only names no notebook for 77")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert expected in str(e.value), (argv, e.value)


def test_chapters_in_course_order(course):
    book = chapters(course)
    assert [(c.number, c.lang) for c in book] == [("00", "en"), ("04", "en"), ("04", "zh"), ("10", "en")]
    assert book[0].title == "0 · Overview"
    assert book[0].summary == "The first paragraph, code."  # markdown marks dropped, first paragraph only
    assert [c.stem for c in chapters(course, only=["4"])] == ["04_moe_routing", "04_moe_routing"]
    assert [c.number for c in chapters(course, only=["10", "00"], langs=("en",))] == ["00", "10"]
    assert [p.name for p in list_notebooks(course)] == ["00_overview.ipynb", "04_moe_routing.ipynb", "10_late.ipynb"]
    with pytest.raises(ValueError, match="--only names no notebook for 05"):
        chapters(course, only=["05"])


def test_index_and_nav_follow_the_course(course):
    book = chapters(course)
    page = index_html(book)
    numbers = re.findall(r'<li data-number="(\d\d)">', page)
    assert numbers == ["00", "04", "10"]            # one entry per notebook, in course order
    assert 'href="zh/04_moe_routing.html"' in page   # the Chinese edition is linked from its entry
    assert "http" not in page                      # nothing from the network
    zh = book[2]
    assert page_name(zh) == "zh/04_moe_routing.html"
    nav = nav_html(zh, book)
    assert 'href="../index.html"' in nav and 'href="../04_moe_routing.html"' in nav
    nav_en = nav_html(book[1], book)
    assert 'href="00_overview.html"' in nav_en and 'href="10_late.html"' in nav_en


def test_extract_figures_everywhere():
    """A figure in a cell output, one inside an Output widget's saved state, and a FigureWidget."""
    fig = {"data": [{"type": "bar", "y": [1, 2]}], "layout": {"height": 300}}
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"application/vnd.plotly.v1+json": fig})]
    nb.cells = [cell]
    state = {
        "out1": {"model_name": "OutputModel", "model_module": "@jupyter-widgets/output",
                 "model_module_version": "1.0.0",
                 "state": {"outputs": [{"output_type": "display_data", "metadata": {},
                                        "data": {"application/vnd.plotly.v1+json": fig}}]}},
        "chart": {"model_name": "AnyModel", "model_module": "anywidget", "model_module_version": "0.9.0",
                  "state": {"_esm": "x" * 1000, "_widget_data": fig["data"], "_widget_layout": {"height": 200}}},
    }
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state, "version_major": 2,
                                                                            "version_minor": 0}}
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]  # nbformat's copy
    figures = extract_figures(nb)
    assert sorted(figures) == ["000", "001", "002"]
    assert cell.outputs[0]["data"]["text/html"] == '<div class="minids-plotly minids-fig-000"></div>'
    assert "minids-fig-001" in state["out1"]["state"]["outputs"][0]["data"]["text/html"]
    chart = state["chart"]
    assert chart["model_name"] == "HTMLModel" and "minids-fig-002" in chart["state"]["value"]
    assert figures["002"]["layout"] == {"height": 200}
    refs = [v for v in chart["state"].values() if isinstance(v, str) and v.startswith("IPY_MODEL_")]
    assert refs and all(r.removeprefix("IPY_MODEL_") in state for r in refs)  # its layout and style came along
    assert "_esm" not in json.dumps(state)


def test_strip_notes():
    nb = nbformat.v4.new_notebook()
    note = nbformat.v4.new_markdown_cell("drag it")
    note.metadata["tags"] = [NOTES_TAG]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), note, nbformat.v4.new_code_cell("1")]
    assert strip_notes(nb) == 1 and [c.cell_type for c in nb.cells] == ["markdown", "code"]


def test_voila_command_is_local_and_offline(course):
    argv, env = voila_command(course / "00_overview.ipynb", 8899)
    assert "--Voila.ip=127.0.0.1" in argv and "--port=8899" in argv and f"--template={TEMPLATE}" in argv
    assert "--no-browser" in argv
    assert env["JUPYTER_PATH"].split(":")[0] == str(DATA)
    assert (DATA / "voila" / "templates" / TEMPLATE / "index.html.j2").exists()
    with pytest.raises(FileNotFoundError):
        voila_command(course / "nope.ipynb", 8899)


def test_present_template_drops_every_cdn_link_of_voila():
    """The template removes Voila's CDN links by exact text: if Voila changes them, this says so."""
    voila = pytest.importorskip("voila")
    lab = Path(sys.prefix) / "share" / "jupyter" / "voila" / "templates" / "lab" / "index.html.j2"
    if not lab.exists():
        pytest.skip(f"voila {voila.__version__}'s lab template not found at {lab}")
    ours = (DATA / "voila" / "templates" / TEMPLATE / "index.html.j2").read_text()
    links = [ln.strip() for ln in lab.read_text().splitlines() if "https://" in ln and ln.strip().startswith("<")]
    assert links, "Voila's lab template has no CDN link any more: the replace() in our template can go"
    for link in links:
        assert f"replace('{link}', '')" in ours, f"not removed from present mode: {link}"


def test_book_template_and_static_are_offline():
    for path in (DATA / "nbconvert" / "templates" / "minids-book").iterdir():
        assert "http" not in re.sub(r"\{#.*?#\}", "", path.read_text(), flags=re.S), path
    embed = (DATA / "vendor" / "html-manager" / "embed.js").read_text()
    assert "application/vnd.jupyter.widget-state+json" in embed  # the renderer reads the saved state


def test_every_section_has_presenter_notes():
    """Each `## ` section of every notebook carries one presenter-notes cell, inside the section."""
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb")):
        nb = json.loads(path.read_text())
        sections, notes = 0, 0
        for c in nb["cells"]:
            src = "".join(c["source"])
            is_note = NOTES_TAG in c.get("metadata", {}).get("tags", [])
            if c["cell_type"] == "markdown" and not is_note and re.match(r"^## ", src):
                if sections:
                    assert notes == 1, f"{path.name}: section {sections} has {notes} presenter-notes cells"
                sections, notes = sections + 1, 0
            elif is_note:
                assert c["cell_type"] == "markdown", f"{path.name}: a presenter-notes cell must be markdown"
                assert src.startswith("**Presenter notes.**") and len(src) > 80, f"{path.name}: {src[:60]!r}"
                notes += 1
        assert sections, f"{path.name}: no sections"
        assert notes == 1, f"{path.name}: the last section has {notes} presenter-notes cells"
