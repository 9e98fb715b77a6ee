"""The Chinese notebooks (notebooks/zh/) in a real browser, with test_browser.py's server and checks.

For a few zh notebooks (all of them with `MINIDS_BROWSER_ZH=all`): open it in JupyterLab, Run All
with `MINIDS_FAST=1`, no error output, widgets and figures drawn, the first slider moved with the
arrow keys changes the text next to it (a kernel round trip), no request leaves the machine, and
Chinese is what the reader sees: Chinese characters in the rendered markdown, in the widgets'
labels and captions, and in the text plotly drew into its SVG (titles, axes, legends).

Screenshots: `ci-artifacts/screenshots/zh-NAME.png` (the first widget or figure),
`zh-NAME-slider.png` (the first slider after the round trip) and `zh-NAME-figure.png` (the first
plotly figure whose SVG holds Chinese). Look at them: with a CJK font installed (`fonts-noto-cjk`,
which .ci/run installs) there are no missing-glyph boxes. Without one the test still runs and says so.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_browser_zh.py -v -s
    MINIDS_BROWSER_ZH=all PYTHONPATH=. .venv/bin/python -m pytest tests/test_browser_zh.py -k 04_
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.parse

import pytest

# Importing skips this module too when chromium or playwright is missing (and fails it in CI).
from test_browser import (KERNEL_START_S, PANEL, RENDER_S, SCREENSHOTS, _assert_no_errors, _assert_rendered,
                          _assert_slider_round_trip, _check, _hide_left_area, _notebook_facts, _poll, guarded_page,
                          _run_all, _screenshot, _screenshot_slider, _wait_kernel_idle, _wait_run_all,
                          browser, lab)  # noqa: F401  (fixtures)
from test_browser import NOTEBOOKS_DIR

EDITION = NOTEBOOKS_DIR / "zh"
# A few notebooks by default (a couple of minutes of CI): the widgets of 00, 01 and 04 cover sampling,
# the tokenizer (with the new Chinese byte assembly), routing and plotly figures.
DEFAULT = ("00_overview", "01_tokenization", "04_moe_routing")
ALL = sorted(EDITION.glob("*.ipynb"))
CHOSEN = ALL if os.environ.get("MINIDS_BROWSER_ZH") == "all" else [p for p in ALL if p.stem in DEFAULT]
CJK = "[\u4e00-\u9fff]"

# Chinese in what the reader sees: rendered markdown, widget labels and HTML, plotly's SVG text.
JS_CHINESE = """panel => {
  const cjk = /[\\u4e00-\\u9fff]/;
  const texts = sel => [...panel.querySelectorAll(sel)].map(e => e.textContent).filter(t => cjk.test(t));
  return {
    markdown: texts('.jp-MarkdownOutput h1, .jp-MarkdownOutput h2, .jp-MarkdownOutput p').length,
    labels: texts('.jp-OutputArea .widget-label, .jp-OutputArea .widget-label-basic').map(t => t.trim()),
    widget_html: texts('.jp-OutputArea .widget-html-content').length,
    plotly: texts('.jp-OutputArea .js-plotly-plot .main-svg text').map(t => t.trim()).slice(0, 12),
  };
}"""


def _cjk_font() -> str | None:
    """A font with Chinese glyphs that chromium can use here, or None."""
    if not shutil.which("fc-list"):
        return None
    out = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out.strip() else None


def test_chosen_notebooks_exist():
    assert CHOSEN, f"no Chinese notebooks found in {EDITION}"


@pytest.mark.parametrize("path", CHOSEN, ids=[f"zh/{p.name}" for p in CHOSEN])
def test_zh_notebook_in_lab(path, lab, browser):
    name = f"zh/{path.name}"
    stem = f"zh-{path.stem}"
    facts = _notebook_facts(lab.root / name)
    font = _cjk_font()
    if not font:
        print("\nno CJK font installed (apt-get install fonts-noto-cjk): screenshots will show boxes")
    context, page, outside = guarded_page(browser, viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text[:300]) if m.type == "error" else None)
    t0 = time.monotonic()
    seen = {}
    try:
        page.goto(f"{lab.base}/lab/tree/{urllib.parse.quote(name)}?reset", wait_until="domcontentloaded")
        page.locator(PANEL).locator(".jp-Cell").first.wait_for(state="visible", timeout=KERNEL_START_S * 1000)
        _wait_kernel_idle(page, KERNEL_START_S, lab)
        _hide_left_area(page)
        _run_all(page)
        state = _wait_run_all(page, facts, lab)
        _check(state["cells"] == facts["cells"], f"{name}: Lab shows {state['cells']} cells, the file has {facts['cells']}")
        _assert_no_errors(page, name, "after Run All", console_errors)
        _assert_rendered(page, name, facts)
        _assert_slider_round_trip(page, name)
        _screenshot_slider(page, SCREENSHOTS / f"{stem}-slider.png")
        _assert_no_errors(page, name, "after moving the slider", console_errors)

        # ---- Chinese is rendered: prose, widget labels, figure text
        seen = page.locator(PANEL).evaluate(JS_CHINESE)
        _check(seen["markdown"] >= 3, f"{name}: hardly any Chinese in the rendered markdown: {seen}")
        _check(seen["labels"] or seen["widget_html"], f"{name}: no widget label or caption in Chinese: {seen}")
        if facts["plotly"] or page.locator(PANEL).locator(".jp-OutputArea .js-plotly-plot").count():
            _poll(f"{name}: Chinese text in a plotly figure",
                  lambda: page.locator(PANEL).evaluate(JS_CHINESE)["plotly"], RENDER_S,
                  on_timeout=lambda: str(page.locator(PANEL).evaluate(JS_CHINESE)))
            fig = page.locator(PANEL).locator(".jp-OutputArea .js-plotly-plot").filter(
                has=page.locator(".main-svg text", has_text=re.compile(CJK))).first
            fig.scroll_into_view_if_needed()
            time.sleep(0.5)
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            fig.screenshot(path=str(SCREENSHOTS / f"{stem}-figure.png"))
            # the figure asks for the CJK font stack (widgets.i18n.FONT_FAMILY)
            family = fig.locator(".main-svg text", has_text=re.compile(CJK)).first.evaluate(
                "e => getComputedStyle(e).fontFamily")
            _check("Noto Sans CJK SC" in family, f"{name}: plotly text uses the font {family!r}, not the CJK stack")
        _check(not outside, f"{name}: requests to outside addresses: {sorted(set(outside))[:10]}")
    finally:
        try:
            _screenshot(page, SCREENSHOTS / f"{stem}.png")
        except Exception as e:  # noqa: BLE001  (a screenshot is best effort)
            print(f"{name}: no screenshot ({e})")
        context.close()
        lab.shutdown_kernels(name)
        print(f"\n{name}: {time.monotonic() - t0:.0f}s; Chinese seen: {seen}; CJK font: {font}")
