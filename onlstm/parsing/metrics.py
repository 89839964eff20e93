"""Unsupervised-parsing metrics: sentence-level F1, EVALB-style corpus F1, label recall, depth.

Two F1 conventions are in use in the literature and both are computed:

* **sentence-level F1** (Kim et al. 2019, and the official ON-LSTM ``test_phrase_grammar.py``
  "Mean F1"): per sentence, the unlabeled spans longer than one word with the whole-sentence
  span excluded; if the gold tree has no such span, recall is 1, and precision is 1 when the
  prediction has none either (else 0); F1 averaged over sentences. This is the number the
  unsupervised-parsing literature compares (ON-LSTM: 47.7 on WSJ test, 65.1 on WSJ10).
* **corpus-level F1** counted like EVALB: unlabeled spans longer than one word, the
  whole-sentence span included, matched / predicted / gold counts summed over the corpus
  (micro-averaged) before precision, recall and F1 are taken.

Gold trees may be nested lists or ``nltk.Tree`` objects (converted with
:func:`onlstm.parsing.trees.as_tree`). Predicted and gold trees must have the same number of words.
Exact arithmetic: no epsilons (the official code's ``+ 1e-8`` shifts F1 in the 8th decimal).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from onlstm.parsing.trees import Tree, as_tree, leaf_depths, leaves, spans


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def f1_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _aligned(pred: Tree, gold: Any) -> tuple[Tree, int]:
    gold = as_tree(gold)
    n_pred, n_gold = len(leaves(pred)), len(leaves(gold))
    if n_pred != n_gold:
        raise ValueError(f"predicted tree has {n_pred} words, gold tree {n_gold}: they must parse the same words")
    return gold, n_gold


def sentence_spans(tree: Tree) -> set[tuple[int, int]]:
    """Spans longer than one word, without the whole-sentence span (the sentence-level convention)."""
    n = len(leaves(tree))
    return spans(tree) - {(0, n)}


def sentence_prf(pred: Tree, gold: Any) -> PRF:
    """Precision, recall and F1 of one sentence in the Kim et al. (2019) convention."""
    gold, _ = _aligned(pred, gold)
    pred_spans, gold_spans = sentence_spans(pred), sentence_spans(gold)
    overlap = len(pred_spans & gold_spans)
    if not gold_spans:
        recall = 1.0
        precision = 1.0 if not pred_spans else 0.0
    else:
        recall = overlap / len(gold_spans)
        precision = overlap / len(pred_spans) if pred_spans else 0.0
    return PRF(precision, recall, f1_score(precision, recall))


def sentence_f1(pred: Tree, gold: Any) -> float:
    return sentence_prf(pred, gold).f1


def mean_sentence_f1(preds: Iterable[Tree], golds: Iterable[Any]) -> float:
    """Sentence-level F1 averaged over sentences (0 sentences: ValueError)."""
    scores = [sentence_f1(p, g) for p, g in zip(preds, golds, strict=True)]
    if not scores:
        raise ValueError("mean_sentence_f1 needs at least one sentence")
    return sum(scores) / len(scores)


@dataclass
class CorpusF1:
    """EVALB-style unlabeled bracket counts, accumulated sentence by sentence."""

    matched: int = 0
    predicted: int = 0
    gold: int = 0

    def update(self, pred: Tree, gold: Any) -> None:
        gold, _ = _aligned(pred, gold)
        pred_spans, gold_spans = spans(pred), spans(gold)
        self.matched += len(pred_spans & gold_spans)
        self.predicted += len(pred_spans)
        self.gold += len(gold_spans)

    def compute(self) -> PRF:
        """Micro-averaged P, R, F1. A corpus of one-word sentences only (no bracket on either
        side) scores 1: nothing was to be found and nothing wrong was proposed."""
        if self.predicted == 0 and self.gold == 0:
            return PRF(1.0, 1.0, 1.0)
        precision = self.matched / self.predicted if self.predicted else 0.0
        recall = self.matched / self.gold if self.gold else 0.0
        return PRF(precision, recall, f1_score(precision, recall))


def corpus_prf(preds: Iterable[Tree], golds: Iterable[Any]) -> PRF:
    counts = CorpusF1()
    for pred, gold in zip(preds, golds, strict=True):
        counts.update(pred, gold)
    return counts.compute()


@dataclass
class LabelRecall:
    """Per gold category, the fraction of gold phrases (covering >= 2 words, the whole sentence
    included, as in the official ``corpus_stats_labeled``) whose span the predicted tree has."""

    correct: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)

    def update(self, pred: Tree, gold_labeled: Iterable[tuple[str, int, int]]) -> None:
        pred_spans = spans(pred)
        for label, start, end in gold_labeled:
            self.total[label] += 1
            if (start, end) in pred_spans:
                self.correct[label] += 1

    def compute(self) -> dict[str, float]:
        """Recall of each category that occurred at least once."""
        return {label: self.correct[label] / n for label, n in sorted(self.total.items()) if n}


def label_recall(preds: Iterable[Tree], golds_labeled: Iterable[Iterable[tuple[str, int, int]]]) -> dict[str, float]:
    counts = LabelRecall()
    for pred, gold in zip(preds, golds_labeled, strict=True):
        counts.update(pred, gold)
    return counts.compute()


def mean_depth(tree: Tree) -> float:
    """Mean number of constituents above a word (root included; one word: 0), the official
    ``average_depth`` of the predicted tree."""
    depths = leaf_depths(tree)
    return sum(depths) / len(depths)


def corpus_mean_depth(trees: Iterable[Tree]) -> float:
    """:func:`mean_depth` averaged over sentences (the official ``corpus_average_depth``)."""
    values = [mean_depth(t) for t in trees]
    if not values:
        raise ValueError("corpus_mean_depth needs at least one tree")
    return sum(values) / len(values)


def evaluate_trees(
    preds: list[Tree], golds: list[Any], golds_labeled: list[Iterable[tuple[str, int, int]]] | None = None
) -> dict[str, Any]:
    """Every metric of one parser on one sentence set: ``f1_sentence``, ``f1_corpus``,
    ``precision_corpus``, ``recall_corpus``, ``depth``, ``label_recall`` (dict; empty without labels)."""
    golds = [as_tree(g) for g in golds]
    corpus = corpus_prf(preds, golds)
    result: dict[str, Any] = {
        "sentences": len(preds),
        "f1_sentence": mean_sentence_f1(preds, golds),
        "f1_corpus": corpus.f1,
        "precision_corpus": corpus.precision,
        "recall_corpus": corpus.recall,
        "depth": corpus_mean_depth(preds),
        "label_recall": {},
    }
    if golds_labeled is not None:
        result["label_recall"] = label_recall(preds, golds_labeled)
    return result
