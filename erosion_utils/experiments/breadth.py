"""Breadth: one factor at a time around the base configuration, each pattern run against its control."""
from __future__ import annotations

from dataclasses import replace

from ..validation import ParameterError
from .core import PATTERN_FIELDS, CacheMissError, Context, ErosionConfig, finetune_run


BREADTH_FACTORS = ("arch", "pattern", "pattern_size", "fraction", "dataset", "finetune_lr", "finetune_weight_decay")


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
        try:
            row.update(pattern=finetune_run(c, True, ctx), control=finetune_run(control_for(c, base), False, ctx))
        except CacheMissError:
            row["missing"] = True
        rows.append(row)
    return rows
