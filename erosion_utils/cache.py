"""Result and checkpoint caches, written atomically (mode 0644), with provenance, and checked when read.

A result is keyed by a stable hash of (experiment name, full parameters, package version) and stored as
``<root>/<name>/<key>.json``; a load checks that the file holds the entry asked for (its name, key and parameters),
and moves a file that does not, or cannot be read, aside to ``<file>.corrupt`` with a warning naming it, so that it is
recomputed (or reported missing) instead of shown. A checkpoint (never committed) lives in ``<root>/<key>.pt`` and
is loaded only by the safe loader. Smoke-profile results go to their own, git-ignored folder
(:func:`results_root`): never among the committed results.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from . import __version__
from .validation import ParameterError

_REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = Path(os.environ.get("EROSION_RESULTS", _REPO / "results"))
DEFAULT_CHECKPOINTS = Path(os.environ.get("EROSION_CHECKPOINTS", _REPO / ".cache" / "checkpoints"))
# smoke-profile results (seconds-long runs, for tests): an ignored folder unless a results folder is chosen explicitly
SMOKE_RESULTS = Path(os.environ.get("EROSION_SMOKE_RESULTS") or os.environ.get("EROSION_RESULTS")
                     or _REPO / ".cache" / "smoke-results")
FILE_MODE = 0o644  # results and checkpoints are readable by everyone who can read the repository


def results_root(profile: str) -> Path:
    """Where results of ``profile`` are cached by default: :data:`SMOKE_RESULTS` for ``smoke``, else
    :data:`DEFAULT_RESULTS` (``results/``, committed)."""
    return SMOKE_RESULTS if profile == "smoke" else DEFAULT_RESULTS


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cache_key(name: str, params: dict, version: str = __version__) -> str:
    """Stable hash of the experiment name, its parameters and the package version."""
    payload = canonical_json({"name": name, "params": params, "version": version})
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0644): a crash leaves either the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), FILE_MODE)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _git_changed_files() -> list[str]:
    """The tracked files with uncommitted changes (``git status --porcelain``); raises where git cannot tell."""
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=_REPO, capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def dirty_files() -> list[str]:
    """The tracked files with uncommitted changes, so that a measurement can say what its ``git_dirty`` was; empty
    where there is no git."""
    try:
        return _git_changed_files()
    except (OSError, subprocess.SubprocessError):
        return []


def git_state() -> dict:
    """Commit and dirty flag of the repository, or of ``$EROSION_GIT_COMMIT`` where there is no .git (GPU machine)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=_REPO, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        return {"git_commit": commit, "git_dirty": bool(_git_changed_files())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": os.environ.get("EROSION_GIT_COMMIT", "unknown"),
                "git_dirty": os.environ.get("EROSION_GIT_DIRTY", "unknown")}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


PLAN_FILE = _REPO / "erosion_utils" / "report" / "plan.py"


def plan_version() -> str:
    """A short hash of the analysis plan's file (its rules) as it is here, or "none" without one: recorded in every
    result's provenance, so a result names the plan that was in force when it was computed."""
    try:
        return hashlib.sha256(PLAN_FILE.read_bytes()).hexdigest()[:12]
    except OSError:
        return "none"


def provenance(seed: int, wall_time_s: float, device: torch.device | str) -> dict:
    import torchvision

    return {**git_state(), "utc_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "device": device_name(device), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "package_version": __version__, "wall_time_s": round(wall_time_s, 2), "seed": seed,
            "plan": plan_version()}


class ResultCache:
    """JSON results under ``root``; ``get_or_compute`` is the one entry point most callers need."""

    def __init__(self, root: str | os.PathLike = DEFAULT_RESULTS):
        self.root = Path(root)

    def path(self, name: str, params: dict) -> Path:
        return self.root / name / f"{cache_key(name, params)}.json"

    def load(self, name: str, params: dict) -> dict | None:
        """The cached entry for (name, params), or None on a miss. A file that cannot be read as an entry, or holds
        another entry (its name, key or parameters differ from the request), is moved aside to ``<file>.corrupt``
        with a warning naming it, and counts as a miss."""
        path = self.path(name, params)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            return self._set_aside(path, f"cannot be read ({err})")
        try:
            entry = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            return self._set_aside(path, f"is not a JSON result entry ({type(err).__name__}: {str(err)[:200]})")
        problem = entry_mismatch(entry, name, params)
        return entry if problem is None else self._set_aside(path, problem)

    @staticmethod
    def _set_aside(path: Path, problem: str) -> None:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
            where = f"moved it to {aside}"
        except FileNotFoundError:  # another process moved it first
            where = "another process moved it aside"
        except OSError as err:
            where = f"could not move it aside ({err})"
        warnings.warn(f"result file {path} {problem}; {where}: it is recomputed where computing is allowed, "
                      f"else reported missing", RuntimeWarning, stacklevel=3)
        return None

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


def entry_mismatch(entry: Any, name: str, params: dict) -> str | None:
    """Why ``entry`` is not the cached result of (name, params), or None when it is: an entry is a mapping with
    ``name``, ``key``, ``params``, ``provenance`` and ``result``, whose name, key and (canonical) parameters are the
    requested ones."""
    if not isinstance(entry, dict):
        return f"is not a result entry (a JSON {type(entry).__name__}, not an object)"
    absent = [k for k in ("name", "key", "params", "provenance", "result") if k not in entry]
    if absent:
        return f"is not a result entry (no {', '.join(map(repr, absent))})"
    if entry["name"] != name:
        return f"holds a {entry['name']!r} result, not a {name!r} one"
    if entry["key"] != cache_key(name, params):
        return f"holds the entry of key {str(entry['key'])[:40]!r}, not {cache_key(name, params)!r}"
    stored, asked = json.loads(canonical_json(entry["params"])), json.loads(canonical_json(params))
    if stored != asked:
        if not isinstance(stored, dict):
            return "holds parameters that are not a mapping"
        differ = sorted(k for k in set(stored) | set(asked) if stored.get(k, ...) != asked.get(k, ...))
        return f"holds other parameters than the ones asked for (differing: {', '.join(differ)[:300]})"
    return None


class CorruptCheckpointError(ValueError):
    """A checkpoint file that is truncated, corrupt, not a checkpoint, or refused by the safe loader."""


def plain(value: Any) -> Any:
    """``value`` as plain numbers, strings, lists and dicts (what ``torch.load(weights_only=True)`` and JSON accept);
    tensors and numpy scalars become numbers or lists, anything else its ``str``."""
    if value is None:
        return None
    for kind in (bool, int, float, str):  # exact types: subclasses (torch.__version__, numpy.float64) are refused
        if isinstance(value, kind):
            return kind.__str__(value) if kind is str else kind(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def checkpoint_bytes(payload: dict) -> bytes:
    """Serialise a checkpoint ``{"state_dict": {name: tensor}, ...}``: tensors stay tensors, every other entry is
    stored as plain data, so the file loads with ``weights_only=True``."""
    import io

    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError("a checkpoint needs a 'state_dict' mapping names to tensors")
    safe = {k: plain(v) for k, v in payload.items() if k != "state_dict"}
    safe["state_dict"] = {str(k): v.detach().cpu() for k, v in state.items()}
    buf = io.BytesIO()
    torch.save(safe, buf)
    return buf.getvalue()


def parse_checkpoint(data: bytes, source: str = "<bytes>") -> dict:
    """Load checkpoint bytes with the safe loader (``weights_only=True``: no pickled code runs). Raises
    :class:`CorruptCheckpointError` naming ``source`` when they are truncated, corrupt, refused or not a
    checkpoint."""
    import io

    from torch.torch_version import TorchVersion

    try:  # TorchVersion (a str) is allowed so that checkpoints written before plain() existed still load
        with torch.serialization.safe_globals([TorchVersion]):
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises EOFError, RuntimeError, UnpicklingError, ... depending on the damage
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        why = next((ln for ln in lines if "Unsupported global" in ln), lines[0] if lines else "")
        raise CorruptCheckpointError(f"checkpoint {source} cannot be loaded safely ({type(err).__name__}: "
                                     f"{why[:240]}); it is truncated, corrupt or holds more than tensors and "
                                     f"plain data") from err
    state = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CorruptCheckpointError(f"checkpoint {source} is not a checkpoint: expected a dict with a "
                                     f"'state_dict' of tensors, got {type(payload).__name__}")
    return payload


class CheckpointCache:
    """State dicts under ``root``, keyed like results; never committed.

    A checkpoint is ``{"state_dict", "summary", "provenance"}``: tensors plus plain numbers, strings, lists and
    dicts, loaded with ``weights_only=True`` so that a file in the folder can never run code."""

    def __init__(self, root: str | os.PathLike = DEFAULT_CHECKPOINTS):
        self.root = Path(root)

    def path(self, name: str, params: dict) -> Path:
        return self.root / f"{name}-{cache_key(name, params)}.pt"

    def load(self, name: str, params: dict, on_corrupt: str = "raise") -> dict | None:
        """The checkpoint for (name, params), or None on a miss. A file that cannot be loaded safely raises
        :class:`CorruptCheckpointError` (``on_corrupt="raise"``), or (``"recompute"``) is moved aside to
        ``<file>.corrupt`` with a warning naming it, and counts as a miss."""
        if on_corrupt not in ("raise", "recompute"):
            raise ParameterError(f"on_corrupt={on_corrupt!r} is not allowed; allowed: ['raise', 'recompute']")
        data = self.read_bytes(name, params)
        if data is None:
            return None
        path = self.path(name, params)
        try:
            return parse_checkpoint(data, str(path))
        except CorruptCheckpointError as err:
            if on_corrupt == "raise":
                raise
            self._set_aside(path, err)
            return None

    def verified_bytes(self, name: str, params: dict) -> bytes | None:
        """The file's bytes (to ship to another machine) after checking that they load safely, or None on a miss;
        a file that does not load is moved aside to ``<file>.corrupt`` with a warning naming it, and is a miss."""
        data = self.read_bytes(name, params)
        if data is None:
            return None
        try:
            parse_checkpoint(data, str(self.path(name, params)))
        except CorruptCheckpointError as err:
            self._set_aside(self.path(name, params), err)
            return None
        return data

    @staticmethod
    def _set_aside(path: Path, err: Exception) -> None:
        aside = path.with_name(path.name + ".corrupt")
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another process moved it first
            pass
        warnings.warn(f"{err}; moved it to {aside} and will recompute it", RuntimeWarning, stacklevel=3)

    def read_bytes(self, name: str, params: dict) -> bytes | None:
        """The raw file, or None on a miss; not checked (see :meth:`verified_bytes`)."""
        path = self.path(name, params)
        return path.read_bytes() if path.is_file() else None

    def write_bytes(self, name: str, params: dict, data: bytes) -> None:
        """Store checkpoint bytes received from elsewhere, atomically, after checking they load safely."""
        parse_checkpoint(data, f"received for {self.path(name, params)}")
        atomic_write_bytes(self.path(name, params), data)

    def save(self, name: str, params: dict, payload: dict) -> None:
        atomic_write_bytes(self.path(name, params), checkpoint_bytes(payload))
