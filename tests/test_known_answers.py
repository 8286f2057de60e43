"""Known answers for the metrics (issue 25 item 1): a network that always predicts the class of the pattern it sees
follows the pattern on every mismatched image (follow rate 1), is right on every matched image (matched accuracy 1)
and wrong on every mismatched one (mismatched accuracy 0); a network that predicts the true class never follows the
pattern (follow rate 0). Checked through the one evaluator (reference and fast path), the dense monitor, weight
interpolation, recovery (both settings) and the per-layer probes, with stub networks wrapped like real ones
(``with_normalization``, taps, a trainable parameter) on synthetic images whose class is written in one pixel."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from erosion_utils.data import ImageData
from erosion_utils.experiments import core
from erosion_utils.experiments import mitigation as mit
from erosion_utils.experiments import representations as rep
from erosion_utils.experiments.core import Context, ErosionConfig, eval_views, make_evaluator, make_monitor
from erosion_utils.patterns import make_codes
from erosion_utils.train import with_normalization

K = 10
PACKAGE = Path(__file__).resolve().parents[1] / "erosion_utils"


def synthetic_data(train_per_class: int = 12, test_per_class: int = 10) -> ImageData:
    """Noise images (the same noise distribution for every class) whose bottom-right pixel is 20 c + 15 for class c:
    only that pixel tells the class, and the pattern corner (top left) never covers it."""
    gen = torch.Generator().manual_seed(0)

    def split(n):
        y = torch.arange(K).repeat_interleave(n)
        x = torch.randint(0, 256, (len(y), 3, 32, 32), generator=gen, dtype=torch.uint8)
        x[:, :, -1, -1] = (20 * y + 15).to(torch.uint8)[:, None]
        return x, y

    x_tr, y_tr = split(train_per_class)
    x_te, y_te = split(test_per_class)
    return ImageData("synthetic", x_tr, y_tr, x_te, y_te, K, "tests")


class Reader(nn.Module):
    """logits = a * (the pattern's class read from the corner) + b * (the true class read from its pixel): a = 1,
    b = 0 always predicts the pattern's class; a = 0, b = 1 the true class. Two taps (one per reading)."""

    def __init__(self, cfg: ErosionConfig, a: float, b: float):
        super().__init__()
        codes = make_codes(cfg.pattern_spec(), K, 3, 32)
        assert cfg.corner == "top_left"
        self.k = codes.codes.shape[-1]
        self.register_buffer("codes", codes.codes.float().flatten(1))  # (classes, pixels of the pattern)
        self.register_buffer("centres", 20.0 * torch.arange(K) + 15.0)
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.b = nn.Parameter(torch.tensor(float(b)))
        self.pattern_head = nn.Identity()
        self.label_head = nn.Identity()
        self.tap_names = ["pattern_head", "label_head"]
        self.stage_names, self.head_names = [["pattern_head"]], ["label_head"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: raw pixel values (see stub())
        patch = x[:, :, :self.k, :self.k].flatten(1)
        distance = torch.cdist(patch, self.codes) ** 2
        pattern = self.pattern_head(torch.softmax(-distance / 100.0, 1))  # one-hot of the nearest code
        label = self.label_head(torch.softmax(-(x[:, 0, -1, -1][:, None] - self.centres[None]) ** 2 / 10.0, 1))
        return 50.0 * (self.a * pattern + self.b * label)


def stub(cfg: ErosionConfig, reads: str) -> nn.Module:
    """A reader wrapped like every real network (uint8 in; this normalisation leaves the pixel values as they are)."""
    a, b = {"pattern": (1.0, 0.0), "label": (0.0, 1.0), "half": (0.5, 0.5)}[reads]
    return with_normalization(Reader(cfg, a, b), [0.0] * 3, [1 / 255] * 3)


CFG = ErosionConfig(train_per_class=12, test_per_class=10, monitor_per_class=3, pretrain_batch_size=32,
                   finetune_batch_size=16)
DATA = synthetic_data()
FOLLOWS = {"matched_acc": 1.0, "mismatched_acc": 0.0, "follow_rate": 1.0}
TRUE = {"clean_acc": 1.0, "matched_acc": 1.0, "mismatched_acc": 1.0, "follow_rate": 0.0}


def _check(metrics: dict, expected: dict, where: str) -> None:
    for key, value in expected.items():
        if key in metrics:
            assert metrics[key] == value, (where, key, metrics[key])


@pytest.fixture(scope="module")
def views():
    return eval_views(CFG, DATA, torch.device("cpu"))


def test_the_views_are_what_the_stubs_assume(views):
    assert (views["mismatched"][1] != views["clean"][1]).all()  # another class's pattern on every image
    assert torch.equal(views["matched"][1], views["clean"][1])


@pytest.mark.parametrize("fast", [False, True])
def test_the_evaluator_on_known_answers(views, fast):
    follower, honest = stub(CFG, "pattern"), stub(CFG, "label")
    got = make_evaluator(views, fast=fast)(follower)
    assert set(got) == {"clean_acc", "matched_acc", "mismatched_acc", "follow_rate"}
    _check(got, FOLLOWS, "pattern")
    assert got == {**got, **FOLLOWS}
    assert make_evaluator(views, fast=fast)(honest) == TRUE
    without = make_evaluator(views, fast=fast, matched=False)(honest)
    assert without == {k: v for k, v in TRUE.items() if k != "matched_acc"}
    with_ref = make_evaluator(views, reference=core.snapshot_weights(honest), fast=fast)(honest)
    assert with_ref["weight_distance"] == 0.0 and with_ref["follow_rate"] == 0.0
    assert with_ref["weight_norm"] == pytest.approx(1.0)  # a = 0, b = 1


def test_the_evaluator_scores_the_true_label_it_is_given(views):
    honest = stub(CFG, "label")
    shifted = (views["clean"][1] + 1) % K  # the true labels are what y_true says, matched and clean alike
    got = make_evaluator(views, y_true=shifted)(honest)
    assert got["clean_acc"] == 0.0 and got["mismatched_acc"] == 0.0 and got["follow_rate"] == 0.0


def test_the_monitor_on_known_answers(views):
    monitor, records = make_monitor(CFG, DATA, views, torch.device("cpu"))
    monitor(stub(CFG, "pattern"), 0, {"batch_loss_max": None, "grad_norm_max": None})
    monitor(stub(CFG, "label"), 5, {"batch_loss_max": 0.5, "grad_norm_max": 2.0})
    follower, honest = records
    assert follower["step"] == 0 and honest["step"] == 5 and honest["grad_norm_max"] == 2.0
    assert follower["follow_rate"] == 1.0 and follower["mismatched_acc"] == 0.0
    assert honest["follow_rate"] == 0.0 and honest["mismatched_acc"] == 1.0 and honest["clean_acc"] == 1.0
    # the pattern reader fits the pattern run's training distribution (images with their own class's pattern) and
    # not the clean one; the true-class reader fits both
    assert follower["loss_patterned"] < 1e-3 < 1.0 < follower["loss_clean"]
    assert honest["loss_clean"] < 1e-3 and honest["loss_patterned"] < 1e-3
    fast_monitor, fast_records = make_monitor(core.replace(CFG, fast_path=True), DATA, views, torch.device("cpu"))
    fast_monitor(stub(CFG, "pattern"), 0, {})
    assert fast_records[0]["follow_rate"] == 1.0 and fast_records[0]["loss_patterned"] < 1e-3


@pytest.fixture
def stubbed(monkeypatch, tmp_path):
    """The mitigation experiments on the synthetic data: the pretrained network reads the true class, the fine-tuned
    pattern run reads the pattern, the clean control reads the true class, a new network reads both by half."""
    monkeypatch.setattr(mit, "load_data", lambda cfg, ctx: DATA)
    monkeypatch.setattr(mit, "pretrained_model", lambda cfg, ctx: (stub(cfg, "label"), {}))
    monkeypatch.setattr(mit, "finetuned_model", lambda cfg, patterned, ctx: stub(cfg, "pattern" if patterned
                                                                                  else "label"))
    monkeypatch.setattr(mit, "new_model", lambda cfg, data: stub(cfg, "half"))
    return Context(device="cpu", results=core.ResultCache(tmp_path / "results"),
                   checkpoints=core.CheckpointCache(tmp_path / "checkpoints"))


def test_interpolation_from_the_true_class_to_the_pattern(stubbed):
    result = mit.interpolation_run(CFG, [0.0, 1.0], stubbed)["result"]
    start, end = (p for p in result["points"])
    assert (start["alpha"], end["alpha"]) == (0.0, 1.0)
    for kind in ("raw", "reestimated"):
        assert start[kind] == TRUE, kind
        _check(end[kind], FOLLOWS, kind)


def test_recovery_starts_from_the_pattern_run_and_the_control(stubbed):
    result = mit.recovery_run(CFG, 0.05, [1e-12], 2, 2, 1, stubbed)["result"]
    arms = result["runs"][0]["arms"]
    for rec in arms["pattern"]["records"]:  # a rate of 1e-12 moves nothing: every evaluation is the start's
        assert (rec["follow_rate"], rec["mismatched_acc"]) == (1.0, 0.0)
    for rec in arms["control"]["records"]:
        assert (rec["clean_acc"], rec["follow_rate"], rec["mismatched_acc"]) == (1.0, 0.0, 1.0)
    assert "matched_acc" not in arms["pattern"]["records"][0]
    assert [p["layer"] for p in result["start_probes"]["pattern"]] == ["net.pattern_head", "net.label_head"]


def test_transfer_recovery_arms_start_where_they_should(stubbed, monkeypatch):
    monkeypatch.setattr(mit, "reinit_last_stages", lambda model, k, seed: [])
    result = mit.transfer_recovery_run(CFG, 0.05, 0.05, [1], 2, stubbed)["result"]
    assert result["pretrained"] == {k: v for k, v in TRUE.items() if k != "matched_acc"}
    assert result["arms"]["eroded"]["records"][0]["follow_rate"] == 1.0
    assert result["arms"]["control"]["records"][0]["follow_rate"] == 0.0
    assert result["arms"]["reinit_1"]["records"][0]["clean_acc"] == 1.0  # the pretrained network (reinit stubbed)


def test_probes_read_the_pattern_where_it_is_and_the_class_where_it_is(monkeypatch, tmp_path):
    monkeypatch.setattr(rep, "load_data", lambda cfg, ctx: DATA)
    monkeypatch.setattr(rep, "pretrained_model", lambda cfg, ctx: (stub(cfg, "pattern"), {}))
    ctx = Context(device="cpu", results=core.ResultCache(tmp_path / "results"),
                  checkpoints=core.CheckpointCache(tmp_path / "checkpoints"))
    cfg = core.replace(CFG, finetune_lr=1e-12, finetune_epochs=0.1, finetune_batch_size=16)
    result = rep.representation_experiment(cfg, ctx, n_snapshots=2, probe_train_per_class=10, probe_test_per_class=8,
                                            probe_epochs=400)["result"]
    layers = {row["layer"]: row for row in result["snapshots"][0]["layers"]}
    pattern, label = layers["net.pattern_head"], layers["net.label_head"]
    # the pattern tap carries the pattern's class and nothing of the true class (noise in the corner of a clean
    # image); the label tap the reverse. Pattern probes are scored against the pattern's class, drawn independently
    # of the content: reading the true class there would score the label tap high
    assert pattern["pattern_probe_accuracy"] >= 0.9 and label["probe_accuracy"] >= 0.9
    assert pattern["probe_accuracy"] <= 0.4 and label["pattern_probe_accuracy"] <= 0.4


def test_one_evaluator_computes_the_follow_rate():
    """The follow rate is computed in one place (core.make_evaluator); every experiment evaluates through it."""
    computing = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Subscript) and isinstance(t.slice, ast.Constant)
                                                    and t.slice.value == "follow_rate" for t in node.targets):
                computing.append(path.relative_to(PACKAGE).as_posix())
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "follow_rate"
                                                  and isinstance(v, ast.Call) for k, v in zip(node.keys, node.values)):
                computing.append(path.relative_to(PACKAGE).as_posix())
    assert computing == ["experiments/core.py"], computing
    for module in ("experiments/core.py", "experiments/mitigation.py"):
        text = (PACKAGE / module).read_text()
        assert "make_evaluator(" in text and "def predict(" not in text, module


def test_the_evaluator_takes_the_reference_path_unless_asked(views, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the fast path was taken")

    monkeypatch.setattr(core, "predict_fused", refuse)
    assert make_evaluator(views)(stub(CFG, "label")) == TRUE
    with pytest.raises(AssertionError, match="fast path"):
        make_evaluator(views, fast=True)(stub(CFG, "label"))


def test_weight_diagnostics_by_hand():
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[6.0, 8.0]]))
    got = core.weight_stats(net, {"weight": torch.tensor([[3.0, 4.0]])})
    assert got == {"weight_distance": pytest.approx(1.0), "weight_norm": pytest.approx(10.0)}  # |(3, 4)| / |(3, 4)|
    half = core.weight_stats(net, {"weight": torch.tensor([[4.0, 8.0]])})
    assert half["weight_distance"] == pytest.approx(2.0 / math.hypot(4.0, 8.0))
    assert core.weight_stats(net, {"weight": torch.zeros(1, 2)}) == {"weight_distance": 0.0,
                                                                      "weight_norm": pytest.approx(10.0)}
    small = core.weight_stats(net, {"weight": torch.tensor([[0.3, 0.4]])})  # a reference of norm below 1
    assert small["weight_distance"] == pytest.approx(math.hypot(5.7, 7.6) / 0.5)


def test_the_monitor_draws_its_training_and_test_images_with_the_pinned_seeds(views, monkeypatch):
    """The monitor's images are those the committed results used: training images drawn with MONITOR_SEED, test
    images with MONITOR_SEED + 1 (neither enters a cache key)."""
    seeds = []
    real = core.data_mod.balanced_indices
    monkeypatch.setattr(core.data_mod, "balanced_indices", lambda y, k, seed: seeds.append(seed) or real(y, k, seed))
    make_monitor(CFG, DATA, views, torch.device("cpu"))
    assert seeds == [54321, 54322] and core.MONITOR_SEED == 54321


def test_the_evaluator_refuses_an_unknown_precision_or_bf16_off_the_fast_path(views):
    with pytest.raises(core.ParameterError, match=r"eval_dtype='half' is not allowed"):
        make_evaluator(views, fast=True, eval_dtype="half")
    with pytest.raises(core.ParameterError, match=r"eval_dtype='bfloat16' needs the fast path"):
        make_evaluator(views, eval_dtype="bfloat16")
    assert make_evaluator(views, fast=True, eval_dtype="bfloat16")(stub(CFG, "pattern"))["follow_rate"] == 1.0


def test_the_monitor_uses_its_images_per_class(views, monkeypatch):
    seen = {}
    real_evaluator, real_logits = core.make_evaluator, core.logits

    def evaluator(test, **kw):
        seen["test"] = {k: len(v[0]) for k, v in test.items()}
        return real_evaluator(test, **kw)

    def logits(model, x, **kw):
        seen["train"] = len(x)
        return real_logits(model, x, **kw)

    monkeypatch.setattr(core, "make_evaluator", evaluator)
    monkeypatch.setattr(core, "logits", logits)
    monitor, _ = make_monitor(CFG, DATA, views, torch.device("cpu"))
    monitor(stub(CFG, "label"), 0, {})
    k = CFG.monitor_per_class
    assert seen == {"test": {"clean": k * K, "mismatched": k * K}, "train": 2 * k * K}  # clean and patterned
    big = core.replace(CFG, monitor_per_class=1000)  # more than a class has: all of it
    monitor, _ = make_monitor(big, DATA, views, torch.device("cpu"))
    monitor(stub(CFG, "label"), 0, {})
    assert seen == {"test": {"clean": 10 * K, "mismatched": 10 * K}, "train": 2 * 12 * K}
