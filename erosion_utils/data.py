"""Datasets as uint8 tensors (N, 3, 32, 32) with integer labels.

Sources, tried in order for each candidate folder:
- ``cifar10.npz`` / ``cifar100.npz`` in the layout of ``shared/data/cifar10/cifar10.npz``;
- the three parts ``a.npz, b.npz, c.npz`` written by ``split_in_parts.py`` (for the GPU machine);
- torchvision's ``cifar-10-batches-py`` / ``cifar-100-python`` folder;
- Fashion-MNIST IDX files (``train-images-idx3-ubyte.gz`` ...), e.g. Debian's ``dataset-fashion-mnist``.
Candidate folders: the ``root`` argument, ``$EROSION_DATA``, the project's ``../shared/data/<name>``,
Debian's ``/usr/share/datasets/<name>`` and ``~/.cache/erosion_utils/data``. With ``download=True``
torchvision downloads into the cache folder.
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .validation import ParameterError, check_choice, check_number

DATASETS = ("cifar10", "cifar100", "fashion_mnist")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "fashion_mnist": 10}
# images per class in the (class-balanced) training and test splits: the most a subset can draw
PER_CLASS = {"cifar10": (5000, 1000), "cifar100": (500, 100), "fashion_mnist": (6000, 1000)}
CLASS_NAMES = {
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
}
CACHE_DIR = Path(os.environ.get("EROSION_CACHE", Path.home() / ".cache" / "erosion_utils"))
_REPO_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_DEBIAN = Path("/usr/share/datasets")
_FOLDER_NAMES = {"cifar10": ["cifar10"], "cifar100": ["cifar100"], "fashion_mnist": ["fashion-mnist", "fashion_mnist"]}


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset was found. The message lists where we looked and how to fix it."""


@dataclass
class ImageData:
    """A labelled image dataset: uint8 images (N, C, H, W) and int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    source: str
    _stats: tuple | None = field(default=None, repr=False, compare=False)

    @property
    def image_size(self) -> int:
        return int(self.x_train.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.x_train.shape[1])

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images on the [0, 1] scale (computed once)."""
        if self._stats is None:
            chans = [self.x_train[:, c].double() / 255.0 for c in range(self.channels)]
            self._stats = ([x.mean().item() for x in chans], [x.std(unbiased=False).item() for x in chans])
        return self._stats


def candidate_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``name``, in order."""
    bases: list[Path] = []
    if root:
        bases.append(Path(root))
    if os.environ.get("EROSION_DATA"):
        bases.append(Path(os.environ["EROSION_DATA"]))
    bases += [_REPO_SHARED, _DEBIAN, CACHE_DIR / "data"]
    dirs: list[Path] = []
    for base in bases:
        dirs.append(base)
        dirs += [base / folder for folder in _FOLDER_NAMES[name]]
    return list(dict.fromkeys(dirs))


def load_dataset(name: str = "cifar10", root: str | os.PathLike | None = None, download: bool = False) -> ImageData:
    """Load ``name`` from the first source found (see module docstring)."""
    check_choice("dataset", name, DATASETS)
    if root is not None and Path(root).is_file():
        return _from_npz(name, Path(root))
    looked = []
    for folder in candidate_dirs(name, root):
        looked.append(str(folder))
        found = _try_folder(name, folder)
        if found is not None:
            return found
    if download:
        return _download(name, CACHE_DIR / "data")
    raise DatasetNotFoundError(
        f"dataset {name!r} not found. Looked in: {looked}. Fix: pass root=PATH (a folder or .npz file), set "
        f"EROSION_DATA=PATH, or allow a download with download=True or EROSION_DOWNLOAD=1 (torchvision downloads "
        f"into {CACHE_DIR / 'data'})."
    )


def _try_folder(name: str, folder: Path) -> ImageData | None:
    if not folder.is_dir():
        return None
    if name in ("cifar10", "cifar100"):
        if (folder / f"{name}.npz").is_file():
            return _from_npz(name, folder / f"{name}.npz")
        parts = [folder / f"{p}.npz" for p in "abc"]
        if name == "cifar10" and all(p.is_file() for p in parts):
            return _from_parts(parts)
        batches = folder / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
        if batches.is_dir():
            return _from_torchvision(name, folder, download=False)
        return None
    if (folder / "train-images-idx3-ubyte.gz").is_file() or (folder / "train-images-idx3-ubyte").is_file():
        return _from_idx(folder)
    raw = folder / "FashionMNIST" / "raw"
    if (raw / "train-images-idx3-ubyte").is_file():
        return _from_idx(raw)
    return None


def _nhwc(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _make(name: str, xtr, ytr, xte, yte, source: str) -> ImageData:
    return ImageData(name, _nhwc(xtr), torch.as_tensor(np.asarray(ytr), dtype=torch.int64), _nhwc(xte),
                     torch.as_tensor(np.asarray(yte), dtype=torch.int64), NUM_CLASSES[name], source)


def _from_npz(name: str, path: Path) -> ImageData:
    d = np.load(path)
    return _make(name, d["x_train"], d["y_train"], d["x_test"], d["y_test"], f"npz:{path}")


def _from_parts(parts: list[Path]) -> ImageData:
    loaded = [np.load(p) for p in parts]
    xtr = np.concatenate([d["x_train"] for d in loaded])
    ytr = np.concatenate([d["y_train"] for d in loaded])
    return _make("cifar10", xtr, ytr, loaded[-1]["x_test"], loaded[-1]["y_test"], f"parts:{parts[0].parent}")


def _torchvision_class(name: str, check: bool):
    import torchvision

    base = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100

    class Local(base):  # regenerated pickles have their own md5; see shared/data/cifar10/README.md
        def _check_integrity(self):
            return True if not check else super()._check_integrity()

        def _load_meta(self):  # torchvision checks the md5 of batches.meta separately
            if check:
                return super()._load_meta()
            import pickle

            with open(os.path.join(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                self.classes = pickle.load(f, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return Local


def _from_torchvision(name: str, folder: Path, download: bool) -> ImageData:
    cls = _torchvision_class(name, check=download)
    train = cls(str(folder), train=True, download=download)
    test = cls(str(folder), train=False, download=download)
    return _make(name, train.data, train.targets, test.data, test.targets, f"torchvision:{folder}")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _from_idx(folder: Path) -> ImageData:
    def find(stem: str) -> Path:
        gz = folder / f"{stem}.gz"
        return gz if gz.is_file() else folder / stem

    def to_rgb32(x: np.ndarray) -> np.ndarray:  # 28x28 grey -> 32x32x3: zero-pad 2 pixels, repeat channels
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        return np.repeat(x[..., None], 3, axis=-1)

    return _make("fashion_mnist", to_rgb32(_read_idx(find("train-images-idx3-ubyte"))),
                 _read_idx(find("train-labels-idx1-ubyte")).astype(np.int64),
                 to_rgb32(_read_idx(find("t10k-images-idx3-ubyte"))),
                 _read_idx(find("t10k-labels-idx1-ubyte")).astype(np.int64), f"idx:{folder}")


def _download(name: str, folder: Path) -> ImageData:
    folder.mkdir(parents=True, exist_ok=True)
    if name == "fashion_mnist":
        import torchvision

        torchvision.datasets.FashionMNIST(str(folder), train=True, download=True)
        torchvision.datasets.FashionMNIST(str(folder), train=False, download=True)
        return _from_idx(folder / "FashionMNIST" / "raw")
    return _from_torchvision(name, folder, download=True)


def balanced_indices(labels: torch.Tensor, n_per_class: int, seed: int) -> torch.Tensor:
    """Deterministic, class-balanced subset: ``n_per_class`` indices of each class, sorted."""
    check_number("n_per_class", n_per_class, low=1, integer=True)
    gen = torch.Generator().manual_seed(seed)
    picked = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < n_per_class:
            raise ParameterError(f"n_per_class={n_per_class} exceeds the {len(idx)} images of class {c}")
        picked.append(idx[torch.randperm(len(idx), generator=gen)[:n_per_class]])
    return torch.sort(torch.cat(picked)).values


def subset(data: ImageData, train_per_class: int | None, test_per_class: int | None, seed: int) -> ImageData:
    """A class-balanced subset of train and test (``None`` keeps the whole split)."""
    xtr, ytr, xte, yte = data.x_train, data.y_train, data.x_test, data.y_test
    if train_per_class:
        i = balanced_indices(ytr, train_per_class, seed)
        xtr, ytr = xtr[i], ytr[i]
    if test_per_class:
        i = balanced_indices(yte, test_per_class, seed + 1)
        xte, yte = xte[i], yte[i]
    return ImageData(data.name, xtr, ytr, xte, yte, data.num_classes, data.source)
