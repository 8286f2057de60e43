"""Layer-wise analysis: linear probes, numerical rank, feature extraction and the per-layer report."""
from __future__ import annotations

import pytest
import torch

from erosion_utils.models import build_model
from erosion_utils.probes import extract_features, layer_report, linear_probes, numerical_rank
from erosion_utils.train import with_normalization
from erosion_utils.validation import ParameterError

K, D = 10, 32


def blobs(n: int, seed: int, spread: float = 4.0):
    """Ten well-separated Gaussian clusters in D dimensions (linearly separable with overwhelming probability)."""
    means = torch.randn(K, D, generator=torch.Generator().manual_seed(0)) * spread
    y = torch.arange(n) % K
    return means[y] + torch.randn(n, D, generator=torch.Generator().manual_seed(seed)), y


def noise(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=gen), torch.randint(0, K, (n,), generator=gen)


def test_probe_reads_linearly_separable_features():
    (xtr, ytr), (xte, yte) = blobs(2000, 1), blobs(500, 2)
    [acc] = linear_probes([xtr], ytr, [xte], yte, K)  # the defaults used by layer_report
    assert acc > 0.95


def test_probe_on_noise_is_near_chance():
    (xtr, ytr), (xte, yte) = noise(2000, 1), noise(2000, 2)
    [acc] = linear_probes([xtr], ytr, [xte], yte, K, epochs=30, lr=1e-2)
    assert acc < 0.2


def test_probes_are_independent_in_one_batched_loop():
    (btr, ytr), (bte, yte) = blobs(2000, 1), blobs(500, 2)
    ntr, nte = torch.randn(2000, 8), torch.randn(500, 8)
    sep, rnd = linear_probes([btr, ntr], ytr, [bte, nte], yte, K, epochs=10, lr=1e-2)
    assert sep > 0.95 and rnd < 0.2


def test_probe_is_deterministic_in_seed():
    (xtr, ytr), (xte, yte) = noise(500, 1), noise(500, 2)
    a = linear_probes([xtr], ytr, [xte], yte, K, epochs=3, seed=4)
    assert a == linear_probes([xtr], ytr, [xte], yte, K, epochs=3, seed=4)


@pytest.mark.parametrize("rank", [1, 7, 30])
def test_numerical_rank_recovers_a_known_rank(rank):
    gen = torch.Generator().manual_seed(rank)
    features = torch.randn(200, rank, generator=gen) @ torch.randn(rank, 50, generator=gen)
    assert numerical_rank(features) == rank
    assert numerical_rank(features + 5.0) == rank, "a constant offset is removed by centring"


def test_numerical_rank_full_and_zero():
    assert numerical_rank(torch.randn(200, 50, generator=torch.Generator().manual_seed(0))) == 50
    assert numerical_rank(torch.ones(20, 5)) == 0


@pytest.mark.parametrize("rel_tol, expected", [(0.5, 1), (1e-3, 2), (1e-5, 3), (1e-7, 4), (1e-9, 4)])
def test_numerical_rank_rel_tol(rel_tol, expected):
    # centred features with singular values 1, 0.1, 0.01, 0.001: covariance eigenvalues 1, 1e-2, 1e-4, 1e-6
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(300, 4, generator=gen, dtype=torch.float64)
    u, _ = torch.linalg.qr(u - u.mean(0))
    v, _ = torch.linalg.qr(torch.randn(40, 4, generator=gen, dtype=torch.float64))
    features = u @ torch.diag(torch.tensor([1.0, 0.1, 0.01, 0.001], dtype=torch.float64)) @ v.T
    assert numerical_rank(features, rel_tol=rel_tol) == expected


@pytest.mark.parametrize("rel_tol", [0, -1e-3, 1.5])
def test_numerical_rank_rejects_bad_tolerance(rel_tol):
    with pytest.raises(ParameterError, match=r"rel_tol=.* is out of range; allowed in \(0, 1\]"):
        numerical_rank(torch.randn(10, 3), rel_tol=rel_tol)


def small_net(arch: str = "resnet18", width: float = 0.0625) -> torch.nn.Module:
    torch.manual_seed(0)
    return with_normalization(build_model(arch, K, width), [0.5] * 3, [0.25] * 3)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("arch, probe_dim, rank_dim", [("resnet18", 64, 100), ("vgg11", 64, 100),
                                                       ("mlp", 16, 20)])
def test_extract_features_respects_probe_and_rank_dims(arch, probe_dim, rank_dim):
    model = small_net(arch, 0.125)
    model.train()
    x = images(12)
    feats = extract_features(model, x, batch_size=5, probe_dim=probe_dim, rank_dim=rank_dim)
    assert list(feats) == model.tap_names
    for name, f in feats.items():
        assert f.probe.shape[0] == f.rank.shape[0] == 12
        assert 1 <= f.probe.shape[1] <= probe_dim, name
        assert f.rank.shape[1] == min(rank_dim, f.full_dim), name
        assert f.probe.dtype == f.rank.dtype == torch.float32
    assert model.training, "the model's mode is restored"
    assert not any(m._forward_hooks for m in model.modules()), "hooks are removed"


def test_extract_features_matches_the_tapped_module_output():
    model = small_net("mlp", 1 / 32)
    x = images(7)
    feats = extract_features(model, x, tap_names=["net.hidden.1"], probe_dim=10_000, rank_dim=10_000)
    model.eval()
    with torch.no_grad():
        expected = model.net.hidden[:2](model.net.flatten(model.norm(x)))
    assert torch.allclose(feats["net.hidden.1"].probe, expected)
    assert torch.allclose(feats["net.hidden.1"].rank, expected)
    assert feats["net.hidden.1"].full_dim == expected.shape[1]


def test_extract_features_is_independent_of_batch_size():
    model = small_net()
    x = images(10)
    a = extract_features(model, x, batch_size=10, probe_dim=64, rank_dim=50, seed=1)
    b = extract_features(model, x, batch_size=3, probe_dim=64, rank_dim=50, seed=1)
    for name in a:
        assert torch.allclose(a[name].probe, b[name].probe, atol=1e-5)
        assert torch.allclose(a[name].rank, b[name].rank, atol=1e-5)


def test_extract_features_probe_dim_smaller_than_channel_count():
    model = small_net("resnet18", 0.125)  # layer4 has 64 channels
    feats = extract_features(model, images(4), probe_dim=16, rank_dim=100)
    assert all(f.probe.shape[1] <= 16 for f in feats.values())


REPORT_KEYS = {"layer", "depth", "relative_depth", "dim", "probe_accuracy", "rank"}


@pytest.mark.parametrize("with_pattern", [False, True])
def test_layer_report_rows(with_pattern):
    model = small_net()
    y_tr, y_te = torch.arange(40) % K, torch.arange(20) % K
    sets = dict(probe_train=(images(40, 1), y_tr), probe_test=(images(20, 2), y_te))
    if with_pattern:
        sets.update(pattern_train=(images(40, 3), y_tr.flip(0)), pattern_test=(images(20, 4), y_te.flip(0)))
    rows = layer_report(model, num_classes=K, probe_epochs=1, probe_dim=64, rank_dim=100, **sets)
    assert [r["layer"] for r in rows] == model.tap_names
    expected_keys = REPORT_KEYS | ({"pattern_probe_accuracy"} if with_pattern else set())
    for i, r in enumerate(rows):
        assert set(r) == expected_keys
        assert r["depth"] == i
        assert r["relative_depth"] == pytest.approx(i / (len(rows) - 1))
        assert 0.0 <= r["probe_accuracy"] <= 1.0
        assert 0 <= r["rank"] <= min(20, r["dim"])  # 20 probe-test images
        if with_pattern:
            assert 0.0 <= r["pattern_probe_accuracy"] <= 1.0
    assert rows[0]["dim"] == 4 * 32 * 32  # stem of resnet18 at width 1/16: 4 channels, 32x32
