"""Bad samples in data read sample by sample (Datasets, streams) stop the run with one line that names
the sample and the fix: mismatched shapes, a label out of range deep in a stream, a non-tensor batch, NaN."""

import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

import steepest
from steepest.errors import DataError


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


class Ragged(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.zeros(5 if i == 37 else 4), i % 3


class LabelStream(IterableDataset):
    def __iter__(self):
        for i in range(8000):
            yield torch.randn(4), torch.tensor(7 if i == 7123 else i % 3)


class Words(Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        return f"word {i}", i % 3


class NaNAt(Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        return torch.full((4,), float("nan")) if i == 50 else torch.ones(4), i % 3


@pytest.mark.parametrize("workers", [0, 2])
def test_mismatched_shapes_name_the_odd_sample(workers):
    with pytest.raises(DataError) as err:
        steepest.fit(model(), Ragged(), batch_size=64, max_epochs=1, num_workers=workers, console=False, device="cpu")
    message = str(err.value)
    assert "\n" not in message and "sample 37" in message and "(5,)" in message and "collate_fn" in message


def test_label_out_of_range_deep_in_a_stream_names_its_index():
    with pytest.raises(DataError) as err:
        steepest.fit(model(), LabelStream(), batch_size=100, max_steps=200, console=False, device="cpu")
    message = str(err.value)
    assert "\n" not in message and "sample 7123" in message and "label 7" in message and "[0, 3)" in message


def test_a_non_tensor_batch_is_one_line():
    with pytest.raises(DataError) as err:
        steepest.fit(model(), Words(), batch_size=8, max_epochs=1, console=False, device="cpu")
    assert "\n" not in str(err.value) and "no tensor inputs" in str(err.value) and "str" in str(err.value)


def test_nan_inputs_name_the_sample():
    with pytest.raises(DataError) as err:
        steepest.fit(model(), NaNAt(), batch_size=16, max_epochs=1, console=False, device="cpu")
    assert "sample 50 contains NaN" in str(err.value)
