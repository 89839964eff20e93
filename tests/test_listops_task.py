"""The ListOps task: how an expression is read (padding, the last real state), the tree scoring
(layer chosen on validation, baselines, the best binary tree, initial weights), and whole runs of
``train(cfg)`` on files the generator writes."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from datamodules.listops import PAD, TOKEN_IDS, ListOpsExample, collate
from datamodules.listops_expressions import make_item, parse, read_listops
from datamodules.listops_generator import main as generate_main
from onlstm.parsing.trees import leaves
import tasks.listops
from tasks.listops import (
    INITIAL_WEIGHTS_KEY,
    ListOpsClassifier,
    ListOpsTask,
    ScoredExpression,
    choose_layer,
    induced_tree,
    score_tree_sources,
    tree_parsers,
)
from tasks.jobs.runner import evaluate
from tests.helpers import NO_DROPOUT, TINY_BACKBONE, TINY_MODEL, tiny_backbone
from train import train

ISSUE = "[MAX 2 9 [MIN 4 7 ] 0 ]"  # gold spans (0, 9) and (3, 7)
LONG = "[SM " + " ".join(f"[MED {d} {9 - d} [MIN {d} 3 ] ]" for d in range(10)) + " ]"  # 82 tokens


def ids(text: str) -> torch.Tensor:
    return torch.tensor([TOKEN_IDS[t] for t in text.split()])


def classifier(arch: str) -> ListOpsClassifier:
    torch.manual_seed(0)
    cfg = tiny_backbone(arch=arch, tie_weights=False, **NO_DROPOUT)
    return ListOpsClassifier(16, cfg, 10, mlp_hidden=8, mlp_dropout=0.0).eval()


# ----------------------------------------------------------------------------- reading an expression
@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_padding_and_the_batch_do_not_change_a_prediction(arch):
    """Guards reading the true last state (break: gather at the padded end, `tokens.size(0) - 1`):
    an expression alone and right-padded beside one eight times longer gets the same logits (and,
    for the ON-LSTM, the same gate distances at its tokens)."""
    model = classifier(arch)
    short, long = ids(ISSUE), ids(LONG)
    batch = torch.zeros(len(long), 2, dtype=torch.long)
    batch[: len(short), 0], batch[:, 1] = short, long
    with torch.no_grad():
        alone = model(short[:, None], torch.tensor([len(short)]))
        together = model(batch, torch.tensor([len(short), len(long)]))
        long_alone = model(long[:, None], torch.tensor([len(long)]))
    torch.testing.assert_close(together.logits[0], alone.logits[0])
    torch.testing.assert_close(together.logits[1], long_alone.logits[0])
    if arch == "onlstm":
        torch.testing.assert_close(together.distances[:, : len(short), 0], alone.distances[:, :, 0])
    else:
        assert together.distances is None


def test_the_state_at_the_true_last_token_is_read():
    """Guards that the length, not the end of the batch, says where the state is read (break:
    read the last row): an expression followed by another's tokens (not padding) and read at its
    length gives its own logits; read at the full length, others."""
    model = classifier("onlstm")
    followed = torch.cat([ids(ISSUE), ids(LONG)])[:, None]
    with torch.no_grad():
        alone = model(ids(ISSUE)[:, None], torch.tensor([9])).logits
        at_length = model(followed, torch.tensor([9])).logits
        at_end = model(followed, torch.tensor([len(followed)])).logits
    torch.testing.assert_close(at_length, alone)
    assert not torch.allclose(at_end, alone)
    with pytest.raises(ValueError, match="lengths must lie in 1..9"):
        model(ids(ISSUE)[:, None], torch.tensor([10]))


# ----------------------------------------------------------------------------- trees
# Distances whose top-down split of ISSUE keeps its inner constituent (3, 7): 7 highest, then 3
# within 0..7. The tree has the n - 2 = 7 spans (0,7) (7,9) (0,3) (1,3) (3,7) (4,7) (5,7) besides
# the whole; one is gold: P = 1/7, R = 1, F1 = 1/4. Falling distances give the right-branching
# tree, which has no gold span: F1 = 0 (tests/test_listops_data.py: test_tree_f1_by_hand).
KEEPS_INNER = [1, 1, 1, 5, 1, 1, 1, 9, 1]
FALLING = [9, 8, 7, 6, 5, 4, 3, 2, 1]


def record(source: str, position: int, text: str, layers: list[list[float]] | None = None) -> ScoredExpression:
    item = make_item(parse(text.split()))
    distances = None if layers is None else torch.tensor(layers, dtype=torch.float)
    return ScoredExpression(source, position, item.length, item.depth, 0, item.label, item.label, 0.0,
                            list(item.spans), distances)


def test_the_layer_is_chosen_on_validation_not_on_test():
    """Guards the choice (break: choose on the test source): layer 1 keeps the gold constituent on
    the validation expression and layer 2 does not; on the test expression it is the other way
    round. Layer 1 is chosen, so the reported test F1 is layer 1's 0 and not layer 2's 1/4."""
    records = [record("valid", 0, ISSUE, [KEEPS_INNER, FALLING]), record("released", 0, ISSUE, [FALLING, KEEPS_INNER])]
    results = score_tree_sources(records, ["valid", "released"], tree_parsers(2, with_initial=False), seed=0)
    assert results["valid"]["layer1"]["f1_sentence"] == pytest.approx(0.25)
    assert results["valid"]["layer2"]["f1_sentence"] == 0.0
    assert results["released"]["layer2"]["f1_sentence"] == pytest.approx(0.25)
    assert choose_layer(results, "layer", 2) == 1
    assert choose_layer({"released": results["released"]}, "layer", 2) is None  # no validation: no choice
    assert choose_layer({}, "layer", 1) == 1  # one layer: nothing to choose


def test_best_binary_tree_and_expressions_without_inner_constituent():
    """By hand: ISSUE has n = 9 tokens and one gold span besides the whole; a binary tree has
    n - 2 = 7 such spans, so the best binary F1 is 2 * 1 / (7 + 1) = 1/4. [MAX 2 9 ] has no gold
    span besides the whole: every binary tree over its 4 tokens scores 0, the best one included. A
    lone digit has no span on either side: 1 for every parser. Both count as "no inner span"."""
    records = [record("released", i, text, [[0.5] * n]) for i, (text, n) in
               enumerate([(ISSUE, 9), ("[MAX 2 9 ]", 4), ("7", 1)])]
    results = score_tree_sources(records, ["released"], tree_parsers(1, with_initial=False), seed=0)["released"]
    assert results["best_binary"]["f1_sentence"] == pytest.approx((0.25 + 0 + 1) / 3)
    assert results["best_binary"]["no_inner_span"] == 2
    # equal distances split right-branching, as the right-branching baseline: 0 on ISSUE and [MAX 2 9 ]
    assert results["layer1"]["f1_sentence"] == results["right_branching"]["f1_sentence"] == pytest.approx(1 / 3)
    assert set(results) == {"layer1", "left_branching", "right_branching", "balanced", "random", "best_binary"}


def test_trees_of_a_thousand_tokens_are_scored():
    """Guards scoring the longest test expressions (break: drop deep_trees): a split of 1,000
    falling distances is a right-branching tree 999 levels deep, past Python's recursion limit."""
    text = "[SM " + " ".join(["[MAX 1 2 ]"] * 249) + " 5 ]"
    n = len(text.split())
    assert n == 999
    results = score_tree_sources([record("len900-1000", 0, text, [list(range(n, 0, -1))])], ["len900-1000"],
                                 ["layer1", "right_branching"], seed=0)["len900-1000"]
    assert results["layer1"]["f1_sentence"] == results["right_branching"]["f1_sentence"] == 0.0


def test_the_parsers_scored_and_their_order():
    """The rows of the tree table, in order (breaks: a layer left out or one too many, the initial
    weights' layers replacing the trained ones instead of following them): every layer 1..n, the
    same layers at the initial weights when these are known, the four baselines, the best binary tree."""
    baselines = ["left_branching", "right_branching", "balanced", "random", "best_binary"]
    assert tree_parsers(2, with_initial=True) == ["layer1", "layer2", "initial_layer1", "initial_layer2", *baselines]
    assert tree_parsers(3, with_initial=False) == ["layer1", "layer2", "layer3", *baselines]


# ISSUE's trees by hand, leaves named by position. KEEPS_INNER splits at 7, then at 3 within 0..7;
# equal distances split at the first token (right-branching); the binarised gold tree folds the
# root's six children (0 1 2 [3 4 5 6] 7 8) to the right and keeps (3, 7).
KEEPS_INNER_TREE = [[["0", ["1", "2"]], ["3", ["4", ["5", "6"]]]], ["7", "8"]]
RIGHT_TREE = ["0", ["1", ["2", ["3", ["4", ["5", ["6", ["7", "8"]]]]]]]]
LEFT_TREE = [[[[[[[["0", "1"], "2"], "3"], "4"], "5"], "6"], "7"], "8"]
BEST_BINARY_TREE = ["0", ["1", ["2", [["3", ["4", ["5", "6"]]], ["7", "8"]]]]]


def test_each_parser_draws_its_own_tree_over_the_token_positions():
    """Guards which distances each parser reads (breaks: `layer2` read as layer 3 or layer 1, the
    trained layers read from the initial weights or the other way round, a baseline or the gold
    tree built from other arguments, the leaves not named by position): by hand, on ISSUE whose
    layer 1 keeps the inner constituent and layer 2 falls, the initial weights swapped."""
    item = with_initial(record("released", 0, ISSUE, [KEEPS_INNER, FALLING]), [FALLING, KEEPS_INNER])
    trees = {parser: induced_tree(parser, item, seed=0) for parser in tree_parsers(2, with_initial=True)}
    assert trees["layer1"] == trees["initial_layer2"] == KEEPS_INNER_TREE
    assert trees["layer2"] == trees["initial_layer1"] == trees["right_branching"] == RIGHT_TREE
    assert trees["left_branching"] == LEFT_TREE
    assert trees["balanced"] == [[["0", "1"], ["2", "3"]], [["4", "5"], ["6", ["7", "8"]]]]
    assert trees["best_binary"] == BEST_BINARY_TREE
    assert leaves(trees["random"]) == [str(i) for i in range(9)]


def test_the_random_tree_is_drawn_again_the_same_from_the_seed_the_source_and_the_place():
    """Guards the random baseline's reproducibility (breaks: an unseeded generator, the task's
    seed not passed on to it): one expression's random tree is the same each time it is drawn (as
    eval.py redraws what train.py drew), and another seed, another place in the source or another
    source draw another one (82 tokens: two draws agreeing by chance is out of the question); the
    same through score_tree_sources, whose scores include the trees' mean depth."""
    first, second, other_source = (record("released", 0, LONG), record("released", 1, LONG), record("len40-60", 0, LONG))
    tree = induced_tree("random", first, seed=141)
    assert induced_tree("random", first, seed=141) == tree
    assert leaves(tree) == [str(i) for i in range(82)]
    for other in (induced_tree("random", first, seed=142), induced_tree("random", second, seed=141),
                  induced_tree("random", other_source, seed=141)):
        assert other != tree
    # score_tree_sources passes its seed on: the same scores again with it, others with another seed
    records = [first, second]
    scores = score_tree_sources(records, ["released"], ["random"], seed=141)["released"]["random"]
    assert score_tree_sources(records, ["released"], ["random"], seed=141)["released"]["random"] == scores
    assert score_tree_sources(records, ["released"], ["random"], seed=142)["released"]["random"] != scores


def test_trees_are_scored_for_every_source_with_expressions_and_only_those():
    """Guards passing over a source without expressions (break: `break` for `continue`, which
    drops every source after it too) and a test without any expression (nothing scored, no error)."""
    records = [record("valid", 0, ISSUE, [KEEPS_INNER]), record("len40-60", 0, ISSUE, [FALLING])]
    results = score_tree_sources(records, ["valid", "released", "len40-60"], ["layer1"], seed=0)
    assert list(results) == ["valid", "len40-60"]
    assert results["valid"]["layer1"]["f1_sentence"] == pytest.approx(0.25)
    assert results["len40-60"]["layer1"]["f1_sentence"] == 0.0
    assert score_tree_sources([], ["valid", "released"], ["layer1"], seed=0) == {}


# ----------------------------------------------------------------------------- accuracy tables
def listops_task(**changes) -> ListOpsTask:
    settings = dict(model={**TINY_BACKBONE, "arch": "onlstm"}, vocab_size=16, num_classes=10,
                    sources=["train", "valid", "released", "len40-60"], test_sources=["released", "len40-60"],
                    length_buckets=["1-20", "21-50", "51-100"], train_max_length=10)
    return ListOpsTask(**{**settings, **changes})


class Logged:
    """What a test's metrics, tables and figures would have been: the task's logging calls, caught.
    ``figures``: per title, the curves and the keywords drawn; ``xlabels``: per title, the x axis;
    ``logged_figures``: per key, the title of the figure logged under it. A table or figure sent
    anywhere but to the module's trainer fails the test."""

    def __init__(self, module: ListOpsTask, monkeypatch):
        self.metrics, self.tables, self.figures, self.xlabels, self.logged_figures = {}, {}, {}, {}, {}
        trainer = module._trainer = object()  # the logging helpers are caught below; they only pass it on

        def table(to, name, columns, rows):
            assert to is trainer, f"table {name} sent to {to!r}, not to the module's trainer"
            self.tables[name] = (columns, rows)

        def figure(curves, title, xlabel, **kw):
            self.figures[title], self.xlabels[title] = (curves, kw), xlabel
            return title  # stands for the figure drawn: which one is logged under which key

        def log_figure(to, name, drawn):
            assert to is trainer, f"figure {name} sent to {to!r}, not to the module's trainer"
            self.logged_figures[name] = drawn

        monkeypatch.setattr(module, "_log_metric", lambda name, value, size: self.metrics.__setitem__(name, (value, size)))
        monkeypatch.setattr(tasks.listops, "log_table", table)
        monkeypatch.setattr(tasks.listops, "log_figure", log_figure)
        monkeypatch.setattr(tasks.listops, "accuracy_figure", figure)


def scored(source, length, depth, bucket, label, pred, loss) -> ScoredExpression:
    return ScoredExpression(source, 0, length, depth, bucket, label, pred, loss, [(0, length)])


def test_accuracy_tables_and_the_accuracy_beyond_training_by_hand(monkeypatch):
    """The numbers the evidence report reads (question 3's primary metric among them), on five
    hand-set expressions: "beyond training" is strictly longer than the longest training expression
    (10 tokens: the expression of exactly 10 is not beyond), majority is the rate of a group's most
    frequent label, rows follow the test sources' order and the buckets."""
    module = listops_task()
    logged = Logged(module, monkeypatch)
    records = [scored("released", 8, 1, 0, label=3, pred=3, loss=0.5),
               scored("released", 10, 2, 0, label=3, pred=4, loss=1.5),
               scored("released", 11, 2, 0, label=5, pred=5, loss=1.0),
               scored("released", 6, 1, 0, label=3, pred=1, loss=2.0),
               scored("len40-60", 45, 3, 1, label=2, pred=2, loss=3.0)]
    module._log_accuracy(records)
    assert logged.metrics["test/loss"] == (pytest.approx(1.6), 5)
    assert logged.metrics["test/acc"] == (pytest.approx(0.6), 5)
    assert logged.metrics["test/acc_beyond_training"] == (pytest.approx(1.0), 2)
    assert logged.metrics["test/acc_released"] == (pytest.approx(0.5), 4)
    assert logged.metrics["test/acc_len40-60"] == (pytest.approx(1.0), 1)
    assert logged.tables["test/acc_by_source"] == (
        ["source", "examples", "accuracy", "majority", "longer than training"],
        [["released", 4, 0.5, 0.75, 1], ["len40-60", 1, 1.0, 1.0, 1]])
    assert logged.tables["test/acc_by_length"] == (
        ["source", "length", "examples", "accuracy", "majority"],
        [["released", "1-20", 4, 0.5, 0.75], ["len40-60", "21-50", 1, 1.0, 1.0]])
    assert logged.tables["test/acc_by_depth"] == (
        ["source", "depth", "examples", "accuracy", "majority"],
        [["released", 1, 2, 0.5, 1.0], ["released", 2, 2, 0.5, 0.5], ["len40-60", 3, 1, 1.0, 1.0]])
    # the figures: one curve per test source; the buckets whose shortest length is beyond training shaded
    (by_length, length_kw), (by_depth, depth_kw) = logged.figures.values()
    assert [(c.label, c.points) for c in by_length] == [("released", [(0, 0.5)]), ("len40-60", [(1, 1.0)])]
    assert length_kw == {"beyond_training": (0.5, 1.5), "ticks": [(0, "1-20"), (1, "21-50")]}
    assert [(c.label, c.points) for c in by_depth] == [("released", [(1, 0.5), (2, 0.5)]), ("len40-60", [(3, 1.0)])]
    assert depth_kw == {"ticks": [(1, "1"), (2, "2"), (3, "3")]}


def test_no_accuracy_beyond_training_when_no_test_expression_is_longer(monkeypatch):
    module = listops_task(train_max_length=100)
    logged = Logged(module, monkeypatch)
    module._log_accuracy([scored("released", 8, 1, 0, label=3, pred=3, loss=0.5)])
    assert "test/acc_beyond_training" not in logged.metrics
    assert logged.tables["test/acc_by_source"][1] == [["released", 1, 1.0, 1.0, 0]]
    assert next(iter(logged.figures.values()))[1]["beyond_training"] is None


def test_a_length_bucket_starting_at_the_longest_training_length_is_not_shaded(monkeypatch):
    """Guards "beyond training" in the figure (break: `>=` for `>`): training reached 21 tokens, so
    the bucket 21-50, whose shortest expressions have 21 tokens, is not beyond it and only 51-100
    (index 2) is shaded, from 2 - 0.5 to 2 + 0.5."""
    module = listops_task(train_max_length=21)
    logged = Logged(module, monkeypatch)
    module._log_accuracy([scored("released", 8, 1, 0, label=3, pred=3, loss=0.5),
                          scored("released", 30, 2, 1, label=3, pred=3, loss=0.5),
                          scored("len40-60", 55, 2, 2, label=3, pred=3, loss=0.5)])
    (_, length_kw), _ = logged.figures.values()
    assert length_kw["beyond_training"] == (1.5, 2.5)


@pytest.mark.parametrize(("arch", "name"), [("onlstm", "ON-LSTM"), ("lstm", "LSTM")])
def test_the_accuracy_figures_name_the_model_and_their_axes_and_go_to_their_keys(monkeypatch, arch, name):
    """Guards the figures' text and keys (breaks: the config's name `onlstm` in the title instead of
    the paper's, an axis label changed, a figure logged under another key, or the other figure
    under it): the title names the model, the x axis says what it counts."""
    module = listops_task(model={**TINY_BACKBONE, "arch": arch})
    logged = Logged(module, monkeypatch)
    module._log_accuracy([scored("released", 8, 1, 0, label=3, pred=3, loss=0.5)])
    assert logged.xlabels == {f"{name}: ListOps accuracy by length": "expression length (tokens)",
                              f"{name}: ListOps accuracy by depth": "depth (operators nested)"}
    assert logged.logged_figures == {"test/acc_by_length": f"{name}: ListOps accuracy by length",
                                     "test/acc_by_depth": f"{name}: ListOps accuracy by depth"}


def with_initial(item: ScoredExpression, layers: list[list[float]]) -> ScoredExpression:
    item.initial = torch.tensor(layers, dtype=torch.float)
    return item


def test_tree_metrics_use_the_layers_chosen_on_validation_for_the_model_and_its_initial_weights(monkeypatch):
    """The trained model's layer and the initial weights' layer are each chosen on validation:
    here layer 1 for the model, layer 2 for the initial weights (their distances swapped), and the
    reported F1 of every set is that layer's."""
    module = listops_task()
    logged = Logged(module, monkeypatch)
    records = [with_initial(record("valid", 0, ISSUE, [KEEPS_INNER, FALLING]), [FALLING, KEEPS_INNER]),
               with_initial(record("released", 0, ISSUE, [FALLING, KEEPS_INNER]), [KEEPS_INNER, FALLING])]
    module._log_trees(records)
    metrics = {name: value for name, (value, size) in logged.metrics.items()}
    assert metrics["test/tree_layer"] == 1 and metrics["test/tree_layer_initial"] == 2
    assert metrics["test/tree_f1_valid"] == metrics["test/tree_f1_layer1_valid"] == pytest.approx(0.25)
    assert metrics["test/tree_f1_released"] == metrics["test/tree_f1_layer1_released"] == 0.0
    assert metrics["test/tree_f1_initial_valid"] == pytest.approx(0.25)
    assert metrics["test/tree_f1_initial_released"] == 0.0
    assert metrics["test/tree_f1_best_binary_released"] == pytest.approx(0.25)
    columns, rows = logged.tables["test/tree_f1"]
    assert columns == ["set", "parser", "expressions", "no inner gold span", "F1 sentence %", "F1 corpus %",
                       "chosen on valid"]
    assert {(row[0], row[1]) for row in rows if row[-1] == "*"} == {
        (s, p) for s in ("valid", "released") for p in ("layer1", "initial_layer2")}
    assert [row[2:5] for row in rows if row[1] == "layer1"] == [[1, 0, pytest.approx(25.0)], [1, 0, 0.0]]


def test_a_checkpoint_without_initial_weights_scores_trees_without_the_control(monkeypatch, caplog):
    module = listops_task()
    logged = Logged(module, monkeypatch)
    with caplog.at_level("WARNING", logger="onlstm.train"):
        module._log_trees([record("valid", 0, ISSUE, [KEEPS_INNER, FALLING]),
                           record("released", 0, ISSUE, [FALLING, KEEPS_INNER])])
    assert caplog.messages == ["task=listops: the checkpoint carries no initial weights (listops_initial_weights): "
                               "the untrained control is left out of the trees"]  # the whole text (break: words changed)
    assert "test/tree_layer_initial" not in logged.metrics
    assert not any("initial" in row[1] for row in logged.tables["test/tree_f1"][1])
    assert logged.metrics["test/tree_layer"] == (1, 1)


def test_tree_metrics_count_the_expressions_of_their_set_and_the_table_has_the_corpus_f1(monkeypatch, caplog):
    """Guards the batch size each tree metric is logged with (break: None; the expressions of its
    set) and the table's F1 corpus column and marks, by hand. Layer 1 is chosen on validation (as in
    the test above); released has ISSUE, split right-branching by layer 1 and keeping (3, 7) by
    layer 2, and [MAX 2 9 ] (equal distances: right-branching; no inner gold span).
    Corpus F1 counts the whole-expression span on both sides:
    valid, layer 1: 8 spans predicted, 2 gold, 2 matched: P 1/4, R 1, F1 2/5 = 40 %;
    released, layer 1: ISSUE 8 / 2 / 1 (the whole), [MAX 2 9 ] 3 / 1 / 1: P 2/11, R 2/3, F1 2/7;
    released, layer 2: ISSUE 8 / 2 / 2, [MAX 2 9 ] 3 / 1 / 1: P 3/11, R 1, F1 3/7.
    Sentence F1: layer 2 on released (1/4 + 0) / 2 = 12.5 %."""
    module = listops_task()
    logged = Logged(module, monkeypatch)
    flat = [[1, 1, 1, 1]] * 2
    records = [with_initial(record("valid", 0, ISSUE, [KEEPS_INNER, FALLING]), [FALLING, KEEPS_INNER]),
               with_initial(record("released", 0, ISSUE, [FALLING, KEEPS_INNER]), [KEEPS_INNER, FALLING]),
               with_initial(record("released", 1, "[MAX 2 9 ]", flat), flat)]
    with caplog.at_level("WARNING", logger="onlstm.train"):
        module._log_trees(records)
    assert caplog.messages == []  # a layer was chosen, the control is there: nothing to warn about
    sizes = {name: size for name, (value, size) in logged.metrics.items()}
    assert {sizes[f"test/tree_f1_{parser}_valid"] for parser in tree_parsers(2, with_initial=True)} == {1}
    assert {sizes[f"test/tree_f1_{parser}_released"] for parser in tree_parsers(2, with_initial=True)} == {2}
    assert (sizes["test/tree_f1_valid"], sizes["test/tree_f1_initial_valid"]) == (1, 1)
    assert (sizes["test/tree_f1_released"], sizes["test/tree_f1_initial_released"]) == (2, 2)
    table = {(row[0], row[1]): row[2:] for row in logged.tables["test/tree_f1"][1]}
    assert table["valid", "layer1"] == [1, 0, pytest.approx(25.0), pytest.approx(40.0), "*"]
    assert table["released", "layer1"] == [2, 1, 0.0, pytest.approx(100 * 2 / 7), "*"]
    assert table["released", "layer2"] == [2, 1, pytest.approx(12.5), pytest.approx(100 * 3 / 7), ""]
    chosen = {("valid", "layer1"), ("valid", "initial_layer2"), ("released", "layer1"), ("released", "initial_layer2")}
    assert {key: row[-1] for key, row in table.items()} == {key: "*" if key in chosen else "" for key in table}


def test_without_validation_expressions_no_layer_is_chosen_and_every_layer_is_reported(monkeypatch, caplog):
    """Guards the test without validation expressions (task.datamodule.valid_in_test=false, or a
    limited test): no layer chosen for either the model or its initial weights, a warning saying so
    (breaks: its text changed, or given when a layer was chosen), every layer's F1 logged and no
    row marked as chosen."""
    module = listops_task()
    logged = Logged(module, monkeypatch)
    with caplog.at_level("WARNING", logger="onlstm.train"):
        module._log_trees([with_initial(record("released", 0, ISSUE, [FALLING, KEEPS_INNER]), [KEEPS_INNER, FALLING])])
    assert caplog.messages == ["task=listops: no validation expression reached the test loader (task.datamodule."
                               "valid_in_test, or a limited test): no layer chosen; the table has every layer"]
    assert not {"test/tree_layer", "test/tree_layer_initial", "test/tree_f1_released",
                "test/tree_f1_initial_released"} & set(logged.metrics)
    assert logged.metrics["test/tree_f1_layer2_released"] == (pytest.approx(0.25), 1)
    assert logged.metrics["test/tree_f1_initial_layer1_released"] == (pytest.approx(0.25), 1)
    rows = logged.tables["test/tree_f1"][1]
    assert [row[1] for row in rows] == tree_parsers(2, with_initial=True)
    assert [row[-1] for row in rows] == [""] * len(rows)


def test_the_random_baseline_follows_the_task_seed(monkeypatch):
    """Guards task.module.seed reaching the random trees (break: not passed on, the random trees
    then seeded with None): the trees are scored with the task's seed. (A test through the table's
    numbers would be weak: a few random trees often match as many gold spans under two seeds.)"""
    seeds, score = [], tasks.listops.score_tree_sources
    monkeypatch.setattr(tasks.listops, "score_tree_sources",
                        lambda records, sources, parsers, seed: seeds.append(seed) or score(records, sources, parsers, seed))
    module = listops_task(seed=7)
    logged = Logged(module, monkeypatch)
    module._log_trees([record("valid", 0, ISSUE, [KEEPS_INNER, FALLING])])
    assert seeds == [7]
    assert logged.metrics["test/tree_f1_random_valid"][1] == 1


def example(text: str, source: int) -> ListOpsExample:
    item = make_item(parse(text.split()))
    return ListOpsExample(tuple(TOKEN_IDS[t] for t in item.tokens), item.label, item.depth, 0, source, item.spans)


def test_each_tested_expression_is_recorded_alone_with_its_place_in_its_source():
    """What the test step keeps of each expression, whatever its batch: its place among its
    source's expressions (the random tree's seed), its loss, prediction and gate distances as if
    it were alone, and the distances of the same model at its initial weights."""
    torch.manual_seed(0)
    module = listops_task(model={**TINY_BACKBONE, "arch": "onlstm", **NO_DROPOUT}).eval()
    texts = [ISSUE, "[MAX 2 9 ]", LONG, "[MIN 1 2 3 ]"]
    sources = [2, 3, 2, 2]  # released, len40-60, released, released
    with torch.no_grad():
        before = [module(collate([example(t, 0)])).distances[:, :, 0] for t in texts]
        for parameter in module.parameters():  # "training": the weights move away from the initial ones
            parameter.add_(0.05 * torch.randn_like(parameter))
        module.on_test_epoch_start()
        module.test_step(collate([example(t, s) for t, s in zip(texts[:3], sources[:3])]), 0)
        module.test_step(collate([example(texts[3], sources[3])]), 1)
        alone = [module(collate([example(t, 0)])) for t in texts]
    records = module._records
    assert [(r.source, r.position, r.length) for r in records] == [
        ("released", 0, 9), ("len40-60", 0, 4), ("released", 1, 82), ("released", 2, 5)]
    for record_, text, out, initial in zip(records, texts, alone, before):
        label = make_item(parse(text.split())).label
        assert (record_.label, record_.pred) == (label, int(out.logits.argmax()))
        assert record_.loss == pytest.approx(float(torch.nn.functional.cross_entropy(out.logits, torch.tensor([label]))),
                                             rel=1e-5)
        torch.testing.assert_close(record_.distances, out.distances[:, :, 0])
        torch.testing.assert_close(record_.initial, initial)
        assert not torch.allclose(record_.distances, record_.initial)


@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_the_test_step_keeps_each_expressions_depth_length_bucket_and_gold_constituents(arch):
    """Guards what the tables and trees are grouped and scored by (breaks: depth, length bucket or
    gold spans not taken from the batch): by hand, ISSUE nests two operators deep and has the gold
    spans (0, 9) and (3, 7); [MAX 2 9 ] one deep, (0, 4). An LSTM has no gate distances, and no
    initial weights to draw a control from: both None."""
    module = listops_task(model={**TINY_BACKBONE, "arch": arch, **NO_DROPOUT}).eval()
    batch = collate([replace(example(ISSUE, 2), length_bucket=1), replace(example("[MAX 2 9 ]", 3), length_bucket=2)])
    with torch.no_grad():
        module.on_test_epoch_start()
        module.test_step(batch, 0)
    assert [(r.source, r.length, r.depth, r.bucket, r.spans) for r in module._records] == [
        ("released", 9, 2, 1, [(0, 9), (3, 7)]), ("len40-60", 4, 1, 2, [(0, 4)])]
    if arch == "lstm":
        assert [(r.distances, r.initial) for r in module._records] == [(None, None)] * 2
    else:
        assert [tuple(r.distances.shape) for r in module._records] == [(2, 9), (2, 4)]


def test_at_the_end_of_the_test_accuracy_counts_the_test_sources_and_trees_every_source(monkeypatch):
    """Guards how the test loader's expressions are split (break: accuracy over the validation
    expressions instead of the test sources'): the validation expression, mispredicted here, is not
    in test/acc (2 of 2 right) but its trees choose the layer; the records are emptied after."""
    module = listops_task()
    logged = Logged(module, monkeypatch)
    missed = replace(record("valid", 0, ISSUE, [KEEPS_INNER, FALLING]), pred=(make_item(parse(ISSUE.split())).label + 1) % 10)
    module._records = [missed, record("released", 0, ISSUE, [FALLING, KEEPS_INNER]),
                       record("released", 1, "[MAX 2 9 ]", [[1, 1, 1, 1]] * 2)]
    module.on_test_epoch_end()
    assert logged.metrics["test/acc"] == (1.0, 2)
    assert logged.tables["test/acc_by_source"][1] == [["released", 2, 1.0, 1.0, 0]]  # both released are worth 9
    assert logged.metrics["test/tree_layer"] == (1, 1)
    assert logged.metrics["test/tree_f1_layer1_valid"] == (pytest.approx(0.25), 1)
    assert module._records == []


def test_an_lstm_test_reports_accuracy_and_says_why_it_scores_no_trees(monkeypatch, caplog):
    """Guards the LSTM's end of test (break: the message's text or the architecture it names
    changed): accuracy as for the ON-LSTM, no tree metric, the reason in the log."""
    module = listops_task(model={**TINY_BACKBONE, "arch": "lstm"})
    logged = Logged(module, monkeypatch)
    module._records = [scored("released", 8, 1, 0, label=3, pred=3, loss=0.5)]
    with caplog.at_level("INFO", logger="onlstm.train"):
        module.on_test_epoch_end()
    assert caplog.messages == ["task=listops: model.arch=lstm has no master forget gate: no trees scored"]
    assert logged.metrics["test/acc"] == (1.0, 1)
    assert not [name for name in logged.metrics if name.startswith("test/tree")] and "test/tree_f1" not in logged.tables


# ----------------------------------------------------------------------------- optimisation
def test_the_optimiser_is_the_official_adam_with_the_learning_rate_cut_on_a_validation_plateau():
    """The official ListOps recipe (yikangshen/Ordered-Neurons, branch listops): Adam with beta1 0,
    eps 1e-9, weight decay 1.2e-6, over every parameter; the learning rate halved when validation
    accuracy has not risen at all (threshold 0) for `plateau_patience` epochs."""
    module = listops_task(lr=2e-3, plateau_patience=3)
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    assert isinstance(optimizer, torch.optim.Adam)
    (group,) = optimizer.param_groups
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (2e-3, (0.0, 0.999), 1e-9, 1.2e-6)
    assert len(group["params"]) == len(list(module.parameters()))
    scheduler = schedule["scheduler"]
    assert (scheduler.mode, scheduler.factor, scheduler.patience, scheduler.threshold) == ("max", 0.5, 3, 0.0)
    assert (schedule["monitor"], schedule["interval"]) == ("val/acc", "epoch")


def test_betas_that_are_not_two_numbers_are_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"task.module.betas must be two numbers \(Adam's beta1, beta2\), got \[0.9\]"):
        listops_task(betas=[0.9])


# ----------------------------------------------------------------------------- the model, its checkpoints, logging
def test_the_classifier_is_built_from_every_task_setting():
    """Guards each setting reaching the model (breaks: mlp_dropout given where pad_id goes, pad_id
    or the run options dropped, the classifier's default padding id changed): the MLP head's sizes
    (16 = the tied last layer) and dropout, the padding row of the embedding (zero and never
    trained: nn.Embedding's padding_idx), the recurrence's implementation; <pad> is id 0 by default."""
    module = listops_task(mlp_hidden=8, mlp_dropout=0.25, pad_id=3, run={"implementation": "reference"})
    head = module.model.mlp
    assert [type(layer).__name__ for layer in head] == ["Dropout", "Linear", "ELU", "Dropout", "Linear"]
    assert (head[1].in_features, head[1].out_features, head[4].out_features) == (16, 8, 10)
    assert head[0].p == head[3].p == 0.25
    assert module.model.embedding.padding_idx == 3
    assert not module.model.embedding.weight[3].any()
    assert module.model.stack.implementation == "reference"
    assert ListOpsClassifier(16, tiny_backbone(), 10, 0, 0.0).embedding.padding_idx == TOKEN_IDS[PAD] == 0


def test_a_checkpoint_carries_the_weights_before_training_and_the_control_is_built_from_them():
    """Guards the untrained control (breaks: the initial weights not written, written as None,
    not read back, or read back as None): the checkpoint carries the weights the model had when
    built, not the trained ones; a task loading it (its own initial weights differ) tests its
    control with exactly those."""
    torch.manual_seed(0)
    trained = listops_task()
    before = {name: value.clone() for name, value in trained.model.state_dict().items()}
    with torch.no_grad():
        for parameter in trained.parameters():  # "training"
            parameter.add_(1.0)
    checkpoint = {}
    trained.on_save_checkpoint(checkpoint)
    carried = checkpoint[INITIAL_WEIGHTS_KEY]
    assert carried.keys() == before.keys()
    assert all(torch.equal(carried[name], before[name]) for name in before)
    torch.manual_seed(1)
    loaded = listops_task()
    loaded.on_load_checkpoint(checkpoint)
    loaded.on_test_epoch_start()
    control = loaded._untrained["model"].state_dict()
    assert all(torch.equal(control[name], before[name]) for name in before)
    assert not torch.equal(loaded.model.mlp[1].weight, before["mlp.1.weight"])  # its own weights are other ones


def test_a_checkpoint_without_initial_weights_gives_no_control():
    """Guards the checkpoints that carry no initial weights (an LSTM's, or one from before they
    were kept; breaks: the missing entry read as weights, or the control built from nothing): an
    LSTM writes none, and an ON-LSTM loading such a checkpoint tests without the control."""
    lstm = listops_task(model={**TINY_BACKBONE, "arch": "lstm"})
    checkpoint = {}
    lstm.on_save_checkpoint(checkpoint)
    assert INITIAL_WEIGHTS_KEY not in checkpoint
    module = listops_task(model={**TINY_BACKBONE, "arch": "onlstm", **NO_DROPOUT}).eval()
    module.on_load_checkpoint(checkpoint)
    with torch.no_grad():
        module.on_test_epoch_start()
        module.test_step(collate([example(ISSUE, 2)]), 0)
    (scored_,) = module._records
    assert scored_.initial is None and scored_.distances.shape == (2, 9)


def test_the_untrained_control_is_put_on_the_device_of_the_model():
    """Guards moving the control to the model's device (break: `.to(None)`, which leaves it on the
    CPU while the batches are on the GPU): the meta device stands in for a GPU."""
    module = listops_task().to("meta")
    module.on_test_epoch_start()
    assert {parameter.device.type for parameter in module._untrained["model"].parameters()} == {"meta"}


def test_what_the_progress_log_counts_and_the_logits_of_a_batch():
    """Guards the progress log's count (breaks: its unit changed; counting the padded time, as the
    default count would: 82 "items") and the logits the shared steps train on: the forward's."""
    module = listops_task(model={**TINY_BACKBONE, "arch": "onlstm", **NO_DROPOUT}).eval()
    batch = collate([example(ISSUE, 2), example(LONG, 2)])
    assert module.progress_items(batch) == (2, "expressions")
    with torch.no_grad():
        torch.testing.assert_close(module.logits(batch), module(batch).logits, rtol=0, atol=0)


def test_a_test_metric_is_logged_under_its_name_as_a_float(monkeypatch):
    """Guards the one place every test metric goes through (breaks: the value or the name not
    passed on): Lightning gets the name and the value as a Python float. (The batch size it is
    also handed changes nothing observable: each key is logged once, at the end of the test, and
    one value's weight is no weight.)"""
    module = listops_task()
    calls = []
    monkeypatch.setattr(module, "log", lambda *args, **kwargs: calls.append((args, kwargs)))
    module._log_metric("test/acc_released", torch.tensor(0.75), 12)
    ((args, _),) = calls
    assert args == ("test/acc_released", 0.75) and type(args[1]) is float


# ----------------------------------------------------------------------------- whole runs
def write_data(folder: Path) -> Path:
    """Released-format files from the generator's command line: training (4-20 tokens),
    validation, a test file in the released file's place (4-30 tokens), none sharing an expression."""
    folder.mkdir()
    common = ["--min-length", "4"]
    generate_main(["--count", "240", *common, "--max-length", "20", "--seed", "1", "--out", str(folder / "train.tsv")])
    generate_main(["--count", "40", *common, "--max-length", "20", "--seed", "2", "--exclude", str(folder / "train.tsv"),
                   "--out", str(folder / "valid.tsv")])
    generate_main(["--count", "60", *common, "--max-length", "30", "--seed", "3", "--exclude", str(folder / "train.tsv"),
                   str(folder / "valid.tsv"), "--out", str(folder / "test.tsv")])
    return folder


def tiny_run(folder: Path, *extra: str) -> list[str]:
    return ["task=listops", *TINY_MODEL, f"task.datamodule.data_dir={folder}", "task.datamodule.train_file=train.tsv",
            "task.datamodule.val_file=valid.tsv", "task.datamodule.released_test_file=test.tsv",
            "task.datamodule.generated_test_lengths=[40-60]", "task.datamodule.generated_test_count=15",
            "task.datamodule.batch_size=32", "task.module.lr=3e-3", "trainer.max_epochs=2", "logger=csv",
            "trainer.enable_progress_bar=false", "callbacks.model_summary=null", *extra]


def table(run: Path, name: str) -> list[dict[str, str]]:
    with open(run / "tables" / f"{name}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_onlstm_run_writes_accuracy_by_length_and_depth_and_the_tree_table(make_cfg, tmp_path):
    """Guards the whole ON-LSTM run on generator files: accuracy per source, length bucket and
    depth (tables, figures), the pooled accuracy beyond the training lengths, the tree table with
    every layer, the initial weights, the baselines and the best binary tree on validation and
    test sets, the layer chosen on validation, and the initial weights in the tested checkpoint
    equal to the run machinery's own copy of the weights before the first update."""
    data = write_data(tmp_path / "data")
    cfg = make_cfg(tiny_run(data, "+callbacks.initial._target_=tasks.jobs.callbacks.SaveInitialWeights",
                            f"+callbacks.initial.dirpath={tmp_path / 'initial'}"))
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)

    test_items = read_listops(data / "test.tsv")
    longer = sum(item.length > 20 for item in test_items)  # train.tsv's longest has 20 tokens
    by_source = table(run, "test_acc_by_source")
    assert [(r["source"], int(r["examples"]), int(r["longer than training"])) for r in by_source] == [
        ("released", 60, longer), ("len40-60", 15, 15)]
    assert metrics["test/acc_released"] == pytest.approx(float(by_source[0]["accuracy"]))
    for name, key in (("test_acc_by_length", "length"), ("test_acc_by_depth", "depth")):
        rows = table(run, name)
        assert sum(int(r["examples"]) for r in rows if r["source"] == "released") == 60, name
        assert {r["source"] for r in rows} == {"released", "len40-60"}
        assert (run / "figures" / f"{name}.png").is_file()
    assert {r["length"] for r in table(run, "test_acc_by_length") if r["source"] == "len40-60"} <= {"21-50", "51-100"}
    assert {"test/acc", "test/loss", "test/acc_len40-60", "test/acc_beyond_training", "val/acc_best"} <= set(metrics)

    trees = table(run, "test_tree_f1")
    parsers = ["layer1", "layer2", "initial_layer1", "initial_layer2", "left_branching", "right_branching",
               "balanced", "random", "best_binary"]
    assert [(r["set"], r["parser"]) for r in trees] == [(s, p) for s in ("valid", "released", "len40-60") for p in parsers]
    assert [int(r["expressions"]) for r in trees[:: len(parsers)]] == [40, 60, 15]
    chosen = max((1, 2), key=lambda k: metrics[f"test/tree_f1_layer{k}_valid"])
    assert metrics["test/tree_layer"] == chosen
    assert metrics["test/tree_f1_released"] == metrics[f"test/tree_f1_layer{chosen}_released"]
    assert [r["parser"] for r in trees if r["chosen on valid"] == "*" and r["set"] == "valid"] == [
        f"layer{chosen}", f"initial_layer{int(metrics['test/tree_layer_initial'])}"]
    assert metrics["test/tree_f1_best_binary_valid"] > metrics["test/tree_f1_right_branching_valid"]

    (path,) = (run / "checkpoints").glob("epoch_*.ckpt")  # the best: what was tested
    best = torch.load(path, weights_only=True)
    before = torch.load(tmp_path / "initial" / "initial.ckpt", weights_only=True)["state_dict"]
    carried = best[INITIAL_WEIGHTS_KEY]
    assert carried.keys() == {k.removeprefix("model.") for k in before}
    for name, value in carried.items():
        torch.testing.assert_close(value, before[f"model.{name}"], rtol=0, atol=0)
    assert not torch.equal(best["state_dict"]["model.mlp.1.weight"], carried["mlp.1.weight"])  # it trained

    # eval.py on that checkpoint: the same model (sizes from the checkpoint), the same untrained control
    data_args = [o for o in tiny_run(data) if o.startswith("task.datamodule.")]
    again = evaluate(make_cfg(["task=listops", f"ckpt_path={path}", *data_args, "~logger"], config_name="eval",
                              subdir="eval"))
    for key in ("test/acc", "test/acc_released", "test/tree_layer", "test/tree_f1_layer1_valid",
                "test/tree_f1_initial_layer2_released", "test/tree_f1_random_len40-60"):
        assert again[key] == pytest.approx(metrics[key]), key


def test_lstm_run_scores_accuracy_and_no_trees(make_cfg, tmp_path, caplog):
    data = write_data(tmp_path / "data")
    cfg = make_cfg(tiny_run(data, "model=lstm", "trainer.max_epochs=1"))
    with caplog.at_level("INFO", logger="onlstm.train"):
        metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    assert (run / "tables" / "test_acc_by_depth.csv").is_file() and (run / "figures" / "test_acc_by_length.png").is_file()
    assert not (run / "tables" / "test_tree_f1.csv").exists()
    assert not any(key.startswith("test/tree") for key in metrics)
    assert "has no master forget gate: no trees scored" in caplog.text
    (path,) = (run / "checkpoints").glob("epoch_*.ckpt")
    assert INITIAL_WEIGHTS_KEY not in torch.load(path, weights_only=True)


def test_experiments_compose_with_near_equal_parameter_counts(make_cfg):
    """experiment=listops_paper is the official model; listops_cpu gives the LSTM the width at which
    its parameter count is within 1% of the ON-LSTM's."""
    from hydra.utils import instantiate

    from tasks.jobs.task_from_config import build_module

    paper = make_cfg(["experiment=listops_paper"])
    assert (paper.model.emb_size, paper.model.hidden_size, paper.model.n_layers, paper.model.chunk_size) == (128, 1150, 3, 10)
    assert list(paper.task.module.betas) == [0.0, 0.999] and paper.trainer.max_epochs == 50
    counts = {}
    for arch in ("onlstm", "lstm"):
        cfg = make_cfg(["experiment=listops_cpu", f"model={arch}", "task.datamodule.released_test_file=null"],
                       subdir=arch)
        datamodule = instantiate(cfg.task.datamodule, _convert_="all")
        counts[arch] = sum(p.numel() for p in build_module(cfg, datamodule).parameters())
    assert abs(counts["lstm"] - counts["onlstm"]) / counts["onlstm"] < 0.01, counts


def test_typo_in_task_key_fails_at_compose(make_cfg):
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg(["task=listops", "task.module.mlp_hiden=3"])
    assert "Key 'mlp_hiden' not in 'ListOpsSchema'" in str(info.value.__cause__)
