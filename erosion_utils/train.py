"""SGD training on a dataset held whole on the device (as airbench does), with dense early evaluation.

On CUDA: uint8 data resident on the GPU, bf16 autocast, channels_last, and one CUDA-graphed SGD step (graphs.py) when
no fine-tuning constraint is active (EROSION_CUDA_GRAPHS=0 turns it off). On CPU, the reference path: float32, NCHW,
eager. The CPU fast path (``fast=True``) trains as CUDA does, channels-last with bf16 autocast, and evaluates in
float32 with batch norm folded into the preceding layer (:func:`predict_fused`): other kernels and a lower training
precision, so its numbers differ from the reference path's (a configuration records which path computed it). It may
also predict classes in bf16 (``dtype="bfloat16"``), as CUDA does: faster again, and coarser.
Fixed images that the fast path evaluates many times are normalised once (:class:`PreparedImages`), and the fold is
made once per network and refreshed from its weights (:class:`FoldedNetwork`): the same floats, so the same results
to the bit.
"""
from __future__ import annotations

import math
import os
import weakref
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.experimental.optimization import fuse as fx_fuse
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights
from tqdm import tqdm

from . import graphs
from .validation import check_choice, check_number

SCHEDULES = ("constant", "step", "cosine", "onecycle")


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 1.0
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    schedule: str = "constant"
    nesterov: bool = True
    augment: bool = False
    warmup_epochs: float = 0.0  # linear warm-up of the learning rate from 0, then the schedule
    clip_norm: float = 0.0  # clip the global gradient norm to this value before each step (0: no clipping)

    def validate(self, prefix: str = "") -> "TrainConfig":
        check_number(f"{prefix}epochs", self.epochs, low=0, low_inclusive=False)
        check_number(f"{prefix}clip_norm", self.clip_norm, low=0)
        check_number(f"{prefix}warmup_epochs", self.warmup_epochs, low=0, high=self.epochs, high_inclusive=False)
        check_number(f"{prefix}lr", self.lr, low=0, low_inclusive=False)
        check_number(f"{prefix}momentum", self.momentum, low=0, high=1, high_inclusive=False)
        check_number(f"{prefix}weight_decay", self.weight_decay, low=0)
        check_number(f"{prefix}batch_size", self.batch_size, low=1, integer=True)
        check_choice(f"{prefix}schedule", self.schedule, SCHEDULES)
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str = "auto") -> torch.device:
    check_choice("device", name, ["auto", "cpu", "cuda"])
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def lr_factor(step: int, total: int, schedule: str, warmup_steps: int = 0) -> float:
    """Learning-rate multiplier at ``step`` of ``total``: constant, step (x0.1 at 50% and 75%), cosine or
    one-cycle (linear warm-up over the first 15%, then linear decay to 0). With ``warmup_steps`` > 0 the factor is
    first scaled by a linear ramp, (step + 1) / warmup_steps, which reaches 1 at the last warm-up step."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps * lr_factor(step, total, schedule)
    t = step / max(total, 1)
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        return 1.0 if t < 0.5 else 0.1 if t < 0.75 else 0.01
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return t / 0.15 if t < 0.15 else max(0.0, (1 - t) / 0.85)


def monitor_steps(total_steps: int, resolution: float = 0.04, early_points: int = 12) -> list[int]:
    """Dense evaluation steps: every ``resolution`` of the run (so a time is known to within that share of it), and
    in its first tenth every step up to the ``early_points``-th and ``early_points`` log-spaced steps, with step 0
    and the last step (every step of a run of at most 2 / resolution steps)."""
    check_number("total_steps", total_steps, low=1, integer=True)
    check_number("resolution", resolution, low=0, high=1, low_inclusive=False)
    if total_steps <= 2 / resolution:  # too short for a sparser grid to keep 25 points: every step
        return list(range(total_steps + 1))
    grid = {round(i * resolution * total_steps) for i in range(int(round(1 / resolution)) + 1)}
    tenth = max(total_steps / 10, 1)
    early = set(range(1, min(early_points, int(tenth)) + 1))  # every step first, as far as the first tenth allows
    early |= set(np.round(np.geomspace(1, tenth, early_points)).astype(int).tolist())
    return sorted(grid | early | {0, total_steps})


def eval_steps(total_steps: int, n_points: int) -> list[int]:
    """About ``n_points`` evaluation steps in [0, total], log-spaced so they are dense at the start."""
    check_number("n_points", n_points, low=2, integer=True)
    pts = np.unique(np.round(np.geomspace(1, max(total_steps, 1), n_points - 1)).astype(int))
    return sorted({0, total_steps, *pts.tolist()})


class Normalize(nn.Module):
    """uint8 (N, C, H, W) -> normalised float; first layer of every trained network, so callers pass raw images."""

    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1) * 255.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


def with_normalization(model: nn.Module, mean: list[float], std: list[float]) -> nn.Sequential:
    """Wrap ``model`` so it takes uint8 images; tap names gain the prefix ``net.``."""
    wrapped = nn.Sequential()
    wrapped.add_module("norm", Normalize(mean, std))
    wrapped.add_module("net", model)
    wrapped.tap_names = [f"net.{n}" for n in model.tap_names]
    wrapped.stage_names = [[f"net.{n}" for n in stage] for stage in getattr(model, "stage_names", [])]
    wrapped.head_names = [f"net.{n}" for n in getattr(model, "head_names", [])]
    return wrapped


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel reflect padding and horizontal flip, batched on the device."""
    n, _, h, w = x.shape
    shifts = torch.randint(0, 9, (2, n), generator=gen).to(x.device)
    flips = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    padded = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")
    rows = (torch.arange(h, device=x.device)[None] + shifts[0][:, None])[:, None, :, None]
    cols = (torch.arange(w, device=x.device)[None] + shifts[1][:, None])[:, None, None, :]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = padded[batch, chans, rows, cols]
    return torch.where(flips[:, None, None, None], out.flip(-1), out)


def _autocast(device: torch.device, fast: bool = False):
    """bf16 autocast on CUDA, and on a CPU where ``fast`` (the fast path's training, and its evaluation in bf16);
    float32 otherwise."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted classes for uint8 images ``x`` (on the model's device)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            out.append(model(xb).argmax(1))
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=device)


FUSED_BATCH = 128  # the fast path's inference batch (cache-friendly on a CPU core: ~3x the reference's throughput)


class PreparedImages:
    """Fixed uint8 images that the fast path evaluates again and again (the test views, the monitor set): kept
    channels-last, and normalised once per normaliser instead of at every evaluation. For a network whose first layer
    is :class:`Normalize` (:func:`with_normalization`), :func:`logits_fused` then starts after that layer. The
    normalisation is elementwise, so the floats are those the layer computes batch by batch: the logits are the same
    to the bit (``tests/test_fast_path.py``)."""

    def __init__(self, x: torch.Tensor):
        self.images = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        self._normalised: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # mean, std, images

    def __len__(self) -> int:
        return len(self.images)

    def normalised(self, norm: Normalize) -> torch.Tensor:
        """The images as ``norm`` maps them (computed again only when its mean or std differ from the last call's)."""
        cached = self._normalised
        if cached is None or not (torch.equal(cached[0], norm.mean) and torch.equal(cached[1], norm.std)):
            with torch.inference_mode():
                images = norm(self.images.to(norm.mean.device, non_blocking=True))
            cached = self._normalised = (norm.mean.clone(), norm.std.clone(), images)
        return cached[2]


def _normalised_wrapper(model: nn.Module) -> bool:
    """Whether ``model`` is :func:`with_normalization`'s wrapper (``norm`` then ``net``)."""
    return (isinstance(model, nn.Sequential) and list(model._modules) == ["norm", "net"]
            and isinstance(model.norm, Normalize))


class FoldedNetwork:
    """``torch.fx``'s fold of a network's batch norms into the convolution or linear layer before each
    (:func:`torch.fx.experimental.optimization.fuse`), channels-last, made once for a network that is evaluated again
    and again while it trains: :meth:`refresh` refolds the network's current weights into it with the functions that
    ``fuse`` calls (``fuse_conv_bn_weights``, ``fuse_linear_bn_weights``) and copies every other weight, so its
    logits equal those of a fresh ``fuse`` to the bit, without copying and tracing the network at every evaluation
    (~10 ms each on a CPU core)."""

    def __init__(self, net: nn.Module):
        self.signature = self.signature_of(net)
        traced = fx.symbolic_trace(net)  # traced once: fuse folds a copy of this trace
        self.module = fx_fuse(traced, no_trace=True).to(memory_format=torch.channels_last)
        kept = dict(self.module.named_modules())
        modules = dict(traced.named_modules())
        self.pairs = [(node.args[0].target, node.target) for node in traced.graph.nodes
                      if node.op == "call_module" and isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm)
                      and node.target not in kept]  # the batch norms fuse folded, each with the layer before it
        live = set(dict(net.named_parameters())) | set(dict(net.named_buffers()))
        fused = {f"{first}.{kind}" for first, _ in self.pairs for kind in ("weight", "bias")}
        # a tensor the trace made a constant (an attribute that is neither a parameter nor a buffer) cannot be
        # refreshed: such a network is folded afresh at every call
        self.refreshable = all(name in live or name in fused for name, _ in
                               list(self.module.named_parameters()) + list(self.module.named_buffers()))

    @staticmethod
    def signature_of(net: nn.Module) -> tuple:
        """What the fold depends on besides the weights: every submodule's name and type."""
        return tuple((name, type(m)) for name, m in net.named_modules())

    @torch.inference_mode()
    def refresh(self, net: nn.Module) -> nn.Module:
        """The folded module with ``net``'s current weights (``net`` of the signature it was made from)."""
        fused = {}
        for first, norm in self.pairs:
            layer, bn = net.get_submodule(first), net.get_submodule(norm)
            fold = fuse_linear_bn_weights if isinstance(layer, nn.Linear) else fuse_conv_bn_weights
            fused[f"{first}.weight"], fused[f"{first}.bias"] = fold(layer.weight, layer.bias, bn.running_mean,
                                                                    bn.running_var, bn.eps, bn.weight, bn.bias)
        live = dict(net.named_parameters()) | dict(net.named_buffers())
        for name, tensor in list(self.module.named_parameters()) + list(self.module.named_buffers()):
            tensor.copy_(fused[name] if name in fused else live[name])
        return self.module


_FOLDED: "weakref.WeakKeyDictionary[nn.Module, FoldedNetwork]" = weakref.WeakKeyDictionary()


@torch.inference_mode()  # the kept fold's tensors are inference tensors, made and refreshed in inference mode
def folded_network(net: nn.Module) -> nn.Module:
    """``net`` (in evaluation mode) with its batch norms folded (:class:`FoldedNetwork`, kept while ``net`` lives and
    keeps its structure)."""
    entry = _FOLDED.get(net)
    if entry is None or not entry.refreshable or entry.signature != FoldedNetwork.signature_of(net):
        entry = _FOLDED[net] = FoldedNetwork(net)
        return entry.module
    return entry.refresh(net)


EVAL_DTYPES = ("float32", "bfloat16")  # the fast path's evaluation precision on a CPU (CUDA evaluates in bf16)


@torch.inference_mode()
def logits_fused(model: nn.Module, x: torch.Tensor | PreparedImages, batch_size: int = FUSED_BATCH,
                 dtype: str = "float32") -> torch.Tensor:
    """Float32 logits for uint8 images ``x`` from an evaluation copy of ``model`` with every batch norm folded into
    the convolution or linear layer before it (``torch.fx``; :func:`folded_network`), channels-last, in inference
    mode: the fast path's evaluation. Mathematically the same network as in evaluation mode; other kernels, so the
    numbers differ from :func:`logits` by float rounding. ``x`` may be :class:`PreparedImages` (normalised once for
    many calls; the same logits). ``dtype`` ``"bfloat16"``: on a CPU, computed under bf16 autocast as on CUDA (an
    evaluation pass about 1.5x faster on a CPU core with bf16 instructions, ``results/bench_cpu.json``; a coarser
    rounding, bounded by ``tests/test_fast_path.py``)."""
    check_choice("dtype", dtype, EVAL_DTYPES)
    device = next(model.parameters()).device
    net, inputs = model, x
    if isinstance(x, PreparedImages):
        net, inputs = (model.net, x.normalised(model.norm)) if _normalised_wrapper(model) else (model, x.images)
    was_training = model.training
    model.eval()
    try:
        folded = folded_network(net)
    finally:
        model.train(was_training)
    out = []
    for i in range(0, len(inputs), batch_size):
        xb = inputs[i:i + batch_size].to(device, non_blocking=True)
        if xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device, fast=dtype == "bfloat16"):
            out.append(folded(xb).float())
    return torch.cat(out) if out else torch.empty(0, device=device)


def predict_fused(model: nn.Module, x: torch.Tensor | PreparedImages, batch_size: int = FUSED_BATCH,
                  dtype: str = "float32") -> torch.Tensor:
    """Predicted classes for uint8 images ``x``, as :func:`predict` but on the fast path (:func:`logits_fused`)."""
    return logits_fused(model, x, batch_size, dtype).argmax(1) if len(x) else torch.empty(0, dtype=torch.long)


@torch.no_grad()
def logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Float32 logits for uint8 images ``x`` in evaluation mode: the reference path (the fast path's is
    :func:`logits_fused`)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].to(device, non_blocking=True)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(device):
            out.append(model(xb).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, device=device)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    return (predict(model, x, batch_size) == y.to(next(model.parameters()).device)).float().mean().item()


def _progress_disabled() -> bool:
    return os.environ.get("EROSION_PROGRESS", "1") == "0"


@dataclass
class Constraints:
    """What fine-tuning may change, beyond the optimiser settings (all off by default).

    - ``frozen``: submodule names whose parameters stay fixed and whose batch-norm statistics are not updated;
    - ``head`` and ``head_only_steps``: for the first steps only the classifier (``head``) trains, the rest of the
      network is fixed as in ``frozen`` (LP-FT, Kumar et al. 2022);
    - ``anchor`` and ``l2sp_alpha``: the penalty alpha/2 * ||theta - theta_0||^2 towards ``anchor`` (parameter name ->
      tensor) on every non-head parameter, which then gets no plain weight decay (L2-SP, Li et al. 2018);
    - ``erase_prob`` and ``erase_size``: each training image, with this probability, gets one random corner square of
      this size overwritten with uniform noise.
    """

    frozen: tuple[str, ...] = ()
    head: tuple[str, ...] = ()
    head_only_steps: int = 0
    anchor: dict[str, torch.Tensor] | None = None
    l2sp_alpha: float = 0.0
    erase_prob: float = 0.0
    erase_size: int = 0

    @property
    def active(self) -> bool:
        """Whether any constraint changes plain SGD (the CUDA-graphed step is used only when none does)."""
        return bool(self.frozen or self.head_only_steps or self.l2sp_alpha > 0 or self.erase_prob > 0)


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def l2sp_penalty(model: nn.Module, anchor: dict[str, torch.Tensor], alpha: float) -> torch.Tensor:
    """alpha/2 * sum ||theta - theta_0||^2 over the parameters named in ``anchor``."""
    params = dict(model.named_parameters())
    total = sum(((params[n] - ref.to(params[n].device)) ** 2).sum() for n, ref in anchor.items())
    return 0.5 * alpha * total


def erase_corners(x: torch.Tensor, prob: float, size: int, gen: torch.Generator) -> torch.Tensor:
    """A copy of uint8 images ``x`` (N, C, H, W) in which each image, with probability ``prob``, has one of its four
    corner squares of ``size`` pixels (chosen at random) overwritten with uniform noise."""
    n, c, h, w = x.shape
    hit = torch.rand(n, generator=gen) < prob
    corner = torch.randint(0, 4, (n,), generator=gen)
    noise = torch.randint(0, 256, (n, c, size, size), generator=gen, dtype=torch.uint8)
    out = x.clone()
    for i in torch.nonzero(hit).flatten().tolist():
        r = 0 if corner[i] < 2 else h - size
        q = 0 if corner[i] % 2 == 0 else w - size
        out[i, :, r:r + size, q:q + size] = noise[i].to(x.device)
    return out


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int,
          eval_at: list[int] | None = None, eval_fn: Callable[[nn.Module], dict] | None = None,
          desc: str = "train", constraints: Constraints | None = None, fast: bool = False,
          monitor_at: list[int] | None = None, monitor_fn: Callable[[nn.Module, int, dict], None] | None = None
          ) -> list[dict]:
    """Train ``model`` (which takes uint8 images) with SGD on (x, y), both already on the model's device.

    Calls ``eval_fn(model)`` after each step in ``eval_at`` (step 0 = before training) and returns one record per
    evaluation: step, epoch, the mean and the largest batch training loss since the previous record, and what
    ``eval_fn`` returned.
    ``constraints`` (see :class:`Constraints`) freeze parts of the network, train the head alone first, add L2-SP or
    erase corners; the network's ``requires_grad`` flags are restored on return.
    ``fast``: on a CPU, train channels-last with bf16 autocast, as on CUDA (the fast path; no effect on CUDA).
    ``cfg.clip_norm`` > 0 clips the global gradient norm before every step. ``monitor_fn(model, step, since)``
    is called after each step in ``monitor_at`` (step 0 = before training), after the evaluation of that step, with
    ``since`` = the largest batch loss and the largest gradient norm (before clipping) since the previous call.
    """
    cfg.validate()
    con = constraints or Constraints()
    device = next(model.parameters()).device
    channels_last = device.type == "cuda" or fast
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    n = len(x)
    steps_per_epoch = max(1, n // cfg.batch_size)  # drop the last partial batch
    total = max(1, round(cfg.epochs * steps_per_epoch))
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    eval_at = sorted(set(eval_at or [])) if eval_fn else []
    monitor_at = set(monitor_at or []) if monitor_fn else set()
    named = list(model.named_parameters())
    was_trainable = {name: p.requires_grad for name, p in named}
    for name, p in named:
        if _under(name, con.frozen):
            p.requires_grad_(False)
    anchored = set(con.anchor or {}) if con.l2sp_alpha > 0 else set()
    plain = [p for name, p in named if name not in anchored]
    groups = [{"params": plain}] + ([{"params": [p for name, p in named if name in anchored], "weight_decay": 0.0}]
                                    if anchored else [])
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=cfg.nesterov and cfg.momentum > 0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg.schedule, warmup))
    graphed = None
    monitored = monitor_fn is not None  # the monitor reads gradient norms, which the captured step does not give
    if graphs.graphs_available(device) and not con.active and not cfg.clip_norm and not monitored:  # CUDA only
        graphed = graphs.TrainStep(model, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.nesterov)

    def fixed_modules(step: int) -> list[str]:
        """Modules held fixed (no gradient, batch-norm statistics frozen) at ``step``."""
        if step < con.head_only_steps:
            return [m for m, _ in model.named_modules() if m and not _under(m, con.head)
                    and not any(_under(h, [m]) for h in con.head)]
        return list(con.frozen)

    def set_train_mode(step: int) -> None:
        model.train()
        fixed = fixed_modules(step)
        for m in fixed:
            model.get_submodule(m).eval()
        for name, p in named:
            p.requires_grad_(was_trainable[name] and not _under(name, fixed))
    gen = torch.Generator().manual_seed(seed)
    records: list[dict] = []
    loss_sum = torch.zeros((), device=device)
    loss_max = torch.zeros((), device=device)
    loss_count = 0
    since: dict[str, float | None] = {"batch_loss_max": None, "grad_norm_max": None}

    def raise_to(key: str, value: float) -> None:
        since[key] = value if since[key] is None else max(since[key], value)

    def monitor(step: int) -> None:
        monitor_fn(model, step, dict(since))
        since.update(batch_loss_max=None, grad_norm_max=None)

    def record(step: int) -> None:
        nonlocal loss_sum, loss_max, loss_count
        rec = {"step": step, "epoch": step / steps_per_epoch,
               "train_loss": (loss_sum / loss_count).item() if loss_count else float("nan"),
               "train_loss_max": loss_max.item() if loss_count else float("nan")}
        rec.update(eval_fn(model))
        records.append(rec)
        loss_sum, loss_max, loss_count = torch.zeros((), device=device), torch.zeros((), device=device), 0

    if 0 in eval_at:
        record(0)
    if 0 in monitor_at:
        monitor(0)
    set_train_mode(0)
    step = 0
    bar = tqdm(total=total, desc=desc, leave=False, disable=_progress_disabled(), mininterval=2.0)
    while step < total:
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size]
            xb, yb = x[idx], y[idx]
            if step == con.head_only_steps and step > 0:
                set_train_mode(step)
            if con.erase_prob > 0:
                xb = erase_corners(xb, con.erase_prob, con.erase_size, gen)
            if cfg.augment:
                xb = _augment(xb, gen)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if graphed is not None:
                graphed.set_lr(cfg.lr * lr_factor(step, total, cfg.schedule, warmup))
                loss = graphed(xb, yb)
            else:
                with _autocast(device, fast):
                    loss = F.cross_entropy(model(xb), yb)
                objective = loss + l2sp_penalty(model, con.anchor, con.l2sp_alpha) if anchored else loss
                opt.zero_grad(set_to_none=True)
                objective.backward()
                trainable = [p for _, p in named if p.requires_grad and p.grad is not None]
                if cfg.clip_norm:
                    norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_norm)
                elif monitored:
                    norm = torch.nn.utils.get_total_norm([p.grad for p in trainable])
                if monitored:
                    raise_to("grad_norm_max", float(norm))
                opt.step()
                sched.step()
            loss_sum += loss.detach().float()
            loss_max = torch.maximum(loss_max, loss.detach().float())
            loss_count += 1
            step += 1
            bar.update(1)
            if step in eval_at:
                record(step)
            if monitored:
                raise_to("batch_loss_max", float(loss.detach()))
            if step in monitor_at:
                monitor(step)
            if step in eval_at or step in monitor_at:
                set_train_mode(step)
    bar.close()
    for name, p in named:
        p.requires_grad_(was_trainable[name])
    return records


def train_until_perfect(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, seed: int,
                        target: float = 1.0, extra_epochs: int = 5, desc: str = "pretrain",
                        fast: bool = False) -> dict:
    """Train with ``cfg``; then, while training accuracy < ``target``, train more epochs at 1% of the learning rate
    (constant), up to ``extra_epochs``. Returns the accuracy reached and the epochs used."""
    check_number("target", target, low=0, high=1, low_inclusive=False)
    check_number("extra_epochs", extra_epochs, low=0, integer=True)
    train(model, x, y, cfg, seed, desc=desc, fast=fast)
    acc = accuracy(model, x, y)
    extra = 0
    polish = TrainConfig(epochs=1, lr=cfg.lr * 0.01, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                         batch_size=cfg.batch_size, schedule="constant", nesterov=cfg.nesterov, augment=False)
    while acc < target and extra < extra_epochs:
        extra += 1
        train(model, x, y, polish, seed + 1000 + extra, desc=f"{desc} (extra {extra})", fast=fast)
        acc = accuracy(model, x, y)
    return {"train_accuracy": acc, "epochs": cfg.epochs + extra, "extra_epochs": extra, "reached_target": acc >= target}
