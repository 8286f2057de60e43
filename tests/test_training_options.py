"""What the redesigned chapters (issues 19 and 24) rely on in the training code: gradient-norm clipping changes the
update by exactly the clipping factor and nothing when off; the dense monitor is called at the specified steps with
the largest batch loss and gradient norm since its previous call; the transfer setting's pretraining subset is
class-balanced, fixed by its own seed and part of the fine-tuning set; re-initialised stages really are
re-initialised."""
from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from erosion_utils import data as data_mod
from erosion_utils.data import ImageData
from erosion_utils.experiments.core import PRETRAIN_SUBSET_SEED, ErosionConfig, new_model, pretrain_set
from erosion_utils.models import reinit_last_stages
from erosion_utils.train import TrainConfig, monitor_steps, train


def tiny_data(per_class: int = 8, seed: int = 0) -> ImageData:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(10).repeat(per_class)[torch.randperm(10 * per_class, generator=g)]
    x = torch.randint(0, 256, (len(y), 3, 32, 32), generator=g, dtype=torch.uint8)
    return ImageData("cifar10", x, y, x[:20], y[:20], 10, "synthetic")


DATA = tiny_data()


def tiny_model(arch: str = "vgg11"):
    return new_model(ErosionConfig(arch=arch, width=0.0625, mlp_hidden=16), DATA)


def _one_step(model, clip: float) -> dict[str, torch.Tensor]:
    cfg = TrainConfig(epochs=1, lr=0.05, momentum=0.9, weight_decay=0.0, batch_size=len(DATA.x_train),
                      clip_norm=clip)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, DATA.x_train, DATA.y_train, cfg, seed=0)
    return {n: p.detach() - before[n] for n, p in model.named_parameters()}


def _gradient_norm(model) -> float:
    net = copy.deepcopy(model)
    net.train()
    loss = torch.nn.functional.cross_entropy(net(DATA.x_train), DATA.y_train)
    loss.backward()
    return float(torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters() if p.grad is not None)))


def test_clipping_scales_the_update_by_the_clipping_factor_and_off_changes_nothing():
    model = tiny_model()
    norm = _gradient_norm(model)
    free = _one_step(copy.deepcopy(model), 0.0)
    clip = norm / 4
    clipped = _one_step(copy.deepcopy(model), clip)
    loose = _one_step(copy.deepcopy(model), 10 * norm)  # above the gradient's norm: clipping does nothing
    for name, step in free.items():
        scale = float(step.abs().max())
        assert torch.allclose(clipped[name], step * clip / norm, rtol=2e-3, atol=1e-3 * scale), name
        assert torch.equal(loose[name], step), name
    total = float(torch.sqrt(sum((s ** 2).sum() for s in clipped.values())))
    assert total == pytest.approx(0.05 * 1.9 * clip, rel=2e-3)  # one Nesterov step: lr (1 + momentum) x clip


def test_the_monitor_is_called_at_its_steps_with_what_happened_since():
    model = tiny_model()
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=8, clip_norm=0.5)  # 10 steps per epoch: 30 steps
    calls, evals = [], []
    at = monitor_steps(30)
    assert at == list(range(31))  # a run this short is monitored at every step
    sparse = [0, 1, 7, 30]
    train(model, DATA.x_train, DATA.y_train, cfg, seed=3, eval_at=[0, 7, 30], eval_fn=lambda m: evals.append(
        len(calls)) or {}, monitor_at=sparse, monitor_fn=lambda m, step, since: calls.append((step, since)))
    assert [s for s, _ in calls] == sparse
    assert evals == [0, 2, 3]  # each evaluation comes before the monitor call of its step
    assert calls[0][1] == {"batch_loss_max": None, "grad_norm_max": None}  # before training: nothing yet
    for _, since in calls[1:]:
        assert since["batch_loss_max"] > 0 and since["grad_norm_max"] > 0
    assert calls[2][1]["grad_norm_max"] > 0.5  # the norm before clipping is what is recorded


@pytest.mark.parametrize("total", [60, 138, 1395])
def test_monitor_steps_every_four_percent_and_every_early_step(total):
    steps = monitor_steps(total)
    for i in range(26):  # every 4% of the run
        assert round(i * 0.04 * total) in steps
    first = [s for s in steps if s <= max(1, total // 10)]
    assert first[:min(12, total // 10) + 1] == list(range(min(12, total // 10) + 1))  # every step at the start


def test_the_pretraining_subset_is_balanced_fixed_and_inside_the_finetuning_set():
    data = tiny_data(per_class=12, seed=4)
    cfg = ErosionConfig(train_per_class=12, pretrain_per_class=5, pretrain_batch_size=16)
    x, y = pretrain_set(cfg, data)
    assert len(y) == 50 and torch.bincount(y, minlength=10).tolist() == [5] * 10
    idx = data_mod.balanced_indices(data.y_train, 5, PRETRAIN_SUBSET_SEED)
    assert torch.equal(x, data.x_train[idx]) and torch.equal(y, data.y_train[idx])  # part of the fine-tuning set
    for seed in (1, 7):  # the run seed does not change it
        x2, y2 = pretrain_set(replace(cfg, seed=seed), data)
        assert torch.equal(x2, x) and torch.equal(y2, y)
    other = data_mod.balanced_indices(data.y_train, 5, PRETRAIN_SUBSET_SEED + 1)
    assert not torch.equal(other, idx)  # its own seed draws it
    full_x, full_y = pretrain_set(replace(cfg, pretrain_per_class=None), data)
    assert full_x is data.x_train and full_y is data.y_train


@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_reinitialised_stages_are_new_weights_of_the_same_shapes(arch):
    model = tiny_model(arch)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a trained network: statistics and weights away from their initial values
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.fill_(0.3)
                m.running_var.fill_(2.0)
    before = copy.deepcopy(model.state_dict())
    reset = reinit_last_stages(model, 1, seed=31)
    after = model.state_dict()
    last = [n for n in model.stage_names[-1]] + list(model.head_names)
    assert reset and all(any(r == p or r.startswith(p + ".") for p in last) for r in reset)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    for k in before:
        assert before[k].shape == after[k].shape, k
        inside = any(k.startswith(p + ".") for p in last)
        if inside and k.endswith("weight"):
            assert k in changed, f"{k} was not re-initialised"
        if not inside:
            assert k not in changed, f"{k} is outside the last stage and changed"
    assert any(k.endswith("running_mean") for k in changed)  # batch-norm statistics reset too
    again = copy.deepcopy(model)
    again.load_state_dict(before)
    reinit_last_stages(again, 1, seed=31)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in after.items())  # the seed fixes it
    two = copy.deepcopy(model)
    two.load_state_dict(before)
    reinit_last_stages(two, 2, seed=31)
    assert len({k for k in before if not torch.equal(before[k], two.state_dict()[k])}) > len(changed)
