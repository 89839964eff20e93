"""The Triton ON-LSTM ops (onlstm/ops/triton_kernels.py) compute what the per-step reference
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

from onlstm.ops import triton_kernels  # noqa: E402, F401  (registers the onlstm::triton_* ops)
from onlstm.stack import ONLSTMStack  # noqa: E402
from tests.helpers import SHAPES, check_matches_reference, check_zero_state_and_inference  # noqa: E402

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
    from onlstm.ops import resolve_backend

    assert (resolve_backend("auto", torch.zeros(1, device=DEVICE)) == "triton") is (DEVICE == "cuda")
    assert resolve_backend("auto", torch.zeros(1, device=DEVICE, dtype=torch.float64)) is None  # the reference loop
    assert resolve_backend("triton", torch.zeros(1, device=DEVICE)) == "triton"


def test_triton_rejects_float64():
    stack = ONLSTMStack([4, 8], 2, implementation="fused_triton").double().to(DEVICE)
    with pytest.raises(RuntimeError, match="float32"):
        stack(torch.randn(3, 2, 4, dtype=torch.float64, device=DEVICE))


def _layer_args(requires_grad=True, steps=3, batch=2, hidden=6, n=3):
    torch.manual_seed(0)
    rows = 4 * hidden + 2 * n
    shapes = [(steps, batch, rows), (batch, hidden), (batch, hidden), (rows, hidden), (rows,)]
    return [torch.randn(*s, device=DEVICE).requires_grad_(requires_grad) for s in shapes], n


# Triton's interpreter runs a kernel on its tensors' storage (NumPy arrays), which fake tensors
# do not have; so on a CPU only the checks that run the op on real tensors, and on a GPU all four.
OPCHECK_UTILS = (
    ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if DEVICE == "cuda"
    else ("test_schema", "test_autograd_registration")
)


def test_opcheck_triton_layer_ops():
    """Schema and autograd registration of both ops; on a GPU also the fake implementation (the
    op's own code run on fake tensors: ``triton_op``) and the AOT-dispatch path of torch.compile."""
    tensors, n = _layer_args()
    torch.library.opcheck(torch.ops.onlstm.triton_layer_forward.default, (*tensors, n), test_utils=OPCHECK_UTILS)
    wx, h0, c0, w_hh, b_hh = (t.detach() for t in tensors)
    hs, c_last, dist_f, dist_i, gates, cells = torch.ops.onlstm.triton_layer_forward(wx, h0, c0, w_hh, b_hh, n)
    grads = (torch.randn_like(hs), torch.randn_like(c_last), torch.randn_like(dist_f), None)
    args = (*grads, gates, hs, cells, w_hh, n, [True] * 5)
    torch.library.opcheck(torch.ops.onlstm.triton_layer_backward.default, args, test_utils=OPCHECK_UTILS)


def test_triton_op_checks_shapes():
    tensors, n = _layer_args(requires_grad=False)
    tensors[3] = tensors[3][:, :-1]
    with pytest.raises(ValueError, match=r"w_hh must have shape \(30, 6\), got \(30, 5\)"):
        torch.ops.onlstm.triton_layer_forward(*tensors, n)
