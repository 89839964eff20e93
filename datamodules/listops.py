"""ListOps (Nangia & Bowman 2018) as a sequence-classification datamodule: expression -> its value 0-9.

Splits (the expression format, values and gold trees: :mod:`datamodules.listops_expressions`;
generation: :mod:`datamodules.listops_generator`):

* **train** and **valid**: ``train_count`` and ``val_count`` distinct expressions of
  ``train_min_length``..``train_max_length`` tokens drawn from the published generator's
  distribution with ``data_seed``, which is not the run's seed, so every run and every model sees
  the same data; or read from ``train_file`` / ``val_file`` (released format) when given.
* **test**: the released file (``released_test_file`` under ``data_dir``; null leaves it out)
  and, per range in ``generated_test_lengths`` (``"200-300"``), ``generated_test_count`` generated
  expressions of that many tokens, beyond the training lengths; with ``valid_in_test`` (default)
  also the validation split, its examples marked with the source ``valid``, so that what a task
  chooses at test time (the ListOps task: the layer whose trees it reports) is chosen on
  validation data and not on the test sets it reports.

No generated expression occurs in the released test file or in another split (expressions are
compared as token sequences): each generated split is drawn excluding the released file and
every split before it (train, valid, then the test ranges in order) that was read from a file or
whose length range overlaps its own (only those can share an expression with it, so the test
sets beyond the training lengths need no training data; the validation split does, being drawn
apart from it). A given ``train_file`` / ``val_file`` sharing an expression
with the released test file is a DataError naming both. Lengths 2 and 3 do not exist (the
shortest operator application, ``[MAX 2 9 ]``, has 4 tokens), so 3-100 means 4-100.

Batches (a dict; sequences time-major, right-padded with id 0, as the logic datamodule's):

==================  =====================  ==============================================================
key                 type                   what
==================  =====================  ==============================================================
``tokens``          long (time, batch)     token ids (``module_kwargs()["tokens"][id]`` is the token), 0 = padding
``length``          long (batch)           true lengths (tokens without round brackets)
``label``           long (batch)           the value 0-9, also the class index
``depth``           long (batch)           maximum nesting of operators (0 for a digit, at most 19)
``length_bucket``   long (batch)           index into ``module_kwargs()["length_buckets"]`` (e.g. ``"21-50"``)
``source``          long (batch)           index into ``module_kwargs()["sources"]``: ``train``, ``valid``,
                                           ``released``, ``len200-300`` ...
``gold_spans``      list (batch) of lists  gold constituents, half-open ``(start, end)`` token spans, one
                                           per operator application; score induced trees with
                                           :func:`datamodules.listops_expressions.tree_f1` / ``score_trees``
==================  =====================  ==============================================================

The vocabulary is fixed by the grammar, not read from data: ``<pad>``, the digits, the four
operators and ``]``.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datamodules.batching import BucketedDataModule, ExampleDataset
from datamodules.files import DataError
from datamodules.listops_expressions import SYMBOLS, ListOpsItem, make_item, read_listops
from datamodules.listops_generator import MAX_DEPTH, LengthTables, generate
from onlstm.padding import pad_batch

PAD = "<pad>"
TOKENS = (PAD,) + SYMBOLS  # id 0 is padding
TOKEN_IDS = {token: i for i, token in enumerate(TOKENS)}
NUM_CLASSES = 10
TRAIN, VALID, RELEASED = "train", "valid", "released"


@dataclass(frozen=True)
class ListOpsExample:
    ids: tuple[int, ...]
    label: int
    depth: int
    length_bucket: int
    source: int
    spans: tuple[tuple[int, int], ...]

    @property
    def length(self) -> int:
        return len(self.ids)


def collate(examples: Sequence[ListOpsExample]) -> dict[str, Any]:
    tokens, length = pad_batch([e.ids for e in examples])
    return {
        "tokens": tokens,
        "length": length,
        "label": torch.tensor([e.label for e in examples], dtype=torch.long),
        "depth": torch.tensor([e.depth for e in examples], dtype=torch.long),
        "length_bucket": torch.tensor([e.length_bucket for e in examples], dtype=torch.long),
        "source": torch.tensor([e.source for e in examples], dtype=torch.long),
        "gold_spans": [list(e.spans) for e in examples],
    }


def bucket_names(bounds: Sequence[int]) -> list[str]:
    """``(10, 20, 50)`` -> ``["1-10", "11-20", "21-50", ">50"]``."""
    names, low = [], 1
    for bound in bounds:
        names.append(f"{low}-{bound}")
        low = bound + 1
    return names + [f">{bounds[-1]}"]


def bucket_low(name: str) -> int:
    """The shortest length of a bucket :func:`bucket_names` named: ``"11-20"`` -> 11, ``">50"`` -> 51."""
    return int(name[1:]) + 1 if name.startswith(">") else int(name.partition("-")[0])


def parse_length_range(text: str, key: str) -> tuple[int, int]:
    """``"200-300"`` -> ``(200, 300)``; anything else is a ValueError naming the config key."""
    low, sep, high = str(text).partition("-")
    if not (sep and low.strip().isdigit() and high.strip().isdigit()) or int(low) > int(high) or int(low) < 1:
        raise ValueError(f"{key}: {text!r} is not a length range MIN-MAX with 1 <= MIN <= MAX, e.g. \"200-300\"")
    return int(low), int(high)


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


class ListOpsDataModule(BucketedDataModule):
    """ListOps splits and batches; the module docstring says what each argument and batch key is."""

    collate_fn = staticmethod(collate)

    def __init__(
        self,
        data_dir: str,
        released_test_file: str | None = "test_d20s.tsv",  # under data_dir; null: no released test set
        train_file: str | None = None,  # released-format files (under data_dir, or absolute) instead of generating
        val_file: str | None = None,
        train_count: int = 40_000,
        val_count: int = 2_000,
        train_min_length: int = 3,
        train_max_length: int = 100,
        # longer test expressions, generated_test_count per range
        generated_test_lengths: Sequence[str] = ("200-300", "500-600", "900-1000"),
        generated_test_count: int = 300,
        data_seed: int = 0,  # draws every generated split; the run's seed does not change the data
        valid_in_test: bool = True,  # the test loader also carries the validation split (source "valid")
        length_buckets: Sequence[int] = (10, 20, 50, 100, 200, 500, 1000),  # upper bounds of the reported length buckets
        batch_size: int = 128,
        eval_batch_size: int = 256,
        bucket: bool = True,  # length-bucketed training batches (less padding, same examples)
        seed: int = 141,  # the run's seed: order of the training batches
        num_workers: int = 0,
    ):
        super().__init__(batch_size, eval_batch_size, bucket, seed, num_workers)
        for key, value in (("train_count", train_count), ("val_count", val_count),
                           ("generated_test_count", generated_test_count)):
            if value < 1:
                raise ValueError(f"task.datamodule.{key} must be positive, got {value}")
        self.train_range = parse_length_range(f"{train_min_length}-{train_max_length}", "task.datamodule.train_min_length/train_max_length")
        self.test_ranges = [parse_length_range(r, "task.datamodule.generated_test_lengths") for r in generated_test_lengths]
        if len(set(self.test_ranges)) != len(self.test_ranges):
            raise ValueError(f"task.datamodule.generated_test_lengths has a range twice: {list(generated_test_lengths)}")
        bounds = list(length_buckets)
        if not bounds or bounds != sorted(set(bounds)) or bounds[0] < 1:
            raise ValueError(f"task.datamodule.length_buckets must be increasing positive bounds, got {bounds}")
        self.data_dir = Path(data_dir)
        self.released_test_file = released_test_file
        self.train_file, self.val_file = train_file, val_file
        self.train_count, self.val_count = train_count, val_count
        self.generated_test_count = generated_test_count
        self.data_seed = data_seed
        self.valid_in_test = valid_in_test
        self.bounds = bounds
        self.sources = [TRAIN, VALID] + ([RELEASED] if released_test_file else [])
        # the length range of every generated (or generatable) source
        self.ranges = {TRAIN: self.train_range, VALID: self.train_range}
        self.ranges.update({f"len{low}-{high}": (low, high) for low, high in self.test_ranges})
        self.sources += list(self.ranges)[2:]
        self._items: dict[str, list[ListOpsItem]] = {}  # by source, read or generated once
        self._tables: LengthTables | None = None

    def module_kwargs(self) -> dict:
        """What a sequence classifier needs to know about the data before it is read."""
        return {
            "vocab_size": len(TOKENS),
            "pad_id": TOKEN_IDS[PAD],
            "num_classes": NUM_CLASSES,
            "tokens": list(TOKENS),
            "sources": list(self.sources),
            "test_sources": self.sources[2:],
            "length_buckets": bucket_names(self.bounds),
            "max_depth": MAX_DEPTH - 1,
            "train_max_length": self.train_max_length(),
        }

    def train_max_length(self) -> int:
        """The longest training expression there can be: the top of the generated range, or the
        longest expression of ``train_file`` (read for it)."""
        if self.train_file:
            return max(item.length for item in self.items(TRAIN))
        return self.train_range[1]

    # ------------------------------------------------------------------------- the splits' items
    def _given(self, source: str) -> str | None:
        """The file a source is read from (None: generated)."""
        return {TRAIN: self.train_file, VALID: self.val_file, RELEASED: self.released_test_file}.get(source)

    def items(self, source: str) -> list[ListOpsItem]:
        """The labelled expressions of one source, read or generated on first use."""
        if source not in self._items:
            given = self._given(source)
            if given:
                items = read_listops(self.data_dir / given)  # a missing file: a DataError naming it
                if source != RELEASED:
                    self._check_not_in_released(items, given)
            else:
                items = self._generate(source)
            self._items[source] = items
        return self._items[source]

    def _released_tokens(self) -> set[tuple[str, ...]]:
        return {item.tokens for item in self.items(RELEASED)} if RELEASED in self.sources else set()

    def _check_not_in_released(self, items: Sequence[ListOpsItem], name: str) -> None:
        released = self._released_tokens()
        shared = [number for number, item in enumerate(items, start=1) if item.tokens in released]
        if shared:
            raise DataError(
                f"{self.data_dir / name}: {len(shared)} expression(s) (first at line {shared[0]}) also occur in the "
                f"released test file {self.data_dir / self.released_test_file}; remove them"
            )

    def _generate(self, source: str) -> list[ListOpsItem]:
        low, high = self.ranges[source]
        excluded = self._released_tokens()
        for earlier in self.sources[: self.sources.index(source)]:
            # a file's expressions may have any length; a generated split's only its range's
            if earlier != RELEASED and (self._given(earlier) or overlaps(self.ranges[earlier], (low, high))):
                excluded |= {item.tokens for item in self.items(earlier)}
        if self._tables is None:  # one table for every generated split
            self._tables = LengthTables(max(high for _, high in self.ranges.values()))
        count = {TRAIN: self.train_count, VALID: self.val_count}.get(source, self.generated_test_count)
        # each split its own stream of the data seed: a split does not move when another's count changes
        expressions = generate(count, low, high, f"{self.data_seed}:{source}", excluded, self._tables)
        return [make_item(e) for e in expressions]

    def _examples(self, source: str) -> list[ListOpsExample]:
        source_id = self.sources.index(source)
        return [
            ListOpsExample(
                tuple(TOKEN_IDS[t] for t in item.tokens),
                item.label,
                item.depth,
                bisect.bisect_left(self.bounds, item.length),
                source_id,
                item.spans,
            )
            for item in self.items(source)
        ]

    # ------------------------------------------------------------------------- Lightning
    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            self.train_set = ExampleDataset(self._examples(TRAIN))
            # evaluation order does not matter: sorting by length minimises padding
            self.val_set = ExampleDataset(sorted(self._examples(VALID), key=lambda e: e.length))
        if stage in (None, "test") and self.test_set is None:
            test: list[ListOpsExample] = self._examples(VALID) if self.valid_in_test else []
            for source in self.sources[2:]:
                test += self._examples(source)
            self.test_set = ExampleDataset(sorted(test, key=lambda e: e.length))
