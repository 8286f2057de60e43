"""Named parameter sets (profiles) per experiment, and the one function that turns notebook parameters into a
validated configuration: :func:`resolve`.

- ``smoke``: seconds on CPU, for tests;
- ``cpu``: minutes on a laptop CPU, still shows the effect;
- ``paper``: the full-scale reconstructed protocol, for a GPU.
Explicit parameters (not ``None``) override the profile. A list-, number- or bool-valued parameter given as text (as
papermill's ``-p`` gives ``[0, 1]``) is read as YAML, like ``python -m erosion_utils run -p``.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, fields

import yaml

from .data import NUM_CLASSES, PER_CLASS
from .experiments import CHAPTERS, PROFILES, ErosionConfig
from .experiments.breadth import sweeps_of
from .validation import ParameterError, check_choice, check_keys, check_number, check_unique, parse_value

EXPERIMENTS = tuple(CHAPTERS)  # the experiment each notebook resolves, in book order

_BASE = {
    "smoke": dict(train_per_class=16, test_per_class=8, width=0.0625, pretrain_epochs=4, pretrain_lr=0.05,
                  pretrain_batch_size=32, pretrain_extra_epochs=2, finetune_epochs=1, finetune_batch_size=32,
                  n_evals=4),
    "cpu": dict(train_per_class=300, test_per_class=100, arch="vgg11", width=0.25, pretrain_epochs=12,
                pretrain_lr=0.1, pretrain_batch_size=128, pretrain_extra_epochs=4, finetune_epochs=3,
                finetune_batch_size=64, n_evals=12),
    "paper": dict(),
}


def _extras(experiment: str, profile: str) -> dict:
    return CHAPTERS[experiment].profile_extras[profile]


def _config(experiment: str, profile: str) -> dict:
    return {**_BASE[profile], **CHAPTERS[experiment].profile_config.get(profile, {})}


# the configuration fields a notebook exposes as parameters
CONFIG_PARAMS = ("dataset", "arch", "width", "train_per_class", "test_per_class", "pretrain_epochs", "pretrain_lr",
                 "pattern", "pattern_size", "corner", "fraction", "finetune_epochs", "finetune_weight_decay",
                 "finetune_batch_size", "n_evals", "finetune_warmup_epochs", "freeze_stages", "head_only_epochs",
                 "l2sp_alpha", "erase_corners")


@dataclass
class Resolved:
    experiment: str
    profile: str
    config: ErosionConfig
    extras: dict

    def sweeps(self) -> dict[str, list]:
        """Breadth sweeps, keyed by configuration field (only for the breadth experiment)."""
        return sweeps_of(self.extras) if self.experiment == "breadth" else {}

    def table(self) -> list[dict]:
        """Every parameter the run used, for display beside its figures."""
        rows = [{"parameter": "profile", "value": self.profile}]
        rows += [{"parameter": k, "value": v} for k, v in self.extras.items()]
        superseded = {"seed": "seeds", "finetune_lr": "finetune_lrs"}  # lists in extras replace single values
        if "around_lrs" in self.extras:
            superseded["finetune_lr"] = "around_lrs"
        rows += [{"parameter": f.name, "value": getattr(self.config, f.name)} for f in fields(self.config)
                 if superseded.get(f.name) not in self.extras]
        return rows


def parameter_names(experiment: str) -> list[str]:
    """The parameters a notebook of ``experiment`` accepts besides ``profile``."""
    check_choice("experiment", experiment, EXPERIMENTS)
    names = list(_extras(experiment, "paper"))
    if CHAPTERS[experiment].config_params is not None:
        return list(CHAPTERS[experiment].config_params) + names
    seed = [] if "seeds" in _extras(experiment, "paper") else ["seed"]
    return seed + list(CONFIG_PARAMS) + names


def defaults(experiment: str, profile: str) -> dict:
    """The value each parameter takes under ``profile`` when not overridden."""
    check_choice("profile", profile, PROFILES)
    cfg = ErosionConfig(**_config(experiment, profile))
    merged = {**cfg.as_dict(), **_extras(experiment, profile)}
    return {k: merged[k] for k in parameter_names(experiment)}


def _papermill_hint(name: str, example: str) -> str:
    return (f"; papermill's -p passes text, read as YAML: -p {name} '{example}', "
            f"or use -y '{name}: {example}' or -f params.yaml")


def _yaml(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _kind(value) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, dict):
        return "mapping"
    return "str" if isinstance(value, str) else None


def _typed(experiment: str, name: str, value):
    """``value``, read as YAML when it is text for a parameter whose profile values are lists, numbers or bools;
    fails, naming papermill's ``-y`` and ``-f``, when the text is not YAML of that kind."""
    if not isinstance(value, str):
        return value
    examples = [defaults(experiment, p)[name] for p in PROFILES]
    kinds = {_kind(v) for v in examples} - {None}
    if len(kinds) != 1 or kinds == {"str"}:
        return value
    kind = kinds.pop()
    example = next(v for v in examples if v is not None)
    try:
        parsed = parse_value(value)
    except yaml.YAMLError:
        raise ParameterError(f"{name}={value!r} is not valid YAML" + _papermill_hint(name, _yaml(example))) from None
    if parsed is not None and _kind(parsed) != kind:
        raise ParameterError(f"{name}={value!r} must be a {kind}, e.g. {name}={_yaml(example)}"
                             + _papermill_hint(name, _yaml(example)))
    return parsed


def _check_list(name: str, value, item_check) -> list:
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"{name}={value!r} must be a list, e.g. {name}=[...]" + _papermill_hint(name, "[...]"))
    for v in value:
        item_check(v)
    return list(value)


def injected_parameters(namespace: dict) -> list[str]:
    """The names papermill assigned in the cell it injected (its source starts with ``# Parameters``), read from
    the IPython input history (``_ih``) of a notebook's namespace; [] outside IPython or without injected cell."""
    names: list[str] = []
    for source in namespace.get("_ih") or ():
        if not (isinstance(source, str) and source.lstrip().startswith("# Parameters")):
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        names += [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                  for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    return names


def resolve_notebook(experiment: str, namespace: dict) -> Resolved:
    """:func:`resolve` with ``profile`` and every parameter of ``experiment`` read from a notebook's namespace
    (its ``parameters`` cell), so a parameter declared there can never be left out of the call. A parameter that
    papermill passed but the notebook does not take (papermill only warns) fails here, listing the known ones."""
    known = ["profile", *parameter_names(experiment)]
    check_keys(f"parameters passed to the {experiment} notebook", injected_parameters(namespace), known)
    return resolve(experiment, namespace["profile"], **{k: namespace[k] for k in parameter_names(experiment)})


def _check_counts(extras: dict, config: ErosionConfig) -> None:
    """Probe and image counts no larger than what the configuration's data holds (refused, never clipped)."""
    train_pc, test_pc = PER_CLASS[config.dataset]
    train_pc, test_pc = config.train_per_class or train_pc, config.test_per_class or test_pc
    limits = {"probe_train_per_class": (train_pc, f"the {train_pc} training images per class"),
              "probe_test_per_class": (test_pc, f"the {test_pc} test images per class"),
              "n_images": (NUM_CLASSES[config.dataset], f"one per class of {config.dataset}")}
    for key, (most, what) in limits.items():
        if key in extras:
            check_number(f"{key} (at most {what})", extras[key], low=1, high=most)


def resolve(experiment: str, profile: str = "cpu", **overrides) -> Resolved:
    """Profile defaults, overridden by the given (non-None) parameters, validated before any training."""
    check_choice("experiment", experiment, EXPERIMENTS)
    check_choice("profile", profile, PROFILES)
    check_keys(f"parameters for {experiment}", [k for k, v in overrides.items() if v is not None],
               parameter_names(experiment))
    given = {k: _typed(experiment, k, v) for k, v in overrides.items() if v is not None}
    given = {k: v for k, v in given.items() if v is not None}  # text "null" is None too: the profile's value
    cfg_values = _config(experiment, profile)
    extras = dict(_extras(experiment, profile))
    for k, v in given.items():
        (extras if k in extras else cfg_values)[k] = v
    config = ErosionConfig.from_dict(cfg_values).validate()
    if "seeds" in extras:
        extras["seeds"] = _check_list("seeds", extras["seeds"],
                                      lambda s: check_number("seeds item", s, low=0, integer=True))
        if not extras["seeds"]:
            raise ParameterError("seeds=[] must list at least one seed, e.g. [0, 1, 2]")
        check_unique("seeds", extras["seeds"])
    for key in ("n_snapshots", "probe_train_per_class", "probe_test_per_class", "probe_epochs", "n_images"):
        if key in extras:
            check_number(key, extras[key], low=2 if key == "n_snapshots" else 1, integer=True)
    _check_counts(extras, config)
    for key in ("finetune_lrs", "around_lrs"):
        if key in extras:
            extras[key] = _check_list(key, extras[key], lambda v: check_number(f"{key} item", v, low=0,
                                                                               low_inclusive=False))
            if not extras[key]:
                raise ParameterError(f"{key}=[] must list at least one learning rate, e.g. [0.01, 0.1]")
            check_unique(key, extras[key])
    if "supplement_profile" in extras:
        check_choice("supplement_profile", extras["supplement_profile"], [None] + [p for p in PROFILES if p != profile])
    CHAPTERS[experiment].validate_extras(extras, config)
    return Resolved(experiment, profile, config, extras)
