"""The backbone against the paper's equations: hand-computed cases, invariants, regularizers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import onlstm.cell as cell_module
from onlstm import (
    BackboneConfig,
    LinearDropConnect,
    LockedDropout,
    LSTMStack,
    ONLSTMCell,
    ONLSTMStack,
    RNNLanguageModel,
    cumax,
)
from onlstm.lm import WordEncoder, build_stack
from onlstm.stack import LSTMLayer, onlstm_layer_reference


def test_cumax_is_monotone_in_unit_interval_and_ends_at_one():
    x = torch.randn(50, 13) * 5
    y = cumax(x)
    assert torch.all(y >= 0) and torch.all(y <= 1 + 1e-6)
    assert torch.all(y[:, 1:] - y[:, :-1] >= -1e-7)
    torch.testing.assert_close(y[:, -1], torch.ones(50))
    torch.testing.assert_close(cumax(torch.zeros(1, 4)), torch.tensor([[0.25, 0.5, 0.75, 1.0]]))


def test_cumax_runs_along_the_dimension_asked_for_at_any_rank():
    """cumax is public (``onlstm.cumax``): over a (time, batch, n) tensor, along n by default, along
    time when asked."""
    x = torch.zeros(2, 3, 4)
    torch.testing.assert_close(cumax(x), torch.tensor([0.25, 0.5, 0.75, 1.0]).expand(2, 3, 4))
    torch.testing.assert_close(cumax(x, dim=0), torch.tensor([0.5, 1.0])[:, None, None].expand(2, 3, 4))


def _zero_cell_with_biases(bias: list[float]) -> ONLSTMCell:
    cell = ONLSTMCell(input_size=1, hidden_size=2, chunk_size=1)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
        cell.ih.bias.copy_(torch.tensor(bias))
    return cell


def test_cell_matches_hand_computed_step():
    # rows: [master input (2), master forget (2), output (2), cell (2), input (2), forget (2)]
    # All weights zero, so every gate is its bias. By hand (Eqs. 9-14):
    #   f~ = cumax([0, 0]) = [.5, 1];  i~ = 1 - cumax([0, 0]) = [.5, 0];  w = f~ i~ = [.25, 0]
    #   f = i = o = sigmoid(0) = .5;  c^ = tanh(atanh(.5)) = .5
    #   f^ = f w + (f~ - w) = [.375, 1];  i^ = i w + (i~ - w) = [.375, 0]
    #   c' = f^ * [1, 1] + i^ * .5 = [.5625, 1];  h' = .5 tanh(c')
    #   d^f = 1 - mean(f~) = .25;  d^i = mean(i~) = .25
    a = math.atanh(0.5)
    cell = _zero_cell_with_biases([0, 0, 0, 0, 0, 0, a, a, 0, 0, 0, 0])
    h, c, d_f, d_i = cell(torch.zeros(1, 1), (torch.zeros(1, 2), torch.ones(1, 2)))
    torch.testing.assert_close(c, torch.tensor([[0.5625, 1.0]]))
    torch.testing.assert_close(h, 0.5 * torch.tanh(torch.tensor([[0.5625, 1.0]])))
    torch.testing.assert_close(d_f, torch.tensor([0.25]))
    torch.testing.assert_close(d_i, torch.tensor([0.25]))


def test_cell_with_master_gates_open_is_an_lstm_cell(monkeypatch):
    torch.manual_seed(0)
    cell = ONLSTMCell(input_size=5, hidden_size=6, chunk_size=3)
    n, H = cell.n_chunk, cell.hidden_size
    # force f~ = 1 and i~ = 1 (cumax is called for the master forget gate first, then the input)
    outputs = iter([lambda x: torch.ones_like(x), lambda x: torch.zeros_like(x)])
    monkeypatch.setattr(cell_module, "cumax", lambda x: next(outputs)(x))

    # the same weights in nn.LSTMCell's row order (input, forget, cell, output)
    def rows(k):
        return slice(2 * n + k * H, 2 * n + (k + 1) * H)

    order = [rows(2), rows(3), rows(1), rows(0)]
    lstm = nn.LSTMCell(5, 6)
    with torch.no_grad():
        lstm.weight_ih.copy_(torch.cat([cell.ih.weight[r] for r in order]))
        lstm.weight_hh.copy_(torch.cat([cell.hh.weight[r] for r in order]))
        lstm.bias_ih.copy_(torch.cat([cell.ih.bias[r] for r in order]))
        lstm.bias_hh.copy_(torch.cat([cell.hh.bias[r] for r in order]))
    x, h0, c0 = torch.randn(4, 5), torch.randn(4, 6), torch.randn(4, 6)
    h, c, _, _ = cell(x, (h0, c0))
    h_ref, c_ref = lstm(x, (h0, c0))
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(c, c_ref)


def test_cell_describes_its_sizes_as_torchs_recurrent_cells_do():
    """``input_size`` and ``hidden_size`` as on ``nn.LSTMCell``, with the chunking and the gate rows
    laid out as the official code does (two master gates of one value per chunk, four LSTM gates)."""
    cell = ONLSTMCell(input_size=5, hidden_size=6, chunk_size=3)
    assert (cell.input_size, cell.hidden_size, cell.chunk_size, cell.n_chunk) == (5, 6, 3, 2)
    assert cell.gate_rows == 4 * 6 + 2 * 2 == cell.ih.out_features == cell.hh.out_features
    assert cell.ih.in_features == 5 and cell.hh.in_features == 6


def test_chunk_size_must_divide_hidden_size():
    with pytest.raises(ValueError) as info:
        ONLSTMStack([8, 20], chunk_size=7)
    assert str(info.value) == "chunk_size=7 must divide hidden_size=20: pick a chunk size that is a divisor of every layer's size"
    with pytest.raises(ValueError, match="chunk_size=0 must divide hidden_size=20"):  # and no division by zero
        ONLSTMStack([8, 20], chunk_size=0)


@pytest.mark.parametrize("stack_cls", [ONLSTMStack, LSTMStack])
def test_stack_interface_shapes(stack_cls):
    stack = stack_cls([8, 20, 12], chunk_size=4, dropout=0.2, dropconnect=0.3)
    out = stack(torch.randn(7, 3, 8))
    assert out.output.shape == (7, 3, 12)
    assert [r.shape for r in out.raw_outputs] == [(7, 3, 20), (7, 3, 12)]
    assert [o.shape for o in out.outputs] == [(7, 3, 20), (7, 3, 12)]
    assert [(h.shape, c.shape) for h, c in out.hidden] == [((3, 20), (3, 20)), ((3, 12), (3, 12))]
    assert out.outputs[-1] is out.output
    if stack_cls is ONLSTMStack:
        assert out.distances.shape == (2, 7, 3) and out.distances_in.shape == (2, 7, 3)
    else:
        assert out.distances is None and out.distances_in is None


def test_an_lstm_layer_computes_torchs_lstm_and_describes_its_sizes_as_it_does():
    """The LSTM baseline's layer is nn.LSTM with DropConnect on its hidden weight: at its default
    rate (none), in training, the same weights give nn.LSTM's output and state, biases included."""
    torch.manual_seed(0)
    layer = LSTMLayer(3, 4).train()
    reference = nn.LSTM(3, 4)
    with torch.no_grad():
        for name, ours in (("weight_ih_l0", layer.ih.weight), ("weight_hh_l0", layer.hh.weight),
                           ("bias_ih_l0", layer.ih.bias), ("bias_hh_l0", layer.hh.bias)):
            getattr(reference, name).copy_(ours)
    x, h, c = torch.randn(5, 2, 3), torch.randn(2, 4), torch.randn(2, 4)
    got = layer(x, h, c)
    output, (h_n, c_n) = reference(x, (h[None], c[None]))
    torch.testing.assert_close(got.output, output)
    torch.testing.assert_close((got.h, got.c), (h_n[0], c_n[0]))
    assert (layer.input_size, layer.hidden_size) == (reference.input_size, reference.hidden_size) == (3, 4)


@pytest.mark.parametrize("make", [lambda: LSTMStack([3, 4, 4]), lambda: ONLSTMStack([3, 4, 4], chunk_size=2)],
                         ids=["lstm", "onlstm"])
def test_a_stack_drops_nothing_unless_asked(make):
    """Dropout between layers and DropConnect are off by default: training mode computes what
    evaluation does."""
    torch.manual_seed(0)
    stack = make()
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(stack.train()(x).output, stack.eval()(x).output)


def test_distances_lie_in_unit_interval():
    torch.manual_seed(1)
    stack = ONLSTMStack([8, 20, 20], chunk_size=5)
    out = stack(torch.randn(30, 4, 8) * 3)
    for d in (out.distances, out.distances_in):
        assert torch.all(d >= 0) and torch.all(d <= 1)


@pytest.mark.parametrize("stack_cls", [ONLSTMStack, LSTMStack])
def test_a_stacks_zero_state_has_each_layers_size_and_the_dtype_asked_for(stack_cls):
    stack = stack_cls([3, 8, 4], chunk_size=4)
    state = stack.init_hidden(2)
    assert [(h.shape, c.shape) for h, c in state] == [((2, 8), (2, 8)), ((2, 4), (2, 4))]
    assert all(t.dtype == torch.float32 and not t.any() for pair in state for t in pair)
    like = torch.zeros(1, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for pair in stack.init_hidden(2, like=like) for t in pair)


@pytest.mark.parametrize("stack_cls", [ONLSTMStack, LSTMStack])
def test_a_stack_needs_an_input_size_and_a_layer(stack_cls):
    with pytest.raises(ValueError) as info:
        stack_cls([8], chunk_size=4)
    assert str(info.value) == "layer_sizes needs the input size and at least one layer, got [8]"


@pytest.mark.parametrize("stack_cls", [ONLSTMStack, LSTMStack])
def test_a_stack_refuses_input_of_another_shape_and_says_which_it_expects(stack_cls):
    stack = stack_cls([3, 4], chunk_size=2)
    for shape in ((5, 2, 7), (5, 3)):  # the wrong feature size; a batch without its time axis
        with pytest.raises(ValueError) as info:
            stack(torch.zeros(shape))
        assert str(info.value) == f"expected input of shape (time, batch, 3), got {shape}"


def test_hidden_state_is_carried():
    torch.manual_seed(2)
    stack = ONLSTMStack([4, 8], chunk_size=2).eval()
    x = torch.randn(10, 2, 4)
    whole = stack(x)
    first = stack(x[:6])
    second = stack(x[6:], first.hidden)
    torch.testing.assert_close(torch.cat([first.output, second.output]), whole.output)


def test_dropconnect_mask_is_constant_across_time_and_off_in_eval():
    layer = LinearDropConnect(6, 10, dropout=0.5)
    layer.train()
    w = layer.sampled_weight()
    zeros = w == 0
    assert 0 < zeros.float().mean() < 1
    # one mask for the whole sequence: the stack's output equals the per-step recurrence run with
    # a single sampled weight (same RNG draws), which it would not if the mask changed per step
    stack = ONLSTMStack([3, 4], chunk_size=2, dropconnect=0.5).train()
    x = torch.randn(6, 2, 3)
    torch.manual_seed(7)
    out = stack(x).output
    torch.manual_seed(7)
    cell = stack.cells[0]
    w_hh = cell.hh.sampled_weight()
    assert (w_hh == 0).any()
    zeros = torch.zeros(2, 4)
    torch.testing.assert_close(out, onlstm_layer_reference(cell, x, zeros, zeros, w_hh).output)
    layer.eval()
    torch.testing.assert_close(layer.sampled_weight(), layer.weight * 0.5)


def test_lstm_dropconnect_reaches_the_hidden_weight_gradient():
    torch.manual_seed(3)
    stack = LSTMStack([3, 8], dropconnect=0.5)
    stack(torch.randn(4, 2, 3)).output.sum().backward()
    grad = stack.layers[0].hh.weight.grad
    assert grad is not None and (grad == 0).any() and (grad != 0).any()


def test_locked_dropout_mask_is_constant_across_time():
    """One mask per sequence: the same at every step, another for each sequence of the batch."""
    drop = LockedDropout().train()
    x = torch.ones(20, 4, 50)
    y = drop(x, 0.5)
    assert torch.equal(y, y[:1].expand_as(y))
    assert all(not torch.equal(y[0, 0], y[0, b]) for b in (1, 2, 3))  # equal by chance: 2^-50
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(x, 0.5), x)


def test_language_model_ties_weights_and_predicts_every_position():
    cfg = BackboneConfig(emb_size=8, hidden_size=16, n_layers=3, chunk_size=4)
    model = RNNLanguageModel(30, cfg)
    assert cfg.layer_sizes() == [8, 16, 16, 8]
    assert model.decoder.weight is model.embedding.weight
    out = model(torch.randint(0, 30, (6, 2)))
    assert out.logits.shape == (6, 2, 30)
    assert out.distances.shape == (3, 6, 2)
    lstm = RNNLanguageModel(30, BackboneConfig(arch="lstm", emb_size=8, hidden_size=16, n_layers=2))
    assert lstm(torch.randint(0, 30, (6, 2))).distances is None


def test_lm_implementations_compute_the_same_logits():
    torch.manual_seed(0)
    cfg = BackboneConfig(emb_size=8, hidden_size=16, n_layers=2, chunk_size=4)
    models = {name: RNNLanguageModel(30, cfg, implementation=name).eval() for name in ("reference", "fused")}
    assert models["reference"].stack.implementation == "reference"
    models["fused"].load_state_dict(models["reference"].state_dict())
    tokens = torch.randint(0, 30, (6, 2))
    torch.testing.assert_close(models["fused"](tokens).logits, models["reference"](tokens).logits, rtol=1e-4, atol=1e-5)


def test_lm_in_eval_mode_is_the_dropout_free_model():
    """Guards: eval mode turns every dropout off (embedding dropout, locked dropout on the input,
    between layers and on the output). The eval logits of a model with all rates at 0.5 equal those
    of the same weights with all rates at 0 (DropConnect is 0 here: its eval weight is the expected
    one, tested above), whatever the RNG; in training mode they differ."""
    rates = {"dropout": 0.5, "dropouth": 0.5, "dropouti": 0.5, "dropoute": 0.5, "wdrop": 0.0}
    cfg = BackboneConfig(emb_size=8, hidden_size=16, n_layers=2, chunk_size=4, **rates)
    torch.manual_seed(0)
    model = RNNLanguageModel(30, cfg)
    plain = RNNLanguageModel(30, replace(cfg, **{name: 0.0 for name in rates}))
    plain.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 30, (6, 2))
    expected = plain.eval()(tokens).logits
    for seed in (1, 2):
        torch.manual_seed(seed)
        torch.testing.assert_close(model.eval()(tokens).logits, expected, rtol=0, atol=0)
    assert not torch.allclose(model.train()(tokens).logits, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("p", [0.2, 0.45])
def test_dropconnect_drops_each_weight_with_probability_p(dtype, p):
    """Guards: DropConnect zeroes each hidden-to-hidden weight with probability ``p`` (not 1 - p),
    keeps the others unscaled, and uses ``(1 - p) * W`` in eval. p != 0.5, where p and 1 - p
    differ. Rate over 5 draws of 20,000 weights (n = 100,000), within 5 binomial sd (0.8% at
    p = 0.45)."""
    layer = LinearDropConnect(200, 100, dropout=p).to(dtype).train()
    with torch.no_grad():
        layer.weight.fill_(3.0)
    torch.manual_seed(0)
    draws = torch.stack([layer.sampled_weight().detach() for _ in range(5)])
    assert set(draws.unique().tolist()) == {0.0, 3.0}  # kept weights are not rescaled
    n = draws.numel()
    assert abs((draws == 0).double().mean().item() - p) <= 5 * math.sqrt(p * (1 - p) / n)
    assert not torch.equal(draws[0], draws[1])  # a new mask per sequence
    layer.eval()
    torch.testing.assert_close(layer.sampled_weight(), torch.full_like(layer.weight, 3.0 * (1 - p)), rtol=0, atol=1e-6)


def test_embedding_dropout_drops_whole_word_types_and_rescales_the_others():
    """Guards ``embedded_dropout``: a word type is dropped with probability p at every position it
    occurs in the batch (its whole vector zero), a kept type's vector is divided by 1 - p, and eval
    is the plain embedding. Every one of 1,000 types occurs twice (two rows of the batch), 20 draws:
    dropped rate within 5 binomial sd of p over 20,000 type draws."""
    from onlstm.regularizers import embedded_dropout

    p, vocab = 0.3, 1000
    embed = nn.Embedding(vocab, 4)
    with torch.no_grad():
        embed.weight.copy_(torch.arange(1.0, vocab * 4 + 1).view(vocab, 4))  # no zero entry
    words = torch.stack([torch.arange(vocab), torch.arange(vocab).flip(0)])  # (time 2, batch 1000)
    torch.manual_seed(0)
    dropped = []
    for _ in range(20):
        out = embedded_dropout(embed, words, p, training=True)
        zero = out == 0  # (2, 1000, 4): per position and feature
        assert torch.equal(zero, zero[..., :1].expand_as(zero))  # whole vectors, not features
        assert zero.any() and not zero.all()
        torch.testing.assert_close(out[~zero], (embed.weight[words] / (1 - p))[~zero])  # kept: rescaled
        by_type = zero[0, :, 0]  # row 0 holds type i at column i
        assert torch.equal(zero[1, :, 0].flip(0), by_type)  # the same type, the same fate
        dropped.append(by_type)
    rate = torch.stack(dropped).double().mean().item()
    assert abs(rate - p) <= 5 * math.sqrt(p * (1 - p) / (20 * vocab))
    assert torch.equal(embedded_dropout(embed, words, p, training=False), embed.weight[words])


@pytest.mark.parametrize("options", [{"padding_idx": 2}, {"max_norm": 1.0, "norm_type": 1.0},
                                     {"scale_grad_by_freq": True}, {"sparse": True}],
                         ids=["padding_idx", "max_norm", "scale_grad_by_freq", "sparse"])
def test_embedding_dropout_keeps_every_option_of_the_embedding(options):
    """``embedded_dropout`` with nothing dropped is the embedding's own lookup, whatever options the
    ``nn.Embedding`` was built with: the same vectors, the same in-place max-norm renormalisation of
    the looked-up rows, the same gradient (none for the padding row, scaled down by a word's count
    in the batch, sparse). Break: drop one of the options it passes on."""
    from onlstm.regularizers import embedded_dropout

    torch.manual_seed(0)
    ours, plain = nn.Embedding(6, 3, **options), nn.Embedding(6, 3, **options)
    with torch.no_grad():
        ours.weight.mul_(4)  # rows far above max_norm 1, where renormalising shows
        plain.weight.copy_(ours.weight)
    words = torch.tensor([[2, 1], [2, 5], [4, 2]])  # word 2 three times, among them the padding index
    out, expected = embedded_dropout(ours, words, 0.0, training=True), plain(words)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(ours.weight.detach(), plain.weight.detach(), rtol=0, atol=0)
    weights = torch.arange(1.0, 19.0).view(3, 2, 3)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    assert ours.weight.grad.is_sparse == plain.weight.grad.is_sparse == options.get("sparse", False)
    torch.testing.assert_close(ours.weight.grad.to_dense(), plain.weight.grad.to_dense(), rtol=0, atol=0)


def test_a_layer_without_dropconnect_uses_its_weight_as_it_is_and_draws_no_random_numbers():
    """DropConnect at rate 0 costs nothing: in training and in eval the layer hands back its own
    weight (no copy, no mask) and leaves the random stream of the run untouched."""
    for layer in (LinearDropConnect(3, 4).train(), LinearDropConnect(3, 4).eval()):
        state = torch.get_rng_state()
        assert layer.sampled_weight() is layer.weight
        assert torch.equal(torch.get_rng_state(), state)


def test_dropconnect_layer_called_like_a_linear_layer():
    """``LinearDropConnect`` is an ``nn.Linear``: built like one it has a bias and drops nothing;
    called on an input it applies its expected weight (1 - p) W in eval, a weight given to it
    instead, and the bias either way; a rate outside [0, 1) is refused by name."""
    default = LinearDropConnect(2, 3).train()
    assert default.bias is not None and default.dropout == 0.0 and default.weight.shape == (3, 2)
    assert LinearDropConnect(2, 3, bias=False).bias is None
    for rate in (1.0, -0.1):
        with pytest.raises(ValueError, match=rf"dropconnect must be in \[0, 1\), got {rate}"):
            LinearDropConnect(2, 2, dropout=rate)
    layer = LinearDropConnect(2, 2, dropout=0.25).eval()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[4.0, 8.0], [-4.0, 0.0]]))
        layer.bias.copy_(torch.tensor([1.0, -1.0]))
    x = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(layer(x), torch.tensor([[0.75 * 20 + 1, 0.75 * -4 - 1]]), rtol=0, atol=0)
    given = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(layer(x, given), torch.tensor([[2.0, 1.0]]), rtol=0, atol=0)


# ----------------------------------------------------------------------------- the language model's forward
def _small_lm(arch: str = "onlstm", n_layers: int = 3) -> RNNLanguageModel:
    torch.manual_seed(0)
    cfg = BackboneConfig(arch=arch, emb_size=6, hidden_size=8, n_layers=n_layers, chunk_size=2)
    return RNNLanguageModel(11, cfg).eval()


@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_the_language_model_carries_its_state_from_one_segment_to_the_next(arch):
    """Training and evaluation read a corpus in BPTT segments, each starting from the state the one
    before left: two halves with the state carried are the whole text read at once; started afresh,
    the second half is not."""
    lm = _small_lm(arch)
    tokens = torch.randint(0, 11, (10, 3))
    whole = lm(tokens).logits
    first = lm(tokens[:5])
    second = lm(tokens[5:], first.hidden)
    torch.testing.assert_close(torch.cat([first.logits, second.logits]), whole)
    afresh = lm(tokens[5:]).logits
    assert (afresh - whole[5:]).abs().max() > 1e-3


@pytest.mark.parametrize("stack_class", [ONLSTMStack, LSTMStack])
def test_a_stacks_dropout_falls_between_its_layers_and_not_on_the_last_output(stack_class):
    """AWD-LSTM's `dropouth` is applied to each layer's output that feeds another layer; the top
    layer's output is left to the language model's own output dropout (`dropout`), so it is not
    dropped twice (breaks seen failing: the between-layers test made `<=`, or `num_layers + 1`)."""
    torch.manual_seed(0)
    stack = stack_class([4, 8, 8, 8], chunk_size=2, dropout=0.5).train()
    out = stack(torch.randn(5, 3, 4))
    for raw, fed_on in zip(out.raw_outputs[:2], out.outputs[:2]):
        # dropped on the way to the next layer: each unit zeroed or scaled by 1 / (1 - 0.5)
        scale = (fed_on[raw != 0] / raw[raw != 0]).detach()
        assert torch.isclose(scale, torch.zeros(())).any() and torch.isclose(scale, torch.full((), 2.0)).any()
        assert (torch.isclose(scale, torch.zeros(())) | torch.isclose(scale, torch.full((), 2.0))).all()
    assert out.output is out.raw_outputs[2] and out.outputs[2] is out.raw_outputs[2]


def test_the_language_models_outputs_are_one_per_layer_the_last_after_its_dropout():
    """``outputs``: each layer's output (what AR/TAR and probes read), the top one as the decoder
    reads it, after the output dropout."""
    lm = _small_lm(n_layers=3)
    tokens = torch.randint(0, 11, (7, 2))
    out = lm(tokens)
    stack = lm.stack(lm.embed(tokens))
    assert len(out.outputs) == 3
    for got, expected in zip(out.outputs[:2], stack.outputs[:2]):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(out.outputs[2], stack.output)  # evaluation: no dropout
    lm.cfg = replace(lm.cfg, dropout=0.5)
    lm.train()
    torch.manual_seed(1)
    dropped = lm(tokens)
    assert len(dropped.outputs) == 3 and (dropped.outputs[2] == 0).any()  # the output dropout's zeros ...
    torch.testing.assert_close(lm.decoder(dropped.outputs[2]), dropped.logits)  # ... are what the decoder read


def test_the_language_models_zero_state_has_the_dtype_of_its_weights():
    lm = _small_lm().double()
    hidden = lm.init_hidden(4)
    assert [tuple(h.shape) for pair in hidden for h in pair] == [(4, 8), (4, 8), (4, 8), (4, 8), (4, 6), (4, 6)]
    assert {h.dtype for pair in hidden for h in pair} == {torch.float64}
    assert lm(torch.randint(0, 11, (3, 4)), hidden).logits.dtype == torch.float64


@pytest.mark.parametrize(("fields", "message"), [
    ({"arch": "gru"}, "model.arch must be 'onlstm' or 'lstm', got 'gru'"),
    ({"n_layers": 0}, "model.n_layers must be at least 1, got 0"),
    ({"emb_size": 0}, "model.emb_size must be at least 1, got 0"),
    ({"hidden_size": -3}, "model.hidden_size must be at least 1, got -3"),
    ({"chunk_size": 0}, "model.chunk_size must be at least 1 (neurons per master-gate value), got 0"),
    # the layers are [12, 16] (the last one tied to the embedding): 12 does not divide 16; the divisor
    # suggested divides every layer (8 divides 16, not 12)
    ({"hidden_size": 12, "emb_size": 16, "n_layers": 2, "chunk_size": 12},
     "model.chunk_size=12 must divide every layer size [12, 16] (it does not divide 16): pick a divisor, "
     "e.g. model.chunk_size=4"),
    # untied: every layer is hidden_size wide; the first layer it fails on is named
    ({"hidden_size": 10, "emb_size": 16, "n_layers": 2, "chunk_size": 4, "tie_weights": False},
     "model.chunk_size=4 must divide every layer size [10, 10] (it does not divide 10): pick a divisor, "
     "e.g. model.chunk_size=2"),
    # the first layer after the embedding is checked too (the tied last one, 16, is divisible)
    ({"hidden_size": 10, "emb_size": 16, "n_layers": 2, "chunk_size": 4},
     "model.chunk_size=4 must divide every layer size [10, 16] (it does not divide 10): pick a divisor, "
     "e.g. model.chunk_size=2"),
    # the divisor suggested is the largest below chunk_size, odd or 1 where nothing else divides
    ({"hidden_size": 9, "emb_size": 12, "n_layers": 2, "chunk_size": 6},
     "model.chunk_size=6 must divide every layer size [9, 12] (it does not divide 9): pick a divisor, "
     "e.g. model.chunk_size=3"),
    ({"hidden_size": 7, "emb_size": 16, "n_layers": 2, "chunk_size": 4},
     "model.chunk_size=4 must divide every layer size [7, 16] (it does not divide 7): pick a divisor, "
     "e.g. model.chunk_size=1"),
])
def test_a_backbone_config_that_cannot_make_a_model_is_refused_with_the_field_in_full(fields, message):
    with pytest.raises(ValueError) as info:
        BackboneConfig(**fields).validate()
    assert str(info.value) == message


def test_the_smallest_sizes_are_accepted():
    """One layer of width one, chunks of one neuron: the edge of every size check (breaks seen
    failing: the emb_size/hidden_size check made `<= 1`)."""
    BackboneConfig(n_layers=1, emb_size=1, hidden_size=1, chunk_size=1).validate()
    BackboneConfig(n_layers=1, emb_size=1, hidden_size=1, chunk_size=1, tie_weights=False).validate()


def test_the_lstm_baseline_has_no_chunks_to_divide_its_layers():
    BackboneConfig(arch="lstm", hidden_size=10, emb_size=7, chunk_size=4).validate()


@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_the_language_model_is_built_and_initialised_as_its_config_says(arch):
    """Every field of the config reaches the part it configures, and the embedding and decoder start
    as AWD-LSTM's (uniform in +-0.1, a zero bias), not as torch's defaults."""
    torch.manual_seed(0)
    cfg = BackboneConfig(arch=arch, emb_size=6, hidden_size=8, n_layers=3, chunk_size=2, dropouth=0.25, wdrop=0.35,
                         tie_weights=False)
    lm = RNNLanguageModel(400, cfg, implementation="reference")
    stack = lm.stack
    assert type(stack) is (ONLSTMStack if arch == "onlstm" else LSTMStack)
    assert stack.layer_sizes == [6, 8, 8, 8] and stack.dropout == 0.25
    layers = stack.cells if arch == "onlstm" else stack.layers
    assert [layer.hh.dropout for layer in layers] == [0.35] * 3
    if arch == "onlstm":
        assert stack.chunk_size == 2 and stack.implementation == "reference"
    assert tuple(lm.embedding.weight.shape) == (400, 6) and tuple(lm.decoder.weight.shape) == (400, 8)
    for weight in (lm.embedding.weight, lm.decoder.weight):  # torch's Linear default would reach 1/sqrt(8) = 0.35
        assert weight.abs().max() <= 0.1 and weight.min() < -0.09 and weight.max() > 0.09
    assert torch.equal(lm.decoder.bias, torch.zeros(400))
    assert lm.vocab_size == 400 and lm.vocab is None and lm.cuda_graphs is False


def test_the_padding_word_of_a_sequence_encoder_has_a_zero_embedding():
    encoder = WordEncoder(10, BackboneConfig(emb_size=6, hidden_size=8, n_layers=1, chunk_size=2), padding_idx=3)
    assert encoder.embedding.padding_idx == 3 and torch.equal(encoder.embedding.weight[3], torch.zeros(6))


def test_build_stack_makes_the_configs_stack_or_one_of_other_sizes_with_its_settings():
    cfg = BackboneConfig(emb_size=6, hidden_size=8, n_layers=2, chunk_size=2, dropouth=0.25)
    assert build_stack(cfg).layer_sizes == [6, 8, 6]
    other = build_stack(cfg, layer_sizes=[4, 10])  # e.g. a probe's one layer over 4-wide inputs
    assert other.layer_sizes == [4, 10] and other.dropout == 0.25 and other.chunk_size == 2
    with pytest.raises(ValueError) as info:  # a config never validated
        build_stack(replace(cfg, arch="gru"))
    assert str(info.value) == "model.arch must be 'onlstm' or 'lstm', got 'gru'"


def test_a_one_layer_untied_language_model_decodes_its_hidden_size():
    """Untied, the decoder reads the last layer (hidden_size wide), not the embedding's width."""
    lm = RNNLanguageModel(20, BackboneConfig(emb_size=6, hidden_size=8, n_layers=1, chunk_size=2, tie_weights=False))
    assert tuple(lm.decoder.weight.shape) == (20, 8)
    assert tuple(lm(torch.randint(0, 20, (3, 2))).logits.shape) == (3, 2, 20)


def test_the_language_model_drops_whole_word_types_only_while_training():
    """``dropoute``: in training a dropped word's embedding is zero wherever it occurs; evaluation
    drops nothing."""
    cfg = BackboneConfig(emb_size=6, hidden_size=8, n_layers=1, chunk_size=2, dropoute=0.5, dropouti=0.0)
    lm = RNNLanguageModel(5, cfg)
    tokens = torch.arange(5).repeat(4, 1)  # every word in every row
    torch.manual_seed(0)
    dropped = lm.train().embed(tokens).detach()
    zero_words = {int(w) for w in range(5) if (dropped[:, w] == 0).all()}
    assert 0 < len(zero_words) < 5
    assert all((dropped[:, w] != 0).any() for w in range(5) if w not in zero_words)
    assert (lm.eval().embed(tokens) != 0).all()


def test_an_unknown_recurrence_implementation_is_refused_with_the_choices():
    with pytest.raises(ValueError) as info:
        ONLSTMStack([3, 4], chunk_size=2, implementation="cudnn")
    assert str(info.value) == "implementation must be one of ['fused', 'fused_cpu', 'fused_triton', 'reference'], got 'cudnn'"
