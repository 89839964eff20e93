"""Training forward/backward of a recurrent stack replayed as CUDA graphs (``model.cuda_graphs``).

Even with one Triton kernel per step (:mod:`onlstm.triton_recurrence`), a paper-size ON-LSTM
launches ~1,000 kernels per BPTT segment, and on a GPU the launches, not the arithmetic, set the
pace. ``torch.cuda.make_graphed_callables`` records the stack's forward and backward once per
input shape and replays them as two graph launches: on an H100 this made the paper-size stack
2.7x faster than the same kernels launched one by one, as fast as cuDNN's LSTM
(``benchmarks/results/gpu/recurrence_cuda.md``). PyTorch's own utility does the capture; this
module only keeps one graph per shape (variable BPTT gives a few dozen lengths) and turns the
stack's structured output into the flat tuple of tensors a graph returns, and back.

What a user must know (also in ``conf/model/onlstm.yaml``):

* only training-mode calls with gradients are graphed; evaluation runs the stack as usual;
* dropout and DropConnect masks are still fresh at every replay (PyTorch's graph-safe RNG), but
  the random stream differs from an eager run, so seeded runs differ from ``cuda_graphs=false``;
* each shape's graph keeps its own memory, about one segment's saved activations (variable
  BPTT gives a few dozen lengths), and the tensors a replay returns are overwritten by the next replay
  of the same shape, which the training step never needs to read after its backward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from onlstm.stack import Hidden, StackOutput


class _FlatStack(nn.Module):
    """(x, h_1, c_1, ..., h_L, c_L) -> a flat tuple of the stack's output tensors."""

    def __init__(self, stack: nn.Module):
        super().__init__()
        self.stack = stack

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        hidden = [(state[i], state[i + 1]) for i in range(0, len(state), 2)]
        out = self.stack(x, hidden)
        flat = [out.output, *(t for pair in out.hidden for t in pair), *out.raw_outputs, *out.outputs[:-1]]
        if out.distances is not None:
            flat += [out.distances, out.distances_in]
        return tuple(flat)


def _unflatten(flat: tuple[Tensor, ...], layers: int) -> StackOutput:
    output = flat[0]
    hidden = [(flat[1 + 2 * i], flat[2 + 2 * i]) for i in range(layers)]
    rest = flat[1 + 2 * layers :]
    raw_outputs = list(rest[:layers])
    outputs = list(rest[layers : 2 * layers - 1]) + [output]
    distances = rest[2 * layers - 1 :]
    return StackOutput(output, hidden, raw_outputs, outputs, *(distances if distances else (None, None)))


class GraphedStack:
    """Calls ``stack(x, hidden)`` through one captured CUDA graph per input signature.

    Not an ``nn.Module`` on purpose: the owner keeps ``stack`` as its registered submodule, so
    state dicts and checkpoints are the same with and without graphs.
    """

    def __init__(self, stack: nn.Module):
        self.stack = stack
        self._graphs: dict[tuple, nn.Module] = {}

    def __call__(self, x: Tensor, hidden: Hidden | None = None) -> StackOutput:
        if hidden is None:
            hidden = self.stack.init_hidden(x.size(1), like=x)
        # the carried state is detached between BPTT segments; a graph input must not need grad
        state = tuple(t.detach() for pair in hidden for t in pair)
        # parameters' addresses are in the key: a graph reads the tensors it was captured with
        key = (tuple(x.shape), x.dtype, x.requires_grad, tuple(p.data_ptr() for p in self.stack.parameters()))
        graphed = self._graphs.get(key)
        if graphed is None:
            sample = (x.detach().clone().requires_grad_(x.requires_grad), *(s.clone() for s in state))
            graphed = torch.cuda.make_graphed_callables(_FlatStack(self.stack), sample)
            self._graphs[key] = graphed
        return _unflatten(graphed(x, *state), len(hidden))

    def __len__(self) -> int:
        return len(self._graphs)
