"""The layer op for float32 CPU tensors: per time step one matmul and one call into the compiled
step kernels (``csrc/onlstm_cpu.c``, built by :mod:`onlstm.ops.cpu_build`), as registered torch ops.

Registered ops (``torch.ops.onlstm.*``; each with a fake implementation for ``torch.compile`` /
meta tensors, checked by ``torch.library.opcheck`` in tests/test_ops_cpu.py):

* ``cpu_layer_forward(x, w_ih, bias, h0, c0, w_hh, n_chunk, keep)``: the input projection and
  the recurrence; with ``keep`` also what the backward needs. Its autograd formula calls
* ``cpu_layer_backward(...)``: every gradient, the large products after the step loop;
* ``transpose(x)``: ``x.t()`` as a contiguous matrix, by the C blocked transpose;
* ``hashed_dropconnect(weight, keep, seed)``: ``weight * mask`` with the mask hashed from
  ``seed``; its autograd formula masks the gradient with the same mask.

Every argument is checked (dtype, device, shape, contiguity: :func:`onlstm.ops.shared.check_tensor`)
in Python before a pointer reaches C, so a wrong shape is a ValueError, not memory corruption.

Same structure as :class:`onlstm.ops.aten.ONLSTMLayerFunction` (the forward keeps what the
backward needs, the weight gradients are products over all steps after the backward loop), with
three changes:

* the ~40 small PyTorch kernels of each step's pointwise part, and their dispatch, are one C
  call;
* the input projection happens inside the layer, so that it, the input gradient and both weight
  gradients can run as oneDNN matmuls when they are large (:func:`linear`);
* the transposed operands those need are copied by the C kernels' blocked transpose
  (:func:`transposed`).

Kept per step for the backward: the activated gate row (T, B, R), the master gates' softmax and
cumax (T, B, 2, n) each, the cell states c_0..c_T, tanh(c_t) and h_0..h_T. The overlap and the
two mixes (``ONLSTMCell.step`` names their equations) are recomputed in the backward (cheaper
than storing them). docs/performance.md says why each piece is there, with its measurement.

Why ctypes and not a ``torch.utils.cpp_extension`` build: docs/performance.md ("Why plain C and
ctypes"): a first use that compiles in about half a second instead of about ten, and the same
machine code (hence the same float32 rounding) as the experiments run so far.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from onlstm.ops import cpu_build
from onlstm.ops.shared import (
    SWITCHES,
    LayerResult,
    RepeatedMatmul,
    check_tensor,
    layer_sizes,
    master_grad_from_distances,
    onednn_available,
)


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
# (MKL): oneDNN was faster for the paper size's large products (reorder and transposing copies
# included), MKL as fast or faster below ~1e9 multiply-adds and needs no transposed copies
# (docs/performance.md, benchmarks/results/large_matmul_cpu.md).
ONEDNN_MIN_MACS = 1e9
# The backward's per-step product d gates_t W_hh uses oneDNN's prepacked matmul from this many
# weights on (the paper's layers 1-2), torch.mm below: the prepacking needs W_hh^T copied and
# reordered, which pays only for large weights (benchmarks/results/step_matmul_cpu.md).
PREPACK_BACKWARD_MIN_WEIGHTS = 1_000_000


def uses_onednn(m: int, k: int, n: int) -> bool:
    return m * k * n >= ONEDNN_MIN_MACS and onednn_available()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T (+ bias)``: oneDNN's matmul for large products, torch.mm for small ones."""
    if uses_onednn(x.size(0), x.size(1), weight.size(0)):
        return RepeatedMatmul(weight, x.size(0), bias)(x)
    return torch.mm(x, weight.t()) if bias is None else torch.addmm(bias, x, weight.t())


def transposed(x: Tensor) -> Tensor:
    """``x.t()`` as a contiguous matrix: the C blocked transpose (:func:`transpose`) when the
    kernels are built and the ``c_transpose`` switch is on, PyTorch's strided copy otherwise."""
    if SWITCHES.c_transpose and cpu_build.library() is not None:
        return torch.ops.onlstm.transpose(x)
    return x.t().contiguous()


def linear_t(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight``: oneDNN's matmul of the transposed copy for large products, torch.mm (which
    takes the transposed view without a copy) for small ones."""
    if uses_onednn(x.size(0), x.size(1), weight.size(1)):
        return RepeatedMatmul(transposed(weight), x.size(0))(x)
    return torch.mm(x, weight)


def weight_gradient(d_gates_t: Callable[[], Tensor], d_gates: Tensor, inputs: Tensor) -> Tensor:
    """``d_gates^T @ inputs`` summed over all steps; ``d_gates_t()`` gives the transposed copy
    (made once, shared by both weight gradients) that oneDNN needs."""
    rows, (steps_batch, features) = d_gates.size(1), inputs.shape
    if uses_onednn(rows, steps_batch, features):
        return linear_t(d_gates_t(), inputs)
    return torch.mm(d_gates.t(), inputs)


# ----------------------------------------------------------------------------- transpose
@torch.library.custom_op("onlstm::transpose", mutates_args=())
def transpose(x: Tensor) -> Tensor:
    """``x.t().contiguous()`` for a 2-D float32 CPU tensor, by the C blocked transpose (8 x 8
    register blocks in 128 x 128 tiles, rows split over ``torch.get_num_threads()`` threads for
    large matrices)."""
    check_tensor("onlstm::transpose", "x", x, (-1, -1))
    x = x.contiguous()
    out = torch.empty(x.size(1), x.size(0))
    threads = torch.get_num_threads()
    cpu_build.require().onlstm_transpose(x.size(0), x.size(1), x.data_ptr(), out.data_ptr(), threads)
    return out


@transpose.register_fake
def _(x: Tensor) -> Tensor:
    check_tensor("onlstm::transpose", "x", x, (-1, -1))
    return x.new_empty(x.size(1), x.size(0))


# ----------------------------------------------------------------------------- DropConnect
@torch.library.custom_op("onlstm::hashed_dropconnect", mutates_args=())
def hashed_dropconnect(weight: Tensor, keep: float, seed: int) -> Tensor:
    """``weight * mask`` for a float32 CPU tensor, each entry kept with probability ``keep``
    (kept entries not rescaled), ``mask_i`` a hash of ``(seed, i)`` over the row-major entries.

    A counter-based hash instead of a random stream: the backward regenerates the same mask from
    the seed (nothing stored), and the C loop vectorises. Same distribution as
    ``rand_like(weight) < keep`` (tested: tests/test_ops_cpu.py)."""
    check_tensor("onlstm::hashed_dropconnect", "weight", weight, [-1] * weight.dim())
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"onlstm::hashed_dropconnect: keep must be in [0, 1], got {keep}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"onlstm::hashed_dropconnect: seed must be in [0, 2**63), got {seed}")
    weight = weight.contiguous()
    out = torch.empty_like(weight)
    cpu_build.require().onlstm_dropconnect(weight.numel(), seed, keep, weight.data_ptr(), out.data_ptr())
    return out


@hashed_dropconnect.register_fake
def _(weight: Tensor, keep: float, seed: int) -> Tensor:
    return torch.empty_like(weight, memory_format=torch.contiguous_format)


def _dropconnect_setup(ctx, inputs, output) -> None:
    _, ctx.keep, ctx.seed = inputs


def _dropconnect_backward(ctx, grad: Tensor):
    return torch.ops.onlstm.hashed_dropconnect(grad, ctx.keep, ctx.seed), None, None


hashed_dropconnect.register_autograd(_dropconnect_backward, setup_context=_dropconnect_setup)


def hashed_mask_applies(weight: Tensor) -> bool:
    """Whether DropConnect on ``weight`` draws its mask with :func:`hashed_dropconnect`: contiguous
    float32 CPU weights, the kernels built, the ``hashed_dropconnect`` switch on."""
    cpu32 = weight.device.type == "cpu" and weight.dtype == torch.float32 and weight.is_contiguous()
    return cpu32 and SWITCHES.hashed_dropconnect and cpu_build.library() is not None


def dropconnect(weight: Tensor, keep: float) -> Tensor:
    """:func:`hashed_dropconnect` with a seed from PyTorch's generator, so that
    ``torch.manual_seed`` makes runs repeat."""
    seed = int(torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64))
    return torch.ops.onlstm.hashed_dropconnect(weight, keep, seed)


# ----------------------------------------------------------------------------- subnormals
@contextlib.contextmanager
def subnormals_flushed(lib) -> Iterator[None]:
    """Subnormal floats off (flush to zero) in this thread while the block runs, then the caller's
    mode again: a trained model's tiny gradients and saturated gates otherwise make subnormal
    values in the step kernels and the matmuls, where x86 CPUs take a slow path (a trained logic
    model's training step several times slower than its untrained twin: docs/performance.md).
    Values below 1.2e-38 become 0. Other threads (more than one intra-op thread) keep their mode."""
    old = lib.onlstm_subnormals_off()
    try:
        yield
    finally:
        lib.onlstm_restore_fp_mode(old)


def runs_without_subnormals(op):
    """``op``'s body under :func:`subnormals_flushed` (the schema is read from ``op``'s signature)."""

    @functools.wraps(op)
    def run(*args, **kwargs):
        with subnormals_flushed(cpu_build.require()):
            return op(*args, **kwargs)

    return run


# ----------------------------------------------------------------------------- the layer
_FORWARD = "onlstm::cpu_layer_forward"
_BACKWARD = "onlstm::cpu_layer_backward"


def _check_forward(x, w_ih, bias, h0, c0, w_hh, n_chunk) -> tuple[int, int, int, int]:
    steps, batch, hidden, rows = layer_sizes(_FORWARD, x, h0, n_chunk)
    check_tensor(_FORWARD, "x", x, (steps, batch, -1))
    check_tensor(_FORWARD, "w_ih", w_ih, (rows, x.size(2)))
    check_tensor(_FORWARD, "bias", bias, (rows,))
    check_tensor(_FORWARD, "h0", h0, (batch, hidden))
    check_tensor(_FORWARD, "c0", c0, (batch, hidden))
    check_tensor(_FORWARD, "w_hh", w_hh, (rows, hidden))
    return steps, batch, hidden, rows


@torch.library.custom_op(_FORWARD, mutates_args=())
@runs_without_subnormals
def cpu_layer_forward(
    x: Tensor, w_ih: Tensor, bias: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, n_chunk: int, keep: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Run a layer: x (T, B, I), w_ih (R, I), bias = b_ih + b_hh (R,), h0 and c0 (B, H), w_hh
    (R, H), R = 4H + 2 n_chunk. Returns (hs = [h_0, ..., h_T], c_T, distance_forget,
    distance_input, then what the backward reads: gates, probs, master, cells, tanh_c). Without
    ``keep`` (inference) the per-step buffers are one step long and the backward cannot run."""
    steps, batch, hidden, _ = _check_forward(x, w_ih, bias, h0, c0, w_hh, n_chunk)
    lib = cpu_build.require()
    n = n_chunk
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
    recurrent = RepeatedMatmul(w_hh, batch)
    at_gates, at_master, at_h = _address(gates), _address(master), _address(hs)
    at_probs, at_cell, at_tanh = _address(probs, keep), _address(cells, keep), _address(tanh_c, keep)
    hs_v = hs.unbind(0)
    for t in range(steps):
        rec = recurrent(hs_v[t])  # (B, R), contiguous; kept referenced until the kernel has read it
        lib.onlstm_forward_step(
            batch, n, hidden // n, at_gates(t), rec.data_ptr(), bias.data_ptr(), at_cell(t), at_probs(t), at_master(t),
            at_cell(t + 1), at_tanh(t), at_h(t + 1), scratch.data_ptr(),
        )  # fmt: skip
    means = master.mean(-1)  # (T, B, 2)
    dist_input = means[..., 0].contiguous()
    dist_forget = torch.rsub(means[..., 1], 1.0)
    c_last = cells[-1].clone()
    return hs, c_last, dist_forget, dist_input, gates, probs, master, cells, tanh_c


@cpu_layer_forward.register_fake
def _(x, w_ih, bias, h0, c0, w_hh, n_chunk, keep):
    steps, batch, hidden, rows = _check_forward(x, w_ih, bias, h0, c0, w_hh, n_chunk)
    kept = steps if keep else 1
    new = x.new_empty
    return (
        new(steps + 1, batch, hidden), new(batch, hidden), new(steps, batch), new(steps, batch),
        new(steps, batch, rows), new(kept, batch, 2, n_chunk), new(steps, batch, 2, n_chunk),
        new(steps + 1 if keep else 1, batch, hidden), new(kept, batch, hidden),
    )  # fmt: skip


def _check_backward(d_hs, d_c_last, d_dist_f, d_dist_i, x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh, n_chunk):
    steps, batch, hidden, rows = layer_sizes(_BACKWARD, x, hs[0], n_chunk)
    n = n_chunk
    check_tensor(_BACKWARD, "x", x, (steps, batch, -1))
    check_tensor(_BACKWARD, "w_ih", w_ih, (rows, x.size(2)))
    for name, t, shape in (
        ("gates", gates, (steps, batch, rows)), ("probs", probs, (steps, batch, 2, n)),
        ("master", master, (steps, batch, 2, n)), ("cells", cells, (steps + 1, batch, hidden)),
        ("tanh_c", tanh_c, (steps, batch, hidden)), ("hs", hs, (steps + 1, batch, hidden)),
    ):  # fmt: skip
        check_tensor(_BACKWARD, name, t, shape, contiguous=True)
    check_tensor(_BACKWARD, "w_hh", w_hh, (rows, hidden))
    for name, t, shape in (
        ("d_hs", d_hs, (steps + 1, batch, hidden)), ("d_c_last", d_c_last, (batch, hidden)),
        ("d_dist_f", d_dist_f, (steps, batch)), ("d_dist_i", d_dist_i, (steps, batch)),
    ):  # fmt: skip
        if t is not None:
            check_tensor(_BACKWARD, name, t, shape)
    return steps, batch, hidden, rows


@torch.library.custom_op(_BACKWARD, mutates_args=())
@runs_without_subnormals
def cpu_layer_backward(
    d_hs: Tensor | None,
    d_c_last: Tensor | None,
    d_dist_f: Tensor | None,
    d_dist_i: Tensor | None,
    x: Tensor,
    w_ih: Tensor,
    gates: Tensor,
    probs: Tensor,
    master: Tensor,
    cells: Tensor,
    tanh_c: Tensor,
    hs: Tensor,
    w_hh: Tensor,
    n_chunk: int,
    needs: list[bool],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The gradients (d_x as (T*B, I), d_w_ih, d_bias, d_h0, d_c0, d_w_hh) of
    :func:`cpu_layer_forward` (``keep=True``) from the gradients of its four differentiable
    outputs (None: unused, its work skipped). ``needs`` (six flags) says which gradients to
    compute; the others come back empty."""
    steps, batch, hidden, rows = _check_backward(
        d_hs, d_c_last, d_dist_f, d_dist_i, x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh, n_chunk
    )
    if len(needs) != 6:
        raise ValueError(f"{_BACKWARD}: needs must hold 6 flags (x, w_ih, bias, h0, c0, w_hh), got {len(needs)}")
    lib = cpu_build.require()
    n = n_chunk
    d_gates = torch.empty_like(gates)
    # incoming gradients may be expanded or strided views: the kernel reads contiguous rows
    dc = torch.zeros(batch, hidden) if d_c_last is None else d_c_last.contiguous().clone()
    d_out = None if d_hs is None else d_hs[1:].contiguous()  # hs[0] is h0: its gradient goes to d_h0 below
    d_master = master_grad_from_distances(d_dist_f, d_dist_i, n, gates)
    scratch = torch.empty(3 * hidden + 2 * n)
    # d gates_t W_hh: oneDNN's prepacked form needs W_hh^T copied and reordered, worth it for large
    # weights only (PREPACK_BACKWARD_MIN_WEIGHTS)
    prepack = w_hh.numel() >= PREPACK_BACKWARD_MIN_WEIGHTS and onednn_available()
    back = RepeatedMatmul(transposed(w_hh) if prepack else w_hh.t(), batch, prepack=prepack)
    at_gates, at_probs, at_master = _address(gates), _address(probs), _address(master)
    at_cell, at_tanh, at_d_gates = _address(cells), _address(tanh_c), _address(d_gates)
    at_d_out, at_d_master = _address(d_out), _address(d_master)
    dh_in = None
    for t in range(steps - 1, -1, -1):
        lib.onlstm_backward_step(
            batch, n, hidden // n, at_gates(t), at_probs(t), at_master(t), at_cell(t), at_tanh(t),
            None if dh_in is None else dh_in.data_ptr(), at_d_out(t), at_d_master(t), dc.data_ptr(),
            at_d_gates(t), scratch.data_ptr(),
        )  # fmt: skip
        if t > 0:
            dh_in = back(d_gates[t])  # d h_{t-1} from the recurrence (d_out[t-1] added by the kernel)

    empty = gates.new_empty(0)
    flat = d_gates.view(steps * batch, rows)
    flat_t = functools.cache(lambda: transposed(flat))  # (R, T*B)
    d_x = linear_t(flat, w_ih) if needs[0] else empty
    d_w_ih = weight_gradient(flat_t, flat, x.reshape(steps * batch, -1)) if needs[1] else empty.clone()
    d_bias = flat.sum(0) if needs[2] else empty.clone()
    d_h0 = empty.clone()
    if needs[3]:
        d_h0 = back(d_gates[0])
        if d_hs is not None:
            d_h0 += d_hs[0]
    d_c0 = dc if needs[4] else empty.clone()
    d_w_hh = weight_gradient(flat_t, flat, hs[:-1].reshape(steps * batch, hidden)) if needs[5] else empty.clone()
    return d_x, d_w_ih, d_bias, d_h0, d_c0, d_w_hh


@cpu_layer_backward.register_fake
def _(d_hs, d_c_last, d_dist_f, d_dist_i, x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh, n_chunk, needs):
    steps, batch, hidden, rows = _check_backward(
        d_hs, d_c_last, d_dist_f, d_dist_i, x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh, n_chunk
    )
    shapes = [(steps * batch, x.size(2)), tuple(w_ih.shape), (rows,), (batch, hidden), (batch, hidden), tuple(w_hh.shape)]
    return tuple(x.new_empty(shape if need else (0,)) for shape, need in zip(shapes, needs))


def _forward_setup(ctx, inputs, output) -> None:
    x, w_ih, _, _, _, w_hh, n_chunk, keep = inputs
    hs, _, _, _, gates, probs, master, cells, tanh_c = output
    ctx.n_chunk, ctx.keep = n_chunk, keep
    ctx.save_for_backward(x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh)
    ctx.mark_non_differentiable(gates, probs, master, cells, tanh_c)  # saved for the backward only
    ctx.set_materialize_grads(False)  # unused outputs (usually the distances) get no work


def _forward_backward(ctx, d_hs, d_c_last, d_dist_f, d_dist_i, *_):
    if not ctx.keep:
        raise RuntimeError(f"{_FORWARD} ran with keep=False, which keeps nothing for a backward: call it with keep=True")
    x, *_saved = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:6])
    grads = torch.ops.onlstm.cpu_layer_backward(d_hs, d_c_last, d_dist_f, d_dist_i, x, *_saved, ctx.n_chunk, needs)
    d_x, d_w_ih, d_bias, d_h0, d_c0, d_w_hh = (g if need else None for g, need in zip(grads, needs))
    if d_x is not None:
        d_x = d_x.view(x.shape)
    return d_x, d_w_ih, d_bias, d_h0, d_c0, d_w_hh, None, None


cpu_layer_forward.register_autograd(_forward_backward, setup_context=_forward_setup)


def layer(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, h0: Tensor, c0: Tensor, w_hh: Tensor, b_hh: Tensor | None, n: int) -> LayerResult:
    """A whole layer through :func:`cpu_layer_forward`, the per-step buffers kept only when a
    gradient will be asked for."""
    rows = w_ih.size(0)
    b_ih = b_ih if b_ih is not None else x.new_zeros(rows)
    b_hh = b_hh if b_hh is not None else x.new_zeros(rows)
    inputs = (x, w_ih, b_ih, h0, c0, w_hh, b_hh)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    hs, c_last, dist_f, dist_i, *_ = torch.ops.onlstm.cpu_layer_forward(x, w_ih, b_ih + b_hh, h0, c0, w_hh, n, keep)
    return LayerResult(hs[1:], hs[-1].clone(), c_last, dist_f, dist_i)
