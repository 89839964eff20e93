"""The ON-LSTM cell: the paper's equations, one time step at a time.

Shen, Tan, Sordoni, Courville, "Ordered Neurons: Integrating Tree Structures into Recurrent
Neural Networks", ICLR 2019. Equation numbers below are those of the ICLR version: the master
forget and input gates are Eqs. 9 and 10, their overlap Eq. 11, the ON-LSTM forget and input gates
Eqs. 12 and 13, the cell update Eq. 14; the output h_t = o_t * tanh(c_t) is the LSTM's Eq. 5.

This per-step implementation is the *reference*: it mirrors the official code's arithmetic so
that the fast paths (``onlstm/ops/``) can be tested against it. They cite this file rather than
the paper, so the numbering lives in one place.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from onlstm.regularizers import LinearDropConnect


def cumax(x: Tensor, dim: int = -1) -> Tensor:
    """cumax(x) = cumsum(softmax(x)) (Sec. 4.1): monotone non-decreasing, values in [0, 1]."""
    return torch.cumsum(F.softmax(x, dim=dim), dim=dim)


class StepOutput(NamedTuple):
    h: Tensor  # (batch, hidden)
    c: Tensor  # (batch, hidden)
    distance_forget: Tensor  # (batch,) 1 - mean of the master forget gate
    distance_input: Tensor  # (batch,) mean of the master input gate


class ONLSTMCell(nn.Module):
    """One ON-LSTM layer's cell.

    The hidden units are split into ``hidden_size // chunk_size`` chunks; the master gates have
    one value per chunk, shared by the ``chunk_size`` neurons of that chunk (Section 4, "we
    reduce the dimension of the master gates"). Gate rows of the projections are laid out as the
    official code does: [master input (n_chunk), master forget (n_chunk), output, cell, input,
    forget (hidden each)].
    """

    def __init__(self, input_size: int, hidden_size: int, chunk_size: int, dropconnect: float = 0.0):
        super().__init__()
        if chunk_size < 1 or hidden_size % chunk_size != 0:
            raise ValueError(
                f"chunk_size={chunk_size} must divide hidden_size={hidden_size}: "
                "pick a chunk size that is a divisor of every layer's size"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.chunk_size = chunk_size
        self.n_chunk = hidden_size // chunk_size
        gate_rows = 4 * hidden_size + 2 * self.n_chunk
        self.ih = nn.Linear(input_size, gate_rows, bias=True)
        self.hh = LinearDropConnect(hidden_size, gate_rows, bias=True, dropout=dropconnect)

    @property
    def gate_rows(self) -> int:
        return 4 * self.hidden_size + 2 * self.n_chunk

    def step(self, wx: Tensor, h: Tensor, c: Tensor, w_hh: Tensor) -> StepOutput:
        """One time step given the input projection ``wx = W x + b`` (batch, gate_rows)."""
        batch = wx.size(0)
        n, cs = self.n_chunk, self.chunk_size
        gates = wx + F.linear(h, w_hh, self.hh.bias)
        master_in_logits, master_forget_logits = gates[:, : 2 * n].chunk(2, 1)
        out_gate, cell_in, in_gate, forget_gate = gates[:, 2 * n :].view(batch, 4 * n, cs).chunk(4, 1)

        master_forget = cumax(master_forget_logits)  # Eq. 9: f~ = cumax(...)
        master_in = 1.0 - cumax(master_in_logits)  # Eq. 10: i~ = 1 - cumax(...)
        distance_forget = 1.0 - master_forget.mean(-1)  # Sec. 5.2: d^f = 1 - mean_k f~_k
        distance_input = master_in.mean(-1)  # d^i = mean_k i~_k

        master_forget = master_forget[:, :, None]
        master_in = master_in[:, :, None]
        overlap = master_forget * master_in  # Eq. 11: w = f~ * i~
        forget = torch.sigmoid(forget_gate) * overlap + (master_forget - overlap)  # Eq. 12: f^
        inp = torch.sigmoid(in_gate) * overlap + (master_in - overlap)  # Eq. 13: i^
        c_new = forget * c.view(batch, n, cs) + inp * torch.tanh(cell_in)  # Eq. 14
        h_new = torch.sigmoid(out_gate) * torch.tanh(c_new)  # Eq. 5
        return StepOutput(h_new.reshape(batch, -1), c_new.reshape(batch, -1), distance_forget, distance_input)

    def forward(self, x: Tensor, hidden: tuple[Tensor, Tensor]) -> StepOutput:
        """One step on raw input ``x`` (batch, input_size)."""
        h, c = hidden
        return self.step(self.ih(x), h, c, self.hh.sampled_weight())
