import pytest
import torch
from torch import nn

from steepest.config import load_recipe
from steepest.finetune import discriminative_lr_scales, freeze, layer_groups, trainable_names
from steepest.finetune.freeze import thawed_groups
from steepest.run import build_run
from steepest.training.events import Callback


def model():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_layer_groups_attach_norms_to_the_layer_before():
    assert layer_groups(model()) == [["0.weight", "0.bias", "1.weight", "1.bias"], ["3.weight", "3.bias", "4.weight", "4.bias"],
                                     ["5.weight", "5.bias"]]


def test_freeze_modes():
    m = model()
    freeze(m, "all_but_head")
    assert trainable_names(m) == ["5.weight", "5.bias"]
    m = model()
    freeze(m, ["0", "3.*"])
    assert trainable_names(m) == ["1.weight", "1.bias", "4.weight", "4.bias", "5.weight", "5.bias"]
    with pytest.raises(ValueError, match="matches no parameter"):
        freeze(model(), ["backbone"])


def test_discriminative_scales_and_thawing_schedule():
    scales = discriminative_lr_scales(model(), decay=0.5)
    assert scales["0.weight"] == 0.25 and scales["1.bias"] == 0.25 and scales["3.weight"] == 0.5 and scales["5.bias"] == 1.0
    assert [thawed_groups(e, 2, 3) for e in range(7)] == [1, 1, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError):
        discriminative_lr_scales(model(), decay=0.0)


def test_recipe_lr_decay_sets_each_groups_lr():
    recipe = load_recipe("digits_mlp", ["finetune={lr_decay: 0.1}", "optimizer.lr=0.01", "optimizer.weight_decay=0.0"])
    run = build_run(recipe, None, console=False)
    lrs = sorted({round(g["lr"], 12) for g in run.trainer.optimizer.param_groups})
    n = len(layer_groups(run.trainer.unwrapped_model))
    assert lrs == sorted(round(0.01 * 0.1**k, 12) for k in range(n))


def test_gradual_unfreezing_trains_the_head_first_then_thaws_downwards():
    recipe = load_recipe("digits_mlp", ["finetune={unfreeze_every_n_epochs: 2}", "trainer.max_epochs=6", "checkpoint.enabled=false"])
    snapshots = {}

    class Snapshot(Callback):
        def on_epoch_start(self, trainer):
            snapshots[trainer.state.epoch] = {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}

    run = build_run(recipe, None, console=False, extra_callbacks=[Snapshot()])
    model = run.trainer.unwrapped_model
    groups = layer_groups(model)
    run.trainer.fit()
    snapshots[6] = {n: p.detach().clone() for n, p in model.named_parameters()}
    for epoch in range(6):
        thawed = thawed_groups(epoch, 2, len(groups))
        for i, group in enumerate(groups):
            changed = any(not torch.equal(snapshots[epoch][n], snapshots[epoch + 1][n]) for n in group)
            assert changed == (i >= len(groups) - thawed), (epoch, i)
    unfreezer = next(cb for cb in run.trainer.callbacks if type(cb).__name__ == "GradualUnfreezing")
    assert [t for _, t in unfreezer.history] == [1, 1, 2, 2, 3, 3][: len(unfreezer.history)]
