"""The doctor's weight-decay check on the validation loss (checklist item 12 of Deep Learning
Systems §4.5.3): on a model that overfits a few samples, decay clearly lowers the validation loss
and is suggested; where the model does not overfit, no decay lowers it and a recipe's strong decay
that raises it is called out. Ratios to the run without decay measured over seeds 0-4 (in the comments)."""

import pytest

from steepest.config import load_recipe
from steepest.diagnose import CHECKS, context_from_recipe, default_checks, run_doctor

OVERFITS = ["data.subset=100", "model.hidden=[128,128]", "model.dropout=0", "loss.label_smoothing=0",
            "optimizer.weight_decay=0", "optimizer.lr=1e-2"]  # 100 digits, a wide MLP, AdamW, nothing regularizing
TOO_MUCH_DECAY = ["model.hidden=[32]", "model.dropout=0", "optimizer.name=momentum", "optimizer.lr=0.05",
                  "optimizer.weight_decay=0.1"]  # every digit, a small MLP that does not overfit in 200 steps, L2 0.1


def check(overrides, seed):
    return run_doctor(context_from_recipe(load_recipe("digits_mlp", [f"trainer.seed={seed}", *overrides])), ["weight_decay_val"])["weight_decay_val"]


@pytest.mark.parametrize("seed", [0])
def test_decay_that_lowers_the_val_loss_of_an_overfitting_model_is_suggested(seed):
    result = check(OVERFITS, seed)
    runs = result.evidence["runs"]
    suggested = result.evidence["suggested_weight_decay"]
    assert result.verdict == "warn" and "overfits" in result.summary and suggested > 0
    assert f"optimizer.weight_decay: {suggested:g}" in result.fix
    assert runs[f"{suggested:g}"]["val_loss"] < 0.6 * runs["0"]["val_loss"]  # seeds 0-4: 0.30-0.40 x
    assert runs["1"]["train_loss"] > runs["0"]["train_loss"]  # more decay, higher training loss


@pytest.mark.parametrize("seed", [1])
def test_decay_that_does_not_lower_the_val_loss_is_not_suggested(seed):
    result = check(TOO_MUCH_DECAY, seed)
    runs = result.evidence["runs"]
    none = runs["0"]["val_loss"]
    assert result.verdict == "warn" and "raises val loss" in result.summary
    assert result.evidence["suggested_weight_decay"] == 0
    assert runs["0.1"]["val_loss"] > 1.4 * none  # the recipe's decay, seeds 0-4: 1.62-1.78 x
    assert min(r["val_loss"] for k, r in runs.items() if k != "0") > 0.9 * none  # none lowers it by 10%, seeds 0-4: >= 0.96 x


def test_the_check_is_optional_and_registered_after_the_training_loss_one():
    assert CHECKS.get("weight_decay_val").flags["default"] is False and "weight_decay_val" not in default_checks()
    order = CHECKS.in_order()
    assert order.index("weight_decay_val") == order.index("weight_decay") + 1
