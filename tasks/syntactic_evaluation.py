"""Targeted syntactic evaluation (Marvin & Linzen 2018; the ON-LSTM paper's Table 3) of a trained LM.

A sentence's score is log p(w1 .. wn <eos> | <eos>), the sum of the LM's word log-probabilities;
an item is right when the grammatical sentence scores strictly higher than the ungrammatical one
(NPI items also compare each with the "intrusive" sentence). The datamodule hands over distinct
sentences with the prefix-trie edges to compute (see datamodules/minimal_pairs.py); this module
computes each edge's log-probability once, then sums, compares and reports.

Logged metrics (all at the end of the test epoch):
  test/acc                                  mean over the reporting groups of their good > bad accuracy
  test/acc/<group>                          good > bad, per reporting group (anim + inanim merged)
  test/acc/<group>/good_vs_intrusive        NPI groups: good > intrusive
  test/acc/<group>/intrusive_vs_bad         NPI groups: intrusive > bad
  test/acc_case/<category>                  good > bad, per test-case file
  test/acc_cond/<category>/<condition>      good > bad, per sub-condition
  test/oov_items/<group>, test/oov_tokens/<group>   out-of-vocabulary counts (before skipping)
  test/items, test/sentences, test/suite_seconds    what was scored and how long the test loop took
Tables (``tables/`` of the run folder, and every logger): syneval/table3 (the paper's rows), syneval/groups,
syneval/cases, syneval/conditions.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.nn import functional as F
from torchmetrics import CatMetric

from datamodules.minimal_pairs import EncodedSuite, MinimalPairsDataModule
from onlstm import RNNLanguageModel
from onlstm.checkpoints import load_language_model
from tasks.jobs.contract import TaskModule
from tasks.jobs.run_folder import markdown_table
from tasks.jobs.tracking import log_table

log = logging.getLogger("onlstm.syneval")

COMPARISONS = ("good_vs_bad", "good_vs_intrusive", "intrusive_vs_bad")

SVA, REFL, NPI = "Subject-verb agreement", "Reflexive anaphora", "Negative polarity items"
# The paper's Table 3: (dependency, phenomenon, row name, reporting group, comparison).
TABLE3_ROWS: list[tuple[str, str, str, str, str]] = [
    ("short-term", SVA, "Simple", "simple_agrmt", "good_vs_bad"),
    ("short-term", SVA, "In a sentential complement", "sent_comp", "good_vs_bad"),
    ("short-term", SVA, "Short VP coordination", "vp_coord", "good_vs_bad"),
    ("short-term", SVA, "In an object relative clause", "obj_rel_within", "good_vs_bad"),
    ("short-term", SVA, "In an object relative (no that)", "obj_rel_no_comp_within", "good_vs_bad"),
    ("short-term", REFL, "Simple", "simple_reflexives", "good_vs_bad"),
    ("short-term", REFL, "In a sentential complement", "reflexive_sent_comp", "good_vs_bad"),
    ("short-term", NPI, "Simple (grammatical vs. intrusive)", "simple_npi", "good_vs_intrusive"),
    ("short-term", NPI, "Simple (intrusive vs. ungrammatical)", "simple_npi", "intrusive_vs_bad"),
    ("short-term", NPI, "Simple (grammatical vs. ungrammatical)", "simple_npi", "good_vs_bad"),
    ("long-term", SVA, "Long VP coordination", "long_vp_coord", "good_vs_bad"),
    ("long-term", SVA, "Across a prepositional phrase", "prep", "good_vs_bad"),
    ("long-term", SVA, "Across a subject relative clause", "subj_rel", "good_vs_bad"),
    ("long-term", SVA, "Across an object relative clause", "obj_rel_across", "good_vs_bad"),
    ("long-term", SVA, "Across an object relative (no that)", "obj_rel_no_comp_across", "good_vs_bad"),
    ("long-term", REFL, "Across a relative clause", "reflexives_across", "good_vs_bad"),
    ("long-term", NPI, "Across a relative clause (grammatical vs. intrusive)", "npi_across", "good_vs_intrusive"),
    ("long-term", NPI, "Across a relative clause (intrusive vs. ungrammatical)", "npi_across", "intrusive_vs_bad"),
    ("long-term", NPI, "Across a relative clause (grammatical vs. ungrammatical)", "npi_across", "good_vs_bad"),
]


# ------------------------------------------------------------------------------ pure scoring
@dataclass
class Tally:
    correct: int = 0
    total: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else math.nan


def _tallies() -> defaultdict:
    return defaultdict(lambda: defaultdict(Tally))


@dataclass
class SuiteResults:
    """Tallies per comparison, keyed by group, by category and by (category, condition)."""

    by_group: dict[str, dict[str, Tally]] = field(default_factory=lambda: _tallies())
    by_category: dict[str, dict[str, Tally]] = field(default_factory=lambda: _tallies())
    by_condition: dict[tuple[str, str], dict[str, Tally]] = field(default_factory=lambda: _tallies())

    @property
    def macro_accuracy(self) -> float:
        values = [t["good_vs_bad"].accuracy for t in self.by_group.values() if t["good_vs_bad"].total]
        return sum(values) / len(values) if values else math.nan


def compare_items(suite: EncodedSuite, scores: Tensor) -> dict[str, Tensor]:
    """Per item and comparison: 1 correct, 0 wrong, -1 not applicable (no intrusive sentence)."""
    good, bad = scores[suite.good], scores[suite.bad]
    has_intrusive = suite.intrusive >= 0
    intrusive = scores[suite.intrusive.clamp(min=0)]
    na = torch.full_like(suite.good, -1)
    return {
        "good_vs_bad": (good > bad).long(),
        "good_vs_intrusive": torch.where(has_intrusive, (good > intrusive).long(), na),
        "intrusive_vs_bad": torch.where(has_intrusive, (intrusive > bad).long(), na),
    }


def evaluate_suite(suite: EncodedSuite, scores: Tensor) -> SuiteResults:
    """Tallies of every comparison from the sentence scores (indexed like ``suite.sentences``)."""
    outcomes = {name: values.tolist() for name, values in compare_items(suite, scores).items()}
    results = SuiteResults()
    for i, pair in enumerate(suite.pairs):
        for name in COMPARISONS:
            outcome = outcomes[name][i]
            if outcome < 0:
                continue
            for table, key in (
                (results.by_group, pair.group),
                (results.by_category, pair.category),
                (results.by_condition, (pair.category, pair.condition)),
            ):
                tally = table[key][name]
                tally.correct += outcome
                tally.total += 1
    return results


def last_layer_states(model: RNNLanguageModel, tokens: Tensor) -> Tensor:
    """The (time, batch, d) vectors that ``model.decoder`` maps to logits, as ``model(tokens)``
    computes them in eval mode (where embedding and locked dropout are identities). Lets the
    caller apply the vocabulary-sized output layer only where it is needed."""
    if model.training:
        raise RuntimeError("last_layer_states expects the model in eval mode (no dropout)")
    return model.features(tokens).output


# ------------------------------------------------------------------------------ the task
class SyntacticEvaluationTask(TaskModule):
    """Evaluation only (``trainer.test``): the LM is the checkpoint's, nothing here is trained."""

    def __init__(self, checkpoint: str, run: dict | None = None):
        """``checkpoint``: the LM (ckpt_path), with its backbone config, weights and vocabulary;
        ``run``: how it runs (the ``run`` config: implementation, cuda_graphs)."""
        super().__init__()
        loaded = load_language_model(checkpoint, run)
        self.model = loaded.model
        self.vocab = loaded.vocab
        self.backbone_cfg = loaded.config
        self.checkpoint_path = str(checkpoint)
        log.info("scoring with %s (%s, %d words)", checkpoint, loaded.config, len(loaded.vocab))
        # (edge id, log-prob) pairs; CatMetric gathers them over ranks in a distributed run
        # (float32 holds edge ids exactly up to 2**24; the suite has ~420,000 edges)
        self.edge_ids = CatMetric()
        self.edge_log_probs = CatMetric()
        self.results: SuiteResults | None = None
        self.sentence_scores: Tensor | None = None
        self._started = 0.0

    def progress_items(self, batch: dict) -> tuple[int, str]:
        """What the progress log counts per batch: sentences."""
        return int(batch["sentence"].numel()), "sentences"

    @property
    def suite(self) -> EncodedSuite:
        datamodule = self.trainer.datamodule
        if not isinstance(datamodule, MinimalPairsDataModule):
            raise RuntimeError(
                "SyntacticEvaluationTask needs the MinimalPairsDataModule: trainer.test(module, datamodule=...)"
            )
        return datamodule.suite

    def on_test_epoch_start(self) -> None:
        self._started = time.perf_counter()

    def edge_log_probs_of(self, batch: dict) -> tuple[Tensor, Tensor]:
        """(edge ids, log-probs) of the positions of ``batch`` marked ``new``."""
        new = batch["new"]
        states = last_layer_states(self.model, batch["tokens"][:-1])[new]
        targets = batch["tokens"][1:][new]
        log_probs = F.log_softmax(self.model.decoder(states).float(), dim=-1)
        return batch["edges"][new], log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        if not bool(batch["new"].any()):
            return
        edges, log_probs = self.edge_log_probs_of(batch)
        self.edge_ids.update(edges.float())
        self.edge_log_probs.update(log_probs)

    def on_test_epoch_end(self) -> None:
        suite = self.suite
        edge_lp = torch.full((suite.n_edges,), math.nan, dtype=torch.float64)
        edge_lp[self.edge_ids.compute().long().cpu()] = self.edge_log_probs.compute().double().cpu()
        self.edge_ids.reset()
        self.edge_log_probs.reset()
        missing = int(torch.isnan(edge_lp).sum())
        if missing:
            raise RuntimeError(
                f"{missing} of {suite.n_edges} prefix steps were not scored: the test loop stopped early "
                "(limit_test_batches / fast_dev_run?); the suite needs every batch"
            )
        seconds = time.perf_counter() - self._started
        self.sentence_scores = suite.sentence_scores(edge_lp)
        self.results = evaluate_suite(suite, self.sentence_scores)
        self._log_metrics(suite, self.results, seconds)
        self._log_tables(suite, self.results)

    # ------------------------------------------------------------ reporting
    def _log_metrics(self, suite: EncodedSuite, results: SuiteResults, seconds: float) -> None:
        n = len(suite.pairs)
        metrics = {"test/acc": results.macro_accuracy, "test/items": n, "test/sentences": len(suite.sentences)}
        metrics["test/suite_seconds"] = seconds
        for group, tallies in results.by_group.items():
            metrics[f"test/acc/{group}"] = tallies["good_vs_bad"].accuracy
            for name in ("good_vs_intrusive", "intrusive_vs_bad"):
                if tallies[name].total:
                    metrics[f"test/acc/{group}/{name}"] = tallies[name].accuracy
        for group, stats in suite.oov.items():
            metrics[f"test/oov_items/{group}"] = stats.items_with_oov
            metrics[f"test/oov_tokens/{group}"] = stats.oov_tokens
        for category, tallies in results.by_category.items():
            metrics[f"test/acc_case/{category}"] = tallies["good_vs_bad"].accuracy
        for (category, condition), tallies in results.by_condition.items():
            metrics[f"test/acc_cond/{category}/{condition}"] = tallies["good_vs_bad"].accuracy
        for key, value in metrics.items():
            self.log(key, float(value), batch_size=n, sync_dist=False)  # already gathered by CatMetric

    @staticmethod
    def table3_rows(suite: EncodedSuite, results: SuiteResults) -> list[list]:
        rows = []
        for dependency, phenomenon, name, group, comparison in TABLE3_ROWS:
            tally = results.by_group.get(group, {}).get(comparison)
            if tally is None or not tally.total:
                continue
            # every scored group has its OOV count (encode_suite counts each pair before skipping any)
            with_oov = suite.oov[group].items_with_oov
            rows.append([dependency, phenomenon, name, comparison, tally.total, with_oov, round(tally.accuracy, 4)])
        return rows

    def _log_tables(self, suite: EncodedSuite, results: SuiteResults) -> None:
        def accs(tallies) -> list:
            return [round(tallies[c].accuracy, 4) if tallies[c].total else "" for c in COMPARISONS]

        table3_columns = ["dependency", "phenomenon", "test", "comparison", "items", "items_with_oov", "accuracy"]
        table3 = self.table3_rows(suite, results)
        # pairs whose two sentences read the same once OOV words are <unk>: a tie, counted wrong
        identical = defaultdict(int)
        for pair, same in zip(suite.pairs, (suite.good == suite.bad).tolist()):
            identical[pair.group] += same
        group_rows = []
        for group, tallies in results.by_group.items():
            stats = suite.oov[group]
            words = " ".join(w for w, _ in stats.words.most_common(12))
            group_rows.append(
                [group, tallies["good_vs_bad"].total, *accs(tallies), stats.items, stats.items_with_oov,
                 identical[group], stats.oov_tokens, words]
            )  # fmt: skip
        case_rows = [
            [category, suite.oov_by_category[category].items_with_oov, tallies["good_vs_bad"].total, *accs(tallies)]
            for category, tallies in results.by_category.items()
        ]
        condition_rows = [[c, cond, t["good_vs_bad"].total, *accs(t)] for (c, cond), t in results.by_condition.items()]
        acc_columns = ["acc_good_vs_bad", "acc_good_vs_intrusive", "acc_intrusive_vs_bad"]
        log_table(self.trainer, "syneval/table3", table3_columns, table3)
        log_table(
            self.trainer,
            "syneval/groups",
            ["group", "items_scored", *acc_columns, "items", "items_with_oov", "identical_after_unk", "oov_tokens",
             "oov_words"],  # fmt: skip
            group_rows,
        )
        log_table(self.trainer, "syneval/cases", ["category", "items_with_oov", "items_scored", *acc_columns], case_rows)
        condition_columns = ["category", "condition", "items_scored", *acc_columns]
        log_table(self.trainer, "syneval/conditions", condition_columns, condition_rows)
        if self.trainer.is_global_zero:
            log.info("style %s; Table 3 rows:\n%s", suite.style, markdown_table(table3_columns, table3))
