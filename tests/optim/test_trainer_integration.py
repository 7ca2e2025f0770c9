"""The Trainer's contract with the registry: `needs_create_graph` makes it call backward(create_graph=True)."""

from steepest.config import load_recipe
from steepest.run import build_run


def test_adahessian_trains_through_the_trainer_with_create_graph():
    recipe = load_recipe("digits_mlp", ["data.subset=300", "trainer.max_steps=40", "trainer.early_stopping=null",
                                        "optimizer={name: adahessian, lr: 0.15}"])
    run = build_run(recipe, None, console=False)
    assert run.trainer.engine.create_graph
    before = run.trainer.evaluate("val")["val_loss"]
    run.trainer.fit()
    after = run.trainer.evaluate("val")["val_loss"]
    assert after < 0.8 * before, (before, after)
