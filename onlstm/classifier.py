"""Sequence classifiers on the shared front end (:class:`onlstm.lm.WordEncoder`): the recurrent
stack's output at each sequence's last real token, and the classifier head that reads it. The
logical-inference pair classifier and the ListOps classifier are built from these two pieces.

Sequences come time-major and right-padded, with their true lengths. The recurrence is causal, so
the output at position ``length - 1`` ignores whatever follows it (padding, or another
expression's tokens): a batch gives each sequence the numbers it gets alone. (Reading the last
row of a padded batch instead, as code that pads on one side and indexes the other does, gives a
shorter sequence the state after its padding.)
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from onlstm.lm import WordEncoder
from onlstm.stack import StackOutput


def classifier_head(in_features: int, hidden: int, n_classes: int, dropout: float) -> nn.Sequential:
    """Logits from features: with ``hidden > 0`` an MLP (dropout, ``in -> hidden``, ELU, dropout,
    ``hidden -> n_classes``: the logic task's head), with ``hidden == 0`` dropout and one linear
    layer (the official ON-LSTM ListOps head). The layers' indices (``1`` and ``4`` for the MLP)
    are the names its weights have in checkpoints."""
    if hidden < 0:
        raise ValueError(f"the classifier's hidden size must be >= 0 (0: one linear layer), got {hidden}")
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, n_classes))
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(in_features, hidden),
        nn.ELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_classes),
    )


class EncodedSequences(NamedTuple):
    last: Tensor  # (batch, width): the last layer's output at each sequence's last real token, after output dropout
    stack: StackOutput  # everything the stack returned (master-gate distances included), over the padded batch


class SequenceEncoder(WordEncoder):
    """Word ids -> embedding -> stack -> the output at each sequence's last real token."""

    @property
    def width(self) -> int:
        """The size of the features :meth:`encode` returns (the last layer's size)."""
        return self.cfg.layer_sizes()[-1]

    def features(self, tokens: Tensor, lengths: Tensor) -> EncodedSequences:
        """(time, batch) right-padded ids and their true lengths -> the last real outputs, with
        the stack's whole output (its gate distances, for trees)."""
        if lengths.numel() != tokens.size(1):
            raise ValueError(f"got {lengths.numel()} lengths for a batch of {tokens.size(1)} sequences")
        if int(lengths.min()) < 1 or int(lengths.max()) > tokens.size(0):
            raise ValueError(f"lengths must lie in 1..{tokens.size(0)} (the padded time), got "
                             f"{int(lengths.min())}..{int(lengths.max())}")
        out = self.stack(self.embed(tokens))
        output = self.lockdrop(out.output, self.cfg.dropout)
        columns = torch.arange(tokens.size(1), device=tokens.device)
        return EncodedSequences(output[lengths.to(tokens.device) - 1, columns], out)

    def encode(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """(time, batch) right-padded ids and their lengths -> (batch, width) last real outputs."""
        return self.features(tokens, lengths).last
