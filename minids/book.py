"""The read-only edition: every notebook executed once and written as a static site that opens offline.

`python -m minids book --out book` runs each notebook top to bottom in a fresh kernel (the full setting; with
`--fast`, or MINIDS_FAST=1 in the environment, the short CI setting), keeping the final state of every widget,
then writes one HTML page per notebook with nbconvert's HTML exporter and an index in course order:

    book/index.html                       chapters in course order, both languages where they exist
    book/04_moe_routing.html              the narrative, the outputs, widgets with their saved state
    book/zh/04_moe_routing.html           the Chinese edition (notebooks/zh/), when there is one
    book/_static/plotly.min.js            plotly's JavaScript, once for the whole book
    book/_static/embed.js                 ipywidgets' renderer for saved widget state (minids/data/vendor)
    book/_static/book.js, book.css        draws the figures; the page style

Nothing is fetched from a CDN, so the folder can be copied to a USB stick and opened with a double click.
Three things make that so:

- plotly figures reach the page as data (`application/vnd.plotly.v1+json`), in cell outputs and inside the
  saved outputs of `ipywidgets.Output`; each becomes a `<div class="minids-plotly minids-fig-ID">` and its data
  goes into the page's figure table, which book.js draws with the one local plotly.js;
- a `go.FigureWidget` (a live training chart) is an anywidget whose JavaScript lives in the kernel's
  extension; in the book it is replaced by a plain HTML widget holding the same static figure;
- the page template (minids/data/nbconvert/templates/minids-book) drops nbconvert's require.js, MathJax and
  mermaid links to cdnjs. Formulas therefore show as their TeX source.

Code cells are collapsed (a `<details>` per cell), not removed: the page reads as a chapter, and a student
who wonders how a figure was made opens the code under it. Cells tagged `presenter-notes` are removed.
"""

from __future__ import annotations

import contextlib
import copy
import html
import os
import shutil
import tempfile
from pathlib import Path

from .classroom import DATA, LANGS, NOTES_TAG, Chapter, chapters

FIGURE = "application/vnd.plotly.v1+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TEMPLATES = DATA / "nbconvert" / "templates"
VENDOR = DATA / "vendor" / "html-manager"
STATIC = "_static"


def page_name(ch: Chapter) -> str:
    """Where a chapter's page lives, relative to the book's root."""
    return f"{ch.stem}.html" if ch.lang == "en" else f"{ch.lang}/{ch.stem}.html"


# --------------------------------------------------------------------------- the notebook, before rendering


def strip_notes(nb) -> int:
    """Drop the cells tagged presenter-notes (they are for the lecturer). Returns how many."""
    keep = [c for c in nb.cells if NOTES_TAG not in c.get("metadata", {}).get("tags", [])]
    dropped = len(nb.cells) - len(keep)
    nb.cells = keep
    return dropped


def extract_figures(nb) -> dict[str, dict]:
    """Replace every plotly figure in `nb` (outputs, Output widgets' saved outputs, FigureWidgets) by a
    `<div class="minids-plotly minids-fig-ID">`; return {ID: figure} for the page's figure table."""
    figures: dict[str, dict] = {}

    def placeholder(fig: dict) -> str:
        key = f"{len(figures):03d}"
        figures[key] = {k: fig[k] for k in ("data", "layout", "config") if k in fig}
        return f'<div class="minids-plotly minids-fig-{key}"></div>'

    def swap(outputs):
        for out in outputs:
            data = out.get("data", {})
            if FIGURE in data:
                out["data"] = {"text/html": placeholder(data[FIGURE]), "text/plain": "<plotly figure>"}

    for cell in nb.cells:
        swap(cell.get("outputs", []))
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for model_id, model in list(state.items()):
        s = model.get("state", {})
        if model.get("model_name") == "OutputModel":
            swap(s.get("outputs", []))
        elif "_widget_data" in s and "_widget_layout" in s:  # plotly's FigureWidget (an anywidget)
            div = placeholder({"data": s["_widget_data"], "layout": s["_widget_layout"]})
            state.pop(model_id)
            state.update(_html_widget_state(model_id, div))
    return figures


def _html_widget_state(model_id: str, value: str) -> dict:
    """The saved state of an `ipywidgets.HTML(value)` under the id `model_id` (with its layout and style)."""
    import ipywidgets

    w = ipywidgets.HTML(value=value)
    try:
        parts = {model_id: w, w.layout.model_id: w.layout, w.style.model_id: w.style}
        return {key: {"model_name": part._model_name, "model_module": part._model_module,
                      "model_module_version": part._model_module_version,
                      "state": copy.deepcopy(part.get_state())}
                for key, part in parts.items()}
    finally:
        w.style.close(), w.layout.close(), w.close()


# --------------------------------------------------------------------------- execute, render


@contextlib.contextmanager
def _environ(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(path: Path, fast: bool | None = None, timeout: int = 900):
    """Run a notebook top to bottom in a fresh kernel (working directory: an empty temporary folder), keeping
    the widgets' final state. fast=None keeps MINIDS_FAST as the environment has it."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {"TQDM_DISABLE": "1"}
    if fast is not None:
        env["MINIDS_FAST"] = "1" if fast else "0"
    with tempfile.TemporaryDirectory(prefix="minids-book-") as cwd, _environ(**env):
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                         resources={"metadata": {"path": cwd}})
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as e:
            raise RuntimeError(f"{path} failed while building the book:\n{e}") from None
    return nb


def render(nb, ch: Chapter, nav: str) -> str:
    """One executed notebook -> the HTML of its page (code collapsed, prompts hidden, nothing from a CDN)."""
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    strip_notes(nb)
    figures = extract_figures(nb)
    static = STATIC if ch.lang == "en" else f"../{STATIC}"
    exporter = HTMLExporter(template_name="minids-book", extra_template_basedirs=[str(TEMPLATES)],
                            exclude_input_prompt=True, exclude_output_prompt=True,
                            widget_renderer_url=f"{static}/embed.js")
    body, _ = exporter.from_notebook_node(nb, resources={
        "metadata": {"name": ch.title},
        "minids": {"static": static, "figures": figures, "nav": nav}})
    return body


def nav_html(ch: Chapter, book: list[Chapter]) -> str:
    """Contents · previous · next (same language) · the other editions of this chapter."""
    up = "" if ch.lang == "en" else "../"
    same = [c for c in book if c.lang == ch.lang]
    i = same.index(ch)
    links = [f'<a href="{up}index.html">Contents</a>']
    if i > 0:
        links.append(f'<a href="{up}{page_name(same[i - 1])}">← {html.escape(same[i - 1].title)}</a>')
    if i + 1 < len(same):
        links.append(f'<a href="{up}{page_name(same[i + 1])}">{html.escape(same[i + 1].title)} →</a>')
    others = [c for c in book if c.number == ch.number and c.lang != ch.lang]
    if others:
        links.append('<span class="minids-lang">' + " ".join(
            f'<a href="{up}{page_name(c)}">{LANGS[c.lang]}</a>' for c in others) + "</span>")
    return '<nav class="minids-nav">' + " · ".join(links) + "</nav>"


def index_html(book: list[Chapter], title: str = "minids — DeepSeek in a notebook") -> str:
    """The contents page: one entry per notebook number, in course order, with every edition built."""
    items = []
    for number in dict.fromkeys(c.number for c in book):  # course order, each number once
        editions = [c for c in book if c.number == number]
        main = next((c for c in editions if c.lang == "en"), editions[0])
        links = " ".join(f'<a href="{page_name(c)}" lang="{c.lang}">{LANGS[c.lang]}</a>' for c in editions)
        items.append(f'<li data-number="{number}"><a class="minids-title" href="{page_name(main)}">'
                     f'{html.escape(main.title)}</a> <span class="minids-editions">{links}</span>'
                     f'<p class="minids-summary">{html.escape(main.summary)}</p></li>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1.0\">"
            f"<title>{html.escape(title)}</title>"
            f'<link rel="stylesheet" href="{STATIC}/book.css"></head>\n'
            f'<body><div class="minids-index"><h1>{html.escape(title)}</h1>'
            "<p>The notebooks of the course, executed once, with their figures and widgets as they were left. "
            "It opens from the file system: no server, no network. Figures are interactive (hover, zoom); "
            "sliders show their saved position (to move them and see the model answer, run the notebook in "
            "JupyterLab: <code>python -m minids lab</code>).</p>\n"
            f'<ul class="minids-chapters">{"".join(items)}</ul></div></body></html>\n')


def write_static(out: Path) -> None:
    """_static/: plotly.js (from the installed plotly), the widget renderer, the page's script and style."""
    import plotly.offline

    static = out / STATIC
    static.mkdir(parents=True, exist_ok=True)
    (static / "plotly.min.js").write_text(plotly.offline.get_plotlyjs(), encoding="utf-8")
    for f in VENDOR.iterdir():
        if f.suffix in (".js", ".woff", ".woff2", ".txt") or f.name == "LICENSE":
            shutil.copyfile(f, static / ("LICENSE-html-manager" if f.name == "LICENSE" else f.name))
    for name in ("book.js", "book.css"):
        shutil.copyfile(DATA / "book" / name, static / name)


def build_book(out, notebooks, only: list[str] | None = None, fast: bool | None = None,
               langs=tuple(LANGS), timeout: int = 900, log=print) -> Path:
    """Execute the chapters and write the site into `out`. Returns the index page's path.

    only: notebook numbers or names ("00", "04_moe_routing"); None builds every one.
    """
    book = chapters(Path(notebooks), only=only, langs=langs)
    if not book:
        raise FileNotFoundError(f"no notebooks to build in {Path(notebooks).resolve()}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_static(out)
    for ch in book:
        log(f"book: executing {ch.lang}/{ch.path.name}")
        nb = execute(ch.path, fast=fast, timeout=timeout)
        page = out / page_name(ch)
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(render(nb, ch, nav_html(ch, book)), encoding="utf-8")
    index = out / "index.html"
    index.write_text(index_html(book), encoding="utf-8")
    log(f"book: {len(book)} pages; open {index.resolve().as_uri()}")
    return index
