"""The word vocabulary: ids in first-seen order, unknown words refused or mapped to <unk>."""

import pytest

from datamodules.vocabulary import EOS, UNK, Vocabulary


def test_ids_follow_first_seen_order_and_add_keeps_existing_ids():
    vocab = Vocabulary([EOS, "the", "cat"])
    assert vocab.add("sat") == 3 and vocab.add("the") == 1
    assert vocab.words == [EOS, "the", "cat", "sat"] and len(vocab) == 4
    assert vocab.encode(["the", "sat", EOS]) == [1, 3, 0]
    with pytest.raises(ValueError, match="^vocabulary words must be unique$"):
        Vocabulary(["a", "b", "a"])


def test_unknown_words_are_refused_or_mapped_to_unk():
    vocab = Vocabulary([EOS, UNK, "the"])
    with pytest.raises(KeyError):
        vocab.encode(["the", "dog"])
    assert vocab.encode(["the", "dog"], unknown="unk") == [2, 1]
    without_unk = Vocabulary([EOS, "the"])
    assert without_unk.unk_id is None
    with pytest.raises(KeyError) as error:
        without_unk.encode(["dog"], unknown="unk")
    assert error.value.args == ("the vocabulary has no <unk> token to map unknown words to",)


@pytest.mark.parametrize("mode", ["UNK", "", None])
def test_a_mode_for_unknown_words_other_than_error_or_unk_is_refused(mode):
    with pytest.raises(ValueError) as refused:
        Vocabulary([EOS, UNK, "the"]).encode(["the", "dog"], unknown=mode)
    assert str(refused.value) == f'unknown must be "error" or "unk", got {mode!r}'

