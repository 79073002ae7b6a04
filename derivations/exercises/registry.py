"""The exercise type: one question, its computed givens and answer, its tolerance, its worked solution.

An :class:`Exercise` is declarative, like a claim: the chapter modules list them as a table.
What an entry holds:

``givens()``
    The data of the question, exact and seeded (random draws are rounded to a few decimals, so
    the prompt can show them exactly). They are typeset into the prompt by name
    (``{{ logits }}``) and written as Python literals at the top of the worked solution, which
    therefore runs on its own when a reader copies it.
``hints(**givens)``
    Values derived from the givens that the prompt shows (rounded probabilities, say), so that a
    prompt never states a number that disagrees with its data.
``answer(**givens)``
    The answer, computed by :mod:`derivations.reference` (``numeric``: a number, an array, or
    a dict ``{label: value}`` for several parts; ``choice``: the index of the right option).
``solution``
    Python code. It runs at build time and under pytest, with the givens bound; its output is
    shown; for ``numeric`` and ``choice`` it must assign ``answer``, which has to agree with the
    stored one (so a wrong stored answer, or a wrong worked solution, fails the build).
``discussion``
    Markdown shown after the solution; ``{{ name }}`` takes values the solution computed and
    ``{{ check: flag }}`` guards a sentence with a boolean the solution computed, exactly as on
    the pages. An ``explain`` question's model answer lives here: its numbers come from code.

Tolerances follow PrairieLearn: a reader's ``x`` is correct when ``|x - a| <= atol + rtol |a|``
for every entry (:func:`is_close`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["CHAPTERS", "KINDS", "Exercise", "is_close", "literal", "handson_source"]

#: The chapters an exercise can belong to, in the order of the site (``docs/<chapter>.md``; the
#: walkthrough is the notebook).
CHAPTERS = ("notation", "attention-gradients", "transformer-backward", "gradient-flow", "autodiff-engines",
            "walkthrough")
KINDS = ("numeric", "choice", "symbolic", "explain")
ID = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)+$")
HANDSON = Path(__file__).resolve().parent / "handson"


def is_close(x, a, rtol: float, atol: float) -> bool:
    """PrairieLearn's rule, entry by entry: ``|x - a| <= atol + rtol |a|``; shapes must agree.

    >>> is_close(0.1049, 0.105, rtol=0.0, atol=1e-3), is_close(0.107, 0.105, rtol=0.0, atol=1e-3)
    (True, False)
    >>> is_close([1.0, 2.0], [1.0, 2.0, 3.0], rtol=1.0, atol=1.0)
    False
    """
    x, a = np.asarray(x, dtype=np.float64), np.asarray(a, dtype=np.float64)
    if x.shape != a.shape:
        return False
    return bool(np.all(np.abs(x - a) <= atol + rtol * np.abs(a)))


def literal(value) -> str:
    """``value`` as Python source that evaluates to exactly the same value.

    >>> literal(np.array([[0.5, -1.25], [3.0, 0.1]]))
    'np.array([[0.5, -1.25], [3.0, 0.1]])'
    >>> literal(3), literal("Max(1,6,2)"), literal([1.5, 2])
    ('3', "'Max(1,6,2)'", '[1.5, 2]')
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return f"np.array({value.tolist()!r})"
        if value.dtype.kind in "iu":
            return f"np.array({value.tolist()!r})"
        raise ValueError(f"cannot write an array of dtype {value.dtype} as a given")
    if isinstance(value, (bool, int, float, str)) or value is None:
        return repr(value)
    if isinstance(value, (list, tuple)):
        return repr(type(value)(float(v) if isinstance(v, np.floating) else v for v in value))
    raise ValueError(f"cannot write {type(value).__name__} {value!r} as a given")


def handson_source(name: str) -> str:
    """The text of ``handson/<name>.py``: a hands-on exercise's starter or reference solution."""
    path = HANDSON / f"{name}.py"
    if not path.exists():
        raise ValueError(f"no hands-on file {path.name} in {HANDSON}")
    return path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class Exercise:
    """One question (see the module docstring for what each field holds)."""

    id: str
    chapter: str
    kind: str
    title: str
    prompt: str
    solution: str
    givens: Callable[[], dict] | None = None
    hints: Callable[..., dict] | None = None
    answer: Callable[..., object] | None = None
    options: tuple[str, ...] = ()
    claims: tuple[str, ...] = ()
    rtol: float = 0.0
    atol: float = 0.0
    discussion: str = ""
    starter: str = ""  # runnable starter code of a hands-on exercise
    sources: tuple[str, ...] = field(default=())  # the solution's source is shown as a file of this name

    def __post_init__(self):
        def require(condition, message):
            if not condition:
                raise ValueError(f"exercise {self.id!r}: {message}")

        require(isinstance(self.id, str) and ID.match(self.id) is not None,
                "the id must be dotted lowercase words, like 'transformer.softmax-grad'")
        require(self.chapter in CHAPTERS, f"chapter {self.chapter!r} is not one of {CHAPTERS}")
        require(self.kind in KINDS, f"kind {self.kind!r} is not one of {KINDS}")
        require(self.title.strip() and self.prompt.strip(), "needs a title and a prompt")
        require(self.solution.strip(), "needs a worked solution (code that runs)")
        require(self.rtol >= 0 and self.atol >= 0, f"tolerances must be non-negative, got rtol {self.rtol}, atol {self.atol}")
        if self.kind in ("numeric", "choice"):
            require(self.answer is not None, f"a {self.kind} exercise needs an answer computed by the reference")
        if self.kind == "numeric":
            require(self.rtol > 0 or self.atol > 0, "a numeric exercise needs a tolerance (rtol or atol)")
        if self.kind == "choice":
            require(len(self.options) >= 2, "a choice exercise needs at least two options")
        if self.kind == "symbolic":
            require(len(self.claims) >= 1, "a symbolic exercise shows at least one proven claim")
        if self.kind == "explain":
            require(self.discussion.strip(), "an explain exercise needs a model answer (discussion)")
        require(self.answer is None or self.kind in ("numeric", "choice"),
                f"a {self.kind} exercise has no checked answer; put the result in the discussion")

    @property
    def anchor(self) -> str:
        """The HTML id of the exercise on a page."""
        return "exercise-" + re.sub(r"[^a-z0-9]+", "-", self.id)

    def given_values(self) -> dict:
        return dict(self.givens()) if self.givens is not None else {}

    def hint_values(self, givens: dict) -> dict:
        return dict(self.hints(**givens)) if self.hints is not None else {}

    def code(self, givens: dict | None = None) -> str:
        """The worked solution as a reader sees and runs it: its imports, the givens as literals, the rest.

        >>> ex = Exercise(id="a.b", chapter="notation", kind="explain", title="t", prompt="p",
        ...               solution="import math\\nprint(math.sqrt(x))", discussion="d", givens=lambda: {"x": 2.25})
        >>> print(ex.code())
        import math
        <BLANKLINE>
        # The givens
        x = 2.25
        <BLANKLINE>
        print(math.sqrt(x))
        <BLANKLINE>
        """
        givens = self.given_values() if givens is None else givens
        lines = self.solution.strip("\n").split("\n")
        if not givens:
            return "\n".join(lines) + "\n"
        at = 0
        while at < len(lines) and (lines[at].startswith(("import ", "from ")) or not lines[at].strip()):
            at += 1
        imports = [line for line in lines[:at] if line.strip()]
        uses_numpy = any(isinstance(v, np.ndarray) for v in givens.values()) or "np." in self.solution
        if uses_numpy and "import numpy as np" not in imports:
            imports.insert(0, "import numpy as np")
        header = ["# The givens"] + [f"{name} = {literal(value)}" for name, value in givens.items()]
        parts = ["\n".join(imports), "\n".join(header), "\n".join(lines[at:])]
        return "\n\n".join(part for part in parts if part) + "\n"
