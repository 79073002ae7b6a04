"""The chapter's task: apply an operation to three digits, ``Max(1,6,2)`` -> ``6``.

An input is an operation name, an opening parenthesis, three digits separated
by commas and a closing parenthesis: always eight tokens. The target is the one
token of the answer, a digit.

The vocabulary has 20 ids. The chapter's source gives one tokenised example,
``Max(1,6,2)`` -> ``[15, 17, 3, 19, 8, 19, 4, 18]`` with target 8 (the digit 6),
and not the full table; the table below is the simplest one that reproduces it:
digits ``0..9`` are ids ``2..11`` (so ``1 -> 3``, ``2 -> 4``, ``6 -> 8``), ``(`` is 17,
``)`` 18 and ``,`` 19 as in the example, the five operations fill ids 12 to 16
with ``Max`` at 15, and ids 0 and 1 are reserved (padding, unknown) and never
occur in the task.

Every one of the ``5 * 10^3 = 5000`` possible inputs is an example; the split
into training and held-out examples is a seeded permutation, so no input is in
both.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

import numpy as np

from ._checks import require

__all__ = [
    "VOCAB",
    "TOKEN_IDS",
    "OPERATIONS",
    "SEQ_LEN",
    "tokenize",
    "detokenize",
    "encode_example",
    "answer",
    "all_examples",
    "Dataset",
    "make_split",
    "sample_batch",
]

OPERATIONS = ("First", "Second", "Last", "Max", "Min")
DIGITS = tuple(str(d) for d in range(10))
VOCAB = ("<pad>", "<unk>", *DIGITS, *OPERATIONS, "(", ")", ",")
TOKEN_IDS = {token: i for i, token in enumerate(VOCAB)}
SEQ_LEN = 8  # Op ( d , d , d )

_EXPRESSION = re.compile(r"^(" + "|".join(OPERATIONS) + r")\((\d),(\d),(\d)\)$")
_APPLY = {
    "First": lambda ds: ds[0],
    "Second": lambda ds: ds[1],
    "Last": lambda ds: ds[2],
    "Max": max,
    "Min": min,
}


def tokenize(text: str) -> list[int]:
    """Token ids of an expression such as ``"Max(1,6,2)"`` (spaces are ignored).

    Raises
    ------
    ValueError
        If the text is not ``Op(d,d,d)`` with a known operation and single digits.

    Examples
    --------
    >>> tokenize("Max(1,6,2)")
    [15, 17, 3, 19, 8, 19, 4, 18]
    """
    compact = text.replace(" ", "")
    match = _EXPRESSION.match(compact)
    require(match is not None, f"{text!r} is not an expression Op(d,d,d) with Op in {OPERATIONS} and digits 0-9")
    op, *digits = match.groups()
    return [TOKEN_IDS[op], TOKEN_IDS["("], TOKEN_IDS[digits[0]], TOKEN_IDS[","], TOKEN_IDS[digits[1]],
            TOKEN_IDS[","], TOKEN_IDS[digits[2]], TOKEN_IDS[")"]]


def detokenize(ids) -> str:
    """The text of a sequence of ids: ``detokenize(tokenize(s)) == s``.

    Examples
    --------
    >>> detokenize([15, 17, 3, 19, 8, 19, 4, 18])
    'Max(1,6,2)'
    """
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    require(all(0 <= i < len(VOCAB) for i in ids), f"ids {ids} must lie in [0, {len(VOCAB)})")
    return "".join(VOCAB[i] for i in ids)


def answer(text: str) -> int:
    """The target token id of an expression: the id of the resulting digit.

    Examples
    --------
    >>> answer("Max(1,6,2)"), VOCAB[answer("Max(1,6,2)")]
    (8, '6')
    """
    tokenize(text)  # validates
    op, *digits = _EXPRESSION.match(text.replace(" ", "")).groups()
    return TOKEN_IDS[str(_APPLY[op]([int(d) for d in digits]))]


def encode_example(text: str) -> tuple[np.ndarray, int]:
    """``(tokens [SEQ_LEN], target)`` of one expression, ready for the model."""
    return np.array(tokenize(text), dtype=np.int64), answer(text)


class Dataset(NamedTuple):
    """Examples as arrays: ``tokens`` ``[N, SEQ_LEN]`` int64 and ``targets`` ``[N]`` int64."""

    tokens: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def texts(self) -> list[str]:
        return [detokenize(row) for row in self.tokens]


def all_examples() -> Dataset:
    """Every possible input once, in a fixed order (operation, then the digits).

    Examples
    --------
    >>> data = all_examples()
    >>> len(data), data.tokens.shape
    (5000, (5000, 8))
    """
    data = _every_example()
    return Dataset(data.tokens.copy(), data.targets.copy())


@functools.cache
def _every_example() -> Dataset:
    """:func:`all_examples`, tokenized once per process (50 ms) and read-only: callers get copies."""
    texts = [f"{op}({a},{b},{c})" for op in OPERATIONS for a in range(10) for b in range(10) for c in range(10)]
    data = Dataset(np.array([tokenize(t) for t in texts], dtype=np.int64),
                   np.array([answer(t) for t in texts], dtype=np.int64))
    for array in data:
        array.setflags(write=False)
    return data


def make_split(n_train: int = 4000, n_held_out: int = 1000, seed: int = 0) -> tuple[Dataset, Dataset]:
    """Disjoint training and held-out sets drawn from :func:`all_examples` by a seeded permutation.

    Parameters
    ----------
    n_train, n_held_out : int
        Sizes; together at most 5000 (every input is used at most once).
    seed : int
        Seed of ``np.random.default_rng`` for the permutation.

    Returns
    -------
    train, held_out : Dataset

    Raises
    ------
    ValueError
        If the sizes are negative or add up to more than 5000.

    Examples
    --------
    >>> train, held_out = make_split(40, 10)
    >>> len(train), len(held_out)
    (40, 10)
    >>> set(train.texts()).isdisjoint(held_out.texts())
    True
    """
    data = _every_example()  # indexed below, so the split's arrays are copies
    require(n_train >= 0 and n_held_out >= 0 and n_train + n_held_out <= len(data),
            f"n_train = {n_train} and n_held_out = {n_held_out} must be >= 0 and add up to <= {len(data)}")
    order = np.random.default_rng(seed).permutation(len(data))
    train, held_out = order[:n_train], order[n_train:n_train + n_held_out]
    return (Dataset(data.tokens[train], data.targets[train]),
            Dataset(data.tokens[held_out], data.targets[held_out]))


def sample_batch(rng: np.random.Generator, data: Dataset, batch_size: int) -> Dataset:
    """A batch drawn uniformly with replacement from ``data``, using ``rng``."""
    rows = rng.integers(0, len(data), size=batch_size)
    return Dataset(data.tokens[rows], data.targets[rows])
