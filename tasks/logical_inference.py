"""Logical inference on Bowman et al.'s propositional logic (the paper's Section 6.4, Figure 2).

Both formulas go through the same recurrent encoder (ON-LSTM or LSTM, from the ``model`` config);
a formula's vector is the last layer's output at its last real token. The pair's features
[h1; h2; h1*h2; |h1-h2|] feed an MLP (4h -> ``mlp_hidden`` -> ELU -> 7 relations). Training uses
formulas with at most 6 operators; the test reports accuracy per number of operators
(``test/acc_ops{N}``), a table and a figure of it, to see how far each encoder generalises to
deeper nesting than it saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from onlstm import BackboneConfig
from onlstm.classifier import SequenceEncoder, classifier_head
from onlstm.figures import ARCH_COLORS, ARCH_NAMES, Curve, accuracy_by_operators
from onlstm.stack import DEFAULT_IMPLEMENTATION
from tasks.classification import ClassificationTask, ungraphed
from tasks.jobs.tracking import log_figure, log_table


class PairClassifier(SequenceEncoder):
    """Siamese sentence encoder + feature MLP; pure PyTorch."""

    def __init__(self, vocab_size: int, cfg: BackboneConfig, n_classes: int, mlp_hidden: int, mlp_dropout: float,
                 pad_id: int = 0, implementation: str = DEFAULT_IMPLEMENTATION):
        super().__init__(vocab_size, cfg, implementation, padding_idx=pad_id)
        self.mlp = classifier_head(4 * self.width, mlp_hidden, n_classes, mlp_dropout)

    def forward(self, premise: Tensor, premise_len: Tensor, hypothesis: Tensor, hypothesis_len: Tensor) -> Tensor:
        """Logits (batch, n_classes). Both formulas run as one batch: one pass, one DropConnect mask."""
        batch = premise.size(1)
        time = max(premise.size(0), hypothesis.size(0))
        both = premise.new_zeros(time, 2 * batch)
        both[: premise.size(0), :batch] = premise
        both[: hypothesis.size(0), batch:] = hypothesis
        h = self.encode(both, torch.cat([premise_len, hypothesis_len]))
        h1, h2 = h[:batch], h[batch:]
        return self.mlp(torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=-1))


class LogicalInferenceTask(ClassificationTask):
    def __init__(
        self,
        model: dict,
        vocab_size: int,
        relations: Sequence[str],
        train_ops: Sequence[int],
        test_ops: Sequence[int],
        run: dict | None = None,  # how the encoder runs (the `run` config); not saved in checkpoints
        pad_id: int = 0,
        lr: float = 1e-3,
        weight_decay: float = 1.2e-6,
        mlp_hidden: int = 400,
        mlp_dropout: float = 0.2,
        plateau_factor: float = 0.5,  # lr *= factor when val/acc has not improved for `plateau_patience` epochs
        plateau_patience: int = 2,
    ):  # pragma: no mutate block (save_hyperparameters reads a frame named __init__; mutmut renames it)
        super().__init__(len(relations))
        self.save_hyperparameters(ignore=["run"])  # what the model is, never how it ran
        run = ungraphed(run, "logic")
        self.relations = list(relations)
        self.test_ops = list(test_ops)
        self.backbone_cfg = BackboneConfig(**model)
        self.model = PairClassifier(vocab_size, self.backbone_cfg, len(self.relations), mlp_hidden, mlp_dropout, pad_id,
                                    **run)
        n = len(self.relations)
        self.test_acc = MulticlassAccuracy(n, average="micro")
        # one confusion matrix per test file: accuracy, example count and majority rate all follow
        self.confusion_by_ops = nn.ModuleDict({str(k): MulticlassConfusionMatrix(n) for k in self.test_ops})

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(batch["premise"], batch["premise_len"], batch["hypothesis"], batch["hypothesis_len"])

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        return self(batch)

    def progress_items(self, batch: dict[str, Tensor]) -> tuple[int, str]:
        """What the progress log counts per batch: premise-hypothesis pairs."""
        return int(batch["label"].numel()), "pairs"

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        _, preds = self._step("test", batch)
        for k in batch["ops"].unique().tolist():
            if str(k) not in self.confusion_by_ops:
                raise ValueError(f"test batch has examples of {k} operators, not in test_ops={self.test_ops}")
            mask = batch["ops"] == k
            self.confusion_by_ops[str(k)].update(preds[mask], batch["label"][mask])

    def accuracy_by_ops(self) -> list[dict[str, float]]:
        """Per test file: ops, examples, accuracy, majority (rate of its most frequent label)."""
        rows = []
        for k in self.test_ops:
            metric = self.confusion_by_ops[str(k)]
            if not metric.update_called:  # e.g. fast_dev_run saw no example of this file
                continue
            matrix = metric.compute().double()
            total = matrix.sum().item()
            rows.append(
                {
                    "ops": k,
                    "examples": int(total),
                    "accuracy": matrix.diag().sum().item() / total,
                    "majority": matrix.sum(1).max().item() / total,
                }
            )
        return rows

    def on_test_epoch_end(self) -> None:
        rows = self.accuracy_by_ops()
        for metric in self.confusion_by_ops.values():
            metric.reset()
        for row in rows:
            self.log(f"test/acc_ops{row['ops']}", row["accuracy"])
        if not rows:
            return
        columns = list(rows[0])
        log_table(self.trainer, "test/acc_by_ops", columns, [[row[c] for c in columns] for row in rows])
        arch = self.backbone_cfg.arch
        train_ops = self.hparams.train_ops
        accuracy = Curve(ARCH_NAMES.get(arch, arch), [(r["ops"], r["accuracy"]) for r in rows], color=ARCH_COLORS.get(arch))
        majority = Curve("majority class", [(r["ops"], r["majority"]) for r in rows])
        figure = accuracy_by_operators([accuracy], [r["ops"] for r in rows], max(train_ops) if train_ops else None, majority)
        log_figure(self.trainer, "test/acc_by_ops", figure)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        return self.with_plateau_schedule(optimizer, self.hparams.plateau_factor, self.hparams.plateau_patience)
