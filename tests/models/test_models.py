import pytest
import torch

from steepest.models import MODELS
from steepest.models.transformer import next_token_loss


@pytest.mark.parametrize("name,shape,x_shape", [("resnet", (1, 28, 28), (2, 1, 28, 28)), ("vgg", (1, 28, 28), (2, 1, 28, 28)),
                                                ("lstm", (16, 3), (2, 16, 3)), ("gru", (16, 3), (2, 16, 3)),
                                                ("transformer_encoder", (16, 3), (2, 16, 3))])
def test_models_produce_outputs_and_train(name, shape, x_shape):
    model = MODELS.build(name, shape, 5)
    out = model(torch.randn(*x_shape))
    assert out.shape == (2, 5)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_causal_lm_is_causal_and_tied():
    torch.manual_seed(0)
    lm = MODELS.build("causal_lm", vocab_size=30, d_model=32, dropout=0.0).eval()
    ids = torch.randint(0, 30, (1, 10))
    changed = ids.clone()
    changed[0, 7] = (ids[0, 7] + 1) % 30
    a, b = lm(ids), lm(changed)
    assert torch.allclose(a[0, :7], b[0, :7], atol=1e-5) and not torch.allclose(a[0, 7:], b[0, 7:])
    assert lm.head.weight is lm.embed.weight


def test_lstm_forget_gate_bias_rule_is_visible():
    model = MODELS.build("lstm", (16, 1), 1, hidden=8, layers=2)
    for layer in range(2):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        assert torch.all(total[8:16] == 1.0) and torch.all(total[0:8] == -1.0) and torch.all(total[24:32] == -1.0)


def test_resnet_blocks_add_the_skip_connection():
    """With the residual branch's last BatchNorm scaled to 0, a block is act(skip(x)): the identity path."""
    torch.manual_seed(0)
    model = MODELS.build("resnet", (1, 12, 12), 3, channels=[4, 8], blocks_per_stage=1).eval()
    identity, projected = model.stages[0], model.stages[1]
    assert isinstance(identity.skip, torch.nn.Identity) and not isinstance(projected.skip, torch.nn.Identity)
    with torch.no_grad():
        identity.body[-1].weight.zero_()
        identity.body[-1].bias.zero_()
        x = torch.randn(2, 4, 12, 12)
        assert torch.equal(identity(x), torch.relu(x))


def test_transformer_encoder_over_token_ids():
    model = MODELS.build("transformer_encoder", (12,), 2, vocab_size=20, d_model=16, heads=2, layers=1)
    ids = torch.randint(0, 20, (3, 12)).float()  # the data pipeline stores ids as floats
    assert model(ids).shape == (3, 2)


def test_causal_lm_learns_next_token():
    torch.manual_seed(0)
    lm = MODELS.build("causal_lm", vocab_size=12, d_model=32, heads=2, layers=1, ff=64, dropout=0.0)
    ids = (torch.arange(16)[None, :] + torch.randint(0, 12, (32, 1))) % 12  # counting mod 12
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    first = None
    for _ in range(100):  # 60 steps ended anywhere in 0.04-0.27 across seeds (too near 0.3); 100 end far below it
        loss = next_token_loss(lm(ids), ids)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0 and loss.item() < 0.3, (first, loss.item())
