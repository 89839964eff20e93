"""Batched inference equals one sentence at a time."""

import pytest
import torch
from torch import nn

from onlstm import BackboneConfig, RNNLanguageModel
from onlstm.padding import pad_batch
from onlstm.parsing.inference import sequence_gate_distances, sequence_log_probs


def _model(arch="onlstm"):
    torch.manual_seed(0)
    return RNNLanguageModel(40, BackboneConfig(arch=arch, emb_size=8, hidden_size=16, n_layers=2, chunk_size=4))


SENTENCES = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15]]


def test_pad_batch():
    tokens, lengths = pad_batch([[1, 2], [3]], pad_id=0)
    assert tokens.tolist() == [[1, 3], [2, 0]]
    assert lengths.tolist() == [2, 1]


def test_pad_batch_of_nothing_says_so():
    with pytest.raises(ValueError, match=r"^pad_batch needs at least one sequence$"):
        pad_batch([])


def test_batched_log_probs_equal_batch_one():
    model = _model().train()
    batched = sequence_log_probs(model, SENTENCES, batch_size=3)
    assert model.training  # restored
    for sentence, scores in zip(SENTENCES, batched):
        alone = sequence_log_probs(model, [sentence])[0]
        assert scores.shape == (len(sentence) - 1,)
        torch.testing.assert_close(scores, alone, atol=1e-5, rtol=0)
    # the first score is log p(s[1] | s[0]) by a direct forward pass
    logits = model.eval()(torch.tensor(SENTENCES[0]).unsqueeze(1)).logits
    torch.testing.assert_close(batched[0][0], torch.log_softmax(logits[0, 0], -1)[SENTENCES[0][1]])


def test_batched_distances_equal_batch_one():
    model = _model()
    batched = sequence_gate_distances(model, SENTENCES, batch_size=2)
    for sentence, gates in zip(SENTENCES, batched):
        alone = sequence_gate_distances(model, [sentence])[0]
        assert gates.distances.shape == (2, len(sentence))
        torch.testing.assert_close(gates.distances, alone.distances, atol=1e-5, rtol=0)
        torch.testing.assert_close(gates.distances_in, alone.distances_in, atol=1e-5, rtol=0)


class _RecordingModel(nn.Module):
    """Any module that returns the LM's output (a compiled or wrapped model), recording its input shapes."""

    def __init__(self, lm):
        super().__init__()
        self.lm, self.shapes = lm, []

    def forward(self, tokens):
        self.shapes.append(tuple(tokens.shape))
        return self.lm(tokens)


def test_distances_batch_sentences_of_similar_length_through_any_module():
    lm = _model()
    wrapped = _RecordingModel(lm)
    got = sequence_gate_distances(wrapped, SENTENCES, batch_size=2)
    # lengths 3, 6, 2, 4: sorted, the batches are (2, 3) and (4, 6) words, padded to 3 and 6
    assert wrapped.shapes == [(3, 2), (6, 2)]
    for gates, direct in zip(got, sequence_gate_distances(lm, SENTENCES)):
        torch.testing.assert_close(gates.distances, direct.distances, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_inference_runs_on_the_models_device():
    lm = _model()
    on_cpu = sequence_gate_distances(lm, SENTENCES, batch_size=3)
    log_probs_cpu = sequence_log_probs(lm, SENTENCES, batch_size=3)
    lm = lm.cuda()
    for gates, expected in zip(sequence_gate_distances(lm, SENTENCES, batch_size=3), on_cpu):
        assert gates.distances.device.type == "cpu"  # handed back on the CPU
        torch.testing.assert_close(gates.distances, expected.distances, atol=1e-4, rtol=0)
    for scores, expected in zip(sequence_log_probs(lm, SENTENCES, batch_size=3), log_probs_cpu):
        torch.testing.assert_close(scores, expected, atol=1e-4, rtol=0)
