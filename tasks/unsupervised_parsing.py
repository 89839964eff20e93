"""Unsupervised constituency parsing with a trained ON-LSTM language model (the paper's Section 6.2).

An evaluation task: ``python eval.py task=parsing ckpt_path=/path/lm.ckpt``. Each
treebank sentence is fed to the LM as ``<eos> words <eos>``; the master forget gate's distance
``1 - mean(f~)`` at every word, for every layer, is split top-down into a binary tree
(:func:`onlstm.parsing.trees.split_tree`) and scored against the gold tree with both F1 conventions of
:mod:`onlstm.parsing.metrics`, on all sentences and on the short ones (WSJ10 protocol), beside
left-/right-branching, balanced and random baselines.

Which layer's trees are "the" parse is a choice made on the development set only (the layer
with the highest development sentence F1 over all lengths), or fixed with ``task.module.layer``;
the test set's numbers never take part in it.

Logged metrics (k = layer, 1-based as in the paper's "layer 2"; ``{set}`` is ``dev/`` or
``test/`` for all lengths, ``dev/wsj10/`` or ``test/wsj10/`` for sentences of at most
``max_length`` = 10 words): ``{set}f1_sentence_layer{k}``, ``{set}f1_corpus_layer{k}``,
``{set}depth_layer{k}``, ``{set}recall_{LABEL}_layer{k}``, ``{set}f1_sentence_{baseline}``,
``{set}f1_corpus_{baseline}``, ``{set}depth_{baseline}``, ``{set}sentences``; the chosen layer
``test/chosen_layer`` and its scores ``{set}f1_sentence``, ``{set}f1_corpus``, ``{set}depth``.
Values are fractions in [0, 1]; the table (``tables/test_parsing.{md,csv}``) gives percentages.
The chosen layer's test trees are written to ``parsing/trees_layer{k}.tsv`` in the run folder,
one sentence per line, predicted beside gold, and drawn in ``parsing/trees.html`` (induced beside
gold, each sentence's F1 and length, sortable and filterable: :mod:`onlstm.parsing.tree_page`);
gate-distance figures of a few sampled test sentences go to every logger.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from onlstm.checkpoints import load_language_model
from onlstm.figures import gate_figure
from onlstm.parsing.inference import word_gate_distances
from onlstm.parsing.metrics import evaluate_trees, sentence_f1
from onlstm.parsing.tree_page import PageHeader, TreeRecord, render_tree_page
from onlstm.parsing.trees import BASELINES, baseline_tree, split_tree, to_bracketed
from tasks.jobs import run_folder
from tasks.jobs.contract import TaskModule
from tasks.jobs.tracking import log_figure, log_table

DEFAULT_LABELS = ["NP", "VP", "PP", "SBAR", "ADJP", "ADVP", "INTJ"]


class UnsupervisedParsingTask(TaskModule):
    """Evaluation only (``trainer.test``): the LM is the checkpoint's, nothing here is trained."""

    def __init__(
        self,
        checkpoint: str,  # the LM (ckpt_path): its backbone config, weights and vocabulary
        run: dict | None = None,  # how the LM runs (the `run` config: implementation, cuda_graphs)
        max_length: int = 10,  # from the datamodule: the short-sentence set (WSJ10 protocol)
        has_dev_set: bool = True,  # from the datamodule: is there a development set to choose the layer on
        layer: int | None = None,  # the layer whose trees are reported; None: chosen on the development set
        n_figures: int = 4,  # gate-distance figures of this many sampled sentences
        seed: int = 141,  # random baseline and figure sampling
        labels: Sequence[str] = tuple(DEFAULT_LABELS),  # categories whose recall is reported
    ):
        super().__init__()
        loaded = load_language_model(checkpoint, run)
        if loaded.config.arch != "onlstm":
            raise ValueError(
                f"{checkpoint}: a {loaded.config.arch!r} language model has no master forget gate to parse with; "
                "give the checkpoint of an ON-LSTM (model=onlstm)"
            )
        self.checkpoint = str(checkpoint)
        self.lm = loaded.model
        self.vocab = loaded.vocab
        self.n_layers = loaded.config.n_layers
        if layer is not None and not 1 <= layer <= self.n_layers:
            raise ValueError(f"task.module.layer={layer}, but {checkpoint} has layers 1..{self.n_layers}")
        if layer is None and not has_dev_set:
            raise ValueError(
                "no development set to choose the layer on: set task.datamodule.dev_sections (WSJ sections not "
                "among task.datamodule.sections) or fix the layer with task.module.layer=K"
            )
        self.layer = layer
        self.max_length, self.n_figures, self.seed = max_length, n_figures, seed
        self.labels = list(labels)
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self._records: list[dict] = []

    def progress_items(self, batch: dict) -> tuple[int, str]:
        """What the progress log counts per batch: sentences."""
        return len(batch["index"]), "sentences"

    # ----------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        self._records = []

    def test_step(self, batch: dict, batch_idx: int) -> None:
        gates = word_gate_distances(self.lm, batch["ids"])
        for k, index in enumerate(batch["index"]):
            forget, inp = gates[k]
            self._records.append(
                {
                    "split": batch["split"],
                    "index": index,
                    "source": batch["source"][k],
                    "words": batch["words"][k],
                    "gold": batch["gold"][k],
                    "labeled": batch["labeled"][k],
                    "distances": forget.tolist(),
                    "distances_in": inp.tolist(),
                }
            )

    def _all_records(self) -> list[dict]:
        """Every sentence once, in index order. Corpus F1 must count each sentence exactly once:
        under DDP the distributed sampler pads with repeated batches, so the per-sentence records
        of all ranks are gathered and deduplicated by index (which torchmetrics states cannot do)."""
        records = self._records
        if self.trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            parts: list[list[dict] | None] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(parts, records)
            records = [r for part in parts for r in (part or [])]
        unique = {r["index"]: r for r in records}
        return [unique[i] for i in sorted(unique)]

    def parsers(self) -> list[str]:
        return [f"layer{k}" for k in range(1, self.n_layers + 1)] + list(BASELINES)

    def _trees(self, parser: str, records: list[dict]) -> list:
        if parser.startswith("layer"):
            layer = int(parser[len("layer") :]) - 1
            return [split_tree(r["distances"][layer], r["words"]) for r in records]
        # one generator per sentence, seeded by its index: independent of batching and ranks
        return [baseline_tree(parser, r["words"], random.Random(f"{self.seed}:{r['index']}")) for r in records]

    def evaluate(self, records: list[dict]) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, list]]:
        """Metrics per set (the metric-name prefixes ``dev/``, ``dev/wsj10/``, ``test/``,
        ``test/wsj10/``; sets without sentences are left out) and parser, and every parser's trees."""
        trees = {parser: self._trees(parser, records) for parser in self.parsers()}
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for split in ("dev", "test"):
            members = [i for i, r in enumerate(records) if r["split"] == split]
            short = [i for i in members if len(records[i]["words"]) <= self.max_length]
            for prefix, rows in ((f"{split}/", members), (f"{split}/wsj{self.max_length}/", short)):
                if not rows:
                    continue
                golds = [records[i]["gold"] for i in rows]
                labeled = [records[i]["labeled"] for i in rows]
                results[prefix] = {
                    p: evaluate_trees([trees[p][i] for i in rows], golds, labeled) for p in self.parsers()
                }
        return results, trees

    def choose_layer(self, results: dict[str, dict[str, dict[str, Any]]]) -> int:
        """``task.module.layer``, or the layer of highest development sentence F1 (all lengths)."""
        if self.layer is not None:
            return self.layer
        if "dev/" not in results:
            raise RuntimeError("the development set is empty: no sentence of task.datamodule.dev_sections was read")
        return max(range(1, self.n_layers + 1), key=lambda k: results["dev/"][f"layer{k}"]["f1_sentence"])

    def on_test_epoch_end(self) -> None:
        records = self._all_records()
        if not records:
            return
        results, trees = self.evaluate(records)
        self.results = results
        chosen = self.choose_layer(results)
        layers = [f"layer{k}" for k in range(1, self.n_layers + 1)]

        # every rank holds the same gathered numbers: no further reduction
        def log(name: str, value: float) -> None:
            self.log(name, float(value), sync_dist=False, batch_size=len(records))

        for prefix, by_parser in results.items():
            log(f"{prefix}sentences", by_parser[layers[0]]["sentences"])
            for key in ("f1_sentence", "f1_corpus", "depth"):
                log(f"{prefix}{key}", by_parser[f"layer{chosen}"][key])
            for parser, scores in by_parser.items():
                for key in ("f1_sentence", "f1_corpus", "depth"):
                    log(f"{prefix}{key}_{parser}", scores[key])
                if parser in layers:
                    for label in self.labels:
                        if label in scores["label_recall"]:
                            log(f"{prefix}recall_{label}_{parser}", scores["label_recall"][label])
        log("test/chosen_layer", chosen)

        if self.trainer.is_global_zero:
            self._write_table(results)
            test = [i for i, r in enumerate(records) if r["split"] == "test"]
            test_records, test_trees = [records[i] for i in test], [trees[f"layer{chosen}"][i] for i in test]
            self._write_trees(f"layer{chosen}", test_records, test_trees)
            if "test/" in results:  # a page of the test sentences, when there are any
                self._write_tree_page(chosen, test_records, test_trees, results)
            self._log_figures([records[i] for i in test])

    # ----------------------------------------------------------------- reports
    def _write_table(self, results: dict[str, dict[str, dict[str, Any]]]) -> None:
        columns = ["set", "parser", "sentences", "F1 sentence %", "F1 corpus %", "depth"]
        columns += [f"{label} recall %" for label in self.labels]
        rows = []
        for prefix, by_parser in results.items():
            set_name = prefix.rstrip("/")
            for parser, s in by_parser.items():
                recalls = [100 * s["label_recall"][lb] if lb in s["label_recall"] else "-" for lb in self.labels]
                f1s = [100 * s["f1_sentence"], 100 * s["f1_corpus"]]
                rows.append([set_name, parser, s["sentences"], *f1s, s["depth"], *recalls])
        log_table(self.trainer, "test/parsing", columns, rows)

    def _write_trees(self, parser: str, records: list[dict], trees: list) -> Path:
        path = run_folder.trees_path(self.trainer.default_root_dir, parser)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            handle.write("index\tsource\tpredicted\tgold\n")
            for record, tree in zip(records, trees):
                fields = [str(record["index"]), record["source"], to_bracketed(tree), to_bracketed(record["gold"])]
                handle.write("\t".join(fields) + "\n")
        return path

    def _write_tree_page(self, layer: int, records: list[dict], trees: list,
                         results: dict[str, dict[str, dict[str, Any]]]) -> Path:
        """The test trees of the chosen layer drawn beside the gold ones, in one HTML page."""
        chosen = results["test/"][f"layer{layer}"]
        scores = {"sentence F1": chosen["f1_sentence"], "corpus F1": chosen["f1_corpus"]}
        short = results.get(f"test/wsj{self.max_length}/", {}).get(f"layer{layer}")
        if short is not None:
            scores[f"sentence F1 (≤ {self.max_length} words)"] = short["f1_sentence"]
        why = "fixed by task.module.layer" if self.layer is not None else "chosen on the development trees"
        header = PageHeader(
            "Unsupervised parsing: test trees", layer=layer, scores=scores,
            notes=[f"language model: {self.checkpoint}", f"layer {layer}: {why}",
                   "sentence F1 as Kim et al. 2019 (the whole sentence left out); corpus F1 as EVALB"],
        )
        rows = [TreeRecord(r["source"], r["words"], tree, r["gold"], sentence_f1(tree, r["gold"]))
                for r, tree in zip(records, trees)]
        path = run_folder.tree_page_path(self.trainer.default_root_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_tree_page(rows, header), encoding="utf-8")
        return path

    def _log_figures(self, records: list[dict]) -> None:
        candidates = [r for r in records if 3 <= len(r["words"]) <= 30]
        rng = random.Random(self.seed)
        for record in sorted(rng.sample(candidates, min(self.n_figures, len(candidates))), key=lambda r: r["index"]):
            title = f"{record['source']}: " + " ".join(record["words"])
            figure = gate_figure(record["words"], record["distances"], record["distances_in"], title)
            log_figure(self.trainer, f"test/gates/sentence{record['index']:05d}", figure)
