"""Notebook runner: jupytext ``.py`` -> ``.ipynb`` -> papermill execution -> Jupyter Book build.

Notebooks live in ``notebooks/NN_name.py`` (jupytext percent format, one cell tagged ``parameters``); each calls
``resolve_notebook("<experiment>", globals())`` (or ``resolve``), which the runner also calls to validate
parameters before execution.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .profiles import defaults, resolve
from .validation import ParameterError, check_choice, check_keys

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PARAMS = REPO / "params"
EXECUTED = "book/executed"  # relative to a book root
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def notebook_names(notebook_dir: Path = NOTEBOOKS) -> list[str]:
    return sorted(p.stem for p in notebook_dir.glob("[0-9][0-9]_*.py"))


def notebook_path(name: str, notebook_dir: Path = NOTEBOOKS) -> Path:
    name = Path(name).stem
    check_choice("notebook", name, notebook_names(notebook_dir))
    return notebook_dir / f"{name}.py"


def _parameters_source(path: Path) -> str:
    text = path.read_text()
    cells = re.split(r"^# %%", text, flags=re.M)
    tagged = [c for c in cells if re.match(r"[^\n]*tags=\[[^\]]*\"parameters\"", c)]
    if len(tagged) != 1:
        raise ValueError(f"{path} must have exactly one cell tagged 'parameters', found {len(tagged)}")
    return tagged[0].split("\n", 1)[1]


def notebook_parameters(name: str) -> dict:
    """The literal defaults of the notebook's ``parameters`` cell (``name = value`` or ``name: "Type" = value``)."""
    tree = ast.parse(_parameters_source(notebook_path(name)))
    params = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            params[node.targets[0].id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            params[node.target.id] = ast.literal_eval(node.value)
    return params


def notebook_experiment(name: str) -> str:
    match = re.search(r"resolve(?:_notebook)?\(\s*[\"'](\w+)[\"']", notebook_path(name).read_text())
    if not match:
        raise ValueError(f"notebook {name} does not call resolve('<experiment>', ...)")
    return match.group(1)


def parse_value(text: str):
    """Typed value of a ``-p key=value`` string: YAML, so 0.1 is a float, [0, 1] a list, null is None."""
    return yaml.safe_load(text)


def parse_assignments(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ParameterError(f"-p {pair!r} must have the form key=value")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = parse_value(value)
        except yaml.YAMLError as err:
            raise ParameterError(f"-p {pair!r}: the value of {key.strip()} is not valid YAML "
                                 f"(e.g. 0.1, [0, 1], resnet18): {err}") from None
    return out


def params_file(name: str, params_dir: Path = PARAMS) -> dict:
    path = params_dir / f"{name}.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def validate(name: str, params: dict) -> dict:
    """Fail before execution on an unknown notebook, an unknown parameter or an invalid value."""
    known = notebook_parameters(name)
    check_keys(f"parameters for notebook {name}", params, known)
    merged = {**known, **params}
    profile = merged.pop("profile", "cpu")
    resolve(notebook_experiment(name), profile, **merged)
    return {**known, **params}


def describe(name: str, profile: str | None = None) -> list[tuple[str, object, object]]:
    """(parameter, notebook default, value under the profile) for every parameter of ``name``."""
    known = notebook_parameters(name)
    profile = profile or params_file(name).get("profile", known.get("profile", "cpu"))
    prof = defaults(notebook_experiment(name), profile)
    return [(k, v, profile if k == "profile" else prof.get(k, v)) for k, v in known.items()]


def _ipynb(name: str, dest: Path) -> Path:
    import jupytext

    nb = jupytext.read(notebook_path(name))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    dest.parent.mkdir(parents=True, exist_ok=True)
    jupytext.write(nb, dest, fmt="ipynb")
    return dest


def execute(name: str, params: dict, book_root: Path = REPO) -> Path:
    """Validate, convert and execute ``name`` with papermill into ``<book_root>/book/executed/<name>.ipynb``.

    The executed notebook is written only when execution succeeds: a failing notebook leaves no page behind."""
    import papermill

    params = validate(name, params)
    out = Path(book_root) / EXECUTED / f"{name}.ipynb"
    work = out.parent / ".work"
    src = _ipynb(name, work / f"{name}.src.ipynb")
    tmp = work / f"{name}.ipynb"
    if out.exists():
        out.unlink()
    papermill.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3", cwd=str(REPO),
                               progress_bar=False)
    _collapse_injected_parameters(tmp)
    os.replace(tmp, out)
    return out


def _collapse_injected_parameters(path: Path) -> None:
    """Show papermill's injected parameters cell collapsed (``hide-input``) in the book."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, path)


def stage_book(dest: Path) -> Path:
    """Copy the book sources (config, toc, chapters; not executed notebooks) into ``dest`` and return it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for item in BOOK_FILES:
        src = REPO / item
        if src.is_dir():
            shutil.copytree(src, dest / item, ignore=shutil.ignore_patterns("executed", "_build"), dirs_exist_ok=True)
        else:
            shutil.copy2(src, dest / item)
    return dest


def build(book_root: Path = REPO) -> Path:
    """``jupyter-book build --all`` with warnings as errors; returns the path of ``index.html``.

    Every page is rebuilt (seconds: the notebooks are already executed): the intro pastes numbers glued in the
    chapters, and an incremental build would keep its old numbers after a chapter is rerun."""
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(book_root), "-W", "--keep-going", "--all"]
    subprocess.run(cmd, check=True)
    return Path(book_root) / "_build" / "html" / "index.html"


def run_all(overrides: dict[str, dict] | None = None, profile: str | None = None, book_root: Path = REPO,
            names: list[str] | None = None) -> Path:
    """Execute every notebook with ``params/<name>.yaml`` (plus overrides), then build the book."""
    overrides = overrides or {}
    for name in names or notebook_names():
        params = {**params_file(name), **overrides.get(name, {})}
        if profile:
            params["profile"] = profile
        print(f"== executing {name} with {params}", flush=True)
        execute(name, params, book_root)
    return build(book_root)
