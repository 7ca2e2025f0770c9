"""A Hugging Face causal LM trained from dict batches (`model(**batch)`, its own loss) with dynamic
padding: accumulating micro-batches with different token counts equals one big batch (float64)."""

import pytest
import torch
from torch.utils.data import Dataset

import steepest
from steepest.data.collate import pad_collate
from steepest.data.stream import epoch_order

transformers = pytest.importorskip("transformers")


class Texts(Dataset):
    """Token sequences of 3..14 ids; the first `prompt` labels are -100 (a prompt not trained on),
    so the micro-batches hold different numbers of counted tokens."""

    def __init__(self, n=24, vocab=40, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.rows = []
        for _ in range(n):
            length = int(torch.randint(3, 15, (1,), generator=g))
            ids = torch.randint(1, vocab, (length,), generator=g)
            prompt = int(torch.randint(0, length - 1, (1,), generator=g))
            labels = ids.clone()
            labels[:prompt] = -100
            self.rows.append({"input_ids": ids, "labels": labels})

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def tiny_gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=40, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=39, eos_token_id=39)
    return transformers.GPT2LMHeadModel(config).double()


def train(batch_size, accumulate):
    model = tiny_gpt2()
    steepest.fit(model, Texts(), optimizer=torch.optim.SGD(model.parameters(), lr=0.5), batch_size=batch_size, accumulate=accumulate,
                 max_steps=3, collate_fn=pad_collate(pad_id=0), console=False, device="cpu")
    return model


def test_dynamic_padding_and_token_weighted_accumulation_equal_one_big_batch():
    data = Texts()
    collate = pad_collate(pad_id=0)
    order = epoch_order(len(data), epoch=0, seed=0).tolist()  # fit's 3 steps: epoch 0's order, 4 samples per micro-batch
    micro = [collate([data[i] for i in order[j:j + 4]]) for j in range(0, 24, 4)]
    assert len({b["input_ids"].shape[1] for b in micro}) > 1  # padded per batch, not to one length
    counts = [int((b["labels"][:, 1:] != -100).sum()) for b in micro]
    assert any(counts[2 * k] != counts[2 * k + 1] for k in range(3))  # the test means something only when token counts differ

    big, accumulated = train(8, 1), train(4, 2)
    for (name, a), b in zip(big.named_parameters(), accumulated.parameters()):
        assert (a - b).abs().max() < 1e-10, name
    # weighting by samples instead of tokens would differ: check the step is not trivially equal
    untrained = tiny_gpt2()
    assert max((a - u).abs().max() for a, u in zip(big.parameters(), untrained.parameters())) > 1e-3


def test_own_loss_normalizer_counts_shifted_tokens_of_a_causal_lm():
    from steepest.training.batch import own_loss_normalizer

    model = tiny_gpt2()
    batch = pad_collate()([{"input_ids": [1, 2, 3, 4], "labels": [-100, 2, 3, 4]}, {"input_ids": [5, 6], "labels": [5, 6]}])
    # decoder-only: the loss predicts token t+1 from t, so the first label of each row never counts
    assert int(own_loss_normalizer(model, batch)) == 3 + 1
    assert own_loss_normalizer(model, (batch["input_ids"], batch["labels"])) is None
