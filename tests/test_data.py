"""Real-data integration: CIFAR-10 from the shared npz and every other source layout the loader supports."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from erosion_utils import data
from erosion_utils.data import balanced_indices, candidate_dirs, load_dataset, subset
from erosion_utils.validation import ParameterError

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"

# SHA-256 of the raw HWC arrays, from shared/data/cifar10/README.md
SHA_X_TRAIN = "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a"
SHA_Y_TRAIN = "f5cfe00b0f00968c0cc5ff3b1d2de51b10e33efa277c2986f4e0fa63e58c9f4f"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(np.ascontiguousarray(t.numpy()).tobytes()).hexdigest()


def test_cifar10_shapes_types_and_balance(cifar10):
    assert cifar10.name == "cifar10" and cifar10.num_classes == 10
    assert cifar10.x_train.shape == (50000, 3, 32, 32) and cifar10.x_train.dtype == torch.uint8
    assert cifar10.x_test.shape == (10000, 3, 32, 32) and cifar10.x_test.dtype == torch.uint8
    assert cifar10.y_train.shape == (50000,) and cifar10.y_train.dtype == torch.int64
    assert cifar10.y_test.shape == (10000,) and cifar10.y_test.dtype == torch.int64
    assert cifar10.image_size == 32 and cifar10.channels == 3
    assert torch.bincount(cifar10.y_train).tolist() == [5000] * 10
    assert torch.bincount(cifar10.y_test).tolist() == [1000] * 10
    assert cifar10.source.startswith("npz:")
    assert len(data.CLASS_NAMES["cifar10"]) == 10


def test_cifar10_pixels_are_exactly_the_published_arrays(cifar10):
    """CHW tensors turned back into HWC hash to the README's SHA-256: nothing was reordered or altered."""
    assert sha256(cifar10.x_train.permute(0, 2, 3, 1).contiguous()) == SHA_X_TRAIN
    assert sha256(cifar10.y_train) == SHA_Y_TRAIN


def test_cifar10_channel_means_match_published_values(cifar10):
    n_pixels = cifar10.x_train.shape[0] * 32 * 32
    means = (cifar10.x_train.sum(dim=(0, 2, 3), dtype=torch.int64).double() / (255.0 * n_pixels)).tolist()
    assert means == pytest.approx([0.4914, 0.4822, 0.4465], abs=1e-3)


def test_channel_stats_on_a_slice(cifar10):
    part = data.ImageData("cifar10", cifar10.x_train[:2000], cifar10.y_train[:2000], cifar10.x_test[:10],
                          cifar10.y_test[:10], 10, "slice")
    mean, std = part.channel_stats()
    x = cifar10.x_train[:2000].permute(0, 2, 3, 1).numpy().reshape(-1, 3) / 255.0
    assert mean == pytest.approx(x.mean(0).tolist(), abs=1e-9)
    assert std == pytest.approx(x.std(0).tolist(), abs=1e-9)
    assert mean == pytest.approx([0.4914, 0.4822, 0.4465], abs=0.02)  # a slice is close to the full set


def test_balanced_indices_deterministic_and_balanced(cifar10):
    idx = balanced_indices(cifar10.y_train, 20, seed=3)
    assert torch.equal(idx, balanced_indices(cifar10.y_train, 20, seed=3))
    assert not torch.equal(idx, balanced_indices(cifar10.y_train, 20, seed=4))
    assert len(idx) == 200 and len(torch.unique(idx)) == 200
    assert torch.equal(idx, torch.sort(idx).values)
    assert torch.bincount(cifar10.y_train[idx]).tolist() == [20] * 10


def test_balanced_indices_errors(cifar10):
    with pytest.raises(ParameterError, match=r"n_per_class=5001 exceeds the 5000 images of class 0"):
        balanced_indices(cifar10.y_train, 5001, seed=0)
    with pytest.raises(ParameterError, match=r"n_per_class=0 is out of range; allowed in \[1, inf\]"):
        balanced_indices(cifar10.y_train, 0, seed=0)


def test_subset_is_balanced_and_keeps_pairs(cifar10):
    small = subset(cifar10, 16, 8, seed=0)
    assert small.x_train.shape == (160, 3, 32, 32) and small.x_test.shape == (80, 3, 32, 32)
    assert torch.bincount(small.y_train).tolist() == [16] * 10
    assert torch.bincount(small.y_test).tolist() == [8] * 10
    i = balanced_indices(cifar10.y_train, 16, 0)
    assert torch.equal(small.x_train, cifar10.x_train[i]) and torch.equal(small.y_train, cifar10.y_train[i])
    whole = subset(cifar10, None, None, seed=0)
    assert whole.x_train is cifar10.x_train


def test_load_from_npz_folder_and_file(cifar10_slice_npz, cifar10):
    from_file = load_dataset("cifar10", root=cifar10_slice_npz)
    from_folder = load_dataset("cifar10", root=cifar10_slice_npz.parent)
    for d in (from_file, from_folder):
        assert torch.equal(d.x_train, cifar10.x_train[:2000]) and torch.equal(d.y_test, cifar10.y_test[:1000])
        assert d.source == f"npz:{cifar10_slice_npz}"


@pytest.fixture
def torchvision_root(tmp_path):
    """A folder holding the regenerated ``cifar-10-batches-py``.

    NOTE: writes about 186 MB (a few seconds); removed again after the test so pytest's kept tmp dirs stay small.
    """
    script = SHARED_CIFAR10 / "make_torchvision_layout.py"
    if not script.is_file():
        pytest.skip(f"{script} not found")
    root = tmp_path / "tv"
    subprocess.run([sys.executable, str(script), str(root)], check=True, capture_output=True, timeout=300)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_torchvision_folder_layout_gives_identical_tensors(cifar10, torchvision_root):
    tmp_path = torchvision_root
    assert (tmp_path / "cifar-10-batches-py" / "data_batch_5").is_file()
    tv = load_dataset("cifar10", root=tmp_path)
    assert tv.source == f"torchvision:{tmp_path}"
    for name in ("x_train", "y_train", "x_test", "y_test"):
        a, b = getattr(tv, name), getattr(cifar10, name)
        assert a.dtype == b.dtype and torch.equal(a, b), name


def _fake_cifar(n_train: int, n_test: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return dict(x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                y_train=rng.integers(0, 10, n_train).astype(np.int64),
                x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
                y_test=rng.integers(0, 10, n_test).astype(np.int64))


def test_three_part_layout_concatenates_in_order(tmp_path):
    """The a/b/c.npz layout of split_in_parts.py (moved into one folder), built small here."""
    parts = [_fake_cifar(n, 4, seed) for seed, n in enumerate((5, 3, 6))]
    for name, part in zip("abc", parts):
        extra = {"x_test": part["x_test"], "y_test": part["y_test"]} if name == "c" else {}
        np.savez_compressed(tmp_path / f"{name}.npz", x_train=part["x_train"], y_train=part["y_train"], **extra)
    d = load_dataset("cifar10", root=tmp_path)
    assert d.source == f"parts:{tmp_path}"
    x = np.concatenate([p["x_train"] for p in parts]).transpose(0, 3, 1, 2)
    assert torch.equal(d.x_train, torch.from_numpy(x))
    assert d.y_train.tolist() == np.concatenate([p["y_train"] for p in parts]).tolist()
    assert torch.equal(d.x_test, torch.from_numpy(parts[2]["x_test"].transpose(0, 3, 1, 2)))
    assert d.y_test.tolist() == parts[2]["y_test"].tolist()


def test_split_in_parts_script_matches_what_the_loader_expects():
    script = (SHARED_CIFAR10 / "split_in_parts.py").read_text()
    assert '"p1/a.npz": slice(0, 20000), "p2/b.npz": slice(20000, 40000), "p3/c.npz": slice(40000, 50000)' in script


def test_erosion_data_env_var_is_honoured(tmp_path, monkeypatch):
    (tmp_path / "env" / "cifar10").mkdir(parents=True)
    fake = _fake_cifar(12, 5, seed=0)
    np.savez(tmp_path / "env" / "cifar10" / "cifar10.npz", **fake)
    monkeypatch.setenv("EROSION_DATA", str(tmp_path / "env"))
    assert candidate_dirs("cifar10")[:2] == [tmp_path / "env", tmp_path / "env" / "cifar10"]
    d = load_dataset("cifar10")
    assert d.source == f"npz:{tmp_path / 'env' / 'cifar10' / 'cifar10.npz'}"
    assert torch.equal(d.x_train, torch.from_numpy(fake["x_train"].transpose(0, 3, 1, 2)))
    # an explicit root wins over the environment
    (tmp_path / "root").mkdir()
    np.savez(tmp_path / "root" / "cifar10.npz", **_fake_cifar(7, 2, seed=1))
    assert load_dataset("cifar10", root=tmp_path / "root").x_train.shape[0] == 7


def test_candidate_dirs_order(tmp_path, monkeypatch):
    monkeypatch.setenv("EROSION_DATA", str(tmp_path / "env"))
    dirs = candidate_dirs("fashion_mnist", root=tmp_path / "root")
    bases = [tmp_path / "root", tmp_path / "env", data._REPO_SHARED, data._DEBIAN, data.CACHE_DIR / "data"]
    expected = [d for b in bases for d in (b, b / "fashion-mnist", b / "fashion_mnist")]
    assert dirs == expected
    assert data._REPO_SHARED == SHARED_CIFAR10.parent


@pytest.mark.skipif(not (FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_idx_files():
    d = load_dataset("fashion_mnist", root=FASHION_MNIST)
    assert d.source == f"idx:{FASHION_MNIST}" and d.num_classes == 10
    assert d.x_train.shape == (60000, 3, 32, 32) and d.x_train.dtype == torch.uint8
    assert d.x_test.shape == (10000, 3, 32, 32)
    assert torch.bincount(d.y_train).tolist() == [6000] * 10 and d.y_train.dtype == torch.int64
    for x in (d.x_train, d.x_test):
        border = torch.ones(32, 32, dtype=torch.bool)
        border[2:30, 2:30] = False
        assert not x[:, :, border].any(), "28x28 images are zero-padded by 2 pixels"
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2]), "grey repeated in 3 channels"
    assert d.x_train[:, 0, 2:30, 2:30].float().mean() > 50  # the images themselves are there
