"""Marvin & Linzen (2018) minimal pairs (JSONL, one file per test case) as batches for LM scoring.

Three steps, each a plain function so it can be tested alone:

1. :func:`load_suite` reads ``<data_dir>/syneval/*.jsonl`` into :class:`MinimalPair` items and
   checks them against ``counts.json`` (a truncated or edited file is an error, not a quietly
   different accuracy).
2. :func:`encode_suite` turns the words into the LM's ids, the way the LM saw text: a sentence is
   ``<eos> w1 .. wn <eos>`` (the leading ``<eos>`` is the end of the previous line), after the
   :class:`TextStyle` adjustments (sentence-initial capital, final period) that the training
   corpus needs. Words outside the vocabulary are counted per group and either mapped to
   ``<unk>`` or their pairs skipped.
3. The test dataloader feeds every *distinct* sentence once, right-padded, sorted by length.

Prefix sharing. 158,084 pairs hold 271,412 distinct sentences but only ~420,000 distinct
"prefix -> next word" steps (the sentences come from templates, so most share long prefixes).
The output layer (a ``vocab``-way softmax: the dominant cost) is the same for two sentences at a
shared prefix, so each distinct step gets an id (an edge of the prefix trie) and the batch
marks the one position where that step is computed (``new``); the task sums a sentence's
edge log-probabilities at the end. The recurrence still runs over every sentence, so each score
is exactly a one-sentence-at-a-time score (up to float rounding of the batch shape).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from datamodules.contract import TaskDataModule
from datamodules.files import DataError, read_lines, require_dir
from datamodules.vocabulary import EOS, UNK, Vocabulary

COUNTS_FILE = "counts.json"
CASINGS = ("auto", "lower", "sentence")


@dataclass(frozen=True)
class MinimalPair:
    category: str  # the original test case (= file name), e.g. "prep_anim"
    group: str  # the reporting group (anim/inanim merged), e.g. "prep"
    condition: str  # e.g. "sing_MS_MV_plur_ES"; NPI: "past" / "future"
    good: str
    bad: str
    intrusive: str | None = None  # NPI only: licensor inside the relative clause


def default_group(category: str) -> str:
    """The original analysis merges the ``_anim`` / ``_inanim`` variants of a test case."""
    for suffix in ("_inanim", "_anim"):
        if category.endswith(suffix):
            return category[: -len(suffix)]
    return category


def _text_field(record: dict, key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.split():
        raise DataError(
            f"{where}: field {key!r} is missing or not a non-empty string; each line needs \"good\" and \"bad\" sentences"
        )
    return value


def read_suite_file(path: Path) -> list[MinimalPair]:
    """The items of one JSONL file (blank lines skipped); errors name file and line."""
    items = []
    for number, line in read_lines(path, "minimal-pair"):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"{where}: not a JSON object ({err.msg} at column {err.colno}); write one JSON object per line"
            ) from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object with \"good\" and \"bad\", got {type(record).__name__}")
        category = str(record.get("category", path.stem))
        intrusive = _text_field(record, "intrusive", where) if "intrusive" in record else None
        items.append(
            MinimalPair(
                category=category,
                group=str(record.get("group", default_group(category))),
                condition=str(record.get("condition", "all")),
                good=_text_field(record, "good", where),
                bad=_text_field(record, "bad", where),
                intrusive=intrusive,
            )
        )
    if not items:
        raise DataError(f"{path}: no minimal pairs in the file; it needs one JSON object per line")
    return items


def _check_counts(path: Path, items: list[MinimalPair], expected: dict) -> None:
    found = Counter(item.condition for item in items)
    if len(items) != expected.get("total", len(items)) or (
        "conditions" in expected and dict(found) != dict(expected["conditions"])
    ):
        raise DataError(
            f"{path}: {len(items)} items {dict(found)} but {COUNTS_FILE} says {expected.get('total')} "
            f"{expected.get('conditions')}; the file is truncated or changed: restore it from the data source"
        )


def load_suite(
    folder: str | Path,
    categories: Sequence[str] | None = None,
    limit_per_condition: int | None = None,
) -> list[MinimalPair]:
    """All items of ``folder/*.jsonl`` (or of the listed categories), files in name order.

    When ``folder/counts.json`` exists, every file read must have exactly its counts, and every
    category it lists must have a file (unless ``categories`` picks a subset).
    ``limit_per_condition`` keeps the first N items of each (category, condition), for quick runs.
    """
    folder = require_dir(folder, "syntactic-evaluation (minimal pairs)")
    files = {p.stem: p for p in sorted(folder.glob("*.jsonl"))}
    if not files:
        raise DataError(f"{folder}: no *.jsonl files; expected the Marvin & Linzen suite (one JSONL file per case)")
    counts: dict = {}
    if (folder / COUNTS_FILE).is_file():
        try:
            counts = json.loads((folder / COUNTS_FILE).read_text(encoding="utf-8")).get("categories", {})
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise DataError(
                f"{folder / COUNTS_FILE}: not a readable counts file ({err}); restore it from the data source"
            ) from None
    if categories is None:
        missing = sorted(set(counts) - set(files))
        if missing:
            raise DataError(
                f"{folder}: {COUNTS_FILE} lists {missing} but there is no such .jsonl file; restore the suite"
            )
        names = list(files)
    else:
        unknown = [name for name in categories if name not in files]
        if unknown:
            raise DataError(f"{folder}: no test case {unknown}; choose among {sorted(files)}")
        names = list(categories)
    suite: list[MinimalPair] = []
    for name in names:
        items = read_suite_file(files[name])
        if name in counts:
            _check_counts(files[name], items, counts[name])
        if limit_per_condition is not None:
            seen: Counter = Counter()
            kept = []
            for item in items:
                seen[item.condition] += 1
                if seen[item.condition] <= limit_per_condition:
                    kept.append(item)
            items = kept
        suite.extend(items)
    return suite


# ------------------------------------------------------------------------------ text style
@dataclass(frozen=True)
class TextStyle:
    """How a suite sentence (lower-case, no punctuation) is written for a given LM."""

    capitalize_first: bool  # "The author laughs": corpora that keep case (WikiText-2)
    final_period: bool  # "... laughs .": corpora with punctuation (WikiText-2; M&L's own evaluation)

    def words(self, sentence: str) -> list[str]:
        words = sentence.split()
        if self.capitalize_first:
            words[0] = words[0][:1].upper() + words[0][1:]
        if self.final_period:
            words.append(".")
        return words


def resolve_style(vocab: Vocabulary, casing: str = "auto", final_period: bool | None = None) -> TextStyle:
    """``auto`` choices follow the LM's vocabulary: the text it was trained on.

    casing: "lower" keeps the suite's lower case (PTB is lower-cased), "sentence" capitalises the
    first word, "auto" = "sentence" when the vocabulary has "The" (a cased corpus such as
    WikiText-2), else "lower". final_period: None = auto = True when "." is a word of the
    vocabulary (WikiText-2 keeps punctuation; PTB has none).
    """
    if casing not in CASINGS:
        raise ValueError(f"casing must be one of {CASINGS}, got {casing!r}")
    capitalize = ("The" in vocab) if casing == "auto" else casing == "sentence"
    period = ("." in vocab) if final_period is None else bool(final_period)
    return TextStyle(capitalize_first=capitalize, final_period=period)


# ------------------------------------------------------------------------------ encoding
@dataclass
class OOVStats:
    items: int = 0  # items of the group (before skipping)
    items_with_oov: int = 0  # items with an out-of-vocabulary word in any of their sentences
    oov_tokens: int = 0  # OOV word tokens over all sentences of all items
    words: Counter = field(default_factory=Counter)  # OOV word types -> tokens


@dataclass
class EncodedSuite:
    """The scored items and the distinct sentences they point to."""

    pairs: list[MinimalPair]  # items that are scored (OOV ones dropped when skip_oov)
    sentences: list[list[int]]  # distinct id sequences <eos> w1 .. wn <eos>
    good: Tensor  # (items,) index into sentences
    bad: Tensor
    intrusive: Tensor  # -1 where the item has none
    edges: list[list[int]]  # per sentence: the prefix-trie edge of each predicted token (len - 1)
    n_edges: int
    oov: dict[str, OOVStats]  # per reporting group
    oov_by_category: dict[str, OOVStats]
    style: TextStyle

    def sentence_scores(self, edge_log_probs: Tensor) -> Tensor:
        """Sum over each sentence's edges: log p(sentence) (float64, (sentences,))."""
        flat = torch.tensor([e for edges in self.edges for e in edges], dtype=torch.long)
        owner = torch.repeat_interleave(torch.arange(len(self.edges)), torch.tensor([len(e) for e in self.edges]))
        scores = torch.zeros(len(self.edges), dtype=torch.float64)
        return scores.index_add_(0, owner, edge_log_probs.double()[flat])


def encode_suite(
    pairs: Iterable[MinimalPair], vocab: Vocabulary, style: TextStyle, skip_oov: bool = False
) -> EncodedSuite:
    eos = vocab.index.get(EOS)
    if eos is None:
        raise ValueError(f"the LM's vocabulary has no {EOS}: it is not a vocabulary of this project's LM task")
    unk = vocab.unk_id
    sentence_index: dict[tuple[int, ...], int] = {}
    sentences: list[list[int]] = []
    edges: list[list[int]] = []
    trie: dict[tuple[int, int], int] = {}  # (parent edge, next word) -> edge; the root is -1
    oov: dict[str, OOVStats] = {}
    oov_cat: dict[str, OOVStats] = {}
    kept: list[MinimalPair] = []
    columns: list[tuple[int, int, int]] = []

    def add_sentence(ids: list[int]) -> int:
        key = tuple(ids)
        if key not in sentence_index:
            sentence_index[key] = len(sentences)
            sentences.append(ids)
            path, parent = [], -1
            for word in ids[1:]:
                parent = trie.setdefault((parent, word), len(trie))
                path.append(parent)
            edges.append(path)
        return sentence_index[key]

    for pair in pairs:
        texts = [pair.good, pair.bad] + ([pair.intrusive] if pair.intrusive is not None else [])
        words = [style.words(text) for text in texts]
        missing = [w for ws in words for w in ws if w not in vocab.index]
        for stats in (oov.setdefault(pair.group, OOVStats()), oov_cat.setdefault(pair.category, OOVStats())):
            stats.items += 1
            stats.items_with_oov += bool(missing)
            stats.oov_tokens += len(missing)
            stats.words.update(missing)
        if missing and skip_oov:
            continue
        if missing and unk is None:
            raise ValueError(
                f"{pair.category}: {missing[0]!r} is not in the LM's vocabulary, which has no {UNK}; "
                "set task.datamodule.skip_oov=true to skip such pairs"
            )
        ids = [[eos, *(vocab.index.get(w, unk) for w in ws), eos] for ws in words]
        index = [add_sentence(s) for s in ids]
        columns.append((index[0], index[1], index[2] if len(index) > 2 else -1))
        kept.append(pair)
    if not kept:
        raise ValueError("no minimal pair left to score: each has a word outside the LM's vocabulary (skip_oov=true)")
    table = torch.tensor(columns, dtype=torch.long)
    return EncodedSuite(
        pairs=kept,
        sentences=sentences,
        good=table[:, 0],
        bad=table[:, 1],
        intrusive=table[:, 2],
        edges=edges,
        n_edges=len(trie),
        oov=oov,
        oov_by_category=oov_cat,
        style=style,
    )


# ------------------------------------------------------------------------------ batches
class SentenceBatches(Dataset):
    """Item b: batch b of distinct sentences (sorted by length), padded, with edges to compute.

    ``new`` marks, for each edge, the first position in loader order where it occurs: the only
    place its log-probability is computed. Every edge has exactly one such position, whichever
    rank of a distributed run gets the batch, since a batch is an item here.
    """

    def __init__(self, suite: EncodedSuite, batch_size: int, pad_id: int = 0):
        order = sorted(range(len(suite.sentences)), key=lambda i: len(suite.sentences[i]))
        self.groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        self.suite, self.pad_id = suite, pad_id
        seen: set[int] = set()
        self.new_edges: list[list[list[bool]]] = []
        for group in self.groups:
            flags = []
            for index in group:
                row = []
                for edge in suite.edges[index]:
                    row.append(edge not in seen)
                    seen.add(edge)
                flags.append(row)
            self.new_edges.append(flags)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, b: int) -> dict:
        group = self.groups[b]
        seqs = [self.suite.sentences[i] for i in group]
        time = max(len(s) for s in seqs)
        tokens = torch.full((time, len(seqs)), self.pad_id, dtype=torch.long)
        edges = torch.full((time - 1, len(seqs)), -1, dtype=torch.long)
        new = torch.zeros((time - 1, len(seqs)), dtype=torch.bool)
        for column, (index, flags) in enumerate(zip(group, self.new_edges[b])):
            seq = seqs[column]
            tokens[: len(seq), column] = torch.tensor(seq)
            edges[: len(seq) - 1, column] = torch.tensor(self.suite.edges[index])
            new[: len(seq) - 1, column] = torch.tensor(flags)
        return {"sentence": torch.tensor(group), "tokens": tokens, "edges": edges, "new": new}


class MinimalPairsDataModule(TaskDataModule):
    """The test split only: the suite's distinct sentences, encoded with the LM's vocabulary.

    The runner calls :meth:`use_vocabulary` with the checkpoint's vocabulary before testing.
    """

    def __init__(
        self,
        data_dir: str,
        folder: str = "syneval",  # under data_dir: one JSONL file per test case + counts.json
        categories: list[str] | None = None,  # test-case files to score (file stems); None = all
        limit_per_condition: int | None = None,  # first N items of each (case, condition); None = all
        casing: str = "auto",  # auto | lower | sentence (capitalise the first word)
        final_period: bool | None = None,  # append " ."; None = when "." is in the LM's vocabulary
        skip_oov: bool = False,  # skip pairs with a word outside the vocabulary (else it reads as <unk>)
        batch_size: int = 256,  # distinct sentences per padded batch
    ):
        super().__init__()
        if casing not in CASINGS:
            raise ValueError(f"task.datamodule.casing must be one of {CASINGS}, got {casing!r}")
        if batch_size < 1:
            raise ValueError(f"task.datamodule.batch_size must be positive, got {batch_size}")
        self.folder = Path(data_dir) / folder
        self.categories = categories
        self.limit_per_condition = limit_per_condition
        self.casing, self.final_period, self.skip_oov = casing, final_period, skip_oov
        self.batch_size = batch_size
        self._vocab: Vocabulary | None = None
        self._suite: EncodedSuite | None = None

    def use_vocabulary(self, words: Sequence[str]) -> None:
        self._vocab = Vocabulary(words)
        self._suite = None

    @property
    def suite(self) -> EncodedSuite:
        if self._suite is None:
            if self._vocab is None:
                raise RuntimeError("MinimalPairsDataModule needs the LM's vocabulary: call use_vocabulary(words) first")
            pairs = load_suite(self.folder, self.categories, self.limit_per_condition)
            style = resolve_style(self._vocab, self.casing, self.final_period)
            self._suite = encode_suite(pairs, self._vocab, style, self.skip_oov)
        return self._suite

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "test"):
            _ = self.suite

    def test_dataloader(self) -> DataLoader:
        # batch_size=None: each dataset item already is one padded batch
        return DataLoader(SentenceBatches(self.suite, self.batch_size), batch_size=None, shuffle=False)
