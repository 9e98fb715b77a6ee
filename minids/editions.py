"""Editions: the translated notebooks (notebooks/zh/) built from the English ones, so the code cannot drift.

An edition notebook has the same cells as its English notebook, in the same order, with the same
cell ids. Its code cells are *generated*: the English source with some string literals swapped
(so that printed labels can speak the reader's language), plus, in the `parameters` cell, a
suffix that sets the language. Its markdown cells are *translated*: each records in its metadata
a hash of the English cell it translates, so a changed English cell shows up as stale.

    python -m minids editions sync             # update every edition; list the cells to (re)translate
    python -m minids editions sync --check     # the same report, writing nothing; exit 1 if anything is out of date
    python -m minids editions sync --translated 05_grpo_r1zero:3c2d9fc4   # "I have updated this cell"

What a zh cell's metadata holds (key ``minids``):

    markdown  {"en": "<hash>"}                 translates the English text with this hash
              {"en": "<hash>", "todo": true}   not translated yet: holds that English text
    code      {"en": "<hash>", "strings": {'"loss"': '"损失"'}}   built from that English code, with
                                                these string literals swapped (by exact source text)

Cells are matched by id where the English notebook has ids, otherwise by aligning the recorded
hashes with the current English cells, so an English cell inserted or edited anywhere leaves
every other translation where it belongs.

`sync` rebuilds every code cell from English (fully automatic), keeps every translated markdown cell,
creates a skeleton cell (English text, ``"en": null``) for a new English markdown cell, drops cells
that are gone from English, and creates a whole skeleton notebook for a new English notebook. It
never edits Chinese prose; it reports which cells need a translator: new ones and ones whose
English changed after they were translated.

Pure functions over notebook dicts (plain `json`, written as nbformat writes them), tested in
tests/test_editions.py.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

META = "minids"  # the cell-metadata key
LANGUAGES = ("zh",)
# Appended to the English `parameters` cell in each edition: the one place where the code differs.
LANGUAGE_SUFFIX = {
    "zh": '\nLANG = "zh"  # 中文版：组件与图表使用中文\nimport widgets\n\nwidgets.set_language(LANG)',
}


# ----------------------------------------------------------------------------- notebooks as dicts

def read_notebook(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dumps_notebook(nb: dict) -> str:
    """The exact text nbformat writes (indent 1, sorted keys, UTF-8, trailing newline)."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def write_notebook(nb: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".ipynb.tmp")
    tmp.write_text(dumps_notebook(nb), encoding="utf-8")
    tmp.replace(path)


def source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def as_lines(text: str) -> list[str]:
    """Notebook JSON stores a source as a list of lines, each but the last ending in a newline."""
    return text.splitlines(keepends=True)


def text_hash(text: str) -> str:
    """The hash a translation records of its English cell: 16 hex digits of SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def cell_key(cell: dict, index: int) -> str:
    """A cell's id, or its position for notebooks older than nbformat 4.5."""
    return cell.get("id") or f"#{index}"


def is_parameters(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])


# ----------------------------------------------------------------------------- code: strings swapped, nothing else

def _python(text: str) -> str:
    """A cell's source as plain Python (IPython magics such as `%time` become calls)."""
    if not any(line.lstrip().startswith(("%", "!")) for line in text.splitlines()):
        return text
    from IPython.core.inputtransformer2 import TransformerManager
    return TransformerManager().transform_cell(text)


def _string_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the outermost string literals (plain or f-strings) of a code cell."""
    tree = ast.parse(_python(text))
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    spans = []
    # a string used as an index (n["active"]) is a data key, never a label: it is never swapped
    keys = {id(n.slice) for n in ast.walk(tree) if isinstance(n, ast.Subscript)}

    def visit(node, inside=False):
        is_str = isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))
        if is_str and not inside and hasattr(node, "end_lineno") and id(node) not in keys:
            # an implicit concatenation "a" "b" is one node spanning both: its exact text is the key
            spans.append((starts[node.lineno - 1] + _col(lines[node.lineno - 1], node.col_offset),
                          starts[node.end_lineno - 1] + _col(lines[node.end_lineno - 1], node.end_col_offset)))
        for child in ast.iter_child_nodes(node):
            visit(child, inside or is_str)

    visit(tree)
    return sorted(spans)


def _col(line: str, byte_offset: int) -> int:
    """ast column offsets count UTF-8 bytes; convert to characters."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="replace"))


def string_literals(text: str) -> list[str]:
    """The exact source text of each string literal in a code cell, in order (data keys such as
    the "active" of n["active"] excluded: they must stay as they are)."""
    return [text[a:b] for a, b in _string_spans(text)]


def apply_strings(text: str, strings: dict[str, str]) -> str:
    """`text` with each string literal whose exact source text is a key of `strings` replaced.

    >>> apply_strings('print("loss", x)', {'"loss"': '"损失"'})
    'print("损失", x)'
    """
    if not strings:
        return text
    out, last = [], 0
    for a, b in _string_spans(text):
        out += [text[last:a], strings.get(text[a:b], text[a:b])]
        last = b
    return "".join(out) + text[last:]


class _MaskStrings(ast.NodeTransformer):
    def visit_Constant(self, node):
        return ast.Constant(value="<str>") if isinstance(node.value, str) else node

    def visit_JoinedStr(self, node):
        # keep the expressions inside an f-string, drop its text parts; a translation may put
        # them in another order (Chinese word order differs), so they are compared as a sorted list
        values = [self.visit(v) for v in node.values if isinstance(v, ast.FormattedValue)]
        return ast.JoinedStr(values=sorted(values, key=ast.dump))


def code_shape(text: str) -> str:
    """The parsed code with every string literal's text masked: equal shapes = equal logic."""
    return ast.dump(_MaskStrings().visit(ast.parse(_python(text))), include_attributes=False)


def same_code(en: str, other: str) -> bool:
    """True when two code cells are the same program apart from the text of string literals."""
    return code_shape(en) == code_shape(other)


def strip_language_suffix(text: str, lang: str) -> str:
    """A parameters cell without the edition's language suffix (unchanged if it has none)."""
    suffix = LANGUAGE_SUFFIX[lang]
    return text[:-len(suffix)] if text.endswith(suffix) else text


def edition_code(en_cell: dict, strings: dict[str, str], lang: str) -> str:
    """The edition's source for an English code cell: strings swapped, language set in `parameters`."""
    text = apply_strings(source(en_cell), strings)
    return text + LANGUAGE_SUFFIX[lang] if is_parameters(en_cell) else text


# ----------------------------------------------------------------------------- sync

@dataclass
class SyncReport:
    """What `sync_notebook` changed or found, for one notebook. Empty lists = in sync.

    Cells are named by their English position and id (or first line), e.g. "cell 7 (3c2d9fc4)".
    """
    name: str
    created: bool = False                                     # a new skeleton notebook was made
    code_updated: list[str] = field(default_factory=list)      # code cells rebuilt from English
    added: list[str] = field(default_factory=list)             # cells new in English, added to the edition
    removed: list[str] = field(default_factory=list)           # edition cells whose English cell is gone
    untranslated: list[str] = field(default_factory=list)      # markdown still holding English text
    stale: list[str] = field(default_factory=list)             # translated, but the English changed since
    unused_strings: list[str] = field(default_factory=list)    # 'cell: literal' no longer in the English code

    @property
    def in_sync(self) -> bool:
        """Nothing to write and nothing to translate."""
        return not (self.created or self.code_updated or self.added or self.removed
                    or self.untranslated or self.stale or self.unused_strings)

    @property
    def todo(self) -> list[str]:
        """What only a translator can do: cells to translate or retranslate, string swaps to redo."""
        return self.untranslated + self.stale + self.unused_strings

    def lines(self) -> list[str]:
        out = ["new notebook: skeleton created from English"] if self.created else []
        for what, cells in [("code rebuilt from English", self.code_updated), ("added", self.added),
                            ("removed", self.removed), ("TO TRANSLATE (new)", self.untranslated),
                            ("TO RETRANSLATE (English changed)", self.stale),
                            ("string swap no longer matches the English code", self.unused_strings)]:
            out += [f"{what}: {c}" for c in cells]
        return [f"{self.name}: {line}" for line in out] or [f"{self.name}: in sync"]


def _meta(cell: dict) -> dict:
    return cell.setdefault("metadata", {}).setdefault(META, {})


def _recorded(cell: dict):
    return cell.get("metadata", {}).get(META, {}).get("en")


def describe(cell: dict, index: int) -> str:
    """'cell 7 (3c2d9fc4)', or 'cell 7 ("## Byte fallback ...")' for a notebook without cell ids."""
    if cell.get("id"):
        return f"cell {index} ({cell['id']})"
    first = next((line.strip() for line in source(cell).splitlines() if line.strip()), "")
    return f"cell {index} ({first[:48]!r})"


def align(en_cells: list[dict], zh_cells: list[dict]) -> list[int | None]:
    """For each English cell, the index of the edition cell made from it (None: none yet).

    Cells with the same id (both editions keep the English ids) match first. The rest are aligned
    by the English hash each edition cell records (difflib on the two sequences), so a cell
    inserted, deleted or edited in English moves nothing else; within an edited stretch, cells of
    the same type pair up in order.
    """
    match: list[int | None] = [None] * len(en_cells)
    zh_by_id = {c["id"]: j for j, c in enumerate(zh_cells) if c.get("id")}
    used = set()
    for i, c in enumerate(en_cells):
        j = zh_by_id.get(c.get("id")) if c.get("id") else None
        if j is not None and zh_cells[j]["cell_type"] == c["cell_type"]:
            match[i] = j
            used.add(j)
    en_rest = [i for i in range(len(en_cells)) if match[i] is None]
    zh_rest = [j for j in range(len(zh_cells)) if j not in used and not (zh_cells[j].get("id") and any(
        c.get("id") == zh_cells[j]["id"] for c in en_cells))]
    a = [(en_cells[i]["cell_type"], text_hash(source(en_cells[i]))) for i in en_rest]
    b = [(zh_cells[j]["cell_type"], _recorded(zh_cells[j])) for j in zh_rest]
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            for k in range(a1 - a0):
                match[en_rest[a0 + k]] = zh_rest[b0 + k]
        elif op == "replace":
            free = list(range(b0, b1))
            for k in range(a0, a1):
                j = next((f for f in free if b[f][0] == a[k][0]), None)
                if j is not None:
                    free.remove(j)
                    match[en_rest[k]] = zh_rest[j]
    return match


def sync_notebook(en: dict, zh: dict | None, lang: str = "zh", name: str = "") -> tuple[dict, SyncReport]:
    """(edition notebook brought up to date with `en`, report). Neither input is modified."""
    report = SyncReport(name=name, created=zh is None)
    zh_cells = zh["cells"] if zh is not None else []
    match = align(en["cells"], zh_cells)
    cells = []
    for i, en_cell in enumerate(en["cells"]):
        prev = zh_cells[match[i]] if match[i] is not None else None
        label = describe(en_cell, i)
        if en_cell["cell_type"] == "code":
            cells.append(_sync_code(en_cell, prev, label, lang, report))
        else:
            cells.append(_sync_markdown(en_cell, prev, label, report))
    report.removed += [describe(c, j) + " of the edition" for j, c in enumerate(zh_cells) if j not in match]
    out = {**copy.deepcopy({k: v for k, v in en.items() if k != "cells"}), "cells": cells}
    return out, report


def _sync_code(en_cell: dict, prev: dict | None, label: str, lang: str, report: SyncReport) -> dict:
    strings = dict(prev.get("metadata", {}).get(META, {}).get("strings", {})) if prev else {}
    literals = set(string_literals(source(en_cell)))
    report.unused_strings += [f"{label}: {s}" for s in strings if s not in literals]
    cell = copy.deepcopy(en_cell)
    cell["source"] = as_lines(edition_code(en_cell, strings, lang))
    cell["outputs"], cell["execution_count"] = [], None
    _meta(cell)["en"] = text_hash(source(en_cell))
    if strings:
        _meta(cell)["strings"] = strings
    if prev is None:
        report.added.append(label)
    elif source(prev) != source(cell) or prev.get("metadata") != cell.get("metadata"):
        report.code_updated.append(label)
    return cell


def _sync_markdown(en_cell: dict, prev: dict | None, label: str, report: SyncReport) -> dict:
    if prev is None or prev.get("metadata", {}).get(META, {}).get("todo"):
        # new, or still a skeleton: hold the current English text until someone translates it
        cell = copy.deepcopy(en_cell)
        _meta(cell).update(en=text_hash(source(en_cell)), todo=True)
        if prev is None:
            report.added.append(label)
        elif source(prev) != source(cell) or prev.get("metadata") != cell.get("metadata"):
            report.code_updated.append(label + " (untranslated skeleton, refreshed)")
        report.untranslated.append(label)
        return cell
    cell = copy.deepcopy(prev)
    if "id" in en_cell:
        cell["id"] = en_cell["id"]
    if _recorded(cell) != text_hash(source(en_cell)):
        report.stale.append(label)
    return cell


def _find(nb: dict, key: str) -> int:
    """A cell by id, or by position ("7")."""
    for i, c in enumerate(nb["cells"]):
        if c.get("id") == key:
            return i
    if key.isdigit() and int(key) < len(nb["cells"]):
        return int(key)
    raise ValueError(f"no cell {key!r}: give a cell id or a position 0..{len(nb['cells']) - 1}")


def set_translation(zh: dict, en: dict, key: str, text: str | None = None) -> None:
    """Record that markdown cell `key` (id or position) of the edition translates the *current*
    English cell, optionally setting its text first. The editions must be in sync (same cells).
    Modifies `zh` in place."""
    i = _find(en, key)
    if len(zh["cells"]) != len(en["cells"]):
        raise ValueError("the editions have different cells: run `python -m minids editions sync` first")
    cell, en_cell = zh["cells"][i], en["cells"][i]
    if cell["cell_type"] != "markdown" or en_cell["cell_type"] != "markdown":
        raise ValueError(f"cell {key!r} is a {en_cell['cell_type']} cell: only markdown is translated by hand")
    if text is not None:
        cell["source"] = as_lines(text.strip("\n"))
    meta = _meta(cell)
    meta.pop("todo", None)
    meta["en"] = text_hash(source(en_cell))


def set_strings(zh: dict, en: dict, key: str, strings: dict[str, str], lang: str = "zh") -> None:
    """Set the string literals that code cell `key` (id or position) of the edition swaps, and
    rebuild its source. Modifies `zh` in place."""
    i = _find(en, key)
    if len(zh["cells"]) != len(en["cells"]) or en["cells"][i]["cell_type"] != "code":
        raise ValueError(f"cell {key!r} is not a code cell in both editions (run sync first?)")
    literals = set(string_literals(source(en["cells"][i])))
    missing = [s for s in strings if s not in literals]
    if missing:
        raise ValueError(f"cell {key!r} has no string literal {missing[0]} (its literals: {sorted(literals)})")
    meta = _meta(zh["cells"][i])
    if strings:
        meta["strings"] = dict(strings)
    else:
        meta.pop("strings", None)
    zh["cells"][i]["source"] = as_lines(edition_code(en["cells"][i], strings, lang))


# ----------------------------------------------------------------------------- folders

def edition_dir(notebooks: Path, lang: str) -> Path:
    return Path(notebooks) / lang


def sync_all(notebooks: Path, lang: str = "zh", write: bool = True,
             translated: dict[str, list[str]] | None = None) -> list[SyncReport]:
    """Sync every English notebook in `notebooks/` into `notebooks/<lang>/`; report per notebook.

    `translated` maps a notebook name (with or without .ipynb) to markdown cell ids (or positions) whose
    translation was just revised: their recorded hash is updated to the current English.
    Edition notebooks with no English counterpart are reported, never deleted.
    """
    notebooks = Path(notebooks)
    translated = {k.removesuffix(".ipynb"): v for k, v in (translated or {}).items()}
    english = sorted(notebooks.glob("*.ipynb"))
    names = {p.stem for p in english}
    unknown = sorted(set(translated) - names)
    if unknown:
        raise ValueError(f"--translated names unknown notebook(s) {unknown}; notebooks: {sorted(names)}")
    reports = []
    for path in english:
        zh_path = edition_dir(notebooks, lang) / path.name
        en = read_notebook(path)
        zh = read_notebook(zh_path) if zh_path.exists() else None
        new, report = sync_notebook(en, zh, lang, name=f"{lang}/{path.name}")
        for key in translated.get(path.stem, []):
            set_translation(new, en, key)
        if translated.get(path.stem):
            new, report = sync_notebook(en, new, lang, name=f"{lang}/{path.name}")
        if write and (zh is None or dumps_notebook(new) != dumps_notebook(zh) or path.stem in translated):
            write_notebook(new, zh_path)
        reports.append(report)
    for orphan in sorted(edition_dir(notebooks, lang).glob("*.ipynb")):
        if orphan.stem not in names:
            r = SyncReport(name=f"{lang}/{orphan.name}")
            r.removed.append("(whole notebook: no English notebook of this name; delete it by hand)")
            reports.append(r)
    return reports
