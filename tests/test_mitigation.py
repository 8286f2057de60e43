"""The Mitigation and recovery chapter: validation before training, weight interpolation (its endpoints reproduce
both networks), batch-norm re-estimation, recovery on a real CIFAR-10 slice, missing rows with computing off, cache
keys, paper units, and the report's rules on synthetic inputs."""
from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
import torch
from torch import nn

from erosion_utils.report import mitigation as R
from erosion_utils.report import mitigation_figures as F
from erosion_utils.report import plots
from erosion_utils import profiles
from erosion_utils.cache import CheckpointCache, ResultCache, cache_key
from erosion_utils.experiments import Context, finetune_run
from erosion_utils.experiments import mitigation as M
from erosion_utils.experiments.core import current_key_params, eval_views, load_data, make_evaluator, \
    pretrained_model
from erosion_utils.validation import ParameterError


@pytest.fixture(scope="module")
def smoke_ctx(cifar10_slice_npz, tmp_path_factory) -> Context:
    root = tmp_path_factory.mktemp("mitigation_caches")
    return Context(device="cpu", results=ResultCache(root / "results"),
                   checkpoints=CheckpointCache(root / "checkpoints"), data_root=str(cifar10_slice_npz))


@pytest.fixture(scope="module")
def smoke():
    return profiles.resolve("mitigation", "smoke")


# --- validation before training ----------------------------------------------------------------------------------

@pytest.mark.parametrize("override, name", [
    (dict(freeze_options=[6]), "freeze_options"),  # the smoke network (ResNet-18) has 5 stages
    (dict(freeze_options=[0]), "freeze_options"),
    (dict(freeze_stages=6), "freeze_stages"),
    (dict(head_only_options=[1.0]), "head_only_options"),  # not shorter than the 1-epoch run
    (dict(head_only_epochs=1.0), "head_only_epochs"),
    (dict(l2sp_options=[-0.1]), "l2sp_options"),
    (dict(l2sp_alpha=-1.0), "l2sp_alpha"),
    (dict(erase_options=[1.5]), "erase_options"),
    (dict(erase_corners=-0.1), "erase_corners"),
    (dict(warmup_options=[1.0]), "warmup_options"),
    (dict(fraction_options=[0.0]), "fraction_options"),
    (dict(lower_lrs=[0.0]), "lower_lrs"),
    (dict(interpolation_alphas=[-0.1, 1.0]), "interpolation_alphas"),
    (dict(interpolation_alphas=[0.0, 1.2]), "interpolation_alphas"),
    (dict(interpolation_alphas=[]), "interpolation_alphas"),
    (dict(interpolation_alphas=[0.5, 0.5]), "interpolation_alphas"),
    (dict(recovery_epochs=0.0), "recovery_epochs"),
    (dict(recovery_epochs=-1.0), "recovery_epochs"),
    (dict(recovery_lr_factors=[]), "recovery_lr_factors"),
    (dict(recovery_lr_factors=[0.0]), "recovery_lr_factors"),
    (dict(mitigation_n_evals=1), "mitigation_n_evals"),
    (dict(probe_epochs=0), "probe_epochs"),
    (dict(eroding_lr=0.0), "eroding_lr"),
])
def test_bad_settings_are_refused_naming_the_parameter(override, name):
    with pytest.raises(ParameterError, match=name):
        profiles.resolve("mitigation", "smoke", **override)


def test_text_values_are_read_as_yaml_and_checked():
    run = profiles.resolve("mitigation", "smoke", l2sp_options="[0.01, 0.1]", recovery_epochs="0.5")
    assert run.extras["l2sp_options"] == [0.01, 0.1] and run.extras["recovery_epochs"] == 0.5
    with pytest.raises(ParameterError, match="l2sp_options"):
        profiles.resolve("mitigation", "smoke", l2sp_options="[-1]")


def test_run_functions_refuse_bad_inputs_before_training(smoke, tmp_path):
    ctx = Context(device="cpu", results=ResultCache(tmp_path / "r"), checkpoints=CheckpointCache(tmp_path / "c"),
                  data_root=str(tmp_path / "no-data-here"))
    cfg = M.baseline_config(smoke.config, smoke.extras)
    with pytest.raises(ParameterError, match="interpolation_alphas"):
        M.interpolation_run(cfg, [0.0, 2.0], ctx)
    with pytest.raises(ParameterError, match="recovery_epochs"):
        M.recovery_run(cfg, 0.0, [0.1], 8, 4, 2, ctx)
    with pytest.raises(ParameterError, match="recovery_lrs"):
        M.recovery_run(cfg, 1.0, [-0.1], 8, 4, 2, ctx)
    with pytest.raises(ParameterError, match="probe_epochs"):
        M.recovery_run(cfg, 1.0, [0.1], 8, 4, 0, ctx)
    with pytest.raises(ParameterError, match="freeze_stages"):
        M.interpolation_run(replace(cfg, freeze_stages=9), [0.0, 1.0], ctx)
    assert not (tmp_path / "r").exists() and not (tmp_path / "c").exists()  # nothing was trained or written


def test_settings_are_the_baseline_and_one_change_each(smoke):
    cpu = profiles.resolve("mitigation", "cpu")
    settings = M.mitigation_settings(cpu.config, cpu.extras)
    base = settings[0]
    assert base.kind == "baseline" and base.config.finetune_lr == cpu.extras["eroding_lr"]
    assert base.config == replace(cpu.config, finetune_lr=cpu.extras["eroding_lr"])  # the erosion chapter's run
    assert [m.kind for m in settings] == ["baseline", "freeze", "freeze", "head_only", "l2sp", "l2sp", "erase",
                                          "erase", "lower_lr", "warmup", "fraction"]
    field = {"freeze": "freeze_stages", "head_only": "head_only_epochs", "l2sp": "l2sp_alpha",
             "erase": "erase_corners", "lower_lr": "finetune_lr", "warmup": "finetune_warmup_epochs",
             "fraction": "fraction"}
    for m in settings[1:]:
        expected = replace(base.config, **{field[m.kind]: m.value},
                           n_evals=base.config.n_evals if m.kind == "lower_lr" else cpu.extras["mitigation_n_evals"])
        assert m.config == expected, m.label
    assert len({m.label for m in settings}) == len(settings)


# --- model helpers -----------------------------------------------------------------------------------------------

def test_interpolate_state_endpoints_and_midpoint():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([4.0, 6.0]), "n": torch.tensor(7)}
    assert torch.equal(M.interpolate_state(a, b, 0.0)["w"], a["w"])
    assert torch.equal(M.interpolate_state(a, b, 1.0)["w"], b["w"])
    assert torch.allclose(M.interpolate_state(a, b, 0.25)["w"], torch.tensor([1.0, 3.0]))
    assert int(M.interpolate_state(a, b, 0.0)["n"]) == 3 and int(M.interpolate_state(a, b, 0.5)["n"]) == 7
    with pytest.raises(ParameterError, match="alpha"):
        M.interpolate_state(a, b, 1.5)


class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.bn(self.conv(x.float() / 255))


def test_reestimate_batchnorm_gives_the_data_statistics_and_restores_momentum():
    torch.manual_seed(0)
    model = _ConvBN().eval()
    model.bn.running_mean.fill_(5.0)
    x = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    assert M.reestimate_batchnorm(model, x, batch_size=16) == 1
    with torch.no_grad():
        feats = model.conv(x.float() / 255)
    assert torch.allclose(model.bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(model.bn.running_var, feats.transpose(0, 1).flatten(1).var(dim=1), rtol=0.05)
    assert model.bn.momentum == 0.1 and not model.training
    assert all(torch.equal(v, dict(model.named_parameters())[k]) for k, v in weights.items())  # weights untouched


# --- end to end on a CIFAR-10 slice (smoke profile) ------------------------------------------------------------

def test_interpolation_endpoints_reproduce_both_networks(smoke, smoke_ctx):
    cfg = M.baseline_config(smoke.config, smoke.extras)
    entry = M.interpolation_run(cfg, [0.0, 0.5, 1.0], smoke_ctx)
    points = {p["alpha"]: p for p in entry["result"]["points"]}
    pattern = finetune_run(cfg, True, smoke_ctx)["result"]["records"]
    keys = ("clean_acc", "matched_acc", "mismatched_acc", "follow_rate")
    # alpha = 0 is the pretrained network, alpha = 1 the fine-tuned one, as the fine-tuning run measured them
    assert {k: points[0.0]["raw"][k] for k in keys} == {k: pattern[0][k] for k in keys}
    assert {k: points[1.0]["raw"][k] for k in keys} == {k: pattern[-1][k] for k in keys}
    data = load_data(cfg, smoke_ctx)
    views = eval_views(cfg, data, torch.device("cpu"))
    model, _ = pretrained_model(cfg, smoke_ctx)
    assert make_evaluator(views, views["clean"][1])(model) == points[0.0]["raw"]
    assert M.finetuned_model(cfg, True, smoke_ctx) is not None
    assert entry["result"]["reestimated_on"] == "clean training images"
    for p in points.values():
        assert all(0.0 <= p[w][k] <= 1.0 for w in ("raw", "reestimated") for k in keys)


ONE_RATE = dict(recovery_lr_factors=[0.1])  # one recovery rate keeps the end-to-end tests short


def test_recovery_records_three_arms_and_probes(smoke, smoke_ctx):
    cfg = M.baseline_config(smoke.config, smoke.extras)
    assert M.recovery_kwargs(smoke.extras)["recovery_lrs"] == [0.1, 0.01]  # the smoke profile's two rates
    kw = M.recovery_kwargs({**smoke.extras, **ONE_RATE})
    res = M.recovery_run(cfg, ctx=smoke_ctx, **kw)["result"]
    assert [r["lr"] for r in res["runs"]] == kw["recovery_lrs"] == [0.01]
    pattern = finetune_run(cfg, True, smoke_ctx)["result"]["records"][-1]
    control = finetune_run(cfg, False, smoke_ctx)["result"]["records"][-1]
    n_layers = len(res["taps"])
    assert set(res["start_probes"]) == {"pattern", "control"}
    assert all(len(v) == n_layers for v in res["start_probes"].values())
    for run in res["runs"]:
        assert set(run["arms"]) == {"pattern", "control", "scratch"}
        for arm, a in run["arms"].items():
            steps = [r["step"] for r in a["records"]]
            assert steps[0] == 0 and steps[-1] == run["total_steps"] == 5
            assert (a["probes"] is None) == (arm == "scratch")
        # recovery starts from the networks the cached fine-tuning runs ended with
        assert run["arms"]["pattern"]["records"][0]["clean_acc"] == pattern["clean_acc"]
        assert run["arms"]["pattern"]["records"][0]["follow_rate"] == pattern["follow_rate"]
        assert run["arms"]["control"]["records"][0]["clean_acc"] == control["clean_acc"]


def test_experiments_and_report_on_the_smoke_results(smoke, smoke_ctx):
    few = dict(smoke.extras, head_only_options=[], l2sp_options=[], lower_lrs=[], warmup_options=[],
               fraction_options=[])  # the baseline, freezing and erasing: enough for the report's code paths
    rows = M.mitigation_experiment(smoke.config, few, smoke_ctx)
    labels = [m.label for m in M.mitigation_settings(smoke.config, few)]
    assert len(labels) == 3
    assert [r["label"] for r in rows] == labels and not any(r.get("missing") for r in rows)
    stats = R.mitigation_stats(R.mitigation_frame(rows))
    assert list(stats.label) == labels and (stats.seeds == 1).all()
    table = R.mitigation_table(stats)
    assert len(table) == len(labels) and table.verdict.str.len().gt(0).all()
    assert "one seed: no interval" in R.recommendation(stats)
    interp = R.interpolation_frame(M.interpolation_experiment(smoke.config, smoke.extras, smoke_ctx))
    assert sorted(interp.alpha.unique()) == smoke.extras["interpolation_alphas"]
    rec = M.recovery_experiment(smoke.config, {**smoke.extras, **ONE_RATE}, smoke_ctx)
    steps = R.recovery_steps(R.recovery_curves(rec))
    verdicts = R.recovery_verdicts(steps, R.probe_gaps(R.recovery_probes(rec)))
    assert set(verdicts) == {0.01} and verdicts[0.01]["verdict"] in R.RECOVERY_VERDICTS
    plots.setup()
    for fig in (F.summary(stats), F.interpolation(interp), F.recovery(R.recovery_curves(rec), steps),
                F.probes(R.recovery_probes(rec))):
        assert fig is not None and plots.legibility_problems(fig) == []


def test_missing_rows_when_computing_is_off(smoke, tmp_path):
    ctx = Context(device="cpu", results=ResultCache(tmp_path / "r"), checkpoints=CheckpointCache(tmp_path / "c"),
                  compute=False)
    rows = M.mitigation_experiment(smoke.config, smoke.extras, ctx)
    assert rows and all(r["missing"] for r in rows)
    interp = M.interpolation_experiment(smoke.config, smoke.extras, ctx)
    rec = M.recovery_experiment(smoke.config, smoke.extras, ctx)
    assert all(r["missing"] for r in interp + rec)
    stats = R.mitigation_stats(R.mitigation_frame(rows))
    assert (stats.seeds == 0).all()
    assert R.recommendation(stats) == "Without results for the baseline, no recommendation can be made."
    assert F.summary(stats) is None and F.interpolation(R.interpolation_frame(interp)) is None
    assert "missing" in R.interpolation_answer(R.interpolation_frame(interp))["sentence"]
    curves = R.recovery_curves(rec)
    assert F.recovery(curves, R.recovery_steps(curves)) is None and F.probes(R.recovery_probes(rec)) is None
    assert R.recovery_verdicts(R.recovery_steps(curves), R.probe_gaps(R.recovery_probes(rec))) == {}
    assert not (tmp_path / "r").exists()


# --- cache keys and units ----------------------------------------------------------------------------------------

def test_new_result_names_have_key_rules(smoke):
    cfg = M.baseline_config(smoke.config, smoke.extras)
    for name, params in (("interpolation", {**cfg.key_dict(), "interpolation_alphas": [0.0, 1.0]}),
                         ("recovery", {**cfg.key_dict(), "recovery_epochs": 1.0, "recovery_lrs": [0.1]})):
        assert current_key_params(name, params) == params
        assert cache_key(name, current_key_params(name, params)) == cache_key(name, params)


def test_paper_units_are_ordered_and_unique():
    paper = profiles.resolve("mitigation", "paper")
    units = M.units(paper.config, paper.extras)
    names = [u.name for u in units]
    assert len(names) == len(set(names))
    assert all(u.stage == 1 and u.needs for u in units)
    # the transfer setting first, seed by seed: control, baseline and options, interpolation, recovery
    transfer = M.transfer_units(paper.config, paper.extras)
    assert names[:len(transfer)] == [u.name for u in transfer] and names[0] == "transfer control seed 0"
    first_other_seed = next(i for i, n in enumerate(names) if n.endswith("seed 1"))
    assert {u.kind for u in units[:first_other_seed]} == {"finetune", "interpolation", "recovery"}
    assert units[1].args[0] == M.transfer_base(paper.config, paper.extras)
    # then the paper's (same-data) setting, exploratory seeds after any confirmatory ones
    same = M.same_data_units(paper.config, paper.extras)
    assert names[-len(same):] == [u.name for u in same] and same[0].name == "mitigation baseline control seed 0"
    assert same[1].args[0] == M.baseline_config(paper.config, paper.extras)
    assert paper.config.arch == "resnet18" and paper.extras["eroding_lr"] == 0.1


# --- report rules on synthetic inputs ----------------------------------------------------------------------------

def _stats(**rows) -> pd.DataFrame:
    out = []
    for label, (erosion, lo, hi, follow, seeds) in rows.items():
        kind = "baseline" if label == "baseline" else "l2sp"
        out.append({"kind": kind, "label": label, "value": None, "seeds": seeds, "missing_seeds": 0, "devices": [],
                    "erosion": erosion, "erosion_lo": lo, "erosion_hi": hi, "follow_pattern": follow,
                    "follow_pattern_lo": math.nan, "follow_pattern_hi": math.nan, "clean_pattern": 0.5 - erosion,
                    "clean_pattern_lo": math.nan, "clean_pattern_hi": math.nan, "clean_control": 0.5,
                    "clean_control_lo": math.nan, "clean_control_hi": math.nan, "matched_pattern": 0.9,
                    "matched_pattern_lo": math.nan, "matched_pattern_hi": math.nan, "clean_start": 0.5,
                    "matched_start": 0.5, "follow_start": 0.05, "wall_time_s": 10.0})
    return pd.DataFrame(out)


def test_mitigation_verdict_rules():
    s = _stats(baseline=(0.30, 0.20, 0.40, 0.95, 3), prevents=(0.01, -0.02, 0.05, 0.2, 3),
               reduces=(0.15, 0.05, 0.25, 0.6, 3), same=(0.28, 0.2, 0.36, 0.93, 3), wide=(0.02, -0.1, 0.14, 0.1, 3))
    base = s.iloc[0]
    v = {r.label: R.mitigation_verdict(r, base) for _, r in s.iterrows()}
    assert v["baseline"]["erosion"] == "erodes"
    assert v["prevents"]["erosion"] == "prevents" and v["prevents"]["keeps"] and v["prevents"]["pattern"] == \
        "does not follow"
    assert v["reduces"]["erosion"] == "reduces" and v["reduces"]["pattern"] == "partly follows"
    assert v["same"]["erosion"] == "does not prevent" and v["same"]["pattern"] == "follows"
    assert v["wide"]["erosion"] == "reduces"  # CI reaches above the threshold: not "prevents"
    assert v["prevents"]["learns"]  # matched accuracy rose from 0.5 to 0.9: it still learns the pattern
    text = R.recommendation(s)
    assert "prevents and wide keep clean accuracy" in text and "also do not follow the pattern" in text
    assert R.kept_settings(s) == ["prevents", "wide"]
    key = R.key_result(s, {"window": [0.1], "reference": 0.5}, {0.1: {"verdict": "suppression"}}, "cpu")
    assert key == ("at the cpu profile, 2 of 4 mitigations keep clean accuracy within 0.03 of the control (prevents "
                   "and wide); weight interpolation: an α > 0 keeps clean accuracy without following the pattern; "
                   "recovery: suppression at lr 0.1")


def test_no_erosion_means_nothing_to_prevent_and_one_seed_has_no_interval():
    s = _stats(baseline=(0.02, math.nan, math.nan, 0.1, 1), other=(0.0, math.nan, math.nan, 0.1, 1))
    assert R.mitigation_verdict(s.iloc[1], s.iloc[0])["erosion"] == "nothing to prevent"
    text = R.recommendation(s)
    assert "one seed: no interval" in text and "does not erode" in text
    table = R.mitigation_table(s)
    assert table.erosion.tolist() == ["0.020", "0.000"]  # no interval to show


def test_interpolation_answer_rules():
    rows = []
    for seed in (0, 1):
        for a, clean, follow in ((0.0, 0.60, 0.05), (0.5, 0.58, 0.2), (0.8, 0.50, 0.6), (1.0, 0.30, 0.9)):
            rows.append({"seed": seed, "alpha": a, "statistics": R.STATISTICS["reestimated"], "clean_acc": clean,
                         "matched_acc": 0.7, "mismatched_acc": 0.3, "follow_rate": follow})
            rows.append({"seed": seed, "alpha": a, "statistics": R.STATISTICS["raw"], "clean_acc": clean - 0.1,
                         "matched_acc": 0.9, "mismatched_acc": 0.2, "follow_rate": min(1.0, follow + 0.2)})
    frame = pd.DataFrame(rows)
    ans = R.interpolation_answer(frame)
    assert ans["window"] == [0.5] and ans["first_loss"] == 0.8 and ans["first_follow"] == 0.8
    assert ans["sentence"].startswith("Yes") and "mean over 2 seeds" in ans["sentence"]
    no = R.interpolation_answer(frame.assign(follow_rate=0.9))
    assert no["window"] == [] and no["sentence"].startswith("No")
    assert "from 0.200 to 0.300" in R.bn_effect_sentence(frame)


def _curves(pattern, control, scratch, steps=(0, 10, 15, 20)) -> pd.DataFrame:
    rows = []
    for seed in (0, 1):
        for arm, values in (("pattern", pattern), ("control", control), ("scratch", scratch)):
            rows += [{"seed": seed, "lr": 0.1, "arm": arm, "step": s, "clean_acc": v, "follow_rate": 0.1}
                     for s, v in zip(steps, values)]
    return pd.DataFrame(rows)


def _gaps(end_gap: float) -> pd.DataFrame:
    return pd.DataFrame([{"when": "start", "lr": math.nan, "depth": 0, "layer": "a", "gap": 0.2},
                         {"when": "end", "lr": 0.1, "depth": 0, "layer": "a", "gap": end_gap}])


@pytest.mark.parametrize("pattern, scratch, end_gap, verdict, rec, scr", [
    ((0.2, 0.46, 0.5, 0.5), (0.1, 0.2, 0.3, 0.46), 0.01, "suppression", 10, 20),  # fast, probes back
    ((0.2, 0.46, 0.5, 0.5), (0.1, 0.2, 0.3, 0.46), 0.20, "partial", 10, 20),  # fast, a probe stays behind
    ((0.2, 0.3, 0.46, 0.5), (0.1, 0.46, 0.5, 0.5), 0.01, "destruction", 15, 10),  # slower than scratch
    ((0.2, 0.3, 0.3, 0.4), (0.1, 0.46, 0.5, 0.5), 0.01, "destruction", None, 10),  # scratch gets there, it does not
    ((0.2, 0.3, 0.3, 0.32), (0.1, 0.2, 0.3, 0.3), 0.01, "destruction", None, None),  # neither; not ahead of scratch
    ((0.2, 0.3, 0.3, 0.4), (0.1, 0.2, 0.3, 0.3), 0.01, "partial", None, None),  # neither; ahead of scratch by 0.1
    ((0.2, 0.3, 0.46, 0.5), (0.1, 0.2, 0.3, 0.46), 0.01, "partial", 15, 20),  # between the two speeds
    ((0.2, 0.3, 0.46, 0.5), (0.1, 0.2, 0.3, 0.3), 0.01, "suppression", 15, None),  # scratch never gets there
    ((0.5, 0.5, 0.5, 0.5), (0.1, 0.2, 0.3, 0.3), 0.01, "nothing to recover", 0, None),
])
def test_recovery_verdict_rules(pattern, scratch, end_gap, verdict, rec, scr):
    steps = R.recovery_steps(_curves(pattern, (0.45, 0.5, 0.5, 0.5), scratch))
    mean = steps[steps.seed == "mean"].iloc[0]
    assert mean.target == pytest.approx(0.45)
    v = R.recovery_verdicts(steps, _gaps(end_gap))[0.1]
    assert (v["verdict"], v["steps_pattern"], v["steps_scratch"]) == (verdict, rec, scr)
    assert v["start_gap"] == pytest.approx(0.2)
    assert "Verdict" in v["sentence"]
    assert ("does not reach it within the run" in v["sentence"]) == (None in (rec, scr))
