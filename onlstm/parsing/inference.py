"""Batched inference over many sentences of different lengths: log-probabilities and gate distances.

Sentences are right-padded into one (time, batch) tensor. The recurrence is causal, so the
outputs at a sentence's real positions do not depend on the padding after it: a padded batch
gives the same numbers as one sentence at a time (tested in ``tests/test_inference.py``).
Sentences are sorted by length inside each batch group to keep padding small.
:func:`word_gate_distances` gives the distances of ``<eos> words <eos>`` at the words, as
``task=parsing`` and ``onlstm-parse`` read them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from onlstm.lm import RNNLanguageModel
from onlstm.padding import pad_batch


class SentenceGates(NamedTuple):
    distances: Tensor  # (layers, length): 1 - mean master forget gate at every position
    distances_in: Tensor  # (layers, length)


def _gates_forward(model: nn.Module, tokens: Tensor):
    """The model's output with ``distances``. For an :class:`RNNLanguageModel` only the embedding
    and the stack run (``features``): the vocabulary-sized decoder would be ~1/6 of the work (and
    a (time, batch, vocab) tensor) for nothing."""
    if isinstance(model, RNNLanguageModel):
        return model.features(tokens)
    return model(tokens)


def _padded_groups(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int) -> Iterator[tuple[list[int], Tensor, Tensor]]:
    """Yields (indices, tokens on the model's device, lengths) for right-padded batches of
    sequences sorted by length, with the model in eval mode (restored afterwards)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    try:
        for start in range(0, len(order), batch_size):
            group = order[start : start + batch_size]
            tokens, lengths = pad_batch([sequences[i] for i in group])
            yield group, tokens.to(device), lengths
    finally:
        model.train(was_training)


@torch.no_grad()
def sequence_log_probs(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 256) -> list[Tensor]:
    """For each id sequence s, log p(s[t] | s[:t]) for t = 1..len(s)-1, as a float tensor.

    ``model`` maps (time, batch) ids to an object with ``logits`` (time, batch, vocab), like
    :class:`onlstm.RNNLanguageModel`. It is put in eval mode for the call and restored after.
    """
    result: list[Tensor | None] = [None] * len(sequences)
    for group, tokens, lengths in _padded_groups(model, sequences, batch_size):
        log_probs = F.log_softmax(model(tokens[:-1]).logits.float(), dim=-1)
        picked = log_probs.gather(-1, tokens[1:].unsqueeze(-1)).squeeze(-1).cpu()  # (time-1, batch)
        for column, index in enumerate(group):
            result[index] = picked[: int(lengths[column]) - 1, column].clone()
    return result  # type: ignore[return-value]


@torch.no_grad()
def sequence_gate_distances(model: nn.Module, sequences: Sequence[Sequence[int]], batch_size: int = 256) -> list[SentenceGates]:
    """Master-gate distances of every layer at every position of each id sequence (eval mode)."""
    result: list[SentenceGates | None] = [None] * len(sequences)
    for group, tokens, lengths in _padded_groups(model, sequences, batch_size):
        out = _gates_forward(model, tokens)
        if out.distances is None:
            raise ValueError("this model has no master gates (an LSTM): gate distances need an ON-LSTM")
        dist_f, dist_i = out.distances.float().cpu(), out.distances_in.float().cpu()
        for column, index in enumerate(group):
            n = int(lengths[column])
            result[index] = SentenceGates(dist_f[:, :n, column].clone(), dist_i[:, :n, column].clone())
    return result  # type: ignore[return-value]


def word_gate_distances(
    model: nn.Module, id_sequences: Sequence[Sequence[int]]
) -> list[tuple[Tensor, Tensor]]:
    """(forget, input) master-gate distances, each (layers, words), of sentences given as
    ``<eos> words <eos>`` id sequences, in one padded batch (equal to one sentence at a time).

    Which positions: as in the official ``test_phrase_grammar.py`` (``depth = gates[1:-1]``), the
    distance of word i is the one the forward pass computes while reading word i, with the leading
    ``<eos>`` (the sentence start the LM saw in training) and the words before it as context. The
    distances at the two ``<eos>`` positions are dropped; the trailing ``<eos>`` cannot change the
    others (the recurrence is causal) and is fed only to match the official input.
    """
    gates = sequence_gate_distances(model, id_sequences, batch_size=max(1, len(id_sequences)))
    return [(g.distances[:, 1:-1], g.distances_in[:, 1:-1]) for g in gates]
