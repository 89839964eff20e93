"""Penn Treebank constituency trees (``.mrg`` files) for unsupervised-parsing evaluation.

Reads the bracketed trees with nltk's ``BracketParseCorpusReader``, keeps the words whose POS tag
is one of the 36 word tags (punctuation, ``#``, ``$``, ``-NONE-`` dropped), normalizes them the
way the Mikolov PTB LM text is spelled (lower case, digit runs -> ``N``) and builds the gold
trees (:func:`onlstm.parsing.trees.from_labeled`). After :meth:`TreebankDataModule.use_vocabulary` (the
runner passes the checkpoint's vocabulary) every sentence is encoded as ``<eos> words <eos>``,
unknown words mapped to ``<unk>``, as the LM saw its training text.

Two sets, chosen by WSJ section: a development set (``dev_sections``), on which the parsing task
chooses the layer it reads trees from, and the test set (``sections``), on which it reports. The
data root's ``treebank/combined`` holds the free NLTK WSJ sample: section 00 (``wsj_0001`` ..
``wsj_0099``) is its development half, section 01 (``wsj_0100`` .. ``wsj_0199``) its test half. With
the full WSJ (``.../wsj/23/wsj_2300.mrg``) set ``treebank`` to its folder, ``sections=[23]`` and
``dev_sections=[22]``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path

import nltk
from nltk.corpus.reader import BracketParseCorpusReader
from nltk.tree import Tree
from torch.utils.data import DataLoader

from datamodules.contract import TaskDataModule
from datamodules.files import DataError, require_dir
from datamodules.vocabulary import EOS, UNK, Vocabulary
from onlstm.parsing.trees import from_labeled, labeled_spans, labeled_words

log = logging.getLogger(__name__)

DEFAULT_PATTERN = r"(?i)(.*/)?wsj_[0-9]+\.mrg"
_SECTION_RX = re.compile(r"(?i)wsj_([0-9]{2})[0-9]{2}\.mrg$")


@dataclass(frozen=True)
class TreebankSentence:
    file: str  # path relative to the treebank folder
    number: int  # 1-based position of the tree in its file
    words: list[str]  # kept words, normalized
    gold: object  # nested-list gold tree (a word string for a one-word sentence)
    labeled: list[tuple[str, int, int]]  # (category, start, end) gold phrases, for label recall
    split: str = "test"  # "dev" (choosing the layer) or "test" (reporting)


class _MalformedTree(ValueError):
    pass


class _StrictBracketReader(BracketParseCorpusReader):
    """nltk's reader "recovers" a tree with unbalanced brackets by guessing closing brackets or
    returning a flat parse (with only a note on stderr); for evaluation that silently changes the
    gold data, so a bad tree is an error here."""

    def _parse(self, t):
        try:
            tree = Tree.fromstring(self._normalize(t))
        except ValueError as err:
            raise _MalformedTree(str(err)) from None
        if tree.label() == "" and len(tree) == 1:  # the PTB's unlabeled top bracket
            return tree[0]
        return tree


def _allow_nltk_root(folder: Path) -> None:
    # nltk >= 3.9 refuses corpus readers whose root is outside nltk.data.path.
    root = str(folder.resolve())
    if root not in nltk.data.path:
        nltk.data.path.append(root)


def _tree_start_line(path: Path, number: int) -> int | None:
    """Line of the number-th tree of a file (trees start with an unindented '(')."""
    seen = 0
    # utf-8-sig: nltk skips a byte-order mark, so a first line starting with one is a tree here too
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.startswith("("):
                seen += 1
                if seen == number:
                    return line_number
    return None


def select_files(fileids: list[str], sections: list[int] | None) -> list[str]:
    """Keep the WSJ files of the given sections (``wsj_2301.mrg`` is section 23)."""
    if sections is None:
        return list(fileids)
    wanted = set(sections)
    selected = []
    for fileid in fileids:
        match = _SECTION_RX.search(fileid)
        if match and int(match.group(1)) in wanted:
            selected.append(fileid)
    return selected


def read_treebank(
    folder: str | Path, file_pattern: str = DEFAULT_PATTERN, sections: list[int] | None = None
) -> list[TreebankSentence]:
    """Every sentence with at least one kept word, in file order; sentences with none are skipped."""
    folder = require_dir(folder, "treebank")
    _allow_nltk_root(folder)
    try:
        reader = _StrictBracketReader(str(folder.resolve()), file_pattern)
    except re.error as err:
        raise DataError(
            f"task.datamodule.file_pattern={file_pattern!r} is not a valid regular expression: {err}"
        ) from None
    fileids = select_files(reader.fileids(), sections)
    if not fileids:
        raise DataError(
            f"no treebank file under {folder} matches file_pattern={file_pattern!r}"
            + (f" and sections={sections}" if sections is not None else "")
            + "; the pattern must match the whole path relative to that folder (e.g. 23/wsj_2300.mrg)"
        )
    sentences: list[TreebankSentence] = []
    skipped = 0
    for fileid in fileids:
        number = 0
        try:
            for number, tree in enumerate(reader.parsed_sents(fileid), start=1):
                gold = from_labeled(tree)
                if gold is None:
                    skipped += 1
                    continue
                labeled = sorted(labeled_spans(tree))
                sentences.append(TreebankSentence(fileid, number, labeled_words(tree), gold, labeled))
        except _MalformedTree as err:
            path = folder / fileid
            bad = number + 1
            line = _tree_start_line(path, bad)
            where = f"{path}:{line}" if line is not None else str(path)
            raise DataError(
                f"{where}: tree {bad} of the file is malformed ({err}); fix its brackets or leave the file out "
                "with task.datamodule.file_pattern"
            ) from None
        except UnicodeDecodeError as err:
            raise DataError(f"{folder / fileid}: not valid UTF-8 ({err}); re-encode the file as UTF-8") from None
    if not sentences:
        raise DataError(f"the treebank files {fileids[:3]}... under {folder} hold no sentence with a word")
    if skipped:
        log.info("skipped %d trees without any word (punctuation or empty elements only)", skipped)
    return sentences


def _as_is(batch):
    return batch


class TreebankDataModule(TaskDataModule):
    """Test batches of treebank sentences, the development set's first, each set sorted by length:
    dicts of ``split`` ("dev" or "test") and of lists ``index`` (position in :attr:`sentences`),
    ``source`` (``file#tree number``), ``ids`` (``<eos> words <eos>`` word ids), ``words``,
    ``gold`` and ``labeled``."""

    def __init__(
        self,
        data_dir: str,
        treebank: str = "treebank/combined",  # folder of .mrg files under data_dir (the free NLTK WSJ sample)
        file_pattern: str = DEFAULT_PATTERN,  # regex over each file's path relative to that folder (whole path)
        # WSJ sections of the test set (the NLTK sample's second half, wsj_0100-0199; [23] for WSJ
        # test); None: every matching file
        sections: list[int] | None = (1,),
        # WSJ sections of the development set, where the layer is chosen (the sample's first half,
        # wsj_0001-0099; [22] with the full WSJ); None: no development set (then fix the layer)
        dev_sections: list[int] | None = (0,),
        max_length: int = 10,  # the short-sentence set: at most this many words (WSJ10 protocol)
        batch_size: int = 64,  # sentences per test batch (padded; results do not depend on it)
    ):
        super().__init__()
        if max_length < 1 or batch_size < 1:
            raise ValueError(f"max_length and batch_size must be positive, got {max_length}, {batch_size}")
        if dev_sections is not None:
            if sections is None:
                raise ValueError(
                    f"task.datamodule.dev_sections={list(dev_sections)} needs task.datamodule.sections (the test "
                    "sections) too: without them every file would be a test file, the development ones included"
                )
            shared = sorted(set(sections) & set(dev_sections))
            if shared:
                raise ValueError(
                    f"sections {shared} are in both task.datamodule.sections and task.datamodule.dev_sections: "
                    "the layer must be chosen on trees it is not scored on"
                )
        self.folder = Path(data_dir) / treebank
        self.file_pattern = file_pattern
        self.sections = None if sections is None else list(sections)
        self.dev_sections = None if dev_sections is None else list(dev_sections)
        self.max_length, self.batch_size = max_length, batch_size
        self.vocab: Vocabulary | None = None
        self._sentences: list[TreebankSentence] | None = None
        self._ids: list[list[int]] | None = None

    def module_kwargs(self) -> dict:
        """The short-sentence limit (WSJ10 protocol) names and selects the short-sentence sets; the
        task chooses its layer on the development set only when there is one."""
        return {"max_length": self.max_length, "has_dev_set": self.dev_sections is not None}

    def use_vocabulary(self, words: list[str]) -> None:
        vocab = Vocabulary(words)
        missing = [w for w in (EOS, UNK) if w not in vocab]
        if missing:
            raise ValueError(f"the language model's vocabulary lacks {missing}: parsing needs {EOS} and {UNK}")
        self.vocab, self._ids = vocab, None

    @property
    def sentences(self) -> list[TreebankSentence]:
        if self._sentences is None:
            dev = []
            if self.dev_sections is not None:
                dev = [replace(s, split="dev") for s in read_treebank(self.folder, self.file_pattern, self.dev_sections)]
            self._sentences = dev + read_treebank(self.folder, self.file_pattern, self.sections)
        return self._sentences

    @property
    def ids(self) -> list[list[int]]:
        if self.vocab is None:
            raise RuntimeError("call use_vocabulary(<the checkpoint's words>) before asking for word ids")
        if self._ids is None:
            self._ids = [self.vocab.encode([EOS, *s.words, EOS], unknown="unk") for s in self.sentences]
            unk, total = self.vocab.unk_id, sum(len(s.words) for s in self.sentences)
            unknown = sum(i == unk for ids in self._ids for i in ids[1:-1])
            log.info(
                "treebank: %d sentences, %d words, %.1f%% not in the LM vocabulary",
                len(self._ids),
                total,
                100 * unknown / total,
            )
        return self._ids

    def setup(self, stage: str | None = None) -> None:
        self.ids  # noqa: B018  (read and encode now, so errors surface before the loop starts)

    def batches(self) -> list[dict]:
        batches = []
        for split in ("dev", "test"):
            members = [i for i, s in enumerate(self.sentences) if s.split == split]
            order = sorted(members, key=lambda i: len(self.sentences[i].words))
            batches += [self._batch(split, order[start : start + self.batch_size])
                        for start in range(0, len(order), self.batch_size)]
        return batches

    def _batch(self, split: str, group: list[int]) -> dict:
        sentences = [self.sentences[i] for i in group]
        return {
            "split": split,
            "index": group,
            "source": [f"{s.file}#{s.number}" for s in sentences],
            "ids": [self.ids[i] for i in group],
            "words": [s.words for s in sentences],
            "gold": [s.gold for s in sentences],
            "labeled": [s.labeled for s in sentences],
        }

    def test_dataloader(self) -> DataLoader:
        # Each item already is a batch (sentences of similar length, padded by the model side).
        # Under DDP the distributed sampler may repeat batches; the task deduplicates by index.
        return DataLoader(self.batches(), batch_size=None, shuffle=False, collate_fn=_as_is)
