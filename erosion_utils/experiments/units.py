"""Units of work, as executors run them: a picklable description plus the module-level experiment function that
computes and caches it (see :mod:`erosion_utils.executors`). Chapter modules build their units here; executors know
units, not chapters.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..cache import CheckpointCache, ResultCache, cache_key
from .core import CacheMissError, Context, pretrained_model


@dataclass(frozen=True)
class Unit:
    """One cached piece of work: ``fn(*args, ctx=ctx, **kwargs)`` (or ``fn(ctx, *args, **kwargs)``) computes and
    caches it; what it returns is not used."""

    name: str
    kind: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    stage: int = 1
    needs: tuple["Unit", ...] = ()  # the stage-0 units (pretrainings) whose checkpoints this unit reads
    checkpoint: tuple[str, dict] | None = None  # stage 0: the checkpoint (cache name, params) it leaves behind

    def run(self, ctx) -> None:
        if next(iter(inspect.signature(self.fn).parameters), None) == "ctx":
            self.fn(ctx, *self.args, **self.kwargs)  # fn(ctx, *args)
        else:
            self.fn(*self.args, ctx=ctx, **self.kwargs)  # an experiment function, fn(cfg, ..., ctx)


def pretrain_unit(cfg) -> Unit:
    """The stage-0 unit that trains (or loads) the pretrained network of ``cfg`` and leaves its checkpoint."""
    params = cfg.pretrain_params()
    only = type(cfg)(**params)  # the fine-tuning fields play no part: one unit per pretraining
    return Unit(f"pretrain {cfg.arch} {cfg.dataset} seed {cfg.seed} [{cache_key('pretrain', params)[:8]}]",
                "pretrain", pretrained_model, (only,), stage=0, checkpoint=("pretrain", params))


def experiment_unit(name: str, kind: str, fn: Callable[..., Any], cfg, *args, **kwargs) -> Unit:
    """A stage-1 unit running ``fn(cfg, *args, ctx=ctx, **kwargs)`` after the pretraining of ``cfg``."""
    return Unit(name, kind, fn, (cfg, *args), kwargs, stage=1, needs=(pretrain_unit(cfg),))


@dataclass(frozen=True)
class ContextSpec:
    """What a worker needs to rebuild the driver's context: device and cache/data locations (all picklable)."""

    results: str
    checkpoints: str
    data_root: str | None = None
    device: str = "auto"
    download: bool = False

    @classmethod
    def of(cls, ctx) -> "ContextSpec":
        return cls(str(ctx.results.root), str(ctx.checkpoints.root), ctx.data_root, ctx.device, ctx.download)

    def build(self, results: str | None = None, checkpoints: str | None = None):
        return Context(device=self.device, results=ResultCache(results or self.results),
                       checkpoints=CheckpointCache(checkpoints or self.checkpoints), data_root=self.data_root,
                       download=self.download)


def is_cached(unit: Unit, ctx) -> bool:
    """Dry run with computing off: True when every result ``unit`` writes is already cached."""
    if unit.checkpoint is not None:  # a checkpoint that does not load safely is moved aside: not cached
        return ctx.checkpoints.verified_bytes(*unit.checkpoint) is not None
    try:
        unit.run(replace(ctx, compute=False))
        return True
    except CacheMissError:
        return False
    except Exception:  # noqa: BLE001 -- it will fail again when run, and be reported then
        return False
