"""Notebook runner: jupytext ``.py`` -> ``.ipynb`` -> papermill execution -> Jupyter Book build.

Notebooks live in ``notebooks/NN_name.py`` (jupytext percent format, one cell tagged ``parameters``); each calls
``resolve_notebook("<experiment>", globals())`` (or ``resolve``), which the runner also calls to validate
parameters before execution. A notebook is named by its stem (``01_erosion``, or ``01_erosion.py``), never by a path;
every file the runner writes is checked, after resolving, to lie in the book's output folders, and a page is
replaced only by a complete one (executed into a unique temporary file, then renamed).
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

from .profiles import defaults, resolve
from .validation import ParameterError, check_choice, check_keys, load_params_file, parse_value

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
PARAMS = REPO / "params"
EXECUTED = "book/executed"  # relative to a book root
BOOK_FILES = ("_config.yml", "_toc.yml", "book")


def notebook_names(notebook_dir: Path = NOTEBOOKS) -> list[str]:
    return sorted(p.stem for p in notebook_dir.glob("[0-9][0-9]_*.py"))


def notebook_name(name: str, notebook_dir: Path = NOTEBOOKS) -> str:
    """The notebook ``name`` names: one of :func:`notebook_names`, given as is or with ``.py``; anything else (a
    path, another suffix) fails, listing the notebooks."""
    stem = name[:-3] if isinstance(name, str) and name.endswith(".py") else name
    return check_choice("notebook", stem, notebook_names(notebook_dir))


def notebook_path(name: str, notebook_dir: Path = NOTEBOOKS) -> Path:
    return notebook_dir / f"{notebook_name(name, notebook_dir)}.py"


def output_path(book_root: Path, *parts: str) -> Path:
    """``<book_root>/book/executed/<parts>``, resolved, after checking that it lies inside that folder."""
    folder = (Path(book_root) / EXECUTED).resolve()
    path = folder.joinpath(*parts).resolve()
    if folder not in path.parents:
        raise ParameterError(f"refusing to write {path}: outside the book's output folder {folder}")
    return path


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
    """The parameters ``make book`` passes to notebook ``name`` (``params/<name>.yaml``, a mapping; {} without one)."""
    path = params_dir / f"{notebook_name(name)}.yaml"
    return load_params_file(path) if path.is_file() else {}


def validate(name: str, params: dict) -> dict:
    """Fail before execution on an unknown notebook, an unknown parameter or an invalid value."""
    if not isinstance(params, dict):
        raise ParameterError(f"parameters for notebook {name} must be a mapping, not {type(params).__name__}")
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

    The notebook is executed into a temporary file of its own (``book/executed/.work/``, which the book ignores) and
    renamed over the page only when execution succeeds: a failing run keeps the previous page, and two runs of one
    notebook never publish each other's half-written file."""
    import papermill

    name = notebook_name(name)
    params = validate(name, params)
    out = output_path(book_root, f"{name}.ipynb")
    work = output_path(book_root, ".work")
    work.mkdir(parents=True, exist_ok=True)
    temps = [_temp_file(work, f"{name}.src."), _temp_file(work, f"{name}.")]
    src, tmp = temps
    try:
        _ipynb(name, src)
        papermill.execute_notebook(str(src), str(tmp), parameters=params, kernel_name="python3", cwd=str(REPO),
                                   progress_bar=False)
        _collapse_injected_parameters(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        for path in temps:
            path.unlink(missing_ok=True)
    return out


def _temp_file(folder: Path, prefix: str) -> Path:
    """A new, empty file in ``folder`` (checked to lie in the output folder) that no other run uses."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".ipynb")
    os.close(fd)
    path = Path(path).resolve()
    if folder.resolve() not in path.parents:
        raise ParameterError(f"refusing to write {path}: outside {folder}")
    return path


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


class BookFailures(RuntimeError):
    """Some chapters (or the build) failed; the others were executed and the book was built from what exists."""

    def __init__(self, failures: dict[str, str], index: Path | None):
        self.failures, self.index = failures, index
        lines = "\n".join(f"  {name}: {why}" for name, why in failures.items())
        super().__init__(f"{len(failures)} of the book's steps failed (the others completed):\n{lines}")


def _failure_line(err: BaseException) -> str:
    """One line saying why a chapter failed: papermill's cell and error, or the exception."""
    if hasattr(err, "ename") and hasattr(err, "evalue"):  # papermill.PapermillExecutionError
        return f"notebook failed in cell {getattr(err, 'exec_count', '?')}: {err.ename}: {err.evalue}"
    return f"{type(err).__name__}: {err}".splitlines()[0][:500]


def run_all(overrides: dict[str, dict] | None = None, profile: str | None = None, book_root: Path = REPO,
            names: list[str] | None = None) -> Path:
    """Execute every notebook with ``params/<name>.yaml`` (plus overrides), then build the book. A chapter that fails
    does not stop the others (its previous page, if any, stays); at the end :class:`BookFailures` lists what failed."""
    overrides = overrides or {}
    failures: dict[str, str] = {}
    for name in names or notebook_names():
        try:
            params = {**params_file(name), **overrides.get(name, {})}
            if profile:
                params["profile"] = profile
            print(f"== executing {name} with {params}", flush=True)
            execute(name, params, book_root)
        except Exception as err:  # noqa: BLE001 -- reported at the end; the other chapters go on
            failures[name] = _failure_line(err)
            print(f"== {name} failed: {failures[name]}", file=sys.stderr, flush=True)
            if not isinstance(err, ParameterError) and not hasattr(err, "ename"):
                traceback.print_exc()
    try:
        index = build(book_root)
    except subprocess.CalledProcessError as err:
        failures["build"] = f"jupyter-book exited with status {err.returncode}"
        index = None
    if failures:
        raise BookFailures(failures, index)
    return index
