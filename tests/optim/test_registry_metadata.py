"""Metadata every optimizer row declares (steepest/optim/_registry.py)."""

import pytest

from steepest.optim import OPTIMIZERS
from steepest.optim._registry import R


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_declares_whether_its_lr_is_on_adams_scale(name):
    assert isinstance(OPTIMIZERS.get(name).flags.get("adam_lr"), bool), f"{name}: R(..., adam_lr=True|False)"


def test_a_row_without_adam_lr_is_refused():
    with pytest.raises(TypeError, match="adam_lr"):
        R("undeclared", "torch.optim:SGD")
    assert "undeclared" not in OPTIMIZERS


def test_adams_scale_holds_the_adam_family_and_the_layerwise_variants():
    adam_scale = {n for n in OPTIMIZERS if OPTIMIZERS.get(n).flags["adam_lr"]}
    assert {"adam", "adamw", "amsgrad", "nadam", "radam", "ranger", "rangerlars", "lamb", "novograd"} <= adam_scale
    assert not adam_scale & {"sgd", "momentum", "nesterov", "lars", "lion", "adadelta", "adahessian", "muon", "lookahead"}
