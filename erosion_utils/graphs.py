"""CUDA graphs for the fixed-shape fine-tuning step and for evaluation; eager everywhere else.

Fine-tuning at batch 128 is launch-bound: most of a step is spent launching a few hundred small kernels. A CUDA
graph captures forward, backward and the SGD update once and replays them as one launch. What makes the step
capturable: static input buffers (each batch is copied in), fused SGD with the learning rate held in a device tensor
(a schedule changes it in place, no host sync), autocast without its weight cache, and gradients that are never set
to None after capture. The first ``warmup`` steps run eagerly on a side stream (as PyTorch's whole-network capture
recipe asks); every call, eager or replayed, is one real training step.

Switch off with ``EROSION_CUDA_GRAPHS=0`` or ``enabled=False``; the graphed path is for plain SGD fine-tuning only
(no frozen layers, head-only phase, L2-SP or per-group settings).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn


def graphs_available(device: torch.device | str, enabled: bool | None = None) -> bool:
    """Whether to graph on ``device``: CUDA only, unless ``enabled`` is False or ``EROSION_CUDA_GRAPHS=0``."""
    if enabled is False or os.environ.get("EROSION_CUDA_GRAPHS", "1") == "0":
        return False
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def _autocast(device: torch.device):
    if device.type == "cuda":  # the weight cache must be off inside a graph
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return torch.autocast("cpu", enabled=False)


class TrainStep:
    """One SGD step on a batch of uint8 images: ``loss = step(xb, yb)``; ``step.set_lr(lr)`` before a step changes
    the learning rate. Graphed on CUDA (after ``warmup`` eager steps), eager elsewhere. The returned loss is a
    0-dim float tensor on the device, valid until the next call (add it to a running sum; do not keep it)."""

    def __init__(self, model: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4,
                 nesterov: bool = True, enabled: bool | None = None, warmup: int = 3):
        self.model = model
        self.device = next(model.parameters()).device
        self.graphed = graphs_available(self.device, enabled)
        params = [p for p in model.parameters() if p.requires_grad]
        nesterov = nesterov and momentum > 0
        if self.graphed:
            self._lr = torch.tensor(float(lr), device=self.device)
            self.opt = torch.optim.SGD(params, lr=self._lr, momentum=momentum, weight_decay=weight_decay,
                                       nesterov=nesterov, fused=True)
        else:
            self.opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                                       nesterov=nesterov)
        self.warmup = warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self._x = self._y = self._loss = None
        self._stream = torch.cuda.Stream(self.device) if self.graphed else None

    def set_lr(self, lr: float) -> None:
        if self.graphed:
            self._lr.fill_(float(lr))  # in place: the captured update reads it
        else:
            for group in self.opt.param_groups:
                group["lr"] = lr

    def _eager(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device):
            loss = F.cross_entropy(self.model(xb), yb)
        self.opt.zero_grad(set_to_none=not self.graphed)
        loss.backward()
        self.opt.step()
        return loss.detach().float()

    def __call__(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if not self.graphed:
            return self._eager(xb, yb)
        if self.graph is None and self.calls <= self.warmup:
            self._stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._stream):
                loss = self._eager(xb, yb)
            torch.cuda.current_stream(self.device).wait_stream(self._stream)
            return loss
        if self.graph is None:
            self._capture(xb, yb)
        else:
            self._x.copy_(xb)
            self._y.copy_(yb)
        self.graph.replay()  # for the capturing call too: capture records, it does not run
        return self._loss

    def _capture(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self._x, self._y = xb.clone(memory_format=torch.preserve_format), yb.clone()
        torch.cuda.synchronize(self.device)
        self.opt.zero_grad(set_to_none=True)  # gradients are then allocated from the graph's pool
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            with _autocast(self.device):
                loss = F.cross_entropy(self.model(self._x), self._y)
            loss.backward()
            self.opt.step()
            self._loss = loss.detach().float()


class Predictor:
    """Predicted classes of uint8 images in fixed-size batches (the last one padded), graphed on CUDA. Parameters
    and batch-norm statistics are read in place, so one predictor serves a model through its whole training."""

    def __init__(self, model: nn.Module, batch_size: int = 1024, enabled: bool | None = None):
        self.model = model
        self.batch_size = batch_size
        self.device = next(model.parameters()).device
        self.graphed = graphs_available(self.device, enabled)
        self.graph: torch.cuda.CUDAGraph | None = None
        self._x = self._out = None

    @torch.no_grad()
    def _forward(self, xb: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device):
            return self.model(xb).argmax(1)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            out = []
            for i in range(0, len(x), self.batch_size):
                xb = x[i:i + self.batch_size].to(self.device, non_blocking=True)
                if self.device.type == "cuda":
                    xb = xb.contiguous(memory_format=torch.channels_last)
                out.append(self._graphed(xb) if self.graphed else self._forward(xb))
            return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=self.device)
        finally:
            self.model.train(was_training)

    def _graphed(self, xb: torch.Tensor) -> torch.Tensor:
        n = len(xb)
        if self.graph is None:
            shape = (self.batch_size, *xb.shape[1:])
            self._x = torch.zeros(shape, dtype=xb.dtype, device=self.device).contiguous(
                memory_format=torch.channels_last)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    self._forward(self._x)
            torch.cuda.current_stream(self.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._out = self._forward(self._x)
        self._x[:n].copy_(xb)
        self.graph.replay()
        return self._out[:n].clone()


def compare_trajectories(model_fn, x: torch.Tensor, y: torch.Tensor, steps: int = 50, batch_size: int = 128,
                         lr: float = 0.05, seed: int = 0) -> dict:
    """Train two copies of ``model_fn()`` for ``steps`` steps on the same batches, eager and graphed; return both
    loss trajectories and the largest difference (the check that graphing changes nothing but speed)."""
    gen = torch.Generator().manual_seed(seed)
    order = [torch.randint(0, len(x), (batch_size,), generator=gen) for _ in range(steps)]
    out = {}
    for name, enabled in (("eager", False), ("graphed", None)):
        torch.manual_seed(seed)
        model = model_fn().to(x.device)
        if x.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        step = TrainStep(model, lr, enabled=enabled)
        losses = []
        for i, idx in enumerate(order):
            xb = x[idx.to(x.device)]
            if x.device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            step.set_lr(lr * min(1.0, (i + 1) / 10))  # a warm-up: the schedule must reach the captured step
            losses.append(step(xb, y[idx.to(y.device)]).item())
        out[name] = losses
        out[f"{name}_is_graphed"] = step.graphed
    diffs = [abs(a - b) / max(abs(a), 1e-3) for a, b in zip(out["eager"], out["graphed"])]
    out["max_relative_difference"] = max(diffs)
    out["mean_relative_difference"] = sum(diffs) / len(diffs)
    return out
