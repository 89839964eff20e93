"""The layer op's entry (onlstm.ops.onlstm_layer) and its aten backend (onlstm/ops/aten.py)
compute what the per-step reference computes (helpers: tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from onlstm.ops import onlstm_layer, resolve_backend
from onlstm.ops.aten import ONLSTMLayerFunction
from onlstm.stack import ONLSTMStack, onlstm_layer_reference
from tests.helpers import SHAPES, check_matches_reference, check_zero_state_and_inference


@pytest.mark.parametrize("sizes,chunk,steps,batch", SHAPES)
@pytest.mark.parametrize("dropout,dropconnect", [(0.0, 0.0), (0.3, 0.4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("distances", ["unused", "used"])
def test_fused_aten_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances):
    check_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances, implementation="fused_aten")


def test_fused_aten_matches_reference_with_zero_distance_gradient():
    check_matches_reference([5, 12, 8], 4, 6, 3, 0.3, 0.4, True, "zero", implementation="fused_aten")


@pytest.mark.parametrize("implementation", ["fused", "fused_aten"])
def test_zero_initial_state_and_no_grad_inference(implementation):
    check_zero_state_and_inference(implementation)


def test_layer_function_matches_reference_layer_float64():
    torch.manual_seed(0)
    stack = ONLSTMStack([3, 8], 2).double()
    cell = stack.cells[0]
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h, c = torch.randn(2, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    expected = onlstm_layer_reference(cell, x, h, c, cell.hh.weight)
    actual = onlstm_layer(x, cell.ih.weight, cell.ih.bias, h, c, cell.hh.weight, cell.hh.bias, cell.n_chunk)
    for e, a in zip(expected, actual):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_gradcheck_float64():
    torch.manual_seed(0)
    steps, batch, hidden, n = 3, 2, 4, 2
    rows = 4 * hidden + 2 * n
    inputs = [
        torch.randn(steps, batch, rows, dtype=torch.float64, requires_grad=True),  # wx
        torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True),  # h0
        torch.randn(batch, hidden, dtype=torch.float64, requires_grad=True),  # c0
        torch.randn(rows, hidden, dtype=torch.float64, requires_grad=True),  # w_hh
        torch.randn(rows, dtype=torch.float64, requires_grad=True),  # b_hh
    ]
    # all five outputs at once: the sequence, final h and c, and both distances
    assert torch.autograd.gradcheck(lambda *a: ONLSTMLayerFunction.apply(*a, n), inputs)


def test_unknown_implementation_is_an_error():
    with pytest.raises(ValueError, match="implementation"):
        ONLSTMStack([4, 8], 2, implementation="cudnn")


def test_fused_default_matches_reference():
    """``fused`` as the stack runs it by default (the C kernels on a CPU where they build)."""
    check_matches_reference([5, 12, 8], 4, 6, 3, 0.3, 0.4, True, "used", implementation="fused")


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cudnn", torch.zeros(1))
