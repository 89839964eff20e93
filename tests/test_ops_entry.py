"""The layer op's entry (onlstm.ops.resolve_backend / onlstm_layer, as ONLSTMStack calls them):
``fused`` computes what the per-step reference computes, and tensors no fast path takes run the
reference loop itself (helpers: tests/helpers.py)."""

from __future__ import annotations

import pytest
import torch

from onlstm.ops import onlstm_layer, resolve_backend
from onlstm.stack import ONLSTMStack
from tests.helpers import check_matches_reference, check_zero_state_and_inference


def test_fused_default_matches_reference():
    """``fused`` as the stack runs it by default (the C kernels on a CPU where they build)."""
    check_matches_reference([5, 12, 8], 4, 6, 3, 0.3, 0.4, True, "used", implementation="fused")


def test_fused_zero_initial_state_and_no_grad_inference():
    check_zero_state_and_inference("fused")


def test_float64_runs_the_reference_loop_and_its_gradients_are_exact():
    """No fast path takes float64: ``fused`` runs the reference loop (the same numbers bit for
    bit), whose gradients pass gradcheck through every output (sequence, final state, distances)."""
    torch.manual_seed(0)
    reference = ONLSTMStack([3, 4], 2, implementation="reference").double()
    fused = ONLSTMStack([3, 4], 2, implementation="fused").double()
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    expected, actual = reference(x), fused(x)
    assert torch.equal(actual.output, expected.output) and torch.equal(actual.distances, expected.distances)

    def outputs(inputs):
        out = fused(inputs)
        return out.output, out.hidden[0][0], out.hidden[0][1], out.distances, out.distances_in

    assert torch.autograd.gradcheck(outputs, (x,))


def test_unknown_implementation_is_an_error():
    with pytest.raises(ValueError, match="implementation"):
        ONLSTMStack([4, 8], 2, implementation="cudnn")


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("cudnn", torch.zeros(1))
    with pytest.raises(ValueError, match="onlstm_layer runs 'cpu' or 'triton'"):
        onlstm_layer(*[torch.zeros(1)] * 7, 1, backend="auto")
