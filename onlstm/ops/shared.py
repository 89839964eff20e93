"""What the backends of the layer op share: the result type, the gate layout, the distances'
gradient and the argument checks.

Imports nothing of the model (``onlstm.cell``, ``onlstm.stack``): the ops take tensors and
return tensors.

Gate rows, as in the official code and :class:`onlstm.cell.ONLSTMCell` (which names each
equation): [master input logits (n), master forget logits (n), output (H), cell (H), input (H),
forget (H)], n = H // chunk_size, so R = 2n + 4H rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class LayerResult(NamedTuple):
    output: Tensor  # (time, batch, hidden)
    h: Tensor  # (batch, hidden): the state after the last step
    c: Tensor
    distance_forget: Tensor | None  # (time, batch); None for an LSTM layer
    distance_input: Tensor | None


def gate_rows(hidden: int, n_chunk: int) -> int:
    return 4 * hidden + 2 * n_chunk


# ----------------------------------------------------------------------------- argument checks
def check_tensor(
    op: str,
    name: str,
    t: Tensor,
    shape: Sequence[int],
    dtype: torch.dtype | None = torch.float32,
    device: str | None = "cpu",
    contiguous: bool = False,
) -> None:
    """Raise a ValueError naming the op, the argument and what was expected, before a pointer to
    ``t`` reaches native code. A -1 in ``shape`` matches any size."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a tensor, got {type(t).__name__}")
    if dtype is not None and t.dtype != dtype:
        raise ValueError(f"{op}: {name} must be {dtype}, got {t.dtype} (cast it, or use the reference implementation)")
    if device is not None and t.device.type != device:
        raise ValueError(f"{op}: {name} must be on {device}, got {t.device}")
    if t.dim() != len(shape) or any(want not in (-1, got) for want, got in zip(shape, t.shape)):
        expected = "(" + ", ".join("*" if s == -1 else str(s) for s in shape) + ")"
        raise ValueError(f"{op}: {name} must have shape {expected}, got {tuple(t.shape)}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{op}: {name} must be contiguous (call .contiguous() first), got strides {t.stride()}")


def layer_sizes(op: str, x_or_wx: Tensor, h0: Tensor, n_chunk: int) -> tuple[int, int, int, int]:
    """(steps, batch, hidden, rows) of a layer call, checking the chunk count against the hidden size."""
    if x_or_wx.dim() != 3:
        raise ValueError(f"{op}: the input must be (time, batch, features), got shape {tuple(x_or_wx.shape)}")
    steps, batch, _ = x_or_wx.shape
    if h0.dim() != 2:
        raise ValueError(f"{op}: h0 must be (batch, hidden), got shape {tuple(h0.shape)}")
    hidden = h0.size(1)
    if n_chunk < 1 or hidden % n_chunk:
        raise ValueError(f"{op}: n_chunk={n_chunk} must divide the hidden size {hidden}")
    return steps, batch, hidden, gate_rows(hidden, n_chunk)


# ----------------------------------------------------------------------------- shared math
def master_grad_from_distances(d_dist_f: Tensor | None, d_dist_i: Tensor | None, n: int, like: Tensor) -> Tensor | None:
    """The distances' gradient as a gradient of the master gates, (T, B, 2) for [input, forget]:
    distance_input = mean(master_in), distance_forget = 1 - mean(master_forget). None when
    neither distance is used (then the backward skips the term)."""
    if d_dist_f is None and d_dist_i is None:
        return None
    d_master = like.new_zeros(*like.shape[:2], 2)
    if d_dist_i is not None:
        d_master[..., 0] = d_dist_i / n
    if d_dist_f is not None:
        d_master[..., 1] = -d_dist_f / n
    return d_master
