"""Result and checkpoint caches, written atomically, with provenance.

A result is keyed by a stable hash of (experiment name, full parameters, package version) and stored as
``<root>/<name>/<key>.json``. A checkpoint (never committed) lives in ``<root>/<key>.pt``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = Path(os.environ.get("EROSION_RESULTS", _REPO / "results"))
DEFAULT_CHECKPOINTS = Path(os.environ.get("EROSION_CHECKPOINTS", _REPO / ".cache" / "checkpoints"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(name: str, params: dict, version: str = __version__) -> str:
    """Stable hash of the experiment name, its parameters and the package version."""
    payload = canonical_json({"name": name, "params": params, "version": version})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def git_state() -> dict:
    """Commit and dirty flag of the repository, or of ``$EROSION_GIT_COMMIT`` where there is no .git (GPU machine)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO,
                                    capture_output=True, text=True, check=True, timeout=10).stdout.strip())
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": os.environ.get("EROSION_GIT_COMMIT", "unknown"),
                "git_dirty": os.environ.get("EROSION_GIT_DIRTY", "unknown")}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(seed: int, wall_time_s: float, device: torch.device | str) -> dict:
    import torchvision

    return {**git_state(), "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "package_version": __version__, "wall_time_s": round(wall_time_s, 2), "seed": seed}


class ResultCache:
    """JSON results under ``root``; ``get_or_compute`` is the one entry point most callers need."""

    def __init__(self, root: str | os.PathLike = DEFAULT_RESULTS):
        self.root = Path(root)

    def path(self, name: str, params: dict) -> Path:
        return self.root / name / f"{cache_key(name, params)}.json"

    def load(self, name: str, params: dict) -> dict | None:
        path = self.path(name, params)
        if not path.is_file():
            return None
        return json.loads(path.read_text())

    def save(self, name: str, params: dict, result: Any, prov: dict) -> dict:
        entry = {"name": name, "key": cache_key(name, params), "params": params, "provenance": prov,
                 "result": result}
        atomic_write_bytes(self.path(name, params), json.dumps(entry, indent=1, default=str).encode())
        return entry

    def get_or_compute(self, name: str, params: dict, compute: Callable[[], Any], seed: int,
                       device: torch.device | str) -> dict:
        """Return the cached entry for (name, params), computing and saving it on a miss."""
        hit = self.load(name, params)
        if hit is not None:
            return hit
        start = time.perf_counter()
        result = compute()
        return self.save(name, params, result, provenance(seed, time.perf_counter() - start, device))


class CheckpointCache:
    """State dicts under ``root``, keyed like results; never committed."""

    def __init__(self, root: str | os.PathLike = DEFAULT_CHECKPOINTS):
        self.root = Path(root)

    def path(self, name: str, params: dict) -> Path:
        return self.root / f"{name}-{cache_key(name, params)}.pt"

    def load(self, name: str, params: dict) -> dict | None:
        path = self.path(name, params)
        return torch.load(path, map_location="cpu", weights_only=False) if path.is_file() else None

    def save(self, name: str, params: dict, payload: dict) -> None:
        import io

        buf = io.BytesIO()
        torch.save(payload, buf)
        atomic_write_bytes(self.path(name, params), buf.getvalue())
