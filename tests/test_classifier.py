"""onlstm.classifier, the sequence encoder and head that the logic and ListOps classifiers share:
which state a sequence is read at, and the errors for what it cannot read."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from onlstm.classifier import SequenceEncoder, classifier_head
from tests.helpers import NO_DROPOUT, tiny_backbone


def encoder(arch: str = "onlstm") -> SequenceEncoder:
    torch.manual_seed(0)
    return SequenceEncoder(12, tiny_backbone(arch=arch, tie_weights=False, **NO_DROPOUT)).eval()


@pytest.mark.parametrize("arch", ["onlstm", "lstm"])
def test_a_sequence_is_read_at_its_last_token_not_before_it_nor_after(arch):
    """A sequence's features depend on its last token (the state is read after it) and on nothing
    beyond its length; a one-token sequence is read at that token."""
    model = encoder(arch)
    tokens = torch.tensor([[1, 4], [2, 5], [3, 6], [7, 8]])  # (time, batch): lengths 3 and 1, then other tokens
    lengths = torch.tensor([3, 1])
    with torch.no_grad():
        features = model.encode(tokens, lengths)
        for row, column in ((2, 0), (0, 1)):  # the last token of each
            changed = tokens.clone()
            changed[row, column] = 9
            assert not torch.allclose(model.encode(changed, lengths)[column], features[column])
        after = tokens.clone()
        after[3, 0], after[1:, 1] = 11, 11
        torch.testing.assert_close(model.encode(after, lengths), features)


@pytest.mark.parametrize("tie_weights,width", [(False, 32), (True, 16)])
def test_the_encoders_width_is_its_last_layers_size(tie_weights, width):
    """What the head is built on: hidden_size (32) wide, or emb_size (16) where the last layer is
    sized to tie weights."""
    assert SequenceEncoder(12, tiny_backbone(tie_weights=tie_weights)).width == width


def test_a_batch_with_more_or_fewer_lengths_than_sequences_is_refused():
    with pytest.raises(ValueError) as info:
        encoder().encode(torch.zeros(4, 2, dtype=torch.long), torch.tensor([4, 4, 4]))
    assert str(info.value) == "got 3 lengths for a batch of 2 sequences"


def test_the_mlp_head_drops_before_each_linear_layer_with_an_elu_between_them():
    """The logic task's head: dropout, linear, ELU, dropout, linear, its weights under the names
    (1.*, 4.*) that checkpoints store; by hand, 2 elu(x) + 0.5 at x = -1 and at x = 3."""
    head = classifier_head(1, 1, 1, 0.25)
    assert [type(layer) for layer in head] == [nn.Dropout, nn.Linear, nn.ELU, nn.Dropout, nn.Linear]
    assert [head[0].p, head[3].p] == [0.25, 0.25]
    head.load_state_dict({"1.weight": torch.tensor([[1.0]]), "1.bias": torch.tensor([0.0]),
                          "4.weight": torch.tensor([[2.0]]), "4.bias": torch.tensor([0.5])})
    with torch.no_grad():
        out = head.eval()(torch.tensor([[-1.0], [3.0]]))
    torch.testing.assert_close(out, torch.tensor([[2 * (math.exp(-1) - 1) + 0.5], [6.5]]))


def test_a_negative_hidden_size_of_the_head_is_refused_with_what_zero_means():
    assert len(classifier_head(6, 0, 3, 0.1)) == 2  # 0: dropout and one linear layer
    with pytest.raises(ValueError) as info:
        classifier_head(6, -1, 3, 0.1)
    assert str(info.value) == "the classifier's hidden size must be >= 0 (0: one linear layer), got -1"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_sequences_are_read_on_the_models_device():
    model = encoder()
    tokens, lengths = torch.tensor([[1, 4], [2, 5], [3, 6]]), torch.tensor([3, 1])
    with torch.no_grad():
        on_cpu = model.encode(tokens, lengths)
        on_gpu = model.cuda().encode(tokens.cuda(), lengths)  # lengths may stay on the CPU
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-5, rtol=0)
