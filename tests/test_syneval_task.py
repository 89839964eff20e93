"""The syntactic-evaluation task: known answers from hand-set weights, batched == one at a time, end to end."""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import ConfigCompositionException

import train as entry
from eval import evaluate
from datamodules.minimal_pairs import MinimalPairsDataModule
from onlstm import BackboneConfig, RNNLanguageModel
from onlstm.parsing.inference import sequence_log_probs
from tasks.syntactic_evaluation import SyntacticEvaluationTask, compare_items, last_layer_states
from tests.helpers import SYNEVAL_GROUPS, SYNEVAL_ITEMS_ONE_PER_CONDITION

WORDS = ["<eos>", "<unk>", "the", "author", "authors", "laughs", "laugh", "no", "most", "have", "ever", "been", "popular"]
CFG = BackboneConfig(arch="onlstm", emb_size=8, hidden_size=12, n_layers=2, chunk_size=4, tie_weights=False)

RECORDS = {
    "simple_agrmt": [
        {"group": "simple_agrmt", "condition": "sing_MS_MV", "good": "the author laughs", "bad": "the author laugh"},
        {"group": "simple_agrmt", "condition": "plur_MS_MV", "good": "the authors laugh", "bad": "the authors laughs"},
    ],
    "simple_npi_anim": [
        {"group": "simple_npi", "condition": "past", "good": "no authors have ever been popular",
         "bad": "most authors have ever been popular", "intrusive": "the authors have ever been popular"},
    ],
    "simple_npi_inanim": [
        {"group": "simple_npi", "condition": "past", "good": "no author have ever been zany",
         "bad": "most author have ever been zany", "intrusive": "the author have ever been zany"},
    ],
}  # fmt: skip


def write_suite(root: Path, suite: dict = RECORDS) -> Path:
    folder = root / "syneval"
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in suite.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({"category": name, **r}) + "\n" for r in records))
    return root


def save_checkpoint(model: RNNLanguageModel, path: Path, words=WORDS) -> Path:
    """A checkpoint as task=lm writes it (the parts load_language_model reads)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"hyper_parameters": {"model": asdict(model.cfg)}, "vocab": list(words), "state_dict": state}, path)
    return path


def unigram_model(bias: dict[str, float]) -> RNNLanguageModel:
    """Decoder weight 0: every position predicts softmax(bias), whatever the context."""
    torch.manual_seed(0)
    model = RNNLanguageModel(len(WORDS), CFG)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
        for word, value in bias.items():
            model.decoder.bias[WORDS.index(word)] = value
    return model


def run_suite(tmp_path: Path, model: RNNLanguageModel, suite: dict = RECORDS, **datamodule_kwargs) -> SyntacticEvaluationTask:
    ckpt = save_checkpoint(model, tmp_path / "lm.ckpt")
    module = SyntacticEvaluationTask(checkpoint=str(ckpt))
    datamodule = MinimalPairsDataModule(str(write_suite(tmp_path, suite)), **datamodule_kwargs)
    datamodule.use_vocabulary(module.vocab)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.test(module, datamodule=datamodule)
    return module


def test_hand_set_weights_give_the_known_scores_and_accuracies(tmp_path):
    bias = {"laughs": 4.0, "no": 3.0, "the": 1.0}  # "laughs" >> "laugh"; "no" > "the" > "most"
    module = run_suite(tmp_path, unigram_model(bias))
    log_p = torch.log_softmax(torch.tensor([bias.get(w, 0.0) for w in WORDS], dtype=torch.float64), 0)
    suite = module.trainer.datamodule.suite
    for index, ids in enumerate(suite.sentences):  # score = sum over w1..wn <eos>, by hand
        assert module.sentence_scores[index].item() == pytest.approx(sum(log_p[i].item() for i in ids[1:]), abs=1e-5)
    results = module.results
    agr = results.by_group["simple_agrmt"]["good_vs_bad"]
    assert (agr.correct, agr.total) == (1, 2)  # sing: laughs > laugh right; plur: laugh > laughs wrong
    assert results.by_condition[("simple_agrmt", "sing_MS_MV")]["good_vs_bad"].accuracy == 1.0
    assert results.by_condition[("simple_agrmt", "plur_MS_MV")]["good_vs_bad"].accuracy == 0.0
    npi = results.by_group["simple_npi"]  # no > the > most, both files merged into the group
    assert [(npi[c].correct, npi[c].total) for c in ("good_vs_bad", "good_vs_intrusive", "intrusive_vs_bad")] == [(2, 2)] * 3
    assert results.by_category["simple_npi_inanim"]["good_vs_bad"].total == 1
    metrics = module.trainer.callback_metrics
    assert metrics["test/acc/simple_agrmt"].item() == 0.5
    assert metrics["test/acc/simple_npi/intrusive_vs_bad"].item() == 1.0
    assert metrics["test/acc_case/simple_npi_anim"].item() == 1.0
    assert metrics["test/acc_cond/simple_agrmt/plur_MS_MV"].item() == 0.0
    assert metrics["test/acc"].item() == pytest.approx((0.5 + 1.0) / 2)
    # "zany" is not in WORDS: one item, three OOV tokens (good, bad, intrusive)
    assert metrics["test/oov_items/simple_npi"].item() == 1 and metrics["test/oov_tokens/simple_npi"].item() == 3
    table3 = (tmp_path / "tables" / "syneval_table3.csv").read_text().splitlines()
    assert table3[0] == "dependency,phenomenon,test,comparison,items,items_with_oov,accuracy"
    assert table3[1] == "short-term,Subject-verb agreement,Simple,good_vs_bad,2,0,0.5"
    assert [row.split(",")[2] for row in table3[2:]] == [
        "Simple (grammatical vs. intrusive)", "Simple (intrusive vs. ungrammatical)", "Simple (grammatical vs. ungrammatical)"
    ]  # fmt: skip


def test_the_group_case_and_condition_tables_by_hand(tmp_path):
    """The tables beside Table 3, with the same unigram scores as above and one more agreement
    item whose verbs are both unknown: "sings" / "sing" read as <unk> / <unk>, a tie, counted wrong
    (and counted under identical_after_unk). Agreement: 1 of 3 right; NPI: 2 of 2 in each comparison."""
    records = {**RECORDS, "simple_agrmt": [*RECORDS["simple_agrmt"], {
        "group": "simple_agrmt", "condition": "sing_MS_MV", "good": "the author sings", "bad": "the author sing"}]}
    run_suite(tmp_path, unigram_model({"laughs": 4.0, "no": 3.0, "the": 1.0}), suite=records)

    def rows(name):
        with open(tmp_path / "tables" / f"syneval_{name}.csv", newline="") as handle:
            return list(csv.DictReader(handle))

    groups = {row.pop("group"): row for row in rows("groups")}
    assert sorted(groups["simple_agrmt"].pop("oov_words").split()) == ["sing", "sings"]
    assert groups["simple_agrmt"] == {"items_scored": "3", "acc_good_vs_bad": "0.3333", "acc_good_vs_intrusive": "",
                                      "acc_intrusive_vs_bad": "", "items": "3", "items_with_oov": "1",
                                      "identical_after_unk": "1", "oov_tokens": "2"}
    assert groups["simple_npi"] == {"items_scored": "2", "acc_good_vs_bad": "1.0", "acc_good_vs_intrusive": "1.0",
                                    "acc_intrusive_vs_bad": "1.0", "items": "2", "items_with_oov": "1",
                                    "identical_after_unk": "0", "oov_tokens": "3", "oov_words": "zany"}
    assert [list(row.values()) for row in rows("cases")] == [
        ["simple_agrmt", "1", "3", "0.3333", "", ""],
        ["simple_npi_anim", "0", "1", "1.0", "1.0", "1.0"],
        ["simple_npi_inanim", "1", "1", "1.0", "1.0", "1.0"],
    ]
    assert [list(row.values()) for row in rows("conditions")] == [
        ["simple_agrmt", "sing_MS_MV", "2", "0.5", "", ""],
        ["simple_agrmt", "plur_MS_MV", "1", "0.0", "", ""],
        ["simple_npi_anim", "past", "1", "1.0", "1.0", "1.0"],
        ["simple_npi_inanim", "past", "1", "1.0", "1.0", "1.0"],
    ]
    assert rows("table3")[0] == {"dependency": "short-term", "phenomenon": "Subject-verb agreement", "test": "Simple",
                                 "comparison": "good_vs_bad", "items": "3", "items_with_oov": "1", "accuracy": "0.3333"}


NPI_RECORDS = {
    "simple_npi_anim": [
        {"group": "simple_npi", "condition": "past", "good": "no authors have ever been popular",
         "bad": "most authors have ever been popular", "intrusive": "the authors have ever been popular"},
        {"group": "simple_npi", "condition": "future", "good": "no author have ever laughed",
         "bad": "every author have ever laughed", "intrusive": "the author have ever laughed"},
    ],
}  # fmt: skip


def test_npi_comparisons_are_each_made_on_their_own_pair_of_sentences(tmp_path):
    """Guards Marvin & Linzen's three NPI comparisons (good > bad, good > intrusive, intrusive > bad):
    each one compares its own two sentences and is reported under its own name. A unigram model
    scores each sentence by its determiner (the rest is shared): <unk> 5 > no 3 > most 2 > the 1.
    Item 1 (no / most / the): good > bad > intrusive, outcomes (gb, gi, ib) = (1, 1, 0); item 2
    ("every" is <unk>): bad > good > intrusive, (0, 1, 0). Accuracies 1/2, 2/2, 0/2: all three
    differ, so any comparison made on another pair, or reported under another name, shows."""
    bias = {"<unk>": 5.0, "no": 3.0, "most": 2.0, "the": 1.0}
    module = run_suite(tmp_path, unigram_model(bias), suite=NPI_RECORDS)
    npi = module.results.by_group["simple_npi"]
    assert [(npi[c].correct, npi[c].total) for c in ("good_vs_bad", "good_vs_intrusive", "intrusive_vs_bad")] == [
        (1, 2), (2, 2), (0, 2)
    ]  # fmt: skip
    metrics = module.trainer.callback_metrics
    assert metrics["test/acc/simple_npi"].item() == 0.5
    assert metrics["test/acc/simple_npi/good_vs_intrusive"].item() == 1.0
    assert metrics["test/acc/simple_npi/intrusive_vs_bad"].item() == 0.0
    assert metrics["test/acc_cond/simple_npi_anim/past"].item() == 1.0
    assert metrics["test/acc_cond/simple_npi_anim/future"].item() == 0.0
    table3 = (tmp_path / "tables" / "syneval_table3.csv").read_text().splitlines()[1:]
    assert [(row.split(",")[2], float(row.split(",")[-1])) for row in table3] == [
        ("Simple (grammatical vs. intrusive)", 1.0), ("Simple (intrusive vs. ungrammatical)", 0.0),
        ("Simple (grammatical vs. ungrammatical)", 0.5),
    ]  # fmt: skip


def test_skip_oov_drops_the_pairs_with_unknown_words(tmp_path):
    module = run_suite(tmp_path, unigram_model({"laughs": 4.0}), skip_oov=True)
    assert module.results.by_group["simple_npi"]["good_vs_bad"].total == 1
    assert "simple_npi_inanim" not in module.results.by_category
    assert module.trainer.callback_metrics["test/oov_items/simple_npi"].item() == 1


def test_batched_scores_equal_one_sentence_at_a_time(tmp_path):
    torch.manual_seed(3)
    model = RNNLanguageModel(len(WORDS), CFG)  # random weights: every context matters
    module = run_suite(tmp_path, model, batch_size=3)
    suite = module.trainer.datamodule.suite
    assert len(suite.sentences) == 10 and suite.n_edges < sum(len(e) for e in suite.edges)  # prefixes shared
    for index, ids in enumerate(suite.sentences):
        alone = sequence_log_probs(module.model, [ids], batch_size=1)[0].sum().item()
        assert module.sentence_scores[index].item() == pytest.approx(alone, abs=1e-5)


def test_last_layer_states_reproduce_the_forward_logits():
    torch.manual_seed(1)
    model = RNNLanguageModel(len(WORDS), CFG).eval()
    tokens = torch.randint(0, len(WORDS), (6, 3))
    torch.testing.assert_close(model.decoder(last_layer_states(model, tokens)), model(tokens).logits)
    # the whole message (break seen failing: the text wrapped in "XX")
    with pytest.raises(RuntimeError, match=r"^last_layer_states expects the model in eval mode \(no dropout\)$"):
        last_layer_states(model.train(), tokens)


def test_end_to_end_through_eval_py(make_cfg, tmp_path):
    torch.manual_seed(2)
    ckpt = save_checkpoint(RNNLanguageModel(len(WORDS), CFG), tmp_path / "lm.ckpt")
    cfg = make_cfg(
        ["task=syneval", f"ckpt_path={ckpt}", f"paths.data_dir={write_suite(tmp_path / 'data')}",
         "logger=csv", "trainer.enable_progress_bar=false"], config_name="eval"
    )  # fmt: skip
    metrics = evaluate(cfg)
    assert {"test/acc", "test/acc/simple_agrmt", "test/acc/simple_npi/good_vs_intrusive", "test/suite_seconds"} <= set(metrics)
    assert metrics["test/items"] == 4 and metrics["test/sentences"] == 10
    out = Path(cfg.paths.output_dir)
    for name in ("table3", "groups", "cases", "conditions"):
        assert (out / "tables" / f"syneval_{name}.md").is_file()
    rows = list(csv.DictReader(open(out / "tables" / "syneval_groups.csv")))
    assert {r["group"]: r["oov_words"] for r in rows} == {"simple_agrmt": "", "simple_npi": "zany"}
    logged = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    assert math.isclose(float(logged[-1]["test/acc"]), metrics["test/acc"], abs_tol=1e-6)


def test_schema_rejects_a_typo_and_training_is_refused(make_cfg, tmp_path):
    with pytest.raises(ConfigCompositionException) as info:
        make_cfg(["task=syneval", "task.datamodule.skip_oovv=true"])
    assert "Key 'skip_oovv' not in 'MinimalPairsDataSchema'" in str(info.value.__cause__)
    ckpt = save_checkpoint(unigram_model({}), tmp_path / "lm.ckpt")
    cfg = make_cfg(["task=syneval", f"ckpt_path={ckpt}", f"paths.data_dir={write_suite(tmp_path / 'data')}", "logger=csv"])
    with pytest.raises(ValueError, match=r"run it with python eval.py task=syneval ckpt_path=/path/to/lm.ckpt"):
        entry.train(cfg)  # train.py trains: refused with the command that evaluates


def test_the_lm_runs_as_the_run_options_say(tmp_path):
    """`run` (python eval.py task=syneval run.implementation=reference) picks how the checkpoint's
    LM runs (break: drop `run` from load_language_model's call in SyntacticEvaluationTask)."""
    ckpt = save_checkpoint(unigram_model({}), tmp_path / "lm.ckpt")
    assert SyntacticEvaluationTask(checkpoint=str(ckpt)).model.stack.implementation == "fused"
    module = SyntacticEvaluationTask(checkpoint=str(ckpt), run={"implementation": "reference", "cuda_graphs": False})
    assert module.model.stack.implementation == "reference"


def test_experiment_trains_then_scores_the_suite(make_cfg):
    """`evaluate_after` (as experiment=syneval_wikitext2 sets it) runs the suite on the new checkpoint."""
    cfg = make_cfg(["experiment=syneval_cpu",
                    "evaluate_after.syneval.datamodule.limit_per_condition=1", "+trainer.limit_train_batches=2",
                    "trainer.limit_val_batches=1", "trainer.enable_progress_bar=false"])
    metrics = entry.train(cfg)
    assert math.isfinite(metrics["val/ppl"])
    # the whole suite at one item per (file, condition), every reporting group scored
    assert metrics["test/items"] == SYNEVAL_ITEMS_ONE_PER_CONDITION
    groups = {key for key in metrics if key.startswith("test/acc/") and key.count("/") == 2}
    assert len(groups) == SYNEVAL_GROUPS and all(0.0 <= metrics[key] <= 1.0 for key in groups)
    assert metrics["test/acc"] == pytest.approx(sum(metrics[key] for key in groups) / SYNEVAL_GROUPS)


# ----------------------------------------------------------------------------- logged comparisons, refusals
def test_agreement_groups_log_no_intrusive_comparisons(tmp_path):
    """Only groups with intrusive sentences (NPI) log good_vs_intrusive and intrusive_vs_bad; an
    agreement group logs its good_vs_bad accuracy alone, not a 0-item accuracy (break: drop the
    `if tallies[name].total` condition)."""
    metrics = run_suite(tmp_path, unigram_model({"laughs": 4.0})).trainer.callback_metrics
    assert "test/acc/simple_agrmt" in metrics
    assert [key for key in metrics if key.startswith("test/acc/simple_agrmt/")] == []
    assert {"test/acc/simple_npi/good_vs_intrusive", "test/acc/simple_npi/intrusive_vs_bad"} <= set(metrics)


def test_a_test_loop_stopped_early_is_refused_and_the_suite_needs_its_datamodule(tmp_path):
    """Scores of a partly read suite are refused with the count of unscored prefix steps and the
    likely cause (break: drop the `if missing` check, or report a wrong count); the task without the
    minimal-pairs datamodule says which one it needs."""
    module = SyntacticEvaluationTask(checkpoint=str(save_checkpoint(unigram_model({}), tmp_path / "lm.ckpt")))
    datamodule = MinimalPairsDataModule(str(write_suite(tmp_path)), batch_size=2)
    datamodule.use_vocabulary(module.vocab)
    n_edges = datamodule.suite.n_edges
    scored = int(next(iter(datamodule.test_dataloader()))["new"].sum())  # the one batch read
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, limit_test_batches=1)
    with pytest.raises(RuntimeError) as refused:
        trainer.test(module, datamodule=datamodule)
    missing, total = map(int, re.match(r"(\d+) of (\d+) prefix steps were not scored: ", str(refused.value)).groups())
    assert (missing, total) == (n_edges - scored, n_edges) and 0 < scored < n_edges
    # the likely cause, word for word (break seen failing: that part of the text wrapped in "XX")
    assert str(refused.value).endswith(": the test loop stopped early (limit_test_batches / fast_dev_run?); "
                                       "the suite needs every batch")
    assert module.results is None
    module.trainer = SimpleNamespace(datamodule=None)
    with pytest.raises(RuntimeError, match=r"needs the MinimalPairsDataModule: trainer.test\(module, datamodule=...\)"):
        module.suite  # noqa: B018


# ----------------------------------------------------------------------------- ties, the tables' columns, the run log
def test_compare_items_gives_each_item_one_outcome_per_comparison():
    """`compare_items`' documented outcomes, per item: 1 right, 0 wrong (a tie is wrong: the
    grammatical sentence must score strictly higher), -1 where the item has no intrusive sentence.
    Indices into the scores as `encode_suite` writes them: a sentence index may be 0 (the first
    sentence of the suite), and two columns may point to one sentence (they read the same). Breaks
    seen failing: `has_intrusive = suite.intrusive > 0` (or `>= 1`), `clamp(min=1)`, `>=` for either
    intrusive comparison, and "not applicable" written as -2."""
    scores = torch.tensor([-1.0, -3.0, -2.0, -5.0, -4.0], dtype=torch.float64)
    suite = SimpleNamespace(  # only the three index columns are read
        good=torch.tensor([0, 2, 3, 2]),
        bad=torch.tensor([1, 2, 4, 1]),
        intrusive=torch.tensor([0, -1, 1, 1]),
    )
    # item 0: good -1 > bad -3, good = intrusive (same sentence 0): tie, intrusive -1 > bad -3
    # item 1: good = bad (same sentence): tie; no intrusive sentence
    # item 2: good -5 < bad -4, good -5 < intrusive -3, intrusive -3 > bad -4
    # item 3: good -2 > bad -3, good -2 > intrusive -3, intrusive = bad (same sentence 1): tie
    outcomes = {name: values.tolist() for name, values in compare_items(suite, scores).items()}
    assert outcomes == {"good_vs_bad": [1, 0, 0, 1], "good_vs_intrusive": [0, -1, 0, 1], "intrusive_vs_bad": [1, -1, 1, 0]}


TIE_RECORDS = {
    "simple_npi_anim": [
        {"group": "simple_npi", "condition": "past", "good": "few authors have ever been popular",
         "bad": "most authors have ever been popular", "intrusive": "some authors have ever been popular"},
        {"group": "simple_npi", "condition": "past", "good": "no author have ever been popular",
         "bad": "every author have ever been popular", "intrusive": "any author have ever been popular"},
    ],
}  # fmt: skip


def test_a_tie_with_the_intrusive_sentence_counts_as_wrong(tmp_path):
    """An NPI sentence that reads like the intrusive one once its OOV word is <unk> scores the same:
    the comparison is a tie, counted wrong, like a good/bad tie. Item 1: "few" and "some" are both
    <unk>, so good = intrusive, and it is the suite's first sentence (index 0); item 2: "every" and
    "any" are <unk>, so intrusive = bad. Unigram scores by determiner: no 3 > <unk> 2 > most 0.
    Item 1 (gb, gi, ib) = (1, 0 tie, 1); item 2 = (1, 1, 0 tie): accuracies 2/2, 1/2, 1/2. Breaks seen
    failing: the first sentence taken for "no intrusive sentence" (`intrusive > 0`, `>= 1`), or read
    as sentence 1 (`clamp(min=1)`), and a tie counted right (`>=`) in either intrusive comparison."""
    module = run_suite(tmp_path, unigram_model({"<unk>": 2.0, "no": 3.0}), suite=TIE_RECORDS)
    suite = module.trainer.datamodule.suite
    # four distinct sentences: item 1's good (= its intrusive) 0 and bad 1, item 2's good 2 and bad (= its intrusive) 3
    assert (suite.good.tolist(), suite.bad.tolist(), suite.intrusive.tolist()) == ([0, 2], [1, 3], [0, 3])
    npi = module.results.by_group["simple_npi"]
    assert [(npi[c].correct, npi[c].total) for c in ("good_vs_bad", "good_vs_intrusive", "intrusive_vs_bad")] == [
        (2, 2), (1, 2), (1, 2)
    ]  # fmt: skip
    metrics = module.trainer.callback_metrics
    assert metrics["test/acc/simple_npi/good_vs_intrusive"].item() == 0.5
    assert metrics["test/acc/simple_npi/intrusive_vs_bad"].item() == 0.5


def test_the_case_and_condition_tables_name_their_columns(tmp_path):
    """The CSV tables are read by their header (a notebook, a spreadsheet, the evidence report):
    each column keeps its name. Breaks seen failing: any column name of syneval/cases or
    syneval/conditions misspelt (e.g. "XXcategoryXX", "ITEMS_SCORED"), which the by-hand test of
    the tables' values (read row by row) does not see."""
    run_suite(tmp_path, unigram_model({"laughs": 4.0}))
    accuracies = ["acc_good_vs_bad", "acc_good_vs_intrusive", "acc_intrusive_vs_bad"]
    headers = {name: (tmp_path / "tables" / f"syneval_{name}.csv").read_text().splitlines()[0].split(",")
               for name in ("cases", "conditions", "groups")}
    assert headers["cases"] == ["category", "items_with_oov", "items_scored", *accuracies]
    assert headers["conditions"] == ["category", "condition", "items_scored", *accuracies]
    assert headers["groups"] == ["group", "items_scored", *accuracies, "items", "items_with_oov", "identical_after_unk",
                                 "oov_tokens", "oov_words"]  # fmt: skip


def test_the_group_table_lists_the_twelve_commonest_oov_words(tmp_path):
    """`oov_words` of syneval/groups names the twelve commonest out-of-vocabulary words of the group,
    most frequent first: here twelve words seen twice and a thirteenth seen once, which is left out.
    Breaks seen failing: `most_common(13)`, and `most_common(None)` (every word)."""
    twice = ["w%02d" % i for i in range(12)]  # not in WORDS: each is <unk>
    records = [{"group": "simple_agrmt", "condition": "sing_MS_MV", "good": f"the {a} laughs", "bad": f"the {b} laugh"}
               for a, b in zip(twice[0::2], twice[1::2])] * 2  # fmt: skip
    records.append({"group": "simple_agrmt", "condition": "sing_MS_MV", "good": "the once laughs", "bad": "the author laugh"})
    run_suite(tmp_path, unigram_model({"laughs": 4.0}), suite={"simple_agrmt": records})
    with open(tmp_path / "tables" / "syneval_groups.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert row["oov_words"].split() == twice  # counts tie at 2: first seen first
    assert row["oov_tokens"] == "25" and row["items_with_oov"] == "13"


def test_the_task_holds_the_checkpoint_it_scores(tmp_path):
    """The task keeps what it loaded from `checkpoint`: its path, backbone config, vocabulary and
    weights; nothing is scored before the test loop (`results` and `sentence_scores` are None).
    Breaks seen failing: `backbone_cfg = None`, `checkpoint_path = None` or `str(None)`, and
    `sentence_scores = ""` before any test loop."""
    model = unigram_model({"laughs": 4.0})
    ckpt = save_checkpoint(model, tmp_path / "lm.ckpt")
    module = SyntacticEvaluationTask(checkpoint=ckpt)  # a Path: kept as its text
    assert module.checkpoint_path == str(ckpt) and module.backbone_cfg == CFG and module.vocab == WORDS
    torch.testing.assert_close(module.model.state_dict(), model.state_dict(), rtol=0, atol=0)
    assert module.results is None and module.sentence_scores is None


def test_the_run_log_names_the_checkpoint_and_shows_table3(tmp_path, caplog):
    """The run's log says which checkpoint is scored (path, backbone config, vocabulary size), then
    the text style and Table 3 as markdown, the numbers of the first test above (agreement 1 of 2;
    NPI 2 of 2 in each comparison, one NPI item with an OOV word). Breaks seen failing: any argument
    of either log line dropped or replaced by None, and either format string altered."""
    ckpt = tmp_path / "lm.ckpt"
    with caplog.at_level(logging.INFO, logger="onlstm.syneval"):
        run_suite(tmp_path, unigram_model({"laughs": 4.0, "no": 3.0, "the": 1.0}))
    messages = [record.getMessage() for record in caplog.records if record.name == "onlstm.syneval"]
    assert messages[0] == f"scoring with {ckpt} ({CFG}, 13 words)"
    assert messages[1] == (
        "style TextStyle(capitalize_first=False, final_period=False); Table 3 rows:\n"
        "| dependency | phenomenon | test | comparison | items | items_with_oov | accuracy |\n"
        "|---|---|---|---|---|---|---|\n"
        "| short-term | Subject-verb agreement | Simple | good_vs_bad | 2 | 0 | 0.5000 |\n"
        "| short-term | Negative polarity items | Simple (grammatical vs. intrusive) | good_vs_intrusive | 2 | 1 | 1.0000 |\n"
        "| short-term | Negative polarity items | Simple (intrusive vs. ungrammatical) | intrusive_vs_bad | 2 | 1 | 1.0000 |\n"
        "| short-term | Negative polarity items | Simple (grammatical vs. ungrammatical) | good_vs_bad | 2 | 1 | 1.0000 |\n"
    )
    assert len(messages) == 2


def test_suite_seconds_is_the_time_the_test_loop_took(tmp_path):
    """`test/suite_seconds` is the time from the start of the test epoch to its end: positive, and
    no more than the whole `trainer.test` call around it took (break seen failing: the start time
    added to the end time instead of subtracted, which gives the machine's uptime twice over)."""
    started = time.perf_counter()
    module = run_suite(tmp_path, unigram_model({"laughs": 4.0}))
    elapsed = time.perf_counter() - started
    assert 0.0 < module.trainer.callback_metrics["test/suite_seconds"].item() <= elapsed
