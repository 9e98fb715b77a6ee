"""The Chinese edition (notebooks/zh/) against the English notebooks, and the sync tool (minids/editions.py).

Repository checks: every English notebook has a zh edition with the same cells in the same order;
code cells are the same program (after parsing, only string literals may differ; the parameters
cell may add the language suffix); every zh markdown cell is translated from the *current* English
cell (its recorded hash matches). When one fails because English changed, run
`python -m minids editions sync`: it rebuilds the code and lists the cells to retranslate.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from minids import editions as ed

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ENGLISH = sorted(NOTEBOOKS.glob("*.ipynb"))
LANG = "zh"
params = pytest.mark.parametrize("path", ENGLISH, ids=[p.name for p in ENGLISH])


def _pair(path):
    zh_path = NOTEBOOKS / LANG / path.name
    assert zh_path.exists(), f"{path.name} has no Chinese edition: run `python -m minids editions sync`"
    return ed.read_notebook(path), ed.read_notebook(zh_path)


# --------------------------------------------------------------------------- the repository's editions


def test_every_english_notebook_found():
    assert ENGLISH, "no English notebooks found"


def test_no_orphan_edition():
    orphans = sorted({p.name for p in (NOTEBOOKS / LANG).glob("*.ipynb")} - {p.name for p in ENGLISH})
    assert not orphans, f"zh notebooks with no English notebook: {orphans}"


@params
def test_same_cells(path):
    en, zh = _pair(path)
    a = [(c["cell_type"], c.get("id")) for c in en["cells"]]
    b = [(c["cell_type"], c.get("id")) for c in zh["cells"]]
    assert a == b, (f"{path.name}: the editions have different cells (a cell added to one and not the other?); "
                    "run `python -m minids editions sync`")


@params
def test_code_cells_equal_but_for_strings(path):
    en, zh = _pair(path)
    bad = []
    for i, (a, b) in enumerate(zip(en["cells"], zh["cells"])):
        if a["cell_type"] != "code":
            continue
        other = ed.source(b)
        if ed.is_parameters(a):
            assert other.endswith(ed.LANGUAGE_SUFFIX[LANG]), f"{path.name}: the zh parameters cell must set LANG"
            other = ed.strip_language_suffix(other, LANG)
        if not ed.same_code(ed.source(a), other):
            bad.append(f"cell {i}")
        if b.get("outputs") or b.get("execution_count") is not None:
            bad.append(f"cell {i} has outputs")
    assert not bad, f"{path.name}: zh code differs from English beyond string literals: {bad}"


@params
def test_markdown_translated_from_current_english(path):
    en, zh = _pair(path)
    stale, todo = [], []
    for i, (a, b) in enumerate(zip(en["cells"], zh["cells"])):
        if a["cell_type"] != "markdown":
            continue
        meta = b.get("metadata", {}).get(ed.META, {})
        if meta.get("todo"):
            todo.append(ed.describe(a, i))
        elif meta.get("en") != ed.text_hash(ed.source(a)):
            stale.append(ed.describe(a, i))
    assert not todo, f"{path.name}: untranslated cells {todo}"
    assert not stale, (f"{path.name}: English changed after translation in {stale}; retranslate, then "
                       f"`python -m minids editions sync --translated {path.stem}:CELL`")


@params
def test_markdown_is_chinese(path):
    """A cell stamped as translated but still holding English prose would slip past the hash check."""
    import re

    en, zh = _pair(path)
    english = [ed.describe(a, i) for i, (a, b) in enumerate(zip(en["cells"], zh["cells"]))
               if a["cell_type"] == "markdown" and re.search(r"[A-Za-z]{4,}", ed.source(a))
               and len(re.findall(r"[\u4e00-\u9fff]", ed.source(b))) < 5]
    assert not english, f"{path.name}: zh cells without Chinese prose: {english}"


@params
def test_sync_has_nothing_to_do(path):
    """The zh code is exactly what the tool generates: nothing edited by hand, no unused string swap."""
    en, zh = _pair(path)
    new, report = ed.sync_notebook(en, zh, LANG, name=path.name)
    assert report.in_sync, "\n".join(report.lines())
    assert ed.dumps_notebook(new) == ed.dumps_notebook(zh)


# --------------------------------------------------------------------------- the mechanism


def _nb(*cells, ids=True):
    out = []
    for k, (kind, text) in enumerate(cells):
        cell = {"cell_type": kind, "metadata": {}, "source": ed.as_lines(text)}
        if kind == "code":
            cell.update(outputs=[], execution_count=None)
        if ids:
            cell["id"] = f"c{k}"
        out.append(cell)
    return {"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5 if ids else 4}


def _english(ids=True):
    nb = _nb(("markdown", "# Title"), ("code", 'import os\nFAST = os.environ.get("MINIDS_FAST") == "1"'),
             ("markdown", "Some text."), ("code", 'print(f"loss {x:.2f}", "done")'), ids=ids)
    nb["cells"][1]["metadata"]["tags"] = ["parameters"]
    return nb


def _translated(en):
    zh, report = ed.sync_notebook(en, None)
    assert report.created and len(report.untranslated) == 2
    ed.set_translation(zh, en, "0", "# 标题")
    ed.set_translation(zh, en, "2", "一段文字。")
    return zh


def test_apply_strings_swaps_whole_literals_only():
    src = 'print(f"loss {x:.2f}", "done")  # "done"\ny = "done"'
    out = ed.apply_strings(src, {'"done"': '"完成"', 'f"loss {x:.2f}"': 'f"损失 {x:.2f}"'})
    assert out == 'print(f"损失 {x:.2f}", "完成")  # "done"\ny = "完成"'
    assert ed.apply_strings("s = '猫' + 'b'", {"'b'": "'乙'"}) == "s = '猫' + '乙'"  # columns after non-ASCII
    # a data key is never swapped, even when the same text is also a label
    assert ed.apply_strings('bar(n["active"], name="active")', {'"active"': '"激活"'}) == 'bar(n["active"], name="激活")'
    assert ed.string_literals('n["active"] + f(x="a")') == ['"a"']


def test_same_code_allows_strings_not_logic():
    assert ed.same_code('print("loss", x)', 'print("损失", x)')
    assert ed.same_code('print(f"loss {x:.2f}")', 'print(f"损失：{x:.2f}")')
    assert not ed.same_code('print("loss", x)', 'print("loss", y)')
    assert ed.same_code('print(f"{a} of {b}")', 'print(f"{b} 中的 {a}")')  # Chinese word order
    assert not ed.same_code('print(f"{x}")', 'print(f"{y}")')
    assert not ed.same_code('print(f"{x}")', 'print(f"{x}{x}")')
    assert not ed.same_code("f(1)", "f(2)")
    assert not ed.same_code("f(1)", "f(1)\ng()")
    assert ed.same_code("%time f('a')", "%time f('b')")


def test_new_notebook_gets_a_skeleton_listing_every_markdown_cell():
    en = _english()
    zh, report = ed.sync_notebook(en, None)
    assert report.created and len(report.untranslated) == 2 and not report.in_sync
    assert ed.source(zh["cells"][0]) == "# Title"  # the English text until translated
    assert ed.source(zh["cells"][1]).endswith(ed.LANGUAGE_SUFFIX["zh"])
    assert zh["cells"][0]["metadata"][ed.META]["todo"]


def test_translated_notebook_is_in_sync_and_stays_put():
    en = _english()
    zh = _translated(en)
    again, report = ed.sync_notebook(en, zh)
    assert report.in_sync, report.lines()
    assert ed.dumps_notebook(again) == ed.dumps_notebook(zh)


@pytest.mark.parametrize("ids", [True, False])
def test_english_code_change_is_resynced_automatically_keeping_string_swaps(ids):
    en = _english(ids)
    zh = _translated(en)
    ed.set_strings(zh, en, "3", {'"done"': '"完成"'})
    en2 = copy.deepcopy(en)
    en2["cells"][3]["source"] = ed.as_lines('print(f"loss {x:.3f}", "done")\nprint(1)')
    new, report = ed.sync_notebook(en2, zh)
    assert report.code_updated and not report.todo
    assert ed.source(new["cells"][3]) == 'print(f"loss {x:.3f}", "完成")\nprint(1)'
    assert ed.source(new["cells"][0]) == "# 标题"


@pytest.mark.parametrize("ids", [True, False])
def test_english_markdown_change_is_reported_stale(ids):
    en = _english(ids)
    zh = _translated(en)
    en2 = copy.deepcopy(en)
    en2["cells"][2]["source"] = ["Some changed text."]
    new, report = ed.sync_notebook(en2, zh)
    assert len(report.stale) == 1 and report.stale[0].startswith("cell 2")
    assert ed.source(new["cells"][2]) == "一段文字。"  # the translation is kept, flagged
    ed.set_translation(new, en2, "2", "一段改过的文字。")
    assert ed.sync_notebook(en2, new)[1].in_sync


@pytest.mark.parametrize("ids", [True, False])
def test_inserted_english_cells_move_no_translation(ids):
    en = _english(ids)
    zh = _translated(en)
    en2 = copy.deepcopy(en)
    extra = _nb(("markdown", "A new paragraph."), ("code", "print(2)"), ids=False)["cells"]
    if ids:
        extra[0]["id"], extra[1]["id"] = "n0", "n1"
    en2["cells"][1:1] = extra  # between the title and the parameters cell
    new, report = ed.sync_notebook(en2, zh)
    assert [ed.source(c) for c in new["cells"]][:3] == ["# 标题", "A new paragraph.", "print(2)"]
    assert ed.source(new["cells"][4]) == "一段文字。"
    assert len(report.untranslated) == 1 and report.untranslated[0].startswith("cell 1")
    assert not report.stale and not report.removed


def test_cell_added_only_to_the_edition_is_removed_and_reported():
    en = _english()
    zh = _translated(en)
    zh["cells"].append({"cell_type": "code", "id": "zz", "metadata": {}, "source": ["print('extra')"],
                        "outputs": [], "execution_count": None})
    new, report = ed.sync_notebook(en, zh)
    assert report.removed and len(new["cells"]) == len(en["cells"])


def test_hand_edited_zh_code_is_overwritten():
    en = _english()
    zh = _translated(en)
    zh["cells"][3]["source"] = ["print('something else')"]
    new, report = ed.sync_notebook(en, zh)
    assert report.code_updated and ed.source(new["cells"][3]) == ed.source(en["cells"][3])


def test_string_swap_that_no_longer_matches_is_reported():
    en = _english()
    zh = _translated(en)
    ed.set_strings(zh, en, "3", {'"done"': '"完成"'})
    en2 = copy.deepcopy(en)
    en2["cells"][3]["source"] = ['print(f"loss {x:.2f}", "finished")']
    _, report = ed.sync_notebook(en2, zh)
    assert report.unused_strings == ['cell 3 (c3): "done"']


def test_set_strings_rejects_a_literal_not_in_the_cell():
    en = _english()
    zh = _translated(en)
    with pytest.raises(ValueError, match="no string literal"):
        ed.set_strings(zh, en, "3", {'"nope"': '"不"'})


def test_sync_all_and_the_command_line(tmp_path, capsys):
    from minids.__main__ import main

    ed.write_notebook(_english(), tmp_path / "01_demo.ipynb")
    with pytest.raises(SystemExit):
        main(["editions", "sync", "--notebooks", str(tmp_path)])
    out = capsys.readouterr().out
    assert "zh/01_demo.ipynb: TO TRANSLATE (new): cell 0 (c0)" in out and "cell 2 (c2)" in out
    zh_path = tmp_path / "zh" / "01_demo.ipynb"
    zh = ed.read_notebook(zh_path)
    for cell in (0, 2):
        zh["cells"][cell]["source"] = ["译文"]
    ed.write_notebook(zh, zh_path)
    main(["editions", "sync", "--notebooks", str(tmp_path), "--translated", "01_demo:c0",
          "--translated", "01_demo:2"])
    assert "in sync" in capsys.readouterr().out
    main(["editions", "sync", "--notebooks", str(tmp_path), "--check"])


# --------------------------------------------------------------------------- entry points


def _commands(path):
    import re
    return [b.strip() for b in re.findall(r"^```bash\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S)]


def test_readme_zh_has_the_same_two_commands():
    en, zh = _commands(REPO / "README.md")[:2], _commands(REPO / "README.zh-CN.md")[:2]
    assert zh == [en[0] + " --lang zh", en[1]]
    assert "README.zh-CN.md" in (REPO / "README.md").read_text(encoding="utf-8").split("\n## ")[0]


@pytest.mark.parametrize("readme", ["README.md", "README.zh-CN.md"])
def test_readme_tables_list_every_notebook(readme):
    text = (REPO / readme).read_text(encoding="utf-8")
    missing = [p.stem for p in ENGLISH if f"| `{p.stem}`" not in text]
    assert not missing, f"{readme}: no row in the notebook table for {missing}"


@pytest.mark.parametrize("lang, folder", [("en", "notebooks"), ("zh", "notebooks/zh")])
def test_lab_lang_opens_the_edition(monkeypatch, tmp_path, lang, folder):
    import os
    import sys

    from minids.__main__ import main

    (tmp_path / "notebooks" / "zh").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    seen = []
    monkeypatch.setattr(os, "execv", lambda exe, argv: seen.append(argv))
    main(["lab", "--lang", lang, "--no-browser"])
    assert seen[0][2] == folder and "--no-browser" in seen[0][3:]
