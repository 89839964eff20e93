"""The CPU ops (onlstm/ops/cpu.py, the C kernels of onlstm/ops/csrc/onlstm_cpu.c) compute what the
per-step reference computes; they are registered torch ops that pass ``torch.library.opcheck``
and refuse bad arguments before a pointer reaches C; their build behaves: cached per source and
CPU, a clear error (explicit ``fused_cpu``) or a warned fallback to the reference loop (``fused``)
without a compiler."""

from __future__ import annotations

import logging
import platform
import os
import shutil

import pytest
import torch

from onlstm.ops import cpu_build, resolve_backend
from onlstm.stack import ONLSTMStack
from tests.helpers import SHAPES, check_matches_reference, check_zero_state_and_inference

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler to build the CPU kernels (set CC)"
)
# chunk counts and sizes that are not multiples of the vector width, a chunk size of 1
SHAPES_CPU = SHAPES + [([7, 30, 12], 3, 4, 2), ([9, 33, 11], 11, 5, 3)]


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded in this process yet."""
    monkeypatch.setenv("ONLSTM_KERNEL_CACHE", str(tmp_path / "kernels"))
    cpu_build._build_and_load.cache_clear()
    yield tmp_path / "kernels"
    cpu_build._build_and_load.cache_clear()


@needs_compiler
@pytest.mark.parametrize("sizes,chunk,steps,batch", SHAPES_CPU)
@pytest.mark.parametrize("dropout,dropconnect,training", [(0.0, 0.0, False), (0.3, 0.4, True)])
@pytest.mark.parametrize("distances", ["unused", "used", "zero"])
def test_cpu_kernels_match_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances):
    check_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances, implementation="fused_cpu")


@needs_compiler
def test_cpu_kernels_zero_initial_state_and_no_grad_inference():
    check_zero_state_and_inference("fused_cpu")


@needs_compiler
def test_extreme_gate_values_saturate_without_nan():
    """Pre-activations far beyond the exp range saturate the gates as torch's functions do."""
    torch.manual_seed(0)
    reference = ONLSTMStack([4, 8], 2, implementation="reference")
    fast = ONLSTMStack([4, 8], 2, implementation="fused_cpu")
    with torch.no_grad():
        reference.cells[0].ih.weight.mul_(200.0)
    fast.load_state_dict(reference.state_dict())
    x = torch.randn(5, 3, 4)
    expected, actual = reference(x), fast(x)
    assert torch.isfinite(actual.output).all()
    torch.testing.assert_close(actual.output, expected.output, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(actual.distances, expected.distances, rtol=1e-4, atol=1e-5)


@needs_compiler
def test_auto_backend_per_device_and_dtype():
    x32, x64 = torch.zeros(1), torch.zeros(1, dtype=torch.float64)
    assert resolve_backend("auto", x32) == "cpu"
    assert resolve_backend("auto", x64) is None  # no fast path: the stack runs the reference loop
    assert resolve_backend("cpu", x32) == "cpu"


def test_fused_cpu_refuses_float64():
    stack = ONLSTMStack([4, 8], 2, implementation="fused_cpu").double()
    with pytest.raises(RuntimeError, match="'fused_cpu' runs float32 CPU tensors, got torch.float64"):
        stack(torch.randn(3, 2, 4, dtype=torch.float64))


@needs_compiler
def test_build_is_cached_per_source_and_reused(fresh_cache):
    first = cpu_build.build()
    assert first.parent == fresh_cache and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert cpu_build.build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in fresh_cache.iterdir()] == [first.name]  # no temporary files left


def test_missing_compiler_is_a_clear_error_for_fused_cpu_and_a_warned_fallback_for_fused(
    fresh_cache, monkeypatch, caplog
):
    monkeypatch.setenv("CC", "no-such-compiler-onlstm")
    with pytest.raises(cpu_build.KernelBuildError, match="no C compiler 'no-such-compiler-onlstm'.*run.implementation=reference"):
        ONLSTMStack([4, 8], 2, implementation="fused_cpu")(torch.randn(3, 2, 4))
    cpu_build._build_and_load.cache_clear()
    with caplog.at_level(logging.WARNING, logger="onlstm.ops.cpu_build"):
        assert resolve_backend("auto", torch.zeros(1)) is None
    assert "reference loop" in caplog.text and "no-such-compiler-onlstm" in caplog.text


def test_failed_compile_names_the_source_and_keeps_no_partial_file(fresh_cache, monkeypatch, tmp_path):
    broken = tmp_path / "cc-broken"
    broken.write_text("#!/bin/sh\necho 'cc-broken: internal error' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.raises(cpu_build.KernelBuildError, match="(?s)onlstm_cpu.c.*internal error"):
        cpu_build.build()
    assert not fresh_cache.exists() or not any(fresh_cache.iterdir())


def test_kernels_turned_off_make_fused_run_the_reference_loop(monkeypatch):
    """Without the kernels (``ONLSTM_CPU_KERNEL=0``, or no compiler) ``fused`` runs the very
    reference loop: the same numbers bit for bit, not just to rounding."""
    monkeypatch.setenv("ONLSTM_CPU_KERNEL", "0")
    assert resolve_backend("auto", torch.zeros(1)) is None
    with pytest.raises(RuntimeError, match="ONLSTM_CPU_KERNEL=0"):
        resolve_backend("cpu", torch.zeros(1))
    torch.manual_seed(0)
    reference = ONLSTMStack([4, 8], 2, dropconnect=0.3, implementation="reference").train()
    fused = ONLSTMStack([4, 8], 2, dropconnect=0.3, implementation="fused").train()
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(5, 3, 4)
    torch.manual_seed(1)
    expected = reference(x)
    torch.manual_seed(1)
    actual = fused(x)
    assert torch.equal(actual.output, expected.output) and torch.equal(actual.distances, expected.distances)


@needs_compiler
def test_cpu_kernels_at_the_paper_sizes_match_reference():
    """Guards the kernels at the shapes every paper number comes from: layers 400-1150-1150-400,
    chunk 10 (115 and 40 chunks, not multiples of the vector width), batch 20, dropout and
    DropConnect 0.45 in training, 10 steps (200 rows in the large products). One forward and
    backward (same masks): outputs, distances, final state and every gradient == the reference's,
    gradients to 1e-4 of their largest entry (sums over 200 rows in another order)."""

    sizes = [400, 1150, 1150, 400]
    torch.manual_seed(0)
    stacks = {name: ONLSTMStack(sizes, 10, dropout=0.45, dropconnect=0.45, implementation=name).train()
              for name in ("reference", "fused_cpu")}  # fmt: skip
    stacks["fused_cpu"].load_state_dict(stacks["reference"].state_dict())
    x = torch.randn(10, 20, 400)
    results = {}
    for name, stack in stacks.items():
        torch.manual_seed(1)
        out = stack(x)
        loss = out.output.pow(2).sum() + out.distances.sum() + sum(h.sum() + c.pow(2).sum() for h, c in out.hidden)
        loss.backward()
        values = [out.output, out.distances, out.distances_in, *(t for pair in out.hidden for t in pair)]
        results[name] = (values, {n: p.grad for n, p in stack.named_parameters()})
    (expected, expected_grads), (actual, grads) = results["reference"], results["fused_cpu"]
    for e, a in zip(expected, actual):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5)
    for name, e in expected_grads.items():
        torch.testing.assert_close(grads[name], e, rtol=1e-4, atol=1e-4 * e.abs().max().item(), msg=name)


# ----------------------------------------------------------------------------- registered ops
def _layer_args(steps=4, batch=3, inputs=5, hidden=8, n=2, requires_grad=True):
    torch.manual_seed(0)
    rows = 4 * hidden + 2 * n
    shapes = [(steps, batch, inputs), (rows, inputs), (rows,), (batch, hidden), (batch, hidden), (rows, hidden)]
    tensors = [torch.randn(*s).requires_grad_(requires_grad) for s in shapes]
    return tensors, n


@needs_compiler
@pytest.mark.parametrize("keep", [True, False])
def test_opcheck_cpu_layer_forward(keep):
    """Schema, fake (meta) implementation, autograd registration and the AOT-dispatch path that
    ``torch.compile`` takes; with ``keep`` the autograd formula (the backward op) runs too."""
    tensors, n = _layer_args(requires_grad=keep)
    torch.library.opcheck(torch.ops.onlstm.cpu_layer_forward.default, (*tensors, n, keep))


@needs_compiler
@pytest.mark.parametrize("with_grads", ["all", "output_only"])
def test_opcheck_cpu_layer_backward(with_grads):
    tensors, n = _layer_args(requires_grad=False)
    x, w_ih, bias, h0, c0, w_hh = tensors
    hs, c_last, dist_f, dist_i, gates, probs, master, cells, tanh_c = torch.ops.onlstm.cpu_layer_forward(*tensors, n, True)
    grads = [torch.randn_like(hs), torch.randn_like(c_last), torch.randn_like(dist_f), torch.randn_like(dist_i)]
    if with_grads == "output_only":
        grads[1:] = [None, None, None]
    needs = [True, True, True, True, True, with_grads == "all"]
    saved = (x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh)
    torch.library.opcheck(torch.ops.onlstm.cpu_layer_backward.default, (*grads, *saved, n, needs))


@needs_compiler
def test_cpu_layer_op_gradients_equal_the_reference_layer():
    """The op's autograd formula against autograd through the per-step reference, for every
    input, with gradients on all four differentiable outputs (h_0 among the hs included)."""
    from onlstm.cell import ONLSTMCell
    from onlstm.stack import onlstm_layer_reference

    tensors, n = _layer_args()
    x, w_ih, b_ih, h0, c0, w_hh = tensors
    cell = ONLSTMCell(5, 8, 4)
    with torch.no_grad():
        cell.ih.weight.copy_(w_ih), cell.ih.bias.copy_(b_ih), cell.hh.bias.zero_()
    hs, c_last, dist_f, dist_i, *_ = torch.ops.onlstm.cpu_layer_forward(x, w_ih, b_ih, h0, c0, w_hh, n, True)
    torch.manual_seed(5)
    weights = [torch.randn_like(t) for t in (hs, c_last, dist_f, dist_i)]
    loss = sum((w * t).sum() for w, t in zip(weights, (hs, c_last, dist_f, dist_i)))
    actual = torch.autograd.grad(loss, tensors)
    out, h_last, c_ref, df_ref, di_ref = onlstm_layer_reference(cell, x, h0, c0, w_hh)
    hs_ref = torch.cat([h0[None], out])
    loss_ref = sum((w * t).sum() for w, t in zip(weights, (hs_ref, c_ref, df_ref, di_ref)))
    expected = torch.autograd.grad(loss_ref, [x, cell.ih.weight, cell.ih.bias, h0, c0, w_hh])
    for name, a, e in zip(["x", "w_ih", "bias", "h0", "c0", "w_hh"], actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5, msg=name)


def test_ops_are_visible_to_the_profiler():
    if cpu_build.library() is None:
        pytest.skip("no C compiler: the CPU ops are not built")
    stack = ONLSTMStack([4, 8], 2, dropconnect=0.3, implementation="fused_cpu").train()
    with torch.profiler.profile() as prof:
        stack(torch.randn(3, 2, 4)).output.sum().backward()
    names = {event.name for event in prof.events()}
    assert {"onlstm::cpu_layer_forward", "onlstm::cpu_layer_backward"} <= names


@needs_compiler
@pytest.mark.parametrize(
    "change,message",
    [
        (lambda a: a.__setitem__(5, torch.randn(36, 7)), r"w_hh must have shape \(36, 8\), got \(36, 7\)"),
        (lambda a: a.__setitem__(1, torch.randn(36, 6)), r"w_ih must have shape \(36, 5\), got \(36, 6\)"),
        (lambda a: a.__setitem__(3, torch.randn(2, 8)), r"h0 must have shape \(3, 8\), got \(2, 8\)"),
        (lambda a: a.__setitem__(2, torch.randn(35)), r"bias must have shape \(36\), got \(35,\)"),
        (lambda a: a.__setitem__(0, torch.randn(4, 3, 5).double()), "x must be torch.float32, got torch.float64"),
        (lambda a: a.__setitem__(6, 3), "n_chunk=3 must divide the hidden size 8"),
    ],
    ids=["w_hh", "w_ih", "h0", "bias", "dtype", "n_chunk"],
)
def test_bad_arguments_are_errors_before_any_pointer_reaches_c(change, message):
    tensors, n = _layer_args(requires_grad=False)
    args = [*tensors, n, True]
    change(args)
    with pytest.raises(ValueError, match=message):
        torch.ops.onlstm.cpu_layer_forward(*args)


@needs_compiler
def test_backward_op_refuses_non_contiguous_buffers_and_a_forward_without_keep():
    tensors, n = _layer_args(requires_grad=False)
    x, w_ih, bias, h0, c0, w_hh = tensors
    hs, c_last, dist_f, dist_i, gates, probs, master, cells, tanh_c = torch.ops.onlstm.cpu_layer_forward(*tensors, n, True)
    strided = gates.transpose(0, 1).contiguous().transpose(0, 1)
    with pytest.raises(ValueError, match="gates must be contiguous"):
        torch.ops.onlstm.cpu_layer_backward(
            hs, None, None, None, x, w_ih, strided, probs, master, cells, tanh_c, hs, w_hh, n, [True] * 6
        )
    with pytest.raises(ValueError, match=r"d_hs must have shape \(5, 3, 8\)"):
        torch.ops.onlstm.cpu_layer_backward(
            hs[1:], None, None, None, x, w_ih, gates, probs, master, cells, tanh_c, hs, w_hh, n, [True] * 6
        )
    x.requires_grad_(True)
    out = torch.ops.onlstm.cpu_layer_forward(x, w_ih, bias, h0, c0, w_hh, n, False)
    with pytest.raises(RuntimeError, match="keep=False"):
        out[0].sum().backward()


@needs_compiler
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="FTZ/DAZ are x86 SSE modes")
def test_layer_ops_flush_subnormals_while_they_run_and_restore_the_callers_mode(monkeypatch):
    """Inside the ops (kernels and matmuls) a product below FLT_MIN is 0, not a subnormal (whose
    x86 slow path made a trained model's steps several times slower); the caller's mode is back
    afterwards (break: drop runs_without_subnormals from either op)."""
    tiny = torch.tensor([1e-20])

    def underflows_to_zero() -> bool:
        return (tiny * tiny).item() == 0.0  # 1e-40 is subnormal in float32

    assert not underflows_to_zero()
    seen = []
    real_mm = torch.mm

    def mm(*args, **kwargs):
        seen.append(underflows_to_zero())
        return real_mm(*args, **kwargs)

    monkeypatch.setattr(torch, "mm", mm)
    tensors, n = _layer_args()
    hs, *_ = torch.ops.onlstm.cpu_layer_forward(*tensors, n, True)
    forward_calls = len(seen)
    hs.sum().backward()
    assert forward_calls and len(seen) > forward_calls and all(seen)
    assert not underflows_to_zero()
