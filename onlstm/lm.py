"""RNNLanguageModel: embedding -> recurrent stack -> tied decoder, AWD-LSTM style (the front end,
:class:`WordEncoder`, is shared with the logic task's classifier)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from onlstm.regularizers import LockedDropout, embedded_dropout
from onlstm.cuda_graphs import GraphedStack
from onlstm.stack import DEFAULT_IMPLEMENTATION, Hidden, LSTMStack, ONLSTMStack, StackOutput


@dataclass
class BackboneConfig:
    """Hyperparameters of the recurrent backbone. Defaults: the paper's PTB language model.

    What the model *is* (it is stored in every checkpoint); how it runs (the recurrence's
    implementation, CUDA graphs) is an argument of :class:`RNNLanguageModel` / :func:`build_stack`.
    """

    arch: str = "onlstm"  # "onlstm" or "lstm"
    emb_size: int = 400  # word embedding size (= last layer size when weights are tied)
    hidden_size: int = 1150  # size of every layer but the last (when tied) / every layer
    n_layers: int = 3
    chunk_size: int = 10  # neurons sharing one master-gate value; must divide the layer sizes
    dropout: float = 0.45  # locked dropout on the last layer's output
    dropouth: float = 0.3  # locked dropout between layers
    dropouti: float = 0.5  # locked dropout on the embeddings
    dropoute: float = 0.1  # embedding dropout (whole word types)
    wdrop: float = 0.45  # DropConnect on hidden-to-hidden weights
    tie_weights: bool = True  # decoder weight = embedding weight (last layer size = emb_size)

    def validate(self) -> None:
        """Raise ValueError naming the field when the sizes cannot make a backbone."""
        if self.arch not in ("onlstm", "lstm"):
            raise ValueError(f"model.arch must be 'onlstm' or 'lstm', got {self.arch!r}")
        if self.n_layers < 1:
            raise ValueError(f"model.n_layers must be at least 1, got {self.n_layers}")
        if self.arch == "onlstm":
            for size in self.layer_sizes()[1:]:
                if self.chunk_size < 1 or size % self.chunk_size:
                    raise ValueError(
                        f"model.chunk_size={self.chunk_size} must divide every layer size {self.layer_sizes()[1:]} "
                        f"(it does not divide {size}): pick a divisor, e.g. model.chunk_size="
                        f"{next(c for c in range(min(self.chunk_size, size), 0, -1) if size % c == 0 and self.hidden_size % c == 0)}"
                    )

    def layer_sizes(self) -> list[int]:
        last = self.emb_size if self.tie_weights else self.hidden_size
        return [self.emb_size] + [self.hidden_size] * (self.n_layers - 1) + [last]


def build_stack(
    cfg: BackboneConfig, layer_sizes: list[int] | None = None, implementation: str = DEFAULT_IMPLEMENTATION
) -> nn.Module:
    """The stack ``cfg`` describes; ``implementation`` (ON-LSTM only) picks how its recurrence runs."""
    sizes = cfg.layer_sizes() if layer_sizes is None else layer_sizes
    if cfg.arch == "onlstm":
        return ONLSTMStack(sizes, cfg.chunk_size, dropout=cfg.dropouth, dropconnect=cfg.wdrop, implementation=implementation)
    if cfg.arch == "lstm":
        return LSTMStack(sizes, dropout=cfg.dropouth, dropconnect=cfg.wdrop)
    raise ValueError(f"model.arch must be 'onlstm' or 'lstm', got {cfg.arch!r}")


class LMOutput(NamedTuple):
    logits: Tensor  # (time, batch, vocab)
    hidden: Hidden
    raw_outputs: list[Tensor]
    outputs: list[Tensor]  # per layer after dropout; the last one after the output dropout (for AR)
    distances: Tensor | None
    distances_in: Tensor | None


class WordEncoder(nn.Module):
    """Word ids -> embedding -> recurrent stack, AWD-LSTM's regularised front end, shared by the
    language model and the logic task's pair classifier: embedding dropout (whole word types,
    ``cfg.dropoute``), locked dropout on the embeddings (``cfg.dropouti``), then the stack. What
    follows the stack's output (a decoder, a classifier) is the subclass's."""

    def __init__(self, vocab_size: int, cfg: BackboneConfig, implementation: str = DEFAULT_IMPLEMENTATION,
                 padding_idx: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size, padding_idx=padding_idx)
        self.stack = build_stack(cfg, implementation=implementation)
        self.lockdrop = LockedDropout()

    def embed(self, tokens: Tensor) -> Tensor:
        """(time, batch) ids -> (time, batch, emb_size) dropped embeddings: the stack's input."""
        emb = embedded_dropout(self.embedding, tokens, self.cfg.dropoute, self.training)
        return self.lockdrop(emb, self.cfg.dropouti)


class RNNLanguageModel(WordEncoder):
    def __init__(
        self,
        vocab_size: int,
        cfg: BackboneConfig = BackboneConfig(),
        implementation: str = DEFAULT_IMPLEMENTATION,  # the ON-LSTM recurrence: ONLSTMStack.IMPLEMENTATIONS
        cuda_graphs: bool = False,  # replay training steps of the stack as CUDA graphs (onlstm/cuda_graphs.py)
    ):
        """``cfg`` is what the model is; ``implementation`` and ``cuda_graphs`` are how it runs: they
        change neither the parameters nor the numbers (up to float rounding), so they are not part
        of ``cfg`` and a checkpoint does not store them."""
        if cfg.tie_weights and cfg.layer_sizes()[-1] != cfg.emb_size:
            raise ValueError("tie_weights needs the last layer size to equal emb_size")
        super().__init__(vocab_size, cfg, implementation)
        self.vocab_size = vocab_size
        self.cuda_graphs = cuda_graphs
        self.decoder = nn.Linear(cfg.layer_sizes()[-1], vocab_size)
        self._graphed_stack: GraphedStack | None = None  # made at the first graphed call
        if cfg.tie_weights:
            self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """AWD-LSTM's initialisation of the embedding and decoder."""
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if not self.cfg.tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def init_hidden(self, batch_size: int) -> Hidden:
        return self.stack.init_hidden(batch_size, like=self.embedding.weight)

    def features(self, tokens: Tensor, hidden: Hidden | None = None) -> StackOutput:
        """The recurrent stack's outputs and gate distances for (time, batch) word ids, without
        the decoder: what parsing and other probes of the hidden states need (the decoder is the
        vocabulary-sized part of the work)."""
        emb = self.embed(tokens)
        if self.cuda_graphs and self.training and emb.is_cuda and torch.is_grad_enabled():
            if self._graphed_stack is None:
                self._graphed_stack = GraphedStack(self.stack)
            return self._graphed_stack(emb, hidden)
        return self.stack(emb, hidden)

    def forward(self, tokens: Tensor, hidden: Hidden | None = None) -> LMOutput:
        """tokens: (time, batch) word ids. Returns logits for the next word at every position."""
        out = self.features(tokens, hidden)
        output = self.lockdrop(out.output, self.cfg.dropout)
        outputs = out.outputs[:-1] + [output]
        return LMOutput(self.decoder(output), out.hidden, out.raw_outputs, outputs, out.distances, out.distances_in)
