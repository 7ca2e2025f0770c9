"""SampleLoader: a Dataset through torch's DataLoader with the same order as the in-memory fast
path, per-sample randomness from (seed, epoch, index) whatever the number of workers, and a
mid-epoch position that reads nothing before it."""

import json

import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from steepest.data import DeviceLoader
from steepest.data.stream import IterableLoader, SampleLoader


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


class _Stream(torch.utils.data.IterableDataset):
    """A stream of n (x, y) samples with no __len__ (unless sized), counting set_epoch calls."""

    def __init__(self, n, sized=False):
        self.n, self.sized, self.epochs = n, sized, []

    def __iter__(self):
        for i in range(self.n):
            yield torch.tensor([float(i)]), torch.tensor(i % 3)

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


class _SizedStream(_Stream):
    def __len__(self):
        return self.n


@pytest.mark.parametrize("workers", [0, 2])
def test_iterable_loader_keeps_stream_order_whatever_the_workers_and_resumes_at_a_batch(workers):
    loader = IterableLoader(_SizedStream(50), batch_size=8, num_workers=workers)
    seen = [x[:, 0].long().tolist() for x, _ in loader.batches(epoch=0)]
    assert seen == [list(range(i, min(i + 8, 50))) for i in range(0, 50, 8)] and len(loader) == 7
    tail = [x[:, 0].long().tolist() for x, _ in loader.batches(epoch=0, start=5)]
    assert tail == seen[5:]


def test_iterable_loader_shards_ranks_by_index_and_drops_a_final_batch_some_rank_would_miss():
    ranks = [IterableLoader(_SizedStream(33), batch_size=4, rank=r, world_size=2) for r in (0, 1)]
    per_rank = [[x[:, 0].long().tolist() for x, _ in loader.batches(epoch=0)] for loader in ranks]
    assert [len(b) for b in per_rank] == [len(ranks[0])] * 2 == [4, 4]  # 33 = 4 global batches of 8, then 1 sample: dropped
    assert sorted(i for batches in per_rank for b in batches for i in b) == list(range(32))
    assert all(i % 2 == r for r, batches in enumerate(per_rank) for b in batches for i in b)


def test_a_stream_without_length_trains_for_its_step_budget_over_several_epochs():
    import steepest

    stream = _Stream(40)
    model = torch.nn.Linear(1, 3)
    result = steepest.fit(model, stream, batch_size=8, max_steps=12, console=False, device="cpu")
    assert result.trainer.state.step == 12 and result.trainer.state.epoch == 2  # 5 batches per pass
    assert stream.epochs[-3:] == [0, 1, 2]
    with pytest.raises(Exception, match="step budget"):
        steepest.fit(torch.nn.Linear(1, 3), _Stream(40), batch_size=8, max_epochs=1, console=False, device="cpu")


def test_shuffle_once_keeps_one_permutation_for_every_epoch():
    from steepest.data.stream import epoch_order

    once = [epoch_order(100, e, seed=4, shuffle="once").tolist() for e in range(3)]
    fresh = [epoch_order(100, e, seed=4).tolist() for e in range(3)]
    assert once[0] == once[1] == once[2] == fresh[0] and once[0] != list(range(100))
    assert fresh[1] != fresh[0]
    from steepest.config import load_recipe

    assert load_recipe("digits_mlp", ["data.shuffle=once"]).data.shuffle == "once"


STREAMS = '''
import torch
from torch.utils.data import IterableDataset


class Blobs(IterableDataset):
    """Three Gaussian blobs in 8 dimensions, drawn in order from a fixed seed; no __len__."""

    def __init__(self, n, seed):
        self.n, self.seed = n, seed

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed)
        centres = torch.eye(8)[:3] * 4
        for i in range(self.n):
            y = i % 3
            yield centres[y] + torch.randn(8, generator=g), y


def make(n_train=1200):
    return {"train": Blobs(n_train, 0), "val": Blobs(300, 1), "test": Blobs(300, 2)}


def one():
    return Blobs(100, 0)


def no_test():
    return {"train": Blobs(600, 0), "val": Blobs(150, 1)}
'''


def test_a_recipe_component_may_give_streams(tmp_path, monkeypatch):
    """`data: {component: ..., stream: true}` returning IterableDatasets: the task and classes come from
    the first samples, training runs for trainer.max_steps, and held-out splits are read in order."""
    import steepest
    from steepest.errors import DataError

    (tmp_path / "blobs.py").write_text(STREAMS)
    monkeypatch.syspath_prepend(str(tmp_path))
    sets = ["data={component: 'blobs:make', stream: true, batch_size: 50}", "model={name: mlp, hidden: [16]}",
            "trainer.max_epochs=null", "trainer.max_steps=60", "trainer.early_stopping=null", "optimizer.lr=0.01"]
    summary = steepest.train("digits_mlp", sets, tmp_path / "run", console=False)
    assert summary["test_accuracy"] >= 0.95, summary  # the blobs are 4 standard deviations apart
    info = json.loads((tmp_path / "run" / "data_info.json").read_text())
    assert info["num_classes"] == 3 and info["input_shape"] == [8] and summary["steps"] == 60
    with pytest.raises(DataError, match="cannot be split by index"):
        steepest.train("digits_mlp", ["data={component: 'blobs:one', stream: true}"], tmp_path / "one", console=False)
    # without a test stream there is no test split: the validation stream is not reported again as "test"
    sets[0] = "data={component: 'blobs:no_test', stream: true, batch_size: 50}"
    summary = steepest.train("digits_mlp", sets, tmp_path / "no_test", console=False)
    assert not any(k.startswith("test_") for k in summary) and summary["val_accuracy"] >= 0.95
    from steepest.commands import headline

    assert headline(summary).startswith("val (no test split) accuracy:")
    from steepest.report import write_report

    # the report reads the empty test split (was: torch.cat of no batches)
    page = write_report([tmp_path / "no_test"], trust_code=True)
    assert page.exists() and "Learning curves" in page.read_text()
    # a dict of splits needs stream: true (was: "cannot iterate 'blobs:make' as (x, y) pairs: 0")
    with pytest.raises(DataError, match=r"'blobs:no_test' gave a dict of splits \(train, val\).*set data.stream: true"):
        steepest.train("digits_mlp", ["data={component: 'blobs:no_test'}"], tmp_path / "dict", console=False)
    with pytest.raises(DataError, match="'blobs:one' gave an IterableDataset.*set data.stream: true"):
        steepest.train("digits_mlp", ["data={component: 'blobs:one'}"], tmp_path / "iterable", console=False)
