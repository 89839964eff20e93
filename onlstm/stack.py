"""Multi-layer recurrent stacks with one interface: :class:`ONLSTMStack` and :class:`LSTMStack`.

Both take input of shape (time, batch, features), an optional hidden state (zeros when omitted)
and return a :class:`StackOutput`. DropConnect masks on the hidden-to-hidden weights are sampled
once per call (once per sequence / BPTT segment) and locked dropout is applied between layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from onlstm.cell import ONLSTMCell
from onlstm.ops import LayerResult, onlstm_layer, resolve_backend
from onlstm.regularizers import LinearDropConnect, LockedDropout

Hidden = list[tuple[Tensor, Tensor]]

# How an ON-LSTM layer's recurrence runs unless told otherwise (ONLSTMStack.IMPLEMENTATIONS); the
# one default that ONLSTMStack, build_stack and RNNLanguageModel (and so the `run` config) share.
DEFAULT_IMPLEMENTATION = "fused"


class StackOutput(NamedTuple):
    output: Tensor  # (time, batch, layer_sizes[-1]): last layer, no dropout applied
    hidden: Hidden  # per layer (h, c), each (batch, size): the state after the last step
    raw_outputs: list[Tensor]  # per layer (time, batch, size), before any dropout (for TAR)
    outputs: list[Tensor]  # per layer after the between-layer dropout; last layer == output (for AR)
    distances: Tensor | None  # (layers, time, batch): 1 - mean master forget gate; None for LSTM
    distances_in: Tensor | None  # (layers, time, batch): mean master input gate; None for LSTM


def onlstm_layer_reference(cell: ONLSTMCell, x: Tensor, h: Tensor, c: Tensor, w_hh: Tensor) -> LayerResult:
    """The plain per-step recurrence (the official code's loop), kept as the reference.

    The input projection is computed for all steps at once (same arithmetic, one matmul).
    """
    wx = cell.ih(x)
    outputs, dist_f, dist_i = [], [], []
    for t in range(x.size(0)):
        h, c, df, di = cell.step(wx[t], h, c, w_hh)
        outputs.append(h)
        dist_f.append(df)
        dist_i.append(di)
    return LayerResult(torch.stack(outputs), h, c, torch.stack(dist_f), torch.stack(dist_i))


class _RecurrentStack(nn.Module):
    def __init__(self, layer_sizes: Sequence[int], dropout: float):
        super().__init__()
        if len(layer_sizes) < 2:
            raise ValueError(f"layer_sizes needs the input size and at least one layer, got {list(layer_sizes)}")
        self.layer_sizes = list(layer_sizes)
        self.dropout = dropout
        self.lockdrop = LockedDropout()

    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes) - 1

    def init_hidden(self, batch_size: int, like: Tensor | None = None) -> Hidden:
        """Zero state: per layer (h, c), each (batch, size)."""
        kwargs = {} if like is None else {"dtype": like.dtype, "device": like.device}
        return [
            (torch.zeros(batch_size, size, **kwargs), torch.zeros(batch_size, size, **kwargs))
            for size in self.layer_sizes[1:]
        ]

    def _run_layer(self, index: int, x: Tensor, h: Tensor, c: Tensor) -> LayerResult:
        raise NotImplementedError

    def forward(self, x: Tensor, hidden: Hidden | None = None) -> StackOutput:
        if x.dim() != 3 or x.size(-1) != self.layer_sizes[0]:
            raise ValueError(
                f"expected input of shape (time, batch, {self.layer_sizes[0]}), got {tuple(x.shape)}"
            )
        if hidden is None:
            hidden = self.init_hidden(x.size(1), like=x)
        raw_outputs, outputs, new_hidden, dist_f, dist_i = [], [], [], [], []
        layer_input = x
        for index in range(self.num_layers):
            h, c = hidden[index]
            result = self._run_layer(index, layer_input, h, c)
            new_hidden.append((result.h, result.c))
            raw_outputs.append(result.output)
            dist_f.append(result.distance_forget)
            dist_i.append(result.distance_input)
            layer_input = result.output
            if index < self.num_layers - 1:
                layer_input = self.lockdrop(layer_input, self.dropout)
            outputs.append(layer_input)
        has_distances = dist_f[0] is not None
        return StackOutput(
            output=layer_input,
            hidden=new_hidden,
            raw_outputs=raw_outputs,
            outputs=outputs,
            distances=torch.stack(dist_f) if has_distances else None,
            distances_in=torch.stack(dist_i) if has_distances else None,
        )


class ONLSTMStack(_RecurrentStack):
    """A stack of ON-LSTM layers.

    ``layer_sizes`` = [input size, layer 1 size, ..., last layer size]; the paper's LM uses
    [400, 1150, 1150, 400]. ``chunk_size`` must divide every layer size. ``dropout`` is the
    locked dropout between layers, ``dropconnect`` the DropConnect rate of the hidden-to-hidden
    weights. ``implementation`` picks the recurrence: "fused" (the fast default: one autograd
    node per layer, run by :func:`onlstm.ops.onlstm_layer` on the fast path that fits the tensors:
    Triton kernels on float32 CUDA tensors, compiled C step kernels on float32 CPU tensors; the
    per-step loop above for any other tensor), "fused_cpu" or "fused_triton" to force one of the
    two, or "reference" (the per-step loop above). All compute the same numbers.
    """

    IMPLEMENTATIONS = {
        "fused": "auto",
        "fused_cpu": "cpu",
        "fused_triton": "triton",
        "reference": None,
    }

    def __init__(
        self,
        layer_sizes: Sequence[int],
        chunk_size: int,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        implementation: str = DEFAULT_IMPLEMENTATION,
    ):
        super().__init__(layer_sizes, dropout)
        if implementation not in self.IMPLEMENTATIONS:
            raise ValueError(f"implementation must be one of {sorted(self.IMPLEMENTATIONS)}, got {implementation!r}")
        self.chunk_size = chunk_size
        self.implementation = implementation
        self.cells = nn.ModuleList(
            ONLSTMCell(n_in, n_out, chunk_size, dropconnect)
            for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:])
        )

    def _run_layer(self, index: int, x: Tensor, h: Tensor, c: Tensor) -> LayerResult:
        cell = self.cells[index]
        backend = self.IMPLEMENTATIONS[self.implementation]
        fast_path = resolve_backend(backend, x) if backend is not None else None
        w_hh = cell.hh.sampled_weight()
        if fast_path is not None:
            return onlstm_layer(x, cell.ih.weight, cell.ih.bias, h, c, w_hh, cell.hh.bias, cell.n_chunk, fast_path)
        return onlstm_layer_reference(cell, x, h, c, w_hh)


class LSTMLayer(nn.Module):
    """An LSTM layer with DropConnect on its hidden-to-hidden weight, run by torch's fused LSTM.

    The dropped weight is handed to ``torch.lstm`` as an ordinary tensor argument, so gradients
    flow to ``hh.weight`` and nothing inside cuDNN or ``nn.LSTM`` is patched.
    """

    def __init__(self, input_size: int, hidden_size: int, dropconnect: float = 0.0):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.ih = nn.Linear(input_size, 4 * hidden_size, bias=True)
        self.hh = LinearDropConnect(hidden_size, 4 * hidden_size, bias=True, dropout=dropconnect)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> LayerResult:
        params = [self.ih.weight, self.hh.sampled_weight(), self.ih.bias, self.hh.bias]
        output, h_n, c_n = torch.lstm(x, [h.unsqueeze(0), c.unsqueeze(0)], params, True, 1, 0.0, self.training, False, False)
        return LayerResult(output, h_n[0], c_n[0], None, None)


class LSTMStack(_RecurrentStack):
    """The LSTM baseline behind the same interface (``distances`` is None).

    ``chunk_size`` is accepted and ignored, so that configs can swap the two stacks freely.
    """

    def __init__(self, layer_sizes: Sequence[int], chunk_size: int | None = None, dropout: float = 0.0, dropconnect: float = 0.0):
        super().__init__(layer_sizes, dropout)
        self.layers = nn.ModuleList(
            LSTMLayer(n_in, n_out, dropconnect) for n_in, n_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:])
        )

    def _run_layer(self, index: int, x: Tensor, h: Tensor, c: Tensor) -> LayerResult:
        return self.layers[index](x, h, c)
