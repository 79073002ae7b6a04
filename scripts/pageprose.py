"""Computed values in prose, and the checks that guard qualitative sentences.

In a page's Markdown (outside code blocks)::

    The drop is a factor of {{ drop:sig2 }}, measured over {{ n_seeds }} seeds.
    Without the scale, wider keys saturate sooner.{{ check: wider_keys_saturate_sooner }}

``{{ name }}`` (optionally ``{{ name[key] }}`` and ``:spec``, see
:func:`derivations.typeset.typeset`) is replaced by the value of ``name`` in the
page's executed session as it stands at that line (see :meth:`SessionRun.value_at`),
typeset as TeX inside math and as Markdown in a sentence. ``{{ check: name }}`` requires
``name`` to be a boolean that is true, and renders a small mark saying the sentence
was checked by this build; a false check fails the build with the page and line.

Any ``{{``/``}}`` or ``[[``/``]]`` left in the prose after expansion is an error too:
a marker the build does not understand must never reach a reader as raw text.
"""

from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass

PLACEHOLDER = re.compile(
    r"\{\{\s*(?P<check>check:\s*)?(?P<name>[A-Za-z_]\w*)(?:\[(?P<key>[^\]]+)\])?\s*(?::\s*(?P<spec>[\w.%,]+))?\s*\}\}"
)
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+\1")
MATH_DELIMITERS = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$")
LEFTOVER = re.compile(r"\{\{|\}\}|\[\[|\]\]")


@dataclass(frozen=True)
class ProseError:
    line: int
    message: str


def _key(text: str):
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text.strip("'\"")


def _lookup(runs, name: str, line: int):
    found = [(run.session, value) for run in runs for ok, value in [run.value_at(name, line)] if ok]
    if not found:
        known = sorted({n for run in runs for changed in run.values for n in changed})
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LookupError(f"{name!r} is not a number, text or flag computed on this page before or after "
                          f"this line{hint}")
    if len(found) > 1:
        raise LookupError(f"{name!r} is computed in several sessions ({', '.join(s for s, _ in found)}): rename one")
    return found[0][1]


def check_mark(name: str) -> str:
    label = f"Checked when this page was built ({name})"
    return f'<span class="checked" title="{html.escape(label)}" aria-label="{html.escape(label)}">&#10003;</span>'


def segments(markdown: str):
    """Split Markdown into ``(line, text, context)`` pieces, ``context`` one of ``"code"`` (fenced
    blocks and inline code), ``"math"`` (between arithmatex delimiters) and ``"prose"``.

    Joining the texts in order gives back ``markdown`` exactly.
    """
    in_fence: str | None = None
    in_display = False
    lines = markdown.split("\n")
    for number, line in enumerate(lines, start=1):
        end = "\n" if number < len(lines) else ""
        fence = FENCE.match(line)
        if in_fence is not None or fence:
            if in_fence is None:
                in_fence = fence.group(1)
            elif fence and fence.group(1)[0] == in_fence[0] and len(fence.group(1)) >= len(in_fence):
                in_fence = None
            yield number, line + end, "code"
            continue
        at = 0
        in_inline = False
        spans = sorted([(m.start(), m.end(), "code") for m in INLINE_CODE.finditer(line)]
                       + [(m.start(), m.end(), m.group(0)) for m in MATH_DELIMITERS.finditer(line)])
        for start, stop, kind in spans:
            if start < at:
                continue
            context = "math" if (in_inline or in_display) else "prose"
            if start > at:
                yield number, line[at:start], context
            if kind == "code":
                yield number, line[start:stop], "code" if context == "prose" else context
            else:
                opening = kind in (r"\(", r"\[") or (kind == "$$" and not in_display)
                if kind == r"\(" or kind == r"\)":
                    in_inline = kind == r"\("
                else:
                    in_display = opening
                yield number, kind, "math"
            at = stop
        context = "math" if (in_inline or in_display) else "prose"
        yield number, line[at:] + end, context


def substitute(markdown: str, runs) -> tuple[str, list[ProseError]]:
    """Replace every placeholder of ``markdown`` (a page's source) using ``runs`` (its sessions).

    Returns the new Markdown and the errors, each with the 1-based line of the source.
    Code is left alone; inside math a value is typeset as TeX, in a sentence as Markdown.
    """
    import numpy as np

    from derivations.typeset import typeset

    errors: list[ProseError] = []
    out = []
    for number, text, context in segments(markdown):
        if context == "code":
            out.append(text)
            continue

        def replace(match: re.Match) -> str:
            try:
                value = _lookup(runs, match["name"], number)
                if match["key"] is not None:
                    value = value[_key(match["key"])]
                if match["check"]:
                    if not isinstance(value, (bool, np.bool_)):
                        raise ValueError(f"check {match['name']!r} is {value!r}, not a boolean")
                    if not value:
                        raise ValueError(f"check {match['name']!r} is false: the sentence it guards is not "
                                         "supported by this build's data")
                    return check_mark(match["name"])
                shown = typeset(value, match["spec"] or "")
                return shown.tex if context == "math" else shown.markdown
            except (LookupError, ValueError, KeyError, IndexError, TypeError) as error:
                message = error.args[0] if error.args else repr(error)
                errors.append(ProseError(number, f"{match.group(0)}: {message}"))
                return match.group(0)

        out.append(PLACEHOLDER.sub(replace, text))
    return "".join(out), errors


def leftover_markers(markdown: str, allowed: tuple[re.Pattern, ...] = ()) -> list[ProseError]:
    """``{{``, ``}}``, ``[[`` or ``]]`` left in the prose (not code, not math) of ``markdown``.

    ``allowed`` are patterns of whole-line markers that a later step expands (claims,
    derivations); any other occurrence, such as a claim written inline or ``[[claim: x]``,
    is an error.
    """
    errors = []
    lines = markdown.split("\n")
    for number, text, context in segments(markdown):
        if any(pattern.fullmatch(lines[number - 1]) for pattern in allowed):
            continue
        if context == "prose" and (found := LEFTOVER.search(text)):
            errors.append(ProseError(number, f"marker not expanded ({found.group(0)!r} in {text.strip()[:80]!r}); "
                                             "claims and derivations go on a line of their own, values are "
                                             "{{ name }}, checks {{ check: name }}"))
    return errors
