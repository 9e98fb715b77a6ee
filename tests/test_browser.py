"""Each notebook in a real browser: JupyterLab served locally, Debian chromium driven by Playwright.

For every `notebooks/*.ipynb` (a temporary copy is served, so Lab's autosave never touches the
repository) the test opens the notebook, runs Run All from the menu with `MINIDS_FAST=1`, waits for
the kernel to finish, and checks what a reader would see:

- no traceback in any output, no widget that failed to display;
- widgets rendered (at least one slider: the browser-test contract), every plotly output drawn,
  bertviz drawn where the notebook uses it;
- the first slider moved with ArrowRight changes the text next to it (a kernel round trip);
- no request left the machine (every non-local request is blocked and counted: must be zero);
- what issue #10 fixed, where a notebook has it: notebook 00's sampling chart changes when the
  temperature moves; notebook 06's bridge chart gives every gold-chain bar a visible height; every
  live dashboard (`TrainingDashboard`, `RLDashboard`) fills the width of its output area.

Screenshots go to `ci-artifacts/screenshots/`: `NAME.png` scrolled to the first figure or widget (also
saved when the test fails), `NAME-slider.png` showing the first slider after the round trip
(paths printed with `-s`).

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_browser.py -v -s
    PYTHONPATH=. .venv/bin/python -m pytest tests/test_browser.py -k 02_

Needs `/usr/bin/chromium` (Debian package; `playwright install` is never used) and the `playwright`
Python package. Without them the module is skipped, except when `CI` is set: then it fails.
`MINIDS_NOTEBOOKS_DIR=/some/folder` serves another folder instead of `notebooks/`.
`MINIDS_BROWSER_FULL=1` runs the notebooks in their full setting instead (no `MINIDS_FAST`, torch's
threads left to the notebooks, 40 minutes allowed for Run All): that is how the "with the page open"
times of `minids/data/times.json` are measured; the "run all" time it prints is the one to record.

Like `python -m minids lab`, the test writes the classroom settings (no news pop-up over the
screenshots, no update checks) to `<sys.prefix>/share/jupyter/lab/settings/overrides.json` when
that file does not exist yet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = Path(os.environ.get("MINIDS_NOTEBOOKS_DIR") or REPO / "notebooks")
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
SCREENSHOTS = REPO / "ci-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

SERVER_START_S = 120   # Lab answering on its port
KERNEL_START_S = 180   # notebook open and its kernel idle
FULL = os.environ.get("MINIDS_BROWSER_FULL") == "1"  # the full setting, to measure times (see the docstring)
RUN_ALL_S = 2400 if FULL else 600  # Run All finished (FAST notebooks take 0.5-4 min in Lab on two busy cores)
ROUND_TRIP_S = 60      # slider moved -> text next to it changed
RENDER_S = 45          # a plot or bertviz view drawn after scrolling to it

PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as e:
        return f"playwright is not importable ({e}); pip install playwright (never `playwright install`)"
    return None


_why = _missing()
if _why:
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {_why}", pytrace=False)
    pytest.skip(f"browser test skipped: {_why}", allow_module_level=True)

from playwright.sync_api import Error as PlaywrightError  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


# --------------------------------------------------------------------------- fixtures


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _classroom_settings():
    """Lab reads overrides from <sys.prefix>/share/jupyter/lab/settings/overrides.json; put the
    classroom settings there if nothing is there yet (what `python -m minids lab` does): no news
    pop-up covering the screenshots, no update checks."""
    target = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / "minids" / "data" / "lab_overrides.json", target)
    return target


def _get(url: str, timeout: float = 5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


class Lab:
    def __init__(self, base: str, root: Path, log: Path, proc: subprocess.Popen):
        self.base, self.root, self.log, self.proc = base, root, log, proc

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def sessions(self) -> list[dict]:
        return json.loads(_get(f"{self.base}/api/sessions")[1])

    def shutdown_kernels(self, name: str):
        """Stop the kernel of a notebook we are done with (two shared cores, several notebooks)."""
        try:
            for s in self.sessions():
                if s.get("path", "").endswith(name):
                    req = urllib.request.Request(f"{self.base}/api/sessions/{s['id']}", method="DELETE")
                    urllib.request.urlopen(req, timeout=30).close()
        except (OSError, ValueError) as e:  # best effort; the server is killed at the end anyway
            print(f"could not shut down the kernel of {name}: {e}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """One JupyterLab server for the module, serving a temporary copy of the notebooks."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    shutil.copytree(NOTEBOOKS_DIR, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    _classroom_settings()
    port = _free_port()
    fast = {} if FULL else {"MINIDS_FAST": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    env = dict({k: v for k, v in os.environ.items() if not (FULL and k in ("MINIDS_FAST", "OMP_NUM_THREADS"))},
               **fast,
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"))
    # The data dir is left alone: it is where Lab finds the widget and plotly extensions.
    jupyter = Path(sys.executable).parent / "jupyter"
    cmd = [str(jupyter) if jupyter.exists() else "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", "--allow-root", "--ServerApp.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: a fallback for Run All, and layout
           "--ServerApp.disable_check_xsrf=True"]  # lets the test stop kernels through the REST API
    log = tmp / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp,
                                start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", root, log, proc)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{server.log_tail()}", pytrace=False)
            try:
                if _get(f"{server.base}/api/status")[0] == 200 and _get(f"{server.base}/lab")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer within {SERVER_START_S}s:\n{server.log_tail()}",
                            pytrace=False)
            time.sleep(0.5)
        yield server
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen):
    """SIGTERM (Lab then shuts its kernels down), then SIGKILL to the process group we started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # our own session: the server and any kernel left behind
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# --------------------------------------------------------------------------- helpers run in the page

# Text of the output areas of the slider's cell and of the next cell, without the sliders themselves
# (their readout changes without any kernel round trip).
JS_TEXT_NEAR = """slider => {
  const cell = slider.closest('.jp-Cell');
  const cells = [cell];
  if (cell && cell.nextElementSibling) cells.push(cell.nextElementSibling);
  return cells.map(c => {
    const area = c && c.querySelector('.jp-OutputArea');
    if (!area) return '';
    const copy = area.cloneNode(true);
    copy.querySelectorAll('.widget-slider').forEach(e => e.remove());
    return copy.textContent.replace(/\\s+/g, ' ').trim();
  }).join(' || ');
}"""

# Notebooks whose first slider redraws a plotly figure in its own cell: moving it must change the figure too.
SLIDER_REDRAWS_PLOT = {"04b_mla_mtp.ipynb"}
JS_PLOT_NEAR = """slider => {
  const plot = slider.closest('.jp-Cell').querySelector('.js-plotly-plot');
  return plot ? plot.textContent : null;
}"""

JS_CELL_INDEX = "el => [...el.closest('.jp-Notebook').querySelectorAll('.jp-Cell')].indexOf(el.closest('.jp-Cell'))"

JS_STATE = """panel => {
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(e => e.textContent.trim());
  return {prompts: prompts, cells: panel.querySelectorAll('.jp-Cell').length,
          status: (panel.querySelector('.jp-Notebook-ExecutionIndicator') || {dataset: {}}).dataset.status || ''};
}"""

# Every output showing an error: tracebacks, error renders, widgets that failed to display.
JS_ERRORS = """panel => {
  const cells = [...panel.querySelectorAll('.jp-Cell')];
  const found = [];
  const add = (el, why) => {
    const cell = el.closest('.jp-Cell');
    found.push({cell: cells.indexOf(cell), why: why, text: el.textContent.slice(0, 2500)});
  };
  panel.querySelectorAll('.jp-OutputArea-output').forEach(el => {
    const mime = el.getAttribute('data-mime-type') || '';
    const text = el.textContent;
    if (mime.includes('error')) add(el, 'error output');
    else if (mime === 'application/vnd.jupyter.stderr' && text.includes('Traceback')) add(el, 'traceback on stderr');
    else if (/Error displaying widget|Failed to (load|create) (model|view)|Error rendering/.test(text)
             && !el.querySelector('.jp-OutputArea-output')) add(el, 'widget or renderer failed');
  });
  panel.querySelectorAll('.jp-RenderedText[data-mime-type*="error"]').forEach(el => {
    if (!el.closest('.jp-OutputArea-output[data-mime-type*="error"]')) add(el, 'error text');
  });
  return found;
}"""


def _check(ok: bool, message: str):
    """A failed check reports its message only (the test's source is no help here)."""
    if not ok:
        pytest.fail(message, pytrace=False)


def _uses(source: str, *words: str) -> bool:
    return any(w.lower() in source.lower() for w in words)


def _notebook_facts(path: Path) -> dict:
    nb = json.loads(path.read_text())
    code = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb["cells"] if c["cell_type"] == "code"]
    source = "\n".join(code)
    return {"cells": len(nb["cells"]), "code_to_run": sum(1 for s in code if s.strip()),
            "plotly": _uses(source, "plotly", "go.Figure", "FigureWidget", "px."),
            "bertviz": _uses(source, "bertviz", "head_view", "model_view"),
            "dashboard": _uses(source, "TrainingDashboard(", "RLDashboard(")}


def _poll(what: str, fn, timeout: float, interval: float = 1.0, on_timeout=None):
    """Call fn until it returns something truthy; fail with `what` (and on_timeout()'s details) if it never does."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
        except PlaywrightError as e:  # the page re-rendering under us: try again
            last = None
            err = e
        else:
            err = None
            if last:
                return last
        if time.monotonic() > deadline:
            extra = on_timeout() if on_timeout else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({err})" if err else "")
                        + (f"\n{extra}" if extra else ""), pytrace=False)
        time.sleep(interval)


def _is_local(url: str) -> bool:
    u = urllib.parse.urlsplit(url)
    return u.scheme in ("data", "blob", "about") or (u.hostname or "") in LOCAL_HOSTS


def guarded_page(browser, allow=_is_local, **context_options):
    """A new page whose every request and websocket is checked: `allow(url)` goes through, anything else is
    blocked and recorded in `outside` (the offline promise: a test asserts it stays empty)."""
    context = browser.new_context(**context_options)
    page = context.new_page()
    page.set_default_timeout(60_000)
    outside: list[str] = []

    def route(r):
        if allow(r.request.url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.on("websocket", lambda ws: None if allow(ws.url) else outside.append(ws.url))
    return context, page, outside


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_in_lab(path, lab, browser):
    name = path.name
    facts = _notebook_facts(lab.root / name)
    context, page, outside = guarded_page(browser, viewport={"width": 1400, "height": 1000})
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text[:300]) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(f"page error: {str(e)[:300]}"))

    shot = SCREENSHOTS / f"{name.removesuffix('.ipynb')}.png"
    t0 = time.monotonic()
    timings = {}
    drawn = {}
    try:
        # ---- open the notebook and wait for its kernel
        page.goto(f"{lab.base}/lab/tree/{urllib.parse.quote(name)}?reset", wait_until="domcontentloaded")
        panel = page.locator(PANEL)
        panel.locator(".jp-Cell").first.wait_for(state="visible", timeout=KERNEL_START_S * 1000)
        _wait_kernel_idle(page, KERNEL_START_S, lab)
        _hide_left_area(page)
        timings["open"] = time.monotonic() - t0

        # ---- Run All, from the Run menu as a reader would (the app's command as a fallback)
        t1 = time.monotonic()
        _run_all(page)
        state = _wait_run_all(page, facts, lab)
        timings["run all"] = time.monotonic() - t1
        _check(state["cells"] == facts["cells"],
               f"{name}: Lab shows {state['cells']} cells, the file has {facts['cells']}")

        # ---- no errors anywhere
        _assert_no_errors(page, name, "after Run All", console_errors)
        executed = sum(1 for p in state["prompts"] if re.fullmatch(r"\[\d+\]:", p))
        _check(executed >= facts["code_to_run"],
               f"{name}: only {executed} of {facts['code_to_run']} code cells ran; prompts: {state['prompts']}")

        # ---- what should be drawn is drawn
        drawn = _assert_rendered(page, name, facts)

        if facts["dashboard"]:
            _assert_dashboards_fill_width(page, name)
        if name.startswith("06_"):
            _assert_bars_visible(page, name, "NLL given the query alone", "gold chain")

        # ---- the first slider: ArrowRight must change the text next to it (kernel round trip)
        t2 = time.monotonic()
        first_plot = _first_slider_plot_data(page)
        first_slider = page.locator(PANEL).locator(".jp-OutputArea .widget-slider").first
        plot_before = first_slider.evaluate(JS_PLOT_NEAR) if name in SLIDER_REDRAWS_PLOT else None
        _check(name not in SLIDER_REDRAWS_PLOT or bool(plot_before), f"{name}: no figure beside the first slider")
        _assert_slider_round_trip(page, name)
        if name.startswith("00_"):  # the sampling widget: its chart must change with the temperature
            _poll("notebook 00's sampling chart to change after the temperature moved",
                  lambda: (lambda now: now and now != first_plot)(_first_slider_plot_data(page)), ROUND_TRIP_S)
        if plot_before:
            _poll(f"{name}: the figure beside the first slider to change",
                  lambda: first_slider.evaluate(JS_PLOT_NEAR) not in (None, plot_before), RENDER_S, interval=0.5)
        timings["slider"] = time.monotonic() - t2
        _screenshot_slider(page, SCREENSHOTS / f"{name.removesuffix('.ipynb')}-slider.png")
        _assert_no_errors(page, name, "after moving the slider", console_errors)

        if name.startswith("06_"):  # a notebook of static figures: they must come back when it is reopened
            _assert_static_figures_survive_reopening(page, lab, name)

        _check(not outside, f"{name}: {len(outside)} request(s) to outside addresses were made (and blocked): "
                            f"{sorted(set(outside))[:10]}")
    finally:
        try:
            _screenshot(page, shot)
            print(f"\n{name}: screenshot {shot}")
        except PlaywrightError as e:
            print(f"\n{name}: no screenshot ({e})")
        context.close()
        lab.shutdown_kernels(name)
        timings["total"] = time.monotonic() - t0
        print(f"{name}: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
              + f"; drawn: {drawn}; outside requests blocked: {len(outside)}")


def _statusbar_kernel(page) -> str:
    """The kernel item of Lab's status bar, e.g. 'Python 3 (ipykernel) | Idle'."""
    text = page.locator("#jp-main-statusbar").inner_text(timeout=5000)
    lines = [ln.strip() for ln in text.splitlines() if "|" in ln]
    return lines[0] if lines else ""


def _accept_dialog(page):
    """A 'Select Kernel' dialog (kernel not yet known when a command ran): take the default."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count() and dialog.first.is_visible():
        page.locator(".jp-Dialog .jp-mod-accept").first.click()


def _wait_kernel_idle(page, timeout, lab):
    def ready():
        _accept_dialog(page)
        s = _statusbar_kernel(page)
        return s if (s.endswith("| Idle") and not s.startswith("No Kernel")) else None

    _poll("the notebook's kernel to start and be idle", ready, timeout,
          on_timeout=lambda: f"status bar: {_statusbar_kernel(page)!r}\nserver log:\n{lab.log_tail()}")


def _hide_left_area(page):
    """Close the file browser so screenshots show more of the notebook."""
    try:
        if page.locator("#jp-left-stack").is_visible():
            page.evaluate("() => window.jupyterapp.commands.execute('application:toggle-left-area')")
    except PlaywrightError as e:
        print(f"could not close the left area: {e}")


def _run_all(page):
    try:
        page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^Run$")).click(timeout=15_000)
        page.locator('.lm-Menu:visible li[data-command="runmenu:run-all"]').click(timeout=15_000)
    except PlaywrightError as e:
        print(f"Run menu did not work ({e}); using the app's command")
        page.keyboard.press("Escape")
        page.evaluate("() => window.jupyterapp.commands.execute('runmenu:run-all')")


def _wait_run_all(page, facts, lab):
    panel = page.locator(PANEL)
    start = time.monotonic()
    seen = {}

    def done():
        _accept_dialog(page)
        st = panel.evaluate(JS_STATE)
        seen.update(st)
        prompts = st["prompts"]
        running = any("*" in p for p in prompts)
        executed = sum(1 for p in prompts if re.fullmatch(r"\[\d+\]:", p))
        idle = _statusbar_kernel(page).endswith("| Idle")
        if running or not idle:
            return None
        if executed >= facts["code_to_run"]:
            return st
        # Run All stops at an error: finished once an error shows (checked right after)
        if executed and panel.evaluate(JS_ERRORS):
            return st
        # Nothing queued yet a few seconds after the click: the click was lost; press Run All again
        if not executed and time.monotonic() - start > 20 and not seen.get("retried"):
            seen["retried"] = True
            _run_all(page)
        return None

    return _poll("Run All to finish", done, RUN_ALL_S,
                 on_timeout=lambda: f"prompts: {seen.get('prompts')}\nstatus bar: {_statusbar_kernel(page)!r}\n"
                                    f"server log:\n{lab.log_tail()}")


def _assert_no_errors(page, name, when, console_errors):
    errors = page.locator(PANEL).evaluate(JS_ERRORS)
    if errors:
        shown = "\n\n".join(f"[cell {e['cell']}] {e['why']}:\n{e['text']}" for e in errors[:5])
        console = "\n".join(console_errors[-10:])
        pytest.fail(f"{name}: {len(errors)} error output(s) {when}:\n{shown}"
                    + (f"\n\nbrowser console errors:\n{console}" if console else ""), pytrace=False)


def _assert_rendered(page, name, facts):
    panel = page.locator(PANEL)
    sliders = panel.locator(".jp-OutputArea .widget-slider")
    _check(sliders.count() > 0,
           f"{name}: no ipywidgets slider rendered in any output (every notebook needs one: the browser-test "
           f"contract); widget views found: {panel.locator('.jp-OutputArea .jupyter-widgets').count()}")

    # Every plotly output must be drawn (Lab's plotly renderer is the output element itself,
    # `.jp-RenderedPlotly.js-plotly-plot`, with no data-mime-type). Scroll to each one first.
    plotly_outputs = panel.locator(".jp-OutputArea .jp-RenderedPlotly")
    n_plotly = plotly_outputs.count()
    for i in range(n_plotly):
        out = plotly_outputs.nth(i)
        out.scroll_into_view_if_needed()
        _poll(f"plotly output {i + 1} of {n_plotly} to be drawn", lambda: out.locator(".main-svg").count() > 0,
              RENDER_S, interval=0.5,
              on_timeout=lambda: f"cell {out.evaluate(JS_CELL_INDEX)}; its text: {out.text_content()[:300]!r}")
    if facts["plotly"] or n_plotly:
        plots = panel.locator(".jp-OutputArea .js-plotly-plot")
        if plots.count() == 0:  # figure widgets may also wait until scrolled to
            widgets = panel.locator(".jp-OutputArea .jupyter-widgets")
            for i in range(widgets.count()):
                widgets.nth(i).scroll_into_view_if_needed()
        _poll(f"a plotly figure to be drawn ({name} uses plotly)", lambda: plots.count() > 0, RENDER_S)

    if facts["bertviz"]:
        views = panel.locator('.jp-OutputArea [id^="bertviz-"]')
        _check(views.count() > 0, f"{name}: the notebook uses bertviz but no bertviz view is in the outputs")
        for i in range(views.count()):
            view = views.nth(i)
            view.scroll_into_view_if_needed()
            _poll(f"bertviz view {i + 1} to draw its tokens", lambda: view.locator("#vis svg text").count() > 0,
                  RENDER_S, interval=0.5,
                  on_timeout=lambda: f"text of the view: {view.text_content()[:500]!r}")
    return {"sliders": sliders.count(), "plotly": panel.locator(".jp-OutputArea .js-plotly-plot").count(),
            "bertviz": panel.locator('.jp-OutputArea [id^="bertviz-"]').count()}


def _assert_slider_round_trip(page, name):
    slider = page.locator(PANEL).locator(".jp-OutputArea .widget-slider").first
    slider.scroll_into_view_if_needed()
    handle = slider.locator(".noUi-handle").first
    readout = slider.locator(".widget-readout").first

    def read_value():
        return readout.text_content().strip() if readout.count() else ""

    before_text = slider.evaluate(JS_TEXT_NEAR)
    before_value = read_value()
    attempts = []
    for key in ("ArrowRight", "ArrowLeft"):  # a slider already at its maximum moves left instead
        handle.focus()
        for _ in range(3 if key == "ArrowRight" else 6):
            handle.press(key)
            time.sleep(0.15)
        value = read_value()
        attempts.append(f"{key}: readout {before_value!r} -> {value!r}")
        if value == before_value and readout.count():
            continue  # the slider did not move; try the other way
        deadline = time.monotonic() + ROUND_TRIP_S
        while time.monotonic() < deadline:
            after = slider.evaluate(JS_TEXT_NEAR)
            if after != before_text:
                _settle(slider, after, deadline)
                return
            time.sleep(0.5)
        break
    pytest.fail(f"{name}: moving the first slider did not change the text next to it within {ROUND_TRIP_S}s "
                f"({'; '.join(attempts)}). An exception in the slider's callback shows in Lab's log console, "
                f"not in the notebook: set the slider's value in a kernel to see it.\n"
                f"Text of its output area and the next one:\n{before_text[:1500]!r}",
                pytrace=False)


def _settle(slider, text, deadline, quiet_s: float = 2.0):
    """Each key press queued an update in the kernel: wait until the text stops changing, so the
    checks after this and the screenshot see the last one (a slow kernel is not a failure here)."""
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < quiet_s:
        time.sleep(0.5)
        now = slider.evaluate(JS_TEXT_NEAR)
        if now != text:
            text, quiet_since = now, time.monotonic()


# The y values of every trace of the plotly chart in the first slider's widget (a widget Output).
JS_SLIDER_PLOT = """slider => {
  const cell = slider.closest('.jp-Cell');
  const gd = cell && cell.querySelector('.jp-OutputArea .js-plotly-plot');
  return gd && gd.data ? JSON.stringify(gd.data.map(t => Array.from(t.y || []))) : null;
}"""

# Heights in pixels of the drawn bars of the traces called `trace`, in the chart whose title has `title`.
JS_BAR_HEIGHTS = """([title, trace]) => {
  const gd = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea .js-plotly-plot')]
    .find(g => g.layout && g.layout.title && String(g.layout.title.text || g.layout.title).includes(title));
  if (!gd) return null;
  const bars = gd._fullData.filter(t => t.type === 'bar');
  const groups = [...gd.querySelectorAll('.barlayer g.trace.bars')];
  const heights = [];
  bars.forEach((t, i) => {
    if (t.name === trace && groups[i])
      groups[i].querySelectorAll('path').forEach(p => heights.push(p.getBoundingClientRect().height));
  });
  return heights;
}"""

# For every plotly chart inside a widget (a live FigureWidget): its width / its output area's width.
JS_WIDGET_PLOT_WIDTHS = """panel => [...panel.querySelectorAll('.jp-OutputArea .jupyter-widgets .js-plotly-plot')]
  .filter(gd => !gd.closest('.widget-output'))
  .map(gd => gd.getBoundingClientRect().width / gd.closest('.jp-OutputArea-output').getBoundingClientRect().width)"""


def _first_slider_plot_data(page):
    slider = page.locator(PANEL).locator(".jp-OutputArea .widget-slider").first
    return slider.evaluate(JS_SLIDER_PLOT)


def _assert_bars_visible(page, name, title, trace, min_px: float = 3.0):
    """Every bar of `trace` in the chart titled `title` is drawn at least `min_px` pixels tall."""
    gd = page.locator(PANEL).locator(".jp-OutputArea .js-plotly-plot").filter(has_text=title).first
    gd.scroll_into_view_if_needed()
    heights = _poll(f"{name}: the '{title}' chart's '{trace}' bars to be drawn",
                    lambda: page.evaluate(JS_BAR_HEIGHTS, [title, trace]), RENDER_S)
    _check(min(heights) >= min_px, f"{name}: '{trace}' bars of the '{title}' chart are {min(heights):.1f} px "
                                   f"tall at the least (heights {[round(h, 1) for h in heights]}); every bar the "
                                   f"prose mentions must be visible")


def _assert_dashboards_fill_width(page, name, share: float = 0.9):
    panel = page.locator(PANEL)
    widgets_ = panel.locator(".jp-OutputArea .jupyter-widgets .js-plotly-plot")
    for i in range(widgets_.count()):
        widgets_.nth(i).scroll_into_view_if_needed()
    ratios = _poll(f"{name}: a live dashboard chart to be drawn", lambda: panel.evaluate(JS_WIDGET_PLOT_WIDTHS),
                   RENDER_S)
    _check(min(ratios) >= share, f"{name}: a live dashboard fills only {min(ratios):.0%} of the notebook's width "
                                 f"(all: {[f'{r:.0%}' for r in ratios]}); it must fill at least {share:.0%}")


JS_TRUSTED = """() => { const w = window.jupyterapp.shell.currentWidget;
  return w && w.content && w.content.model ? [...w.content.model.cells].map(c => c.trusted).join(',').slice(0, 200) : null; }"""


def _assert_static_figures_survive_reopening(page, lab, name):
    """Save, reload the page: every plotly figure displayed as a plain figure is shown again from the file."""
    panel = page.locator(PANEL)
    before = panel.locator(".jp-OutputArea .jp-RenderedPlotly").count()
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")

    def saved():
        nb = json.loads((lab.root / name).read_text())
        return sum(1 for c in nb["cells"] for o in c.get("outputs", [])
                   if "application/vnd.plotly.v1+json" in o.get("data", {}))

    n_saved = _poll(f"{name} to be saved with its figures", saved, 60)
    page.reload(wait_until="domcontentloaded")
    panel.locator(".jp-Cell").first.wait_for(state="visible", timeout=KERNEL_START_S * 1000)
    plots = panel.locator(".jp-OutputArea .jp-RenderedPlotly")
    _poll(f"{name}'s saved figures to be shown after reopening", lambda: plots.count() >= n_saved, RENDER_S)
    for i in range(plots.count()):
        plots.nth(i).scroll_into_view_if_needed()
        # Lab's plotly renderer shows a reopened figure as the picture it saved with it (img.plot-img) until the
        # kernel redraws it; either way the reader sees the figure
        _poll(f"reopened figure {i + 1} to be drawn",
              lambda: plots.nth(i).locator(".main-svg, img.plot-img").count() > 0, RENDER_S,
              on_timeout=lambda: f"its HTML: {plots.nth(i).evaluate('e => e.outerHTML.slice(0, 600)')!r}; "
                                 f"trusted: {page.evaluate(JS_TRUSTED)}")
    print(f"{name}: {before} figures drawn, {n_saved} saved, {plots.count()} drawn again after reopening")


def _screenshot_slider(page, shot: Path):
    """The first slider's widget after the round trip, scrolled to the top of the viewport."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    slider = page.locator(PANEL).locator(".jp-OutputArea .widget-slider").first
    slider.evaluate("el => el.closest('.jp-OutputArea').scrollIntoView({block: 'start'})")
    time.sleep(0.5)
    page.screenshot(path=str(shot))
    print(f"\n{shot.name.removesuffix('-slider.png')}.ipynb: slider screenshot {shot}")


def _screenshot(page, shot: Path):
    """Scroll to the first widget or figure (document order), then save the viewport."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    found = page.locator(PANEL).evaluate("""panel => {
      const el = panel.querySelector('.jp-OutputArea-output:has(.widget-slider), '
        + '.jp-OutputArea-output.js-plotly-plot, .jp-OutputArea-output:has(.js-plotly-plot), '
        + '.jp-OutputArea-output:has([id^="bertviz-"])');
      if (el) el.scrollIntoView({block: 'start'});
      return !!el;
    }""")
    if found:
        time.sleep(1.0)
    page.screenshot(path=str(shot))
