"""Each chapter as a Jupyter notebook a reader can download and run.

The notebook is made from the page's own source at build time: its prose becomes Markdown
cells (computed values filled in, each claim shown as its proven formula), and every block
the build executes becomes a code cell, hidden ones included, so the notebook recomputes
everything the page shows, in a fresh kernel, with only the ``derivations`` package
installed. MkDocs-only syntax is turned into plain Markdown that Jupyter renders:
admonitions become block quotes, content tabs become bold labels.

Cell ids are derived from the cell's position, so two builds write the same bytes.
"""

from __future__ import annotations

import re
import textwrap

from docblocks import OPENING, parse_info

ADMONITION = re.compile(r'^(?P<indent>[ \t]*)(?:!!!|\?\?\?\+?)\s+(?P<kind>\w+)(?:\s+"(?P<title>[^"]*)")?\s*$')
TAB = re.compile(r'^(?P<indent>[ \t]*)===\+?\s+"(?P<title>[^"]*)"\s*$')
ATTRIBUTES = re.compile(r"\{\s*[#.][^}]*\}\s*$")  # attr_list suffixes such as { #id .class }


def _plain_markdown(text: str) -> str:
    """Admonitions and tabs as Markdown that any renderer understands."""
    lines = text.split("\n")
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        admonition, tab = ADMONITION.match(line), TAB.match(line)
        if admonition or tab:
            match = admonition or tab
            indent = match["indent"]
            title = match["title"] if match["title"] else (admonition["kind"].capitalize() if admonition else "")
            body, index = [], index + 1
            while index < len(lines) and (not lines[index].strip() or lines[index].startswith(indent + "    ")):
                body.append(lines[index])
                index += 1
            while body and not body[-1].strip():
                body.pop()
            inner = _plain_markdown(textwrap.dedent("\n".join(body)))
            if admonition:
                quoted = "\n".join(indent + ("> " + row if row else ">") for row in [f"**{title}**", ""] + inner.split("\n"))
                out += [quoted, ""]
            else:
                out += [f"{indent}**{title}**", "", inner, ""]
            continue
        out.append(ATTRIBUTES.sub("", line) if line.lstrip().startswith("#") else line)
        index += 1
    return "\n".join(out)


def _claim_markdown(markdown: str) -> str:
    """Claim lines as display math with a note of what was proven."""
    from claimsmd import MARKER, get_claim, get_derivation

    def replace(match: re.Match) -> str:
        item = (get_derivation if match["kind"] == "derivation" else get_claim)(match["id"])
        return f"$$\n{item.latex}\n$$\n\n*SymPy: {item.sizes} ({match['kind']} `{item.id}`).*"

    from exercisesmd import notebook_note

    return notebook_note(MARKER.sub(replace, markdown))


def has_shown_code(markdown: str) -> bool:
    """Whether the page shows code to its reader (a page that only computes values is no chapter)."""
    return any(OPENING.match(line) and "source=" in line for line in markdown.split("\n"))


def build(markdown: str, title: str):
    """The notebook (an ``nbformat`` node) of a page whose values are already substituted."""
    import nbformat

    cells = []
    prose: list[str] = []
    lines = markdown.split("\n")
    index = 0

    def flush() -> None:
        text = _plain_markdown(_claim_markdown("\n".join(prose))).strip("\n")
        if text.strip():
            cells.append(nbformat.v4.new_markdown_cell(text))
        prose.clear()

    while index < len(lines):
        opening = OPENING.match(lines[index])
        if not opening:
            prose.append(lines[index])
            index += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        closing = re.compile(rf"^{re.escape(indent)}{fence[0]}{{{len(fence)},}}[ \t]*$")
        end = index + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        language, options = parse_info(opening["info"])
        if language == "python" and options.get("exec") in {"on", "1", "true"}:
            flush()
            code = textwrap.dedent("\n".join(lines[index + 1:end])).strip("\n")
            cells.append(nbformat.v4.new_code_cell(code))
        else:
            prose.extend(lines[index:end + 1])
        index = end + 1
    flush()
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["title"] = title
    return nb


def dumps(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"
