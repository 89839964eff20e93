"""Sequences of different lengths as one right-padded (time, batch) tensor: how the logic pairs
and the parsed sentences are batched. The recurrence is causal, so a sequence's outputs up to its
length do not depend on the padding after it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """(time, batch) long tensor right-padded with ``pad_id``, and the lengths (batch,)."""
    if not sequences:
        raise ValueError("pad_batch needs at least one sequence")
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    tokens = torch.full((int(lengths.max()), len(sequences)), pad_id, dtype=torch.long)
    for column, seq in enumerate(sequences):
        tokens[: len(seq), column] = torch.as_tensor(list(seq), dtype=torch.long)
    return tokens, lengths
