"""The treebank datamodule and the unsupervised-parsing task, end to end on a tiny trained LM."""

from __future__ import annotations

import csv
import dataclasses
import random
import re
from types import SimpleNamespace
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException, InstantiationException

import train
from datamodules.files import DataError
from datamodules.treebank import TreebankDataModule, read_treebank, select_files
from onlstm import BackboneConfig, RNNLanguageModel
from onlstm.parsing.trees import from_bracketed, leaves
from onlstm.checkpoints import load_language_model
from eval import evaluate
from onlstm.parsing.inference import word_gate_distances
from tasks.unsupervised_parsing import UnsupervisedParsingTask
from tests.helpers import (
    DATA_DIR,
    FEW_FILES,
    TINY_MODEL,
    check_drawn_trees,
    compose_config,
    drawn_trees,
    needs_browser,
    open_tree_page,
    requires_data,
    tiny_backbone,
)

GOOD = """\
( (S
    (NP-SBJ (DT The) (NN cat) )
    (VP (VBD sat)
      (PP-LOC (IN on)
        (NP (DT the) (NN mat) )))
    (. .) ))
( (S
    (NP-SBJ (NNP Mr.) (NNP Smith) )
    (VP (VBD paid)
      (NP ($ $) (CD 3.50) (-NONE- *U*) ))
    (. .) ))
( (FRAG (. .) ))
"""
BAD = """\
( (S
    (NP-SBJ (DT The) (NN dog) )
    (VP (VBD barked) ))
    (. .) ))
"""


# the hand-written treebanks below are one section: every file a test file, no development set
ALL_FILES_AS_TEST = {"sections": None, "dev_sections": None}


def write_treebank(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "tb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# ----------------------------------------------------------------------------- datamodule
def test_reader_keeps_words_builds_gold_and_encodes(tmp_path):
    write_treebank(tmp_path, {"wsj_0001.mrg": GOOD, "README": "not a tree"})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", max_length=3, batch_size=8, **ALL_FILES_AS_TEST)
    assert [s.words for s in dm.sentences] == [
        ["the", "cat", "sat", "on", "the", "mat"],
        ["mr.", "smith", "paid", "N.N"],
    ]
    assert [(s.file, s.number) for s in dm.sentences] == [("wsj_0001.mrg", 1), ("wsj_0001.mrg", 2)]  # tree 3: no word
    assert dm.sentences[0].gold == [["the", "cat"], ["sat", ["on", ["the", "mat"]]]]
    assert dm.sentences[1].gold == [["mr.", "smith"], ["paid", "N.N"]]
    assert ("PP", 3, 6) in dm.sentences[0].labeled and ("S", 0, 6) in dm.sentences[0].labeled
    assert dm.module_kwargs() == {"max_length": 3, "has_dev_set": False}

    dm.use_vocabulary(["<eos>", "<unk>", "the", "cat", "sat"])
    dm.setup("test")
    assert dm.ids == [[0, 2, 3, 4, 1, 2, 1, 0], [0, 1, 1, 1, 1, 0]]
    (batch,) = list(dm.test_dataloader())
    assert batch["index"] == [1, 0]  # sorted by length
    assert batch["source"] == ["wsj_0001.mrg#2", "wsj_0001.mrg#1"]
    assert batch["ids"][0] == [0, 1, 1, 1, 1, 0]


def test_vocabulary_needs_eos_and_unk(tmp_path):
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", **ALL_FILES_AS_TEST)
    with pytest.raises(ValueError, match="<unk>"):
        dm.use_vocabulary(["<eos>", "the"])


def test_batches_cover_every_sentence_once(tmp_path):
    write_treebank(tmp_path, {"wsj_0001.mrg": GOOD * 3})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", batch_size=4, **ALL_FILES_AS_TEST)
    dm.use_vocabulary(["<eos>", "<unk>"])
    batches = list(dm.test_dataloader())
    assert [len(b["index"]) for b in batches] == [4, 2]
    assert sorted(i for b in batches for i in b["index"]) == list(range(6))


def test_sections_and_file_pattern(tmp_path):
    write_treebank(tmp_path, {"22/wsj_2201.mrg": GOOD, "23/wsj_2301.mrg": GOOD, "23/wsj_2302.mrg": GOOD})
    folder = tmp_path / "tb"
    assert {s.file for s in read_treebank(folder, sections=[23])} == {"23/wsj_2301.mrg", "23/wsj_2302.mrg"}
    assert {s.file for s in read_treebank(folder, file_pattern=r"22/.*\.mrg")} == {"22/wsj_2201.mrg"}
    assert select_files(["WSJ/23/WSJ_2300.MRG", "WSJ/02/WSJ_0200.MRG"], [23]) == ["WSJ/23/WSJ_2300.MRG"]
    with pytest.raises(DataError, match=r"no treebank file .* sections=\[21\]"):
        read_treebank(folder, sections=[21])
    with pytest.raises(DataError, match="treebank folder not found"):
        read_treebank(tmp_path / "nowhere")


def test_malformed_tree_names_file_and_tree(tmp_path):
    write_treebank(tmp_path, {"wsj_0001.mrg": GOOD, "wsj_0002.mrg": GOOD + BAD})
    path = tmp_path / "tb" / "wsj_0002.mrg"
    with pytest.raises(DataError) as info:
        read_treebank(tmp_path / "tb")
    message = str(info.value)
    # the 4th tree of wsj_0002.mrg starts on line 13 (3 good trees in 12 lines before it)
    assert f"{path}:13: tree 4 of the file is malformed" in message
    assert "file_pattern" in message


@requires_data("treebank/combined")
def test_nltk_sample_wsj10_count():
    sentences = read_treebank(DATA_DIR / "treebank" / "combined")
    lengths = [len(s.words) for s in sentences]
    assert len(sentences) == 3914  # every tree of the sample has a word
    assert sum(n <= 10 for n in lengths) == 555  # the data README's count
    for s in sentences[:200]:
        assert leaves(s.gold) == s.words


# ----------------------------------------------------------------------------- config
def test_parsing_config_composes_and_rejects_typos(make_cfg):
    cfg = make_cfg(["task=parsing", "ckpt_path=/x.ckpt"], config_name="eval")
    assert cfg.task.evaluates_checkpoint is True
    assert cfg.task.datamodule.treebank == "treebank/combined" and cfg.task.datamodule.max_length == 10
    assert cfg.task.module.seed == cfg.seed
    with pytest.raises(ConfigCompositionException, match="max_lenght"):
        make_cfg(["task=parsing", "task.datamodule.max_lenght=20"], config_name="eval")


def test_parsing_needs_a_checkpoint(make_cfg):
    cfg = make_cfg(["task=parsing", "~logger"], config_name="eval")
    with pytest.raises(ValueError, match="set ckpt_path=/path/to/<run>/checkpoints/<name>.ckpt"):
        evaluate(cfg)


def test_train_py_refuses_parsing_and_names_eval_py(make_cfg):
    """Guards the refusal: train.py task=parsing stops before reading data or the checkpoint, with
    the command that does what was meant (break: remove refuse_evaluation_task from runner.run)."""
    cfg = make_cfg(["task=parsing", "ckpt_path=/nowhere/lm.ckpt", "~logger"])
    with pytest.raises(ValueError, match=r"task=parsing evaluates a trained language model and trains nothing: "
                                         r"run it with python eval.py task=parsing ckpt_path=/path/to/lm.ckpt"):
        train.train(cfg)


# ----------------------------------------------------------------------------- gate distances
def test_word_gate_distances_equal_the_reference_recurrence():
    """The task's batched, no-grad distances are the paper's per-step recurrence at the word
    positions of ``<eos> words <eos>`` (a wrong inference fast path would change every tree)."""
    torch.manual_seed(0)
    model = RNNLanguageModel(60, tiny_backbone()).eval()
    sequences = [[0, 5, 17, 33, 2, 8, 0], [0, 9, 0], [0, 41, 3, 3, 12, 0]]
    batched = word_gate_distances(model, sequences)
    model.stack.implementation = "reference"
    for seq, (forget, inp) in zip(sequences, batched):
        out = model(torch.tensor(seq)[:, None])
        torch.testing.assert_close(forget, out.distances[:, 1:-1, 0].detach(), rtol=0, atol=1e-6)
        torch.testing.assert_close(inp, out.distances_in[:, 1:-1, 0].detach(), rtol=0, atol=1e-6)
    assert batched[0][0].std() > 0  # the distances depend on the words


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def lm_checkpoint(tmp_path_factory) -> Path:
    """A tiny ON-LSTM LM trained for one step on PTB (once for this module)."""
    out = tmp_path_factory.mktemp("lm")
    cfg = compose_config(
        [
            "task=lm",
            *TINY_MODEL,
            "task.datamodule.train_fraction=0.002",
            "trainer.max_epochs=1",
            "+trainer.limit_val_batches=2",
            "+trainer.limit_test_batches=2",
            "~logger",
        ],
        out,
    )
    train.train(cfg)
    GlobalHydra.instance().clear()
    path = out / "checkpoints" / "last.ckpt"
    assert path.is_file()
    return path


def run_parsing(make_cfg, checkpoint: Path, *extra: str, subdir: str = "parse") -> tuple[dict, Path]:
    cfg = make_cfg(["task=parsing", f"ckpt_path={checkpoint}", "logger=csv", FEW_FILES, *extra], subdir, "eval")
    return evaluate(cfg), Path(cfg.paths.output_dir)


@pytest.fixture(scope="module")
def parsing_run(lm_checkpoint, tmp_path_factory) -> tuple[dict, Path]:
    """The tiny LM's parsing run on the sample's first two development and test files (once for this
    module): its metrics and folder."""
    out = tmp_path_factory.mktemp("parse")
    cfg = compose_config(["task=parsing", f"ckpt_path={lm_checkpoint}", "logger=csv", FEW_FILES,
                          "task.datamodule.batch_size=16", "task.module.n_figures=2"], out, "eval")
    metrics = evaluate(cfg)
    GlobalHydra.instance().clear()
    return metrics, out


def trees_table(run_dir: Path) -> list[dict]:
    """The rows of a parsing run's trees TSV: the chosen layer's test trees beside the gold ones."""
    (path,) = (run_dir / "parsing").glob("trees_layer*.tsv")
    with open(path) as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


@requires_data("ptb/train.txt", "treebank/combined")
def test_batched_gate_distances_equal_one_sentence_at_a_time(lm_checkpoint):
    model = load_language_model(lm_checkpoint).model
    rng = random.Random(0)
    sequences = [[0] + [rng.randrange(1, 50) for _ in range(n)] + [0] for n in (1, 7, 3, 12, 2)]
    batched = word_gate_distances(model, sequences)
    for seq, (forget, inp) in zip(sequences, batched):
        ((forget1, inp1),) = word_gate_distances(model, [seq])
        assert forget.shape == (2, len(seq) - 2)  # both <eos> positions dropped
        torch.testing.assert_close(forget, forget1, rtol=0, atol=1e-6)
        torch.testing.assert_close(inp, inp1, rtol=0, atol=1e-6)


@requires_data("ptb/train.txt", "treebank/combined")
def test_parsing_end_to_end(make_cfg, lm_checkpoint, parsing_run):
    """The real sample through the real LM: every test sentence once, the development sentences kept
    apart, the chosen layer's test trees and the table written, and padded batches giving exactly
    the numbers of one sentence per batch (the layer choice itself: the hand-set test below)."""
    metrics, out = parsing_run

    sentences = read_treebank(DATA_DIR / "treebank" / "combined", r"wsj_0(00[1-2]|10[0-1])\.mrg")
    test = [s for s in sentences if s.file.startswith("wsj_01")]
    dev = [s for s in sentences if s.file.startswith("wsj_00")]
    assert metrics["test/sentences"] == len(test) and metrics["dev/sentences"] == len(dev)
    assert metrics["test/wsj10/sentences"] == sum(len(s.words) <= 10 for s in test)
    chosen = int(metrics["test/chosen_layer"])
    assert chosen in (1, 2)
    assert metrics["dev/f1_sentence"] == max(metrics["dev/f1_sentence_layer1"], metrics["dev/f1_sentence_layer2"])
    assert metrics["test/f1_sentence"] == metrics[f"test/f1_sentence_layer{chosen}"]
    assert not any("best" in key for key in metrics)  # no maximum taken over the test trees

    # the chosen layer's test trees beside the gold ones, one sentence per line
    with open(out / "parsing" / f"trees_layer{chosen}.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [row["source"] for row in rows] == [f"{s.file}#{s.number}" for s in test]
    for row, sentence in zip(rows, test):
        assert from_bracketed(row["gold"]) == sentence.gold
        assert leaves(from_bracketed(row["predicted"])) == sentence.words
    table = (out / "tables" / "test_parsing.md").read_text()
    assert "| test/wsj10 | layer2 |" in table and "| test | random |" in table and "| dev | layer1 |" in table
    assert len(list((out / "figures").glob("test_gates_sentence*.png"))) == 2
    assert "test/f1_sentence_layer2" in (out / "csv" / "metrics.csv").read_text()

    # batched over padded batches == one sentence per batch: the same numbers
    single, _ = run_parsing(
        make_cfg, lm_checkpoint, "task.datamodule.batch_size=1", "task.module.n_figures=0", subdir="single"
    )
    keys = ("test/f1_sentence_layer1", "test/f1_corpus_layer2", "test/wsj10/f1_sentence_layer2",
            "test/depth_layer1", "dev/f1_sentence_layer2")
    for key in keys:
        assert single[key] == metrics[key]


PAGE_ROW = re.compile(r'<div class="sentence" data-index="(\d+)" data-length="(\d+)" data-f1="([0-9.]*)"><div class="id">([^<]*)<')


@requires_data("ptb/train.txt", "treebank/combined")
def test_parsing_run_writes_a_page_of_its_test_trees(parsing_run):
    """parsing/trees.html: one row per test sentence of the TSV, in order, each with its length and
    a sentence F1 whose mean is the run's test/f1_sentence; the header gives the chosen layer and F1s
    (break: write the page with the development sentences, or without F1s)."""
    metrics, out = parsing_run
    page = (out / "parsing" / "trees.html").read_text(encoding="utf-8")
    rows = PAGE_ROW.findall(page)
    tsv = trees_table(out)
    assert [source for *_, source in rows] == [row["source"] for row in tsv]
    assert [int(length) for _, length, _, _ in rows] == [len(leaves(from_bracketed(row["predicted"]))) for row in tsv]
    f1s = [float(f1) for _, _, f1, _ in rows]
    assert sum(f1s) / len(f1s) == pytest.approx(metrics["test/f1_sentence"], abs=1e-6)
    chosen = int(metrics["test/chosen_layer"])
    summary = (f"{len(tsv)} sentences · trees of layer {chosen} · sentence F1 {100 * metrics['test/f1_sentence']:.1f} % · "
               f"corpus F1 {100 * metrics['test/f1_corpus']:.1f} %")
    assert summary in page
    assert page.count('<svg class="tree induced"') == page.count('<svg class="tree gold"') == len(tsv)


@needs_browser
@requires_data("ptb/train.txt", "treebank/combined")
def test_a_parsing_runs_page_shows_every_tree_in_a_browser(parsing_run, browser):
    """Opened from disk in headless chromium: every test sentence's induced and gold tree drawn, with
    the sentence's words in order at the leaves, none overlapping."""
    _, out = parsing_run
    open_tree_page(browser, out / "parsing" / "trees.html")
    tsv = trees_table(out)
    assert browser.find_element("id", "shown").text == f"{len(tsv)} of {len(tsv)} shown"
    words = [leaves(from_bracketed(row[column])) for row in tsv for column in ("predicted", "gold")]
    check_drawn_trees(drawn_trees(browser), words)


# A development sentence and a test sentence (sections 00 and 01) whose gate distances are set by
# hand: on the development sentence layer 2 gives the gold tree and layer 1 right-branching; on the
# test sentence the other way round.
DEV_TREE = "( (S (NP (DT The) (NN cat)) (VP (VBD sat) (PP (IN on) (NP (DT the) (NN mat))))) )\n"
TEST_TREE = "( (S (NP (DT The) (NN dog)) (VP (VBD barked) (ADVP (RB loudly)))) )\n"
HAND_SET_DISTANCES = {
    # words: (layer 1, layer 2)
    6: ([5, 4, 3, 2, 1, 0], [0, 0, 9, 5, 1, 0]),  # [the [cat [sat [on [the mat]]]]], [[the cat] [sat [on [the mat]]]]
    4: ([0, 0, 9, 0], [3, 2, 1, 0]),  # [[the dog] [barked loudly]], [the [dog [barked loudly]]]
}


def hand_set_gate_distances(model, id_sequences):
    hand_set_gate_distances.implementations.add(model.stack.implementation)  # what ran the LM
    out = []
    for ids in id_sequences:
        layer1, layer2 = HAND_SET_DISTANCES[len(ids) - 2]
        forget = torch.tensor([layer1, layer2], dtype=torch.float)
        out.append((forget, torch.zeros_like(forget)))
    return out


@pytest.fixture
def hand_set_parsing(tmp_path, monkeypatch, make_cfg):
    """A two-file treebank, an untrained 2-layer ON-LSTM checkpoint, and the hand-set distances."""
    write_treebank(tmp_path, {"00/wsj_0001.mrg": DEV_TREE, "01/wsj_0101.mrg": TEST_TREE})
    vocab = ["<eos>", "<unk>", "the", "cat", "sat", "on", "mat", "dog", "barked", "loudly"]
    config = BackboneConfig(emb_size=8, hidden_size=8, n_layers=2, chunk_size=4)
    model = RNNLanguageModel(len(vocab), config)
    checkpoint = tmp_path / "lm.ckpt"
    torch.save({"hyper_parameters": {"model": dataclasses.asdict(config)}, "vocab": vocab,
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    monkeypatch.setattr("tasks.unsupervised_parsing.word_gate_distances", hand_set_gate_distances)
    hand_set_gate_distances.implementations = set()

    def run(*extra: str, subdir: str = "hand") -> dict:
        cfg = make_cfg(["task=parsing", f"ckpt_path={checkpoint}", "~logger",
                        f"paths.data_dir={tmp_path}", "task.datamodule.treebank=tb", "task.module.n_figures=0", *extra],
                       subdir, "eval")
        return evaluate(cfg)

    return run


def test_layer_is_chosen_on_development_trees_and_scored_on_test_trees(hand_set_parsing):
    """Guards the evidence protocol: the reported layer is the best one on the development set
    (layer 2: F1 1 against 0.75 for right-branching layer 1), and its test score is reported
    (0.5) even though layer 1 is better on the test sentence (1.0). Choosing on the test trees,
    or reporting a maximum over layers, gives layer 1 and 1.0."""
    metrics = hand_set_parsing()
    assert metrics["dev/f1_sentence_layer1"] == pytest.approx(0.75)  # 3 of 4 spans, both ways
    assert metrics["dev/f1_sentence_layer2"] == pytest.approx(1.0)
    assert metrics["test/f1_sentence_layer1"] == pytest.approx(1.0)
    assert metrics["test/f1_sentence_layer2"] == pytest.approx(0.5)  # 1 of 2 spans, both ways
    assert metrics["test/chosen_layer"] == 2
    assert metrics["test/f1_sentence"] == pytest.approx(0.5)
    assert metrics["dev/f1_sentence"] == pytest.approx(1.0)
    assert metrics["test/f1_sentence_right_branching"] == pytest.approx(0.5)
    assert metrics["test/f1_sentence_left_branching"] == pytest.approx(0.5)  # [[[the dog] barked] loudly]
    assert metrics["test/sentences"] == 1 and metrics["dev/sentences"] == 1

    fixed = hand_set_parsing("task.module.layer=1", subdir="fixed")
    assert fixed["test/chosen_layer"] == 1 and fixed["test/f1_sentence"] == pytest.approx(1.0)


def test_short_sentence_sets_label_recall_corpus_f1_and_the_table_by_hand(hand_set_parsing, tmp_path):
    """With max_length=4 the short-sentence sets hold the 4-word test sentence only (the 6-word
    development sentence is too long for dev/wsj4/). On the test sentence, gold
    (S (NP The dog) (VP barked (ADVP loudly))): layer 1's [[the dog] [barked loudly]] finds NP and VP;
    layer 2's [the [dog [barked loudly]]] finds VP only, and its corpus F1 (EVALB: the whole
    sentence counted, 2 of 3 spans on both sides) is 2/3."""
    metrics = hand_set_parsing("task.datamodule.max_length=4", "logger=csv", subdir="wsj4")
    assert "dev/wsj4/sentences" not in metrics
    assert metrics["test/wsj4/sentences"] == 1
    assert metrics["test/wsj4/f1_sentence"] == pytest.approx(0.5)  # the chosen layer 2, as on all lengths
    assert (metrics["test/recall_NP_layer1"], metrics["test/recall_VP_layer1"]) == (1.0, 1.0)
    assert (metrics["test/recall_NP_layer2"], metrics["test/recall_VP_layer2"]) == (0.0, 1.0)
    assert metrics["test/f1_corpus_layer1"] == pytest.approx(1.0)
    assert metrics["test/f1_corpus"] == metrics["test/f1_corpus_layer2"] == pytest.approx(2 / 3)
    with open(tmp_path / "wsj4" / "tables" / "test_parsing.csv", newline="") as handle:
        rows = {(row["set"], row["parser"]): row for row in csv.DictReader(handle)}
    assert {s for s, _ in rows} == {"dev", "test", "test/wsj4"}
    row = rows["test", "layer2"]
    assert (row["sentences"], float(row["F1 sentence %"]), float(row["F1 corpus %"])) == ("1", 50.0, pytest.approx(200 / 3))
    assert (float(row["NP recall %"]), float(row["VP recall %"]), row["PP recall %"]) == (0.0, 100.0, "-")


def test_without_a_development_set_the_layer_must_be_given(hand_set_parsing):
    # Hydra wraps the module's ValueError; the message the user reads is what matters
    with pytest.raises(InstantiationException, match="task.datamodule.dev_sections .* task.module.layer=K"):
        hand_set_parsing("task.datamodule.dev_sections=null", "task.datamodule.sections=null", subdir="nodev")
    metrics = hand_set_parsing("task.datamodule.dev_sections=null", "task.datamodule.sections=null",
                               "task.module.layer=2", subdir="layer2")
    assert metrics["test/sentences"] == 2 and "dev/sentences" not in metrics
    with pytest.raises(InstantiationException, match=r"task.module.layer=3, but .* has layers 1..2"):
        hand_set_parsing("task.module.layer=3", subdir="layer3")


def test_an_lstm_language_model_is_refused_with_what_to_give_instead(tmp_path):
    config = BackboneConfig(arch="lstm", emb_size=8, hidden_size=8, n_layers=2, chunk_size=4)
    model = RNNLanguageModel(10, config)
    checkpoint = tmp_path / "lstm.ckpt"
    torch.save({"hyper_parameters": {"model": dataclasses.asdict(config)}, "vocab": [f"w{i}" for i in range(10)],
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    with pytest.raises(ValueError) as refused:
        UnsupervisedParsingTask(checkpoint=str(checkpoint))
    assert str(refused.value) == (f"{checkpoint}: a 'lstm' language model has no master forget gate to parse with; "
                                  "give the checkpoint of an ON-LSTM (model=onlstm)")


def test_development_and_test_sections_must_differ(tmp_path):
    with pytest.raises(ValueError) as both:
        TreebankDataModule(data_dir=str(tmp_path), sections=[1], dev_sections=[0, 1])
    assert str(both.value) == ("sections [1] are in both task.datamodule.sections and task.datamodule.dev_sections: "
                               "the layer must be chosen on trees it is not scored on")
    with pytest.raises(ValueError) as no_test_sections:
        TreebankDataModule(data_dir=str(tmp_path), sections=None, dev_sections=[0])
    assert str(no_test_sections.value) == (
        "task.datamodule.dev_sections=[0] needs task.datamodule.sections (the test sections) too: without them "
        "every file would be a test file, the development ones included")


def test_run_implementation_reaches_the_lm_that_parses(hand_set_parsing):
    """Guards the run options of an evaluation: the checkpoint says what the LM is, the config how
    it runs; `run.implementation=reference` is the LM the distances come from (break: drop the
    `run` argument of load_language_model in UnsupervisedParsingTask: "fused" is seen)."""
    hand_set_parsing("run.implementation=reference", subdir="reference")
    assert hand_set_gate_distances.implementations == {"reference"}
    hand_set_gate_distances.implementations.clear()
    hand_set_parsing(subdir="default")
    assert hand_set_gate_distances.implementations == {"fused"}


# ----------------------------------------------------------------------------- the task's methods, called directly
# (a hand-set checkpoint, a stand-in trainer and hand-set records: no LM run, no Trainer)
def direct_task(tmp_path: Path, n_layers: int = 2, **kwargs) -> UnsupervisedParsingTask:
    """The task on an untrained ``n_layers`` ON-LSTM, attached to a stand-in trainer writing under
    ``tmp_path``; what it logs lands in ``task.logged``."""
    config = BackboneConfig(emb_size=8, hidden_size=8, n_layers=n_layers, chunk_size=4)
    model = RNNLanguageModel(2, config)
    checkpoint = tmp_path / f"lm{n_layers}.ckpt"
    torch.save({"hyper_parameters": {"model": dataclasses.asdict(config)}, "vocab": ["<eos>", "<unk>"],
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, checkpoint)
    task = UnsupervisedParsingTask(checkpoint=str(checkpoint), **kwargs)
    task.trainer = SimpleNamespace(world_size=1, is_global_zero=True, default_root_dir=str(tmp_path), loggers=[],
                                   global_step=0)
    task.logged = {}
    task.log = lambda name, value, **options: task.logged.__setitem__(name, value)
    return task


def hand_record(split: str, index: int, words: str, gold, labeled=(), layers=((),)) -> dict:
    words = words.split()
    return {"split": split, "index": index, "source": f"{split}.mrg#{index}", "words": words, "gold": gold,
            "labeled": list(labeled), "distances": [list(d) for d in layers],
            "distances_in": [[0.5] * len(words) for _ in layers]}


# dev "a b c", gold [[a b] c]: layer 1 ([0 0 5]) finds it, layer 2 ([5 0 0]: [a [b c]]) does not.
# test "d e f g", gold [[d e] [f g]]: layer 1 ([3 2 1 0]) is right-branching [d [e [f g]]] (sentence
# F1 1/2, corpus F1 2/3, depth (1+2+3+3)/4), layer 2 ([0 0 9 0]) gives the gold tree (depth 2).
HAND_DEV = hand_record("dev", 0, "a b c", [["a", "b"], "c"], [("S", 0, 3), ("NP", 0, 2)], ([0, 0, 5], [5, 0, 0]))
HAND_TEST = hand_record("test", 1, "d e f g", [["d", "e"], ["f", "g"]], [("S", 0, 4), ("NP", 0, 2), ("VP", 2, 4)],
                        ([3, 2, 1, 0], [0, 0, 9, 0]))


def test_direct_construction_defaults_and_layer_bounds(tmp_path):
    """Built directly (no Hydra): WSJ10 (max_length 10), a development set assumed, the layer chosen,
    4 figures, seed 141, the paper's seven labels; layer 0 is refused like layer 3 (1-based layers);
    progress is counted in sentences (break: max_length=11, has_dev_set=False, `1 <=` into `0 <=`)."""
    task = direct_task(tmp_path)
    assert (task.max_length, task.layer, task.n_figures, task.seed) == (10, None, 4, 141)
    assert task.labels == ["NP", "VP", "PP", "SBAR", "ADJP", "ADVP", "INTJ"]
    assert task.checkpoint == str(tmp_path / "lm2.ckpt")
    with pytest.raises(ValueError, match=r"task.module.layer=0, but .* has layers 1..2"):
        direct_task(tmp_path, layer=0)
    assert task.progress_items({"index": [4, 7, 9]}) == (3, "sentences")


def test_test_step_keeps_each_sentence_with_its_forget_and_input_distances(tmp_path, monkeypatch):
    """One record per sentence of the batch: its split, index, source, words, gold trees, the master
    forget-gate distances (what trees are split on) and the input-gate ones (the figures'); a new test
    epoch starts empty (break: distances_in from the forget gate; on_test_epoch_start not clearing)."""
    def gates(model, ids):
        return [(torch.tensor([[float(n), 1.0]]), torch.tensor([[2.0, float(-n)]])) for n, _ in enumerate(ids)]

    monkeypatch.setattr("tasks.unsupervised_parsing.word_gate_distances", gates)
    task = direct_task(tmp_path)
    task._records = [{"stale": True}]
    task.on_test_epoch_start()
    assert task._records == []
    batch = {"split": "dev", "index": [5, 2], "source": ["f#6", "f#3"], "words": [["a", "b"], ["c", "d"]],
             "gold": [["a", "b"], ["c", "d"]], "labeled": [[("NP", 0, 2)], []], "ids": [[0, 1, 1, 0], [0, 1, 1, 0]]}
    task.test_step(batch, 0)
    assert task._records == [
        {"split": "dev", "index": 5, "source": "f#6", "words": ["a", "b"], "gold": ["a", "b"],
         "labeled": [("NP", 0, 2)], "distances": [[0.0, 1.0]], "distances_in": [[2.0, 0.0]]},
        {"split": "dev", "index": 2, "source": "f#3", "words": ["c", "d"], "gold": ["c", "d"],
         "labeled": [], "distances": [[1.0, 1.0]], "distances_in": [[2.0, -1.0]]},
    ]


def test_records_are_deduplicated_by_index_and_sorted(tmp_path):
    """Every sentence counts once, in index order, whatever the batching (a repeated index, as a
    padded sampler gives, keeps one record) (break: return the records as collected)."""
    task = direct_task(tmp_path)
    task._records = [{"index": 3, "n": "a"}, {"index": 1, "n": "b"}, {"index": 3, "n": "c"}, {"index": 0, "n": "d"}]
    assert [r["index"] for r in task._all_records()] == [0, 1, 3]


def test_random_baseline_is_seeded_per_sentence(tmp_path):
    """The random tree of a sentence depends on the seed and its index only: not on the other
    sentences parsed with it (break: one generator for all sentences, or one seeded without the index)."""
    task = direct_task(tmp_path)
    words = "a b c d e f g h i j k l m n o p q r s t".split()
    one, two = {"index": 1, "words": words}, {"index": 2, "words": words}
    together = task._trees("random", [one, two])
    assert task._trees("random", [two]) == [together[1]]
    assert together[0] != together[1]  # the same words, another index: another tree
    assert direct_task(tmp_path, seed=7)._trees("random", [one]) != [together[0]]
    assert sorted(leaves(together[0])) == sorted(words)


def test_the_layer_is_the_best_on_development_sentence_f1_only(tmp_path):
    """Neither corpus F1, nor the short development sentences, nor the test set choose the layer;
    the first and the last layer can be chosen; no development sentence: an error naming
    dev_sections (break: key f1_corpus, range(2, ...) or range(1, n_layers), dev/ into test/)."""
    task = direct_task(tmp_path, n_layers=3)

    def scores(sentence, corpus):
        return {"f1_sentence": sentence, "f1_corpus": corpus}

    results = {
        "dev/": {"layer1": scores(0.6, 0.1), "layer2": scores(0.5, 0.9), "layer3": scores(0.2, 0.2)},
        "dev/wsj10/": {"layer1": scores(0.1, 0.1), "layer2": scores(0.9, 0.9), "layer3": scores(0.9, 0.9)},
        "test/": {"layer1": scores(0.1, 0.1), "layer2": scores(0.9, 0.9), "layer3": scores(0.9, 0.9)},
    }
    assert task.choose_layer(results) == 1
    results["dev/"]["layer3"] = scores(0.7, 0.0)
    assert task.choose_layer(results) == 3
    with pytest.raises(RuntimeError, match="the development set is empty: .*task.datamodule.dev_sections"):
        task.choose_layer({"test/": results["test/"]})


def test_logged_metrics_of_the_chosen_layer_and_recall_of_the_configured_labels(tmp_path):
    """Layer 1 wins on the development sentence; its test scores are logged as test/f1_sentence,
    test/f1_corpus and test/depth; label recall only for layers and the configured labels; the
    sentence count of each set (break: drop "depth" from the chosen keys, log recall of baselines)."""
    task = direct_task(tmp_path, labels=["NP"], max_length=3, n_figures=0)
    task._records = [HAND_TEST, HAND_DEV]
    task.on_test_epoch_end()
    logged = task.logged
    assert logged["test/chosen_layer"] == 1
    assert logged["test/f1_sentence"] == pytest.approx(0.5)
    assert logged["test/f1_corpus"] == pytest.approx(2 / 3)
    assert logged["test/depth"] == pytest.approx(9 / 4) and logged["test/depth_layer2"] == pytest.approx(2.0)
    assert logged["dev/f1_sentence"] == 1.0 and logged["dev/f1_sentence_layer2"] == 0.0
    assert (logged["test/recall_NP_layer1"], logged["test/recall_NP_layer2"]) == (0.0, 1.0)
    assert not [key for key in logged if "recall_VP" in key or "recall_S_" in key]  # labels not asked for
    assert not [key for key in logged if "recall" in key and "layer" not in key]  # baselines: no recall
    assert (logged["test/sentences"], logged["dev/sentences"], logged["dev/wsj3/sentences"]) == (1, 1, 1)
    assert "test/wsj3/sentences" not in logged
    assert set(task.results) == {"dev/", "dev/wsj3/", "test/"}


def test_written_trees_table_and_page_by_hand(tmp_path, monkeypatch):
    """The chosen layer's test trees (TSV: index, source, predicted, gold), the table's columns and
    depth (a mean, not a percentage), and the page's header: layer, F1s (the short set's too), the
    checkpoint, why this layer (break: header or index column dropped, `self.layer is not None`
    negated, the short-set score or its key changed, a note dropped)."""
    pages = []
    monkeypatch.setattr("tasks.unsupervised_parsing.render_tree_page", lambda rows, header: pages.append((rows, header)) or "page")
    task = direct_task(tmp_path, labels=["NP", "PP"], max_length=4, n_figures=0)
    task._records = [HAND_DEV, HAND_TEST]
    task.on_test_epoch_end()

    assert (tmp_path / "parsing" / "trees_layer1.tsv").read_text() == (
        "index\tsource\tpredicted\tgold\n1\ttest.mrg#1\t(d (e (f g)))\t((d e) (f g))\n")
    assert not (tmp_path / "parsing" / "trees_layer2.tsv").exists()
    with open(tmp_path / "tables" / "test_parsing.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = {(row["set"], row["parser"]): row for row in reader}
    assert reader.fieldnames == ["set", "parser", "sentences", "F1 sentence %", "F1 corpus %", "depth",
                                 "NP recall %", "PP recall %"]
    assert float(rows["test", "layer1"]["depth"]) == pytest.approx(2.25)
    assert float(rows["test/wsj4", "balanced"]["F1 sentence %"]) == pytest.approx(100.0)

    (records, header), = pages
    assert (tmp_path / "parsing" / "trees.html").read_text() == "page"
    assert header.layer == 1
    assert header.scores == {"sentence F1": pytest.approx(0.5), "corpus F1": pytest.approx(2 / 3),
                             "sentence F1 (≤ 4 words)": pytest.approx(0.5)}
    assert header.notes[:2] == [f"language model: {tmp_path / 'lm2.ckpt'}", "layer 1: chosen on the development trees"]
    assert "corpus F1 as EVALB" in header.notes[2]
    assert [(r.id, list(r.words), r.induced, r.gold, r.f1) for r in records] == [
        ("test.mrg#1", ["d", "e", "f", "g"], ["d", ["e", ["f", "g"]]], [["d", "e"], ["f", "g"]], 0.5)]

    (tmp_path / "fixed").mkdir()
    fixed = direct_task(tmp_path / "fixed", layer=2, n_figures=0)
    fixed._records = [HAND_DEV, HAND_TEST]
    fixed.on_test_epoch_end()
    assert pages[-1][1].layer == 2 and pages[-1][1].notes[1] == "layer 2: fixed by task.module.layer"
    assert set(pages[-1][1].scores) == {"sentence F1", "corpus F1", "sentence F1 (≤ 10 words)"}
    assert (tmp_path / "fixed" / "parsing" / "trees_layer2.tsv").exists()


def test_no_sentences_log_nothing_and_no_test_sentences_write_no_page(tmp_path):
    """An empty gather logs and writes nothing (no error about an empty development set); with
    development sentences only, the scores are logged but no tree page is drawn (break: remove
    `if not records: return`, or `if "test/" in results`)."""
    task = direct_task(tmp_path, n_figures=0)
    task.on_test_epoch_end()
    assert task.logged == {} and not (tmp_path / "tables").exists()
    task._records = [HAND_DEV]
    task.on_test_epoch_end()
    assert task.logged["test/chosen_layer"] == 1 and "test/sentences" not in task.logged
    assert not (tmp_path / "parsing" / "trees.html").exists()


def test_gate_figures_of_3_to_30_word_test_sentences_in_index_order(tmp_path, monkeypatch):
    """Figures only for sentences of 3 to 30 words, at most n_figures of them, sorted by index, each
    named by its zero-padded index and drawn from both gates' distances (break: `3 <=` into `3 <`,
    `<= 30` into `< 30`, the sort dropped, distances_in not passed)."""
    drawn = []
    monkeypatch.setattr("tasks.unsupervised_parsing.gate_figure", lambda *args: args)
    monkeypatch.setattr("tasks.unsupervised_parsing.log_figure", lambda trainer, key, figure: drawn.append((key, figure)))
    lengths = {12: 2, 9: 3, 7: 30, 3: 31, 1: 5}
    records = [hand_record("test", i, " ".join(["w"] * n), None, layers=[[float(i)] * n]) for i, n in lengths.items()]
    task = direct_task(tmp_path, n_figures=10)
    task._log_figures(records)
    assert [key for key, _ in drawn] == ["test/gates/sentence00001", "test/gates/sentence00007",
                                         "test/gates/sentence00009"]
    words, distances, distances_in, title = drawn[0][1]
    assert (words, distances, distances_in) == (["w"] * 5, [[1.0] * 5], [[0.5] * 5])
    assert title == "test.mrg#1: w w w w w"
    drawn.clear()
    direct_task(tmp_path, n_figures=2)._log_figures(records)
    assert len(drawn) == 2 and drawn[0][0] < drawn[1][0]
