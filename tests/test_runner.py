"""The notebook runner and its command line, without executing any notebook.

Every check here fails fast on a bad notebook layout or a bad parameter; ``papermill.execute_notebook`` is replaced
by a function that fails the test, so a parameter error that slipped through to execution is caught, not run.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest

from erosion_utils import cli, profiles, runner
from erosion_utils.validation import ParameterError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["00_patterns", "01_erosion", "02_breadth", "03_representations", "04_claims", "05_mechanism",
             "06_mitigation", "07_plan"]
EXPERIMENTS = {"00_patterns": "patterns", "01_erosion": "erosion", "02_breadth": "breadth",
               "03_representations": "representations", "04_claims": "claims", "05_mechanism": "mechanism",
               "06_mitigation": "mitigation", "07_plan": "plan"}


@pytest.fixture
def no_execution(monkeypatch):
    """Any call to papermill fails the test: validation must reject bad parameters before execution."""
    import papermill

    def forbidden(*args, **kwargs):
        pytest.fail(f"papermill.execute_notebook was called ({args[:2]}): validation should have failed first")

    monkeypatch.setattr(papermill, "execute_notebook", forbidden)
    return forbidden


def _cli(*args: str, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m erosion_utils ARGS`` in a subprocess; caches point into tmp_path in case anything runs."""
    env = {**os.environ, "EROSION_RESULTS": str(tmp_path / "results"),
           "EROSION_CHECKPOINTS": str(tmp_path / "checkpoints"), "EROSION_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "erosion_utils", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _executed_state() -> dict:
    """(mtime, size) of everything under the repository's book/executed (to show that nothing ran)."""
    root = REPO / runner.EXECUTED
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*")
            if p.is_file()}


# --------------------------------------------------------------------------------------------- notebook layout

def test_notebook_names():
    assert runner.notebook_names() == NOTEBOOKS


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_one_parameters_cell_of_literals_with_profile(name):
    # independent of the runner's regex: read the notebook as jupytext does and look at cell tags
    nb = jupytext.read(REPO / "notebooks" / f"{name}.py")
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: {len(tagged)} cells tagged 'parameters'"
    cell = tagged[0]
    assert cell.cell_type == "code"
    tree = ast.parse(cell.source)
    names = []
    for node in tree.body:
        # NAME: "Type" = literal  # help (papermill's --help-notebook form; tests/test_papermill.py) or NAME = literal
        target = node.target if isinstance(node, ast.AnnAssign) and node.value is not None else \
            node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        assert isinstance(target, ast.Name), \
            f"{name}: parameters cell holds a statement other than NAME = literal: {ast.unparse(node)}"
        ast.literal_eval(node.value)  # raises on anything but a literal
        names.append(target.id)
    assert len(names) == len(set(names)), f"{name}: a parameter is assigned twice"
    assert "profile" in names

    params = runner.notebook_parameters(name)
    assert list(params) == names
    assert params["profile"] in profiles.PROFILES


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_experiment(name):
    assert runner.notebook_experiment(name) == EXPERIMENTS[name]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_match_what_resolve_accepts(name):
    """A notebook exposes exactly the parameters its experiment accepts (plus ``profile``), all defaulting to None
    so that the profile decides."""
    params = runner.notebook_parameters(name)
    assert set(params) == set(profiles.parameter_names(EXPERIMENTS[name])) | {"profile"}
    assert all(v is None for k, v in params.items() if k != "profile")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_defaults_validate(name):
    for profile in profiles.PROFILES:
        assert runner.validate(name, {"profile": profile})["profile"] == profile
    assert runner.validate(name, runner.params_file(name)).keys() == runner.notebook_parameters(name).keys()


# ------------------------------------------------------------------------------------------------ -p values

@pytest.mark.parametrize("text, expected", [
    ("0.1", 0.1), ("1", 1), ("[0, 1]", [0, 1]), ("[0.01, 0.1]", [0.01, 0.1]), ("resnet18", "resnet18"),
    ("null", None), ("true", True), ("top_left", "top_left"), ("[]", []),
])
def test_parse_value(text, expected):
    value = runner.parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_assignments():
    assert runner.parse_assignments(["arch=vgg11", "seeds=[0, 1]", " width = 0.5", "x=a=b"]) == \
        {"arch": "vgg11", "seeds": [0, 1], "width": 0.5, "x": "a=b"}
    with pytest.raises(ParameterError, match="key=value"):
        runner.parse_assignments(["arch"])


def test_malformed_yaml_is_a_parameter_error():
    with pytest.raises(ParameterError, match="seeds"):
        runner.parse_assignments(["seeds=[0, 1"])


# ------------------------------------------------------------------------------------------------ validation

def test_unknown_notebook_lists_valid_names(no_execution, tmp_path):
    for call in (lambda: runner.validate("99_nosuch", {}), lambda: runner.execute("99_nosuch", {}, tmp_path)):
        with pytest.raises(ParameterError) as err:
            call()
        assert "99_nosuch" in str(err.value)
        for name in NOTEBOOKS:
            assert name in str(err.value)


def test_unknown_parameter_lists_known_ones(no_execution, tmp_path):
    for call in (lambda: runner.validate("01_erosion", {"nosuch": 1}),
                 lambda: runner.execute("01_erosion", {"nosuch": 1}, tmp_path)):
        with pytest.raises(ParameterError) as err:
            call()
        msg = str(err.value)
        assert "nosuch" in msg
        for known in runner.notebook_parameters("01_erosion"):
            assert repr(known) in msg, f"{known!r} missing from {msg!r}"
    assert not (tmp_path / runner.EXECUTED).exists(), "execute() wrote files before validating"


INVALID = [
    ("01_erosion", {"arch": "foo"}, ["arch='foo'", "resnet18", "vgg11", "mlp"]),
    ("02_breadth", {"archs": ["foo"]}, ["arch='foo'", "resnet18"]),
    ("00_patterns", {"pattern_size": 40}, ["pattern_size=40", "[1, 32]"]),
    ("01_erosion", {"pattern_size": 40}, ["pattern_size=40", "[1, 32]"]),
    ("02_breadth", {"pattern_sizes": [40]}, ["pattern_size=40", "[1, 32]"]),
    ("01_erosion", {"finetune_epochs": 0}, ["finetune_epochs=0", "(0, inf]"]),
    ("03_representations", {"finetune_epochs": 0}, ["finetune_epochs=0"]),
    ("01_erosion", {"profile": "huge"}, ["profile='huge'", "smoke", "cpu", "paper"]),
    ("04_claims", {"profile": "huge"}, ["profile='huge'", "smoke", "cpu", "paper"]),
    ("01_erosion", {"seeds": []}, ["seeds=[]"]),
    ("01_erosion", {"seeds": 0}, ["seeds=0", "list"]),
    ("01_erosion", {"finetune_lrs": []}, ["finetune_lrs=[]"]),
    ("03_representations", {"n_snapshots": 1}, ["n_snapshots=1"]),
    ("00_patterns", {"n_images": 0}, ["n_images=0"]),
]


@pytest.mark.parametrize("name, params, expected", INVALID, ids=[f"{n}-{p}" for n, p, _ in INVALID])
def test_invalid_values_fail_before_execution(name, params, expected, no_execution, tmp_path):
    for profile in ("smoke", "paper"):
        for call in (runner.validate, lambda n, p: runner.execute(n, p, tmp_path)):
            with pytest.raises(ParameterError) as err:
                call(name, {"profile": profile, **params})
            for text in expected:
                assert text in str(err.value), f"{text!r} missing from {str(err.value)!r}"
    assert not (tmp_path / runner.EXECUTED).exists(), "execute() wrote files before validating"


# ------------------------------------------------------------------------------------------------- describe

@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_describe_gives_the_profile_value_beside_each_default(name, profile):
    rows = runner.describe(name, profile)
    params = runner.notebook_parameters(name)
    assert [r[0] for r in rows] == list(params)
    expected = profiles.defaults(EXPERIMENTS[name], profile)
    for key, default, value in rows:
        assert default == params[key]
        assert value == (profile if key == "profile" else expected[key]), key


def test_describe_without_profile_uses_params_file():
    rows = dict((k, v) for k, _, v in runner.describe("01_erosion"))
    profile = runner.params_file("01_erosion").get("profile", runner.notebook_parameters("01_erosion")["profile"])
    assert rows["profile"] == profile
    assert rows["seeds"] == profiles.defaults("erosion", profile)["seeds"]


# ------------------------------------------------------------------------------------------------------ CLI

def test_cli_help_lists_commands(tmp_path):
    res = _cli("--help", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    for command in ("book", "run", "params", "paper", "bench", "selfcheck"):
        assert re.search(rf"^\s+{command}\s", res.stdout, re.M), f"{command} missing from --help:\n{res.stdout}"


def test_cli_params_prints_every_parameter(tmp_path):
    res = _cli("params", "01_erosion", "--profile", "smoke", tmp_path=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[0] == "parameter"
    shown = {line.split()[0]: line for line in lines[1:] if line.strip()}
    for key, _, value in runner.describe("01_erosion", "smoke"):
        assert key in shown, f"{key} missing from `params 01_erosion`:\n{res.stdout}"
        assert shown[key].rstrip().endswith(repr(value)), shown[key]
    assert set(shown) == set(runner.notebook_parameters("01_erosion"))


def test_cli_params_unknown_notebook(tmp_path):
    res = _cli("params", "99_nosuch", tmp_path=tmp_path)
    assert res.returncode == 2
    assert "01_erosion" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("assignment, expected", [
    ("arch=foo", ["arch='foo'", "resnet18", "vgg11", "mlp"]),
    ("nosuch=1", ["nosuch", "'arch'", "'seeds'", "'profile'"]),
])
def test_cli_run_rejects_bad_parameters_without_executing(assignment, expected, tmp_path):
    before = _executed_state()
    res = _cli("run", "01_erosion", "-p", assignment, "--no-build", tmp_path=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for text in expected:
        assert text in res.stderr, f"{text!r} missing from {res.stderr!r}"
    assert "executed:" not in res.stdout
    assert _executed_state() == before, "the repository's book/executed changed: something was executed"
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("argv", [
    ["run", "01_erosion", "-p", "arch=foo", "--no-build"],
    ["run", "01_erosion", "-p", "seeds=[0, 1", "--no-build"],
    ["run", "01_erosion", "-p", "arch", "--no-build"],
    ["run", "01_erosion", "-p", "nosuch=1", "--no-build"],
    ["run", "01_erosion", "-p", "seeds=[]"],
    ["run", "01_erosion", "-p", "pattern_size=40", "--profile", "smoke"],
    ["run", "99_nosuch", "--no-build"],
])
def test_cli_main_validates_before_execute(argv, no_execution, monkeypatch, capsys):
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("runner.execute called before validation"))
    monkeypatch.setattr(runner, "build", lambda *a, **k: pytest.fail("runner.build called"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
