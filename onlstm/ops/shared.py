"""What every backend of the layer op shares: the result type, the gate layout, the distances'
gradient, the per-step matmul, argument checks, and the switches that turn hand-tuned pieces off.

Imports nothing of the model (``onlstm.cell``, ``onlstm.stack``): the ops take tensors and
return tensors.

Gate rows, as in the official code and :class:`onlstm.cell.ONLSTMCell` (which names each
equation): [master input logits (n), master forget logits (n), output (H), cell (H), input (H),
forget (H)], n = H // chunk_size, so R = 2n + 4H rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
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


# ----------------------------------------------------------------------------- switches
def _env_on(name: str) -> bool:
    return os.environ.get(name, "1") != "0"


@dataclasses.dataclass
class Switches:
    """Hand-tuned pieces of the float32 CPU path that can be turned off, each with its public
    fallback, so that a benchmark can time the LM step without each one (``benchmarks/
    lm_throughput.py --ablation``). All on by default; the environment variable in each comment
    set to 0 turns one off for a whole process (read at import; ``ONLSTM_CPU_KERNEL=0``, read at
    each call by :mod:`onlstm.ops.cpu_build`, turns every C kernel off). Off changes the float32 rounding of the results
    (another matmul library, another random stream), not what is computed."""

    # the C blocked transpose for the operands of the backward's large products (else x.t().contiguous())
    c_transpose: bool = dataclasses.field(default_factory=lambda: _env_on("ONLSTM_C_TRANSPOSE"))
    # DropConnect masks drawn by the C hash (else torch.rand_like(w) < keep)
    hashed_dropconnect: bool = dataclasses.field(default_factory=lambda: _env_on("ONLSTM_HASHED_DROPCONNECT"))
    # oneDNN's prepacked per-step matmul and oneDNN for the large products (else torch.mm / MKL)
    onednn: bool = dataclasses.field(default_factory=lambda: _env_on("ONLSTM_ONEDNN"))


SWITCHES = Switches()


@contextlib.contextmanager
def switched(**flags: bool) -> Iterator[Switches]:
    """``with switched(c_transpose=False): ...`` runs the block with those pieces off."""
    unknown = set(flags) - {f.name for f in dataclasses.fields(Switches)}
    if unknown:
        raise ValueError(f"unknown switches {sorted(unknown)}; known: {[f.name for f in dataclasses.fields(Switches)]}")
    saved = dataclasses.replace(SWITCHES)
    for name, value in flags.items():
        setattr(SWITCHES, name, value)
    try:
        yield SWITCHES
    finally:
        for f in dataclasses.fields(Switches):
            setattr(SWITCHES, f.name, getattr(saved, f.name))


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
        raise ValueError(f"{op}: {name} must be {dtype}, got {t.dtype} (cast it, or use the fused_aten implementation)")
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


@functools.cache
def _mkldnn_linear_ops():
    """oneDNN's weight reorder and prepacked linear, or None where this torch build lacks them.

    They are private (``torch.ops.mkldnn._*``: what PyTorch's own compiler emits for CPU linear
    layers), and no public API runs a prepacked matmul; any torch release may drop them, so they
    are looked up once here and every caller falls back to ``torch.mm`` without them."""
    try:
        namespace = torch.ops.mkldnn
        return namespace._reorder_linear_weight, namespace._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def onednn_available() -> bool:
    return SWITCHES.onednn and torch.backends.mkldnn.is_available() and _mkldnn_linear_ops() is not None


class RepeatedMatmul:
    """``x @ weight.T (+ bias)`` for the many ``x`` of one recurrence, ``weight`` fixed for the call.

    On a CPU the weight is reordered once into oneDNN's blocked layout and every step runs
    oneDNN's prepacked matmul; elsewhere, with ``prepack=False``, with the ``onednn`` switch off,
    or where the private ops are missing (:func:`_mkldnn_linear_ops`), a plain ``torch.mm``. Why
    prepacked, with the measurements: docs/performance.md ("The per-step matmul").
    """

    def __init__(self, weight: Tensor, batch: int, bias: Tensor | None = None, prepack: bool = True):
        self.weight, self.bias = weight, bias
        self.packed = None
        self._linear = None
        cpu32 = weight.device.type == "cpu" and weight.dtype == torch.float32
        if prepack and cpu32 and onednn_available():
            reorder, linear = _mkldnn_linear_ops()
            try:
                self.packed = reorder(weight.contiguous(), batch)
                self._linear = linear
            except RuntimeError:  # a build whose op refuses this shape or CPU: plain matmul
                self.packed = None

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is not None:
            return self._linear(x.contiguous(), self.packed, self.bias, "none", [], "")
        if self.bias is not None:
            return torch.addmm(self.bias, x, self.weight.t())
        return torch.mm(x, self.weight.t())
