"""The fused ON-LSTM layer for float32 CPU tensors: per time step one matmul and one call into
the compiled step kernels (``onlstm/csrc/onlstm_cpu.c``, built by :mod:`onlstm.cpu_kernel`).

Same structure as :class:`onlstm.fused._ONLSTMLayer` (the forward keeps what the backward needs,
the weight gradients are products over all steps after the backward loop), with three changes:

* the ~40 small PyTorch kernels of each step's pointwise part, and their dispatch, are one C
  call (they were about half of a training step at the small size);
* the input projection happens inside the layer, so that it, the input gradient and both weight
  gradients can run as oneDNN matmuls when they are large (:func:`linear`);
* the transposed operands those need are copied by the C kernels' blocked transpose
  (:func:`transposed`), about 3x faster than PyTorch's strided copy.

Kept per step for the backward: the activated gate row (T, B, R), the master gates' softmax and
cumax (T, B, 2, n) each, the cell states c_0..c_T, tanh(c_t) and h_0..h_T. The mixes of Eqs.
10-11 and the overlap of Eq. 9 are recomputed in the backward (cheaper than storing them).
docs/performance.md has the measurements.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from onlstm import cpu_kernel
from onlstm.fused import _RepeatedMatmul, master_grad_from_distances


def _check(*tensors: Tensor) -> None:
    for t in tensors:
        if t.device.type != "cpu" or t.dtype != torch.float32:
            raise RuntimeError(f"implementation 'fused_cpu' runs float32 CPU tensors, got {t.dtype} on {t.device}")


def _address(buffer: Tensor | None, per_step: bool = True):
    """``at(t)``: the address of ``buffer[t]`` (a contiguous (time, ...) buffer), of its only row
    (``per_step=False``), or None (NULL for the kernel) when there is no buffer."""
    if buffer is None:
        return lambda t: None
    base, stride = buffer.data_ptr(), buffer.stride(0) * buffer.element_size()
    if per_step:
        return lambda t: base + t * stride
    return lambda t: base


# Products with at least this many multiply-adds run as oneDNN matmuls, smaller ones as torch.mm
# (MKL). On this AMD CPU oneDNN ran the paper size's large products 1.3-1.8x faster than MKL
# (reorder and transposing copies included), while for products under ~1e9 multiply-adds (the
# small config's, the paper's layer-3 weight gradient) MKL was as fast or faster and needs no
# copies of transposed operands: benchmarks/results/large_matmul_cpu.md.
ONEDNN_MIN_MACS = 1e9
# The backward's per-step product d gates_t W_hh uses oneDNN's prepacked matmul from this many
# weights on (the paper's layers 1-2), torch.mm below.
PREPACK_BACKWARD_MIN_WEIGHTS = 1_000_000


def uses_onednn(m: int, k: int, n: int) -> bool:
    return m * k * n >= ONEDNN_MIN_MACS


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T (+ bias)``: oneDNN's matmul for large products, torch.mm for small ones."""
    if uses_onednn(x.size(0), x.size(1), weight.size(0)):
        return _RepeatedMatmul(weight, x.size(0), bias)(x)
    return torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())


def transposed(x: Tensor) -> Tensor:
    """``x.t()`` as a contiguous matrix, copied by the C kernels' blocked transpose (about 3x
    faster than PyTorch's strided copy at the paper size: docs/performance.md)."""
    x = x.contiguous()
    out = torch.empty(x.size(1), x.size(0))
    threads = torch.get_num_threads()
    cpu_kernel.require().onlstm_transpose(x.size(0), x.size(1), x.data_ptr(), out.data_ptr(), threads)
    return out


def linear_t(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight``: oneDNN's matmul of the transposed copy for large products, torch.mm (which
    takes the transposed view without a copy) for small ones."""
    if uses_onednn(x.size(0), x.size(1), weight.size(1)):
        return _RepeatedMatmul(transposed(weight), x.size(0))(x)
    return torch.mm(x, weight)


def weight_gradient(d_gates_t: Callable[[], Tensor], d_gates: Tensor, inputs: Tensor) -> Tensor:
    """``d_gates^T @ inputs`` summed over all steps; ``d_gates_t()`` gives the transposed copy
    (made once, shared by both weight gradients) that oneDNN needs."""
    rows, (steps_batch, features) = d_gates.size(1), inputs.shape
    if uses_onednn(rows, steps_batch, features):
        return linear_t(d_gates_t(), inputs)
    return torch.mm(d_gates.t(), inputs)


def forward(x: Tensor, w_ih: Tensor, bias: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, n: int, keep: bool):
    """Run the recurrence; with ``keep`` every per-step value the backward needs is kept.

    ``bias`` is b_ih + b_hh, added by the kernel with the recurrent product."""
    _check(x, w_ih, h0, c0, w_hh)
    lib = cpu_kernel.require()
    steps, batch, _ = x.shape
    hidden = h0.size(-1)
    kept = steps if keep else 1
    # (T, B, R) pre-activations of every step's input part; the kernel adds the recurrent part
    # and activates them in place
    gates = linear(x.reshape(steps * batch, -1), w_ih).view(steps, batch, -1)
    bias = bias.contiguous()
    probs = torch.empty(kept, batch, 2, n)
    master = torch.empty(steps, batch, 2, n)  # every step: the distances are its means
    cells = torch.empty(steps + 1 if keep else 1, batch, hidden)  # c_t overwrites c_{t-1} in place
    tanh_c = torch.empty(kept, batch, hidden)
    hs = torch.empty(steps + 1, batch, hidden)
    scratch = torch.empty(2 * n)
    hs[0].copy_(h0)
    cells[0].copy_(c0)
    recurrent = _RepeatedMatmul(w_hh, batch)
    at_gates, at_master, at_h = _address(gates), _address(master), _address(hs)
    at_probs, at_cell, at_tanh = _address(probs, keep), _address(cells, keep), _address(tanh_c, keep)
    hs_v = hs.unbind(0)
    for t in range(steps):
        rec = recurrent(hs_v[t])  # kept referenced until the kernel has read it
        lib.onlstm_forward_step(
            batch, n, hidden // n, at_gates(t), rec.data_ptr(), bias.data_ptr(), at_cell(t), at_probs(t), at_master(t),
            at_cell(t + 1), at_tanh(t), at_h(t + 1), scratch.data_ptr(),
        )  # fmt: skip
    means = master.mean(-1)  # (T, B, 2)
    dist_input = means[..., 0].contiguous()
    dist_forget = torch.rsub(means[..., 1], 1.0)
    c_last = cells[-1].clone()
    return hs, c_last, dist_forget, dist_input, (x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh)


class CpuONLSTMLayer(torch.autograd.Function):
    """A whole layer: input projection, recurrence, and in the backward every gradient, the
    large products as oneDNN matmuls after the loop."""

    @staticmethod
    def forward(ctx, x: Tensor, w_ih: Tensor, b_ih: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int):
        hs, c_last, dist_f, dist_i, saved = forward(x, w_ih, b_ih + b_hh, h0, c0, w_hh, n, keep=True)
        ctx.n = n
        ctx.save_for_backward(*saved)
        ctx.set_materialize_grads(False)  # unused outputs (usually the distances) get no work
        return hs[1:], hs[-1].clone(), c_last, dist_f, dist_i

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last, d_dist_f, d_dist_i):
        lib = cpu_kernel.require()
        x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh = ctx.saved_tensors
        n = ctx.n
        steps, batch, rows = gates.shape
        hidden = hs.size(-1)
        d_gates = torch.empty_like(gates)
        # incoming gradients may be expanded or strided views: the kernel reads contiguous rows
        dc = torch.zeros(batch, hidden) if d_c_last is None else d_c_last.contiguous().clone()
        d_out = None if d_out is None else d_out.contiguous()
        dh_in = None if d_h_last is None else d_h_last.contiguous()
        d_master = master_grad_from_distances(d_dist_f, d_dist_i, n, gates)
        scratch = torch.empty(3 * hidden + 2 * n)
        # d gates_t W_hh. oneDNN's prepacked form needs W_hh^T copied and reordered: worth it for
        # the paper's 4830 x 1150 weights, not for small ones (benchmarks/results/step_matmul_cpu.md)
        prepack = w_hh.numel() >= PREPACK_BACKWARD_MIN_WEIGHTS
        back = _RepeatedMatmul(transposed(w_hh) if prepack else w_hh.t(), batch, prepack=prepack)
        at_gates, at_probs, at_master = _address(gates), _address(probs), _address(master)
        at_cell, at_tanh, at_d_gates = _address(cells), _address(tanh_c), _address(d_gates)
        at_d_out, at_d_master = _address(d_out), _address(d_master)
        for t in range(steps - 1, -1, -1):
            lib.onlstm_backward_step(
                batch, n, hidden // n, at_gates(t), at_probs(t), at_master(t), at_cell(t), at_tanh(t),
                None if dh_in is None else dh_in.data_ptr(), at_d_out(t), at_d_master(t), dc.data_ptr(),
                at_d_gates(t), scratch.data_ptr(),
            )  # fmt: skip
            if t > 0:
                dh_in = back(d_gates[t])  # d h_{t-1} from the recurrence (d_out[t-1] added by the kernel)

        needs = ctx.needs_input_grad
        flat = d_gates.view(steps * batch, rows)
        flat_t = functools.cache(lambda: transposed(flat))  # (R, T*B)
        d_x = linear_t(flat, w_ih).view(steps, batch, -1) if needs[0] else None
        d_w_ih = weight_gradient(flat_t, flat, x.reshape(steps * batch, -1)) if needs[1] else None
        d_bias = flat.sum(0) if needs[2] or needs[6] else None  # both biases are (R,), entering as their sum
        d_h0 = back(d_gates[0]) if needs[3] else None
        d_w_hh = weight_gradient(flat_t, flat, hs[:-1].reshape(steps * batch, hidden)) if needs[5] else None
        d_b_ih, d_b_hh = (d_bias if needs[2] else None), (d_bias if needs[6] else None)
        return d_x, d_w_ih, d_b_ih, d_h0, dc if needs[4] else None, d_w_hh, d_b_hh, None
