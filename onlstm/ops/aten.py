"""The layer op in PyTorch ops: the whole recurrence as one hand-written ``torch.autograd.Function``.

The fallback of every tensor the compiled kernels cannot take (float64, no C compiler, no
Triton), on any device. Same arithmetic as :func:`onlstm.stack.onlstm_layer_reference` (the
per-step loop over ``ONLSTMCell.step``, which names the paper's equations), but

* autograd records one node per layer instead of ~25 per time step, so the per-step cost is the
  hidden-to-hidden matmul plus a dozen pointwise kernels writing into preallocated buffers
  (``out=`` / in place), with no autograd bookkeeping and no per-step allocations;
* the forward keeps exactly what the backward needs (activated gates, cumax values, the gate
  mixes, cell states and hidden states), one (time, ...) buffer each;
* the backward loop only computes the pre-activation gradients ``dgates_t`` and the recurrent
  ``dh``/``dc``; the weight gradient ``dW_hh = sum_t dgates_t^T h_{t-1}`` and the bias gradient
  are one large matmul / reduction after the loop, and ``d wx`` is handed to autograd so the
  input projection's gradients are also one matmul over all steps.

Not a registered op (unlike the C and Triton kernels): it is made of aten ops, each of which the
profiler and ``torch.compile`` already see. Why hand-written and not ``torch.compile``: compiling
the whole stack took minutes on a CPU, this path starts at once (docs/performance.md).

The gate rows' input and forget blocks are adjacent (layout: :mod:`onlstm.ops.shared`), so they
are handled as one "pair" (B, 2, n, chunk) view, matched by the master gates as a (B, 2, n) pair
[input, forget].
"""

from __future__ import annotations

import torch
from torch import Tensor

from onlstm.ops.shared import RepeatedMatmul, master_grad_from_distances

_sigmoid_backward_out = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward_out = torch.ops.aten.tanh_backward.grad_input


def recurrence(wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int, keep: bool):
    """Run the recurrence. With ``keep`` every per-step intermediate lands in a (time, ...) buffer
    for the backward; without it (inference) one-step scratch buffers are reused."""
    steps, batch, _ = wx.shape
    hidden = h0.size(-1)
    cs = hidden // n
    opts = {"dtype": wx.dtype, "device": wx.device}
    kept = steps if keep else 1

    def per_step(buf: Tensor) -> list[Tensor]:
        # unbind makes all per-step views in one C++ call; without ``keep`` every step reuses row 0
        return list(buf.unbind(0)) if keep else [buf[0]] * steps

    # tanh(x) = 2 sigmoid(2x) - 1. On CPU torch.tanh / exp-based kernels (MKL VML, softmax) were
    # several times slower than sigmoid at these sizes (docs/performance.md) and open parallel regions that stall when
    # other processes hold the cores; so the cell-gate rows are doubled once here (exact: a power
    # of two) and one sigmoid kernel per step covers all four gates.
    cell_rows = slice(2 * n + hidden, 2 * n + 2 * hidden)
    gates = torch.add(wx, b_hh)  # (T, B, rows); activated in place step by step
    gates[..., cell_rows] *= 2.0
    w_fwd = w_hh.clone()
    w_fwd[cell_rows] *= 2.0
    recurrent = RepeatedMatmul(w_fwd, batch)  # h_{t-1} W_hh^T
    # [softmax, cumax] of the master logits, each (2, n) for [input, forget]; softmax kept for backward
    prob_cumax = torch.empty(kept, batch, 2, 2, n, **opts)
    master = torch.empty(steps, batch, 2, n, **opts)  # [master input, master forget] gates
    overlap = torch.empty(kept, batch, n, **opts)  # their overlap w
    mix = torch.empty(kept, batch, 2, hidden, **opts)  # the ON-LSTM [input, forget] gates i^, f^
    # cand_cell[t] = [tanh(cell gate)_t, c_{t-1}]: the two factors multiplied by mix[t] in the cell update,
    # stored side by side so the backward gets d(mix) with a single multiply.
    cand_cell = torch.empty(steps + 1 if keep else 1, batch, 2, hidden, **opts)
    tanh_c = torch.empty(kept, batch, hidden, **opts)
    hs = torch.empty(steps + 1, batch, hidden, **opts)  # [h0, h1, ..., hT]; hs[1:] is the output
    row_max = torch.empty(batch, 2, 1, **opts)
    exp_cumsum = torch.empty(batch, 2, 2, n, **opts)  # [e, cumsum(e)]: one division normalises both
    exps, cumsum, total = exp_cumsum[:, :, 0], exp_cumsum[:, :, 1], exp_cumsum[:, :, 1:, -1:]
    mix_minus = torch.empty(batch, 2, n, **opts)
    in_times_cand = torch.empty(batch, hidden, **opts)
    # master = offset + sign * cumsum(probs) computes 1 - cumsum for the input half in one kernel
    offset = torch.tensor([[1.0], [0.0]], **opts)
    sign = torch.tensor([[-1.0], [1.0]], **opts)
    minus_one = torch.tensor(-1.0, **opts)

    hs[0].copy_(h0)
    cand_cell[0, :, 1].copy_(c0)
    # gates holds every step's input projection, so its views are per step even without ``keep``
    gates_v = gates.unbind(0)
    logits_v = gates[..., : 2 * n].unflatten(-1, (2, n)).unbind(0)
    out_v = gates[..., 2 * n : 2 * n + hidden].unbind(0)
    cell_v = gates[..., cell_rows].unbind(0)
    sig_v = gates[..., 2 * n :].unbind(0)  # output, (cell), input, forget: one sigmoid kernel
    pair_v = gates[..., 2 * n + 2 * hidden :].unflatten(-1, (2, n, cs)).unbind(0)
    pc_v, master_v, overlap_v = per_step(prob_cumax), list(master.unbind(0)), per_step(overlap)
    mix_v, tanh_c_v, hs_v = per_step(mix), per_step(tanh_c), list(hs.unbind(0))
    if keep:
        cc_v = list(cand_cell.unbind(0))
    else:
        cc_v = [cand_cell[0]] * (steps + 1)  # c_t overwrites c_{t-1} element-wise: safe

    for t in range(steps):
        cc, mx, ov, m = cc_v[t], mix_v[t], overlap_v[t], master_v[t]
        gates_v[t].add_(recurrent(hs_v[t]))
        sig_v[t].sigmoid_()
        torch.add(minus_one, cell_v[t], alpha=2, out=cc[:, 0])  # tanh of the cell gate
        # cumax = cumsum(softmax(z)) = cumsum(e) / sum(e), e = exp(z - max z); the last entry of
        # cumsum(e) is sum(e). Written out because the softmax kernels are slow here (see above).
        lg = logits_v[t]
        torch.amax(lg, -1, keepdim=True, out=row_max)
        torch.sub(lg, row_max, out=exps)
        exps.exp_()
        torch.cumsum(exps, -1, out=cumsum)
        torch.div(exp_cumsum, total, out=pc_v[t])
        torch.addcmul(offset, sign, pc_v[t][:, :, 1], out=m)
        torch.mul(m[:, 0], m[:, 1], out=ov)
        torch.sub(m, ov[:, None], out=mix_minus)
        # i^ and f^ at once: sigmoid(gate) * w + (master - w)
        torch.addcmul(mix_minus[..., None], pair_v[t], ov[:, None, :, None], out=mx.unflatten(-1, (n, cs)))
        torch.mul(mx[:, 0], cc[:, 0], out=in_times_cand)
        c_new = cc_v[t + 1][:, 1]
        torch.addcmul(in_times_cand, mx[:, 1], cc[:, 1], out=c_new)  # the cell update
        tc = tanh_c_v[t]
        torch.mul(c_new, 2.0, out=tc)
        tc.sigmoid_()
        torch.add(minus_one, tc, alpha=2, out=tc)  # tanh(c)
        torch.mul(out_v[t], tanh_c_v[t], out=hs_v[t + 1])  # h_t = o_t tanh(c_t)

    means = master.mean(-1)  # (T, B, 2): all steps at once, outside the loop
    dist_input = means[..., 0].contiguous()
    dist_forget = torch.rsub(means[..., 1], 1.0)
    c_last = cc_v[steps][:, 1].clone()
    saved = (gates, prob_cumax[:, :, :, 0], master, overlap, mix, cand_cell, tanh_c, hs, w_hh)
    return hs, c_last, dist_forget, dist_input, saved


class ONLSTMLayerFunction(torch.autograd.Function):
    """(wx, h0, c0, w_hh, b_hh, n) -> (output, h_last, c_last, distance_forget, distance_input)."""

    @staticmethod
    def forward(ctx, wx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor, n: int):
        hs, c_last, dist_f, dist_i, saved = recurrence(wx, h0, c0, w_hh, b_hh, n, keep=True)
        ctx.n = n
        ctx.save_for_backward(*saved)
        # None for unused outputs (usually the distances): their terms are skipped, not zero-filled
        ctx.set_materialize_grads(False)
        return hs[1:], hs[-1].clone(), c_last, dist_f, dist_i

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last, d_dist_f, d_dist_i):
        gates, probs, master, overlap, mix, cand_cell, tanh_c, hs, w_hh = ctx.saved_tensors
        n = ctx.n
        steps, batch, rows = gates.shape
        hidden = hs.size(-1)
        cs = hidden // n
        opts = {"dtype": gates.dtype, "device": gates.device}

        d_gates = torch.empty_like(gates)
        d_logits_v = d_gates[..., : 2 * n].unflatten(-1, (2, n)).unbind(0)
        d_sig_v = d_gates[..., 2 * n :].unbind(0)
        sig_v = gates[..., 2 * n :].unbind(0)
        out_gate_v = gates[..., 2 * n : 2 * n + hidden].unbind(0)
        pair_v = gates[..., 2 * n + 2 * hidden :].unflatten(-1, (2, n, cs)).unbind(0)
        probs_v, master_v, overlap_v = probs.unbind(0), master.unbind(0), overlap.unbind(0)
        mix_v, cc_v, tanh_c_v = mix.unbind(0), cand_cell.unbind(0), tanh_c.unbind(0)

        d_master_dist = master_grad_from_distances(d_dist_f, d_dist_i, n, gates)
        if d_master_dist is not None:
            d_master_dist = d_master_dist.unsqueeze(-1)  # (T, B, 2, 1): broadcast over the chunks
        d_out_v = d_out.unbind(0) if d_out is not None else None

        dh = torch.zeros(batch, hidden, **opts) if d_out is None else d_out[-1].clone()
        if d_h_last is not None:
            dh += d_h_last
        dc = torch.zeros(batch, hidden, **opts) if d_c_last is None else d_c_last.clone()
        tmp = torch.empty(batch, hidden, **opts)
        d_c_total = torch.empty(batch, hidden, **opts)
        d_mix = torch.empty(batch, 2, hidden, **opts)
        tmp_pair = torch.empty(batch, 2, n, cs, **opts)
        # Gradients w.r.t. the four sigmoid outputs [o, cell, i, f], turned into pre-activation
        # gradients by ONE sigmoid_backward: the cell slot holds s = sigmoid(2x) (tanh(x) = 2s - 1),
        # whose derivative 4 s (1 - s) equals 1 - tanh(x)^2, so it gets 4 * d tanh.
        d_sig = torch.empty(batch, 4 * hidden, **opts)
        d_sig_out, d_sig_cell = d_sig[:, :hidden], d_sig[:, hidden : 2 * hidden]
        d_sig_pair = d_sig[:, 2 * hidden :].unflatten(-1, (2, n, cs))
        zero = torch.zeros((), **opts)
        d_overlap = torch.empty(batch, n, **opts)
        d_overlap_pair = torch.empty(batch, 2, n, **opts)
        d_master = torch.empty(batch, 2, n, **opts)
        d_cum = torch.empty(batch, 2, n, **opts)
        d_probs_sum = torch.empty(batch, 2, 1, **opts)
        # d(cumsum) = sign * d(master): master_input = 1 - cumsum, master_forget = cumsum
        sign = torch.tensor([[-1.0], [1.0]], **opts)
        back = RepeatedMatmul(w_hh.t().contiguous(), batch)  # d gates_t W_hh

        for t in range(steps - 1, -1, -1):
            so, tc, mx, cc, ov, m = out_gate_v[t], tanh_c_v[t], mix_v[t], cc_v[t], overlap_v[t], master_v[t]
            sig_pair = pair_v[t]
            # h = o * tanh(c)
            torch.mul(dh, so, out=tmp)
            _tanh_backward_out(tmp, tc, grad_input=d_c_total)
            d_c_total += dc
            torch.mul(dh, tc, out=d_sig_out)
            # c = mix_in * tanh(cell) + mix_forget * c_prev
            torch.mul(d_c_total[:, None], cc, out=d_mix)  # [d mix_in, d mix_forget]
            torch.mul(d_c_total, mx[:, 1], out=dc)  # d c_{t-1}
            torch.addcmul(zero, d_c_total, mx[:, 0], value=4.0, out=d_sig_cell)
            # mix = sigmoid(gate) * w + master - w, w = master_in * master_forget
            d_mix4 = d_mix.unflatten(-1, (n, cs))
            torch.mul(d_mix4, sig_pair, out=tmp_pair)
            tmp_pair -= d_mix4
            # sum over the chunk, then over both gates (one sum over dims (1, 3) is ~2x slower)
            torch.sum(tmp_pair, -1, out=d_overlap_pair)
            torch.add(d_overlap_pair[:, 0], d_overlap_pair[:, 1], out=d_overlap)
            torch.mul(d_mix4, ov[:, None, :, None], out=d_sig_pair)
            _sigmoid_backward_out(d_sig, sig_v[t], grad_input=d_sig_v[t])
            torch.sum(d_mix4, dim=-1, out=d_master)
            # d master_in += d_w * master_forget and vice versa
            torch.addcmul(d_master[:, 0], d_overlap, m[:, 1], out=d_master[:, 0])
            torch.addcmul(d_master[:, 1], d_overlap, m[:, 0], out=d_master[:, 1])
            if d_master_dist is not None:
                d_master += d_master_dist[t]
            # cumax backward: d probs = reverse cumsum of d cumsum, written as d - cumsum(d), which
            # differs by a per-row constant that the softmax backward cancels.
            d_master *= sign
            torch.cumsum(d_master, -1, out=d_cum)
            torch.sub(d_master, d_cum, out=d_cum)
            # softmax backward p * (d - sum(p * d)), written out like the forward
            p = probs_v[t]
            d_cum *= p
            torch.sum(d_cum, -1, keepdim=True, out=d_probs_sum)
            torch.addcmul(d_cum, p, d_probs_sum, value=-1, out=d_logits_v[t])
            # d h_{t-1} = d output_{t-1} + d gates_t @ W_hh
            if t > 0:
                if d_out_v is None:
                    dh.copy_(back(d_gates[t]))
                else:
                    torch.add(d_out_v[t - 1], back(d_gates[t]), out=dh)

        needs = ctx.needs_input_grad
        flat = d_gates.view(steps * batch, rows)
        d_h0 = back(d_gates[0]) if needs[1] else None
        d_w = torch.mm(flat.t(), hs[:-1].reshape(steps * batch, hidden)) if needs[3] else None
        d_b = flat.sum(0) if needs[4] else None
        return d_gates if needs[0] else None, d_h0, dc if needs[2] else None, d_w, d_b, None
