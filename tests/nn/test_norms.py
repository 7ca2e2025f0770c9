import pytest
import torch
from torch import nn

from steepest.errors import ConfigError
from steepest.nn import ACTIVATIONS, NORMS, RMSNorm, RMSNorm2d, make_activation, make_norm


def test_rmsnorm_is_the_formula():
    x = torch.randn(4, 3, 7, dtype=torch.float64)
    norm = RMSNorm(7, eps=1e-6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, 7))
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected, rtol=1e-12)
    two = RMSNorm((3, 7), elementwise_affine=False).double()  # over the last two dimensions
    eps = torch.finfo(torch.float64).eps
    assert torch.allclose(two(x), x / torch.sqrt((x**2).mean((-2, -1), keepdim=True) + eps), rtol=1e-12)


@pytest.mark.skipif(not hasattr(nn, "RMSNorm"), reason="torch.nn.RMSNorm needs torch >= 2.4")
@pytest.mark.parametrize("shape,eps,affine", [(8, None, True), (8, 1e-6, True), ((4, 8), None, False)])
def test_rmsnorm_equals_torch(shape, eps, affine):
    ours, ref = RMSNorm(shape, eps, affine), nn.RMSNorm(shape, eps, affine)
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
        ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(5, 4, 8) * 3
    assert torch.allclose(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    xb, ours_b, ref_b = x.bfloat16(), ours.bfloat16(), ref.bfloat16()
    assert ours_b(xb).dtype == torch.bfloat16
    assert torch.allclose(ours_b(xb).float(), ref_b(xb).float(), rtol=2e-2, atol=2e-2)


def test_rmsnorm2d_is_groupnorm_without_centering():
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    norm = RMSNorm2d(4).double()
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.0, 1.5, 2.0]))
    expected = x / torch.sqrt(x.pow(2).mean((1, 2, 3), keepdim=True) + 1e-5) * norm.weight.view(1, 4, 1, 1)
    assert torch.allclose(norm(x), expected, rtol=1e-12)
    centred = x - x.mean((1, 2, 3), keepdim=True)
    gn = nn.GroupNorm(1, 4).double()
    gn.weight.data.copy_(norm.weight.data)
    assert torch.allclose(norm(centred), gn(centred), atol=1e-9)


@pytest.mark.parametrize("name", sorted(NORMS))
@pytest.mark.parametrize("dims", [1, 2])
def test_every_norm_builds_for_features_and_images(name, dims):
    if name == "instancenorm" and dims == 1:
        with pytest.raises(ConfigError, match="1-D features"):
            make_norm(name, 12, dims=1)
        return
    layer = make_norm(name, 12, dims=dims)
    g = torch.Generator().manual_seed(0)  # unseeded, a group of 2 close features made eps matter now and then (groupnorm, 1-D)
    x = torch.randn(4, 12, generator=g) if dims == 1 else torch.randn(4, 12, 5, 5, generator=g)
    y = layer(10 * x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if name != "none":  # a real normalization: the output does not follow the input's scale
        assert torch.allclose(layer(1000 * x), y, atol=1e-3)


def test_norm_choices():
    assert isinstance(make_norm("batchnorm", 8), nn.BatchNorm1d) and isinstance(make_norm("batchnorm", 8, dims=2), nn.BatchNorm2d)
    assert make_norm("groupnorm", 12, dims=2).num_groups == 6 and make_norm("groupnorm", 64, groups=32).num_groups == 32
    assert isinstance(make_norm("layernorm", 8), nn.LayerNorm) and make_norm("layernorm", 8, dims=2).num_groups == 1
    assert isinstance(make_norm("rmsnorm", 8), RMSNorm) and isinstance(make_norm("rmsnorm", 8, dims=2), RMSNorm2d)
    with pytest.raises(ConfigError, match="did you mean 'layernorm'"):
        make_norm("layernrom", 4)
    with pytest.raises(ConfigError, match="dims"):
        make_norm("batchnorm", 4, dims=3)


def test_activations():
    assert ACTIVATIONS.names() == ["elu", "gelu", "identity", "leaky_relu", "relu", "sigmoid", "silu", "tanh"]
    x = torch.linspace(-3, 3, 13)
    for name in ACTIVATIONS:
        act = make_activation(name)
        assert isinstance(act, nn.Module) and act(x).shape == x.shape
        nn.init.calculate_gain(ACTIVATIONS.get(name).flags["gain"])  # a name torch's init understands
    assert torch.equal(make_activation("relu")(x), x.clamp_min(0)) and torch.equal(make_activation("identity")(x), x)
    assert make_activation("leaky_relu", negative_slope=0.2).negative_slope == 0.2
    with pytest.raises(ConfigError, match="did you mean 'gelu'"):
        make_activation("gelu2")
