"""Questions and exercises whose answers are computed, checked by the build and checkable by the reader.

``EXERCISES`` is the registry, one entry per question, chapter by chapter in the order of the
site; pages place an exercise with ``[[exercise: id]]`` on a line of its own. The entry type and
its rules are in :mod:`.registry`; :mod:`.run` executes an entry's givens, stored answer and
worked solution. Hands-on exercises keep their starter code and reference solution as runnable
scripts in ``handson/``; the tiny language model's text is ``data/mill.txt``.
"""

from __future__ import annotations

from . import attention, autodiff, flow, notation, transformer, walkthrough
from .registry import CHAPTERS, KINDS, Exercise, is_close

EXERCISES: list[Exercise] = [*notation.EXERCISES, *attention.EXERCISES, *transformer.EXERCISES, *flow.EXERCISES,
                             *autodiff.EXERCISES, *walkthrough.EXERCISES]

_BY_ID = {exercise.id: exercise for exercise in EXERCISES}
if len(_BY_ID) != len(EXERCISES):
    raise RuntimeError("duplicate exercise id in derivations.exercises")


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id; a ``KeyError`` naming it otherwise."""
    try:
        return _BY_ID[exercise_id]
    except KeyError:
        raise KeyError(f"unknown exercise id {exercise_id!r}") from None


__all__ = ["CHAPTERS", "EXERCISES", "KINDS", "Exercise", "get_exercise", "is_close"]
