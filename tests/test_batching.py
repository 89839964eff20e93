"""datamodules.batching: the length-bucketing sampler and the loaders the classification
datamodules (propositional logic, ListOps) share."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from datamodules.batching import BucketedDataModule, BucketSampler, ExampleDataset


def test_bucket_sampler_is_a_permutation_with_similar_lengths():
    lengths = [random.Random(i).randint(1, 40) for i in range(1000)]
    sampler = BucketSampler(lengths, batch_size=10, seed=1, pool_batches=10)
    order = list(sampler)
    assert sorted(order) == list(range(1000))
    spread = sum(max(lengths[i] for i in order[k : k + 10]) - min(lengths[i] for i in order[k : k + 10])
                 for k in range(0, 1000, 10)) / 100
    assert spread < 5  # an unsorted batch of 10 spans ~30
    sampler.set_epoch(1)
    assert list(sampler) != order


def test_bucket_order_is_a_function_of_seed_and_epoch():
    """What makes a run repeatable and a resumed epoch see the batches it would have seen."""
    lengths = [random.Random(i).randint(1, 40) for i in range(200)]

    def order(seed: int, epoch: int) -> list[int]:
        sampler = BucketSampler(lengths, batch_size=10, seed=seed, pool_batches=5)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(3, 2) == order(3, 2)
    assert len({tuple(order(seed, epoch)) for seed in (3, 4) for epoch in (0, 1, 2)}) == 6


@dataclass(frozen=True)
class _Numbered:
    index: int
    length: int


class _Numbers(BucketedDataModule):
    """The smallest classification datamodule: examples that are their own index."""

    collate_fn = staticmethod(lambda examples: [e.index for e in examples])

    def setup(self, stage=None):
        examples = [_Numbered(i, 1 + i % 7) for i in range(60)]
        self.train_set, self.val_set, self.test_set = (ExampleDataset(examples) for _ in range(3))


def _numbers(**changes) -> _Numbers:
    dm = _Numbers(**{"batch_size": 4, "eval_batch_size": 25, "bucket": False, "seed": 1, "num_workers": 0, **changes})
    dm.setup()
    return dm


def test_training_batches_are_shuffled_without_bucketing_too():
    torch.manual_seed(0)
    order = [i for batch in _numbers(bucket=False).train_dataloader() for i in batch]
    assert sorted(order) == list(range(60)) and order != list(range(60))


def test_evaluation_batches_keep_the_datasets_order_in_eval_batch_size():
    dm = _numbers(bucket=True)
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        assert list(loader) == [list(range(0, 25)), list(range(25, 50)), list(range(50, 60))]


def test_every_loader_uses_the_configured_workers():
    dm = _numbers(bucket=True, num_workers=2)
    assert [loader.num_workers for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader())] == [2, 2, 2]
