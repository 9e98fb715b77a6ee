"""The notebooks: static checks on every `notebooks/*.ipynb`, then each one executed top to bottom.

Static checks (milliseconds): nbformat 4, committed without outputs, named `NN_name.ipynb`, a
markdown cell first, the first code cell tagged `parameters` and reading `MINIDS_FAST`, and no
`def`/`class` in code cells except those tagged `exposition`.

Execution: each notebook runs in a fresh `python3` kernel with `MINIDS_FAST=1` and `TQDM_DISABLE=1`,
working directory a temporary copy of `notebooks/` (nothing is written into the repository),
600 s per cell. A failure names the cell and shows its source and the traceback.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_notebooks.py -v            # everything
    PYTHONPATH=. .venv/bin/python -m pytest tests/test_notebooks.py -k static     # static only
    PYTHONPATH=. .venv/bin/python -m pytest tests/test_notebooks.py -k "execute and 02_"

`MINIDS_NOTEBOOKS_DIR=/some/folder` points both this file and `test_browser.py` at another folder.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = Path(os.environ.get("MINIDS_NOTEBOOKS_DIR") or REPO / "notebooks")
# the English notebooks, then the Chinese edition (notebooks/zh/, built by `python -m minids editions sync`)
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb")) + sorted(NOTEBOOKS_DIR.glob("zh/*.ipynb"))
NAME_RE = re.compile(r"^\d\d[a-z]?_[a-z0-9]+(_[a-z0-9]+)*\.ipynb$")  # 04b: a chapter between 04 and 05
CELL_TIMEOUT_S = 300  # the slowest cell in the fast setting takes well under a minute on 2 cores
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

nb_params = pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.relative_to(NOTEBOOKS_DIR).as_posix() for p in NOTEBOOKS])


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=nbformat.NO_CONVERT)


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def code_cells(nb) -> list[tuple[int, nbformat.NotebookNode]]:
    return [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def definitions(source: str) -> list[str]:
    """Names of functions and classes defined in a code cell (IPython magics are understood)."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    found = sorted((n.lineno, "class" if isinstance(n, ast.ClassDef) else "def", n.name) for n in ast.walk(tree)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
    return [f"{kind} {name} (line {line})" for line, kind, name in found]


def clean(text: str) -> str:
    return ANSI_RE.sub("", text)


# --------------------------------------------------------------------------- static checks


def test_static_notebooks_exist():
    """An empty or missing folder is a failure, not a silent pass."""
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOKS_DIR}"


def test_static_names_unique_numbers():
    numbers = [p.relative_to(NOTEBOOKS_DIR).as_posix()[:-len(p.name)] + p.name.split("_")[0] for p in NOTEBOOKS]
    dup = sorted({n for n in numbers if numbers.count(n) > 1})
    assert not dup, f"two notebooks share the number(s) {dup}: {[n for n in numbers if n in dup]}"


@nb_params
def test_static_name(path):
    assert NAME_RE.match(path.name), (f"{path.name}: name must look like NN_name.ipynb (two digits, perhaps a "
                                      f"letter, lower-case words)")


@nb_params
def test_static_valid_nbformat4(path):
    nb = read(path)
    assert nb.nbformat == 4, f"{path.name}: nbformat {nb.nbformat}, expected 4"
    nbformat.validate(nb)
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    assert kernel in (None, "python3"), f"{path.name}: kernelspec {kernel!r}, expected 'python3'"


@nb_params
def test_static_no_outputs(path):
    nb = read(path)
    dirty = [f"cell {i}: {len(c.outputs)} output(s), execution_count={c.execution_count}"
             for i, c in code_cells(nb) if c.get("outputs") or c.get("execution_count") is not None]
    assert not dirty, f"{path.name} was committed with outputs; strip them:\n" + "\n".join(dirty)
    assert "widgets" not in nb.metadata, f"{path.name} carries saved widget state in its metadata; strip it"


@nb_params
def test_static_first_cells(path):
    nb = read(path)
    assert nb.cells, f"{path.name} has no cells"
    assert nb.cells[0].cell_type == "markdown", (
        f"{path.name}: the first cell must be markdown (what the reader will see)")
    cells = code_cells(nb)
    assert cells, f"{path.name} has no code cell"
    i, first = cells[0]
    assert "parameters" in tags(first), f"{path.name}: the first code cell (cell {i}) must be tagged 'parameters'"
    assert "MINIDS_FAST" in first.source, f"{path.name}: the 'parameters' cell (cell {i}) must read MINIDS_FAST"


@nb_params
def test_static_no_definitions_outside_exposition(path):
    nb = read(path)
    found = []
    for i, cell in code_cells(nb):
        if "exposition" in tags(cell):
            continue
        try:
            names = definitions(cell.source)
        except SyntaxError as e:
            found.append(f"cell {i}: does not parse ({e})")
            continue
        found += [f"cell {i}: {n}" for n in names]
    assert not found, (f"{path.name}: code cells define functions/classes (move them to minids/ or widgets/, "
                       "or tag a teaching cell 'exposition'):\n" + "\n".join(found))


def test_static_definition_finder_can_fail():
    """The checker above really sees definitions, also behind magics and inside blocks."""
    assert definitions("%matplotlib inline\nif True:\n    def f():\n        pass\nclass A: ...") == [
        "def f (line 3)", "class A (line 5)"]
    assert definitions("x = lambda: 1\ns = 'def f(): pass'") == []


# --------------------------------------------------------------------------- execution


@nb_params
def test_execute(path, tmp_path, monkeypatch):
    """Runs every cell in a fresh kernel (MINIDS_FAST=1), in a temporary copy of the notebooks folder."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    work = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS_DIR, work, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    # The kernel is a child process: it inherits this environment.
    monkeypatch.setenv("MINIDS_FAST", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the fast setting runs many tiny forward passes: one thread avoids oversubscribing 2 cores
    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    def run():
        """Execute the notebook in a fresh kernel -> (per-cell timings, failure report or None, timed out?)."""
        here = work / path.relative_to(NOTEBOOKS_DIR)
        nb = read(here)
        client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3", allow_errors=False,
                                resources={"metadata": {"path": str(here.parent)}})
        timings = []
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                t0 = time.perf_counter()
                try:
                    client.execute_cell(cell, index)
                except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
                    return timings, _failure(path.name, index, cell, e, time.perf_counter() - t0), \
                        not isinstance(e, CellExecutionError)
                timings.append((time.perf_counter() - t0, index))
        return timings, None, False

    start = time.perf_counter()
    timings, failure, hung = run()
    if hung:
        # A kernel can finish a cell while the client misses its "idle" message on the IOPub
        # channel (jupyter/jupyter_client#593) and waits until the timeout. A cell that raised
        # is never retried; a timed-out or dead kernel gets one fresh kernel.
        print(f"{path.name}: retrying in a fresh kernel after: {failure.splitlines()[0]}")
        timings, failure, hung = run()
    if failure:
        pytest.fail(failure, pytrace=False)
    slowest = ", ".join(f"cell {i} {t:.1f}s" for t, i in sorted(timings, reverse=True)[:3])
    print(f"{path.name}: {time.perf_counter() - start:.1f}s in {len(timings)} code cells (slowest: {slowest})")


def _failure(name, index, cell, error, seconds) -> str:
    """The failing cell's source and traceback, without terminal colours."""
    if type(error).__name__ == "CellExecutionError":
        tb = "\n".join(clean(o.get("traceback") and "\n".join(o["traceback"]) or "")
                       for o in cell.get("outputs", []) if o.get("output_type") == "error")
        detail = tb or clean(str(error))
        what = f"{error.ename}: {error.evalue}"
    else:
        detail, what = clean(str(error)), type(error).__name__
    streams = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
    bar = "-" * 70
    return (f"{name}: cell {index} failed after {seconds:.1f}s with {clean(what)}\n{bar}\n{cell.source}\n{bar}\n"
            + (f"output before the error:\n{clean(streams)[-3000:]}\n{bar}\n" if streams else "")
            + detail)
