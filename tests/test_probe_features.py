"""Issue 10 item 5: layer_report extracts the raw features for the rank only from the probe-test images (the only
ones the rank uses), and every probe and rank number stays what it was."""
from __future__ import annotations

import torch

from erosion_utils import probes
from erosion_utils.models import build_model
from erosion_utils.train import with_normalization


def _setup():
    torch.manual_seed(0)
    model = with_normalization(build_model("resnet18", 10, 0.125), [0.5] * 3, [0.25] * 3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (120, 3, 32, 32), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, 10, (120,), generator=gen)
    args = dict(probe_train=(x[:60], y[:60]), probe_test=(x[60:90], y[60:90]), num_classes=10,
                pattern_train=(x[90:110], y[90:110]), pattern_test=(x[110:], y[110:]), probe_epochs=3,
                probe_dim=256, rank_dim=300, seed=3)
    return model, x, args


def test_probe_features_do_not_depend_on_whether_rank_features_are_kept():
    model, x, _ = _setup()
    with_rank = probes.extract_features(model, x[:40], probe_dim=256, rank_dim=300, seed=3)
    without = probes.extract_features(model, x[:40], probe_dim=256, rank_dim=300, seed=3, rank=False)
    assert list(with_rank) == list(without)
    for name in with_rank:
        assert torch.equal(with_rank[name].probe, without[name].probe), name
        assert without[name].rank is None and with_rank[name].rank.shape[0] == 40
        assert with_rank[name].full_dim == without[name].full_dim


def test_layer_report_extracts_rank_features_for_the_probe_test_images_only(monkeypatch):
    model, x, args = _setup()
    calls = []
    real = probes.extract_features

    def spy(model, x, *a, **kw):
        calls.append((len(x), kw.get("rank", True)))
        return real(model, x, *a, **kw)

    monkeypatch.setattr(probes, "extract_features", spy)
    rows = probes.layer_report(model, **args)
    assert calls == [(60, False), (30, True), (20, False), (10, False)]
    # the numbers are those of extracting everything (what layer_report did before)
    monkeypatch.setattr(probes, "extract_features", lambda m, x, *a, **kw: real(m, x, *a, **{**kw, "rank": True}))
    assert probes.layer_report(model, **args) == rows
