"""Early parameter checks: every error names the parameter and says what is allowed, before any training."""
from __future__ import annotations

import pytest

from erosion_utils import data, experiments, profiles
from erosion_utils.data import DatasetNotFoundError, load_dataset
from erosion_utils.experiments import Context, ErosionConfig, erosion_experiment, finetune_run
from erosion_utils.validation import ParameterError, check_choice, check_keys, check_number


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="foo"), r"arch='foo' is not allowed; choose one of \['vgg11', 'vgg16', 'vgg19', 'resnet18', "
                       r"'resnet34', 'mlp'\]"),
    (dict(pattern_size=40), r"pattern_size=40 is out of range; allowed in \[1, 32\]"),
    (dict(fraction=0), r"fraction=0 is out of range; allowed in \(0, 1\]"),
    (dict(fraction=1.5), r"fraction=1.5 is out of range; allowed in \(0, 1\]"),
    (dict(finetune_epochs=0), r"finetune_epochs=0 is out of range; allowed in \(0, inf\]"),
    (dict(pretrain_lr=-1), r"pretrain_lr=-1 is out of range; allowed in \(0, inf\]"),
    (dict(dataset="imagenet"), r"dataset='imagenet' is not allowed; choose one of \['cifar10', 'cifar100', "
                               r"'fashion_mnist'\]"),
    (dict(pattern="stripes"), r"pattern='stripes' is not allowed; choose one of \['colour', 'position', 'noise'\]"),
    (dict(corner="centre"), r"corner='centre' is not allowed; choose one of \['top_left', 'top_right', "
                            r"'bottom_left', 'bottom_right'\]"),
    (dict(dataset="cifar100", pattern="position", pattern_size=4),
     r"pattern_size=4 makes a position pattern of 40 pixels for 100 classes.*allowed pattern_size: 1\.\.3"),
    (dict(width=0), r"width=0 is out of range; allowed in \(0, inf\]"),
    (dict(train_per_class=0), r"train_per_class=0 is out of range; allowed in \[1, inf\]"),
    (dict(pretrain_schedule="linear"), r"pretrain_schedule='linear' is not allowed; choose one of "
                                       r"\['constant', 'step', 'cosine', 'onecycle'\]"),
    (dict(finetune_batch_size=0), r"finetune_batch_size=0 is out of range; allowed in \[1, inf\]"),
    (dict(finetune_momentum=1), r"finetune_momentum=1 is out of range; allowed in \[0, 1\)"),
    (dict(pretrain_extra_epochs=-1), r"pretrain_extra_epochs=-1 is out of range; allowed in \[0, inf\]"),
    (dict(n_evals=1), r"n_evals=1 is out of range; allowed in \[2, inf\]"),
    (dict(seed=-1), r"seed=-1 is out of range; allowed in \[0, inf\]"),
    (dict(seed=1.5), r"seed=1.5 must be an integer in \[0, inf\]"),
])
def test_erosion_config_errors_name_the_parameter(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        ErosionConfig(**kwargs).validate()


def test_default_and_profile_configs_are_valid():
    assert ErosionConfig().validate() == ErosionConfig()
    for profile in profiles.PROFILES:
        for experiment in profiles.EXPERIMENTS:
            assert isinstance(profiles.resolve(experiment, profile).config, ErosionConfig)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ParameterError, match=r"unknown parameters \['lr'\]; known: \[.*'finetune_lr'.*\]"):
        ErosionConfig.from_dict({"lr": 0.1})


@pytest.mark.parametrize("call, match", [
    (lambda: profiles.resolve("erosion", "smoke", learning_rate=0.1),
     r"unknown parameters for erosion \['learning_rate'\]; known: \[.*'finetune_lrs'.*'seeds'.*\]"),
    (lambda: profiles.resolve("erosion", "huge"), r"profile='huge' is not allowed; choose one of "
                                                  r"\['smoke', 'cpu', 'paper'\]"),
    (lambda: profiles.resolve("fig9", "smoke"), r"experiment='fig9' is not allowed; choose one of \['patterns', "
                                                r"'erosion', 'breadth', 'representations', 'claims', 'mechanism', 'mitigation', 'plan'\]"),
    (lambda: profiles.resolve("erosion", "smoke", seeds=[]), r"seeds=\[\] must list at least one seed"),
    (lambda: profiles.resolve("erosion", "smoke", seeds="x"), r"seeds='x' must be a list, e\.g\. seeds=\[0\]"),
    (lambda: profiles.resolve("erosion", "smoke", seeds=[0, -1]), r"seeds item=-1 is out of range; allowed in "
                                                                  r"\[0, inf\]"),
    (lambda: profiles.resolve("erosion", "smoke", arch="foo"), r"arch='foo' is not allowed; choose one of \["),
    (lambda: profiles.resolve("erosion", "smoke", seed=1), r"unknown parameters for erosion \['seed'\]"),
    (lambda: profiles.resolve("representations", "smoke", n_snapshots=1),
     r"n_snapshots=1 is out of range; allowed in \[2, inf\]"),
    (lambda: profiles.resolve("breadth", "smoke", archs="mlp"), r"archs='mlp' must be a list"),
    (lambda: profiles.resolve("breadth", "smoke", archs=["resnet50"]),
     r"arch='resnet50' is not allowed; choose one of \["),
    (lambda: profiles.resolve("breadth", "smoke", fractions=[2.0]), r"fraction=2.0 is out of range; allowed in "
                                                                    r"\(0, 1\]"),
])
def test_profile_resolve_errors(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_resolve_applies_overrides_and_ignores_none():
    r = profiles.resolve("erosion", "smoke", arch="mlp", seeds=[3, 4], fraction=None)
    assert r.config.arch == "mlp" and r.extras["seeds"] == [3, 4]
    assert r.config.fraction == ErosionConfig().fraction
    assert r.config.train_per_class == profiles.defaults("erosion", "smoke")["train_per_class"]


@pytest.mark.parametrize("call, match", [
    (lambda: check_choice("colour", "mauve", ["red", "blue"]), r"colour='mauve' is not allowed; choose one of "
                                                               r"\['red', 'blue'\]"),
    (lambda: check_number("n", True, low=0), r"n=True must be a number in \[0, inf\]"),
    (lambda: check_number("n", "3", integer=True), r"n='3' must be an integer$"),
    (lambda: check_number("p", 1.0, low=0, high=1, high_inclusive=False), r"p=1.0 is out of range; allowed in "
                                                                          r"\[0, 1\)"),
    (lambda: check_number("t", -2, high=-3), r"t=-2 is out of range; allowed in \[-inf, -3\]"),
    (lambda: check_keys("options", ["b", "z"], ["a", "b"]), r"unknown options \['z'\]; known: \['a', 'b'\]"),
])
def test_validation_helpers(call, match):
    with pytest.raises(ParameterError, match=match):
        call()


def test_parameter_error_is_a_value_error():
    assert issubclass(ParameterError, ValueError)
    assert check_number("x", 0.5, low=0, high=1) == 0.5 and check_choice("c", "a", "ab") == "a"


# --- datasets --------------------------------------------------------------------------------------------------

def test_unknown_dataset_name():
    with pytest.raises(ParameterError, match=r"dataset='imagenet' is not allowed; choose one of \['cifar10', "
                                             r"'cifar100', 'fashion_mnist'\]"):
        load_dataset("imagenet")


def test_missing_dataset_lists_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    root, home = tmp_path / "root", tmp_path / "home"
    root.mkdir()
    home.mkdir()
    monkeypatch.delenv("EROSION_DATA", raising=False)
    monkeypatch.setenv("HOME", str(home))
    # the fixed places are searched too; point them at empty folders so the test does not depend on the machine
    monkeypatch.setattr(data, "_REPO_SHARED", tmp_path / "shared" / "data")
    monkeypatch.setattr(data, "_DEBIAN", tmp_path / "usr_share_datasets")
    monkeypatch.setattr(data, "CACHE_DIR", home / ".cache" / "erosion_utils")
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar100", root=root)
    message = str(err.value)
    assert "cifar100" in message
    for looked in (root, root / "cifar100", tmp_path / "shared" / "data" / "cifar100",
                   tmp_path / "usr_share_datasets" / "cifar100", home / ".cache" / "erosion_utils" / "data"):
        assert str(looked) in message
    assert "EROSION_DATA" in message and "root=" in message and "download=True" in message
    assert isinstance(err.value, FileNotFoundError)
    assert not (home / ".cache").exists(), "nothing is downloaded or created without download=True"


def test_cifar100_is_not_found_in_the_real_search_path(tmp_path, monkeypatch):
    monkeypatch.delenv("EROSION_DATA", raising=False)
    monkeypatch.setattr(data, "CACHE_DIR", tmp_path / "cache")
    with pytest.raises(DatasetNotFoundError, match=r"EROSION_DATA") as err:
        load_dataset("cifar100", root=tmp_path)
    assert str(tmp_path) in str(err.value) and str(data._DEBIAN) in str(err.value)


# --- validation happens before any training or caching -----------------------------------------------------------

@pytest.mark.parametrize("bad", [dict(arch="foo"), dict(fraction=0), dict(pattern_size=40), dict(finetune_epochs=0)])
def test_finetune_run_validates_before_touching_caches(bad, tmp_path, monkeypatch):
    def no_training(*_args, **_kwargs):
        raise AssertionError("trained before validating")

    monkeypatch.setattr(experiments.core, "train", no_training)
    monkeypatch.setattr(experiments.core, "train_until_perfect", no_training)
    ctx = Context(device="cpu", results=experiments.ResultCache(tmp_path / "results"),
                  checkpoints=experiments.CheckpointCache(tmp_path / "checkpoints"), data_root=str(tmp_path / "none"))
    with pytest.raises(ParameterError):
        finetune_run(ErosionConfig(**bad), True, ctx)
    with pytest.raises(ParameterError):
        experiments.representation_experiment(ErosionConfig(**bad), ctx)
    assert list(tmp_path.iterdir()) == []


def test_erosion_experiment_needs_seeds(cpu_context):
    with pytest.raises(ParameterError, match=r"seeds=\[\] must list at least one seed"):
        erosion_experiment(ErosionConfig(), [], cpu_context)


def test_erosion_experiment_validates_every_seed_before_training(cpu_context, monkeypatch):
    def no_training(*_args, **_kwargs):
        raise AssertionError("trained before validating every seed")

    monkeypatch.setattr(experiments.erosion, "finetune_run", no_training)
    with pytest.raises(ParameterError, match=r"seed=-1 is out of range"):
        erosion_experiment(ErosionConfig(), [0, -1], cpu_context)


def test_resolve_notebook_reads_every_parameter_from_the_namespace():
    names = profiles.parameter_names("erosion")
    namespace = {"profile": "smoke", **{k: None for k in names}, "arch": "mlp", "unrelated": 1}
    resolved = profiles.resolve_notebook("erosion", namespace)
    assert resolved.config.arch == "mlp" and resolved.profile == "smoke"
    namespace["arch"] = "foo"
    with pytest.raises(ParameterError, match="arch='foo'"):
        profiles.resolve_notebook("erosion", namespace)
    del namespace["arch"]
    with pytest.raises(KeyError, match="arch"):  # a parameter missing from the notebook is an error, not a default
        profiles.resolve_notebook("erosion", namespace)
