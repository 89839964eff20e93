"""Word-level LM corpora (PTB, WikiText-2): vocabulary, token streams, BPTT segments in stream order.

Follows AWD-LSTM's ``data.py`` / ``batchify`` / ``get_batch``: every line gets an ``<eos>``, the
token stream is cut into ``batch_size`` contiguous columns, and training segments have a random
length (``bptt`` with probability 0.95, else ``bptt / 2``, then ~ N(., 5), at least 5), in stream
order so the hidden state can be carried across batches. The segment schedule of an epoch is a
pure function of (seed, epoch), so a resumed run sees the same segments.

Under DDP each rank reads its own contiguous shard: the stream is cut into
``batch_size * world_size`` columns and rank r takes columns [r * batch_size, (r+1) * batch_size).
The effective batch is therefore ``batch_size * world_size`` columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.contract import TaskDataModule
from datamodules.files import DataError, read_lines, require_dir
from datamodules.vocabulary import EOS, Vocabulary

SPLITS = ("train", "valid", "test")
BATCH_SIZE_KEYS = {"train": "batch_size", "valid": "eval_batch_size", "test": "test_batch_size"}  # per split


def tokenize_file(path: Path) -> list[list[str]]:
    """Lines of whitespace-separated words, each followed by ``<eos>`` (blank lines too)."""
    lines = [line.split() + [EOS] for _, line in read_lines(path, "corpus")]
    if not lines or all(len(words) == 1 for words in lines):
        raise DataError(f"{path}: the corpus file is empty; it needs at least one line of text")
    return lines


def build_vocabulary(lines: list[list[str]]) -> Vocabulary:
    vocab = Vocabulary([])
    for words in lines:
        for word in words:
            vocab.add(word)
    return vocab


def encode_lines(lines: list[list[str]], vocab: Vocabulary, path: Path) -> Tensor:
    ids = []
    for number, words in enumerate(lines, start=1):
        try:
            ids.extend(vocab.encode(words))
        except KeyError as err:
            if vocab.unk_id is None:
                raise DataError(
                    f"{path}:{number}: word {err.args[0]!r} is not in the training vocabulary and the "
                    "vocabulary has no <unk>; map rare words to <unk> in the training file"
                ) from None
            ids.extend(vocab.encode(words, unknown="unk"))
    return torch.tensor(ids, dtype=torch.long)


def batchify(stream: Tensor, columns: int, source: str = "the stream", fix: str = "", min_rows: int = 2) -> Tensor:
    """(rows, columns): column j is the j-th contiguous slice of the stream; the tail is dropped.
    A stream too short for ``min_rows`` rows is a DataError naming ``source`` and saying ``fix``."""
    rows = stream.numel() // columns
    if rows < min_rows:
        raise DataError(f"{source}: {stream.numel()} tokens are too few for {columns} batch columns of at least "
                        f"{min_rows} tokens each" + (f"; {fix}" if fix else ""))
    return stream[: rows * columns].view(columns, rows).t().contiguous()


def segment_schedule(rows: int, bptt: int, seed: int, epoch: int, variable: bool = True) -> list[tuple[int, int, int]]:
    """(start row, length, nominal length) of each segment of one epoch over ``rows`` rows.

    Nominal length is the drawn length before truncation at the end of the data; AWD-LSTM scales
    the learning rate by nominal / bptt.
    """
    rng = np.random.default_rng([seed, epoch])
    schedule, start = [], 0
    last_start = rows - 2 if variable else rows - 1  # AWD-LSTM's loop bounds for train / eval
    while start < last_start:
        if variable:
            mean = bptt if rng.random() < 0.95 else bptt / 2.0
            nominal = max(5, int(rng.normal(mean, 5)))
        else:
            nominal = bptt
        length = min(nominal, rows - 1 - start)
        schedule.append((start, length, nominal))
        start += length
    return schedule


class SegmentDataset(Dataset):
    """Item i: the i-th BPTT segment: input rows [s, s+len), targets shifted by one row."""

    def __init__(self, data: Tensor, schedule: list[tuple[int, int, int]], bptt: int):
        self.data, self.schedule, self.bptt = data, schedule, bptt

    def __len__(self) -> int:
        return len(self.schedule)

    def __getitem__(self, index: int) -> dict:
        start, length, nominal = self.schedule[index]
        return {
            "input": self.data[start : start + length],
            "target": self.data[start + 1 : start + 1 + length],
            "lr_scale": nominal / self.bptt,
        }


class ResumableSegmentLoader(DataLoader):
    """Segments in stream order, resumable mid-epoch.

    Lightning saves ``state_dict()`` of a loader that has one in every checkpoint and calls
    ``load_state_dict`` on resume, so a run killed mid-epoch continues at the next segment
    instead of replaying the epoch. ``batch_size=None``: each item already is a (time, batch)
    segment. Its own ``__iter__`` yields the segments without making a DataLoader iterator, so
    iterating draws nothing from the global RNG (a DataLoader iterator draws its base seed there,
    which would shift the dropout masks of a resumed run).
    """

    def __init__(self, dataset: SegmentDataset):
        super().__init__(dataset, batch_size=None, shuffle=False)
        self._next_index = 0
        self._resume_at = 0

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        for index in range(start, len(self.dataset)):
            self._next_index = index + 1
            yield self.dataset[index]

    def state_dict(self) -> dict:
        return {"next_index": self._next_index}

    def load_state_dict(self, state: dict) -> None:
        self._resume_at = int(state["next_index"])


@dataclass
class CorpusSplits:
    vocab: Vocabulary
    train: Tensor
    valid: Tensor
    test: Tensor


def load_corpus(folder: Path) -> CorpusSplits:
    folder = require_dir(folder, "corpus")
    lines = {split: tokenize_file(folder / f"{split}.txt") for split in SPLITS}
    vocab = build_vocabulary(lines["train"])
    return CorpusSplits(vocab, *(encode_lines(lines[s], vocab, folder / f"{s}.txt") for s in SPLITS))


class TextCorpusDataModule(TaskDataModule):
    """PTB / WikiText-2 token streams from ``<data_dir>/<corpus>/{train,valid,test}.txt``."""

    def __init__(
        self,
        data_dir: str,
        corpus: str = "ptb",
        batch_size: int = 20,
        eval_batch_size: int = 10,
        test_batch_size: int = 1,
        bptt: int = 70,
        variable_bptt: bool = True,
        seed: int = 141,
        train_fraction: float = 1.0,
    ):
        super().__init__()
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.folder = Path(data_dir) / corpus
        self.batch_size, self.eval_batch_size, self.test_batch_size = batch_size, eval_batch_size, test_batch_size
        self.bptt, self.variable_bptt, self.seed = bptt, variable_bptt, seed
        self.train_fraction = train_fraction
        self._splits: CorpusSplits | None = None

    @property
    def splits(self) -> CorpusSplits:
        if self._splits is None:
            splits = load_corpus(self.folder)
            if self.train_fraction < 1.0:  # a prefix of the stream: for quick runs and tests
                splits.train = splits.train[: max(2, int(splits.train.numel() * self.train_fraction))]
            self._splits = splits
        return self._splits

    @property
    def vocab(self) -> Vocabulary:
        return self.splits.vocab

    def module_kwargs(self) -> dict:
        """Data-derived arguments of the task module: the vocabulary (its size sets the model's)."""
        return {"vocab": self.vocab.words}

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _shard(self, split: str, stream: Tensor, batch_size: int) -> Tensor:
        rank, world = self._rank_world()
        fix = f"lower task.datamodule.{BATCH_SIZE_KEYS[split]}"
        if world > 1:
            fix += f" or the number of devices ({world})"
        if split == "train" and self.train_fraction < 1.0:
            fix += f" or raise task.datamodule.train_fraction ({self.train_fraction})"
        # Two rows make one segment of input and target, but AWD-LSTM's variable-length training loop
        # stops two rows before the end (segment_schedule): over two rows it would train on nothing.
        min_rows = 3 if split == "train" and self.variable_bptt else 2
        data = batchify(stream, batch_size * world, f"{self.folder / split}.txt", fix, min_rows)
        return data[:, rank * batch_size : (rank + 1) * batch_size]

    def _loader(self, data: Tensor, schedule: list[tuple[int, int, int]]) -> DataLoader:
        return ResumableSegmentLoader(SegmentDataset(data, schedule, self.bptt))

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        data = self._shard("train", self.splits.train, self.batch_size)
        return self._loader(data, segment_schedule(data.size(0), self.bptt, self.seed, epoch, self.variable_bptt))

    def _eval_loader(self, split: str, batch_size: int) -> DataLoader:
        data = self._shard(split, getattr(self.splits, split), batch_size)
        return self._loader(data, segment_schedule(data.size(0), self.bptt, self.seed, 0, variable=False))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("valid", self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", self.test_batch_size)

    def unigram_perplexity(self) -> float:
        """Perplexity of the training unigram distribution on the validation split (a baseline)."""
        counts = torch.bincount(self.splits.train, minlength=len(self.vocab)).double() + 1.0
        log_p = torch.log(counts / counts.sum())
        return math.exp(-log_p[self.splits.valid].mean().item())
