import pytest
import torch
import torch.nn.functional as F
from torch import nn

from steepest.regularize import (
    DropConnectConv2d,
    DropConnectLinear,
    apply_dropconnect,
    drop_weights,
)


def test_output_is_x_times_masked_weights_by_hand():
    layer = DropConnectLinear(5, 3, p=0.4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    out = layer(x)
    mask = torch.rand(3, 5, generator=torch.Generator().manual_seed(0)) >= 0.4
    expected = x @ (layer.weight * mask / 0.6).T + layer.bias
    assert torch.allclose(out, expected, atol=1e-6)
    assert 0 < int(mask.sum()) < mask.numel()
    assert not torch.allclose(out, F.linear(x, layer.weight, layer.bias))
    torch.manual_seed(7)  # without a generator, the global RNG (seeded and checkpointed by the trainer)
    out = DropConnectLinear(5, 3, p=0.4)(x)
    torch.manual_seed(7)
    plain = nn.Linear(5, 3)
    mask = torch.rand(3, 5) >= 0.4
    assert torch.allclose(out, x @ (plain.weight * mask / 0.6).T + plain.bias, atol=1e-6)


def test_eval_uses_the_full_weights_and_masks_change_per_batch():
    layer, x = DropConnectLinear(6, 4, p=0.5), torch.randn(3, 6)
    a, b = layer(x), layer(x)
    assert not torch.allclose(a, b)  # a fresh mask per forward pass
    layer.eval()
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.train()
    layer.p = 0.0
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_the_mask_is_unbiased():
    w = torch.randn(3, 4)
    dropped = drop_weights(w, 0.3, torch.Generator().manual_seed(0), batch=20000)
    assert torch.allclose(dropped.mean(0), w, atol=0.03)  # E[W * M / (1 - p)] = W
    assert float((dropped == 0).double().mean()) == pytest.approx(0.3, abs=0.01)


def test_gradient_reaches_only_the_kept_weights():
    layer = DropConnectLinear(5, 3, p=0.4, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5)
    layer(x).sum().backward()
    mask = torch.rand(3, 5, generator=torch.Generator().manual_seed(0)) >= 0.4
    expected = torch.ones(4, 3).T @ x * mask / 0.6
    assert torch.allclose(layer.weight.grad, expected, atol=1e-6)
    assert torch.all(layer.weight.grad[~mask] == 0) and torch.all(layer.weight.grad[mask] != 0)


def test_per_sample_masks_by_batched_matmul():
    layer = DropConnectLinear(5, 3, p=0.5, per_sample=True, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 2, 5)  # (N, L, in): one mask per sample, shared along L
    out = layer(x)
    masks = torch.rand(4, 3, 5, generator=torch.Generator().manual_seed(0)) >= 0.5
    assert out.shape == (4, 2, 3)
    for n in range(4):
        assert torch.allclose(out[n], x[n] @ (layer.weight * masks[n] / 0.5).T + layer.bias, atol=1e-6)
    assert not torch.equal(masks[0], masks[1])


def test_conv2d_dropconnect_by_hand():
    conv = DropConnectConv2d(2, 3, 3, padding=1, p=0.25, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 2, 5, 5)
    mask = torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(0)) >= 0.25
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * mask / 0.75, conv.bias, padding=1), atol=1e-5)
    assert torch.equal(conv.eval()(x), F.conv2d(x, conv.weight, conv.bias, padding=1))


def test_apply_dropconnect_swaps_hidden_layers_and_shares_parameters():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    params, keys = list(model.parameters()), list(model.state_dict())
    x = torch.randn(3, 4)
    before = model(x)
    assert apply_dropconnect(model, 0.3) is model
    assert [type(m).__name__ for m in model] == ["DropConnectLinear", "ReLU", "DropConnectLinear", "ReLU", "Linear"]
    assert all(a is b for a, b in zip(params, model.parameters())) and list(model.state_dict()) == keys
    assert torch.equal(model.eval()(x), before)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    apply_dropconnect(conv, 0.2, layer_types=(nn.Linear, nn.Conv2d))
    assert type(conv[0]) is DropConnectConv2d and type(conv[2]) is DropConnectConv2d and type(conv[4]) is nn.Linear
    mha = nn.TransformerEncoderLayer(8, 2, 16)  # out_proj is a Linear subclass that is never called
    apply_dropconnect(mha, 0.2, skip_last=False)
    assert type(mha.self_attn.out_proj) is not DropConnectLinear and type(mha.linear1) is DropConnectLinear
    with pytest.raises(ValueError, match="no DropConnect version"):
        apply_dropconnect(nn.Sequential(nn.Conv1d(1, 1, 1)), 0.2, layer_types=(nn.Conv1d,), skip_last=False)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropConnectLinear(2, 2, p=1.0)
