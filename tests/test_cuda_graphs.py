"""run.cuda_graphs (RNNLanguageModel(cuda_graphs=True)): the stack's training steps replayed as CUDA graphs compute what the eager
stack computes. The flattening runs everywhere; the graph tests need a GPU (they ran on an H100:
benchmarks/results/gpu/tests_cuda.txt)."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from onlstm import RNNLanguageModel
from onlstm.cuda_graphs import FlatStack, unflatten_output
from onlstm.stack import LSTMStack, ONLSTMStack
from tests.helpers import NO_DROPOUT, tiny_backbone

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def _values(out) -> dict[str, torch.Tensor | None]:
    values = {"output": out.output, "distances": out.distances, "distances_in": out.distances_in}
    for i, (h, c) in enumerate(out.hidden):
        values[f"h{i}"], values[f"c{i}"] = h, c
    for i, (raw, dropped) in enumerate(zip(out.raw_outputs, out.outputs)):
        values[f"raw{i}"], values[f"out{i}"] = raw, dropped
    return values


@pytest.mark.parametrize("stack", [ONLSTMStack([5, 8, 8, 6], 2), LSTMStack([5, 8, 6]), ONLSTMStack([5, 8], 4)])
def test_flat_round_trip_rebuilds_the_stack_output(stack):
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5)
    hidden = stack.init_hidden(3)
    expected = _values(stack(x, hidden))
    actual = _values(unflatten_output(FlatStack(stack)(x, *(t for pair in hidden for t in pair)), stack.num_layers))
    assert actual.keys() == expected.keys()
    for name, value in expected.items():
        if value is None:
            assert actual[name] is None, name
        else:
            torch.testing.assert_close(actual[name], value, msg=name)


def test_cuda_graphs_flag_is_a_no_op_on_cpu():
    torch.manual_seed(0)
    model = RNNLanguageModel(20, tiny_backbone(), cuda_graphs=True)
    model(torch.randint(0, 20, (5, 2)))
    assert model._graphed_stack is None


def _lm_step(model, tokens, hidden):
    out = model(tokens[:-1], hidden)
    loss = F.cross_entropy(out.logits.flatten(0, 1), tokens[1:].flatten()) + out.outputs[-1].pow(2).mean()
    if out.distances is not None:
        loss = loss + out.distances.mean()
    model.zero_grad(set_to_none=True)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    return loss.detach(), [(h.detach(), c.detach()) for h, c in out.hidden], grads


@needs_cuda
@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_graphed_steps_equal_eager_steps(arch):
    """Without dropout both are deterministic: same losses, carried states and gradients over
    batches of two lengths (two graphs), each length replayed twice with new tokens."""
    torch.manual_seed(0)
    eager = RNNLanguageModel(50, tiny_backbone(arch=arch, **NO_DROPOUT)).cuda().train()
    graphed = RNNLanguageModel(50, tiny_backbone(arch=arch, **NO_DROPOUT), cuda_graphs=True).cuda().train()
    graphed.load_state_dict(eager.state_dict())
    h_eager = h_graphed = None
    for length in (9, 6, 9, 6):
        tokens = torch.randint(0, 50, (length, 4), device="cuda")
        loss_e, h_eager, grads_e = _lm_step(eager, tokens, h_eager)
        loss_g, h_graphed, grads_g = _lm_step(graphed, tokens, h_graphed)
        torch.testing.assert_close(loss_g, loss_e)
        for (he, ce), (hg, cg) in zip(h_eager, h_graphed):
            torch.testing.assert_close(hg, he)
            torch.testing.assert_close(cg, ce)
        for name, grad in grads_e.items():
            torch.testing.assert_close(grads_g[name], grad, msg=name)
    assert len(graphed._graphed_stack) == 2  # one graph per length
    graphed.eval()
    with torch.no_grad():  # evaluation is not graphed
        graphed(torch.randint(0, 50, (7, 4), device="cuda"))
    assert len(graphed._graphed_stack) == 2


@needs_cuda
def test_graph_replays_draw_fresh_dropout_masks():
    torch.manual_seed(0)
    model = RNNLanguageModel(50, tiny_backbone(), cuda_graphs=True).cuda().train()
    tokens = torch.randint(0, 50, (8, 4), device="cuda")
    first = model(tokens).logits.detach().clone()
    second = model(tokens).logits.detach().clone()
    assert not torch.allclose(first, second)
