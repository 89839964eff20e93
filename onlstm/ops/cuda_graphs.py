"""Calls of a module replayed as CUDA graphs, one graph per input signature (``run.cuda_graphs``).

Even with one Triton kernel per step (:mod:`onlstm.ops.triton_kernels`), a paper-size ON-LSTM
launches about a thousand kernels per BPTT segment, and on a GPU the launches, not the
arithmetic, set the pace. ``torch.cuda.make_graphed_callables`` records a module's forward and
backward once per input shape and replays them as two graph launches (what that buys, measured:
docs/performance.md). PyTorch's own utility does the capture; :class:`GraphCache` only keeps one
graph per shape (variable BPTT gives a few dozen lengths). The module takes and returns flat
tuples of tensors; turning the stack's structured output into one is the model's business
(:class:`onlstm.stack.GraphedStack`).

What a user must know (also in ``conf/model/onlstm.yaml``):

* only training-mode calls with gradients are graphed; evaluation runs the stack as usual;
* dropout and DropConnect masks are still fresh at every replay (PyTorch's graph-safe RNG), but
  the random stream differs from an eager run, so seeded runs differ from ``cuda_graphs=false``;
* each shape's graph keeps its own memory, about one segment's saved activations, and the
  tensors a replay returns are overwritten by the next replay of the same shape, which the
  training step never needs to read after its backward.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
