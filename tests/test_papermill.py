"""papermill's own command line as a way to rerun a notebook: ``--help-notebook``, ``-p`` text values, results.

Convention for every notebook's parameters cell: one line per parameter, ``name: "Type" = literal  # help``, where
Type is quoted and built from str, int, float, bool, list[...] and Optional[...] (papermill's parser accepts only
word characters, brackets and commas: no ``|``), the help holds no ``=`` (papermill skips such lines), and a parameter
defaulting to None ends its help with "; None: the profile's value".

The papermill runs use the venv's ``jupytext`` and ``papermill`` executables, real CIFAR-10 and the smoke profile,
with every cache under pytest's tmp dirs (about 40 s on a 2-core CPU).
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import jupytext
import pytest
import yaml

from erosion_utils import cli, profiles, runner
from erosion_utils.validation import ParameterError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAPERMILL = str(BIN / "papermill")
JUPYTEXT = str(BIN / "jupytext")
NOTEBOOKS = runner.notebook_names()
PROFILE_HELP = "; None: the profile's value"
# one parameter of papermill's --help-notebook output: "  name: type (default value)", help after it or below
HELP_LINE = re.compile(r"^  (\w+): (.+?) \(default (.*?)\)(?: +(\S.*))?$")
TYPES = {"Optional": typing.Optional, "list": list, "str": str, "int": int, "float": float, "bool": bool,
         "dict": dict}


def _help_notebook(ipynb: Path) -> dict[str, tuple[str, str, str]]:
    """papermill --help-notebook, parsed: name -> (type, default, help), in the notebook's order."""
    res = subprocess.run([PAPERMILL, "--help-notebook", str(ipynb)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("Parameters inferred for notebook", 1)[1].splitlines()[1:]
    out: dict[str, tuple[str, str, str]] = {}
    for line, below in zip(lines, lines[1:] + [""]):
        match = HELP_LINE.match(line)
        if match:
            name, type_name, default, help_ = match.groups()
            if help_ is None and below.startswith(" " * 34):
                help_ = below.strip()
            out[name] = (type_name, default, help_ or "")
    return out


def _conforms(value, tp) -> bool:
    """Whether ``value`` is of the annotated type ``tp`` (the convention's small vocabulary)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        return any(_conforms(value, a) for a in args)
    if tp is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_conforms(v, args[0]) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is dict:
        return isinstance(value, dict)
    if tp in (int, str, bool):
        return type(value) is tp
    raise AssertionError(f"annotation {tp} is outside the convention (str, int, float, bool, list, Optional)")


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict[str, Path]:
    """Every notebook converted to .ipynb with jupytext, as a papermill user would."""
    folder = tmp_path_factory.mktemp("ipynb")
    out = {}
    for name in NOTEBOOKS:
        out[name] = folder / f"{name}.ipynb"
        jupytext.write(jupytext.read(REPO / "notebooks" / f"{name}.py"), out[name], fmt="ipynb")
    return out


# --------------------------------------------------------------------------------------------- --help-notebook

@pytest.mark.parametrize("name", NOTEBOOKS)
def test_help_notebook_gives_type_and_help_for_every_parameter(name, converted):
    shown = _help_notebook(converted[name])
    params = runner.notebook_parameters(name)
    assert list(shown) == list(params), f"papermill --help-notebook lists {list(shown)}, the cell has {list(params)}"
    experiment = runner.notebook_experiment(name)
    values = {p: profiles.defaults(experiment, p) for p in profiles.PROFILES}
    for key, (type_name, default, help_) in shown.items():
        assert type_name != "Unknown type", f"{name}: {key} has no type annotation papermill can read"
        assert len(help_) > len(PROFILE_HELP), f"{name}: {key} has no help text"
        assert ast.literal_eval(default) == params[key], f"{name}: papermill reads {key}'s default as {default}"
        tp = eval(type_name, {"__builtins__": {}}, TYPES)  # noqa: S307 (the vocabulary above only)
        assert _conforms(params[key], tp), f"{name}: default {params[key]!r} of {key} is not a {type_name}"
        if key == "profile":
            assert set(profiles.PROFILES) <= set(re.findall(r"\w+", help_)), f"{name}: profile help {help_!r}"
            continue
        assert help_.endswith(PROFILE_HELP), f"{name}: {key}'s help {help_!r} does not end with {PROFILE_HELP!r}"
        for profile, value in values.items():  # what the profile would use is of the documented type
            assert _conforms(value[key], tp), f"{name}: {key}={value[key]!r} under {profile} is not a {type_name}"


def test_help_notebook_shows_documented_parameters(converted):
    """The user's view of one notebook, as the issue reported it (formerly `Unknown type (default None)`)."""
    res = subprocess.run([PAPERMILL, "--help-notebook", str(converted["01_erosion"])], capture_output=True,
                         text=True, timeout=60)
    assert "Unknown type" not in res.stdout
    assert "seeds: Optional[list[int]] (default None)" in res.stdout
    assert "finetune_lrs: Optional[list[float]] (default None)" in res.stdout


# --------------------------------------------------------------------------------------------- text values

@pytest.mark.parametrize("text", ["0.1", "1", "[0, 1]", "[0.01, 0.1]", "resnet18", "null", "true", "[]", "1e-3"])
def test_parse_value_is_the_run_commands(text):
    assert profiles.parse_value(text) == runner.parse_value(text)
    assert type(profiles.parse_value(text)) is type(runner.parse_value(text))


@pytest.mark.parametrize("name", NOTEBOOKS)
@pytest.mark.parametrize("profile", profiles.PROFILES)
def test_text_values_resolve_as_typed_values(name, profile):
    """Every list- or number-valued parameter given as YAML text (papermill's -p) resolves exactly as the value."""
    experiment = runner.notebook_experiment(name)
    for key, value in profiles.defaults(experiment, profile).items():
        if value is None or isinstance(value, str):
            continue
        text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        assert isinstance(text, str) and text
        typed, from_text = profiles.resolve(experiment, profile, **{key: value}), \
            profiles.resolve(experiment, profile, **{key: text})
        assert from_text == typed, f"{name}: {key}={text!r} resolves differently from {key}={value!r}"


def test_text_values_of_string_parameters_stay_text():
    resolved = profiles.resolve("breadth", "smoke", arch="mlp", supplement_profile="cpu", archs="[mlp, vgg11]")
    assert resolved.config.arch == "mlp" and resolved.extras["supplement_profile"] == "cpu"
    assert resolved.extras["archs"] == ["mlp", "vgg11"]
    assert profiles.resolve("erosion", "smoke", seeds="null").extras["seeds"] == \
        profiles.defaults("erosion", "smoke")["seeds"]  # text null, like None, takes the profile's value


@pytest.mark.parametrize("params, expected", [
    (dict(seeds="[0, 1"), ["seeds='[0, 1'", "not valid YAML"]),
    (dict(seeds="zero"), ["seeds='zero'", "must be a list"]),
    (dict(seeds=0), ["seeds=0", "must be a list"]),
    (dict(finetune_lrs="0.05"), ["finetune_lrs='0.05'", "must be a list"]),
    (dict(width="wide"), ["width='wide'", "must be a number"]),
])
def test_invalid_text_names_papermill_options(params, expected):
    with pytest.raises(ParameterError) as err:
        profiles.resolve("erosion", "smoke", **params)
    for text in expected + ["-y '", "-f params.yaml"]:
        assert text in str(err.value), f"{text!r} missing from {str(err.value)!r}"


# --------------------------------------------------------------------------------------------- papermill runs

def _env(tmp_path: Path, cifar10_npz: Path) -> dict:
    return {**os.environ, "EROSION_RESULTS": str(tmp_path / "results"), "EROSION_PROGRESS": "0",
            "EROSION_CHECKPOINTS": str(tmp_path / "checkpoints"), "EROSION_DATA": str(cifar10_npz.parent)}


def _papermill(tmp_path: Path, cifar10_npz: Path, *params: str) -> subprocess.CompletedProcess:
    """jupytext --to ipynb, then papermill at the smoke profile with ``-p`` pairs, as a papermill user would."""
    src = tmp_path / "01_erosion.ipynb"
    subprocess.run([JUPYTEXT, "--to", "ipynb", "-o", str(src), str(REPO / "notebooks" / "01_erosion.py")],
                   check=True, capture_output=True, timeout=60)
    cmd = [PAPERMILL, str(src), str(tmp_path / "out.ipynb"), "-p", "profile", "smoke", *params, "--cwd",
           str(tmp_path), "--no-progress-bar"]
    return subprocess.run(cmd, env=_env(tmp_path, cifar10_npz), capture_output=True, text=True, timeout=300)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_papermill_run_caches_what_the_run_command_caches(tmp_path, cifar10_npz, monkeypatch):
    res = _papermill(tmp_path, cifar10_npz, "-p", "seeds", "[0]", "-p", "finetune_lrs", "[0.05]")
    assert res.returncode == 0, res.stderr[-3000:]
    cached = {k: json.loads(v) for k, v in _files(tmp_path / "results").items()}
    finetunes = [e for k, e in cached.items() if k.startswith("finetune/")]
    # the text values took effect: one seed, one learning rate (not the smoke profile's [0.01, 0.1]), both arms
    assert sorted(e["params"]["patterned"] for e in finetunes) == [False, True], list(cached)
    smoke = profiles.resolve("erosion", "smoke").config
    for entry in finetunes:
        assert (entry["params"]["seed"], entry["params"]["finetune_lr"]) == (0, 0.05)
        assert entry["params"]["train_per_class"] == smoke.train_per_class
    assert any(k.startswith("pretrain/") for k in cached)

    # `python -m erosion_utils run` with the same values, its page written under tmp_path: every result is a cache
    # hit (same keys), so nothing is computed and no cached file changes
    before = {**_files(tmp_path / "results"), **{f"ckpt/{k}": v for k, v in _files(tmp_path / "checkpoints").items()}}
    for key, value in _env(tmp_path, cifar10_npz).items():
        monkeypatch.setenv(key, value)
    execute = runner.execute
    monkeypatch.setattr(runner, "execute", lambda name, params: execute(name, params, tmp_path / "book"))
    argv = ["run", "01_erosion", "--profile", "smoke", "-p", "seeds=[0]", "-p", "finetune_lrs=[0.05]", "--no-build"]
    assert cli.main(argv) == 0
    assert (tmp_path / "book" / runner.EXECUTED / "01_erosion.ipynb").is_file()
    after = {**_files(tmp_path / "results"), **{f"ckpt/{k}": v for k, v in _files(tmp_path / "checkpoints").items()}}
    assert after == before, f"the run command computed other results: {sorted(set(after) ^ set(before))}"


@pytest.mark.slow
def test_papermill_invalid_text_fails_before_training(tmp_path, cifar10_npz):
    res = _papermill(tmp_path, cifar10_npz, "-p", "seeds", "[0, 1")
    assert res.returncode != 0
    assert "ParameterError" in res.stderr and "seeds='[0, 1'" in res.stderr
    assert "-y 'seeds: " in res.stderr and "-f params.yaml" in res.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "checkpoints").exists()
