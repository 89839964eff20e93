"""The compiled CPU step kernels (onlstm/csrc/onlstm_cpu.c via onlstm/cpu_recurrence.py) compute
what the per-step reference computes, and their build behaves: cached per source and CPU, a clear
error (explicit ``fused_cpu``) or a warned fallback (``fused``) without a compiler."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
import torch
from torch import Tensor

from onlstm import cpu_kernel
from onlstm.fused import resolve_backend
from onlstm.stack import ONLSTMStack
from tests.test_fused_recurrence import SHAPES, check_matches_reference, check_zero_state_and_inference

needs_compiler = pytest.mark.skipif(
    shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler to build the CPU kernels (set CC)"
)
# chunk counts and sizes that are not multiples of the vector width, a chunk size of 1
SHAPES_CPU = SHAPES + [([7, 30, 12], 3, 4, 2), ([9, 33, 11], 11, 5, 3)]


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded in this process yet."""
    monkeypatch.setenv("ONLSTM_KERNEL_CACHE", str(tmp_path / "kernels"))
    cpu_kernel._build_and_load.cache_clear()
    yield tmp_path / "kernels"
    cpu_kernel._build_and_load.cache_clear()


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
    assert resolve_backend("auto", x64) == "aten"
    assert resolve_backend("aten", x32) == "aten"
    assert resolve_backend("cpu", x32) == "cpu"


def test_fused_cpu_refuses_float64():
    stack = ONLSTMStack([4, 8], 2, implementation="fused_cpu").double()
    with pytest.raises(RuntimeError, match="float32"):
        stack(torch.randn(3, 2, 4, dtype=torch.float64))


@needs_compiler
def test_build_is_cached_per_source_and_reused(fresh_cache):
    first = cpu_kernel.build()
    assert first.parent == fresh_cache and first.is_file()
    stamp = first.stat().st_mtime_ns
    assert cpu_kernel.build() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in fresh_cache.iterdir()] == [first.name]  # no temporary files left


def test_missing_compiler_is_a_clear_error_for_fused_cpu_and_a_warned_fallback_for_fused(
    fresh_cache, monkeypatch, caplog
):
    monkeypatch.setenv("CC", "no-such-compiler-onlstm")
    with pytest.raises(cpu_kernel.KernelBuildError, match="no C compiler 'no-such-compiler-onlstm'.*fused_aten"):
        ONLSTMStack([4, 8], 2, implementation="fused_cpu")(torch.randn(3, 2, 4))
    cpu_kernel._build_and_load.cache_clear()
    with caplog.at_level(logging.WARNING, logger="onlstm.cpu_kernel"):
        assert resolve_backend("auto", torch.zeros(1)) == "aten"
    assert "PyTorch ops" in caplog.text and "no-such-compiler-onlstm" in caplog.text


def test_failed_compile_names_the_source_and_keeps_no_partial_file(fresh_cache, monkeypatch, tmp_path):
    broken = tmp_path / "cc-broken"
    broken.write_text("#!/bin/sh\necho 'cc-broken: internal error' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.raises(cpu_kernel.KernelBuildError, match="(?s)onlstm_cpu.c.*internal error"):
        cpu_kernel.build()
    assert not fresh_cache.exists() or not any(fresh_cache.iterdir())


def test_kernels_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("ONLSTM_CPU_KERNEL", "0")
    assert resolve_backend("auto", torch.zeros(1)) == "aten"
    with pytest.raises(RuntimeError, match="ONLSTM_CPU_KERNEL=0"):
        resolve_backend("cpu", torch.zeros(1))


@needs_compiler
@pytest.mark.parametrize("min_macs", [0, 500])
def test_large_products_through_onednn_match_reference(monkeypatch, min_macs):
    """The paper size's projections, weight gradients and backward per-step products run as oneDNN
    matmuls; the test shapes are small, so the thresholds are lowered to send all (0) or some (500)
    of their products there."""
    from onlstm import cpu_recurrence

    monkeypatch.setattr(cpu_recurrence, "ONEDNN_MIN_MACS", min_macs)
    monkeypatch.setattr(cpu_recurrence, "PREPACK_BACKWARD_MIN_WEIGHTS", min_macs)
    check_matches_reference([5, 12, 8], 4, 6, 3, 0.3, 0.4, True, "used", implementation="fused_cpu")


@needs_compiler
@pytest.mark.parametrize("rows,cols", [(1, 1), (1, 9), (13, 1), (8, 8), (37, 13), (300, 517), (1030, 1029)])
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_transposing_copy_equals_torch(monkeypatch, rows, cols, threads):
    """The C transpose the backward uses: every element in place for shapes off the 8 x 8 blocks
    and the 128-row tiles, split over threads (the largest shape is big enough to be
    split), from a strided view too."""
    from onlstm.cpu_recurrence import transposed

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    x = torch.randn(rows, cols)
    assert torch.equal(transposed(x), x.t().contiguous())
    view = torch.randn(cols, rows).t()  # not contiguous: copied first
    assert torch.equal(transposed(view), view.t().contiguous())


@needs_compiler
@pytest.mark.parametrize("keep", [0.55, 0.9, 0.1])
def test_hashed_dropconnect_mask_has_the_bernoulli_statistics(keep):
    """The C DropConnect mask (float32 CPU weights): keep rate, rows and columns alike, neighbours
    and successive draws independent, all within 5 standard deviations of a Bernoulli(keep)."""
    from onlstm.regularizers import HashedDropConnect

    rows, cols = 600, 500
    weight = torch.ones(rows, cols)
    masks = torch.stack([HashedDropConnect.apply(weight, keep) for _ in range(4)])  # 4 draws
    assert set(masks.unique().tolist()) <= {0.0, 1.0}

    def within(observed: Tensor, expected: float, count: int, sigmas: float = 5.0) -> bool:
        return abs(observed.item() - expected) <= sigmas * (expected * (1 - expected) / count) ** 0.5

    assert within(masks.mean(), keep, masks.numel())
    # pairs: horizontal and vertical neighbours, and the same entry in the next draw
    assert within((masks[:, :, 1:] * masks[:, :, :-1]).mean(), keep**2, masks[:, :, 1:].numel())
    assert within((masks[:, 1:] * masks[:, :-1]).mean(), keep**2, masks[:, 1:].numel())
    assert within((masks[1:] * masks[:-1]).mean(), keep**2, masks[1:].numel())
    # row and column rates spread like binomials (their variance within 20%)
    for rates, n in ((masks.mean(-1), cols), (masks.mean(-2), rows)):
        assert abs(rates.var().item() / (keep * (1 - keep) / n) - 1) < 0.2


@needs_compiler
def test_hashed_dropconnect_repeats_under_a_seed_and_masks_the_gradient():
    from onlstm.regularizers import LinearDropConnect

    layer = LinearDropConnect(30, 40, dropout=0.45).train()
    torch.manual_seed(1)
    first = layer.sampled_weight()
    torch.manual_seed(1)
    again = layer.sampled_weight()
    other = layer.sampled_weight()
    assert torch.equal(first, again) and not torch.equal(first, other)
    kept = first != 0
    torch.testing.assert_close(first[kept], layer.weight[kept])
    grad = torch.randn(40, 30)
    first.backward(grad)
    assert torch.equal(layer.weight.grad, grad * kept)  # the backward regenerates the same mask


@needs_compiler
def test_cpu_kernels_at_the_paper_sizes_match_reference():
    """Guards the kernels at the shapes every paper number comes from: layers 400-1150-1150-400,
    chunk 10 (115 and 40 chunks, not multiples of the vector width), batch 20, dropout and
    DropConnect 0.45 in training; 10 steps make 200 rows, so the layer-2/3 input projections cross
    ONEDNN_MIN_MACS (200 x 1150 x 4830 > 1e9) and the 1150-unit W_hh takes the prepacked backward,
    at their real thresholds. One forward and backward (same masks): outputs, distances, final
    state and every gradient == the reference's, gradients to 1e-4 of their largest entry (sums
    over 200 rows in another order)."""
    from onlstm import cpu_recurrence

    sizes, rows = [400, 1150, 1150, 400], 4 * 1150 + 2 * 115
    assert cpu_recurrence.uses_onednn(200, 1150, rows) and not cpu_recurrence.uses_onednn(200, 400, rows)
    assert 1150 * rows >= cpu_recurrence.PREPACK_BACKWARD_MIN_WEIGHTS > 400 * (4 * 400 + 2 * 40)
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
