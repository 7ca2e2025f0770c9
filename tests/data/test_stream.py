"""SampleLoader: a Dataset through torch's DataLoader with the same order as the in-memory fast
path, per-sample randomness from (seed, epoch, index) whatever the number of workers, and a
mid-epoch position that reads nothing before it."""

import torch
from torch.utils.data import Dataset, TensorDataset

from steepest.data import DeviceLoader
from steepest.data.stream import SampleLoader


class Counting(Dataset):
    def __init__(self, n):
        self.n, self.reads = n, []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        self.reads.append(i)
        return torch.tensor([float(i)]), torch.tensor(i)


def noisy(x, generator):
    return x + torch.rand(x.shape, generator=generator)


def test_same_order_as_the_fast_path():
    x, y = torch.arange(50.0).unsqueeze(1), torch.arange(50)
    fast = DeviceLoader(x, y, 8, seed=3)
    streamed = SampleLoader(TensorDataset(x, y), 8, seed=3)
    for epoch in (0, 1):
        assert [b[1].tolist() for b in fast.batches(epoch)] == [b[1].tolist() for b in streamed.batches(epoch)]


def test_resuming_mid_epoch_reads_nothing_before_the_position():
    data = Counting(40)
    loader = SampleLoader(data, 4, seed=0)
    whole = [b[1].tolist() for b in loader.batches(epoch=2)]
    data.reads.clear()
    rest = [b[1].tolist() for b in loader.batches(epoch=2, start=6)]
    assert rest == whole[6:]
    assert sorted(data.reads) == sorted(i for batch in whole[6:] for i in batch)  # 16 reads, none of the first 24


def test_per_sample_draws_repeat_whatever_the_workers_and_change_with_the_epoch():
    data = TensorDataset(torch.zeros(24, 3), torch.arange(24))

    def epoch_inputs(workers, epoch):
        loader = SampleLoader(data, 5, seed=1, transform=noisy, num_workers=workers)
        return torch.cat([x for x, _ in loader.batches(epoch)])

    zero, two = epoch_inputs(0, 0), epoch_inputs(2, 0)
    assert torch.equal(zero, two)
    assert not torch.equal(zero, epoch_inputs(0, 1))


def test_dict_batches_are_collated_and_moved():
    class Dicts(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return {"input": torch.full((2,), float(i)), "labels": torch.tensor(i)}

    batches = list(SampleLoader(Dicts(), 4, shuffle=False, device="cpu").batches(0))
    assert [b["labels"].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5]] and batches[0]["input"].shape == (4, 2)
