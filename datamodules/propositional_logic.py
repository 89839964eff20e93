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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from datamodules.batching import BucketedDataModule, ExampleDataset
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


class PropositionalLogicDataModule(BucketedDataModule):
    collate_fn = staticmethod(collate)

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
        super().__init__(batch_size, eval_batch_size, bucket, seed, num_workers)
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
        self.train_fraction = train_fraction
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction

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
            self.train_set = ExampleDataset(subsample(train, self.train_fraction, self.seed))
            # evaluation order does not matter: sorting by length minimises padding
            self.val_set = ExampleDataset(
                sorted(subsample(val, self.val_fraction, self.seed + 1), key=lambda e: e.length)
            )
        if stage in (None, "test") and self.test_set is None:
            test = []
            for n in self.test_ops:
                test += subsample(read_pairs(self._file(self.test_dir, "test", n), n), self.test_fraction, self.seed + 2)
            for n in self.generated_test_ops:
                test += generated_pairs(n, self.generated_test_count, self.generated_test_seed)
            self.test_set = ExampleDataset(sorted(test, key=lambda e: e.length))
