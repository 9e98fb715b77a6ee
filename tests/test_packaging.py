"""Packaging consistency: pyproject.toml, environment.yml, the README's two commands and .ci/run agree."""

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names that differ from the PyPI ones.
CONDA_TO_PYPI = {"pytorch": "torch"}

_REQ_RE = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*$")


def _norm_name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _split_req(req):
    """'torch >= 2.4' -> ('torch', '>=2.4'); markers are not used in this project."""
    m = _REQ_RE.match(req)
    assert m, f"cannot parse requirement {req!r}"
    name, _extras, spec = m.groups()
    assert ";" not in spec, f"unexpected environment marker in {req!r}"
    return _norm_name(name), spec.replace(" ", "")


def _lower_bounds_only(spec):
    return all(part.startswith(">=") for part in spec.split(",") if part)


@pytest.fixture(scope="module")
def pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def read_environment_yml(path):
    """A tiny reader for the simple environment.yml this repo uses (PyYAML is not a dependency).

    Returns {"name": str, "channels": [str], "dependencies": [str], "pip": [str]}.
    """
    out = {"name": None, "channels": [], "dependencies": [], "pip": []}
    section = None
    for raw in Path(path).read_text().splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        if indent == 0:
            key, _, value = text.partition(":")
            value = value.strip()
            if key == "name":
                out["name"] = value
            section = key if not value else None
            continue
        if not text.startswith("- "):
            raise ValueError(f"unsupported YAML line: {raw!r}")
        item = text[2:].strip().strip("'\"")
        if section == "dependencies" and item == "pip:":
            section = "pip"
        elif section == "pip" and indent <= 2:  # back at the dependencies level
            section = "dependencies"
            out[section].append(item)
        elif section in out:
            out[section].append(item)
    return out


@pytest.fixture(scope="module")
def env_yml():
    return read_environment_yml(ROOT / "environment.yml")


def test_environment_yml_reader():
    env = read_environment_yml(ROOT / "environment.yml")
    assert env["name"] == "minids"
    assert env["channels"] == ["conda-forge"]
    assert "pip" in env["dependencies"]
    assert env["pip"] == ["-e ."]


def test_pyproject_basics(pyproject):
    project = pyproject["project"]
    assert project["name"] == "minids"
    assert project["requires-python"] == ">=3.10"
    assert sorted(pyproject["tool"]["setuptools"]["packages"]) == ["minids", "widgets"]
    pkg_data = pyproject["tool"]["setuptools"]["package-data"]
    # every data file the package reads (corpus, settings, shipped checkpoints and runs) is installed
    import fnmatch
    data_root = ROOT / "minids"
    for f in (data_root / "data").rglob("*"):
        if f.is_file():
            rel = f.relative_to(data_root).as_posix()
            assert any(fnmatch.fnmatch(rel, g) for g in pkg_data["minids"]), f"{rel} is not package data"
    assert "vendor/*" in pkg_data["widgets"]
    assert "test" in project["optional-dependencies"]
    opts = pyproject["tool"]["pytest"]["ini_options"]
    assert opts["testpaths"] == ["tests"]


def test_version_is_a_static_literal(pyproject):
    """setuptools reads `minids.__version__` without importing (torch is absent at build time)."""
    project = pyproject["project"]
    init = (ROOT / "minids" / "__init__.py").read_text()
    m = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', init, re.M)
    assert m, "minids/__init__.py needs a literal __version__ = '...'"
    if "version" in project:
        assert project["version"] == m.group(1)
    else:
        assert "version" in project["dynamic"]
        assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "minids.__version__"}


def test_dependencies_have_lower_bounds(pyproject):
    reqs = list(pyproject["project"]["dependencies"])
    reqs += pyproject["project"]["optional-dependencies"]["test"]
    for req in reqs:
        name, spec = _split_req(req)
        assert spec and _lower_bounds_only(spec), f"{req!r}: use a plain lower bound (>=X)"


def test_conda_matches_pypi(pyproject, env_yml):
    pypi = dict(_split_req(r) for r in pyproject["project"]["dependencies"])
    conda = {}
    python_spec = None
    for item in env_yml["dependencies"]:
        name, spec = _split_req(item)
        if name == "python":
            python_spec = spec
        elif name != "pip":
            conda[CONDA_TO_PYPI.get(name, name)] = spec
    assert "torch" not in {_split_req(i)[0] for i in env_yml["dependencies"]}, "conda's name is pytorch"
    assert conda == pypi
    assert python_spec == pyproject["project"]["requires-python"].replace(" ", "")


# ---------------------------------------------------------------- README and CI


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)
    return [b.strip() for b in blocks]


def test_readme_first_two_commands():
    cmds = _readme_commands()
    assert len(cmds) >= 2, "README needs the start and the test command as fenced bash blocks"
    start, test = cmds[:2]
    for cmd in (start, test):
        assert "\n" not in cmd, f"each README command is one line: {cmd!r}"
        assert cmd.startswith("python3 -m venv .venv && .venv/bin/pip install torch==")
    assert start.endswith(".venv/bin/python -m minids lab")
    assert '-e ".[test]"' in test and test.endswith(".venv/bin/python -m pytest")


def test_readme_torch_pin_satisfies_pyproject(pyproject):
    pin = re.search(r"torch==([0-9][0-9.]*)", _readme_commands()[1]).group(1)
    spec = dict(_split_req(r) for r in pyproject["project"]["dependencies"])["torch"]
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    for part in spec.split(","):
        assert as_tuple(pin) >= as_tuple(part[2:]), f"README pins torch=={pin}, pyproject wants {spec}"


def test_ci_runs_readme_test_command_verbatim():
    ci = ROOT / ".ci" / "run"
    text = ci.read_text()
    assert text.startswith("#!/usr/bin/env bash") or text.startswith("#!/bin/bash")
    assert "set -euo pipefail" in text
    assert os.stat(ci).st_mode & stat.S_IXUSR, ".ci/run must be executable"
    assert _readme_commands()[1] in text
    assert "|| true" not in text, "nothing may mask the test command's exit code"
    for var in ("TQDM_DISABLE=1", "MINIDS_FAST=1"):
        assert f"export {var}" in text


def test_lab_overrides_json():
    data = json.loads((ROOT / "minids" / "data" / "lab_overrides.json").read_text())
    notif = data["@jupyterlab/apputils-extension:notification"]
    assert notif == {"fetchNews": "false", "checkForUpdates": False}


# ---------------------------------------------------------------- imports and CLI


def test_packages_import():
    import minids
    import widgets

    assert minids.__version__
    assert widgets.__doc__ and "ipywidgets" in widgets.__doc__


def test_cli_help():
    if not (ROOT / "minids" / "__main__.py").exists():
        pytest.skip("minids/__main__.py not written yet")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    r = subprocess.run([sys.executable, "-m", "minids", "--help"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "lab" in r.stdout
