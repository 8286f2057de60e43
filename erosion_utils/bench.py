"""Benchmark: one epoch of our training loop (data resident on the device) against a naive torchvision
``DataLoader`` loop (per-image ``ToTensor``/``Normalize`` transforms, float32, batches copied to the device)."""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
import torchvision.transforms as T

from .data import ImageData
from .models import build_model
from .train import TrainConfig, resolve_device, train, with_normalization
from .validation import check_number


class _NaiveCIFAR(torch.utils.data.Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor, mean, std):
        self.x = x.permute(0, 2, 3, 1).numpy()  # HWC uint8, as torchvision's CIFAR10 stores it
        self.y = y.tolist()
        self.transform = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def naive_epoch(model: torch.nn.Module, data: ImageData, n: int, cfg: TrainConfig, device: torch.device,
                workers: int) -> float:
    mean, std = data.channel_stats()
    loader = torch.utils.data.DataLoader(_NaiveCIFAR(data.x_train[:n], data.y_train[:n], mean, std),
                                         batch_size=cfg.batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    model.train()
    _sync(device)
    start = time.perf_counter()
    for xb, yb in loader:
        xb, yb = xb.to(device), yb.to(device)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - start


def run_bench(data: ImageData, arch: str = "resnet18", width: float = 1.0, n_images: int = 10000,
              batch_size: int = 512, device: str = "auto", workers: int = 4, seed: int = 0) -> dict:
    """Time one epoch of ``n_images`` with each loop (after a short warm-up of each) and return both rates."""
    check_number("n_images", n_images, low=batch_size, high=len(data.x_train), integer=True)
    dev = resolve_device(device)
    torch.manual_seed(seed)
    mean, std = data.channel_stats()
    base = build_model(arch, data.num_classes, width)
    ours_model = with_normalization(copy.deepcopy(base), mean, std).to(dev)
    naive_model = copy.deepcopy(base).to(dev)
    cfg = TrainConfig(epochs=1, lr=0.05, batch_size=batch_size, schedule="constant")
    x, y = data.x_train[:n_images].to(dev), data.y_train[:n_images].to(dev)
    warm = TrainConfig(epochs=min(1.0, 4 * batch_size / n_images), lr=0.05, batch_size=batch_size)
    train(ours_model, x, y, warm, seed, desc="bench warm-up")
    naive_epoch(naive_model, data, 4 * batch_size, cfg, dev, workers)
    _sync(dev)
    start = time.perf_counter()
    train(ours_model, x, y, cfg, seed, desc="bench ours")
    _sync(dev)
    ours = time.perf_counter() - start
    naive = naive_epoch(naive_model, data, n_images, cfg, dev, workers)
    from .cache import provenance

    return {"provenance": provenance(seed, ours + naive, dev), "device": str(dev), "arch": arch, "width": width,
            "n_images": n_images, "batch_size": batch_size,
            "workers": workers, "ours_s": ours, "naive_s": naive, "ours_img_per_s": n_images / ours,
            "naive_img_per_s": n_images / naive, "speedup": naive / ours}
