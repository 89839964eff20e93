"""Regularizers of AWD-LSTM / ON-LSTM: locked (variational) dropout, DropConnect, embedding dropout.

Each one is a small module or function with one job. DropConnect is a ``nn.Linear`` subclass
whose dropped weight is *returned* by :meth:`LinearDropConnect.sampled_weight` and passed to the
recurrence explicitly, instead of being patched into cuDNN internals (the AWD-LSTM trick that breaks
``nn.DataParallel`` and ``flatten_parameters``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence, shared by every time step.

    Input has shape (time, batch, features); the mask has shape (1, batch, features).
    Inverted scaling (kept units are divided by 1 - p), identity in eval mode or when p == 0.
    """

    def forward(self, x: Tensor, p: float) -> Tensor:
        if not self.training or p == 0.0:
            return x
        mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1.0 - p) / (1.0 - p)
        return x * mask


class LinearDropConnect(nn.Linear):
    """Linear layer with DropConnect on its weight (Wan et al. 2013), as in the official ON-LSTM.

    In training the weight is masked (entries zeroed with probability ``dropout``, no rescaling),
    and the mask is sampled once per sequence by the caller (:meth:`sampled_weight`). In eval the
    expected weight ``weight * (1 - dropout)`` is used. This is exactly the official ON-LSTM
    ``LinearDropConnect`` semantics, which the paper's 56.17 perplexity was obtained with.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dropout: float = 0.0):
        super().__init__(in_features, out_features, bias=bias)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropconnect must be in [0, 1), got {dropout}")
        self.dropout = dropout

    def sampled_weight(self) -> Tensor:
        """The weight to use for one whole sequence: masked in training, scaled in eval."""
        if self.dropout == 0.0:
            return self.weight
        if self.training:
            # keep each entry with probability 1 - dropout; uniform < p instead of bernoulli_: the
            # same distribution, faster (benchmarks/dropconnect.py)
            keep = torch.rand_like(self.weight) < 1.0 - self.dropout
            return self.weight * keep.to(self.weight.dtype)
        return self.weight * (1.0 - self.dropout)

    def forward(self, x: Tensor, weight: Tensor | None = None) -> Tensor:
        return F.linear(x, self.sampled_weight() if weight is None else weight, self.bias)


def embedded_dropout(embed: nn.Embedding, words: Tensor, dropout: float, training: bool) -> Tensor:
    """Embedding dropout (Gal & Ghahramani 2016): drop whole word types, rescale the others.

    A dropped word type is zero at every position in the batch, which is what AWD-LSTM does.
    """
    weight = embed.weight
    if training and dropout > 0.0:
        keep = weight.new_empty(weight.size(0), 1).bernoulli_(1.0 - dropout) / (1.0 - dropout)
        weight = weight * keep
    return F.embedding(words, weight, embed.padding_idx, embed.max_norm, embed.norm_type,
                       embed.scale_grad_by_freq, embed.sparse)
