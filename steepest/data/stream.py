"""Batches from a map-style `torch.utils.data.Dataset`, never materialized, through torch's
`DataLoader` (worker processes, pinned memory, prefetching, any collate function), with the data
order and every random draw a function of (seed, epoch, position):

- the order of epoch e is the permutation `DeviceLoader` uses (`epoch_order`), each rank taking
  every world_size-th index, so the in-memory fast path and this loader see the same samples;
- the sampler hands the workers (epoch, index) pairs; a per-sample transform draws from a
  generator seeded with (seed, epoch, index) (`steepest.data.transforms.sample_generator`), so a
  run repeats exactly whatever the number of workers, and every epoch draws afresh;
- resuming at micro-batch k of an epoch starts the sampler there: the samples before it are never
  read again, and the result is the uninterrupted run's. The position is (epoch, step), which the
  Trainer's state already holds; no loader state is needed (torchdata's StatefulDataLoader solves
  this for loaders whose order is not a function of their position).

    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> loader = SampleLoader(TensorDataset(torch.arange(10.).unsqueeze(1), torch.arange(10)), batch_size=4, shuffle=False)
    >>> [y.tolist() for _, y in loader.batches(epoch=0)]
    [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info

from steepest.data.transforms import sample_generator, sample_generators
from steepest.errors import DataError

SampleTransform = Callable[[Any, torch.Generator], Any]
BatchCheck = Callable[[Any, Sequence[int]], None]  # (batch, its sample indices) -> raises DataError


def epoch_order(n: int, epoch: int, seed: int, *, shuffle: bool | str = True, rank: int = 0, world_size: int = 1,
                weights: torch.Tensor | None = None) -> torch.Tensor:
    """This rank's sample indices for `epoch`: a permutation from a generator seeded with
    (seed, epoch) (or n draws with replacement by `weights`), padded by wrapping to a multiple of
    `world_size` and split by rank (every world_size-th index, as DistributedSampler does).
    `shuffle="once"` draws one permutation (epoch 0's) and keeps it for every epoch; False keeps
    the data's order."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + (0 if shuffle == "once" else epoch))
    if weights is not None:
        perm = torch.multinomial(weights.double().cpu(), n, replacement=True, generator=gen)
    elif shuffle:
        perm = torch.randperm(n, generator=gen)
    else:
        perm = torch.arange(n)
    if world_size > 1:
        per_rank = math.ceil(n / world_size)
        perm = torch.cat([perm, perm[: per_rank * world_size - n]])
        perm = perm[rank::world_size]
    return perm


class EpochIndexed(Dataset):
    """`dataset[i]` read as `self[(epoch, i)]`, with `transform(x, generator)` applied to the sample's
    input drawing from the generator of (seed, epoch, i). A sample is an (x, y) pair (or a tuple
    whose first item is the input), or a dict whose `input_key` is the input."""

    def __init__(self, dataset: Dataset, transform: SampleTransform | None = None, seed: int = 0, input_key: str = "pixel_values"):
        self.dataset, self.transform, self.seed, self.input_key = dataset, transform, seed, input_key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        sample = self.dataset[index]
        if self.transform is None:
            return sample
        return _transform_sample(sample, self.transform, sample_generator(self.seed, epoch, index), self.input_key)

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        """A whole micro-batch at once: one `dataset.__getitems__(indices)` call (a memory-mapped
        array reads its rows in one gather) when the dataset has it, else sample by sample; with a
        transform, the micro-batch's generators are made together (`sample_generators`: the same
        streams as one by one, a fraction of the cost). torch's DataLoader fetcher calls this."""
        indices = [index for _, index in keys]
        getitems = getattr(self.dataset, "__getitems__", None)
        samples = getitems(indices) if getitems is not None else [self.dataset[i] for i in indices]
        if self.transform is None:
            return samples
        epochs = {epoch for epoch, _ in keys}
        if len(epochs) != 1:  # never from SampleLoader's sampler (one epoch per micro-batch); kept exact anyway
            return [self[key] for key in keys]
        generators = sample_generators(self.seed, epochs.pop(), indices)
        return [_transform_sample(sample, self.transform, g, self.input_key) for sample, g in zip(samples, generators)]


class _Positions:
    """The batch sampler: micro-batches of (epoch, index) pairs from micro-batch `start` on. It runs
    in the main process, so one DataLoader (with persistent workers) serves every epoch: `set`
    points it at the next epoch and start before each pass."""

    def __init__(self, order: torch.Tensor, epoch: int, batch_size: int, start: int, count: int):
        self.batch_size = batch_size
        self.set(order, epoch, start, count)

    def set(self, order: torch.Tensor, epoch: int, start: int, count: int) -> None:
        self.order, self.epoch, self.start, self.count = order.tolist(), epoch, start, count

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for i in range(self.start, self.count):
            yield [(self.epoch, j) for j in self.order[i * self.batch_size : (i + 1) * self.batch_size]]

    def __len__(self) -> int:
        return max(self.count - self.start, 0)


def step_groups(batches: Iterable[Any], accumulate: int) -> Iterator[list[Any]]:
    """Consecutive micro-batches in groups of `accumulate`, one group per optimizer step (the last
    may be shorter): how every loader's `steps` serves the Trainer."""
    group: list[Any] = []
    for batch in batches:
        group.append(batch)
        if len(group) == accumulate:
            yield group
            group = []
    if group:
        yield group


def to_device(batch: Any, device: torch.device, non_blocking: bool = False, float_dtype: torch.dtype | None = None) -> Any:
    """Tensors of a batch (tuples, lists, dicts, nested) moved to `device`, floating point ones cast to
    `float_dtype` when given (a numpy-backed Dataset's float64 for a float32 model); other values unchanged."""
    if isinstance(batch, torch.Tensor):
        dtype = float_dtype if float_dtype is not None and batch.is_floating_point() else None
        return batch.to(device, dtype=dtype, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: to_device(v, device, non_blocking, float_dtype) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device, non_blocking, float_dtype) for v in batch)
    return batch


class SampleLoader:
    """Micro-batches of a map-style `dataset` for the Trainer (the same interface as `DeviceLoader`:
    `batches`, `steps`, `steps_per_epoch`, `num_samples`, `batch_size`), loaded by a `DataLoader`.

    `transform(x, generator)` runs in the workers on each sample's input; `collate_fn` builds a
    batch (torch's default: tuples and dicts of stacked tensors); batches move to `device` with
    non-blocking copies when `pin_memory`. `weights` draws each epoch's samples with replacement
    (a weighted sampler). `check(batch, indices)` runs on every training batch in the main process
    (`steepest.data.checks.batch_checker`: NaN/inf inputs, labels out of range, named by sample
    index), and on the first complete pass of `eval_batches` (a held-out split's loader is given
    one to check its samples once). A batch whose samples cannot be collated (shapes differ) is a one-line DataError that
    names the odd sample. The DataLoader options are torch's (`multiprocessing_context`: "fork",
    "forkserver" or "spawn"; a forked worker's anonymous memory counts the parent's pages it
    shares copy-on-write, so forkserver keeps out-of-core runs' memory lower; the Dataset and
    transform must then be importable, not defined in __main__)."""

    def __init__(self, dataset: Dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, weights: torch.Tensor | None = None, transform: SampleTransform | None = None,
                 num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False, prefetch_factor: int | None = None,
                 collate_fn: Callable[[list], Any] | None = None, device: torch.device | str | None = None,
                 check: BatchCheck | None = None, multiprocessing_context: str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = EpochIndexed(dataset, transform, seed)
        self.num_samples = len(dataset)
        self.batch_size = min(batch_size, self.num_samples)
        self.shuffle, self.seed, self.drop_last, self.rank, self.world_size = shuffle, seed, drop_last, rank, world_size
        self.weights, self.check = weights, check
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = bool(pin_memory and self.device is not None and self.device.type == "cuda")
        self.options = {"num_workers": num_workers, "pin_memory": self.pin_memory, "collate_fn": collate_fn,
                        "persistent_workers": persistent_workers and num_workers > 0,
                        **({"prefetch_factor": prefetch_factor} if prefetch_factor and num_workers > 0 else {}),
                        **({"multiprocessing_context": multiprocessing_context} if multiprocessing_context and num_workers > 0 else {})}
        self._sampler: _Positions | None = None
        self._loader: DataLoader | None = None
        # DataLoader draws its workers' base seed from this generator, not from torch's global one,
        # so starting a pass (an epoch, a resume) never shifts the dropout and mixup draws of training
        self._generator = torch.Generator()
        self._eval: tuple[int, DataLoader] | None = None
        self._eval_checked = False  # eval_batches ran `check` over every sample once
        self.float_dtype: torch.dtype | None = None  # cast floating point batches to it on the way to the device

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank."""
        n = math.ceil(self.num_samples / self.world_size)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def steps_per_epoch(self, accumulate: int = 1) -> int:
        return math.ceil(len(self) / accumulate)

    def order(self, epoch: int) -> torch.Tensor:
        return epoch_order(self.num_samples, epoch, self.seed, shuffle=self.shuffle, rank=self.rank,
                           world_size=self.world_size, weights=self.weights)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """Micro-batches of `epoch` on the device, starting at micro-batch `start` (nothing before it is read)."""
        order = self.order(epoch)
        self._generator.manual_seed(self.seed * 1_000_003 + epoch)  # the workers' seeds: a function of (seed, epoch)
        if self._loader is None:
            self._sampler = _Positions(order, epoch, self.batch_size, start, len(self))
            self._loader = DataLoader(self.dataset, batch_sampler=self._sampler, generator=self._generator, **self.options)
        else:
            self._sampler.set(order, epoch, start, len(self))
        position = start
        for batch in _checked_iter(self._loader, lambda k: order[(start + k) * self.batch_size:][: self.batch_size].tolist(),
                                   self.dataset, epoch):
            if self.check is not None:
                self.check(batch, order[position * self.batch_size:][: self.batch_size].tolist())
            position += 1
            yield to_device(batch, self.device, self.pin_memory, self.float_dtype) if self.device is not None else batch

    def steps(self, epoch: int, accumulate: int = 1, start_step: int = 0) -> Iterator[list[Any]]:
        """Groups of `accumulate` micro-batches, one per optimizer step (the last may be shorter)."""
        return step_groups(self.batches(epoch, start_step * accumulate), accumulate)

    def close(self) -> None:
        """Stop the persistent workers now. Left to the garbage collector, a DataLoader freed inside a
        reference cycle loses its index queues' feeder threads first, and each worker then waits
        out torch's 5 s join timeout before it is terminated."""
        loaders = [self._loader, self._eval[1] if self._eval is not None else None]
        for loader in loaders:
            iterator = getattr(loader, "_iterator", None)
            shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's own teardown of a worker iterator
            if shutdown is not None:
                shutdown()
                loader._iterator = None
        self._loader, self._eval = None, None

    def eval_batches(self, batch_size: int | None = None) -> Iterator[Any]:
        """Every sample once, in order, untransformed by randomness (epoch 0's draws when the
        transform is random: pass the evaluation transform for held-out data). The first complete
        pass runs `check` on each batch (rows named by their index in the Dataset), so a held-out
        split is checked like the training one; later passes read the same samples unchecked."""
        size = batch_size or self.batch_size
        if self._eval is None or self._eval[0] != size:  # one DataLoader per size, kept (with its workers when persistent)
            sampler = _Positions(torch.arange(self.num_samples), 0, size, 0, math.ceil(self.num_samples / size))
            self._eval = (size, DataLoader(self.dataset, batch_sampler=sampler, generator=torch.Generator().manual_seed(self.seed), **self.options))
        check = self.check if not self._eval_checked else None
        batches = _checked_iter(self._eval[1], lambda k: list(range(k * size, min((k + 1) * size, self.num_samples))), self.dataset, 0)
        for k, batch in enumerate(batches):
            if check is not None:
                check(batch, range(k * size, min((k + 1) * size, self.num_samples)))
            yield to_device(batch, self.device, self.pin_memory, self.float_dtype) if self.device is not None else batch
        self._eval_checked = self._eval_checked or check is not None


def _checked_iter(loader: DataLoader, indices_of: Callable[[int], list[int]], dataset: EpochIndexed | None, epoch: int) -> Iterator[Any]:
    """`loader`'s batches; a collation failure (samples of different shapes, values that are not
    tensors or numbers) becomes a DataError naming the first odd sample of the k-th batch."""
    iterator, k = iter(loader), 0
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except (RuntimeError, TypeError) as exc:
            text = str(exc)
            if not any(sign in text for sign in ("stack expects", "equal size", "collate")):
                raise
            raise DataError(_collate_message(indices_of(k), dataset, epoch, text)) from None
        k += 1
        yield batch


def _shape_of(sample: Any) -> Any:
    if isinstance(sample, torch.Tensor):
        return tuple(sample.shape)
    if isinstance(sample, dict):
        return {k: _shape_of(v) for k, v in sample.items()}
    if isinstance(sample, (tuple, list)):
        return tuple(_shape_of(v) for v in sample)
    return type(sample).__name__


def _collate_message(indices: list[int], dataset: EpochIndexed | None, epoch: int, text: str) -> str:
    first_line = text.strip().splitlines()[-1] if text.strip() else text
    if dataset is not None and indices:
        try:
            shapes = [(i, _shape_of(dataset[(epoch, i)])) for i in indices]
        except Exception:  # noqa: BLE001 - the message below still names the batch
            shapes = []
        odd = [(i, shape) for i, shape in shapes if shape != shapes[0][1]]
        if odd:
            return (f"sample {odd[0][0]} has shape {odd[0][1]}, sample {shapes[0][0]} has {shapes[0][1]}: samples of a batch must share "
                    "shapes; resize or pad them in the Dataset, or give a collate_fn that pads (steepest.data.collate.pad_collate)")
    where = f"samples {indices[0]}..." if indices else "a batch"
    return (f"cannot make a batch of {where} ({first_line}); return tensors or numbers of one shape from the Dataset, "
            "or give a collate_fn")


class _Shard(IterableDataset):
    """In each DataLoader worker: the rank's micro-batches of an iterable `dataset` that fall to this
    worker, collated, with the stream indices of their samples. Global batch g holds stream samples
    [g*B*W, (g+1)*B*W) (B the per-rank batch size, W ranks); rank r takes those with index % W == r,
    and worker w of K takes batches g - start = w (mod K), which DataLoader's round-robin over
    workers returns in order. A final global batch with fewer than W samples is dropped (some rank
    would have none), so every rank takes the same number of batches."""

    def __init__(self, dataset: IterableDataset, batch_size: int, rank: int, world_size: int, transform: SampleTransform | None,
                 seed: int, collate_fn: Callable[[list], Any]):
        self.dataset, self.batch_size, self.rank, self.world_size = dataset, batch_size, rank, world_size
        self.transform, self.seed, self.collate_fn = transform, seed, collate_fn
        self.epoch, self.start = 0, 0

    def __iter__(self) -> Iterator[tuple[list[int], Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        per_global = self.batch_size * self.world_size
        current, indices, samples, seen = -1, [], [], 0
        for i, sample in enumerate(self.dataset):
            seen = i + 1
            g = i // per_global
            if g != current:
                if samples:
                    yield indices, self.collate_fn(samples)
                current, indices, samples = g, [], []
            if g < self.start or (g - self.start) % workers != worker or i % self.world_size != self.rank:
                continue
            if self.transform is not None:
                sample = _transform_sample(sample, self.transform, sample_generator(self.seed, self.epoch, i))
            indices.append(i)
            samples.append(sample)
        if samples and seen - current * per_global >= self.world_size:
            yield indices, self.collate_fn(samples)


def _transform_sample(sample: Any, transform: SampleTransform, generator: torch.Generator, input_key: str = "pixel_values") -> Any:
    if isinstance(sample, dict):
        return {**sample, input_key: transform(sample[input_key], generator)}
    return (transform(sample[0], generator), *sample[1:])


class IterableLoader:
    """Micro-batches of an iterable (streaming) `dataset` for the Trainer, through torch's DataLoader.

    Each epoch is one pass over the stream (`dataset.set_epoch(epoch)` is called first when it has
    one, as Hugging Face streaming datasets do for their shuffle buffer). Under torchrun every stream
    sample goes to exactly one rank and one worker (see `_Shard`): the same samples per global
    batch as one process with world_size times the batch. `transform(x, generator)` draws from
    (seed, epoch, stream index). The stream's length is `len(dataset)` when it has one; otherwise
    the run needs a step budget (`max_steps`) and an epoch ends when the stream does.

    Resuming at micro-batch k of an epoch reads the stream from its start but builds, transforms and
    trains on nothing before batch k; a stream that cannot be re-read from the start is beyond what
    any checkpoint can resume exactly.
    """

    def __init__(self, dataset: IterableDataset, batch_size: int, *, seed: int = 0, rank: int = 0, world_size: int = 1,
                 transform: SampleTransform | None = None, num_workers: int = 0, pin_memory: bool = False,
                 persistent_workers: bool = False, prefetch_factor: int | None = None,
                 collate_fn: Callable[[list], Any] | None = None, device: torch.device | str | None = None,
                 check: BatchCheck | None = None, multiprocessing_context: str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.check, self._eval_checked = check, False
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = bool(pin_memory and self.device is not None and self.device.type == "cuda")
        self.shard = _Shard(dataset, batch_size, rank, world_size, transform, seed, collate_fn or default_collate)
        self.options = {"num_workers": num_workers, "pin_memory": self.pin_memory,
                        "persistent_workers": persistent_workers and num_workers > 0,
                        **({"prefetch_factor": prefetch_factor} if prefetch_factor and num_workers > 0 else {}),
                        **({"multiprocessing_context": multiprocessing_context} if multiprocessing_context and num_workers > 0 else {})}
        try:
            self.num_samples = len(dataset)
        except TypeError:
            self.num_samples = None
        self.float_dtype: torch.dtype | None = None  # cast floating point batches to it on the way to the device

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank (known only when the stream has a length)."""
        if self.num_samples is None:
            raise TypeError("a stream without __len__ has no number of batches")
        full, rest = divmod(self.num_samples, self.batch_size * self.world_size)
        return full + (1 if rest >= self.world_size else 0)

    def steps_per_epoch(self, accumulate: int = 1) -> int | None:
        return None if self.num_samples is None else math.ceil(len(self) / accumulate)

    def batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        self.shard.epoch, self.shard.start = epoch, start
        loader = DataLoader(self.shard, batch_size=None, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch), **self.options)
        for indices, batch in _checked_iter(loader, lambda k: [], None, epoch):
            if self.check is not None:
                self.check(batch, indices)
            yield to_device(batch, self.device, self.pin_memory, self.float_dtype) if self.device is not None else batch

    def steps(self, epoch: int, accumulate: int = 1, start_step: int = 0) -> Iterator[list[Any]]:
        """Groups of `accumulate` micro-batches, one per optimizer step (the last may be shorter)."""
        return step_groups(self.batches(epoch, start_step * accumulate), accumulate)

    def eval_batches(self, batch_size: int | None = None) -> Iterator[Any]:
        """Every sample once, in stream order, on this process (no sharding, no transform). The first
        complete pass runs `check` on each batch (rows named by their stream index); later passes
        read the same samples unchecked."""
        shard = _Shard(self.shard.dataset, batch_size or self.batch_size, 0, 1, None, self.seed, self.shard.collate_fn)
        check = self.check if not self._eval_checked else None
        loader = DataLoader(shard, batch_size=None, generator=torch.Generator().manual_seed(self.seed), **self.options)
        for indices, batch in _checked_iter(loader, lambda k: [], None, 0):
            if check is not None:
                check(batch, indices)
            yield to_device(batch, self.device, self.pin_memory, self.float_dtype) if self.device is not None else batch
        self._eval_checked = self._eval_checked or check is not None


def first_tensor(batch: Any) -> torch.Tensor | None:
    """The first tensor in a batch (its length is the batch's number of samples)."""
    if isinstance(batch, torch.Tensor):
        return batch
    values: Sequence = list(batch.values()) if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else []
    for value in values:
        found = first_tensor(value)
        if found is not None:
            return found
    return None
