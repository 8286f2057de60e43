"""Layer-wise analysis: linear-probe accuracy and numerical rank of every tapped representation.

Reconstructed choices (the paper's details are unknown; see the book's reproduction notes):
- probes read features average-pooled spatially to at most ``probe_dim`` dimensions, are trained with Adam
  (lr 1e-3, 30 epochs, batch 512) on standardised features, and are scored on held-out images;
- the numerical rank counts the singular values of the centred feature covariance above ``rel_tol`` times the
  largest, on a fixed random subset of ``rank_dim`` raw (unpooled) dimensions when a layer is wider (as in the
  Tunnel Effect paper).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .validation import check_number


@dataclass
class LayerFeatures:
    probe: torch.Tensor  # (N, <= probe_dim) pooled features
    rank: torch.Tensor | None  # (N, <= rank_dim) raw features, random subset of dimensions (None: not extracted)
    full_dim: int


def _pool_size(channels: int, side: int, probe_dim: int) -> int:
    s = side
    while s > 1 and channels * s * s > probe_dim:
        s -= 1
    return s


@torch.no_grad()
def extract_features(model: nn.Module, x: torch.Tensor, tap_names: list[str] | None = None, batch_size: int = 500,
                     probe_dim: int = 4096, rank_dim: int = 8000, seed: int = 0,
                     rank: bool = True) -> dict[str, LayerFeatures]:
    """Run uint8 images ``x`` through ``model`` (eval mode, float32) and collect every tap's representation; with
    ``rank=False`` only the probe features (the raw features for the rank are then not kept)."""
    tap_names = tap_names or model.tap_names
    device = next(model.parameters()).device
    captured: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach())) for name in tap_names]
    was_training = model.training
    model.eval()
    probe_parts: dict[str, list] = {n: [] for n in tap_names}
    rank_parts: dict[str, list] = {n: [] for n in tap_names}
    dims: dict[str, int] = {}
    rank_idx: dict[str, torch.Tensor | None] = {}
    probe_idx: dict[str, torch.Tensor | None] = {}
    try:
        for i in range(0, len(x), batch_size):
            model(x[i:i + batch_size].to(device))
            for layer_no, name in enumerate(tap_names):
                out = captured[name].float()
                flat = out.flatten(1)
                if name not in dims:
                    dims[name] = flat.shape[1]
                    gen = torch.Generator().manual_seed(seed * 1000 + layer_no)
                    rank_idx[name] = (torch.randperm(flat.shape[1], generator=gen)[:rank_dim].sort().values.to(device)
                                      if flat.shape[1] > rank_dim else None)
                    probe_width = out.shape[1] * _pool_size(out.shape[1], out.shape[-1], probe_dim) ** 2 \
                        if out.dim() == 4 else flat.shape[1]
                    probe_idx[name] = (torch.randperm(probe_width, generator=gen)[:probe_dim].sort().values.to(device)
                                       if probe_width > probe_dim else None)
                if rank:  # the subset is drawn either way, so the probe features do not depend on ``rank``
                    rank_parts[name].append(flat if rank_idx[name] is None else flat[:, rank_idx[name]])
                feats = F.adaptive_avg_pool2d(out, _pool_size(out.shape[1], out.shape[-1], probe_dim)).flatten(1) \
                    if out.dim() == 4 else flat
                probe_parts[name].append(feats if probe_idx[name] is None else feats[:, probe_idx[name]])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return {n: LayerFeatures(torch.cat(probe_parts[n]), torch.cat(rank_parts[n]) if rank else None, dims[n])
            for n in tap_names}


def numerical_rank(features: torch.Tensor, rel_tol: float = 1e-3) -> int:
    """Number of eigenvalues of the feature covariance above ``rel_tol`` times the largest."""
    check_number("rel_tol", rel_tol, low=0, high=1, low_inclusive=False)
    f = features.double() if features.device.type == "cpu" else features.float()
    f = f - f.mean(dim=0, keepdim=True)
    gram = f @ f.T if f.shape[0] < f.shape[1] else f.T @ f  # same non-zero eigenvalues as the covariance
    ev = torch.linalg.eigvalsh(gram)  # ascending; up to the common factor 1/(N-1)
    if ev.numel() == 0 or ev[-1] <= 0:
        return 0
    return int((ev > rel_tol * ev[-1]).sum().item())


def linear_probes(train_feats: list[torch.Tensor], train_y: torch.Tensor, test_feats: list[torch.Tensor],
                  test_y: torch.Tensor, num_classes: int, epochs: int = 30, lr: float = 1e-3, batch_size: int = 512,
                  seed: int = 0) -> list[float]:
    """Train one linear probe per feature set, all in one batched loop; return each probe's test accuracy."""
    check_number("probe epochs", epochs, low=1, integer=True)
    device = train_y.device
    torch.manual_seed(seed)
    stats = [(f.mean(0, keepdim=True), f.std(0, keepdim=True) + 1e-6) for f in train_feats]
    train_n = [(f - m) / s for f, (m, s) in zip(train_feats, stats)]
    test_n = [(f - m) / s for f, (m, s) in zip(test_feats, stats)]
    heads = nn.ModuleList([nn.Linear(f.shape[1], num_classes) for f in train_n]).to(device)
    opt = torch.optim.Adam(heads.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(train_y)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            loss = sum(F.cross_entropy(h(f[idx]), train_y[idx]) for h, f in zip(heads, train_n))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return [(h(f).argmax(1) == test_y).float().mean().item() for h, f in zip(heads, test_n)]


def layer_report(model: nn.Module, probe_train: tuple[torch.Tensor, torch.Tensor],
                 probe_test: tuple[torch.Tensor, torch.Tensor], num_classes: int,
                 pattern_train: tuple[torch.Tensor, torch.Tensor] | None = None,
                 pattern_test: tuple[torch.Tensor, torch.Tensor] | None = None,
                 probe_epochs: int = 30, probe_dim: int = 4096, rank_dim: int = 8000, seed: int = 0) -> list[dict]:
    """For every tap of ``model``: clean-label probe accuracy, numerical rank (on the probe-test images) and, when
    pattern-stamped sets are given, how well a probe reads the pattern's class."""
    device = next(model.parameters()).device
    names = list(model.tap_names)

    def feats(x, rank: bool = False):
        return extract_features(model, x.to(device), names, probe_dim=probe_dim, rank_dim=rank_dim, seed=seed,
                                rank=rank)

    tr, te = feats(probe_train[0]), feats(probe_test[0], rank=True)  # the rank is measured on the test images only
    clean_acc = linear_probes([tr[n].probe for n in names], probe_train[1].to(device), [te[n].probe for n in names],
                              probe_test[1].to(device), num_classes, probe_epochs, seed=seed)
    rows = [{"layer": n, "depth": i, "relative_depth": i / max(len(names) - 1, 1), "dim": te[n].full_dim,
             "probe_accuracy": a, "rank": numerical_rank(te[n].rank)} for i, (n, a) in enumerate(zip(names, clean_acc))]
    del tr, te
    if pattern_train is not None and pattern_test is not None:
        ptr, pte = feats(pattern_train[0]), feats(pattern_test[0])
        pat_acc = linear_probes([ptr[n].probe for n in names], pattern_train[1].to(device),
                                [pte[n].probe for n in names], pattern_test[1].to(device), num_classes, probe_epochs,
                                seed=seed + 1)
        for row, a in zip(rows, pat_acc):
            row["pattern_probe_accuracy"] = a
    return rows
