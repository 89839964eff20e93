"""Batching shared by the sequence-classification datamodules (propositional logic, ListOps): a
length-bucketing training sampler and the loaders (the padding itself: :func:`onlstm.padding.pad_batch`)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.contract import TaskDataModule


class BucketSampler(Sampler[int]):
    """Shuffled indices arranged so that each run of ``batch_size`` has similar lengths.

    Pools of ``pool_batches * batch_size`` shuffled examples are sorted by length and cut into
    batches, and the batches are shuffled: batches stay random but carry little padding (the
    recurrence runs to the longest sequence of a batch). A plain index sampler, so a DataLoader
    with ``batch_size`` cuts exactly these batches; the order is a function of (seed, epoch).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, pool_batches: int = 50):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.pool = pool_batches * batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this at each epoch start
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed * 100_003 + self.epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        batches = []
        for start in range(0, len(order), self.pool):
            pool = sorted(order[start : start + self.pool], key=self.lengths.__getitem__)
            batches += [pool[i : i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        rng.shuffle(batches)
        return iter([i for batch in batches for i in batch])


class ExampleDataset(Dataset):
    """A list of examples, each with a ``length`` (what the sampler buckets by)."""

    def __init__(self, examples: Sequence[Any]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Any:
        return self.examples[index]


class BucketedDataModule(TaskDataModule):
    """The loaders of a classification datamodule: training batches of ``batch_size`` from
    :class:`BucketSampler` (``bucket``; else shuffled), evaluation batches of ``eval_batch_size``
    in the datasets' order (``seed``: the training order's). A subclass sets ``collate_fn`` (a
    ``staticmethod``) and, in ``setup``, the :class:`ExampleDataset` s ``train_set``, ``val_set``
    and ``test_set``."""

    collate_fn: Callable[[Sequence[Any]], dict[str, Any]]

    def __init__(self, batch_size: int, eval_batch_size: int, bucket: bool, seed: int, num_workers: int):
        super().__init__()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.bucket, self.seed, self.num_workers = bucket, seed, num_workers
        self.train_set: ExampleDataset | None = None
        self.val_set: ExampleDataset | None = None
        self.test_set: ExampleDataset | None = None

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.bucket:
            sampler = BucketSampler([e.length for e in self.train_set.examples], self.batch_size, self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=sampler is None,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
        )

    def _eval_loader(self, dataset: ExampleDataset) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.eval_batch_size, shuffle=False, collate_fn=self.collate_fn,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)
