"""Exercises on pages: ``[[exercise: id]]`` lines become the question, a self-check and the worked solution.

The exercises live in ``derivations.exercises``; this module only renders them. Every
exercise is run once per version of the ``derivations`` package, in a child process (fresh
imports, one BLAS thread), by :func:`derivations.exercises.run.run`: givens, stored answer,
worked solution. The outcomes are cached beside the pages' runs (``.cache/build/pages``) under a
hash of the package and of this file, so a warm build or a prose edit runs nothing.

A marker expands to Markdown (``md_in_html``): the prompt with its givens typeset by name, the
answer controls that ``docs/assets/exercises.js`` brings to life (the answer is in the page, in
``data-answer``, so that it can be checked offline), the tolerance in words, and a collapsed
block with the answer, the solution's code, its real output and the discussion. An unknown id,
a solution that raises, a stored answer the solution does not reproduce, a placeholder that
names nothing and a false check are errors naming the page line and the exercise id.

``VB_EXTRA_EXERCISES=/path/to/module.py`` adds that module's ``EXERCISES`` to the registry: the
tests use it to build a small site with deliberately broken entries.

``python scripts/exercisesmd.py run package|extra <out.pickle>`` is the worker (the package's exercises, or only
``$VB_EXTRA_EXERCISES``'s). Nothing here imports MkDocs.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import html
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import buildcache  # noqa: E402
import claimsmd  # noqa: E402
import pageprose  # noqa: E402

MARKER = re.compile(r"^(?P<indent>[ \t]*)\[\[exercise:\s*(?P<id>[^\]\s]+)\s*\]\]\s*$", re.MULTILINE)
INDEX = re.compile(r"^\[\[exercises-index\]\]\s*$", re.MULTILINE)
MARKER_LINES = (MARKER, INDEX)
EXTRA = "VB_EXTRA_EXERCISES"
KIND_NAMES = {"numeric": "numeric", "choice": "multiple choice", "symbolic": "derivation", "explain": "explain"}

_lock = threading.Lock()
_prepared: dict = {}


# ----------------------------------------------------------------------------- the registry


def registry() -> list:
    """Every exercise: the package's registry, plus ``$VB_EXTRA_EXERCISES``'s (tests only)."""
    from derivations.exercises import EXERCISES

    extra = os.environ.get(EXTRA)
    if not extra:
        return list(EXERCISES)
    spec = importlib.util.spec_from_file_location("vb_extra_exercises", extra)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(EXERCISES) + list(module.EXERCISES)


def notebook_note(markdown: str) -> str:
    """Exercise lines as a pointer to the page (a downloaded chapter notebook cannot check answers)."""
    return MARKER.sub(lambda m: f"{m['indent']}*Exercise `{m['id']}`: on this chapter's page, which checks your "
                                "answer and holds the worked solution.*", markdown)


def find_markers(markdown: str) -> list[tuple[str, int]]:
    """Every ``[[exercise: id]]`` line of a page: ``(id, 1-based line)``."""
    return [(m.group("id"), markdown.count("\n", 0, m.start()) + 1) for m in MARKER.finditer(markdown)]


def index_markdown(placed: dict[str, str], page_src: str) -> tuple[str, list[str]]:
    """Every exercise of the registry, grouped by chapter, each a link to where it is placed.

    ``placed`` maps an exercise id to the page (docs-relative) that renders it.
    """
    import posixpath

    from derivations.exercises import CHAPTERS

    errors, parts = [], []
    here = posixpath.dirname(page_src) or "."
    exercises = registry()
    for chapter in CHAPTERS:
        rows = []
        for exercise in (e for e in exercises if e.chapter == chapter):
            target = placed.get(exercise.id)
            if target is None:
                errors.append(f"exercise {exercise.id} is on no page, so the index cannot link it")
                continue
            link = posixpath.relpath(target, here)
            rows.append(f"- [{exercise.title}]({link}#{exercise.anchor}) ({KIND_NAMES[exercise.kind]})")
        if rows:
            pages = sorted({placed[e.id] for e in exercises if e.chapter == chapter and e.id in placed})
            title = chapter.replace("-", " ").capitalize()
            parts.append(f"## {title}\n\n" + f"{len(rows)} questions, on [their page]({posixpath.relpath(pages[0], here)}):\n\n"
                         + "\n".join(rows))
    return "\n\n".join(parts), errors


# ----------------------------------------------------------------------------- running them (cached)


def cache_key(extra: bool = False) -> str:
    """The key of the package's exercises' run; with ``extra``, of ``$VB_EXTRA_EXERCISES``'s run
    (which also depends on that file)."""
    digest = hashlib.sha256()
    digest.update(buildcache.source_hash("derivations").encode())
    for data in sorted((buildcache.ROOT / "derivations" / "exercises" / "data").glob("*")):
        digest.update(data.name.encode() + data.read_bytes())  # the language model's text
    digest.update(Path(__file__).read_bytes())
    digest.update(sys.version.encode())
    if extra:
        digest.update(b"extra:" + Path(os.environ[EXTRA]).read_bytes())
    return digest.hexdigest()[:24]


def prepare() -> dict:
    """Every exercise's outcome, ``{id: Outcome}``: from the cache, or run in a child process once.

    The package's exercises and a test's extra ones (``$VB_EXTRA_EXERCISES``) are run and cached
    apart, so a test adding broken exercises runs only those.
    """
    with _lock:
        sets = ["package"] + (["extra"] if os.environ.get(EXTRA) else [])
        keys = [cache_key(extra=which == "extra") for which in sets]
        if _prepared.get("keys") == keys:
            return _prepared["outcomes"]
        outcomes = {}
        for which, key in zip(sets, keys):
            outcomes.update(_outcomes(which, key))
        _prepared.update(keys=keys, outcomes=outcomes)
        return outcomes


def _outcomes(which: str, key: str) -> dict:
    import fcntl

    target = buildcache.path_for("pages", f"exercises-{key}", ".pickle")
    with open(target.with_suffix(".lock"), "w") as lock:  # across processes: build and test workers
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return pickle.loads(target.read_bytes())
        return _run_in_child(target, which)


def _run_in_child(target: Path, which: str) -> dict:
    partial = target.with_suffix(f".{os.getpid()}.partial")
    root = buildcache.ROOT
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "run", which, str(partial)], cwd=root,
                           env=env, capture_output=True, text=True)
    if child.returncode != 0 or not partial.exists():
        partial.unlink(missing_ok=True)
        return {"": f"running the exercises crashed:\n{child.stdout}\n{child.stderr}"}
    outcomes = pickle.loads(partial.read_bytes())
    if all(not getattr(o, "error", None) for o in outcomes.values()):
        partial.replace(target)  # only runs where every solution ran are cached
    else:
        partial.unlink()
    return outcomes


def _main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[1] != "run" or argv[2] not in ("package", "extra"):
        print(__doc__, file=sys.stderr)
        return 2
    from derivations.exercises import EXERCISES
    from derivations.exercises.run import run_all

    exercises = list(EXERCISES) if argv[2] == "package" else registry()[len(EXERCISES):]
    Path(argv[3]).write_bytes(pickle.dumps(run_all(exercises), protocol=5))
    return 0


# ----------------------------------------------------------------------------- values in text


def _exact(x) -> "object":
    """A given as written in the code: every digit, nothing rounded."""
    import numpy as np

    from derivations.typeset import Typeset, integer, sci

    if isinstance(x, (bool, np.bool_)):
        raise ValueError("a boolean is not a number")
    if isinstance(x, (int, np.integer)):
        return integer(x)
    x = float(x)
    if x != 0 and not 1e-4 <= abs(x) < 1e6:
        digits = len(repr(abs(x)).split("e")[0].replace(".", "").lstrip("0")) or 1
        return sci(x, digits)
    text = np.format_float_positional(x, trim="-")
    return Typeset(text, text.replace("-", "\u2212"))


def typeset_value(value, spec: str, exact: bool):
    """TeX for ``value``: a number (by ``spec``, or every digit when ``exact`` and no spec), or an
    array as a bracketed row vector or matrix, entry by entry."""
    import numpy as np

    from derivations.typeset import typeset

    def one(x) -> str:
        return (_exact(x) if exact and not spec else typeset(x, spec)).tex

    if isinstance(value, str):
        return value, True
    array = np.asarray(value)
    if array.ndim == 0:
        return one(array.item() if isinstance(value, np.ndarray) else value), False
    if array.ndim > 2 or array.dtype.kind not in "biuf":
        raise ValueError(f"cannot typeset an array of shape {array.shape} and dtype {array.dtype}")
    rows = array[None] if array.ndim == 1 else array
    body = r" \\ ".join(" & ".join(one(x) for x in row) for row in rows)
    return r"\begin{bmatrix} " + body + r" \end{bmatrix}", False


def fill(template: str, values: dict, exact_names=frozenset()) -> tuple[str, list[tuple[int, str]]]:
    """Replace ``{{ name }}``, ``{{ name:spec }}``, ``{{ name[key] }}`` and ``{{ check: flag }}`` in ``template``.

    Values come from ``values``; names in ``exact_names`` (the givens) are written with every digit
    unless a spec says otherwise. Inside math a value is TeX, in prose it becomes inline math (or
    plain digits). Returns the text and ``(line, message)`` errors.
    """
    import numpy as np

    errors: list[tuple[int, str]] = []
    out = []
    for number, text, context in pageprose.segments(template):
        if context == "code":
            out.append(text)
            continue

        def replace(match: re.Match) -> str:
            name = match["name"]
            try:
                if name not in values:
                    raise LookupError(f"{name!r} is not a given, a hint or a value the solution computed; "
                                      f"known: {', '.join(sorted(values)) or 'none'}")
                value = values[name]
                if match["key"] is not None:
                    value = value[pageprose._key(match["key"])]
                if match["check"]:
                    if not isinstance(value, (bool, np.bool_)):
                        raise ValueError(f"check {name!r} is {value!r}, not a boolean")
                    if not value:
                        raise ValueError(f"check {name!r} is false: the sentence it guards is not supported by "
                                         "this build's data")
                    return pageprose.check_mark(name)
                tex, is_text = typeset_value(value, match["spec"] or "", exact=name in exact_names)
                if is_text or context == "math":
                    return tex
                plain = None if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) > 0 else \
                    _plain(value, match["spec"] or "", name in exact_names)
                return plain if plain is not None else f"\\({tex}\\)"
            except (LookupError, ValueError, KeyError, IndexError, TypeError) as error:
                message = error.args[0] if error.args else repr(error)
                errors.append((number, f"{match.group(0)}: {message}"))
                return match.group(0)

        out.append(pageprose.PLACEHOLDER.sub(replace, text))
    return "".join(out), errors


def _plain(value, spec: str, exact: bool) -> str | None:
    from derivations.typeset import typeset

    shown = _exact(value) if exact and not spec else typeset(value, spec)
    return shown.text


# ----------------------------------------------------------------------------- rendering


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.split("\n"))


def _inline_html(markdown: str) -> str:
    """A short label (text with inline math) as HTML: math for KaTeX, the rest escaped."""
    parts = re.split(r"(\\\(.+?\\\))", markdown)
    return "".join(f'<span class="arithmatex">{html.escape(p)}</span>' if p.startswith("\\(") else html.escape(p)
                   for p in parts)


def _tolerance_tex(rtol: float, atol: float) -> str:
    def power(x: float) -> str:
        from derivations.typeset import sci

        tex = sci(x, 2).tex.replace(".0 ", " ")
        return tex[len("1 \\times "):] if tex.startswith("1 \\times ") else tex

    terms = ([power(atol)] if atol else []) + ([power(rtol) + r"\,|a|"] if rtol else [])
    return r"|x - a| \le " + " + ".join(terms)


def _shape_words(shape: tuple) -> str:
    if len(shape) == 0 or (len(shape) == 1 and shape[0] == 1):
        return "one number"
    if len(shape) == 1:
        return f"{shape[0]} numbers, separated by commas"
    return f"a {shape[0]} × {shape[1]} matrix: {shape[0] * shape[1]} numbers, row by row"


def _controls(exercise, outcome) -> str:
    import numpy as np

    if exercise.kind == "numeric":
        answer = outcome.answer
        parts = answer.items() if isinstance(answer, dict) else [("", answer)]
        rows = [f'<div class="exercise-check" data-exercise="{exercise.id}" data-kind="numeric" '
                f'data-rtol="{exercise.rtol!r}" data-atol="{exercise.atol!r}" hidden>']
        for index, (label, value) in enumerate(parts):
            field_id = f"{exercise.anchor}-answer-{index}"
            flat = json.dumps([float(x) for x in np.asarray(value, dtype=float).reshape(-1)])
            shape = json.dumps(list(np.shape(value)))
            words = _shape_words(np.shape(value))
            title = (_inline_html(label) if label else "Your answer") + f" ({html.escape(words)})"
            rows.append(f'<div class="exercise-part" data-answer="{html.escape(flat)}" data-shape="{shape}">'
                        f'<label for="{field_id}">{title}</label>'
                        f'<span class="exercise-row"><input id="{field_id}" type="text" autocomplete="off" '
                        f'spellcheck="false" autocapitalize="off">'
                        f'<button type="button" class="md-button exercise-button">Check</button></span>'
                        f'<span class="exercise-feedback" role="status" aria-live="polite"></span></div>')
        rows.append("</div>")
        rule = _inline_html(r"\(" + _tolerance_tex(exercise.rtol, exercise.atol) + r"\)")
        x, a = _inline_html(r"\(x\)"), _inline_html(r"\(a\)")
        rows.append(f'<p class="exercise-tolerance">Checked entry by entry: an entry {x} counts as correct when '
                    f'{rule}, with {a} the computed answer. Use a point for decimals; <code>1e-3</code> and '
                    '<code>1/3</code> are fine.</p>')
        return "\n".join(rows)
    if exercise.kind == "choice":
        options = "\n".join(f"{i + 1}. {option}" for i, option in enumerate(exercise.options))
        return (f'<div class="exercise-choice" data-exercise="{exercise.id}" data-kind="choice" '
                f'data-answer="{outcome.answer}" markdown>\n\n{options}\n\n'
                f'<span class="exercise-feedback" role="status" aria-live="polite"></span>\n\n</div>')
    return ""


def _answer_entry(x: float, rtol: float, atol: float) -> tuple[str, bool]:
    """An answer's entry as TeX, and whether it was rounded: 4 significant digits, or as many more as
    it takes for the shown value to pass the check with room to spare (so a reader may copy it)."""
    import numpy as np

    from derivations.typeset import integer, sci

    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return integer(int(x)).tex, False
    for digits in range(4, 18):
        if not 1e-4 <= abs(x) < 1e6:
            tex, value = sci(x, digits).tex, float(f"{x:.{digits - 1}e}")
        else:
            tex = np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")
            value = float(tex)
        if abs(value - x) <= (atol + rtol * abs(x)) / 2:
            break
    return tex, value != x


def _answer_markdown(exercise, outcome) -> str:
    import numpy as np

    if exercise.kind == "choice":
        return f"**Answer:** option {outcome.answer + 1}, {exercise.options[outcome.answer]}"
    if exercise.kind != "numeric":
        return ""
    answer = outcome.answer
    parts = list(answer.items()) if isinstance(answer, dict) else [("", answer)]
    shown, rounded = [], False
    for label, value in parts:
        entries = [[_answer_entry(x, exercise.rtol, exercise.atol) for x in row] for row in np.atleast_2d(value)]
        rounded |= any(r for row in entries for _, r in row)
        body = r" \\ ".join(" & ".join(tex for tex, _ in row) for row in entries)
        tex = entries[0][0][0] if value.ndim == 0 else r"\begin{bmatrix} " + body + r" \end{bmatrix}"
        shown.append((label + ": " if label else "") + f"\\({tex}\\)")
    note = " (rounded; the check compares with every digit)" if rounded else ""
    return "**Answer:** " + "; ".join(shown) + note + "."


def _claim_markdown(claim_id: str, page_src: str) -> str:
    """A claim as plain Markdown (display math and the claims' badge), for inside the collapsed answer:
    an HTML block there (the claims' ``<div markdown>``) would end the collapsed block early."""
    claim = claimsmd.get_claim(claim_id)
    link = f"{claimsmd.relative_link(page_src)}#{claimsmd.anchor(claim_id, 'claim')}"
    title = claimsmd.badge_title(claim).replace('"', "'")
    return (f"\\[\n{claim.latex}\n\\]\n\n"
            f'<span class="claim-badge">[{claimsmd.badge_text(claim)}]({link} "{title}") · `{claim_id}`</span>')


def render(exercise, outcome, page_src: str = "exercises.md") -> tuple[str, list[str]]:
    """The Markdown of one exercise and the problems found while rendering it."""
    from derivations.exercises.run import problems

    errors = list(problems(exercise, outcome))
    prompt_values = {**outcome.givens, **outcome.hints}
    prompt, prompt_errors = fill(exercise.prompt.strip("\n"), prompt_values, frozenset(outcome.givens))
    errors += [f"exercise {exercise.id}: prompt line {line}: {message}" for line, message in prompt_errors]
    discussion_values = {**prompt_values, **outcome.values}
    if outcome.answer is not None and not isinstance(outcome.answer, dict):
        discussion_values["answer"] = outcome.answer
    discussion, discussion_errors = fill(exercise.discussion.strip("\n"), discussion_values, frozenset(outcome.givens))
    errors += [f"exercise {exercise.id}: discussion line {line}: {message}" for line, message in discussion_errors]

    head = (f'<p class="exercise-head"><span class="exercise-kind">{KIND_NAMES[exercise.kind]}</span> '
            f'<strong>{_inline_html(exercise.title)}</strong> <code>{exercise.id}</code>'
            f'<span class="exercise-solved" hidden> · solved in this browser</span></p>')
    blocks = [head, prompt]
    if exercise.starter:
        blocks.append("Starter code (it runs as it is; fill in the parts marked TODO):\n\n"
                      f"```python\n{exercise.starter.strip()}\n```")
    controls = _controls(exercise, outcome)
    if controls:
        blocks.append(controls)

    label = {"explain": "Model answer", "symbolic": "Proven answer"}.get(exercise.kind, "Solution")
    inside = []
    if exercise.kind == "symbolic":
        inside.append("The derivative, as SymPy proved it for this site:")
        for claim in exercise.claims:
            try:
                inside.append(_claim_markdown(claim, page_src))
            except KeyError as error:
                errors.append(f"exercise {exercise.id}: {error.args[0]}")
    answer = _answer_markdown(exercise, outcome)
    if answer:
        inside.append(answer)
    if exercise.kind == "explain" and discussion:
        inside.append(discussion)
    name = f" ({', '.join(exercise.sources)})" if exercise.sources else ""
    inside.append(f"{'Reference solution' if exercise.starter else 'Worked solution'}{name}, run when this page was built:")
    inside.append(f"```python\n{outcome.code.strip()}\n```")
    if outcome.output.strip():
        inside.append(f"Output:\n\n```text\n{outcome.output.rstrip()}\n```")
    if outcome.figure_svg:
        data = base64.b64encode(outcome.figure_svg.encode()).decode()
        inside.append(f'<img class="exercise-figure" alt="{html.escape("Figure drawn by the solution: " + exercise.title)}" '
                      f'src="data:image/svg+xml;base64,{data}">')
    if exercise.kind != "explain" and discussion:
        inside.append(discussion)
    reveal = f'??? success "{label}"\n\n' + _indent("\n\n".join(inside))

    body = "\n\n".join(blocks + [reveal])
    return (f'<div class="exercise" id="{exercise.anchor}" data-exercise="{exercise.id}" markdown>\n\n'
            f"{body}\n\n</div>"), errors


def expand(markdown: str, page_src: str) -> tuple[str, list[str]]:
    """Replace every exercise line of a page; returns the Markdown and errors (``line N: ...``)."""
    if not MARKER.search(markdown):
        return markdown, []
    exercises = {exercise.id: exercise for exercise in registry()}
    outcomes = prepare()
    errors: list[str] = []
    if "" in outcomes:  # the worker itself failed
        return markdown, [outcomes[""]]

    def replace(match: re.Match) -> str:
        line = markdown.count("\n", 0, match.start()) + 1
        exercise_id, indent = match.group("id"), match.group("indent")
        if exercise_id not in exercises:
            close = difflib.get_close_matches(exercise_id, list(exercises), n=3)
            errors.append(f"line {line}: unknown exercise id {exercise_id!r}" + (f"; did you mean {', '.join(close)}?" if close else ""))
            return match.group(0)
        outcome = outcomes.get(exercise_id)
        if outcome is None:
            errors.append(f"line {line}: exercise {exercise_id} was not run (a stale cache?)")
            return match.group(0)
        text, problems = render(exercises[exercise_id], outcome, page_src)
        errors.extend(f"line {line}: {problem}" for problem in problems)
        return "\n".join(indent + row if row else row for row in text.split("\n"))

    return MARKER.sub(replace, markdown), errors


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
