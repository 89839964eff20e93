"""Bowman et al. (2015) propositional-logic pairs: ``trainN`` / ``testN`` files -> padded id batches.

Each line is ``LABEL<TAB>PREMISE<TAB>HYPOTHESIS`` (see :mod:`datamodules.logic_formulas` for the formula
grammar and the seven labels). Training uses ``train{N}`` for N in ``train_ops``; every
``val_every``-th example of each of those files (its 10th, 20th, ... line) is held out for
validation, as in the paper. Testing uses ``test{N}`` for N in ``test_ops``, all in one
dataloader whose batches carry each example's file number ``ops``, so the task can report
accuracy per number of operators.

The vocabulary is fixed by the grammar (brackets, operators, six variables), not read from data,
so a token outside it is a data error naming the file and line. Batches are time-major and
right-padded with id 0: ``premise`` (time, batch) with ``premise_len`` (batch), the same for
``hypothesis``, plus ``label`` and ``ops`` (batch).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.contract import TaskDataModule
from datamodules.files import DataError, read_lines, require_dir
from datamodules.logic_formulas import RELATIONS, SYMBOLS, random_example
from onlstm.padding import pad_batch

PAD = "<pad>"
TOKENS = (PAD,) + SYMBOLS  # id 0 is padding
TOKEN_IDS = {token: i for i, token in enumerate(TOKENS)}
LABEL_IDS = {symbol: i for i, symbol in enumerate(RELATIONS)}


@dataclass(frozen=True)
class LogicExample:
    premise: tuple[int, ...]
    hypothesis: tuple[int, ...]
    label: int
    ops: int  # the N of the file it came from

    @property
    def length(self) -> int:
        return max(len(self.premise), len(self.hypothesis))


def encode_formula(text: str, path: Path, number: int, field: str) -> tuple[int, ...]:
    tokens = text.split()
    if not tokens:
        raise DataError(f"{path}:{number}: the {field} is empty; each line is LABEL<TAB>PREMISE<TAB>HYPOTHESIS")
    try:
        return tuple(TOKEN_IDS[token] for token in tokens)
    except KeyError as err:
        raise DataError(
            f"{path}:{number}: unknown token {err.args[0]!r} in the {field}; formulas use only "
            f"{' '.join(SYMBOLS)} separated by spaces"
        ) from None


def read_pairs(path: Path, ops: int) -> list[LogicExample]:
    """Every line of one ``trainN``/``testN`` file; a malformed line is a DataError naming it."""
    examples = []
    for number, line in read_lines(path, "logic data"):
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(
                f"{path}:{number}: expected 3 tab-separated fields (LABEL, PREMISE, HYPOTHESIS), "
                f"found {len(fields)}"
            )
        label, premise, hypothesis = fields
        if label not in LABEL_IDS:
            raise DataError(
                f"{path}:{number}: unknown relation {label!r}; labels are {' '.join(RELATIONS)}"
            )
        examples.append(
            LogicExample(
                encode_formula(premise, path, number, "premise"),
                encode_formula(hypothesis, path, number, "hypothesis"),
                LABEL_IDS[label],
                ops,
            )
        )
    if not examples:
        raise DataError(f"{path}: the file is empty; it needs LABEL<TAB>PREMISE<TAB>HYPOTHESIS lines")
    return examples


def generated_pairs(n_operators: int, count: int, seed: int) -> list[LogicExample]:
    """``count`` pairs whose larger formula has ``n_operators`` operators, from the generator
    (:func:`datamodules.logic_formulas.random_example`), seeded by ``(seed, n_operators)``."""
    rng = random.Random(f"{seed}:{n_operators}")
    where = Path(f"<generated, {n_operators} operators, seed {seed}>")
    examples = []
    for number in range(1, count + 1):
        label, premise, hypothesis = random_example(rng, n_operators)
        examples.append(LogicExample(encode_formula(premise, where, number, "premise"),
                                     encode_formula(hypothesis, where, number, "hypothesis"),
                                     LABEL_IDS[label], n_operators))
    return examples


def split_holdout(examples: Sequence[LogicExample], every: int) -> tuple[list[LogicExample], list[LogicExample]]:
    """(kept, held out): the ``every``-th, 2*``every``-th, ... example (1-based) is held out."""
    kept, held = [], []
    for i, example in enumerate(examples, start=1):
        (held if every and i % every == 0 else kept).append(example)
    return kept, held


def subsample(examples: list[LogicExample], fraction: float, seed: int) -> list[LogicExample]:
    """A seeded random ``fraction`` of the examples, in their original order."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return list(examples)
    keep = sorted(random.Random(seed).sample(range(len(examples)), max(1, round(fraction * len(examples)))))
    return [examples[i] for i in keep]


class PairDataset(Dataset):
    def __init__(self, examples: Sequence[LogicExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> LogicExample:
        return self.examples[index]


def collate(examples: Sequence[LogicExample]) -> dict[str, Tensor]:
    premise, premise_len = pad_batch([e.premise for e in examples])
    hypothesis, hypothesis_len = pad_batch([e.hypothesis for e in examples])
    return {
        "premise": premise,
        "premise_len": premise_len,
        "hypothesis": hypothesis,
        "hypothesis_len": hypothesis_len,
        "label": torch.tensor([e.label for e in examples], dtype=torch.long),
        "ops": torch.tensor([e.ops for e in examples], dtype=torch.long),
    }


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


class PropositionalLogicDataModule(TaskDataModule):
    def __init__(
        self,
        data_dir: str,
        test_dir: str | None = None,  # where the testN files are (default: data_dir), e.g. generated ones
        train_ops: Sequence[int] = tuple(range(7)),
        test_ops: Sequence[int] = tuple(range(13)),
        val_every: int = 10,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        train_fraction: float = 1.0,  # seeded subsample of the training split (CPU-sized runs)
        val_fraction: float = 1.0,
        test_fraction: float = 1.0,  # seeded subsample of each test file (CPU-sized runs)
        bucket: bool = True,  # length-bucketed training batches (less padding, same examples)
        seed: int = 141,
        num_workers: int = 0,
        # test formulas longer than Bowman's files, drawn by datamodules.logic_formulas' generator (exact labels):
        # generated_test_count pairs per number of operators, from generated_test_seed (the same
        # formulas for every model and training seed)
        generated_test_ops: Sequence[int] = (),
        generated_test_count: int = 300,
        generated_test_seed: int = 0,
    ):
        super().__init__()
        if val_every < 2:
            raise ValueError(f"val_every must be >= 2 (every val_every-th example is held out), got {val_every}")
        self.data_dir = Path(data_dir)
        self.test_dir = Path(test_dir) if test_dir else self.data_dir
        self.train_ops = list(train_ops)
        self.test_ops = list(test_ops)
        self.generated_test_ops = list(generated_test_ops)
        shared = sorted(set(self.test_ops) & set(self.generated_test_ops))
        if shared:
            raise ValueError(
                f"operators {shared} are in both task.datamodule.test_ops (files) and "
                "task.datamodule.generated_test_ops (generated): give each number of operators one source"
            )
        if self.generated_test_ops and generated_test_count < 1:
            raise ValueError(f"task.datamodule.generated_test_count must be positive, got {generated_test_count}")
        self.generated_test_count = generated_test_count
        self.generated_test_seed = generated_test_seed
        self.val_every = val_every
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.bucket = bucket
        self.seed = seed
        self.num_workers = num_workers
        self.train_set: PairDataset | None = None
        self.val_set: PairDataset | None = None
        self.test_set: PairDataset | None = None

    def module_kwargs(self) -> dict:
        """What the task needs to know about the data before it is read."""
        return {
            "vocab_size": len(TOKENS),
            "pad_id": TOKEN_IDS[PAD],
            "relations": list(RELATIONS),
            "train_ops": list(self.train_ops),
            "test_ops": list(self.test_ops) + list(self.generated_test_ops),
        }

    def _file(self, folder: Path, split: str, n: int) -> Path:
        return require_dir(folder, "logic data") / f"{split}{n}"

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            train, val = [], []
            for n in self.train_ops:
                kept, held = split_holdout(read_pairs(self._file(self.data_dir, "train", n), n), self.val_every)
                train += kept
                val += held
            self.train_set = PairDataset(subsample(train, self.train_fraction, self.seed))
            # evaluation order does not matter: sorting by length minimises padding
            self.val_set = PairDataset(
                sorted(subsample(val, self.val_fraction, self.seed + 1), key=lambda e: e.length)
            )
        if stage in (None, "test") and self.test_set is None:
            test = []
            for n in self.test_ops:
                test += subsample(read_pairs(self._file(self.test_dir, "test", n), n), self.test_fraction, self.seed + 2)
            for n in self.generated_test_ops:
                test += generated_pairs(n, self.generated_test_count, self.generated_test_seed)
            self.test_set = PairDataset(sorted(test, key=lambda e: e.length))

    def train_dataloader(self) -> DataLoader:
        sampler = None
        if self.bucket:
            sampler = BucketSampler([e.length for e in self.train_set.examples], self.batch_size, self.seed)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=sampler,
            shuffle=sampler is None,
            collate_fn=collate,
            num_workers=self.num_workers,
        )

    def _eval_loader(self, dataset: PairDataset) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.eval_batch_size, shuffle=False, collate_fn=collate, num_workers=self.num_workers
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)
