"""The fused ON-LSTM layer (onlstm/fused.py) computes what the per-step reference computes.

Every comparison runs the same stack twice, once per implementation, with identical parameters
and the RNG seeded identically before each forward, so the DropConnect and locked-dropout masks
(sampled inside the stack) match.
"""

from __future__ import annotations

import pytest
import torch

from onlstm.fused import _ONLSTMLayer, onlstm_layer_fused
from onlstm.stack import ONLSTMStack, onlstm_layer_reference

# (layer sizes, chunk size, time, batch): several layers, chunk size 1, a single time step
SHAPES = [
    ([5, 12, 8], 4, 6, 3),
    ([4, 6], 1, 5, 2),
    ([3, 8, 8], 2, 1, 4),
]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _run(stack: ONLSTMStack, x: torch.Tensor, hidden, distances: str, seed: int = 1):
    """Forward + backward of a loss over everything the stack returns; returns (outputs, grads)."""
    x = x.clone().requires_grad_(True)
    if hidden is not None:
        hidden = [(h.clone().requires_grad_(True), c.clone().requires_grad_(True)) for h, c in hidden]
    torch.manual_seed(seed)
    out = stack(x, hidden)
    loss = out.output.pow(2).sum() + sum(h.pow(3).sum() + 2.0 * c.sum() for h, c in out.hidden)
    loss = loss + sum(o.sin().sum() for o in out.outputs[:-1])
    weights = torch.linspace(-1.0, 1.0, out.distances.numel(), device=out.distances.device).view_as(out.distances)
    if distances == "used":
        loss = loss + (out.distances * weights).sum() + out.distances_in.pow(2).sum()
    elif distances == "zero":  # in the graph, but with an all-zero gradient
        loss = loss + 0.0 * (out.distances.sum() + out.distances_in.sum())
    loss.backward()
    values = [out.output, out.distances, out.distances_in, *(t for pair in out.hidden for t in pair), *out.outputs]
    grads = {name: p.grad for name, p in stack.named_parameters()}
    grads["x"] = x.grad
    if hidden is not None:
        for i, (h, c) in enumerate(hidden):
            grads[f"h{i}"], grads[f"c{i}"] = h.grad, c.grad
    return values, grads


def _pair(sizes, chunk, dropout, dropconnect, training, implementation="fused", device="cpu"):
    torch.manual_seed(0)
    reference = ONLSTMStack(sizes, chunk, dropout=dropout, dropconnect=dropconnect, implementation="reference")
    fused = ONLSTMStack(sizes, chunk, dropout=dropout, dropconnect=dropconnect, implementation=implementation)
    reference, fused = reference.to(device), fused.to(device)
    fused.load_state_dict(reference.state_dict())
    return reference.train(training), fused.train(training)


@pytest.mark.parametrize("sizes,chunk,steps,batch", SHAPES)
@pytest.mark.parametrize("dropout,dropconnect", [(0.0, 0.0), (0.3, 0.4)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("distances", ["unused", "used"])
def test_fused_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances):
    check_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances)


def test_fused_matches_reference_with_zero_distance_gradient():
    check_matches_reference([5, 12, 8], 4, 6, 3, 0.3, 0.4, True, "zero")


def check_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances, implementation="fused", device="cpu"):
    """Outputs and every gradient of ``implementation`` equal the reference's (same masks)."""
    reference, fused = _pair(sizes, chunk, dropout, dropconnect, training, implementation, device)
    torch.manual_seed(2)
    x = torch.randn(steps, batch, sizes[0], device=device)
    hidden = [(torch.randn(batch, s, device=device), torch.randn(batch, s, device=device)) for s in sizes[1:]]
    ref_values, ref_grads = _run(reference, x, hidden, distances)
    values, grads = _run(fused, x, hidden, distances)
    for expected, actual in zip(ref_values, values):
        torch.testing.assert_close(actual, expected, **TOL)
    assert ref_grads.keys() == grads.keys()
    for name, expected in ref_grads.items():
        assert grads[name] is not None, name
        torch.testing.assert_close(grads[name], expected, **TOL, msg=lambda m: f"{name}: {m}")


def test_zero_initial_state_and_no_grad_inference():
    check_zero_state_and_inference("fused")


def check_zero_state_and_inference(implementation: str, device: str = "cpu"):
    reference, fused = _pair([6, 12, 6], 3, 0.3, 0.4, True, implementation, device)
    x = torch.randn(7, 3, 6, device=device)
    ref_values, ref_grads = _run(reference, x, None, "unused")
    values, grads = _run(fused, x, None, "unused")
    for name, expected in ref_grads.items():
        torch.testing.assert_close(grads[name], expected, **TOL)
    reference.eval(), fused.eval()
    with torch.no_grad():  # the inference path keeps no (time, ...) buffers
        expected, actual = reference(x), fused(x)
    torch.testing.assert_close(actual.output, expected.output, **TOL)
    torch.testing.assert_close(actual.distances, expected.distances, **TOL)
    torch.testing.assert_close(actual.distances_in, expected.distances_in, **TOL)
    torch.testing.assert_close(actual.hidden[-1][1], expected.hidden[-1][1], **TOL)


def test_layer_function_matches_reference_layer_float64():
    torch.manual_seed(0)
    stack = ONLSTMStack([3, 8], 2).double()
    cell = stack.cells[0]
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h, c = torch.randn(2, 8, dtype=torch.float64), torch.randn(2, 8, dtype=torch.float64)
    expected = onlstm_layer_reference(cell, x, h, c, cell.hh.weight)
    actual = onlstm_layer_fused(cell, x, h, c, cell.hh.weight)
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
    assert torch.autograd.gradcheck(lambda *a: _ONLSTMLayer.apply(*a, n), inputs)


def test_unknown_implementation_is_an_error():
    with pytest.raises(ValueError, match="implementation"):
        ONLSTMStack([4, 8], 2, implementation="cudnn")
