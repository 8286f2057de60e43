"""Result and checkpoint caches: keys, hits and misses, atomic writes, provenance."""
from __future__ import annotations

import datetime as dt
import io
import json
import os
from dataclasses import fields, replace

import pytest
import torch
import torchvision

from erosion_utils import __version__, cache
from erosion_utils.cache import CheckpointCache, CorruptCheckpointError, ResultCache, cache_key, provenance
from erosion_utils.experiments import ErosionConfig, finetune_params

PARAMS = {"a": 1, "b": [1, 2], "c": {"d": "x"}}
PROVENANCE_KEYS = {"git_commit", "git_dirty", "utc_time", "device", "torch", "torchvision", "wall_time_s", "seed"}


def all_files(root) -> list[str]:
    """Every file under ``root``, hidden (temporary) ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_miss_then_hit(result_cache):
    assert result_cache.load("exp", PARAMS) is None
    entry = result_cache.save("exp", PARAMS, {"acc": 0.5}, {"seed": 0})
    assert entry == {"name": "exp", "key": cache_key("exp", PARAMS), "params": PARAMS, "provenance": {"seed": 0},
                     "result": {"acc": 0.5}}
    assert result_cache.load("exp", PARAMS) == entry
    assert result_cache.path("exp", PARAMS) == result_cache.root / "exp" / f"{entry['key']}.json"
    assert result_cache.load("exp", {**PARAMS, "a": 2}) is None
    assert result_cache.load("other", PARAMS) is None


def test_key_is_stable_and_ignores_dict_order():
    key = cache_key("exp", PARAMS)
    assert key == cache_key("exp", dict(reversed(list(PARAMS.items()))))
    assert len(key) == 20 and int(key, 16) >= 0
    assert key == cache_key("exp", PARAMS, version=__version__)


def test_key_changes_with_name_and_version():
    assert cache_key("exp", PARAMS) != cache_key("exp2", PARAMS)
    assert cache_key("exp", PARAMS, version="0.1.0") != cache_key("exp", PARAMS, version="0.2.0")


def _changed(value):
    if value is None:
        return 7
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 0.5
    if isinstance(value, str):
        return value + "_other"
    raise TypeError(f"no rule to change {value!r}")


@pytest.mark.parametrize("name", [f.name for f in fields(ErosionConfig)])
def test_key_changes_when_any_single_config_field_changes(name, result_cache):
    base = ErosionConfig()
    changed = replace(base, **{name: _changed(getattr(base, name))})
    assert changed != base
    for patterned in (True, False):
        assert cache_key("finetune", finetune_params(changed, patterned)) != \
            cache_key("finetune", finetune_params(base, patterned))
        assert result_cache.path("finetune", finetune_params(changed, patterned)) != \
            result_cache.path("finetune", finetune_params(base, patterned))
    assert cache_key("finetune", finetune_params(base, True)) != cache_key("finetune", finetune_params(base, False))


def test_pretrain_key_ignores_pattern_and_finetune_fields():
    base = ErosionConfig()
    other = replace(base, pattern="noise", fraction=0.5, finetune_lr=0.1, n_evals=5)
    assert cache_key("pretrain", other.pretrain_params()) == cache_key("pretrain", base.pretrain_params())
    assert cache_key("pretrain", replace(base, arch="mlp").pretrain_params()) != \
        cache_key("pretrain", base.pretrain_params())


# --- atomic writes ----------------------------------------------------------------------------------------------

class _HalfWriter:
    """A file object that writes half of what it is given, then fails (a crash in the middle of the write)."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        self.f.write(data[:len(data) // 2])
        self.f.flush()
        raise OSError("simulated crash mid-write")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _crash_replace(*_args, **_kwargs):
    raise OSError("simulated crash before rename")


def _crash_fsync(_fd):
    raise KeyboardInterrupt("simulated interrupt before fsync returns")


CRASHES = {
    "mid-write": lambda mp: mp.setattr(cache.os, "fdopen", lambda fd, mode: _HalfWriter(io.open(fd, mode))),
    "fsync": lambda mp: mp.setattr(cache.os, "fsync", _crash_fsync),
    "rename": lambda mp: mp.setattr(cache.os, "replace", _crash_replace),
}


@pytest.mark.parametrize("crash", list(CRASHES))
def test_crash_during_write_leaves_no_entry_and_no_temp_file(crash, result_cache, monkeypatch):
    with monkeypatch.context() as mp:
        CRASHES[crash](mp)
        with pytest.raises((OSError, KeyboardInterrupt)):
            result_cache.save("exp", PARAMS, {"acc": 1.0}, {})
    assert result_cache.load("exp", PARAMS) is None
    assert all_files(result_cache.root) == []
    # the cache still works afterwards
    result_cache.save("exp", PARAMS, {"acc": 1.0}, {})
    assert result_cache.load("exp", PARAMS)["result"] == {"acc": 1.0}
    assert all_files(result_cache.root) == [str(result_cache.path("exp", PARAMS).relative_to(result_cache.root))]


@pytest.mark.parametrize("crash", list(CRASHES))
def test_crash_while_overwriting_keeps_the_old_entry(crash, result_cache, monkeypatch):
    old = result_cache.save("exp", PARAMS, {"acc": 0.25}, {})
    with monkeypatch.context() as mp:
        CRASHES[crash](mp)
        with pytest.raises((OSError, KeyboardInterrupt)):
            result_cache.save("exp", PARAMS, {"acc": 0.75}, {})
    assert result_cache.load("exp", PARAMS) == old
    assert len(all_files(result_cache.root)) == 1


def test_unserialisable_result_writes_nothing(result_cache):
    circular: list = []
    circular.append(circular)
    with pytest.raises(ValueError):
        result_cache.save("exp", PARAMS, circular, {})
    assert all_files(result_cache.root) == []


def test_crash_in_compute_writes_nothing(result_cache):
    def compute():
        raise RuntimeError("training diverged")

    with pytest.raises(RuntimeError):
        result_cache.get_or_compute("exp", PARAMS, compute, seed=0, device="cpu")
    assert all_files(result_cache.root) == []


def test_checkpoint_crash_leaves_nothing(checkpoint_cache, monkeypatch):
    monkeypatch.setattr(cache.os, "replace", _crash_replace)
    with pytest.raises(OSError):
        checkpoint_cache.save("pretrain", PARAMS, {"state_dict": {"w": torch.ones(3)}})
    monkeypatch.undo()
    assert checkpoint_cache.load("pretrain", PARAMS) is None
    assert all_files(checkpoint_cache.root) == []


# --- get_or_compute and provenance --------------------------------------------------------------------------------

def test_get_or_compute_computes_once_then_hits(result_cache):
    calls = []

    def compute():
        calls.append(1)
        return {"records": [{"step": 0, "acc": 0.1}], "n": len(calls)}

    first = result_cache.get_or_compute("exp", PARAMS, compute, seed=3, device="cpu")
    second = result_cache.get_or_compute("exp", PARAMS, compute, seed=3, device="cpu")
    assert len(calls) == 1
    assert second == first
    assert first["result"] == {"records": [{"step": 0, "acc": 0.1}], "n": 1}
    assert PROVENANCE_KEYS <= set(first["provenance"])
    assert first["provenance"]["seed"] == 3
    other = result_cache.get_or_compute("exp", {**PARAMS, "a": 99}, compute, seed=3, device="cpu")
    assert len(calls) == 2 and other["result"]["n"] == 2


def test_provenance_fields():
    prov = provenance(seed=5, wall_time_s=1.23456, device="cpu")
    assert PROVENANCE_KEYS <= set(prov)
    assert prov["seed"] == 5
    assert prov["wall_time_s"] == 1.23
    assert prov["torch"] == torch.__version__ and prov["torchvision"] == torchvision.__version__
    assert prov["device"].startswith("cpu")
    assert dt.datetime.fromisoformat(prov["utc_time"]).utcoffset() == dt.timedelta(0)
    assert isinstance(prov["git_commit"], str) and prov["git_commit"]
    json.dumps(prov)  # must be storable as JSON


def test_provenance_without_git_falls_back_to_environment(monkeypatch):
    def no_git(*_args, **_kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(cache.subprocess, "run", no_git)
    monkeypatch.setenv("EROSION_GIT_COMMIT", "abc123")
    monkeypatch.setenv("EROSION_GIT_DIRTY", "False")
    assert cache.git_state() == {"git_commit": "abc123", "git_dirty": "False"}


def test_saved_file_is_plain_json(result_cache):
    result_cache.save("exp", PARAMS, {"acc": 0.5}, {"seed": 1})
    on_disk = json.loads(result_cache.path("exp", PARAMS).read_text())
    assert on_disk["result"] == {"acc": 0.5} and on_disk["params"] == PARAMS


# --- checkpoints ------------------------------------------------------------------------------------------------

def test_checkpoint_round_trip(checkpoint_cache):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    payload = {"state_dict": net.state_dict(), "summary": {"train_accuracy": 1.0, "epochs": 5}}
    assert checkpoint_cache.load("pretrain", PARAMS) is None
    checkpoint_cache.save("pretrain", PARAMS, payload)
    assert checkpoint_cache.path("pretrain", PARAMS).name == f"pretrain-{cache_key('pretrain', PARAMS)}.pt"
    loaded = checkpoint_cache.load("pretrain", PARAMS)
    assert loaded["summary"] == payload["summary"]
    assert loaded["state_dict"].keys() == payload["state_dict"].keys()
    for k, v in payload["state_dict"].items():
        assert torch.equal(loaded["state_dict"][k], v)
    fresh = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    fresh.load_state_dict(loaded["state_dict"])
    assert torch.equal(fresh[0].weight, net[0].weight)
    assert checkpoint_cache.load("pretrain", {**PARAMS, "a": 2}) is None
    assert all_files(checkpoint_cache.root) == [checkpoint_cache.path("pretrain", PARAMS).name]


def test_default_roots_follow_environment_at_import():
    # the defaults are fixed at import; tests must never write there, so only check they are paths
    assert isinstance(cache.DEFAULT_RESULTS, os.PathLike) and isinstance(cache.DEFAULT_CHECKPOINTS, os.PathLike)
    assert ResultCache().root == cache.DEFAULT_RESULTS
    assert CheckpointCache().root == cache.DEFAULT_CHECKPOINTS


# --- safe checkpoint loading (weights_only=True) ------------------------------------------------------------------

class _WritesMarker:
    """A pickled object whose unpickling writes a file: what an attacker would drop into the checkpoint folder."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _payload(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 30 * 30, 10))
    net(torch.randn(2, 3, 32, 32))  # moves the BatchNorm running statistics and counter
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["half"] = torch.randn(5).to(torch.bfloat16)
    return {"state_dict": state, "summary": {"train_accuracy": 0.998, "epochs": 20, "reached_target": False,
                                             "note": None},
            "provenance": {"git_commit": "abc", "git_dirty": False, "device": "cpu", "wall_time_s": 1.25}}


def test_checkpoint_round_trips_bit_identically(checkpoint_cache):
    payload = _payload()
    checkpoint_cache.save("pretrain", PARAMS, payload)
    path = checkpoint_cache.path("pretrain", PARAMS)
    loaded = checkpoint_cache.load("pretrain", PARAMS)
    assert loaded["summary"] == payload["summary"] and loaded["provenance"] == payload["provenance"]
    assert list(loaded["state_dict"]) == list(payload["state_dict"])
    for k, v in payload["state_dict"].items():
        got = loaded["state_dict"][k]
        assert got.dtype == v.dtype and got.shape == v.shape
        assert got.view(-1).view(torch.uint8).tolist() == v.reshape(-1).view(torch.uint8).tolist(), k  # every bit
    torch.load(path, map_location="cpu", weights_only=True)  # the file itself is what the safe loader accepts


def test_provenance_as_written_by_the_package_loads_safely(checkpoint_cache):
    payload = {**_payload(), "provenance": provenance(seed=0, wall_time_s=1.0, device="cpu")}
    assert type(payload["provenance"]["torch"]) is not str  # torch.__version__ is a str subclass the loader refuses
    checkpoint_cache.save("pretrain", PARAMS, payload)
    loaded = checkpoint_cache.load("pretrain", PARAMS)
    assert loaded["provenance"] == json.loads(json.dumps(payload["provenance"]))
    assert type(loaded["provenance"]["torch"]) is str


def test_summary_types_the_safe_loader_refuses_are_stored_as_plain_data(checkpoint_cache):
    import numpy as np

    payload = _payload()
    payload["summary"] = {"acc": np.float32(0.5), "epochs": np.int64(3), "shape": (1, 2), "t": torch.tensor(0.25),
                          "when": dt.date(2026, 1, 2)}
    checkpoint_cache.save("pretrain", PARAMS, payload)
    loaded = torch.load(checkpoint_cache.path("pretrain", PARAMS), map_location="cpu", weights_only=True)
    assert loaded["summary"] == {"acc": 0.5, "epochs": 3, "shape": [1, 2], "t": 0.25, "when": "2026-01-02"}
    assert type(loaded["summary"]["acc"]) is float and type(loaded["summary"]["epochs"]) is int


def test_checkpoint_that_runs_code_on_load_is_refused_and_never_runs(checkpoint_cache, tmp_path):
    marker = tmp_path / "pwned"
    path = checkpoint_cache.path("pretrain", PARAMS)
    path.parent.mkdir(parents=True)
    evil = _payload()
    evil["summary"] = _WritesMarker(marker)
    torch.save(evil, path)
    with pytest.raises(CorruptCheckpointError, match=str(path)):
        checkpoint_cache.load("pretrain", PARAMS)
    assert not marker.exists()
    with pytest.warns(RuntimeWarning, match=str(path)):
        assert checkpoint_cache.load("pretrain", PARAMS, on_corrupt="recompute") is None
    assert not marker.exists()
    assert not path.exists() and path.with_name(path.name + ".corrupt").is_file()
    with pytest.raises(CorruptCheckpointError):  # bytes received from elsewhere are checked the same way
        checkpoint_cache.write_bytes("pretrain", PARAMS, path.with_name(path.name + ".corrupt").read_bytes())
    assert not marker.exists() and not path.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "not a checkpoint", "no tensors"])
def test_damaged_checkpoint_raises_an_error_naming_the_file(damage, checkpoint_cache):
    checkpoint_cache.save("pretrain", PARAMS, _payload())
    path = checkpoint_cache.path("pretrain", PARAMS)
    good = path.read_bytes()
    other = io.BytesIO()
    torch.save([1, 2, 3] if damage == "not a checkpoint" else {"state_dict": {"w": [1.0]}}, other)
    path.write_bytes({"truncated": good[:len(good) // 2], "empty": b"", "garbage": b"\x00not a zip" * 10,
                      "not a checkpoint": other.getvalue(), "no tensors": other.getvalue()}[damage])
    with pytest.raises(CorruptCheckpointError, match=str(path)) as err:
        checkpoint_cache.load("pretrain", PARAMS)
    assert isinstance(err.value, ValueError)
    assert path.is_file()  # "raise" leaves the file where it is


def test_on_corrupt_must_be_an_allowed_value(checkpoint_cache):
    from erosion_utils.validation import ParameterError

    with pytest.raises(ParameterError, match="recompute"):
        checkpoint_cache.load("pretrain", PARAMS, on_corrupt="ignore")


def test_checkpoint_bytes_travel_between_caches(checkpoint_cache, tmp_path):
    checkpoint_cache.save("pretrain", PARAMS, _payload())
    data = checkpoint_cache.read_bytes("pretrain", PARAMS)
    other = CheckpointCache(tmp_path / "elsewhere")
    assert other.read_bytes("pretrain", PARAMS) is None
    other.write_bytes("pretrain", PARAMS, data)
    assert other.path("pretrain", PARAMS).read_bytes() == data


def test_truncated_pretrain_checkpoint_is_recomputed_not_a_crash(cifar10_slice_npz, tmp_path):
    """End to end: a pretraining whose checkpoint was cut short is trained again and rewritten atomically."""
    from erosion_utils import profiles
    from erosion_utils.experiments import Context, pretrained_model

    ctx = Context(device="cpu", results=ResultCache(tmp_path / "results"),
                  checkpoints=CheckpointCache(tmp_path / "checkpoints"), data_root=str(cifar10_slice_npz))
    cfg = replace(profiles.resolve("erosion", "smoke").config, arch="mlp")
    first, _ = pretrained_model(cfg, ctx)
    path = ctx.checkpoints.path("pretrain", cfg.pretrain_params())
    good = path.read_bytes()
    path.write_bytes(good[:len(good) // 3])
    with pytest.warns(RuntimeWarning, match="will recompute"):
        again, summary = pretrained_model(cfg, ctx)
    assert path.with_name(path.name + ".corrupt").read_bytes() == good[:len(good) // 3]
    reloaded = ctx.checkpoints.load("pretrain", cfg.pretrain_params())  # a valid checkpoint again
    assert reloaded["summary"] == summary
    for k, v in first.state_dict().items():  # CPU training is deterministic: the same weights come back
        assert torch.equal(again.state_dict()[k], v) and torch.equal(reloaded["state_dict"][k], v)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_checkpoint_written_by_the_previous_version_still_loads(checkpoint_cache):
    """Before plain() the provenance held torch.__version__ as saved; the safe loader accepts that one class."""
    payload = {**_payload(), "provenance": provenance(seed=0, wall_time_s=1.0, device="cpu")}
    path = checkpoint_cache.path("pretrain", PARAMS)
    path.parent.mkdir(parents=True)
    torch.save(payload, path)
    loaded = checkpoint_cache.load("pretrain", PARAMS)
    assert loaded["provenance"]["torch"] == torch.__version__
    assert torch.equal(loaded["state_dict"]["half"], payload["state_dict"]["half"])
