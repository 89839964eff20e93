"""The treebank datamodule and the unsupervised-parsing task, end to end on a tiny trained LM."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException

import train
from datamodules.files import DataError
from datamodules.treebank import TreebankDataModule, read_treebank, select_files
from onlstm import BackboneConfig, RNNLanguageModel
from onlstm.metrics import evaluate_trees
from onlstm.trees import baseline_tree, from_bracketed, leaves, split_tree
from tasks.checkpoints import load_language_model
from tasks.unsupervised_parsing import word_gate_distances
from tests.conftest import DATA_DIR, TINY_MODEL, compose_config, requires_data

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


def write_treebank(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "tb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# ----------------------------------------------------------------------------- datamodule
def test_reader_keeps_words_builds_gold_and_encodes(tmp_path):
    write_treebank(tmp_path, {"wsj_0001.mrg": GOOD, "README": "not a tree"})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", max_length=3, batch_size=8)
    assert [s.words for s in dm.sentences] == [
        ["the", "cat", "sat", "on", "the", "mat"],
        ["mr.", "smith", "paid", "N.N"],
    ]
    assert [(s.file, s.number) for s in dm.sentences] == [("wsj_0001.mrg", 1), ("wsj_0001.mrg", 2)]  # tree 3: no word
    assert dm.sentences[0].gold == [["the", "cat"], ["sat", ["on", ["the", "mat"]]]]
    assert dm.sentences[1].gold == [["mr.", "smith"], ["paid", "N.N"]]
    assert ("PP", 3, 6) in dm.sentences[0].labeled and ("S", 0, 6) in dm.sentences[0].labeled
    assert dm.module_kwargs() == {"max_length": 3}

    dm.use_vocabulary(["<eos>", "<unk>", "the", "cat", "sat"])
    dm.setup("test")
    assert dm.ids == [[0, 2, 3, 4, 1, 2, 1, 0], [0, 1, 1, 1, 1, 0]]
    (batch,) = list(dm.test_dataloader())
    assert batch["index"] == [1, 0]  # sorted by length
    assert batch["source"] == ["wsj_0001.mrg#2", "wsj_0001.mrg#1"]
    assert batch["ids"][0] == [0, 1, 1, 1, 1, 0]


def test_vocabulary_needs_eos_and_unk(tmp_path):
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb")
    with pytest.raises(ValueError, match="<unk>"):
        dm.use_vocabulary(["<eos>", "the"])


def test_batches_cover_every_sentence_once(tmp_path):
    write_treebank(tmp_path, {"wsj_0001.mrg": GOOD * 3})
    dm = TreebankDataModule(data_dir=str(tmp_path), treebank="tb", batch_size=4)
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
    cfg = make_cfg(["task=parsing", "ckpt_path=/x.ckpt", "train=false"])
    assert cfg.task.evaluates_checkpoint is True
    assert cfg.task.datamodule.treebank == "treebank/combined" and cfg.task.datamodule.max_length == 10
    assert cfg.task.module.seed == cfg.seed
    with pytest.raises(ConfigCompositionException, match="max_lenght"):
        make_cfg(["task=parsing", "task.datamodule.max_lenght=20"])


def test_parsing_needs_a_checkpoint(make_cfg):
    cfg = make_cfg(["task=parsing", "train=false", "~logger"])
    with pytest.raises(ValueError, match="set ckpt_path"):
        train.train(cfg)


# ----------------------------------------------------------------------------- gate distances
def test_word_gate_distances_equal_the_reference_recurrence():
    """The task's batched, no-grad distances are the paper's per-step recurrence at the word
    positions of ``<eos> words <eos>`` (a wrong inference fast path would change every tree)."""
    torch.manual_seed(0)
    model = RNNLanguageModel(60, BackboneConfig(emb_size=16, hidden_size=32, n_layers=2, chunk_size=4)).eval()
    sequences = [[0, 5, 17, 33, 2, 8, 0], [0, 9, 0], [0, 41, 3, 3, 12, 0]]
    batched = word_gate_distances(model, sequences)
    model.stack.implementation = "reference"
    for seq, (forget, inp) in zip(sequences, batched):
        out = model(torch.tensor(seq)[:, None])
        torch.testing.assert_close(forget, out.distances[:, 1:-1, 0].detach(), rtol=0, atol=1e-6)
        torch.testing.assert_close(inp, out.distances_in[:, 1:-1, 0].detach(), rtol=0, atol=1e-6)
    assert batched[0][0].std() > 0  # the distances depend on the words


# ----------------------------------------------------------------------------- end to end
FEW_FILES = "task.datamodule.file_pattern='wsj_000[1-4]\\.mrg'"


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
    cfg = make_cfg(["task=parsing", f"ckpt_path={checkpoint}", "train=false", "logger=csv", FEW_FILES, *extra], subdir)
    return train.train(cfg), Path(cfg.paths.output_dir)


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
def test_parsing_end_to_end(make_cfg, lm_checkpoint):
    metrics, out = run_parsing(make_cfg, lm_checkpoint, "task.datamodule.batch_size=16", "task.module.n_figures=2")

    # recompute everything independently, one sentence at a time, from the same files
    dm = TreebankDataModule(data_dir=str(DATA_DIR), file_pattern=r"wsj_000[1-4]\.mrg")
    loaded = load_language_model(lm_checkpoint)
    dm.use_vocabulary(loaded.vocab)
    sentences, ids = dm.sentences, dm.ids
    words = [s.words for s in sentences]
    golds = [s.gold for s in sentences]
    short = [i for i, w in enumerate(words) if len(w) <= 10]
    assert metrics["test/sentences"] == len(sentences) and metrics["test/wsj10/sentences"] == len(short)

    for layer in (1, 2):
        trees = [
            split_tree(word_gate_distances(loaded.model, [x])[0][0][layer - 1].tolist(), w) for x, w in zip(ids, words)
        ]
        expected = evaluate_trees(trees, golds, [s.labeled for s in sentences])
        assert metrics[f"test/f1_sentence_layer{layer}"] == pytest.approx(expected["f1_sentence"], abs=1e-6)
        assert metrics[f"test/f1_corpus_layer{layer}"] == pytest.approx(expected["f1_corpus"], abs=1e-6)
        assert metrics[f"test/depth_layer{layer}"] == pytest.approx(expected["depth"], abs=1e-5)
        assert metrics[f"test/recall_NP_layer{layer}"] == pytest.approx(expected["label_recall"]["NP"], abs=1e-6)
        short_expected = evaluate_trees([trees[i] for i in short], [golds[i] for i in short])
        assert metrics[f"test/wsj10/f1_sentence_layer{layer}"] == pytest.approx(short_expected["f1_sentence"], abs=1e-6)
        assert metrics[f"test/wsj10/f1_corpus_layer{layer}"] == pytest.approx(short_expected["f1_corpus"], abs=1e-6)
    for name in ("left_branching", "right_branching", "balanced", "random"):
        trees = [baseline_tree(name, w, random.Random(f"141:{i}")) for i, w in enumerate(words)]
        expected = evaluate_trees(trees, golds)["f1_sentence"]
        assert metrics[f"test/f1_sentence_{name}"] == pytest.approx(expected, abs=1e-6)
    best = int(metrics["test/best_layer"])
    assert metrics["test/f1_sentence_best"] == pytest.approx(metrics[f"test/f1_sentence_layer{best}"])

    # the best layer's trees beside the gold ones, one sentence per line
    with open(out / "parsing" / f"trees_layer{best}.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert len(rows) == len(sentences)
    for row, sentence in zip(rows, sentences):
        assert from_bracketed(row["gold"]) == sentence.gold
        assert leaves(from_bracketed(row["predicted"])) == sentence.words
    table = (out / "tables" / "test_parsing.md").read_text()
    assert "| wsj10 | layer2 |" in table and "| all | random |" in table
    assert len(list((out / "figures").glob("test_gates_sentence*.png"))) == 2
    assert "test/f1_sentence_layer2" in (out / "csv" / "metrics.csv").read_text()

    # batched over padded batches == one sentence per batch: the same numbers
    single, _ = run_parsing(
        make_cfg, lm_checkpoint, "task.datamodule.batch_size=1", "task.module.n_figures=0", subdir="single"
    )
    keys = ("test/f1_sentence_layer1", "test/f1_corpus_layer2", "test/wsj10/f1_sentence_layer2", "test/depth_layer1")
    for key in keys:
        assert single[key] == metrics[key]


@requires_data("ptb/train.txt", "treebank/combined")
def test_fitting_the_parsing_task_says_to_use_train_false(make_cfg, lm_checkpoint):
    cfg = make_cfg(["task=parsing", f"ckpt_path={lm_checkpoint}", "~logger", FEW_FILES])
    with pytest.raises(RuntimeError, match="train=false"):
        train.train(cfg)
