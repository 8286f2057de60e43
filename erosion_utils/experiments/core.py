"""What every chapter shares: the configuration, the context, pretraining and one fine-tuning run.

Every function takes an :class:`ErosionConfig` (validated before any training) and a :class:`Context` (device,
caches, data location) and returns cache entries: ``{"params", "provenance", "result"}``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import time
import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import torch

from .. import data as data_mod
from ..cache import DEFAULT_CHECKPOINTS, DEFAULT_RESULTS, CheckpointCache, ResultCache, provenance, results_root
from ..models import ARCHS, build_model, num_stages
from ..patterns import PatternSpec, make_codes, patched_mask, stamp, test_views
from ..train import (EVAL_DTYPES, SCHEDULES, Constraints, PreparedImages, TrainConfig, accuracy, eval_steps, logits,
                     logits_fused, monitor_steps, predict, predict_fused, resolve_device, train, train_until_perfect,
                     with_normalization)
from ..validation import MAX_EPOCHS, MAX_EVALS, ParameterError, check_choice, check_number

PROFILES = ("smoke", "cpu", "paper")  # seconds for tests; minutes on a CPU; the paper's scale, for a GPU
PRETRAIN_FIELDS = ("dataset", "train_per_class", "test_per_class", "arch", "width", "mlp_depth", "mlp_hidden",
                   "pretrain_epochs", "pretrain_lr", "pretrain_batch_size", "pretrain_weight_decay",
                   "pretrain_schedule", "pretrain_extra_epochs", "augment", "seed")
PATTERN_FIELDS = ("pattern", "pattern_size", "corner", "fraction", "pattern_seed")
# Fields added after results were committed: they enter a cache key only when they differ from these defaults, so
# every existing configuration keeps its key (tests/test_cache_keys.py checks every committed result).
LATER_FIELDS = {"finetune_warmup_epochs": 0.0, "freeze_stages": 0, "head_only_epochs": 0.0, "l2sp_alpha": 0.0,
                "erase_corners": 0.0, "fast_path": False, "finetune_clip_norm": 0.0, "monitor_per_class": 0,
                "pretrain_per_class": None, "eval_dtype": "float32"}
# later fields that change the pretraining too: they enter its key only when they differ from their defaults
LATER_PRETRAIN_FIELDS = ("pretrain_per_class", "fast_path")
PRETRAIN_SUBSET_SEED = 12345  # draws the pretraining subset (pretrain_per_class): the same subset for every run seed
# intra-op threads of every CPU computation: results must not depend on which executor ran them (1 thread per unit,
# parallelism across processes); recorded in each result's provenance (its device names the thread count)
CPU_THREADS = int(os.environ.get("EROSION_CPU_THREADS", "1"))


def check_eval_dtype(eval_dtype: str, fast_path: bool) -> None:
    """Fail on an evaluation precision outside :data:`~erosion_utils.train.EVAL_DTYPES`, or bf16 off the fast path."""
    check_choice("eval_dtype", eval_dtype, EVAL_DTYPES)
    if eval_dtype != "float32" and fast_path is not True:
        raise ParameterError(f"eval_dtype={eval_dtype!r} needs fast_path=true (the reference path evaluates in "
                             f"float32); choose eval_dtype='float32' or set fast_path=true")


@dataclass(frozen=True)
class ErosionConfig:
    """All parameters of one pretrain-then-finetune run. Defaults are the reconstructed paper protocol."""

    dataset: str = "cifar10"
    train_per_class: int | None = None  # None: the whole training set
    test_per_class: int | None = None  # None: the whole test set
    arch: str = "resnet18"
    width: float = 1.0
    mlp_depth: int = 4
    mlp_hidden: int = 1024
    pretrain_epochs: float = 15
    pretrain_lr: float = 0.2
    pretrain_batch_size: int = 512
    pretrain_weight_decay: float = 5e-4
    pretrain_schedule: str = "onecycle"
    pretrain_extra_epochs: int = 5
    augment: bool = False
    pattern: str = "colour"
    pattern_size: int = 4
    corner: str = "top_left"
    fraction: float = 1.0
    pattern_seed: int = 0
    finetune_epochs: float = 4
    finetune_lr: float = 0.01
    finetune_weight_decay: float = 5e-4
    finetune_batch_size: int = 128
    finetune_momentum: float = 0.9
    finetune_schedule: str = "constant"
    n_evals: int = 30
    seed: int = 0
    finetune_warmup_epochs: float = 0.0  # linear warm-up from 0 to the fine-tuning rate
    freeze_stages: int = 0  # mitigation: freeze the first k stages (parameters and batch-norm statistics)
    head_only_epochs: float = 0.0  # mitigation (LP-FT): train only the classifier for this many epochs first
    l2sp_alpha: float = 0.0  # mitigation (L2-SP): alpha/2 ||theta - theta_0||^2 instead of weight decay on the backbone
    erase_corners: float = 0.0  # mitigation: probability of overwriting a random corner square with noise
    fast_path: bool = False  # CPU: channels-last bf16 training, folded batched evaluation (other numbers, ~2.5x faster)
    finetune_clip_norm: float = 0.0  # clip the global gradient norm of every fine-tuning step to this (0: off)
    monitor_per_class: int = 0  # fine-tuning: dense monitor evaluation on this many images per class (0: off)
    pretrain_per_class: int | None = None  # pretrain on a class-balanced subset of this many images per class
    eval_dtype: str = "float32"  # fast path only: "bfloat16" predicts the evaluations' classes in bf16 (~1.5x faster)

    def validate(self) -> "ErosionConfig":
        """Fail before any training on a value outside what the run can take, naming the parameter and the limit:
        more images per class than the dataset has, more than :data:`~erosion_utils.validation.MAX_EPOCHS` epochs, a
        batch larger than its training set, more than :data:`~erosion_utils.validation.MAX_EVALS` evaluations."""
        check_choice("dataset", self.dataset, data_mod.DATASETS)
        for name, most in zip(("train_per_class", "test_per_class"), data_mod.PER_CLASS[self.dataset]):
            if getattr(self, name) is not None:
                check_number(name, getattr(self, name), low=1, integer=True)
                check_number(f"{name} ({self.dataset} has {most} per class)", getattr(self, name), low=1, high=most)
        check_choice("arch", self.arch, ARCHS)
        check_number("width", self.width, low=0, low_inclusive=False)
        check_number("mlp_depth", self.mlp_depth, low=1, integer=True)
        check_number("mlp_hidden", self.mlp_hidden, low=1, integer=True)
        self.pretrain_config().validate("pretrain_")
        check_number("pretrain_extra_epochs", self.pretrain_extra_epochs, low=0, integer=True)
        self.finetune_config().validate("finetune_")
        for name in ("pretrain_epochs", "pretrain_extra_epochs", "finetune_epochs"):
            check_number(name, getattr(self, name), low=0, low_inclusive=name == "pretrain_extra_epochs",
                         high=MAX_EPOCHS)
        n_classes = data_mod.NUM_CLASSES[self.dataset]
        n_train = (self.train_per_class or data_mod.PER_CLASS[self.dataset][0]) * n_classes
        sub = self.pretrain_per_class
        n_pretrain = sub * n_classes if isinstance(sub, int) and 1 <= sub <= n_train // n_classes else n_train
        check_number(f"pretrain_batch_size (at most the {n_pretrain} pretraining images)", self.pretrain_batch_size,
                     low=1, high=n_pretrain)
        check_number(f"finetune_batch_size (at most the {n_train} training images)", self.finetune_batch_size,
                     low=1, high=n_train)
        check_choice("pretrain_schedule", self.pretrain_schedule, SCHEDULES)
        self.pattern_spec().validate(32, n_classes)
        check_number("n_evals", self.n_evals, low=2, integer=True)
        check_number("n_evals", self.n_evals, low=2, high=MAX_EVALS)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("pattern_seed", self.pattern_seed, low=0, integer=True)
        check_number("finetune_warmup_epochs", self.finetune_warmup_epochs, low=0, high=self.finetune_epochs,
                     high_inclusive=False)
        stages = num_stages(self.arch, self.mlp_depth)
        check_number(f"freeze_stages (the {self.arch} has {stages} stages)", self.freeze_stages, low=0, high=stages,
                     integer=True)
        check_number("head_only_epochs", self.head_only_epochs, low=0, high=self.finetune_epochs,
                     high_inclusive=False)
        check_number("l2sp_alpha", self.l2sp_alpha, low=0)
        check_number("erase_corners", self.erase_corners, low=0, high=1)
        if not isinstance(self.fast_path, bool):
            raise ParameterError(f"fast_path={self.fast_path!r} must be true or false")
        check_eval_dtype(self.eval_dtype, self.fast_path)
        check_number("monitor_per_class", self.monitor_per_class, low=0, integer=True)
        if self.pretrain_per_class is not None:
            most = self.train_per_class if self.train_per_class is not None else "the training set's"
            check_number(f"pretrain_per_class (a subset of the {most} training images per class)",
                         self.pretrain_per_class, low=1, integer=True,
                         high=self.train_per_class if self.train_per_class is not None else None)
        return self

    def pretrain_config(self) -> TrainConfig:
        return TrainConfig(self.pretrain_epochs, self.pretrain_lr, 0.9, self.pretrain_weight_decay,
                           self.pretrain_batch_size, self.pretrain_schedule, True, self.augment)

    def finetune_config(self) -> TrainConfig:
        return TrainConfig(self.finetune_epochs, self.finetune_lr, self.finetune_momentum,
                           self.finetune_weight_decay, self.finetune_batch_size, self.finetune_schedule, True,
                           self.augment, self.finetune_warmup_epochs, self.finetune_clip_norm)

    def constraints(self, model: torch.nn.Module, steps_per_epoch: int) -> Constraints:
        """The mitigations of this configuration for ``model`` (built by :func:`new_model`, at its pretrained
        weights, which L2-SP anchors to)."""
        head = tuple(model.head_names)
        anchor = None
        if self.l2sp_alpha > 0:
            anchor = {n: p.detach().clone() for n, p in model.named_parameters()
                      if not any(n.startswith(h + ".") for h in head)}
        return Constraints(frozen=tuple(m for stage in model.stage_names[:self.freeze_stages] for m in stage),
                           head=head, head_only_steps=round(self.head_only_epochs * steps_per_epoch),
                           anchor=anchor, l2sp_alpha=self.l2sp_alpha, erase_prob=self.erase_corners,
                           erase_size=self.pattern_size)

    def pattern_spec(self) -> PatternSpec:
        return PatternSpec(self.pattern, self.pattern_size, self.corner, self.fraction, self.pattern_seed)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict:
        """:meth:`as_dict` without the later fields that are at their defaults: the parameters a cache key hashes."""
        return {k: v for k, v in self.as_dict().items() if k not in LATER_FIELDS or v != LATER_FIELDS[k]}

    def pretrain_params(self) -> dict:
        """The parameters of the pretraining (later pretraining fields only where they differ from defaults)."""
        later = {k: getattr(self, k) for k in LATER_PRETRAIN_FIELDS if getattr(self, k) != LATER_FIELDS[k]}
        return {**{k: getattr(self, k) for k in PRETRAIN_FIELDS}, **later}


    @classmethod
    def from_dict(cls, values: dict) -> "ErosionConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ParameterError(f"unknown parameters {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass
class Context:
    """Where an experiment runs and what it may reuse: device, caches, dataset location."""

    device: str = "auto"
    results: ResultCache = field(default_factory=lambda: ResultCache(DEFAULT_RESULTS))
    checkpoints: CheckpointCache = field(default_factory=lambda: CheckpointCache(DEFAULT_CHECKPOINTS))
    data_root: str | None = None
    download: bool = field(default_factory=lambda: os.environ.get("EROSION_DOWNLOAD", "0") == "1")
    compute: bool = True  # False: fail on a cache miss instead of training

    @property
    def torch_device(self) -> torch.device:
        return resolve_device(self.device)

    @classmethod
    def for_profile(cls, profile: str, **kwargs) -> "Context":
        """The context a notebook uses: the ``paper`` profile computes only where CUDA is available, so building
        the book on a CPU renders the committed results and never trains for hours; the ``smoke`` profile caches its
        results in their own ignored folder (:func:`erosion_utils.cache.results_root`), never among ``results/``."""
        compute = profile != "paper" or torch.cuda.is_available()
        kwargs.setdefault("results", ResultCache(results_root(profile)))
        return cls(compute=compute, **kwargs)


class CacheMissError(RuntimeError):
    """A result is not cached and the context forbids computing it."""


def missing_or(fn: Callable, *args, **kwargs) -> tuple[Any, str | None]:
    """``(fn(*args, **kwargs), None)``, or ``(None, reason)`` when a result is not cached and the context may not
    compute it: the one way a chapter reports what is missing, so that its page lists it instead of crashing."""
    try:
        return fn(*args, **kwargs), None
    except CacheMissError as err:
        return None, str(err)


@functools.lru_cache(maxsize=4)
def _load_subset(name: str, root: str | None, download: bool, train_pc: int | None, test_pc: int | None,
                 seed: int) -> data_mod.ImageData:
    full = data_mod.load_dataset(name, root, download)
    return data_mod.subset(full, train_pc, test_pc, seed) if (train_pc or test_pc) else full


def load_data(cfg: ErosionConfig, ctx: Context) -> data_mod.ImageData:
    """The (sub)dataset of ``cfg``. The subset is drawn with a fixed seed (0), the same for every run seed."""
    return _load_subset(cfg.dataset, ctx.data_root, ctx.download, cfg.train_per_class, cfg.test_per_class, 0)


@contextlib.contextmanager
def cpu_threads(device: torch.device):
    """Within the block, torch computes on :data:`CPU_THREADS` intra-op threads when ``device`` is a CPU, whichever
    executor runs it (results depend on the thread count: other summation orders)."""
    if torch.device(device).type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cached(ctx: Context, name: str, params: dict, compute, seed: int) -> dict:
    hit = ctx.results.load(name, params)
    if hit is not None:
        return hit
    if not ctx.compute:
        raise CacheMissError(f"no cached {name!r} result for these parameters in {ctx.results.root}, and this "
                             f"context does not compute (the paper profile computes only where CUDA is available). "
                             f"Rerun with --profile cpu (or smoke), or compute it on a GPU with "
                             f"`python -m erosion_utils paper`")
    with cpu_threads(ctx.torch_device):
        return ctx.results.get_or_compute(name, params, compute, seed, ctx.torch_device)


def new_model(cfg: ErosionConfig, data: data_mod.ImageData) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    net = build_model(cfg.arch, data.num_classes, cfg.width, data.channels, data.image_size, cfg.mlp_depth,
                      cfg.mlp_hidden)
    mean, std = data.channel_stats()
    return with_normalization(net, mean, std)


def pretrained_model(cfg: ErosionConfig, ctx: Context) -> tuple[torch.nn.Module, dict]:
    """The network trained on clean data until perfect training accuracy (checkpoint-cached), and its summary."""
    cfg.validate()
    params = cfg.pretrain_params()
    data = load_data(cfg, ctx)
    device = ctx.torch_device
    model = new_model(cfg, data).to(device)
    saved = ctx.checkpoints.load("pretrain", params, on_corrupt="recompute")
    if saved is not None:
        model.load_state_dict(saved["state_dict"])
        if ctx.results.load("pretrain", params) is None:
            ctx.results.save("pretrain", params, saved["summary"], saved["provenance"])
        return model, saved["summary"]

    if not ctx.compute:
        raise CacheMissError(f"no cached pretrained checkpoint for {params} in {ctx.checkpoints.root}")
    x, y = pretrain_set(cfg, data)
    with cpu_threads(device):
        start = time.perf_counter()
        summary = train_until_perfect(model, x.to(device), y.to(device), cfg.pretrain_config(), cfg.seed,
                                      extra_epochs=cfg.pretrain_extra_epochs, desc=f"pretrain {cfg.arch}",
                                      fast=cfg.fast_path)
        summary["test_accuracy"] = accuracy(model, data.x_test.to(device), data.y_test)
        if cfg.pretrain_per_class is not None:
            summary["train_images"] = len(x)
        prov = provenance(cfg.seed, time.perf_counter() - start, device)
    committed = ctx.results.load("pretrain", params)
    if committed is None:
        ctx.results.save("pretrain", params, summary, prov)
    elif committed["result"] != summary:  # keep the committed entry and its provenance; say that this run differs
        warnings.warn(f"recomputed pretraining {ctx.results.path('pretrain', params).name} differs from the cached "
                      f"entry ({summary} here, {committed['result']} cached on {committed['provenance']['device']}); "
                      f"the cached entry is kept", stacklevel=2)
    ctx.checkpoints.save("pretrain", params, {"state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                                              "summary": summary, "provenance": prov})
    return model, summary


def pretrain_set(cfg: ErosionConfig, data: data_mod.ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """The pretraining images: the whole training set of ``cfg``, or (``pretrain_per_class``) a class-balanced subset
    of it drawn with :data:`PRETRAIN_SUBSET_SEED`, the same for every run seed; fine-tuning uses the whole set."""
    if cfg.pretrain_per_class is None:
        return data.x_train, data.y_train
    idx = data_mod.balanced_indices(data.y_train, cfg.pretrain_per_class, PRETRAIN_SUBSET_SEED)
    return data.x_train[idx], data.y_train[idx]


def eval_views(cfg: ErosionConfig, data: data_mod.ImageData, device: torch.device) -> dict:
    codes = make_codes(cfg.pattern_spec(), data.num_classes, data.channels, data.image_size)
    views = test_views(data.x_test, data.y_test, codes, data.num_classes, seed=cfg.pattern_seed + 1)
    return {k: (x.to(device), y.to(device)) for k, (x, y) in views.items()}


def weight_stats(model: torch.nn.Module, reference: dict[str, torch.Tensor]) -> dict:
    """``weight_distance`` = ||theta - theta_0|| / ||theta_0|| over the parameters in ``reference`` (theta_0), and
    ``weight_norm`` = ||theta||."""
    params = dict(model.named_parameters())
    diff = sum(float(((params[n].detach().float() - r.float()) ** 2).sum()) for n, r in reference.items())
    ref = sum(float((r.float() ** 2).sum()) for r in reference.values())
    norm = sum(float((params[n].detach().float() ** 2).sum()) for n in reference)
    return {"weight_distance": (diff / ref) ** 0.5 if ref > 0 else 0.0, "weight_norm": norm ** 0.5}


def snapshot_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the model's parameters (the reference theta_0 of :func:`weight_stats`)."""
    return {n: p.detach().clone() for n, p in model.named_parameters()}


VIEWS = ("clean", "matched", "mismatched")


def make_evaluator(views: dict, y_true: torch.Tensor | None = None, reference: dict[str, torch.Tensor] | None = None,
                   fast: bool = False, matched: bool = True, eval_dtype: str = "float32"):
    """The one evaluator of the package: metrics of a model on the test views (see
    :func:`erosion_utils.patterns.test_views`): ``clean_acc``, ``matched_acc`` (unless ``matched`` is False),
    ``mismatched_acc`` (against the true label ``y_true``, by default the clean view's labels) and ``follow_rate``
    (the share of mismatched images predicted as the class of their pattern); given the pretrained weights as
    ``reference``, the weight diagnostics of :func:`weight_stats`. ``fast``: one folded, channels-last pass over the
    views joined (:func:`erosion_utils.train.predict_fused`; the images prepared once, as
    :class:`erosion_utils.train.PreparedImages`) instead of one reference pass per view, in ``eval_dtype`` (float32, or
    bfloat16: fast only)."""
    check_choice("eval_dtype", eval_dtype, EVAL_DTYPES)
    if eval_dtype != "float32" and not fast:
        raise ParameterError(f"eval_dtype={eval_dtype!r} needs the fast path (fast=True)")
    y_true = views["clean"][1] if y_true is None else y_true
    names = VIEWS if matched else ("clean", "mismatched")
    if fast:
        joined = PreparedImages(torch.cat([views[k][0] for k in names]))
        sizes = [len(views[k][0]) for k in names]

        def predictions(model: torch.nn.Module) -> dict:
            return dict(zip(names, predict_fused(model, joined, dtype=eval_dtype).split(sizes)))
    else:
        def predictions(model: torch.nn.Module) -> dict:
            return {k: predict(model, views[k][0]) for k in names}

    def evaluate(model: torch.nn.Module) -> dict:
        pred = predictions(model)
        out = {"clean_acc": (pred["clean"] == y_true).float().mean().item()}
        if matched:
            out["matched_acc"] = (pred["matched"] == y_true).float().mean().item()
        out["mismatched_acc"] = (pred["mismatched"] == y_true).float().mean().item()
        out["follow_rate"] = (pred["mismatched"] == views["mismatched"][1]).float().mean().item()
        if reference is not None:
            out.update(weight_stats(model, reference))
        return out

    return evaluate


MONITOR_SEED = 54321  # draws the monitor images: the same for every run, so pattern run and control are comparable


def make_monitor(cfg: ErosionConfig, data: data_mod.ImageData, views: dict, device: torch.device):
    """Dense dynamics on a fixed monitor set of ``cfg.monitor_per_class`` images per class: the mean loss on training
    images, clean (``loss_clean``) and carrying their own class's pattern (``loss_patterned``: the pattern run's
    training distribution), and the clean accuracy, mismatched accuracy and follow rate on as many test images (their
    classes predicted in ``cfg.eval_dtype``; the losses always in float32). Returns ``(monitor(model, step, since),
    records)``; each call appends one record, with ``since`` (the largest batch loss and gradient norm since the
    previous call, from :func:`erosion_utils.train.train`)."""
    k = cfg.monitor_per_class
    codes = make_codes(cfg.pattern_spec(), data.num_classes, data.channels, data.image_size)
    itr = data_mod.balanced_indices(data.y_train, min(k, int(torch.bincount(data.y_train).min())), MONITOR_SEED)
    ite = data_mod.balanced_indices(data.y_test, min(k, int(torch.bincount(data.y_test).min())), MONITOR_SEED + 1)
    x_tr, y_tr = data.x_train[itr], data.y_train[itr]
    train_x = torch.cat([x_tr, stamp(x_tr, y_tr, codes)]).to(device)
    train_y = torch.cat([y_tr, y_tr]).to(device)
    ite = ite.to(views["clean"][0].device)
    test = {name: (views[name][0][ite], views[name][1][ite]) for name in ("clean", "mismatched")}
    evaluate = make_evaluator(test, fast=cfg.fast_path, matched=False, eval_dtype=cfg.eval_dtype)
    records: list[dict] = []
    n = len(itr)
    prepared = PreparedImages(train_x) if cfg.fast_path else None

    def monitor(model: torch.nn.Module, step: int, since: dict) -> None:
        out = logits_fused(model, prepared) if prepared is not None else logits(model, train_x)  # losses: float32
        losses = torch.nn.functional.cross_entropy(out, train_y, reduction="none")
        records.append({"step": step, "loss_clean": losses[:n].mean().item(),
                        "loss_patterned": losses[n:].mean().item(), **evaluate(model), **since})

    return monitor, records


def clean_probe_sets(cfg: ErosionConfig, data: data_mod.ImageData, per_class: tuple[int, int]) -> dict:
    """Class-balanced clean probe sets (``probe_train``, ``probe_test``: images and true labels), ``per_class`` images
    of each class (at most what the smallest class has), drawn with seeds ``cfg.seed + 7`` and ``+ 8``."""
    n_tr = min(per_class[0], int(torch.bincount(data.y_train).min()))
    n_te = min(per_class[1], int(torch.bincount(data.y_test).min()))
    itr = data_mod.balanced_indices(data.y_train, n_tr, cfg.seed + 7)
    ite = data_mod.balanced_indices(data.y_test, n_te, cfg.seed + 8)
    return dict(probe_train=(data.x_train[itr], data.y_train[itr]), probe_test=(data.x_test[ite], data.y_test[ite]))


def patterned_train_set(cfg: ErosionConfig, data: data_mod.ImageData) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images with the class pattern stamped into a fraction ``cfg.fraction`` of them."""
    codes = make_codes(cfg.pattern_spec(), data.num_classes, data.channels, data.image_size)
    where = patched_mask(len(data.x_train), cfg.fraction, cfg.seed)
    return stamp(data.x_train, data.y_train, codes, where), data.y_train


# name of a cached result -> function from its stored parameters to the parameters the current code would hash for
# the same configuration (chapter modules register theirs); tests/test_cache_keys.py checks every committed result
KEY_PARAMS: dict[str, Callable[[dict], dict]] = {}


def split_config(params: dict) -> tuple[ErosionConfig, dict]:
    """The :class:`ErosionConfig` inside stored parameters, and the remaining (experiment-specific) parameters."""
    names = {f.name for f in fields(ErosionConfig)}
    return (ErosionConfig(**{k: v for k, v in params.items() if k in names}),
            {k: v for k, v in params.items() if k not in names})


def current_key_params(name: str, params: dict) -> dict:
    """The parameters the current code hashes for the configuration stored in a cached result's ``params``."""
    if name not in KEY_PARAMS:
        raise KeyError(f"no key rule for cached results named {name!r}; known: {sorted(KEY_PARAMS)}")
    return KEY_PARAMS[name](params)


def finetune_params(cfg: ErosionConfig, patterned: bool) -> dict:
    return {**cfg.key_dict(), "patterned": patterned}


def key_with_extras(params: dict) -> dict:
    """The key parameters of a result whose parameters are a configuration plus experiment-specific ones."""
    cfg, extra = split_config(params)
    return {**cfg.key_dict(), **extra}


KEY_PARAMS["finetune"] = key_with_extras
KEY_PARAMS["pretrain"] = lambda params: split_config(params)[0].pretrain_params()
KEY_PARAMS["representations"] = key_with_extras


def finetune_run(cfg: ErosionConfig, patterned: bool, ctx: Context) -> dict:
    """Continue training the pretrained network on patterned (or, as the control, clean) images; evaluate on the
    clean, matched and mismatched test views at log-spaced steps, and (``monitor_per_class`` > 0) on the monitor set
    of :func:`make_monitor` at the dense steps of :func:`erosion_utils.train.monitor_steps` (result ``monitor``)."""
    cfg.validate()

    def compute() -> dict:
        model, _ = pretrained_model(cfg, ctx)
        data = load_data(cfg, ctx)
        device = ctx.torch_device
        x, y = patterned_train_set(cfg, data) if patterned else (data.x_train, data.y_train)
        views = eval_views(cfg, data, device)
        ft = cfg.finetune_config()
        per_epoch = max(1, len(x) // ft.batch_size)
        total = max(1, round(ft.epochs * per_epoch))
        monitor, monitored = make_monitor(cfg, data, views, device) if cfg.monitor_per_class else (None, None)
        records = train(model, x.to(device), y.to(device), ft, cfg.seed + 1, eval_at=eval_steps(total, cfg.n_evals),
                        eval_fn=make_evaluator(views, views["clean"][1], snapshot_weights(model), fast=cfg.fast_path,
                                               eval_dtype=cfg.eval_dtype),
                        desc=f"finetune {'pattern' if patterned else 'control'}",
                        constraints=cfg.constraints(model, per_epoch), fast=cfg.fast_path,
                        monitor_at=monitor_steps(total) if monitor else None, monitor_fn=monitor)
        out = {"records": records, "total_steps": total, "steps_per_epoch": per_epoch}
        if monitored is not None:
            out["monitor"] = monitored
        return out

    return _cached(ctx, "finetune", finetune_params(cfg, patterned), compute, cfg.seed)


def pretrain_summary(cfg: ErosionConfig, ctx: Context) -> dict:
    """The cached pretraining entry (training it if missing and allowed)."""
    hit = ctx.results.load("pretrain", cfg.pretrain_params())
    if hit is None:
        if not ctx.compute:
            raise CacheMissError(f"no cached pretraining for {cfg.pretrain_params()}")
        pretrained_model(cfg, ctx)
        hit = ctx.results.load("pretrain", cfg.pretrain_params())
    return hit
