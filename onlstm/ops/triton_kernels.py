"""The layer op for GPUs: one Triton kernel per time step for everything but the matmul.

On a GPU the per-step loop of PyTorch ops is bound by kernel launches: dozens of pointwise
kernels per step forward and backward, each doing microseconds of work. Here each step is

* forward: one cuBLAS ``addmm`` (``h_{t-1} W_hh^T`` into the step's gate row) and ONE Triton
  kernel computing the cumax master gates, the four gate nonlinearities, the overlap, the ON-LSTM
  input and forget gates, the cell update (each named in ``ONLSTMCell.step``) and
  ``h_t = o * tanh(c_t)``;
* backward: ONE Triton kernel giving the pre-activation gradient of every gate row (the cumax
  and softmax backward included) and ``dc_{t-1}``, then one ``addmm`` for ``dh_{t-1}``.

Weight and bias gradients are one matmul / reduction over all steps after the loop, as in the
CPU path. Both halves are registered ops (``torch.library.triton_op``, so ``torch.compile`` can
trace into the kernels): ``onlstm::triton_layer_forward``, whose autograd formula calls
``onlstm::triton_layer_backward``. Written by hand rather than with ``torch.compile`` because the kernels are the point
of this module: each program handles one batch row as an (n_chunks, chunk_size) tile, so the
chunk sums of the gate mixes' backward and the cumax scans are register reductions, and there is no
compile step beyond Triton's own (about a second per kernel, cached on disk).

The same arithmetic as :func:`onlstm.stack.onlstm_layer_reference` (tested against it, and run
by the tests on a CPU through Triton's interpreter, ``TRITON_INTERPRET=1``). Float32 only. Gate
row layout: :mod:`onlstm.ops.shared`.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.library import wrap_triton

from onlstm.ops.shared import LayerResult, check_tensor, layer_sizes, master_grad_from_distances


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
    master_in = 1.0 - tl.cumsum(p_in, 0)  # the gate names: onlstm/cell.py
    master_fg = tl.cumsum(p_fg, 0)
    overlap = master_in * master_fg  # w
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
    i_hat = i * w + (master_in[:, None] - w)
    f_hat = f * w + (master_fg[:, None] - w)
    c = f_hat * tl.load(c_prev + b * hidden + j, mask=ok, other=0.0) + i_hat * g  # the cell update
    tl.store(c_out + b * hidden + j, c, mask=ok)
    tl.store(h_out + b * hidden + j, o * _tanh(c), mask=ok)  # h_t


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


_FORWARD = "onlstm::triton_layer_forward"
_BACKWARD = "onlstm::triton_layer_backward"


def _check_forward(wx, h0, c0, w_hh, b_hh, n_chunk) -> tuple[int, int, int, int]:
    steps, batch, hidden, rows = layer_sizes(_FORWARD, wx, h0, n_chunk)
    device = wx.device.type
    check_tensor(_FORWARD, "wx", wx, (steps, batch, rows), device=device)
    check_tensor(_FORWARD, "h0", h0, (batch, hidden), device=device)
    check_tensor(_FORWARD, "c0", c0, (batch, hidden), device=device)
    check_tensor(_FORWARD, "w_hh", w_hh, (rows, hidden), device=device)
    check_tensor(_FORWARD, "b_hh", b_hh, (rows,) if b_hh.dim() else (), device=device)
    return steps, batch, hidden, rows


@torch.library.triton_op(_FORWARD, mutates_args=())
def triton_layer_forward(
    wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n_chunk: int
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Run a layer from its input projection ``wx`` (T, B, R) (without b_hh), h0 and c0 (B, H),
    w_hh (R, H), b_hh (R,) or a 0-d zero. Returns (hs = [h_0, ..., h_T], c_T, distance_forget,
    distance_input, then what the backward reads: the activated gates and c_0..c_T)."""
    steps, batch, hidden, rows = _check_forward(wx, h0, c0, w_hh, b_hh, n_chunk)
    n = n_chunk
    meta = _meta(hidden, n)
    gates = torch.add(wx, b_hh).contiguous()  # (T, B, rows): activated in place step by step
    w_t = w_hh.t()  # a transposed view: cuBLAS takes it without a copy
    hs = wx.new_empty(steps + 1, batch, hidden)
    cells = wx.new_empty(steps + 1, batch, hidden)
    master = wx.new_empty(steps, batch, 2, n)
    hs[0].copy_(h0)
    cells[0].copy_(c0)
    step = wrap_triton(_forward_step)
    for t in range(steps):
        gates[t].addmm_(hs[t], w_t)
        step[(batch,)](gates[t], cells[t], cells[t + 1], hs[t + 1], master[t], rows, hidden, n, **meta)
    means = master.mean(-1)  # (T, B, 2)
    dist_input = means[..., 0].contiguous()
    dist_forget = torch.rsub(means[..., 1], 1.0)
    return hs, cells[-1].clone(), dist_forget, dist_input, gates, cells


@torch.library.triton_op(_BACKWARD, mutates_args=())
def triton_layer_backward(
    d_hs: Tensor | None,
    d_c_last: Tensor | None,
    d_dist_f: Tensor | None,
    d_dist_i: Tensor | None,
    gates: Tensor,
    hs: Tensor,
    cells: Tensor,
    w_hh: Tensor,
    n_chunk: int,
    needs: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The gradients (d_wx, d_h0, d_c0, d_w_hh, d_b_hh) of :func:`triton_layer_forward` from those
    of its four differentiable outputs (None: unused). ``needs`` (five flags) says which to
    compute; the others come back empty."""
    steps, batch, hidden, rows = layer_sizes(_BACKWARD, gates, hs[0], n_chunk)
    device = gates.device.type
    for name, t, shape in (
        ("gates", gates, (steps, batch, rows)), ("hs", hs, (steps + 1, batch, hidden)),
        ("cells", cells, (steps + 1, batch, hidden)),
    ):  # fmt: skip
        check_tensor(_BACKWARD, name, t, shape, device=device, contiguous=True)
    check_tensor(_BACKWARD, "w_hh", w_hh, (rows, hidden), device=device)
    for name, t, shape in (
        ("d_hs", d_hs, (steps + 1, batch, hidden)), ("d_c_last", d_c_last, (batch, hidden)),
        ("d_dist_f", d_dist_f, (steps, batch)), ("d_dist_i", d_dist_i, (steps, batch)),
    ):  # fmt: skip
        if t is not None:
            check_tensor(_BACKWARD, name, t, shape, device=device)
    if len(needs) != 5:
        raise ValueError(f"{_BACKWARD}: needs must hold 5 flags (wx, h0, c0, w_hh, b_hh), got {len(needs)}")
    n = n_chunk
    meta = _meta(hidden, n)
    d_gates = torch.empty_like(gates)
    d_master = master_grad_from_distances(d_dist_f, d_dist_i, n, gates)
    dh = gates.new_zeros(batch, hidden) if d_hs is None else d_hs[-1].clone()
    dc = gates.new_zeros(batch, hidden) if d_c_last is None else d_c_last.clone()
    step = wrap_triton(_backward_step)
    for t in range(steps - 1, -1, -1):
        if t < steps - 1:  # dh_t = d output_t + d gates_{t+1} W_hh
            if d_hs is None:
                torch.mm(d_gates[t + 1], w_hh, out=dh)
            else:
                torch.addmm(d_hs[t + 1], d_gates[t + 1], w_hh, out=dh)
        step[(batch,)](
            gates[t], d_gates[t], cells[t], cells[t + 1], dh, dc,
            d_master[t] if d_master is not None else dc,  # unused pointer without HAS_D_MASTER
            rows, hidden, n, HAS_D_MASTER=d_master is not None, **meta,
        )  # fmt: skip
    empty = gates.new_empty(0)
    flat = d_gates.view(steps * batch, rows)
    d_h0 = empty.clone()
    if needs[1]:
        d_h0 = torch.mm(d_gates[0], w_hh)
        if d_hs is not None:
            d_h0 += d_hs[0]
    d_w = torch.mm(flat.t(), hs[:-1].reshape(steps * batch, hidden)) if needs[3] else empty.clone()
    d_b = flat.sum(0) if needs[4] else empty.clone()
    return d_gates if needs[0] else empty, d_h0, dc if needs[2] else empty.clone(), d_w, d_b


def _forward_setup(ctx, inputs, output) -> None:
    ctx.n_chunk = inputs[-1]
    hs, _, _, _, gates, cells = output
    ctx.save_for_backward(gates, hs, cells, inputs[3])
    ctx.mark_non_differentiable(gates, cells)  # saved for the backward only
    ctx.set_materialize_grads(False)


def _forward_backward(ctx, d_hs, d_c_last, d_dist_f, d_dist_i, *_):
    needs = list(ctx.needs_input_grad[:5])
    grads = torch.ops.onlstm.triton_layer_backward(d_hs, d_c_last, d_dist_f, d_dist_i, *ctx.saved_tensors, ctx.n_chunk, needs)
    return (*(g if need else None for g, need in zip(grads, needs)), None)


triton_layer_forward.register_autograd(_forward_backward, setup_context=_forward_setup)


def layer(wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int) -> LayerResult:
    """A whole layer through :func:`triton_layer_forward` (training and inference alike: the
    buffers it keeps are the ones the forward needs anyway)."""
    hs, c_last, dist_f, dist_i, _, _ = torch.ops.onlstm.triton_layer_forward(wx, h0, c0, w_hh, b_hh, n)
    return LayerResult(hs[1:], hs[-1].clone(), c_last, dist_f, dist_i)
