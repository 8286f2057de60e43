"""Breadth: one factor at a time around the base configuration, each pattern run against its control."""
from __future__ import annotations

from dataclasses import replace

from ..validation import ParameterError
from .core import PATTERN_FIELDS, Context, ErosionConfig, finetune_run, missing_or
from .units import Unit, experiment_unit

BREADTH_FACTORS = ("arch", "pattern", "pattern_size", "fraction", "dataset", "finetune_lr", "finetune_weight_decay")
# breadth runs are shorter and evaluated less densely than the erosion chapter's
PROFILE_CONFIG = {"smoke": dict(), "cpu": dict(finetune_epochs=2, n_evals=8),
                  "paper": dict(finetune_epochs=2, n_evals=8)}
PROFILE_EXTRAS = {
    "smoke": dict(supplement_profile=None, around_lrs=[0.01], archs=["mlp"], patterns=["noise"],
                  pattern_sizes=[2], fractions=[0.5], datasets=[], finetune_lrs=[0.01],
                  finetune_weight_decays=[0.0]),
    "cpu": dict(supplement_profile=None, around_lrs=[0.01, 0.1], patterns=["position", "noise"],
                pattern_sizes=[1, 2, 8],
                fractions=[0.1, 0.5], archs=["resnet18", "mlp"], datasets=[], finetune_lrs=[0.001, 0.01, 0.1],
                finetune_weight_decays=[0.0, 5e-4]),
    # the cpu-profile supplement: every setting computed, at a smaller scale (see the Breadth chapter)
    "paper": dict(supplement_profile="cpu", around_lrs=[0.01, 0.1], patterns=["position", "noise"],
                  pattern_sizes=[1, 2, 8],
                  fractions=[0.1, 0.5], archs=["vgg19", "mlp"], datasets=["fashion_mnist"],
                  finetune_lrs=[0.001, 0.01, 0.1], finetune_weight_decays=[0.0, 5e-4]),
}
# the chapter's sweep parameters and the configuration field each varies
SWEEPS = {"archs": "arch", "patterns": "pattern", "pattern_sizes": "pattern_size", "fractions": "fraction",
          "datasets": "dataset", "finetune_lrs": "finetune_lr", "finetune_weight_decays": "finetune_weight_decay"}


def sweeps_of(extras: dict) -> dict[str, list]:
    """The breadth sweeps of ``extras``, keyed by configuration field (empty sweeps left out)."""
    return {SWEEPS[k]: v for k, v in extras.items() if k in SWEEPS and v}


def validate_extras(extras: dict, config: ErosionConfig) -> None:
    """Every sweep is a list, and every variant it makes is a valid configuration (fails before any training)."""
    for k in SWEEPS:
        if not isinstance(extras[k], (list, tuple)):
            raise ParameterError(f"{k}={extras[k]!r} must be a list, e.g. {k}=[...]; papermill's -p passes text, "
                                 f"read as YAML: -p {k} '[...]', or use -y '{k}: [...]' or -f params.yaml")
        extras[k] = list(extras[k])
    breadth_variants(config, sweeps_of(extras), extras["around_lrs"])


def breadth_variants(base: ErosionConfig, sweeps: dict[str, list],
                     around_lrs: list[float] | None = None) -> list[tuple[str, ErosionConfig]]:
    """One factor at a time around ``base`` (repeated at each finetuning lr in ``around_lrs``);
    ``finetune_lr`` and ``finetune_weight_decay`` form a full grid. Returns (factor, config) pairs, base first,
    without duplicates."""
    unknown = sorted(set(sweeps) - set(BREADTH_FACTORS))
    if unknown:
        raise ParameterError(f"unknown sweep factors {unknown}; known: {sorted(BREADTH_FACTORS)}")
    out: list[tuple[str, ErosionConfig]] = [("base", base)]
    seen = {base}
    lrs = sweeps.get("finetune_lr", [base.finetune_lr])
    wds = sweeps.get("finetune_weight_decay", [base.finetune_weight_decay])
    for lr in around_lrs or [base.finetune_lr]:
        centre = replace(base, finetune_lr=lr)
        if centre not in seen:
            seen.add(centre)
            out.append(("base", centre))
        for factor, values in sweeps.items():
            if factor in ("finetune_lr", "finetune_weight_decay"):
                continue
            for v in values:
                c = replace(centre, **{factor: v})
                if c not in seen:
                    seen.add(c)
                    out.append((factor, c))
    if "finetune_lr" in sweeps or "finetune_weight_decay" in sweeps:
        for lr in lrs:
            for wd in wds:
                c = replace(base, finetune_lr=lr, finetune_weight_decay=wd)
                if c not in seen:
                    seen.add(c)
                    out.append(("finetune_lr x weight_decay", c))
    for _, c in out:
        c.validate()
    return out


def control_for(cfg: ErosionConfig, base: ErosionConfig) -> ErosionConfig:
    """The clean control of ``cfg``: training on clean data does not depend on the pattern, so controls share the
    base pattern (used only for the control's matched/mismatched views)."""
    return replace(cfg, **{k: getattr(base, k) for k in PATTERN_FIELDS})


def breadth_experiment(base: ErosionConfig, sweeps: dict[str, list], ctx: Context,
                       around_lrs: list[float] | None = None) -> list[dict]:
    """Each variant's pattern run and its control (shared across pattern variants). With ``ctx.compute`` off,
    variants whose results are not cached are returned with ``"missing": True`` instead of being trained."""
    rows = []
    for factor, c in breadth_variants(base, sweeps, around_lrs):
        row = {"factor": factor, "config": c.as_dict()}
        got, why = missing_or(lambda c=c: dict(pattern=finetune_run(c, True, ctx),
                                               control=finetune_run(control_for(c, base), False, ctx)))
        row.update(got if why is None else {"missing": True})
        rows.append(row)
    return rows


def units(base: ErosionConfig, extras: dict) -> list[Unit]:
    """Each setting's pattern run and its control (for each seed in ``seeds``, if the profile has any)."""
    out: list[Unit] = []
    seeds = extras.get("seeds", [base.seed])
    for seed in seeds:
        for factor, c in breadth_variants(replace(base, seed=seed), sweeps_of(extras), extras["around_lrs"]):
            label = f"breadth {factor}: {c.arch} {c.dataset} {c.pattern} k={c.pattern_size} p={c.fraction} " \
                    f"lr={c.finetune_lr} wd={c.finetune_weight_decay}" + (f" seed {seed}" if len(seeds) > 1 else "")
            out.append(experiment_unit(label + " pattern", "finetune", finetune_run, c, True))
            out.append(experiment_unit(label + " control", "finetune", finetune_run,
                                       control_for(c, replace(base, seed=seed)), False))
    return out
