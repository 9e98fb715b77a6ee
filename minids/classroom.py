"""Classroom delivery: present one notebook as an app (Voila), or build the read-only book (nbconvert).

Two audiences, neither of whom wants to scroll past code or run cells:

- a lecturer with a projector and often no internet: `python -m minids present 04` serves one notebook on
  127.0.0.1 with Voila (Voilà, the Jupyter dashboard server): the narrative, the outputs and live widgets,
  no code, no prompts, large type, no outside request;
- a student on a phone or a library computer without PyTorch: `python -m minids book` executes every
  notebook once and writes a static site (nbconvert's HTML exporter with the saved widget state) that opens
  from the file system, with interactive figures and no network (`minids/book.py`).

This module holds what both share: finding a notebook from what a person types ("04", "04_moe_routing",
a path; `--lang zh` for the Chinese edition under `notebooks/zh/`), the chapters in course order, and the
command line that starts Voila with the presentation template (`minids/data/voila/templates/minids-present`).
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
TEMPLATE = "minids-present"                     # minids/data/voila/templates/minids-present
LANGS = {"en": "English", "zh": "中文"}          # "en" lives in notebooks/, every other language in notebooks/LANG/
NAME_RE = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
NOTES_TAG = "presenter-notes"                   # markdown cells for the lecturer: hidden when presenting and in the book


def default_notebooks_dir() -> Path:
    """`notebooks/` in the current folder, else the one next to the package (a checkout, an editable install)."""
    here = Path("notebooks")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "notebooks"


def _lang_dir(notebooks: Path, lang: str) -> Path:
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")
    return notebooks if lang == "en" else notebooks / lang


def list_notebooks(notebooks: Path, lang: str = "en") -> list[Path]:
    """The course's notebooks of one language, in course order (their two-digit numbers)."""
    folder = _lang_dir(Path(notebooks), lang)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.ipynb") if NAME_RE.match(p.name)), key=lambda p: p.name)


def resolve_notebook(spec: str, lang: str = "en", notebooks: Path | None = None) -> Path:
    """What a person typed -> the notebook file. Raises FileNotFoundError saying what exists instead.

    `spec` is a number ("04" or "4"), a name ("04_moe_routing", with or without ".ipynb") or a path to a
    notebook. With lang="zh" the Chinese edition of the same notebook: notebooks/zh/<same file name>.

    >>> resolve_notebook("4").name          # doctest: +SKIP
    '04_moe_routing.ipynb'
    """
    notebooks = Path(notebooks) if notebooks is not None else default_notebooks_dir()
    _lang_dir(notebooks, lang)  # validates lang
    spec = str(spec).strip()
    if not spec:
        raise ValueError("name a notebook: a number such as 04, a name such as 04_moe_routing, or a path")
    english = list_notebooks(notebooks)
    path = Path(spec)
    if path.suffix == ".ipynb" and path.exists():
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a notebook")
        found = path
        if lang != "en":  # the edition in LANG/ beside the English file
            return _edition(path.parent, path.name, lang)
        return found
    if re.fullmatch(r"\d{1,2}", spec):
        hits = [p for p in english if p.name[:2] == f"{int(spec):02d}"]
    else:
        stem = spec.removesuffix(".ipynb")
        hits = [p for p in english if p.stem == stem]
    if not hits:
        available = ", ".join(p.stem for p in english) or f"none (no notebooks in {notebooks.resolve()})"
        raise FileNotFoundError(f"no notebook {spec!r}; the notebooks are: {available}")
    return hits[0] if lang == "en" else _edition(notebooks, hits[0].name, lang)


def _edition(notebooks: Path, name: str, lang: str) -> Path:
    path = _lang_dir(notebooks, lang) / name
    if path.exists():
        return path
    have = ", ".join(p.stem for p in list_notebooks(notebooks, lang)) or "none yet"
    raise FileNotFoundError(f"no {LANGS[lang]} ({lang}) edition of {name}: looked for {path}; "
                            f"{lang} editions: {have}")


# --------------------------------------------------------------------------- chapters (for the book's index)


@dataclass(frozen=True)
class Chapter:
    number: str      # "04"
    stem: str        # "04_moe_routing"
    lang: str        # "en", "zh"
    path: Path       # the notebook
    title: str       # its first heading, "4 · Mixture of Experts: ..."
    summary: str     # the first paragraph under that heading


def chapter(path: Path, lang: str = "en") -> Chapter:
    """A notebook's number, title and opening paragraph, read from its first markdown cell."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    first = next((c for c in nb["cells"] if c["cell_type"] == "markdown"), None)
    text = "".join(first["source"]) if first else ""
    lines = text.strip().splitlines()
    title = lines[0].lstrip("#").strip() if lines and lines[0].startswith("#") else Path(path).stem
    body = "\n".join(lines[1:]).strip().split("\n\n")[0] if lines else ""
    summary = re.sub(r"\*\*|__|`|(?<!\w)\*|\*(?!\w)", "", " ".join(body.split()))  # plain text for the index
    return Chapter(Path(path).name[:2], Path(path).stem, lang, Path(path), title, summary)


def chapters(notebooks: Path, only: list[str] | None = None, langs=tuple(LANGS)) -> list[Chapter]:
    """Every chapter in course order (number, then language), optionally only the numbers in `only`.

    A number in `only` that matches no English notebook is an error (a typo should not build an empty book).
    """
    english = list_notebooks(notebooks)
    if only is not None:
        wanted = {f"{int(n):02d}" if n.strip().isdigit() else n.strip() for n in only if n.strip()}
        known = {p.name[:2] for p in english} | {p.stem for p in english}
        unknown = sorted(wanted - known)
        if unknown:
            raise ValueError(f"--only names no notebook for {', '.join(unknown)}; the notebooks are: "
                             f"{', '.join(p.stem for p in english)}")
        english = [p for p in english if p.name[:2] in wanted or p.stem in wanted]
    out = []
    for p in english:
        for lang in langs:
            edition = p if lang == "en" else _lang_dir(Path(notebooks), lang) / p.name
            if edition.exists():
                out.append(chapter(edition, lang))
    return out


# --------------------------------------------------------------------------- present: Voila


def free_port(preferred: int = 8866) -> int:
    """`preferred` if nothing listens there on 127.0.0.1, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def voila_command(notebook: Path, port: int, open_browser: bool = False) -> tuple[list[str], dict]:
    """The argv and environment that serve `notebook` with the presentation template on 127.0.0.1:port.

    The template is found through JUPYTER_PATH (minids/data holds voila/templates/minids-present).
    The kernel runs in the notebook's folder with this interpreter's environment, so `minids` and `widgets`
    import as they do in Lab, and the widgets load the shipped checkpoints.
    """
    notebook = Path(notebook)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}")
    voila = Path(sys.executable).parent / "voila"
    argv = [str(voila) if voila.exists() else "voila", str(notebook.resolve()),
            f"--port={port}", "--Voila.ip=127.0.0.1", "--Voila.port_retries=0",
            f"--template={TEMPLATE}", "--theme=light", "--show_tracebacks=True",
            "--VoilaConfiguration.show_margins=False"]
    if not open_browser:
        argv.append("--no-browser")
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(DATA), env.get("JUPYTER_PATH")]))
    env.setdefault("TQDM_DISABLE", "1")  # Voila shows the outputs at the end: progress bars would only flicker
    return argv, env
