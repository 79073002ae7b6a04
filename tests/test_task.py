"""The digits task: the tokenisation of the chapter's example, the vocabulary, the answers and the split."""

from __future__ import annotations

import numpy as np
import pytest

from derivations.reference.task import (
    OPERATIONS,
    SEQ_LEN,
    VOCAB,
    all_examples,
    answer,
    detokenize,
    encode_example,
    make_split,
    sample_batch,
    tokenize,
)


def test_the_chapter_example_tokenizes_as_in_the_source():
    assert tokenize("Max(1,6,2)") == [15, 17, 3, 19, 8, 19, 4, 18]
    assert answer("Max(1,6,2)") == 8
    tokens, target = encode_example("Max(1,6,2)")
    assert tokens.dtype == np.int64 and tokens.shape == (SEQ_LEN,) and target == 8


def test_vocabulary():
    assert len(VOCAB) == 20 and len(set(VOCAB)) == 20
    assert [VOCAB.index(str(d)) for d in range(10)] == list(range(2, 12))
    assert (VOCAB.index("("), VOCAB.index(")"), VOCAB.index(","), VOCAB.index("Max")) == (17, 18, 19, 15)
    assert set(OPERATIONS) <= set(VOCAB)


@pytest.mark.parametrize(
    "text, result",
    [("Max(1,6,2)", "6"), ("Min(1,6,2)", "1"), ("First(9,0,3)", "9"), ("Second(9,0,3)", "0"),
     ("Last(9,0,3)", "3"), ("Max(7,7,7)", "7"), ("Min(0,9,0)", "0"), ("Max( 4 , 5 , 3 )", "5")],
)
def test_answers(text, result):
    assert VOCAB[answer(text)] == result


@pytest.mark.parametrize("bad", ["Max(1,6)", "Max(1,6,12)", "Sum(1,2,3)", "max(1,2,3)", "Max 1,2,3", ""])
def test_malformed_expressions_raise(bad):
    with pytest.raises(ValueError, match="is not an expression"):
        tokenize(bad)


def test_detokenize_inverts_tokenize_on_every_example():
    assert detokenize([15, 17, 3, 19, 8, 19, 4, 18]) == "Max(1,6,2)"
    with pytest.raises(ValueError):
        detokenize([20])
    data = all_examples()
    texts = data.texts()
    assert len(set(texts)) == len(texts) == 5 * 10**3
    assert all(tokenize(t) == list(row) for t, row in zip(texts[::97], data.tokens[::97]))
    assert all(VOCAB[y] in "0123456789" for y in data.targets)


def test_split_is_deterministic_and_disjoint():
    train, held_out = make_split(4000, 1000, seed=0)
    again_train, again_held_out = make_split(4000, 1000, seed=0)
    assert np.array_equal(train.tokens, again_train.tokens) and np.array_equal(held_out.targets,
                                                                               again_held_out.targets)
    assert len(train) == 4000 and len(held_out) == 1000
    train_rows = {tuple(r) for r in train.tokens}
    held_rows = {tuple(r) for r in held_out.tokens}
    assert len(train_rows) == 4000 and len(held_rows) == 1000 and train_rows.isdisjoint(held_rows)
    other_train, _ = make_split(4000, 1000, seed=1)
    assert not np.array_equal(other_train.tokens, train.tokens)
    # every operation is represented in both parts
    for part in (train, held_out):
        assert {VOCAB[t] for t in part.tokens[:, 0]} == set(OPERATIONS)


def test_split_sizes_are_validated():
    with pytest.raises(ValueError, match="add up to <= 5000"):
        make_split(4500, 600)


def test_sample_batch_is_seeded():
    train, _ = make_split(100, 10)
    a = sample_batch(np.random.default_rng(3), train, 16)
    b = sample_batch(np.random.default_rng(3), train, 16)
    assert np.array_equal(a.tokens, b.tokens) and a.tokens.shape == (16, SEQ_LEN)
    assert {tuple(r) for r in a.tokens} <= {tuple(r) for r in train.tokens}


def test_detokenize_reads_any_shape_and_the_whole_vocabulary():
    assert detokenize(np.array([[15, 17], [3, 18]])) == "Max(1)"
    assert detokenize([0, 1]) == "<pad><unk>"
    with pytest.raises(ValueError, match=r"^ids \[3, -1\] must lie in \[0, 20\)$"):
        detokenize([3, -1])


def test_the_default_split_is_the_chapters():
    train, held_out = make_split()
    assert (len(train), len(held_out)) == (4000, 1000)
    seed0_train, _ = make_split(4000, 1000, seed=0)
    assert np.array_equal(train.tokens, seed0_train.tokens)


def test_empty_parts_of_a_split_are_allowed():
    train, held_out = make_split(0, 10)
    assert len(train) == 0 and len(held_out) == 10
    train, held_out = make_split(10, 0)
    assert len(train) == 10 and len(held_out) == 0
    with pytest.raises(ValueError, match=r"^n_train = -1 and n_held_out = 0 must be >= 0 and add up to <= 5000$"):
        make_split(-1, 0)


def test_sample_batch_draws_every_row_with_its_own_target():
    data, _ = make_split(3, 0)
    batch = sample_batch(np.random.default_rng(0), data, 300)
    assert {tuple(r) for r in batch.tokens} == {tuple(r) for r in data.tokens}  # all three rows drawn
    assert [answer(detokenize(row)) for row in batch.tokens] == batch.targets.tolist()
