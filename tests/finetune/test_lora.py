import pytest
import torch
from torch import nn

from steepest.finetune import LoRALinear, apply_lora, lora_state_dict, merge_lora


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def randomize_adapters(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_B.weight.copy_(torch.randn(m.lora_B.weight.shape, generator=g) * 0.1)


def test_forward_is_the_formula():
    base = nn.Linear(6, 4)
    layer = LoRALinear(base, r=3, alpha=6.0)
    randomize_adapters(nn.Sequential(layer))
    x = torch.randn(5, 6)
    A, B = layer.lora_A.weight, layer.lora_B.weight
    expected = x @ base.weight.T + base.bias + (6.0 / 3) * (x @ A.T @ B.T)
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert A.shape == (3, 6) and B.shape == (4, 3)


def test_starts_as_the_pretrained_model_and_trains_only_the_adapters():
    model = mlp()
    x, y = torch.randn(32, 12), torch.randint(0, 3, (32,))
    before = model(x).detach()
    frozen = {k: v.clone() for k, v in model.state_dict().items()}
    adapted = apply_lora(model, r=2, alpha=4, targets=["Linear"], train=["4"])
    assert adapted == ["0", "2"]
    assert torch.equal(model(x), before)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable == ["0.lora_A.weight", "0.lora_B.weight", "2.lora_A.weight", "2.lora_B.weight", "4.bias", "4.weight"]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * (12 + 16) + 2 * (16 + 16) + 16 * 3 + 3
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(50):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    state = model.state_dict()
    assert torch.equal(state["0.base.weight"], frozen["0.weight"]) and torch.equal(state["2.base.bias"], frozen["2.bias"])
    assert not torch.equal(state["4.weight"], frozen["4.weight"])


def test_merge_gives_plain_layers_with_the_same_outputs():
    model = mlp()
    apply_lora(model, r=4, alpha=8)
    randomize_adapters(model)
    x = torch.randn(7, 12)
    adapted = model(x).detach()
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == set(mlp().state_dict())
    assert torch.allclose(model(x), adapted, atol=1e-5)


def test_adapter_state_dict_holds_only_the_adapters():
    model = mlp()
    apply_lora(model, r=2, targets=["2"])
    assert sorted(lora_state_dict(model)) == ["2.lora_A.weight", "2.lora_B.weight"]


def test_no_matching_layer_is_a_clear_error():
    with pytest.raises(ValueError, match="no nn.Linear layer matches"):
        apply_lora(mlp(), targets=["encoder.*"])
    with pytest.raises(ValueError, match="rank"):
        LoRALinear(nn.Linear(2, 2), r=0)


def test_equals_hugging_face_peft():
    peft = pytest.importorskip("peft")
    ours, reference = mlp(), mlp()
    apply_lora(ours, r=4, alpha=12, targets=["0", "2"], train=["4"])
    randomize_adapters(ours)
    config = peft.LoraConfig(r=4, lora_alpha=12, lora_dropout=0.0, target_modules=["0", "2"], modules_to_save=["4"])
    reference = peft.get_peft_model(reference, config)
    theirs = {n: p for n, p in reference.named_parameters()}
    with torch.no_grad():
        for layer in ("0", "2"):
            for part in ("lora_A", "lora_B"):
                name = next(n for n in theirs if n.endswith(f".{layer}.{part}.default.weight"))
                theirs[name].copy_(ours.get_submodule(f"{layer}.{part}").weight)
    x = torch.randn(9, 12)
    out_ours, out_theirs = ours(x), reference(x)
    assert torch.allclose(out_ours, out_theirs, atol=1e-6)
    out_ours.square().sum().backward()
    out_theirs.square().sum().backward()
    for layer in ("0", "2"):
        name = next(n for n in theirs if n.endswith(f".{layer}.lora_A.default.weight"))
        assert torch.allclose(ours.get_submodule(f"{layer}.lora_A").weight.grad, theirs[name].grad, atol=1e-6)
    assert sum(p.numel() for p in ours.parameters() if p.requires_grad) == \
        sum(p.numel() for n, p in reference.named_parameters() if p.requires_grad)


def test_a_second_apply_lora_does_not_nest_adapters():
    model = mlp()
    first = apply_lora(model, targets=["0"])
    assert first == ["0"]
    second = apply_lora(model)  # the other layers only: not layer 0 again, nor its base or factors
    assert second == ["2", "4"] and sum(isinstance(m, LoRALinear) for m in model.modules()) == 3
    assert not any(isinstance(m.base, LoRALinear) for m in model.modules() if isinstance(m, LoRALinear))
    with pytest.raises(ValueError, match="LoRA-adapted already"):
        apply_lora(model)
