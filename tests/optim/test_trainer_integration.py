"""Optimizers that need something from the Trainer: AdaHessian (create_graph), wrappers (state)."""

import pytest

from steepest.config import load_recipe
from steepest.train.run import build_run


@pytest.mark.parametrize("name,lr", [("adahessian", 0.15), ("ranger", 2e-2), ("muon", 0.02), ("lars", 5.0), ("lion", 2e-3)])
def test_optimizer_trains_through_the_trainer(name, lr):
    recipe = load_recipe("digits_mlp", ["data.subset=400", "trainer.max_steps=100", "trainer.early_stopping=null",
                                        f"optimizer={{name: {name}, lr: {lr}}}"])
    run = build_run(recipe, None, console=False)
    before = run.trainer.evaluate("val")["val_loss"]
    run.trainer.fit()
    after = run.trainer.evaluate("val")["val_loss"]
    assert after < 0.7 * before, (name, before, after)
    assert run.trainer.engine.create_graph == (name == "adahessian")
