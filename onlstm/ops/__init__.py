"""How a layer's ON-LSTM recurrence runs fast: :func:`resolve_backend` picks the kernel for the
tensors, :func:`onlstm_layer` runs it.

One fast path per device:

* :mod:`onlstm.ops.cpu`: float32 CPU tensors, compiled C step kernels (``csrc/onlstm_cpu.c``,
  built at first use by :mod:`onlstm.ops.cpu_build`) behind registered torch ops;
* :mod:`onlstm.ops.triton_kernels`: float32 CUDA tensors, one Triton kernel per step, registered
  torch ops (imported only when used: Triton is optional);
* :mod:`onlstm.ops.shared`: what they share (the result type, the distances' gradient, argument
  checks).

Every other tensor (float64, another device, no C compiler, no Triton) runs the readable
per-step reference, :func:`onlstm.stack.onlstm_layer_reference` (the paper's equations in
:class:`onlstm.cell.ONLSTMCell`), which every fast path is tested against (tests/test_ops_*.py).
The ops take tensors and return tensors; nothing here imports the model.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import Tensor
from torch.nn import functional as F

from onlstm.ops import cpu, cpu_build
from onlstm.ops.shared import LayerResult

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "triton")

__all__ = ["BACKENDS", "LayerResult", "onlstm_layer", "resolve_backend"]


@functools.cache
def triton_available() -> bool:
    """Whether the Triton kernels can be used (Triton installed: CUDA builds of torch bring it;
    on a CPU it runs only under ``TRITON_INTERPRET=1``, which the tests use)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def _warn_no_triton() -> None:
    log.warning("Triton is not installed: ON-LSTM layers on CUDA run the reference loop (slower); pip install triton")


def resolve_backend(backend: str, x: Tensor) -> str | None:
    """The fast path that runs: "triton" (float32 CUDA), "cpu" (the compiled step kernels, float32
    CPU), or None: no fast path for these tensors, the caller runs the reference loop.

    ``auto`` takes the fast path that fits the tensors, None where none does (a missing compiler
    or Triton is warned about once). An explicit backend that cannot run here is an error that
    says why.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "triton":
        if not triton_available():
            raise RuntimeError("implementation 'fused_triton' needs the triton package (pip install triton)")
        if x.dtype != torch.float32:
            raise RuntimeError(f"implementation 'fused_triton' runs in float32, got {x.dtype}")
        return "triton"
    if backend == "cpu":
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise RuntimeError(f"implementation 'fused_cpu' runs float32 CPU tensors, got {x.dtype} on {x.device}")
        cpu_build.require()
        return "cpu"
    if x.dtype != torch.float32:
        return None
    if x.is_cuda:
        if triton_available():
            return "triton"
        _warn_no_triton()
        return None
    if x.device.type == "cpu" and cpu_build.library() is not None:
        return "cpu"
    return None


def onlstm_layer(
    x: Tensor,
    w_ih: Tensor,
    b_ih: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    n_chunk: int,
    backend: str,
) -> LayerResult:
    """One ON-LSTM layer over a whole sequence on a fast path: x (T, B, I), weights (R, I) and
    (R, H) with R = 4H + 2 n_chunk in the gate order of :class:`onlstm.cell.ONLSTMCell`, state
    (B, H).

    ``w_hh`` is the weight to use for the whole sequence (DropConnect-masked by the caller);
    gradients flow to every tensor argument. ``backend``: "cpu" or "triton", as
    :func:`resolve_backend` returns it.
    """
    if backend == "cpu":  # the input projection happens inside
        return cpu.layer(x, w_ih, b_ih, h0, c0, w_hh, b_hh, n_chunk)
    if backend != "triton":
        raise ValueError(f"onlstm_layer runs 'cpu' or 'triton' (resolve_backend's answer), got {backend!r}")
    from onlstm.ops import triton_kernels  # imported only here: Triton is optional

    wx = F.linear(x, w_ih, b_ih)  # the input projection of all steps: one matmul outside the recurrence
    if b_hh is None:
        b_hh = wx.new_zeros(())
    return triton_kernels.layer(wx, h0, c0, w_hh, b_hh, n_chunk)
