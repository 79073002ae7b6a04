"""Run an exercise: its givens, its stored answer, its worked solution; and say what disagrees.

:func:`run` executes the solution exactly as the page shows it (:meth:`Exercise.code`), in a fresh
namespace, capturing what it prints; it never raises, a failure is recorded in the outcome with
the exercise id. :func:`problems` lists what is wrong with an outcome: the solution raised, it did
not compute an answer, or its answer disagrees with the stored one. The build and the tests call
both, so they agree on what a broken exercise is.
"""

from __future__ import annotations

import contextlib
import io
import time
import traceback
from dataclasses import dataclass, field

import numpy as np

from .registry import Exercise, is_close

__all__ = ["Outcome", "run", "run_all", "problems", "as_answer", "AGREEMENT"]

#: How closely a worked solution must reproduce the stored answer: both are exact computations
#: in float64, so only rounding may separate them (the reader's tolerance is far looser).
AGREEMENT = {"rtol": 1e-9, "atol": 1e-12}
MAX_ARRAY = 256
MAX_TEXT = 2000


@dataclass
class Outcome:
    """What running one exercise gave."""

    id: str
    code: str = ""
    output: str = ""
    givens: dict = field(default_factory=dict)
    hints: dict = field(default_factory=dict)
    answer: object = None  # the stored answer, computed by the reference
    solution_answer: object = None  # what the worked solution assigned to ``answer``
    values: dict = field(default_factory=dict)  # simple values the solution left behind
    figure_svg: str | None = None
    error: str | None = None
    seconds: float = 0.0


def as_answer(value):
    """An answer in a canonical form: ``int`` (choice), float64 array, or ``{label: array}``."""
    if isinstance(value, dict):
        return {str(k): np.asarray(v, dtype=np.float64) for k, v in value.items()}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return np.asarray(value, dtype=np.float64)


def _simple(value, depth: int = 0) -> bool:
    if type(value) in (bool, int, float) or isinstance(value, (np.bool_, np.integer, np.floating)):
        return True
    if isinstance(value, str):
        return len(value) <= MAX_TEXT
    if type(value) is np.ndarray:
        return value.size <= MAX_ARRAY and value.dtype.kind in "biuf"
    if depth < 2 and type(value) in (list, tuple) and len(value) <= MAX_ARRAY:
        return all(_simple(v, depth + 1) for v in value)
    if depth < 2 and type(value) is dict and len(value) <= MAX_ARRAY:
        return all(isinstance(k, (str, int)) and _simple(v, depth + 1) for k, v in value.items())
    return False


def run(exercise: Exercise) -> Outcome:
    """Compute the givens, hints and stored answer, then execute the worked solution."""
    start = time.perf_counter()
    outcome = Outcome(exercise.id)
    stage = "givens"
    try:
        outcome.givens = exercise.given_values()
        stage = "hints"
        outcome.hints = exercise.hint_values(outcome.givens)
        stage = "answer"
        if exercise.answer is not None:
            outcome.answer = as_answer(exercise.answer(**outcome.givens))
        stage = "solution"
        outcome.code = exercise.code(outcome.givens)
        namespace: dict = {"__name__": "__main__"}
        buffer = io.StringIO()
        try:
            with contextlib.redirect_stdout(buffer):
                exec(compile(outcome.code, f"<exercise {exercise.id}>", "exec"), namespace)  # noqa: S102
        finally:
            outcome.output = buffer.getvalue()
        if "answer" in namespace:
            outcome.solution_answer = as_answer(namespace["answer"])
        figure = namespace.get("figure_svg")
        outcome.figure_svg = figure if isinstance(figure, str) else None
        outcome.values = {k: v for k, v in namespace.items()
                          if not k.startswith("_") and k != "figure_svg" and _simple(v)}
    except BaseException as error:  # noqa: BLE001 - reported with the exercise id
        shown = traceback.format_exception(type(error), error, error.__traceback__)
        outcome.error = f"exercise {exercise.id}: the {stage} raised {type(error).__name__}: {error}\n" + "".join(shown)
    outcome.seconds = time.perf_counter() - start
    return outcome


def run_all(exercises) -> dict[str, Outcome]:
    """:func:`run` for every exercise, in order."""
    return {exercise.id: run(exercise) for exercise in exercises}


def problems(exercise: Exercise, outcome: Outcome) -> list[str]:
    """Everything wrong with ``outcome``, each message naming the exercise; empty when all is well."""
    name = f"exercise {exercise.id}"
    if outcome.error:
        return [outcome.error]
    found = []
    if exercise.kind == "choice":
        right = outcome.answer
        if not isinstance(right, int) or not 0 <= right < len(exercise.options):
            found.append(f"{name}: the stored answer {right!r} is not an option index below {len(exercise.options)}")
        elif outcome.solution_answer != right:
            found.append(f"{name}: the worked solution picks option {outcome.solution_answer!r}, the stored answer "
                         f"is option {right}")
    elif exercise.kind == "numeric":
        stored, mine = outcome.answer, outcome.solution_answer
        if mine is None:
            found.append(f"{name}: the worked solution does not assign `answer`")
        elif isinstance(stored, dict) != isinstance(mine, dict) or (isinstance(stored, dict) and list(stored) != list(mine)):
            found.append(f"{name}: the worked solution's answer has parts {list(mine) if isinstance(mine, dict) else None}, "
                         f"the stored answer {list(stored) if isinstance(stored, dict) else None}")
        else:
            pairs = stored.items() if isinstance(stored, dict) else [("", stored)]
            for label, value in pairs:
                theirs = mine[label] if label else mine
                part = f" ({label})" if label else ""
                if not np.all(np.isfinite(value)):
                    found.append(f"{name}: the stored answer{part} is not finite: {value}")
                elif not is_close(theirs, value, **AGREEMENT):
                    found.append(f"{name}: the stored answer{part} {np.round(value, 6).tolist()} disagrees with "
                                 f"the worked solution's {np.round(theirs, 6).tolist()}")
    return found
