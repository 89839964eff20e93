"""The Triton ON-LSTM kernels (onlstm/triton_recurrence.py) compute what the per-step reference
computes: outputs, states, distances and the gradient of every parameter and input.

On a machine with a GPU the kernels run compiled on CUDA tensors; without one they run on CPU
tensors through Triton's interpreter (TRITON_INTERPRET=1, which tests/conftest.py sets before
torch is imported), which executes the same kernel code with NumPy. Skipped where Triton is not installed
(``pip install -e '.[dev]'`` brings it on Linux x86-64).
"""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU and Triton's interpreter is off (TRITON_INTERPRET=1)", allow_module_level=True)

from onlstm.stack import ONLSTMStack  # noqa: E402
from tests.test_fused_recurrence import SHAPES, check_matches_reference, check_zero_state_and_inference  # noqa: E402

# chunk sizes and chunk counts that are not powers of two exercise the kernels' masked tiles
SHAPES_TRITON = SHAPES + [([7, 30, 12], 3, 4, 2)]


@pytest.mark.parametrize("sizes,chunk,steps,batch", SHAPES_TRITON)
@pytest.mark.parametrize("dropout,dropconnect,training", [(0.0, 0.0, False), (0.3, 0.4, True)])
@pytest.mark.parametrize("distances", ["unused", "used", "zero"])
def test_triton_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances):
    check_matches_reference(sizes, chunk, steps, batch, dropout, dropconnect, training, distances,
                            implementation="fused_triton", device=DEVICE)


def test_triton_zero_initial_state_and_no_grad_inference():
    check_zero_state_and_inference("fused_triton", DEVICE)


def test_auto_picks_triton_for_float32_cuda_only():
    """implementation="fused" runs the Triton kernels on float32 CUDA tensors, never on a CPU."""
    from onlstm.fused import resolve_backend

    assert (resolve_backend("auto", torch.zeros(1, device=DEVICE)) == "triton") is (DEVICE == "cuda")
    assert resolve_backend("auto", torch.zeros(1, device=DEVICE, dtype=torch.float64)) == "aten"
    assert resolve_backend("aten", torch.zeros(1, device=DEVICE)) == "aten"
    assert resolve_backend("triton", torch.zeros(1, device=DEVICE)) == "triton"


def test_triton_rejects_float64():
    stack = ONLSTMStack([4, 8], 2, implementation="fused_triton").double().to(DEVICE)
    with pytest.raises(RuntimeError, match="float32"):
        stack(torch.randn(3, 2, 4, dtype=torch.float64, device=DEVICE))
