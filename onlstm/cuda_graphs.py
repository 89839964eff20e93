"""Calls of a module replayed as CUDA graphs, one graph per input signature (``run.cuda_graphs``).

Even with one Triton kernel per step (:mod:`onlstm.ops.triton_kernels`), a paper-size ON-LSTM
launches about a thousand kernels per BPTT segment, and on a GPU the launches, not the
arithmetic, set the pace. ``torch.cuda.make_graphed_callables`` records a module's forward and
backward once per input shape and replays them as two graph launches (what that buys, measured:
docs/performance.md). PyTorch's own utility does the capture; :class:`GraphCache` only keeps one
graph per shape (variable BPTT gives a few dozen lengths); a graph takes and returns flat tuples
of tensors, and :class:`GraphedStack` turns a stack's structured input and output into them.

What a user must know:

* only training-mode calls with gradients are graphed; evaluation runs the stack as usual;
* dropout and DropConnect masks are still fresh at every replay (PyTorch's graph-safe RNG), but
  the random stream differs from an eager run, so seeded runs differ from ``cuda_graphs=false``;
* each shape's graph keeps its own memory, about one segment's saved activations, and the
  tensors a replay returns are overwritten by the next replay of the same shape, which the
  training step never needs to read after its backward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from onlstm.stack import Hidden, StackOutput


class GraphCache:
    """Calls ``module(*tensors) -> tuple of tensors`` through one captured CUDA graph per input
    signature (shapes, dtypes, which inputs need gradients, the parameters' addresses).

    Not an ``nn.Module`` on purpose: the owner keeps ``module``'s parameters registered, so state
    dicts and checkpoints are the same with and without graphs.
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self._graphs: dict[tuple, nn.Module] = {}

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        # parameters' addresses are in the key: a graph reads the tensors it was captured with
        key = (
            tuple((tuple(t.shape), t.dtype, t.requires_grad) for t in inputs),
            tuple(p.data_ptr() for p in self.module.parameters()),
        )
        graphed = self._graphs.get(key)
        if graphed is None:
            sample = tuple(t.detach().clone().requires_grad_(t.requires_grad) for t in inputs)
            graphed = torch.cuda.make_graphed_callables(self.module, sample)
            self._graphs[key] = graphed
        return graphed(*inputs)

    def __len__(self) -> int:
        return len(self._graphs)


def flatten_output(out: StackOutput) -> tuple[Tensor, ...]:
    """A stack's output as the flat tuple of tensors a CUDA graph returns (:func:`unflatten_output`
    inverts it)."""
    flat = [out.output, *(t for pair in out.hidden for t in pair), *out.raw_outputs, *out.outputs[:-1]]
    if out.distances is not None:
        flat += [out.distances, out.distances_in]
    return tuple(flat)


def unflatten_output(flat: Sequence[Tensor], layers: int) -> StackOutput:
    output = flat[0]
    hidden = [(flat[1 + 2 * i], flat[2 + 2 * i]) for i in range(layers)]
    rest = flat[1 + 2 * layers :]
    raw_outputs = list(rest[:layers])
    outputs = list(rest[layers : 2 * layers - 1]) + [output]
    distances = rest[2 * layers - 1 :]
    return StackOutput(output, hidden, raw_outputs, outputs, *(distances if distances else (None, None)))


class FlatStack(nn.Module):
    """(x, h_1, c_1, ..., h_L, c_L) -> :func:`flatten_output` of the stack's output."""

    def __init__(self, stack: nn.Module):
        super().__init__()
        self.stack = stack

    def forward(self, x: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        hidden = [(state[i], state[i + 1]) for i in range(0, len(state), 2)]
        return flatten_output(self.stack(x, hidden))


class GraphedStack:
    """Calls ``stack(x, hidden)`` through :class:`GraphCache`: one captured CUDA graph per input
    signature (``RNNLanguageModel(cuda_graphs=True)``, in configs ``run.cuda_graphs``; caveats at
    the top of this module).

    Not an ``nn.Module`` on purpose: the owner keeps ``stack`` as its registered submodule, so
    state dicts and checkpoints are the same with and without graphs.
    """

    def __init__(self, stack: nn.Module):
        self.stack = stack
        self._cache = GraphCache(FlatStack(stack))

    def __call__(self, x: Tensor, hidden: Hidden | None = None) -> StackOutput:
        if hidden is None:
            hidden = self.stack.init_hidden(x.size(1), like=x)
        # the carried state is detached between BPTT segments; a graph input must not need grad
        state = tuple(t.detach() for pair in hidden for t in pair)
        return unflatten_output(self._cache(x, *state), len(hidden))

    def __len__(self) -> int:
        return len(self._cache)
