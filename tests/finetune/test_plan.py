"""Per-module learning rates in recipes (prefixes and fnmatch patterns), `finetune.backbone_lr`, and
`finetune: {plan: auto}` choosing what to retrain from the data size and the task similarity."""

import pytest
from torch import nn

from steepest.config import load_recipe
from steepest.config.build import build_optimizer
from steepest.finetune.apply import plan_finetune


def model():
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def lrs(recipe, net):
    opt = build_optimizer(recipe, net)
    return {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}


def test_lr_scale_patterns_and_backbone_lr():
    net = model()
    by_pattern = lrs(load_recipe("digits_mlp", ["optimizer.lr=0.01", "optimizer.lr_scale={'[02].*': 0.1}"]), net)
    assert by_pattern[id(net[0].weight)] == pytest.approx(1e-3) and by_pattern[id(net[2].bias)] == pytest.approx(1e-3)
    assert by_pattern[id(net[4].weight)] == pytest.approx(0.01)
    backbone = lrs(load_recipe("digits_mlp", ["optimizer.lr=0.01", "finetune={backbone_lr: 0.01}"]), net)
    assert backbone[id(net[4].weight)] == pytest.approx(0.01) and backbone[id(net[4].bias)] == pytest.approx(0.01)  # the head
    assert all(backbone[id(p)] == pytest.approx(1e-4) for p in (*net[0].parameters(), *net[2].parameters()))


@pytest.mark.parametrize("n,similarity,expect", [
    (500, "similar", {"freeze": "all_but_head", "backbone_lr": None}),
    (500, "different", {"freeze": None, "backbone_lr": 0.01}),
    (50_000, "similar", {"freeze": None, "backbone_lr": 0.1}),
    (50_000, "different", {"freeze": None, "backbone_lr": None}),
])
def test_plan_auto_follows_size_and_similarity(n, similarity, expect):
    section = load_recipe("digits_mlp", [f"finetune={{plan: auto, similarity: {similarity}}}"]).finetune
    resolved, note = plan_finetune(section, n, 10)
    assert {k: getattr(resolved, k) for k in expect} == expect and resolved.plan is None
    assert ("small" if n < 10_000 else "large") in note and similarity in note


def test_plan_auto_is_said_at_the_start_of_a_run(tmp_path, capsys):
    from steepest.api import train

    summary = train("digits_mlp", ["trainer.max_epochs=1", "finetune={plan: auto}"], tmp_path / "run")
    err = capsys.readouterr().err
    assert "plan auto: target data small" in err and "train the head only" in err
    assert summary["steps"] > 0
