"""Evidence over seeds: run a random experiment many times and summarise what the seeds say.

A conclusion drawn from random draws is only as good as the number of draws behind it. These
helpers make the seed an axis: :func:`over_seeds` runs one experiment per seed and stacks the
results with the seed first, :func:`spread` reduces that axis to the smallest, median and
largest value, and :func:`geometric_mean` averages ratios the way a log axis shows them.
"""

from __future__ import annotations

import numpy as np

from ..reference._checks import require

__all__ = ["over_seeds", "spread", "geometric_mean"]


def over_seeds(experiment, seeds, **kwargs):
    """Run ``experiment(**kwargs, seed=s)`` for every seed and stack the results, seed first.

    A result that is an array (or a number) becomes an array ``[n_seeds, ...]``; a
    result that is a tuple (a ``NamedTuple`` included) or a dict is stacked field by
    field (key by key) and returned as the same kind of container.

    Raises
    ------
    ValueError
        If ``seeds`` is empty or repeats a seed (one draw counted twice is not evidence).

    Examples
    --------
    >>> over_seeds(lambda seed: np.random.default_rng(seed).integers(0, 10**6), seeds=(1, 2)).shape
    (2,)
    >>> from typing import NamedTuple
    >>> class Pair(NamedTuple):
    ...     a: float
    ...     b: np.ndarray
    >>> stacked = over_seeds(lambda scale, seed: Pair(seed * scale, np.full(3, seed)), seeds=(1, 2), scale=10)
    >>> stacked.a.tolist(), stacked.b.shape
    ([10.0, 20.0], (2, 3))
    """
    seeds = tuple(int(s) for s in seeds)
    require(len(seeds) >= 1, "seeds must name at least one seed")
    require(len(set(seeds)) == len(seeds), f"seeds {seeds} repeat a seed: one draw would count twice")
    return _stack([experiment(**kwargs, seed=seed) for seed in seeds])


def _stack(results):
    """Stack a list of like results along a new first axis: arrays, numbers, tuples and dicts of them."""
    first = results[0]
    if isinstance(first, dict):
        return {key: _stack([r[key] for r in results]) for key in first}
    if isinstance(first, tuple):
        fields = [_stack([r[i] for r in results]) for i in range(len(first))]
        return type(first)(*fields) if hasattr(first, "_fields") else tuple(fields)
    return np.stack([np.asarray(r, dtype=np.float64) for r in results])


def spread(per_seed) -> dict[str, np.ndarray]:
    """What many seeds say about each entry: its smallest, median and largest value across seeds.

    The seeds are the first axis of ``per_seed``; the result has the shape of one
    seed's entry, under the keys ``"low"``, ``"median"`` and ``"high"`` (a plain
    dict, so a page can name ``{{ ratio[low] }}`` in a sentence).

    Examples
    --------
    >>> s = spread([[1.0, 30.0], [2.0, 10.0], [4.0, 20.0]])  # three seeds, two quantities
    >>> s["low"].tolist(), s["median"].tolist(), s["high"].tolist()
    ([1.0, 10.0], [2.0, 20.0], [4.0, 30.0])
    """
    values = np.asarray(per_seed, dtype=np.float64)
    require(values.ndim >= 1 and values.shape[0] >= 1, f"per_seed {values.shape} needs a first axis of seeds")
    return {"low": values.min(axis=0), "median": np.median(values, axis=0), "high": values.max(axis=0)}


def geometric_mean(values, axis=0) -> np.ndarray:
    """``exp(mean(log(values)))``: the average a log axis shows.

    Examples
    --------
    >>> round(float(geometric_mean([1.0, 100.0])), 12)
    10.0
    """
    return np.exp(np.mean(np.log(np.asarray(values, dtype=np.float64)), axis=axis))
