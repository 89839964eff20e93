"""Trees from distances, gold-tree conversion, baselines and parsing metrics, against hand-computed values."""

from __future__ import annotations

import random

import pytest
from nltk import Tree

from onlstm.parsing.metrics import (
    PRF,
    CorpusF1,
    corpus_mean_depth,
    corpus_prf,
    evaluate_trees,
    label_recall,
    mean_depth,
    mean_sentence_f1,
    sentence_f1,
    sentence_prf,
    sentence_spans,
)
from onlstm.parsing.trees import (
    as_tree,
    balanced,
    binarize,
    baseline_tree,
    from_bracketed,
    from_labeled,
    labeled_spans,
    labeled_words,
    leaves,
    left_branching,
    normalize_word,
    random_tree,
    right_branching,
    spans,
    split_tree,
    to_bracketed,
    tree_from_spans,
)

W = ["the", "cat", "sat", "on", "the", "mat"]
# (S (NP the cat) (VP sat (PP on (NP the mat)))) with punctuation, as the treebank spells it
PTB = "(S (NP-SBJ (DT The) (NN cat)) (VP (VBD sat) (PP-LOC (IN on) (NP (DT the) (NN mat)))) (. .))"
GOLD = [["the", "cat"], ["sat", ["on", ["the", "mat"]]]]


# ----------------------------------------------------------------------------- split_tree
@pytest.mark.parametrize(
    "distances, expected",
    [
        ([0.7], "a"),
        ([0.1, 0.9], ["a", "b"]),  # max at the last word: [tree(a), b]
        ([0.9, 0.1], ["a", "b"]),  # max at the first word: [a, tree(b)]
        ([0.9, 0.5, 0.3], ["a", ["b", "c"]]),
        ([0.1, 0.5, 0.9], [["a", "b"], "c"]),  # no words after: the right part is c alone
        ([0.1, 0.9, 0.3], ["a", ["b", "c"]]),  # [tree(a), [b, tree(c)]]
        ([0.1, 0.5, 0.3, 0.9, 0.2], [["a", ["b", "c"]], ["d", "e"]]),
        ([0.2, 0.8, 0.1, 0.8, 0.3], ["a", ["b", ["c", ["d", "e"]]]]),  # tie: the first maximum splits
        ([0.5, 0.5, 0.5, 0.5], ["a", ["b", ["c", "d"]]]),  # all equal: right-branching
        ([0.9, 0.1, 0.2, 0.8, 0.3], ["a", [["b", "c"], ["d", "e"]]]),  # the right part splits on its own distances
    ],
)
def test_split_tree_hand_picked(distances, expected):
    assert split_tree(distances, list("abcde"[: len(distances)])) == expected


def test_split_tree_checks_lengths():
    with pytest.raises(ValueError, match="one distance per word"):
        split_tree([0.1, 0.2], ["a"])
    with pytest.raises(ValueError, match="^split_tree needs at least one word$"):
        split_tree([], [])


# ----------------------------------------------------------------------------- baselines
def test_baselines_on_hand_made_sentences():
    assert left_branching(list("abcd")) == [[["a", "b"], "c"], "d"]
    assert right_branching(list("abcd")) == ["a", ["b", ["c", "d"]]]
    assert balanced(list("abcd")) == [["a", "b"], ["c", "d"]]
    assert balanced(list("abcde")) == [["a", "b"], ["c", ["d", "e"]]]
    for build in (left_branching, right_branching, balanced):
        assert build(["x"]) == "x"
        assert build(["x", "y"]) == ["x", "y"]


def test_binarize_folds_wide_nodes_right_and_keeps_every_constituent():
    """Guards the best-binary-tree reference of the ListOps task (break: fold left, or drop a level)."""
    assert binarize(list("abcd")) == ["a", ["b", ["c", "d"]]]
    wide = [["a", "b", "c"], "d", ["e", "f", "g", "h"]]
    assert binarize(wide) == [["a", ["b", "c"]], ["d", ["e", ["f", ["g", "h"]]]]]
    # the n-ary tree's constituents (0,3) (4,8) and the whole (0,8) stay; 8 words: 7 constituents in all
    assert spans(wide) <= spans(binarize(wide)) and len(spans(binarize(wide))) == 7
    assert binarize([["x"]]) == "x" and binarize("x") == "x"
    assert binarize(GOLD) == GOLD  # a binary tree is its own binarisation


def test_random_baseline_is_seeded_binary_and_covers_the_words():
    words = list("abcdefgh")
    one = random_tree(words, random.Random("141:7"))
    assert one == random_tree(words, random.Random("141:7"))
    assert leaves(one) == words
    assert len(spans(one)) == len(words) - 1  # a binary tree over n words has n - 1 constituents
    trees = {to_bracketed(random_tree(words, random.Random(s))) for s in range(30)}
    assert len(trees) > 5
    assert baseline_tree("random", ["x"], random.Random(0)) == "x"
    with pytest.raises(ValueError, match=r"^the random baseline needs a seeded random\.Random$"):
        baseline_tree("random", words)


def test_baseline_tree_names_the_baselines_it_knows():
    assert baseline_tree("balanced", list("abcd")) == balanced(list("abcd"))
    expected = "unknown baseline 'right'; one of ('left_branching', 'right_branching', 'balanced', 'random')"
    with pytest.raises(ValueError) as error:
        baseline_tree("right", list("abcd"))
    assert str(error.value) == expected


def test_spans_are_constituents_of_two_or_more_words():
    assert spans(["a", ["b"], "c"]) == {(0, 3)}  # a one-word constituent is no span, wherever it starts
    assert spans([["a", "b"], ["c", ["d", "e"]]]) == {(0, 5), (0, 2), (2, 5), (3, 5)}


# ----------------------------------------------------------------------------- gold trees
def test_gold_tree_drops_punctuation_empty_constituents_and_unary_chains():
    tree = Tree.fromstring(
        "(S (NP-SBJ-1 (NNP Mr.) (NNP Smith)) (, ,) (NP (-NONE- *T*-1)) "
        "(VP (VBD paid) (NP ($ $) (CD 3.50) (-NONE- *U*)) (PP (IN in) (NP (NP (CD 1989))))) (. .))"
    )
    assert labeled_words(tree) == ["mr.", "smith", "paid", "N.N", "in", "N"]
    # "$ 3.50 *U*" keeps one word: the NP collapses to it; "(NP (NP 1989))" collapses to the word
    assert from_labeled(tree) == [["mr.", "smith"], ["paid", "N.N", ["in", "N"]]]
    assert labeled_spans(tree) == {("S", 0, 6), ("NP", 0, 2), ("VP", 2, 6), ("PP", 4, 6)}
    assert from_labeled(Tree.fromstring("(S (. .) (-NONE- *))")) is None
    assert as_tree(Tree.fromstring("(S (NP (NN word)) (. .))")) == "word"
    with pytest.raises(ValueError, match=r"^the labeled tree has no word \(only punctuation / empty elements\)$"):
        as_tree(Tree.fromstring("(S (. .) (-NONE- *))"))


def test_normalize_word():
    assert normalize_word("Nov. 29") == "nov. N"
    assert normalize_word("1,000") == "N,N"


def test_bracketed_round_trip():
    for tree in (GOLD, "word", ["a", "b"], [["a", "b", "c"], "d"]):
        assert from_bracketed(to_bracketed(tree)) == tree
    assert to_bracketed(GOLD) == "((the cat) (sat (on (the mat))))"
    with pytest.raises(ValueError, match=r"^not one balanced tree: '\(\(a b\)'$"):
        from_bracketed("((a b)")
    with pytest.raises(ValueError, match=r"^not one balanced tree: '\(a b\) \(c d\)'$"):
        from_bracketed("(a b) (c d)")  # two trees, each balanced
    with pytest.raises(ValueError, match=r"^unbalanced '\)' in '\(a b\)\)'$"):
        from_bracketed("(a b))")
    with pytest.raises(ValueError, match="^empty bracketed string$"):
        from_bracketed("  ")


# ----------------------------------------------------------------------------- sentence-level F1
def test_sentence_f1_hand_computed():
    # identical trees
    assert sentence_prf(GOLD, GOLD).f1 == 1.0
    # right-branching: spans {(1,6),(2,6),(3,6),(4,6)} vs gold {(0,2),(2,6),(3,6),(4,6)}: 3 of 4
    prf = sentence_prf(right_branching(W), GOLD)
    assert (prf.precision, prf.recall, prf.f1) == (0.75, 0.75, 0.75)
    # pred {(0,2),(0,3),(0,4)} vs non-binary gold {(0,3),(3,5)}: P = 1/3, R = 1/2, F1 = 0.4
    prf = sentence_prf(left_branching(list("abcde")), [["a", "b", "c"], ["d", "e"]])
    assert prf.precision == pytest.approx(1 / 3) and prf.recall == 0.5 and prf.f1 == pytest.approx(0.4)
    # no overlap at all
    assert sentence_f1([["a", "b"], ["c", "d"]], [["a", "b", "c"], "d"]) == 0.0


def test_sentence_f1_edge_cases():
    # one word, two words: neither side has a span once the whole sentence is excluded
    assert sentence_prf("a", "a").f1 == 1.0
    assert sentence_prf(["a", "b"], ["a", "b"]).f1 == 1.0
    # flat gold (no span): recall 1, but the prediction proposes one wrong span: precision 0
    prf = sentence_prf(["a", ["b", "c"]], ["a", "b", "c"])
    assert (prf.precision, prf.recall, prf.f1) == (0.0, 1.0, 0.0)
    # the whole-sentence span never counts, a unary chain in the gold does not add spans
    assert sentence_spans([[["a", "b", "c"]]]) == set()
    assert sentence_spans(GOLD) == {(0, 2), (2, 6), (3, 6), (4, 6)}
    # an nltk.Tree is accepted as gold (converted like the treebank reader does)
    assert sentence_f1(right_branching(W), Tree.fromstring(PTB)) == 0.75
    with pytest.raises(ValueError, match="same words"):
        sentence_f1(["a", "b"], ["a", ["b", "c"]])
    # a flat prediction proposes nothing: precision 0 (not undefined) against a gold that has spans
    prf = sentence_prf(["a", "b", "c"], [["a", "b"], "c"])
    assert (prf.precision, prf.recall, prf.f1) == (0.0, 0.0, 0.0)


def test_mean_sentence_f1_averages_over_sentences():
    preds = [right_branching(W), "a", ["a", ["b", "c"]]]
    golds = [GOLD, "a", ["a", "b", "c"]]
    assert mean_sentence_f1(preds, golds) == pytest.approx((0.75 + 1.0 + 0.0) / 3)
    with pytest.raises(ValueError, match="^mean_sentence_f1 needs at least one sentence$"):
        mean_sentence_f1([], [])


# ----------------------------------------------------------------------------- corpus-level F1
def test_corpus_f1_hand_computed():
    preds = [right_branching(W), left_branching(list("abcde")), "a", ["a", ["b", "c"]]]
    golds = [GOLD, [["a", "b", "c"], ["d", "e"]], "a", ["a", "b", "c"]]
    # whole-sentence spans included, one-word spans never:
    #   1: pred 5 spans, gold 5, matched 4 ((0,6),(2,6),(3,6),(4,6))
    #   2: pred {(0,2),(0,3),(0,4),(0,5)}, gold {(0,3),(3,5),(0,5)}, matched 2
    #   3: nothing; 4: pred {(1,3),(0,3)}, gold {(0,3)}, matched 1
    prf = corpus_prf(preds, golds)
    assert prf.precision == pytest.approx(7 / 11)
    assert prf.recall == pytest.approx(7 / 9)
    assert prf.f1 == pytest.approx(2 * (7 / 11) * (7 / 9) / (7 / 11 + 7 / 9))
    counts = CorpusF1()
    for p, g in zip(preds, golds):
        counts.update(p, g)
    assert (counts.matched, counts.predicted, counts.gold) == (7, 11, 9)
    # micro, not macro: differs from the mean of per-sentence corpus-style F1s
    assert prf.f1 != pytest.approx(mean_sentence_f1(preds, golds))


def test_corpus_f1_edge_cases():
    assert corpus_prf(["a", "b"], ["a", "b"]).f1 == 1.0  # only one-word sentences: nothing to find
    assert corpus_prf([["a", "b"]], [["a", "b"]]).f1 == 1.0  # the whole-sentence span matches
    assert corpus_prf([Tree.fromstring("(S (NN a))")], ["a"]).f1 == 1.0  # wrong way round is fine too
    assert corpus_prf(["a"], ["a"]) == PRF(1.0, 1.0, 1.0)


def test_corpus_counts_from_elsewhere_score_as_micro_averages():
    # counts set by hand (summed over shards, say): nothing proposed, or nothing to find, is 0
    assert CorpusF1(matched=0, predicted=0, gold=3).compute() == PRF(0.0, 0.0, 0.0)
    assert CorpusF1(matched=0, predicted=4, gold=0).compute() == PRF(0.0, 0.0, 0.0)
    assert CorpusF1(matched=1, predicted=4, gold=2).compute() == PRF(0.25, 0.5, pytest.approx(1 / 3))


def test_corpus_metrics_refuse_lists_of_different_lengths():
    with pytest.raises(ValueError):
        corpus_prf([GOLD, "a"], [GOLD])
    with pytest.raises(ValueError):
        mean_sentence_f1([GOLD], [GOLD, "a"])


# ----------------------------------------------------------------------------- label recall, depth
def test_label_recall_hand_computed():
    gold = Tree.fromstring(PTB)
    recalls = label_recall([right_branching(W)], [labeled_spans(gold)])
    # NP(0,2) missed, NP(4,6) found; VP(2,6), PP(3,6), S(0,6) found
    assert recalls == {"NP": 0.5, "PP": 1.0, "S": 1.0, "VP": 1.0}
    # left-branching {(0,2),(0,3),(0,4),(0,5),(0,6)}: NP(0,2) and S found, NP(4,6), VP, PP missed
    assert label_recall([left_branching(W)], [labeled_spans(gold)]) == {"NP": 0.5, "PP": 0.0, "S": 1.0, "VP": 0.0}


def test_label_recall_counts_over_the_corpus():
    gold = labeled_spans(Tree.fromstring(PTB))
    # right-branching finds NP(4,6) but not NP(0,2) in each copy; a third sentence whose only
    # NP it finds: 3 of 5 NPs over the corpus
    three = [("NP", 0, 3), ("S", 0, 3)]
    recalls = label_recall([right_branching(W), right_branching(W), ["a", "b", "c"]], [gold, gold, three])
    assert recalls["NP"] == pytest.approx(3 / 5)
    assert recalls["S"] == 1.0
    with pytest.raises(ValueError):  # a prediction without its gold spans is no recall
        label_recall([right_branching(W), right_branching(W)], [gold])


def test_depth_hand_computed():
    assert mean_depth("a") == 0.0
    assert mean_depth(["a", ["b", ["c", "d"]]]) == (1 + 2 + 3 + 3) / 4
    assert mean_depth([["a", "b"], ["c", "d"]]) == 2.0
    assert corpus_mean_depth(["a", [["a", "b"], ["c", "d"]]]) == 1.0
    with pytest.raises(ValueError, match="^corpus_mean_depth needs at least one tree$"):
        corpus_mean_depth([])


def test_evaluate_trees_bundles_every_metric():
    gold = Tree.fromstring(PTB)
    result = evaluate_trees([right_branching(W)], [gold], [labeled_spans(gold)])
    assert result["sentences"] == 1
    assert result["f1_sentence"] == 0.75
    assert result["f1_corpus"] == pytest.approx(0.8)  # 4 of 5 on both sides
    assert result["depth"] == pytest.approx((1 + 2 + 3 + 4 + 5 + 5) / 6)
    assert result["label_recall"]["NP"] == 0.5
    # what the parsing task writes per parser: these keys, the corpus P and R beside F1
    assert set(result) == {
        "sentences", "f1_sentence", "f1_corpus", "precision_corpus", "recall_corpus", "depth", "label_recall"
    }
    unlabeled = evaluate_trees([left_branching(list("abcde"))], [[["a", "b", "c"], ["d", "e"]]])
    # pred {(0,2),(0,3),(0,4),(0,5)} vs gold {(0,3),(3,5),(0,5)}: 2 matched
    assert unlabeled["precision_corpus"] == 0.5
    assert unlabeled["recall_corpus"] == pytest.approx(2 / 3)
    assert unlabeled["label_recall"] == {}


def test_tree_from_spans_builds_the_n_ary_tree_the_spans_describe():
    words = ["a", "b", "c", "d", "e"]
    assert tree_from_spans(words, [(1, 4), (2, 4)]) == ["a", ["b", ["c", "d"]], "e"]
    assert tree_from_spans(words, [(2, 4), (1, 4), (0, 5), (3, 4)]) == ["a", ["b", ["c", "d"]], "e"]  # order, root, one-word spans
    assert tree_from_spans(words, []) == words  # flat: the root alone
    assert tree_from_spans(["x"], []) == "x"
    assert tree_from_spans(words, [(1, 5)]) == ["a", ["b", "c", "d", "e"]]  # a span ending at the last word
    with pytest.raises(ValueError, match="^tree_from_spans needs at least one word$"):
        tree_from_spans([], [])
    binary = random_tree(W, random.Random(4))
    assert tree_from_spans(W, spans(binary)) == binary  # the inverse of spans()


@pytest.mark.parametrize("bad, message", [([(1, 3), (2, 4)], "cross"), ([(3, 6)], "not a span"), ([(2, 2)], "not a span")])
def test_tree_from_spans_rejects_crossing_or_outside_spans(bad, message):
    with pytest.raises(ValueError, match=message):
        tree_from_spans(["a", "b", "c", "d", "e"], bad)
