"""The ListOps task: how an expression is read (padding, the last real state), the tree scoring
(layer chosen on validation, baselines, the best binary tree, initial weights), and whole runs of
``train(cfg)`` on files the generator writes."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from datamodules.listops import TOKEN_IDS, ListOpsExample, collate
from datamodules.listops_expressions import make_item, parse, read_listops
from datamodules.listops_generator import main as generate_main
import tasks.listops
from tasks.listops import (
    INITIAL_WEIGHTS_KEY,
    ListOpsClassifier,
    ListOpsTask,
    ScoredExpression,
    choose_layer,
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


# ----------------------------------------------------------------------------- accuracy tables
def listops_task(**changes) -> ListOpsTask:
    settings = dict(model={**TINY_BACKBONE, "arch": "onlstm"}, vocab_size=16, num_classes=10,
                    sources=["train", "valid", "released", "len40-60"], test_sources=["released", "len40-60"],
                    length_buckets=["1-20", "21-50", "51-100"], train_max_length=10)
    return ListOpsTask(**{**settings, **changes})


class Logged:
    """What a test's metrics, tables and figures would have been: the task's logging calls, caught."""

    def __init__(self, module: ListOpsTask, monkeypatch):
        self.metrics, self.tables, self.figures = {}, {}, {}
        monkeypatch.setattr(module, "_log_metric", lambda name, value, size: self.metrics.__setitem__(name, (value, size)))
        monkeypatch.setattr(tasks.listops, "log_table",
                            lambda trainer, name, columns, rows: self.tables.__setitem__(name, (columns, rows)))
        monkeypatch.setattr(tasks.listops, "log_figure", lambda trainer, name, figure: None)
        monkeypatch.setattr(tasks.listops, "accuracy_figure",
                            lambda curves, title, xlabel, **kw: self.figures.__setitem__(title, (curves, kw)))
        module._trainer = object()  # the logging helpers are caught above; they only pass it on


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
    assert "the checkpoint carries no initial weights (listops_initial_weights)" in caplog.text
    assert "test/tree_layer_initial" not in logged.metrics
    assert not any("initial" in row[1] for row in logged.tables["test/tree_f1"][1])
    assert logged.metrics["test/tree_layer"] == (1, 1)


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
