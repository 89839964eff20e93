"""A word vocabulary: the list of word types of a training corpus, in first-seen order."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

EOS = "<eos>"
UNK = "<unk>"


class Vocabulary:
    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary words must be unique")

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def add(self, word: str) -> int:
        if word not in self.index:
            self.index[word] = len(self.words)
            self.words.append(word)
        return self.index[word]

    @property
    def unk_id(self) -> int | None:
        return self.index.get(UNK)

    def encode(self, words: Iterable[str], unknown: str = "error") -> list[int]:
        """Word ids. ``unknown``: "error" raises KeyError for a word not in the vocabulary,
        "unk" maps it to ``<unk>`` (which must exist); any other value is refused (a misspelt mode
        would otherwise map silently)."""
        if unknown not in ("error", "unk"):
            raise ValueError(f'unknown must be "error" or "unk", got {unknown!r}')
        if unknown == "error":
            return [self.index[w] for w in words]
        unk = self.unk_id
        if unk is None:
            raise KeyError(f"the vocabulary has no {UNK} token to map unknown words to")
        return [self.index.get(w, unk) for w in words]
