"""The ON-LSTM layer for GPUs: one Triton kernel per time step for everything but the matmul.

On a GPU the fused aten path (:mod:`onlstm.fused`) is bound by kernel launches: a dozen pointwise
kernels per step forward and twenty backward, each doing microseconds of work. Here each step is

* forward: one cuBLAS ``addmm`` (``h_{t-1} W_hh^T`` into the step's gate row) and ONE Triton
  kernel computing the cumax master gates, the four gate nonlinearities, Eqs. 9-12 and
  ``h_t = o * tanh(c_t)``;
* backward: ONE Triton kernel giving the pre-activation gradient of every gate row (the cumax
  and softmax backward included) and ``dc_{t-1}``, then one ``addmm`` for ``dh_{t-1}``.

Weight and bias gradients are one matmul / reduction over all steps after the loop, as in the
aten path. Written by hand rather than with ``torch.compile`` because the kernels are the point
of this module: each program handles one batch row as an (n_chunks, chunk_size) tile, so the
chunk sums of Eqs. 10-11's backward and the cumax scans are register reductions, and there is no
compile step beyond Triton's own (about a second per kernel, cached on disk).

The same arithmetic as :func:`onlstm.stack.onlstm_layer_reference` (tested against it, and run
by the tests on a CPU through Triton's interpreter, ``TRITON_INTERPRET=1``). Float32 only.

Layout of the gate rows (as in :class:`onlstm.cell.ONLSTMCell`): [master input logits (n),
master forget logits (n), output (H), cell (H), input (H), forget (H)], n = H // chunk_size.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from onlstm.fused import master_grad_from_distances


@triton.jit
def _tanh(x):
    return 2.0 * tl.sigmoid(2.0 * x) - 1.0


@triton.jit
def _forward_step(gates, c_prev, c_out, h_out, master, rows, hidden, n,
                  CHUNK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr):
    """One batch row of one step. ``gates`` holds the pre-activations on entry and is overwritten
    with what the backward needs: softmax probabilities in the logit slots, activations in the
    gate slots. Writes c_t, h_t and the master gates [1 - cumax(input), cumax(forget)]."""
    b = tl.program_id(0)
    row = gates + b * rows
    k = tl.arange(0, BLOCK_N)
    k_ok = k < n
    z_in = tl.load(row + k, mask=k_ok, other=float("-inf"))
    z_fg = tl.load(row + n + k, mask=k_ok, other=float("-inf"))
    p_in = tl.exp(z_in - tl.max(z_in, 0))
    p_in = p_in / tl.sum(p_in, 0)
    p_fg = tl.exp(z_fg - tl.max(z_fg, 0))
    p_fg = p_fg / tl.sum(p_fg, 0)
    master_in = 1.0 - tl.cumsum(p_in, 0)  # Eq. 8
    master_fg = tl.cumsum(p_fg, 0)  # Eq. 7
    overlap = master_in * master_fg  # Eq. 9
    tl.store(row + k, p_in, mask=k_ok)
    tl.store(row + n + k, p_fg, mask=k_ok)
    tl.store(master + b * 2 * n + k, master_in, mask=k_ok)
    tl.store(master + b * 2 * n + n + k, master_fg, mask=k_ok)

    j = k[:, None] * CHUNK + tl.arange(0, BLOCK_C)[None, :]  # element index in the hidden vector
    ok = k_ok[:, None] & (tl.arange(0, BLOCK_C)[None, :] < CHUNK)
    gate = row + 2 * n + j
    o = tl.sigmoid(tl.load(gate, mask=ok, other=0.0))
    g = _tanh(tl.load(gate + hidden, mask=ok, other=0.0))
    i = tl.sigmoid(tl.load(gate + 2 * hidden, mask=ok, other=0.0))
    f = tl.sigmoid(tl.load(gate + 3 * hidden, mask=ok, other=0.0))
    tl.store(gate, o, mask=ok)
    tl.store(gate + hidden, g, mask=ok)
    tl.store(gate + 2 * hidden, i, mask=ok)
    tl.store(gate + 3 * hidden, f, mask=ok)
    w = overlap[:, None]
    i_hat = i * w + (master_in[:, None] - w)  # Eq. 11
    f_hat = f * w + (master_fg[:, None] - w)  # Eq. 10
    c = f_hat * tl.load(c_prev + b * hidden + j, mask=ok, other=0.0) + i_hat * g  # Eq. 12
    tl.store(c_out + b * hidden + j, c, mask=ok)
    tl.store(h_out + b * hidden + j, o * _tanh(c), mask=ok)  # Eq. 5


@triton.jit
def _backward_step(gates, d_gates, c_prev, c_cur, dh, dc, d_master, rows, hidden, n,
                   HAS_D_MASTER: tl.constexpr, CHUNK: tl.constexpr, BLOCK_N: tl.constexpr,
                   BLOCK_C: tl.constexpr):
    """Gradient of one batch row of one step: reads dh_t and dc_t, writes the pre-activation
    gradient of the whole gate row and overwrites ``dc`` with dc_{t-1}. ``d_master`` is the
    distances' gradient as [d master_in, d master_forget] per row (only with HAS_D_MASTER)."""
    b = tl.program_id(0)
    row = gates + b * rows
    d_row = d_gates + b * rows
    k = tl.arange(0, BLOCK_N)
    k_ok = k < n
    p_in = tl.load(row + k, mask=k_ok, other=0.0)
    p_fg = tl.load(row + n + k, mask=k_ok, other=0.0)
    master_in = 1.0 - tl.cumsum(p_in, 0)
    master_fg = tl.cumsum(p_fg, 0)
    overlap = master_in * master_fg

    j = k[:, None] * CHUNK + tl.arange(0, BLOCK_C)[None, :]
    ok = k_ok[:, None] & (tl.arange(0, BLOCK_C)[None, :] < CHUNK)
    gate = row + 2 * n + j
    o = tl.load(gate, mask=ok, other=0.0)
    g = tl.load(gate + hidden, mask=ok, other=0.0)
    i = tl.load(gate + 2 * hidden, mask=ok, other=0.0)
    f = tl.load(gate + 3 * hidden, mask=ok, other=0.0)
    at = b * hidden + j
    cp = tl.load(c_prev + at, mask=ok, other=0.0)
    tc = _tanh(tl.load(c_cur + at, mask=ok, other=0.0))
    d_h = tl.load(dh + at, mask=ok, other=0.0)
    w = overlap[:, None]
    i_hat = i * w + (master_in[:, None] - w)
    f_hat = f * w + (master_fg[:, None] - w)

    d_c = d_h * o * (1.0 - tc * tc) + tl.load(dc + at, mask=ok, other=0.0)
    tl.store(dc + at, d_c * f_hat, mask=ok)  # dc_{t-1}
    d_i_hat = d_c * g
    d_f_hat = d_c * cp
    d_gate = d_row + 2 * n + j
    tl.store(d_gate, d_h * tc * o * (1.0 - o), mask=ok)
    tl.store(d_gate + hidden, d_c * i_hat * (1.0 - g * g), mask=ok)
    tl.store(d_gate + 2 * hidden, d_i_hat * w * i * (1.0 - i), mask=ok)
    tl.store(d_gate + 3 * hidden, d_f_hat * w * f * (1.0 - f), mask=ok)

    # i_hat = i w + master_in - w, f_hat = f w + master_fg - w, w = master_in master_fg
    d_w = tl.sum(tl.where(ok, d_i_hat * (i - 1.0) + d_f_hat * (f - 1.0), 0.0), 1)
    d_in = tl.sum(tl.where(ok, d_i_hat, 0.0), 1) + d_w * master_fg
    d_fg = tl.sum(tl.where(ok, d_f_hat, 0.0), 1) + d_w * master_in
    if HAS_D_MASTER:
        d_in += tl.load(d_master + b * 2)
        d_fg += tl.load(d_master + b * 2 + 1)
    # master_in = 1 - cumsum(p_in), master_fg = cumsum(p_fg): d p = reverse cumsum of d cumsum
    d_cum_in = tl.where(k_ok, -d_in, 0.0)
    d_cum_fg = tl.where(k_ok, d_fg, 0.0)
    d_p_in = tl.sum(d_cum_in, 0) - tl.cumsum(d_cum_in, 0) + d_cum_in
    d_p_fg = tl.sum(d_cum_fg, 0) - tl.cumsum(d_cum_fg, 0) + d_cum_fg
    # softmax backward: p * (d p - sum(p * d p))
    tl.store(d_row + k, p_in * (d_p_in - tl.sum(p_in * d_p_in, 0)), mask=k_ok)
    tl.store(d_row + n + k, p_fg * (d_p_fg - tl.sum(p_fg * d_p_fg, 0)), mask=k_ok)


def _meta(hidden: int, n: int) -> dict:
    chunk = hidden // n
    return {"CHUNK": chunk, "BLOCK_N": triton.next_power_of_2(n), "BLOCK_C": triton.next_power_of_2(chunk)}


def _forward(wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int):
    steps, batch, rows = wx.shape
    hidden = h0.size(-1)
    meta = _meta(hidden, n)
    gates = torch.add(wx, b_hh).contiguous()  # (T, B, rows): activated in place step by step
    w_t = w_hh.t()  # a transposed view: cuBLAS takes it without a copy
    hs = wx.new_empty(steps + 1, batch, hidden)
    cells = wx.new_empty(steps + 1, batch, hidden)
    master = wx.new_empty(steps, batch, 2, n)
    hs[0].copy_(h0)
    cells[0].copy_(c0)
    for t in range(steps):
        gates[t].addmm_(hs[t], w_t)
        _forward_step[(batch,)](gates[t], cells[t], cells[t + 1], hs[t + 1], master[t], rows, hidden, n, **meta)
    means = master.mean(-1)  # (T, B, 2)
    dist_input = means[..., 0].contiguous()
    dist_forget = torch.rsub(means[..., 1], 1.0)
    return hs, cells, dist_forget, dist_input, gates


class TritonONLSTMLayer(torch.autograd.Function):
    """Same signature and outputs as :class:`onlstm.fused._ONLSTMLayer`."""

    @staticmethod
    def forward(ctx, wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int):
        hs, cells, dist_f, dist_i, gates = _forward(wx, h0, c0, w_hh, b_hh, n)
        ctx.n = n
        ctx.save_for_backward(gates, hs, cells, w_hh)
        ctx.set_materialize_grads(False)
        return hs[1:], hs[-1].clone(), cells[-1].clone(), dist_f, dist_i

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last, d_dist_f, d_dist_i):
        gates, hs, cells, w_hh = ctx.saved_tensors
        n = ctx.n
        steps, batch, rows = gates.shape
        hidden = hs.size(-1)
        meta = _meta(hidden, n)
        d_gates = torch.empty_like(gates)
        d_master = master_grad_from_distances(d_dist_f, d_dist_i, n, gates)
        dh = gates.new_zeros(batch, hidden) if d_out is None else d_out[-1].clone()
        if d_h_last is not None:
            dh += d_h_last
        dc = gates.new_zeros(batch, hidden) if d_c_last is None else d_c_last.clone()
        for t in range(steps - 1, -1, -1):
            if t < steps - 1:  # dh_t = d output_t + d gates_{t+1} W_hh
                if d_out is None:
                    torch.mm(d_gates[t + 1], w_hh, out=dh)
                else:
                    torch.addmm(d_out[t], d_gates[t + 1], w_hh, out=dh)
            _backward_step[(batch,)](
                gates[t], d_gates[t], cells[t], cells[t + 1], dh, dc,
                d_master[t] if d_master is not None else dc,  # unused pointer without HAS_D_MASTER
                rows, hidden, n, HAS_D_MASTER=d_master is not None, **meta,
            )
        needs = ctx.needs_input_grad
        flat = d_gates.view(steps * batch, rows)
        d_h0 = torch.mm(d_gates[0], w_hh) if needs[1] else None
        d_w = torch.mm(flat.t(), hs[:-1].reshape(steps * batch, hidden)) if needs[3] else None
        d_b = flat.sum(0) if needs[4] else None
        return d_gates if needs[0] else None, d_h0, dc if needs[2] else None, d_w, d_b, None


def inference_forward(wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int):
    """No-grad forward: (hs, c_last, dist_forget, dist_input) like :func:`onlstm.fused._forward`."""
    hs, cells, dist_f, dist_i, _ = _forward(wx, h0, c0, w_hh, b_hh, n)
    return hs, cells[-1].clone(), dist_f, dist_i
