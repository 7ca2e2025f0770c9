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


def test_fit_with_adahessian_keeps_the_gradient_graph_by_itself():
    """steepest.fit and a hand-built Trainer read the optimizer's own `needs_create_graph`."""
    import torch

    import steepest

    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))
    result = steepest.fit(net, (x[:250], y[:250]), val_data=(x[250:], y[250:]), optimizer="adahessian", max_epochs=4,
                          console=False)
    assert result.trainer.engine.create_graph and result.metrics["val_accuracy"] > 0.9


def test_adahessian_with_fp16_loss_scaling_is_refused(capsys):
    """The Hessian-vector product would differentiate the loss-scaled gradients (S times too large,
    unchecked for overflow): refused in the recipe (exit 2, one line) and in the Engine."""
    import pytest
    import torch

    from steepest.cli import main
    from steepest.errors import ConfigError
    from steepest.optim import AdaHessian
    from steepest.training.engine import Engine

    assert main(["validate", "digits_mlp", "--set", "optimizer.name=adahessian", "--set", "trainer.precision=fp16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "adahessian" in err and "bf16" in err
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ConfigError, match="fp16"):
        Engine(model, AdaHessian(model.parameters()), torch.nn.functional.cross_entropy, device=torch.device("cpu"),
               precision="fp16")
