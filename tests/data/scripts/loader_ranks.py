"""Run by tests/data/test_loader_ranks.py, under torchrun (or, for the one-process reference, `run`
called in the test's process): float64 training through steepest.fit on a map-style Dataset and on an
IterableDataset, each with 2 DataLoader workers; writes the final weights and, per rank, the sample
ids each step trained on (with its epoch) to argv[1] (batch size argv[2])."""

import json
import os
import sys

import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset, IterableDataset

import steepest
from steepest.training.events import Callback

N = 96
g = torch.Generator().manual_seed(0)
X, Y = torch.randn(N, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (N,), generator=g)


class MapSet(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        return X[i], torch.tensor(i), Y[i]


class Stream(IterableDataset):
    def __len__(self):
        return N

    def __iter__(self):
        for i in range(N):
            yield X[i], torch.tensor(i), Y[i]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    def forward(self, x, ids):  # the ids only say which samples a batch holds
        return self.net(x)


class SeenIds(Callback):
    def __init__(self):
        self.seen = []

    def on_step_start(self, trainer, batches):
        self.seen += [[trainer.state.epoch, int(i)] for b in batches for i in b[1].tolist()]


def run(out: str, batch: int) -> None:
    """Both trainings, on this process's rank of the launch (RANK, WORLD_SIZE; one process without)."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    for name, data in (("map", MapSet()), ("stream", Stream())):
        torch.manual_seed(1)
        model = Net().double()
        seen = SeenIds()
        steepest.fit(model, data, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), max_epochs=2,
                     batch_size=batch, num_workers=2, callbacks=[seen], console=False, device="cpu")
        with open(f"{out}/{name}-seen-{world}-{rank}.json", "w") as f:
            json.dump(seen.seen, f)
        if rank == 0:
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{out}/{name}-{world}.safetensors")


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]))
