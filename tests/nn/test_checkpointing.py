import copy

import pytest
import torch
from torch import nn

from steepest.config import load_recipe
from steepest.errors import ConfigError
from steepest.models.transformer import TransformerEncoderModel
from steepest.nn.checkpointing import enable_activation_checkpointing
from steepest.run import build_run


def deep_mlp(seed=0, depth=16, width=64):
    torch.manual_seed(seed)
    blocks = [nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Dropout(0.2)) for _ in range(depth)]
    return nn.Sequential(*blocks, nn.Linear(width, 3))


def saved_bytes(model, x):
    """Bytes autograd keeps for the backward pass during one forward (outside checkpointed regions)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return total[0], out


def grads_after_backward(model, x, seed=3):
    torch.manual_seed(seed)  # the same dropout masks in both runs
    model(x).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("spec", [True, 4, ["0", "5", "10"]])
def test_same_gradients_and_names_less_saved_memory(spec):
    plain = deep_mlp()
    ckpt = copy.deepcopy(plain)
    done = enable_activation_checkpointing(ckpt, spec)
    assert done and set(ckpt.state_dict()) == set(plain.state_dict())
    x = torch.randn(32, 64)
    g_plain, g_ckpt = grads_after_backward(plain, x), grads_after_backward(ckpt, x)
    for name in g_plain:
        assert torch.allclose(g_plain[name], g_ckpt[name], atol=1e-6), name
    if spec is True:  # sqrt(17) ~ 4 segments: only the segment inputs stay, not every layer's activations
        full, _ = saved_bytes(plain, x)
        kept, _ = saved_bytes(ckpt, x)
        assert kept < 0.2 * full, (kept, full)


def test_transformer_layers_are_checkpointed_and_eval_is_unchanged():
    torch.manual_seed(0)
    model = TransformerEncoderModel((10, 4), 3, d_model=16, heads=2, layers=3, ff=32, dropout=0.1)
    plain = copy.deepcopy(model)
    assert enable_activation_checkpointing(model) == ["encoder.layers.0", "encoder.layers.1", "encoder.layers.2"]
    x = torch.randn(6, 10, 4)
    g_plain, g_ckpt = grads_after_backward(plain, x), grads_after_backward(model, x)
    assert all(torch.allclose(g_plain[n], g_ckpt[n], atol=1e-5) for n in g_plain)
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-6)
    copied = copy.deepcopy(model)  # a copy checkpoints its own blocks, not the original's
    assert copied.encoder.layers[0].forward.__self__ is copied.encoder.layers[0]


def test_recipe_key_trains_the_same_weights():
    sets = ["trainer.max_steps=20", "trainer.max_epochs=null", "checkpoint.enabled=false", "model.dropout=0.1"]

    def final(extra):
        run = build_run(load_recipe("digits_mlp", [*sets, *extra]), None, console=False)
        run.trainer.fit()
        return run.trainer.unwrapped_model.state_dict()

    a, b = final([]), final(["model.activation_checkpointing=true"])
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ConfigError, match="model.activation_checkpointing"):
        build_run(load_recipe("digits_mlp", ["model.activation_checkpointing=[nothing.*]"]), None, console=False)
