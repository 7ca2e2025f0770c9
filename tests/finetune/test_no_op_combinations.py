"""finetune combinations that would silently do nothing are refused in one line (a new user copied
them together from the README and trained only the head)."""

import pytest

from steepest.config import load_recipe
from steepest.errors import ConfigError
from steepest.run import build_run


@pytest.mark.parametrize(("section", "message"), [
    ("{lora: {r: 4}, freeze: all_but_head}", "froze every LoRA adapter"),
    ("{freeze: all_but_head, unfreeze_every_n_epochs: 2}", "unfreeze_every_n_epochs: after finetune.freeze only one layer group"),
    ("{freeze: all_but_head, lr_decay: 0.5}", "lr_decay: after finetune.freeze only one layer group"),
])
def test_no_op_combinations_are_refused(section, message):
    with pytest.raises(ConfigError, match=message):
        build_run(load_recipe("digits_mlp", ["data.subset=200", f"finetune={section}"]), None, console=False)


@pytest.mark.parametrize("section", ["{lora: {r: 4}, unfreeze_every_n_epochs: 1}", "{unfreeze_every_n_epochs: 1, lr_decay: 0.5}",
                                     "{freeze: ['0'], lr_decay: 0.5}"])
def test_combinations_that_act_still_build(section):
    run = build_run(load_recipe("digits_mlp", ["data.subset=200", f"finetune={section}"]), None, console=False)
    assert any(p.requires_grad for p in run.trainer.unwrapped_model.parameters())
