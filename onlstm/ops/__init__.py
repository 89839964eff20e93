"""How a layer's ON-LSTM recurrence runs: one entry, :func:`onlstm_layer`, that picks the backend.

* :mod:`onlstm.ops.cpu`: float32 CPU tensors, compiled C step kernels (``csrc/onlstm_cpu.c``,
  built at first use by :mod:`onlstm.ops.cpu_build`) behind registered torch ops;
* :mod:`onlstm.ops.triton_kernels`: float32 CUDA tensors, one Triton kernel per step, registered
  torch ops (imported only when used: Triton is optional);
* :mod:`onlstm.ops.aten`: PyTorch ops only, any device and dtype: the fallback;
* :mod:`onlstm.ops.cuda_graphs`: replays a module's training calls as CUDA graphs;
* :mod:`onlstm.ops.shared`: what they share (the result type, the distances' gradient, the
  per-step matmul, argument checks, the switches of the hand-tuned pieces).

Every backend computes what :func:`onlstm.stack.onlstm_layer_reference` computes (the paper's
equations, one step at a time, in :class:`onlstm.cell.ONLSTMCell`): tests/test_ops_*.py. The ops
take tensors and return tensors; nothing here imports the model.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor
from torch.nn import functional as F

from onlstm.ops import aten, cpu, cpu_build
from onlstm.ops.shared import SWITCHES, LayerResult, Switches, switched

BACKENDS = ("auto", "aten", "cpu", "triton")

__all__ = ["BACKENDS", "SWITCHES", "LayerResult", "Switches", "onlstm_layer", "resolve_backend", "switched"]


@functools.cache
def triton_available() -> bool:
    """Whether the Triton kernels can be used (Triton installed: CUDA builds of torch bring it;
    on a CPU it runs only under ``TRITON_INTERPRET=1``, which the tests use)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, x: Tensor) -> str:
    """The backend that runs: "triton", "cpu" (the compiled step kernels) or "aten".

    ``auto`` takes the Triton kernels for float32 CUDA tensors when Triton is installed, the
    compiled CPU kernels for float32 CPU tensors when they built, PyTorch ops otherwise. An
    explicit backend that cannot run here is an error that says why.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "aten":
        return "aten"
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
        return "aten"
    if x.is_cuda:
        return "triton" if triton_available() else "aten"
    if x.device.type == "cpu":
        return "cpu" if cpu_build.library() is not None else "aten"
    return "aten"


def onlstm_layer(
    x: Tensor,
    w_ih: Tensor,
    b_ih: Tensor | None,
    h0: Tensor,
    c0: Tensor,
    w_hh: Tensor,
    b_hh: Tensor | None,
    n_chunk: int,
    backend: str = "auto",
) -> LayerResult:
    """One ON-LSTM layer over a whole sequence: x (T, B, I), weights (R, I) and (R, H) with
    R = 4H + 2 n_chunk in the gate order of :class:`onlstm.cell.ONLSTMCell`, state (B, H).

    ``w_hh`` is the weight to use for the whole sequence (DropConnect-masked by the caller);
    gradients flow to every tensor argument. ``backend``: "aten", "cpu", "triton" or "auto"
    (:func:`resolve_backend`).
    """
    path = resolve_backend(backend, x)
    if path == "cpu":  # the input projection happens inside, as a oneDNN matmul when large
        return cpu.layer(x, w_ih, b_ih, h0, c0, w_hh, b_hh, n_chunk)
    wx = F.linear(x, w_ih, b_ih)  # the input projection of all steps: one matmul outside the recurrence
    if b_hh is None:
        b_hh = wx.new_zeros(())
    if path == "triton":
        from onlstm.ops import triton_kernels  # imported only here: Triton is optional

        return triton_kernels.layer(wx, h0, c0, w_hh, b_hh, n_chunk)
    inputs = (wx, h0, c0, w_hh, b_hh)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return LayerResult(*aten.ONLSTMLayerFunction.apply(*inputs, n_chunk))
    # inference: no graph, so no (time, ...) buffers for a backward
    hs, c_last, dist_f, dist_i, _ = aten.recurrence(*inputs, n_chunk, keep=False)
    return LayerResult(hs[1:], hs[-1].clone(), c_last, dist_f, dist_i)
