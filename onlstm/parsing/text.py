"""Raw sentences -> words spelt the way a language model's training text spells them.

A trained LM only knows the words of its vocabulary, written as its corpus writes them. Two
conventions are in use here, and the vocabulary itself tells which (:func:`detect_style`):

* Mikolov's PTB text (``ptb/``): lower case, every number the word ``N`` ("8.45 %" is
  ``N N``), punctuation dropped except the symbols that are words there (``$ & # '``).
* WikiText-2 (``wikitext-2/``): case and punctuation kept, and inside a word or number the
  hyphen, comma and point written apart as ``@-@``, ``@,@``, ``@.@`` ("role @-@ playing").

Both start from Penn Treebank tokenisation (nltk's ``TreebankWordTokenizer``: "can't" ->
``ca n't``, "cat's" -> ``cat 's``, "$3.50" -> ``$ 3.50``), as the corpora did (WikiText-2
then writes ``can 't``). Words still
outside the vocabulary are read as ``<unk>`` and reported (:func:`encode`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

UNK = "<unk>"
NUMBER = re.compile(r"[+-]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)(?:[/:]\d+)*")
# the Treebank tokenizer writes double quotes as `` and ''; WikiText-2 keeps the plain "
QUOTES = {"``": '"', "''": '"'}
# inside a word: a hyphen between letters or digits; inside a number: a comma or point between digits
AT_SPLIT = re.compile(r"(?<=\w)(-)(?=\w)|(?<=\d)([,.])(?=\d)")


@dataclass(frozen=True)
class TextStyle:
    """How the training text of a vocabulary writes words."""

    lowercase: bool  # PTB: every word lower-cased
    numbers_as_n: bool  # PTB: a number is the word N
    keep_punctuation: bool  # WikiText-2: ". , ( )" are words; PTB drops them
    at_marks: bool  # WikiText-2: "role @-@ playing", "1 @,@ 000", "3 @.@ 5"
    apostrophe_t: bool = False  # WikiText-2: "don 't", "can 't" where the Treebank has "do n't", "ca n't"


def detect_style(vocab: Collection[str]) -> TextStyle:
    """The style of a vocabulary's corpus, from its words (like the casing detection of
    ``datamodules.minimal_pairs.resolve_style``): cased when a word other than ``N`` has an
    upper-case letter; numbers as ``N`` when ``N`` is a word and no number is; punctuation kept
    when ``.`` or ``,`` is a word; ``@``-marks when one of them is a word; ``don 't`` when
    ``'t`` is a word and ``n't`` is not."""
    words = set(vocab)
    cased = any(w != w.lower() for w in words if w != "N")
    return TextStyle(
        lowercase=not cased,
        numbers_as_n="N" in words and not any(NUMBER.fullmatch(w) for w in words),
        keep_punctuation="." in words or "," in words,
        at_marks=bool(words & {"@-@", "@,@", "@.@"}),
        apostrophe_t="'t" in words and "n't" not in words,
    )


SPECIAL = re.compile(r"<[^<>\s]+>")  # <unk>, <eos>: vocabulary words the tokenizer would cut apart
CLOSING = {"''", "'", '"', ")", "]", "}"}


def tokenize(text: str, keep: Collection[str] = ()) -> list[str]:
    """Penn Treebank tokens of one sentence; a ``<word>`` of ``keep`` (a vocabulary's ``<unk>``)
    stays one token. (nltk is imported here: the rest of ``onlstm`` works without it.)"""
    from nltk.tokenize import TreebankWordTokenizer

    # a placeholder of letters, which the tokenizer leaves whole, stands in for each <word>
    specials = {f"onlstmspecial{i}x": w for i, w in enumerate(dict.fromkeys(SPECIAL.findall(text))) if w in keep}
    for placeholder, word in specials.items():
        text = text.replace(word, f" {placeholder} ")
    return [specials.get(token, token) for token in TreebankWordTokenizer().tokenize(text)]


def _is_punctuation(token: str) -> bool:
    return not any(ch.isalnum() for ch in token)


def _repair(tokens: list[str], text: str, vocab: Collection[str], spell) -> list[str]:
    """Undo cuts of the tokenizer where the vocabulary has the whole word: ``AT&T`` (written
    ``AT & T``; PTB's ``at&t``, ``s&p``), ``C$`` (``C $``; PTB's ``c$``), and an abbreviation
    that ends the sentence (the string's final point is cut off: ``the U.S.`` -> ``U.S .``;
    PTB's ``u.s.``; the point stays after it)."""
    out: list[str] = []
    i = 0
    while i < len(tokens):
        if tokens[i] == "&" and out and i + 1 < len(tokens):
            joined = f"{out[-1]}&{tokens[i + 1]}"
            if joined in text and spell(joined) in vocab:
                out[-1] = joined
                i += 2
                continue
        if tokens[i] == "$" and out and f"{out[-1]}$" in text and spell(f"{out[-1]}$") in vocab:
            out[-1] += "$"  # C$, US$
            i += 1
            continue
        out.append(tokens[i])
        i += 1
    last = len(out) - 1
    while last > 0 and out[last] in CLOSING:
        last -= 1
    if last > 0 and out[last] == "." and spell(out[last - 1]) not in vocab and spell(out[last - 1] + ".") in vocab:
        out[last - 1] += "."
    return out


def normalize(text: str, style: TextStyle, vocab: Collection[str] = ()) -> list[str]:
    """The words of a raw sentence in the vocabulary's spelling (see the module docstring).

    ``vocab`` decides which punctuation-only tokens a punctuation-dropping style keeps (those
    that are words of it, such as PTB's ``$``); with no vocabulary every such token is dropped.
    A token that is a word of the vocabulary as written (``N``, ``<unk>``) is never lower-cased.
    """

    def spell(token: str) -> str:
        return token.lower() if style.lowercase and token not in vocab else token

    words: list[str] = []
    for token in _repair(tokenize(text, vocab), text, vocab, spell):
        if style.apostrophe_t and token.lower() == "n't" and words:
            # the Treebank's "do n't" / "ca n't" / "wo n't" are WikiText's "don 't" / "can 't" / "won 't"
            words[-1] += token[0]
            token = token[1:]
        token = QUOTES.get(token, token) if style.keep_punctuation else token
        if style.numbers_as_n and (NUMBER.fullmatch(token) or (token == "%" and "%" not in vocab)):
            # Mikolov's text writes every number, and the percent sign after one, as N
            words.append("N")
            continue
        if not style.keep_punctuation and _is_punctuation(token) and token not in vocab:
            continue
        token = spell(token)
        words.extend(_at_split(token) if style.at_marks else [token])
    return words


def _at_split(token: str) -> list[str]:
    """``role-playing`` -> ``role @-@ playing``; ``1,000.5`` -> ``1 @,@ 000 @.@ 5``."""
    parts: list[str] = []
    start = 0
    for match in AT_SPLIT.finditer(token):
        parts.append(token[start : match.start()])
        parts.append(f"@{match.group(0)}@")
        start = match.end()
    parts.append(token[start:])
    return [p for p in parts if p]


class Encoded(NamedTuple):
    ids: list[int]  # one id per word; unknown words get <unk>'s id
    oov: list[str]  # the words read as <unk>, in order (repeats kept)


def encode(words: Sequence[str], index: Mapping[str, int]) -> Encoded:
    """Word ids for a vocabulary given as ``{word: id}``; a word outside it is read as ``<unk>``."""
    unk = index.get(UNK)
    ids, oov = [], []
    for word in words:
        if word in index:
            ids.append(index[word])
            continue
        if unk is None:
            raise KeyError(f"{word!r} is not in the vocabulary, which has no {UNK} word to read it as")
        ids.append(unk)
        oov.append(word)
    return Encoded(ids, oov)
