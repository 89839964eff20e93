"""Binary trees from syntactic distances, gold trees from the Penn Treebank, baselines, tree I/O.

A tree is a nested Python list whose leaves are word strings; a one-word tree is the word itself.
Gold trees may also be given as ``nltk.Tree`` objects (anything with a ``label()`` method whose
children are subtrees or word strings): :func:`as_tree` turns them into nested lists the way the
ON-LSTM / PRPN parsing code does (keep the 36 word tags, drop empty constituents, collapse
unary chains). Nothing here imports nltk: the labeled tree is duck-typed.

Spans are half-open word intervals ``(start, end)`` over the leaves, left to right.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from typing import Any

# The Penn Treebank POS tags of words; everything else (punctuation, `#`, `$`, `-NONE-` empty
# elements) is dropped before parsing, as in the official ON-LSTM / PRPN evaluation code.
# fmt: off
WORD_TAGS = frozenset([
    "CC", "CD", "DT", "EX", "FW", "IN", "JJ", "JJR", "JJS", "LS", "MD", "NN", "NNS", "NNP", "NNPS", "PDT", "POS",
    "PRP", "PRP$", "RB", "RBR", "RBS", "RP", "SYM", "TO", "UH", "VB", "VBD", "VBG", "VBN", "VBP", "VBZ", "WDT",
    "WP", "WP$", "WRB",
])
# fmt: on

Tree = Any  # str (one word) or list of Trees


def normalize_word(word: str) -> str:
    """Lower-cased, digit runs replaced by ``N``: how the Mikolov PTB LM text spells words."""
    return re.sub(r"[0-9]+", "N", word.lower())


def is_labeled(tree: Any) -> bool:
    """True for an ``nltk.Tree``-like node (has a ``label()`` method)."""
    return callable(getattr(tree, "label", None))


def _is_preterminal(node: Any) -> bool:
    return is_labeled(node) and len(node) == 1 and isinstance(node[0], str)


def phrase_label(label: str) -> str:
    """The bare category of a treebank label: ``NP-SBJ-1`` -> ``NP``, ``PP=2`` -> ``PP``."""
    return re.split(r"[-=]", label)[0]


# ----------------------------------------------------------------------------- trees from distances
def split_tree(distances: Sequence[float], words: Sequence[str]) -> Tree:
    """The paper's top-down parse (Section 5.1; the official ``build_tree``).

    The word ``i`` with the highest distance (the first one on ties) splits the words into
    ``[tree(words[:i]), [words[i], tree(words[i+1:])]]``; an empty side is left out, so with no
    words before the tree is ``[words[i], tree(after)]``, with no words after the right part is
    ``words[i]`` alone, and one word is the word itself. A high distance at word i means the
    master forget gate erased much of the state when reading it: a large constituent starts there.
    """
    if len(distances) != len(words):
        raise ValueError(f"split_tree needs one distance per word, got {len(distances)} for {len(words)} words")
    if not words:
        raise ValueError("split_tree needs at least one word")
    return _split(list(distances), list(words))


def _split(distances: list[float], words: list[str]) -> Tree:
    if len(words) == 1:
        return words[0]
    i = distances.index(max(distances))  # the first maximum (in C: a 1,000-token sequence splits in milliseconds)
    right: Tree = words[i]
    if i + 1 < len(words):
        right = [words[i], _split(distances[i + 1 :], words[i + 1 :])]
    if i == 0:
        return right
    return [_split(distances[:i], words[:i]), right]


# ----------------------------------------------------------------------------- baselines
def left_branching(words: Sequence[str]) -> Tree:
    """``[[[w1 w2] w3] w4]``."""
    tree: Tree = words[0]
    for word in words[1:]:
        tree = [tree, word]
    return tree


def right_branching(words: Sequence[str]) -> Tree:
    """``[w1 [w2 [w3 w4]]]``."""
    tree: Tree = words[-1]
    for word in reversed(words[:-1]):
        tree = [word, tree]
    return tree


def balanced(words: Sequence[str]) -> Tree:
    """Split in the middle, recursively; with an odd count the right half gets the extra word."""
    if len(words) == 1:
        return words[0]
    half = len(words) // 2
    return [balanced(words[:half]), balanced(words[half:])]


def random_tree(words: Sequence[str], rng: random.Random) -> Tree:
    """A random binary tree: merge a uniformly chosen adjacent pair until one node is left
    (the ``randomize`` baseline of the PRPN / ON-LSTM comparison script)."""
    nodes: list[Tree] = list(words)
    while len(nodes) > 1:
        k = rng.randrange(len(nodes) - 1)
        nodes[k : k + 2] = [[nodes[k], nodes[k + 1]]]
    return nodes[0]


def binarize(tree: Tree) -> Tree:
    """A binary tree that keeps every constituent of ``tree``: the children of a node with more
    than two are folded right-branching (``[a b c d]`` -> ``[a [b [c d]]]``). Every binary tree
    over n words has n - 1 constituents of two or more words, so one that keeps every gold
    constituent (a binarised gold tree) scores the highest F1 any binary parser can reach against
    an n-ary gold tree."""
    if isinstance(tree, str):
        return tree
    children = [binarize(child) for child in tree]
    if len(children) == 1:
        return children[0]
    folded = children[-1]
    for child in reversed(children[:-1]):
        folded = [child, folded]
    return folded


BASELINES = ("left_branching", "right_branching", "balanced", "random")


def baseline_tree(name: str, words: Sequence[str], rng: random.Random | None = None) -> Tree:
    if name == "left_branching":
        return left_branching(words)
    if name == "right_branching":
        return right_branching(words)
    if name == "balanced":
        return balanced(words)
    if name == "random":
        if rng is None:
            raise ValueError("the random baseline needs a seeded random.Random")
        return random_tree(words, rng)
    raise ValueError(f"unknown baseline {name!r}; one of {BASELINES}")


# ----------------------------------------------------------------------------- gold trees
def as_tree(tree: Any) -> Tree:
    """A nested-list tree; an ``nltk.Tree`` is converted with :func:`from_labeled`."""
    if is_labeled(tree):
        converted = from_labeled(tree)
        if converted is None:
            raise ValueError("the labeled tree has no word (only punctuation / empty elements)")
        return converted
    return tree


def from_labeled(tree: Any) -> Tree | None:
    """Gold tree of a treebank tree: words of the 36 word tags (normalized), empty constituents
    dropped, unary chains collapsed (the official ``tree2list``). None when no word is left."""
    if isinstance(tree, str):
        return None  # a bare leaf outside a preterminal carries no POS tag: not a word
    if _is_preterminal(tree):
        return normalize_word(tree[0]) if tree.label() in WORD_TAGS else None
    children = [c for c in (from_labeled(child) for child in tree) if c is not None]
    if not children:
        return None
    return children[0] if len(children) == 1 else children


def labeled_words(tree: Any) -> list[str]:
    """The kept words of a treebank tree, in order (normalized)."""
    return [normalize_word(word) for word, tag in _tagged(tree) if tag in WORD_TAGS]


def _tagged(tree: Any) -> list[tuple[str, str]]:
    if _is_preterminal(tree):
        return [(tree[0], tree.label())]
    out: list[tuple[str, str]] = []
    for child in tree:
        if not isinstance(child, str):
            out.extend(_tagged(child))
    return out


def labeled_spans(tree: Any) -> set[tuple[str, int, int]]:
    """``(category, start, end)`` of every phrase of a treebank tree that covers at least two kept
    words, over kept-word positions; the whole sentence included (as the official ``MRG_labeled``
    / ``corpus_stats_labeled`` count it); an empty label (the PTB top node) skipped. A unary chain
    gives one entry per distinct category over the same span."""
    spans: set[tuple[str, int, int]] = set()

    def walk(node: Any, start: int) -> int:
        if _is_preterminal(node):
            return start + (1 if node.label() in WORD_TAGS else 0)
        end = start
        for child in node:
            if not isinstance(child, str):
                end = walk(child, end)
        label = phrase_label(node.label())
        if end - start > 1 and label:
            spans.add((label, start, end))
        return end

    walk(tree, 0)
    return spans


# ----------------------------------------------------------------------------- spans, leaves, depth
def leaves(tree: Tree) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    out: list[str] = []
    for child in tree:
        out.extend(leaves(child))
    return out


def spans(tree: Tree) -> set[tuple[int, int]]:
    """Spans of every constituent covering more than one word, the whole sentence included."""
    found: set[tuple[int, int]] = set()

    def walk(node: Tree, start: int) -> int:
        if isinstance(node, str):
            return start + 1
        end = start
        for child in node:
            end = walk(child, end)
        if end - start > 1:
            found.add((start, end))
        return end

    walk(tree, 0)
    return found


def tree_from_spans(words: Sequence[str], constituents: Iterable[tuple[int, int]]) -> Tree:
    """The tree over ``words`` whose constituents are the given half-open spans, n-ary where
    they say so: the inverse of :func:`spans`, whose result is the spans of two or more words
    plus the whole sentence (which every tree has). One-word spans are ignored, as :func:`spans`
    has none; a span outside the words or two crossing spans are a ValueError."""
    n = len(words)
    if not n:
        raise ValueError("tree_from_spans needs at least one word")
    wanted = set()
    for start, end in constituents:
        if not 0 <= start < end <= n:
            raise ValueError(f"span ({start}, {end}) is not a span of the {n} words")
        if end - start > 1:
            wanted.add((start, end))
    inner = sorted(wanted - {(0, n)}, key=lambda span: (span[0], -span[1]))  # outer before inner

    def build(start: int, end: int, nested: list[tuple[int, int]]) -> Tree:
        children: list[Tree] = []
        position, k = start, 0
        while position < end:
            if k < len(nested) and nested[k][0] == position:
                child_end = nested[k][1]
                j = k + 1
                while j < len(nested) and nested[j][0] < child_end:
                    if nested[j][1] > child_end:
                        raise ValueError(f"spans ({position}, {child_end}) and {nested[j]} cross")
                    j += 1
                children.append(build(position, child_end, nested[k + 1 : j]))
                position, k = child_end, j
            else:
                children.append(words[position])
                position += 1
        return children[0] if len(children) == 1 else children

    return build(0, n, inner)


def leaf_depths(tree: Tree) -> list[int]:
    """Number of constituents above each word (the root counts; a one-word tree gives [0])."""
    if isinstance(tree, str):
        return [0]
    return [d + 1 for child in tree for d in leaf_depths(child)]


# ----------------------------------------------------------------------------- bracketed strings
def to_bracketed(tree: Tree) -> str:
    """``(the (cat sat))``; a one-word tree is the word. Words must not contain spaces or brackets."""
    if isinstance(tree, str):
        return tree
    return "(" + " ".join(to_bracketed(child) for child in tree) + ")"


def from_bracketed(text: str) -> Tree:
    """Inverse of :func:`to_bracketed` (unlabeled brackets only)."""
    tokens = re.findall(r"\(|\)|[^\s()]+", text)
    if not tokens:
        raise ValueError("empty bracketed string")
    stack: list[list[Tree]] = [[]]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                raise ValueError(f"unbalanced ')' in {text!r}")
            node = stack.pop()
            stack[-1].append(node)
        else:
            stack[-1].append(token)
    if len(stack) != 1 or len(stack[0]) != 1:
        raise ValueError(f"not one balanced tree: {text!r}")
    return stack[0][0]
