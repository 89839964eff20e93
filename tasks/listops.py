"""ListOps (Nangia & Bowman 2018): the value 0-9 of a nested prefix expression, as a sequence
classifier on the shared backbone (ON-LSTM or LSTM, from the ``model`` config).

How an expression is read: its tokens without the round brackets (``[MAX 2 9 [MIN 4 7 ] 0 ]``,
:mod:`datamodules.listops`), embedded and run through the stack, and the last layer's output at
the expression's **true last token** (position ``length - 1`` of a right-padded batch,
:class:`onlstm.classifier.SequenceEncoder`) feeds the classifier head (``mlp_hidden`` 0: dropout
and one linear layer, as the official ON-LSTM ListOps model; > 0: the logic task's MLP). The
official ``listops`` branch pads on the left and reads position ``length - 1``, which for a
shorter sequence is a state inside its padding; here a prediction does not depend on what else
is in the batch (tested).

Metrics: ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` and ``val/acc_best`` (what the
checkpoint and the sweeps optimise); at test, over the test sources only (the released file,
the generated sets beyond the training lengths): ``test/loss``, ``test/acc``, ``test/acc_<source>``
(``test/acc_released``, ``test/acc_len200-300`` ...), ``test/acc_beyond_training`` (every test
expression longer than the longest training expression, pooled), and the tables
``test/acc_by_source``, ``test/acc_by_length`` (per source and length bucket),
``test/acc_by_depth`` (per source and depth), with the figures ``test/acc_by_length`` and
``test/acc_by_depth`` (a line per test source).

Trees (ON-LSTM only; an LSTM has no master gates and scores none): each expression's
master-forget-gate distances of one layer, split top-down into a binary tree exactly as for the
treebank (:func:`onlstm.parsing.trees.split_tree`), scored against its gold tree (one
constituent per operator application, ``[OP`` to ``]``) with the parsing task's sentence-level
F1 (:func:`datamodules.listops_expressions.score_trees`), per layer, on the validation split
(which the test loader carries as source ``valid``) and on each test source, next to
right-branching, left-branching, balanced and random trees (random: seeded per expression),
the same model at its initial weights, and ``best_binary``: the binarised gold tree, the highest
F1 any binary tree reaches (gold trees are n-ary: an operator with 3-5 arguments has more
children than a binary node). The layer reported as the model's trees is the one of highest
sentence F1 on the validation split (the initial weights' likewise, on theirs). Metrics:
``test/tree_f1_<parser>_<source>`` for every parser (``layer{k}``, ``initial_layer{k}``,
``right_branching``, ``left_branching``, ``balanced``, ``random``, ``best_binary``) and source
(``valid`` included), ``test/tree_f1_<source>`` and ``test/tree_f1_initial_<source>`` at the
chosen layers, ``test/tree_layer`` and ``test/tree_layer_initial`` (1-based); the table
``test/tree_f1`` (percentages, corpus F1 beside sentence F1).

The sentence-F1 convention (the treebank's) leaves out the whole-sequence span on both sides.
An expression whose gold tree has no other constituent (one operator over digits, ``[MAX 2 9 ]``:
2,093 of the released file; or a lone digit) has recall 1 and precision 1 only if the induced
tree has no span either: a binary tree over three or more tokens always has one, so every
binary parser, ``best_binary`` included, scores 0 on it (a lone digit scores 1 for every parser).
The table counts these expressions per source (``no inner gold span``) so that the numbers can
be placed.

Initial weights: captured when the module is built (before any update) and carried in every
checkpoint it writes (``checkpoint["listops_initial_weights"]``). Testing the best checkpoint,
from ``train.py`` or from ``eval.py``, thus finds the untrained model of the same run in the
checkpoint it loads, with no file to read beside it (a task reads no files) and nothing to
re-derive from a seed (whose draws depend on the code that ran before the model was built).
"""

from __future__ import annotations

import logging
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

from datamodules.listops import VALID, bucket_low
from datamodules.listops_expressions import gold_tree, score_trees
from onlstm import BackboneConfig
from onlstm.classifier import SequenceEncoder, classifier_head
from onlstm.figures import ARCH_NAMES, Curve, accuracy_figure
from onlstm.parsing.trees import BASELINES, baseline_tree, binarize, split_tree
from onlstm.stack import DEFAULT_IMPLEMENTATION
from tasks.classification import ClassificationTask, ungraphed
from tasks.jobs.tracking import log_figure, log_table

log = logging.getLogger("onlstm.train")

INITIAL_WEIGHTS_KEY = "listops_initial_weights"  # the checkpoint entry holding the weights before training
BEST_BINARY = "best_binary"


class ListOpsOutput(NamedTuple):
    logits: Tensor  # (batch, classes)
    distances: Tensor | None  # (layers, time, batch): master-forget-gate distances; None for an LSTM


class ListOpsClassifier(SequenceEncoder):
    """Expression -> the stack's output at its last token -> classifier head; pure PyTorch."""

    def __init__(self, vocab_size: int, cfg: BackboneConfig, n_classes: int, mlp_hidden: int, mlp_dropout: float,
                 pad_id: int = 0, implementation: str = DEFAULT_IMPLEMENTATION):
        super().__init__(vocab_size, cfg, implementation, padding_idx=pad_id)
        self.mlp = classifier_head(self.width, mlp_hidden, n_classes, mlp_dropout)

    def forward(self, tokens: Tensor, lengths: Tensor) -> ListOpsOutput:
        """(time, batch) right-padded ids and their true lengths -> logits and gate distances."""
        encoded = self.features(tokens, lengths)
        return ListOpsOutput(self.mlp(encoded.last), encoded.stack.distances)


@dataclass
class ScoredExpression:
    """One expression seen at test time: what its prediction and its trees are scored from."""

    source: str
    position: int  # its place among its source's expressions, in loader order (seeds its random tree)
    length: int
    depth: int
    bucket: int  # index into length_buckets
    label: int
    pred: int
    loss: float
    spans: list[tuple[int, int]]  # gold constituents
    distances: Tensor | None = None  # (layers, length), the trained model's
    initial: Tensor | None = None  # (layers, length), the same model at its initial weights


# ----------------------------------------------------------------------------- accuracy tables
def accuracy_rows(records: Sequence[ScoredExpression], key: Callable[[ScoredExpression], Hashable]) -> dict[Hashable, dict]:
    """Per value of ``key``: examples, accuracy, majority (the rate of the most frequent label)."""
    groups: dict[Hashable, list[ScoredExpression]] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    rows = {}
    for value, members in groups.items():
        n = len(members)
        rows[value] = {
            "examples": n,
            "accuracy": sum(r.pred == r.label for r in members) / n,
            "majority": Counter(r.label for r in members).most_common(1)[0][1] / n,
        }
    return rows


# ----------------------------------------------------------------------------- trees
def tree_parsers(n_layers: int, with_initial: bool) -> list[str]:
    parsers = [f"layer{k}" for k in range(1, n_layers + 1)]
    if with_initial:
        parsers += [f"initial_layer{k}" for k in range(1, n_layers + 1)]
    return parsers + list(BASELINES) + [BEST_BINARY]


def induced_tree(parser: str, record: ScoredExpression, seed: int) -> Any:
    """One parser's binary tree over the expression's tokens (leaves: their positions)."""
    words = [str(i) for i in range(record.length)]
    if parser == BEST_BINARY:
        return binarize(gold_tree(record.spans, record.length))
    if parser.startswith("layer") or parser.startswith("initial_layer"):
        distances = record.distances if parser.startswith("layer") else record.initial
        layer = int(parser.rpartition("layer")[2]) - 1
        return split_tree(distances[layer].tolist(), words)
    # one generator per expression: its tree does not depend on batching or on the other expressions
    return baseline_tree(parser, words, random.Random(f"{seed}:{record.source}:{record.position}"))


@contextmanager
def deep_trees(max_length: int) -> Iterator[None]:
    """Room for trees as deep as the longest expression: a split or right-branching tree over n
    tokens nests n deep, and the tree functions of :mod:`onlstm.parsing` recurse once per level,
    past Python's default limit of 1,000 for the expressions of 900-1000 tokens."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 2 * max_length + 1_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def score_tree_sources(records: Sequence[ScoredExpression], sources: Sequence[str], parsers: Sequence[str],
                       seed: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per source (those with records), per parser: :func:`score_trees`' metrics, and
    ``no_inner_span``, the expressions whose gold tree has no constituent besides the whole."""
    results: dict[str, dict[str, dict[str, Any]]] = {}
    with deep_trees(max((r.length for r in records), default=1)):
        for source in sources:
            members = [r for r in records if r.source == source]
            if not members:
                continue
            spans = [r.spans for r in members]
            lengths = [r.length for r in members]
            no_inner = sum(all(span == (0, r.length) for span in r.spans) for r in members)
            results[source] = {}
            for parser in parsers:
                scores = score_trees([induced_tree(parser, r, seed) for r in members], spans, lengths)
                results[source][parser] = {**scores, "no_inner_span": no_inner}
    return results


def choose_layer(results: dict[str, dict[str, dict[str, Any]]], prefix: str, n_layers: int) -> int | None:
    """The layer (1-based) of the highest validation sentence F1 among the parsers
    ``{prefix}1 .. {prefix}n``; the only one when there is one; None when there are several and no
    validation expression was scored."""
    if n_layers == 1:
        return 1
    if VALID not in results:
        return None
    return max(range(1, n_layers + 1), key=lambda k: results[VALID][f"{prefix}{k}"]["f1_sentence"])


# ----------------------------------------------------------------------------- the task
class ListOpsTask(ClassificationTask):
    def __init__(
        self,
        model: dict,
        vocab_size: int,
        num_classes: int,
        sources: Sequence[str],
        test_sources: Sequence[str],
        length_buckets: Sequence[str],
        train_max_length: int,
        run: dict | None = None,  # how the encoder runs (the `run` config); not saved in checkpoints
        pad_id: int = 0,
        # what else the datamodule says (module_kwargs): not used by the model, kept in checkpoints
        tokens: Sequence[str] | None = None,  # the token of each id
        max_depth: int | None = None,  # the deepest nesting the data can have
        # the optimiser and head of the official ON-LSTM ListOps code (yikangshen/Ordered-Neurons, branch
        # listops, listops.py and listops_model.py): Adam with beta1 = 0, a linear head
        lr: float = 1e-3,
        betas: Sequence[float] = (0.0, 0.999),
        eps: float = 1e-9,
        weight_decay: float = 1.2e-6,
        mlp_hidden: int = 0,  # 0: dropout + one linear layer; > 0: an MLP with this hidden size
        mlp_dropout: float = 0.0,  # dropout inside the head (model.dropout already drops the encoder's output)
        plateau_factor: float = 0.5,  # lr *= factor when val/acc has not improved for `plateau_patience` epochs
        plateau_patience: int = 2,
        seed: int = 141,  # the random-tree baseline
    ):  # pragma: no mutate block (save_hyperparameters reads a frame named __init__; mutmut renames it)
        super().__init__(num_classes)
        self.save_hyperparameters(ignore=["run"])  # what the model is, never how it ran
        run = ungraphed(run, "ListOps")
        if len(betas) != 2:
            raise ValueError(f"task.module.betas must be two numbers (Adam's beta1, beta2), got {list(betas)}")
        self._run = run
        self.sources = list(sources)
        self.test_sources = list(test_sources)
        self.length_buckets = list(length_buckets)
        self.backbone_cfg = BackboneConfig(**model)
        self.model = self._classifier()
        # the untrained model for the trees' control; replaced by the checkpoint's when one is loaded
        self._initial_weights = self._copy_weights() if self.has_gates else None
        self._untrained: dict[str, ListOpsClassifier] = {}  # a plain dict: not a submodule, not trained
        self._records: list[ScoredExpression] = []
        self._positions: Counter = Counter()  # expressions seen per source in this test

    def _classifier(self) -> ListOpsClassifier:
        h = self.hparams
        return ListOpsClassifier(h.vocab_size, self.backbone_cfg, h.num_classes, h.mlp_hidden, h.mlp_dropout,
                                 h.pad_id, **self._run)

    def _copy_weights(self) -> dict[str, Tensor]:
        return {name: value.detach().cpu().clone() for name, value in self.model.state_dict().items()}

    @property
    def has_gates(self) -> bool:
        """An ON-LSTM has master gates to read trees from; an LSTM does not."""
        return self.backbone_cfg.arch == "onlstm"

    def forward(self, batch: dict[str, Any]) -> ListOpsOutput:
        return self.model(batch["tokens"], batch["length"])

    def logits(self, batch: dict[str, Any]) -> Tensor:
        return self(batch).logits

    def progress_items(self, batch: dict[str, Any]) -> tuple[int, str]:
        """What the progress log counts per batch: expressions."""
        return int(batch["label"].numel()), "expressions"

    # ----------------------------------------------------------------- initial weights in checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._initial_weights is not None:
            checkpoint[INITIAL_WEIGHTS_KEY] = self._initial_weights

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        stored = checkpoint.get(INITIAL_WEIGHTS_KEY)
        self._initial_weights = None if stored is None else {k: v.detach().cpu().clone() for k, v in stored.items()}

    # ----------------------------------------------------------------- training
    def configure_optimizers(self):
        h = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=h.lr, betas=tuple(h.betas), eps=h.eps,
                                     weight_decay=h.weight_decay)
        # threshold 0: any improvement of val/acc counts, as in the official code
        return self.with_plateau_schedule(optimizer, h.plateau_factor, h.plateau_patience, threshold=0.0)

    # ----------------------------------------------------------------- test
    def on_test_epoch_start(self) -> None:
        self._records = []
        self._positions = Counter()
        self._untrained.clear()
        if self.has_gates and self._initial_weights is not None:
            untrained = self._classifier()
            untrained.load_state_dict(self._initial_weights)
            self._untrained["model"] = untrained.to(self.device).eval()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self(batch)
        losses = F.cross_entropy(out.logits, batch["label"], reduction="none").tolist()
        preds = out.logits.argmax(-1).tolist()
        distances = out.distances.float().cpu() if self.has_gates else None
        initial = None
        if "model" in self._untrained:
            initial = self._untrained["model"](batch["tokens"], batch["length"]).distances.float().cpu()
        for b, n in enumerate(batch["length"].tolist()):
            source = self.sources[int(batch["source"][b])]
            self._records.append(ScoredExpression(
                source=source, position=self._positions[source], length=n, depth=int(batch["depth"][b]),
                bucket=int(batch["length_bucket"][b]), label=int(batch["label"][b]), pred=preds[b], loss=losses[b],
                spans=[tuple(span) for span in batch["gold_spans"][b]],
                distances=None if distances is None else distances[:, :n, b].clone(),
                initial=None if initial is None else initial[:, :n, b].clone(),
            ))
            self._positions[source] += 1

    def on_test_epoch_end(self) -> None:
        records, self._records = self._records, []
        self._untrained.clear()
        tested = [r for r in records if r.source in self.test_sources]
        if tested:
            self._log_accuracy(tested)
        if not self.has_gates:
            log.info("task=listops: model.arch=%s has no master forget gate: no trees scored", self.backbone_cfg.arch)
        elif records:
            self._log_trees(records)

    def _log_metric(self, name: str, value: float, size: int) -> None:
        self.log(name, float(value), batch_size=size)

    def _log_accuracy(self, tested: list[ScoredExpression]) -> None:
        n = len(tested)
        self._log_metric("test/loss", sum(r.loss for r in tested) / n, n)
        self._log_metric("test/acc", sum(r.pred == r.label for r in tested) / n, n)
        beyond = [r for r in tested if r.length > self.hparams.train_max_length]
        if beyond:
            self._log_metric("test/acc_beyond_training", sum(r.pred == r.label for r in beyond) / len(beyond), len(beyond))
        by_source = accuracy_rows(tested, lambda r: r.source)
        sources = [s for s in self.test_sources if s in by_source]
        for source in sources:
            self._log_metric(f"test/acc_{source}", by_source[source]["accuracy"], by_source[source]["examples"])
        longer = Counter(r.source for r in beyond)
        columns = ["source", "examples", "accuracy", "majority", "longer than training"]
        rows = [[s, by_source[s]["examples"], by_source[s]["accuracy"], by_source[s]["majority"], longer[s]]
                for s in sources]
        log_table(self.trainer, "test/acc_by_source", columns, rows)

        by_length = accuracy_rows(tested, lambda r: (r.source, r.bucket))
        by_depth = accuracy_rows(tested, lambda r: (r.source, r.depth))
        for name, groups, label in (("length", by_length, lambda k: self.length_buckets[k]),
                                    ("depth", by_depth, lambda k: k)):
            keys = sorted(groups, key=lambda key: (self.test_sources.index(key[0]), key[1]))
            rows = [[source, label(k), groups[source, k]["examples"], groups[source, k]["accuracy"],
                     groups[source, k]["majority"]] for source, k in keys]
            log_table(self.trainer, f"test/acc_by_{name}", ["source", name, "examples", "accuracy", "majority"], rows)
        self._log_accuracy_figures(sources, by_length, by_depth)

    def _log_accuracy_figures(self, sources: list[str], by_length: dict, by_depth: dict) -> None:
        arch = ARCH_NAMES.get(self.backbone_cfg.arch, self.backbone_cfg.arch)
        buckets = sorted({k for _, k in by_length})
        curves = [Curve(source, [(k, by_length[source, k]["accuracy"]) for k in buckets if (source, k) in by_length])
                  for source in sources]
        beyond = [k for k in buckets if bucket_low(self.length_buckets[k]) > self.hparams.train_max_length]
        shade = (min(beyond) - 0.5, max(buckets) + 0.5) if beyond else None
        figure = accuracy_figure(curves, f"{arch}: ListOps accuracy by length", "expression length (tokens)",
                                 beyond_training=shade, ticks=[(k, self.length_buckets[k]) for k in buckets])
        log_figure(self.trainer, "test/acc_by_length", figure)
        curves = [Curve(source, sorted((d, row["accuracy"]) for (s, d), row in by_depth.items() if s == source))
                  for source in sources]
        depths = sorted({d for _, d in by_depth})
        figure = accuracy_figure(curves, f"{arch}: ListOps accuracy by depth", "depth (operators nested)",
                                 ticks=[(d, str(d)) for d in depths])
        log_figure(self.trainer, "test/acc_by_depth", figure)

    def _log_trees(self, records: list[ScoredExpression]) -> None:
        with_initial = all(r.initial is not None for r in records)
        if not with_initial:
            log.warning("task=listops: the checkpoint carries no initial weights (%s): the untrained control is "
                        "left out of the trees", INITIAL_WEIGHTS_KEY)
        n_layers = self.backbone_cfg.n_layers
        sources = [s for s in [VALID, *self.test_sources] if s in {r.source for r in records}]
        results = score_tree_sources(records, sources, tree_parsers(n_layers, with_initial), self.hparams.seed)
        chosen = {"": choose_layer(results, "layer", n_layers)}
        if with_initial:
            chosen["initial"] = choose_layer(results, "initial_layer", n_layers)
        if chosen[""] is None:
            log.warning("task=listops: no validation expression reached the test loader (task.datamodule."
                        "valid_in_test, or a limited test): no layer chosen; the table has every layer")
        for source, by_parser in results.items():
            size = by_parser[BEST_BINARY]["sentences"]
            for parser, scores in by_parser.items():
                self._log_metric(f"test/tree_f1_{parser}_{source}", scores["f1_sentence"], size)
            for name, layer in chosen.items():
                if layer is not None:
                    parser = f"{name}_layer{layer}" if name else f"layer{layer}"
                    key = f"test/tree_f1_{name}_{source}" if name else f"test/tree_f1_{source}"
                    self._log_metric(key, by_parser[parser]["f1_sentence"], size)
        for name, layer in chosen.items():
            if layer is not None:
                self._log_metric(f"test/tree_layer_{name}" if name else "test/tree_layer", layer, 1)
        picked = {f"{name}_layer{layer}" if name else f"layer{layer}" for name, layer in chosen.items() if layer}
        columns = ["set", "parser", "expressions", "no inner gold span", "F1 sentence %", "F1 corpus %",
                   "chosen on valid"]
        rows = [[source, parser, s["sentences"], s["no_inner_span"], 100 * s["f1_sentence"], 100 * s["f1_corpus"],
                 "*" if parser in picked else ""]
                for source, by_parser in results.items() for parser, s in by_parser.items()]
        log_table(self.trainer, "test/tree_f1", columns, rows)
