"""Fine-tuning options of the mechanism and mitigation chapters: warm-up, weight diagnostics, freezing, head-only
training (LP-FT), L2-SP and corner erasing; their validation and their cache keys."""
from __future__ import annotations

import math

import pytest
import torch

from erosion_utils.cache import cache_key
from erosion_utils.experiments import ErosionConfig, finetune_params
from erosion_utils.experiments.core import LATER_FIELDS, new_model, snapshot_weights, weight_stats
from erosion_utils.data import ImageData
from erosion_utils.train import Constraints, TrainConfig, erase_corners, l2sp_penalty, lr_factor, train
from erosion_utils.validation import ParameterError


def tiny_data(n: int = 64, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return ImageData("cifar10", x, y, x[:16], y[:16], 10, "synthetic")


def tiny_model(arch: str = "resnet18", **kw):
    return new_model(ErosionConfig(arch=arch, width=0.0625, mlp_hidden=16, **kw), tiny_data())


# --- warm-up -------------------------------------------------------------------------------------------------------

def test_warmup_ramps_linearly_to_one_then_follows_the_schedule():
    f = [lr_factor(s, 100, "constant", warmup_steps=4) for s in range(8)]
    assert f == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    g = [lr_factor(s, 100, "cosine", warmup_steps=10) for s in range(20)]
    assert g[9] == pytest.approx(lr_factor(9, 100, "cosine"))
    assert g[2] == pytest.approx(0.3 * lr_factor(2, 100, "cosine"))
    assert [lr_factor(s, 100, "constant", 0) for s in range(3)] == [1.0, 1.0, 1.0]


def test_warmup_reaches_the_optimiser():
    model = tiny_model("mlp", mlp_depth=1)
    data = tiny_data(64)
    seen = []
    orig = torch.optim.SGD.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)

    torch.optim.SGD.step = spy
    try:
        train(model, data.x_train, data.y_train, TrainConfig(epochs=2, lr=0.1, batch_size=16, warmup_epochs=1), 0)
    finally:
        torch.optim.SGD.step = orig
    assert seen == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1])


@pytest.mark.parametrize("bad", [-0.5, math.inf, math.nan, 3, 4.0, "1"])
def test_bad_warmup_is_refused_naming_the_parameter(bad):
    with pytest.raises(ParameterError, match="finetune_warmup_epochs"):
        ErosionConfig(finetune_epochs=3, finetune_warmup_epochs=bad).validate()


# --- weight diagnostics --------------------------------------------------------------------------------------------

def test_weight_distance_is_zero_at_the_start_and_grows_with_training():
    model = tiny_model("mlp", mlp_depth=2)
    ref = snapshot_weights(model)
    start = weight_stats(model, ref)
    assert start["weight_distance"] == 0.0
    assert start["weight_norm"] == pytest.approx(math.sqrt(sum(float((p ** 2).sum()) for p in ref.values())))
    data = tiny_data(64)
    dists = []
    train(model, data.x_train, data.y_train, TrainConfig(epochs=4, lr=0.1, batch_size=16), 0, eval_at=[0, 2, 16],
          eval_fn=lambda m: dists.append(weight_stats(m, ref)["weight_distance"]) or {})
    assert dists[0] == 0.0 and 0 < dists[1] < dists[2]


def test_finetune_records_carry_weight_diagnostics(cpu_context, cifar10_slice_npz):
    from erosion_utils.experiments import finetune_run
    from erosion_utils.profiles import resolve

    cpu_context.data_root = str(cifar10_slice_npz)
    cfg = resolve("erosion", "smoke").config
    recs = finetune_run(cfg, True, cpu_context)["result"]["records"]
    assert recs[0]["weight_distance"] == 0.0
    assert recs[-1]["weight_distance"] > 0 and all(r["weight_norm"] > 0 for r in recs)


# --- freezing, head-only, L2-SP, corner erasing --------------------------------------------------------------------

@pytest.mark.parametrize("arch,stages", [("resnet18", 5), ("vgg11", 5), ("mlp", 3)])
def test_frozen_stages_keep_parameters_and_batchnorm_statistics(arch, stages):
    model = tiny_model(arch, mlp_depth=3)
    assert len(model.stage_names) == stages
    frozen = tuple(m for st in model.stage_names[:2] for m in st)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = tiny_data(64)
    train(model, data.x_train, data.y_train, TrainConfig(epochs=1, lr=0.1, batch_size=16), 0,
          constraints=Constraints(frozen=frozen))
    after = model.state_dict()
    in_frozen = [k for k in before if any(k.startswith(m + ".") for m in frozen)]
    assert in_frozen and all(torch.equal(before[k], after[k]) for k in in_frozen), "frozen weights and BN buffers"
    rest = [k for k in before if k not in in_frozen and after[k].is_floating_point() and "norm." not in k]
    assert any(not torch.equal(before[k], after[k]) for k in rest), "the other layers train"
    assert all(p.requires_grad for p in model.parameters()), "requires_grad restored"


def test_head_only_phase_leaves_the_backbone_unchanged_then_trains_everything():
    model = tiny_model("resnet18")
    head = tuple(model.head_names)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = tiny_data(64)
    snaps = {}
    train(model, data.x_train, data.y_train, TrainConfig(epochs=3, lr=0.1, batch_size=16), 0, eval_at=[4, 12],
          eval_fn=lambda m: snaps.setdefault(len(snaps), {k: v.clone() for k, v in m.state_dict().items()}) and {},
          constraints=Constraints(head=head, head_only_steps=4))
    mid, end = snaps[0], snaps[1]
    backbone = [k for k in before if not k.startswith("net.fc.")]
    assert all(torch.equal(before[k], mid[k]) for k in backbone), "backbone (weights and BN statistics) fixed"
    assert not torch.equal(before["net.fc.weight"], mid["net.fc.weight"]), "the head trains alone"
    assert not torch.equal(mid["net.layer1.0.conv1.weight"], end["net.layer1.0.conv1.weight"]), "then all layers"


def test_l2sp_gradient_matches_the_analytic_one():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    anchor = {n: p.detach() + torch.randn_like(p) for n, p in model.named_parameters() if n.startswith("0.")}
    alpha = 0.37
    l2sp_penalty(model, anchor, alpha).backward()
    for n, p in model.named_parameters():
        if n in anchor:
            assert torch.allclose(p.grad, alpha * (p.detach() - anchor[n]))
        else:
            assert p.grad is None


def test_l2sp_replaces_weight_decay_on_the_backbone():
    """One SGD step without momentum: backbone moves by lr*(grad + alpha*(theta-theta0)), with no weight decay."""
    torch.manual_seed(0)
    model = tiny_model("mlp", mlp_depth=1)
    x, y = tiny_data(16).x_train, tiny_data(16).y_train
    anchor = {n: p.detach().clone() - 0.01 for n, p in model.named_parameters() if not n.startswith("net.classifier")}
    ref = {n: p.detach().clone() for n, p in model.named_parameters()}
    twin = tiny_model("mlp", mlp_depth=1)
    twin.load_state_dict(model.state_dict())
    cfg = TrainConfig(epochs=1, lr=0.1, momentum=0.0, weight_decay=0.5, batch_size=16, nesterov=False)
    train(model, x, y, cfg, 0, constraints=Constraints(head=("net.classifier",), anchor=anchor, l2sp_alpha=2.0))
    twin.train()
    loss = torch.nn.functional.cross_entropy(twin(x), y)
    grads = dict(zip([n for n, _ in twin.named_parameters()], torch.autograd.grad(loss, list(twin.parameters()))))
    for n, p in model.named_parameters():
        extra = 2.0 * (ref[n] - anchor[n]) if n in anchor else 0.5 * ref[n]
        assert torch.allclose(p.detach(), ref[n] - 0.1 * (grads[n] + extra), atol=1e-5), n


def test_erase_corners_changes_only_corner_pixels():
    x = torch.full((200, 3, 32, 32), 7, dtype=torch.uint8)
    out = erase_corners(x, 0.5, 4, torch.Generator().manual_seed(0))
    changed = (out != x).any(1)  # (N, H, W)
    corner = torch.zeros(32, 32, dtype=torch.bool)
    corner[:4, :4] = corner[:4, -4:] = corner[-4:, :4] = corner[-4:, -4:] = True
    assert not changed[:, ~corner].any()
    per_image = changed.flatten(1).any(1).float().mean().item()
    assert 0.35 < per_image < 0.65, "about half of the images are erased"
    assert torch.equal(erase_corners(x, 0.0, 4, torch.Generator()), x)
    assert torch.equal(x, torch.full_like(x, 7)), "the input is not modified"


@pytest.mark.parametrize("bad,name", [
    ({"arch": "resnet18", "freeze_stages": 6}, "freeze_stages"), ({"arch": "mlp", "mlp_depth": 2, "freeze_stages": 3},
                                                                   "freeze_stages"),
    ({"freeze_stages": -1}, "freeze_stages"), ({"l2sp_alpha": -0.1}, "l2sp_alpha"),
    ({"l2sp_alpha": math.inf}, "l2sp_alpha"), ({"erase_corners": 1.5}, "erase_corners"),
    ({"erase_corners": -0.1}, "erase_corners"), ({"head_only_epochs": 4}, "head_only_epochs"),
    ({"head_only_epochs": -1}, "head_only_epochs")])
def test_bad_mitigation_parameters_are_refused(bad, name):
    with pytest.raises(ParameterError, match=name):
        ErosionConfig(finetune_epochs=4, **bad).validate()


def test_later_fields_enter_the_key_only_when_they_differ_from_their_default():
    base = ErosionConfig()
    assert not set(LATER_FIELDS) & set(finetune_params(base, True))
    old = {k: v for k, v in base.as_dict().items() if k not in LATER_FIELDS}
    assert cache_key("finetune", finetune_params(base, True)) == cache_key("finetune", {**old, "patterned": True})
    for field, value in {"finetune_warmup_epochs": 1.0, "freeze_stages": 2, "head_only_epochs": 1.0,
                         "l2sp_alpha": 0.01, "erase_corners": 0.5}.items():
        changed = ErosionConfig(**{field: value})
        assert field in finetune_params(changed, True)
        assert cache_key("finetune", finetune_params(changed, True)) != cache_key("finetune", finetune_params(base, True))
