"""Shared fixtures for the erosion_utils test-suite.

- progress bars are switched off (EROSION_PROGRESS=0) before the package is imported;
- ``result_cache`` / ``checkpoint_cache`` / ``cpu_context`` write only under pytest's tmp dirs;
- ``cifar10`` loads the real CIFAR-10 npz once per session (about 3 s, 162 MB);
- ``cifar10_slice_npz`` is a small npz of real CIFAR-10 images (first 2000 train, first 1000 test), in the same
  layout, for the end-to-end tests (loading it takes milliseconds).
"""
from __future__ import annotations

import os

os.environ["EROSION_PROGRESS"] = "0"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from erosion_utils.cache import CheckpointCache, ResultCache  # noqa: E402

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
CIFAR10_NPZ = SHARED_CIFAR10 / "cifar10.npz"


@pytest.fixture
def result_cache(tmp_path) -> ResultCache:
    return ResultCache(tmp_path / "results")


@pytest.fixture
def checkpoint_cache(tmp_path) -> CheckpointCache:
    return CheckpointCache(tmp_path / "checkpoints")


@pytest.fixture
def cpu_context(result_cache, checkpoint_cache):
    """A CPU context whose caches live in a fresh tmp dir (data found the usual way)."""
    from erosion_utils.experiments import Context

    return Context(device="cpu", results=result_cache, checkpoints=checkpoint_cache)


@pytest.fixture(scope="session")
def cifar10_npz() -> Path:
    if not CIFAR10_NPZ.is_file():
        pytest.skip(f"real CIFAR-10 not found at {CIFAR10_NPZ}")
    return CIFAR10_NPZ


@pytest.fixture(scope="session")
def cifar10(cifar10_npz):
    """The real CIFAR-10 (ImageData, uint8 (N, 3, 32, 32)), loaded once per session."""
    from erosion_utils.data import load_dataset

    return load_dataset("cifar10", root=cifar10_npz)


@pytest.fixture(scope="session")
def cifar10_slice_npz(cifar10, tmp_path_factory) -> Path:
    """Real CIFAR-10 slices in the npz layout (HWC): the first 2000 training and 1000 test images."""
    path = tmp_path_factory.mktemp("cifar10_slice") / "cifar10.npz"
    np.savez(path,
             x_train=cifar10.x_train[:2000].permute(0, 2, 3, 1).numpy(), y_train=cifar10.y_train[:2000].numpy(),
             x_test=cifar10.x_test[:1000].permute(0, 2, 3, 1).numpy(), y_test=cifar10.y_test[:1000].numpy())
    return path
