"""Training loop: learning-rate schedules, evaluation steps, records, determinism and config checks."""
from __future__ import annotations

import math

import pytest
import torch

from erosion_utils.models import build_model
from erosion_utils.train import SCHEDULES, TrainConfig, accuracy, eval_steps, lr_factor, train, with_normalization
from erosion_utils.validation import ParameterError

TOTAL = 100


def factors(schedule: str) -> list[float]:
    return [lr_factor(s, TOTAL, schedule) for s in range(TOTAL + 1)]


def test_constant_schedule():
    assert factors("constant") == [1.0] * (TOTAL + 1)


def test_step_schedule_drops_tenfold_at_half_and_three_quarters():
    f = factors("step")
    assert f[:50] == [1.0] * 50
    assert f[50:75] == [0.1] * 25
    assert f[75:] == [0.01] * 26


def test_cosine_schedule_decays_from_one_to_zero():
    f = factors("cosine")
    assert f[0] == 1.0
    assert f[50] == pytest.approx(0.5)
    assert f[TOTAL] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(f, f[1:]))
    assert lr_factor(2 * TOTAL, TOTAL, "cosine") == pytest.approx(0.0, abs=1e-12), "stays at 0 past the end"


def test_onecycle_schedule_warms_up_over_15_percent_then_decays_linearly():
    f = factors("onecycle")
    assert f[0] == 0.0
    assert max(f) == pytest.approx(1.0) and f.index(max(f)) == 15
    assert f[5] == pytest.approx(5 / 15) and f[10] == pytest.approx(10 / 15)
    assert all(a < b for a, b in zip(f[:15], f[1:16]))
    assert all(a > b for a, b in zip(f[15:], f[16:]))
    assert f[TOTAL] == 0.0
    assert f[60] == pytest.approx(0.4 / 0.85)


@pytest.mark.parametrize("total, n_points", [(1000, 30), (5, 4), (1, 2), (2, 10), (100_000, 10), (157, 16)])
def test_eval_steps_sorted_unique_with_ends(total, n_points):
    steps = eval_steps(total, n_points)
    assert steps == sorted(set(steps))
    assert steps[0] == 0 and steps[-1] == total
    assert all(isinstance(s, int) for s in steps)
    assert len(steps) <= n_points


def test_eval_steps_dense_at_the_start():
    steps = eval_steps(1000, 30)
    assert len(steps) >= 20
    early = [s for s in steps if s <= 100]  # first 10% of training
    assert len(early) > len(steps) / 2
    assert steps[:4] == [0, 1, 2, 3]
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert gaps[-1] > 10 * gaps[1]


def test_eval_steps_rejects_too_few_points():
    with pytest.raises(ParameterError, match=r"n_points=1 is out of range; allowed in \[2, inf\]"):
        eval_steps(100, 1)


# --- train() on a tiny model and random data (fast) -------------------------------------------------------------

def tiny_problem(n: int = 64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=gen)
    return x, y


def tiny_model(init_seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(init_seed)
    return with_normalization(build_model("mlp", 10, width=1 / 32, mlp_depth=2), [0.5] * 3, [0.25] * 3)


def run(train_seed: int, augment: bool = False, eval_at=(0, 1, 3, 8)):
    x, y = tiny_problem()
    model = tiny_model()
    cfg = TrainConfig(epochs=2, lr=0.05, batch_size=16, schedule="cosine", augment=augment)
    records = train(model, x, y, cfg, seed=train_seed, eval_at=list(eval_at),
                    eval_fn=lambda m: {"acc": accuracy(m, x, y)})
    return records, model


def comparable(records: list[dict]) -> list[dict]:
    """Records with NaN (the loss before any step) replaced, so that == compares them."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in records]


def test_train_records_have_documented_keys():
    records, _ = run(train_seed=0, eval_at=(8, 0, 3, 3, 1, 50))  # unsorted, duplicated, and past the end
    assert [r["step"] for r in records] == [0, 1, 3, 8]  # 64 images / 16 = 4 steps per epoch, 2 epochs
    for r in records:
        assert set(r) == {"step", "epoch", "train_loss", "train_loss_max", "acc"}
        assert r["epoch"] == r["step"] / 4
        assert 0.0 <= r["acc"] <= 1.0
    assert math.isnan(records[0]["train_loss"]), "no training loss before the first step"
    assert all(r["train_loss"] > 0 for r in records[1:])
    assert all(r["train_loss_max"] >= r["train_loss"] for r in records[1:]), "the largest batch loss bounds the mean"


def test_train_without_eval_fn_returns_no_records():
    x, y = tiny_problem()
    assert train(tiny_model(), x, y, TrainConfig(epochs=1, batch_size=16), seed=0, eval_at=[0, 1]) == []


@pytest.mark.parametrize("augment", [False, True])
def test_same_seed_gives_identical_records_and_weights(augment):
    rec_a, model_a = run(train_seed=3, augment=augment)
    rec_b, model_b = run(train_seed=3, augment=augment)
    assert comparable(rec_a) == comparable(rec_b)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for k in state_a:
        assert torch.equal(state_a[k], state_b[k]), k


def test_different_seeds_differ():
    rec_a, model_a = run(train_seed=3)
    rec_b, model_b = run(train_seed=4)
    assert comparable(rec_a) != comparable(rec_b)
    assert not all(torch.equal(a, b) for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values()))


def test_training_changes_the_weights():
    _, trained = run(train_seed=0)
    untouched = tiny_model()
    assert not torch.equal(trained.state_dict()["net.classifier.weight"],
                           untouched.state_dict()["net.classifier.weight"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), r"epochs=0 is out of range; allowed in \(0, inf\]"),
    (dict(lr=-1), r"lr=-1 is out of range; allowed in \(0, inf\]"),
    (dict(lr=0), r"lr=0 is out of range; allowed in \(0, inf\]"),
    (dict(momentum=1.0), r"momentum=1.0 is out of range; allowed in \[0, 1\)"),
    (dict(weight_decay=-1e-4), r"weight_decay=-0.0001 is out of range; allowed in \[0, inf\]"),
    (dict(batch_size=0), r"batch_size=0 is out of range; allowed in \[1, inf\]"),
    (dict(batch_size=12.5), r"batch_size=12.5 must be an integer in \[1, inf\]"),
    (dict(schedule="linear"), r"schedule='linear' is not allowed; choose one of "
                              r"\['constant', 'step', 'cosine', 'onecycle'\]"),
])
def test_train_config_errors_name_the_parameter(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        TrainConfig(**kwargs).validate()


def test_train_config_prefix_and_train_validates_first():
    with pytest.raises(ParameterError, match=r"^pretrain_epochs=0 is out of range"):
        TrainConfig(epochs=0).validate("pretrain_")
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = tiny_problem()
    with pytest.raises(ParameterError, match="schedule='linear'"):
        train(model, x, y, TrainConfig(schedule="linear"), seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_all_schedules_are_valid_configs():
    for schedule in SCHEDULES:
        assert TrainConfig(schedule=schedule).validate().schedule == schedule
